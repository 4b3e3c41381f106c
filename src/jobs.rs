//! Waiting for DSQL's asynchronous jobs (`CREATE INDEX ASYNC`, `ALTER TABLE ASYNC …
//! VALIDATE`) by polling `sys.jobs`, on top of the executor.
//!
//! Why polling and not `CALL sys.wait_for_job`: the procedure blocks one connection for the
//! whole build, must run outside a transaction (so not in read-only mode), and ends with an
//! opaque timeout. A short read-only `SELECT` on `sys.jobs` every second or two is a read,
//! so the wait works on a read-only server, each poll is an ordinary unit of work (retry,
//! cancellation, deadline), and the caller hears progress between polls.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::executor::{Control, Event, ExecError, Executor, Mode, Statement, Work};

/// Length of a DSQL job id (a base32 rendering of 128 bits).
pub const JOB_ID_LEN: usize = 26;

/// `timeout_seconds` when the caller gives none, and the most a caller may ask for.
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;
pub const MAX_TIMEOUT_SECS: u64 = 3600;

/// The states a job is still running in; every other state is final.
pub const RUNNING: &[&str] = &["submitted", "processing"];
/// The states `list_jobs` may filter on (DSQL's lower-case spellings; both spellings of
/// the cancelled state, which the documentation does not settle).
pub const STATUSES: &[&str] = &[
    "submitted",
    "processing",
    "completed",
    "failed",
    "cancelled",
    "canceled",
];

const JOB_COLUMNS: &str = "job_id, status, job_type, object_name, details, \
     start_time::text AS start_time, update_time::text AS update_time";

/// The most rows `list_jobs` returns (newest first).
pub const LIST_LIMIT: usize = 100;

/// Refuses anything that is not a DSQL job id, before any connection.
pub fn check_job_id(id: &str) -> Result<(), String> {
    let ok = id.len() == JOB_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
    if ok {
        return Ok(());
    }
    Err(format!(
        "invalid job_id {id:?}: a DSQL job id is {JOB_ID_LEN} characters of a-z and 2-7 \
         (the job_id column returned by CREATE INDEX ASYNC, or list_jobs)"
    ))
}

/// Refuses a `list_jobs` status filter DSQL never reports.
pub fn check_status(status: &str) -> Result<(), String> {
    if STATUSES.contains(&status) {
        return Ok(());
    }
    Err(format!(
        "invalid status {status:?}: use one of {}",
        STATUSES.join(", ")
    ))
}

/// One job's row, or `None` when `sys.jobs` has no such job.
pub async fn fetch(
    executor: &Executor,
    id: &str,
    ctl: &Control<'_>,
) -> Result<Option<Map<String, Value>>, ExecError> {
    let work = Work::new(
        Mode::ReadOnly,
        vec![Statement {
            sql: format!("SELECT {JOB_COLUMNS} FROM sys.jobs WHERE job_id = $1"),
            params: vec![Value::from(id)],
        }],
    );
    Ok(executor.run(&work, ctl).await?.rows.into_iter().next())
}

/// The jobs `sys.jobs` holds, newest first, optionally of one status.
pub async fn list(
    executor: &Executor,
    status: Option<&str>,
    ctl: &Control<'_>,
) -> Result<Vec<Map<String, Value>>, ExecError> {
    let (filter, params) = match status {
        Some(s) => ("WHERE status = $1 ", vec![Value::from(s)]),
        None => ("", vec![]),
    };
    let work = Work::new(
        Mode::ReadOnly,
        vec![Statement {
            sql: format!(
                "SELECT {JOB_COLUMNS} FROM sys.jobs {filter}ORDER BY start_time DESC, job_id LIMIT {LIST_LIMIT}"
            ),
            params,
        }],
    );
    Ok(executor.run(&work, ctl).await?.rows)
}

/// Why a wait ended without a final state.
#[derive(Debug)]
pub enum WaitError {
    /// The job id is not in `sys.jobs`.
    NotFound,
    /// Still running when the timeout passed; the last row seen.
    TimedOut(Map<String, Value>),
    /// The call was cancelled, or the server is stopping.
    Cancelled,
    Exec(ExecError),
}

