//! `cargo bench --bench compare`: this server against the Python server it replaces
//! (`awslabs.aurora-dsql-mcp-server==1.1.4`) and against the physical floor, on one machine,
//! in one run.
//!
//! Why: agents call database tools in tight loops, run several calls at once, and hosts give
//! a server 60 s to start. So the figures that matter are start-up, the latency of one call,
//! throughput under concurrent calls, large results and memory, each set against the server
//! users run today and against the database round trip that no server can avoid.
//!
//! How: one throw-away PostgreSQL with TLS (`tests/common/pg.rs`) on 127.0.0.1:5432 (the
//! reference's port is fixed), `hostssl ... trust`, and a `bench` table of 100,000 rows.
//! Both servers get `--cluster_endpoint localhost --database_user admin --region us-east-1`
//! and fake AWS credentials (each still mints an IAM token, which `trust` ignores); ours also
//! gets `--ssl-root-cert <ca>` (it always verifies), the reference uses `sslmode=require`.
//! Both are driven by the same real MCP client, rmcp's, over the child's stdio. The floor is
//! the same query through tokio-postgres on an already-open TLS connection: `query`
//! (prepare, then execute: two round trips) and `simple_query` (one round trip).
//!
//! What (median and p99, nearest rank, with the ratio to the reference):
//! - spawn → `initialize` answered (a fresh process each time);
//! - the first `readonly_query` after start (token, TLS handshake, query);
//! - steady `readonly_query` `SELECT 1` after warm-up;
//! - a 1,000-row and a 100,000-row result (ours with its default `--max-rows 1000`, which
//!   truncates the latter, and with the limits raised so it returns every row);
//! - throughput of 8 concurrent clients for ~10 s: 8 sessions (8 server processes, one caller
//!   each) and 8 callers multiplexed on one session (the reference shares one connection);
//! - peak RSS (`VmHWM`) of each server after its workload.
//!
//! The reference is installed from PyPI into `target/bench-venv` (kept for re-runs). Without
//! `--bench` among its arguments (as under `cargo test --all-targets`) this binary prints one
//! line and exits 0. Every loop is bounded in count and in time; all traffic stays on
//! 127.0.0.1. The markdown table goes to stdout and to `target/bench-results.md`.
//! `COMPARE_SMOKE=1` runs a tenth of every count to check the benchmark itself;
//! `COMPARE_OURS_BIN=<path>` measures another build of ours (an A/B of a change).

#[path = "../tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;
#[path = "compare/proxy.rs"]
mod proxy;

use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::{Peer, RoleClient, ServiceExt};
use serde_json::Value;

const REFERENCE_PACKAGE: &str = "awslabs.aurora-dsql-mcp-server";
const REFERENCE_VERSION: &str = "1.1.4";
const PG_PORT: u16 = 5432;
const TABLE_ROWS: usize = 100_000;

const SPAWN_RUNS: usize = 30;
const STEADY_WARMUP: usize = 200;
const STEADY_CALLS: usize = 2_000;
const ROWS_1K_RUNS: usize = 50;
const ROWS_100K_RUNS: usize = 5;
const CLIENTS: usize = 8;
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(10);
/// Per server and per measurement: a loop stops at its count or at this budget.
const PHASE_BUDGET: Duration = Duration::from_secs(240);
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
const INIT_TIMEOUT: Duration = Duration::from_secs(60);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
const PIP_TIMEOUT: Duration = Duration::from_secs(600);
/// A 100,000-row result is ~30 MB of JSON-RPC on one line; rmcp's default cap is 16 MiB.
const MAX_LINE: usize = 512 << 20;

const SELECT_1: &str = "SELECT 1";
const ROWS_1K: &str = "SELECT id, name, score, created FROM bench WHERE id <= 1000 ORDER BY id";
const ROWS_100K: &str = "SELECT id, name, score, created FROM bench ORDER BY id";

/// Our executor's three pipelined messages for one read-only call (`executor::one_round_trip`).
const UNIT_BEGIN: &str = "BEGIN TRANSACTION READ ONLY";
const UNIT_END: &str =
    "COMMIT; RESET ALL; RESET ROLE; SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY";
/// The same statements as one simple-query message.
const UNIT_SQL: &str = "BEGIN TRANSACTION READ ONLY; SELECT 1; COMMIT; RESET ALL; RESET ROLE; \
                        SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY";

const FAKE_ACCESS_KEY_ID: &str = "AKIDEXAMPLEBENCHMARK";
const FAKE_SECRET_ACCESS_KEY: &str = "benchSecretKeyEXAMPLEdoNotUse000000000000";

type Res<T> = Result<T, String>;

/// `COMPARE_SMOKE=1`: a quick check of the benchmark itself (a tenth of the counts, 2 s
/// windows, a debug server allowed). Its figures mean nothing.
fn smoke() -> bool {
    std::env::var_os("COMPARE_SMOKE").is_some_and(|v| v == "1")
}

fn scaled(count: usize) -> usize {
    if smoke() {
        count.div_ceil(10).max(2)
    } else {
        count
    }
}

fn window() -> Duration {
    if smoke() {
        Duration::from_secs(2)
    } else {
        THROUGHPUT_WINDOW
    }
}

fn main() {
    if !std::env::args().skip(1).any(|a| a == "--bench") {
        println!("compare: skipped (no --bench argument); run `cargo bench --bench compare`");
        return;
    }
    if let Err(e) = run() {
        eprintln!("compare: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    // <target>/<profile>/deps/compare-<hash>
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let target_dir = exe
        .ancestors()
        .nth(3)
        .ok_or("cannot find the target directory from the benchmark's path")?
        .to_path_buf();
    if let Err(e) = TcpListener::bind((Ipv4Addr::LOCALHOST, PG_PORT)) {
        return Err(format!(
            "127.0.0.1:{PG_PORT} is busy ({e}). The reference server cannot change its port, so \
             this benchmark needs it: stop whatever listens there (`ss -ltnp 'sport = :{PG_PORT}'`) \
             and run again."
        ));
    }
    let ours_bin = if let Some(bin) = std::env::var_os("COMPARE_OURS_BIN") {
        PathBuf::from(bin)
    } else if smoke() {
        PathBuf::from(env!("CARGO_BIN_EXE_aurora-dsql-mcp-server"))
    } else {
        build_release(&target_dir)?
    };

    let reference_bin = ensure_reference(&target_dir.join("bench-venv"))?;
    eprintln!("compare: starting PostgreSQL on 127.0.0.1:{PG_PORT}");
    let pg = pg::PgCluster::start_on(Some(PG_PORT));
    // The latency phase's database, on a free port: 5432 then belongs to the delay proxy
    // in front of it (the reference can only reach 5432).
    let far = pg::PgCluster::start_on(None);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let report = runtime.block_on(bench(&pg, &far, &ours_bin, &reference_bin))?;
    print!("{report}");
    let out = target_dir.join("bench-results.md");
    std::fs::write(&out, &report).map_err(|e| format!("write {}: {e}", out.display()))?;
    eprintln!("compare: written to {}", out.display());
    Ok(())
}

/// `cargo build --release` of the server (the binary users install, built without the
/// dev-dependencies' features that `cargo bench` unifies into its own copy).
fn build_release(target_dir: &Path) -> Res<PathBuf> {
    eprintln!("compare: cargo build --release");
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    run_bounded(
        Command::new(cargo)
            .args(["build", "--release", "--bin", "aurora-dsql-mcp-server"])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir),
        Duration::from_secs(3600),
    )?;
    let bin = target_dir.join("release/aurora-dsql-mcp-server");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} missing after the build", bin.display()))
    }
}

