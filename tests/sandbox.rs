//! The `--local` sandbox through the real binary and a real MCP client: DSQL's behaviours
//! (ASYNC index builds and jobs, the row limit, the rule checker, IAM and isolation
//! refusals) and its clean-up (no folder and no postmaster left after stdin closes,
//! SIGTERM or SIGKILL; `--local-dir` keeps data between runs).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{McpSession, structured, text};
use serde_json::{Value, json};

fn args(extra: &[&str]) -> Vec<String> {
    let mut a = vec!["--local".to_string(), "--allow-writes".to_string()];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// The sandbox folder, from the server's start-up log line.
fn sandbox_folder(session: &McpSession) -> PathBuf {
    let stderr = session.stderr();
    let line = stderr
        .lines()
        .find(|l| l.contains("local sandbox started"))
        .unwrap_or_else(|| panic!("no start-up line in stderr:\n{stderr}"));
    let folder = line
        .split("folder=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("folder= in the start-up line");
    PathBuf::from(folder)
}

/// The postmaster's pid, from `postmaster.pid` in the data directory.
fn postmaster_pid(folder: &std::path::Path) -> i32 {
    let pidfile = std::fs::read_to_string(folder.join("data/postmaster.pid"))
        .expect("postmaster.pid while the sandbox runs");
    pidfile.lines().next().unwrap().trim().parse().unwrap()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks whether the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Waits up to 10 s for `cond`.
fn eventually(cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

async fn execute(s: &McpSession, sql: &str) -> Value {
    let r = s.call("execute", json!({ "sql": sql })).await;
    assert_ne!(r.is_error, Some(true), "{sql}: {}", text(&r));
    structured(&r)
}

async fn execute_err(s: &McpSession, sql: &str) -> String {
    let r = s.call("execute", json!({ "sql": sql })).await;
    assert_eq!(r.is_error, Some(true), "{sql} succeeded: {}", text(&r));
    text(&r)
}

async fn query(s: &McpSession, sql: &str, params: Value) -> Vec<Value> {
    let r = s
        .call("query", json!({ "sql": sql, "parameters": params }))
        .await;
    assert_ne!(r.is_error, Some(true), "{sql}: {}", text(&r));
    structured(&r)["rows"].as_array().unwrap().clone()
}

fn is_job_id(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 26
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    })
}

#[tokio::test]
async fn sandbox_behaves_like_dsql() {
    let s = McpSession::start(&args(&[]), &[]).await;
    execute(&s, "CREATE TABLE items (id int PRIMARY KEY, name text)").await;
    let inserted = execute(
        &s,
        "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g",
    )
    .await;
    assert_eq!(inserted["rowCount"], 100);

    // CREATE INDEX ASYNC answers with a job id, recorded in sys.jobs as completed.
    let created = execute(&s, "CREATE INDEX ASYNC items_name_idx ON items (name)").await;
    let job_id = created["rows"][0]["job_id"].clone();
    assert!(is_job_id(&job_id), "job id: {created}");
    let jobs = query(
        &s,
        "SELECT job_id, status, details, job_type, class_id, object_id, object_name, start_time, update_time \
         FROM sys.jobs WHERE job_id = $1",
        json!([job_id]),
    )
    .await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["status"], "completed");
    assert_eq!(jobs[0]["job_type"], "INDEX_BUILD");
    assert_eq!(jobs[0]["object_name"], "public.items_name_idx");

    // CALL sys.wait_for_job, outside a transaction, says it succeeded.
    let waited = execute(
        &s,
        &format!("CALL sys.wait_for_job('{}')", job_id.as_str().unwrap()),
    )
    .await;
    assert_eq!(waited["rows"][0]["succeeded"], true, "{waited}");
    let bad = execute_err(&s, "CALL sys.wait_for_job('no-such-job')").await;
    assert!(bad.contains("22P02"), "{bad}");

    // describe_table shows the index, valid.
    let described = s
        .call("describe_table", json!({ "table_name": "items" }))
        .await;
    let described = structured(&described);
    let index = described["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "items_name_idx")
        .unwrap_or_else(|| panic!("index missing: {described}"));
    assert_eq!(index["valid"], true);

    // A unique build over duplicates: the job fails and says why.
    execute(&s, "INSERT INTO items VALUES (101, 'item 1')").await;
    let unique = execute(
        &s,
        "CREATE UNIQUE INDEX ASYNC items_name_key ON items (name)",
    )
    .await;
    let failed = query(
        &s,
        "SELECT status, details FROM sys.jobs WHERE job_id = $1",
        json!([unique["rows"][0]["job_id"]]),
    )
    .await;
    assert_eq!(failed[0]["status"], "failed");
    assert!(
        failed[0]["details"].as_str().unwrap().contains("duplicate"),
        "{failed:?}"
    );
    let waited = execute(
        &s,
        &format!(
            "CALL sys.wait_for_job('{}')",
            unique["rows"][0]["job_id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(waited["rows"][0]["succeeded"], false);

    // ALTER TABLE ASYNC ... VALIDATE CONSTRAINT runs as a job too.
    execute(
        &s,
        "ALTER TABLE items ADD CONSTRAINT name_not_empty CHECK (name <> '') NOT VALID",
    )
    .await;
    let validated = execute(
        &s,
        "ALTER TABLE ASYNC items VALIDATE CONSTRAINT name_not_empty",
    )
    .await;
    let job = query(
        &s,
        "SELECT status, job_type, object_name FROM sys.jobs WHERE job_id = $1",
        json!([validated["rows"][0]["job_id"]]),
    )
    .await;
    assert_eq!(job[0]["status"], "completed");
    assert_eq!(job[0]["job_type"], "VALIDATE_CONSTRAINT");
    assert_eq!(job[0]["object_name"], "public.name_not_empty");

    // 3,000 rows per transaction: 3,000 pass, 3,001 fail with DSQL's SQLSTATE and message.
    execute(&s, "CREATE TABLE bulk (id int PRIMARY KEY)").await;
    let ok = execute(
        &s,
        "INSERT INTO bulk SELECT g FROM generate_series(1, 3000) g",
    )
    .await;
    assert_eq!(ok["rowCount"], 3000);
    let too_many = execute_err(
        &s,
        "INSERT INTO bulk SELECT g FROM generate_series(5001, 8001) g",
    )
    .await;
    assert!(too_many.contains("54000"), "{too_many}");
    assert!(
        too_many.contains("transaction row limit exceeded"),
        "{too_many}"
    );
    let count = query(&s, "SELECT count(*) AS n FROM bulk", json!([])).await;
    assert_eq!(count[0]["n"], 3000, "the failed statement left nothing");
    let deleted = execute(&s, "DELETE FROM bulk WHERE id > 0").await;
    assert_eq!(
        deleted["rowCount"], 3000,
        "exactly 3,000 rows is within the limit"
    );

    // The rule checker refuses what DSQL refuses, before the database sees it.
    let sync_index = execute_err(&s, "CREATE INDEX items_id_idx ON items (id)").await;
    assert!(sync_index.to_uppercase().contains("ASYNC"), "{sync_index}");

    // IAM and isolation levels.
    let iam = execute_err(
        &s,
        "AWS IAM GRANT app_reader TO 'arn:aws:iam::123456789012:role/reader'",
    )
    .await;
    assert!(iam.contains("not available in the local sandbox"), "{iam}");
    let serializable = execute_err(&s, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").await;
    assert!(
        serializable.to_lowercase().contains("isolation"),
        "{serializable}"
    );
    let level = query(&s, "SHOW transaction_isolation", json!([])).await;
    assert_eq!(level[0]["transaction_isolation"], "repeatable read");

    let folder = sandbox_folder(&s);
    let pid = postmaster_pid(&folder);
    assert!(alive(pid));
    let status = s.close().await;
    assert!(status.success(), "exit status {status}");
    assert!(
        eventually(|| !alive(pid)),
        "postmaster {pid} survived the server"
    );
    assert!(!folder.exists(), "{} survived the server", folder.display());
}

#[tokio::test]
async fn sigterm_and_sigkill_leave_nothing_running() {
    // SIGTERM: a clean stop, folder removed.
    let s = McpSession::start(&args(&[]), &[]).await;
    let folder = sandbox_folder(&s);
    let pid = postmaster_pid(&folder);
    let server = s.pid().unwrap() as i32;
    unsafe { libc::kill(server, libc::SIGTERM) };
    assert!(eventually(|| !alive(pid)), "postmaster survived SIGTERM");
    assert!(eventually(|| !folder.exists()), "folder survived SIGTERM");
    drop(s);

    // SIGKILL: the kernel takes the postmaster down with the server.
    let s = McpSession::start(&args(&[]), &[]).await;
    let folder = sandbox_folder(&s);
    let pid = postmaster_pid(&folder);
    let server = s.pid().unwrap() as i32;
    unsafe { libc::kill(server, libc::SIGKILL) };
    assert!(eventually(|| !alive(pid)), "postmaster survived SIGKILL");
    drop(s);
    // The folder of the killed run is swept by the next start.
    let next = McpSession::start(&args(&[]), &[]).await;
    assert!(
        eventually(|| !folder.exists()),
        "the killed run's folder was not swept"
    );
    next.close().await;
}

#[tokio::test]
async fn local_dir_keeps_data_between_runs() {
    let dir = tempfile::Builder::new()
        .prefix("dsql-sandbox-kept-")
        .tempdir()
        .unwrap();
    let kept = dir.path().join("sandbox");
    let kept_arg = kept.display().to_string();

    let first = McpSession::start(&args(&["--local-dir", &kept_arg]), &[]).await;
    execute(&first, "CREATE TABLE notes (id int PRIMARY KEY, body text)").await;
    execute(&first, "INSERT INTO notes VALUES (1, 'kept')").await;
    let pid = postmaster_pid(&kept);
    assert!(first.close().await.success());
    assert!(eventually(|| !alive(pid)));
    assert!(
        kept.join("data/PG_VERSION").is_file(),
        "data folder removed"
    );

    let second = McpSession::start(&args(&["--local-dir", &kept_arg]), &[]).await;
    let rows = query(&second, "SELECT body FROM notes WHERE id = 1", json!([])).await;
    assert_eq!(rows[0]["body"], "kept");
    // The emulation is still in place on a reused data directory.
    let too_many = execute_err(
        &second,
        "INSERT INTO notes SELECT g, 'x' FROM generate_series(2, 3002) g",
    )
    .await;
    assert!(too_many.contains("54000"), "{too_many}");
    assert!(second.close().await.success());
    assert!(kept.exists());
}
