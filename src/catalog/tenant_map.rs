//! Which relations carry the tenant column: the table → column map tenant isolation reads.
//!
//! Read from the catalog in one read-only unit (every table, partitioned table, view,
//! materialized view and foreign table, with the type of the tenant column when it has one,
//! plus the session's effective search path), then cached per cluster. The cache is
//! dropped after DDL runs on the cluster (`invalidate`) and re-read once when a statement
//! names a relation the cached map does not know or knows without the column (`policy::tenant`
//! reports those), so a map that lags behind the catalog can only refuse, never scope less:
//! a relation that lost the column makes the fence fail in the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::executor::{Control, Executor, Mode, Statement, Work};

/// Every relation the role can see, with the tenant column's type (`NULL`: no such column).
const RELATIONS: &str = "SELECT n.nspname AS schema_name, c.relname AS table_name, \
       (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a \
         WHERE a.attrelid = c.oid AND a.attname = $1::text AND a.attnum > 0 AND NOT a.attisdropped) AS tenant_type \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')";

/// The schemas an unqualified name is looked up in, in order (`pg_catalog` included, as
/// PostgreSQL searches it first unless the path names it later).
const SEARCH_PATH: &str =
    "SELECT pg_catalog.array_to_string(pg_catalog.current_schemas(true), chr(1)) AS path";

/// One reading of the catalog.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// (schema, relation) as stored → the tenant column's type, `None` without the column.
    pub relations: HashMap<(String, String), Option<String>>,
    /// The effective search path, first schema first.
    pub search_path: Vec<String>,
}

impl Snapshot {
    /// Resolves a (folded) name as PostgreSQL would: a qualified name as given, an
    /// unqualified one in the first schema of the search path that holds it.
    pub fn resolve(&self, schema: Option<&str>, name: &str) -> Option<(String, Option<&str>)> {
        match schema {
            Some(s) => self
                .relations
                .get(&(s.to_owned(), name.to_owned()))
                .map(|t| (s.to_owned(), t.as_deref())),
            None => self.search_path.iter().find_map(|s| {
                self.relations
                    .get(&(s.clone(), name.to_owned()))
                    .map(|t| (s.clone(), t.as_deref()))
            }),
        }
    }
}

/// The cached map of one cluster.
#[derive(Debug, Default)]
pub struct TenantMap {
    cached: Mutex<Option<(String, Arc<Snapshot>)>>,
}

impl TenantMap {
    /// The map for `column`, read from the catalog when none is cached (or `fresh`).
    pub async fn get(
        &self,
        executor: &Executor,
        column: &str,
        fresh: bool,
        ctl: &Control<'_>,
    ) -> Result<Arc<Snapshot>, String> {
        if !fresh
            && let Some((c, snap)) = self.cached.lock().ok().and_then(|g| g.clone())
            && c == column
        {
            return Ok(snap);
        }
        let snap = Arc::new(read(executor, column, ctl).await?);
        if let Ok(mut g) = self.cached.lock() {
            *g = Some((column.to_owned(), Arc::clone(&snap)));
        }
        Ok(snap)
    }

    /// Forgets the cached map (after DDL ran on the cluster).
    pub fn invalidate(&self) {
        if let Ok(mut g) = self.cached.lock() {
            *g = None;
        }
    }
}

async fn read(executor: &Executor, column: &str, ctl: &Control<'_>) -> Result<Snapshot, String> {
    let mut work = Work::new(
        Mode::ReadOnly,
        vec![
            Statement {
                sql: RELATIONS.into(),
                params: vec![Value::from(column)],
            },
            Statement {
                sql: SEARCH_PATH.into(),
                params: vec![],
            },
        ],
    );
    work.keep_all = true;
    let mut parts = executor
        .run_all(&work, ctl)
        .await
        .map_err(|e| format!("the tenant map could not be read from the catalog: {e}"))?
        .into_iter()
        .map(|o| o.rows);
    let mut snap = Snapshot::default();
    for row in parts.next().unwrap_or_default() {
        let (Some(s), Some(t)) = (
            row.get("schema_name").and_then(Value::as_str),
            row.get("table_name").and_then(Value::as_str),
        ) else {
            continue;
        };
        let ty = row
            .get("tenant_type")
            .and_then(Value::as_str)
            .map(str::to_owned);
        snap.relations.insert((s.to_owned(), t.to_owned()), ty);
    }
    if let Some(path) = parts
        .next()
        .and_then(|rows| rows.into_iter().next())
        .and_then(|row| row.get("path").and_then(Value::as_str).map(str::to_owned))
    {
        snap.search_path = path
            .split('\u{1}')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
    }
    Ok(snap)
}
