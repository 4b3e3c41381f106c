//! The reference tools (`readonly_query`, `transact`, `get_schema`) over the real binary
//! and a real MCP client, against a throw-away TLS PostgreSQL: shapes, errors, database
//! state, and the read-only guarantee under reconnects and concurrency.

// MCP logging is deprecated upstream (SEP-2577) but still negotiated by hosts; the tests
// read its notifications.
#![allow(deprecated)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn is_error(r: &rmcp::model::CallToolResult) -> bool {
    r.is_error == Some(true)
}

/// The text of a successful call; panics with the error text otherwise.
fn ok_text(r: &rmcp::model::CallToolResult) -> String {
    assert!(!is_error(r), "tool failed: {}", text(r));
    text(r)
}

fn err_text(r: &rmcp::model::CallToolResult) -> String {
    assert!(is_error(r), "expected an error, got: {}", text(r));
    text(r)
}

#[tokio::test]
async fn tools_list_matches_the_reference_contract() {
    let s = McpSession::for_cluster(shared(), &[]).await;
    let tools = s.list_tools().await;
    let get = |name: &str| {
        let t = tools
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{name} listed"));
        serde_json::to_value(t).unwrap()
    };
    let rq = get("readonly_query");
    assert_eq!(rq["inputSchema"]["required"], json!(["sql"]));
    assert_eq!(rq["inputSchema"]["title"], "readonly_queryArguments");
    assert_eq!(rq["inputSchema"]["properties"]["sql"]["type"], "string");
    assert_eq!(
        rq["inputSchema"]["properties"]["params"]["anyOf"],
        json!([{"items": {}, "type": "array"}, {"type": "null"}])
    );
    assert_eq!(
        rq["inputSchema"]["properties"]["params"]["default"],
        Value::Null
    );
    assert_eq!(
        rq["outputSchema"]["properties"]["result"],
        json!({"items": {"additionalProperties": true, "type": "object"}, "title": "Result", "type": "array"})
    );
    assert_eq!(rq["outputSchema"]["required"], json!(["result"]));
    assert_eq!(rq["annotations"]["readOnlyHint"], true);

    let tx = get("transact");
    assert_eq!(tx["inputSchema"]["required"], json!(["sql_list"]));
    assert_eq!(
        tx["inputSchema"]["properties"]["sql_list"],
        json!({"description": tx["inputSchema"]["properties"]["sql_list"]["description"], "items": {"type": "string"}, "title": "Sql List", "type": "array"})
    );
    assert_eq!(
        tx["inputSchema"]["properties"]["params_list"]["anyOf"][0]["items"],
        json!({"anyOf": [{"items": {}, "type": "array"}, {"type": "null"}]})
    );
    // Without --allow-writes, transact is read-only and says so.
    assert_eq!(tx["annotations"]["readOnlyHint"], true);
    assert_eq!(tx["annotations"]["destructiveHint"], false);

    let gs = get("get_schema");
    assert_eq!(gs["inputSchema"]["required"], json!(["table_name"]));
    assert_eq!(gs["outputSchema"]["title"], "get_schemaOutput");

    let lint = get("dsql_lint");
    assert_eq!(
        lint["inputSchema"]["properties"]["sql"]["maxLength"],
        1_000_000
    );
    assert_eq!(lint["inputSchema"]["properties"]["fix"]["default"], false);
    assert!(lint.get("outputSchema").is_none());

    // Server identity and capabilities.
    let info = s.peer().peer_info().expect("initialized");
    let info = serde_json::to_value(info).unwrap();
    assert_eq!(info["serverInfo"]["name"], "aurora-dsql-mcp-server");
    assert_eq!(info["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(info["capabilities"]["logging"].is_object());
    assert!(
        info["instructions"]
            .as_str()
            .unwrap()
            .contains("CREATE INDEX ASYNC")
    );
}

#[tokio::test]
async fn readonly_query_returns_one_pretty_json_text_per_row() {
    let s = McpSession::for_cluster(shared(), &[]).await;
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT 1 AS one, 'x' AS two UNION ALL SELECT 2, 'héllo'"}),
        )
        .await;
    assert!(!is_error(&r), "{}", text(&r));
    let texts: Vec<String> = r
        .content
        .iter()
        .map(|c| c.as_text().expect("text content").text.clone())
        .collect();
    assert_eq!(
        texts,
        vec![
            "{\n  \"one\": 1,\n  \"two\": \"x\"\n}",
            "{\n  \"one\": 2,\n  \"two\": \"héllo\"\n}"
        ]
    );
    assert_eq!(
        structured(&r),
        json!({"result": [{"one": 1, "two": "x"}, {"one": 2, "two": "héllo"}]})
    );

    let empty = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT 1 AS one WHERE false"}),
        )
        .await;
    assert!(!is_error(&empty));
    assert!(empty.content.is_empty());
    assert_eq!(structured(&empty), json!({"result": []}));

    // Column order is kept; a repeated name keeps its first place and the last value.
    let dup = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT 1 AS b, 2 AS a, 3 AS b"}),
        )
        .await;
    assert_eq!(ok_text(&dup), "{\n  \"b\": 3,\n  \"a\": 2\n}");
}