// ---------------------------------------------------------------------------------------------
// The reference, in a cached virtualenv

/// Creates `venv` with the reference installed, unless it is already there; returns the
/// server's console script.
fn ensure_reference(venv: &Path) -> Res<PathBuf> {
    let exe = venv.join("bin").join(REFERENCE_PACKAGE);
    let python = venv.join("bin/python");
    let installed = || {
        Command::new(&python)
            .args([
                "-c",
                &format!("import importlib.metadata as m; print(m.version('{REFERENCE_PACKAGE}'))"),
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if exe.is_file() && installed().as_deref() == Some(REFERENCE_VERSION) {
        return Ok(exe);
    }
    eprintln!(
        "compare: installing {REFERENCE_PACKAGE}=={REFERENCE_VERSION} into {}",
        venv.display()
    );
    run_bounded(
        Command::new("python3").arg("-m").arg("venv").arg(venv),
        Duration::from_secs(120),
    )?;
    run_bounded(
        Command::new(venv.join("bin/pip")).args([
            "install",
            "--disable-pip-version-check",
            "--quiet",
            &format!("{REFERENCE_PACKAGE}=={REFERENCE_VERSION}"),
        ]),
        PIP_TIMEOUT,
    )?;
    match installed() {
        Some(v) if v == REFERENCE_VERSION && exe.is_file() => Ok(exe),
        other => Err(format!(
            "the reference did not install as expected (version {other:?}, {} present: {})",
            exe.display(),
            exe.is_file()
        )),
    }
}

/// Runs `cmd` (output to our stderr), killing it after `limit`.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Res<()> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{shown}: {e}"))?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait().map_err(|e| format!("{shown}: {e}"))? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => return Err(format!("{shown} failed: {status}")),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{shown} did not finish within {limit:?}"));
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Servers and MCP sessions

/// How to start one server.
#[derive(Clone)]
struct Server {
    label: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// HOME and working directory; stderr goes to `<label>.stderr.log` here.
    home: PathBuf,
}

impl Server {
    fn stderr_path(&self) -> PathBuf {
        self.home.join(format!("{}.stderr.log", self.label))
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read(self.stderr_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let start = text.len().saturating_sub(3000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> String {
        format!(
            "{}: {what}: {e}\n--- its stderr (tail) ---\n{}",
            self.label,
            self.stderr_tail()
        )
    }
}

/// Clean environment: fake static credentials, no instance metadata, no AWS config files.
fn base_env(home: &Path) -> Vec<(String, String)> {
    let none = home.join(".aws-none");
    vec![
        (
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        ),
        ("HOME".into(), home.display().to_string()),
        ("AWS_ACCESS_KEY_ID".into(), FAKE_ACCESS_KEY_ID.into()),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            FAKE_SECRET_ACCESS_KEY.into(),
        ),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("AWS_CONFIG_FILE".into(), none.display().to_string()),
        (
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            none.display().to_string(),
        ),
    ]
}

fn cluster_args(extra: &[&str]) -> Vec<String> {
    [
        "--cluster_endpoint",
        "localhost",
        "--database_user",
        "admin",
        "--region",
        "us-east-1",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}

/// A server process with an initialized rmcp client session on its stdio.
struct Session {
    client: RunningService<RoleClient, ()>,
    child: tokio::process::Child,
    /// When the last line from the server was complete (see [`Tap`]).
    line_ended: Arc<Mutex<Option<Instant>>>,
}

/// The server's stdout as rmcp's client reads it, noting when each line is complete.
///
/// Why: a row result is timed twice. "Parsed" runs until rmcp's client has decoded the
/// answer into its types, which for a large answer is mostly the client's own work
/// (serde's untagged-enum buffering of the whole message), the same for both servers.
/// "Received" stops when the answer's last byte has arrived, which is where the server's
/// part ends; the two together show where the time goes.
struct Tap {
    inner: tokio::process::ChildStdout,
    line_ended: Arc<Mutex<Option<Instant>>>,
}

impl tokio::io::AsyncRead for Tap {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if polled.is_ready() && memchr::memchr(b'\n', &buf.filled()[before..]).is_some() {
            let now = Instant::now();
            if let Ok(mut ended) = this.line_ended.lock() {
                *ended = Some(now);
            }
        }
        polled
    }
}

impl Session {
    /// Spawns `server` and completes `initialize`; returns the session and the time from
    /// spawn to the `initialize` answer.
    async fn start(server: &Server) -> Res<(Session, Duration)> {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(server.stderr_path())
            .map_err(|e| server.fail("open stderr log", e))?;
        let mut cmd = tokio::process::Command::new(&server.program);
        cmd.args(&server.args)
            .env_clear()
            .envs(server.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&server.home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|e| server.fail("spawn", e))?;
        let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
            return Err(server.fail("spawn", "no stdio pipes"));
        };
        let line_ended = Arc::new(Mutex::new(None));
        let stdout = Tap {
            inner: stdout,
            line_ended: Arc::clone(&line_ended),
        };
        let transport = AsyncRwTransport::new_client(stdout, stdin).with_max_line_length(MAX_LINE);
        let client = match tokio::time::timeout(INIT_TIMEOUT, ().serve(transport)).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(server.fail("initialize", e)),
            Err(_) => return Err(server.fail("initialize", "timed out")),
        };
        let elapsed = started.elapsed();
        Ok((
            Session {
                client,
                child,
                line_ended,
            },
            elapsed,
        ))
    }

    fn peer(&self) -> Peer<RoleClient> {
        self.client.peer().clone()
    }

    /// One `readonly_query` returning `rows` rows, timed to the answer received and to
    /// the answer parsed by rmcp's client.
    async fn timed_rows(&self, sql: &str, rows: usize) -> Res<Timed> {
        let started = Instant::now();
        let result = call(self.client.peer(), sql).await?;
        let parsed = started.elapsed();
        let got = row_count(&result)?;
        if got != rows {
            return Err(format!("`{sql}`: expected {rows} rows, got {got}"));
        }
        let ended = self.line_ended.lock().ok().and_then(|e| *e);
        let received = ended
            .and_then(|e| e.checked_duration_since(started))
            .ok_or("the answer's line end was not seen")?;
        Ok(Timed { received, parsed })
    }

    /// Peak resident set size (VmHWM) in kB.
    fn peak_rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Closes stdin (the MCP way to stop a stdio server) and waits; kills after 10 s.
    async fn close(mut self) {
        let _ = self.client.cancel().await;
        if tokio::time::timeout(EXIT_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

async fn call(peer: &Peer<RoleClient>, sql: &str) -> Res<CallToolResult> {
    call_tool(peer, "readonly_query", sql).await
}

async fn call_tool(peer: &Peer<RoleClient>, tool: &str, sql: &str) -> Res<CallToolResult> {
    let mut args = serde_json::Map::new();
    args.insert("sql".into(), Value::String(sql.into()));
    let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
    match tokio::time::timeout(CALL_TIMEOUT, peer.call_tool(params)).await {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(e)) => Err(format!("{tool} failed at protocol level: {e}")),
        Err(_) => Err(format!("{tool} timed out after {CALL_TIMEOUT:?}")),
    }
}

/// `dsql_lint` on empty SQL: both servers answer without parsing or the database, so this
/// is the cost of one MCP call over stdio (client included).
async fn timed_noop(peer: &Peer<RoleClient>) -> Res<Duration> {
    let started = Instant::now();
    let result = call_tool(peer, "dsql_lint", "").await?;
    let elapsed = started.elapsed();
    if result.is_error == Some(true) {
        return Err(format!("dsql_lint failed: {:?}", result.content));
    }
    Ok(elapsed)
}

/// Rows in `structuredContent.result`, or the tool error's text.
fn row_count(result: &CallToolResult) -> Res<usize> {
    if result.is_error == Some(true) {
        let text: Vec<&str> = result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
            .collect();
        return Err(format!("tool error: {}", text.join("\n")));
    }
    result
        .structured_content
        .as_ref()
        .and_then(|v| v.get("result"))
        .and_then(Value::as_array)
        .map(Vec::len)
        .ok_or_else(|| "no structuredContent.result in the answer".to_string())
}

/// One `readonly_query`, timed from request to parsed answer; checks the row count.
async fn timed_call(peer: &Peer<RoleClient>, sql: &str, rows: usize) -> Res<Duration> {
    let started = Instant::now();
    let result = call(peer, sql).await?;
    let elapsed = started.elapsed();
    let got = row_count(&result)?;
    if got != rows {
        return Err(format!("`{sql}`: expected {rows} rows, got {got}"));
    }
    Ok(elapsed)
}

// ---------------------------------------------------------------------------------------------
// Statistics

#[derive(Clone, Copy, Debug)]
struct Stat {
    n: usize,
    median: Duration,
    p99: Duration,
}

fn stat(mut samples: Vec<Duration>) -> Stat {
    samples.sort();
    let n = samples.len();
    let rank = |q: f64| samples[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    Stat {
        n,
        median: rank(0.50),
        p99: rank(0.99),
    }
}

/// One row result's times: its last byte received, and its decoding by the client done.
#[derive(Clone, Copy)]
struct Timed {
    received: Duration,
    parsed: Duration,
}

/// Both figures of a row result.
#[derive(Clone, Copy)]
struct Rows {
    received: Stat,
    parsed: Stat,
}

/// Runs `f` as [`sample`] does, keeping both times of each call.
async fn sample_rows<F, Fut>(runs: usize, budget: Duration, mut f: F) -> Res<Rows>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Res<Timed>>,
{
    let deadline = Instant::now() + budget;
    let (mut received, mut parsed) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for _ in 0..runs {
        let t = f().await?;
        received.push(t.received);
        parsed.push(t.parsed);
        if Instant::now() > deadline {
            break;
        }
    }
    Ok(Rows {
        received: stat(received),
        parsed: stat(parsed),
    })
}

/// Runs `f` `runs` times, or fewer if `budget` runs out (at least once).
async fn sample<F, Fut>(runs: usize, budget: Duration, mut f: F) -> Res<Stat>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Res<Duration>>,
{
    let deadline = Instant::now() + budget;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        samples.push(f().await?);
        if Instant::now() > deadline {
            break;
        }
    }
    Ok(stat(samples))
}

/// Calls completed by several callers in one window.
struct Throughput {
    calls: usize,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    latency: Stat,
}

impl Throughput {
    fn per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs one caller per element of `workers` until the window closes; each call's future
/// comes from `call`, given a clone of the caller's handle.
async fn drive<W, F, Fut>(workers: Vec<W>, call: F) -> Res<Throughput>
where
    W: Clone + Send + 'static,
    F: Fn(W) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Res<Duration>> + Send,
{
    let started = Instant::now();
    let end = started + window();
    let mut tasks = Vec::new();
    for worker in workers {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            // Bounded by the window; the count cap is a second guard.
            while Instant::now() < end && latencies.len() + errors.len() < 10_000_000 {
                match call(worker.clone()).await {
                    Ok(d) => latencies.push(d),
                    Err(e) => errors.push(e),
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        let (l, e) = task.await.map_err(|e| format!("caller task: {e}"))?;
        latencies.extend(l);
        errors.extend(e);
    }
    let elapsed = started.elapsed();
    if latencies.is_empty() {
        return Err(format!(
            "no call succeeded; first error: {}",
            errors.first().map(String::as_str).unwrap_or("none")
        ));
    }
    Ok(Throughput {
        calls: latencies.len(),
        errors: errors.len(),
        first_error: errors.into_iter().next(),
        elapsed,
        latency: stat(latencies),
    })
}

// ---------------------------------------------------------------------------------------------
// The measurements

/// Everything measured for one server.
#[derive(Default)]
struct Figures {
    spawn: Option<Stat>,
    first: Option<Stat>,
    steady: Option<Stat>,
    noop: Option<Stat>,
    rows_1k: Option<Rows>,
    rows_100k: Option<Rows>,
    rows_100k_raised: Option<Rows>,
    sessions: Option<Throughput>,
    one_session: Option<Throughput>,
    peak_rss_kb: Option<u64>,
    peak_rss_raised_kb: Option<u64>,
    /// Bytes of one 100,000-row response with limits raised.
    response_bytes_raised: Option<usize>,
}

/// Fresh process each time: spawn → initialize, then the first call.
async fn measure_start(server: &Server, f: &mut Figures) -> Res<()> {
    eprintln!(
        "compare: {}: spawn → initialize and first call",
        server.label
    );
    let deadline = Instant::now() + PHASE_BUDGET;
    let mut spawn = Vec::new();
    let mut first = Vec::new();
    for _ in 0..scaled(SPAWN_RUNS) {
        let (session, to_init) = Session::start(server).await?;
        spawn.push(to_init);
        let first_call = timed_call(&session.peer(), SELECT_1, 1).await;
        session.close().await;
        first.push(first_call.map_err(|e| server.fail("first call", e))?);
        if Instant::now() > deadline {
            break;
        }
    }
    f.spawn = Some(stat(spawn));
    f.first = Some(stat(first));
    Ok(())
}

/// One session: steady SELECT 1, the 1,000-row and the 100,000-row result, then peak RSS.
async fn measure_session(server: &Server, rows_100k: usize, f: &mut Figures) -> Res<()> {
    eprintln!("compare: {}: steady calls and large results", server.label);
    let (session, _) = Session::start(server).await?;
    let peer = session.peer();
    let result = async {
        for _ in 0..scaled(STEADY_WARMUP) {
            timed_call(&peer, SELECT_1, 1).await?;
        }
        for _ in 0..scaled(STEADY_WARMUP) {
            timed_noop(&peer).await?;
        }
        f.noop = Some(sample(scaled(STEADY_CALLS), PHASE_BUDGET, || timed_noop(&peer)).await?);
        f.steady = Some(
            sample(scaled(STEADY_CALLS), PHASE_BUDGET, || {
                timed_call(&peer, SELECT_1, 1)
            })
            .await?,
        );
        for _ in 0..3 {
            session.timed_rows(ROWS_1K, 1_000).await?;
        }
        f.rows_1k = Some(
            sample_rows(scaled(ROWS_1K_RUNS), PHASE_BUDGET, || {
                session.timed_rows(ROWS_1K, 1_000)
            })
            .await?,
        );
        session.timed_rows(ROWS_100K, rows_100k).await?;
        f.rows_100k = Some(
            sample_rows(scaled(ROWS_100K_RUNS), PHASE_BUDGET, || {
                session.timed_rows(ROWS_100K, rows_100k)
            })
            .await?,
        );
        Res::Ok(())
    }
    .await;
    f.peak_rss_kb = session.peak_rss_kb();
    session.close().await;
    result.map_err(|e| server.fail("workload", e))
}

/// Ours with the limits raised: the full 100,000-row result, then peak RSS.
async fn measure_raised(server: &Server, f: &mut Figures) -> Res<()> {
    eprintln!("compare: {}: 100,000 rows with limits raised", server.label);
    let (session, _) = Session::start(server).await?;
    let peer = session.peer();
    let result = async {
        // The response's size on the wire: the JSON-RPC result as the client re-serializes
        // it (the server's line differs only in key order and escapes).
        let answer = call(&peer, ROWS_100K).await?;
        if row_count(&answer)? != TABLE_ROWS {
            return Err(format!("`{ROWS_100K}`: not {TABLE_ROWS} rows"));
        }
        f.response_bytes_raised = serde_json::to_vec(&answer).ok().map(|v| v.len());
        sample_rows(scaled(ROWS_100K_RUNS), PHASE_BUDGET, || {
            session.timed_rows(ROWS_100K, TABLE_ROWS)
        })
        .await
    }
    .await;
    f.peak_rss_raised_kb = session.peak_rss_kb();
    session.close().await;
    f.rows_100k_raised = Some(result.map_err(|e| server.fail("100,000 rows", e))?);
    Ok(())
}

/// 8 server processes with one caller each, then 8 callers on one session.
async fn measure_throughput(server: &Server, f: &mut Figures) -> Res<()> {
    eprintln!(
        "compare: {}: throughput, {CLIENTS} sessions and {CLIENTS} callers on one session",
        server.label
    );
    let mut sessions = Vec::new();
    for _ in 0..CLIENTS {
        sessions.push(Session::start(server).await?.0);
    }
    let peers: Vec<_> = sessions.iter().map(Session::peer).collect();
    let warm = async {
        for peer in &peers {
            for _ in 0..20 {
                timed_call(peer, SELECT_1, 1).await?;
            }
        }
        Res::Ok(())
    }
    .await;
    let result = match warm {
        Ok(()) => drive(peers, |peer: Peer<RoleClient>| async move {
            timed_call(&peer, SELECT_1, 1).await
        })
        .await
        .map(Some),
        Err(e) => Err(e),
    };
    for session in sessions {
        session.close().await;
    }
    f.sessions = result.map_err(|e| server.fail("throughput, sessions", e))?;

    let (session, _) = Session::start(server).await?;
    let peer = session.peer();
    let mut warm = Ok(Duration::ZERO);
    for _ in 0..20 {
        warm = warm.and(timed_call(&peer, SELECT_1, 1).await);
    }
    let result = match warm {
        Ok(_) => drive(vec![peer; CLIENTS], |peer: Peer<RoleClient>| async move {
            timed_call(&peer, SELECT_1, 1).await
        })
        .await
        .map(Some),
        Err(e) => Err(e),
    };
    session.close().await;
    f.one_session = result.map_err(|e| server.fail("throughput, one session", e))?;
    Ok(())
}

/// The floor: tokio-postgres straight to the database.
#[derive(Default)]
struct Floor {
    connect: Option<Stat>,
    query: Option<Stat>,
    simple: Option<Stat>,
    unit: Option<Stat>,
    pipelined: Option<Stat>,
    rows_1k: Option<Stat>,
    rows_100k: Option<Stat>,
    connections: Option<Throughput>,
}

async fn measure_floor(pg: &pg::PgCluster) -> Res<Floor> {
    eprintln!("compare: floor (tokio-postgres)");
    let db = |e: tokio_postgres::Error| format!("floor: {e:?}");
    let connect = Some(
        sample(scaled(SPAWN_RUNS), PHASE_BUDGET, || async {
            let started = Instant::now();
            let (client, conn) = pg
                .config("admin")
                .connect(pg.make_tls())
                .await
                .map_err(db)?;
            let task = tokio::spawn(conn);
            client.simple_query(SELECT_1).await.map_err(db)?;
            let elapsed = started.elapsed();
            drop(client);
            let _ = task.await;
            Ok(elapsed)
        })
        .await?,
    );

    let mut floor = Floor {
        connect,
        ..Floor::default()
    };
    let client = pg.connect_as("admin").await;
    for _ in 0..scaled(STEADY_WARMUP) {
        client.query(SELECT_1, &[]).await.map_err(db)?;
        client.simple_query(SELECT_1).await.map_err(db)?;
    }
    let timed_query = |sql: &'static str, rows: usize| {
        let client = &client;
        async move {
            let started = Instant::now();
            let got = client.query(sql, &[]).await.map_err(db)?;
            let elapsed = started.elapsed();
            if got.len() != rows {
                return Err(format!("floor: expected {rows} rows, got {}", got.len()));
            }
            Ok(elapsed)
        }
    };
    floor.query = Some(
        sample(scaled(STEADY_CALLS), PHASE_BUDGET, || {
            timed_query(SELECT_1, 1)
        })
        .await?,
    );
    floor.simple = Some(
        sample(scaled(STEADY_CALLS), PHASE_BUDGET, || async {
            let started = Instant::now();
            client.simple_query(SELECT_1).await.map_err(db)?;
            Ok(started.elapsed())
        })
        .await?,
    );
    floor.unit = Some(
        sample(scaled(STEADY_CALLS), PHASE_BUDGET, || async {
            let started = Instant::now();
            client.simple_query(UNIT_SQL).await.map_err(db)?;
            Ok(started.elapsed())
        })
        .await?,
    );
    floor.pipelined = Some(
        sample(scaled(STEADY_CALLS), PHASE_BUDGET, || async {
            let started = Instant::now();
            let (begun, rows, ended) = futures_util::join!(
                client.batch_execute(UNIT_BEGIN),
                client.query_typed(SELECT_1, &[]),
                client.batch_execute(UNIT_END)
            );
            begun.and(rows).and(ended).map_err(db)?;
            Ok(started.elapsed())
        })
        .await?,
    );
    floor.rows_1k = Some(
        sample(scaled(ROWS_1K_RUNS), PHASE_BUDGET, || {
            timed_query(ROWS_1K, 1_000)
        })
        .await?,
    );
    floor.rows_100k = Some(
        sample(scaled(ROWS_100K_RUNS), PHASE_BUDGET, || {
            timed_query(ROWS_100K, TABLE_ROWS)
        })
        .await?,
    );

    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(std::sync::Arc::new(pg.connect_as("admin").await));
    }
    floor.connections = Some(
        drive(
            clients,
            |client: std::sync::Arc<tokio_postgres::Client>| async move {
                let started = Instant::now();
                client
                    .query(SELECT_1, &[])
                    .await
                    .map_err(|e| format!("floor: {e:?}"))?;
                Ok(started.elapsed())
            },
        )
        .await?,
    );
    Ok(floor)
}

async fn prepare_database(pg: &pg::PgCluster) -> Res<String> {
    eprintln!("compare: creating the bench table ({TABLE_ROWS} rows)");
    let client = pg.superuser().await;
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS bench;
             CREATE TABLE bench (
                 id integer PRIMARY KEY,
                 name text NOT NULL,
                 score double precision NOT NULL,
                 created timestamptz NOT NULL
             );
             INSERT INTO bench
                 SELECT i, 'name-' || i, i * 0.001,
                        timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second'
                 FROM generate_series(1, {TABLE_ROWS}) AS i;
             ALTER TABLE bench OWNER TO admin;
             DROP TABLE IF EXISTS bench_w;
             CREATE TABLE bench_w (id integer PRIMARY KEY, v bigint NOT NULL);
             INSERT INTO bench_w VALUES (1, 0), (2, 0), (3, 0);
             ALTER TABLE bench_w OWNER TO admin;"
        ))
        .await
        .map_err(|e| format!("create the bench table: {e:?}"))?;
    // Not in the same message: VACUUM refuses the implicit transaction block.
    client
        .batch_execute("VACUUM ANALYZE bench")
        .await
        .map_err(|e| format!("vacuum the bench table: {e:?}"))?;
    let version = client
        .query_one("SHOW server_version", &[])
        .await
        .map_err(|e| format!("server_version: {e:?}"))?;
    Ok(version.get::<_, String>(0))
}

async fn bench(
    pg: &pg::PgCluster,
    far: &pg::PgCluster,
    ours_bin: &Path,
    reference_bin: &Path,
) -> Res<String> {
    let load_before = load_average();
    let pg_version = prepare_database(pg).await?;
    prepare_database(far).await?;
    let home = tempfile::Builder::new()
        .prefix("dsql-bench-home-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    // Ours trusts only the CA of the database it talks to.
    let ours_for = |db: &pg::PgCluster, label, extra: &[&str]| {
        let ca = db.ca_path().display().to_string();
        let mut extra: Vec<&str> = extra.to_vec();
        extra.extend(["--ssl-root-cert", &ca]);
        Server {
            label,
            program: ours_bin.to_path_buf(),
            args: cluster_args(&extra),
            env: base_env(home.path()),
            home: home.path().to_path_buf(),
        }
    };
    let ours_server = |label, extra: &[&str]| ours_for(pg, label, extra);
    let ours = ours_server("ours", &[]);
    let ours_raised = ours_server(
        "ours-raised",
        &["--max-rows", "200000", "--max-result-bytes", "1000000000"],
    );
    let mut reference_env = base_env(home.path());
    // As in the reference's sample configurations.
    reference_env.push(("FASTMCP_LOG_LEVEL".into(), "ERROR".into()));
    let reference = Server {
        label: "reference",
        program: reference_bin.to_path_buf(),
        args: cluster_args(&[]),
        env: reference_env,
        home: home.path().to_path_buf(),
    };

    let floor = measure_floor(pg).await?;
    let mut o = Figures::default();
    let mut r = Figures::default();
    measure_start(&ours, &mut o).await?;
    measure_start(&reference, &mut r).await?;
    measure_session(&ours, 1_000, &mut o).await?;
    measure_raised(&ours_raised, &mut o).await?;
    measure_session(&reference, TABLE_ROWS, &mut r).await?;
    measure_throughput(&ours, &mut o).await?;
    measure_throughput(&reference, &mut r).await?;

    // The same servers with a network like DSQL's between them and the database.
    pg.stop();
    let delay = one_way_delay();
    let _proxy = proxy::DelayProxy::start(PG_PORT, far.port(), delay)?;
    let far_server = |label, extra: &[&str]| ours_for(far, label, extra);
    let reference_far = |label, extra: &[&str]| Server {
        label,
        args: cluster_args(extra),
        ..reference.clone()
    };
    let latency = Latency {
        delay,
        floor: measure_latency_floor(far).await?,
        ours: measure_latency(
            &far_server("ours-far", &[]),
            &far_server("ours-far-writes", &["--allow-writes"]),
            true,
        )
        .await?,
        reference: measure_latency(
            &reference_far("reference-far", &[]),
            &reference_far("reference-far-writes", &["--allow-writes"]),
            false,
        )
        .await?,
    };
    let load_after = load_average();

    let versions = Versions {
        ours: format!(
            "{} {}{}",
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            git_rev().map(|r| format!(" ({r})")).unwrap_or_default()
        ),
        reference: format!(
            "{REFERENCE_PACKAGE} {REFERENCE_VERSION} ({})",
            python_version(reference_bin).unwrap_or_else(|| "Python".into())
        ),
        postgres: pg_version,
    };
    let mut report = render(&o, &r, &floor, &versions, &load_before, &load_after);
    report.push_str(&render_latency(&latency));
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// At a distance: the delay proxy between the servers and the database

/// One-way delay of the latency phase: `COMPARE_DELAY_MS` (fractions allowed), default 1 ms,
/// so a round trip costs 2 ms, about what a client in the same region pays to reach DSQL.
fn one_way_delay() -> Duration {
    std::env::var("COMPARE_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .unwrap_or(Duration::from_millis(1))
}

const LATENCY_FIRST_RUNS: usize = 10;
const LATENCY_CALLS: usize = 100;
const LATENCY_WARMUP: usize = 10;
const TRANSACT_READS: [&str; 3] = [
    "SELECT v FROM bench_w WHERE id = 1",
    "SELECT v FROM bench_w WHERE id = 2",
    "SELECT v FROM bench_w WHERE id = 3",
];
const TRANSACT_WRITES: [&str; 3] = [
    "UPDATE bench_w SET v = v + 1 WHERE id = 1",
    "UPDATE bench_w SET v = v + 1 WHERE id = 2",
    "UPDATE bench_w SET v = v + 1 WHERE id = 3",
];

/// What one server costs at a distance from the database.
#[derive(Default)]
struct FarFigures {
    first: Option<Stat>,
    steady: Option<Stat>,
    transact_read: Option<Stat>,
    transact_write: Option<Stat>,
    get_schema: Option<Stat>,
    describe_table: Option<Stat>,
}

struct Latency {
    delay: Duration,
    /// One round trip through the proxy (`simple_query` `SELECT 1` on an open connection)
    /// and a new TLS connection plus `SELECT 1`.
    floor: (Stat, Stat),
    ours: FarFigures,
    reference: FarFigures,
}

/// Any tool with JSON arguments, timed from request to parsed answer; a tool error fails.
async fn timed_tool(peer: &Peer<RoleClient>, tool: &str, args: Value) -> Res<Duration> {
    let Value::Object(args) = args else {
        return Err("tool arguments must be an object".into());
    };
    let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
    let started = Instant::now();
    let result = match tokio::time::timeout(CALL_TIMEOUT, peer.call_tool(params)).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => return Err(format!("{tool} failed at protocol level: {e}")),
        Err(_) => return Err(format!("{tool} timed out after {CALL_TIMEOUT:?}")),
    };
    let elapsed = started.elapsed();
    if result.is_error == Some(true) {
        return Err(format!("{tool}: tool error: {:?}", result.content));
    }
    Ok(elapsed)
}

/// The floor at a distance: tokio-postgres through the same proxy.
async fn measure_latency_floor(far: &pg::PgCluster) -> Res<(Stat, Stat)> {
    eprintln!("compare: floor through the delay proxy");
    let db = |e: tokio_postgres::Error| format!("floor through the proxy: {e:?}");
    let mut config = tokio_postgres::Config::new();
    config
        .host("localhost")
        .hostaddr(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST))
        .port(PG_PORT)
        .user("admin")
        .dbname("postgres");
    let connect = sample(scaled(LATENCY_FIRST_RUNS), PHASE_BUDGET, || async {
        let started = Instant::now();
        let (client, conn) = config.connect(far.make_tls()).await.map_err(db)?;
        let task = tokio::spawn(conn);
        client.simple_query(SELECT_1).await.map_err(db)?;
        let elapsed = started.elapsed();
        drop(client);
        let _ = task.await;
        Ok(elapsed)
    })
    .await?;
    let (client, conn) = config.connect(far.make_tls()).await.map_err(db)?;
    let task = tokio::spawn(conn);
    for _ in 0..scaled(LATENCY_WARMUP) {
        client.simple_query(SELECT_1).await.map_err(db)?;
    }
    let one_rt = sample(scaled(LATENCY_CALLS), PHASE_BUDGET, || async {
        let started = Instant::now();
        client.simple_query(SELECT_1).await.map_err(db)?;
        Ok(started.elapsed())
    })
    .await?;
    drop(client);
    let _ = task.await;
    Ok((one_rt, connect))
}

/// The first call of fresh processes, then each tool on one read-only session, and the
/// write transaction on a session of `writes` (the same server with `--allow-writes`).
async fn measure_latency(server: &Server, writes: &Server, ours: bool) -> Res<FarFigures> {
    eprintln!("compare: {}: at a distance", server.label);
    let mut f = FarFigures::default();
    let mut first = Vec::new();
    for _ in 0..scaled(LATENCY_FIRST_RUNS) {
        let (session, _) = Session::start(server).await?;
        let call = timed_call(&session.peer(), SELECT_1, 1).await;
        session.close().await;
        first.push(call.map_err(|e| server.fail("first call at a distance", e))?);
    }
    f.first = Some(stat(first));

    let calls = scaled(LATENCY_CALLS);
    let (session, _) = Session::start(server).await?;
    let peer = session.peer();
    let read_list = serde_json::json!({ "sql_list": TRANSACT_READS });
    let schema = serde_json::json!({ "table_name": "bench" });
    let result = async {
        for _ in 0..scaled(LATENCY_WARMUP) {
            timed_call(&peer, SELECT_1, 1).await?;
            timed_tool(&peer, "transact", read_list.clone()).await?;
            timed_tool(&peer, "get_schema", schema.clone()).await?;
        }
        f.steady = Some(sample(calls, PHASE_BUDGET, || timed_call(&peer, SELECT_1, 1)).await?);
        f.transact_read = Some(
            sample(calls, PHASE_BUDGET, || {
                timed_tool(&peer, "transact", read_list.clone())
            })
            .await?,
        );
        f.get_schema = Some(
            sample(calls, PHASE_BUDGET, || {
                timed_tool(&peer, "get_schema", schema.clone())
            })
            .await?,
        );
        if ours {
            // A tool of the Kiro power; the reference has no such tool.
            for _ in 0..scaled(LATENCY_WARMUP) {
                timed_tool(&peer, "describe_table", schema.clone()).await?;
            }
            f.describe_table = Some(
                sample(calls, PHASE_BUDGET, || {
                    timed_tool(&peer, "describe_table", schema.clone())
                })
                .await?,
            );
        }
        Res::Ok(())
    }
    .await;
    session.close().await;
    result.map_err(|e| server.fail("calls at a distance", e))?;

    let (session, _) = Session::start(writes).await?;
    let peer = session.peer();
    let write_list = serde_json::json!({ "sql_list": TRANSACT_WRITES });
    let result = async {
        for _ in 0..scaled(LATENCY_WARMUP) {
            timed_tool(&peer, "transact", write_list.clone()).await?;
        }
        sample(calls, PHASE_BUDGET, || {
            timed_tool(&peer, "transact", write_list.clone())
        })
        .await
    }
    .await;
    session.close().await;
    f.transact_write = Some(result.map_err(|e| writes.fail("write transact at a distance", e))?);
    Ok(f)
}

fn render_latency(l: &Latency) -> String {
    let rtt = l.delay * 2;
    let trips = |s: Option<Stat>| match s {
        Some(s) if !rtt.is_zero() => format!(
            "{} ({:.1} RT)",
            ms(s.median),
            s.median.as_secs_f64() / rtt.as_secs_f64()
        ),
        Some(s) => ms(s.median),
        None => "–".into(),
    };
    let mut s = String::new();
    let mut line = |l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    line(String::new());
    line(format!(
        "### At a distance: {} one way, {} round trip (RT)",
        ms(l.delay),
        ms(rtt)
    ));
    line(String::new());
    line(format!(
        "A delay proxy on 127.0.0.1:{PG_PORT} holds every byte for {} in each direction between \
         the servers and PostgreSQL. Floor: one `simple_query` `SELECT 1` through it, {}; a new \
         TLS connection plus `SELECT 1`, {}. Medians; RT = median ÷ {}.",
        ms(l.delay),
        trips(Some(l.floor.0)),
        trips(Some(l.floor.1)),
        ms(rtt)
    ));
    line(String::new());
    line("| Call | n (ours / ref) | Ours | Reference | Reference ÷ ours |".into());
    line("|---|---|---|---|---|".into());
    let (o, r) = (&l.ours, &l.reference);
    for (what, ours, refr) in [
        ("First `readonly_query` after start", o.first, r.first),
        ("Steady `readonly_query` `SELECT 1`", o.steady, r.steady),
        (
            "`transact`, 3 reads (read-only server)",
            o.transact_read,
            r.transact_read,
        ),
        (
            "`transact`, 3 updates (`--allow-writes`)",
            o.transact_write,
            r.transact_write,
        ),
        ("`get_schema`", o.get_schema, r.get_schema),
        (
            "`describe_table` (ours only)",
            o.describe_table,
            r.describe_table,
        ),
    ] {
        line(format!(
            "| {what} | {} / {} | {} | {} | {} |",
            n(ours),
            n(refr),
            trips(ours),
            trips(refr),
            faster(ours, refr).map(ratio).unwrap_or_else(|| "–".into())
        ));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// The report

struct Versions {
    ours: String,
    reference: String,
    postgres: String,
}

fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    if v < 1.0 {
        format!("{v:.3} ms")
    } else if v < 10.0 {
        format!("{v:.2} ms")
    } else if v < 100.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.0} ms")
    }
}

fn cell(s: Option<Stat>) -> String {
    s.map(|s| format!("{} / {}", ms(s.median), ms(s.p99)))
        .unwrap_or_else(|| "–".into())
}

fn ratio(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}×")
    } else {
        format!("{x:.2}×")
    }
}

/// How many times faster ours is than `other` (medians).
fn faster(ours: Option<Stat>, other: Option<Stat>) -> Option<f64> {
    Some(other?.median.as_secs_f64() / ours?.median.as_secs_f64())
}

/// Ours' median over `floor`'s.
fn over(ours: Option<Stat>, floor: Option<Stat>) -> Option<f64> {
    Some(ours?.median.as_secs_f64() / floor?.median.as_secs_f64())
}

fn n(s: Option<Stat>) -> String {
    s.map(|s| s.n.to_string()).unwrap_or_else(|| "–".into())
}

fn throughput_cell(t: &Option<Throughput>) -> String {
    match t {
        Some(t) => {
            let errors = if t.errors > 0 {
                format!(", {} errors", t.errors)
            } else {
                String::new()
            };
            format!(
                "{:.0} calls/s ({} / {}{errors})",
                t.per_second(),
                ms(t.latency.median),
                ms(t.latency.p99)
            )
        }
        None => "–".into(),
    }
}

fn mb(kb: Option<u64>) -> String {
    kb.map(|kb| format!("{:.1} MB", kb as f64 / 1024.0))
        .unwrap_or_else(|| "–".into())
}

fn verdict(met: bool) -> &'static str {
    if met { "**met**" } else { "**missed**" }
}

fn render(
    o: &Figures,
    r: &Figures,
    fl: &Floor,
    v: &Versions,
    load_before: &str,
    load_after: &str,
) -> String {
    let opt = |x: Option<f64>| x.map(ratio).unwrap_or_else(|| "–".into());
    let mut s = String::new();
    let mut line = |l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    line("### Results".into());
    line(String::new());
    line(format!(
        "Machine: {} CPUs (`nproc`), {}, {}. Date: {}. Load average before / after: {} / {}.",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model(),
        mem_total(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        load_before,
        load_after
    ));
    line(format!(
        "Ours: {}. Reference: {}. Database: PostgreSQL {} with TLS on 127.0.0.1:{PG_PORT}, \
         `bench` table of {TABLE_ROWS} rows (id, name, score, created).",
        v.ours, v.reference, v.postgres
    ));
    line(String::new());
    line(
        "| Measure | n (ours / ref / floor) | Ours median / p99 | Reference median / p99 | Floor median / p99 | Reference ÷ ours | Ours ÷ floor |"
            .into(),
    );
    line("|---|---|---|---|---|---|---|".into());
    let row = |line: &mut dyn FnMut(String),
               what: &str,
               ours: Option<Stat>,
               refr: Option<Stat>,
               floor: Option<Stat>| {
        line(format!(
            "| {what} | {} / {} / {} | {} | {} | {} | {} | {} |",
            n(ours),
            n(refr),
            n(floor),
            cell(ours),
            cell(refr),
            cell(floor),
            opt(faster(ours, refr)),
            opt(over(ours, floor)),
        ));
    };
    row(
        &mut line,
        "Spawn → `initialize` answered",
        o.spawn,
        r.spawn,
        None,
    );
    row(
        &mut line,
        "First `readonly_query` after start (floor: TLS connect + `SELECT 1`)",
        o.first,
        r.first,
        fl.connect,
    );
    row(
        &mut line,
        "Steady `readonly_query` `SELECT 1` (floor: `query`, 2 round trips)",
        o.steady,
        r.steady,
        fl.query,
    );
    row(
        &mut line,
        "Steady `readonly_query` `SELECT 1` (floor: `simple_query`, 1 round trip)",
        o.steady,
        r.steady,
        fl.simple,
    );
    row(
        &mut line,
        "Steady `readonly_query` `SELECT 1` (floor: our unit's SQL, BEGIN … RESET, as 1 simple query)",
        o.steady,
        r.steady,
        fl.unit,
    );
    row(
        &mut line,
        "Steady `readonly_query` `SELECT 1` (floor: our executor's 3 pipelined messages)",
        o.steady,
        r.steady,
        fl.pipelined,
    );
    row(
        &mut line,
        "MCP call without the database: `dsql_lint` on empty SQL (no floor)",
        o.noop,
        r.noop,
        None,
    );
    let received = |r: Option<Rows>| r.map(|r| r.received);
    let parsed = |r: Option<Rows>| r.map(|r| r.parsed);
    for (what, ours, reference) in [
        ("1,000-row result", o.rows_1k, r.rows_1k),
        (
            "100,000-row result, ours at default `--max-rows 1000` (returns 1,000 rows, truncated)",
            o.rows_100k,
            r.rows_100k,
        ),
        (
            "100,000-row result, ours with limits raised (all rows)",
            o.rows_100k_raised,
            r.rows_100k,
        ),
    ] {
        let floor = if what.starts_with("1,000") {
            fl.rows_1k
        } else {
            fl.rows_100k
        };
        row(
            &mut line,
            &format!("{what}: answer received (its last byte)"),
            received(ours),
            received(reference),
            floor,
        );
        row(
            &mut line,
            &format!("{what}: answer parsed by rmcp's client"),
            parsed(ours),
            parsed(reference),
            floor,
        );
    }
    let tp_ratio = |a: &Option<Throughput>, b: &Option<Throughput>| match (a, b) {
        (Some(a), Some(b)) => ratio(a.per_second() / b.per_second()),
        _ => "–".into(),
    };
    line(format!(
        "| Throughput, {CLIENTS} sessions (server processes) × 1 caller, {}s; calls/s (latency median / p99) | – | {} | {} | {} ({CLIENTS} connections, `query`) | {} (ours ÷ ref) | – |",
        window().as_secs(),
        throughput_cell(&o.sessions),
        throughput_cell(&r.sessions),
        throughput_cell(&fl.connections),
        tp_ratio(&o.sessions, &r.sessions),
    ));
    line(format!(
        "| Throughput, 1 session × {CLIENTS} concurrent callers, {}s; calls/s (latency median / p99) | – | {} | {} | – | {} (ours ÷ ref) | – |",
        window().as_secs(),
        throughput_cell(&o.one_session),
        throughput_cell(&r.one_session),
        tp_ratio(&o.one_session, &r.one_session),
    ));
    let rss_ratio = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.3} (ours ÷ ref)", a as f64 / b as f64),
        _ => "–".into(),
    };
    line(format!(
        "| Peak RSS (VmHWM) after steady + 1,000-row + 100,000-row calls (ours at default limits) | – | {} | {} | – | {} | – |",
        mb(o.peak_rss_kb),
        mb(r.peak_rss_kb),
        rss_ratio(o.peak_rss_kb, r.peak_rss_kb),
    ));
    line(format!(
        "| Peak RSS (VmHWM) after 100,000-row results (ours with limits raised) | – | {} | {} | – | {} | – |",
        mb(o.peak_rss_raised_kb),
        mb(r.peak_rss_kb),
        rss_ratio(o.peak_rss_raised_kb, r.peak_rss_kb),
    ));
    line(String::new());

    // Targets of issue 15 (round two; issue 8's spawn target still printed).
    line("Targets (issue 15):".into());
    line(String::new());
    let spawn = faster(o.spawn, r.spawn);
    line(format!(
        "- Spawn → initialize ≥ 50× faster than the reference (issue 8): {} — {}",
        opt(spawn),
        verdict(spawn.is_some_and(|x| x >= 50.0))
    ));
    let first = faster(o.first, r.first);
    let first_gap = match (o.first, fl.connect) {
        (Some(a), Some(b)) => Some(a.median.as_secs_f64() * 1e3 - b.median.as_secs_f64() * 1e3),
        _ => None,
    };
    line(format!(
        "- First `readonly_query` faster than the reference: {} — {}; within 3 ms of the floor: {} — {}",
        opt(first),
        verdict(first.is_some_and(|x| x > 1.0)),
        first_gap
            .map(|g| format!("{g:+.2} ms"))
            .unwrap_or_else(|| "–".into()),
        verdict(first_gap.is_some_and(|g| g <= 3.0)),
    ));
    let both = |ours: Option<Rows>, reference: Option<Rows>, target: f64| {
        let rec = faster(received(ours), received(reference));
        let par = faster(parsed(ours), parsed(reference));
        // What the client alone spends on our answer (parsed − received), against what the
        // target leaves for the whole call (the reference's parsed time ÷ the target): when
        // the first is larger, no server can meet the target measured through this client.
        let reach = match (parsed(ours), received(ours), parsed(reference)) {
            (Some(p), Some(r), Some(theirs)) if par.is_some_and(|x| x < target) => {
                let client = p.median.saturating_sub(r.median);
                let budget = theirs.median.div_f64(target);
                let (client_ms, budget_ms) = (ms(client), ms(budget));
                if client >= budget {
                    format!(
                        " (rmcp's parse alone takes {client_ms} of it, over the {budget_ms} the \
                         target allows: out of reach for any server measured this way)"
                    )
                } else {
                    format!(
                        " (rmcp's parse takes {client_ms} of it; the target allows {budget_ms})"
                    )
                }
            }
            _ => String::new(),
        };
        format!(
            "received {} — {}; parsed by rmcp's client {} — {}{reach}",
            opt(rec),
            verdict(rec.is_some_and(|x| x >= target)),
            opt(par),
            verdict(par.is_some_and(|x| x >= target)),
        )
    };
    line(format!(
        "- 1,000-row result ≥ 8× faster than the reference: {}",
        both(o.rows_1k, r.rows_1k, 8.0)
    ));
    let rss_vs_response = match (o.peak_rss_raised_kb, o.response_bytes_raised) {
        (Some(kb), Some(bytes)) if bytes > 0 => Some(kb as f64 * 1024.0 / bytes as f64),
        _ => None,
    };
    line(format!(
        "- 100,000 rows with limits raised ≥ 10× faster than the reference: {}; peak RSS ≤ 2.5× the response ({}): {} — {}",
        both(o.rows_100k_raised, r.rows_100k, 10.0),
        o.response_bytes_raised
            .map(|b| format!("{:.1} MB", b as f64 / 1e6))
            .unwrap_or_else(|| "–".into()),
        rss_vs_response
            .map(|x| format!("{x:.2}×"))
            .unwrap_or_else(|| "–".into()),
        verdict(rss_vs_response.is_some_and(|x| x <= 2.5)),
    ));
    let steady = faster(o.steady, r.steady);
    line(format!(
        "- Steady `readonly_query` ≥ 6× faster than the reference: {} — {}",
        opt(steady),
        verdict(steady.is_some_and(|x| x >= 6.0)),
    ));
    let tp = |a: &Option<Throughput>, b: &Option<Throughput>| match (a, b) {
        (Some(a), Some(b)) => Some(a.per_second() / b.per_second()),
        _ => None,
    };
    let tp_sessions = tp(&o.sessions, &r.sessions);
    let tp_one = tp(&o.one_session, &r.one_session);
    line(format!(
        "- {CLIENTS} server processes × 1 caller ≥ 8× the reference: {} — {} ({} with {CLIENTS} callers on one session)",
        opt(tp_sessions),
        verdict(tp_sessions.is_some_and(|x| x >= 8.0)),
        opt(tp_one),
    ));
    let rss = |a: Option<u64>| Some(a? as f64 / r.peak_rss_kb? as f64);
    let rss_default = rss(o.peak_rss_kb);
    line(format!(
        "- Peak RSS at default limits ≤ 1/4 of the reference's: {} — {}",
        rss_default
            .map(|x| format!("{x:.3}"))
            .unwrap_or_else(|| "–".into()),
        verdict(rss_default.is_some_and(|x| x <= 0.25)),
    ));
    for (who, t) in [
        ("ours, sessions", &o.sessions),
        ("ours, one session", &o.one_session),
        ("reference, sessions", &r.sessions),
        ("reference, one session", &r.one_session),
    ] {
        if let Some(Throughput {
            errors,
            first_error: Some(e),
            ..
        }) = t
        {
            let e: String = e.chars().take(300).collect();
            line(format!(
                "- Note: {errors} failed calls during throughput ({who}); first: {e}"
            ));
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Machine facts

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| format!("{:.1} GB RAM", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "RAM unknown".into())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn git_rev() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn python_version(reference_bin: &Path) -> Option<String> {
    let python = reference_bin.parent()?.join("python");
    let out = Command::new(python).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
