//! Runs one tool call's unit of work on one pooled connection.
//!
//! A unit of work is the statements of one tool call. It holds a single connection from
//! its first statement to the session reset, so calls running at the same time never
//! share a transaction. The shape of every unit is fixed here, not by the caller:
//!
//! ```text
//! reads on a session read-only by default (one round trip):
//!   BEGIN TRANSACTION READ ONLY + Parse/Bind/Execute(1 .. n) + COMMIT; <reset>
//! other units in a transaction:
//!   BEGIN + Parse(1)                       -- nothing runs unless BEGIN succeeded
//!   Parse/Bind/Execute(1 .. n), pipelined  -- each parsed after the one before it ran
//!   COMMIT; <reset>                        -- writes: only after Execute(n) answered (3 round
//!                                          -- trips); reads: pipelined with them (2)
//! autocommit units, and statements with array parameters (their type must be known
//! first): Parse, then Bind/Execute, one statement after the other.
//!
//! <reset> = RESET ALL; RESET SESSION AUTHORIZATION; RESET ROLE;
//!           [SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY;]
//!           SELECT session_user, current_user, current_setting('standard_conforming_strings')
//! ```
//!
//! A write's COMMIT is never in flight before its last statement has answered: if the caller
//! goes away while that statement waits (on a lock, say), the backend finds no COMMIT behind
//! it and the transaction dies with the connection instead of committing unseen.
//!
//! Caller SQL only ever travels through the extended protocol, one statement per message,
//! so `COMMIT; DROP ...` cannot escape the transaction. The reset ends by reading the
//! session back (who it is, and the lexer setting the guard relies on); a connection whose
//! reset fails, or reads back anything but the configured user, is discarded.
//!
//! Failures DSQL makes ordinary are handled here, once for every tool:
//! - a broken connection: discarded, and the *whole* unit re-run once on a fresh connection
//!   (new token), inside its transaction again, never a lone statement outside it;
//! - SQLSTATE 40001 (OCC conflicts OC000/OC001): nothing committed, so the whole unit is re-run
//!   on a fresh snapshot with exponential backoff and jitter, a bounded number of times;
//! - a cluster that is waking up: the connection attempt is retried with backoff;
//! - a COMMIT whose connection died: the outcome is unknown, so it is reported, never re-run;
//! - the call's deadline, an MCP cancellation or the server's shutdown: the statement is
//!   cancelled on the server, the transaction rolled back, and the connection retired (a late
//!   cancel must not reach the next call);
//! - a pool whose connections all stay busy: the call waits at most `POOL_WAIT` and is told
//!   it never got a connection (`ExecError::Busy`), not that a statement was cancelled.
//!
//! Results are bounded (`Limits`) while they are read, so a huge result never sits in memory,
//! and all calls' rows together are held to one process-wide budget (`Limits::budget_bytes`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, join, pin_mut};
use postgres_types::{Kind, Type};
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::TextFormat;
use crate::connection::{ConnectError, DbError, PgConnection, Pool, Pooled, session_problem};
use crate::value::render::{self, RenderedRows, RowRenderer};
use crate::value::{self, TextParam};

/// How the statements of a unit run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Inside `BEGIN TRANSACTION READ ONLY` ... `COMMIT`.
    ReadOnly,
    /// Inside `BEGIN` ... `COMMIT`.
    ReadWrite,
    /// Outside a transaction block (DSQL's `CALL sys.wait_for_job`, which refuses one).
    Autocommit,
}

/// One statement, placeholders already translated to `$n`, with its JSON parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
}

/// The statements of one tool call and how they run.
#[derive(Clone, Debug, PartialEq)]
pub struct Work {
    pub mode: Mode,
    pub statements: Vec<Statement>,
    /// Keep every statement's rows, not only the last statement's.
    pub keep_all: bool,
    /// The caller needs the result's columns even when it has no rows.
    pub describe: bool,
    /// Rows go straight into the row tools' answer (`value::render`), their text copy in
    /// this format, instead of maps.
    pub rendered: Option<TextFormat>,
}

impl Work {
    /// A unit whose caller wants the last statement's result only.
    pub fn new(mode: Mode, statements: Vec<Statement>) -> Work {
        Work {
            mode,
            statements,
            keep_all: false,
            describe: false,
            rendered: None,
        }
    }

    /// The same unit, its rows rendered for the row tools' answer (`value::render`).
    pub fn rendered(mut self, format: TextFormat) -> Work {
        self.rendered = Some(format);
        self
    }
}

/// A result column: its name and SQL type name.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

/// Why a result was cut short.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Truncation {
    /// More than `Limits::max_rows` rows.
    Rows(usize),
    /// More than `Limits::max_bytes` bytes of response (each row as JSON and as text).
    Bytes(usize),
    /// The process-wide budget (`Limits::budget_bytes`) was in use by other calls' results.
    Budget(usize),
}

impl std::fmt::Display for Truncation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Truncation::Rows(n) => write!(f, "the result has more than {n} rows (--max-rows)"),
            Truncation::Bytes(n) => write!(
                f,
                "the result is larger than {n} bytes (--max-result-bytes)"
            ),
            Truncation::Budget(n) => write!(
                f,
                "the results of calls running at the same time hold the server's {n}-byte result budget (--result-memory-bytes)"
            ),
        }
    }
}

/// What one statement produced.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Outcome {
    pub columns: Vec<Column>,
    /// The rows as maps; empty when the unit asked for them rendered.
    pub rows: Vec<Map<String, Value>>,
    /// The rows rendered for the row tools' answer, when the unit asked for that
    /// (`Work::rendered`).
    pub rendered: Option<RenderedRows>,
    /// Rows inserted, updated, deleted or returned, as the command tag says
    /// (`None` when the result was truncated before the command completed).
    pub rows_affected: Option<u64>,
    /// Set when `rows` holds only the first part of the result.
    pub truncated: Option<Truncation>,
    /// Rows of the result read from the server, kept or not. A cut result is still read to
    /// its end (the connection must stay in step), so this is the whole result's row count
    /// at no extra cost: what a truncated answer reports as `totalRows`.
    pub rows_read: u64,
}

/// Bounds on one tool call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The whole call, retries included.
    pub timeout: Duration,
    /// Rows kept from one result.
    pub max_rows: usize,
    /// Bytes of row JSON kept from one result.
    pub max_bytes: usize,
    /// Bytes of row JSON all calls together may hold at once (the process-wide budget):
    /// a result that would go past it is cut, as one past `max_bytes` is.
    pub budget_bytes: usize,
}

