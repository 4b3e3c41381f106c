//! The front door: the process's stdin and stdout, between the MCP client and rmcp.
//!
//! rmcp's own stdio transport drops, without an answer, every line it cannot decode: a line
//! that is not JSON, a request whose JSON serde cannot decode (a lone UTF-16 surrogate escape
//! such as `"\ud800"` in a string, a number outside f64's range such as `1e400`), and a line
//! over its 16 MiB limit. The client then waits for a response that never comes. This
//! module is rmcp's [`Transport`] instead, so every line that could be a request gets an
//! answer:
//!
//! - a line that decodes is handed to rmcp (the same single decode rmcp would do);
//! - a line that is not JSON gets `-32700 Parse error` with `"id": null` (JSON-RPC 2.0);
//! - a line whose `id` can be read but whose message cannot be decoded gets an error with
//!   that id: `-32602 Invalid params` when the method is known and the fault lies in
//!   `params`, `-32600 Invalid request` otherwise (the id is found by [`skim`]);
//! - a line over [`MAX_LINE_BYTES`] is read to its end and discarded without being
//!   buffered (only its first [`HEAD_BYTES`] are kept, to find the id) and gets
//!   `-32600` with that id, or `null`;
//! - a request whose id equals that of a request still in flight gets `-32600` "duplicate
//!   request id" and is not handed to rmcp, so neither response is lost or misattributed;
//! - blank lines are ignored, and so is an undecodable notification (a message with a method
//!   and no id: JSON-RPC forbids answering notifications).
//!
//! Every write to stdout, ours and rmcp's, goes through one [`Output`], one line at a time
//! under one lock, so lines never interleave. Since rmcp hands its outgoing messages to
//! [`Transport::send`] typed, the ids of its responses are read there (no re-parse) to keep
//! the set of requests in flight.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use rmcp::RoleServer;
use rmcp::model::{ClientNotification, JsonRpcMessage, RequestId, ServerResult};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::splice::Splices;

/// The longest line read as a message: rmcp's own limit (16 MiB). The largest legitimate
/// request is far smaller: a database tool takes at most 1,000,000 characters of SQL
/// (at most 6 bytes each once JSON-escaped), and its parameters are bounded by the same
/// cluster limits that bound a transaction.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// How much of an oversized line is kept to look for its id.
pub const HEAD_BYTES: usize = 64 << 10;

/// The standard MCP request methods a client may send to a server: a request for one of
/// these whose params cannot be decoded gets Invalid params, not Invalid request.
pub const MCP_REQUEST_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "completion/complete",
    "logging/setLevel",
    "prompts/get",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "tools/call",
    "tools/list",
];

/// Decoded messages waiting for rmcp. Small: each may hold up to a whole line.
const QUEUE: usize = 4;

type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// The one writer of stdout, and the ids of the requests handed to rmcp and not yet answered.
struct Output {
    writer: tokio::sync::Mutex<Option<Writer>>,
    in_flight: std::sync::Mutex<HashSet<RequestId>>,
}

impl Output {
    /// Writes one line (`line` ends with '\n') and flushes it, whole, under the lock.
    async fn write_line(&self, line: &[u8]) -> std::io::Result<()> {
        self.write_pieces(&[line]).await
    }

