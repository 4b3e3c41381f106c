//! What a new user meets first (issue 14), through the real binary: a second server on the
//! same `--local-dir` is refused in one line naming the server that holds the folder (and the
//! folder is free again once that server ends); a server started by hand in a terminal says on
//! stderr that it waits for an MCP client, and says nothing when an agent host pipes stdin.

mod common;

use std::process::{Command, Stdio};

use common::{McpSession, structured};
use serde_json::json;

fn second_server(dir: &str) -> std::process::Output {
    let (home, env) = common::mcp::server_env(&[]);
    Command::new(common::mcp::server_binary())
        .args(["--local", "--local-dir", dir])
        .env_clear()
        .envs(env)
        .current_dir(home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_second_server_on_the_same_local_dir_is_refused_in_one_line() {
    let dir = tempfile::Builder::new()
        .prefix("dsql-sandbox-locked-")
        .tempdir()
        .unwrap();
    let kept = dir.path().join("sandbox");
    let kept_arg = kept.display().to_string();
    let args: Vec<String> = ["--local", "--allow-writes", "--local-dir", &kept_arg]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let first = McpSession::start(&args, &[]).await;
    let pid = first.pid().unwrap();
    let r = first
        .call("execute", json!({"sql": "CREATE TABLE held (id int PRIMARY KEY)"}))
        .await;
    assert_eq!(structured(&r)["command"], "CREATE TABLE");

    let out = second_server(&kept_arg);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let head = format!(
        "aurora-dsql-mcp-server: --local: {} is in use by another aurora-dsql-mcp-server (pid {pid}, started ",
        kept.canonicalize().unwrap().display()
    );
    assert!(stderr.starts_with(&head), "{stderr}");
    assert!(
        stderr.ends_with(" s ago): stop that server, or give this one another --local-dir\n"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // The first server was not disturbed.
    let r = first.call("list_tables", json!({})).await;
    assert_eq!(structured(&r)["tables"], json!(["held"]), "{r:?}");
    assert!(first.close().await.success());

    // Its lock ended with it: the folder serves a new server, data intact.
    let again = McpSession::start(&args, &[]).await;
    let r = again.call("list_tables", json!({})).await;
    assert_eq!(structured(&r)["tables"], json!(["held"]), "{r:?}");
    assert!(again.close().await.success());
}

#[test]
fn a_server_started_in_a_terminal_says_it_waits_for_a_client() {
    // `script` gives the server a terminal as stdin; `timeout` ends it after the line.
    let (home, env) = common::mcp::server_env(&[]);
    let out = Command::new("timeout")
        .args(["-s", "INT", "5", "script", "-qec"])
        .arg(common::mcp::server_binary())
        .arg("/dev/null")
        .env_clear()
        .envs(env)
        .current_dir(home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(
        seen.contains(aurora_dsql_mcp_server::server::WAITING_NOTE),
        "{seen}"
    );
}

#[tokio::test]
async fn a_server_on_a_pipe_prints_no_such_line() {
    let session = McpSession::start(&[], &[]).await;
    assert!(!session.list_tools().await.is_empty());
    let stderr = session.stderr();
    assert!(session.close().await.success());
    assert!(
        !stderr.contains("waiting for an MCP client"),
        "{stderr}"
    );
}
