//! `apply_migration`, `list_migrations`, `execute_batched`: thin handlers over
//! `crate::migrate` (plan, history, lock, runner, batched writes).
//!
//! `apply_migration` needs write access unless `dry_run`; a dry run and `list_migrations`
//! are reads, so a read-only server plans and lists but never applies.

use serde_json::{Map, Value, json};

use super::args::ArgReader;
use super::{Call, Output, ToolError, ToolResult, check_sql_size};
use crate::executor::Control;
use crate::migrate::{batched, history, lock, runner, split};
use crate::policy::{self, Access, PolicyError};

fn settings<'a>(tb: &'a Call<'_>) -> runner::Settings<'a> {
    runner::Settings {
        allowed: &tb.config.allowed_functions,
        rules: tb.config.rules,
        job_timeout: tb.config.job_timeout,
    }
}

/// A write through these tools needs write access, and no tenant bound: a migration is DDL
/// and a batched write touches rows by primary key ranges, neither of which tenant
/// isolation (`policy::tenant`) scopes, so a tenant session is refused rather than trusted.
fn needs_writes(tb: &Call<'_>, what: &str) -> Result<(), ToolError> {
    if let Some(tenant) = tb.tenant() {
        return Err(ToolError(format!(
            "Tenant isolation refused {what}: this session is bound to tenant {tenant}, and migrations and batched writes are not scoped to one tenant; run them from a session without --tenant"
        )));
    }
    if tb.access() == Access::ReadOnly {
        return Err(ToolError(tb.refusal(PolicyError::WriteNotAllowed(
            format!("{what} needs {}", tb.write_requirement()),
        ))));
    }
    Ok(())
}

pub async fn apply_migration(
    tb: &Call<'_>,
    args: &Map<String, Value>,
    ctl: &Control<'_>,
) -> ToolResult {
    let mut a = ArgReader::new("apply_migration", args);
    let name = a.string("name");
    let sql = a.string("sql");
    let dry_run = a.boolean_or("dry_run", false);
    a.finish().map_err(ToolError)?;
    check_sql_size(&sql)?;
    let executor = tb.executor()?;
    let settings = settings(tb);
    if dry_run {
        let plan = runner::dry_run(Some(executor), &name, &sql, &settings, ctl)
            .await
            .map_err(ToolError)?;
        return Ok(Output::Structured(plan));
    }
    needs_writes(tb, "apply_migration (without dry_run)")?;
    let holder = lock::holder_name("apply_migration");
    runner::apply(executor, &name, &sql, &settings, &holder, &|_| {}, ctl)
        .await
        .map(Output::Structured)
        .map_err(|f| ToolError(f.text(&name)))
}

pub async fn list_migrations(
    tb: &Call<'_>,
    args: &Map<String, Value>,
    ctl: &Control<'_>,
) -> ToolResult {
    ArgReader::new("list_migrations", args)
        .finish()
        .map_err(ToolError)?;
    let executor = tb.executor()?;
    let rows = history::summary(executor, ctl)
        .await
        .map_err(|e| ToolError(e.to_string()))?;
    let migrations: Vec<Value> = rows
        .into_iter()
        .map(|mut r| {
            let done = r.get("steps_done").and_then(Value::as_u64).unwrap_or(0);
            let total = r.get("steps_total").and_then(Value::as_u64).unwrap_or(0);
            let status = if done == total {
                "applied"
            } else if r.get("started_step").is_some_and(|v| !v.is_null()) {
                "started"
            } else if r.get("failed_step").is_some_and(|v| !v.is_null()) {
                "failed"
            } else {
                "partial"
            };
            r.insert("status".into(), json!(status));
            Value::Object(r)
        })
        .collect();
    Ok(Output::Structured(json!({
        "migrations": migrations,
        "count": migrations.len(),
        "table": history::TABLE,
    })))
}

pub async fn execute_batched(
    tb: &Call<'_>,
    args: &Map<String, Value>,
    ctl: &Control<'_>,
) -> ToolResult {
    let mut a = ArgReader::new("execute_batched", args);
    let sql = a.string("sql");
    let parameters = a.values("parameters");
    let size = a.integer("batch_size");
    a.finish().map_err(ToolError)?;
    let executor = tb.executor()?;
    if sql.trim().is_empty() {
        return Err(ToolError(
            "Incorrect invocation: execute_batched invoked without a SQL statement".into(),
        ));
    }
    check_sql_size(&sql)?;
    needs_writes(tb, "execute_batched")?;
    let size = match size {
        None => split::DEFAULT_BATCH,
        Some(n) => split::batch_size(n).map_err(ToolError)?,
    };
    let parameters = parameters.unwrap_or_default();
    let checked = super::power::write_policy(tb, &sql, parameters.len())?;
    if checked.kind != policy::StatementKind::Dml
        || !matches!(checked.command.as_str(), "UPDATE" | "DELETE")
    {
        return Err(ToolError(format!(
            "execute_batched runs one UPDATE or DELETE in batches; this is {} (use execute)",
            checked.command
        )));
    }
    let policy = batched::Policy {
        allowed: &tb.config.allowed_functions,
        rules: tb.config.rules,
    };
    match batched::run(executor, &checked.sql, &parameters, size, &policy, ctl).await {
        Ok(done) => Ok(Output::Structured(done.to_json())),
        Err(f) => Err(ToolError(format!(
            "{}\nBefore it stopped, {} batches changed {} rows and committed. {}",
            f.error,
            f.done.batches,
            f.done.rows,
            batched::NOT_ATOMIC
        ))),
    }
}
