//! The guard: what one caller statement may do, decided on a real parse tree.
//!
//! The reference server layered regular expressions over a parser; the regexes
//! refused legitimate reads (UNION, `OR a = b`, a quote followed by `--`) and
//! were a ReDoS hazard. Here every decision is taken on sqlparser-dsql's tree
//! (which knows DSQL-only syntax), after a lexical pre-pass (`scan`) and
//! placeholder translation (`placeholders`). Anything that cannot be scanned
//! or parsed is refused ("fail closed").
//!
//! Findings fall in three groups, reported in this order of precedence:
//! a write in read-only mode (`WriteNotAllowed`), something dangerous in any
//! mode (`Injection`), and several statements or caller transaction control
//! (`Bypass` in read-only mode, `Injection` when writes are allowed).

use std::ops::ControlFlow;

use sqlparser::ast::{
    AccessExpr, BinaryOperator, CopyTarget, DiscardObject, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, Ident, ObjectName, ObjectNamePart, Query, Reset, Select, Set, Statement,
    TableFactor, TransactionAccessMode, TransactionMode, UtilityOption, Value, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::functions::{self, AllowedFunctions, Site, Verdict};
use super::names;
use super::objects;
use super::placeholders;
use super::{Access, Checked, Placeholders, PolicyError, StatementKind};

/// Longest run of tokens allowed at one parenthesis level without a comma.
///
/// sqlparser builds `a + b + c …`, `x OR y OR …` and `UNION` chains as left-deep
/// trees without counting them against its recursion limit; walking or even
/// dropping a tree thousands of levels deep overflows the stack and aborts the
/// whole server. Real statements stay far below this bound (a 3,000-row INSERT
/// resets it at every comma).
pub(crate) const MAX_TOKEN_RUN: usize = 20_000;

/// Most tokens one checked statement may have. Tokens and the tree cost a few hundred bytes
/// each, so this bounds the check's memory to tens of megabytes (a 3,000-row INSERT of 15
/// columns has about 96,000); the count comes from the lexer, before any token or tree is
/// built.
pub(crate) const MAX_TOKENS: usize = 120_000;

/// Inputs with more statements than this are refused from the lexer's count alone, before
/// parsing (which would build every statement's tree only to refuse them all). Up to this
/// many are parsed, so the most telling finding is reported.
const MAX_PARSED_STATEMENTS: usize = 8;

/// Runs the whole guard. Call it on a thread with a large stack (see `super::on_big_stack`).
pub(crate) fn check(
    sql: &str,
    params: Option<usize>,
    style: Placeholders,
    access: Access,
    allowed: &AllowedFunctions,
) -> Result<Checked, PolicyError> {
    // 1. Placeholders, on the raw text, as the client library would do it.
    let (text, expected) = match (style, params) {
        (Placeholders::Psycopg, Some(n)) => {
            let t = placeholders::translate_psycopg(sql).map_err(PolicyError::Injection)?;
            if t.count != n {
                return Err(PolicyError::Injection(placeholders::count_mismatch(
                    t.count, n,
                )));
            }
            (t.sql, n)
        }
        (Placeholders::Psycopg, None) => (sql.to_owned(), 0),
        (Placeholders::Numbered, n) => (sql.to_owned(), n.unwrap_or(0)),
    };

    // 2. Lexical pre-pass: decode U& escapes, refuse what cannot be decoded.
    let text = super::scan::normalize(&text)
        .map_err(|e| PolicyError::Injection(format!("SQL could not be scanned: {e}")))?;
    let size = super::scan::measure(&text)
        .map_err(|e| PolicyError::Injection(format!("SQL could not be scanned: {e}")))?;
    if size.statements > MAX_PARSED_STATEMENTS {
        let why = format!(
            "Exactly one SQL statement is allowed, found {}",
            size.statements
        );
        return Err(match access {
            Access::ReadOnly => PolicyError::Bypass(why),
            Access::ReadWrite => PolicyError::Injection(why),
        });
    }
    if size.tokens > MAX_TOKENS {
        return Err(PolicyError::Injection(too_large(size.tokens)));
    }

    // 3. Tokens: placeholders, nesting bound, leftovers of U& the pre-pass missed.
    let tokens = tokenize(&text).map_err(|e| PolicyError::Injection(unparseable(&e)))?;
    token_checks(&tokens)?;
    lexers_agree(&text, &tokens)?;
    let highest = highest_placeholder(&tokens)?;
    if highest != expected {
        let msg = match style {
            Placeholders::Numbered => placeholders::count_mismatch(highest, expected),
            Placeholders::Psycopg => format!(
                "Query refers to parameters up to ${highest} but {expected} parameters were supplied. \
This is not an injection: {}; pass one parameter per placeholder",
                placeholders::plain_count(highest, expected)
            ),
        };
        return Err(PolicyError::Injection(msg));
    }

    // 4. Parse (fail closed), as `parse_significant` reads SQL.
    let statements = match parse_significant(&text, tokens) {
        Ok(s) => s,
        Err((e, tokens)) => return Err(parse_error_finding(&tokens, &e, access)),
    };

    // 5. Decide.
    let verdict = judge(&statements, access, allowed);
    drop(statements);
    let (kind, command) = verdict?;
    Ok(Checked {
        sql: text,
        kind,
        command,
        param_count: expected,
    })
}

pub(crate) fn tokenize(text: &str) -> Result<Vec<TokenWithSpan>, ParserError> {
    Tokenizer::new(&PostgreSqlDialect {}, text)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| ParserError::TokenizerError(e.to_string()))
}