/// The process-wide result budget when none is given: 256 MiB, or one whole result if
/// `--max-result-bytes` is larger.
pub fn default_budget(max_bytes: usize) -> usize {
    max_bytes.max(256 << 20)
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(50),
            max_rows: 1_000,
            max_bytes: 1 << 20,
            budget_bytes: default_budget(1 << 20),
        }
    }
}

/// How conflicts (40001) and a waking cluster are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Re-runs after the first attempt.
    pub max_retries: u32,
    /// Delay before the first re-run; doubles each time, with up to 25 % jitter.
    pub base: Duration,
    /// Longest delay between two attempts.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The delay before re-run number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.cap);
        let jitter = capped.mul_f64(fastrand::f64() * 0.25);
        (capped + jitter).min(self.cap)
    }
}

/// Something worth telling the agent while a call runs: log notifications for retries,
/// reconnects and truncation, and MCP progress notifications (`Event::progress`) when the
/// client asked for progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The unit is re-run after an OCC conflict or a waking cluster.
    Retry {
        /// Which re-run this is for `cause` (1-based), of at most `of`.
        retry: u32,
        of: u32,
        /// The attempt of the whole unit this starts (the first run is attempt 1).
        attempt: u32,
        delay: Duration,
        cause: RetryCause,
        reason: String,
    },
    /// The connection broke (dropped, or closed by the cluster when it expired); the unit
    /// is re-run on a fresh one, as attempt `attempt` of the whole unit.
    Reconnect { attempt: u32, reason: String },
    /// A result was cut short: `kept` of its `total` rows are returned.
    Truncated {
        kept: usize,
        total: u64,
        why: Truncation,
    },
    /// Another `ROWS_PER_PROGRESS` rows of one statement's result were read (kept or not):
    /// `rows` so far.
    RowsRead { rows: u64 },
    /// A long wait is still going (`wait_for_job`, batched writes); `step` counts them.
    Progress { step: u64, message: String },
}

/// Why a unit is run again with backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryCause {
    /// SQLSTATE 40001: an optimistic-concurrency conflict (DSQL's OC000 / OC001) or a
    /// serialization failure.
    Conflict,
    /// The cluster refused a new connection for now (waking up, or a connection limit).
    Waking,
}

/// A progress notification is sent every this many rows read from one result.
pub const ROWS_PER_PROGRESS: u64 = 10_000;

/// A result's reader lets the other tasks run after this many rows. Rows that have already
/// arrived are read without ever waiting, and on stdio one thread runs every task
/// (`main.rs`), so without this a large result would hold back the other calls, pings and
/// cancellations until its last row.
const ROWS_PER_YIELD: u64 = 1_000;

impl Event {
    /// The message of the MCP progress notification this event becomes when the client
    /// asked for progress (`None`: a log notification only). The MCP layer numbers the
    /// notifications of a call itself, so that their progress values strictly increase
    /// whichever events they come from.
    pub fn progress(&self) -> Option<String> {
        match self {
            Event::Retry {
                retry,
                of,
                attempt,
                delay,
                cause,
                reason,
            } => {
                let what = match cause {
                    RetryCause::Conflict => {
                        let occ = ["OC000", "OC001"]
                            .into_iter()
                            .find(|code| reason.contains(code))
                            .map_or(String::new(), |code| format!(", {code}"));
                        format!("OCC conflict (SQLSTATE 40001{occ}): re-running the whole unit of work")
                    }
                    RetryCause::Waking => "the cluster is not accepting connections yet (waking up, or a connection limit): connecting again".to_string(),
                };
                Some(format!(
                    "{what}, attempt {attempt} (retry {retry} of {of}) in {} ms",
                    delay.as_millis()
                ))
            }
            Event::Reconnect { attempt, .. } => Some(format!(
                "connection lost (dropped or expired): re-running the whole unit of work on a fresh connection, attempt {attempt}"
            )),
            Event::RowsRead { rows } => Some(format!("{rows} rows read")),
            Event::Progress { message, .. } => Some(message.clone()),
            Event::Truncated { .. } => None,
        }
    }
}

/// Receives events; the MCP layer turns them into log notifications.
pub trait Observer: Send + Sync {
    fn event(&self, event: Event);
}

/// An observer that ignores everything.
pub struct Silent;

impl Observer for Silent {
    fn event(&self, _: Event) {}
}

/// Why a unit failed. Each variant says which step failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("no connection available: {0}")]
    Pool(String),
    #[error("Failed to begin transaction: {0}")]
    Begin(DbError),
    // A limit error (54000) carries `LIMIT_ADVICE`: the agent must change the work, not retry it.
    #[error("{error}{}", limit_advice(.error))]
    Statement { index: usize, error: DbError },
    #[error("Failed to commit transaction: {0}{advice}", advice = limit_advice(.0))]
    Commit(DbError),
    #[error(
        "The connection was lost while committing; the outcome of the transaction is unknown. Check the data before re-running the writes. ({0})"
    )]
    CommitUnknown(DbError),
    #[error(
        "The call timed out after {0:?} (--query-timeout) and its statement was cancelled; nothing was committed. Narrow the query (WHERE, LIMIT) or raise --query-timeout."
    )]
    Timeout(Duration),
    #[error(
        "The call was cancelled by the client; its statement was cancelled and nothing was committed."
    )]
    Cancelled,
    #[error(
        "The server is shutting down; the call was stopped (its statement, if one was running, was cancelled) and nothing was committed."
    )]
    ShuttingDown,
    /// The call never got a connection: nothing of it ran.
    #[error(
        "All {size} database connections stayed busy with other calls for {waited:?}, so this call never got one; none of its statements ran and nothing was committed. Re-run it when the other calls have finished."
    )]
    Busy { size: usize, waited: Duration },
}

/// Longest wait for a free pooled connection, so a cheap call does not queue for the whole
/// query timeout behind long ones: past it the call fails with `ExecError::Busy`.
pub const POOL_WAIT: Duration = Duration::from_secs(5);

/// SQLSTATE 54000 (program_limit_exceeded): DSQL's per-transaction limits among others.
pub const LIMIT_EXCEEDED: &str = "54000";

/// Appended to a 54000 error: what DSQL limits and how to stay under them. Such an error is
/// never retried (only 40001 and broken connections are), since the same work fails again.
pub const LIMIT_ADVICE: &str = "\nDSQL limits each transaction to 3,000 modified rows, 10 MiB of modified data and 300 seconds (rows, columns and keys have size limits too). Re-running the same work fails again: split the work into batches of at most 3,000 rows / shorter transactions, one tool call per batch.";

