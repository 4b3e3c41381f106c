//! The sandbox's statement rewriter: DSQL-only statements that PostgreSQL cannot parse,
//! turned into calls of the emulation installed in the sandbox (see `emulation.rs`), and
//! statements DSQL refuses but PostgreSQL would run, refused.
//!
//! It runs in the executor on every statement of a unit, after the SQL policy accepted
//! it (so it sees exactly one statement) and before it is prepared. It works on tokens,
//! not a parse tree: the forms it looks for are fixed keyword prefixes, and cutting the
//! original text at token positions keeps the caller's SQL byte for byte.
//!
//! | Statement | Becomes |
//! |---|---|
//! | `CREATE [UNIQUE] INDEX ASYNC …` | `SELECT * FROM sys.create_index_async('CREATE [UNIQUE] INDEX …')` |
//! | `ALTER TABLE ASYNC t VALIDATE CONSTRAINT c` | `SELECT * FROM sys.validate_constraint_async('ALTER TABLE t VALIDATE CONSTRAINT c', 't', 'c')` |
//! | `AWS IAM GRANT/REVOKE …` | refused: 0A000, no IAM in the sandbox |
//! | an isolation level other than REPEATABLE READ (`SET TRANSACTION`, `SET SESSION CHARACTERISTICS`, `SET [default_]transaction_isolation`) | refused: 0A000 |
//!
//! Everything else passes unchanged.

// The executor's hook hands refusals over as a `DbError` by value (it becomes the
// statement's error unchanged); a refusal is rare and off the hot path.
#![allow(clippy::result_large_err)]

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

use crate::connection::DbError;

/// Rewrites one statement for the sandbox: `Ok(None)` leaves it as it is.
pub fn rewrite(sql: &str) -> Result<Option<String>, DbError> {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location() else {
        return Ok(None); // the database reports the syntax error
    };
    let text = Text::new(sql, tokens);
    let words = text.leading_words(8);
    let is = |i: usize, w: &str| words.get(i).is_some_and(|x| x == w);

    // CREATE [UNIQUE] INDEX ASYNC ...
    let async_at = if is(0, "CREATE") && is(1, "INDEX") && is(2, "ASYNC") {
        Some(2)
    } else if is(0, "CREATE") && is(1, "UNIQUE") && is(2, "INDEX") && is(3, "ASYNC") {
        Some(3)
    } else {
        None
    };
    if let Some(at) = async_at {
        let ddl = text.without_significant(at);
        return Ok(Some(format!(
            "SELECT * FROM sys.create_index_async({})",
            dollar_quote(&ddl)
        )));
    }

    // ALTER TABLE ASYNC [IF EXISTS] [ONLY] name VALIDATE CONSTRAINT c
    if is(0, "ALTER") && is(1, "TABLE") && is(2, "ASYNC") {
        return validate_constraint(&text).map(Some);
    }

    if is(0, "AWS") && is(1, "IAM") && (is(2, "GRANT") || is(2, "REVOKE")) {
        return Err(unsupported(format!(
            "AWS IAM {} is not available in the local sandbox: it maps a database role to an IAM \
             role, and the sandbox has no IAM. Run it against a real cluster; in the sandbox, \
             roles connect without IAM (create them with CREATE ROLE ... LOGIN).",
            words[2]
        )));
    }

    if is(0, "SET") {
        isolation(&text, &words)?;
    }
    Ok(None)
}

fn unsupported(message: String) -> DbError {
    DbError {
        code: Some("0A000".into()),
        severity: Some("ERROR".into()),
        message,
        detail: None,
        hint: None,
        position: None,
        broken: false,
    }
}

/// Refuses an isolation level other than REPEATABLE READ, DSQL's only one.
fn isolation(text: &Text<'_>, words: &[String]) -> Result<(), DbError> {
    let refuse = |level: &str| {
        Err(unsupported(format!(
            "Unsupported isolation level: {}. Aurora DSQL runs every transaction at REPEATABLE READ \
             (snapshot isolation); the sandbox does the same.",
            level.to_ascii_lowercase()
        )))
    };
    let all = text.significant_upper();
    // SET TRANSACTION ... / SET SESSION CHARACTERISTICS AS TRANSACTION ...
    if let Some(pos) = all
        .windows(2)
        .position(|w| w[0] == "ISOLATION" && w[1] == "LEVEL")
    {
        let level = all[pos + 2..]
            .iter()
            .take_while(|w| *w != ",")
            .take(2)
            .cloned()
            .collect::<Vec<_>>();
        let level = match level.first().map(String::as_str) {
            Some("READ" | "REPEATABLE") => level.join(" "),
            Some(one) => one.to_owned(),
            None => return Ok(()),
        };
        if level != "REPEATABLE READ" {
            return refuse(&level);
        }
        return Ok(());
    }
    // SET [SESSION | LOCAL] [default_]transaction_isolation { TO | = } value
    let mut i = 1;
    if matches!(words.get(i).map(String::as_str), Some("SESSION" | "LOCAL")) {
        i += 1;
    }
    if matches!(
        words.get(i).map(String::as_str),
        Some("DEFAULT_TRANSACTION_ISOLATION" | "TRANSACTION_ISOLATION")
    ) {
        let value = text.value_after_setting(i);
        let normalized = value.trim().to_ascii_uppercase();
        if !normalized.is_empty() && normalized != "REPEATABLE READ" && normalized != "DEFAULT" {
            return refuse(&normalized);
        }
    }
    Ok(())
}

