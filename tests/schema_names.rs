//! The schema tools name one table, and every name or URI a caller passes is bounded:
//! `get_schema` says which table each column belongs to, reaches quoted names
//! (`public."a.b"`) and reports a missing table; `list_tables` and `describe_table` fold
//! names the same way; every URI `resources/list` gives can be read; NUL bytes, names past
//! PostgreSQL's 63-byte limit, huge URIs and huge prompt arguments get short, clear errors.
//!
//! Each test has its own cluster, so the resource listing sees only its tables.

mod common;

use common::*;
use rmcp::ServiceError;
use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams};
use serde_json::{Value, json};

fn fails(r: &rmcp::model::CallToolResult) -> String {
    assert_eq!(r.is_error, Some(true), "expected an error: {}", text(r));
    text(r)
}

fn mcp_message(e: ServiceError) -> String {
    match e {
        ServiceError::McpError(e) => e.message.to_string(),
        other => panic!("expected an MCP error, got {other:?}"),
    }
}

async fn setup(pg: &PgCluster) {
    pg.superuser()
        .await
        .batch_execute(
            "CREATE SCHEMA s1; CREATE SCHEMA s2; GRANT USAGE ON SCHEMA s1, s2 TO admin;
             CREATE TABLE s1.\"Foo\" (a int); CREATE TABLE s1.foo (b text); CREATE TABLE s2.foo (c date);
             CREATE TABLE public.\"a.b\" (x int);
             CREATE TABLE s1.\"a/b\" (y int); CREATE TABLE s1.\"x%y \"\"q\"\"\" (z int);
             CREATE SCHEMA \"Sp ace/\"; GRANT USAGE ON SCHEMA \"Sp ace/\" TO admin;
             CREATE TABLE \"Sp ace/\".\"ÜBER\" (w int);
             GRANT SELECT ON ALL TABLES IN SCHEMA s1, s2, public, \"Sp ace/\" TO admin;",
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_schema_names_each_rows_table_reaches_quoted_names_and_reports_a_missing_one() {
    let pg = start();
    setup(&pg).await;
    let s = McpSession::for_cluster(&pg, &[]).await;
    let get = |name: &str| s.call("get_schema", json!({"table_name": name}));

    // A bare name matches case-insensitively in every schema; each row says which table.
    assert_eq!(
        structured(&get("FOO").await),
        json!({"result": [
            {"column_name": "a", "data_type": "integer", "table_schema": "s1", "table_name": "Foo"},
            {"column_name": "b", "data_type": "text", "table_schema": "s1", "table_name": "foo"},
            {"column_name": "c", "data_type": "date", "table_schema": "s2", "table_name": "foo"}
        ]})
    );
    // Quoted parts match exactly.
    assert_eq!(
        structured(&get("s1.\"Foo\"").await),
        json!({"result": [{"column_name": "a", "data_type": "integer", "table_schema": "s1", "table_name": "Foo"}]})
    );
    let ab = json!({"result": [{"column_name": "x", "data_type": "integer", "table_schema": "public", "table_name": "a.b"}]});
    assert_eq!(structured(&get("public.\"a.b\"").await), ab);
    assert_eq!(structured(&get("\"a.b\"").await), ab);
    assert_eq!(structured(&get("PUBLIC.\"a.b\"").await), ab);
    // Unquoted, the first dot separates schema and table, as in the reference.
    assert_eq!(
        fails(&get("a.b").await),
        "Error executing tool get_schema: no table matching \"a.b\" was found in schema \"a\" (or this role may not read its columns). get_schema matches bare names case-insensitively; quote a name to match it exactly (public.\"Order.Items\"), and use list_tables to see a schema's tables."
    );
    assert_eq!(
        fails(&get("\"FOO\"").await),
        "Error executing tool get_schema: no table matching \"\"FOO\"\" was found in any schema (or this role may not read its columns). get_schema matches bare names case-insensitively; quote a name to match it exactly (public.\"Order.Items\"), and use list_tables to see a schema's tables."
    );
    // Bounds: NUL, and names past 63 bytes, quoted briefly.
    assert_eq!(
        fails(&get("fo\0o").await),
        "Error executing tool get_schema: the table name \"fo\\0o\" contains a NUL byte, which PostgreSQL names cannot contain"
    );
    let long = "n".repeat(100_000);
    assert_eq!(
        fails(&get(&long).await),
        format!(
            "Error executing tool get_schema: the table name \"{}…\" is 100000 bytes long; PostgreSQL names are at most 63 bytes",
            "n".repeat(40)
        )
    );
    assert_eq!(
        fails(&get(&format!("{long}.t")).await),
        format!(
            "Error executing tool get_schema: the schema name \"{}…\" is 100000 bytes long; PostgreSQL names are at most 63 bytes",
            "n".repeat(40)
        )
    );
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_tables_and_describe_table_fold_names_the_same_way() {
    let pg = start();
    setup(&pg).await;
    let s = McpSession::for_cluster(&pg, &[]).await;
    let list = |schema: &str| s.call("list_tables", json!({"schema": schema}));
    let s1 = json!(["Foo", "a/b", "foo", "x%y \"q\""]);
    assert_eq!(structured(&list("s1").await)["tables"], s1);
    // A bare schema name is matched as stored, then folded: as describe_table does.
    assert_eq!(structured(&list("S1").await)["tables"], s1);
    // Quoted: exactly.
    assert_eq!(
        fails(&list("\"S1\"").await),
        "Error executing tool list_tables: schema \"\"S1\"\" does not exist (query SELECT nspname FROM pg_catalog.pg_namespace to see the schemas)"
    );
    assert_eq!(
        structured(&list("\"Sp ace/\"").await)["tables"],
        json!(["ÜBER"])
    );
    assert_eq!(
        structured(&list("Sp ace/").await)["tables"],
        json!(["ÜBER"])
    );

    let describe = |schema: &str, table: &str| {
        s.call(
            "describe_table",
            json!({"schema": schema, "table_name": table}),
        )
    };
    let columns = |r: &rmcp::model::CallToolResult| -> Value {
        let v = structured(r);
        json!([v["schema"], v["table"], v["columns"][0]["name"]])
    };
    assert_eq!(
        columns(&describe("S1", "Foo").await),
        json!(["s1", "Foo", "a"])
    );
    assert_eq!(
        columns(&describe("s1", "FOO").await),
        json!(["s1", "foo", "b"])
    );
    assert_eq!(
        columns(&describe("s1", "\"Foo\"").await),
        json!(["s1", "Foo", "a"])
    );
    assert_eq!(
        columns(&describe("s1", "\"foo\"").await),
        json!(["s1", "foo", "b"])
    );
    assert_eq!(
        fails(&describe("s1", "\"FOO\"").await),
        "Error executing tool describe_table: table \"\"FOO\"\" was not found in schema \"s1\" (list_tables shows the tables of a schema)"
    );
    assert_eq!(
        columns(&describe("public", "\"a.b\"").await),
        json!(["public", "a.b", "x"])
    );
    assert_eq!(
        fails(&describe("s1", &"t".repeat(64)).await),
        format!(
            "Error executing tool describe_table: the table name \"{}…\" is 64 bytes long; PostgreSQL names are at most 63 bytes",
            "t".repeat(40)
        )
    );
    assert_eq!(
        fails(&describe("s\u{0}1", "foo").await),
        "Error executing tool describe_table: the schema name \"s\\01\" contains a NUL byte, which PostgreSQL names cannot contain"
    );
    assert_eq!(
        fails(&list(&"s".repeat(70)).await),
        format!(
            "Error executing tool list_tables: the schema name \"{}…\" is 70 bytes long; PostgreSQL names are at most 63 bytes",
            "s".repeat(40)
        )
    );
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listed_resource_can_be_read_and_bad_uris_get_short_errors() {
    let pg = start();
    setup(&pg).await;
    let s = McpSession::for_cluster(&pg, &[]).await;
    let listed = s.peer().list_resources(None).await.unwrap().resources;
    let tables: Vec<&str> = listed
        .iter()
        .map(|r| r.uri.as_str())
        .filter(|u| u.starts_with("dsql://tables/"))
        .collect();
    assert_eq!(
        tables,
        [
            "dsql://tables/Sp%20ace%2F/%C3%9CBER",
            "dsql://tables/public/a.b",
            "dsql://tables/s1/Foo",
            "dsql://tables/s1/a%2Fb",
            "dsql://tables/s1/foo",
            "dsql://tables/s1/x%25y%20%22q%22",
            "dsql://tables/s2/foo",
        ]
    );
    for r in &listed {
        let read = s
            .peer()
            .read_resource(ReadResourceRequestParams::new(r.uri.clone()))
            .await
            .unwrap_or_else(|e| panic!("{} is listed but cannot be read: {e:?}", r.uri));
        let contents = serde_json::to_value(&read.contents).unwrap();
        assert_eq!(contents[0]["uri"], json!(r.uri));
        if let Some(rest) = r.uri.strip_prefix("dsql://tables/") {
            let v: Value = serde_json::from_str(contents[0]["text"].as_str().unwrap()).unwrap();
            // The listed name is the one described, not a differently-cased neighbour.
            assert_eq!(
                format!(
                    "{}.{}",
                    v["schema"].as_str().unwrap(),
                    v["table"].as_str().unwrap()
                ),
                r.name,
                "{rest}"
            );
        }
    }

    let read = |uri: String| {
        let peer = s.peer().clone();
        async move {
            mcp_message(
                peer.read_resource(ReadResourceRequestParams::new(uri))
                    .await
                    .unwrap_err(),
            )
        }
    };
    let huge = format!("dsql://tables/s1/{}", "q".repeat(100_000));
    assert_eq!(
        read(huge).await,
        "no such resource: dsql://tables/s1/qqqqqqqqqqqqqqqqqqqqqqq… (100017 bytes; resource URIs of this server are at most 1024 bytes, without NUL)"
    );
    assert_eq!(
        read("dsql://tables/s1/f\0o".into()).await,
        "no such resource: dsql://tables/s1/f\\0o (20 bytes; resource URIs of this server are at most 1024 bytes, without NUL)"
    );
    assert_eq!(
        read(format!("dsql://tables/s1/{}", "%41".repeat(64))).await,
        format!(
            "dsql://tables/s1/%41%41%41%41%41%41%41%4…: the name \"{}…\" is 64 bytes long; PostgreSQL names are at most 63 bytes",
            "A".repeat(40)
        )
    );
    assert_eq!(
        read(format!("file:///{}", "x".repeat(900))).await,
        format!(
            "unknown resource file:///{}… (this server serves dsql://guides/<name> and dsql://tables/<schema>/<table>)",
            "x".repeat(32)
        )
    );
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_arguments_are_bounded() {
    let s = McpSession::start(&[], &[]).await;
    let get = |sql: String| {
        let peer = s.peer().clone();
        async move {
            let mut args = serde_json::Map::new();
            args.insert("sql".into(), Value::String(sql));
            peer.get_prompt(GetPromptRequestParams::new("migration-review").with_arguments(args))
                .await
        }
    };
    let big = "SELECT 1;\n".repeat(10_001);
    assert_eq!(
        mcp_message(get(big).await.unwrap_err()),
        "migration-review: the argument `sql` is 100010 bytes; the limit is 100000. Review a large migration in parts, or lint it whole with the dsql_lint tool."
    );
    let ok = get("CREATE TABLE t (id SERIAL PRIMARY KEY);".into())
        .await
        .unwrap();
    assert_eq!(ok.messages.len(), 1);
    let err = s
        .peer()
        .get_prompt(GetPromptRequestParams::new("x".repeat(10_000)))
        .await
        .unwrap_err();
    assert_eq!(
        mcp_message(err),
        format!(
            "unknown prompt \"{}…\" (prompts: onboarding, migration-review)",
            "x".repeat(40)
        )
    );
    s.close().await;
}