    /// Writes one line given in pieces (the last ends with '\n'), whole, under the lock.
    async fn write_pieces(&self, pieces: &[&[u8]]) -> std::io::Result<()> {
        let mut writer = self.writer.lock().await;
        let Some(writer) = writer.as_mut() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "stdout is closed",
            ));
        };
        for piece in pieces {
            writer.write_all(piece).await?;
        }
        writer.flush().await
    }

    /// Writes a JSON-RPC error response of our own.
    async fn answer(&self, id: Value, code: i32, message: &str) -> std::io::Result<()> {
        let response =
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
        let mut line = response.to_string().into_bytes();
        line.push(b'\n');
        self.write_line(&line).await
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<RequestId>> {
        // The set stays consistent even if a holder panicked: each operation is one call.
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// rmcp's transport over the process's stdio (see the module doc).
pub struct FrontDoor {
    incoming: mpsc::Receiver<RxJsonRpcMessage<RoleServer>>,
    output: Arc<Output>,
    reader: tokio::task::JoinHandle<()>,
    /// Cancelled when stdin ends (EOF or a read error): the client's way to shut the server
    /// down under the MCP stdio transport, so calls in flight are stopped and rolled back.
    closed: tokio_util::sync::CancellationToken,
    /// Rendered rows waiting to be written in their answer's place (`splice`).
    splices: Arc<Splices>,
}

impl FrontDoor {
    /// The front door on the process's stdin and stdout (non-blocking pipes where they are
    /// pipes, as rmcp's `stdio_pipes`). Must be called inside the Tokio runtime.
    pub fn stdio() -> FrontDoor {
        let (read, write) = rmcp::transport::stdio_pipes();
        FrontDoor::new(read, write, MAX_LINE_BYTES)
    }

    /// Cancelled once stdin has ended (see the field).
    pub fn closed(&self) -> tokio_util::sync::CancellationToken {
        self.closed.clone()
    }

    /// Where the server leaves rendered rows for this front door to write
    /// (`DsqlServer::with_splices`).
    pub fn splices(&self) -> Arc<Splices> {
        self.splices.clone()
    }

    /// The front door on any byte streams, with `max_line` bytes per line.
    pub fn new<R, W>(read: R, write: W, max_line: usize) -> FrontDoor
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let output = Arc::new(Output {
            writer: tokio::sync::Mutex::new(Some(Box::new(write))),
            in_flight: std::sync::Mutex::new(HashSet::new()),
        });
        let (tx, incoming) = mpsc::channel(QUEUE);
        let closed = tokio_util::sync::CancellationToken::new();
        let on_close = closed.clone();
        let read = read_loop(
            BufReader::with_capacity(64 << 10, read),
            output.clone(),
            tx,
            max_line,
        );
        let reader = tokio::spawn(async move {
            read.await;
            on_close.cancel();
        });
        FrontDoor {
            incoming,
            output,
            reader,
            closed,
            splices: Arc::new(Splices::new()),
        }
    }
}

impl Transport<RoleServer> for FrontDoor {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        // The request leaves the in-flight set as its answer is queued, before it is written:
        // a client that reuses the id as soon as it reads the answer is never refused.
        let answered = match &item {
            JsonRpcMessage::Response(r) => Some(&r.id),
            JsonRpcMessage::Error(e) => e.id.as_ref(),
            _ => None,
        };
        if let Some(id) = answered {
            self.output.in_flight().remove(id);
        }
        let output = self.output.clone();
        let splices = self.splices.clone();
        async move {
            let mut line = serde_json::to_vec(&item).map_err(std::io::Error::other)?;
            line.push(b'\n');
            let structured = match &item {
                JsonRpcMessage::Response(r) => match &r.result {
                    ServerResult::CallToolResult(c) => c.structured_content.as_ref(),
                    _ => None,
                },
                _ => None,
            };
            match splices.place(structured, &line) {
                Some(placed) => output.write_pieces(&placed.pieces(&line)).await,
                None => output.write_line(&line).await,
            }
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleServer>>> + Send {
        // Cancel-safe: the reader task owns every partial line.
        self.incoming.recv()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.reader.abort();
        if let Some(mut writer) = self.output.writer.lock().await.take() {
            let _ = writer.flush().await;
        }
        Ok(())
    }
}

/// How one read of a line ended.
enum LineRead {
    /// A whole line is in the buffer (without its '\n').
    Line,
    /// The line had this many bytes, over the limit; the buffer holds its first bytes.
    Oversized(usize),
    Eof,
}

/// Reads one line into `line` (cleared first), keeping at most `max` bytes; the rest of an
/// oversized line is read and dropped as it arrives. A last line without '\n' is dropped
/// (rmcp's choice: it is an incomplete message).
async fn read_line<R: AsyncRead + Unpin>(
    input: &mut BufReader<R>,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    line.clear();
    let mut total = 0usize;
    loop {
        let buf = input.fill_buf().await?;
        if buf.is_empty() {
            return Ok(LineRead::Eof);
        }
        let (chunk, end) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        let used = chunk.len() + usize::from(end);
        total = total.saturating_add(chunk.len());
        if total <= max {
            line.extend_from_slice(chunk);
        } else if line.len() < HEAD_BYTES {
            let room = HEAD_BYTES - line.len();
            line.extend_from_slice(&chunk[..room.min(chunk.len())]);
        }
        input.consume(used);
        if end {
            if total > max {
                line.truncate(HEAD_BYTES);
                return Ok(LineRead::Oversized(total));
            }
            return Ok(LineRead::Line);
        }
    }
}

/// Reads stdin line by line until EOF (or until rmcp stops listening).
async fn read_loop<R: AsyncRead + Unpin>(
    mut input: BufReader<R>,
    output: Arc<Output>,
    tx: mpsc::Sender<RxJsonRpcMessage<RoleServer>>,
    max: usize,
) {
    let mut line = Vec::new();
    loop {
        let read = match read_line(&mut input, &mut line, max).await {
            Ok(read) => read,
            Err(e) => {
                tracing::error!("cannot read stdin: {e}");
                return;
            }
        };
        let written = match read {
            LineRead::Eof => return,
            LineRead::Oversized(total) => {
                tracing::warn!(bytes = total, limit = max, "request line over the limit");
                let id = skim(&line).id_value(&line);
                let message = format!(
                    "Request too large: {total} bytes on one line, over this server's limit of {max} bytes"
                );
                output.answer(id, -32600, &message).await
            }
            LineRead::Line => match decode(&line) {
                Decoded::Blank => Ok(()),
                Decoded::Message(message) => {
                    if let Some(refused) = admit(&output, &message) {
                        output.answer(refused, -32600, DUPLICATE).await
                    } else if tx.send(message).await.is_err() {
                        return;
                    } else {
                        Ok(())
                    }
                }
                Decoded::Answer { id, code, message } => output.answer(id, code, &message).await,
                Decoded::Drop(why) => {
                    tracing::warn!("dropped an undecodable notification: {why}");
                    Ok(())
                }
            },
        };
        if let Err(e) = written {
            tracing::error!("cannot write stdout: {e}");
            return;
        }
        // One huge line must not pin its buffer for the rest of the session.
        if line.capacity() > (1 << 20) {
            line = Vec::new();
        }
    }
}

const DUPLICATE: &str = "duplicate request id: a request with this id is still in flight";

/// Records a request as in flight. Returns its id (as JSON) if one with the same id already
/// is, so that it is refused; a cancellation takes its request out of the set (MCP: a
/// cancelled request is not answered).
fn admit(output: &Output, message: &RxJsonRpcMessage<RoleServer>) -> Option<Value> {
    match message {
        JsonRpcMessage::Request(request) => {
            if output.in_flight().insert(request.id.clone()) {
                None
            } else {
                Some(serde_json::to_value(&request.id).unwrap_or(Value::Null))
            }
        }
        JsonRpcMessage::Notification(n) => {
            if let ClientNotification::CancelledNotification(c) = &n.notification
                && let Some(id) = &c.params.request_id
            {
                output.in_flight().remove(id);
            }
            None
        }
        _ => None,
    }
}

/// What one line is.
// The message is moved on to rmcp as is; boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Decoded {
    Blank,
    Message(RxJsonRpcMessage<RoleServer>),
    Answer {
        id: Value,
        code: i32,
        message: String,
    },
    Drop(String),
}

/// Decodes one line (rmcp's decoding, with a leading UTF-8 BOM and a trailing '\r' ignored
/// as rmcp does), or says how to answer it.
fn decode(line: &[u8]) -> Decoded {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Decoded::Blank;
    }
    let error = match serde_json::from_slice::<RxJsonRpcMessage<RoleServer>>(line) {
        Ok(message) => return Decoded::Message(message),
        Err(e) => e,
    };
    let skimmed = skim(line);
    let syntax = matches!(
        error.classify(),
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof
    );
    if syntax && !skimmed.complete {
        return Decoded::Answer {
            id: Value::Null,
            code: -32700,
            message: format!("Parse error: {error}"),
        };
    }
    let method = skimmed
        .method
        .clone()
        .and_then(|span| serde_json::from_slice::<String>(&line[span]).ok());
    if skimmed.id.is_none() && method.is_some() {
        return Decoded::Drop(error.to_string());
    }
    let id = skimmed.id_value(line);
    // serde's column is in bytes, and a line holds no newline: it is the error's offset.
    let at = error.column().saturating_sub(1);
    let in_params = skimmed
        .params
        .as_ref()
        .is_some_and(|p| p.start <= at && at <= p.end);
    if let Some(method) = method.filter(|m| MCP_REQUEST_METHODS.contains(&m.as_str()))
        && in_params
    {
        return Decoded::Answer {
            id,
            code: -32602,
            message: format!("Invalid params for {method}: {error}"),
        };
    }
    let message = if syntax {
        format!("Invalid request: {error}")
    } else {
        "Invalid request".to_owned()
    };
    Decoded::Answer {
        id,
        code: -32600,
        message,
    }
}

