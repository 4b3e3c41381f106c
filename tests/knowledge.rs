//! The documentation tools, resources and prompts, end to end: the real binary driven over
//! stdio by rmcp's client, against a small HTTP/1.1 knowledge server started inside each
//! test on 127.0.0.1 (hand-rolled, so a test can sleep, break its JSON or refuse).
//! No cluster is configured for those: these features must work without one. The table
//! resources need a database: that one test uses the shared harness's TLS PostgreSQL.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientRequest, GetPromptRequestParams,
    ReadResourceRequestParams,
};
use rmcp::service::{PeerRequestOptions, RunningService};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_aurora-dsql-mcp-server");
const UNAVAILABLE: &str =
    "The DSQL knowledge server is currently unavailable. Please try again later.";
const MARKER: &str = "Answer from the bundled guides";

// ---------------------------------------------------------------------------------------
// A knowledge server for one test.

/// One request the test server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    content_type: Option<String>,
    body: Value,
    /// The client closed the connection before the answer.
    abandoned: bool,
}

/// How the test server answers every request.
#[derive(Clone)]
enum Reply {
    /// Status and body (sent as application/json).
    Body(u16, String),
    /// Waits this long before answering (longer than the client's timeout).
    Sleep(Duration),
}

struct KnowledgeServer {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl KnowledgeServer {
    async fn start(reply: Reply) -> KnowledgeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, reply.clone(), log.clone()));
            }
        });
        KnowledgeServer { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn last_body(&self) -> Value {
        self.seen()
            .last()
            .expect("a request reached the server")
            .body
            .clone()
    }
}

