//! Catalog reads: what the cluster holds, read from `pg_catalog`.
//!
//! The schema tools (`describe_table`), the table resources and the tenant map all read the
//! catalog; the reads live here, below the tools and the knowledge layer, so neither borrows
//! them from the other. Every name is bound as a parameter, never spliced.

pub mod tenant_map;

use serde_json::{Value, json};

use crate::executor::{Control, Executor, Mode, Statement, Work};

/// A table's name as the catalog reads resolve it: as stored first, then PostgreSQL's
/// folding (equal to the stored form for a quoted name or one read from a URI).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableKey {
    pub schema: String,
    pub table: String,
    pub schema_folded: String,
    pub table_folded: String,
}

/// At most this many tables are listed as resources (templates still reach the rest).
const MAX_LISTED_TABLES: i64 = 1000;

/// Every user table, outside the system schemas.
const LIST_ALL_TABLES: &str = "SELECT n.nspname AS schema_name, c.relname AS table_name \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'sys') \
       AND n.nspname NOT LIKE 'pg\\_%' \
     ORDER BY n.nspname COLLATE \"C\", c.relname COLLATE \"C\" LIMIT $1";

/// The table's OID, found as stored: exact name first, then PostgreSQL's lower-case folding
/// ($1 schema, $2 table, $3 and $4 their foldings; a quoted name's folding is itself, see
/// `names`). Every statement of `describe` filters on it, so the one unit resolves the name
/// once per statement inside a single snapshot.
macro_rules! table_oid {
    () => {
        "(SELECT c.oid FROM pg_catalog.pg_class c \
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
          WHERE n.nspname IN ($1::text, $3::text) AND c.relname IN ($2::text, $4::text) \
            AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
          ORDER BY (n.nspname = $1::text) DESC, (c.relname = $2::text) DESC LIMIT 1)"
    };
}

const RESOLVE_TABLE: &str = concat!(
    "SELECT n.nspname AS schema_name, c.relname AS table_name \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.oid = ",
    table_oid!()
);

const DESCRIBE_COLUMNS: &str = concat!(
    "SELECT a.attname AS name, \
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, \
       NOT a.attnotnull AS nullable, \
       CASE WHEN a.attgenerated = '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END AS default, \
       CASE a.attidentity WHEN 'a' THEN 'ALWAYS' WHEN 'd' THEN 'BY DEFAULT' END AS identity, \
       CASE WHEN a.attgenerated <> '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END AS generated \
     FROM pg_catalog.pg_attribute a \
     LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
     WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attrelid = ",
    table_oid!(),
    " ORDER BY a.attnum"
);

const DESCRIBE_INDEXES: &str = concat!(
    "SELECT i.relname AS name, \
       pg_catalog.pg_get_indexdef(ix.indexrelid) AS definition, \
       ix.indisunique AS unique, ix.indisprimary AS primary, ix.indisvalid AS valid \
     FROM pg_catalog.pg_index ix \
     JOIN pg_catalog.pg_class i ON i.oid = ix.indexrelid \
     WHERE ix.indrelid = ",
    table_oid!(),
    " ORDER BY ix.indisprimary DESC, i.relname"
);

const DESCRIBE_CONSTRAINTS: &str = concat!(
    "SELECT con.conname AS name, \
       CASE con.contype WHEN 'p' THEN 'PRIMARY KEY' WHEN 'u' THEN 'UNIQUE' WHEN 'c' THEN 'CHECK' \
         WHEN 'f' THEN 'FOREIGN KEY' WHEN 'x' THEN 'EXCLUSION' ELSE con.contype::text END AS type, \
       pg_catalog.pg_get_constraintdef(con.oid) AS definition, \
       con.convalidated AS validated \
     FROM pg_catalog.pg_constraint con \
     WHERE con.conrelid = ",
    table_oid!(),
    " ORDER BY con.contype = 'p' DESC, con.conname"
);

/// A table's columns, indexes and constraints, or `None` when there is no such table.
/// Shared by `describe_table` and the `dsql://tables/<schema>/<table>` resources.
pub async fn describe(
    executor: &Executor,
    key: &TableKey,
    ctl: &Control<'_>,
) -> Result<Option<Value>, String> {
    // One unit: one connection, one transaction, one snapshot for the name and its parts.
    let key: Vec<Value> = vec![
        key.schema.as_str().into(),
        key.table.as_str().into(),
        key.schema_folded.as_str().into(),
        key.table_folded.as_str().into(),
    ];
    let statements = [
        RESOLVE_TABLE,
        DESCRIBE_COLUMNS,
        DESCRIBE_INDEXES,
        DESCRIBE_CONSTRAINTS,
    ]
    .into_iter()
    .map(|sql| Statement {
        sql: sql.to_owned(),
        params: key.clone(),
    })
    .collect();
    let mut work = Work::new(Mode::ReadOnly, statements);
    work.keep_all = true;
    let mut parts = executor
        .run_all(&work, ctl)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|o| o.rows);
    let Some(found) = parts.next().and_then(|rows| rows.into_iter().next()) else {
        return Ok(None);
    };
    let mut next = || {
        Value::Array(
            parts
                .next()
                .unwrap_or_default()
                .into_iter()
                .map(Value::Object)
                .collect(),
        )
    };
    Ok(Some(json!({
        "schema": found["schema_name"],
        "table": found["table_name"],
        "columns": next(),
        "indexes": next(),
        "constraints": next(),
    })))
}

/// Every user table (schema, name), at most `MAX_LISTED_TABLES`, for the table resources.
pub async fn tables(
    executor: &Executor,
    ctl: &Control<'_>,
) -> Result<Vec<(String, String)>, String> {
    let work = Work::new(
        Mode::ReadOnly,
        vec![Statement {
            sql: LIST_ALL_TABLES.into(),
            params: vec![Value::from(MAX_LISTED_TABLES)],
        }],
    );
    let outcome = executor.run(&work, ctl).await.map_err(|e| e.to_string())?;
    Ok(outcome
        .rows
        .into_iter()
        .filter_map(|row| {
            let schema = row.get("schema_name")?.as_str()?.to_owned();
            let table = row.get("table_name")?.as_str()?.to_owned();
            Some((schema, table))
        })
        .collect())
}
