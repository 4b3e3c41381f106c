//! What a new user meets first (issue 14), through the real binary: a second server on the
//! same `--local-dir` is refused in one line naming the server that holds the folder (and the
//! folder is free again once that server ends); a server started by hand in a terminal says on
//! stderr that it waits for an MCP client, and says nothing when an agent host pipes stdin;
//! `completion/complete` suggests guide names, schemas and tables (prefix, at most 100, cached).

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
        .call(
            "execute",
            json!({"sql": "CREATE TABLE held (id int PRIMARY KEY)"}),
        )
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
    assert!(!stderr.contains("waiting for an MCP client"), "{stderr}");
}

/// `completion/complete` for one resource-template variable, through the client.
async fn complete(
    s: &McpSession,
    template: &str,
    variable: &str,
    typed: &str,
    context: &[(&str, &str)],
) -> rmcp::model::CompletionInfo {
    let context = (!context.is_empty()).then(|| {
        rmcp::model::CompletionContext::with_arguments(
            context
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    });
    s.peer()
        .complete_resource_argument(template, variable, typed, context)
        .await
        .unwrap()
}

fn info(values: &[&str], total: u32, has_more: bool) -> rmcp::model::CompletionInfo {
    rmcp::model::CompletionInfo::with_pagination(
        values.iter().map(|v| v.to_string()).collect(),
        Some(total),
        has_more,
    )
    .unwrap()
}

#[tokio::test]
async fn completions_for_guides_schemas_and_tables_on_the_sandbox() {
    let args: Vec<String> = ["--local", "--allow-writes"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let s = McpSession::start(&args, &[]).await;
    let caps = &s.peer().peer_info().unwrap().capabilities;
    assert!(
        caps.completions.is_some(),
        "completions capability declared"
    );

    for sql in [
        "CREATE SCHEMA shop",
        "CREATE TABLE orders (id int PRIMARY KEY)",
        "CREATE TABLE order_lines (id int PRIMARY KEY)",
        "CREATE TABLE items (id int PRIMARY KEY)",
        "CREATE TABLE shop.orders_archive (id int PRIMARY KEY)",
    ] {
        let r = s.call("execute", json!({"sql": sql})).await;
        assert_ne!(r.is_error, Some(true), "{sql}: {r:?}");
    }
    for i in 0..120 {
        let sql = format!("CREATE TABLE shop.t{i:03} (id int PRIMARY KEY)");
        let r = s.call("execute", json!({"sql": sql})).await;
        assert_ne!(r.is_error, Some(true), "{sql}: {r:?}");
    }

    // Guide names, from the bundled guides.
    assert_eq!(
        complete(&s, "dsql://guides/{name}", "name", "tr", &[]).await,
        info(&["troubleshooting"], 1, false)
    );
    // Schemas and tables, from the catalog, by prefix.
    let tables = "dsql://tables/{schema}/{table}";
    assert_eq!(
        complete(&s, tables, "schema", "", &[]).await,
        info(&["public", "shop"], 2, false)
    );
    assert_eq!(
        complete(&s, tables, "table", "ord", &[("schema", "public")]).await,
        info(&["order_lines", "orders"], 2, false)
    );
    assert_eq!(
        complete(&s, tables, "table", "ord", &[]).await,
        info(&["order_lines", "orders", "orders_archive"], 3, false)
    );
    // At most 100 values, with the total and hasMore.
    let many = complete(&s, tables, "table", "t", &[("schema", "shop")]).await;
    let first: Vec<String> = (0..100).map(|i| format!("t{i:03}")).collect();
    assert_eq!(many.values, first);
    assert_eq!((many.total, many.has_more), (Some(120), Some(true)));
    // Nothing to suggest: an unknown variable, an unknown template, a prompt's SQL.
    assert_eq!(
        complete(&s, tables, "column", "", &[]).await,
        info(&[], 0, false)
    );
    assert_eq!(
        complete(&s, "dsql://views/{name}", "name", "", &[]).await,
        info(&[], 0, false)
    );
    let prompt = s
        .peer()
        .complete_prompt_argument("migration-review", "sql", "SEL", None)
        .await
        .unwrap();
    assert_eq!(prompt, info(&[], 0, false));

    // The listing is cached: a table created now shows up only after the cache expires.
    let r = s
        .call(
            "execute",
            json!({"sql": "CREATE TABLE orders_new (id int PRIMARY KEY)"}),
        )
        .await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    assert_eq!(
        complete(&s, tables, "table", "orders_", &[("schema", "public")]).await,
        info(&[], 0, false)
    );
    assert!(s.close().await.success());
}

#[tokio::test]
async fn text_format_compact_prints_the_text_copy_on_one_line() {
    // dsql_lint answers with its JSON as text only: the text is the whole result.
    let args = json!({"sql": "CREATE INDEX i ON t (a)"});
    let pretty = McpSession::start(&[], &[]).await;
    let text = common::text(&pretty.call("dsql_lint", args.clone()).await);
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        !value["diagnostics"].as_array().unwrap().is_empty(),
        "{text}"
    );
    assert_eq!(text, serde_json::to_string_pretty(&value).unwrap());
    assert!(pretty.close().await.success());

    let compact = McpSession::start(&["--text-format".into(), "compact".into()], &[]).await;
    let text = common::text(&compact.call("dsql_lint", args).await);
    assert_eq!(text, serde_json::to_string(&value).unwrap());
    assert!(!text.contains('\n'));
    assert!(compact.close().await.success());
}
