//! `aurora-dsql-mcp-server migrate [--dry-run] DIR`: applies every `*.sql` file of DIR in
//! lexical order as a migration named by its file stem, with the connection flags and
//! environment serving uses (given after the subcommand, as `check` takes them).
//!
//! One line per step on stdout; while a job or a batched write runs and stderr is a
//! terminal, a progress line on stderr. Exit status: 0 when every file applied (or, with
//! `--dry-run`, planned), 1 when one failed (the later files are not tried), 2 for a folder
//! that cannot be read or a configuration that cannot run.
//!
//! This is a command-line mode, not MCP: it prints to stdout.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::clusters::{self, Clusters};
use crate::config::Config;
use crate::executor::{Control, Event, Observer};
use crate::policy::Access;

use super::{lock, runner};

/// Progress on stderr, redrawn on one line, only when stderr is a terminal.
struct Progress {
    tty: bool,
}

impl Observer for Progress {
    fn event(&self, event: Event) {
        if let (true, Event::Progress { message, .. }) = (self.tty, event) {
            let mut err = std::io::stderr();
            let _ = write!(err, "\r\x1b[2K  {message}");
            let _ = err.flush();
        }
    }
}

fn clear_progress(tty: bool) {
    if tty {
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
}

/// The `*.sql` files of `dir`, by name.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    Ok(files)
}

pub async fn run(
    config: &Config,
    local: Option<clusters::Local>,
    dir: &Path,
    dry_run: bool,
) -> ExitCode {
    let fail = |m: String| {
        eprintln!("aurora-dsql-mcp-server migrate: {m}"); // stdout-ok (stderr)
        ExitCode::from(2)
    };
    let files = match files(dir) {
        Ok(f) if f.is_empty() => return fail(format!("{}: no *.sql files", dir.display())),
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let registry = match Clusters::build(config, local) {
        Ok(r) => r,
        Err((name, e)) => return fail(format!("cluster {name}: {e}")),
    };
    let Some(cluster) = registry
        .all()
        .find(|c| c.name == registry.default_name())
        .cloned()
    else {
        return fail(format!(
            "no cluster configured (missing: {})",
            config.missing.join(", ")
        ));
    };
    if !dry_run && cluster.access == Access::ReadOnly {
        return fail(
            "applying migrations needs --allow-writes (or allow_writes = true for the cluster in the clusters file); \
             --dry-run shows the plan without it"
                .into(),
        );
    }
    let tty = std::io::stderr().is_terminal();
    let progress = Progress { tty };
    let ctl = Control::new(Default::default(), &progress);
    let settings = runner::Settings {
        allowed: &config.allowed_functions,
        rules: config.rules,
        job_timeout: config.job_timeout,
    };
    let holder = lock::holder_name("migrate");
    let mut applied = 0;
    for file in &files {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sql = match std::fs::read_to_string(file) {
            Ok(s) => s,
            Err(e) => return fail(format!("{}: {e}", file.display())),
        };
        if dry_run {
            match runner::dry_run(Some(&cluster.executor), &name, &sql, &settings, &ctl).await {
                Ok(plan) => {
                    for s in plan["steps"].as_array().into_iter().flatten() {
                        let line = format!(
                            "{name} step {}/{} {:<8} {:<8} {} (transaction {})",
                            s["step"],
                            plan["steps"].as_array().map_or(0, Vec::len),
                            s["kind"].as_str().unwrap_or(""),
                            s["state"].as_str().unwrap_or("pending"),
                            s["command"].as_str().unwrap_or(""),
                            s["transaction"],
                        );
                        println!("{line}"); // stdout-ok
                    }
                    if let Some(p) = plan["problem"].as_str() {
                        println!("{name}: {p}"); // stdout-ok
                        return ExitCode::from(1);
                    }
                }
                Err(e) => {
                    println!("{name}: {e}"); // stdout-ok
                    return ExitCode::from(1);
                }
            }
            continue;
        }
        let print = |r: &runner::StepReport| {
            clear_progress(tty);
            println!("{}", r.line(&name)); // stdout-ok
        };
        let result = Box::pin(runner::apply(
            &cluster.executor,
            &name,
            &sql,
            &settings,
            &holder,
            &print,
            &ctl,
        ))
        .await;
        clear_progress(tty);
        match result {
            Ok(out) => {
                if out["status"] == "already_applied" {
                    println!("{name}: already applied"); // stdout-ok
                } else {
                    println!("{name}: applied"); // stdout-ok
                }
                if let Some(n) = out["lock_note"].as_str() {
                    println!("{name}: {n}"); // stdout-ok
                }
                applied += 1;
            }
            Err(f) => {
                println!("{name}: FAILED: {}", f.message); // stdout-ok
                return ExitCode::from(1);
            }
        }
    }
    if dry_run {
        let line = format!(
            "dry run: {} migration(s) planned, nothing changed",
            files.len()
        );
        println!("{line}"); // stdout-ok
    } else {
        println!("{applied} migration(s) applied"); // stdout-ok
    }
    ExitCode::SUCCESS
}
