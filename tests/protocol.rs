//! The JSON-RPC surface under bad input, over raw stdio (no MCP client in between): every
//! line that could be a request gets an answer within a second (the front door,
//! `src/stdio.rs`): a line that is not JSON gets -32700 with `"id": null`; JSON of the wrong
//! shape gets -32600 (with its id when one can be read); a request whose params cannot be
//! decoded (a lone surrogate, a number out of f64's range) gets -32602 with its id; a line
//! over the 16 MiB limit gets -32600; a duplicate id of a request in flight is refused while
//! the first still gets its answer. An unknown method gets -32601; a known method with params
//! of the wrong shape gets -32602; wrong argument types are tool errors naming the field; 10
//! MB SQL gets a size error (database tools and `dsql_lint`); an error carrying a 50 MB value
//! is cut to 16 KiB; no response exceeds `--max-result-bytes` plus a small envelope; more
//! parameters than the protocol carries is an error, not a lost connection; a
//! `notifications/cancelled` written by hand stops the statement and the cancelled request
//! gets no response. After each, the server keeps serving.

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

/// The next line, within a second, parsed as JSON.
fn answer_within_a_second(p: &mut RawProcess) -> Value {
    p.read_json_line_timeout(Duration::from_secs(1))
}

fn error_response(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

#[test]
fn a_line_that_is_not_json_gets_a_parse_error_with_a_null_id() {
    let mut p = session();
    for (line, message) in [
        (
            "{not json",
            "Parse error: key must be a string at line 1 column 2",
        ),
        (
            "{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"ping\"",
            "Parse error: EOF while parsing an object at line 1 column 44",
        ),
        (
            "\u{7f}\u{1}garbage",
            "Parse error: expected value at line 1 column 1",
        ),
    ] {
        p.send_line(line);
        assert_eq!(
            answer_within_a_second(&mut p),
            error_response(Value::Null, -32700, message),
            "for {line:?}"
        );
    }
    // Blank lines get nothing: the next line is the ping's answer.
    p.send_line("");
    p.send_line("  \t");
    still_serving(&mut p, 2);
    assert!(p.stderr().find("panicked").is_none(), "{}", p.stderr());
}

#[test]
fn well_formed_json_of_the_wrong_shape_is_an_invalid_request() {
    let mut p = session();
    // JSON-RPC 2.0: `"id": null` when the id cannot be read, the id when it can.
    for (wrong, id) in [
        (json!({"foo": "bar"}), Value::Null),
        (json!([1, 2, 3]), Value::Null),
        (json!("a string"), Value::Null),
        (json!({"jsonrpc": "2.0", "id": 3, "method": 42}), json!(3)),
        (
            json!({"jsonrpc": "2.0", "id": "s-3", "method": 42}),
            json!("s-3"),
        ),
        (
            json!({"jsonrpc": "2.0", "id": null, "method": "ping"}),
            Value::Null,
        ),
    ] {
        p.send_json(&wrong);
        assert_eq!(
            answer_within_a_second(&mut p),
            error_response(id, -32600, "Invalid request"),
            "for {wrong}"
        );
    }
    still_serving(&mut p, 4);
}

#[test]
fn a_request_whose_json_cannot_be_decoded_is_answered_with_its_id() {
    let mut p = session();
    let q = |id: &str, arguments: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"readonly_query","arguments":{arguments}}}}}"#
        )
    };
    for (line, expected) in [
        // A lone UTF-16 surrogate in a string of the arguments.
        (
            q("100", r#"{"sql":"SELECT $1","params":["\ud800"]}"#),
            error_response(
                json!(100),
                -32602,
                "Invalid params for tools/call: unexpected end of hex escape at line 1 column 131",
            ),
        ),
        // A number outside f64's range.
        (
            q("\"n-101\"", r#"{"sql":"SELECT $1","params":[1e400]}"#),
            error_response(
                json!("n-101"),
                -32602,
                "Invalid params for tools/call: number out of range at line 1 column 132",
            ),
        ),
        // The id after the params is found too.
        (
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"dsql_lint","arguments":{"sql":"\udfff"}},"id":102}"#.to_owned(),
            error_response(
                json!(102),
                -32602,
                "Invalid params for tools/call: lone leading surrogate in hex escape at line 1 column 94",
            ),
        ),
        // An unknown method: the request is invalid, not its params.
        (
            r#"{"jsonrpc":"2.0","id":103,"method":"no/such","params":{"x":1e400}}"#.to_owned(),
            error_response(
                json!(103),
                -32600,
                "Invalid request: number out of range at line 1 column 64",
            ),
        ),
        // The id itself cannot be decoded: null.
        (
            r#"{"jsonrpc":"2.0","id":"\ud800","method":"ping"}"#.to_owned(),
            error_response(
                Value::Null,
                -32600,
                "Invalid request: unexpected end of hex escape at line 1 column 30",
            ),
        ),
    ] {
        p.send_line(&line);
        assert_eq!(answer_within_a_second(&mut p), expected, "for {line}");
    }
    // A notification that cannot be decoded is not answered (JSON-RPC).
    p.send_line(
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1e400}}"#,
    );
    // The next call is served normally.
    p.send_json(&call(
        104,
        "readonly_query",
        json!({"sql": "SELECT %s AS v", "params": ["ok"]}),
    ));
    let r = p.read_response(&json!(104));
    assert_eq!(
        r["result"]["structuredContent"],
        json!({"result": [{"v": "ok"}]})
    );
    still_serving(&mut p, 105);
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
fn a_line_over_the_limit_is_answered_and_the_server_keeps_serving() {
    let mut p = session();
    let sql = "a".repeat(17 << 20);
    let too_large = |len: usize| {
        format!(
            "Request too large: {len} bytes on one line, over this server's limit of 16777216 bytes"
        )
    };
    // The id first (as clients write it): read from the line's first bytes.
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":60,"method":"tools/call","params":{{"name":"dsql_lint","arguments":{{"sql":"{sql}"}}}}}}"#
    );
    p.send_line(&line);
    assert_eq!(
        answer_within_a_second(&mut p),
        error_response(json!(60), -32600, &too_large(line.len()))
    );
    still_serving(&mut p, 61);
    // The id after 17 MiB is past the bytes kept: null.
    let line = format!(
        r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":"dsql_lint","arguments":{{"sql":"{sql}"}}}},"id":62}}"#
    );
    p.send_line(&line);
    assert_eq!(
        answer_within_a_second(&mut p),
        error_response(Value::Null, -32600, &too_large(line.len()))
    );
    // Just under the limit the line is read and the call answered (dsql_lint's own bound).
    let sql = "a".repeat((16 << 20) - 200);
    p.send_json(&call(63, "dsql_lint", json!({ "sql": sql })));
    let r = p.read_response(&json!(63));
    assert_eq!(
        tool_error(&r),
        format!(
            "Error executing tool dsql_lint: SQL is too long for dsql_lint: {} characters (the limit is 1000000); lint it in smaller parts",
            sql.len()
        )
    );
    still_serving(&mut p, 64);
    assert!(p.read_line_timeout(Duration::from_millis(200)).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_id_in_flight_is_refused_and_the_first_still_answered() {
    let pg = shared();
    let db = pg.superuser().await;
    let table = unique_name("dup_id");
    let mut p = session();
    // Created through the server, so that its user owns the table.
    p.send_json(&call(
        79,
        "transact",
        json!({"sql_list": [format!("CREATE TABLE {table} (id int PRIMARY KEY)")]}),
    ));
    let r = p.read_response(&json!(79));
    assert_ne!(r["result"]["isError"], true, "{r}");
    // Hold a lock from a separate session so that the write waits.
    db.batch_execute(&format!(
        "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
    ))
    .await
    .unwrap();
    let insert = json!({"sql_list": [format!("INSERT INTO {table} VALUES (1)")]});
    p.send_json(&call(80, "transact", insert));
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aurora-dsql-mcp-server' AND wait_event_type = 'Lock' AND query LIKE '%{table}%'"
    );
    // Watched from another session: inside the lock holder's transaction,
    // pg_stat_activity is a snapshot taken at its first read, so a first look before the
    // insert waited would have seen "not waiting" for good (the flake this test had
    // under load).
    let watcher = pg.superuser().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while watcher
        .query_one(&waiting, &[])
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        if std::time::Instant::now() >= deadline {
            // Say what the server did instead (answered early, or nothing), for a flake.
            let answered = p.read_line_timeout(Duration::from_millis(500));
            panic!(
                "the insert never waited; the server's next line: {answered:?}\nstderr:\n{}",
                p.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The same id again, while 80 waits: refused at once, and not run.
    p.send_json(&call(
        80,
        "readonly_query",
        json!({"sql": "SELECT 1 AS one"}),
    ));
    assert_eq!(
        answer_within_a_second(&mut p),
        error_response(
            json!(80),
            -32600,
            "duplicate request id: a request with this id is still in flight"
        )
    );
    // The string "80" is another id.
    p.send_json(&json!({"jsonrpc": "2.0", "id": "80", "method": "ping"}));
    assert_eq!(
        answer_within_a_second(&mut p),
        json!({"jsonrpc": "2.0", "id": "80", "result": {}})
    );
    db.batch_execute("COMMIT").await.unwrap();
    let r = p.read_response(&json!(80));
    assert_eq!(
        r["result"]["structuredContent"],
        json!({"result": []}),
        "{r}"
    );
    let n: i64 = db
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // Once answered, the id may be used again.
    p.send_json(&json!({"jsonrpc": "2.0", "id": 80, "method": "ping"}));
    assert_eq!(
        answer_within_a_second(&mut p),
        json!({"jsonrpc": "2.0", "id": 80, "result": {}})
    );
}

/// Peak resident memory of a process, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn an_error_carrying_a_huge_value_is_cut_and_memory_stays_bounded() {
    let mut p = session();
    let sql = "SELECT repeat('x', 50000000)::int";
    p.send_json(&call(91, "readonly_query", json!({ "sql": sql })));
    // The log notification comes first, with the same text.
    let notification = p.read_json_line_timeout(Duration::from_secs(30));
    let response = p.read_json_line_timeout(Duration::from_secs(30));
    let text = tool_error(&response);
    assert_eq!(
        notification["method"], "notifications/message",
        "{notification}"
    );
    assert_eq!(notification["params"]["data"], text);
    // The server's message is cut to 8 KiB (half the error text's 16 KiB).
    let message = "invalid input syntax for type integer: \"";
    let message_len = message.len() + 50_000_000 + 1;
    assert_eq!(
        text,
        format!(
            "Error executing tool readonly_query: ERROR 22P02: {message}{}… [cut: the first 8192 of {message_len} bytes of this text]",
            "x".repeat(8192 - message.len())
        )
    );
    assert!(
        response.to_string().len() < 10_000,
        "{}",
        response.to_string().len()
    );
    let peak = peak_rss(p.pid());
    assert!(peak < 300 << 20, "peak RSS {peak} bytes");
    still_serving(&mut p, 92);
}

#[test]
fn no_response_exceeds_max_result_bytes_plus_a_small_envelope() {
    let max = 4000;
    let mut p = raw_process(
        &cluster_args(shared(), &["--max-result-bytes", &max.to_string()]),
        &[],
    );
    p.handshake();
    // Quotes, backslashes, newlines and control characters cost more once pretty-printed
    // and escaped again into the text content.
    let escapes = r#"SELECT i, repeat('"\', 50) || chr(10) AS s, chr(1) AS c FROM generate_series(1, 1000) i"#;
    let many = "SELECT i FROM generate_series(1, 100000) i";
    for (id, tool, sql) in [
        (93, "readonly_query", escapes),
        (94, "query", escapes),
        (95, "readonly_query", many),
        (96, "query", many),
    ] {
        p.send_json(&call(id, tool, json!({ "sql": sql })));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let line = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = p.read_line_timeout(left).expect("a response");
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == id {
                break line;
            }
        };
        let v: Value = serde_json::from_str(&line).unwrap();
        let structured = &v["result"]["structuredContent"];
        assert_eq!(structured["truncated"], true, "{id}: {structured}");
        assert!(line.len() <= max + 1024, "{id}: {} bytes", line.len());
        assert!(line.len() > max / 2, "{id}: {} bytes", line.len());
    }
}

