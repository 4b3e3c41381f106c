//! Soak: 4 server processes (4 MCP clients) × 2 concurrent lanes × 150 mixed calls, against
//! one throw-away TLS PostgreSQL: reads, `transact` and `execute` inserts with unique keys,
//! deliberate errors (duplicate keys, refused SQL, bad arguments), client cancellations and
//! query timeouts of writes that must not commit. Afterwards the table holds exactly the
//! expected rows (no write lost or duplicated), each server holds at most its pool's 10
//! connections and none is inside a transaction, and each server's RSS before and after is
//! printed (bounded loosely, not compared). Bounded to 180 s; nothing asserts on speed.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use common::*;
use rmcp::model::{CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest};
use rmcp::service::PeerRequestOptions;
use serde_json::{Value, json};

const CLIENTS: i32 = 4;
/// Concurrent callers per server (so each pool holds several connections at once).
const LANES: i32 = 2;
const CALLS: i32 = 150;
const APP: &str = "aurora-dsql-mcp-server";
const SLOW_SQL: &str =
    "SELECT count(*) FROM generate_series(1, 100000) a CROSS JOIN generate_series(1, 100000) b";

fn is_error(r: &CallToolResult) -> bool {
    r.is_error == Some(true)
}

fn ok(r: &CallToolResult) -> Value {
    assert!(!is_error(r), "tool failed: {}", text(r));
    structured(r)
}