#[tokio::test]
async fn readonly_query_binds_percent_s_parameters() {
    let s = McpSession::for_cluster(shared(), &[]).await;
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT %s::int + 1 AS n, %s AS s, %s::bool AS b, %s::text IS NULL AS isnull, '100%%' AS pct",
                   "params": [41, "it's; DROP TABLE x", true, null]}),
        )
        .await;
    assert_eq!(
        structured(&r),
        json!({"result": [{"n": 42, "s": "it's; DROP TABLE x", "b": true, "isnull": true, "pct": "100%"}]})
    );
    // Without params, % is plain SQL (modulo) and '%s' is text.
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT 10 % 3 AS m, '%s' AS t"}),
        )
        .await;
    assert_eq!(structured(&r), json!({"result": [{"m": 1, "t": "%s"}]}));
    // A count mismatch is refused before the database.
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT %s AS a, %s AS b", "params": [1]}),
        )
        .await;
    assert!(err_text(&r).contains("placeholder"), "{}", text(&r));
}

#[tokio::test]
async fn database_errors_carry_sqlstate_position_and_hint() {
    let s = McpSession::for_cluster(shared(), &[]).await;
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT * FROM no_such_table_here"}),
        )
        .await;
    assert_eq!(
        err_text(&r),
        "Error executing tool readonly_query: ERROR 42P01: relation \"no_such_table_here\" does not exist (at character 15)"
    );
    // The same message is sent as a log notification at level error.
    let log = s
        .wait_for_log(Duration::from_secs(5), |l| {
            l.data
                .as_str()
                .is_some_and(|d| d.contains("no_such_table_here"))
        })
        .await
        .expect("error log notification");
    assert_eq!(serde_json::to_value(log.level).unwrap(), "error");

    let r = s
        .call("readonly_query", json!({"sql": "SELECT 1/0 AS x"}))
        .await;
    assert_eq!(
        err_text(&r),
        "Error executing tool readonly_query: ERROR 22012: division by zero"
    );
    let r = s
        .call("readonly_query", json!({"sql": "SELECT length(1, 2, 3)"}))
        .await;
    let t = err_text(&r);
    assert!(
        t.contains(
            "ERROR 42883: function length(integer, integer, integer) does not exist (at character 8)"
        ),
        "{t}"
    );
    assert!(
        t.contains("\nHINT: No function matches the given name and argument types."),
        "{t}"
    );
}

