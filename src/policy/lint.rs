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

use super::{Access, AllowedFunctions, Placeholders, PolicyError, RuleSet};
use super::{guard, rules, scan};

/// What `execute` refuses beyond dsql-lint's rules, for `dsql_lint` to report too: the
/// server's rule set and the functions `--allow-function` adds.
#[derive(Clone, Copy)]
pub(crate) struct WritePolicy<'a> {
    pub rules: RuleSet,
    pub allowed: &'a AllowedFunctions,
}

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

/// Inputs of more tokens than this are linted in chunks of whole statements (cut only
/// outside explicit `BEGIN ... COMMIT` blocks, whose statements dsql-lint checks together),
/// so memory follows the largest chunk, not the whole input.
const CHUNK_TOKENS: usize = 20_000;

/// Diagnostics listed in one result; the summary still counts them all.
const MAX_DIAGNOSTICS: usize = 1_000;

/// dsql-lint's diagnostics, plus with `policy` what the write policy refuses that
/// dsql-lint does not flag (`policy_diagnostics`).
pub(crate) fn lint(sql: &str, fix: bool, policy: Option<WritePolicy<'_>>) -> Value {
    if sql.trim().is_empty() {
        return result(Vec::new(), None, (0, 0, 0));
    }
    if scan::measure(sql).is_ok_and(|m| m.tokens > CHUNK_TOKENS) {
        return lint_in_chunks(sql, fix, policy);
    }
    lint_whole(sql, fix, policy)
}

/// dsql-lint over the whole text at once.
fn lint_whole(sql: &str, fix: bool, policy: Option<WritePolicy<'_>>) -> Value {
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
    // `fixed` counts every fix applied, a fix with a warning too (dsql-lint's CLI counts
    // those only as warnings, so its summary said `fixed: 0` over a rewritten text).
    let mut counts = (0, 0, 0);
    for d in &diagnostics {
        match (&d.fix_result, fix) {
            (FixResult::Unfixable, _) => counts.0 += 1,
            (FixResult::FixedWithWarning(_), true) => {
                counts.1 += 1;
                counts.2 += 1;
            }
            (FixResult::FixedWithWarning(_), false) => counts.1 += 1,
            (FixResult::Fixed(_), true) => counts.2 += 1,
            (FixResult::Fixed(_), false) => {}
        }
    }
    let mut listed: Vec<Value> = diagnostics.iter().map(diagnostic_json).collect();
    if let Some(policy) = policy {
        let refused = policy_diagnostics(sql, &diagnostics, policy);
        counts.0 += refused.len();
        listed.extend(refused);
    }
    result(listed, fixed_sql, counts)
}

/// What `execute` refuses in `sql` that dsql-lint did not report, one diagnostic each
/// (unfixable), after dsql-lint's: per statement, the guard's write-mode verdict unless
/// dsql-lint already reported that statement (caller transaction control as
/// `transaction_control`, any other refusal as `write_policy`) and the rule checker's own rules
/// (`rules::own_rules`: `foreign_key`, `json_type`, `add_column_constraint`,
/// `transaction_row_limit`) that dsql-lint did not report under the same name. Each
/// statement is judged alone, as one `execute` call would be.
fn policy_diagnostics(sql: &str, found: &[Diagnostic], policy: WritePolicy<'_>) -> Vec<Value> {
    let Ok(pieces) = scan::split(sql) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let linted: Vec<String> = found
            .iter()
            .filter(|d| d.line == piece.line)
            .map(|d| rules::rule_name(&d.rule))
            .collect();
        let mut problems = Vec::new();
        let params = guard::placeholder_count(&piece.sql);
        let verdict = guard::check(
            &piece.sql,
            Some(params),
            Placeholders::Numbered,
            Access::ReadWrite,
            policy.allowed,
        );
        // A statement dsql-lint already reported (SAVEPOINT, a temporary table, a parse
        // error) is not reported twice.
        if let Err(
            PolicyError::Injection(why)
            | PolicyError::Bypass(why)
            | PolicyError::WriteNotAllowed(why),
        ) = verdict
            && linted.is_empty()
        {
            if why.starts_with(guard::TRANSACTION_CONTROL) {
                problems.push(rules::Problem {
                    statement: i + 1,
                    rule: "transaction_control".into(),
                    line: 1,
                    message: format!(
                        "{why}. execute, transact and apply_migration run every call in a transaction of their own."
                    ),
                    suggestion: "Drop it and send the statements in separate calls: execute commits each statement on its own, transact runs its list in one transaction (one DDL per transaction in DSQL).".into(),
                });
            } else {
                problems.push(rules::Problem {
                    statement: i + 1,
                    rule: "write_policy".into(),
                    line: 1,
                    message: format!("execute refuses this statement: {why}"),
                    suggestion: "Rewrite the statement without what the message names; this server's write policy does not send it to the cluster.".into(),
                });
            }
        }
        if let Ok(statements) = guard::parse_text(&piece.sql) {
            for stmt in &statements {
                rules::own_rules(stmt, &piece.sql, i + 1, policy.rules, &mut problems);
            }
        }
        for p in problems {
            if linted.contains(&p.rule) {
                continue;
            }
            out.push(json!({
                "rule": p.rule,
                "line": piece.line + p.line - 1,
                "message": p.message,
                "suggestion": p.suggestion,
                "fix_result": {"status": "unfixable"},
                "statement_preview": preview(&piece.sql),
            }));
        }
    }
    out
}

