//! Documentation knowledge: the remote knowledge server, and the guides bundled in the binary.
//!
//! The reference server answers `dsql_search_documentation`, `dsql_read_documentation` and
//! `dsql_recommend` by forwarding each call, as one JSON-RPC `tools/call` POST, to a remote
//! knowledge server. This module keeps that contract (same payload, same reading of the
//! reply, same "currently unavailable" message) and adds what the reference lacks: when the
//! server cannot be reached at all, a search runs over the steering guides compiled into
//! the binary ([`guides`], ranked by [`search`]), so an agent offline still gets an answer.
//!
//! It also holds the MCP resources ([`resources`]: the guides, and table descriptions when a
//! cluster is configured) and prompts ([`prompts`]), which are built from the same guides.

pub mod guides;
pub mod prompts;
pub mod resources;
pub mod search;

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Map, Value, json};

/// The reference's message for any transport failure.
pub const UNAVAILABLE: &str =
    "The DSQL knowledge server is currently unavailable. Please try again later.";

/// The `source` of an answer that comes from the guides compiled into the binary.
pub const BUNDLED_SOURCE: &str = "bundled_guides";
/// How a fallback answer starts its note, so neither agent nor user mistakes it for the
/// online documentation.
pub const BUNDLED_MARKER: &str = "Answer from the bundled guides";
const DEFAULT_BUNDLED_LIMIT: usize = 5;
const MAX_BUNDLED_LIMIT: i64 = 50;

/// What the reference says when an error object carries no message.
const UNKNOWN_REMOTE_ERROR: &str = "Unknown error from knowledge server";

/// Why a knowledge-server call gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KnowledgeError {
    /// Nothing came back: the connection failed or the timeout ran out. The reason is
    /// for the log and for the fallback's note; the agent sees the reference's message.
    #[error("{UNAVAILABLE}")]
    Unreachable(String),
    /// The server answered, but not with a usable HTTP reply (an error status, a redirect,
    /// a body cut short).
    #[error("{UNAVAILABLE}")]
    Unavailable(String),
    /// The reply carried a JSON-RPC error object: its message, as the reference raises it.
    #[error("{0}")]
    Remote(String),
    /// The MCP client cancelled the call before the reply came.
    #[error("The call was cancelled by the client.")]
    Cancelled,
    /// The reply could not be read as the reference reads it.
    #[error("The DSQL knowledge server sent a malformed reply: {0}")]
    Malformed(String),
}

/// One knowledge server, as configured by `--knowledge-server` and `--knowledge-timeout`.
#[derive(Debug, Clone)]
pub struct KnowledgeClient {
    url: String,
    timeout: Duration,
}

impl KnowledgeClient {
    pub fn new(url: impl Into<String>, timeout: Duration) -> KnowledgeClient {
        KnowledgeClient {
            url: url.into(),
            timeout,
        }
    }

    /// Calls the remote tool `tool` with `arguments` and returns what the reference would.
    pub async fn call(
        &self,
        tool: &str,
        arguments: Map<String, Value>,
    ) -> Result<Value, KnowledgeError> {
        let http = http_client().map_err(KnowledgeError::Unavailable)?;
        let sent = http
            .post(&self.url)
            .timeout(self.timeout)
            .json(&payload(tool, arguments))
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return Err(transport_error(tool, &e)),
        };
        let status = response.status();
        if !status.is_success() {
            tracing::warn!(tool, %status, "knowledge server answered with an error status");
            return Err(KnowledgeError::Unavailable(format!("HTTP status {status}")));
        }
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => return Err(transport_error(tool, &e)),
        };
        interpret(&body)
    }
}