/// `LIMIT_ADVICE` for a limit error, nothing for any other.
fn limit_advice(e: &DbError) -> &'static str {
    if e.code() == Some(LIMIT_EXCEEDED) {
        LIMIT_ADVICE
    } else {
        ""
    }
}

impl ExecError {
    /// The database error behind this failure, if any.
    pub fn db_error(&self) -> Option<&DbError> {
        match self {
            ExecError::Begin(e) | ExecError::Commit(e) | ExecError::CommitUnknown(e) => Some(e),
            ExecError::Statement { error, .. } => Some(error),
            ExecError::Connect(ConnectError::Postgres(e)) => Some(e),
            _ => None,
        }
    }

    /// The SQLSTATE behind this failure, if any.
    pub fn code(&self) -> Option<&str> {
        self.db_error().and_then(DbError::code)
    }

    /// The connection broke while in use, so the unit may run again on a fresh one. A
    /// connection that could not be opened is not "lost": the pool already tried a new one
    /// (new token), and a refused TLS handshake or login would only fail the same way again.
    fn broken(&self) -> bool {
        !matches!(self, ExecError::Connect(_)) && self.db_error().is_some_and(|e| e.broken)
    }

    /// An optimistic-concurrency conflict: nothing was committed, the unit may run again.
    pub fn is_conflict(&self) -> bool {
        !matches!(self, ExecError::CommitUnknown(_)) && self.code() == Some("40001")
    }

    /// The cluster refused a new connection for now: it is waking up from INACTIVE, or its
    /// connection rate (53400, 100/s) or connection count (53300) limit was hit. Waiting
    /// and trying again is the fix for all three; a refused login or TLS failure is not.
    fn is_waking(&self) -> bool {
        matches!(self, ExecError::Connect(ConnectError::Postgres(e))
            if e.message.contains("waking up cluster")
                || matches!(e.code(), Some("53300" | "53400")))
    }
}

/// How one call may be stopped, and who hears about retries and truncation.
pub struct Control<'a> {
    /// The client cancelled this call.
    pub cancel: CancellationToken,
    /// The server is stopping (SIGTERM, or stdin closed): every call is stopped.
    pub shutdown: CancellationToken,
    pub observer: &'a dyn Observer,
    /// The share of the result budget this call's rows hold; released when the `Control`
    /// is dropped, i.e. once the call's response has been built.
    pub held: Held,
}

impl<'a> Control<'a> {
    /// A call stopped by `cancel` (or `shutdown`), whose events go to `observer`.
    pub fn new(cancel: CancellationToken, observer: &'a dyn Observer) -> Control<'a> {
        Control {
            cancel,
            shutdown: CancellationToken::new(),
            observer,
            held: Held::default(),
        }
    }

    /// No cancellation, no observer.
    pub fn none() -> Control<'static> {
        Control::new(CancellationToken::new(), &Silent)
    }

    /// Resolves when the call must stop, with the reason.
    async fn stopped(&self) -> ExecError {
        tokio::select! {
            _ = self.cancel.cancelled() => ExecError::Cancelled,
            _ = self.shutdown.cancelled() => ExecError::ShuttingDown,
        }
    }
}

/// Permits of the process-wide result budget, kept for as long as a call's rows live.
#[derive(Clone, Default)]
pub struct Held(Arc<std::sync::Mutex<Vec<OwnedSemaphorePermit>>>);

impl Held {
    fn keep(&self, permit: OwnedSemaphorePermit) {
        if let Ok(mut held) = self.0.lock() {
            held.push(permit);
        }
    }

    /// Takes over `other`'s permits.
    fn absorb(&self, other: Held) {
        let taken = other.0.lock().map(|mut p| std::mem::take(&mut *p));
        if let (Ok(taken), Ok(mut held)) = (taken, self.0.lock()) {
            held.extend(taken);
        }
    }
}

/// Where read rows are accounted: the observer for truncation events, the process-wide
/// budget (in KiB permits) and the call's share of it.
struct Sink<'a> {
    observer: &'a dyn Observer,
    budget: &'a Arc<Semaphore>,
    budget_bytes: usize,
    held: &'a Held,
}

impl Sink<'_> {
    /// Takes `kib` more KiB of the budget for this call; `false` when it is in use.
    fn reserve(&self, kib: usize) -> bool {
        let Ok(kib) = u32::try_from(kib) else {
            return false;
        };
        match self.budget.clone().try_acquire_many_owned(kib) {
            Ok(permit) => {
                self.held.keep(permit);
                true
            }
            Err(_) => false,
        }
    }
}

/// The budget is counted in KiB permits, taken this many at a time.
const BUDGET_CHUNK_KIB: usize = 256;

/// How long a cancelled statement may take to stop before its connection is dropped.
pub const CANCEL_GRACE: Duration = Duration::from_secs(5);
/// How often the cancel request is repeated while the statement has not stopped.
const CANCEL_REPEAT: Duration = Duration::from_millis(500);

/// Rewrites one statement before it is prepared (the `--local` sandbox's DSQL emulation):
/// `Ok(None)` keeps it, `Ok(Some(sql))` replaces it, `Err` refuses the unit with that error.
pub type Rewriter = Arc<dyn Fn(&str) -> Result<Option<String>, DbError> + Send + Sync>;

/// Runs units of work on pooled connections.
pub struct Executor {
    pool: Arc<Pool>,
    limits: Limits,
    retry: RetryPolicy,
    rewriter: Option<Rewriter>,
    /// The process-wide result budget, in KiB permits.
    budget: Arc<Semaphore>,
}

impl Executor {
    pub fn new(pool: Arc<Pool>, limits: Limits, retry: RetryPolicy) -> Executor {
        let kib = (limits.budget_bytes / 1024).clamp(1, Semaphore::MAX_PERMITS);
        Executor {
            pool,
            limits,
            retry,
            rewriter: None,
            budget: Arc::new(Semaphore::new(kib)),
        }
    }

    /// Holds this executor's results to `other`'s budget instead of its own: the budget is
    /// process-wide, however many pools the process has.
    pub fn sharing_budget_of(mut self, other: &Executor) -> Executor {
        self.budget = other.budget.clone();
        self
    }

