//! MCP progress notifications for long calls beyond job waits (issue 14), over the real
//! binary and rmcp's real client: every 10,000 rows read of a big result, a re-run after an
//! OCC conflict (a real serialization failure between two transactions at REPEATABLE READ,
//! and DSQL's OC000 text), and a re-run on a fresh connection after the backend was
//! terminated. Progress values strictly increase within a call whatever sends them, and
//! nothing is sent without a `progressToken`. Also what a truncated result says about the
//! whole result's size (`totalRows`).

#![allow(deprecated)] // MCP logging notifications (see tests/common/mcp.rs)

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{McpSession, PgCluster, cluster_args, raw_process, shared, start, structured, text};
use rmcp::model::ProgressNotificationParam;
use serde_json::{Value, json};
use tokio_postgres::Client;

/// (progress, message) of each notification.
fn steps(progress: &[ProgressNotificationParam]) -> Vec<(f64, String)> {
    progress
        .iter()
        .map(|p| (p.progress, p.message.clone().unwrap_or_default()))
        .collect()
}

fn assert_ok(r: &rmcp::model::CallToolResult) {
    assert_ne!(r.is_error, Some(true), "{}", text(r));
}

const NOTE_TAIL: &str = "Add LIMIT/OFFSET (or keyset pagination on the primary key) or a narrower WHERE to read the rest.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_read_sends_progress_every_10000_rows_and_says_how_many_rows_there_were() {
    let pg = shared();
    let s = McpSession::for_cluster(pg, &[]).await;
    let (r, token) = s
        .call_tracked(
            "readonly_query",
            json!({"sql": "SELECT g FROM generate_series(1, 25000) g"}),
        )
        .await;
    assert_ok(&r);
    let note = format!(
        "Result truncated: 1000 of 25000 rows returned because the result has more than 1000 rows (--max-rows). {NOTE_TAIL}"
    );
    let kept: Vec<Value> = (1..=1000).map(|g| json!({ "g": g })).collect();
    assert_eq!(
        structured(&r),
        json!({"result": kept, "truncated": true, "totalRows": 25000, "note": note})
    );
    assert_eq!(r.content.last().unwrap().as_text().unwrap().text, note);
    // Every row was read (the cut result is drained), so two notifications: 10,000 and
    // 20,000 rows.
    assert_eq!(
        steps(&s.progress(&token, 2).await),
        vec![
            (1.0, "10000 rows read".to_string()),
            (2.0, "20000 rows read".to_string())
        ]
    );

    // The power's `query` says the same, as `totalRows` beside `rowCount` (the rows kept).
    let (r, token) = s
        .call_tracked(
            "query",
            json!({"sql": "SELECT g FROM generate_series(1, $1::int) g", "parameters": [30000]}),
        )
        .await;
    assert_ok(&r);
    let v = structured(&r);
    assert_eq!(v["rowCount"], 1000);
    assert_eq!(v["totalRows"], 30000);
    assert_eq!(v["truncated"], true);
    assert_eq!(
        v["note"],
        format!(
            "Result truncated: 1000 of 30000 rows returned because the result has more than 1000 rows (--max-rows). {NOTE_TAIL}"
        )
    );
    assert_eq!(
        steps(&s.progress(&token, 3).await),
        vec![
            (1.0, "10000 rows read".to_string()),
            (2.0, "20000 rows read".to_string()),
            (3.0, "30000 rows read".to_string())
        ]
    );

    // Under 10,000 rows read: no progress, and a whole result has no totalRows.
    let (r, token) = s
        .call_tracked(
            "readonly_query",
            json!({"sql": "SELECT g FROM generate_series(1, 9999) g WHERE g <= 3"}),
        )
        .await;
    assert_eq!(
        structured(&r),
        json!({"result": [{"g": 1}, {"g": 2}, {"g": 3}]})
    );
    assert!(s.progress(&token, 0).await.is_empty());
}

