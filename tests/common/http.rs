//! `HttpServer`: the real server binary with `--transport http` on a free loopback port,
//! reached by rmcp's real Streamable HTTP client (either protocol era) or by raw HTTP
//! requests for what a client library would hide (status codes, headers).

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

use super::mcp::{server_binary, server_env};

/// The tests' HTTP client. reqwest is built without a TLS provider of its own (the
/// product hands it one), so the process default is installed once here.
pub fn web() -> reqwest::Client {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
    reqwest::Client::new()
}

/// One running HTTP server process.
pub struct HttpServer {
    child: tokio::process::Child,
    stderr_path: PathBuf,
    _home: tempfile::TempDir,
    /// `http://127.0.0.1:PORT` (no path).
    pub base: String,
}

/// The MCP protocol era a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Era {
    /// 2025-11-25: `initialize`, then a session (`Mcp-Session-Id`).
    Sessions,
    /// 2026-07-28: `server/discover`, then self-contained stateless requests.
    Stateless,
}

impl HttpServer {
    /// Starts the binary with `--transport http --listen 127.0.0.1:0` and `args`, and waits
    /// (at most 30 s) for the line that says where it listens.
    pub async fn start(args: &[String]) -> HttpServer {
        let (home, env) = server_env(&[]);
        let stderr_path = home.path().join("server-stderr.log");
        let stderr_file = std::fs::File::create(&stderr_path).unwrap();
        let mut cmd = tokio::process::Command::new(server_binary());
        cmd.args(["--transport", "http", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_clear()
            .envs(env)
            .current_dir(home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr_file)
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn the server binary");
        let deadline = Instant::now() + Duration::from_secs(30);
        let base = loop {
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            if let Some(at) = log.find("serving MCP over Streamable HTTP address=") {
                let rest = &log[at + "serving MCP over Streamable HTTP address=".len()..];
                let addr = rest.split_whitespace().next().unwrap();
                break format!("http://{addr}");
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the server exited ({status}) before listening:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "the server never listened:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        HttpServer {
            child,
            stderr_path,
            _home: home,
            base,
        }
    }

    /// The MCP endpoint.
    pub fn url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    /// An rmcp client of `era` with `Authorization: Bearer <token>` (none when `None`).
    pub async fn client(
        &self,
        era: Era,
        token: Option<&str>,
    ) -> Result<RunningService<RoleClient, ClientConfig>, String> {
        let mut config = StreamableHttpClientTransportConfig::with_uri(self.url());
        if let Some(token) = token {
            // rmcp's client adds the "Bearer " scheme itself.
            config = config.auth_header(token);
        }
        let transport = StreamableHttpClientTransport::with_client(web(), config);
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("http-test", "1.0"),
        );
        let served = match era {
            Era::Sessions => {
                let info = info.with_protocol_version(ProtocolVersion::V_2025_11_25);
                tokio::time::timeout(Duration::from_secs(20), info.serve(transport)).await
            }
            Era::Stateless => {
                let mode = ClientLifecycleMode::Discover {
                    preferred_versions: vec![ProtocolVersion::LATEST],
                };
                tokio::time::timeout(
                    Duration::from_secs(20),
                    info.serve_with_lifecycle(transport, mode),
                )
                .await
            }
        };
        match served {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(format!("{e}")),
            Err(_) => Err("the client did not start within 20 s".into()),
        }
    }

    /// A raw POST to `/mcp` with `headers`; the status, the headers and the body's text.
    pub async fn post(&self, body: &str, headers: &[(&str, &str)]) -> Raw {
        let mut request = web()
            .post(self.url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_owned());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("the server answers");
        Raw::from(response).await
    }

    /// A raw GET of `path` (below the base URL).
    pub async fn get(&self, path: &str) -> Raw {
        let response = web()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the server answers");
        Raw::from(response).await
    }

    /// Sends `signal` and waits (at most `timeout`) for the process to exit.
    pub async fn signal_and_wait(&mut self, signal: i32, timeout: Duration) -> ExitStatus {
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("no exit within {timeout:?}:\n{}", self.stderr()))
            .unwrap()
    }
}

/// A response as raw HTTP.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Raw {
    async fn from(response: reqwest::Response) -> Raw {
        Raw {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap_or_default(),
        }
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    /// The body as JSON: the document itself, or the last `data:` event of an SSE stream.
    pub fn json(&self) -> Value {
        if let Ok(v) = serde_json::from_str(&self.body) {
            return v;
        }
        let last = self
            .body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .rfind(|d| !d.is_empty())
            .unwrap_or_else(|| panic!("no JSON in {:?}", self.body));
        serde_json::from_str(last).unwrap()
    }
}

/// A JSON-RPC `initialize` of the sessions era, as text.
pub fn initialize_body() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"}}})
    .to_string()
}

/// The headers and body of a stateless (2026-07-28) `tools/call`.
pub fn stateless_call(
    id: u64,
    tool: &str,
    arguments: Value,
) -> (String, Vec<(&'static str, String)>) {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": tool, "arguments": arguments,
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}});
    let headers = vec![
        ("mcp-protocol-version", "2026-07-28".to_owned()),
        ("mcp-method", "tools/call".to_owned()),
        ("mcp-name", tool.to_owned()),
    ];
    (body.to_string(), headers)
}
