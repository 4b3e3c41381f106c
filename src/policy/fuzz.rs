//! Randomised tests of the whole policy (a property test without a framework:
//! `fastrand` with fixed seeds, so failures reproduce).
//!
//! Properties: nothing panics (a panic in the checker thread would surface as
//! the "internal error" refusal); and whatever the guard accepts passes a
//! second, independent reading of the text by the lexer in `scan`: no code
//! word naming a dangerous function is followed by `(`, and no code follows a
//! `;`. The lexer and sqlparser share no code, so a disagreement between them
//! on where strings, names or comments end shows up here.

use super::functions::{self, Class};
use super::scan::{self, Sink};
use super::{Access, Placeholders, RuleSet, check, check_rules, lint};

const FRAGMENTS: &[&str] = &[
    "SELECT ",
    "SELECT 1",
    " FROM t",
    " WHERE ",
    " a ",
    "1",
    "'",
    "''",
    "\"",
    "\"\"",
    "$$",
    "$a$",
    "$1",
    "$1$",
    "/*",
    "*/",
    "--",
    "\n",
    " ",
    "\t",
    "U&\"",
    "U&'",
    "u&\"pg_sl\\0065ep\"",
    "\\0065",
    "\\+000065",
    " UESCAPE '!'",
    "!0065",
    "%s",
    "%%",
    "%",
    ";",
    "BEGIN",
    "COMMIT",
    "INSERT INTO t VALUES (1)",
    "(",
    ")",
    ",",
    "E'",
    "e'",
    "\\'",
    "\\",
    "pg_sleep",
    "pg_sleep(1)",
    "PG_SLEEP(1)",
    "\"pg_sleep\"(1)",
    "\"PG_SLEEP\"(1)",
    "pg_catalog.",
    "dblink(",
    "set_config(",
    "'row_security'",
    "COPY t TO PROGRAM 'x'",
    "CALL sys.wait_for_job('x')",
    "ALTER TABLE async ",
    "EXPLAIN ANALYZE ",
    "WITH x AS (",
    "1+",
    " UNION SELECT ",
    " OR 1=1",
    "é",
    "\u{00a0}",
    "😀",
    "::text",
    "[1]",
    " AS ",
    "x",
    "1e",
    "0x",
    "?",
    "#",
    "`",
    "{fn ",
    "}",
    " FOR UPDATE",
    " INTO t2",
    "nextval('s')",
    "CREATE INDEX i ON t (a DESC)",
    "SET row_security = off",
    "DO $$ x $$",
];

fn random_sql(rng: &mut fastrand::Rng) -> String {
    let mut s = String::new();
    if rng.bool() {
        s.push_str("SELECT ");
    }
    for _ in 0..rng.usize(1..14) {
        if rng.u8(..10) == 0 {
            // raw characters, including ones the fragments lack
            let c = match rng.u8(..4) {
                0 => rng.char('\u{20}'..='\u{7e}'),
                1 => rng.char('\u{80}'..='\u{2fff}'),
                2 => rng.char('\0'..='\u{1f}'),
                _ => rng.alphanumeric(),
            };
            s.push(c);
        } else {
            s.push_str(FRAGMENTS[rng.usize(..FRAGMENTS.len())]);
        }
    }
    s
}

const TEXT: &[&str] = &[
    "a",
    " ",
    "''",
    "\\",
    "pg_sleep(1)",
    ";",
    "--",
    "/*",
    "*/",
    "$$",
    "$q",
    "\"",
    "U&\"x\"",
    "%s",
    "\n",
    "é",
    "DROP TABLE t",
    "e'",
    "U&'",
];

fn text(rng: &mut fastrand::Rng, extra: &[&str]) -> String {
    let mut s = String::new();
    for _ in 0..rng.usize(0..5) {
        if !extra.is_empty() && rng.bool() {
            s.push_str(extra[rng.usize(..extra.len())]);
        } else {
            s.push_str(TEXT[rng.usize(..TEXT.len())]);
        }
    }
    s
}