/// Resident set size of a process in kB (`VmRSS` in /proc/<pid>/status).
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The local TCP ports of the sockets process `pid` has open (from /proc), to tell which
/// backend in pg_stat_activity belongs to which server process.
fn local_ports(pid: u32) -> HashSet<i32> {
    let mut inodes = HashSet::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.to_string_lossy().into_owned();
                if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    inodes.insert(inode.to_owned());
                }
            }
        }
    }
    let mut ports = HashSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.insert(i32::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

/// What one client expects the table to hold, and what it saw.
#[derive(Default)]
struct Tally {
    rows: BTreeSet<(i32, i32)>,
    cancelled: usize,
    timed_out: usize,
    errors: usize,
}

async fn client(s: &McpSession, c: i32) -> Tally {
    let mut t = Tally::default();
    let insert = "INSERT INTO soak (client, seq, note) VALUES (%s, %s, %s)";
    for k in 0..CALLS {
        match k % 10 {
            // transact: two rows in one transaction.
            0..=2 => {
                let r = s
                    .call(
                        "transact",
                        json!({"sql_list": [insert, insert],
                               "params_list": [[c, k, format!("tx {c}/{k}")], [c, 10_000 + k, "pair"]]}),
                    )
                    .await;
                assert_eq!(ok(&r), json!({"result": []}));
                t.rows.insert((c, k));
                t.rows.insert((c, 10_000 + k));
            }
            // The power's execute.
            3 => {
                let r = s
                    .call(
                        "execute",
                        json!({"sql": "INSERT INTO soak (client, seq, note) VALUES ($1, $2, $3)",
                               "parameters": [c, k, "execute"]}),
                    )
                    .await;
                assert_eq!(ok(&r), json!({"command": "INSERT", "rowCount": 1}));
                t.rows.insert((c, k));
            }
            // Reads see exactly this client's committed writes so far.
            4 | 5 => {
                let r = s
                    .call(
                        "readonly_query",
                        json!({"sql": "SELECT count(*) AS n FROM soak WHERE client = %s", "params": [c]}),
                    )
                    .await;
                assert_eq!(
                    ok(&r),
                    json!({"result": [{"n": t.rows.len()}]}),
                    "client {c} call {k}"
                );
            }
            6 => {
                let r = s
                    .call(
                        "query",
                        json!({"sql": "SELECT max(seq) AS m FROM soak WHERE client = $1 AND seq < 10000", "parameters": [c]}),
                    )
                    .await;
                let max = t.rows.iter().filter(|r| r.1 < 10_000).map(|r| r.1).max();
                assert_eq!(ok(&r)["rows"], json!([{ "m": max }]));
            }
            // A duplicate key inside a transaction: the whole list rolls back.
            7 => {
                let r = s
                    .call(
                        "transact",
                        json!({"sql_list": [insert, insert],
                               "params_list": [[c, 20_000 + k, "rolled back"], [c, 0, "duplicate"]]}),
                    )
                    .await;
                let e = text(&r);
                assert!(is_error(&r), "{e}");
                assert!(
                    e.starts_with("Error executing tool transact: statement 2 of 2 failed: ERROR 23505: duplicate key value violates unique constraint"),
                    "{e}"
                );
                t.errors += 1;
            }
            // Refused before the database, and a bad argument.
            8 => {
                let r = s
                    .call("readonly_query", json!({"sql": "DELETE FROM soak"}))
                    .await;
                assert!(is_error(&r));
                let r = s.call("transact", json!({"sql_list": "nope"})).await;
                assert!(is_error(&r));
                t.errors += 2;
            }
            // Every 50th call a write that never finishes is cancelled by the client, or
            // (the others) runs into --query-timeout; neither may commit.
            _ if k % 50 == 9 => {
                let args = json!({"sql_list": [insert, SLOW_SQL],
                                  "params_list": [[c, 30_000 + k, "must not commit"], null]});
                let request = ClientRequest::CallToolRequest(CallToolRequest::new(
                    CallToolRequestParams::new("transact")
                        .with_arguments(args.as_object().unwrap().clone()),
                ));
                let handle = s
                    .peer()
                    .send_cancellable_request(request, PeerRequestOptions::no_options())
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
                handle.cancel(Some("soak".into())).await.unwrap();
                t.cancelled += 1;
            }
            _ if k % 50 == 19 || k % 50 == 39 => {
                let r = s
                    .call(
                        "transact",
                        json!({"sql_list": [insert, SLOW_SQL],
                               "params_list": [[c, 30_000 + k, "must not commit"], null]}),
                    )
                    .await;
                assert_eq!(
                    text(&r),
                    "Error executing tool transact: The call timed out after 2s (--query-timeout) and its statement was cancelled; nothing was committed. Narrow the query (WHERE, LIMIT) or raise --query-timeout."
                );
                t.timed_out += 1;
            }
            _ => {
                let r = s
                    .call(
                        "readonly_query",
                        json!({"sql": "SELECT seq FROM soak WHERE client = %s ORDER BY seq LIMIT 3", "params": [c]}),
                    )
                    .await;
                let first: Vec<Value> =
                    t.rows.iter().take(3).map(|r| json!({"seq": r.1})).collect();
                assert_eq!(ok(&r), json!({ "result": first }));
            }
        }
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_clients_by_two_lanes_by_150_mixed_calls_lose_nothing_and_leak_no_connection() {
    let pg = start();
    let db = pg.superuser().await;
    db.batch_execute(
        "CREATE TABLE soak (client int, seq int, note text NOT NULL, PRIMARY KEY (client, seq));
         GRANT ALL ON soak TO admin;",
    )
    .await
    .unwrap();

    let mut sessions = Vec::new();
    for _ in 0..CLIENTS {
        let s = McpSession::for_cluster(&pg, &["--allow-writes", "--query-timeout", "2"]).await;
        // Warm up (pool, TLS, token minting) before the first RSS reading.
        let r = s
            .call("readonly_query", json!({"sql": "SELECT 1 AS one"}))
            .await;
        assert_eq!(ok(&r), json!({"result": [{"one": 1}]}));
        sessions.push(s);
    }
    let before: Vec<u64> = sessions.iter().map(|s| rss_kb(s.pid().unwrap())).collect();

    let started = Instant::now();
    // Each lane writes under its own client number (server × 10 + lane), so every lane
    // knows exactly which rows it committed.
    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(c, s)| {
            tokio::spawn(async move {
                let s = std::sync::Arc::new(s);
                let lanes: Vec<_> = (0..LANES)
                    .map(|lane| {
                        let s = s.clone();
                        tokio::spawn(async move { client(&s, c as i32 * 10 + lane).await })
                    })
                    .collect();
                let mut tally = Tally::default();
                for lane in lanes {
                    let t = lane.await.unwrap();
                    tally.rows.extend(t.rows);
                    tally.cancelled += t.cancelled;
                    tally.timed_out += t.timed_out;
                    tally.errors += t.errors;
                }
                let s = std::sync::Arc::into_inner(s).expect("lanes are done");
                (s, tally)
            })
        })
        .collect();
    let mut done = Vec::new();
    for task in tasks {
        let finished = tokio::time::timeout(Duration::from_secs(180), task)
            .await
            .expect("the soak finishes within 180 s")
            .unwrap();
        done.push(finished);
    }
    println!(
        "soak: {} calls by {CLIENTS} clients x {LANES} lanes in {:?}",
        CLIENTS * LANES * CALLS,
        started.elapsed()
    );

    // Exactly the expected rows: nothing lost, nothing duplicated (the key forbids
    // duplicates, so compare the whole set and the count), nothing from a cancelled,
    // timed-out or failed call.
    let expected: BTreeSet<(i32, i32)> = done.iter().flat_map(|(_, t)| t.rows.clone()).collect();
    let rows = db
        .query("SELECT client, seq FROM soak ORDER BY client, seq", &[])
        .await
        .unwrap();
    let got: Vec<(i32, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, expected.iter().copied().collect::<Vec<_>>());
    let per_client = 45 * 2 + 15; // transact pairs + execute singles
    assert_eq!(got.len(), (CLIENTS * LANES) as usize * per_client);
    let lanes = LANES as usize;
    for (_, t) in &done {
        assert_eq!((t.cancelled, t.timed_out), (3 * lanes, 6 * lanes));
        assert_eq!(t.errors, (15 + 30) * lanes);
    }

    // No connection inside a transaction or still running, at most 10 per server process.
    let deadline = Instant::now() + Duration::from_secs(20);
    let activity = loop {
        let activity: Vec<(i32, String)> = db
            .query(
                "SELECT coalesce(client_port, -1), coalesce(state, '') FROM pg_stat_activity WHERE application_name = $1",
                &[&APP],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        if activity.iter().all(|(_, state)| state == "idle") {
            break activity;
        }
        assert!(
            Instant::now() < deadline,
            "connections not idle: {activity:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut owners: HashMap<usize, usize> = HashMap::new();
    for (c, (s, _)) in done.iter().enumerate() {
        let ports = local_ports(s.pid().unwrap());
        let n = activity.iter().filter(|(p, _)| ports.contains(p)).count();
        println!("soak: server {c} holds {n} connections");
        assert!(n <= 10, "server {c} holds {n} connections");
        owners.insert(c, n);
    }
    assert_eq!(
        owners.values().sum::<usize>(),
        activity.len(),
        "every connection belongs to one of the four servers"
    );

    for (c, (s, _)) in done.iter().enumerate() {
        let after = rss_kb(s.pid().unwrap());
        println!(
            "soak: server {c} RSS before {} kB, after {after} kB",
            before[c]
        );
        assert!(after < 200 * 1024, "server {c} RSS {after} kB");
    }
}
