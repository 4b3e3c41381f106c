//! The guard's allowlist model, class by class (issue 16): function references in every
//! syntactic form, SQL-text executors, lexer-affecting and identity settings, write-mode
//! rules on system relations, roles, grants, temporary objects and DDL bodies; and the
//! legitimate reads that must keep working. Pure: no database (tests/trust.rs runs the same
//! classes through the real binary against a statement-logging PostgreSQL).

use aurora_dsql_mcp_server::policy::{
    Access, AllowedFunctions, Placeholders, PolicyError, StatementKind, check, check_with,
};

const RO: Access = Access::ReadOnly;
const RW: Access = Access::ReadWrite;

fn verdict(sql: &str, access: Access) -> Result<StatementKind, PolicyError> {
    check(sql, None, Placeholders::Numbered, access).map(|c| c.kind)
}

fn accepted(sql: &str, access: Access) -> StatementKind {
    verdict(sql, access).unwrap_or_else(|e| panic!("{sql:?} refused in {access:?}: {e}"))
}

/// Refused with an `Injection` reason that contains `needle`.
fn refused(sql: &str, access: Access, needle: &str) {
    match verdict(sql, access) {
        Err(PolicyError::Injection(why)) => {
            assert!(
                why.contains(needle),
                "{sql:?} in {access:?}: {why:?} lacks {needle:?}"
            )
        }
        other => {
            panic!("{sql:?} in {access:?}: expected a refusal naming {needle:?}, got {other:?}")
        }
    }
}

fn refused_both(sql: &str, needle: &str) {
    refused(sql, RO, needle);
    refused(sql, RW, needle);
}

#[test]
fn attribute_notation_is_a_call() {
    for (sql, name) in [
        ("SELECT (1).pg_sleep", "pg_sleep"),
        ("SELECT (5.0).pg_sleep FROM t", "pg_sleep"),
        ("SELECT ('/etc/passwd').pg_read_file", "pg_read_file"),
        (
            "SELECT ('postgresql.conf').\"pg_read_file\"",
            "pg_read_file",
        ),
        ("SELECT (42).pg_advisory_lock", "pg_advisory_lock"),
        (
            "SELECT (pid).pg_terminate_backend FROM pg_stat_activity",
            "pg_terminate_backend",
        ),
        ("SELECT (0).lo_unlink", "lo_unlink"),
        ("SELECT ('x').lo_from_bytea", "lo_from_bytea"),
        ("SELECT t.pg_stat_reset FROM t", "pg_stat_reset"),
        (
            "SELECT ('slot').pg_drop_replication_slot",
            "pg_drop_replication_slot",
        ),
        ("SELECT (ARRAY[1]).pg_sleep_for", "pg_sleep_for"),
        ("SELECT 1 FROM t WHERE (t.a).pg_sleep IS NULL", "pg_sleep"),
        ("SELECT s.x.pg_sleep FROM s", "pg_sleep"),
        ("SELECT (U&\"\\0070g_sleep\"(1))", "pg_sleep"),
        ("SELECT (1).U&\"pg_sl\\0065ep\"", "pg_sleep"),
    ] {
        refused_both(sql, &format!("Dangerous function call not allowed: {name}"));
    }
    // An unknown name in the system's pg_ space is not taken for a column.
    refused_both(
        "SELECT (1).pg_future_builtin",
        "Function not allowed: pg_future_builtin",
    );
}

#[test]
fn calls_in_every_position_and_spelling() {
    for sql in [
        "SELECT pg_sleep(1)",
        "SELECT pg_catalog.pg_sleep(1)",
        "SELECT \"pg_catalog\".\"pg_sleep\"(1)",
        "SELECT postgres.pg_catalog.pg_sleep(1)",
        "SELECT * FROM pg_sleep(1)",
        "SELECT * FROM pg_catalog.pg_sleep(1) AS s",
        "SELECT * FROM t, LATERAL pg_sleep(t.a) s",
        "SELECT count(*) FILTER (WHERE pg_sleep(1) IS NULL) FROM t",
        "SELECT sum(a) OVER (ORDER BY pg_sleep(0.1)::text) FROM t",
        "SELECT CASE WHEN true THEN pg_sleep(1) END",
        "SELECT ARRAY(SELECT pg_sleep(1))",
        "WITH x AS (SELECT pg_sleep(1)) SELECT * FROM x",
        "SELECT 1 WHERE EXISTS (SELECT pg_sleep(1))",
        "SELECT a FROM t ORDER BY pg_sleep(1)",
        "SELECT a FROM t GROUP BY a HAVING pg_sleep(1) IS NULL",
        "VALUES (pg_sleep(1))",
        "EXPLAIN ANALYZE SELECT pg_sleep(1)",
    ] {
        refused_both(sql, "pg_sleep");
    }
}

