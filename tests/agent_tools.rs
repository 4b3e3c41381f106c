//! The agent tools of issue 14 over the real binary and rmcp's real MCP client:
//! `wait_for_job` and `list_jobs` (polling `sys.jobs`, read-only, with progress
//! notifications), on the `--local` sandbox (real ASYNC jobs) and on the TLS stand-in with
//! the sandbox's emulation installed, where the superuser writes job rows a test needs (a
//! failed build, a build that stays `processing`).

mod common;

use std::time::Duration;

use common::{McpSession, cluster_args, raw_process, structured, text, unique_name};
use serde_json::{Value, json};

/// The stand-in cluster of this test binary, with the sandbox's `sys.jobs` emulation.
async fn pg_with_jobs() -> &'static common::PgCluster {
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let pg = common::shared();
    // Once per test binary: concurrent CREATE OR REPLACE of the same objects would conflict.
    INSTALLED
        .get_or_init(|| async {
            let su = pg.superuser().await;
            su.batch_execute(aurora_dsql_mcp_server::sandbox::emulation::SETUP_SQL)
                .await
                .expect("install the emulation");
        })
        .await;
    pg
}

/// Inserts a job row as the superuser; returns its id.
async fn insert_job(
    pg: &common::PgCluster,
    status: &str,
    details: Option<&str>,
    name: &str,
) -> String {
    let su = pg.superuser().await;
    let row = su
        .query_one(
            "INSERT INTO sys.job_log VALUES (sys.new_job_id(), $1, $2, 'INDEX_BUILD', NULL, NULL, $3, \
             '2026-12-01 10:00:00+00', '2026-12-01 10:00:05+00') RETURNING job_id",
            &[&status, &details, &name],
        )
        .await
        .expect("insert a job row");
    row.get(0)
}

fn err(r: &rmcp::model::CallToolResult) -> String {
    assert_eq!(r.is_error, Some(true), "expected an error: {}", text(r));
    text(r)
}