    /// Applies `rewriter` to every statement of every unit, before it is prepared.
    pub fn with_rewriter(mut self, rewriter: Rewriter) -> Executor {
        self.rewriter = Some(rewriter);
        self
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Runs `work` and returns the last statement's outcome.
    pub async fn run(&self, work: &Work, ctl: &Control<'_>) -> Result<Outcome, ExecError> {
        Ok(self.run_all(work, ctl).await?.pop().unwrap_or_default())
    }

    /// Runs `work` to completion, retrying as the module doc says. Returns one outcome per
    /// statement when `work.keep_all`, else only the last statement's.
    pub async fn run_all(&self, work: &Work, ctl: &Control<'_>) -> Result<Vec<Outcome>, ExecError> {
        let mut rewritten = None;
        if let Some(rewrite) = &self.rewriter {
            for (index, statement) in work.statements.iter().enumerate() {
                let error = |error| ExecError::Statement { index, error };
                if let Some(sql) = rewrite(&statement.sql).map_err(error)? {
                    rewritten.get_or_insert_with(|| work.clone()).statements[index].sql = sql;
                }
            }
        }
        let work = rewritten.as_ref().unwrap_or(work);
        let deadline = Instant::now() + self.limits.timeout;
        let mut reconnected = false;
        let mut retries = 0;
        let mut attempt = 1;
        loop {
            let result = self.attempt(work, ctl, deadline).await;
            let err = match result {
                Ok(outcomes) => return Ok(outcomes),
                Err(e) => e,
            };
            if err.broken() && !reconnected && !matches!(err, ExecError::CommitUnknown(_)) {
                reconnected = true;
                attempt += 1;
                ctl.observer.event(Event::Reconnect {
                    attempt,
                    reason: err.to_string(),
                });
                continue;
            }
            if (err.is_conflict() || err.is_waking()) && retries < self.retry.max_retries {
                retries += 1;
                let delay = self.retry.delay(retries);
                if Instant::now() + delay >= deadline {
                    return Err(err);
                }
                attempt += 1;
                ctl.observer.event(Event::Retry {
                    retry: retries,
                    of: self.retry.max_retries,
                    attempt,
                    delay,
                    cause: if err.is_conflict() {
                        RetryCause::Conflict
                    } else {
                        RetryCause::Waking
                    },
                    reason: err.to_string(),
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    stopped = ctl.stopped() => return Err(stopped),
                }
                continue;
            }
            return Err(err);
        }
    }

    /// One attempt on one connection, bounded by the deadline and the cancellation token.
    async fn attempt(
        &self,
        work: &Work,
        ctl: &Control<'_>,
        deadline: Instant,
    ) -> Result<Vec<Outcome>, ExecError> {
        // The wait for a connection is bounded on its own (`POOL_WAIT`), and a call that
        // never got one is told so, not that "its statement was cancelled".
        let waiting = Instant::now();
        let wait_end = deadline.min(waiting + POOL_WAIT);
        let conn = tokio::select! {
            conn = self.checkout() => conn?,
            _ = tokio::time::sleep_until(wait_end.into()) => return Err(ExecError::Busy {
                size: self.pool.status().max_size,
                waited: tenths(wait_end - waiting),
            }),
            stopped = ctl.stopped() => return Err(stopped),
        };
        let mut stopped = None;
        let committing = AtomicBool::new(false);
        // This attempt's share of the budget: handed to the call if its rows are returned,
        // released with them if the attempt fails (a re-run must not count twice).
        let attempt_held = Held::default();
        let sink = Sink {
            observer: ctl.observer,
            budget: &self.budget,
            budget_bytes: self.limits.budget_bytes,
            held: &attempt_held,
        };
        let done = {
            let unit = run_unit(&conn, work, &self.limits, &sink, &committing);
            pin_mut!(unit);
            let first = tokio::select! {
                done = &mut unit => Some(done),
                _ = tokio::time::sleep_until(deadline.into()) => {
                    stopped = Some(ExecError::Timeout(self.limits.timeout));
                    None
                }
                why = ctl.stopped() => {
                    stopped = Some(why);
                    None
                }
            };
            match first {
                Some(done) => Some(done),
                None => {
                    // Stop the statement on the server, then let the unit roll back and reset.
                    // PostgreSQL ignores a cancel that lands while the backend reads the next
                    // message of the statement (between Parse, Bind and Execute), so the
                    // request is repeated until the unit ends or the grace runs out; a
                    // statement left running would keep its backend busy after the drop.
                    // The cancel request itself is bounded by the grace too.
                    let cancel = conn.client.cancel_token();
                    let grace_end = tokio::time::Instant::now() + CANCEL_GRACE;
                    loop {
                        let tls = self.pool.manager().tls().clone();
                        match tokio::time::timeout_at(grace_end, cancel.cancel_query(tls)).await {
                            Err(_) => break None,
                            Ok(Err(e)) => tracing::warn!(
                                connection = conn.serial,
                                "cancel request failed: {}",
                                DbError::from(&e)
                            ),
                            Ok(Ok(())) => {}
                        }
                        tokio::select! {
                            done = &mut unit => break Some(done),
                            _ = tokio::time::sleep_until(grace_end) => break None,
                            _ = tokio::time::sleep(CANCEL_REPEAT) => {}
                        }
                    }
                }
            }
        };
        let result = match (done, stopped) {
            (Some(done), None) => finish_attempt(conn, done).await,
            (Some((result, _)), Some(stopped)) => {
                // The unit ended (usually 57014 query_canceled) and rolled back. The connection
                // is retired all the same: a cancel request still in flight could otherwise
                // land on the next call's statement on this backend. Timeouts and cancellations
                // are rare, so one reconnect each is the cheaper side of that trade.
                discard(conn);
                match result {
                    // It finished (a write: committed) before the cancel took: say what happened.
                    Ok(outcomes) => Ok(outcomes),
                    Err(e @ (ExecError::CommitUnknown(_) | ExecError::Commit(_))) => Err(e),
                    Err(_) => Err(stopped),
                }
            }
            (None, stopped) => {
                tracing::warn!(
                    connection = conn.serial,
                    "statement did not stop after cancel; dropping the connection"
                );
                discard(conn);
                if committing.load(Ordering::Relaxed) {
                    // COMMIT was sent and did not answer: whether it landed is unknown.
                    return Err(ExecError::CommitUnknown(DbError::other(
                        "COMMIT did not answer before the connection was closed",
                        true,
                    )));
                }
                Err(stopped.unwrap_or(ExecError::Cancelled))
            }
        };
        if result.is_ok() {
            ctl.held.absorb(attempt_held);
        }
        result
    }

    async fn checkout(&self) -> Result<Pooled, ExecError> {
        use deadpool::managed::PoolError;
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => ExecError::Connect(e),
            PoolError::Timeout(_) => {
                ExecError::Pool("timed out waiting for a database connection".into())
            }
            other => ExecError::Pool(other.to_string()),
        })
    }
}