fn gap(rng: &mut fastrand::Rng) -> String {
    match rng.u8(..6) {
        0 => format!(
            "/* {} */",
            text(rng, &[]).replace("*/", "").replace("/*", "")
        ),
        1 => format!(
            "/* /* {} */ */",
            text(rng, &["x"]).replace("*/", "").replace("/*", "")
        ),
        2 => format!("-- {}\n", text(rng, &[]).replace('\n', "")),
        3 => ["\n\t", "\r", "-- x\r", "/* /* */ */"][rng.usize(..4)].into(),
        _ => " ".into(),
    }
}

fn expr(rng: &mut fastrand::Rng, depth: usize) -> String {
    let calls = [
        "count",
        "lower",
        "pg_sleep",
        "\"PG_SLEEP\"",
        "\"pg_sleep\"",
        "abs",
        "coalesce",
        "pg_catalog.pg_sleep",
        "dblink",
        "sleep",
        "\"Lower\"",
        "U&\"pg_sl\\0065ep\"",
        "U&\"x\\0041\"",
    ];
    match rng.u8(..10) {
        0 => format!("'{}'", text(rng, &[]).replace('\'', "''")),
        1 => format!(
            "E'{}'",
            text(rng, &["\\'", "\\\\"])
                .replace('\\', "\\\\")
                .replace('\'', "\\'")
        ),
        2 => format!("$q${}$q$", text(rng, &[]).replace("$q", "")),
        3 => format!("\"{}\"", text(rng, &["pg_sleep"]).replace('"', "\"\"")),
        4 => format!(
            "U&\"{}\"",
            ["pg_sl\\0065ep", "x\\0041", "a\\+000062"][rng.usize(..3)]
        ),
        5 => format!(
            "U&'{}'",
            text(rng, &["\\0041"])
                .replace('\\', "\\\\")
                .replace('\'', "''")
        ),
        6 if depth < 3 => format!(
            "{}({}{})",
            calls[rng.usize(..calls.len())],
            gap(rng),
            expr(rng, depth + 1)
        ),
        7 if depth < 3 => format!(
            "{}{}||{}{}",
            expr(rng, depth + 1),
            gap(rng),
            gap(rng),
            expr(rng, depth + 1)
        ),
        8 => rng.u32(..1000).to_string(),
        _ => ["a", "t.a", "\"o'clock\"", "x$y", "u", "e", "U"][rng.usize(..7)].into(),
    }
}

fn structured_sql(rng: &mut fastrand::Rng) -> String {
    let mut s = format!("SELECT{}", gap(rng));
    for i in 0..rng.usize(1..4) {
        if i > 0 {
            s.push(',');
            s.push_str(&gap(rng));
        }
        s.push_str(&expr(rng, 0));
    }
    if rng.bool() {
        s.push_str(" FROM t");
    }
    if rng.u8(..4) == 0 {
        s.push_str(&gap(rng));
        s.push(';');
        if rng.bool() {
            s.push_str(" DROP TABLE t");
        }
    }
    s
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Punct(char),
}

/// The second reading: code words (unquoted folded, quoted as written) and punctuation.
#[derive(Default)]
struct Skeleton {
    toks: Vec<Tok>,
    word: String,
}

impl Skeleton {
    fn end_word(&mut self) {
        if !self.word.is_empty() {
            let w = std::mem::take(&mut self.word);
            self.toks.push(Tok::Word(w.to_ascii_lowercase()));
        }
    }
}

impl Sink for Skeleton {
    fn opaque(&mut self, text: &str) {
        self.end_word();
        if let Some(inner) = text.strip_prefix('"') {
            let inner = inner.strip_suffix('"').unwrap_or(inner);
            self.toks.push(Tok::Word(inner.replace("\"\"", "\"")));
        } else {
            self.toks.push(Tok::Punct('\''));
        }
    }
    fn code(&mut self, text: &str) {
        for c in text.chars() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '$' || !c.is_ascii() {
                self.word.push(c);
            } else {
                self.end_word();
                self.toks.push(Tok::Punct(c));
            }
        }
    }
    fn space(&mut self, _run: &str) {
        self.end_word();
    }
    fn unicode(&mut self, _original: &str, decoded: &str, quote: u8) {
        self.end_word();
        self.toks.push(if quote == b'"' {
            Tok::Word(decoded.to_owned())
        } else {
            Tok::Punct('\'')
        });
    }
}

