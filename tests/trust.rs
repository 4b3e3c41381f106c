//! The trust model end to end (issue 16): the real binary over stdio, a real MCP client, and
//! a TLS PostgreSQL that logs every statement it receives. Each refusal is proved twice: the
//! database log never saw the statement, and the database state (roles, catalog rows, large
//! objects, advisory locks, temporary schemas, files) is what it was. Then the leak suite:
//! state a call leaves is not seen by the next call on the same pooled backend, neither
//! through the server nor through a separate connection. Then the session check at connect,
//! and the memory bound of the policy check.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn is_error(r: &rmcp::model::CallToolResult) -> bool {
    r.is_error == Some(true)
}

/// What a refused statement could have changed, read with a separate superuser connection.
async fn state(pg: &PgCluster) -> Vec<String> {
    let db = pg.superuser().await;
    let mut out = Vec::new();
    for sql in [
        "SELECT string_agg(rolname || ':' || rolsuper || rolcreaterole || rolcreatedb || rolreplication || rolbypassrls || coalesce(array_to_string(rolconfig, ','), ''), ' ' ORDER BY rolname) FROM pg_roles",
        "SELECT string_agg(r.rolname || '>' || m.rolname, ' ' ORDER BY 1) FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member",
        "SELECT count(*)::text FROM pg_largeobject_metadata",
        "SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory'",
        "SELECT count(*)::text FROM pg_namespace WHERE nspname LIKE 'pg_temp_%'",
        "SELECT string_agg(relname, ' ' ORDER BY relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
        "SELECT string_agg(proname, ' ' ORDER BY proname) FROM pg_proc WHERE pronamespace = 'public'::regnamespace",
        "SELECT count(*)::text FROM pg_description",
        "SELECT count(*)::text FROM pg_replication_slots",
        "SELECT string_agg(coalesce(array_to_string(setconfig, ','), ''), ' ') FROM pg_db_role_setting",
        "SELECT string_agg(nspname, ' ' ORDER BY nspname) FROM pg_namespace",
    ] {
        let row = db.query_one(sql, &[]).await.unwrap();
        let v: Option<String> = row.get(0);
        out.push(format!("{sql} => {v:?}"));
    }
    out
}

/// Refused statements, one per class, each carrying a marker that the database log would
/// show if it had received the statement. `{m}` is replaced by the marker.
const REFUSED_READS: &[&str] = &[
    "SELECT (1).pg_sleep, '{m}'",
    "SELECT ('/etc/passwd').pg_read_file, '{m}'",
    "SELECT ('PG_VERSION').pg_read_file, '{m}'",
    "SELECT (42).pg_advisory_lock, '{m}'",
    "SELECT (0).lo_from_bytea, '{m}'",
    "SELECT (pid).pg_terminate_backend, '{m}' FROM pg_stat_activity",
    "SELECT t.pg_stat_reset, '{m}' FROM (SELECT 1) t",
    "SELECT ('x').pg_create_physical_replication_slot, '{m}'",
    "SELECT ts_stat('SELECT to_tsvector(rolname) FROM pg_roles'), '{m}'",
    "SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, ''b''::tsquery'), '{m}'",
    "SELECT table_to_xml('pg_authid', true, true, ''), '{m}'",
    "SELECT set_config('standard_conforming_strings', 'off', false), '{m}'",
    "SELECT set_config('session_authorization', 'postgres', false), '{m}'",
    "SELECT lo_import('/etc/hostname'), '{m}'",
    "SELECT pg_ls_dir('.'), '{m}'",
    "SET standard_conforming_strings = off /* {m} */",
    "SET SESSION AUTHORIZATION postgres /* {m} */",
    "COPY (SELECT '{m}') TO STDOUT",
    "SELECT '{m}'; SELECT 2",
];