#[tokio::test]
async fn argument_and_input_errors_come_before_the_database() {
    let s = McpSession::for_cluster(shared(), &[]).await;
    let r = s.call("readonly_query", json!({})).await;
    assert_eq!(
        err_text(&r),
        "Error executing tool readonly_query: 1 validation error for readonly_queryArguments\nsql\n  Field required"
    );
    let r = s
        .call("readonly_query", json!({"sql": 5, "params": {"a": 1}}))
        .await;
    assert_eq!(
        err_text(&r),
        "Error executing tool readonly_query: 2 validation errors for readonly_queryArguments\nsql\n  Input should be a valid string\nparams\n  Input should be a valid list"
    );
    let r = s.call("readonly_query", json!({"sql": "   "})).await;
    assert_eq!(
        err_text(&r),
        "Error executing tool readonly_query: Incorrect invocation: readonly_query invoked without a SQL statement"
    );
    let r = s.call("transact", json!({"sql_list": []})).await;
    assert_eq!(
        err_text(&r),
        "Error executing tool transact: Incorrect invocation: transact invoked with no sql statements"
    );
    let r = s
        .call(
            "transact",
            json!({"sql_list": ["SELECT 1", "SELECT 2"], "params_list": [null]}),
        )
        .await;
    assert_eq!(
        err_text(&r),
        "Error executing tool transact: params_list length (1) must equal sql_list length (2)"
    );
    let r = s.call("get_schema", json!({"table_name": ""})).await;
    assert_eq!(
        err_text(&r),
        "Error executing tool get_schema: Incorrect invocation: Schema invoked without a table name"
    );
    // An unknown tool is a protocol error, and the server keeps serving.
    assert!(s.call_raw("no_such_tool", json!({})).await.is_err());
    let r = s
        .call("readonly_query", json!({"sql": "SELECT 7 AS seven"}))
        .await;
    assert_eq!(structured(&r), json!({"result": [{"seven": 7}]}));
}

#[tokio::test]
async fn without_a_cluster_every_database_tool_says_not_configured() {
    let s = McpSession::start(&[], &[]).await;
    let expected = "Database not configured. Please configure --cluster_endpoint, --database_user, and --region.";
    for (tool, args) in [
        ("readonly_query", json!({"sql": "SELECT 1"})),
        ("transact", json!({"sql_list": ["SELECT 1"]})),
        ("get_schema", json!({"table_name": "t"})),
        // Checked before empty input, as in the reference.
        ("readonly_query", json!({"sql": ""})),
    ] {
        let r = s.call(tool, args).await;
        assert_eq!(
            err_text(&r),
            format!("Error executing tool {tool}: {expected}")
        );
    }
    // dsql_lint works without a cluster.
    let r = s.call("dsql_lint", json!({"sql": ""})).await;
    assert_eq!(
        serde_json::from_str::<Value>(&ok_text(&r)).unwrap(),
        json!({"diagnostics": [], "fixed_sql": null, "summary": {"errors": 0, "warnings": 0, "fixed": 0}})
    );
    assert!(
        s.stderr().contains("no cluster configured"),
        "{}",
        s.stderr()
    );
}

#[tokio::test]
async fn transact_read_only_mode_reads_consistently_and_refuses_writes() {
    let pg = shared();
    let table = unique_name("ro_tx");
    let db = pg.superuser().await;
    db.batch_execute(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY); INSERT INTO {table} VALUES (1), (2); GRANT ALL ON {table} TO admin;"
    ))
    .await
    .unwrap();
    let s = McpSession::for_cluster(pg, &[]).await;
    let r = s
        .call(
            "transact",
            json!({"sql_list": [format!("SELECT count(*) AS n FROM {table}"),
                                "SELECT current_setting('transaction_read_only') AS ro"]}),
        )
        .await;
    assert_eq!(structured(&r), json!({"result": [{"ro": "on"}]}));

    let r = s
        .call(
            "transact",
            json!({"sql_list": [format!("INSERT INTO {table} VALUES (3)")]}),
        )
        .await;
    assert!(
        err_text(&r).contains("does not allow write operations"),
        "{}",
        text(&r)
    );
    let n: i64 = db
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "nothing written");
}