/// `d` to the nearest tenth of a second, for messages.
fn tenths(d: Duration) -> Duration {
    Duration::from_millis((d.as_millis() as u64 + 50) / 100 * 100)
}

/// Returns the connection to the pool clean, or discards it.
async fn finish_attempt(
    conn: Pooled,
    (result, reset_done): (Result<Vec<Outcome>, ExecError>, bool),
) -> Result<Vec<Outcome>, ExecError> {
    let broken = result.as_ref().err().is_some_and(ExecError::broken) || conn.client.is_closed();
    if broken {
        discard(conn);
    } else if !reset_done {
        reset(conn).await;
    }
    result
}

/// Takes a connection out of the pool for good and closes its socket (aborting the task
/// that drives it: with a statement still running, dropping the client would not close it).
fn discard(conn: Pooled) {
    let conn = deadpool::managed::Object::take(conn);
    conn.task.abort();
    drop(conn);
}

/// Scrubs session state so the next call starts clean; a connection that cannot be
/// scrubbed is discarded rather than reused.
async fn reset(conn: Pooled) {
    match finish_with(&conn, conn.reset_sql()).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(
                connection = conn.serial,
                "session reset could not be verified; discarding the connection"
            );
            discard(conn);
        }
        Err(e) => {
            tracing::warn!(
                connection = conn.serial,
                "session reset failed; discarding the connection: {e}"
            );
            discard(conn);
        }
    }
}

/// Runs the unit's statements. Returns the outcome and whether the session reset has
/// already run (it travels with COMMIT, so the happy path needs no extra round trip).
async fn run_unit(
    conn: &Pooled,
    work: &Work,
    limits: &Limits,
    observer: &Sink<'_>,
    committing: &AtomicBool,
) -> (Result<Vec<Outcome>, ExecError>, bool) {
    let client = &conn.client;
    let begin = match work.mode {
        Mode::ReadOnly => Some("BEGIN TRANSACTION READ ONLY"),
        Mode::ReadWrite => Some("BEGIN"),
        Mode::Autocommit => None,
    };
    let Some(first) = work.statements.first() else {
        return (Ok(Vec::new()), false);
    };
    // Reads on a connection whose session is read-only by default: BEGIN, the statements
    // and COMMIT + reset travel together. Should BEGIN fail, the statements still run
    // read-only. Array parameters need the server's inferred type first.
    let array_params = |statements: &[Statement]| {
        statements
            .iter()
            .any(|s| s.params.iter().any(Value::is_array))
    };
    if work.mode == Mode::ReadOnly && conn.session_read_only && !array_params(&work.statements) {
        return one_round_trip(conn, work, limits, observer).await;
    }
    // The first statement is prepared there, so only the others' array parameters count.
    if let Some(begin) = begin
        && !array_params(&work.statements[1..])
    {
        return after_begin(conn, work, begin, limits, observer, committing).await;
    }
    let mut prepared = Some(match begin {
        Some(begin) => {
            let (begun, prepared) = join!(client.batch_execute(begin), client.prepare(&first.sql));
            if let Err(e) = begun {
                return (Err(ExecError::Begin(e.into())), false);
            }
            prepared
        }
        None => client.prepare(&first.sql).await,
    });
    let mut outcomes = Vec::with_capacity(if work.keep_all {
        work.statements.len()
    } else {
        1
    });
    let last = work.statements.len() - 1;
    for (index, statement) in work.statements.iter().enumerate() {
        let prepared = match prepared.take() {
            Some(p) => p,
            None => client.prepare(&statement.sql).await,
        };
        let failed = |error: DbError| ExecError::Statement { index, error };
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => return abandon(conn, begin.is_some(), failed(e.into())).await,
        };
        if index < last {
            match execute(
                client,
                &prepared,
                statement,
                limits,
                observer,
                work.rendered,
            )
            .await
            {
                Ok(o) => {
                    if work.keep_all {
                        outcomes.push(o);
                    }
                }
                Err(error) => return abandon(conn, begin.is_some(), failed(error)).await,
            }
            continue;
        }
        let finish = if begin.is_some() {
            conn.end_sql(true)
        } else {
            conn.reset_sql()
        };
        if work.mode == Mode::ReadWrite {
            // A write's COMMIT leaves only after its last statement succeeded: pipelined, a
            // COMMIT already in the backend's input would commit the work of a statement that
            // finished after we stopped listening (stdin closed, process killed), behind the
            // caller's back. A write costs this second round trip.
            let o = match execute(
                client,
                &prepared,
                statement,
                limits,
                observer,
                work.rendered,
            )
            .await
            {
                Ok(o) => o,
                Err(error) => return abandon(conn, true, failed(error)).await,
            };
            committing.store(true, Ordering::Relaxed);
            return match finish_with(conn, finish).await {
                Ok(reset) => {
                    outcomes.push(o);
                    (Ok(outcomes), reset)
                }
                Err(error) if error.broken => (Err(ExecError::CommitUnknown(error)), false),
                Err(error) => (Err(ExecError::Commit(error)), false),
            };
        }
        let (executed, finished) = join!(
            execute(
                client,
                &prepared,
                statement,
                limits,
                observer,
                work.rendered
            ),
            finish_with(conn, finish)
        );
        return match (executed, finished) {
            // A COMMIT in a failed transaction rolls it back; the reset then ran too.
            (Err(error), finished) => (Err(failed(error)), finished.is_ok_and(|reset| reset)),
            (Ok(o), Ok(reset)) => {
                outcomes.push(o);
                (Ok(outcomes), reset)
            }
            (Ok(o), Err(error)) if begin.is_none() => {
                // Autocommit: the statement is done; only the reset failed.
                tracing::warn!(connection = conn.serial, "session reset failed: {error}");
                outcomes.push(o);
                (Ok(outcomes), false)
            }
            (Ok(_), Err(error)) => (Err(ExecError::Commit(error)), false),
        };
    }
    unreachable!("the last statement returns")
}

