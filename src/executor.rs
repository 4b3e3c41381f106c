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

use futures_util::{StreamExt, pin_mut};
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
            let result = run_unit(&conn, work).await;
            let broken =
                result.as_ref().err().is_some_and(ExecError::broken) || conn.client.is_closed();
            if broken {
                discard(conn);
            } else {
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
    if let Err(e) = conn.client.batch_execute("RESET ALL; RESET ROLE").await {
        tracing::warn!(
            connection = conn.serial,
            "session reset failed; discarding the connection: {}",
            DbError::from(&e)
        );
        discard(conn);
    }
}

async fn run_unit(conn: &Pooled, work: &Work) -> Result<Vec<Outcome>, ExecError> {
    let client = &conn.client;
    let begin = match work.mode {
        Mode::ReadOnly => Some("BEGIN TRANSACTION READ ONLY"),
        Mode::ReadWrite => Some("BEGIN"),
        Mode::Autocommit => None,
    };
    if let Some(begin) = begin {
        client
            .batch_execute(begin)
            .await
            .map_err(|e| ExecError::Begin(e.into()))?;
    }
    let mut outcomes = Vec::with_capacity(if work.keep_all {
        work.statements.len()
    } else {
        1
    });
    for (index, statement) in work.statements.iter().enumerate() {
        match run_statement(client, statement).await {
            Ok(o) => {
                if !work.keep_all {
                    outcomes.clear();
                }
                outcomes.push(o);
            }
            Err(error) => {
                if begin.is_some() && !error.broken {
                    if let Err(e) = client.batch_execute("ROLLBACK").await {
                        tracing::warn!(
                            connection = conn.serial,
                            "ROLLBACK failed: {}",
                            DbError::from(&e)
                        );
                    }
                }
                return Err(ExecError::Statement { index, error });
            }
        }
    }
    if begin.is_some() {
        if let Err(e) = client.batch_execute("COMMIT").await {
            let error = DbError::from(&e);
            if error.broken && work.mode == Mode::ReadWrite {
                return Err(ExecError::CommitUnknown(error));
            }
            return Err(ExecError::Commit(error));
        }
    }
    Ok(outcomes)
}

/// Prepares (so the server infers parameter types), binds the JSON parameters in text
/// format, and reads every row of one statement.
async fn run_statement(
    client: &tokio_postgres::Client,
    statement: &Statement,
) -> Result<Outcome, DbError> {
    let prepared = client.prepare(&statement.sql).await?;
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
    let stream = client.query_raw(&prepared, params.iter()).await?;
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