/// `lint` over a large input: one chunk at a time, diagnostics and fixed text joined.
fn lint_in_chunks(sql: &str, fix: bool, policy: Option<WritePolicy<'_>>) -> Value {
    let mut diagnostics = Vec::new();
    let mut listed = 0usize;
    let mut counts = (0, 0, 0);
    let mut fixed = fix.then(String::new);
    for (start, chunk, lint_it) in chunks(sql, CHUNK_TOKENS) {
        if !lint_it {
            if let Some(out) = fixed.as_mut() {
                out.push_str(chunk);
            }
            continue;
        }
        let first_line = 1 + sql[..start].bytes().filter(|&b| b == b'\n').count();
        let v = lint_whole(chunk, fix, policy);
        if let (Some(out), Some(piece)) = (fixed.as_mut(), v["fixed_sql"].as_str()) {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(piece);
        }
        let summary = &v["summary"];
        let n = |k: &str| summary[k].as_u64().unwrap_or(0) as usize;
        counts = (
            counts.0 + n("errors"),
            counts.1 + n("warnings"),
            counts.2 + n("fixed"),
        );
        if let Value::Array(list) = &v["diagnostics"] {
            for d in list {
                listed += 1;
                if diagnostics.len() < MAX_DIAGNOSTICS {
                    let mut d = d.clone();
                    if let Some(line) = d["line"].as_u64() {
                        d["line"] = json!(line as usize + first_line - 1);
                    }
                    diagnostics.push(d);
                }
            }
        }
    }
    let mut v = result(diagnostics, fixed, counts);
    if listed > MAX_DIAGNOSTICS {
        v["diagnostics_truncated"] = json!(format!(
            "{listed} diagnostics found; the first {MAX_DIAGNOSTICS} are listed (the summary counts all)"
        ));
    }
    v
}

/// Splits `sql` into runs of whole statements of about `max_tokens` tokens each, never
/// inside an explicit transaction block. Yields each run with its byte offset. Plain
/// queries outside a block are left out: dsql-lint has no rule for them (the rule checker
/// skips them for the same reason), and they are most of a big file of reads.
fn chunks(sql: &str, max_tokens: usize) -> Vec<(usize, &str, bool)> {
    let ends = scan::statement_ends(sql).unwrap_or_default();
    let mut out = Vec::new();
    let (mut start, mut prev, mut tokens, mut in_block) = (0usize, 0usize, 0usize, false);
    for end in ends.into_iter().chain(std::iter::once(sql.len())) {
        if end <= prev {
            continue;
        }
        let statement = &sql[prev..end];
        let first = first_word(statement);
        match first.as_str() {
            "begin" | "start" => in_block = true,
            "commit" | "end" | "rollback" | "abort" => in_block = false,
            _ => {}
        }
        let size = scan::measure(statement).map_or(0, |m| m.tokens);
        // A huge query still goes to `lint_whole`, which refuses what is too complex.
        let plain_query = matches!(first.as_str(), "select" | "values" | "table" | "show" | "")
            && size < max_tokens
            && !statement.to_ascii_lowercase().contains("into");
        if plain_query && !in_block {
            if start < prev && !sql[start..prev].trim().is_empty() {
                out.push((start, &sql[start..prev], true));
            }
            out.push((prev, statement, false));
            start = end;
            tokens = 0;
            prev = end;
            continue;
        }
        tokens += size;
        prev = end;
        if tokens >= max_tokens && !in_block {
            out.push((start, &sql[start..end], true));
            start = end;
            tokens = 0;
        }
    }
    if start < sql.len() && !sql[start..].trim().is_empty() {
        out.push((start, &sql[start..], true));
    }
    out
}

/// The first word of a statement, lower case, after leading whitespace and comments.
fn first_word(statement: &str) -> String {
    let mut rest = statement.trim_start_matches(|c: char| c == ';' || c.is_whitespace());
    loop {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    rest.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_lowercase()
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