/// Runs `sql` (COMMIT or ROLLBACK followed by the reset, or the reset alone; every reset
/// ends with `VERIFY_SESSION`). `Err` when its first command failed; `Ok(false)` when that
/// succeeded but the reset did not, or the session it read back is not the configured user
/// with the lexer settings the guard assumes: the connection must then not serve a call.
async fn finish_with(conn: &PgConnection, sql: &str) -> Result<bool, DbError> {
    let stream = conn.client.simple_query_raw(sql).await?;
    pin_mut!(stream);
    let mut completed = 0;
    let mut verified = false;
    while let Some(message) = stream.next().await {
        match message {
            Ok(tokio_postgres::SimpleQueryMessage::CommandComplete(_)) => completed += 1,
            Ok(tokio_postgres::SimpleQueryMessage::Row(row)) => {
                match session_problem(&conn.user, [row.get(0), row.get(1), row.get(2)]) {
                    None => verified = true,
                    Some(problem) => {
                        tracing::warn!(connection = conn.serial, "after the reset, {problem}");
                        return Ok(false);
                    }
                }
            }
            Ok(_) => {}
            Err(e) if completed == 0 => return Err(DbError::from(&e)),
            Err(_) => return Ok(false),
        }
    }
    Ok(verified)
}

/// After a failed statement: roll back (if in a transaction) and reset, then report `error`.
async fn abandon(
    conn: &Pooled,
    in_transaction: bool,
    error: ExecError,
) -> (Result<Vec<Outcome>, ExecError>, bool) {
    if error.broken() {
        return (Err(error), false);
    }
    let sql = if in_transaction {
        conn.end_sql(false)
    } else {
        conn.reset_sql()
    };
    let reset = match finish_with(conn, sql).await {
        Ok(reset) => reset,
        Err(e) => {
            tracing::warn!(connection = conn.serial, "ROLLBACK failed: {e}");
            false
        }
    };
    (Err(error), reset)
}

/// A read-only unit in one round trip: BEGIN, Parse/Bind/Execute of the unnamed statement
/// for each statement, with untyped text parameters, and COMMIT + reset, all pipelined.
/// Only on a connection whose session is read-only by default, so statements that ran
/// after a failed BEGIN still ran read-only; a failing statement makes the ones after it
/// fail (the transaction is aborted) and turns the COMMIT into a rollback.
async fn one_round_trip(
    conn: &Pooled,
    work: &Work,
    limits: &Limits,
    observer: &Sink<'_>,
) -> (Result<Vec<Outcome>, ExecError>, bool) {
    // `join!` polls its futures in order, so the messages leave in this order.
    let (begun, executed, finished) = join!(
        conn.client.batch_execute("BEGIN TRANSACTION READ ONLY"),
        run_pipelined(
            &conn.client,
            &work.statements,
            limits,
            observer,
            work.rendered
        ),
        finish_with(conn, conn.end_sql(true))
    );
    if let Err(e) = begun {
        return (Err(ExecError::Begin(e.into())), finished.is_ok_and(|r| r));
    }
    read_ended(conn, work, executed, finished).await
}

/// A unit in a transaction whose BEGIN must have succeeded before anything runs (a write,
/// or a read on a session that is not read-only by default): BEGIN with the first
/// statement's prepare, then every statement pipelined (each still parsed after the one
/// before it ran), then a write's COMMIT once every statement has answered (see the module
/// doc), or a read's COMMIT + reset pipelined behind its statements. Writes: three round
/// trips, reads: two.
async fn after_begin(
    conn: &Pooled,
    work: &Work,
    begin: &str,
    limits: &Limits,
    observer: &Sink<'_>,
    committing: &AtomicBool,
) -> (Result<Vec<Outcome>, ExecError>, bool) {
    let client = &conn.client;
    let (first, rest) = work
        .statements
        .split_first()
        .expect("run_unit returns early for a unit without statements");
    // The first statement is prepared with BEGIN (a prepare runs nothing): its parameter
    // types convert the caller's JSON, and its columns are known even when it returns no
    // row (`execute` of an UPDATE ... RETURNING that matched nothing still says `rows: []`).
    let (begun, prepared) = join!(client.batch_execute(begin), client.prepare(&first.sql));
    if let Err(e) = begun {
        return (Err(ExecError::Begin(e.into())), false);
    }
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            let error = ExecError::Statement {
                index: 0,
                error: e.into(),
            };
            return abandon(conn, true, error).await;
        }
    };
    let statements = async {
        let (one, others) = join!(
            execute(client, &prepared, first, limits, observer, work.rendered),
            run_pipelined(client, rest, limits, observer, work.rendered)
        );
        let mut all = Vec::with_capacity(1 + others.len());
        all.push(one);
        all.extend(others);
        all
    };
    if work.mode == Mode::ReadWrite {
        let executed = statements.await;
        let outcomes = match first_failure(executed) {
            Ok(outcomes) => outcomes,
            Err(error) => return abandon(conn, true, error).await,
        };
        committing.store(true, Ordering::Relaxed);
        return match finish_with(conn, conn.end_sql(true)).await {
            Ok(reset) => (kept(conn, work, outcomes).await, reset),
            Err(error) if error.broken => (Err(ExecError::CommitUnknown(error)), false),
            Err(error) => (Err(ExecError::Commit(error)), false),
        };
    }
    let (executed, finished) = join!(statements, finish_with(conn, conn.end_sql(true)));
    read_ended(conn, work, executed, finished).await
}

/// A read's unit whose statements and COMMIT + reset travelled together: its outcomes, or
/// its first failure (a COMMIT in a failed transaction rolls it back; the reset still ran).
async fn read_ended(
    conn: &Pooled,
    work: &Work,
    executed: Vec<Result<Outcome, DbError>>,
    finished: Result<bool, DbError>,
) -> (Result<Vec<Outcome>, ExecError>, bool) {
    let outcomes = match first_failure(executed) {
        Ok(outcomes) => outcomes,
        Err(error) => return (Err(error), finished.is_ok_and(|reset| reset)),
    };
    match finished {
        Ok(reset) => (kept(conn, work, outcomes).await, reset),
        Err(error) => (Err(ExecError::Commit(error)), false),
    }
}

