//! Entry point: parse the command line, start logging to stderr, then serve MCP on stdio
//! (against a cluster, or the `--local` sandbox; stdio goes through the front door,
//! `stdio.rs`) or on Streamable HTTP (`http`), or run the `check` or `migrate` command.

// rmcp's service future nests deeply enough to exceed the default layout depth.
#![recursion_limit = "256"]

use std::process::ExitCode;

use clap::Parser;
use rmcp::ServiceExt;

use aurora_dsql_mcp_server::check;
use aurora_dsql_mcp_server::clusters::{self, Clusters};
use aurora_dsql_mcp_server::config::{
    Args, Command, Config, Env, HttpConfig, Transport, TransportKind,
};
use aurora_dsql_mcp_server::connection::token::TokenMinter;
use aurora_dsql_mcp_server::http;
use aurora_dsql_mcp_server::sandbox::{self, Sandbox};
use aurora_dsql_mcp_server::server::DsqlServer;
use aurora_dsql_mcp_server::stdio::FrontDoor;
use aurora_dsql_mcp_server::tools::Toolbox;

/// The HTTP runtime's cap on blocking threads (see `main`).
const BLOCKING_THREADS: usize = 32;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(), // --help and --version print and exit 0
        Err(e) => {
            let first = e.to_string();
            let first = first.lines().next().unwrap_or("invalid arguments");
            complain(format_args!("{first} (see --help)"));
            return ExitCode::from(2);
        }
    };
    init_logging();
    let http = args.http.transport == TransportKind::Http;
    // Every thread that runs tasks has the policy's stack and says so, so the SQL policy
    // runs on it directly rather than on a helper thread (`policy::on_big_stack`). The
    // stacks are reserved address space; only the pages a deep statement touches are used.
    let stack = aurora_dsql_mcp_server::policy::CHECK_STACK;
    if http {
        // A team server: calls from many clients, run on every core. The stack size also
        // applies to tokio's blocking threads (file reads, name lookups, the sandbox's
        // start), whose default cap of 512 would reserve 32 GiB of address space, and
        // charge it where the kernel counts commitments strictly; 32 such threads are
        // plenty for what runs there.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_stack_size(stack)
            .max_blocking_threads(BLOCKING_THREADS)
            .on_thread_start(aurora_dsql_mcp_server::policy::big_stack_thread)
            .build();
        return match runtime {
            Ok(rt) => rt.block_on(run(args)),
            Err(e) => {
                complain(format_args!("cannot start the async runtime: {e}"));
                ExitCode::from(1)
            }
        };
    }
    // One client on stdio: one thread runs the front door, rmcp, the tools and the
    // database connections. A call then crosses no thread (a multi-threaded runtime woke
    // another worker at almost every hop of every call, and on a busy machine those
    // wake-ups were most of a small call's time); the database works in parallel anyway.
    let started = std::thread::Builder::new()
        .name("dsql-mcp".into())
        .stack_size(stack)
        .spawn(move || {
            aurora_dsql_mcp_server::policy::big_stack_thread();
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(run(args)),
                Err(e) => {
                    complain(format_args!("cannot start the async runtime: {e}"));
                    ExitCode::from(1)
                }
            }
        });
    match started.map(std::thread::JoinHandle::join) {
        Ok(Ok(code)) => code,
        Ok(Err(_)) => ExitCode::from(101),
        Err(e) => {
            complain(format_args!("cannot start the server's thread: {e}"));
            ExitCode::from(1)
        }
    }
}