pub(crate) fn parse_tokens(tokens: Vec<TokenWithSpan>) -> Result<Vec<Statement>, ParserError> {
    Parser::new(&PostgreSqlDialect {})
        .with_tokens_with_locations(tokens)
        .parse_statements()
}

/// Parses SQL text the way the guard does (used by the rule checker).
pub(crate) fn parse_text(text: &str) -> Result<Vec<Statement>, String> {
    let tokens = tokenize(text).map_err(|e| parse_failure(&e))?;
    if longest_run(&tokens) > MAX_TOKEN_RUN {
        return Err(too_complex());
    }
    parse_significant(text, tokens).map_err(|(e, _)| parse_failure(&e))
}

/// Parses `text`'s `tokens` (whitespace included, as the tokenizer gave them) the one way
/// the guard and the rule checker both read SQL: whitespace and comments dropped (half the
/// tokens; the lexers already agreed on them), `TABLE t` read as `SELECT * FROM t`, and the
/// `ALTER TABLE async` retry. On failure, the error and the significant tokens (for a
/// specific finding). The tokens are not copied for the rare retry: they are made again.
fn parse_significant(
    text: &str,
    mut tokens: Vec<TokenWithSpan>,
) -> Result<Vec<Statement>, (ParserError, Vec<TokenWithSpan>)> {
    let significant = |mut tokens: Vec<TokenWithSpan>| {
        tokens.retain(|t| !matches!(t.token, Token::Whitespace(_)));
        expand_table_queries(&mut tokens);
        tokens
    };
    tokens = significant(tokens);
    let e = match parse_tokens(tokens) {
        Ok(s) => return Ok(s),
        Err(e) => e,
    };
    let tokens = match tokenize(text) {
        Ok(t) => significant(t),
        Err(t) => return Err((t, Vec::new())),
    };
    match alter_table_async_retry(&tokens) {
        Some(Ok(s)) => Ok(s),
        _ => Err((e, tokens)),
    }
}

pub(crate) fn parse_failure(e: &ParserError) -> String {
    let msg = e.to_string();
    let msg = msg.strip_prefix("sql parser error: ").unwrap_or(&msg);
    format!("SQL could not be parsed: {msg}")
}

/// `parse_failure` as the guard reports it: under the reference's "risky injection
/// patterns" words, so it says plainly that the statement is only not valid SQL.
fn unparseable(e: &ParserError) -> String {
    format!(
        "{}. This is not an injection: the statement is not valid SQL as the checker reads it \
(check the syntax at the place named); nothing was run",
        parse_failure(e)
    )
}

fn too_large(tokens: usize) -> String {
    format!(
        "SQL is too large to check safely: about {tokens} tokens in one statement (the limit is {MAX_TOKENS}); split the work into several statements"
    )
}

/// PostgreSQL's `TABLE name` is `SELECT * FROM name`; sqlparser does not read it, so the
/// guard checks the longer spelling (the server still sends the caller's text). Only a
/// `TABLE` where a query may start is expanded: at the start, after `(` or `)` (a CTE, an
/// option list), after a set operator, or after `EXPLAIN` and its options. Everywhere else
/// (`CREATE TABLE`, `LOCK TABLE`, `ON TABLE`) the word stays as it is.
fn expand_table_queries(tokens: &mut Vec<TokenWithSpan>) {
    use sqlparser::keywords::Keyword;
    let starts_query = |prev: Option<&TokenWithSpan>| match prev.map(|t| &t.token) {
        None | Some(Token::LParen) | Some(Token::RParen) => true,
        Some(Token::Word(w)) if w.quote_style.is_none() => matches!(
            w.keyword,
            Keyword::UNION
                | Keyword::INTERSECT
                | Keyword::EXCEPT
                | Keyword::ALL
                | Keyword::DISTINCT
                | Keyword::EXPLAIN
                | Keyword::ANALYZE
                | Keyword::VERBOSE
        ),
        _ => false,
    };
    let is_table = |t: &TokenWithSpan| matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::TABLE);
    let expand: Vec<bool> = (0..tokens.len())
        .map(|i| is_table(&tokens[i]) && starts_query(i.checked_sub(1).map(|j| &tokens[j])))
        .collect();
    if !expand.contains(&true) {
        return;
    }
    let mut out = Vec::with_capacity(tokens.len() + 8);
    for (t, expand) in std::mem::take(tokens).into_iter().zip(expand) {
        if expand {
            let span = t.span;
            out.push(TokenWithSpan::new(Token::make_keyword("SELECT"), span));
            out.push(TokenWithSpan::new(Token::Mul, span));
            out.push(TokenWithSpan::new(Token::make_keyword("FROM"), span));
        } else {
            out.push(t);
        }
    }
    *tokens = out;
}

fn too_complex() -> String {
    format!(
        "SQL is too complex to check safely: more than {MAX_TOKEN_RUN} tokens in one expression without a comma"
    )
}

fn significant(tokens: &[TokenWithSpan]) -> impl Iterator<Item = &TokenWithSpan> {
    tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
}

/// Longest comma-free run of tokens at one parenthesis level (see `MAX_TOKEN_RUN`).
pub(crate) fn longest_run(tokens: &[TokenWithSpan]) -> usize {
    let mut stack: Vec<usize> = vec![0];
    let mut longest = 0;
    for t in significant(tokens) {
        match t.token {
            Token::LParen => stack.push(0),
            Token::RParen => {
                if stack.len() > 1 {
                    stack.pop();
                }
            }
            Token::Comma | Token::SemiColon => {
                if let Some(top) = stack.last_mut() {
                    *top = 0;
                }
            }
            _ => {
                if let Some(top) = stack.last_mut() {
                    *top += 1;
                    longest = longest.max(*top);
                }
            }
        }
    }
    longest
}