async fn answer(mut stream: TcpStream, reply: Reply, log: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_owned();
    let path = request_line.next().unwrap_or("").to_owned();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
    log.lock().unwrap().push(Seen {
        method,
        path,
        content_type: header("content-type"),
        body,
        abandoned: false,
    });
    let (status, body) = match reply {
        Reply::Body(status, body) => (status, body),
        Reply::Sleep(d) => {
            // Notice a client that gives up (closes the connection) while we sleep.
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = stream.read(&mut chunk) => {
                    log.lock().unwrap().last_mut().unwrap().abandoned = true;
                    return;
                }
            }
            (
                200,
                r#"{"jsonrpc":"2.0","id":1,"result":{"late":true}}"#.to_owned(),
            )
        }
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A URL on which nothing listens.
async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

// ---------------------------------------------------------------------------------------
// The server under test.

type Client = RunningService<RoleClient, ()>;

/// Spawns the real binary with no cluster and the given knowledge server.
async fn spawn(knowledge: &str, extra: &[&str]) -> Client {
    let mut args = vec!["--knowledge-server", knowledge];
    args.extend_from_slice(extra);
    let command = tokio::process::Command::new(BIN).configure(|c| {
        c.args(&args);
        for var in [
            "CLUSTER",
            "REGION",
            "AWS_REGION",
            "AWS_PROFILE",
            "DSQL_RULES",
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
        ] {
            c.env_remove(var);
        }
        c.env("RUST_LOG", "error");
    });
    ().serve(TokioChildProcess::new(command).unwrap())
        .await
        .expect("the server starts")
}

/// A tool's result: whether it is an error, its one text, and that text as JSON (if it is).
struct Answer {
    is_error: bool,
    text: String,
    json: Value,
}

async fn call(client: &Client, tool: &str, args: Value) -> Answer {
    let Value::Object(args) = args else {
        panic!("arguments are an object")
    };
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
        .await
        .expect("tools/call answers");
    let result = serde_json::to_value(&result).unwrap();
    let content = result["content"].as_array().unwrap();
    assert_eq!(content.len(), 1, "{result}");
    let text = content[0]["text"].as_str().unwrap().to_owned();
    Answer {
        is_error: result["isError"].as_bool().unwrap_or(false),
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

fn steering_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/steering"))
}

fn guide_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(steering_dir())
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "md").then(|| p.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------
// The remote contract.

#[tokio::test]
async fn each_tool_posts_the_reference_payload() {
    let ks = KnowledgeServer::start(Reply::Body(
        200,
        r#"{"jsonrpc":"2.0","id":1,"result":{"results":[{"url":"https://docs.example/x","title":"X"}]}}"#.into(),
    ))
    .await;
    let client = spawn(&ks.url, &[]).await;

    let a = call(
        &client,
        "dsql_search_documentation",
        json!({"search_phrase": "async index", "limit": 3}),
    )
    .await;
    assert!(!a.is_error, "{}", a.text);
    assert_eq!(
        a.json,
        json!({"results": [{"url": "https://docs.example/x", "title": "X"}]})
    );
    let seen = ks.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/")
    );
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        seen[0].body,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "dsql_search_documentation",
                          "arguments": {"search_phrase": "async index", "limit": 3}}})
    );

    // Optional arguments travel only when given (null counts as not given).
    call(
        &client,
        "dsql_search_documentation",
        json!({"search_phrase": "x", "limit": null}),
    )
    .await;
    assert_eq!(
        ks.last_body()["params"]["arguments"],
        json!({"search_phrase": "x"})
    );

    call(
        &client,
        "dsql_read_documentation",
        json!({"url": "https://docs.example/p"}),
    )
    .await;
    assert_eq!(
        ks.last_body()["params"],
        json!({"name": "dsql_read_documentation", "arguments": {"url": "https://docs.example/p"}})
    );
    call(
        &client,
        "dsql_read_documentation",
        json!({"url": "https://docs.example/p", "start_index": 100, "max_length": 500}),
    )
    .await;
    assert_eq!(
        ks.last_body()["params"]["arguments"],
        json!({"url": "https://docs.example/p", "start_index": 100, "max_length": 500})
    );

    let a = call(
        &client,
        "dsql_recommend",
        json!({"url": "https://docs.example/p"}),
    )
    .await;
    assert!(!a.is_error);
    assert_eq!(
        ks.last_body()["params"],
        json!({"name": "dsql_recommend", "arguments": {"url": "https://docs.example/p"}})
    );
    assert_eq!(ks.seen().len(), 5);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn empty_result_reads_the_first_text_content_as_json() {
    let ks = KnowledgeServer::start(Reply::Body(
        200,
        r#"{"jsonrpc":"2.0","id":1,"result":{},"content":[{"type":"text","text":"{\"parsed\": [1, 2]}"}]}"#.into(),
    ))
    .await;
    let client = spawn(&ks.url, &[]).await;
    let a = call(&client, "dsql_recommend", json!({"url": "u"})).await;
    assert!(!a.is_error, "{}", a.text);
    assert_eq!(a.json, json!({"parsed": [1, 2]}));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn non_text_content_is_returned_wrapped() {
    let ks = KnowledgeServer::start(Reply::Body(
        200,
        r#"{"jsonrpc":"2.0","id":1,"content":[{"type":"image","data":"AA=="}]}"#.into(),
    ))
    .await;
    let client = spawn(&ks.url, &[]).await;
    let a = call(&client, "dsql_read_documentation", json!({"url": "u"})).await;
    assert_eq!(
        a.json,
        json!({"content": [{"type": "image", "data": "AA=="}]})
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn an_error_object_is_a_tool_error_with_its_message() {
    let ks = KnowledgeServer::start(Reply::Body(
        200,
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown documentation URL"}}"#
            .into(),
    ))
    .await;
    let client = spawn(&ks.url, &[]).await;
    for tool in [
        "dsql_search_documentation",
        "dsql_read_documentation",
        "dsql_recommend",
    ] {
        let a = call(&client, tool, json!({"search_phrase": "x", "url": "u"})).await;
        assert!(a.is_error, "{tool}");
        assert_eq!(
            a.text,
            format!("Error executing tool {tool}: Unknown documentation URL")
        );
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn malformed_json_is_a_clear_error_not_a_fallback() {
    let ks = KnowledgeServer::start(Reply::Body(200, "<html>502 Bad Gateway</html>".into())).await;
    let client = spawn(&ks.url, &[]).await;
    let a = call(
        &client,
        "dsql_search_documentation",
        json!({"search_phrase": "index"}),
    )
    .await;
    assert!(a.is_error);
    assert!(
        a.text.starts_with(
            "Error executing tool dsql_search_documentation: The DSQL knowledge server sent a malformed reply: the body is not JSON"
        ),
        "{}",
        a.text
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn an_http_error_status_is_the_unavailable_message() {
    let ks = KnowledgeServer::start(Reply::Body(503, r#"{"message":"busy"}"#.into())).await;
    let client = spawn(&ks.url, &[]).await;
    for tool in ["dsql_search_documentation", "dsql_recommend"] {
        let a = call(&client, tool, json!({"search_phrase": "index", "url": "u"})).await;
        assert!(a.is_error);
        assert_eq!(
            a.text,
            format!("Error executing tool {tool}: {UNAVAILABLE}")
        );
    }
    client.cancel().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Offline: timeout and unreachable.

#[tokio::test]
async fn a_timeout_falls_back_to_the_bundled_guides() {
    let ks = KnowledgeServer::start(Reply::Sleep(Duration::from_secs(5))).await;
    let client = spawn(&ks.url, &["--knowledge-timeout", "0.5"]).await;
    let started = Instant::now();
    let a = call(
        &client,
        "dsql_search_documentation",
        json!({"search_phrase": "CREATE INDEX ASYNC", "limit": 2}),
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the timeout was not honoured: {took:?}"
    );
    assert!(!a.is_error, "{}", a.text);
    assert_eq!(a.json["source"], "bundled_guides");
    let note = a.json["note"].as_str().unwrap();
    assert!(
        note.starts_with(MARKER) && note.contains("timed out"),
        "{note}"
    );
    let results = a.json["results"].as_array().unwrap();
    assert!(!results.is_empty() && results.len() <= 2, "{results:?}");
    assert_eq!(ks.seen().len(), 1, "the remote server was asked first");

    // Only search has an offline answer; reading a remote page times out plainly.
    let a = call(
        &client,
        "dsql_read_documentation",
        json!({"url": "https://docs.example/p"}),
    )
    .await;
    assert!(a.is_error);
    assert_eq!(
        a.text,
        format!("Error executing tool dsql_read_documentation: {UNAVAILABLE}")
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_cancelled_call_abandons_its_request() {
    let ks = KnowledgeServer::start(Reply::Sleep(Duration::from_secs(20))).await;
    let client = spawn(&ks.url, &[]).await;
    let Value::Object(args) = json!({"url": "https://docs.example/slow"}) else {
        unreachable!()
    };
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(
        CallToolRequestParams::new("dsql_recommend").with_arguments(args),
    ));
    let handle = client
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while ks.seen().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        ks.seen().len(),
        1,
        "the request reached the knowledge server"
    );
    handle.cancel(Some("test".into())).await.unwrap();
    while !ks.seen()[0].abandoned && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        ks.seen()[0].abandoned,
        "the HTTP request was dropped on cancel"
    );
    // The session carries on.
    let a = call(
        &client,
        "dsql_read_documentation",
        json!({"url": format!("dsql://guides/{}", guide_names()[0]), "max_length": 10}),
    )
    .await;
    assert!(!a.is_error, "{}", a.text);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_server_falls_back_and_guides_stay_readable() {
    let client = spawn(&closed_port_url().await, &[]).await;

    let a = call(
        &client,
        "dsql_search_documentation",
        json!({"search_phrase": "optimistic concurrency 40001 retry"}),
    )
    .await;
    assert!(!a.is_error, "{}", a.text);
    assert_eq!(a.json["source"], "bundled_guides");
    assert!(a.json["note"].as_str().unwrap().starts_with(MARKER));
    assert_eq!(
        a.json["search_phrase"],
        "optimistic concurrency 40001 retry"
    );
    let results = a.json["results"].as_array().unwrap();
    assert!(!results.is_empty() && results.len() <= 5);
    let scores: Vec<f64> = results
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "ranked best first: {scores:?}"
    );

    // The top hit's url and start_index read that very section from the binary.
    let top = &results[0];
    let url = top["url"].as_str().unwrap();
    assert!(url.starts_with("dsql://guides/"), "{url}");
    let r = call(
        &client,
        "dsql_read_documentation",
        json!({"url": url, "start_index": top["start_index"], "max_length": 400}),
    )
    .await;
    assert!(!r.is_error, "{}", r.text);
    let name = url.strip_prefix("dsql://guides/").unwrap();
    let on_disk = std::fs::read_to_string(steering_dir().join(format!("{name}.md"))).unwrap();
    let start = top["start_index"].as_u64().unwrap() as usize;
    let expected: String = on_disk.chars().skip(start).take(400).collect();
    assert_eq!(r.json["content"], expected);
    assert!(
        expected.trim_start().starts_with('#'),
        "a section starts at its heading"
    );
    assert_eq!(r.json["total_length"], on_disk.chars().count());
    assert_eq!(r.json["source"], "bundled_guides");

    // A whole guide, paged by the default length; an unknown guide names the known ones.
    let r = call(
        &client,
        "dsql_read_documentation",
        json!({"url": format!("dsql://guides/{name}")}),
    )
    .await;
    assert_eq!(r.json["start_index"], 0);
    assert!(on_disk.starts_with(r.json["content"].as_str().unwrap()));
    let r = call(
        &client,
        "dsql_read_documentation",
        json!({"url": "dsql://guides/no-such-guide"}),
    )
    .await;
    assert!(r.is_error);
    assert!(
        r.text.contains("No bundled guide named \"no-such-guide\""),
        "{}",
        r.text
    );
    assert!(r.text.contains(name));
    let r = call(
        &client,
        "dsql_read_documentation",
        json!({"url": url, "start_index": -1}),
    )
    .await;
    assert!(r.is_error && r.text.contains("start_index"), "{}", r.text);

    // No offline answer for the other remote calls: the reference's message.
    let r = call(
        &client,
        "dsql_recommend",
        json!({"url": "https://docs.example/p"}),
    )
    .await;
    assert!(r.is_error);
    assert_eq!(
        r.text,
        format!("Error executing tool dsql_recommend: {UNAVAILABLE}")
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn arguments_are_validated_like_the_reference() {
    let client = spawn(&closed_port_url().await, &[]).await;
    let a = call(
        &client,
        "dsql_search_documentation",
        json!({"limit": "ten"}),
    )
    .await;
    assert!(a.is_error);
    assert_eq!(
        a.text,
        "Error executing tool dsql_search_documentation: 2 validation errors for dsql_search_documentationArguments\n\
         search_phrase\n  Field required\nlimit\n  Input should be a valid integer"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_tools_are_listed_with_the_reference_schemas() {
    let client = spawn(&closed_port_url().await, &[]).await;
    let tools = client.list_all_tools().await.unwrap();
    let find = |name: &str| {
        let t = tools
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{name} listed"));
        serde_json::to_value(t).unwrap()
    };
    let search = find("dsql_search_documentation");
    assert_eq!(search["inputSchema"]["required"], json!(["search_phrase"]));
    assert_eq!(
        search["inputSchema"]["title"],
        "dsql_search_documentationArguments"
    );
    assert_eq!(
        search["inputSchema"]["properties"]["limit"]["anyOf"],
        json!([{"type": "integer"}, {"type": "null"}])
    );
    assert_eq!(
        search["inputSchema"]["properties"]["limit"]["default"],
        Value::Null
    );
    let read = find("dsql_read_documentation");
    let props: Vec<&String> = read["inputSchema"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(props, ["url", "start_index", "max_length"]);
    assert_eq!(read["inputSchema"]["required"], json!(["url"]));
    let recommend = find("dsql_recommend");
    assert_eq!(recommend["inputSchema"]["required"], json!(["url"]));
    for t in [&search, &read, &recommend] {
        assert!(t.get("outputSchema").is_none(), "{t}");
        assert_eq!(t["annotations"]["readOnlyHint"], true);
        assert_eq!(t["annotations"]["openWorldHint"], true);
    }
    client.cancel().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Resources and prompts.

#[tokio::test]
async fn every_guide_is_a_resource_listed_and_readable() {
    let client = spawn(&closed_port_url().await, &[]).await;
    let listed = client.list_resources(None).await.unwrap().resources;
    let uris: Vec<String> = listed.iter().map(|r| r.uri.clone()).collect();
    let expected: Vec<String> = guide_names()
        .iter()
        .map(|n| format!("dsql://guides/{n}"))
        .collect();
    assert_eq!(uris, expected, "no cluster: guides only");
    for r in &listed {
        assert_eq!(r.mime_type.as_deref(), Some("text/markdown"));
        let read = client
            .read_resource(ReadResourceRequestParams::new(r.uri.clone()))
            .await
            .unwrap();
        let contents = serde_json::to_value(&read.contents).unwrap();
        let on_disk =
            std::fs::read_to_string(steering_dir().join(format!("{}.md", r.name))).unwrap();
        assert_eq!(contents[0]["text"], on_disk);
        assert_eq!(contents[0]["uri"], r.uri.as_str());
        assert_eq!(contents[0]["mimeType"], "text/markdown");
    }
    let err = client
        .read_resource(ReadResourceRequestParams::new(
            "dsql://guides/no-such-guide",
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-guide"), "{err}");
    let err = client
        .read_resource(ReadResourceRequestParams::new(
            "dsql://tables/public/orders",
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Database not configured"), "{err}");

    let templates = client
        .list_resource_templates(None)
        .await
        .unwrap()
        .resource_templates;
    let templates: Vec<&str> = templates.iter().map(|t| t.uri_template.as_str()).collect();
    assert_eq!(templates, ["dsql://guides/{name}"]);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn prompts_are_listed_and_rendered() {
    let client = spawn(&closed_port_url().await, &[]).await;
    let prompts = client.list_prompts(None).await.unwrap().prompts;
    let names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["onboarding", "migration-review"]);
    let review = serde_json::to_value(&prompts[1]).unwrap();
    assert_eq!(
        review["arguments"],
        json!([{"name": "sql", "title": "Migration SQL",
        "description": "The migration to review (one or more SQL statements).", "required": true}])
    );

    let onboarding = client
        .get_prompt(GetPromptRequestParams::new("onboarding"))
        .await
        .unwrap();
    let text = serde_json::to_value(&onboarding.messages).unwrap()[0]["content"]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    for step in [
        "list_tables",
        "describe_table",
        "--allow-writes",
        "CREATE INDEX ASYNC",
        "dsql://guides/",
    ] {
        assert!(text.contains(step), "{step}");
    }

    let mut args = Map::new();
    args.insert("sql".into(), json!("CREATE INDEX idx ON t (a);"));
    let review = client
        .get_prompt(GetPromptRequestParams::new("migration-review").with_arguments(args))
        .await
        .unwrap();
    let messages = serde_json::to_value(&review.messages).unwrap();
    assert_eq!(messages[0]["role"], "user");
    let text = messages[0]["content"]["text"].as_str().unwrap();
    assert!(text.contains("CREATE INDEX idx ON t (a);"));
    assert!(
        text.contains("\"rule\": \"index_async\""),
        "the lint result is in the prompt: {text}"
    );
    assert!(text.contains("dsql_lint"));
    // The review ends in the migration tools: a dry-run plan first, applied on approval.
    assert!(
        text.contains("Call `apply_migration` with a name for it (for example `0007_add_status`), the SQL, and `dry_run: true`"),
        "{text}"
    );
    assert!(text.contains("`-- dsql:batched 1000`"), "{text}");

    let err = client
        .get_prompt(GetPromptRequestParams::new("migration-review"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sql"), "{err}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn tables_are_resources_when_a_cluster_is_configured() {
    let pg = common::shared();
    let schema = common::unique_name("res");
    let db = pg.superuser().await;
    db.batch_execute(&format!(
        "CREATE SCHEMA {schema}; GRANT USAGE ON SCHEMA {schema} TO admin;
         CREATE TABLE {schema}.orders (id uuid PRIMARY KEY, total numeric(10,2) NOT NULL DEFAULT 0);
         CREATE INDEX orders_total ON {schema}.orders (total);
         CREATE TABLE {schema}.\"Order Items\" (id uuid PRIMARY KEY, qty int);"
    ))
    .await
    .unwrap();
    let s = common::McpSession::for_cluster(pg, &["--knowledge-server", &closed_port_url().await])
        .await;

    let listed = s.peer().list_resources(None).await.unwrap().resources;
    let uris: Vec<&str> = listed.iter().map(|r| r.uri.as_str()).collect();
    for name in guide_names() {
        assert!(
            uris.contains(&format!("dsql://guides/{name}").as_str()),
            "{name}"
        );
    }
    let orders = format!("dsql://tables/{schema}/orders");
    let items = format!("dsql://tables/{schema}/Order%20Items");
    assert!(uris.contains(&orders.as_str()), "{uris:?}");
    assert!(uris.contains(&items.as_str()), "{uris:?}");
    assert!(
        !uris
            .iter()
            .any(|u| u.contains("pg_catalog") || u.contains("information_schema"))
    );
    let r = listed.iter().find(|r| r.uri == orders).unwrap();
    assert_eq!(r.mime_type.as_deref(), Some("application/json"));
    assert_eq!(r.name, format!("{schema}.orders"));

    // Reading one gives describe_table's JSON.
    let read = s
        .peer()
        .read_resource(ReadResourceRequestParams::new(orders.clone()))
        .await
        .unwrap();
    let contents = serde_json::to_value(&read.contents).unwrap();
    assert_eq!(contents[0]["mimeType"], "application/json");
    let resource: Value = serde_json::from_str(contents[0]["text"].as_str().unwrap()).unwrap();
    let tool = s
        .call(
            "describe_table",
            json!({"schema": schema, "table_name": "orders"}),
        )
        .await;
    assert_eq!(Some(resource.clone()), tool.structured_content);
    assert_eq!(resource["table"], "orders");
    let columns: Vec<&str> = resource["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["id", "total"]);
    assert!(
        resource["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "orders_total")
    );

    let read = s
        .peer()
        .read_resource(ReadResourceRequestParams::new(items))
        .await
        .unwrap();
    let text = serde_json::to_value(&read.contents).unwrap()[0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains("\"Order Items\""), "{text}");

    let err = s
        .peer()
        .read_resource(ReadResourceRequestParams::new(format!(
            "dsql://tables/{schema}/missing"
        )))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("was not found"), "{err}");

    let templates = s
        .peer()
        .list_resource_templates(None)
        .await
        .unwrap()
        .resource_templates;
    let templates: Vec<&str> = templates.iter().map(|t| t.uri_template.as_str()).collect();
    assert_eq!(
        templates,
        ["dsql://guides/{name}", "dsql://tables/{schema}/{table}"]
    );
    s.close().await;
}

#[tokio::test]
async fn a_cluster_that_is_away_still_lists_the_guides() {
    let nowhere = closed_port_url().await;
    let port = nowhere.rsplit(':').next().unwrap().to_owned();
    let args: Vec<String> = [
        "--cluster_endpoint",
        "localhost",
        "--port",
        &port,
        "--database_user",
        "admin",
        "--region",
        "us-east-1",
        "--knowledge-server",
        &nowhere,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let s = common::McpSession::start(&args, &[]).await;
    let started = Instant::now();
    let listed = s.peer().list_resources(None).await.unwrap().resources;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let uris: Vec<String> = listed.iter().map(|r| r.uri.clone()).collect();
    let expected: Vec<String> = guide_names()
        .iter()
        .map(|n| format!("dsql://guides/{n}"))
        .collect();
    assert_eq!(uris, expected);
    s.close().await;
}

// ---------------------------------------------------------------------------------------
// HTTPS: the production path (rustls on aws-lc-rs, verifying), against a local TLS server
// whose test CA is trusted through SSL_CERT_FILE (read with the OS roots).

/// (CA PEM, server certificate PEM, server key PEM) for 127.0.0.1.
fn test_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "knowledge test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (ca_pem, cert.pem(), key.serialize_pem())
}

/// The ALPN protocol of each completed HTTPS request.
type Negotiated = Arc<Mutex<Vec<Option<Vec<u8>>>>>;

/// A one-thread HTTPS knowledge server answering every request with `body`; returns its
/// URL and the ALPN protocol each connection negotiated.
fn tls_knowledge_server(cert_pem: &str, key_pem: &str, body: &'static str) -> (String, Negotiated) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::{Read, Write};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let alpn = Arc::new(Mutex::new(Vec::new()));
    let seen = alpn.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then a body of Content-Length bytes (the payload is small).
            let complete = |buf: &[u8]| {
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    return false;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                buf.len() >= end + 4 + length
            };
            while !complete(&buf) {
                match tls.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            if !complete(&buf) {
                continue; // the handshake failed (an untrusting client)
            }
            seen.lock()
                .unwrap()
                .push(tls.conn.alpn_protocol().map(<[u8]>::to_vec));
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(response.as_bytes());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (url, alpn)
}

#[tokio::test]
async fn https_is_verified_against_the_trusted_roots() {
    let (ca, cert, key) = test_pki();
    let (url, alpn) = tls_knowledge_server(
        &cert,
        &key,
        r#"{"jsonrpc":"2.0","id":1,"result":{"over":"tls"}}"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();

    // Trusted (the test CA is among the roots): the call goes through, over HTTP/1.1.
    let trusting = tokio::process::Command::new(BIN).configure(|c| {
        c.args(["--knowledge-server", &url]);
        c.env("SSL_CERT_FILE", &ca_file).env("RUST_LOG", "error");
        for var in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
            c.env_remove(var);
        }
    });
    let client = ().serve(TokioChildProcess::new(trusting).unwrap()).await.unwrap();
    let a = call(&client, "dsql_recommend", json!({"url": "u"})).await;
    assert!(!a.is_error, "{}", a.text);
    assert_eq!(a.json, json!({"over": "tls"}));
    assert_eq!(
        alpn.lock().unwrap().as_slice(),
        [Some(b"http/1.1".to_vec())]
    );
    client.cancel().await.unwrap();

    // Not trusted: no answer is taken from that server; search falls back to the guides.
    let client = spawn(&url, &[]).await;
    let a = call(
        &client,
        "dsql_search_documentation",
        json!({"search_phrase": "index"}),
    )
    .await;
    assert!(!a.is_error, "{}", a.text);
    assert_eq!(a.json["source"], "bundled_guides");
    let a = call(&client, "dsql_recommend", json!({"url": "u"})).await;
    assert_eq!(
        a.text,
        format!("Error executing tool dsql_recommend: {UNAVAILABLE}")
    );
    assert_eq!(alpn.lock().unwrap().len(), 1, "no request was completed");
    client.cancel().await.unwrap();
}