/// Sends every statement at once (Parse/Bind/Execute/Sync of the unnamed statement, with
/// untyped text parameters the server types, as a prepare would) and reads each result up
/// to the limits, in order.
async fn run_pipelined(
    client: &tokio_postgres::Client,
    statements: &[Statement],
    limits: &Limits,
    observer: &Sink<'_>,
    render: Option<TextFormat>,
) -> Vec<Result<Outcome, DbError>> {
    // OID 0: the server infers each parameter's type, as it does for a prepare.
    let unspecified = Type::new("unspecified".into(), 0, Kind::Pseudo, "pg_catalog".into());
    let unspecified = &unspecified;
    let runs = statements.iter().map(|statement| async move {
        let params: Vec<TextParam> = statement
            .params
            .iter()
            .map(|v| TextParam::from_json(v, unspecified))
            .collect();
        let stream = client
            .query_typed_raw(
                &statement.sql,
                params.iter().map(|p| (p, unspecified.clone())),
            )
            .await?;
        read_rows(stream, limits, observer, render).await
    });
    // `join_all` polls in order on its first poll, so the statements leave in order.
    futures_util::future::join_all(runs).await
}

/// The outcomes, or the first statement's failure: the failures after it are its echo
/// (25P02, the transaction is aborted).
// The error goes straight into the unit's result, which carries `ExecError` by value
// everywhere; boxing it here alone would only add an allocation.
#[allow(clippy::result_large_err)]
fn first_failure(executed: Vec<Result<Outcome, DbError>>) -> Result<Vec<Outcome>, ExecError> {
    executed
        .into_iter()
        .enumerate()
        .map(|(index, result)| result.map_err(|error| ExecError::Statement { index, error }))
        .collect()
}

/// What the caller keeps: every statement's outcome or the last one's, with the last
/// one's columns looked up when it returned no row to read them from and the caller
/// needs them (a prepare; nothing runs).
async fn kept(
    conn: &Pooled,
    work: &Work,
    mut outcomes: Vec<Outcome>,
) -> Result<Vec<Outcome>, ExecError> {
    if !work.keep_all {
        outcomes.drain(..outcomes.len().saturating_sub(1));
    }
    if let Some(outcome) = outcomes.last_mut()
        && work.describe
        && outcome.columns.is_empty()
    {
        let index = work.statements.len() - 1;
        match conn.client.prepare(&work.statements[index].sql).await {
            Ok(p) => outcome.columns = columns_of(p.columns()),
            Err(e) => {
                return Err(ExecError::Statement {
                    index,
                    error: e.into(),
                });
            }
        }
    }
    Ok(outcomes)
}

fn columns_of(columns: &[tokio_postgres::Column]) -> Vec<Column> {
    columns
        .iter()
        .map(|c| Column {
            name: c.name().to_owned(),
            type_name: value::type_name(c.type_()),
        })
        .collect()
}

/// Reads a result up to the limits, draining the rest so the connection stays in step.
/// The columns come from the first row (a prepared statement knows them beforehand).
/// With `render`, rows go straight into the row tools' answer (`value::render`) and are
/// not kept as maps.
async fn read_rows(
    stream: tokio_postgres::RowStream,
    limits: &Limits,
    sink: &Sink<'_>,
    render: Option<TextFormat>,
) -> Result<Outcome, DbError> {
    pin_mut!(stream);
    let mut rows = Vec::new();
    let mut renderer: Option<RowRenderer> = None;
    let mut kept = 0usize;
    let mut columns = Vec::new();
    let mut bytes = 0usize;
    let mut reserved_kib = 0usize;
    let mut truncated = None;
    let mut read = 0u64;
    while let Some(row) = stream.next().await {
        let row = row?;
        read += 1;
        if read.is_multiple_of(ROWS_PER_PROGRESS) {
            sink.observer.event(Event::RowsRead { rows: read });
        }
        if read.is_multiple_of(ROWS_PER_YIELD) {
            tokio::task::yield_now().await;
        }
        if columns.is_empty() {
            columns = columns_of(row.columns());
        }
        if truncated.is_some() {
            continue;
        }
        if kept == limits.max_rows {
            truncated = Some(Truncation::Rows(limits.max_rows));
            continue;
        }
        let (object, mark) = if let Some(format) = render {
            let r = renderer.get_or_insert_with(|| RowRenderer::new(&row, format));
            let mark = r.mark();
            bytes += r.push(&row)?;
            (None, Some(mark))
        } else {
            let object = value::row_to_object(&row)?;
            bytes += response_size(&object);
            (Some(object), None)
        };
        let mut refuse = |why: Truncation| {
            if let (Some(r), Some(mark)) = (renderer.as_mut(), mark) {
                r.rewind(mark);
            }
            truncated = Some(why);
        };
        // Strict, even for the first row: one huge value must not blow the bound.
        if bytes > limits.max_bytes {
            refuse(Truncation::Bytes(limits.max_bytes));
            continue;
        }
        // The process-wide budget: rows are kept only while their bytes are reserved in it.
        let need_kib = bytes.div_ceil(1024);
        if need_kib > reserved_kib {
            let short = need_kib - reserved_kib;
            let more = short.max(BUDGET_CHUNK_KIB);
            // Near the end of the budget, take exactly what this row needs.
            let got = if sink.reserve(more) {
                more
            } else if short < more && sink.reserve(short) {
                short
            } else {
                refuse(Truncation::Budget(sink.budget_bytes));
                continue;
            };
            reserved_kib += got;
        }
        kept += 1;
        rows.extend(object);
    }
    if let Some(why) = &truncated {
        sink.observer.event(Event::Truncated {
            kept,
            total: read,
            why: why.clone(),
        });
    }
    Ok(Outcome {
        columns,
        rows,
        rendered: render.map(|_| renderer.map(|r| r.rows).unwrap_or_default()),
        rows_affected: stream.rows_affected(),
        truncated,
        rows_read: read,
    })
}

/// Binds the JSON parameters (in text format, typed by the server's inference) to a
/// prepared statement, executes it and reads its rows up to the limits.
async fn execute(
    client: &tokio_postgres::Client,
    prepared: &tokio_postgres::Statement,
    statement: &Statement,
    limits: &Limits,
    observer: &Sink<'_>,
    render: Option<TextFormat>,
) -> Result<Outcome, DbError> {
    let types = prepared.params();
    if types.len() != statement.params.len() {
        return Err(DbError::other(
            format!(
                "the statement takes {} parameter(s) but {} were supplied",
                types.len(),
                statement.params.len()
            ),
            false,
        ));
    }
    let params: Vec<TextParam> = statement
        .params
        .iter()
        .zip(types)
        .map(|(v, ty)| TextParam::from_json(v, ty))
        .collect();
    let stream = client.query_raw(prepared, params.iter()).await?;
    let mut outcome = read_rows(stream, limits, observer, render).await?;
    outcome.columns = columns_of(prepared.columns());
    Ok(outcome)
}

