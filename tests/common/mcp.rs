//! `McpSession`: the real server binary spawned over stdio and driven by rmcp's real MCP client,
//! with a clean environment (fake AWS credentials, no network credential sources), its stderr
//! captured to a file, and every `notifications/message` log recorded for assertions.

// rmcp 3.11 marks MCP logging deprecated (SEP-2577), but protocol versions up to 2025-11-25
// still carry it and the server uses it: recording it is the point here.
#![allow(deprecated)]

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig,
    ClientRequest, Implementation, LoggingMessageNotificationParam, ProgressNotificationParam,
    ProgressToken, ServerResult, Tool,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RunningService};
use rmcp::{ClientHandler, Peer, RoleClient, ServiceError, ServiceExt};
use serde_json::Value;

use super::pg::PgCluster;
use super::{FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY};

const INIT_TIMEOUT: Duration = Duration::from_secs(20);
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Path of the server binary under test.
pub fn server_binary() -> &'static str {
    env!("CARGO_BIN_EXE_aurora-dsql-mcp-server")
}

/// Server arguments pointing at `pg`: `--cluster_endpoint localhost --port <p> --ssl-root-cert
/// <ca> --database_user admin --region us-east-1`, then `extra`.
pub fn cluster_args(pg: &PgCluster, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--cluster_endpoint".into(),
        "localhost".into(),
        "--port".into(),
        pg.port().to_string(),
        "--ssl-root-cert".into(),
        pg.ca_path().display().to_string(),
        "--database_user".into(),
        "admin".into(),
        "--region".into(),
        "us-east-1".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A fresh HOME plus the environment every server process gets: `env_clear()`, then PATH, HOME,
/// fake static AWS credentials, IMDS disabled, AWS config/credentials files that do not exist,
/// RUST_BACKTRACE=1, then `extra_env` (which may override any of these).
pub(crate) fn server_env(extra_env: &[(&str, &str)]) -> (tempfile::TempDir, Vec<(String, String)>) {
    let home = tempfile::Builder::new()
        .prefix("dsql-harness-home-")
        .tempdir()
        .expect("temp HOME");
    let h = home.path();
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        ),
        ("HOME".into(), h.display().to_string()),
        ("AWS_ACCESS_KEY_ID".into(), FAKE_ACCESS_KEY_ID.into()),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            FAKE_SECRET_ACCESS_KEY.into(),
        ),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        (
            "AWS_CONFIG_FILE".into(),
            h.join(".aws/no-such-config").display().to_string(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            h.join(".aws/no-such-credentials").display().to_string(),
        ),
        ("RUST_BACKTRACE".into(), "1".into()),
    ];
    for (k, v) in extra_env {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    (home, env)
}

/// Records what the server pushes to the client.
#[derive(Clone, Default)]
pub struct Recorder {
    logs: Arc<Mutex<Vec<LoggingMessageNotificationParam>>>,
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
}

