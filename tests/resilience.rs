//! Fault injection against the real binary and a throw-away TLS PostgreSQL: what a tool call
//! does when its connection is killed (idle, mid-statement, mid-COMMIT), when the server
//! restarts, stops or refuses TLS or the login, when a real 40001 serialization failure
//! happens, when the query timeout expires, when the client cancels, when a result is too
//! large, and when a transaction limit (54000) is hit. After every scenario no connection of
//! ours is left inside a transaction and the table holds exactly what it should.
//!
//! Every test that kills, restarts or inspects connections uses its own cluster (`start()`),
//! so killing "our" backends or checking `pg_stat_activity` never sees another test's
//! connections. Slow statements are made deterministic with a gate: a superuser-created
//! function that waits for an advisory lock the test holds (the guard refuses
//! `pg_advisory_*` by name, not inside a function), so the test decides exactly when a
//! statement may finish. What PostgreSQL cannot produce (DSQL's
//! "waking up cluster", an expired token's "access denied" with its hint, a server that
//! answers 'N' to TLS) comes from `Front`, a small TLS front door that refuses the first
//! connections its way and pipes the rest to the cluster. Nothing asserts on speed.

#![allow(deprecated)] // MCP logging notifications (see tests/common/mcp.rs)

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rmcp::model::{CallToolResult, LoggingMessageNotificationParam};
use serde_json::{Value, json};
use tokio_postgres::Client;

const APP: &str = "aurora-dsql-mcp-server";
/// A statement that keeps a core busy for minutes unless cancelled (10^10 rows joined).
const SLOW_SQL: &str = "SELECT count(*) AS n, 'slow_marker' AS tag FROM generate_series(1, 100000) a CROSS JOIN generate_series(1, 100000) b";

fn is_error(r: &CallToolResult) -> bool {
    r.is_error == Some(true)
}

fn err_text(r: &CallToolResult) -> String {
    assert!(is_error(r), "expected an error, got: {}", text(r));
    text(r)
}

/// The `result` rows of a successful reference-tool call.
fn rows(r: &CallToolResult) -> Value {
    assert!(!is_error(r), "tool failed: {}", text(r));
    structured(r)["result"].clone()
}

