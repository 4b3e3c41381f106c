//! The Aurora DSQL Kiro power's tools: `query`, `execute`, `list_tables`, `describe_table`.
//!
//! They share the reference tools' guard, executor and error style, but take `$1, $2`
//! placeholders and answer with structured JSON (plus the same JSON as text). Schema and
//! table names are always bound as parameters, never spliced into SQL.

use serde_json::{Map, Value, json};

use super::args::ArgReader;
use super::names;
use super::{Call, Output, ToolError, ToolResult};
use crate::catalog;
use crate::executor::{Control, Mode, Outcome, Statement, Work};
use crate::policy::{self, Access, Placeholders, PolicyError, StatementKind};

/// The read-only check of the power's read tools (`query`, `explain`), `$n` placeholders.
/// With writes allowed, a write is pointed at `execute` rather than at the configuration.
pub(super) fn check_read(
    tb: &Call<'_>,
    sql: &str,
    parameters: usize,
) -> Result<policy::Checked, ToolError> {
    policy::check_with(
        sql,
        Some(parameters),
        Placeholders::Numbered,
        Access::ReadOnly,
        &tb.config.allowed_functions,
    )
    .map_err(|e| match e {
        PolicyError::WriteNotAllowed(why) if tb.access() == Access::ReadWrite => ToolError(format!(
            "This tool runs reads only; the {} allows writes: run the statement with execute ({why})",
            if tb.toolbox.clusters.several() {
                "cluster"
            } else {
                "server"
            }
        )),
        e => ToolError(e.to_string()),
    })
}

pub async fn query(tb: &Call<'_>, args: &Map<String, Value>, ctl: &Control<'_>) -> ToolResult {
    let (executor, sql, parameters) = tb.statement_call("query", args, "parameters")?;
    let parameters = parameters.unwrap_or_default();
    let checked = check_read(tb, &sql, parameters.len())?;
    let scoped = super::tenant::scope(tb, checked.sql, parameters, Access::ReadOnly, ctl).await?;
    let mut work = Work::new(
        Mode::ReadOnly,
        vec![Statement {
            sql: scoped.sql,
            params: scoped.params,
        }],
    );
    // `columns` is part of the result even when there are no rows.
    work.describe = true;
    let outcome = executor.run(&work, ctl).await.map_err(|e| {
        if e.code() == Some("25006") {
            ToolError("query does not support write operations. Use execute".into())
        } else {
            ToolError(e.to_string())
        }
    })?;
    Ok(super::tenant::mark(
        tb,
        Output::Structured(rows_json(outcome)),
    ))
}

/// The policy one write statement with `$n` placeholders meets, for every tool that runs
/// one (`execute`, `execute_batched`): the guard in write mode, then the DSQL rules.
pub(super) fn write_policy(
    tb: &Call<'_>,
    sql: &str,
    parameters: usize,
) -> Result<policy::Checked, ToolError> {
    let checked = policy::check_with(
        sql,
        Some(parameters),
        Placeholders::Numbered,
        Access::ReadWrite,
        &tb.config.allowed_functions,
    )?;
    policy::check_rules(&[checked.sql.as_str()], tb.config.rules)?;
    Ok(checked)
}

pub async fn execute(tb: &Call<'_>, args: &Map<String, Value>, ctl: &Control<'_>) -> ToolResult {
    let (executor, sql, parameters) = tb.statement_call("execute", args, "parameters")?;
    if tb.access() == Access::ReadOnly {
        return Err(ToolError(tb.refusal(PolicyError::WriteNotAllowed(
            format!("execute needs {}", tb.write_requirement()),
        ))));
    }
    let parameters = parameters.unwrap_or_default();
    let checked = write_policy(tb, &sql, parameters.len())?;
    let mode = if checked.kind == StatementKind::WaitForJob {
        Mode::Autocommit
    } else {
        Mode::ReadWrite
    };
    let command = checked.command.clone();
    let ddl = checked.kind == StatementKind::Ddl;
    let scoped = super::tenant::scope(tb, checked.sql, parameters, Access::ReadWrite, ctl).await?;
    let work = Work::new(
        mode,
        vec![Statement {
            sql: scoped.sql,
            params: scoped.params,
        }],
    );
    let outcome = executor.run(&work, ctl).await;
    if ddl {
        super::tenant::ddl_ran(tb);
    }
    let outcome = outcome.map_err(|e| ToolError(e.to_string()))?;
    let returned = outcome.rows.len() as u64;
    let mut result = json!({
        "command": command,
        "rowCount": outcome.rows_affected.unwrap_or(returned),
    });
    // RETURNING rows are bounded like any result; say so when they were cut.
    if let Some(why) = &outcome.truncated {
        result["truncated"] = Value::Bool(true);
        result["totalRows"] = Value::from(outcome.rows_read);
        result["note"] = Value::String(super::truncation_note(
            outcome.rows.len(),
            Some(outcome.rows_read),
            why,
        ));
    }
    if !outcome.columns.is_empty() {
        result["rows"] = Value::Array(outcome.rows.into_iter().map(Value::Object).collect());
    }
    Ok(super::tenant::mark(tb, Output::Structured(result)))
}