#[tokio::test]
async fn transact_writes_atomically_with_allow_writes() {
    let pg = shared();
    let table = unique_name("rw_tx");
    let s = McpSession::for_cluster(pg, &["--allow-writes"]).await;
    // DDL alone (DSQL: one DDL per transaction).
    let r = s
        .call(
            "transact",
            json!({"sql_list": [format!("CREATE TABLE {table} (id int PRIMARY KEY, name text NOT NULL)")]}),
        )
        .await;
    assert!(!is_error(&r), "{}", text(&r));
    assert!(r.content.is_empty());

    let r = s
        .call(
            "transact",
            json!({
                "sql_list": [format!("INSERT INTO {table} VALUES (%s, %s)"),
                             format!("INSERT INTO {table} VALUES (%s, %s)"),
                             format!("SELECT id, name FROM {table} ORDER BY id")],
                "params_list": [[1, "one"], [2, "two"], null]
            }),
        )
        .await;
    assert_eq!(
        structured(&r),
        json!({"result": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}]})
    );

    // A failing statement rolls the whole list back.
    let r = s
        .call(
            "transact",
            json!({
                "sql_list": [format!("INSERT INTO {table} VALUES (%s, %s)"),
                             format!("INSERT INTO {table} VALUES (%s, %s)")],
                "params_list": [[3, "three"], [1, "duplicate"]]
            }),
        )
        .await;
    let t = err_text(&r);
    assert!(
        t.contains(
            "statement 2 of 2 failed: ERROR 23505: duplicate key value violates unique constraint"
        ),
        "{t}"
    );
    assert!(t.contains("DETAIL: Key (id)=(1) already exists."), "{t}");

    let db = pg.superuser().await;
    let rows = db
        .query(&format!("SELECT id, name FROM {table} ORDER BY id"), &[])
        .await
        .unwrap();
    let got: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(1, "one".to_owned()), (2, "two".to_owned())]);

    // A server that allows writes does not make its sessions read-only by default.
    let r = s
        .call("transact", json!({"sql_list": ["SELECT current_setting('default_transaction_read_only') AS d, current_setting('transaction_read_only') AS t"]}))
        .await;
    assert_eq!(
        structured(&r),
        json!({"result": [{"d": "off", "t": "off"}]})
    );
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT current_setting('transaction_read_only') AS t"}),
        )
        .await;
    assert_eq!(structured(&r), json!({"result": [{"t": "on"}]}));

    // Annotations follow the mode.
    let tools = s.list_tools().await;
    let tx = tools.iter().find(|t| t.name == "transact").unwrap();
    let a = serde_json::to_value(&tx.annotations).unwrap();
    assert_eq!(a["readOnlyHint"], false);
    assert_eq!(a["destructiveHint"], true);
    no_open_transactions(pg).await;
}

#[tokio::test]
async fn get_schema_is_case_insensitive_and_schema_qualified() {
    let pg = shared();
    let schema = unique_name("data");
    let db = pg.superuser().await;
    db.batch_execute(&format!(
        "CREATE SCHEMA {schema}; GRANT USAGE ON SCHEMA {schema} TO admin;
         CREATE TABLE {schema}.associate (id uuid PRIMARY KEY, full_name varchar(40), joined timestamptz);
         GRANT SELECT ON {schema}.associate TO admin;
         CREATE TABLE public.{schema}_other (x int);"
    ))
    .await
    .unwrap();
    let s = McpSession::for_cluster(pg, &[]).await;
    let r = s
        .call(
            "get_schema",
            json!({"table_name": format!("{}.Associate", schema.to_uppercase())}),
        )
        .await;
    // The reference's {column_name, data_type}, plus the table each column belongs to.
    assert_eq!(
        structured(&r),
        json!({"result": [
            {"column_name": "id", "data_type": "uuid", "table_schema": schema, "table_name": "associate"},
            {"column_name": "full_name", "data_type": "character varying", "table_schema": schema, "table_name": "associate"},
            {"column_name": "joined", "data_type": "timestamp with time zone", "table_schema": schema, "table_name": "associate"}
        ]})
    );
    // The reference answers [] for a missing table; this server says it is missing.
    let r = s
        .call("get_schema", json!({"table_name": "no_such_table_xyz"}))
        .await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(
        text(&r),
        "Error executing tool get_schema: no table matching \"no_such_table_xyz\" was found in any schema (or this role may not read its columns). get_schema matches bare names case-insensitively; quote a name to match it exactly (public.\"Order.Items\"), and use list_tables to see a schema's tables."
    );
}