fn token_checks(tokens: &[TokenWithSpan]) -> Result<(), PolicyError> {
    if longest_run(tokens) > MAX_TOKEN_RUN {
        return Err(PolicyError::Injection(too_complex()));
    }
    // PostgreSQL refuses `""` (a zero-length quoted name); sqlparser reads it as a name, so
    // what the guard would check is not what the server would run.
    for t in significant(tokens) {
        if let Token::Word(w) = &t.token
            && w.quote_style == Some('"')
            && w.value.is_empty()
        {
            return Err(PolicyError::Injection(format!(
                "SQL could not be parsed: zero-length quoted identifier at {}",
                t.span.start
            )));
        }
    }
    // PostgreSQL's dollar-quote tags are [A-Za-z_\x80-][A-Za-z_0-9\x80-]*;
    // sqlparser accepts more (`$1$`), where PostgreSQL reads code.
    for t in significant(tokens) {
        if let Token::DollarQuotedString(d) = &t.token
            && let Some(tag) = &d.tag
            && !valid_dollar_tag(tag)
        {
            return Err(PolicyError::Injection(format!(
                "SQL could not be parsed: invalid dollar-quote tag ${tag}$ at {}",
                t.span.start
            )));
        }
    }
    // `U&"…"` that the pre-pass did not decode would read as `U & "…"`.
    for w in tokens.windows(3) {
        if let (Token::Word(u), Token::Ampersand, Token::Word(q)) =
            (&w[0].token, &w[1].token, &w[2].token)
            && u.quote_style.is_none()
            && u.value.eq_ignore_ascii_case("u")
            && q.quote_style == Some('"')
        {
            return Err(PolicyError::Injection(format!(
                "SQL could not be scanned: undecoded Unicode-escaped identifier at {}",
                w[0].span.start
            )));
        }
    }
    Ok(())
}

/// Refuses the statement unless sqlparser's tokenizer and the PostgreSQL-rule
/// lexer in `scan` find the same literals, quoted names and comments. Where
/// they differ (sqlparser reads `||--` as an operator, PostgreSQL as the start
/// of a comment), what sqlparser checked is not what PostgreSQL would run.
fn lexers_agree(text: &str, tokens: &[TokenWithSpan]) -> Result<(), PolicyError> {
    let disagree = |at: usize| {
        PolicyError::Injection(format!(
            "SQL could not be parsed unambiguously: quotes or comments near byte {at} read differently by the two lexers"
        ))
    };
    let mine = super::scan::opaque_spans(text)
        .map_err(|e| PolicyError::Injection(format!("SQL could not be scanned: {e}")))?;
    // Byte offset of each token's start: a cursor that only moves forward.
    let starts = token_byte_starts(text, tokens);
    let mut theirs = Vec::new();
    for (k, t) in tokens.iter().enumerate() {
        let opaque = match &t.token {
            Token::Whitespace(w) => matches!(
                w,
                sqlparser::tokenizer::Whitespace::SingleLineComment { .. }
                    | sqlparser::tokenizer::Whitespace::MultiLineComment(_)
            ),
            Token::Word(w) => w.quote_style.is_some(),
            Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_) => true,
            _ => false,
        };
        if opaque {
            let end = starts.get(k + 1).copied().unwrap_or(text.len());
            theirs.push((starts[k], end));
        }
    }
    let norm = |&(start, end): &(usize, usize)| {
        let span = &text[start..end];
        // a prefix (E'', N'', X'', B'', U&'') starts the literal one or two bytes early
        let skip = if span.len() > 2 && span.as_bytes()[..2].eq_ignore_ascii_case(b"u&") {
            2
        } else if span.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) {
            1
        } else {
            0
        };
        // a line comment ends before its line break, whoever consumed it
        let end = if span.starts_with("--") {
            start + span.find(['\n', '\r']).unwrap_or(span.len())
        } else {
            end
        };
        (start + skip, end)
    };
    let mine: Vec<_> = mine.iter().map(norm).collect();
    let theirs: Vec<_> = theirs.iter().map(norm).collect();
    if mine != theirs {
        let at = mine
            .iter()
            .zip(&theirs)
            .find(|(a, b)| a != b)
            .map(|(a, b)| a.0.min(b.0))
            .or_else(|| {
                mine.get(theirs.len())
                    .or(theirs.get(mine.len()))
                    .map(|s| s.0)
            })
            .unwrap_or(0);
        return Err(disagree(at));
    }
    Ok(())
}

/// Byte offsets of the tokens' starts (sqlparser gives 1-based line and character column).
fn token_byte_starts(text: &str, tokens: &[TokenWithSpan]) -> Vec<usize> {
    let mut out = Vec::with_capacity(tokens.len());
    let (mut line, mut col, mut byte) = (1u64, 1u64, 0usize);
    let mut chars = text.char_indices().peekable();
    for t in tokens {
        let target = (t.span.start.line, t.span.start.column);
        while (line, col) < target {
            match chars.next() {
                Some((_, '\n')) => {
                    line += 1;
                    col = 1;
                }
                Some(_) => col += 1,
                None => break,
            }
            byte = chars.peek().map_or(text.len(), |&(i, _)| i);
        }
        out.push(byte);
    }
    out
}

fn valid_dollar_tag(tag: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii();
    tag.chars().next().is_some_and(|c| !c.is_ascii_digit()) && tag.chars().all(ok)
}