fn validate_constraint(text: &Text<'_>) -> Result<String, DbError> {
    let sig = text.significant();
    let upper = text.significant_upper();
    let shape = || {
        unsupported(
            "ALTER TABLE ASYNC only takes VALIDATE CONSTRAINT: ALTER TABLE ASYNC <table> VALIDATE CONSTRAINT <name>"
                .into(),
        )
    };
    let mut i = 3;
    if upper.get(i).is_some_and(|w| w == "IF") && upper.get(i + 1).is_some_and(|w| w == "EXISTS") {
        i += 2;
    }
    if upper.get(i).is_some_and(|w| w == "ONLY") {
        i += 1;
    }
    let name_start = i;
    while i < sig.len() && upper[i] != "VALIDATE" {
        i += 1;
    }
    if i == name_start || upper.get(i + 1).is_none_or(|w| w != "CONSTRAINT") {
        return Err(shape());
    }
    let Some(constraint) = sig.get(i + 2).and_then(|t| identifier(&t.token)) else {
        return Err(shape());
    };
    if sig.len() > i + 3 && !(sig.len() == i + 4 && matches!(sig[i + 3].token, Token::SemiColon)) {
        return Err(shape());
    }
    let table = text.between(name_start, i);
    let ddl = text.without_significant(2);
    Ok(format!(
        "SELECT * FROM sys.validate_constraint_async({}, {}, {})",
        dollar_quote(&ddl),
        dollar_quote(table.trim()),
        dollar_quote(&constraint)
    ))
}

/// An identifier as PostgreSQL stores it: quoted as written, unquoted folded to lower case.
fn identifier(token: &Token) -> Option<String> {
    match token {
        Token::Word(w) if w.quote_style.is_some() => Some(w.value.clone()),
        Token::Word(w) => Some(w.value.to_lowercase()),
        _ => None,
    }
}

/// `text` as a dollar-quoted literal whose tag does not occur in it.
fn dollar_quote(text: &str) -> String {
    let mut n = 0;
    loop {
        let tag = if n == 0 {
            "$ddl$".to_owned()
        } else {
            format!("$ddl{n}$")
        };
        if !text.contains(&tag) && !text.ends_with(&tag[..tag.len() - 1]) {
            return format!("{tag}{text}{tag}");
        }
        n += 1;
    }
}

/// The statement's text with its tokens and their byte offsets.
struct Text<'a> {
    sql: &'a str,
    tokens: Vec<TokenWithSpan>,
    /// Byte offset of each token's start.
    starts: Vec<usize>,
}

