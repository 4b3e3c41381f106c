//! Entry point: parse the command line, start logging to stderr, serve MCP on stdio.

// rmcp's service future nests deeply enough to exceed the default layout depth.
#![recursion_limit = "256"]

use std::process::ExitCode;

use clap::Parser;
use rmcp::ServiceExt;

use aurora_dsql_mcp_server::config::{Args, Config, Env};
use aurora_dsql_mcp_server::connection::pool;
use aurora_dsql_mcp_server::executor::Executor;
use aurora_dsql_mcp_server::server::DsqlServer;
use aurora_dsql_mcp_server::tools::Toolbox;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(), // --help and --version print and exit 0
        Err(e) => {
            let first = e.to_string();
            let first = first.lines().next().unwrap_or("invalid arguments");
            eprintln!("aurora-dsql-mcp-server: {first} (see --help)");
            return ExitCode::from(2);
        }
    };
    init_logging();
    let config = match Config::from_args(args, &Env::from_process()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("aurora-dsql-mcp-server: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aurora-dsql-mcp-server: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> ExitCode {
    let executor = match &config.database {
        Some(db) => match pool::build(db, config.access) {
            Ok(pool) => {
                tracing::info!(
                    endpoint = %db.endpoint, port = db.port, user = %db.user, region = %db.region,
                    access = ?config.access, "database configured"
                );
                Some(std::sync::Arc::new(Executor::new(
                    pool,
                    config.limits,
                    config.retry,
                )))
            }
            Err(e) => {
                eprintln!("aurora-dsql-mcp-server: {e}");
                return ExitCode::from(1);
            }
        },
        None => {
            tracing::warn!(
                missing = %config.missing.join(", "),
                "no cluster configured: database tools will answer \"Database not configured\"; lint and documentation tools work"
            );
            None
        }
    };
    let server = DsqlServer::new(Toolbox { config, executor });
    let running = match server.serve(rmcp::transport::stdio()).await {
        Ok(running) => running,
        Err(e) => {
            tracing::error!("MCP session could not start: {e}");
            return ExitCode::from(1);
        }
    };
    match running.waiting().await {
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
