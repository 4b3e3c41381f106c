//! The JSON-RPC surface under bad input, over raw stdio (no MCP client in between): a
//! malformed line is ignored (rmcp's choice, see ARCHITECTURE.md) and the next request is
//! answered; well-formed JSON of the wrong shape gets Invalid Request; an unknown method gets
//! -32601; a known method with params of the wrong shape gets -32602; wrong argument types
//! are tool errors naming the field; 10 MB SQL gets a size error (database tools and
//! `dsql_lint`); a line over rmcp's 16 MiB limit is dropped; a `notifications/cancelled`
//! written by hand stops the statement and the cancelled request gets no response. After
//! each, the server keeps serving.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
}

/// Sends `ping` with `id` and asserts that the very next line is its answer.
fn still_serving(p: &mut RawProcess, id: u64) {
    p.send_json(&json!({"jsonrpc": "2.0", "id": id, "method": "ping"}));
    assert_eq!(
        p.read_json_line(),
        json!({"jsonrpc": "2.0", "id": id, "result": {}})
    );
}

/// The one text of a tool result, and that it is an error.
fn tool_error(response: &Value) -> String {
    assert_eq!(response["result"]["isError"], true, "{response}");
    let content = response["result"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 1, "{response}");
    content[0]["text"].as_str().unwrap().to_owned()
}

fn session() -> RawProcess {
    let mut p = raw_process(&cluster_args(shared(), &["--allow-writes"]), &[]);
    let init = p.handshake();
    assert_eq!(
        init["result"]["serverInfo"]["name"],
        "aurora-dsql-mcp-server"
    );
    p
}

#[test]
fn malformed_json_is_ignored_and_the_next_request_answered() {
    let mut p = session();
    for line in [
        "{not json",
        "{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"ping\"",
        "\u{7f}\u{1}garbage",
        "",
    ] {
        p.send_line(line);
    }
    // Nothing was written for the four lines: the next line is the ping's answer.
    still_serving(&mut p, 2);
    assert!(p.stderr().find("panicked").is_none(), "{}", p.stderr());
}

#[test]
fn well_formed_json_of_the_wrong_shape_is_an_invalid_request() {
    let mut p = session();
    // rmcp answers without an id (JSON-RPC 2.0 asks for `"id": null` when it is unknown;
    // clients match on the code).
    let invalid =
        json!({"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid request"}});
    for wrong in [
        json!({"foo": "bar"}),
        json!([1, 2, 3]),
        json!("a string"),
        json!({"jsonrpc": "2.0", "id": 3, "method": 42}),
    ] {
        p.send_json(&wrong);
        assert_eq!(p.read_json_line(), invalid, "for {wrong}");
    }
    still_serving(&mut p, 4);
}

#[test]
fn an_unknown_method_is_method_not_found() {
    let mut p = session();
    p.send_json(&json!({"jsonrpc": "2.0", "id": 5, "method": "no/such/method", "params": {}}));
    assert_eq!(
        p.read_json_line(),
        json!({"jsonrpc": "2.0", "id": 5, "error": {"code": -32601, "message": "no/such/method"}})
    );
    still_serving(&mut p, 6);
}

#[test]
fn a_known_method_with_params_of_the_wrong_shape_is_invalid_params() {
    let mut p = session();
    // Without the server's on_custom_request this was -32601 "tools/call" (method not found).
    p.send_json(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                        "params": {"name": "readonly_query", "arguments": "SELECT 1"}}));
    assert_eq!(
        p.read_json_line(),
        json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -32602,
               "message": "Invalid params for tools/call: invalid type: string \"SELECT 1\", expected a map"}})
    );
    p.send_json(
        &json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"arguments": {}}}),
    );
    assert_eq!(
        p.read_json_line(),
        json!({"jsonrpc": "2.0", "id": 8, "error": {"code": -32602,
               "message": "Invalid params for tools/call: missing field `name`"}})
    );
    // An unknown tool is invalid params too.
    p.send_json(&call(9, "no_such_tool", json!({})));
    let r = p.read_response(&json!(9));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert_eq!(r["error"]["message"], "Unknown tool: no_such_tool");
    still_serving(&mut p, 10);
}

#[test]
fn wrong_argument_types_are_tool_errors_naming_the_field() {
    let mut p = session();
    p.send_json(&call(
        11,
        "readonly_query",
        json!({"sql": 5, "params": "x"}),
    ));
    assert_eq!(
        tool_error(&p.read_response(&json!(11))),
        "Error executing tool readonly_query: 2 validation errors for readonly_queryArguments\nsql\n  Input should be a valid string\nparams\n  Input should be a valid list"
    );
    p.send_json(&call(
        12,
        "transact",
        json!({"sql_list": "SELECT 1", "params_list": 5}),
    ));
    assert_eq!(
        tool_error(&p.read_response(&json!(12))),
        "Error executing tool transact: 2 validation errors for transactArguments\nsql_list\n  Input should be a valid list\nparams_list\n  Input should be a valid list"
    );
    p.send_json(&call(13, "transact", json!({"sql_list": ["SELECT 1", 2]})));
    assert_eq!(
        tool_error(&p.read_response(&json!(13))),
        "Error executing tool transact: 1 validation error for transactArguments\nsql_list\n  Input should be a list of strings"
    );
    p.send_json(&call(
        14,
        "dsql_lint",
        json!({"sql": "SELECT 1", "fix": "yes"}),
    ));
    assert_eq!(
        tool_error(&p.read_response(&json!(14))),
        "Error executing tool dsql_lint: 1 validation error for dsql_lintArguments\nfix\n  Input should be a valid boolean"
    );
    p.send_json(&call(15, "query", json!({"sql": ["SELECT 1"]})));
    assert_eq!(
        tool_error(&p.read_response(&json!(15))),
        "Error executing tool query: 1 validation error for queryArguments\nsql\n  Input should be a valid string"
    );
    still_serving(&mut p, 16);
}