#[tokio::test]
async fn wait_for_job_on_the_sandbox_after_create_index_async() {
    let s = McpSession::start(&["--local".into(), "--allow-writes".into()], &[]).await;
    let r = s
        .call(
            "execute",
            json!({"sql": "CREATE TABLE orders (id int PRIMARY KEY, customer int)"}),
        )
        .await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    let r = s
        .call(
            "execute",
            json!({"sql": "CREATE INDEX ASYNC orders_customer_idx ON orders (customer)"}),
        )
        .await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    let job_id = structured(&r)["rows"][0]["job_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let r = s.call("wait_for_job", json!({"job_id": job_id})).await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    let ended = structured(&r);
    assert_eq!(ended["job_id"], job_id.as_str());
    assert_eq!(ended["status"], "completed");
    assert_eq!(ended["succeeded"], true);
    assert_eq!(ended["job_type"], "INDEX_BUILD");
    assert_eq!(ended["object_name"], "public.orders_customer_idx");
    assert_eq!(ended["details"], Value::Null);
    assert!(ended["waited_seconds"].as_f64().unwrap() < 5.0, "{ended}");
    assert!(ended.get("note").is_none(), "{ended}");
    // The text content is the same JSON.
    assert_eq!(serde_json::from_str::<Value>(&text(&r)).unwrap(), ended);

    let r = s.call("list_jobs", json!({"status": "completed"})).await;
    let listed = structured(&r);
    assert_eq!(listed["status"], "completed");
    assert_eq!(listed["count"], 1, "{listed}");
    assert_eq!(listed["jobs"][0]["job_id"], job_id.as_str());
    assert_eq!(
        listed["jobs"][0]["object_name"],
        "public.orders_customer_idx"
    );
    let r = s.call("list_jobs", json!({"status": "failed"})).await;
    assert_eq!(
        structured(&r),
        json!({"jobs": [], "count": 0, "status": "failed"})
    );
}

#[tokio::test]
async fn job_ids_and_arguments_are_checked_before_any_connection() {
    // No cluster configured: a bad id is refused for what it is, not for the missing cluster.
    let s = McpSession::start(&[], &[]).await;
    let r = s
        .call("wait_for_job", json!({"job_id": "1; DROP TABLE t"}))
        .await;
    assert_eq!(
        err(&r),
        "Error executing tool wait_for_job: invalid job_id \"1; DROP TABLE t\": a DSQL job id is 26 characters of a-z and 2-7 (the job_id column returned by CREATE INDEX ASYNC, or list_jobs)"
    );
    let r = s
        .call(
            "wait_for_job",
            json!({"job_id": "abcdefghijklmnopqrstuvwxyz", "timeout_seconds": 0}),
        )
        .await;
    assert_eq!(
        err(&r),
        "Error executing tool wait_for_job: timeout_seconds must be between 1 and 3600 (got 0)"
    );
    let r = s.call("list_jobs", json!({"status": "done"})).await;
    assert_eq!(
        err(&r),
        "Error executing tool list_jobs: invalid status \"done\": use one of submitted, processing, completed, failed, cancelled, canceled"
    );
    // Both tools are reads in every mode.
    for name in ["wait_for_job", "list_jobs"] {
        let tools = s.list_tools().await;
        let t = tools.iter().find(|t| t.name == name).unwrap();
        let hints = serde_json::to_value(&t.annotations).unwrap();
        assert_eq!(hints["readOnlyHint"], true, "{name}");
        assert_eq!(hints["destructiveHint"], false, "{name}");
    }
    // A valid id on a server without a cluster: the usual message.
    let r = s
        .call(
            "wait_for_job",
            json!({"job_id": "abcdefghijklmnopqrstuvwxyz"}),
        )
        .await;
    assert!(err(&r).ends_with("Database not configured. Please configure --cluster_endpoint, --database_user, and --region."));
}

#[tokio::test]
async fn failed_missing_and_running_jobs_on_a_read_only_server() {
    let pg = pg_with_jobs().await;
    let name = format!("public.{}", unique_name("idx"));
    let failed = insert_job(
        pg,
        "failed",
        Some("could not create unique index: Key (email)=(a@x) is duplicated."),
        &name,
    )
    .await;
    let running = insert_job(pg, "processing", None, &name).await;
    // A read-only server (no --allow-writes): waiting is a read.
    let s = McpSession::for_cluster(pg, &[]).await;

    let r = s.call("wait_for_job", json!({"job_id": failed})).await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    let ended = structured(&r);
    assert_eq!(ended["status"], "failed");
    assert_eq!(ended["succeeded"], false);
    assert_eq!(
        ended["details"],
        "could not create unique index: Key (email)=(a@x) is duplicated."
    );
    assert_eq!(
        ended["note"],
        format!(
            "The job ended failed: could not create unique index: Key (email)=(a@x) is duplicated.. The index or constraint {name} is not usable (describe_table shows valid=false). Fix the cause (for a UNIQUE index, the duplicate rows), DROP the invalid index, and run the ASYNC statement again."
        )
    );
    assert_eq!(ended["start_time"], "2026-12-01 10:00:00+00");

    let r = s
        .call(
            "wait_for_job",
            json!({"job_id": "zzzzzzzzzzzzzzzzzzzzzzzzzz"}),
        )
        .await;
    assert_eq!(
        err(&r),
        "Error executing tool wait_for_job: job zzzzzzzzzzzzzzzzzzzzzzzzzz was not found in sys.jobs (DSQL keeps finished jobs for at least 30 minutes; list_jobs shows the jobs it holds)"
    );

    let started = std::time::Instant::now();
    let r = s
        .call(
            "wait_for_job",
            json!({"job_id": running, "timeout_seconds": 1}),
        )
        .await;
    let waited = started.elapsed();
    assert_eq!(
        err(&r),
        format!(
            "Error executing tool wait_for_job: job {running} is still processing after 1 s (INDEX_BUILD on {name}, started 2026-12-01 10:00:00+00). It keeps running on the cluster: call wait_for_job again with the same job_id (timeout_seconds up to 3600) to keep waiting, or list_jobs to see it."
        )
    );
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(10),
        "{waited:?}"
    );

    let r = s.call("list_jobs", json!({"status": "processing"})).await;
    let listed = structured(&r);
    let ids: Vec<&str> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&running.as_str()), "{listed}");
    assert!(!ids.contains(&failed.as_str()), "{listed}");
}