#[test]
fn more_parameters_than_the_protocol_carries_is_an_error_not_a_lost_connection() {
    let mut p = raw_process(&cluster_args(shared(), &[]), &[]);
    p.handshake();
    // 70,000 parameters: the protocol's count is 16 bits, tokio-postgres refuses more. (A
    // statement naming $70000 takes 70,000 parameters; one listing them all would be past
    // the guard's token limit.)
    let n = 70_000;
    let sql = format!("SELECT ${n}::int AS one");
    let params = vec![json!(1); n];
    p.send_json(&call(
        97,
        "query",
        json!({"sql": sql, "parameters": params}),
    ));
    let r = p.read_response(&json!(97));
    assert_eq!(
        tool_error(&r),
        "Error executing tool query: the statement was not sent (value too large to transmit), nothing ran: the PostgreSQL protocol carries at most 65535 parameters per statement and values under 1 GB; split the work into smaller statements"
    );
    // Served normally afterwards, and nothing was re-run on a fresh connection.
    p.send_json(&call(
        98,
        "readonly_query",
        json!({"sql": "SELECT 1 AS one"}),
    ));
    let r = p.read_response(&json!(98));
    assert_eq!(
        r["result"]["structuredContent"],
        json!({"result": [{"one": 1}]})
    );
    let stderr = p.stderr();
    assert!(!stderr.contains("connection lost"), "{stderr}");
    assert!(!stderr.contains("re-running"), "{stderr}");
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