/// The highest `$n` placeholder in the statement (0 when there is none).
/// The highest `$n` placeholder of `text` (0 if none, or if it cannot be read): the
/// parameter count under which `check` judges a statement without its parameters
/// (`dsql_lint`).
pub(crate) fn placeholder_count(text: &str) -> usize {
    tokenize(text)
        .ok()
        .and_then(|tokens| highest_placeholder(&tokens).ok())
        .unwrap_or(0)
}

fn highest_placeholder(tokens: &[TokenWithSpan]) -> Result<usize, PolicyError> {
    let mut highest = 0usize;
    for t in significant(tokens) {
        if let Token::Placeholder(p) = &t.token
            && let Some(rest) = p.strip_prefix('$')
        {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if digits.is_empty() {
                continue;
            }
            let n: usize = digits.parse().map_err(|_| {
                PolicyError::Injection(format!("placeholder ${digits} is out of range"))
            })?;
            if n == 0 {
                return Err(PolicyError::Injection(
                    "placeholder $0 is not valid: parameters are numbered from $1".into(),
                ));
            }
            highest = highest.max(n);
        }
    }
    Ok(highest)
}

/// `ALTER TABLE async ADD …` names a table called `async`, but sqlparser-dsql
/// reads the word as DSQL's `ASYNC` keyword. Retry with the name quoted.
fn alter_table_async_retry(
    tokens: &[TokenWithSpan],
) -> Option<Result<Vec<Statement>, ParserError>> {
    let idx: Vec<usize> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_)))
        .map(|(i, _)| i)
        .take(6)
        .collect();
    let word = |k: usize| match idx.get(k).map(|&i| &tokens[i].token) {
        Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_ascii_lowercase()),
        _ => None,
    };
    if word(0).as_deref() != Some("alter") || word(1).as_deref() != Some("table") {
        return None;
    }
    let mut k = 2;
    if word(k).as_deref() == Some("if") && word(k + 1).as_deref() == Some("exists") {
        k += 2;
    }
    if word(k).as_deref() == Some("only") {
        k += 1;
    }
    if word(k).as_deref() != Some("async") {
        return None;
    }
    let mut retry = tokens.to_vec();
    let i = idx[k];
    retry[i].token = Token::make_word("async", Some('"'));
    Some(parse_tokens(retry))
}

/// What to report when the statement does not parse: a specific reason when
/// the first word says what it was, otherwise the parser's message.
fn parse_error_finding(tokens: &[TokenWithSpan], e: &ParserError, access: Access) -> PolicyError {
    let words: Vec<String> = significant(tokens)
        .take(4)
        .map(|t| match &t.token {
            Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_lowercase(),
            _ => String::new(),
        })
        .collect();
    let word = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    let routine = |w: &str| matches!(w, "function" | "procedure");
    match (word(0), word(1)) {
        ("do", _) => PolicyError::Injection("DO blocks run opaque code and are not allowed".into()),
        ("create", w) if routine(w) => {
            PolicyError::Injection("Function and procedure definitions are not allowed".into())
        }
        ("create", "or") if word(2) == "replace" && routine(word(3)) => {
            PolicyError::Injection("Function and procedure definitions are not allowed".into())
        }
        ("abort", _) | ("commit" | "rollback", "prepared") | ("prepare", "transaction") => {
            transaction_control(access, &word(0).to_ascii_uppercase())
        }
        _ => PolicyError::Injection(unparseable(e)),
    }
}

/// How every refusal of caller transaction control starts (`dsql_lint` reports these
/// under their own rule name).
pub(crate) const TRANSACTION_CONTROL: &str = "Caller-supplied transaction control is not allowed";

fn transaction_control(access: Access, what: &str) -> PolicyError {
    let why = format!("{TRANSACTION_CONTROL}: {what}");
    match access {
        Access::ReadOnly => PolicyError::Bypass(why),
        Access::ReadWrite => PolicyError::Injection(why),
    }
}

/// Findings over every statement, reported by precedence.
#[derive(Default)]
struct Findings {
    write: Option<String>,
    danger: Option<String>,
    bypass: Option<String>,
}

impl Findings {
    fn write(&mut self, why: impl Into<String>) {
        self.write.get_or_insert_with(|| why.into());
    }
    fn danger(&mut self, why: impl Into<String>) {
        self.danger.get_or_insert_with(|| why.into());
    }
    fn bypass(&mut self, why: impl Into<String>) {
        self.bypass.get_or_insert_with(|| why.into());
    }
}

fn judge(
    statements: &[Statement],
    access: Access,
    allowed: &AllowedFunctions,
) -> Result<(StatementKind, String), PolicyError> {
    let mut f = Findings::default();
    if statements.is_empty() {
        return Err(PolicyError::Injection(
            "Exactly one SQL statement is allowed, and none was found".into(),
        ));
    }
    if statements.len() > 1 {
        f.bypass(format!(
            "Exactly one SQL statement is allowed, found {}",
            statements.len()
        ));
    }
    let mut first = None;
    for stmt in statements {
        let r = classify(stmt, access, allowed, &mut f);
        first.get_or_insert(r);
    }
    let read_only = access == Access::ReadOnly;
    if read_only && let Some(w) = f.write {
        return Err(PolicyError::WriteNotAllowed(w));
    }
    if let Some(d) = f.danger {
        return Err(PolicyError::Injection(d));
    }
    if let Some(b) = f.bypass {
        return Err(if read_only {
            PolicyError::Bypass(b)
        } else {
            PolicyError::Injection(b)
        });
    }
    Ok(first.expect("at least one statement"))
}

