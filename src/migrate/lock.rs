//! The migration lock: one row of `public.dsql_mcp_migration_lock` with a holder and a
//! lease, because DSQL has no advisory locks (`pg_advisory_lock` is not supported).
//!
//! Taken by an `INSERT … ON CONFLICT DO UPDATE … WHERE the lease expired` in one unit: two
//! runners racing for it conflict at commit (OCC, 40001), the executor re-runs the loser's
//! unit, which then sees the winner's live lease and is refused with the holder and its
//! lease. A lease lasts `LEASE`; the runner renews it while it works (`renew`), and releases
//! it at the end. A lease found expired (a runner that died) is taken over, and the result
//! says so.

use std::time::Duration;

use serde_json::Value;

use crate::executor::{Control, ExecError, Executor, Mode, Statement, Work};

pub const TABLE: &str = "public.dsql_mcp_migration_lock";

pub const CREATE: &str = "CREATE TABLE IF NOT EXISTS public.dsql_mcp_migration_lock (\
     id integer PRIMARY KEY, \
     holder text NOT NULL, \
     migration text, \
     acquired_at timestamptz NOT NULL, \
     lease_until timestamptz NOT NULL)";

/// How long a lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(300);
/// How often a running migration renews its lease.
pub const RENEW_EVERY: Duration = Duration::from_secs(60);

/// A lock this runner holds.
#[derive(Clone, Debug)]
pub struct Held {
    pub holder: String,
    /// The holder whose expired lease was taken over, and when it expired.
    pub took_over: Option<(String, String)>,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub enum LockError {
    Busy {
        holder: String,
        migration: Option<String>,
        lease_until: String,
    },
    Exec(ExecError),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Busy {
                holder,
                migration,
                lease_until,
            } => write!(
                f,
                "another migration runner holds the migration lock: {holder}{} with a lease until {lease_until}. \
                 Nothing was applied; run again when it has finished (a runner that died loses the lock when its \
                 lease expires; the lock row is {TABLE})",
                migration
                    .as_deref()
                    .map(|m| format!(" (applying {m})"))
                    .unwrap_or_default()
            ),
            LockError::Exec(e) => write!(f, "taking the migration lock failed: {e}"),
        }
    }
}

/// A name for this runner: process, a random tag, and what it runs as.
pub fn holder_name(what: &str) -> String {
    format!(
        "{what} pid {} #{:08x}",
        std::process::id(),
        fastrand::u32(..)
    )
}

fn secs() -> Value {
    Value::from(LEASE.as_secs())
}

/// Takes the lock for `holder`, or says who has it.
pub async fn acquire(
    executor: &Executor,
    holder: &str,
    migration: &str,
    ctl: &Control<'_>,
) -> Result<Held, LockError> {
    super::history::ensure(executor, TABLE, CREATE, ctl)
        .await
        .map_err(LockError::Exec)?;
    let mut work = Work::new(
        Mode::ReadWrite,
        vec![
            Statement {
                sql: "SELECT holder, migration, lease_until::text AS lease_until, lease_until < now() AS expired \
                      FROM public.dsql_mcp_migration_lock WHERE id = 1"
                    .into(),
                params: vec![],
            },
            Statement {
                sql: "INSERT INTO public.dsql_mcp_migration_lock AS l (id, holder, migration, acquired_at, lease_until) \
                      VALUES (1, $1, $2, now(), now() + $3::int * interval '1 second') \
                      ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, migration = EXCLUDED.migration, \
                        acquired_at = EXCLUDED.acquired_at, lease_until = EXCLUDED.lease_until \
                      WHERE l.lease_until < now() OR l.holder = EXCLUDED.holder \
                      RETURNING holder"
                    .into(),
                params: vec![Value::from(holder), Value::from(migration), secs()],
            },
        ],
    );
    work.keep_all = true;
    let mut out = executor
        .run_all(&work, ctl)
        .await
        .map_err(LockError::Exec)?
        .into_iter();
    let before = out.next().and_then(|o| o.rows.into_iter().next());
    let taken = out.next().is_some_and(|o| !o.rows.is_empty());
    let field = |k: &str| {
        before
            .as_ref()
            .and_then(|r| r.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if !taken {
        return Err(LockError::Busy {
            holder: field("holder").unwrap_or_else(|| "an unknown runner".into()),
            migration: field("migration"),
            lease_until: field("lease_until").unwrap_or_else(|| "?".into()),
        });
    }
    let took_over = match (field("holder"), field("lease_until")) {
        (Some(h), Some(until)) if h != holder => Some((h, until)),
        _ => None,
    };
    Ok(Held {
        holder: holder.to_owned(),
        took_over,
    })
}

/// Extends the lease; `Ok(false)` when this runner no longer holds the lock.
pub async fn renew(
    executor: &Executor,
    holder: &str,
    ctl: &Control<'_>,
) -> Result<bool, ExecError> {
    let o = executor
        .run(
            &Work::new(
                Mode::ReadWrite,
                vec![Statement {
                    sql: "UPDATE public.dsql_mcp_migration_lock SET lease_until = now() + $2::int * interval '1 second' \
                          WHERE id = 1 AND holder = $1"
                        .into(),
                    params: vec![Value::from(holder), secs()],
                }],
            ),
            ctl,
        )
        .await?;
    Ok(o.rows_affected == Some(1))
}

/// Gives the lock up (only if this runner still holds it).
pub async fn release(executor: &Executor, holder: &str) -> Result<(), ExecError> {
    // Released even when the call was cancelled: its own, uncancelled control.
    let ctl = Control::none();
    executor
        .run(
            &Work::new(
                Mode::ReadWrite,
                vec![Statement {
                    sql: "DELETE FROM public.dsql_mcp_migration_lock WHERE id = 1 AND holder = $1"
                        .into(),
                    params: vec![Value::from(holder)],
                }],
            ),
            &ctl,
        )
        .await
        .map(|_| ())
}