/// The size of a row as JSON, without building the string.
/// The bytes one row adds to a tool response, so that `--max-result-bytes` bounds the
/// response and not only the rows: its compact JSON (in `structuredContent`) plus its
/// pretty-printed copy in the text content, escaped into a JSON string, indented up to two
/// levels deeper (the power's tools nest rows in an object), and the text block's framing.
pub(crate) fn response_size(row: &Map<String, Value>) -> usize {
    /// Counts the bytes of the written text once escaped into a JSON string, and its lines
    /// (the renderer's rule: `render::escaped_size`).
    struct Escaped {
        bytes: usize,
        lines: usize,
    }
    impl std::io::Write for Escaped {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (bytes, lines) = render::escaped_size(buf);
            self.bytes += bytes;
            self.lines += lines;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut text = Escaped { bytes: 0, lines: 1 };
    let _ = serde_json::to_writer_pretty(&mut text, row);
    json_size(row) + text.bytes + 4 * text.lines + render::TEXT_BLOCK_FRAME
}

fn json_size(row: &Map<String, Value>) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, row);
    counter.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stays_under_the_cap() {
        let p = RetryPolicy {
            max_retries: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        };
        for _ in 0..200 {
            let d1 = p.delay(1);
            assert!(
                d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(125),
                "{d1:?}"
            );
            let d3 = p.delay(3);
            assert!(
                d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(500),
                "{d3:?}"
            );
            assert!(p.delay(10) <= Duration::from_secs(5));
            assert!(p.delay(10) >= Duration::from_secs(5) - Duration::from_millis(1));
        }
    }

    #[test]
    fn conflicts_are_retryable_but_unknown_commits_are_not() {
        let conflict = DbError {
            code: Some("40001".into()),
            severity: Some("ERROR".into()),
            message: "change conflicts with another transaction (OC000)".into(),
            detail: None,
            hint: None,
            position: None,
            broken: false,
        };
        assert!(ExecError::Commit(conflict.clone()).is_conflict());
        assert!(
            ExecError::Statement {
                index: 0,
                error: conflict.clone()
            }
            .is_conflict()
        );
        assert!(!ExecError::CommitUnknown(conflict.clone()).is_conflict());
        for code in ["23505", "54000", "0A000", "23503"] {
            let mut e = conflict.clone();
            e.code = Some(code.into());
            assert!(!ExecError::Commit(e).is_conflict(), "{code}");
        }
    }

    #[test]
    fn limit_errors_carry_the_batching_advice_and_are_not_retried() {
        let limit = DbError {
            code: Some("54000".into()),
            severity: Some("ERROR".into()),
            message: "transaction row limit exceeded".into(),
            detail: None,
            hint: None,
            position: None,
            broken: false,
        };
        let statement = ExecError::Statement {
            index: 0,
            error: limit.clone(),
        };
        assert_eq!(
            statement.to_string(),
            format!("ERROR 54000: transaction row limit exceeded{LIMIT_ADVICE}")
        );
        let commit = ExecError::Commit(limit.clone());
        assert_eq!(
            commit.to_string(),
            format!(
                "Failed to commit transaction: ERROR 54000: transaction row limit exceeded{LIMIT_ADVICE}"
            )
        );
        for e in [&statement, &commit] {
            assert!(!e.is_conflict() && !e.is_waking() && !e.broken());
        }
        // Any other error is left as it is.
        let mut other = limit;
        other.code = Some("23505".into());
        assert_eq!(
            ExecError::Commit(other).to_string(),
            "Failed to commit transaction: ERROR 23505: transaction row limit exceeded"
        );
    }

    #[test]
    fn a_connection_that_could_not_be_opened_is_not_re_run_as_a_lost_one() {
        let tls = ExecError::Connect(ConnectError::Postgres(DbError::other(
            "error performing TLS handshake: invalid peer certificate: UnknownIssuer",
            true,
        )));
        assert!(!tls.broken() && !tls.is_conflict() && !tls.is_waking());
        let lost = ExecError::Statement {
            index: 0,
            error: DbError::other("connection closed", true),
        };
        assert!(lost.broken());
    }

    #[test]
    fn login_failures_keep_the_server_hint_and_are_not_retried() {
        for code in ["28000", "28P01"] {
            let e = ExecError::Connect(ConnectError::Postgres(DbError {
                code: Some(code.into()),
                severity: Some("FATAL".into()),
                message: "access denied".into(),
                detail: None,
                hint: Some("Signature expired: check the system clock".into()),
                position: None,
                broken: false,
            }));
            assert!(!e.is_conflict() && !e.is_waking() && !e.broken(), "{code}");
            assert_eq!(
                e.to_string(),
                format!(
                    "could not connect to the cluster: FATAL {code}: access denied\nHINT: Signature expired: check the system clock"
                )
            );
        }
        // DSQL's connection-rate and connection-count refusals are waited out.
        for code in ["53300", "53400"] {
            let mut refused = DbError::other("Unable to accept connection, rate exceeded.", false);
            refused.code = Some(code.into());
            let e = ExecError::Connect(ConnectError::Postgres(refused));
            assert!(e.is_waking() && !e.broken() && !e.is_conflict(), "{code}");
        }
    }

    #[test]
    fn the_result_budget_is_shared_and_comes_back_with_the_rows() {
        let budget = Arc::new(Semaphore::new(1024));
        let (a, b) = (Held::default(), Held::default());
        let sink = |held| Sink {
            observer: &Silent,
            budget: &budget,
            budget_bytes: 1 << 20,
            held,
        };
        assert!(sink(&a).reserve(1000));
        // Another call gets what is left, no more.
        assert!(!sink(&b).reserve(100));
        assert!(sink(&b).reserve(24));
        assert_eq!(budget.available_permits(), 0);
        // A successful attempt hands its share to the call; the call's end releases it.
        let call = Held::default();
        call.absorb(a);
        assert_eq!(budget.available_permits(), 0);
        drop(call);
        assert_eq!(budget.available_permits(), 1000);
        drop(b);
        assert_eq!(budget.available_permits(), 1024);
        assert_eq!(
            tenths(Duration::from_millis(4_999_960)),
            Duration::from_secs(5000)
        );
        assert_eq!(
            tenths(Duration::from_millis(1_949)),
            Duration::from_millis(1_900)
        );
    }

    #[test]
    fn json_size_matches_serialization() {
        let row: Map<String, Value> =
            serde_json::from_str(r#"{"a":1,"b":"héllo","c":[1,2,{"d":null}]}"#).unwrap();
        assert_eq!(json_size(&row), serde_json::to_string(&row).unwrap().len());
    }
}