/// What `dsql_search_documentation` answers, from the bundled guides, when the knowledge
/// server cannot be reached. `reason` says why (for the note).
pub fn search_bundled(search_phrase: &str, limit: Option<i64>, reason: &str) -> Value {
    let limit = limit.map_or(DEFAULT_BUNDLED_LIMIT, |l| {
        l.clamp(1, MAX_BUNDLED_LIMIT) as usize
    });
    let results: Vec<Value> = search::Index::bundled()
        .search(search_phrase, limit)
        .into_iter()
        .map(|hit| {
            let guide = guides::get(hit.section.guide).expect("sections come from bundled guides");
            json!({
                "url": guide.uri(),
                "title": guide.title(),
                "section": hit.section.heading(),
                "start_index": hit.section.start_index,
                "score": (hit.score * 1000.0).round() / 1000.0,
                "snippet": hit.snippet,
            })
        })
        .collect();
    let note = format!(
        "{BUNDLED_MARKER}: the DSQL knowledge server could not be reached ({reason}), so these results \
         come from the steering guides bundled with this server, not from the online Aurora DSQL \
         documentation. Read a result with dsql_read_documentation, passing its url and start_index."
    );
    json!({
        "source": BUNDLED_SOURCE,
        "note": note,
        "search_phrase": search_phrase,
        "results": results,
    })
}

/// What `dsql_read_documentation` answers for a bundled guide's URI.
pub fn read_bundled(
    uri: &str,
    start_index: Option<i64>,
    max_length: Option<i64>,
) -> Result<Value, String> {
    let name = guides::name_of_uri(uri).unwrap_or_default();
    let guide = guides::get(name).ok_or_else(|| {
        format!(
            "No bundled guide named \"{name}\". Bundled guides: {}",
            guides::names()
        )
    })?;
    let start = match start_index {
        None => 0,
        Some(i) => usize::try_from(i).map_err(|_| "start_index must be 0 or more".to_owned())?,
    };
    let max = match max_length {
        None => guides::DEFAULT_MAX_LENGTH,
        Some(m) if m > 0 => usize::try_from(m).unwrap_or(usize::MAX),
        Some(_) => return Err("max_length must be 1 or more".to_owned()),
    };
    let slice = guides::slice(guide.text, start, max);
    Ok(json!({
        "source": BUNDLED_SOURCE,
        "url": guide.uri(),
        "title": guide.title(),
        "content": slice.content,
        "start_index": slice.start_index,
        "total_length": slice.total_length,
        "next_start_index": slice.next_start_index,
    }))
}

/// The JSON-RPC request the reference sends: `tools/call`, id 1, no `initialize` first.
pub fn payload(tool: &str, arguments: Map<String, Value>) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    })
}

/// Reads a reply body the way the reference does:
/// an `error` member fails with its message; otherwise a non-empty `result` is the answer;
/// otherwise the first `content` block, when it is text, is parsed as JSON; otherwise the
/// answer is `{"content": <content>}`.
pub fn interpret(body: &[u8]) -> Result<Value, KnowledgeError> {
    let reply: Value = serde_json::from_slice(body)
        .map_err(|e| KnowledgeError::Malformed(format!("the body is not JSON ({e})")))?;
    let Value::Object(mut reply) = reply else {
        return Err(KnowledgeError::Malformed(
            "expected a JSON-RPC response object".into(),
        ));
    };
    // `"error": null` is read as "no error" (some servers send it next to a result).
    match reply.remove("error") {
        None | Some(Value::Null) => {}
        Some(Value::Object(error)) => {
            let message = match error.get("message") {
                Some(Value::String(m)) => m.clone(),
                None | Some(Value::Null) => UNKNOWN_REMOTE_ERROR.to_owned(),
                Some(other) => other.to_string(),
            };
            return Err(KnowledgeError::Remote(message));
        }
        Some(Value::String(message)) => return Err(KnowledgeError::Remote(message)),
        Some(other) => return Err(KnowledgeError::Remote(other.to_string())),
    }
    match reply.remove("result") {
        Some(result) if !is_empty(&result) => return Ok(result),
        _ => {}
    }
    let content = reply.remove("content").unwrap_or(Value::Array(Vec::new()));
    if let Some(Value::String(text)) = content
        .as_array()
        .and_then(|blocks| blocks.first())
        .filter(|first| first.get("type").and_then(Value::as_str) == Some("text"))
        .and_then(|first| first.get("text"))
    {
        return serde_json::from_str(text)
            .map_err(|e| KnowledgeError::Malformed(format!("its text content is not JSON ({e})")));
    }
    Ok(json!({ "content": content }))
}

