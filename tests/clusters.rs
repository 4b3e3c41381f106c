//! Several clusters in one process (`--clusters FILE`), through the real binary and rmcp's
//! real MCP client: two TLS stand-ins (each its own PostgreSQL and CA, each accepting any
//! IAM token) served by one process through a clusters file written here. `alpha` is
//! read-only and the default, `beta` allows writes (and, in one test, keeps at most 2 rows
//! per result).
//! Each call lands on the cluster it names (the two hold different data and columns), a
//! write to `alpha` is refused and never reaches it (its log records every statement),
//! unknown names are refused listing the known ones, `list_clusters`, resources and `check`
//! cover both, and a bad file or a mix with the one-cluster flags fails at start.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::mcp::{server_binary, server_env};
use common::{McpSession, PgCluster, structured, text, unique_name};
use rmcp::model::{CallToolResult, ReadResourceRequestParams};
use serde_json::{Value, json};

/// alpha (logging every statement it receives) and beta, shared by this binary's tests.
struct Pair {
    alpha: PgCluster,
    beta: PgCluster,
}

static PAIR: OnceLock<Pair> = OnceLock::new();

fn pair() -> &'static Pair {
    PAIR.get_or_init(|| {
        let pair = Pair {
            alpha: PgCluster::start_logging_statements(),
            beta: PgCluster::start(),
        };
        // Statics are never dropped: stop both and remove their folders at exit.
        unsafe { libc::atexit(cleanup_at_exit) };
        pair
    })
}

extern "C" fn cleanup_at_exit() {
    if let Some(pair) = PAIR.get() {
        for pg in [&pair.alpha, &pair.beta] {
            pg.stop();
            let _ = std::fs::remove_dir_all(pg.root());
        }
    }
}

/// The sandbox's `sys.jobs` emulation on both stand-ins, once per binary.
async fn with_jobs() -> &'static Pair {
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let pair = pair();
    INSTALLED
        .get_or_init(|| async {
            for pg in [&pair.alpha, &pair.beta] {
                pg.superuser()
                    .await
                    .batch_execute(aurora_dsql_mcp_server::sandbox::emulation::SETUP_SQL)
                    .await
                    .expect("install the emulation");
            }
        })
        .await;
    pair
}

/// The clusters file for the pair, in a fresh folder (kept alive by the returned guard).
fn clusters_file(pair: &Pair) -> (tempfile::TempDir, PathBuf) {
    clusters_file_with(pair, "")
}

/// The same, with `beta_extra` lines added to beta's table.
fn clusters_file_with(pair: &Pair, beta_extra: &str) -> (tempfile::TempDir, PathBuf) {
    let text = format!(
        r#"default = "alpha"

[clusters.alpha]
endpoint = "localhost"
region = "us-east-1"
port = {alpha_port}
user = "admin"
ssl_root_cert = "{alpha_ca}"

[clusters.beta]
endpoint = "localhost"
region = "eu-west-1"
port = {beta_port}
user = "admin"
ssl_root_cert = "{beta_ca}"
allow_writes = true
pool_size = 2
{beta_extra}
"#,
        alpha_port = pair.alpha.port(),
        alpha_ca = pair.alpha.ca_path().display(),
        beta_port = pair.beta.port(),
        beta_ca = pair.beta.ca_path().display(),
    );
    write_file(&text)
}