#[tokio::test]
async fn waiting_sends_progress_when_asked() {
    let pg = pg_with_jobs().await;
    let running = insert_job(pg, "submitted", None, "public.progress_idx").await;
    let mut p = raw_process(&cluster_args(pg, &[]), &[]);
    p.handshake();
    p.send_json(&json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {
            "name": "wait_for_job",
            "arguments": {"job_id": running, "timeout_seconds": 2},
            "_meta": {"progressToken": "wait-1"}
        }
    }));
    let mut progress = Vec::new();
    let reply = loop {
        let msg = p.read_json_line_timeout(Duration::from_secs(10));
        if msg["method"] == "notifications/progress" {
            progress.push(msg["params"].clone());
        } else if msg["id"] == 7 {
            break msg;
        }
    };
    assert_eq!(reply["result"]["isError"], true, "{reply}");
    // Polls at 0, 0.25, 0.75, 1.75 s find it running before the 2 s timeout.
    assert!(progress.len() >= 3, "{progress:?}");
    // In order, increasing (MCP requires it).
    let steps: Vec<f64> = progress
        .iter()
        .map(|n| n["progress"].as_f64().unwrap())
        .collect();
    let expected: Vec<f64> = (1..=steps.len()).map(|i| i as f64).collect();
    assert_eq!(steps, expected);
    for n in &progress {
        assert_eq!(n["progressToken"], "wait-1");
        assert!(
            n["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("job {running} is submitted after ")),
            "{n}"
        );
        assert!(n["progress"].as_f64().unwrap() >= 1.0, "{n}");
    }

    // Without a progress token, no progress notification.
    p.send_json(&json!({
        "jsonrpc": "2.0", "id": 8, "method": "tools/call",
        "params": {"name": "wait_for_job", "arguments": {"job_id": running, "timeout_seconds": 1}}
    }));
    loop {
        let msg = p.read_json_line_timeout(Duration::from_secs(10));
        assert_ne!(msg["method"], "notifications/progress", "{msg}");
        if msg["id"] == 8 {
            break;
        }
    }
}

/// The message after "Error executing tool <tool>: ".
fn message(tool: &str, r: &rmcp::model::CallToolResult) -> String {
    let t = err(r);
    t.strip_prefix(&format!("Error executing tool {tool}: "))
        .unwrap_or_else(|| panic!("{t}"))
        .to_owned()
}

