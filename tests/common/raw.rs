//! `RawProcess`: the server binary over plain stdio pipes with no MCP client in between, so
//! protocol tests can send malformed or out-of-order JSON-RPC and read the raw replies.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::mcp::{read_lossy, server_binary, server_env};

const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The server binary with piped stdin/stdout; stderr goes to a file. Killed on drop.
pub struct RawProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr_path: PathBuf,
    _home: tempfile::TempDir,
}

/// Spawn the server with `args` and the same clean environment as `McpSession` plus `extra_env`.
pub fn raw_process(args: &[String], extra_env: &[(&str, &str)]) -> RawProcess {
    let (home, env) = server_env(extra_env);
    let stderr_path = home.path().join("server-stderr.log");
    let stderr_file = std::fs::File::create(&stderr_path).expect("create stderr file");
    let mut child = Command::new(server_binary())
        .args(args)
        .env_clear()
        .envs(env)
        .current_dir(home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr_file)
        .spawn()
        .expect("spawn the server binary");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(line) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    RawProcess {
        stdin: child.stdin.take(),
        child,
        lines,
        stderr_path,
        _home: home,
    }
}

impl RawProcess {
    /// Write `line` plus "\n" to the server's stdin (as is: it may be invalid JSON).
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        stdin
            .write_all(line.as_bytes())
            .and_then(|_| stdin.write_all(b"\n"))
            .and_then(|_| stdin.flush())
            .expect("write to the server's stdin");
    }

    /// Serialize `message` on one line and send it.
    pub fn send_json(&mut self, message: &Value) {
        self.send_line(&message.to_string());
    }

    /// Next stdout line within `timeout`; `None` on timeout or end of stream.
    pub fn read_line_timeout(&mut self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Next stdout line parsed as JSON, within 10 s; panics (showing stderr) otherwise.
    pub fn read_json_line(&mut self) -> Value {
        self.read_json_line_timeout(READ_TIMEOUT)
    }

    /// Next stdout line parsed as JSON, within `timeout`; panics (showing stderr) otherwise.
    pub fn read_json_line_timeout(&mut self, timeout: Duration) -> Value {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => serde_json::from_str(&line).unwrap_or_else(|e| {
                panic!("server wrote a non-JSON line to stdout ({e}): {line:?}")
            }),
            Err(e) => panic!(
                "no line from the server within {timeout:?} ({e})\nstderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// Read JSON lines until the response with this `id`, skipping notifications; within 10 s.
    pub fn read_response(&mut self, id: &Value) -> Value {
        let deadline = Instant::now() + READ_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self.read_json_line_timeout(left);
            if msg.get("id") == Some(id) && msg.get("method").is_none() {
                return msg;
            }
        }
    }

    /// Send `initialize` (id 0) and `notifications/initialized`; returns the initialize reply.
    pub fn handshake(&mut self) -> Value {
        self.send_json(&json!({
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "aurora-dsql-raw-harness", "version": "0"}
            }
        }));
        let reply = self.read_response(&json!(0));
        self.send_json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        reply
    }

    /// Close the server's stdin (end of the session).
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Close stdin and wait up to `timeout` for the server to exit; panics if it does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.close_stdin();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "server did not exit within {timeout:?} of stdin closing\nstderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// Process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RawProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