fn skeleton(sql: &str) -> Option<Vec<Tok>> {
    let mut s = Skeleton::default();
    scan::walk(sql, &mut s).ok()?;
    s.end_word();
    Some(s.toks)
}

/// Checks an accepted statement against the second reading.
fn second_opinion(sql: &str) -> Result<(), String> {
    let Some(toks) = skeleton(sql) else {
        return Err("the lexer cannot read accepted SQL".into());
    };
    for w in toks.windows(2) {
        if let (Tok::Word(name), Tok::Punct('(')) = (&w[0], &w[1])
            && matches!(functions::class_of(name), Some(Class::Refused(_)))
        {
            return Err(format!("dangerous call {name}( accepted"));
        }
    }
    if let Some(p) = toks.iter().position(|t| *t == Tok::Punct(';'))
        && toks[p + 1..].iter().any(|t| *t != Tok::Punct(';'))
    {
        return Err("code after ';' accepted".into());
    }
    Ok(())
}

fn exercise(sql: &str) {
    let combos = [
        (None, Placeholders::Psycopg, Access::ReadOnly),
        (None, Placeholders::Psycopg, Access::ReadWrite),
        (Some(1), Placeholders::Psycopg, Access::ReadWrite),
        (Some(1), Placeholders::Numbered, Access::ReadOnly),
    ];
    for (params, style, access) in combos {
        match check(sql, params, style, access) {
            Ok(c) => {
                if let Err(why) = second_opinion(&c.sql) {
                    panic!("{why}: {sql:?} -> {:?} ({access:?})", c.sql);
                }
            }
            Err(e) => assert!(!e.to_string().contains("internal error"), "{sql:?}: {e}"),
        }
    }
    if let Err(v) = check_rules(&[sql], RuleSet::Power) {
        assert!(!v.message.contains("internal error"), "{sql:?}: {v}");
    }
    let v = lint(sql, false);
    assert!(!v.to_string().contains("internal error"), "{sql:?}: {v}");
}

#[test]
fn random_sql_never_panics_and_accepted_sql_reads_the_same_to_the_lexer() {
    for seed in 0..1500u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let sql = random_sql(&mut rng);
        exercise(&sql);
    }
}