/// Refused with writes allowed too: system relations, escalation, temporary objects, DDL
/// bodies that would trap a later read-only agent, lexer and identity settings.
const REFUSED_WRITES: &[&str] = &[
    "UPDATE pg_authid SET rolsuper = true WHERE rolname = 'admin' AND '{m}' = '{m}'",
    "INSERT INTO pg_catalog.pg_description VALUES (1, 1, 0, '{m}')",
    "DELETE FROM pg_settings WHERE name = '{m}'",
    "CREATE ROLE trust_su SUPERUSER /* {m} */",
    "CREATE ROLE trust_member IN ROLE pg_read_server_files /* {m} */",
    "CREATE ROLE trust_cr CREATEROLE /* {m} */",
    "ALTER ROLE admin SET standard_conforming_strings = off /* {m} */",
    "GRANT EXECUTE ON FUNCTION pg_read_file(text) TO app_user /* {m} */",
    "GRANT pg_read_server_files TO app_user /* {m} */",
    "CREATE TEMP TABLE shadow (a int) /* {m} */",
    "CREATE TABLE pg_temp.shadow (a int) /* {m} */",
    "CREATE VIEW trap AS SELECT pg_sleep(5), '{m}'",
    "CREATE VIEW trap AS SELECT (1).pg_sleep, '{m}'",
    "CREATE TABLE trap (a text DEFAULT pg_read_file('/etc/passwd'), b text DEFAULT '{m}')",
    "CREATE TABLE trap (a int CHECK (pg_advisory_lock(a) IS NOT NULL), b text DEFAULT '{m}')",
    "SET backslash_quote = on /* {m} */",
    "SET client_encoding = 'SJIS' /* {m} */",
    "PREPARE p AS SELECT '{m}'",
    "DECLARE c CURSOR WITH HOLD FOR SELECT '{m}'",
    "LISTEN trust_{m}",
];

fn marked(template: &str, marker: &str) -> String {
    template.replace("{m}", marker)
}

#[tokio::test]
async fn refusals_never_reach_the_database_in_either_mode() {
    let pg = PgCluster::start_logging_statements();
    let before = state(&pg).await;
    let ro = McpSession::for_cluster(&pg, &[]).await;
    let rw = McpSession::for_cluster(&pg, &["--allow-writes"]).await;
    let mut markers = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("trustmark{n:04}")
    };
    for template in REFUSED_READS.iter().chain(REFUSED_WRITES) {
        // Read-only tools, both modes' transact, and the power's execute.
        for (session, tool, args) in [
            (&ro, "readonly_query", "sql"),
            (&ro, "query", "sql"),
            (&ro, "transact", "sql_list"),
            (&rw, "readonly_query", "sql"),
            (&rw, "transact", "sql_list"),
            (&rw, "execute", "sql"),
        ] {
            let m = next();
            let sql = marked(template, &m);
            let value = if args == "sql_list" {
                json!({"sql_list": ["SELECT 1", sql]})
            } else {
                json!({ args: sql })
            };
            let r = session.call(tool, value).await;
            assert!(is_error(&r), "{tool} accepted {sql:?}: {}", text(&r));
            let t = text(&r);
            assert!(
                t.contains("risky injection patterns")
                    || t.contains("does not allow write operations")
                    || t.contains("bypass read-only transaction controls")
                    || t.contains("needs the server started with --allow-writes"),
                "{tool} {sql:?}: {t}"
            );
            markers.push((m, tool, sql));
        }
    }
    // Unknown functions are refused read-only (with writes allowed they may be the user's).
    for (tool, args) in [("readonly_query", "sql"), ("query", "sql")] {
        let m = next();
        let sql = format!("SELECT unknown_fn('{m}')");
        let r = ro.call(tool, json!({ args: sql })).await;
        assert_eq!(
            text(&r),
            format!(
                "Error executing tool {tool}: Your query contains risky injection patterns: Function not allowed: unknown_fn (in read-only mode only known built-in functions without side effects may be called; if it is your own SQL function, start the server with --allow-function unknown_fn)"
            )
        );
        markers.push((m, tool, sql));
    }
    // The database saw none of it, and nothing changed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = pg.server_log();
    assert!(
        log.contains("statement:"),
        "the cluster logs statements (the test would prove nothing otherwise)"
    );
    for (m, tool, sql) in &markers {
        assert!(
            !log.contains(m.as_str()),
            "{tool} sent {sql:?} to the database"
        );
    }
    assert_eq!(state(&pg).await, before);
    // The servers still serve.
    let r = ro
        .call("readonly_query", json!({"sql": "SELECT 1 AS one"}))
        .await;
    assert_eq!(structured(&r), json!({"result": [{"one": 1}]}));
}

