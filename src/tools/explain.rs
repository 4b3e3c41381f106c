//! `explain`: a query's plan, read for an agent (`crate::plan`), with findings that each
//! carry a concrete fix.
//!
//! The SQL passes the read-only guard exactly as `query`'s does, so `analyze` (which runs
//! the statement) only ever runs a read, inside a read-only transaction. A suggested
//! `CREATE INDEX ASYNC` is offered only when the DSQL rule checker accepts it.

use serde_json::{Map, Value, json};

use super::args::ArgReader;
use super::{Call, Output, ToolError, ToolResult};
use crate::executor::{Control, Executor, Mode, Statement, Work};
use crate::plan::{self, Plan};
use crate::policy;

/// A row estimate this many times off the actual count is reported.
const ESTIMATE_FACTOR: f64 = 10.0;

pub async fn explain(tb: &Call<'_>, args: &Map<String, Value>, ctl: &Control<'_>) -> ToolResult {
    let mut a = ArgReader::new("explain", args);
    let analyze = a.boolean_or("analyze", false);
    a.finish().map_err(ToolError)?;
    let (executor, sql, parameters) = tb.statement_call("explain", args, "parameters")?;
    let parameters = parameters.unwrap_or_default();
    let checked = super::power::check_read(tb, &sql, parameters.len())?;
    if checked.command == "EXPLAIN" {
        return Err(ToolError(
            "pass the statement itself: explain adds EXPLAIN (and ANALYZE with analyze=true)"
                .into(),
        ));
    }
    let prefix = if analyze {
        "EXPLAIN (ANALYZE, VERBOSE) "
    } else {
        "EXPLAIN "
    };
    // With a tenant bound, the plan is the scoped statement's (what a query would run).
    let scoped = super::tenant::scope(
        tb,
        checked.sql,
        parameters,
        crate::policy::Access::ReadOnly,
        ctl,
    )
    .await?;
    let work = Work::new(
        Mode::ReadOnly,
        vec![Statement {
            sql: format!("{prefix}{}", scoped.sql),
            params: scoped.params,
        }],
    );
    let outcome = executor
        .run(&work, ctl)
        .await
        .map_err(|e| ToolError(e.to_string()))?;
    let lines: Vec<String> = outcome
        .rows
        .iter()
        .filter_map(|r| r.values().next().and_then(Value::as_str).map(str::to_owned))
        .collect();
    let parsed = plan::parse(&lines);
    let findings = findings(tb, executor, &parsed, ctl).await?;

    let mut out = json!({
        "plan": lines.join("\n"),
        "analyze": analyze,
        "engine": if parsed.is_postgresql() { "postgresql" } else { "dsql" },
        "nodes": plan::nodes_json(&parsed),
        "findings": findings,
    });
    if parsed.is_postgresql() {
        out["note"] = Value::String(
            "This plan is PostgreSQL's (the local sandbox or a PostgreSQL stand-in), not DSQL's: Seq Scan is read as \
             DSQL's Full Scan, and there are no Storage Scan / Storage Lookup nodes or DPU estimates. On a DSQL \
             cluster the node names and costs differ."
                .into(),
        );
    }
    if let Some(t) = parsed.planning_time_ms {
        out["planning_time_ms"] = json!(t);
    }
    if let Some(t) = parsed.execution_time_ms {
        out["execution_time_ms"] = json!(t);
    }
    if !parsed.dpu.is_empty() {
        let dpu: Map<String, Value> = parsed
            .dpu
            .iter()
            .map(|(k, v)| (k.to_lowercase(), json!(v)))
            .collect();
        out["dpu"] = Value::Object(dpu);
    }
    Ok(Output::Structured(out))
}

/// An identifier as SQL text: bare when PostgreSQL would read it back unchanged.
fn ident(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// The leading column of every index on a relation, with its schema-qualified name;
/// `None` when the name does not resolve (a CTE or a function scan).
const INDEX_LEADS: &str = "SELECT n.nspname AS schema_name, c.relname AS table_name, \
       coalesce((SELECT array_agg(a.attname::text) FROM pg_catalog.pg_index ix \
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = ix.indkey[0] \
                 WHERE ix.indrelid = c.oid), '{}') AS leads \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.oid = pg_catalog.to_regclass($1)";

async fn findings(
    tb: &Call<'_>,
    executor: &Executor,
    parsed: &Plan,
    ctl: &Control<'_>,
) -> Result<Vec<Value>, ToolError> {
    let mut out = Vec::new();
    for (i, relation, columns) in plan::full_scan_equalities(parsed) {
        let node = &parsed.nodes[i];
        out.extend(missing_index(tb, executor, &relation, &columns, node, ctl).await?);
    }
    out.extend(plan::estimate_findings(parsed, ESTIMATE_FACTOR));
    Ok(out)
}

/// The missing-index finding for the first equality column no index leads with, if the
/// suggested `CREATE INDEX ASYNC` passes the rule checker.
async fn missing_index(
    tb: &Call<'_>,
    executor: &Executor,
    relation: &str,
    columns: &[String],
    node: &plan::Node,
    ctl: &Control<'_>,
) -> Result<Option<Value>, ToolError> {
    let work = Work::new(
        Mode::ReadOnly,
        vec![Statement {
            sql: INDEX_LEADS.into(),
            params: vec![Value::from(relation)],
        }],
    );
    let outcome = executor
        .run(&work, ctl)
        .await
        .map_err(|e| ToolError(e.to_string()))?;
    let Some(row) = outcome.rows.into_iter().next() else {
        return Ok(None);
    };
    let (Some(schema), Some(table)) = (row["schema_name"].as_str(), row["table_name"].as_str())
    else {
        return Ok(None);
    };
    let leads: Vec<&str> = row["leads"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(column) = columns.iter().find(|c| !leads.contains(&c.as_str())) else {
        return Ok(None);
    };
    let statement = format!(
        "CREATE INDEX ASYNC {} ON {}.{} ({})",
        ident(&format!("{table}_{column}_idx")),
        ident(schema),
        ident(table),
        ident(column)
    );
    if policy::check_rules(&[statement.as_str()], tb.config.rules).is_err() {
        return Ok(None);
    }
    Ok(Some(json!({
        "kind": "missing_index",
        "node": node.node_type,
        "message": format!(
            "{} on {schema}.{table} reads every row to find {column} = a value: no index starts with {column}.",
            node.node_type
        ),
        "fix": format!("Create the index with execute, then wait_for_job with the job_id it returns: {statement}"),
        "statement": statement,
    })))
}

#[cfg(test)]
mod tests {
    use super::ident;

    #[test]
    fn identifiers_are_quoted_only_when_needed() {
        assert_eq!(ident("orders_idx"), "orders_idx");
        assert_eq!(ident("Orders"), "\"Orders\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(ident("1x"), "\"1x\"");
    }
}