#[tokio::test]
async fn a_write_hidden_in_a_function_is_refused_by_the_read_only_transaction() {
    let pg = shared();
    let table = unique_name("hidden");
    let func = unique_name("sneaky");
    let db = pg.superuser().await;
    db.batch_execute(&format!(
        "CREATE TABLE {table} (x int);
         GRANT ALL ON {table} TO admin;
         CREATE FUNCTION {func}() RETURNS int LANGUAGE sql AS $$ INSERT INTO {table} VALUES (1) RETURNING x $$;"
    ))
    .await
    .unwrap();
    // The user vouches for the function (--allow-function): the guard lets it through, so
    // the read-only transaction is what stops its write.
    let s = McpSession::for_cluster(pg, &["--allow-function", &func]).await;
    let r = s
        .call("readonly_query", json!({"sql": format!("SELECT {func}()")}))
        .await;
    let t = err_text(&r);
    assert!(
        t.starts_with("Error executing tool readonly_query: readonly_query does not support write operations. Use transact"),
        "{t}"
    );
    let n: i64 = db
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn read_only_survives_a_terminated_backend() {
    let pg = shared();
    // A function of the user's that writes: the guard lets it through (--allow-function),
    // so only the database's read-only layers stand between it and the table.
    let table = unique_name("ro_guarded");
    let func = unique_name("writes_behind");
    let db = pg.superuser().await;
    db.batch_execute(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY);
         CREATE FUNCTION {func}() RETURNS int LANGUAGE sql AS $$ INSERT INTO {table} VALUES (1) RETURNING id $$;
         GRANT ALL ON {table} TO admin; GRANT EXECUTE ON FUNCTION {func}() TO admin;"
    ))
    .await
    .unwrap();
    let s = McpSession::for_cluster(pg, &["--allow-function", &func]).await;
    // The first call of every new connection takes the one-round-trip path, which relies on
    // the session default set at connect (not on a reset's copy of it): check it there.
    let probe = json!({"sql": "SELECT current_setting('transaction_read_only') AS ro, current_setting('default_transaction_read_only') AS d, pg_backend_pid() AS pid"});
    let first = structured(&s.call("readonly_query", probe.clone()).await);
    assert_eq!(first["result"][0]["ro"], "on");
    assert_eq!(
        first["result"][0]["d"], "on",
        "read-only default set at connect"
    );
    let pid = first["result"][0]["pid"].as_i64().unwrap();

    // Kill the pooled backend while it is idle in the pool.
    terminate_idle(&db, pid).await;

    let second = structured(&s.call("readonly_query", probe.clone()).await);
    assert_eq!(
        second["result"][0]["ro"], "on",
        "still inside BEGIN READ ONLY after reconnect"
    );
    assert_eq!(
        second["result"][0]["d"], "on",
        "the new connection's first call sees the read-only default set at connect"
    );
    assert_ne!(
        second["result"][0]["pid"].as_i64().unwrap(),
        pid,
        "a fresh connection"
    );

    // Kill it again, so the write below is the first call of a new connection: it reaches
    // the database (the guard allows the function) and the database refuses it.
    let pid = second["result"][0]["pid"].as_i64().unwrap();
    terminate_idle(&db, pid).await;
    let r = s
        .call(
            "readonly_query",
            json!({"sql": format!("SELECT {func}() AS id")}),
        )
        .await;
    assert!(is_error(&r));
    assert_eq!(
        text(&r),
        "Error executing tool readonly_query: readonly_query does not support write operations. Use transact (cannot execute INSERT in a read-only transaction)"
    );
    let n: i64 = db
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "nothing was written");
    no_open_transactions(pg).await;
}