#[test]
fn functions_that_run_sql_text_are_refused() {
    for (sql, name) in [
        (
            "SELECT ts_stat('SELECT to_tsvector(body) FROM secrets')",
            "ts_stat",
        ),
        ("SELECT ts_stat($1)", "ts_stat"),
        (
            "SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, ''b''::tsquery')",
            "ts_rewrite",
        ),
        ("SELECT query_to_xml($1, true, true, '')", "query_to_xml"),
        (
            "SELECT table_to_xml('secrets', true, true, '')",
            "table_to_xml",
        ),
        (
            "SELECT schema_to_xml('public', true, true, '')",
            "schema_to_xml",
        ),
        ("SELECT database_to_xml(true, true, '')", "database_to_xml"),
        (
            "SELECT cursor_to_xml('c', 1, true, true, '')",
            "cursor_to_xml",
        ),
        (
            "SELECT * FROM dblink('host=x', 'SELECT 1') AS r(a int)",
            "dblink",
        ),
    ] {
        let sql_with_params = sql.contains("$1");
        let r = if sql_with_params {
            check(sql, Some(1), Placeholders::Numbered, RO)
        } else {
            check(sql, None, Placeholders::Numbered, RO)
        };
        match r {
            Err(PolicyError::Injection(why)) => assert!(
                why.contains(&format!("Dangerous function call not allowed: {name}")),
                "{sql}: {why}"
            ),
            other => panic!("{sql}: {other:?}"),
        }
    }
}

#[test]
fn read_only_allows_only_known_side_effect_free_functions() {
    refused(
        "SELECT my_report(1)",
        RO,
        "Function not allowed: my_report (in read-only mode only known built-in functions without side effects may be called; if it is your own SQL function, start the server with --allow-function my_report)",
    );
    refused(
        "SELECT public.lower('A')",
        RO,
        "Function not allowed: public.lower",
    );
    refused(
        "SELECT currtid2('t', '(0,1)')",
        RO,
        "Dangerous function call not allowed: currtid2",
    );
    refused("SELECT pg_catalog.pg_notify('c', 'x')", RO, "pg_notify");
    refused(
        "SELECT inet_server_addr(), pg_hba_file_rules()",
        RO,
        "pg_hba_file_rules",
    );
    refused(
        "SELECT 1 OPERATOR(public.+) 2",
        RO,
        "operator not allowed: OPERATOR(public.+)",
    );
    // The user vouches for their own function.
    let allowed = AllowedFunctions::parse(&["my_report".into()]).unwrap();
    let c = check_with(
        "SELECT my_report(1)",
        None,
        Placeholders::Numbered,
        RO,
        &allowed,
    )
    .unwrap();
    assert_eq!(c.kind, StatementKind::Read);
    // Writes stay writes, whoever vouches.
    assert!(matches!(
        check_with(
            "SELECT nextval('s')",
            None,
            Placeholders::Numbered,
            RO,
            &allowed
        ),
        Err(PolicyError::WriteNotAllowed(_))
    ));
    // With writes allowed, the user's own functions may be called; unknown system names not.
    assert_eq!(accepted("SELECT my_report(1)", RW), StatementKind::Read);
    assert_eq!(accepted("SELECT app.my_report(1)", RW), StatementKind::Read);
    refused(
        "SELECT pg_catalog.my_report(1)",
        RW,
        "Function not allowed: pg_catalog.my_report",
    );
    refused(
        "SELECT pg_future_builtin()",
        RW,
        "Function not allowed: pg_future_builtin",
    );
}