/// How long to sleep before poll number `n` (0-based): 0.25 s, 0.5 s, 1 s, then every 2 s.
fn poll_delay(n: u32) -> Duration {
    Duration::from_millis(250u64 << n.min(3))
}

/// Polls until the job leaves `submitted`/`processing`, the timeout passes, or the call is
/// cancelled. Sends an `Event::Progress` after each poll that finds it still running.
/// Returns the final row and how long the wait took.
pub async fn wait(
    executor: &Executor,
    id: &str,
    timeout: Duration,
    ctl: &Control<'_>,
) -> Result<(Map<String, Value>, Duration), WaitError> {
    let started = Instant::now();
    let mut n = 0u32;
    loop {
        let row = fetch(executor, id, ctl)
            .await
            .map_err(WaitError::Exec)?
            .ok_or(WaitError::NotFound)?;
        let status = row.get("status").and_then(Value::as_str).unwrap_or("");
        if !RUNNING.contains(&status) {
            return Ok((row, started.elapsed()));
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(WaitError::TimedOut(row));
        }
        ctl.observer.event(Event::Progress {
            step: u64::from(n) + 1,
            message: format!("job {id} is {status} after {:.1} s", waited.as_secs_f64()),
        });
        let delay = poll_delay(n).min(timeout - waited);
        n = n.saturating_add(1);
        tokio::select! {
            _ = ctl.cancel.cancelled() => return Err(WaitError::Cancelled),
            _ = ctl.shutdown.cancelled() => return Err(WaitError::Cancelled),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// The `wait_for_job` result for a job in a final state.
pub fn ended(mut row: Map<String, Value>, waited: Duration) -> Value {
    let status = row
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let succeeded = status == "completed";
    row.insert("succeeded".into(), Value::Bool(succeeded));
    row.insert(
        "waited_seconds".into(),
        json!((waited.as_secs_f64() * 10.0).round() / 10.0),
    );
    if !succeeded {
        let details = row
            .get("details")
            .and_then(Value::as_str)
            .unwrap_or("no details recorded")
            .to_owned();
        let name = row
            .get("object_name")
            .and_then(Value::as_str)
            .unwrap_or("the object")
            .to_owned();
        row.insert(
            "note".into(),
            Value::String(format!(
                "The job ended {status}: {details}. The index or constraint {name} is not usable \
                 (describe_table shows valid=false). Fix the cause (for a UNIQUE index, the duplicate rows), \
                 DROP the invalid index, and run the ASYNC statement again."
            )),
        );
    }
    Value::Object(row)
}

/// The message for a wait that timed out: the job runs on; how to wait again.
pub fn timed_out_message(id: &str, row: &Map<String, Value>, waited_secs: u64) -> String {
    let field = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    format!(
        "job {id} is still {} after {waited_secs} s ({} on {}, started {}). It keeps running on the cluster: \
         call wait_for_job again with the same job_id (timeout_seconds up to {MAX_TIMEOUT_SECS}) to keep waiting, \
         or list_jobs to see it.",
        field("status"),
        field("job_type"),
        field("object_name"),
        field("start_time"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_checked() {
        assert!(check_job_id("abcdefghijklmnopqrstuvwxyz").is_ok());
        assert!(check_job_id("ncawtq7s5jfwpnoc5ckvqmyxwi").is_ok());
        assert_eq!(
            check_job_id("abc").unwrap_err(),
            "invalid job_id \"abc\": a DSQL job id is 26 characters of a-z and 2-7 (the job_id column returned by CREATE INDEX ASYNC, or list_jobs)"
        );
        // 0, 1, 8, 9 are not base32 digits; neither are upper case, quotes or spaces.
        assert!(check_job_id("abcdefghijklmnopqrstuvwxy1").is_err());
        assert!(check_job_id("ABCDEFGHIJKLMNOPQRSTUVWXYZ").is_err());
        assert!(check_job_id("abcdefghijklmnopqrstuvwx'z").is_err());
        assert!(check_job_id("abcdefghijklmnopqrstuvwxyzz").is_err());
    }

    #[test]
    fn poll_delays_grow_to_two_seconds() {
        let d: Vec<u64> = (0..6).map(|n| poll_delay(n).as_millis() as u64).collect();
        assert_eq!(d, [250, 500, 1000, 2000, 2000, 2000]);
    }
}
