//! The shapes of DML statements the migration layer needs to know, read from the same parse
//! the guard makes (`guard::parse_text`), so no second SQL reader exists:
//! - how many rows an `INSERT … VALUES` writes (known before it runs, so several can share
//!   one transaction under DSQL's 3,000-row limit);
//! - the parts of a one-table `UPDATE` / `DELETE` a batched write is rebuilt from (table,
//!   `SET` list, `WHERE`), and the columns each side names; its convergence is checked on
//!   the same parse (`converge.rs`).

use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, Expr, FromTable, Ident, ObjectName, SetExpr, Statement, TableFactor,
    visit_expressions,
};

/// The verb of a batched write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Update,
    Delete,
}

/// A one-table `UPDATE` or `DELETE`, taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteShape {
    pub verb: Verb,
    /// The table as written (`s.t`, `"T"`), ready to splice back into SQL.
    pub table: String,
    /// The alias the statement gives the table, if any (`UPDATE t AS x`).
    pub alias: Option<String>,
    /// `SET` assignments as SQL (`a = 1, b = b + 1`); empty for a DELETE.
    pub set: String,
    /// The `WHERE` condition as SQL, if any.
    pub condition: Option<String>,
    /// The columns the `SET` assigns (folded as PostgreSQL folds them).
    pub set_columns: Vec<String>,
    /// The columns the `WHERE` reads (the last part of each name, folded).
    pub where_columns: Vec<String>,
}

/// A name part as PostgreSQL resolves it: quoted exactly, bare folded to lower case.
fn folded(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

fn last_part(name: &ObjectName) -> Option<String> {
    name.0.last().and_then(|p| p.as_ident()).map(folded)
}

fn one(sql: &str) -> Result<Statement, String> {
    let mut statements = super::guard::parse_text(sql)?;
    if statements.len() != 1 {
        return Err(format!(
            "exactly one statement is expected, found {}",
            statements.len()
        ));
    }
    Ok(statements.remove(0))
}

/// Rows an `INSERT … VALUES (…), (…)` writes; `None` for any other statement (its row
/// count is not known before it runs).
pub(crate) fn values_rows(sql: &str) -> Option<usize> {
    let Ok(Statement::Insert(insert)) = one(sql) else {
        return None;
    };
    // ON CONFLICT DO UPDATE changes at most one row per VALUES row too.
    let source = insert.source?;
    match *source.body {
        SetExpr::Values(values) => Some(values.rows.len()),
        _ => None,
    }
}

/// Checks that a batched write converges (`converge.rs`), from its text.
pub(crate) fn converges(sql: &str, facts: &super::converge::Facts) -> Result<(), String> {
    super::converge::check(&one(sql)?, facts)
}

/// Takes a one-table `UPDATE` / `DELETE` apart for batching; an error says why it cannot be
/// batched.
pub(crate) fn write_shape(sql: &str) -> Result<WriteShape, String> {
    let statement = one(sql)?;
    let columns_of = |expr: &Expr| {
        let mut found = Vec::new();
        let _ = visit_expressions(expr, |e| {
            match e {
                Expr::Identifier(i) => found.push(folded(i)),
                Expr::CompoundIdentifier(parts) => {
                    if let Some(i) = parts.last() {
                        found.push(folded(i))
                    }
                }
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
        found
    };
    let table_of = |relation: &TableFactor| match relation {
        TableFactor::Table {
            name, alias, args, ..
        } if args.is_none() => Ok((name.to_string(), alias.as_ref().map(|a| a.name.to_string()))),
        _ => Err("a batched write names one plain table".to_owned()),
    };
    match statement {
        Statement::Update(u) => {
            if u.from.is_some() {
                return Err(
                    "UPDATE … FROM cannot be batched (batches walk one table's primary key); \
                            write the value as a subquery in SET instead"
                        .into(),
                );
            }
            if u.returning.is_some() {
                return Err("RETURNING is not available in a batched write (its rows would come from many transactions)".into());
            }
            if !u.table.joins.is_empty() {
                return Err("a batched write names one plain table".into());
            }
            let (table, alias) = table_of(&u.table.relation)?;
            let mut set_columns = Vec::new();
            for a in &u.assignments {
                match &a.target {
                    AssignmentTarget::ColumnName(n) => set_columns.extend(last_part(n)),
                    AssignmentTarget::Tuple(ns) => {
                        set_columns.extend(ns.iter().filter_map(last_part))
                    }
                }
            }
            let set = u
                .assignments
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            Ok(WriteShape {
                verb: Verb::Update,
                table,
                alias,
                set,
                condition: u.selection.as_ref().map(ToString::to_string),
                set_columns,
                where_columns: u.selection.as_ref().map(columns_of).unwrap_or_default(),
            })
        }
        Statement::Delete(d) => {
            if d.using.is_some() {
                return Err(
                    "DELETE … USING cannot be batched (batches walk one table's primary key); \
                            write the condition as a subquery (WHERE … IN (SELECT …)) instead"
                        .into(),
                );
            }
            if d.returning.is_some() {
                return Err("RETURNING is not available in a batched write (its rows would come from many transactions)".into());
            }
            let from = match &d.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            if from.len() != 1 || !from[0].joins.is_empty() || !d.tables.is_empty() {
                return Err("a batched write names one plain table".into());
            }
            let (table, alias) = table_of(&from[0].relation)?;
            Ok(WriteShape {
                verb: Verb::Delete,
                table,
                alias,
                set: String::new(),
                condition: d.selection.as_ref().map(ToString::to_string),
                set_columns: Vec::new(),
                where_columns: d.selection.as_ref().map(columns_of).unwrap_or_default(),
            })
        }
        _ => Err("only an UPDATE or a DELETE can run as a batched write".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_rows_are_counted() {
        assert_eq!(values_rows("INSERT INTO t VALUES (1), (2), (3)"), Some(3));
        assert_eq!(values_rows("INSERT INTO t (a) SELECT 1"), None);
        assert_eq!(values_rows("UPDATE t SET a = 1"), None);
    }

    #[test]
    fn writes_are_taken_apart() {
        let s = write_shape("UPDATE public.t SET status = 'new', n = n + 1 WHERE status IS NULL")
            .unwrap();
        assert_eq!(s.verb, Verb::Update);
        assert_eq!(s.table, "public.t");
        assert_eq!(s.set, "status = 'new', n = n + 1");
        assert_eq!(s.condition.as_deref(), Some("status IS NULL"));
        assert_eq!(s.set_columns, ["status", "n"]);
        assert_eq!(s.where_columns, ["status"]);
        let d = write_shape("DELETE FROM \"T\" WHERE created < $1").unwrap();
        assert_eq!((d.verb, d.table.as_str()), (Verb::Delete, "\"T\""));
        assert_eq!(d.where_columns, ["created"]);
        assert!(write_shape("UPDATE t SET a = 1 FROM u").is_err());
        assert!(write_shape("INSERT INTO t VALUES (1)").is_err());
    }
}
