//! Batched writes: one `UPDATE` or `DELETE` whose effect may exceed DSQL's 3,000-row limit,
//! run as repeated transactions of at most `batch_size` rows, walking the table's primary
//! key (keyset batches, never OFFSET over the whole table).
//!
//! Each batch is two short units on the executor: a read that finds the key closing the
//! next `batch_size` matching rows (`… WHERE (cond) AND (pk) > (cursor) ORDER BY pk LIMIT 1
//! OFFSET size-1`), then the write over that key range (`… WHERE (cond) AND (pk) > (cursor)
//! AND (pk) <= (upper)`), with the executor's OCC retry. When no closing key is found, a
//! last write covers the rest of the range; the run ends there. The cursor only moves
//! forward (each closing key is read with `> cursor`), and an UPDATE of a primary-key column
//! is refused (a row moved further along the key would be met again), so one run always
//! ends, after at most one batch per `batch_size` matching rows plus one. The convergence
//! check (`policy::converges`, on the text and then with the table's catalog) makes a re-run
//! after an interruption safe too: an UPDATE's SET must make its WHERE false for every row it
//! changes, so rows already done no longer match. A batched write is not atomic: each batch
//! commits on its own.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::executor::{Control, Event, ExecError, Executor, Mode, Statement, Work};
use crate::policy::{
    self, Access, AllowedFunctions, ColumnFact, Facts, Placeholders, RuleSet, Verb, WriteShape,
};

/// What a batched write did.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub batches: u64,
    pub rows: u64,
    pub elapsed: Duration,
    pub batch_size: u32,
}

impl Report {
    pub fn to_json(&self) -> Value {
        json!({
            "batches": self.batches,
            "rows": self.rows,
            "batch_size": self.batch_size,
            "seconds": (self.elapsed.as_secs_f64() * 10.0).round() / 10.0,
            "atomic": false,
            "note": NOT_ATOMIC,
        })
    }
}

/// What every batched result says.
pub const NOT_ATOMIC: &str = "A batched write is not atomic: each batch committed on its own. \
     If it stopped early, the batches before the failure stay applied; running the same statement \
     again continues with the rows that still match.";

/// Why a batched write failed, and how far it got.
#[derive(Debug)]
pub struct Failed {
    pub error: String,
    pub done: Report,
}

/// Refuses a statement whose batches would not converge, saying why and what to write
/// (`policy::converges`). Without `columns` (a plan, before the table may exist) a proof that
/// depends on column types is accepted for the types its literals suggest; the run checks
/// again with the table's catalog.
pub fn converges(
    sql: &str,
    params: &[Value],
    columns: Option<Vec<ColumnFact>>,
) -> Result<(), String> {
    policy::converges(
        sql,
        Facts {
            params: params.to_vec(),
            columns,
        },
    )
}

