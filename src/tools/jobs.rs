//! `wait_for_job` and `list_jobs`: thin handlers over `crate::jobs` (polling `sys.jobs`).
//!
//! Both are reads, so both work on a read-only server: an agent that started an index
//! build elsewhere (or in an earlier session) can wait for it without write access.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::args::ArgReader;
use super::{Call, Output, ToolError, ToolResult};
use crate::executor::Control;
use crate::jobs::{self, WaitError};

pub async fn wait_for_job(
    tb: &Call<'_>,
    args: &Map<String, Value>,
    ctl: &Control<'_>,
) -> ToolResult {
    let mut a = ArgReader::new("wait_for_job", args);
    let id = a.string("job_id");
    let timeout = a.integer("timeout_seconds");
    a.finish().map_err(ToolError)?;
    jobs::check_job_id(&id).map_err(ToolError)?;
    let timeout = match timeout {
        None => jobs::DEFAULT_TIMEOUT_SECS,
        Some(t) if (1..=jobs::MAX_TIMEOUT_SECS as i64).contains(&t) => t as u64,
        Some(t) => {
            return Err(ToolError(format!(
                "timeout_seconds must be between 1 and {} (got {t})",
                jobs::MAX_TIMEOUT_SECS
            )));
        }
    };
    let executor = tb.executor()?;
    match jobs::wait(executor, &id, Duration::from_secs(timeout), ctl).await {
        Ok((row, waited)) => Ok(Output::Structured(jobs::ended(row, waited))),
        Err(WaitError::NotFound) => Err(ToolError(format!(
            "job {id} was not found in sys.jobs (DSQL keeps finished jobs for at least 30 minutes; list_jobs shows the jobs it holds)"
        ))),
        Err(WaitError::TimedOut(row)) => {
            Err(ToolError(jobs::timed_out_message(&id, &row, timeout)))
        }
        Err(WaitError::Cancelled) => Err(ToolError(format!(
            "waiting for job {id} was cancelled (or the server is stopping); the job itself keeps running on the cluster"
        ))),
        Err(WaitError::Exec(e)) => Err(ToolError(e.to_string())),
    }
}

pub async fn list_jobs(tb: &Call<'_>, args: &Map<String, Value>, ctl: &Control<'_>) -> ToolResult {
    let mut a = ArgReader::new("list_jobs", args);
    let status = a.string_or("status", "");
    a.finish().map_err(ToolError)?;
    let status = (!status.is_empty()).then_some(status);
    if let Some(s) = &status {
        jobs::check_status(s).map_err(ToolError)?;
    }
    let executor = tb.executor()?;
    let rows = jobs::list(executor, status.as_deref(), ctl)
        .await
        .map_err(|e| ToolError(e.to_string()))?;
    let rows: Vec<Value> = rows.into_iter().map(Value::Object).collect();
    let mut out = json!({ "jobs": rows, "count": rows.len() });
    if let Some(s) = status {
        out["status"] = Value::String(s);
    }
    if rows.len() == jobs::LIST_LIMIT {
        out["note"] = Value::String(format!(
            "Only the {} newest jobs are shown; filter by status to see others.",
            jobs::LIST_LIMIT
        ));
    }
    Ok(Output::Structured(out))
}