/// On the wire: the row progress comes before the response, in increasing order; and a
/// request without `progressToken` gets none (rmcp's client always sends one, so this
/// part drives the process by hand).
#[test]
fn on_the_wire_row_progress_precedes_the_response_and_needs_a_token() {
    let pg = shared();
    let mut p = raw_process(&cluster_args(pg, &[]), &[]);
    p.handshake();
    p.send_json(&json!({
        "jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {
            "name": "readonly_query",
            "arguments": {"sql": "SELECT g FROM generate_series(1, 25000) g"},
            "_meta": {"progressToken": "rows-raw"}
        }
    }));
    let mut progress = Vec::new();
    let reply = loop {
        let msg = p.read_json_line_timeout(Duration::from_secs(30));
        if msg["method"] == "notifications/progress" {
            progress.push(msg["params"].clone());
        } else if msg["id"] == 3 {
            break msg;
        }
    };
    assert_eq!(reply["result"]["structuredContent"]["totalRows"], 25000);
    assert_eq!(
        progress,
        vec![
            json!({"progressToken": "rows-raw", "progress": 1.0, "message": "10000 rows read"}),
            json!({"progressToken": "rows-raw", "progress": 2.0, "message": "20000 rows read"}),
        ]
    );
    p.send_json(&json!({
        "jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": {
            "name": "readonly_query",
            "arguments": {"sql": "SELECT g FROM generate_series(1, 25000) g"}
        }
    }));
    loop {
        let msg = p.read_json_line_timeout(Duration::from_secs(30));
        assert_ne!(msg["method"], "notifications/progress", "{msg}");
        if msg["id"] == 4 {
            assert_eq!(msg["result"]["structuredContent"]["totalRows"], 25000);
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_cut_by_bytes_reports_the_whole_count() {
    let pg = shared();
    let s = McpSession::for_cluster(pg, &["--max-result-bytes", "600"]).await;
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT i, repeat('x', 40) AS s FROM generate_series(1, 100) i"}),
        )
        .await;
    let v = structured(&r);
    assert_eq!(v["result"].as_array().unwrap().len(), 3);
    assert_eq!(v["totalRows"], 100);
    assert_eq!(
        v["note"],
        format!(
            "Result truncated: 3 of 100 rows returned because the result is larger than 600 bytes (--max-result-bytes). {NOTE_TAIL}"
        )
    );
    // The first row alone over the bound: none kept, the count still known.
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT repeat('y', 300) AS big FROM generate_series(1, 2)"}),
        )
        .await;
    assert_eq!(
        structured(&r),
        json!({"result": [], "truncated": true, "totalRows": 2, "note": "Result truncated: 0 of 2 rows returned because the result is larger than 600 bytes (--max-result-bytes) and its first row alone exceeds that. Select fewer columns or shorter values (e.g. left(column, 1000))."})
    );
}

/// Waits (at most 20 s) for a backend other than `not` whose running statement contains
/// `needle` and that waits on an advisory lock; returns its pid.
async fn waiting_at_gate(db: &Client, needle: &str, not: &[i32]) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = db
            .query(
                "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND wait_event_type = 'Lock' \
                 AND wait_event = 'advisory' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
                &[&needle],
            )
            .await
            .unwrap();
        if let Some(pid) = rows
            .iter()
            .map(|r| r.get::<_, i32>(0))
            .find(|p| !not.contains(p))
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "nothing waits at the gate");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A private cluster at DSQL's isolation (REPEATABLE READ), with `counter`, a `gate()` that
/// waits for advisory lock 7101, and `always_conflicts()`, which fails with DSQL's OC000 text.
async fn conflict_cluster() -> (PgCluster, Client) {
    let pg = start();
    let db = pg.superuser().await;
    db.batch_execute(
        "ALTER ROLE admin SET default_transaction_isolation = 'repeatable read';
         CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL);
         INSERT INTO counter VALUES (1, 0);
         GRANT ALL ON counter TO admin;
         CREATE FUNCTION gate() RETURNS int LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_advisory_xact_lock_shared(7101); RETURN 1; END $$;
         CREATE FUNCTION always_conflicts() RETURNS int LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION USING ERRCODE = '40001', MESSAGE = 'change conflicts with another transaction, please retry: (OC000)'; END $$;",
    )
    .await
    .unwrap();
    (pg, db)
}