/// Where the top-level `id`, `method` and `params` of a JSON object sit in a line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Skimmed {
    pub id: Option<std::ops::Range<usize>>,
    pub method: Option<std::ops::Range<usize>>,
    pub params: Option<std::ops::Range<usize>>,
    /// The line is one object, closed, with nothing but whitespace after it.
    pub complete: bool,
}

impl Skimmed {
    /// The id as it should be echoed: a string or an integer, else `null`.
    pub fn id_value(&self, line: &[u8]) -> Value {
        self.id
            .clone()
            .and_then(|span| serde_json::from_slice::<Value>(&line[span]).ok())
            .filter(|v| v.is_string() || v.is_i64() || v.is_u64())
            .unwrap_or(Value::Null)
    }
}

/// Finds the byte ranges of the top-level `"id"`, `"method"` and `"params"` values of the JSON
/// object in `line`, without decoding anything.
///
/// Written by hand because serde_json cannot do this: it rejects the whole text at the first
/// value it cannot decode (a lone surrogate escape, a number out of f64's range, invalid
/// UTF-8 in a string), so the id of such a request is lost with it; and it needs the whole
/// text, while an oversized line is only kept in part. The skimmer only tracks structure:
/// strings (a backslash skips the next byte), nesting, commas and colons. Scalars are not
/// validated, nesting is counted (no recursion, so depth costs nothing), and a line that
/// ends early yields what was found before the end. Keys are compared as written, so a key
/// spelled with escapes (`"\u0069d"`) is not found (serde would read it; such a line only
/// loses its id in the error answer).
pub fn skim(line: &[u8]) -> Skimmed {
    let mut found = Skimmed::default();
    let mut s = Scanner { line, at: 0 };
    s.whitespace();
    if !s.eat(b'{') {
        return found;
    }
    s.whitespace();
    if s.eat(b'}') {
        s.whitespace();
        found.complete = s.at == line.len();
        return found;
    }
    loop {
        s.whitespace();
        let Some(key) = s.string() else {
            return found;
        };
        s.whitespace();
        if !s.eat(b':') {
            return found;
        }
        s.whitespace();
        let start = s.at;
        if !s.value() {
            return found;
        }
        let span = Some(start..s.at);
        let slot = match &line[key.start + 1..key.end - 1] {
            b"id" => &mut found.id,
            b"method" => &mut found.method,
            b"params" => &mut found.params,
            _ => &mut None,
        };
        if slot.is_none() {
            *slot = span;
        }
        s.whitespace();
        if s.eat(b',') {
            continue;
        }
        if s.eat(b'}') {
            s.whitespace();
            found.complete = s.at == line.len();
        }
        return found;
    }
}