fn level(l: &LoggingMessageNotificationParam) -> String {
    serde_json::to_value(l.level)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

/// The texts of the log notifications received so far at `lvl` that start with `prefix`.
fn logs_with(s: &McpSession, lvl: &str, prefix: &str) -> Vec<String> {
    s.logs()
        .iter()
        .filter(|l| level(l) == lvl)
        .filter_map(|l| l.data.as_str().map(str::to_owned))
        .filter(|d| d.starts_with(prefix))
        .collect()
}

/// `logs_with` once `n` such notifications have arrived (at most 5 s): events are sent from
/// a spawned task, so one may trail the tool's response by a moment.
async fn wait_logs(s: &McpSession, lvl: &str, prefix: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = logs_with(s, lvl, prefix);
        if found.len() >= n || Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const RETRY: &str = "retrying the whole unit of work";
const RECONNECT: &str = "connection lost; re-running the whole unit on a fresh connection";

/// (pid, state, wait_event, query) of every connection of ours.
async fn ours(db: &Client) -> Vec<(i32, String, String, String)> {
    db.query(
        "SELECT pid, coalesce(state, ''), coalesce(wait_event, ''), coalesce(query, '') \
         FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid",
        &[&APP],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

/// Waits (at most 20 s) until every connection of ours is `idle`: none is running a
/// statement or left `idle in transaction`. Returns their pids.
async fn settled(pg: &PgCluster) -> Vec<i32> {
    let db = pg.superuser().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = ours(&db).await;
        if now.iter().all(|(_, state, _, _)| state == "idle") {
            return now.into_iter().map(|c| c.0).collect();
        }
        assert!(
            Instant::now() < deadline,
            "connections of ours not idle: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most 20 s) until backend `pid` has exited (its connection was closed).
async fn gone(pg: &PgCluster, pid: i32) {
    let db = pg.superuser().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while ours(&db).await.iter().any(|c| c.0 == pid) {
        assert!(
            Instant::now() < deadline,
            "backend {pid} is still connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (at most 20 s) for a connection of ours that is running a statement containing
/// `needle` (and, if given, waiting on `wait_event`) and whose pid is not in `not`.
async fn wait_active(db: &Client, needle: &str, wait_event: Option<&str>, not: &[i32]) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = ours(db).await;
        if let Some(c) = now.iter().find(|(pid, state, ev, q)| {
            state == "active"
                && q.contains(needle)
                && wait_event.is_none_or(|w| ev == w)
                && !not.contains(pid)
        }) {
            return c.0;
        }
        assert!(
            Instant::now() < deadline,
            "no connection of ours is running {needle:?}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn terminate(db: &Client, pid: i32) {
    let killed: bool = db
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed, "backend {pid} terminated");
}

/// The server for `pg` with `flags`, allowed to call this file's own SQL functions (the
/// gates and triggers below): in read-only mode the guard allows only known built-ins.
async fn serve(pg: &PgCluster, flags: &[&str]) -> McpSession {
    let mut all: Vec<&str> = flags.to_vec();
    for f in ["gate", "stubborn", "always_conflicts", "too_many_rows"] {
        all.extend(["--allow-function", f]);
    }
    McpSession::for_cluster(pg, &all).await
}

/// A function `gate()` that waits until the test releases advisory lock `key`.
async fn create_gate(db: &Client, key: i64) {
    db.batch_execute(&format!(
        "CREATE FUNCTION gate() RETURNS int LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_advisory_xact_lock_shared({key}); RETURN 1; END $$;"
    ))
    .await
    .unwrap();
}

async fn lock(db: &Client, key: i64) {
    db.execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();
}

async fn unlock(db: &Client, key: i64) {
    let released: bool = db
        .query_one("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap()
        .get(0);
    assert!(released);
}

async fn ids(db: &Client, table: &str) -> Vec<i32> {
    db.query(&format!("SELECT id FROM {table} ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Runs blocking harness code (cluster stop/start) without stalling the runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_killed_while_idle_is_replaced() {
    let pg = start();
    let s = serve(&pg, &[]).await;
    let probe = json!({"sql": "SELECT pg_backend_pid() AS pid"});
    let first = rows(&s.call("readonly_query", probe.clone()).await)[0]["pid"]
        .as_i64()
        .unwrap() as i32;
    let db = pg.superuser().await;
    assert_eq!(settled(&pg).await, vec![first]);
    terminate(&db, first).await;

    let second = rows(&s.call("readonly_query", probe.clone()).await)[0]["pid"]
        .as_i64()
        .unwrap() as i32;
    assert_ne!(second, first, "a fresh connection");
    assert_eq!(settled(&pg).await, vec![second]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_whose_backend_is_killed_mid_statement_is_re_run_on_a_fresh_connection() {
    let pg = start();
    let db = pg.superuser().await;
    create_gate(&db, 7001).await;
    lock(&db, 7001).await;
    let s = Arc::new(serve(&pg, &[]).await);
    let call = tokio::spawn({
        let s = s.clone();
        async move {
            s.call(
                "readonly_query",
                json!({"sql": "SELECT gate() AS g, pg_backend_pid() AS pid, 'kill_read' AS tag"}),
            )
            .await
        }
    });
    let victim = wait_active(&db, "kill_read", Some("advisory"), &[]).await;
    terminate(&db, victim).await;
    // The whole unit runs again, on a new backend, and waits at the gate again.
    let rerun = wait_active(&db, "kill_read", Some("advisory"), &[victim]).await;
    unlock(&db, 7001).await;

    let r = call.await.unwrap();
    assert_eq!(
        rows(&r),
        json!([{"g": 1, "pid": rerun, "tag": "kill_read"}])
    );
    // Why it succeeded: a broken connection re-runs the whole (uncommitted) unit once.
    assert_eq!(
        wait_logs(&s, "warning", RECONNECT, 1).await,
        vec![format!(
            "{RECONNECT}: FATAL 57P01: terminating connection due to administrator command"
        )]
    );
    assert!(logs_with(&s, "warning", RETRY).is_empty());
    assert_eq!(settled(&pg).await, vec![rerun]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_backend_is_killed_mid_statement_commits_exactly_once() {
    let pg = start();
    let db = pg.superuser().await;
    create_gate(&db, 7002).await;
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY); GRANT ALL ON t TO admin;")
        .await
        .unwrap();
    lock(&db, 7002).await;
    let s = Arc::new(serve(&pg, &["--allow-writes"]).await);
    let call = tokio::spawn({
        let s = s.clone();
        async move {
            s.call(
                "transact",
                json!({"sql_list": ["INSERT INTO t VALUES (%s)", "SELECT gate() AS g, 'kill_write' AS tag"],
                       "params_list": [[1], null]}),
            )
            .await
        }
    });
    let victim = wait_active(&db, "kill_write", Some("advisory"), &[]).await;
    terminate(&db, victim).await;
    let rerun = wait_active(&db, "kill_write", Some("advisory"), &[victim]).await;
    unlock(&db, 7002).await;

    let r = call.await.unwrap();
    assert_eq!(rows(&r), json!([{"g": 1, "tag": "kill_write"}]));
    assert_eq!(wait_logs(&s, "warning", RECONNECT, 1).await.len(), 1);
    // The first attempt's INSERT died with its transaction; the re-run's committed once.
    assert_eq!(ids(&db, "t").await, vec![1]);
    assert_eq!(settled(&pg).await, vec![rerun]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_backend_is_killed_during_commit_reports_an_unknown_outcome_and_is_not_re_run()
 {
    let pg = start();
    let db = pg.superuser().await;
    // A deferred constraint trigger runs at COMMIT and waits at the gate there.
    db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY); GRANT ALL ON t TO admin;
         CREATE FUNCTION gate_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_advisory_xact_lock_shared(7003); RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER t_gate AFTER INSERT ON t DEFERRABLE INITIALLY DEFERRED
           FOR EACH ROW EXECUTE FUNCTION gate_at_commit();",
    )
    .await
    .unwrap();
    lock(&db, 7003).await;
    let s = Arc::new(serve(&pg, &["--allow-writes"]).await);
    let call = tokio::spawn({
        let s = s.clone();
        async move {
            s.call(
                "transact",
                json!({"sql_list": ["INSERT INTO t VALUES (%s)"], "params_list": [[1]]}),
            )
            .await
        }
    });
    let victim = wait_active(&db, "COMMIT", Some("advisory"), &[]).await;
    terminate(&db, victim).await;
    let r = call.await.unwrap();
    unlock(&db, 7003).await;
    assert_eq!(
        err_text(&r),
        "Error executing tool transact: The connection was lost while committing; the outcome of the transaction is unknown. Check the data before re-running the writes. (FATAL 57P01: terminating connection due to administrator command)"
    );
    // Not re-run: no reconnect, and (here) the transaction did not commit.
    assert!(logs_with(&s, "warning", RECONNECT).is_empty());
    assert_eq!(ids(&db, "t").await, Vec::<i32>::new());
    assert!(settled(&pg).await.is_empty(), "the dead connection is gone");

    // The agent checks, then re-runs the write itself.
    let r = s
        .call(
            "transact",
            json!({"sql_list": ["INSERT INTO t VALUES (%s)"], "params_list": [[1]]}),
        )
        .await;
    assert_eq!(rows(&r), json!([]));
    assert_eq!(ids(&db, "t").await, vec![1]);
    settled(&pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_or_stopped_server_gives_the_next_call_a_fresh_connection_or_a_clear_error() {
    let pg = start();
    let db = pg.superuser().await;
    db.batch_execute("CREATE TABLE t (id int PRIMARY KEY); GRANT ALL ON t TO admin;")
        .await
        .unwrap();
    drop(db);
    let s = serve(&pg, &["--allow-writes"]).await;
    let insert =
        |id: i32| json!({"sql_list": ["INSERT INTO t VALUES (%s)"], "params_list": [[id]]});
    assert_eq!(rows(&s.call("transact", insert(1)).await), json!([]));

    blocking(|| pg.restart());
    assert_eq!(rows(&s.call("transact", insert(2)).await), json!([]));
    settled(&pg).await;

    blocking(|| pg.stop());
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT count(*) AS n FROM t"}),
        )
        .await;
    let t = err_text(&r);
    assert!(
        t.starts_with(
            "Error executing tool readonly_query: could not connect to the cluster: error connecting to server: "
        ),
        "{t}"
    );
    assert!(t.contains("Connection refused"), "{t}");
    // A connection that cannot be opened is not reported (or re-run) as a lost one.
    assert!(logs_with(&s, "warning", "").is_empty(), "{:?}", s.logs());
    // Nothing was committed while the server was down.
    let r = s.call("transact", insert(3)).await;
    assert!(err_text(&r).contains("Connection refused"));

    blocking(|| pg.start_again());
    assert_eq!(rows(&s.call("transact", insert(4)).await), json!([]));
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT id FROM t ORDER BY id"}),
        )
        .await;
    assert_eq!(rows(&r), json!([{"id": 1}, {"id": 2}, {"id": 4}]));
    let db = pg.superuser().await;
    assert_eq!(ids(&db, "t").await, vec![1, 2, 4]);
    settled(&pg).await;
}

/// Runs one `ALTER SYSTEM` (it refuses a transaction block) and reloads the configuration.
async fn alter_system(db: &Client, sql: &str) {
    db.batch_execute(sql).await.unwrap();
    db.batch_execute("SELECT pg_reload_conf()").await.unwrap();
}

/// Waits (at most 10 s) until a fresh TLS connection as `admin` succeeds (`true`) or fails.
async fn admin_tls_works(pg: &PgCluster, want: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = pg.config("admin").connect(pg.make_tls()).await.is_ok();
        if ok == want {
            return;
        }
        assert!(Instant::now() < deadline, "TLS connect never became {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_tls_or_with_an_unknown_ca_is_refused_with_a_clear_error() {
    let pg = start();
    // A server whose pg_hba.conf takes only plain connections (but the test's superuser).
    let hba = pg.root().join("data").join("pg_hba.conf");
    let original = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        "hostssl   all postgres 127.0.0.1/32 trust\nhostnossl all all      127.0.0.1/32 trust\n",
    )
    .unwrap();
    let db = pg.superuser().await;
    db.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    admin_tls_works(&pg, false).await;
    let s = serve(&pg, &[]).await;
    let r = s
        .call("readonly_query", json!({"sql": "SELECT 1 AS one"}))
        .await;
    assert_eq!(
        err_text(&r),
        "Error executing tool readonly_query: could not connect to the cluster: FATAL 28000: no pg_hba.conf entry for host \"127.0.0.1\", user \"admin\", database \"postgres\", SSL encryption"
    );
    // Not a lost connection, so not re-run; nothing to retry.
    assert!(logs_with(&s, "warning", "").is_empty(), "{:?}", s.logs());

    // TLS accepted again: the same server process connects.
    std::fs::write(&hba, original).unwrap();
    db.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    admin_tls_works(&pg, true).await;
    let r = s
        .call("readonly_query", json!({"sql": "SELECT 1 AS one"}))
        .await;
    assert_eq!(rows(&r), json!([{"one": 1}]));

    // A server that does not speak TLS at all (answers 'N' to SSLRequest): never plain text.
    let front = Front::start(&pg, usize::MAX, Refusal::NoTls).await;
    let s3 = McpSession::start(&front.args(&pg, &[]), &[]).await;
    let r = s3
        .call("readonly_query", json!({"sql": "SELECT 1 AS one"}))
        .await;
    assert_eq!(
        err_text(&r),
        "Error executing tool readonly_query: could not connect to the cluster: error performing TLS handshake: server does not support TLS"
    );
    assert!(logs_with(&s3, "warning", "").is_empty(), "{:?}", s3.logs());
    assert_eq!(front.accepted(), 1);

    // A certificate that does not chain to the configured CA.
    let other = start();
    let mut args = cluster_args(&pg, &[]);
    let ca = args.iter().position(|a| a == "--ssl-root-cert").unwrap() + 1;
    args[ca] = other.ca_path().display().to_string();
    let s2 = McpSession::start(&args, &[]).await;
    let r = s2
        .call("readonly_query", json!({"sql": "SELECT 1 AS one"}))
        .await;
    let t = err_text(&r);
    assert!(
        t.starts_with(
            "Error executing tool readonly_query: could not connect to the cluster: error performing TLS handshake: "
        ),
        "{t}"
    );
    assert!(t.contains("UnknownIssuer"), "{t}");
    assert!(logs_with(&s2, "warning", "").is_empty(), "{:?}", s2.logs());
    assert_eq!(
        settled(&pg).await.len(),
        1,
        "only the first session's connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_is_reported_with_the_server_message_and_not_retried() {
    let pg = start();
    let db = pg.superuser().await;
    alter_system(&db, "ALTER SYSTEM SET log_connections = on").await;
    let hba = pg.root().join("data").join("pg_hba.conf");
    let original = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("hostssl all admin 127.0.0.1/32 reject\n{original}"),
    )
    .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    // Wait until the reload took effect (a fresh admin connection is refused).
    let deadline = Instant::now() + Duration::from_secs(10);
    while pg.config("admin").connect(pg.make_tls()).await.is_ok() {
        assert!(Instant::now() < deadline, "pg_hba.conf reload not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refusals_before = pg
        .server_log()
        .matches("pg_hba.conf rejects connection for host \"127.0.0.1\", user \"admin\"")
        .count();

    let s = serve(&pg, &["--occ-retries", "5"]).await;
    let r = s
        .call("readonly_query", json!({"sql": "SELECT 1 AS one"}))
        .await;
    assert_eq!(
        err_text(&r),
        "Error executing tool readonly_query: could not connect to the cluster: FATAL 28000: pg_hba.conf rejects connection for host \"127.0.0.1\", user \"admin\", database \"postgres\", SSL encryption"
    );
    assert!(logs_with(&s, "warning", "").is_empty(), "{:?}", s.logs());
    // Exactly one login attempt reached the server for this call.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refusals = pg
        .server_log()
        .matches("pg_hba.conf rejects connection for host \"127.0.0.1\", user \"admin\"")
        .count();
    assert_eq!(refusals - refusals_before, 1, "one attempt, not a loop");

    std::fs::write(&hba, original).unwrap();
    db.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pg.config("admin").connect(pg.make_tls()).await.is_err() {
        assert!(Instant::now() < deadline, "pg_hba.conf reload not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = s
        .call("readonly_query", json!({"sql": "SELECT 1 AS one"}))
        .await;
    assert_eq!(rows(&r), json!([{"one": 1}]));
    settled(&pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_serialization_failure_is_retried_and_both_writes_commit_exactly_once() {
    let pg = start();
    let db = pg.superuser().await;
    // DSQL runs every transaction at REPEATABLE READ; make the stand-in do the same.
    db.batch_execute(
        "ALTER ROLE admin SET default_transaction_isolation = 'repeatable read';
         CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL);
         INSERT INTO counter VALUES (1, 0);
         GRANT ALL ON counter TO admin;",
    )
    .await
    .unwrap();
    create_gate(&db, 7004).await;
    let s = Arc::new(serve(&pg, &["--allow-writes"]).await);
    let r = s
        .call(
            "transact",
            json!({"sql_list": ["SELECT current_setting('transaction_isolation') AS iso"]}),
        )
        .await;
    assert_eq!(rows(&r), json!([{"iso": "repeatable read"}]));

    // T1 takes its snapshot, then waits at the gate; T2 updates the row and commits;
    // the gate opens and T1's UPDATE meets a row changed after its snapshot: 40001.
    lock(&db, 7004).await;
    let t1 = tokio::spawn({
        let s = s.clone();
        async move {
            s.call(
                "transact",
                json!({"sql_list": [
                    "SELECT n FROM counter WHERE id = 1",
                    "SELECT gate() AS g, 't1_marker' AS tag",
                    "UPDATE counter SET n = n + 1 WHERE id = 1 RETURNING n"
                ]}),
            )
            .await
        }
    });
    wait_active(&db, "t1_marker", Some("advisory"), &[]).await;
    let t2 = s
        .call(
            "transact",
            json!({"sql_list": [
                "SELECT n FROM counter WHERE id = 1",
                "UPDATE counter SET n = n + 1 WHERE id = 1 RETURNING n"
            ]}),
        )
        .await;
    assert_eq!(rows(&t2), json!([{"n": 1}]));
    unlock(&db, 7004).await;
    let t1 = t1.await.unwrap();
    // The retry ran the whole unit on a fresh snapshot, so it saw T2's write.
    assert_eq!(rows(&t1), json!([{"n": 2}]));
    let retries = wait_logs(&s, "warning", RETRY, 1).await;
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert!(
        retries[0].starts_with(&format!("{RETRY} (retry 1, after ")),
        "{}",
        retries[0]
    );
    assert!(
        retries[0].ends_with("): ERROR 40001: could not serialize access due to concurrent update"),
        "{}",
        retries[0]
    );
    let n: i32 = db
        .query_one("SELECT n FROM counter WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "each increment committed exactly once");
    settled(&pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_that_persists_gives_up_after_the_configured_retries() {
    let pg = start();
    let db = pg.superuser().await;
    db.batch_execute(
        "ALTER ROLE admin SET default_transaction_isolation = 'repeatable read';
         CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL);
         INSERT INTO counter VALUES (1, 0);
         GRANT ALL ON counter TO admin;
         CREATE FUNCTION always_conflicts() RETURNS int LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION USING ERRCODE = '40001', MESSAGE = 'change conflicts with another transaction, please retry: (OC000)'; END $$;",
    )
    .await
    .unwrap();
    let s = serve(
        &pg,
        &[
            "--allow-writes",
            "--occ-retries",
            "2",
            "--occ-backoff-ms",
            "10",
        ],
    )
    .await;
    let r = s
        .call(
            "transact",
            json!({"sql_list": ["UPDATE counter SET n = n + 1 WHERE id = 1", "SELECT always_conflicts()"]}),
        )
        .await;
    assert_eq!(
        err_text(&r),
        "Error executing tool transact: statement 2 of 2 failed: ERROR 40001: change conflicts with another transaction, please retry: (OC000)"
    );
    assert_eq!(wait_logs(&s, "warning", RETRY, 2).await.len(), 2);
    let n: i32 = db
        .query_one("SELECT n FROM counter WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "nothing committed");
    settled(&pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_the_query_timeout_is_cancelled_on_the_server_and_its_connection_retired()
{
    let pg = start();
    let db = pg.superuser().await;
    let s = Arc::new(serve(&pg, &["--query-timeout", "1"]).await);
    let call = tokio::spawn({
        let s = s.clone();
        async move { s.call("readonly_query", json!({ "sql": SLOW_SQL })).await }
    });
    let pid = wait_active(&db, "slow_marker", None, &[]).await;
    let r = call.await.unwrap();
    assert_eq!(
        err_text(&r),
        "Error executing tool readonly_query: The call timed out after 1s (--query-timeout) and its statement was cancelled; nothing was committed. Narrow the query (WHERE, LIMIT) or raise --query-timeout."
    );
    // Cancelled on the server (not merely abandoned by the client), no longer running, and
    // the connection retired so that no late cancel can reach the next call.
    assert!(
        pg.server_log()
            .contains("ERROR:  canceling statement due to user request"),
        "{}",
        pg.server_log()
    );
    gone(&pg, pid).await;
    assert_eq!(settled(&pg).await, Vec::<i32>::new());
    // A fresh connection, read-only, serves the next call.
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT pg_backend_pid() AS pid, current_setting('transaction_read_only') AS ro"}),
        )
        .await;
    let row = &rows(&r)[0];
    assert_eq!(row["ro"], "on");
    assert_ne!(row["pid"], json!(pid));
    settled(&pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_cancellation_stops_the_statement_on_the_server_and_frees_the_connection() {
    use rmcp::model::{CallToolRequest, CallToolRequestParams, ClientRequest};
    use rmcp::service::PeerRequestOptions;

    let pg = start();
    let db = pg.superuser().await;
    let s = serve(&pg, &[]).await;
    let args = json!({ "sql": SLOW_SQL }).as_object().unwrap().clone();
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(
        CallToolRequestParams::new("readonly_query").with_arguments(args),
    ));
    let handle = s
        .peer()
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .unwrap();
    let pid = wait_active(&db, "slow_marker", None, &[]).await;
    // Sends notifications/cancelled for the request.
    handle
        .cancel(Some("the user changed their mind".into()))
        .await
        .unwrap();

    // The statement is cancelled on the server, the unit rolls back, and the connection is
    // retired: the backend exits after logging the cancellation.
    gone(&pg, pid).await;
    assert!(
        pg.server_log()
            .contains("ERROR:  canceling statement due to user request"),
        "{}",
        pg.server_log()
    );
    assert_eq!(
        settled(&pg).await,
        Vec::<i32>::new(),
        "the cancelled connection is retired"
    );
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT pg_backend_pid() AS pid"}),
        )
        .await;
    assert_ne!(rows(&r)[0]["pid"], json!(pid), "a fresh connection");
    settled(&pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_past_max_rows_or_max_result_bytes_are_cut_and_say_so() {
    let pg = shared();
    let s = serve(pg, &["--max-rows", "10"]).await;
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT i FROM generate_series(1, 100) i"}),
        )
        .await;
    let note = "Result truncated: 10 of 100 rows returned because the result has more than 10 rows (--max-rows). Add LIMIT/OFFSET (or keyset pagination on the primary key) or a narrower WHERE to read the rest.";
    let ten: Vec<Value> = (1..=10).map(|i| json!({ "i": i })).collect();
    assert_eq!(
        structured(&r),
        json!({"result": ten, "truncated": true, "totalRows": 100, "note": note})
    );
    assert_eq!(r.content.len(), 11, "ten rows, then the note");
    assert_eq!(r.content[10].as_text().unwrap().text, note);
    let notice = s
        .wait_for_log(Duration::from_secs(5), |l| level(l) == "notice")
        .await
        .expect("a notice about the truncation");
    assert_eq!(notice.data, json!(note));

    // The power's query tool says the same.
    let r = s
        .call(
            "query",
            json!({"sql": "SELECT i FROM generate_series(1, $1::int) i", "parameters": [100]}),
        )
        .await;
    assert!(!is_error(&r), "{}", text(&r));
    let v = structured(&r);
    assert_eq!(v["rows"], json!(ten));
    assert_eq!(v["rowCount"], 10);
    assert_eq!(v["totalRows"], 100);
    assert_eq!(v["truncated"], true);
    assert_eq!(v["note"], note);

    // A result under the limit is whole and says nothing.
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT i FROM generate_series(1, 10) i"}),
        )
        .await;
    assert_eq!(structured(&r), json!({ "result": ten }));

    // Bytes: each row {"i":N,"s":"x...x"} is 54 bytes as JSON for one-digit N, and 168
    // bytes of response (its JSON in structuredContent, its pretty text in the content).
    let s = serve(pg, &["--max-result-bytes", "600"]).await;
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT i, repeat('x', 40) AS s FROM generate_series(1, 100) i"}),
        )
        .await;
    let note = "Result truncated: 3 of 100 rows returned because the result is larger than 600 bytes (--max-result-bytes). Add LIMIT/OFFSET (or keyset pagination on the primary key) or a narrower WHERE to read the rest.";
    let x40 = "x".repeat(40);
    assert_eq!(
        structured(&r),
        json!({"result": [{"i": 1, "s": x40}, {"i": 2, "s": x40}, {"i": 3, "s": x40}], "truncated": true, "totalRows": 100, "note": note})
    );
    let notice = s
        .wait_for_log(Duration::from_secs(5), |l| level(l) == "notice")
        .await
        .expect("a notice about the truncation");
    assert_eq!(notice.data, json!(note));
    let r = s
        .call(
            "query",
            json!({"sql": "SELECT i, repeat('x', 40) AS s FROM generate_series(1, 100) i"}),
        )
        .await;
    let v = structured(&r);
    assert_eq!(v["rowCount"], 3);
    assert_eq!(v["totalRows"], 100);
    assert_eq!(v["truncated"], true);
    assert_eq!(v["note"], note);

    // A first row alone over the bound is not returned either (it used to be, whole).
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT repeat('y', 300) AS big"}),
        )
        .await;
    assert_eq!(
        structured(&r),
        json!({"result": [], "truncated": true, "totalRows": 1, "note": "Result truncated: 0 of 1 rows returned because the result is larger than 600 bytes (--max-result-bytes) and its first row alone exceeds that. Select fewer columns or shorter values (e.g. left(column, 1000))."})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_rows_past_max_rows_are_cut_and_the_execute_result_says_so() {
    let pg = shared();
    let table = unique_name("returning");
    let db = pg.superuser().await;
    db.batch_execute(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY); GRANT ALL ON {table} TO admin;"
    ))
    .await
    .unwrap();
    let s = serve(pg, &["--allow-writes", "--max-rows", "10"]).await;
    let r = s
        .call(
            "execute",
            json!({"sql": format!("INSERT INTO {table} SELECT g FROM generate_series(1, 25) g RETURNING id")}),
        )
        .await;
    assert!(!is_error(&r), "{}", text(&r));
    let ten: Vec<Value> = (1..=10).map(|i| json!({ "id": i })).collect();
    assert_eq!(
        structured(&r),
        json!({"command": "INSERT", "rowCount": 25,
               "truncated": true,
               "totalRows": 25,
               "note": "Result truncated: 10 of 25 rows returned because the result has more than 10 rows (--max-rows). Add LIMIT/OFFSET (or keyset pagination on the primary key) or a narrower WHERE to read the rest.",
               "rows": ten})
    );
    // All 25 rows were written; only the RETURNING output was cut.
    let n: i64 = db
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_limit_error_explains_the_limits_and_is_not_retried() {
    let pg = start();
    let db = pg.superuser().await;
    db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY); GRANT ALL ON t TO admin;
         CREATE FUNCTION too_many_rows() RETURNS int LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION USING ERRCODE = '54000', MESSAGE = 'transaction row limit exceeded'; END $$;",
    )
    .await
    .unwrap();
    let s = serve(&pg, &["--allow-writes"]).await;
    let r = s
        .call(
            "transact",
            json!({"sql_list": ["INSERT INTO t SELECT g FROM generate_series(1, 10) g", "SELECT too_many_rows()"]}),
        )
        .await;
    assert_eq!(
        err_text(&r),
        format!(
            "Error executing tool transact: statement 2 of 2 failed: ERROR 54000: transaction row limit exceeded{}",
            aurora_dsql_mcp_server::executor::LIMIT_ADVICE
        )
    );
    assert!(
        aurora_dsql_mcp_server::executor::LIMIT_ADVICE
            .contains("split the work into batches of at most 3,000 rows")
    );
    assert!(logs_with(&s, "warning", "").is_empty(), "{:?}", s.logs());
    assert_eq!(ids(&db, "t").await, Vec::<i32>::new());

    // The same through the power's execute tool.
    let r = s
        .call(
            "execute",
            json!({"sql": "INSERT INTO t SELECT too_many_rows()"}),
        )
        .await;
    assert_eq!(
        err_text(&r),
        format!(
            "Error executing tool execute: ERROR 54000: transaction row limit exceeded{}",
            aurora_dsql_mcp_server::executor::LIMIT_ADVICE
        )
    );
    assert!(logs_with(&s, "warning", "").is_empty(), "{:?}", s.logs());
    assert_eq!(ids(&db, "t").await, Vec::<i32>::new());
    settled(&pg).await;
}

/// A stand-in for DSQL's front door, in front of `pg`: the first `refusals` connections get
/// a TLS handshake (a certificate for `localhost` from the front's own CA), their startup
/// message is read and answered with a FATAL error (`code`, `message`, `hint`), as DSQL does
/// for a waking cluster or a refused token; every later connection is piped to `pg` as is.
struct Front {
    port: u16,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    /// The front's CA and `pg`'s, for `--ssl-root-cert`.
    ca_bundle: std::path::PathBuf,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Front {
    async fn start(pg: &PgCluster, refusals: usize, refusal: Refusal<'_>) -> Front {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_bundle = dir.path().join("ca-bundle.pem");
        let pg_ca = std::fs::read_to_string(pg.ca_path()).unwrap();
        std::fs::write(&ca_bundle, format!("{pg_ca}\n{}", ca_cert.pem())).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        // ErrorResponse: 'E', length, then (type, text, NUL) fields and a final NUL.
        let (tls_answer, error) = match refusal {
            Refusal::NoTls => (b'N', Vec::new()),
            Refusal::Error {
                code,
                message,
                hint,
            } => {
                let mut fields = Vec::new();
                let mut field = |t: u8, v: &str| {
                    fields.push(t);
                    fields.extend_from_slice(v.as_bytes());
                    fields.push(0);
                };
                field(b'S', "FATAL");
                field(b'V', "FATAL");
                field(b'C', code);
                field(b'M', message);
                if let Some(hint) = hint {
                    field(b'H', hint);
                }
                fields.push(0);
                let mut error = vec![b'E'];
                error.extend_from_slice(&((fields.len() + 4) as u32).to_be_bytes());
                error.extend_from_slice(&fields);
                (b'S', error)
            }
        };

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = pg.port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let accepted = accepted.clone();
            async move {
                loop {
                    let Ok((mut sock, _)) = listener.accept().await else {
                        return;
                    };
                    let n = accepted.fetch_add(1, Ordering::SeqCst);
                    let acceptor = acceptor.clone();
                    let error = error.clone();
                    tokio::spawn(async move {
                        if n >= refusals {
                            if let Ok(mut pg) =
                                tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                            {
                                let _ = tokio::io::copy_bidirectional(&mut sock, &mut pg).await;
                            }
                            return;
                        }
                        let refuse = async {
                            let mut ssl_request = [0u8; 8];
                            sock.read_exact(&mut ssl_request).await?;
                            sock.write_all(&[tls_answer]).await?;
                            if tls_answer == b'N' {
                                return sock.shutdown().await;
                            }
                            let mut tls = acceptor.accept(sock).await?;
                            let mut len = [0u8; 4];
                            tls.read_exact(&mut len).await?;
                            let mut startup = vec![0u8; u32::from_be_bytes(len) as usize - 4];
                            tls.read_exact(&mut startup).await?;
                            tls.write_all(&error).await?;
                            tls.shutdown().await
                        };
                        let _: std::io::Result<()> = refuse.await;
                    });
                }
            }
        });
        Front {
            port,
            accepted,
            ca_bundle,
            _dir: dir,
            task,
        }
    }

    /// Server arguments for `pg` through this front.
    fn args(&self, pg: &PgCluster, extra: &[&str]) -> Vec<String> {
        let mut args = cluster_args(pg, extra);
        let port = args.iter().position(|a| a == "--port").unwrap() + 1;
        args[port] = self.port.to_string();
        let ca = args.iter().position(|a| a == "--ssl-root-cert").unwrap() + 1;
        args[ca] = self.ca_bundle.display().to_string();
        args
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// How the front refuses a connection.
enum Refusal<'a> {
    /// TLS, then a FATAL error response to the startup message.
    Error {
        code: &'a str,
        message: &'a str,
        hint: Option<&'a str>,
    },
    /// 'N' to the SSLRequest: this server does not do TLS.
    NoTls,
}

const WAKING: &str = "waking up cluster, please retry later";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waking_cluster_is_retried_with_backoff_until_it_answers() {
    let pg = start();
    let front = Front::start(
        &pg,
        2,
        Refusal::Error {
            code: "57P03",
            message: WAKING,
            hint: None,
        },
    )
    .await;
    let s = McpSession::start(
        &front.args(&pg, &["--occ-retries", "3", "--occ-backoff-ms", "20"]),
        &[],
    )
    .await;
    let r = s
        .call("readonly_query", json!({"sql": "SELECT 1 AS one"}))
        .await;
    assert_eq!(rows(&r), json!([{"one": 1}]));
    let retries = wait_logs(&s, "warning", RETRY, 2).await;
    assert_eq!(retries.len(), 2, "{retries:?}");
    for (i, retry) in retries.iter().enumerate() {
        assert!(
            retry.starts_with(&format!("{RETRY} (retry {}, after ", i + 1)),
            "{retry}"
        );
        assert!(
            retry.ends_with(&format!(
                "): could not connect to the cluster: FATAL 57P03: {WAKING}"
            )),
            "{retry}"
        );
    }
    assert!(logs_with(&s, "warning", RECONNECT).is_empty());
    assert_eq!(
        front.accepted(),
        3,
        "two refused attempts, then the real one"
    );
    settled(&pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_stays_asleep_fails_after_the_bounded_retries() {
    let pg = start();
    let front = Front::start(
        &pg,
        usize::MAX,
        Refusal::Error {
            code: "57P03",
            message: WAKING,
            hint: None,
        },
    )
    .await;
    let s = McpSession::start(
        &front.args(&pg, &["--occ-retries", "2", "--occ-backoff-ms", "20"]),
        &[],
    )
    .await;
    let r = s
        .call("readonly_query", json!({"sql": "SELECT 1 AS one"}))
        .await;
    assert_eq!(
        err_text(&r),
        format!(
            "Error executing tool readonly_query: could not connect to the cluster: FATAL 57P03: {WAKING}"
        )
    );
    assert_eq!(wait_logs(&s, "warning", RETRY, 2).await.len(), 2);
    assert_eq!(front.accepted(), 3, "the first attempt and two retries");
    settled(&pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_reported_with_the_clusters_hint_and_not_retried() {
    let pg = start();
    let hint = "Signature expired: 20261124T070000Z is now earlier than 20261124T080000Z (20261124T081500Z - 15 min.)";
    let front = Front::start(
        &pg,
        usize::MAX,
        Refusal::Error {
            code: "28000",
            message: "access denied",
            hint: Some(hint),
        },
    )
    .await;
    let s = McpSession::start(&front.args(&pg, &["--occ-retries", "5"]), &[]).await;
    for attempt in 1..=2 {
        let r = s
            .call("readonly_query", json!({"sql": "SELECT 1 AS one"}))
            .await;
        assert_eq!(
            err_text(&r),
            format!(
                "Error executing tool readonly_query: could not connect to the cluster: FATAL 28000: access denied\nHINT: {hint}"
            )
        );
        assert_eq!(front.accepted(), attempt, "one connection attempt per call");
    }
    assert!(logs_with(&s, "warning", "").is_empty(), "{:?}", s.logs());
    settled(&pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_at_commit_is_retried_and_the_write_lands_once() {
    let pg = start();
    let db = pg.superuser().await;
    // DSQL reports OCC conflicts at COMMIT. A deferred trigger does the same here on the
    // first attempt only (a sequence counts attempts; it is not rolled back).
    db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY); GRANT ALL ON t TO admin;
         CREATE SEQUENCE attempts; GRANT ALL ON SEQUENCE attempts TO admin;
         CREATE FUNCTION conflict_once() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF nextval('attempts') = 1 THEN
             RAISE EXCEPTION USING ERRCODE = '40001',
               MESSAGE = 'change conflicts with another transaction, please retry: (OC000)';
           END IF;
           RETURN NULL;
         END $$;
         CREATE CONSTRAINT TRIGGER t_conflict AFTER INSERT ON t DEFERRABLE INITIALLY DEFERRED
           FOR EACH ROW EXECUTE FUNCTION conflict_once();",
    )
    .await
    .unwrap();
    let s = serve(&pg, &["--allow-writes", "--occ-backoff-ms", "10"]).await;
    let r = s
        .call(
            "transact",
            json!({"sql_list": ["INSERT INTO t VALUES (%s)", "SELECT count(*) AS n FROM t"],
                   "params_list": [[1], null]}),
        )
        .await;
    assert_eq!(rows(&r), json!([{"n": 1}]));
    let retries = wait_logs(&s, "warning", RETRY, 1).await;
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert!(
        retries[0].ends_with(
            "): Failed to commit transaction: ERROR 40001: change conflicts with another transaction, please retry: (OC000)"
        ),
        "{}",
        retries[0]
    );
    assert_eq!(ids(&db, "t").await, vec![1]);
    let attempts: i64 = db
        .query_one("SELECT last_value FROM attempts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 2);
    settled(&pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_result_is_read_in_bounded_memory() {
    let pg = shared();
    let s = serve(pg, &["--max-rows", "5"]).await;
    let warm = s
        .call("readonly_query", json!({"sql": "SELECT 1 AS one"}))
        .await;
    assert_eq!(rows(&warm), json!([{"one": 1}]));
    let pid = s.pid().unwrap();
    let rss = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
    };
    let before = rss();
    // 1,000,000 rows of ~200 bytes: about 200 MB streamed through the server.
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT i, repeat('z', 200) AS pad FROM generate_series(1, 1000000) i"}),
        )
        .await;
    let kept = rows(&r);
    assert_eq!(kept.as_array().unwrap().len(), 5);
    assert_eq!(kept[4]["i"], 5);
    let after = rss();
    println!("huge result: server RSS before {before} kB, after {after} kB");
    assert!(after < 150 * 1024, "RSS {after} kB after a 200 MB result");
}

/// Established TCP connections that process `pid` holds to local port `port` (from /proc).
fn sockets_to(pid: u32, port: u16) -> usize {
    let mut inodes = std::collections::HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy().into_owned();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let mut n = 0;
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let remote = f[2].rsplit(':').next().unwrap();
            if f[3] == "01"
                && u16::from_str_radix(remote, 16).unwrap() == port
                && inodes.contains(f[9])
            {
                n += 1;
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_ignores_the_cancel_has_its_connection_really_closed() {
    let pg = start();
    let db = pg.superuser().await;
    // Swallows every cancel: only closing the connection (or terminating it) ends it. Two
    // levels, because a cancel taken between two inner blocks escapes the inner handler.
    db.batch_execute(
        "CREATE FUNCTION stubborn() RETURNS int LANGUAGE plpgsql AS $$
         BEGIN
           LOOP
             BEGIN
               LOOP
                 BEGIN
                   PERFORM count(*) FROM generate_series(1, 100000);
                 EXCEPTION WHEN query_canceled THEN NULL;
                 END;
               END LOOP;
             EXCEPTION WHEN query_canceled THEN NULL;
             END;
           END LOOP;
         END $$;",
    )
    .await
    .unwrap();
    let s = serve(&pg, &["--query-timeout", "1"]).await;
    let pid = s.pid().unwrap();
    let r = s
        .call("readonly_query", json!({"sql": "SELECT stubborn() AS n"}))
        .await;
    assert_eq!(
        err_text(&r),
        "Error executing tool readonly_query: The call timed out after 1s (--query-timeout) and its statement was cancelled; nothing was committed. Narrow the query (WHERE, LIMIT) or raise --query-timeout."
    );
    assert!(
        s.stderr()
            .contains("statement did not stop after cancel; dropping the connection"),
        "{}",
        s.stderr()
    );
    // Dropped means closed: the server holds no socket to the cluster any more (the pool
    // would otherwise open more connections than it counts).
    let deadline = Instant::now() + Duration::from_secs(10);
    while sockets_to(pid, pg.port()) != 0 {
        assert!(
            Instant::now() < deadline,
            "the dropped connection's socket is still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = s
        .call("readonly_query", json!({"sql": "SELECT 1 AS one"}))
        .await;
    assert_eq!(rows(&r), json!([{"one": 1}]));
    // PostgreSQL itself only notices the closed socket when it next writes; end it here.
    db.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%stubborn()%' AND pid <> pg_backend_pid()",
    )
    .await
    .unwrap();
}