#[tokio::test]
async fn nothing_a_call_leaves_is_seen_by_the_next_call_on_the_same_backend() {
    let pg = PgCluster::start_logging_statements();
    let db = pg.superuser().await;
    db.batch_execute(
        "CREATE SCHEMA leak_schema; GRANT USAGE ON SCHEMA leak_schema TO admin; GRANT app_user TO admin;",
    )
        .await
        .unwrap();
    let s = McpSession::for_cluster(&pg, &["--allow-writes"]).await;
    let probe = json!({"sql": "SELECT current_user AS cu, session_user AS su, current_setting('work_mem') AS wm, current_setting('search_path') AS sp, current_setting('statement_timeout') AS st, current_setting('application_name') AS app, current_setting('standard_conforming_strings') AS scs, pg_backend_pid() AS pid"});
    let clean = structured(&s.call("readonly_query", probe.clone()).await)["result"][0].clone();
    let pid = clean["pid"].as_i64().unwrap();
    assert_eq!(clean["cu"], "admin");
    assert_eq!(clean["scs"], "on");

    // One call leaves every kind of state the guard lets a write-mode call set.
    let r = s
        .call(
            "transact",
            json!({"sql_list": [
                "SET work_mem = '1234kB'",
                "SET search_path = leak_schema",
                "SET statement_timeout = 4321",
                "SET application_name = 'leaky'",
                "SET ROLE app_user",
                "SELECT current_user"
            ]}),
        )
        .await;
    assert!(!is_error(&r), "{}", text(&r));
    assert_eq!(
        structured(&r),
        json!({"result": [{"current_user": "app_user"}]})
    );
    // Kinds of state the guard refuses outright.
    for sql in [
        "SET SESSION AUTHORIZATION app_user",
        "SELECT set_config('role', 'app_user', false)",
        "SELECT pg_advisory_lock(7)",
        "CREATE TEMP TABLE t_shadow (a int)",
        "PREPARE leak AS SELECT 1",
        "DECLARE leak CURSOR WITH HOLD FOR SELECT 1",
        "LISTEN leak",
    ] {
        let r = s.call("transact", json!({"sql_list": [sql]})).await;
        assert!(is_error(&r), "{sql}: {}", text(&r));
    }

    // The next call on the same backend sees the clean session.
    let after = structured(&s.call("readonly_query", probe.clone()).await)["result"][0].clone();
    assert_eq!(
        after["pid"].as_i64().unwrap(),
        pid,
        "the same pooled backend"
    );
    assert_eq!(after, clean);
    // And so does a separate connection looking at that backend.
    let row = db
        .query_one(
            "SELECT usename::text, application_name, state, backend_xid IS NULL FROM pg_stat_activity WHERE pid = $1",
            &[&(pid as i32)],
        )
        .await
        .unwrap();
    let seen: (String, String, String, bool) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(
        seen,
        (
            "admin".into(),
            "aurora-dsql-mcp-server".into(),
            "idle".into(),
            true
        )
    );
    let locks: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype = 'advisory'",
            &[&(pid as i32)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(locks, 0);
    let temp: Option<String> = db
        .query_one(
            "SELECT string_agg(n.nspname || '.' || c.relname, ' ') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname LIKE 'pg_temp%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(temp, None, "no temporary relation exists");
    let prepared: i64 = {
        let r = s
            .call(
                "readonly_query",
                json!({"sql": "SELECT (SELECT count(*) FROM pg_prepared_statements WHERE from_sql) + (SELECT count(*) FROM pg_cursors WHERE is_holdable) + (SELECT count(*) FROM pg_listening_channels()) AS n, pg_backend_pid() AS pid"}),
            )
            .await;
        let v = structured(&r);
        assert_eq!(v["result"][0]["pid"].as_i64().unwrap(), pid);
        v["result"][0]["n"].as_i64().unwrap()
    };
    assert_eq!(prepared, 0);
}

#[tokio::test]
async fn a_session_the_guard_cannot_read_correctly_is_never_used() {
    // A per-role setting (made outside this server, which refuses ALTER ROLE) that changes how
    // the server lexes SQL: every new connection reads it back and refuses to serve.
    let pg = PgCluster::start_logging_statements();
    let db = pg.superuser().await;
    db.batch_execute("ALTER ROLE admin SET standard_conforming_strings = off")
        .await
        .unwrap();
    let s = McpSession::for_cluster(&pg, &[]).await;
    let r = s
        .call("readonly_query", json!({"sql": "SELECT 'x' AS v"}))
        .await;
    db.batch_execute("ALTER ROLE admin RESET standard_conforming_strings")
        .await
        .unwrap();
    assert!(is_error(&r));
    assert_eq!(
        text(&r),
        "Error executing tool readonly_query: could not connect to the cluster: the new connection cannot be used: the session's standard_conforming_strings is \"off\", but the SQL guard reads SQL as PostgreSQL does with it on; reset it for the role or database (ALTER ROLE ... RESET standard_conforming_strings)"
    );
    assert!(
        !pg.server_log().contains("SELECT 'x' AS v"),
        "the call's statement never ran"
    );
    // With the setting gone, the next call gets a fresh connection and works.
    let r = s
        .call("readonly_query", json!({"sql": "SELECT 'x' AS v"}))
        .await;
    assert_eq!(structured(&r), json!({"result": [{"v": "x"}]}));
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn the_policy_check_memory_is_bounded_by_the_input() {
    let pg = shared();
    let s = McpSession::for_cluster(pg, &["--allow-writes"]).await;
    let pid = s.pid().unwrap();
    let many = "SELECT 1;".repeat(111_111);
    // About 118,000 tokens: just under the guard's limit of 120,000.
    let list: Vec<String> = (0..59_000).map(|i| format!("{:07}", i % 1000)).collect();
    let in_list = format!(
        "SELECT count(*) AS n FROM generate_series(1, 3) g WHERE g IN ({})",
        list.join(",")
    );
    assert!(many.len() > 999_000 && in_list.len() > 400_000 && in_list.len() < 1_000_000);
    for (tool, args) in [
        ("readonly_query", json!({"sql": many})),
        ("query", json!({"sql": many})),
        ("transact", json!({"sql_list": [many]})),
        ("execute", json!({"sql": many})),
    ] {
        let r = s.call(tool, args).await;
        assert!(is_error(&r), "{tool}");
        assert!(
            text(&r).contains("Exactly one SQL statement is allowed, found 111111"),
            "{tool}: {}",
            text(&r)
        );
    }
    // A lint of 1 MB of statements is done in chunks.
    let r = s.call("dsql_lint", json!({"sql": many})).await;
    assert!(!is_error(&r), "{}", text(&r));
    let v: Value = serde_json::from_str(&text(&r)).unwrap();
    assert_eq!(
        v["summary"],
        json!({"errors": 0, "warnings": 0, "fixed": 0})
    );
    // One long statement: checked and run.
    let r = s.call("readonly_query", json!({"sql": in_list})).await;
    assert_eq!(
        structured(&r),
        json!({"result": [{"n": 3}]}),
        "{}",
        text(&r)
    );
    let peak = peak_rss_kib(pid);
    assert!(peak < 100 * 1024, "peak RSS {peak} KiB");
    // Past the limit: refused from the lexer's count.
    let list: Vec<String> = (0..61_000).map(|i| (i % 1000).to_string()).collect();
    let too_long = format!("SELECT 1 WHERE 1 IN ({})", list.join(","));
    let r = s.call("readonly_query", json!({"sql": too_long})).await;
    assert!(
        text(&r).contains("SQL is too large to check safely: about 122006 tokens in one statement (the limit is 120000)"),
        "{}",
        text(&r)
    );
}