#[tokio::test]
async fn twenty_concurrent_calls_each_run_read_only_in_their_own_transaction() {
    let pg = shared();
    let s = std::sync::Arc::new(McpSession::for_cluster(pg, &[]).await);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let r = s
                .call(
                    "readonly_query",
                    json!({"sql": "SELECT current_setting('transaction_read_only') AS ro, txid_current_if_assigned() IS NULL AS no_xid, pg_backend_pid() AS pid, %s::int AS i, (SELECT count(*) FROM generate_series(1, 200000)) AS busy",
                           "params": [i]}),
                )
                .await;
            structured(&r)["result"][0].clone()
        }));
    }
    let mut pids = std::collections::HashSet::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let row = t.await.unwrap();
        assert_eq!(row["ro"], "on", "call {i}: {row}");
        assert_eq!(row["i"], i, "call {i} got its own parameters");
        pids.insert(row["pid"].as_i64().unwrap());
    }
    assert!(pids.len() <= 10, "at most the pool's size: {pids:?}");
    assert!(
        pids.len() > 1,
        "calls ran in parallel on several connections"
    );
    no_open_transactions(pg).await;
}

#[tokio::test]
async fn connections_use_tls_verification_and_a_named_application() {
    let pg = shared();
    let s = McpSession::for_cluster(pg, &[]).await;
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT s.ssl, a.application_name, a.usename FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE pid = pg_backend_pid()"}),
        )
        .await;
    assert_eq!(
        structured(&r),
        json!({"result": [{"ssl": true, "application_name": "aurora-dsql-mcp-server", "usename": "admin"}]})
    );

    // A server whose certificate does not chain to the given CA is refused.
    let other = start();
    let mut args = cluster_args(pg, &[]);
    let ca = args.iter().position(|a| a == "--ssl-root-cert").unwrap() + 1;
    args[ca] = other.ca_path().display().to_string();
    let s = McpSession::start(&args, &[]).await;
    let r = s.call("readonly_query", json!({"sql": "SELECT 1"})).await;
    let t = err_text(&r);
    assert!(t.contains("could not connect to the cluster"), "{t}");
    assert!(t.to_lowercase().contains("certificate"), "{t}");
}