async fn run(mut args: Args) -> ExitCode {
    let checking = args.command == Some(Command::Check);
    let config_command = args.command.clone();
    let env = Env::from_process();
    // Listen for SIGINT/SIGTERM before anything is started, so none of it is left behind.
    let mut stop = match Stop::listen() {
        Ok(stop) => stop,
        Err(e) => {
            complain(format_args!("cannot install signal handlers: {e}"));
            return ExitCode::from(1);
        }
    };

    let mut sandbox = None;
    let mut sandbox_error = None;
    if args.local {
        let dir = args.local_dir.clone();
        let job_seconds = args.local_job_seconds;
        let user = sandbox::login_role(args.database_user.as_deref());
        let started = match &user {
            Ok(_) => tokio::task::spawn_blocking(move || Sandbox::start(dir, job_seconds)).await,
            Err(e) => Ok(Err(sandbox::ClusterError(e.clone()))),
        };
        match started {
            Ok(Ok(sb)) => {
                tracing::info!(
                    port = sb.port(),
                    folder = %sb.cluster().root().display(),
                    kept = sb.cluster().kept(),
                    "local sandbox started"
                );
                let region = args
                    .region
                    .clone()
                    .or_else(|| env.region.clone())
                    .or_else(|| env.aws_region.clone())
                    .unwrap_or_else(|| sandbox::DEFAULT_REGION.to_owned());
                args.cluster_endpoint = Some("localhost".into());
                args.port = Some(sb.port());
                args.database_user = user.ok();
                args.region = Some(region);
                args.ssl_root_cert = Some(sb.ca_path().to_path_buf());
                sandbox = Some(sb);
            }
            Ok(Err(e)) => sandbox_error = Some(e.to_string()),
            Err(e) => sandbox_error = Some(format!("the sandbox start-up panicked: {e}")),
        }
        if let Some(e) = &sandbox_error
            && !checking
        {
            complain(format_args!("--local: {e}"));
            return ExitCode::from(1);
        }
    }

    let code = match Config::from_args(args, &env) {
        Err(e) if checking => check::config_failed(&e),
        Err(e) => {
            complain(format_args!("{e}"));
            ExitCode::from(1)
        }
        Ok(config) => {
            // The sandbox's connections send its per-run password instead of a token.
            let minter = match (&sandbox, config.database()) {
                (Some(sb), Some(db)) => Some(sb.minter(db)),
                _ => None,
            };
            if let Some(Command::Migrate { dry_run, dir }) = &config_command {
                let local = minter.map(|minter| clusters::Local {
                    minter,
                    rewriter: sandbox::rewriter(),
                });
                tokio::select! {
                    code = aurora_dsql_mcp_server::migrate::cli::run(&config, local, dir, *dry_run) => code,
                    _ = stop.signalled() => ExitCode::from(130),
                }
            } else if checking {
                let local = match (&sandbox, sandbox_error) {
                    (Some(sb), _) => check::Local::Started(sb),
                    (None, Some(e)) => check::Local::Failed(e),
                    (None, None) => check::Local::No,
                };
                tokio::select! {
                    code = check::run(&config, local, minter) => code,
                    _ = stop.signalled() => ExitCode::from(130),
                }
            } else {
                serve(config, minter, sandbox.is_some(), &mut stop).await
            }
        }
    };
    if let Some(sb) = sandbox {
        // Stopping PostgreSQL waits for it: keep that off the async workers.
        let _ = tokio::task::spawn_blocking(move || drop(sb)).await;
    }
    code
}