/// Python's falsiness, which decides whether the reference looks past `result`.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn transport_error(tool: &str, e: &reqwest::Error) -> KnowledgeError {
    if e.is_timeout() {
        tracing::warn!(tool, "knowledge server timed out");
        KnowledgeError::Unreachable("the request timed out".into())
    } else if e.is_connect() {
        tracing::warn!(tool, error = %e, "knowledge server cannot be reached");
        KnowledgeError::Unreachable("the connection failed".into())
    } else {
        tracing::warn!(tool, error = %e, "knowledge server request failed");
        KnowledgeError::Unavailable(e.to_string())
    }
}

/// The process's one HTTP client, built on first use.
///
/// Its TLS is the database's rustls configuration (aws-lc-rs provider, webpki and OS
/// roots, always verifying), so the binary carries one crypto provider and one idea of
/// which roots to trust. The URL and timeout travel with each request, so one client
/// serves any configuration. Redirects are not followed (the reference does not follow
/// them either, and one could leave https).
pub(crate) fn http_client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let mut tls = crate::connection::tls::client_config(None).map_err(|e| e.to_string())?;
            tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!(
                    "aurora-dsql-mcp-server/",
                    env!("CARGO_PKG_VERSION")
                ))
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Value {
        interpret(body.as_bytes()).unwrap()
    }

    fn err(body: &str) -> KnowledgeError {
        interpret(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn payload_is_a_tools_call_with_id_1() {
        let mut args = Map::new();
        args.insert("search_phrase".into(), json!("async index"));
        assert_eq!(
            payload("dsql_search_documentation", args),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "dsql_search_documentation", "arguments": {"search_phrase": "async index"}}})
        );
    }

    #[test]
    fn result_wins_when_not_empty() {
        assert_eq!(
            ok(r#"{"jsonrpc":"2.0","id":1,"result":{"data":"x"}}"#),
            json!({"data": "x"})
        );
        assert_eq!(ok(r#"{"result":[1],"content":[]}"#), json!([1]));
    }

    #[test]
    fn empty_result_falls_through_to_content_text_as_json() {
        for result in [
            "",
            r#","result":{}"#,
            r#","result":null"#,
            r#","result":[]"#,
            r#","result":"""#,
        ] {
            let body = format!(
                r#"{{"id":1{result},"content":[{{"type":"text","text":"{{\"parsed\":\"data\"}}"}}]}}"#
            );
            assert_eq!(ok(&body), json!({"parsed": "data"}), "{body}");
        }
    }

    #[test]
    fn non_text_or_missing_content_is_wrapped() {
        assert_eq!(
            ok(r#"{"content":[{"type":"image","data":"AA=="}]}"#),
            json!({"content": [{"type": "image", "data": "AA=="}]})
        );
        assert_eq!(ok(r#"{"content":[]}"#), json!({"content": []}));
        assert_eq!(ok(r#"{"jsonrpc":"2.0","id":1}"#), json!({"content": []}));
    }

    #[test]
    fn error_object_gives_its_message() {
        assert_eq!(
            err(r#"{"error":{"code":-32000,"message":"Server error"}}"#),
            KnowledgeError::Remote("Server error".into())
        );
        assert_eq!(
            err(r#"{"error":{"code":-32000}}"#),
            KnowledgeError::Remote(UNKNOWN_REMOTE_ERROR.into())
        );
        assert_eq!(
            err(r#"{"error":"plain"}"#),
            KnowledgeError::Remote("plain".into())
        );
        // A null error is no error.
        assert_eq!(ok(r#"{"error":null,"result":{"a":1}}"#), json!({"a": 1}));
    }

    #[test]
    fn malformed_replies_say_so() {
        let e = err("<html>gateway</html>");
        assert!(matches!(e, KnowledgeError::Malformed(_)));
        assert!(
            e.to_string().starts_with(
                "The DSQL knowledge server sent a malformed reply: the body is not JSON"
            ),
            "{e}"
        );
        assert!(matches!(err("[1,2]"), KnowledgeError::Malformed(_)));
        let e = err(r#"{"content":[{"type":"text","text":"not json"}]}"#);
        assert!(e.to_string().contains("text content is not JSON"), "{e}");
    }

    #[test]
    fn transport_failures_read_as_the_reference_message() {
        assert_eq!(
            KnowledgeError::Unreachable("x".into()).to_string(),
            UNAVAILABLE
        );
        assert_eq!(
            KnowledgeError::Unavailable("x".into()).to_string(),
            UNAVAILABLE
        );
    }
}