const ALLOW: [&str; 4] = [
    "--allow-function",
    "gate",
    "--allow-function",
    "always_conflicts",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_real_serialization_failure_and_a_reconnect_send_progress() {
    let (pg, db) = conflict_cluster().await;
    let mut flags = vec!["--allow-writes"];
    flags.extend(ALLOW);
    let s = Arc::new(McpSession::for_cluster(&pg, &flags).await);

    // T1 takes its snapshot and waits at the gate; T2 updates the row and commits; T1's
    // UPDATE then meets a row changed after its snapshot: a real 40001, and a re-run.
    db.execute("SELECT pg_advisory_lock(7101)", &[])
        .await
        .unwrap();
    let t1 = tokio::spawn({
        let s = s.clone();
        async move {
            s.call_tracked(
                "transact",
                json!({"sql_list": [
                    "SELECT n FROM counter WHERE id = 1",
                    "SELECT gate() AS g, 'occ_marker' AS tag",
                    "UPDATE counter SET n = n + 1 WHERE id = 1 RETURNING n"
                ]}),
            )
            .await
        }
    });
    waiting_at_gate(&db, "occ_marker", &[]).await;
    let t2 = s
        .call(
            "transact",
            json!({"sql_list": ["UPDATE counter SET n = n + 1 WHERE id = 1 RETURNING n"]}),
        )
        .await;
    assert_eq!(structured(&t2), json!({"result": [{"n": 1}]}));
    db.execute("SELECT pg_advisory_unlock(7101)", &[])
        .await
        .unwrap();
    let (t1, token) = t1.await.unwrap();
    assert_eq!(structured(&t1), json!({"result": [{"n": 2}]}));
    let progress = steps(&s.progress(&token, 1).await);
    assert_eq!(progress.len(), 1, "{progress:?}");
    assert_eq!(progress[0].0, 1.0);
    let message = &progress[0].1;
    let prefix = "OCC conflict (SQLSTATE 40001): re-running the whole unit of work, attempt 2 (retry 1 of 3) in ";
    assert!(message.starts_with(prefix), "{message}");
    let ms: u64 = message[prefix.len()..]
        .strip_suffix(" ms")
        .unwrap_or_else(|| panic!("{message}"))
        .parse()
        .unwrap_or_else(|_| panic!("{message}"));
    // The first backoff: 100 ms plus up to 25 % jitter.
    assert!((100..=125).contains(&ms), "{message}");

    // The reconnect: the read's backend is terminated while it waits at the gate; the whole
    // unit runs again on a fresh connection, and the progress says so.
    db.execute("SELECT pg_advisory_lock(7101)", &[])
        .await
        .unwrap();
    let read = tokio::spawn({
        let s = s.clone();
        async move {
            s.call_tracked(
                "readonly_query",
                json!({"sql": "SELECT gate() AS g, 'kill_marker' AS tag"}),
            )
            .await
        }
    });
    let victim = waiting_at_gate(&db, "kill_marker", &[]).await;
    let killed: bool = db
        .query_one("SELECT pg_terminate_backend($1)", &[&victim])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    waiting_at_gate(&db, "kill_marker", &[victim]).await;
    db.execute("SELECT pg_advisory_unlock(7101)", &[])
        .await
        .unwrap();
    let (r, token) = read.await.unwrap();
    assert_eq!(
        structured(&r),
        json!({"result": [{"g": 1, "tag": "kill_marker"}]})
    );
    assert_eq!(
        steps(&s.progress(&token, 1).await),
        vec![(
            1.0,
            "connection lost (dropped or expired): re-running the whole unit of work on a fresh connection, attempt 2".to_string()
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_from_rows_and_an_occ_retry_strictly_increases_in_one_call() {
    let (pg, _db) = conflict_cluster().await;
    let mut flags = vec!["--occ-retries", "1", "--occ-backoff-ms", "10"];
    flags.extend(ALLOW);
    let s = McpSession::for_cluster(&pg, &flags).await;
    // Attempt 1 reads 10,000 rows, then conflicts (DSQL's OC000 text); attempt 2 reads
    // them again and conflicts again, and the call gives up after its one retry.
    let (r, token) = s
        .call_tracked(
            "transact",
            json!({"sql_list": [
                "SELECT g FROM generate_series(1, 10000) g",
                "SELECT always_conflicts()"
            ]}),
        )
        .await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(
        text(&r),
        "Error executing tool transact: statement 2 of 2 failed: ERROR 40001: change conflicts with another transaction, please retry: (OC000)"
    );
    let progress = steps(&s.progress(&token, 3).await);
    assert_eq!(progress.len(), 3, "{progress:?}");
    let values: Vec<f64> = progress.iter().map(|p| p.0).collect();
    assert_eq!(values, vec![1.0, 2.0, 3.0]);
    assert_eq!(progress[0].1, "10000 rows read");
    let prefix = "OCC conflict (SQLSTATE 40001, OC000): re-running the whole unit of work, attempt 2 (retry 1 of 1) in ";
    assert!(progress[1].1.starts_with(prefix), "{}", progress[1].1);
    assert!(progress[1].1.ends_with(" ms"), "{}", progress[1].1);
    assert_eq!(progress[2].1, "10000 rows read");
}
