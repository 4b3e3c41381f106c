//! The reference server's database tools: `readonly_query`, `transact`, `get_schema`.
//!
//! Same names, arguments and result shapes as `awslabs.aurora-dsql-mcp-server`, and the
//! same order of checks: not configured, empty input, the SQL policy, then the database.
//! All validation finishes before a connection is taken.

use serde_json::{Map, Value};

use super::args::ArgReader;
use super::names;
use super::{Call, Output, ToolError, ToolResult};
use crate::executor::{Control, ExecError, Mode, Outcome, Statement, Work};
use crate::policy::{self, Access, Placeholders, StatementKind};

/// SQLSTATE 25006: a write inside a read-only transaction.
const READ_ONLY_SQL_TRANSACTION: &str = "25006";

pub async fn readonly_query(
    tb: &Call<'_>,
    args: &Map<String, Value>,
    ctl: &Control<'_>,
) -> ToolResult {
    let (executor, sql, params) = tb.statement_call("readonly_query", args, "params")?;
    let checked = policy::check_with(
        &sql,
        params.as_ref().map(Vec::len),
        Placeholders::Psycopg,
        Access::ReadOnly,
        &tb.config.allowed_functions,
    )?;
    let scoped = super::tenant::scope(
        tb,
        checked.sql,
        params.unwrap_or_default(),
        Access::ReadOnly,
        ctl,
    )
    .await?;
    let work = Work::new(
        Mode::ReadOnly,
        vec![Statement {
            sql: scoped.sql,
            params: scoped.params,
        }],
    )
    .rendered(tb.config.text_format);
    match executor.run(&work, ctl).await {
        Ok(outcome) => Ok(super::tenant::mark(tb, rows(outcome))),
        Err(e) if e.code() == Some(READ_ONLY_SQL_TRANSACTION) => Err(ToolError(format!(
            "readonly_query does not support write operations. Use transact ({})",
            e.db_error().map(|d| d.message.as_str()).unwrap_or_default()
        ))),
        Err(e) => Err(ToolError(e.to_string())),
    }
}

pub async fn transact(tb: &Call<'_>, args: &Map<String, Value>, ctl: &Control<'_>) -> ToolResult {
    let mut a = ArgReader::new("transact", args);
    let sql_list = a.strings("sql_list");
    let params_list = a.value_lists("params_list");
    a.finish().map_err(ToolError)?;
    let executor = tb.executor()?;
    if sql_list.is_empty() || sql_list.iter().all(|s| s.trim().is_empty()) {
        return Err(ToolError(
            "Incorrect invocation: transact invoked with no sql statements".into(),
        ));
    }
    if let Some(p) = params_list.as_ref().filter(|p| p.len() != sql_list.len()) {
        return Err(ToolError(format!(
            "params_list length ({}) must equal sql_list length ({})",
            p.len(),
            sql_list.len()
        )));
    }
    let access = tb.access();
    let mut statements = Vec::with_capacity(sql_list.len());
    let mut wait_for_job = false;
    let mut ddl = false;
    for (i, sql) in sql_list.iter().enumerate() {
        let params = params_list.as_ref().and_then(|p| p[i].clone());
        super::check_sql_size(sql).map_err(|e| numbered(&sql_list, i, e.0))?;
        let checked = policy::check_with(
            sql,
            params.as_ref().map(Vec::len),
            Placeholders::Psycopg,
            access,
            &tb.config.allowed_functions,
        )
        .map_err(|e| numbered(&sql_list, i, tb.refusal(e)))?;
        wait_for_job |= checked.kind == StatementKind::WaitForJob;
        ddl |= checked.kind == StatementKind::Ddl;
        statements.push(Statement {
            sql: checked.sql,
            params: params.unwrap_or_default(),
        });
    }
    if wait_for_job && statements.len() > 1 {
        return Err(ToolError(
            "CALL sys.wait_for_job must be sent alone: DSQL runs it outside a transaction block, so it cannot share a transact call with other statements".into(),
        ));
    }
    let mode = match access {
        _ if wait_for_job => Mode::Autocommit,
        Access::ReadOnly => Mode::ReadOnly,
        Access::ReadWrite => Mode::ReadWrite,
    };
    if access == Access::ReadWrite {
        let texts: Vec<&str> = statements.iter().map(|s| s.sql.as_str()).collect();
        policy::check_rules(&texts, tb.config.rules)?;
    }
    // Tenant isolation runs after the guard and the rules, on each statement.
    let mut scoped = Vec::with_capacity(statements.len());
    for (i, s) in statements.into_iter().enumerate() {
        let s = super::tenant::scope(tb, s.sql, s.params, access, ctl)
            .await
            .map_err(|e| numbered(&sql_list, i, e.0))?;
        scoped.push(Statement {
            sql: s.sql,
            params: s.params,
        });
    }
    let result = executor
        .run(
            &Work::new(mode, scoped).rendered(tb.config.text_format),
            ctl,
        )
        .await;
    if ddl {
        super::tenant::ddl_ran(tb);
    }
    match result {
        Ok(outcome) => Ok(super::tenant::mark(tb, rows(outcome))),
        Err(e) => Err(ToolError(describe_failure(&sql_list, access, &e))),
    }
}

