//! The `dsql_lint` tool's result, computed in-process with the dsql-lint crate.
//!
//! The reference server ran the `dsql-lint` binary (`--format json [--fix] -`)
//! and returned the first file's diagnostics, `fixed_sql` (null unless fixing)
//! and the summary. This module builds the same JSON from the library: each
//! diagnostic keeps the crate's own serialisation (`rule`, `line`, `message`,
//! `suggestion`, `fix_result` as `{"status", "detail"}`) plus the CLI's
//! `statement_preview` (whitespace collapsed, 80 characters and an ellipsis),
//! and the summary counts as the CLI does in each mode.

use dsql_lint::{Diagnostic, FixResult};
use serde_json::{Value, json};

use super::{guard, scan};

/// Lines longer than this are broken before dsql-lint sees them.
pub(crate) const MAX_LINE: usize = 1000;

/// The caller's line for line `line` (1-based) of reflowed text.
pub(crate) fn original_line(lines: &[usize], line: usize) -> usize {
    line.checked_sub(1)
        .and_then(|i| lines.get(i))
        .copied()
        .unwrap_or(line)
}

/// The CLI's preview length.
const PREVIEW_MAX_CHARS: usize = 80;

pub(crate) fn lint(sql: &str, fix: bool) -> Value {
    if sql.trim().is_empty() {
        return result(Vec::new(), None, (0, 0, 0));
    }
    // Long lines are broken at token boundaries first (see `scan::reflow`);
    // diagnostics are mapped back to the caller's line numbers.
    let (text, lines) = match scan::reflow(sql, MAX_LINE) {
        Ok(r) => r,
        Err(_) => (sql.to_owned(), Vec::new()),
    };
    if let Some(why) = too_complex(&text) {
        let d = json!({
            "rule": "parse_error",
            "line": 1,
            "message": why,
            "suggestion": "Split the statement or simplify the expression, and put it on several lines.",
            "fix_result": {"status": "unfixable"},
            "statement_preview": preview(sql),
        });
        return result(vec![d], fix.then(|| sql.to_owned()), (1, 0, 0));
    }
    let (mut diagnostics, fixed_sql) = if fix {
        let out = dsql_lint::fix_sql(&text);
        (out.diagnostics, Some(out.sql))
    } else {
        (dsql_lint::lint_sql(&text), None)
    };
    for d in &mut diagnostics {
        d.line = original_line(&lines, d.line);
    }
    let mut counts = (0, 0, 0);
    for d in &diagnostics {
        match (&d.fix_result, fix) {
            (FixResult::Unfixable, _) => counts.0 += 1,
            (FixResult::FixedWithWarning(_), _) => counts.1 += 1,
            (FixResult::Fixed(_), true) => counts.2 += 1,
            (FixResult::Fixed(_), false) => {}
        }
    }
    let diagnostics = diagnostics.iter().map(diagnostic_json).collect();
    result(diagnostics, fixed_sql, counts)
}

fn result(
    diagnostics: Vec<Value>,
    fixed_sql: Option<String>,
    counts: (usize, usize, usize),
) -> Value {
    json!({
        "diagnostics": diagnostics,
        "fixed_sql": fixed_sql,
        "summary": {"errors": counts.0, "warnings": counts.1, "fixed": counts.2},
    })
}

fn diagnostic_json(d: &Diagnostic) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or_else(|_| {
        json!({
            "rule": super::rules::rule_name(&d.rule),
            "line": d.line,
            "message": d.message,
            "suggestion": d.suggestion,
        })
    });
    if let Value::Object(map) = &mut v {
        map.insert(
            "statement_preview".into(),
            Value::String(preview(&d.statement)),
        );
    }
    v
}

/// Whitespace collapsed, cut at 80 characters with an ellipsis (as the CLI does).
pub(crate) fn preview(statement: &str) -> String {
    let collapsed = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() > PREVIEW_MAX_CHARS {
        let cut: String = collapsed.chars().take(PREVIEW_MAX_CHARS).collect();
        format!("{cut}…")
    } else {
        collapsed
    }
}

/// Why dsql-lint should not be run on `text`, if it should not.
///
/// dsql-lint builds trees as deep as the input's operator chains (which could
/// overflow the stack), and its cost grows with the square of the length of a
/// line full of tokens that `scan::reflow` found no place to break (`1+1+…`).
pub(crate) fn too_complex(text: &str) -> Option<String> {
    let tokens = guard::tokenize(text).ok()?;
    if guard::longest_run(&tokens) > guard::MAX_TOKEN_RUN {
        return Some(format!(
            "SQL is too complex to lint safely: more than {} tokens in one expression without a comma",
            guard::MAX_TOKEN_RUN
        ));
    }
    let mut count: u64 = 0;
    let mut cost: u64 = 0;
    for t in &tokens {
        if !matches!(t.token, sqlparser::tokenizer::Token::Whitespace(_)) {
            count += 1;
            cost += t.span.start.column;
        }
    }
    if cost > MAX_COST_PER_TOKEN * count + MAX_COST_BASE {
        return Some(
            "SQL is too complex to lint safely: a very long line packed with tokens".to_string(),
        );
    }
    None
}

/// Budget for dsql-lint's column-to-offset walks (characters per token, plus a base).
const MAX_COST_PER_TOKEN: u64 = 2_000;
const MAX_COST_BASE: u64 = 20_000_000;