fn write_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("dsql-clusters-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("clusters.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

async fn serve(file: &Path, extra: &[&str]) -> McpSession {
    let mut args = vec!["--clusters".to_owned(), file.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    McpSession::start(&args, &[]).await
}

fn ok(r: &CallToolResult) -> Value {
    assert_ne!(r.is_error, Some(true), "{}", text(r));
    structured(r)
}

fn err(r: &CallToolResult) -> String {
    assert_eq!(
        r.is_error,
        Some(true),
        "expected an error, got: {}",
        text(r)
    );
    text(r)
}

/// Creates `t` on both clusters (as admin, like the server): alpha's row says alpha and
/// has a column `alpha_only`, beta's says beta and has `beta_only`; `{t}_b` exists on beta only.
async fn two_tables(pair: &Pair, t: &str) {
    pair.alpha
        .connect_as("admin")
        .await
        .batch_execute(&format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, v text, alpha_only int); INSERT INTO {t} VALUES (1, 'alpha', 10)"
        ))
        .await
        .unwrap();
    pair.beta
        .connect_as("admin")
        .await
        .batch_execute(&format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, v text, beta_only int); INSERT INTO {t} VALUES (1, 'beta', 20); \
             CREATE TABLE {t}_b (id int)"
        ))
        .await
        .unwrap();
}