/// Quotes a catalog name for SQL.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The table's primary-key columns, in key order.
async fn primary_key(
    executor: &Executor,
    table: &str,
    ctl: &Control<'_>,
) -> Result<Vec<String>, String> {
    // `indkey[k]` walks the key in its declared order; k < 32 (INDEX_MAX_KEYS).
    let work = Work::new(
        Mode::ReadOnly,
        vec![Statement {
            sql: "SELECT a.attname::text AS name FROM pg_catalog.pg_index i \
                  JOIN generate_series(0, 31) AS k(n) ON true \
                  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k.n] \
                  WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY k.n"
                .into(),
            params: vec![Value::from(table)],
        }],
    );
    let rows = executor
        .run(&work, ctl)
        .await
        .map_err(|e| format!("reading the primary key of {table}: {e}"))?
        .rows;
    let cols: Vec<String> = rows
        .iter()
        .filter_map(|r| r.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    if cols.is_empty() {
        return Err(format!(
            "table {table} was not found, or has no primary key to batch over"
        ));
    }
    Ok(cols)
}

/// The table's columns: type, NOT NULL, and whether the primary key has them.
async fn columns(
    executor: &Executor,
    table: &str,
    pk: &[String],
    ctl: &Control<'_>,
) -> Result<Vec<ColumnFact>, String> {
    let work = Work::new(
        Mode::ReadOnly,
        vec![Statement {
            sql: "SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type, \
                  a.attnotnull AS not_null FROM pg_catalog.pg_attribute a \
                  WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
                .into(),
            params: vec![Value::from(table)],
        }],
    );
    let rows = executor
        .run(&work, ctl)
        .await
        .map_err(|e| format!("reading the columns of {table}: {e}"))?
        .rows;
    Ok(rows
        .iter()
        .map(|r| {
            let name = r
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            ColumnFact {
                primary_key: pk.contains(&name),
                name,
                type_name: r
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                not_null: r.get("not_null") == Some(&Value::Bool(true)),
            }
        })
        .collect())
}

/// The statements of one batched write, built once from the checked parts.
struct Templates {
    /// Finds the key closing the next batch; cursor params (if any) follow the caller's.
    upper_first: String,
    upper_next: String,
    /// Writes a key range: (cursor?, upper?) variants.
    write: [String; 4],
    keys: usize,
}

fn templates(shape: &WriteShape, pk: &[String], base: usize, size: u32) -> Templates {
    let cols = pk.iter().map(|c| quoted(c)).collect::<Vec<_>>().join(", ");
    let params = |from: usize| {
        (from..from + pk.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cond = shape.condition.as_deref().unwrap_or("true");
    let target = match &shape.alias {
        Some(a) => format!("{} AS {a}", shape.table),
        None => shape.table.clone(),
    };
    let after = format!(" AND ({cols}) > ({})", params(base + 1));
    let upper_first = format!(
        "SELECT {cols} FROM {target} WHERE ({cond}) ORDER BY {cols} LIMIT 1 OFFSET {}",
        size - 1
    );
    let upper_next = format!(
        "SELECT {cols} FROM {target} WHERE ({cond}){after} ORDER BY {cols} LIMIT 1 OFFSET {}",
        size - 1
    );
    let head = match shape.verb {
        Verb::Update => format!("UPDATE {target} SET {} WHERE ({cond})", shape.set),
        Verb::Delete => format!("DELETE FROM {target} WHERE ({cond})"),
    };
    // Variants by (cursor present, upper present); upper params follow the cursor's.
    let upto = |from: usize| format!(" AND ({cols}) <= ({})", params(from));
    let write = [
        head.clone(),
        format!("{head}{}", upto(base + 1)),
        format!("{head}{after}"),
        format!("{head}{after}{}", upto(base + 1 + pk.len())),
    ];
    Templates {
        upper_first,
        upper_next,
        write,
        keys: pk.len(),
    }
}

/// Checks a built statement as the caller's statement was checked (defence in depth: the
/// pieces came from an accepted statement, the glue is ours).
fn recheck(
    sql: &str,
    params: usize,
    access: Access,
    allowed: &AllowedFunctions,
    rules: RuleSet,
) -> Result<(), String> {
    policy::check_with(sql, Some(params), Placeholders::Numbered, access, allowed)
        .map_err(|e| format!("internal error: a batch statement was refused: {e}"))?;
    if access == Access::ReadWrite {
        policy::check_rules(&[sql], rules)
            .map_err(|e| format!("internal error: a batch statement was refused: {e}"))?;
    }
    Ok(())
}

/// The policy a batched write is checked with.
pub struct Policy<'a> {
    pub allowed: &'a AllowedFunctions,
    pub rules: RuleSet,
}

/// Runs `sql` (accepted by the guard and the rules, with `params` for its `$n`) in batches of
/// `size` rows. Progress goes to `ctl.observer`.
pub async fn run(
    executor: &Executor,
    sql: &str,
    params: &[Value],
    size: u32,
    policy: &Policy<'_>,
    ctl: &Control<'_>,
) -> Result<Report, Failed> {
    let started = Instant::now();
    let mut done = Report {
        batches: 0,
        rows: 0,
        elapsed: Duration::ZERO,
        batch_size: size,
    };
    let fail = |error: String, done: &Report| Failed {
        error,
        done: Report {
            elapsed: started.elapsed(),
            ..done.clone()
        },
    };
    let shape = policy::write_shape(sql).map_err(|e| fail(e, &done))?;
    // Refused before any connection when the text alone shows it; then with the catalog.
    converges(sql, params, None).map_err(|e| fail(e, &done))?;
    let pk = primary_key(executor, &shape.table, ctl)
        .await
        .map_err(|e| fail(e, &done))?;
    let cols = columns(executor, &shape.table, &pk, ctl)
        .await
        .map_err(|e| fail(e, &done))?;
    converges(sql, params, Some(cols)).map_err(|e| fail(e, &done))?;
    let t = templates(&shape, &pk, params.len(), size);
    let n = params.len();
    for (sql, count, access) in [
        (&t.upper_first, n, Access::ReadOnly),
        (&t.upper_next, n + t.keys, Access::ReadOnly),
        (&t.write[1], n + t.keys, Access::ReadWrite),
        (&t.write[2], n + t.keys, Access::ReadWrite),
        (&t.write[3], n + 2 * t.keys, Access::ReadWrite),
    ] {
        recheck(sql, count, access, policy.allowed, policy.rules).map_err(|e| fail(e, &done))?;
    }
    let mut cursor: Option<Vec<Value>> = None;
    loop {
        // The key closing the next batch, if there are that many rows left.
        let (find, mut find_params) = match &cursor {
            None => (&t.upper_first, params.to_vec()),
            Some(_) => (&t.upper_next, params.to_vec()),
        };
        if let Some(c) = &cursor {
            find_params.extend(c.iter().cloned());
        }
        let found = executor
            .run(
                &Work::new(
                    Mode::ReadOnly,
                    vec![Statement {
                        sql: find.clone(),
                        params: find_params,
                    }],
                ),
                ctl,
            )
            .await
            .map_err(|e| fail(batch_error(done.batches + 1, &e), &done))?
            .rows
            .into_iter()
            .next();
        let upper: Option<Vec<Value>> = found.map(|row| key_values(row, &pk));
        let variant = usize::from(cursor.is_some()) * 2 + usize::from(upper.is_some());
        let mut write_params = params.to_vec();
        if let Some(c) = &cursor {
            write_params.extend(c.iter().cloned());
        }
        if let Some(u) = &upper {
            write_params.extend(u.iter().cloned());
        }
        let outcome = executor
            .run(
                &Work::new(
                    Mode::ReadWrite,
                    vec![Statement {
                        sql: t.write[variant].clone(),
                        params: write_params,
                    }],
                ),
                ctl,
            )
            .await
            .map_err(|e| fail(batch_error(done.batches + 1, &e), &done))?;
        let changed = outcome.rows_affected.unwrap_or(0);
        done.batches += 1;
        done.rows += changed;
        ctl.observer.event(Event::Progress {
            step: done.batches,
            message: format!(
                "batch {}: {changed} rows ({} so far, {:.1} s)",
                done.batches,
                done.rows,
                started.elapsed().as_secs_f64()
            ),
        });
        match upper {
            Some(u) => cursor = Some(u),
            None => break,
        }
    }
    done.elapsed = started.elapsed();
    Ok(done)
}

fn key_values(mut row: Map<String, Value>, pk: &[String]) -> Vec<Value> {
    pk.iter()
        .map(|c| row.remove(c).unwrap_or(Value::Null))
        .collect()
}

fn batch_error(batch: u64, e: &ExecError) -> String {
    format!("batch {batch} failed: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(sql: &str) -> WriteShape {
        policy::write_shape(sql).unwrap()
    }

    #[test]
    fn convergence_is_checked() {
        assert!(converges("UPDATE t SET s = 'x' WHERE s IS NULL", &[], None).is_ok());
        assert!(converges("DELETE FROM t WHERE created < now()", &[], None).is_ok());
        assert!(converges("DELETE FROM t", &[], None).is_ok());
        let e = converges("UPDATE t SET s = 'x' WHERE id > 0", &[], None).unwrap_err();
        assert!(e.starts_with("this UPDATE's batches would not converge: its WHERE reads none of the columns its SET changes (s)"), "{e}");
        let e = converges("UPDATE t SET s = 'x'", &[], None).unwrap_err();
        assert!(e.starts_with("this UPDATE has no WHERE"), "{e}");
        let e = converges("UPDATE t SET flag = true WHERE flag = true", &[], None).unwrap_err();
        assert!(
            e.starts_with(
                "this UPDATE's batches would not converge, or it cannot be shown that they do"
            ),
            "{e}"
        );
        // A parameter that is NULL leaves the rows NULL.
        assert!(converges("UPDATE t SET s = $1 WHERE s IS NULL", &[Value::Null], None).is_err());
        assert!(converges("UPDATE t SET s = $1 WHERE s IS NULL", &[json!("x")], None).is_ok());
    }

    #[test]
    fn templates_walk_the_key() {
        let s = shape("UPDATE t SET s = $1 WHERE s IS NULL");
        let t = templates(&s, &["a".into(), "b".into()], 1, 500);
        assert_eq!(
            t.upper_next,
            "SELECT \"a\", \"b\" FROM t WHERE (s IS NULL) AND (\"a\", \"b\") > ($2, $3) ORDER BY \"a\", \"b\" LIMIT 1 OFFSET 499"
        );
        assert_eq!(
            t.write[3],
            "UPDATE t SET s = $1 WHERE (s IS NULL) AND (\"a\", \"b\") > ($2, $3) AND (\"a\", \"b\") <= ($4, $5)"
        );
        assert_eq!(
            t.write[1],
            "UPDATE t SET s = $1 WHERE (s IS NULL) AND (\"a\", \"b\") <= ($2, $3)"
        );
    }
}