async fn serve(
    config: Config,
    minter: Option<TokenMinter>,
    local: bool,
    stop: &mut Stop,
) -> ExitCode {
    let local_parts = minter.map(|minter| clusters::Local {
        minter,
        rewriter: sandbox::rewriter(),
    });
    let registry = match Clusters::build(&config, local_parts) {
        Ok(registry) => registry,
        Err((name, e)) if config.from_file => {
            complain(format_args!("cluster {name}: {e}"));
            return ExitCode::from(1);
        }
        Err((_, e)) => {
            complain(format_args!("{e}"));
            return ExitCode::from(1);
        }
    };
    for c in registry.all() {
        let db = &c.database;
        tracing::info!(
            cluster = %c.name, endpoint = %db.endpoint, port = db.port, user = %db.user, region = %db.region,
            access = ?c.access, default = c.name == registry.default_name(), local, "database configured"
        );
    }
    if registry.is_empty() {
        tracing::warn!(
            missing = %config.missing.join(", "),
            "no cluster configured: database tools will answer \"Database not configured\"; lint and documentation tools work"
        );
    }
    let warm: Vec<_> = registry.all().map(|c| c.executor.clone()).collect();
    if let Transport::Http(settings) = config.transport.clone() {
        return serve_http(config, registry, *settings, warm, stop).await;
    }
    let door = FrontDoor::stdio();
    let server = DsqlServer::new(Toolbox {
        config,
        clusters: registry,
    })
    .with_splices(door.splices());
    let calls = server.stopper();
    waiting_note();
    let stdin_closed = door.closed();
    let running = tokio::select! {
        running = server.serve(door) => match running {
            Ok(running) => running,
            Err(e) => {
                tracing::error!("MCP session could not start: {e}");
                return ExitCode::from(1);
            }
        },
        signal = stop.signalled() => {
            tracing::info!(signal, "stopping");
            return ExitCode::SUCCESS;
        }
    };
    // `initialize` has been answered.
    warm_up(warm);
    let cancel = running.cancellation_token();
    let waiting = running.waiting();
    tokio::pin!(waiting);
    let ended = tokio::select! {
        ended = &mut waiting => {
            stop_calls(&calls, stop).await;
            ended
        }
        _ = stdin_closed.cancelled() => {
            // stdin closed: the client is shutting the server down (MCP stdio). Calls in
            // flight are cancelled and rolled back at once, as on SIGTERM, and each caller
            // still gets its error response if it listens; nothing commits behind its back.
            tracing::info!("stdin closed; stopping");
            stop_calls(&calls, stop).await;
            cancel.cancel();
            waiting.await
        }
        signal = stop.signalled() => {
            tracing::info!(signal, "stopping");
            // Stop the calls first, while the session still writes to stdout, so each caller
            // gets its call's error response; then end the session.
            stop_calls(&calls, stop).await;
            cancel.cancel();
            waiting.await
        }
    };
    match ended {
        Ok(reason) => {
            tracing::info!(?reason, "MCP session ended");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("MCP session failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--transport http`: the same toolbox behind the HTTP transport (`http`).
async fn serve_http(
    config: Config,
    registry: Clusters,
    settings: HttpConfig,
    warm: Vec<std::sync::Arc<aurora_dsql_mcp_server::executor::Executor>>,
    stop: &mut Stop,
) -> ExitCode {
    let toolbox = Toolbox {
        config: config.clone(),
        clusters: registry,
    };
    let listener = match http::Listener::bind(DsqlServer::new(toolbox), &config, settings).await {
        Ok(listener) => listener,
        Err(e) => {
            complain(format_args!("{e}"));
            return ExitCode::from(1);
        }
    };
    warm_up(warm);
    match listener.serve(stop.signalled()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}

/// Loads, in the background, what the first tool call would otherwise pay for: the SQL
/// policy's catalog and each cluster's AWS SDK configuration (profiles, the credential
/// chain; its HTTP client reads no trust roots, `sdk_http`). Database TLS takes its
/// randomness from the OS (`connection::tls::provider`), so there is no generator to seed.
fn warm_up(executors: Vec<std::sync::Arc<aurora_dsql_mcp_server::executor::Executor>>) {
    tokio::spawn(async move {
        aurora_dsql_mcp_server::policy::warm();
        for executor in executors {
            executor.pool().manager().minter().warm().await;
        }
    });
}

/// How long the calls in flight get to stop (cancel, roll back, answer) before the process
/// exits anyway: the executor's cancel grace, plus a moment for the rollback and the answer.
const STOP_WAIT: std::time::Duration = aurora_dsql_mcp_server::executor::CANCEL_GRACE
    .saturating_add(std::time::Duration::from_secs(2));

/// Cancels every call in flight and waits for them, at most `STOP_WAIT`; a second signal
/// ends the wait at once.
async fn stop_calls(calls: &aurora_dsql_mcp_server::server::Stopper, stop: &mut Stop) {
    let running = calls.in_flight();
    let done = tokio::select! {
        done = calls.stop(STOP_WAIT) => done,
        signal = stop.signalled() => {
            tracing::warn!(signal, "second signal: not waiting for the calls in flight");
            false
        }
    };
    if !done {
        tracing::warn!(
            running,
            left = calls.in_flight(),
            "calls still in flight at exit; their connections close with the process (uncommitted work is rolled back by the cluster)"
        );
    } else if running > 0 {
        tracing::info!(running, "calls in flight were stopped and rolled back");
    }
}

/// SIGINT and SIGTERM, caught so that the sandbox is stopped and removed on the way out.
struct Stop {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Stop {
    fn listen() -> std::io::Result<Stop> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Stop {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves with the signal's name when one arrives.
    async fn signalled(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// Logs go to stderr only: stdout is the JSON-RPC stream. The default level never
/// prints SQL text, parameters or credentials; `RUST_LOG` overrides it.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,aurora_dsql_mcp_server=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .init();
}

/// One line on stderr, prefixed with the program's name: how start-up failures are reported
/// (stdout belongs to JSON-RPC).
fn complain(message: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "aurora-dsql-mcp-server: {message}");
}

/// The line a person who started the server by hand in a terminal sees (issue 14): the
/// server is not stuck, it waits for an MCP client speaking JSON-RPC on stdin. Only when
/// stdin is a terminal, so agent hosts (which pipe stdin) never see it; it goes to stderr.
fn waiting_note() {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        eprintln!("{}", aurora_dsql_mcp_server::server::WAITING_NOTE); // stdout-ok: stderr, for a person at a terminal
    }
}