async fn count(pg: &PgCluster, sql: &str) -> i64 {
    pg.superuser()
        .await
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

fn column_names(v: &Value) -> Vec<String> {
    v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn each_call_lands_on_the_cluster_it_names() {
    let pair = with_jobs().await;
    let t = unique_name("clu_land");
    two_tables(pair, &t).await;
    let (_dir, file) = clusters_file(pair);
    let s = serve(&file, &[]).await;
    let select = format!("SELECT v FROM {t}");

    // readonly_query: named, named, and the default (alpha) without the argument.
    for (cluster, expected) in [
        (Some("alpha"), "alpha"),
        (Some("beta"), "beta"),
        (None, "alpha"),
    ] {
        let mut args = json!({"sql": select});
        if let Some(c) = cluster {
            args["cluster"] = json!(c);
        }
        let r = ok(&s.call("readonly_query", args).await);
        assert_eq!(r, json!({"result": [{"v": expected}]}), "{cluster:?}");
    }
    // query and transact.
    let r = ok(&s
        .call("query", json!({"sql": select, "cluster": "beta"}))
        .await);
    assert_eq!(r["rows"], json!([{"v": "beta"}]));
    let r = ok(&s.call("query", json!({"sql": select})).await);
    assert_eq!(r["rows"], json!([{"v": "alpha"}]));
    let r = ok(&s
        .call("transact", json!({"sql_list": [select], "cluster": "beta"}))
        .await);
    assert_eq!(r, json!({"result": [{"v": "beta"}]}));
    let r = ok(&s.call("transact", json!({"sql_list": [select]})).await);
    assert_eq!(r, json!({"result": [{"v": "alpha"}]}));

    // get_schema and describe_table see each cluster's own columns.
    let r = ok(&s
        .call("get_schema", json!({"table_name": t, "cluster": "beta"}))
        .await);
    let names: Vec<&str> = r["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["column_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["id", "v", "beta_only"]);
    let r = ok(&s.call("get_schema", json!({"table_name": t})).await);
    assert_eq!(r["result"][2]["column_name"], "alpha_only");
    let r = ok(&s
        .call(
            "describe_table",
            json!({"table_name": t, "cluster": "alpha"}),
        )
        .await);
    assert_eq!(column_names(&r), ["id", "v", "alpha_only"]);
    let r = ok(&s
        .call(
            "describe_table",
            json!({"table_name": t, "cluster": "beta"}),
        )
        .await);
    assert_eq!(column_names(&r), ["id", "v", "beta_only"]);

    // list_tables: `{t}_b` is beta's only.
    let r = ok(&s.call("list_tables", json!({"cluster": "beta"})).await);
    let tables: Vec<&str> = r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(tables.contains(&t.as_str()) && tables.contains(&format!("{t}_b").as_str()));
    let r = ok(&s.call("list_tables", json!({})).await);
    assert!(
        !r["tables"]
            .as_array()
            .unwrap()
            .contains(&json!(format!("{t}_b")))
    );

    // explain: beta's table is unknown to alpha.
    let r = ok(&s
        .call(
            "explain",
            json!({"sql": format!("SELECT * FROM {t}_b"), "cluster": "beta"}),
        )
        .await);
    assert!(
        r["plan"].as_str().unwrap().contains(&format!("{t}_b")),
        "{r}"
    );
    let e = err(&s
        .call("explain", json!({"sql": format!("SELECT * FROM {t}_b")}))
        .await);
    assert!(
        e.contains(&format!("relation \"{t}_b\" does not exist")),
        "{e}"
    );

    // list_jobs and wait_for_job: a job row on beta only.
    let name = unique_name("clu_job");
    let job_id: String = pair
        .beta
        .superuser()
        .await
        .query_one(
            "INSERT INTO sys.job_log VALUES (sys.new_job_id(), 'completed', NULL, 'INDEX_BUILD', NULL, NULL, $1, \
             '2026-12-01 10:00:00+00', '2026-12-01 10:00:05+00') RETURNING job_id",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    let r = ok(&s.call("list_jobs", json!({"cluster": "beta"})).await);
    assert!(
        r["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["job_id"] == job_id.as_str()),
        "{r}"
    );
    let r = ok(&s.call("list_jobs", json!({"cluster": "alpha"})).await);
    assert!(
        !r["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["job_id"] == job_id.as_str()),
        "{r}"
    );
    let r = ok(&s
        .call("wait_for_job", json!({"job_id": job_id, "cluster": "beta"}))
        .await);
    assert_eq!(r["status"], "completed");
    assert_eq!(r["object_name"], name.as_str());
    let e = err(&s
        .call(
            "wait_for_job",
            json!({"job_id": job_id, "timeout_seconds": 1}),
        )
        .await);
    assert!(e.starts_with("Error executing tool wait_for_job: "), "{e}");
    assert!(e.contains(&job_id), "{e}");
    s.close().await;
}

#[tokio::test]
async fn writes_only_where_the_cluster_allows_them() {
    let pair = pair();
    let t = unique_name("clu_write");
    two_tables(pair, &t).await;
    let (_dir, file) = clusters_file(pair);
    let s = serve(&file, &[]).await;

    // beta allows writes: both write tools change its data.
    let r = ok(&s
        .call(
            "execute",
            json!({"sql": format!("INSERT INTO {t} VALUES (2, 'beta-two', 0)"), "cluster": "beta"}),
        )
        .await);
    assert_eq!(r, json!({"command": "INSERT", "rowCount": 1}));
    let r = s
        .call(
            "transact",
            json!({"sql_list": [format!("INSERT INTO {t} VALUES (3, 'beta-three', 0)")], "cluster": "beta"}),
        )
        .await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    assert_eq!(
        count(&pair.beta, &format!("SELECT count(*) FROM {t}")).await,
        3
    );

    // alpha's log records what reaches it (so the absence below means something).
    let seen = unique_name("seen_by_alpha");
    ok(&s
        .call(
            "readonly_query",
            json!({"sql": format!("SELECT '{seen}' AS seen")}),
        )
        .await);
    assert!(pair.alpha.server_log().contains(&seen));

    // alpha is read-only: refused in the reference's words, by name and by default.
    let marker = unique_name("never_sent");
    let insert = format!("INSERT INTO {t} VALUES (9, '{marker}', 0)");
    let e = err(&s
        .call("execute", json!({"sql": insert, "cluster": "alpha"}))
        .await);
    assert_eq!(
        e,
        "Error executing tool execute: Your MCP server does not allow write operations. To use write operations, \
         change the MCP configuration per README.md (execute needs a read-write cluster (cluster alpha is read-only; \
         allow_writes = true in its table of the clusters file makes it read-write))"
    );
    let e = err(&s.call("transact", json!({"sql_list": [insert]})).await);
    assert!(
        e.starts_with(
            "Error executing tool transact: Your MCP server does not allow write operations."
        ),
        "{e}"
    );
    let e = err(&s
        .call("readonly_query", json!({"sql": insert, "cluster": "alpha"}))
        .await);
    assert!(e.contains("does not allow write operations"), "{e}");
    // ... and never reached it: alpha logs every statement it receives.
    assert!(
        !pair.alpha.server_log().contains(&marker),
        "a refused write reached alpha"
    );
    assert_eq!(
        count(&pair.alpha, &format!("SELECT count(*) FROM {t}")).await,
        1
    );
    // The tool list marks the write tools destructive: beta can write.
    let tools = s.list_tools().await;
    let execute = tools.iter().find(|t| t.name == "execute").unwrap();
    assert_eq!(
        execute.annotations.as_ref().unwrap().destructive_hint,
        Some(true)
    );
    s.close().await;
}

#[tokio::test]
async fn unknown_clusters_and_bad_arguments_are_refused() {
    let pair = pair();
    let (_dir, file) = clusters_file(pair);
    let s = serve(&file, &[]).await;
    for tool in ["readonly_query", "query", "list_tables", "list_jobs"] {
        let e = err(&s
            .call(tool, json!({"sql": "SELECT 1", "cluster": "gamma"}))
            .await);
        assert_eq!(
            e,
            format!(
                "Error executing tool {tool}: unknown cluster \"gamma\" (configured: alpha, beta). list_clusters shows each with its endpoint and mode."
            )
        );
    }
    let e = err(&s
        .call("query", json!({"sql": "SELECT 1", "cluster": 7}))
        .await);
    assert_eq!(
        e,
        "Error executing tool query: 1 validation error for queryArguments\ncluster\n  Input should be a valid string"
    );
    // `cluster` is the toolbox's: the handler's own validation never sees it, and null
    // is the default.
    let r = ok(&s
        .call("query", json!({"sql": "SELECT 1 AS one", "cluster": null}))
        .await);
    assert_eq!(r["rows"], json!([{"one": 1}]));
    // Tools without a cluster ignore nothing new and need none.
    let r = s.call("dsql_lint", json!({"sql": "SELECT 1"})).await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    s.close().await;
}

#[tokio::test]
async fn list_clusters_tools_and_instructions_describe_both() {
    let pair = pair();
    let (_dir, file) = clusters_file(pair);
    let s = serve(&file, &[]).await;
    let r = ok(&s.call("list_clusters", json!({})).await);
    assert_eq!(
        r,
        json!({"clusters": [
            {"name": "alpha", "endpoint": "localhost", "port": pair.alpha.port(), "region": "us-east-1",
             "user": "admin", "mode": "read-only", "default": true},
            {"name": "beta", "endpoint": "localhost", "port": pair.beta.port(), "region": "eu-west-1",
             "user": "admin", "mode": "read-write", "default": false}
        ], "count": 2})
    );
    // Never a credential or a CA path.
    let listed = text(&s.call("list_clusters", json!({})).await);
    assert!(!listed.contains(".pem") && !listed.contains(common::FAKE_ACCESS_KEY_ID));

    let tools = s.list_tools().await;
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names.last(), Some(&"list_clusters"));
    let database = [
        "readonly_query",
        "transact",
        "get_schema",
        "query",
        "execute",
        "list_tables",
        "describe_table",
        "wait_for_job",
        "list_jobs",
        "explain",
        "apply_migration",
        "list_migrations",
        "execute_batched",
    ];
    for t in &tools {
        let schema = serde_json::to_value(&t.input_schema).unwrap();
        let arg = &schema["properties"]["cluster"];
        if database.contains(&t.name.as_ref()) {
            assert_eq!(
                *arg,
                json!({"type": "string", "enum": ["alpha", "beta"], "default": "alpha",
                       "description": "Which configured cluster to run on (default: alpha); list_clusters shows each one's endpoint and mode."}),
                "{}",
                t.name
            );
            assert!(
                t.description.as_deref().unwrap().ends_with(
                    "Several clusters are configured: `cluster` names the one to use (default: alpha); each has its own mode (list_clusters)."
                ),
                "{}",
                t.name
            );
            // Never required: the default applies.
            assert!(
                !schema["required"]
                    .as_array()
                    .is_some_and(|r| r.contains(&json!("cluster")))
            );
        } else {
            assert!(arg.is_null(), "{} takes no cluster", t.name);
        }
    }
    let info = serde_json::to_value(s.peer().peer_info().unwrap()).unwrap();
    let instructions = info["instructions"].as_str().unwrap();
    assert!(
        instructions.starts_with(
            "This server connects an agent to several Amazon Aurora DSQL clusters (PostgreSQL-compatible, \
             serverless, optimistic concurrency): alpha (read-only), beta (read-write). Every database tool takes \
             an optional `cluster` argument naming the one to use (default: alpha);"
        ),
        "{instructions}"
    );
    s.close().await;
}

#[tokio::test]
async fn limits_are_per_cluster() {
    let pair = pair();
    let (_dir, file) = clusters_file_with(pair, "max_rows = 2");
    let s = serve(&file, &[]).await;
    let sql = "SELECT g FROM generate_series(1, 5) AS g";
    let r = ok(&s.call("readonly_query", json!({"sql": sql})).await);
    assert_eq!(r["result"].as_array().unwrap().len(), 5);
    assert!(r.get("truncated").is_none());
    let r = ok(&s
        .call("readonly_query", json!({"sql": sql, "cluster": "beta"}))
        .await);
    assert_eq!(r["result"], json!([{"g": 1}, {"g": 2}]));
    assert_eq!(r["truncated"], true);
    assert_eq!(r["totalRows"], 5);
    s.close().await;
}

#[tokio::test]
async fn resources_name_their_cluster() {
    let pair = pair();
    let t = unique_name("clu_res");
    two_tables(pair, &t).await;
    let (_dir, file) = clusters_file(pair);
    let s = serve(&file, &[]).await;
    let listed = s.peer().list_all_resources().await.unwrap();
    let uris: Vec<&str> = listed.iter().map(|r| r.uri.as_str()).collect();
    let alpha_uri = format!("dsql://clusters/alpha/tables/public/{t}");
    let beta_uri = format!("dsql://clusters/beta/tables/public/{t}");
    assert!(uris.contains(&alpha_uri.as_str()), "{uris:?}");
    assert!(uris.contains(&beta_uri.as_str()), "{uris:?}");
    assert!(uris.contains(&format!("dsql://clusters/beta/tables/public/{t}_b").as_str()));
    assert!(!uris.contains(&format!("dsql://clusters/alpha/tables/public/{t}_b").as_str()));
    assert!(
        !uris.iter().any(|u| u.starts_with("dsql://tables/")),
        "{uris:?}"
    );
    let beta = listed.iter().find(|r| r.uri == beta_uri).unwrap();
    assert_eq!(beta.name, format!("beta/public.{t}"));

    for (uri, own) in [(&alpha_uri, "alpha_only"), (&beta_uri, "beta_only")] {
        let read = s
            .peer()
            .read_resource(ReadResourceRequestParams::new(uri.clone()))
            .await
            .unwrap();
        let contents = serde_json::to_value(&read.contents).unwrap();
        let described: Value = serde_json::from_str(contents[0]["text"].as_str().unwrap()).unwrap();
        assert_eq!(column_names(&described), ["id", "v", own]);
    }
    let e = s
        .peer()
        .read_resource(ReadResourceRequestParams::new(format!(
            "dsql://tables/public/{t}"
        )))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("several clusters are configured, so table URIs name theirs: dsql://clusters/<cluster>/tables/<schema>/<table>"),
        "{e}"
    );
    let e = s
        .peer()
        .read_resource(ReadResourceRequestParams::new(format!(
            "dsql://clusters/gamma/tables/public/{t}"
        )))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown cluster \\\"gamma\\\" (configured: alpha, beta)")
            || e.contains("unknown cluster \"gamma\" (configured: alpha, beta)"),
        "{e}"
    );

    let templates = s
        .peer()
        .list_resource_templates(None)
        .await
        .unwrap()
        .resource_templates;
    let templates: Vec<&str> = templates.iter().map(|t| t.uri_template.as_str()).collect();
    assert_eq!(
        templates,
        [
            "dsql://guides/{name}",
            "dsql://clusters/{cluster}/tables/{schema}/{table}"
        ]
    );
    s.close().await;
}

/// Runs the binary with `args` and the harness's clean environment plus `env`; stdin closed.
fn run(args: &[String], env: &[(&str, &str)]) -> (i32, String, String) {
    let (home, env) = server_env(env);
    let out = Command::new(server_binary())
        .args(args)
        .env_clear()
        .envs(env)
        .current_dir(home.path())
        .stdin(Stdio::null())
        .output()
        .expect("run the server binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_checks_every_cluster_in_its_own_section() {
    let pair = pair();
    let (_dir, file) = clusters_file(pair);
    let (code, stdout, stderr) = run(
        &[
            "check".into(),
            "--clusters".into(),
            file.display().to_string(),
        ],
        &[],
    );
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let alpha = lines
        .iter()
        .position(|l| *l == "== cluster alpha, the default ==")
        .unwrap_or_else(|| panic!("{stdout}"));
    let beta = lines
        .iter()
        .position(|l| *l == "== cluster beta ==")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(alpha < beta);
    let (alpha_lines, beta_lines) = (&lines[alpha + 1..beta], &lines[beta + 1..]);
    assert_eq!(
        alpha_lines[0],
        format!(
            "OK    endpoint: localhost port {}, region us-east-1, user admin, token action DbConnectAdmin (admin)",
            pair.alpha.port()
        )
    );
    assert_eq!(
        beta_lines[0],
        format!(
            "OK    endpoint: localhost port {}, region eu-west-1, user admin, token action DbConnectAdmin (admin)",
            pair.beta.port()
        )
    );
    for section in [alpha_lines, beta_lines] {
        for step in ["tcp", "tls", "connect", "select 1", "schemas"] {
            assert!(
                section
                    .iter()
                    .any(|l| l.starts_with(&format!("OK    {step}: "))),
                "{step} in {section:?}"
            );
        }
    }
    // Each cluster's own mode: alpha is read-only and its role can write (a warning);
    // beta allows writes, so it gets no such check.
    assert!(
        alpha_lines
            .iter()
            .any(|l| l.starts_with("WARN  read-only: the server is read-only"))
    );
    assert!(!beta_lines.iter().any(|l| l.contains("read-only")));
    assert_eq!(lines.last(), Some(&"all checks passed, 1 warning(s)"));
}

#[test]
fn a_bad_clusters_file_or_a_mix_with_one_cluster_flags_fails_at_start() {
    let pair = pair();
    let (_dir, file) = clusters_file(pair);
    let path = file.display().to_string();
    let fail = |args: &[&str], env: &[(&str, &str)]| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (code, stdout, stderr) = run(&args, env);
        assert_eq!(stdout, "", "stdout carries nothing");
        (code, stderr)
    };
    for (flag, extra, env) in [
        (
            "--cluster_endpoint",
            vec!["--cluster_endpoint", "localhost"],
            vec![],
        ),
        ("--allow-writes", vec!["--allow-writes"], vec![]),
        ("--region", vec!["--region", "us-east-1"], vec![]),
        (
            "the CLUSTER environment variable",
            vec![],
            vec![("CLUSTER", "abcdefghijklmnopqrstuvwxyz")],
        ),
    ] {
        let mut args = vec!["--clusters", path.as_str()];
        args.extend(extra);
        let (code, stderr) = fail(&args, &env);
        assert_eq!(code, 1, "{stderr}");
        assert_eq!(
            stderr,
            format!(
                "aurora-dsql-mcp-server: --clusters and {flag} cannot be used together: the clusters file describes every \
                 cluster (endpoint, region, user, port, allow_writes per cluster); remove {flag} or put it in the file\n"
            )
        );
    }
    // `check` reports it as its configuration step.
    let (code, stdout, _) = run(
        &[
            "check".into(),
            "--clusters".into(),
            path.clone(),
            "--cluster_endpoint".into(),
            "x".into(),
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        stdout.starts_with(
            "FAIL  configuration: --clusters and --cluster_endpoint cannot be used together"
        ),
        "{stdout}"
    );

    // --local is one cluster of its own.
    let (code, stderr) = fail(&["--local", "--clusters", &path], &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("aurora-dsql-mcp-server: error: the argument '--local' cannot be used with '--clusters <FILE>'"),
        "{stderr}"
    );

    let bad = |text: &str| {
        let (dir, file) = write_file(text);
        let (code, stderr) = fail(&["--clusters", &file.display().to_string()], &[]);
        assert_eq!(code, 1, "{stderr}");
        let prefix = format!("aurora-dsql-mcp-server: --clusters {}: ", file.display());
        drop(dir);
        stderr
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{stderr}"))
            .trim_end()
            .to_owned()
    };
    assert_eq!(
        bad(
            "default = \"a\"\n[clusters.a]\nendpoint = \"x.dsql.us-east-1.on.aws\"\nuser = \"admin\"\nallow_write = true\n"
        ),
        "line 5: unknown field `allow_write`, expected one of `endpoint`, `region`, `user`, `profile`, `port`, \
         `ssl_root_cert`, `allow_writes`, `max_rows`, `max_result_bytes`, `query_timeout`, `pool_size`"
    );
    assert_eq!(
        bad("[clusters.a]\nendpoint = \"x.dsql.us-east-1.on.aws\"\nuser = \"admin\"\n"),
        "line 1: missing field `default`"
    );
    assert_eq!(
        bad(
            "default = \"b\"\n[clusters.a]\nendpoint = \"x.dsql.us-east-1.on.aws\"\nuser = \"admin\"\n"
        ),
        "default = \"b\" names no cluster of the file (defined: a)"
    );
    assert_eq!(
        bad(
            "default = \"Prod\"\n[clusters.Prod]\nendpoint = \"x.dsql.us-east-1.on.aws\"\nuser = \"admin\"\n"
        ),
        "cluster name \"Prod\" is not allowed: use a lower-case letter, then lower-case letters, digits, - or _ (at most 63)"
    );
    let (code, stderr) = fail(&["--clusters", "/nonexistent/clusters.toml"], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(
            "aurora-dsql-mcp-server: --clusters /nonexistent/clusters.toml: cannot be read: "
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn one_cluster_in_a_file_keeps_the_reference_surface() {
    let pair = pair();
    let (_dir, file) = write_file(&format!(
        "default = \"only\"\n[clusters.only]\nendpoint = \"localhost\"\nregion = \"us-east-1\"\nport = {}\nuser = \"admin\"\nssl_root_cert = \"{}\"\n",
        pair.beta.port(),
        pair.beta.ca_path().display()
    ));
    let from_file = serve(&file, &[]).await;
    let from_flags = McpSession::for_cluster(&pair.beta, &[]).await;
    assert_eq!(from_file.list_tools().await, from_flags.list_tools().await);
    let r = ok(&from_file
        .call("readonly_query", json!({"sql": "SELECT 1 AS one"}))
        .await);
    assert_eq!(r, json!({"result": [{"one": 1}]}));
    let r = from_file.call_raw("list_clusters", json!({})).await;
    assert!(
        r.is_err(),
        "list_clusters is offered only with several clusters"
    );
    from_file.close().await;
    from_flags.close().await;
}