/// Walks the whole statement tree: every function reference in every syntactic form,
/// locking clauses, `SELECT … INTO`, statements nested in queries (data-modifying CTEs), and
/// the names of every relation (for the write-mode system-catalog check).
struct Walk<'a> {
    access: Access,
    allowed: &'a AllowedFunctions,
    danger: Option<String>,
    ro: Option<String>,
    depth: usize,
    /// Relation names met anywhere in the statement.
    relations: Vec<ObjectName>,
}

impl Walk<'_> {
    fn verdict(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Allow => {}
            Verdict::WriteOnly(why) => {
                self.ro.get_or_insert(why);
            }
            Verdict::Refuse(why) => {
                self.danger.get_or_insert(why);
            }
        }
    }

    /// A call: `f(...)`, `s.f(...)`, `FROM f(...)`.
    fn call(&mut self, name: &ObjectName) {
        let Some(parts) = folded_parts(name) else {
            self.danger
                .get_or_insert_with(|| format!("function name could not be resolved: {name}"));
            return;
        };
        let v = functions::judge(&parts, Site::Call, self.access, self.allowed);
        self.verdict(v);
    }

    /// A field selection that PostgreSQL may read as a call of `field` on what precedes it.
    fn attribute(&mut self, field: &Ident) {
        let v = functions::judge(&[fold(field)], Site::Attribute, self.access, self.allowed);
        self.verdict(v);
    }

    /// `OPERATOR(schema.op)`: operators are functions too; only the built-in ones.
    fn operator(&mut self, parts: &[String]) {
        if let [schema, _op] = parts
            && !schema.eq_ignore_ascii_case("pg_catalog")
        {
            self.danger.get_or_insert_with(|| {
                format!(
                    "operator not allowed: OPERATOR({}) (only built-in operators, in pg_catalog, may be named)",
                    parts.join(".")
                )
            });
        } else if parts.len() > 2 {
            self.danger.get_or_insert_with(|| {
                format!(
                    "operator name could not be resolved: OPERATOR({})",
                    parts.join(".")
                )
            });
        }
    }
}

impl Visitor for Walk<'_> {
    type Break = ();

    fn pre_visit_statement(&mut self, stmt: &Statement) -> ControlFlow<()> {
        if self.depth > 0 {
            if let Some(d) = statement_danger(stmt) {
                self.danger.get_or_insert(d);
            }
            if matches!(
                stmt,
                Statement::Insert(_)
                    | Statement::Update(_)
                    | Statement::Delete(_)
                    | Statement::Merge(_)
            ) {
                self.ro.get_or_insert_with(|| {
                    format!(
                        "data-modifying statement inside a query is not allowed in read-only mode: {}",
                        command_tag(stmt)
                    )
                });
            }
        }
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, _stmt: &Statement) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        self.relations.push(relation.clone());
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(f) => self.call(&f.name),
            // `t.f`, `s.t.f`: every part after the first may be a field selection.
            Expr::CompoundIdentifier(parts) => {
                for p in parts.iter().skip(1) {
                    self.attribute(p);
                }
            }
            // `(expr).f`, `(expr).f.g`
            Expr::CompoundFieldAccess { access_chain, .. } => {
                for a in access_chain {
                    if let AccessExpr::Dot(Expr::Identifier(id)) = a {
                        self.attribute(id);
                    }
                }
            }
            Expr::BinaryOp {
                op: BinaryOperator::PGCustomBinaryOperator(parts),
                ..
            } => self.operator(parts),
            Expr::AnyOp { compare_op, .. } | Expr::AllOp { compare_op, .. } => {
                if let BinaryOperator::PGCustomBinaryOperator(parts) = compare_op {
                    self.operator(parts);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        match tf {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => self.call(name),
            TableFactor::Function { name, .. } => self.call(name),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if !q.locks.is_empty() {
            self.ro.get_or_insert_with(|| {
                "SELECT ... FOR UPDATE/SHARE locks rows and is not allowed in read-only mode".into()
            });
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<()> {
        if s.into.is_some() {
            self.ro.get_or_insert_with(|| {
                "SELECT ... INTO creates a table and is not allowed in read-only mode".into()
            });
        }
        ControlFlow::Continue(())
    }
}

/// Folds an identifier as PostgreSQL does: unquoted names to lower case (ASCII only).
pub(crate) fn fold(id: &Ident) -> String {
    if id.quote_style.is_none() {
        id.value.to_ascii_lowercase()
    } else {
        id.value.clone()
    }
}

fn folded_parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|p| p.as_ident().map(fold))
        .collect::<Option<Vec<_>>>()
}

fn string_value(v: &Value) -> Option<String> {
    match v {
        Value::SingleQuotedString(s)
        | Value::EscapedStringLiteral(s)
        | Value::UnicodeStringLiteral(s)
        | Value::NationalStringLiteral(s) => Some(s.clone()),
        Value::DollarQuotedString(d) => Some(d.value.clone()),
        _ => None,
    }
}

/// Statement forms refused in every mode, wherever they appear.
fn statement_danger(stmt: &Statement) -> Option<String> {
    match stmt {
        Statement::Load { .. } | Statement::LoadData { .. } => {
            Some("LOAD can load arbitrary server code and is not allowed".into())
        }
        Statement::CreateFunction(_) | Statement::CreateProcedure { .. } => {
            Some("Function and procedure definitions are not allowed".into())
        }
        Statement::Call(f) if !is_wait_for_job(f) => Some(format!(
            "Stored procedure calls are not allowed: {}",
            f.name
        )),
        Statement::Copy { target, .. } => match target {
            CopyTarget::Program { .. } => {
                Some("COPY ... TO/FROM PROGRAM executes a host command and is not allowed".into())
            }
            CopyTarget::File { .. } => Some(
                "COPY ... TO/FROM a server-side file accesses the host filesystem and is not allowed"
                    .into(),
            ),
            CopyTarget::Stdin | CopyTarget::Stdout => Some(
                "COPY ... FROM STDIN / TO STDOUT needs a data stream that MCP tool calls do not carry: load rows with INSERT ... VALUES in batches of at most 3,000 rows, and read them with SELECT".into(),
            ),
        },
        Statement::Discard {
            object_type: DiscardObject::ALL,
        } => Some("DISCARD ALL would reset the server's session and is not allowed".into()),
        Statement::Reset(r) if matches!(r.reset, Reset::ALL) => {
            Some("RESET ALL would reset the server's session settings and is not allowed".into())
        }
        Statement::NOTIFY { .. } => {
            Some("NOTIFY sends notifications to other sessions and is not allowed".into())
        }
        Statement::Set(Set::SetSessionAuthorization(_)) => Some(
            "SET SESSION AUTHORIZATION changes who the session is and is not allowed".into(),
        ),
        Statement::Set(Set::SetNames { .. } | Set::SetNamesDefault {}) => Some(
            "SET NAMES changes the client encoding, which changes how later statements are read, and is not allowed".into(),
        ),
        Statement::Set(set) => set_variables(set)
            .into_iter()
            .find_map(|v| names::setting_refusal(&v)),
        Statement::AlterTable(at)
            if at.r#async
                && !at.operations.iter().all(|op| {
                    matches!(op, sqlparser::ast::AlterTableOperation::ValidateConstraint { .. })
                }) =>
        {
            Some("ALTER TABLE ASYNC is only valid with VALIDATE CONSTRAINT".into())
        }
        _ => None,
    }
}

/// Names of the settings a `SET` statement changes (lower case, dotted).
fn set_variables(set: &Set) -> Vec<String> {
    let name = |n: &ObjectName| {
        n.0.iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(id) => id.value.to_ascii_lowercase(),
                ObjectNamePart::Function(f) => f.to_string().to_ascii_lowercase(),
            })
            .collect::<Vec<_>>()
            .join(".")
    };
    match set {
        Set::SingleAssignment { variable, .. } => vec![name(variable)],
        Set::ParenthesizedAssignments { variables, .. } => variables.iter().map(name).collect(),
        Set::MultipleAssignments { assignments } => {
            assignments.iter().map(|a| name(&a.name)).collect()
        }
        _ => Vec::new(),
    }
}