pub async fn list_tables(
    tb: &Call<'_>,
    args: &Map<String, Value>,
    ctl: &Control<'_>,
) -> ToolResult {
    let mut a = ArgReader::new("list_tables", args);
    let schema = a.string_or("schema", "public");
    let include_views = a.boolean_or("include_views", false);
    a.finish().map_err(ToolError)?;
    let executor = tb.executor()?;
    let name = names::parse(&schema, "schema name").map_err(ToolError)?;
    // The schema resolves as in `describe_table`: as stored first, then folded. One unit
    // (one snapshot): does the schema exist, and what does it hold.
    const SCHEMA_OID: &str = "(SELECT n.oid FROM pg_catalog.pg_namespace n \
          WHERE n.nspname IN ($1::text, $2::text) ORDER BY (n.nspname = $1::text) DESC LIMIT 1)";
    let key = vec![Value::from(name.exact), Value::from(name.folded)];
    let mut work = Work::new(
        Mode::ReadOnly,
        vec![
            Statement {
                sql: format!("SELECT 1 AS found WHERE {SCHEMA_OID} IS NOT NULL"),
                params: key.clone(),
            },
            Statement {
                sql: format!(
                    "SELECT c.relname AS name, c.relkind IN ('v', 'm') AS is_view FROM pg_catalog.pg_class c \
                     WHERE c.relnamespace = {SCHEMA_OID} AND c.relkind IN ('r', 'p', 'v', 'm') \
                     ORDER BY c.relname COLLATE \"C\""
                ),
                params: key,
            },
        ],
    );
    work.keep_all = true;
    let mut parts = executor
        .run_all(&work, ctl)
        .await
        .map_err(|e| ToolError(e.to_string()))?
        .into_iter()
        .map(|o| o.rows);
    if parts.next().unwrap_or_default().is_empty() {
        return Err(ToolError(format!(
            "schema \"{schema}\" does not exist (query SELECT nspname FROM pg_catalog.pg_namespace to see the schemas)"
        )));
    }
    let (mut tables, mut views) = (Vec::new(), Vec::new());
    for mut row in parts.next().unwrap_or_default() {
        let is_view = row.get("is_view") == Some(&Value::Bool(true));
        if let Some(name) = row.remove("name") {
            if is_view {
                views.push(name)
            } else {
                tables.push(name)
            }
        }
    }
    if !include_views {
        return Ok(Output::Listing {
            text: Value::Array(tables.clone()),
            structured: json!({ "schema": schema, "tables": tables }),
        });
    }
    let out = json!({ "schema": schema, "tables": tables, "views": views });
    Ok(Output::Listing {
        text: out.clone(),
        structured: out,
    })
}

pub async fn describe_table(
    tb: &Call<'_>,
    args: &Map<String, Value>,
    ctl: &Control<'_>,
) -> ToolResult {
    let mut a = ArgReader::new("describe_table", args);
    let table = a.string("table_name");
    let schema = a.string_or("schema", "public");
    a.finish().map_err(ToolError)?;
    // `schema.table` in table_name, as get_schema takes it (a quoted part may hold a dot).
    let (table, schema) = match names::split_qualified(&table) {
        (Some(_), _) if args.get("schema").is_some_and(|v| !v.is_null()) => {
            return Err(ToolError(format!(
                "table_name \"{table}\" names its schema and the schema argument names one too: give the schema in one place"
            )));
        }
        (Some(s), t) => (t.to_owned(), s.to_owned()),
        (None, _) => (table, schema),
    };
    let executor = tb.executor()?;
    if table.trim().is_empty() {
        return Err(ToolError(
            "Incorrect invocation: describe_table invoked without a table name".into(),
        ));
    }
    let schema_name = names::parse(&schema, "schema name").map_err(ToolError)?;
    let table_name = names::parse(&table, "table name").map_err(ToolError)?;
    match catalog::describe(executor, &schema_name.key(&table_name), ctl)
        .await
        .map_err(ToolError)?
    {
        Some(description) => Ok(Output::Structured(description)),
        None => Err(ToolError(format!(
            "table \"{table}\" was not found in schema \"{schema}\" (list_tables shows the tables of a schema)"
        ))),
    }
}

/// The `query` result: rows, their count, and the columns with their types.
fn rows_json(outcome: Outcome) -> Value {
    let count = outcome.rows.len();
    let total = outcome.rows_read;
    let mut out = json!({
        "rows": outcome.rows.into_iter().map(Value::Object).collect::<Vec<_>>(),
        "rowCount": count,
        "columns": outcome.columns,
    });
    if let Some(why) = outcome.truncated {
        out["truncated"] = Value::Bool(true);
        out["totalRows"] = Value::from(total);
        out["note"] = Value::String(super::truncation_note(count, Some(total), &why));
    }
    out
}