pub async fn get_schema(tb: &Call<'_>, args: &Map<String, Value>, ctl: &Control<'_>) -> ToolResult {
    let mut a = ArgReader::new("get_schema", args);
    let table_name = a.string("table_name");
    a.finish().map_err(ToolError)?;
    let executor = tb.executor()?;
    let name = table_name.trim();
    if name.is_empty() {
        return Err(ToolError(
            "Incorrect invocation: Schema invoked without a table name".into(),
        ));
    }
    // `schema.table` narrows to one schema; a bare name matches that table in every schema.
    // Bare parts match case-insensitively (the reference lower-cases both sides, so
    // `data.Associate` finds `data.associate`); a quoted part (`public."a.b"`) matches exactly.
    let (schema, table) = names::split_qualified(name);
    let table = names::parse(table, "table name").map_err(ToolError)?;
    let schema = schema
        .map(|s| names::parse(s, "schema name"))
        .transpose()
        .map_err(ToolError)?;
    let matches = |column: &str, n: usize, quoted: bool| {
        if quoted {
            format!("{column} = ${n}")
        } else {
            format!("LOWER({column}) = LOWER(${n})")
        }
    };
    let mut filter = matches("table_name", 1, table.quoted);
    let mut params = vec![Value::from(table.exact.as_str())];
    if let Some(schema) = &schema {
        filter = format!("{filter} AND {}", matches("table_schema", 2, schema.quoted));
        params.push(Value::from(schema.exact.as_str()));
    }
    // Each row names its table: a bare name may match tables of several schemas (or
    // differently-cased tables of one), and their columns must not blur together.
    let sql = format!(
        "SELECT column_name, data_type, table_schema, table_name FROM information_schema.columns \
         WHERE {filter} ORDER BY table_schema, table_name, ordinal_position"
    );
    let work =
        Work::new(Mode::ReadOnly, vec![Statement { sql, params }]).rendered(tb.config.text_format);
    let outcome = executor
        .run(&work, ctl)
        .await
        .map_err(|e| ToolError(e.to_string()))?;
    if outcome.rendered.as_ref().is_none_or(|r| r.count == 0) {
        // The reference answers `[]` here; an agent then concludes the table has no columns.
        return Err(ToolError(format!(
            "no table matching \"{}\" was found{} (or this role may not read its columns). \
             get_schema matches bare names case-insensitively; quote a name to match it exactly \
             (public.\"Order.Items\"), and use list_tables to see a schema's tables.",
            names::preview(name),
            match &schema {
                Some(s) => format!(" in schema \"{}\"", s.exact),
                None => " in any schema".into(),
            }
        )));
    }
    Ok(rows(outcome))
}

/// A row tool's answer from its unit's outcome (rendered as the unit asked).
fn rows(outcome: Outcome) -> Output {
    Output::Rows {
        rows: outcome.rendered.unwrap_or_default(),
        truncated: outcome.truncated,
        total_rows: outcome.rows_read,
    }
}

/// Prefixes a policy error with the statement it is about when there are several.
fn numbered(sql_list: &[String], index: usize, e: impl std::fmt::Display) -> ToolError {
    if sql_list.len() == 1 {
        ToolError(e.to_string())
    } else {
        ToolError(format!(
            "statement {} of {}: {e}",
            index + 1,
            sql_list.len()
        ))
    }
}

/// A failed `transact`, naming the statement that failed.
fn describe_failure(sql_list: &[String], access: Access, e: &ExecError) -> String {
    if access == Access::ReadOnly && e.code() == Some(READ_ONLY_SQL_TRANSACTION) {
        return format!(
            "{} (the database refused a write inside the read-only transaction)",
            policy::PolicyError::WriteNotAllowed("transact runs read-only".into())
        );
    }
    match e {
        ExecError::Statement { index, .. } if sql_list.len() > 1 => {
            format!("statement {} of {} failed: {e}", index + 1, sql_list.len())
        }
        _ => e.to_string(),
    }
}