/// DSQL's `CALL sys.wait_for_job('<job id>')`, with a literal or a placeholder.
fn is_wait_for_job(f: &sqlparser::ast::Function) -> bool {
    let Some(parts) = folded_parts(&f.name) else {
        return false;
    };
    if parts != ["sys", "wait_for_job"] {
        return false;
    }
    let FunctionArguments::List(list) = &f.args else {
        return false;
    };
    if list.args.len() != 1 || !list.clauses.is_empty() || list.duplicate_treatment.is_some() {
        return false;
    }
    match &list.args[0] {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => {
            string_value(&v.value).is_some() || matches!(v.value, Value::Placeholder(_))
        }
        _ => false,
    }
}

/// Classifies one top-level statement, recording findings; returns its kind and command tag.
fn classify(
    stmt: &Statement,
    access: Access,
    allowed: &AllowedFunctions,
    f: &mut Findings,
) -> (StatementKind, String) {
    let mut walk = Walk {
        access,
        allowed,
        danger: None,
        ro: None,
        depth: 0,
        relations: Vec::new(),
    };
    let _ = stmt.visit(&mut walk);
    if let Some(d) = statement_danger(stmt) {
        f.danger(d);
    }
    if let Some(d) = walk.danger.take() {
        f.danger(d);
    }
    let command = command_tag(stmt);
    let not_in_ro = |f: &mut Findings| {
        f.write(format!(
            "statement type not allowed in read-only mode: {command}"
        ))
    };
    let read_or_dml = |walk: &Walk| {
        if walk.ro.is_some() {
            StatementKind::Dml
        } else {
            StatementKind::Read
        }
    };

    let kind = match stmt {
        Statement::Query(_) => {
            if let Some(w) = &walk.ro {
                f.write(w.clone());
            }
            read_or_dml(&walk)
        }
        s if is_show(s) => StatementKind::Read,
        Statement::Explain {
            statement,
            analyze,
            options,
            ..
        } => {
            let analyze = *analyze || explain_option_analyze(options.as_deref());
            match statement.as_ref() {
                Statement::Execute { .. } => {
                    if analyze {
                        f.write("EXECUTE is allowed only under EXPLAIN without ANALYZE");
                    }
                }
                inner if is_read_statement(inner) => {}
                inner => f.write(format!(
                    "statement type not allowed in read-only mode: EXPLAIN {}",
                    command_tag(inner)
                )),
            }
            if let Some(w) = &walk.ro {
                f.write(w.clone());
            }
            if analyze {
                match statement.as_ref() {
                    Statement::Query(_) => read_or_dml(&walk),
                    s if is_show(s) => StatementKind::Read,
                    s => base_kind(s),
                }
            } else {
                StatementKind::Read
            }
        }
        Statement::Set(Set::SetTransaction {
            modes,
            snapshot,
            session,
        }) => {
            if *session {
                not_in_ro(f);
                StatementKind::Other
            } else {
                if modes.iter().any(|m| {
                    matches!(
                        m,
                        TransactionMode::AccessMode(TransactionAccessMode::ReadWrite)
                    )
                }) && access == Access::ReadOnly
                {
                    f.bypass("Only read-only or isolation-only SET TRANSACTION is allowed: READ WRITE would lift the read-only transaction");
                }
                if snapshot.is_some() {
                    f.write("SET TRANSACTION SNAPSHOT is not allowed in read-only mode");
                }
                StatementKind::TransactionSetting
            }
        }
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => {
            f.bypass(format!("{TRANSACTION_CONTROL}: {command}"));
            StatementKind::Other
        }
        Statement::Call(func) if is_wait_for_job(func) => {
            f.write("CALL sys.wait_for_job is allowed only when writes are allowed");
            StatementKind::WaitForJob
        }
        Statement::Execute { .. } => {
            f.write("EXECUTE is allowed only under EXPLAIN without ANALYZE");
            StatementKind::Other
        }
        s => {
            let kind = base_kind(s);
            if statement_danger(s).is_none() {
                if rw_allowed(s) {
                    not_in_ro(f);
                } else {
                    f.write(format!(
                        "statement type not allowed in read-only mode: {command}"
                    ));
                    f.danger(format!("statement type not allowed: {command}"));
                }
            }
            kind
        }
    };
    if access == Access::ReadWrite {
        let pure_read = kind == StatementKind::Read && walk.ro.is_none();
        if let Some(why) = objects::refusal(stmt, &walk.relations, pure_read) {
            f.danger(why);
        }
    }
    (kind, command)
}