#[test]
fn lexer_and_identity_settings_are_refused_in_every_spelling() {
    for sql in [
        "SET standard_conforming_strings = off",
        "SET LOCAL standard_conforming_strings TO off",
        "SET SESSION \"standard_conforming_strings\" = 'off'",
        "SET backslash_quote = on",
        "SET client_encoding = 'SJIS'",
        "SET client_encoding TO DEFAULT",
    ] {
        refused_both(sql, "changes how later statements are read");
    }
    refused_both("SET NAMES 'SJIS'", "SET NAMES changes the client encoding");
    refused_both(
        "SET SESSION AUTHORIZATION 'postgres'",
        "SET SESSION AUTHORIZATION",
    );
    refused_both(
        "SET SESSION AUTHORIZATION DEFAULT",
        "SET SESSION AUTHORIZATION",
    );
    refused_both(
        "SET session_authorization = 'postgres'",
        "changes who the session is",
    );
    for sql in [
        "SELECT set_config('standard_conforming_strings', 'off', false)",
        "SELECT set_config('session_authorization', 'postgres', false)",
        "SELECT (set_config('role', 'x', true))",
    ] {
        refused_both(sql, "set_config");
    }
    // RESET SESSION AUTHORIZATION is the reset's job, not the caller's.
    refused_both("RESET SESSION AUTHORIZATION", "SQL could not be parsed");
    // Plain settings stay available when writes are allowed.
    assert_eq!(accepted("SET work_mem = '64MB'", RW), StatementKind::Other);
    assert_eq!(accepted("SET ROLE app_user", RW), StatementKind::Other);
}

#[test]
fn write_mode_refuses_writes_to_system_relations() {
    for sql in [
        "INSERT INTO pg_authid (rolname) VALUES ('x')",
        "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
        "UPDATE pg_catalog.pg_class SET relname = 'x' WHERE oid = 1",
        "DELETE FROM pg_catalog.pg_description",
        "DELETE FROM information_schema.sql_features",
        "INSERT INTO sys.jobs VALUES ('x')",
        "WITH d AS (DELETE FROM pg_authid RETURNING 1) SELECT * FROM d",
        "UPDATE t SET a = 1 FROM pg_settings s WHERE s.name = 'x'",
        "ALTER TABLE pg_catalog.pg_class ADD COLUMN x int",
        "DROP TABLE pg_catalog.pg_description",
        "DROP VIEW pg_settings",
        "CREATE TABLE pg_catalog.evil (a int)",
        "CREATE INDEX ASYNC i ON pg_catalog.pg_class (relname)",
        "CREATE VIEW information_schema.v AS SELECT 1",
        "COMMENT ON TABLE pg_class IS 'x'",
        "GRANT SELECT ON pg_authid TO app_user",
        "GRANT ALL ON ALL TABLES IN SCHEMA pg_catalog TO app_user",
        "REVOKE SELECT ON pg_catalog.pg_class FROM PUBLIC",
        "CREATE SCHEMA information_schema",
        "DROP FUNCTION pg_catalog.now()",
        "DROP FUNCTION pg_sleep(double precision)",
    ] {
        match verdict(sql, RW) {
            Err(PolicyError::Injection(why)) => assert!(why.contains("system"), "{sql}: {why}"),
            other => panic!("{sql}: {other:?}"),
        }
    }
    // Reading the catalog is fine, in either mode.
    assert_eq!(
        accepted("SELECT relname FROM pg_catalog.pg_class LIMIT 1", RW),
        StatementKind::Read
    );
    assert_eq!(
        accepted("SELECT * FROM information_schema.columns", RO),
        StatementKind::Read
    );
    assert_eq!(
        accepted("SELECT name, setting FROM pg_settings", RO),
        StatementKind::Read
    );
}