impl<'a> Text<'a> {
    fn new(sql: &'a str, tokens: Vec<TokenWithSpan>) -> Text<'a> {
        // Line starts in bytes, then columns (in chars) to bytes.
        let mut line_starts = vec![0usize];
        for (i, b) in sql.bytes().enumerate() {
            if b == b'\n' {
                line_starts.push(i + 1);
            }
        }
        let offset = |line: u64, column: u64| -> usize {
            let Some(&start) = line_starts.get((line as usize).saturating_sub(1)) else {
                return sql.len();
            };
            sql[start..]
                .char_indices()
                .nth((column as usize).saturating_sub(1))
                .map_or(sql.len(), |(i, _)| start + i)
        };
        let starts = tokens
            .iter()
            .map(|t| offset(t.span.start.line, t.span.start.column))
            .collect();
        Text {
            sql,
            tokens,
            starts,
        }
    }

    fn significant_indices(&self) -> Vec<usize> {
        self.tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_)))
            .map(|(i, _)| i)
            .collect()
    }

    fn significant(&self) -> Vec<&TokenWithSpan> {
        self.significant_indices()
            .into_iter()
            .map(|i| &self.tokens[i])
            .collect()
    }

    /// Significant tokens as upper-case text (unquoted words upper-cased; other tokens
    /// as written).
    fn significant_upper(&self) -> Vec<String> {
        self.significant()
            .iter()
            .map(|t| match &t.token {
                Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
                other => other.to_string(),
            })
            .collect()
    }

    /// The first `n` significant tokens, upper-cased when they are unquoted words.
    fn leading_words(&self, n: usize) -> Vec<String> {
        let mut all = self.significant_upper();
        all.truncate(n);
        all
    }

    fn start_of(&self, token_index: usize) -> usize {
        self.starts
            .get(token_index)
            .copied()
            .unwrap_or(self.sql.len())
    }

    /// The text from significant token `from` up to (not including) significant token `to`.
    fn between(&self, from: usize, to: usize) -> &'a str {
        let sig = self.significant_indices();
        let start = self.start_of(sig[from]);
        let end = sig.get(to).map_or(self.sql.len(), |&i| self.start_of(i));
        &self.sql[start..end]
    }

    /// The text without significant token `k` (and without a trailing `;`).
    fn without_significant(&self, k: usize) -> String {
        let sig = self.significant_indices();
        let at = sig[k];
        let start = self.start_of(at);
        // The keyword goes with the blank after it; a comment stays.
        let blank = matches!(
            self.tokens.get(at + 1).map(|t| &t.token),
            Some(Token::Whitespace(
                Whitespace::Space | Whitespace::Tab | Whitespace::Newline
            ))
        );
        let end = self.start_of(at + 1 + usize::from(blank));
        let mut out = format!("{}{}", &self.sql[..start], &self.sql[end..]);
        if let Some(&last) = sig.last()
            && matches!(self.tokens[last].token, Token::SemiColon)
        {
            let cut = self.start_of(last) - (end - start);
            out.truncate(cut);
        }
        out.trim_end().to_owned()
    }

    /// The value of `SET <name> { TO | = } value`, where significant token `name_at`
    /// is the name: the rest of the statement, unquoted.
    fn value_after_setting(&self, name_at: usize) -> String {
        let sig = self.significant();
        let mut out = Vec::new();
        for t in sig.iter().skip(name_at + 2) {
            match &t.token {
                Token::SingleQuotedString(s) => out.push(s.clone()),
                Token::Word(w) => out.push(w.value.clone()),
                Token::SemiColon => break,
                other => out.push(other.to_string()),
            }
        }
        out.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(sql: &str) -> Option<String> {
        rewrite(sql).unwrap()
    }

    #[test]
    fn create_index_async_becomes_a_function_call() {
        assert_eq!(
            ok("CREATE INDEX ASYNC idx_a ON t (a)").as_deref(),
            Some("SELECT * FROM sys.create_index_async($ddl$CREATE INDEX idx_a ON t (a)$ddl$)")
        );
        assert_eq!(
            ok("  create unique index async if not exists u ON \"T\" (b) INCLUDE (c);").as_deref(),
            Some(
                "SELECT * FROM sys.create_index_async($ddl$  create unique index if not exists u ON \"T\" (b) INCLUDE (c)$ddl$)"
            )
        );
        // Multi-byte text before the keyword keeps byte offsets right.
        assert_eq!(
            ok("/* é */ CREATE INDEX ASYNC ON t (a) WHERE b = '$ddl$'").as_deref(),
            Some(
                "SELECT * FROM sys.create_index_async($ddl1$/* é */ CREATE INDEX ON t (a) WHERE b = '$ddl$'$ddl1$)"
            )
        );
        assert_eq!(ok("CREATE INDEX idx ON t (a)"), None);
        assert_eq!(ok("SELECT 'CREATE INDEX ASYNC'"), None);
    }

    #[test]
    fn validate_constraint_async() {
        assert_eq!(
            ok("ALTER TABLE ASYNC public.orders VALIDATE CONSTRAINT Orders_Check").as_deref(),
            Some(
                "SELECT * FROM sys.validate_constraint_async($ddl$ALTER TABLE public.orders VALIDATE CONSTRAINT Orders_Check$ddl$, $ddl$public.orders$ddl$, $ddl$orders_check$ddl$)"
            )
        );
        assert_eq!(
            ok("ALTER TABLE ASYNC \"T\" VALIDATE CONSTRAINT \"C\";").as_deref(),
            Some(
                "SELECT * FROM sys.validate_constraint_async($ddl$ALTER TABLE \"T\" VALIDATE CONSTRAINT \"C\"$ddl$, $ddl$\"T\"$ddl$, $ddl$C$ddl$)"
            )
        );
        let e = rewrite("ALTER TABLE ASYNC t ADD COLUMN x int").unwrap_err();
        assert_eq!(e.code(), Some("0A000"));
    }

    #[test]
    fn iam_and_isolation_are_refused() {
        let e = rewrite("AWS IAM GRANT app TO 'arn:aws:iam::1:role/r'").unwrap_err();
        assert_eq!(e.code(), Some("0A000"));
        assert!(e.message.contains("not available in the local sandbox"));
        for sql in [
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "set transaction read only, isolation level read committed",
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
            "SET default_transaction_isolation = 'serializable'",
            "SET SESSION transaction_isolation TO 'read committed'",
        ] {
            let e = rewrite(sql).unwrap_err();
            assert_eq!(e.code(), Some("0A000"), "{sql}");
            assert!(
                e.message.starts_with("Unsupported isolation level"),
                "{sql}"
            );
        }
        for sql in [
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            "SET default_transaction_isolation TO 'repeatable read'",
            "SET TRANSACTION READ ONLY",
            "SET search_path TO public",
        ] {
            assert_eq!(ok(sql), None, "{sql}");
        }
    }
}