fn is_show(s: &Statement) -> bool {
    matches!(
        s,
        Statement::ShowVariable { .. } | Statement::ShowVariables { .. }
    )
}

fn is_read_statement(s: &Statement) -> bool {
    matches!(s, Statement::Query(_)) || is_show(s)
}

/// Whether `ANALYZE` is switched on in an `EXPLAIN ( … )` option list. Anything
/// that is not clearly off counts as on (fail closed).
fn explain_option_analyze(options: Option<&[UtilityOption]>) -> bool {
    let Some(options) = options else {
        return false;
    };
    let mut on = false;
    for o in options {
        if !o.name.value.eq_ignore_ascii_case("analyze") {
            continue;
        }
        on = match &o.arg {
            None => true,
            Some(Expr::Value(v)) => match &v.value {
                Value::Boolean(b) => *b,
                Value::Number(n, _) => n.as_str() != "0",
                other => string_value(other).is_none_or(|s| !is_false_word(&s)),
            },
            Some(Expr::Identifier(id)) => !is_false_word(&id.value),
            Some(_) => true,
        };
    }
    on
}

fn is_false_word(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "false" | "off" | "0" | "no" | "of" | "fa" | "fal" | "fals" | "n"
    )
}

/// The statement allowlist of write mode: DSQL's schema changes (`is_ddl`; the rule
/// checker then applies DSQL's own restrictions, `objects` the system-object rules) and
/// data and session statements. Left out on purpose: statements whose state outlives the
/// call on a pooled backend (PREPARE, DECLARE ... WITH HOLD, LISTEN), locks (LOCK, which
/// DSQL refuses), MERGE, VACUUM and DISCARD (DSQL refuses them), COPY (no data stream
/// travels with a tool call), and every dialect's statement PostgreSQL does not know.
fn rw_allowed(s: &Statement) -> bool {
    use Statement as S;
    is_ddl(s)
        || matches!(
            s,
            S::Query(_)
                | S::Insert(_)
                | S::Update(_)
                | S::Delete(_)
                | S::Explain { .. }
                | S::Analyze(_)
                | S::Set(_)
                | S::Reset(_)
                | S::Deallocate { .. }
        )
}

/// How the executor should run a statement allowed in read-write mode.
pub(crate) fn base_kind(s: &Statement) -> StatementKind {
    use Statement as S;
    match s {
        S::Insert(_) | S::Update(_) | S::Delete(_) | S::Merge(_) => StatementKind::Dml,
        S::Copy { to: false, .. } => StatementKind::Dml,
        S::Query(_) => StatementKind::Read,
        s if is_ddl(s) => StatementKind::Ddl,
        _ => StatementKind::Other,
    }
}

/// Schema changes, as DSQL counts them (GRANT/REVOKE count as DDL).
pub(crate) fn is_ddl(s: &Statement) -> bool {
    use Statement as S;
    matches!(
        s,
        S::CreateTable(_)
            | S::CreateIndex(_)
            | S::CreateView(_)
            | S::CreateSequence { .. }
            | S::CreateType { .. }
            | S::CreateFunction(_)
            | S::CreateRole(_)
            | S::CreateUser(_)
            | S::CreateDomain(_)
            | S::CreateProcedure { .. }
            | S::CreateTrigger(_)
            | S::CreateExtension(_)
            | S::CreateSchema { .. }
            | S::CreateDatabase { .. }
            | S::CreatePolicy(_)
            | S::CreateServer(_)
            | S::CreateStatistics(_)
            | S::AlterTable(_)
            | S::AlterIndex { .. }
            | S::AlterFunction(_)
            | S::AlterPolicy(_)
            | S::AlterType(_)
            | S::AlterView { .. }
            | S::AlterViewOperation { .. }
            | S::AlterSequence(_)
            | S::AlterStatistics(_)
            | S::AlterRole { .. }
            | S::AlterSchema(_)
            | S::AlterUser(_)
            | S::AlterDefaultPrivileges { .. }
            | S::Drop { .. }
            | S::DropRoutine { .. }
            | S::DropFunction(_)
            | S::DropDomain(_)
            | S::DropTrigger(_)
            | S::DropPolicy(_)
            | S::DropExtension(_)
            | S::DropProcedure { .. }
            | S::Truncate(_)
            | S::Comment { .. }
            | S::Grant(_)
            | S::Revoke(_)
            | S::AwsIamGrant { .. }
            | S::AwsIamRevoke { .. }
    )
}