#[tokio::test]
async fn explain_finds_the_missing_index_on_a_10000_row_table() {
    let pg = common::shared();
    let t = unique_name("explain");
    let su = pg.superuser().await;
    su.batch_execute(&format!(
        "CREATE TABLE public.{t} (id int PRIMARY KEY, col int, note text);
         INSERT INTO public.{t} SELECT g, g % 1000, 'n' || g FROM generate_series(1, 10000) g;
         ANALYZE public.{t};
         GRANT SELECT ON public.{t} TO admin;"
    ))
    .await
    .unwrap();
    let s = McpSession::for_cluster(pg, &[]).await;

    let r = s
        .call(
            "explain",
            json!({"sql": format!("SELECT * FROM {t} WHERE col = 42")}),
        )
        .await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    let out = structured(&r);
    assert_eq!(serde_json::from_str::<Value>(&text(&r)).unwrap(), out);
    assert_eq!(out["engine"], "postgresql");
    assert_eq!(out["analyze"], false);
    assert!(
        out["note"]
            .as_str()
            .unwrap()
            .starts_with("This plan is PostgreSQL's")
    );
    assert!(
        out["plan"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Seq Scan on {t}")),
        "{out}"
    );
    let node = &out["nodes"][0];
    assert_eq!(node["type"], "Seq Scan");
    assert_eq!(node["relation"], t.as_str());
    assert_eq!(node["depth"], 0);
    assert_eq!(node["estimated_rows"], 10.0);
    assert_eq!(
        node["filters"],
        json!([{"applied": "above_storage", "condition": "(col = 42)"}])
    );
    assert!(node.get("actual_rows").is_none(), "{node}");
    let statement = format!("CREATE INDEX ASYNC {t}_col_idx ON public.{t} (col)");
    assert_eq!(
        out["findings"],
        json!([{
            "kind": "missing_index",
            "node": "Seq Scan",
            "message": format!("Seq Scan on public.{t} reads every row to find col = a value: no index starts with col."),
            "fix": format!("Create the index with execute, then wait_for_job with the job_id it returns: {statement}"),
            "statement": statement,
        }])
    );
    // The suggestion is what the rule checker (and so execute) accepts.
    aurora_dsql_mcp_server::policy::check_rules(
        &[statement.as_str()],
        aurora_dsql_mcp_server::policy::RuleSet::Power,
    )
    .expect("the suggested statement passes the rule checker");

    // analyze=true runs it (read-only) and reports actual rows and time.
    let r = s
        .call(
            "explain",
            json!({"sql": format!("SELECT * FROM {t} WHERE col = $1"), "parameters": [42], "analyze": true}),
        )
        .await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    let out = structured(&r);
    assert_eq!(out["analyze"], true);
    let node = &out["nodes"][0];
    assert_eq!(node["actual_rows"], 10.0, "{out}");
    assert_eq!(node["loops"], 1.0);
    assert_eq!(node["rows_removed_by_filter"], 9990.0);
    assert!(node["actual_time_ms"].as_f64().unwrap() >= 0.0);
    assert!(out["execution_time_ms"].as_f64().is_some(), "{out}");
    assert_eq!(out["findings"][0]["kind"], "missing_index");
    assert_eq!(out["findings"].as_array().unwrap().len(), 1, "{out}");

    // With an index on col, no finding.
    su.batch_execute(&format!("CREATE INDEX {t}_col_idx ON public.{t} (col)"))
        .await
        .unwrap();
    let r = s
        .call(
            "explain",
            json!({"sql": format!("SELECT * FROM {t} WHERE col = 42")}),
        )
        .await;
    let out = structured(&r);
    assert_eq!(out["findings"], json!([]), "{out}");
    assert_ne!(out["nodes"][0]["type"], "Seq Scan", "{out}");
}

#[tokio::test]
async fn explain_takes_reads_only_as_query_does() {
    let pg = common::shared();
    let s = McpSession::for_cluster(pg, &["--allow-writes"]).await;
    for sql in ["DELETE FROM pg_class", "SELECT 1; SELECT 2"] {
        let q = s.call("query", json!({"sql": sql})).await;
        let e = s
            .call("explain", json!({"sql": sql, "analyze": true}))
            .await;
        assert_eq!(message("explain", &e), message("query", &q), "{sql}");
    }
    let r = s.call("explain", json!({"sql": "EXPLAIN SELECT 1"})).await;
    assert_eq!(
        message("explain", &r),
        "pass the statement itself: explain adds EXPLAIN (and ANALYZE with analyze=true)"
    );
    let r = s
        .call("explain", json!({"sql": "SELECT 1", "analyze": "yes"}))
        .await;
    assert_eq!(
        message("explain", &r),
        "1 validation error for explainArguments\nanalyze\n  Input should be a valid boolean"
    );
}

#[tokio::test]
async fn describe_table_takes_schema_dot_table() {
    let pg = common::shared();
    let schema = unique_name("qual");
    let su = pg.superuser().await;
    su.batch_execute(&format!(
        "CREATE SCHEMA {schema}; GRANT USAGE ON SCHEMA {schema} TO admin;
         CREATE TABLE {schema}.items (id int PRIMARY KEY, name text);
         GRANT SELECT ON {schema}.items TO admin;"
    ))
    .await
    .unwrap();
    let s = McpSession::for_cluster(pg, &[]).await;
    let qualified = s
        .call(
            "describe_table",
            json!({"table_name": format!("{schema}.items")}),
        )
        .await;
    let separate = s
        .call(
            "describe_table",
            json!({"table_name": "items", "schema": schema}),
        )
        .await;
    assert_ne!(qualified.is_error, Some(true), "{}", text(&qualified));
    assert_eq!(structured(&qualified), structured(&separate));
    assert_eq!(structured(&qualified)["schema"], schema.as_str());
    assert_eq!(structured(&qualified)["table"], "items");
    let r = s
        .call(
            "describe_table",
            json!({"table_name": format!("{schema}.items"), "schema": "public"}),
        )
        .await;
    assert_eq!(
        message("describe_table", &r),
        format!(
            "table_name \"{schema}.items\" names its schema and the schema argument names one too: give the schema in one place"
        )
    );
}

/// `dsql_lint` reports what `execute` refuses (issue 14), under the server's `--rules`, and
/// its summary counts the fixes it applied.
#[tokio::test]
async fn dsql_lint_reports_what_execute_refuses_and_counts_its_fixes() {
    let pg = common::shared();
    let table = unique_name("lint_json");
    let create = format!("CREATE TABLE {table} (id int PRIMARY KEY, doc json)");
    let sql = format!("{create};\nBEGIN;\nCREATE INDEX {table}_i ON {table} (id);");
    let rules = |v: &Value| -> Vec<(String, u64)> {
        v["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["rule"].as_str().unwrap().to_owned(),
                    d["line"].as_u64().unwrap(),
                )
            })
            .collect()
    };

    let s = McpSession::for_cluster(pg, &["--allow-writes"]).await;
    let r = s.call("dsql_lint", json!({"sql": sql, "fix": true})).await;
    let v: Value = serde_json::from_str(&text(&r)).unwrap();
    assert_eq!(
        rules(&v),
        [
            ("index_async".to_owned(), 3),
            ("json_type".to_owned(), 1),
            ("transaction_control".to_owned(), 2)
        ]
    );
    assert_eq!(
        v["summary"],
        json!({"errors": 2, "warnings": 1, "fixed": 1})
    );
    assert_eq!(
        v["fixed_sql"],
        // dsql-lint's printer: one blank line between statements.
        format!("{create};\n\nBEGIN;\n\nCREATE INDEX ASYNC {table}_i ON {table}(id);\n")
    );
    // `execute` refuses the same statement for the same rule, before any connection.
    let r = s.call("execute", json!({"sql": create})).await;
    let refused = err(&r);
    assert!(
        refused.starts_with(
            "Error executing tool execute: DSQL rules refused the statement (1 problem):\n- json_type (line 1): JSON/JSONB column types are refused by this server's policy"
        ),
        "{refused}"
    );
    s.close().await;

    // Under `--rules cluster` the JSON column is allowed, by both.
    let s = McpSession::for_cluster(pg, &["--allow-writes", "--rules", "cluster"]).await;
    let r = s.call("dsql_lint", json!({"sql": sql})).await;
    let v: Value = serde_json::from_str(&text(&r)).unwrap();
    assert_eq!(
        rules(&v),
        [
            ("index_async".to_owned(), 3),
            ("transaction_control".to_owned(), 2)
        ]
    );
    assert_eq!(
        v["summary"],
        json!({"errors": 1, "warnings": 1, "fixed": 0})
    );
    let r = s.call("execute", json!({"sql": create})).await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    s.close().await;
}