#[test]
fn ten_megabyte_sql_gets_a_size_error_and_the_server_keeps_serving() {
    let mut p = session();
    let n = 10_000_000;
    // A literal (would return a 10 MB row), a comment, and a long expression.
    let huge = [
        format!("SELECT '{}' AS x", "a".repeat(n)),
        format!("SELECT 1 AS x -- {}", "c".repeat(n)),
        format!("SELECT {}1 AS x", "1 + ".repeat(n / 4)),
    ];
    let mut id = 20;
    for sql in &huge {
        let chars = sql.chars().count();
        let expected = |tool: &str, prefix: &str| {
            format!(
                "Error executing tool {tool}: {prefix}SQL is too long: {chars} characters (the limit is 1000000). Pass values as parameters instead of literals, and split bulk writes into batches of at most 3,000 rows."
            )
        };
        for (tool, args, prefix) in [
            ("readonly_query", json!({ "sql": sql }), ""),
            ("query", json!({ "sql": sql }), ""),
            ("execute", json!({ "sql": sql }), ""),
            (
                "transact",
                json!({ "sql_list": ["SELECT 1", sql] }),
                "statement 2 of 2: ",
            ),
        ] {
            id += 1;
            p.send_json(&call(id, tool, args));
            let r = p.read_response(&json!(id));
            assert_eq!(tool_error(&r), expected(tool, prefix));
        }
    }
    // At the limit the SQL is parsed and runs.
    let at_limit = format!("SELECT 1 AS x --{}", "c".repeat(1_000_000 - 16));
    assert_eq!(at_limit.chars().count(), 1_000_000);
    p.send_json(&call(40, "readonly_query", json!({ "sql": at_limit })));
    let r = p.read_response(&json!(40));
    assert_eq!(
        r["result"]["structuredContent"],
        json!({"result": [{"x": 1}]})
    );
    still_serving(&mut p, 41);
}

#[test]
fn dsql_lint_over_a_million_characters_gets_the_size_error() {
    let mut p = session();
    p.send_json(&call(
        50,
        "dsql_lint",
        json!({"sql": "a".repeat(1_000_001)}),
    ));
    assert_eq!(
        tool_error(&p.read_response(&json!(50))),
        "Error executing tool dsql_lint: SQL is too long for dsql_lint: 1000001 characters (the limit is 1000000); lint it in smaller parts"
    );
    // Characters, not bytes: a million two-byte characters is within the limit.
    p.send_json(&call(
        51,
        "dsql_lint",
        json!({"sql": "é".repeat(1_000_000)}),
    ));
    let r = p.read_response(&json!(51));
    assert_ne!(r["result"]["isError"], true, "{r}");
    still_serving(&mut p, 52);
}

#[test]
fn a_line_over_rmcps_limit_is_dropped_without_an_answer_and_the_server_keeps_serving() {
    let mut p = session();
    // rmcp drops lines over 16 MiB (DEFAULT_MAX_LINE_LENGTH) with a log line on stderr and
    // no response: a client waiting for id 60 waits until its own timeout.
    let line = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":60,\"method\":\"tools/call\",\"params\":{{\"name\":\"dsql_lint\",\"arguments\":{{\"sql\":\"{}\"}}}}}}",
        "a".repeat(17 << 20)
    );
    p.send_line(&line);
    still_serving(&mut p, 61);
    assert!(
        p.stderr()
            .contains("Incoming message exceeded the maximum line length, discarding it"),
        "{}",
        p.stderr()
    );
    assert!(p.read_line_timeout(Duration::from_millis(200)).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_request_gets_no_response_and_its_statement_stops() {
    let pg = start();
    let db = pg.superuser().await;
    let mut p = raw_process(&cluster_args(&pg, &[]), &[]);
    p.handshake();
    let slow = "SELECT count(*) AS n, 'raw_cancel' AS tag FROM generate_series(1, 100000) a CROSS JOIN generate_series(1, 100000) b";
    p.send_json(&call(70, "readonly_query", json!({ "sql": slow })));
    let running = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aurora-dsql-mcp-server' AND state = 'active' AND query LIKE '%raw_cancel%'";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while db.query_one(running, &[]).await.unwrap().get::<_, i64>(0) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the statement never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.send_json(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": 70, "reason": "user abort"}}),
    );
    // A cancellation for a request that does not exist is ignored.
    p.send_json(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": 999}}),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while db.query_one(running, &[]).await.unwrap().get::<_, i64>(0) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the statement still runs"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // MCP: the receiver of a cancellation does not answer the cancelled request. Only log
    // notifications may come before the ping's answer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    p.send_json(&json!({"jsonrpc": "2.0", "id": 71, "method": "ping"}));
    loop {
        let line = p.read_json_line();
        assert_ne!(
            line["id"], 70,
            "a response to the cancelled request: {line}"
        );
        if line["id"] == 71 {
            assert_eq!(line, json!({"jsonrpc": "2.0", "id": 71, "result": {}}));
            break;
        }
        assert_eq!(line["method"], "notifications/message", "{line}");
    }
    p.send_json(&call(
        72,
        "readonly_query",
        json!({"sql": "SELECT 1 AS one"}),
    ));
    let r = p.read_response(&json!(72));
    assert_eq!(
        r["result"]["structuredContent"],
        json!({"result": [{"one": 1}]})
    );
}