#[tokio::test]
async fn tokens_and_sql_never_reach_the_logs() {
    let pg = shared();
    let s = McpSession::for_cluster_with_env(pg, &[], &[("RUST_LOG", "debug")]).await;
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT 'secret-literal-value' AS v"}),
        )
        .await;
    assert!(!is_error(&r));
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT * FROM missing_secret_table"}),
        )
        .await;
    assert!(is_error(&r));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stderr = s.stderr();
    assert!(
        stderr.contains("opened a connection with a fresh token"),
        "{stderr}"
    );
    for secret in [
        "X-Amz-Signature",
        "X-Amz-Credential",
        FAKE_SECRET_ACCESS_KEY,
        FAKE_ACCESS_KEY_ID,
    ] {
        assert!(!stderr.contains(secret), "{secret} leaked into stderr");
    }
    // At the default level not even SQL text is logged.
    let s = McpSession::for_cluster(pg, &[]).await;
    s.call(
        "readonly_query",
        json!({"sql": "SELECT 'secret-literal-value' AS v"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !s.stderr().contains("secret-literal-value"),
        "{}",
        s.stderr()
    );
}

/// Terminates backend `pid` (idle in the server's pool) and gives the server a moment to see it.
async fn terminate_idle(db: &tokio_postgres::Client, pid: i64) {
    let killed: bool = db
        .query_one("SELECT pg_terminate_backend($1::int)", &[&(pid as i32)])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// No connection of ours is left inside a transaction.
async fn no_open_transactions(pg: &PgCluster) {
    let db = pg.superuser().await;
    for _ in 0..50 {
        let rows = db
            .query(
                "SELECT state FROM pg_stat_activity WHERE application_name = 'aurora-dsql-mcp-server' AND state <> 'idle'",
                &[],
            )
            .await
            .unwrap();
        if rows.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("a connection was left in a transaction");
}

#[tokio::test]
async fn log_level_set_by_the_client_filters_notifications() {
    use rmcp::model::{LoggingLevel, SetLevelRequestParams};
    let s = McpSession::for_cluster(shared(), &[]).await;
    s.peer()
        .set_level(SetLevelRequestParams::new(LoggingLevel::Critical))
        .await
        .expect("logging/setLevel is implemented");
    let r = s
        .call(
            "readonly_query",
            json!({"sql": "SELECT * FROM quiet_missing_table"}),
        )
        .await;
    assert!(is_error(&r));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !s.logs()
            .iter()
            .any(|l| l.data.to_string().contains("quiet_missing_table")),
        "an error notification was sent below the client's level"
    );
    s.peer()
        .set_level(SetLevelRequestParams::new(LoggingLevel::Error))
        .await
        .unwrap();
    s.call(
        "readonly_query",
        json!({"sql": "SELECT * FROM loud_missing_table"}),
    )
    .await;
    assert!(
        s.wait_for_log(Duration::from_secs(5), |l| l
            .data
            .to_string()
            .contains("loud_missing_table"))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn refused_sql_never_opens_a_connection() {
    // A private cluster, so the connections counted are this server's alone.
    let pg = start();
    let table = unique_name("untouched");
    let db = pg.superuser().await;
    db.batch_execute(&format!(
        "CREATE TABLE {table} (id int PRIMARY KEY); GRANT ALL ON {table} TO admin;"
    ))
    .await
    .unwrap();
    let ours =
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aurora-dsql-mcp-server'";

    let ro = McpSession::for_cluster(&pg, &[]).await;
    let rw = McpSession::for_cluster(&pg, &["--allow-writes"]).await;
    let refused: Vec<(&McpSession, &str, Value)> = vec![
        (
            &ro,
            "readonly_query",
            json!({"sql": format!("INSERT INTO {table} VALUES (1)")}),
        ),
        (
            &ro,
            "readonly_query",
            json!({"sql": format!("SELECT 1; DELETE FROM {table}")}),
        ),
        (
            &ro,
            "readonly_query",
            json!({"sql": "SELECT U&\"pg_sl\\0065ep\"(10)"}),
        ),
        (&ro, "readonly_query", json!({"sql": "COMMIT"})),
        (
            &ro,
            "transact",
            json!({"sql_list": [format!("UPDATE {table} SET id = 2")]}),
        ),
        (
            &rw,
            "transact",
            json!({"sql_list": [format!("CREATE INDEX {table}_idx ON {table} (id)")]}),
        ),
        (
            &rw,
            "transact",
            json!({"sql_list": [format!("CREATE TABLE {table}_b (id int PRIMARY KEY)"),
                                              format!("INSERT INTO {table} VALUES (1)")]}),
        ),
        (
            &rw,
            "transact",
            json!({"sql_list": [format!("TRUNCATE {table}")]}),
        ),
        (
            &rw,
            "transact",
            json!({"sql_list": ["SELECT pg_terminate_backend(1)"]}),
        ),
        (
            &rw,
            "execute",
            json!({"sql": format!("CREATE TABLE {table}_c (id serial PRIMARY KEY)")}),
        ),
    ];
    for (session, tool, args) in refused {
        let r = session.call(tool, args.clone()).await;
        assert!(is_error(&r), "{tool} {args} was accepted: {}", text(&r));
    }
    let n: i64 = db.query_one(ours, &[]).await.unwrap().get(0);
    assert_eq!(n, 0, "a refused call opened a connection");
    let tables: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname LIKE $1 AND relname <> $2",
            &[&format!("{table}%"), &format!("{table}_pkey")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        tables, 1,
        "only the original table and its key exist (no index, no new tables)"
    );

    // The first accepted call opens exactly one connection.
    let r = ro
        .call(
            "readonly_query",
            json!({"sql": format!("SELECT count(*) AS n FROM {table}")}),
        )
        .await;
    assert_eq!(structured(&r), json!({"result": [{"n": 0}]}));
    let n: i64 = db.query_one(ours, &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
}