/// Data changes, as DSQL counts them for the DDL/DML mixing rule.
pub(crate) fn is_dml(s: &Statement) -> bool {
    matches!(
        s,
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) | Statement::Merge(_)
    )
}

/// The command tag an agent sees for a statement (PostgreSQL's spelling where it has one).
pub(crate) fn command_tag(s: &Statement) -> String {
    use Statement as S;
    let fixed = match s {
        S::Query(_) => "SELECT",
        S::Insert(_) => "INSERT",
        S::Update(_) => "UPDATE",
        S::Delete(_) => "DELETE",
        S::Merge(_) => "MERGE",
        S::Copy { .. } => "COPY",
        S::Explain { .. } => "EXPLAIN",
        S::Analyze(_) => "ANALYZE",
        S::Vacuum(_) => "VACUUM",
        S::Truncate(_) => "TRUNCATE TABLE",
        S::Set(Set::SetTransaction { .. }) => "SET",
        S::Set(_) => "SET",
        S::Reset(_) => "RESET",
        S::Discard { .. } => "DISCARD",
        S::ShowVariable { .. } | S::ShowVariables { .. } => "SHOW",
        S::StartTransaction { .. } => "BEGIN",
        S::Commit { .. } => "COMMIT",
        S::Rollback { .. } => "ROLLBACK",
        S::Savepoint { .. } => "SAVEPOINT",
        S::ReleaseSavepoint { .. } => "RELEASE",
        S::Call(_) => "CALL",
        S::Load { .. } => "LOAD",
        S::LISTEN { .. } => "LISTEN",
        S::UNLISTEN { .. } => "UNLISTEN",
        S::NOTIFY { .. } => "NOTIFY",
        S::Lock(_) => "LOCK TABLE",
        S::Prepare { .. } => "PREPARE",
        S::Execute { .. } => "EXECUTE",
        S::Deallocate { .. } => "DEALLOCATE",
        S::Declare { .. } => "DECLARE CURSOR",
        S::Fetch { .. } => "FETCH",
        S::Close { .. } => "CLOSE CURSOR",
        S::Comment { .. } => "COMMENT",
        S::CreateTable(_) => "CREATE TABLE",
        S::CreateIndex(_) => "CREATE INDEX",
        S::CreateView(v) if v.materialized => "CREATE MATERIALIZED VIEW",
        S::CreateView(_) => "CREATE VIEW",
        S::CreateSequence { .. } => "CREATE SEQUENCE",
        S::CreateSchema { .. } => "CREATE SCHEMA",
        S::CreateRole(_) => "CREATE ROLE",
        S::CreateUser(_) => "CREATE ROLE",
        S::CreateDomain(_) => "CREATE DOMAIN",
        S::CreateStatistics(_) => "CREATE STATISTICS",
        S::CreateExtension(_) => "CREATE EXTENSION",
        S::CreateTrigger(_) => "CREATE TRIGGER",
        S::CreatePolicy(_) => "CREATE POLICY",
        S::CreateDatabase { .. } => "CREATE DATABASE",
        S::CreateType { .. } => "CREATE TYPE",
        S::CreateFunction(_) => "CREATE FUNCTION",
        S::CreateProcedure { .. } => "CREATE PROCEDURE",
        S::CreateServer(_) => "CREATE SERVER",
        S::AlterTable(_) => "ALTER TABLE",
        S::AlterIndex { .. } => "ALTER INDEX",
        S::AlterView { .. } | S::AlterViewOperation { .. } => "ALTER VIEW",
        S::AlterSequence(_) => "ALTER SEQUENCE",
        S::AlterStatistics(_) => "ALTER STATISTICS",
        S::AlterRole { .. } => "ALTER ROLE",
        S::AlterUser(_) => "ALTER ROLE",
        S::AlterSchema(_) => "ALTER SCHEMA",
        S::AlterType(_) => "ALTER TYPE",
        S::AlterFunction(_) => "ALTER FUNCTION",
        S::AlterPolicy(_) => "ALTER POLICY",
        S::AlterDefaultPrivileges { .. } => "ALTER DEFAULT PRIVILEGES",
        S::Drop { object_type, .. } => return format!("DROP {object_type}"),
        S::DropFunction(_) => "DROP FUNCTION",
        S::DropProcedure { .. } => "DROP PROCEDURE",
        S::DropDomain(_) => "DROP DOMAIN",
        S::DropTrigger(_) => "DROP TRIGGER",
        S::DropPolicy(_) => "DROP POLICY",
        S::DropExtension(_) => "DROP EXTENSION",
        S::Grant(_) => "GRANT",
        S::Revoke(_) => "REVOKE",
        S::AwsIamGrant { .. } => "AWS IAM GRANT",
        S::AwsIamRevoke { .. } => "AWS IAM REVOKE",
        other => {
            // Fall back on the statement's own first words.
            let text = other.to_string();
            let words: Vec<&str> = text.split_whitespace().take(2).collect();
            return match words.as_slice() {
                [a, b]
                    if matches!(a.to_ascii_uppercase().as_str(), "CREATE" | "ALTER" | "DROP") =>
                {
                    format!("{} {}", a.to_ascii_uppercase(), b.to_ascii_uppercase())
                }
                [a, ..] => a.to_ascii_uppercase(),
                [] => "UNKNOWN".into(),
            };
        }
    };
    fixed.to_owned()
}