#[test]
fn structured_sql_reads_the_same_to_both_readers() {
    let mut accepted = 0;
    for seed in 0..2500u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let sql = structured_sql(&mut rng);
        if check(&sql, None, Placeholders::Psycopg, Access::ReadOnly).is_ok() {
            accepted += 1;
        }
        exercise(&sql);
    }
    // the property has teeth only if many statements get through
    assert!(accepted > 500, "only {accepted} accepted");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..300 {
        let len = rng.usize(0..200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        exercise(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn second_opinion_sees_what_it_should() {
    assert!(second_opinion("SELECT pg_catalog.pg_sleep (1)").is_err());
    assert!(second_opinion("SELECT \"pg_sleep\"(1)").is_err());
    // A quoted upper-case spelling names another function, but the refused families are
    // matched without case so that no spelling can dodge them.
    assert!(second_opinion("SELECT \"PG_SLEEP\"(1)").is_err());
    assert!(second_opinion("SELECT 'pg_sleep(1)'").is_ok());
    assert!(second_opinion("SELECT 1; SELECT 2").is_err());
    assert!(second_opinion("SELECT 1;").is_ok());
}

/// Differential test against PostgreSQL's own grammar (libpg_query), behind the
/// `pg-oracle` feature: `cargo test --features pg-oracle --lib policy::fuzz::pg`.
#[cfg(feature = "pg-oracle")]
mod pg {
    use super::*;

    /// What PostgreSQL's parser sees in SQL the guard accepted: an error if it
    /// reads several statements or a call to a dangerous function.
    fn postgres_disagrees(sql: &str, wait_for_job: bool) -> Option<String> {
        // DSQL-only syntax does not parse here; PostgreSQL would not run it either.
        let parsed = pg_query::parse(sql, 0).ok()?;
        if parsed.protobuf.stmts.len() > 1 {
            return Some(format!(
                "PostgreSQL reads {} statements",
                parsed.protobuf.stmts.len()
            ));
        }
        for f in parsed.call_functions() {
            let base = f.rsplit('.').next().unwrap_or(&f);
            if matches!(functions::class_of(base), Some(Class::Refused(_))) {
                return Some(format!("PostgreSQL reads a call to {f}"));
            }
        }
        let types = parsed.statement_types();
        let refused = |t: &str| {
            matches!(
                t,
                "TransactionStmt" | "DoStmt" | "LoadStmt" | "CreateFunctionStmt"
            ) || (t == "CallStmt" && !wait_for_job)
        };
        if types.iter().any(|t| refused(t)) {
            return Some(format!("PostgreSQL reads {types:?}"));
        }
        None
    }

    /// Checks `sql` in both modes; every accepted form is read by PostgreSQL's parser, which
    /// must agree that it is safe. Returns how many accepted forms PostgreSQL compared. An
    /// accepted statement PostgreSQL cannot parse is reported (a panic), never skipped:
    /// what PostgreSQL cannot read is not what the guard checked.
    fn differential(sql: &str) -> usize {
        let (compared, unparsed) = differential_report(sql);
        if let Some(u) = unparsed.first() {
            panic!("{u}");
        }
        compared
    }

    /// `differential`, reporting the accepted statements PostgreSQL cannot parse instead
    /// of failing on the first (the random corpus counts them).
    fn differential_report(sql: &str) -> (usize, Vec<String>) {
        let mut unparsed = Vec::new();
        let mut compared = 0;
        for access in [Access::ReadOnly, Access::ReadWrite] {
            if let Ok(c) = check(sql, None, Placeholders::Psycopg, access) {
                let wait = c.kind == super::super::StatementKind::WaitForJob;
                if pg_query::parse(&c.sql, 0).is_err() {
                    // DSQL-only syntax (ASYNC, AWS IAM GRANT) is the one known exception.
                    if is_dsql_only(&c.sql) {
                        continue;
                    }
                    unparsed.push(format!(
                        "PostgreSQL cannot parse {:?}, which the guard accepted in {access:?}",
                        c.sql
                    ));
                    continue;
                }
                compared += 1;
                if let Some(why) = postgres_disagrees(&c.sql, wait) {
                    panic!("{why}: guard accepted {sql:?} as {:?} in {access:?}", c.sql);
                }
            }
        }
        (compared, unparsed)
    }

    /// Statements with DSQL's own syntax, which PostgreSQL's parser refuses.
    fn is_dsql_only(sql: &str) -> bool {
        let upper = sql.to_ascii_uppercase();
        upper.contains(" ASYNC") || upper.starts_with("AWS IAM")
    }

    #[test]
    fn the_oracle_sees_what_it_should() {
        assert!(postgres_disagrees("CALL p()", false).is_some());
        assert!(postgres_disagrees("CALL sys.wait_for_job('x')", true).is_none());
        assert!(postgres_disagrees("SELECT pg_sleep(1)", false).is_some());
        assert!(postgres_disagrees(r#"SELECT U&"pg_sl\0065ep"(1)"#, false).is_some());
        assert!(postgres_disagrees("SELECT 1; SELECT 2", false).is_some());
        assert!(postgres_disagrees("SELECT \"PG_SLEEP\"(1)", false).is_some());
        assert!(postgres_disagrees("SELECT 'pg_sleep(1)'", false).is_none());
    }

    #[test]
    fn guard_and_postgres_agree_on_a_corpus() {
        let corpus = [
            "SELECT '\\', pg_sleep(1) --'",
            "SELECT $1$ pg_sleep(1) $1$",
            "SELECT 1e'\\' , pg_sleep(1) --'",
            "SELECT e'\\'', pg_sleep(1) --'",
            "SELECT 1 /* /* */ pg_sleep(1) */",
            "SELECT 1 /* /* */, pg_sleep(1) -- */",
            "SELECT $a$ $b$ $a$, pg_sleep(1) -- $b$",
            "SELECT U&'\\0027', pg_sleep(1) --'",
            "SELECT U&'!0027' UESCAPE '!', pg_sleep(1) --'",
            "SELECT \"a\"\"\", pg_sleep(1) --\"",
            "SELECT 1 -- \r, pg_sleep(1)",
            "SELECT x$$ , pg_sleep(1) --$$",
            "SELECT 1 #- '{a}', pg_sleep(1)",
            "SELECT 'a' -- \n 'b', pg_sleep(1)",
        ];
        // Most of these hide a call the guard must refuse (PostgreSQL either reads the call or
        // refuses the text itself: `$1$` is no dollar quote to it). Nested comments really do
        // hide it (PostgreSQL nests them too): those the guard accepts, and PostgreSQL,
        // comparing in both modes, agrees.
        let harmless = [
            "SELECT 1 /* /* */ pg_sleep(1) */",
            "SELECT 1 /* /* */, pg_sleep(1) -- */",
        ];
        let mut compared = 0;
        for sql in corpus {
            let n = differential(sql);
            compared += n;
            if harmless.contains(&sql) {
                assert_eq!(n, 2, "{sql:?} accepted and compared in both modes");
            } else {
                assert_eq!(n, 0, "the guard accepted {sql:?}");
                assert!(
                    postgres_disagrees(sql, false).is_some() || pg_query::parse(sql, 0).is_err(),
                    "PostgreSQL reads {sql:?} as harmless: a dead corpus case"
                );
            }
        }
        assert_eq!(compared, 2 * harmless.len());
        // Reads the guard must accept, each compared by PostgreSQL in both modes.
        let accepted = [
            "SELECT 'pg_sleep(1)' AS s, \"PG_SLEEP\" FROM t",
            "SELECT (t).a, ts_rank(to_tsvector('a b'), to_tsquery('a')) FROM t",
            "SELECT x FROM t WHERE x IN (1, 2, 3) ORDER BY 1 LIMIT 5",
            "SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t",
            "SELECT '{\"a\":1}'::jsonb -> 'a', '{\"a\":1}'::jsonb ->> 'a'",
            "SELECT 'a''b', E'\\n', $$x$$ FROM t -- trailing",
        ];
        let compared: usize = accepted.iter().map(|sql| differential(sql)).sum();
        assert_eq!(
            compared,
            2 * accepted.len(),
            "every accepted read is compared in both modes"
        );
    }

    #[test]
    fn guard_and_postgres_agree_on_random_sql() {
        let mut compared = 0;
        // POLICY_FUZZ_SEEDS=100000 for a longer local run
        let seeds = std::env::var("POLICY_FUZZ_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3000u64);
        let mut unparsed = Vec::new();
        for seed in 0..seeds {
            let mut rng = fastrand::Rng::with_seed(seed);
            let (n, u) = differential_report(&structured_sql(&mut rng));
            compared += n;
            unparsed.extend(u);
            let mut rng = fastrand::Rng::with_seed(seed + 1_000_000);
            let (n, u) = differential_report(&random_sql(&mut rng));
            compared += n;
            unparsed.extend(u);
        }
        let report = format!(
            "pg-oracle: {compared} accepted statements compared, {} accepted but unparseable by PostgreSQL",
            unparsed.len()
        );
        eprintln!("{report}"); // stdout-ok: stderr
        for u in unparsed.iter().take(20) {
            eprintln!("  {u}"); // stdout-ok: stderr
        }
        assert!(compared > 500, "only {compared} statements compared");
        // sqlparser accepts a few spellings PostgreSQL refuses; the server would send them and
        // the cluster would refuse them too. They are reported above, and must stay rare.
        assert!(
            unparsed.len() * 20 < compared,
            "{} accepted statements PostgreSQL cannot parse (of {compared})",
            unparsed.len()
        );
    }
}
