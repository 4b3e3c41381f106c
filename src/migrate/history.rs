//! The migration history table, `public.dsql_mcp_migrations`: one row per step of each
//! migration, what `list_migrations` reads and what a re-run resumes from.
//!
//! DSQL-valid by construction: a composite primary key (no `SERIAL`, no sequence), no
//! secondary index, no foreign key; created on first use by a `CREATE TABLE IF NOT EXISTS`
//! alone in its transaction. A DDL step cannot share a transaction with its history row, so
//! it is recorded `started` before it runs and `done` after; a DML step's row travels in the
//! step's own transaction (atomic with it), and its row count (`rows_changed`, known only
//! once the statement ran) follows in a short transaction after the commit. A batched step
//! records its total with `done`. `rows_changed` has been in the table since its first
//! version, so no table in use lacks it.

use serde_json::{Map, Value};

use crate::executor::{Control, ExecError, Executor, Mode, Statement, Work};

pub const TABLE: &str = "public.dsql_mcp_migrations";

const CREATE: &str = "CREATE TABLE IF NOT EXISTS public.dsql_mcp_migrations (\
     name text NOT NULL, \
     step integer NOT NULL, \
     kind text NOT NULL, \
     statement_hash text NOT NULL, \
     checksum text NOT NULL, \
     steps integer NOT NULL, \
     state text NOT NULL, \
     job_id text, \
     rows_changed bigint, \
     started_at timestamptz NOT NULL, \
     finished_at timestamptz, \
     last_error text, \
     PRIMARY KEY (name, step))";

/// The states a step row is in.
pub const STARTED: &str = "started";
pub const DONE: &str = "done";
pub const FAILED: &str = "failed";

/// One history row, as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub step: usize,
    pub kind: String,
    pub hash: String,
    pub state: String,
    pub job_id: Option<String>,
    pub started_at: String,
    pub last_error: Option<String>,
}

fn unit(mode: Mode, sql: &str, params: Vec<Value>) -> Work {
    Work::new(
        mode,
        vec![Statement {
            sql: sql.to_owned(),
            params,
        }],
    )
}

/// Whether a relation exists (a read; works on a read-only server).
pub async fn exists(
    executor: &Executor,
    table: &str,
    ctl: &Control<'_>,
) -> Result<bool, ExecError> {
    let o = executor
        .run(
            &unit(
                Mode::ReadOnly,
                "SELECT to_regclass($1) IS NOT NULL AS present",
                vec![Value::from(table)],
            ),
            ctl,
        )
        .await?;
    Ok(o.rows.first().and_then(|r| r.get("present")) == Some(&Value::Bool(true)))
}

/// Creates `table` with `create` when it is missing: the DDL alone in its transaction.
pub async fn ensure(
    executor: &Executor,
    table: &str,
    create: &str,
    ctl: &Control<'_>,
) -> Result<(), ExecError> {
    if !exists(executor, table, ctl).await? {
        executor
            .run(&unit(Mode::ReadWrite, create, vec![]), ctl)
            .await?;
    }
    Ok(())
}

/// Creates the history table on first use.
pub async fn ensure_table(executor: &Executor, ctl: &Control<'_>) -> Result<(), ExecError> {
    ensure(executor, TABLE, CREATE, ctl).await
}

/// The rows of one migration, by step.
pub async fn rows(
    executor: &Executor,
    name: &str,
    ctl: &Control<'_>,
) -> Result<Vec<Row>, ExecError> {
    let o = executor
        .run(
            &unit(
                Mode::ReadOnly,
                "SELECT step, kind, statement_hash, state, job_id, started_at::text AS started_at, last_error \
                 FROM public.dsql_mcp_migrations WHERE name = $1 ORDER BY step",
                vec![Value::from(name)],
            ),
            ctl,
        )
        .await?;
    Ok(o.rows.into_iter().map(row).collect())
}

fn text(r: &Map<String, Value>, k: &str) -> Option<String> {
    r.get(k).and_then(Value::as_str).map(str::to_owned)
}

fn row(r: Map<String, Value>) -> Row {
    Row {
        step: r.get("step").and_then(Value::as_u64).unwrap_or(0) as usize,
        kind: text(&r, "kind").unwrap_or_default(),
        hash: text(&r, "statement_hash").unwrap_or_default(),
        state: text(&r, "state").unwrap_or_default(),
        job_id: text(&r, "job_id"),
        started_at: text(&r, "started_at").unwrap_or_default(),
        last_error: text(&r, "last_error"),
    }
}

/// What one history write says about a step.
pub struct Record<'a> {
    pub name: &'a str,
    pub step: usize,
    pub kind: &'a str,
    pub hash: &'a str,
    pub checksum: &'a str,
    pub steps: usize,
    pub state: &'a str,
    pub job_id: Option<&'a str>,
    pub rows: Option<u64>,
    pub error: Option<&'a str>,
}