#[test]
fn write_mode_refuses_privilege_escalation() {
    for sql in [
        "CREATE ROLE x SUPERUSER",
        "CREATE ROLE x WITH LOGIN CREATEROLE",
        "CREATE ROLE x CREATEDB",
        "CREATE ROLE x REPLICATION",
        "CREATE ROLE x BYPASSRLS",
        "CREATE ROLE x IN ROLE pg_read_server_files",
        "CREATE ROLE x ROLE app_user",
        "CREATE ROLE x ADMIN app_user",
        "CREATE USER x IN GROUP pg_execute_server_program",
        "CREATE ROLE x WITH LOGIN PASSWORD 'p'",
        "ALTER ROLE app_user SUPERUSER",
        "ALTER ROLE app_user SET standard_conforming_strings = off",
        "ALTER ROLE app_user RENAME TO y",
        "GRANT EXECUTE ON FUNCTION pg_read_file(text) TO app_user",
        "GRANT EXECUTE ON FUNCTION pg_catalog.lo_import(text) TO app_user",
    ] {
        assert!(
            matches!(verdict(sql, RW), Err(PolicyError::Injection(_))),
            "{sql}: {:?}",
            verdict(sql, RW)
        );
    }
    // Granting a role is a membership change the parser does not read: refused too.
    refused(
        "GRANT pg_read_server_files TO app_user",
        RW,
        "SQL could not be parsed",
    );
    // Plain roles and grants stay available.
    assert_eq!(
        accepted("CREATE ROLE reporting WITH LOGIN", RW),
        StatementKind::Ddl
    );
    assert_eq!(
        accepted("CREATE ROLE r NOSUPERUSER NOCREATEROLE", RW),
        StatementKind::Ddl
    );
    assert_eq!(
        accepted("GRANT SELECT ON orders TO reporting", RW),
        StatementKind::Ddl
    );
    assert_eq!(
        accepted(
            "AWS IAM GRANT reporting TO 'arn:aws:iam::123456789012:role/r'",
            RW
        ),
        StatementKind::Ddl
    );
}

#[test]
fn ddl_bodies_cannot_hide_refused_functions() {
    for sql in [
        "CREATE VIEW v AS SELECT pg_sleep(1)",
        "CREATE VIEW v AS SELECT (1).pg_sleep",
        "CREATE OR REPLACE VIEW v AS SELECT * FROM pg_read_file('/etc/passwd')",
        "CREATE TABLE t (a text DEFAULT pg_read_file('/etc/passwd'))",
        "CREATE TABLE t (a int, b bigint GENERATED ALWAYS AS (pg_advisory_lock(a)) STORED)",
        "CREATE TABLE t (a int CHECK (pg_try_advisory_lock(a)))",
        "ALTER TABLE t ADD CONSTRAINT c CHECK (lo_unlink(a) > 0) NOT VALID",
        "ALTER TABLE t ALTER COLUMN a SET DEFAULT set_config('role', 'x', false)",
        "CREATE INDEX ASYNC i ON t ((ts_stat('SELECT 1')))",
        "CREATE DOMAIN d AS int CHECK (pg_sleep(VALUE) IS NOT NULL)",
        "UPDATE t SET a = (SELECT pg_cancel_backend(1))",
    ] {
        match verdict(sql, RW) {
            Err(PolicyError::Injection(why)) => assert!(
                why.starts_with("Dangerous function call not allowed:"),
                "{sql}: {why}"
            ),
            other => panic!("{sql}: {other:?}"),
        }
    }
}

#[test]
fn session_state_that_outlives_a_call_is_refused() {
    for sql in [
        "CREATE TEMP TABLE t (a int)",
        "CREATE TEMPORARY TABLE shadow (a int)",
        "CREATE TEMP VIEW v AS SELECT 1",
        "CREATE TEMP SEQUENCE s CACHE 1",
    ] {
        refused(sql, RW, "Temporary objects are not allowed");
    }
    for sql in [
        "CREATE TABLE pg_temp.orders (a int)",
        "CREATE VIEW pg_temp.orders AS SELECT 1",
        "CREATE SEQUENCE pg_temp.s CACHE 1",
        "INSERT INTO pg_temp.orders VALUES (1)",
    ] {
        refused(sql, RW, "temporary object");
    }
    for (sql, tag) in [
        ("PREPARE p AS SELECT 1", "PREPARE"),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", "DECLARE CURSOR"),
        ("LISTEN chan", "LISTEN"),
        ("LOCK TABLE t", "LOCK TABLE"),
        ("DISCARD TEMP", "DISCARD"),
        (
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
            "MERGE",
        ),
    ] {
        refused(sql, RW, &format!("statement type not allowed: {tag}"));
    }
    refused_both("SELECT pg_advisory_lock(1)", "pg_advisory_lock");
    refused_both(
        "SELECT pg_try_advisory_xact_lock(1)",
        "pg_try_advisory_xact_lock",
    );
}