impl Recorder {
    fn logs(&self) -> Vec<LoggingMessageNotificationParam> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn progress(&self) -> Vec<ProgressNotificationParam> {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ClientHandler for Recorder {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("aurora-dsql-test-harness", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(params);
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(params);
    }
}

/// One running server process with an initialized MCP client session over its stdio.
pub struct McpSession {
    client: RunningService<RoleClient, Recorder>,
    recorder: Recorder,
    child: tokio::process::Child,
    stderr_path: PathBuf,
    home: tempfile::TempDir,
}

impl McpSession {
    /// Spawn the server binary with `args` and the clean environment plus `extra_env`, and
    /// complete the MCP `initialize` handshake. Panics (showing the server's stderr) if the
    /// handshake fails or takes more than 20 s.
    pub async fn start(args: &[String], extra_env: &[(&str, &str)]) -> McpSession {
        let (home, env) = server_env(extra_env);
        let stderr_path = home.path().join("server-stderr.log");
        let stderr_file = std::fs::File::create(&stderr_path).expect("create stderr file");
        let mut cmd = tokio::process::Command::new(server_binary());
        cmd.args(args)
            .env_clear()
            .envs(env)
            .current_dir(home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr_file)
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn the server binary");
        let stdout = child.stdout.take().expect("child stdout");
        let stdin = child.stdin.take().expect("child stdin");
        let recorder = Recorder::default();
        let served =
            tokio::time::timeout(INIT_TIMEOUT, recorder.clone().serve((stdout, stdin))).await;
        let client = match served {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!(
                "MCP initialize failed: {e:?}\nserver stderr:\n{}",
                read_lossy(&stderr_path)
            ),
            Err(_) => panic!(
                "MCP initialize timed out after {INIT_TIMEOUT:?}\nserver stderr:\n{}",
                read_lossy(&stderr_path)
            ),
        };
        McpSession {
            client,
            recorder,
            child,
            stderr_path,
            home,
        }
    }

    /// Start a server pointed at `pg` (see [`cluster_args`]) with `extra_args` appended.
    pub async fn for_cluster(pg: &PgCluster, extra_args: &[&str]) -> McpSession {
        McpSession::start(&cluster_args(pg, extra_args), &[]).await
    }

    /// Same as [`McpSession::for_cluster`] with extra environment variables.
    pub async fn for_cluster_with_env(
        pg: &PgCluster,
        extra_args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> McpSession {
        McpSession::start(&cluster_args(pg, extra_args), extra_env).await
    }

    /// `tools/call`. Returns the result even when it has `isError: true`; panics only on
    /// protocol/transport errors or after 60 s.
    pub async fn call(&self, name: &str, args: Value) -> CallToolResult {
        match tokio::time::timeout(CALL_TIMEOUT, self.call_raw(name, args)).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => panic!(
                "tools/call {name} failed at protocol level: {e:?}\nserver stderr:\n{}",
                self.stderr()
            ),
            Err(_) => panic!(
                "tools/call {name} timed out after {CALL_TIMEOUT:?}\nserver stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// `tools/call` returning protocol errors (unknown tool, invalid params...) to the caller.
    /// `args` must be a JSON object, or `null` for no arguments.
    pub async fn call_raw(&self, name: &str, args: Value) -> Result<CallToolResult, ServiceError> {
        let mut params = CallToolRequestParams::new(name.to_string());
        match args {
            Value::Null => {}
            Value::Object(map) => params = params.with_arguments(map),
            other => panic!("tool arguments must be a JSON object or null, got {other}"),
        }
        self.client.call_tool(params).await
    }

    /// Every `notifications/progress` received so far, in order. rmcp's client puts a
    /// `progressToken` in the `_meta` of every request it sends, so every call may get some.
    pub fn all_progress(&self) -> Vec<ProgressNotificationParam> {
        self.recorder.progress()
    }

    /// `tools/call`, with the progress token rmcp's client puts in every request's `_meta`
    /// (it sets one on each request, overriding any given), so the caller can pick out this
    /// call's progress notifications ([`McpSession::progress`]). Panics like
    /// [`McpSession::call`].
    pub async fn call_tracked(&self, name: &str, args: Value) -> (CallToolResult, ProgressToken) {
        let mut params = CallToolRequestParams::new(name.to_string());
        if let Value::Object(map) = args {
            params = params.with_arguments(map);
        }
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let handle = self
            .client
            .peer()
            .send_request_with_option(request, PeerRequestOptions::default())
            .await
            .unwrap_or_else(|e| panic!("tools/call {name} could not be sent: {e:?}"));
        let token = handle.progress_token.clone();
        match tokio::time::timeout(CALL_TIMEOUT, handle.await_response()).await {
            Ok(Ok(ServerResult::CallToolResult(result))) => (result, token),
            Ok(other) => panic!(
                "tools/call {name}: unexpected answer {other:?}\nserver stderr:\n{}",
                self.stderr()
            ),
            Err(_) => panic!(
                "tools/call {name} timed out after {CALL_TIMEOUT:?}\nserver stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// The progress notifications received for `token`, ordered by their progress value
    /// (rmcp hands each notification to the handler in a task of its own, so they may be
    /// recorded out of order; the wire order is tested over a raw process). Waits up to
    /// 5 s for `at_least` of them, then 200 ms more for any that should not come.
    pub async fn progress(
        &self,
        token: &ProgressToken,
        at_least: usize,
    ) -> Vec<ProgressNotificationParam> {
        let mine = || -> Vec<ProgressNotificationParam> {
            self.recorder
                .progress()
                .into_iter()
                .filter(|p| &p.progress_token == token)
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while mine().len() < at_least && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut all = mine();
        all.sort_by(|a, b| a.progress.total_cmp(&b.progress));
        all
    }

    /// All tools (`tools/list`, following pagination).
    pub async fn list_tools(&self) -> Vec<Tool> {
        self.client.list_all_tools().await.unwrap_or_else(|e| {
            panic!(
                "tools/list failed: {e:?}\nserver stderr:\n{}",
                self.stderr()
            )
        })
    }

    /// The rmcp peer, for any other request (`peer_info()`, `list_resources`, `set_level`...).
    pub fn peer(&self) -> &Peer<RoleClient> {
        self.client.peer()
    }

    /// The running rmcp client service.
    pub fn client(&self) -> &RunningService<RoleClient, Recorder> {
        &self.client
    }

    /// Every `notifications/message` received so far, in order.
    pub fn logs(&self) -> Vec<LoggingMessageNotificationParam> {
        self.recorder.logs()
    }

    /// Wait up to `timeout` for a log message matching `pred` (already received ones count).
    pub async fn wait_for_log(
        &self,
        timeout: Duration,
        pred: impl Fn(&LoggingMessageNotificationParam) -> bool,
    ) -> Option<LoggingMessageNotificationParam> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.recorder.logs().into_iter().find(|l| pred(l)) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// The server's temporary HOME (removed with the session).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Process id of the server.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Close the client (which closes the server's stdin) and wait for the server to exit.
    /// Panics if it has not exited 10 s after stdin closed (it is then killed).
    pub async fn close(mut self) -> ExitStatus {
        let _ = self.client.close().await;
        match tokio::time::timeout(EXIT_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.expect("wait for the server"),
            Err(_) => {
                let _ = self.child.kill().await;
                panic!(
                    "server did not exit within {EXIT_TIMEOUT:?} of stdin closing\nstderr:\n{}",
                    self.stderr()
                );
            }
        }
    }
}

/// All text contents of a tool result, joined by "\n".
pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The structured content of a tool result; panics (showing the text) if there is none.
pub fn structured(result: &CallToolResult) -> Value {
    result.structured_content.clone().unwrap_or_else(|| {
        panic!(
            "tool result has no structuredContent (isError: {:?}); text: {}",
            result.is_error,
            text(result)
        )
    })
}

pub(crate) fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