/// The upsert of one step's row; `started_at` is set when the row is new or restarted,
/// `finished_at` when the state is final.
pub fn upsert(r: &Record<'_>) -> Statement {
    Statement {
        sql: "INSERT INTO public.dsql_mcp_migrations AS h \
              (name, step, kind, statement_hash, checksum, steps, state, job_id, rows_changed, started_at, finished_at, last_error) \
              VALUES ($1, $2::int, $3, $4, $5, $6::int, $7, $8, $9::bigint, now(), \
                      CASE WHEN $7 = 'started' THEN NULL ELSE now() END, $10) \
              ON CONFLICT (name, step) DO UPDATE SET kind = EXCLUDED.kind, statement_hash = EXCLUDED.statement_hash, \
                checksum = EXCLUDED.checksum, steps = EXCLUDED.steps, state = EXCLUDED.state, \
                job_id = coalesce(EXCLUDED.job_id, h.job_id), rows_changed = EXCLUDED.rows_changed, \
                started_at = CASE WHEN EXCLUDED.state = 'started' AND h.state <> 'started' THEN EXCLUDED.started_at ELSE h.started_at END, \
                finished_at = EXCLUDED.finished_at, last_error = EXCLUDED.last_error"
            .into(),
        params: vec![
            Value::from(r.name),
            Value::from(r.step as u64),
            Value::from(r.kind),
            Value::from(r.hash),
            Value::from(r.checksum),
            Value::from(r.steps as u64),
            Value::from(r.state),
            r.job_id.map_or(Value::Null, Value::from),
            r.rows.map_or(Value::Null, Value::from),
            r.error.map_or(Value::Null, Value::from),
        ],
    }
}

/// Writes one step's row in a transaction of its own.
pub async fn record(
    executor: &Executor,
    r: &Record<'_>,
    ctl: &Control<'_>,
) -> Result<(), ExecError> {
    executor
        .run(&Work::new(Mode::ReadWrite, vec![upsert(r)]), ctl)
        .await
        .map(|_| ())
}

/// Records the rows each DML step changed, once its transaction committed: the step's
/// `done` row travels inside that transaction, before the statement's count is known.
pub async fn set_rows(
    executor: &Executor,
    name: &str,
    counts: &[(usize, u64)],
    ctl: &Control<'_>,
) -> Result<(), ExecError> {
    if counts.is_empty() {
        return Ok(());
    }
    let statements = counts
        .iter()
        .map(|(step, rows)| Statement {
            sql: "UPDATE public.dsql_mcp_migrations SET rows_changed = $3::bigint \
                  WHERE name = $1 AND step = $2::int"
                .into(),
            params: vec![
                Value::from(name),
                Value::from(*step as u64),
                Value::from(*rows),
            ],
        })
        .collect();
    let mut work = Work::new(Mode::ReadWrite, statements);
    work.keep_all = true;
    executor.run_all(&work, ctl).await.map(|_| ())
}

/// Keeps the migration's rows in step with its current text: its checksum and step count
/// (a fixed re-run changes both), and no rows past its last step that were never done.
pub async fn restamp(
    executor: &Executor,
    name: &str,
    checksum: &str,
    steps: usize,
    ctl: &Control<'_>,
) -> Result<(), ExecError> {
    let mut work = Work::new(
        Mode::ReadWrite,
        vec![
            Statement {
                sql: "UPDATE public.dsql_mcp_migrations SET checksum = $2, steps = $3::int \
                      WHERE name = $1 AND (checksum <> $2 OR steps <> $3::int)"
                    .into(),
                params: vec![Value::from(name), Value::from(checksum), Value::from(steps as u64)],
            },
            Statement {
                sql: "DELETE FROM public.dsql_mcp_migrations WHERE name = $1 AND step > $2::int AND state <> 'done'"
                    .into(),
                params: vec![Value::from(name), Value::from(steps as u64)],
            },
        ],
    );
    work.keep_all = true;
    executor.run_all(&work, ctl).await.map(|_| ())
}

/// One line per migration for `list_migrations`: name, checksum, steps done / total, the
/// rows its DML and batched steps changed, started, finished (when every step is done), the
/// last error of a step not done.
pub async fn summary(
    executor: &Executor,
    ctl: &Control<'_>,
) -> Result<Vec<Map<String, Value>>, ExecError> {
    if !exists(executor, TABLE, ctl).await? {
        return Ok(Vec::new());
    }
    let o = executor
        .run(
            &unit(
                Mode::ReadOnly,
                "SELECT name, min(checksum) AS checksum, \
                   sum(CASE WHEN state = 'done' THEN 1 ELSE 0 END)::int AS steps_done, max(steps) AS steps_total, \
                   sum(rows_changed)::bigint AS rows, \
                   min(started_at)::text AS started_at, \
                   CASE WHEN sum(CASE WHEN state = 'done' THEN 1 ELSE 0 END) = max(steps) \
                        THEN max(finished_at)::text END AS finished_at, \
                   max(CASE WHEN state <> 'done' THEN last_error END) AS last_error, \
                   min(CASE WHEN state = 'failed' THEN step END) AS failed_step, \
                   min(CASE WHEN state = 'started' THEN step END) AS started_step \
                 FROM public.dsql_mcp_migrations GROUP BY name ORDER BY name COLLATE \"C\"",
                vec![],
            ),
            ctl,
        )
        .await?;
    Ok(o.rows)
}