struct Scanner<'a> {
    line: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.line.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string starting here; its range including the quotes.
    fn string(&mut self) -> Option<std::ops::Range<usize>> {
        let start = self.at;
        if !self.eat(b'"') {
            return None;
        }
        loop {
            let rest = &self.line[self.at..];
            let i = memchr::memchr2(b'"', b'\\', rest)?;
            if rest[i] == b'"' {
                self.at += i + 1;
                return Some(start..self.at);
            }
            // A backslash escapes the next byte; `\uXXXX` needs nothing more.
            self.at += i + 2;
            if self.at > self.line.len() {
                self.at = self.line.len();
                return None;
            }
        }
    }

    /// Skips one value; false if the line ends or breaks inside it.
    fn value(&mut self) -> bool {
        match self.peek() {
            None => false,
            Some(b'"') => self.string().is_some(),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    match self.peek() {
                        None => return false,
                        Some(b'"') => {
                            if self.string().is_none() {
                                return false;
                            }
                            continue;
                        }
                        Some(b'{' | b'[') => depth += 1,
                        Some(b'}' | b']') => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                return true;
                            }
                        }
                        Some(_) => {}
                    }
                    self.at += 1;
                }
            }
            Some(b',' | b'}' | b']' | b':') => false,
            Some(_) => {
                // A scalar (number, true, false, null, or garbage): up to a delimiter.
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b':' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.at += 1;
                }
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<'a>(line: &'a str, span: &Option<std::ops::Range<usize>>) -> Option<&'a str> {
        span.clone().map(|s| &line[s])
    }

    #[test]
    fn skims_id_method_and_params_wherever_they_are() {
        let line = r#" {"params": {"a": [1, {"id": 9}], "s": "x\"}"}, "method":"tools/call" , "id": 1e400, "jsonrpc": "2.0"} "#;
        let s = skim(line.as_bytes());
        assert_eq!(text(line, &s.id), Some("1e400"));
        assert_eq!(text(line, &s.method), Some(r#""tools/call""#));
        assert_eq!(
            text(line, &s.params),
            Some(r#"{"a": [1, {"id": 9}], "s": "x\"}"}"#)
        );
        assert!(s.complete);
        assert_eq!(s.id_value(line.as_bytes()), Value::Null);
    }

    #[test]
    fn a_lone_surrogate_does_not_hide_the_id() {
        let line =
            r#"{"jsonrpc":"2.0","id":"a\ud800","method":"ping","params":{"x":"\ud800"},"id":2}"#;
        let s = skim(line.as_bytes());
        // The first `id` wins; its value cannot be decoded, so the answer's id is null.
        assert_eq!(text(line, &s.id), Some(r#""a\ud800""#));
        assert_eq!(s.id_value(line.as_bytes()), Value::Null);
        let line = r#"{"id": 7, "method": "ping", "params": {"x": "\ud800"}}"#;
        assert_eq!(skim(line.as_bytes()).id_value(line.as_bytes()), json!(7));
    }

    #[test]
    fn incomplete_and_non_object_lines() {
        for (line, complete, id) in [
            (r#"{"id": 3, "method": "ping""#, false, Some("3")),
            (r#"{"id": 3,"#, false, Some("3")),
            (r#"{"id""#, false, None),
            (r#"{not json"#, false, None),
            (r#"[1, 2]"#, false, None),
            (r#""a string""#, false, None),
            (r#"{} x"#, false, None),
            (r#"{}"#, true, None),
            (r#"{"id": "x\"#, false, None),
            (r#"{"id": 4} {"#, false, Some("4")),
        ] {
            let s = skim(line.as_bytes());
            assert_eq!(s.complete, complete, "{line}");
            assert_eq!(text(line, &s.id), id, "{line}");
        }
    }

    #[test]
    fn deep_nesting_costs_no_stack() {
        let line = format!(
            r#"{{"params": {}{}, "id": 5}}"#,
            "[".repeat(1_000_000),
            "]".repeat(1_000_000)
        );
        let s = skim(line.as_bytes());
        assert_eq!(s.id_value(line.as_bytes()), json!(5));
        assert!(s.complete);
    }

    fn answer(line: &str) -> (Value, i32, String) {
        match decode(line.as_bytes()) {
            Decoded::Answer { id, code, message } => (id, code, message),
            Decoded::Message(_) => panic!("decoded: {line}"),
            Decoded::Blank => panic!("blank: {line}"),
            Decoded::Drop(why) => panic!("dropped ({why}): {line}"),
        }
    }

    #[test]
    fn classifies_lines_rmcp_cannot_decode() {
        assert!(matches!(decode(b"  \t\r"), Decoded::Blank));
        assert!(matches!(
            decode(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Decoded::Message(_)
        ));
        let (id, code, message) = answer("{not json");
        assert_eq!((id, code), (Value::Null, -32700));
        assert_eq!(
            message,
            "Parse error: key must be a string at line 1 column 2"
        );
        let (id, code, message) = answer(
            r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"q","arguments":{"x":1e400}}}"#,
        );
        assert_eq!((id, code), (json!(8), -32602));
        assert_eq!(
            message,
            "Invalid params for tools/call: number out of range at line 1 column 89"
        );
        // A fault outside params, or an unknown method: Invalid request.
        let (id, code, _) = answer(r#"{"jsonrpc":"2.0","id":"k","method":"x/y","params":[1e400]}"#);
        assert_eq!((id, code), (json!("k"), -32600));
        let (id, code, message) = answer(r#"{"jsonrpc":"2.0","id":3,"method":42}"#);
        assert_eq!(
            (id, code, message.as_str()),
            (json!(3), -32600, "Invalid request")
        );
        assert!(matches!(
            decode(br#"{"jsonrpc":"2.0","method":"notifications/x","params":{"a":"\ud800"}}"#),
            Decoded::Drop(_)
        ));
    }

    /// A row tool's answer written through the splice is byte for byte the answer rmcp
    /// would have serialized from values (the HTTP path), cut or not.
    #[tokio::test]
    async fn spliced_rows_are_the_same_line_as_serialized_rows() {
        use crate::executor::Truncation;
        use crate::server::shape;
        use crate::tools::Output;
        use crate::value::render::RowRenderer;
        use rmcp::model::{NumberOrString, ServerJsonRpcMessage};

        let rows = || {
            let mut r = RowRenderer::with_columns(["id", "note"]);
            r.push_values(&[Value::from(1), Value::from("a \"quoted\"\nline")]);
            r.push_values(&[Value::from(2), json!({"nested": [true, null]})]);
            r.rows
        };
        for truncated in [None, Some(Truncation::Rows(2))] {
            let (read, _keep) = tokio::io::duplex(64);
            let (write, mut out) = tokio::io::duplex(1 << 16);
            let mut door = FrontDoor::new(read, write, 1 << 20);
            let id = RequestId::from(NumberOrString::Number(7));
            let spliced = shape(
                Output::Rows {
                    rows: rows(),
                    truncated: truncated.clone(),
                    total_rows: 5,
                },
                Some(&door.splices()),
                crate::config::TextFormat::Pretty,
            );
            let plain = shape(
                Output::Rows {
                    rows: rows(),
                    truncated: truncated.clone(),
                    total_rows: 5,
                },
                None,
                crate::config::TextFormat::Pretty,
            );
            assert!(
                spliced.content.len() < plain.content.len(),
                "markers stand for the rows"
            );
            door.send(ServerJsonRpcMessage::response(
                ServerResult::CallToolResult(spliced),
                id.clone(),
            ))
            .await
            .unwrap();
            let mut expected = serde_json::to_vec(&ServerJsonRpcMessage::response(
                ServerResult::CallToolResult(plain),
                id,
            ))
            .unwrap();
            expected.push(b'\n');
            let mut got = vec![0u8; expected.len()];
            tokio::io::AsyncReadExt::read_exact(&mut out, &mut got)
                .await
                .unwrap();
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(expected).unwrap(),
                "truncated: {truncated:?}"
            );
        }
    }
}