#[test]
fn legitimate_reads_keep_working() {
    for sql in [
        "TABLE t",
        "TABLE ONLY t",
        "SELECT * FROM (TABLE t) s",
        "WITH x AS (TABLE t) TABLE x",
        "TABLE t UNION ALL TABLE u",
        "(TABLE t) EXCEPT (TABLE u) ORDER BY 1 LIMIT 3",
        "EXPLAIN TABLE t",
        "EXPLAIN (COSTS OFF) TABLE t",
        "SELECT (t).a, (t.c).f FROM t",
        "SELECT (row(1, 2)).f1",
        "SELECT t.amount, t.version, t.length FROM t",
        "SELECT ts_rank(to_tsvector('a b'), to_tsquery('a')), plainto_tsquery('a')",
        "SELECT rank() OVER w, lag(a) OVER w FROM t WINDOW w AS (ORDER BY a)",
        "SELECT doc -> 'a', doc ->> 'b', doc #> '{c,d}', doc @> '{\"a\":1}' FROM t",
        "SELECT jsonb_path_query(doc, '$.a') FROM t",
        "SELECT current_timestamp, current_user, session_user, now(), coalesce(a, 0) FROM t",
        "SELECT upper(name), lower(name), length(name), substring(name FROM 2), trim(name) FROM t",
        "SELECT extract(year FROM now()), date_trunc('day', now()), now() AT TIME ZONE 'UTC'",
        "SELECT gen_random_uuid(), random(), clock_timestamp()",
        "SELECT current_setting('search_path'), version(), pg_backend_pid()",
        "SELECT pg_get_indexdef(indexrelid) FROM pg_index",
        "SELECT a::regclass, 'x'::text, CAST(a AS bigint) FROM t",
        "SELECT * FROM generate_series(1, 3) g, unnest(ARRAY[1, 2]) u",
        "SELECT 1 OPERATOR(pg_catalog.+) 2",
        "SHOW search_path",
    ] {
        assert_eq!(accepted(sql, RO), StatementKind::Read, "{sql}");
    }
    // `%%` and `%s` with parameters, through the reference tools' placeholder style.
    let c = check(
        "SELECT name FROM t WHERE name LIKE 'a%%' AND id = %s",
        Some(1),
        Placeholders::Psycopg,
        RO,
    )
    .unwrap();
    assert_eq!(c.sql, "SELECT name FROM t WHERE name LIKE 'a%' AND id = $1");
    // A long IN list: 40,000 values.
    let list: Vec<String> = (0..40_000).map(|i| i.to_string()).collect();
    let sql = format!("SELECT * FROM t WHERE id IN ({})", list.join(", "));
    assert_eq!(accepted(&sql, RO), StatementKind::Read);
    // `CREATE TABLE` and `TABLE` in DDL are not queries.
    assert_eq!(
        accepted("CREATE TABLE t2 (id int PRIMARY KEY)", RW),
        StatementKind::Ddl
    );
    assert_eq!(
        accepted("INSERT INTO t SELECT * FROM (TABLE u) x", RW),
        StatementKind::Dml
    );
}

#[test]
fn huge_inputs_are_measured_before_they_are_parsed() {
    // 1 MB of `SELECT 1;` is refused from the lexer's count, before any tree is built.
    let many = "SELECT 1;".repeat(111_111);
    match check(&many, None, Placeholders::Numbered, RO) {
        Err(PolicyError::Bypass(why)) => {
            assert_eq!(why, "Exactly one SQL statement is allowed, found 111111")
        }
        other => panic!("{other:?}"),
    }
    match check(&many, None, Placeholders::Numbered, RW) {
        Err(PolicyError::Injection(why)) => {
            assert_eq!(why, "Exactly one SQL statement is allowed, found 111111")
        }
        other => panic!("{other:?}"),
    }
    // One statement of 300,000 tokens: refused with the count.
    let list: Vec<String> = (0..150_001).map(|i| (i % 10).to_string()).collect();
    let sql = format!("SELECT * FROM t WHERE id IN ({})", list.join(","));
    match check(&sql, None, Placeholders::Numbered, RO) {
        Err(PolicyError::Injection(why)) => assert!(
            why.starts_with("SQL is too large to check safely: about 300010 tokens in one statement (the limit is 120000)"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn what_postgresql_cannot_read_is_not_accepted() {
    // Found by the pg-oracle differential test: sqlparser reads `""` as a name,
    // PostgreSQL refuses a zero-length quoted identifier.
    refused_both("SELECT \"\" FROM t", "zero-length quoted identifier");
    refused_both(
        "SELECT/* \\\" */\"\" FROM t",
        "zero-length quoted identifier",
    );
    assert_eq!(accepted("SELECT \"a\"\"\" FROM t", RO), StatementKind::Read);
}
