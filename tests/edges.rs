//! The edges of a call's life, against the real binary and a throw-away TLS PostgreSQL:
//! a write never commits behind the caller's back (stdin closed, SIGTERM, SIGKILL while the
//! write waits on a row lock held by another session), a cheap call is not queued behind
//! long ones for the whole query timeout, and concurrent large results stay inside the
//! process-wide memory budget.
//!
//! Tests that count or inspect our connections use their own cluster (`start()`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tokio_postgres::Client;

const APP: &str = "aurora-dsql-mcp-server";
const SHUTTING_DOWN: &str = "The server is shutting down; the call was stopped (its statement, if one was running, was cancelled) and nothing was committed.";

/// (pid, state, query) of every connection of ours.
async fn ours(db: &Client) -> Vec<(i32, String, String)> {
    db.query(
        "SELECT pid, coalesce(state, ''), coalesce(query, '') \
         FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid",
        &[&APP],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// Polls our connections (every 20 ms, at most 20 s) until `done` holds for them; panics
/// with `what` and the last view otherwise.
async fn wait_for_ours(db: &Client, what: &str, done: impl Fn(&[(i32, String, String)]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = ours(db).await;
        if done(&now) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `n` connections of ours run a statement containing `needle`.
async fn wait_running(db: &Client, needle: &str, n: usize) {
    let what = format!("{n} connections of ours should run {needle:?}");
    wait_for_ours(db, &what, |now| {
        now.iter()
            .filter(|(_, state, q)| state == "active" && q.contains(needle))
            .count()
            >= n
    })
    .await;
}

/// Waits until no connection of ours is left.
async fn all_gone(db: &Client) {
    wait_for_ours(db, "connections of ours left", |now| now.is_empty()).await;
}

/// A table `t` with one row (1, 0), writable by `admin`.
async fn one_row(db: &Client) {
    db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); INSERT INTO t VALUES (1, 0);
         GRANT ALL ON t TO admin;",
    )
    .await
    .unwrap();
}

async fn value(db: &Client) -> i32 {
    db.query_one("SELECT v FROM t WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0)
}

/// A separate session holding the row lock on t's row 1 until it is dropped or rolled back.
async fn hold_row_lock(pg: &PgCluster) -> Client {
    let locker = pg.superuser().await;
    locker
        .batch_execute("BEGIN; SELECT * FROM t WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    locker
}

fn call(id: u64, tool: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": args}})
}

/// Starts a write server and sends two writes that wait on the held row lock:
/// a `transact` (id 1) and an `execute` (id 2).
async fn two_blocked_writes(pg: &PgCluster, db: &Client) -> RawProcess {
    let mut p = raw_process(&cluster_args(pg, &["--allow-writes"]), &[]);
    p.handshake();
    p.send_json(&call(
        1,
        "transact",
        json!({"sql_list": ["UPDATE t SET v = v + 1 WHERE id = 1", "UPDATE t SET v = v + 10 WHERE id = 1 RETURNING v"]}),
    ));
    p.send_json(&call(
        2,
        "execute",
        json!({"sql": "UPDATE t SET v = v + 100 WHERE id = 1"}),
    ));
    wait_running(db, "UPDATE t SET v = v + 1", 1).await;
    wait_running(db, "UPDATE t SET v = v + 100", 1).await;
    p
}

/// Every line the server wrote until its stdout closed (at most `timeout`).
fn drain(p: &mut RawProcess, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    while let Some(line) = p.read_line_timeout(deadline.saturating_duration_since(Instant::now())) {
        lines.push(serde_json::from_str(&line).expect("JSON on stdout"));
    }
    lines
}

fn response(lines: &[Value], id: u64) -> Option<&Value> {
    lines
        .iter()
        .find(|m| m["id"] == json!(id) && m.get("method").is_none())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_waiting_on_a_lock_are_rolled_back_when_stdin_closes() {
    let pg = start();
    let db = pg.superuser().await;
    one_row(&db).await;
    let locker = hold_row_lock(&pg).await;
    let mut p = two_blocked_writes(&pg, &db).await;

    let closed = Instant::now();
    let status = tokio::task::block_in_place(|| p.wait_exit(Duration::from_secs(30)));
    assert!(status.success(), "exit status {status:?}");
    // Stdin EOF is the client's shutdown: the calls are cancelled at once (no drain) and
    // rolled back within the executor's cancel grace.
    assert!(
        closed.elapsed() < Duration::from_secs(10),
        "took {:?}",
        closed.elapsed()
    );
    // The units were cancelled and rolled back before the process exited.
    all_gone(&db).await;
    locker.batch_execute("ROLLBACK").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        value(&db).await,
        0,
        "nothing committed behind the caller's back"
    );
    // Each caller was told, as on SIGTERM, in case it still reads stdout.
    let lines = drain(&mut p, Duration::from_secs(1));
    for (id, tool) in [(1, "transact"), (2, "execute")] {
        let r =
            response(&lines, id).unwrap_or_else(|| panic!("no response for call {id}: {lines:?}"));
        assert_eq!(
            r["result"]["content"][0]["text"],
            json!(format!("Error executing tool {tool}: {SHUTTING_DOWN}"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_call_in_flight_and_commits_none_of_them() {
    let pg = start();
    let db = pg.superuser().await;
    one_row(&db).await;
    let locker = hold_row_lock(&pg).await;
    let mut p = two_blocked_writes(&pg, &db).await;

    let pid = p.pid() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let lines = tokio::task::block_in_place(|| drain(&mut p, Duration::from_secs(15)));
    for (id, tool) in [(1, "transact"), (2, "execute")] {
        let r = response(&lines, id).unwrap_or_else(|| {
            panic!(
                "no response for call {id}: {lines:?}\nstderr:\n{}",
                p.stderr()
            )
        });
        assert_eq!(r["result"]["isError"], json!(true), "{r}");
        assert_eq!(
            r["result"]["content"][0]["text"],
            json!(format!("Error executing tool {tool}: {SHUTTING_DOWN}"))
        );
    }
    let status = tokio::task::block_in_place(|| p.wait_exit(Duration::from_secs(10)));
    assert!(status.success(), "exit status {status:?}");
    all_gone(&db).await;
    locker.batch_execute("ROLLBACK").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(value(&db).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_leaves_no_commit_behind_a_write_waiting_on_a_lock() {
    let pg = start();
    let db = pg.superuser().await;
    one_row(&db).await;
    let locker = hold_row_lock(&pg).await;
    let mut p = two_blocked_writes(&pg, &db).await;

    let pid = p.pid() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let _ = tokio::task::block_in_place(|| drain(&mut p, Duration::from_secs(5)));
    // The backends still wait on the lock; no COMMIT was sent behind their statements.
    locker.batch_execute("ROLLBACK").await.unwrap();
    all_gone(&db).await;
    assert_eq!(value(&db).await, 0, "the waiting writes did not commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_commits_after_its_last_statement_and_a_failing_last_statement_commits_nothing() {
    let pg = start();
    let db = pg.superuser().await;
    one_row(&db).await;
    let s = McpSession::for_cluster(&pg, &["--allow-writes"]).await;
    let r = s
        .call(
            "transact",
            json!({"sql_list": ["UPDATE t SET v = 5 WHERE id = 1", "SELECT v FROM t WHERE id = 1"]}),
        )
        .await;
    assert_eq!(structured(&r), json!({"result": [{"v": 5}]}));
    assert_eq!(value(&db).await, 5);

    let r = s
        .call(
            "transact",
            json!({"sql_list": ["UPDATE t SET v = 6 WHERE id = 1", "SELECT 1 / (v - 6) FROM t"]}),
        )
        .await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(
        text(&r),
        "Error executing tool transact: statement 2 of 2 failed: ERROR 22012: division by zero"
    );
    let r = s
        .call(
            "execute",
            json!({"sql": "UPDATE t SET v = 7 / (v - 5) WHERE id = 1"}),
        )
        .await;
    assert_eq!(
        text(&r),
        "Error executing tool execute: ERROR 22012: division by zero"
    );
    let r = s
        .call(
            "execute",
            json!({"sql": "UPDATE t SET v = 8 WHERE id = $1", "parameters": [1]}),
        )
        .await;
    assert_eq!(structured(&r), json!({"command": "UPDATE", "rowCount": 1}));
    assert_eq!(value(&db).await, 8);
    // Nothing left open: every connection of ours is idle, none idle in transaction.
    assert!(ours(&db).await.iter().all(|(_, state, _)| state == "idle"));
    s.close().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheap_call_behind_a_full_pool_is_told_the_pool_is_busy_not_that_it_was_cancelled() {
    let pg = start();
    let db = pg.superuser().await;
    create_gate(&db, 8101).await;
    db.execute("SELECT pg_advisory_lock(8101)", &[])
        .await
        .unwrap();
    // gate() is the test's own function: read-only calls may use it once allowed.
    let s = Arc::new(
        McpSession::for_cluster(&pg, &["--query-timeout", "40", "--allow-function", "gate"]).await,
    );
    // Ten long calls take every pooled connection.
    let long: Vec<_> = (0..10)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.call(
                    "readonly_query",
                    json!({"sql": format!("SELECT gate() AS g, {i} AS i, 'long_call' AS tag")}),
                )
                .await
            })
        })
        .collect();
    wait_running(&db, "long_call", 10).await;

    let asked = Instant::now();
    let r = s
        .call("readonly_query", json!({"sql": "SELECT 1 AS one"}))
        .await;
    let waited = asked.elapsed();
    assert_eq!(
        text(&r),
        "Error executing tool readonly_query: All 10 database connections stayed busy with other calls for 5s, so this call never got one; none of its statements ran and nothing was committed. Re-run it when the other calls have finished."
    );
    // Bounded by the pool wait, far below the 40 s query timeout.
    assert!(
        waited >= Duration::from_millis(4900) && waited < Duration::from_secs(15),
        "{waited:?}"
    );

    db.execute("SELECT pg_advisory_unlock(8101)", &[])
        .await
        .unwrap();
    for (i, call) in long.into_iter().enumerate() {
        let r = call.await.unwrap();
        assert_eq!(
            structured(&r),
            json!({"result": [{"g": 1, "i": i, "tag": "long_call"}]})
        );
    }
    // Once the long calls are done the cheap one runs at once.
    let r = s
        .call("readonly_query", json!({"sql": "SELECT 1 AS one"}))
        .await;
    assert_eq!(structured(&r), json!({"result": [{"one": 1}]}));
}

/// The process's peak resident set (VmHWM), in kB.
fn peak_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_results_share_one_memory_budget() {
    let pg = shared();
    // Each call may keep 40 MB; all of them together 24 MB.
    let s = Arc::new(
        McpSession::for_cluster(
            pg,
            &[
                "--max-result-bytes",
                "40000000",
                "--max-rows",
                "100000",
                "--result-memory-bytes",
                "24000000",
            ],
        )
        .await,
    );
    let warm = s
        .call("readonly_query", json!({"sql": "SELECT 1 AS one"}))
        .await;
    assert_eq!(structured(&warm), json!({"result": [{"one": 1}]}));
    let pid = s.pid().unwrap();
    let before = peak_kb(pid);
    // Six calls of 30 rows of 1 MB each: 180 MB asked for at once.
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.call(
                    "readonly_query",
                    json!({"sql": "SELECT i, repeat('z', 1000000) AS pad FROM generate_series(1, 30) i"}),
                )
                .await
            })
        })
        .collect();
    let mut cut = 0;
    for c in calls {
        let r = c.await.unwrap();
        let out = structured(&r);
        let kept = out["result"].as_array().unwrap().len();
        assert!(kept <= 24, "{kept} rows of 1 MB kept under a 24 MB budget");
        if out["truncated"] == json!(true) {
            cut += 1;
            assert_eq!(out["totalRows"], 30);
            assert_eq!(
                out["note"],
                json!(format!(
                    "Result truncated: {kept} of 30 rows returned because the results of calls running at the same time hold the server's 24000000-byte result budget (--result-memory-bytes). Re-run it when fewer large results are in flight, or narrow it (LIMIT, fewer or shorter columns)."
                ))
            );
        } else {
            assert_eq!(kept, 30);
        }
    }
    assert!(cut >= 1, "no call was held to the shared budget");
    let peak = peak_kb(pid);
    println!("six 30 MB results under a 24 MB budget: VmHWM {before} kB -> {peak} kB");
    // Rows, their text copies and the serialized response: about 4x the budget, plus the
    // process itself; six unbounded results would need about 6 x 30 MB x 3.
    assert!(peak < before + 4 * 24 * 1024 + 64 * 1024, "VmHWM {peak} kB");
}

/// The deepest statements the policy lets through (the same ones
/// `tests/policy_pathological.rs` checks in-process) are checked on the server's own
/// thread, which is started with the policy's stack (`main.rs`), not on a helper: the
/// server answers each and goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deepest_allowed_statements_are_checked_on_the_servers_own_thread() {
    let pg = shared();
    let s = McpSession::for_cluster(pg, &[]).await;
    let sums = format!("SELECT {}1", "1+".repeat(9_999));
    // Past the guard; PostgreSQL's own parser gives up on it.
    let r = s.call("readonly_query", json!({"sql": sums})).await;
    assert_eq!(r.is_error, Some(true));
    assert!(
        text(&r).contains("stack depth limit exceeded"),
        "{}",
        text(&r)
    );
    let casts = format!("SELECT 1{} AS one", "::int".repeat(6_600));
    let r = s.call("readonly_query", json!({"sql": casts})).await;
    assert_eq!(structured(&r), json!({"result": [{"one": 1}]}));
    let unions = format!("SELECT 1{}", " UNION SELECT 1".repeat(6_600));
    let r = s.call("dsql_lint", json!({"sql": unions})).await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    let r = s
        .call("readonly_query", json!({"sql": "SELECT 2 AS two"}))
        .await;
    assert_eq!(structured(&r), json!({"result": [{"two": 2}]}));
    assert!(s.close().await.success());
}
