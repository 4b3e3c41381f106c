//! A migration's text cut into statements, with the `-- dsql:batched [SIZE]` directive read.
//!
//! The cutting is the SQL policy's lexer (`policy::split`: dollar quotes, comments, `E''`
//! strings, quoted names as PostgreSQL reads them), so a `;` inside a literal never cuts a
//! statement and the migration layer has no lexer of its own. This file only reads the
//! directives in the line comments before each statement.

use crate::policy;

/// Batch size of `-- dsql:batched` without a size.
pub const DEFAULT_BATCH: u32 = 1000;
/// DSQL's row limit per transaction: the largest batch.
pub const MAX_BATCH: u32 = 3000;

/// One statement of a migration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub sql: String,
    /// `Some(size)` when a `-- dsql:batched [SIZE]` comment precedes it.
    pub batched: Option<u32>,
    /// 1-based line of the statement in the migration text.
    pub line: usize,
}

/// The statements of `sql` in order; an error names the line of a bad directive.
pub fn statements(sql: &str) -> Result<Vec<Source>, String> {
    let pieces = policy::split(sql).map_err(|e| format!("the SQL could not be scanned: {e}"))?;
    let mut out = Vec::with_capacity(pieces.len());
    for p in pieces {
        let mut batched = None;
        for c in &p.comments {
            let Some(rest) = c.strip_prefix("dsql:") else {
                continue;
            };
            batched = Some(directive(rest).map_err(|e| {
                format!("the directive before the statement at line {}: {e}", p.line)
            })?);
        }
        out.push(Source {
            sql: p.sql,
            batched,
            line: p.line,
        });
    }
    Ok(out)
}

/// Reads `batched [SIZE]` (after `dsql:`).
fn directive(rest: &str) -> Result<u32, String> {
    let mut words = rest.split_whitespace();
    match words.next() {
        Some("batched") => {}
        other => {
            return Err(format!(
                "unknown directive `dsql:{}` (the one directive is `-- dsql:batched [SIZE]`)",
                other.unwrap_or("")
            ));
        }
    }
    let size = match words.next() {
        None => DEFAULT_BATCH,
        Some(w) => batch_size(w.parse::<i64>().map_err(|_| {
            format!("`{w}` is not a batch size (a number of rows from 1 to {MAX_BATCH})")
        })?)?,
    };
    if let Some(extra) = words.next() {
        return Err(format!("unexpected `{extra}` after `dsql:batched {size}`"));
    }
    Ok(size)
}

/// A batch size in DSQL's bounds, or why not.
pub fn batch_size(n: i64) -> Result<u32, String> {
    if (1..=i64::from(MAX_BATCH)).contains(&n) {
        Ok(n as u32)
    } else {
        Err(format!(
            "batch size {n} is outside 1..={MAX_BATCH} (DSQL modifies at most 3,000 rows per transaction)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_read() {
        let s = statements(
            "ALTER TABLE t ADD COLUMN s text;\n-- backfill\n-- dsql:batched 500\nUPDATE t SET s = 'x' WHERE s IS NULL;\n\
             -- dsql:batched\nDELETE FROM t WHERE s = 'y';",
        )
        .unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].batched, None);
        assert_eq!(s[1].batched, Some(500));
        assert_eq!(s[1].line, 4);
        assert_eq!(s[2].batched, Some(DEFAULT_BATCH));
        assert_eq!(
            statements("-- dsql:batched 5000\nUPDATE t SET a = 1 WHERE a IS NULL").unwrap_err(),
            "the directive before the statement at line 2: batch size 5000 is outside 1..=3000 (DSQL modifies at most 3,000 rows per transaction)"
        );
        assert_eq!(
            statements("-- dsql:batch\nUPDATE t SET a = 1").unwrap_err(),
            "the directive before the statement at line 2: unknown directive `dsql:batch` (the one directive is `-- dsql:batched [SIZE]`)"
        );
    }
}
