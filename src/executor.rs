//! Runs one tool call's unit of work on one pooled connection.
//!
//! A unit of work is the statements of one tool call. It holds a single connection from
//! its first statement to the session reset, so calls running at the same time never
//! share a transaction. The shape of every unit is fixed here, not by the caller:
//!
//! ```text
//! BEGIN [TRANSACTION READ ONLY]  ->  statement 1 .. n  ->  COMMIT   (ROLLBACK on error)
//! RESET ALL; RESET ROLE          (a connection whose reset fails is discarded)
//! ```
//!
//! Caller SQL only ever travels through the extended protocol, one statement per message,
//! so `COMMIT; DROP ...` cannot escape the transaction. When the connection breaks, the
//! connection is discarded and the *whole* unit is re-run once on a fresh connection (new
//! token), inside its transaction again, never a lone statement outside it. A write unit
//! whose connection died during COMMIT is not re-run: its outcome is unknown and the
//! caller is told so.

use std::sync::Arc;

use futures_util::{StreamExt, join, pin_mut};
use serde_json::{Map, Value};

use crate::connection::{ConnectError, DbError, Pool, Pooled};
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
}

impl Work {
    /// A unit whose caller wants the last statement's result only.
    pub fn new(mode: Mode, statements: Vec<Statement>) -> Work {
        Work {
            mode,
            statements,
            keep_all: false,
        }
    }
}

/// A result column: its name and SQL type name.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

/// What the last statement of a unit produced.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Outcome {
    pub columns: Vec<Column>,
    pub rows: Vec<Map<String, Value>>,
    /// Rows inserted, updated, deleted or returned, as the command tag says.
    pub rows_affected: Option<u64>,
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
    #[error("{error}")]
    Statement { index: usize, error: DbError },
    #[error("Failed to commit transaction: {0}")]
    Commit(DbError),
    #[error(
        "The connection was lost while committing; the outcome of the transaction is unknown. Check the data before re-running the writes. ({0})"
    )]
    CommitUnknown(DbError),
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

    fn broken(&self) -> bool {
        self.db_error().is_some_and(|e| e.broken)
    }
}

/// Runs units of work on pooled connections.
pub struct Executor {
    pool: Arc<Pool>,
}

impl Executor {
    pub fn new(pool: Arc<Pool>) -> Executor {
        Executor { pool }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Runs `work` and returns the last statement's outcome.
    pub async fn run(&self, work: &Work) -> Result<Outcome, ExecError> {
        Ok(self.run_all(work).await?.pop().unwrap_or_default())
    }

    /// Runs `work`, re-running it once on a fresh connection if the connection breaks
    /// before the outcome is known. Returns one outcome per statement when
    /// `work.keep_all`, else only the last statement's.
    pub async fn run_all(&self, work: &Work) -> Result<Vec<Outcome>, ExecError> {
        let mut retried = false;
        loop {
            let conn = self.checkout().await?;
            let serial = conn.serial;
            let (result, reset_done) = run_unit(&conn, work).await;
            let broken =
                result.as_ref().err().is_some_and(ExecError::broken) || conn.client.is_closed();
            if broken {
                discard(conn);
            } else if !reset_done {
                reset(conn).await;
            }
            match result {
                Err(e) if broken && !retried && !matches!(e, ExecError::CommitUnknown(_)) => {
                    tracing::warn!(
                        connection = serial,
                        "connection broke during a tool call; re-running the whole unit on a fresh connection: {e}"
                    );
                    retried = true;
                }
                other => return other,
            }
        }
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

/// Takes a connection out of the pool for good; dropping it closes it.
fn discard(conn: Pooled) {
    drop(deadpool::managed::Object::take(conn));
}

/// Scrubs session state so the next call starts clean; a connection that cannot be
/// scrubbed is discarded rather than reused.
async fn reset(conn: Pooled) {
    if let Err(e) = conn.client.batch_execute(RESET).await {
        tracing::warn!(
            connection = conn.serial,
            "session reset failed; discarding the connection: {}",
            DbError::from(&e)
        );
        discard(conn);
    }
}

/// Runs the unit's statements. Returns the outcome and whether the session reset has
/// already run (it travels with COMMIT, so the happy path needs no extra round trip).
///
/// Round trips: BEGIN travels with the first statement's Parse/Describe, and nothing
/// executes until BEGIN has succeeded; the last statement's Bind/Execute travels with
/// `COMMIT; RESET ALL; RESET ROLE`. A one-statement unit costs two round trips.
async fn run_unit(conn: &Pooled, work: &Work) -> (Result<Vec<Outcome>, ExecError>, bool) {
    let client = &conn.client;
    let begin = match work.mode {
        Mode::ReadOnly => Some("BEGIN TRANSACTION READ ONLY"),
        Mode::ReadWrite => Some("BEGIN"),
        Mode::Autocommit => None,
    };
    let Some(first) = work.statements.first() else {
        return (Ok(Vec::new()), false);
    };
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
            match execute(client, &prepared, statement).await {
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
            FINISH_TRANSACTION
        } else {
            RESET
        };
        let (executed, finished) = join!(
            execute(client, &prepared, statement),
            finish_with(client, finish)
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
            (Ok(_), Err(error)) if error.broken && work.mode == Mode::ReadWrite => {
                (Err(ExecError::CommitUnknown(error)), false)
            }
            (Ok(_), Err(error)) => (Err(ExecError::Commit(error)), false),
        };
    }
    unreachable!("the last statement returns")
}

/// Ends a transaction and scrubs the session in one round trip.
const FINISH_TRANSACTION: &str = "COMMIT; RESET ALL; RESET ROLE";
/// Scrubs session state between calls.
const RESET: &str = "RESET ALL; RESET ROLE";
/// Abandons a failed transaction and scrubs the session in one round trip.
const ABANDON_TRANSACTION: &str = "ROLLBACK; RESET ALL; RESET ROLE";

/// Runs `sql` (COMMIT or ROLLBACK followed by the reset, or the reset alone). `Err` when
/// its first command failed; `Ok(false)` when that succeeded but the reset did not.
async fn finish_with(client: &tokio_postgres::Client, sql: &str) -> Result<bool, DbError> {
    let stream = client.simple_query_raw(sql).await?;
    pin_mut!(stream);
    let mut completed = 0;
    while let Some(message) = stream.next().await {
        match message {
            Ok(tokio_postgres::SimpleQueryMessage::CommandComplete(_)) => completed += 1,
            Ok(_) => {}
            Err(e) if completed == 0 => return Err(DbError::from(&e)),
            Err(_) => return Ok(false),
        }
    }
    Ok(true)
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
        ABANDON_TRANSACTION
    } else {
        RESET
    };
    let reset = match finish_with(&conn.client, sql).await {
        Ok(reset) => reset,
        Err(e) => {
            tracing::warn!(connection = conn.serial, "ROLLBACK failed: {e}");
            false
        }
    };
    (Err(error), reset)
}

/// Binds the JSON parameters (in text format, typed by the server's inference) to a
/// prepared statement, executes it and reads every row.
async fn execute(
    client: &tokio_postgres::Client,
    prepared: &tokio_postgres::Statement,
    statement: &Statement,
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
    let columns = prepared
        .columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_owned(),
            type_name: value::type_name(c.type_()),
        })
        .collect();
    let stream = client.query_raw(prepared, params.iter()).await?;
    pin_mut!(stream);
    let mut rows = Vec::new();
    while let Some(row) = stream.next().await {
        let row = row?;
        rows.push(value::row_to_object(&row)?);
    }
    Ok(Outcome {
        columns,
        rows,
        rows_affected: stream.rows_affected(),
    })
}
