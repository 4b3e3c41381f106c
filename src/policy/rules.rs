//! The DSQL rule checker: what the cluster refuses, caught before it is sent.
//!
//! Most rules come from the dsql-lint crate, run in-process on each statement
//! (`index_async`, `index_concurrently`, `index_using`, `index_sort_direction`,
//! `array_type`, `serial_type`, `truncate`, `temp_table`,
//! `unsupported_create_trigger`, `unsupported_create_extension`, and the rest
//! of its catalogue). dsql-lint sees one text at a time and only counts DDL
//! inside explicit BEGIN/COMMIT blocks, so the rules over a whole transaction
//! are ours: `multi_ddl_transaction`, `mixed_ddl_dml_transaction` (dsql-lint's
//! names) and `transaction_row_limit` (more than 3,000 literal rows). The
//! power's policy rules are ours too, because the cluster (and so dsql-lint)
//! now accepts what they refuse: `foreign_key` and `json_type`, lifted by
//! `RuleSet::Cluster`.

use sqlparser::ast::{
    AlterTableOperation, ColumnDef, ColumnOption, DataType, SetExpr, Statement, TableConstraint,
};

use super::{RuleSet, RuleViolation};
use super::{guard, lint, scan};

/// DSQL's limit on rows modified by one transaction.
pub(crate) const MAX_ROWS: usize = 3_000;

const POLICY_SWITCH: &str =
    "start the server with `--rules cluster` (env DSQL_RULES=cluster) to allow it";

/// One refused construct.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    /// 1-based position of the statement in the list (0 for the whole transaction).
    pub statement: usize,
    pub rule: String,
    pub line: usize,
    pub message: String,
    pub suggestion: String,
}

/// Checks the statements of one transaction; every problem found is returned.
pub(crate) fn problems(statements: &[&str], rules: RuleSet) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut ddl = 0usize;
    let mut dml = 0usize;
    let mut rows = 0usize;
    for (i, text) in statements.iter().enumerate() {
        let n = i + 1;
        let parsed = guard::parse_text(text);
        // dsql-lint parses with the same parser; a statement the guard cannot
        // parse is refused as such, and dsql-lint is not run on it (its parse
        // may also be unsafe: see `guard::MAX_TOKEN_RUN`).
        let statements = match parsed {
            Ok(s) => s,
            Err(e) => {
                out.push(Problem {
                    statement: n,
                    rule: "parse_error".into(),
                    line: 1,
                    message: e,
                    suggestion: "Fix the SQL syntax and try again.".into(),
                });
                continue;
            }
        };
        // dsql-lint has no rule for queries and data changes, and is slow on the
        // long single-line INSERTs they often are: skip it for them.
        let lint_it = !statements
            .iter()
            .all(|s| matches!(s, Statement::Query(_)) || guard::is_dml(s));
        let (reflowed, lines) = if lint_it {
            scan::reflow(text, lint::MAX_LINE).unwrap_or_else(|_| (text.to_string(), Vec::new()))
        } else {
            (String::new(), Vec::new())
        };
        let refused = if lint_it {
            lint::too_complex(&reflowed)
        } else {
            None
        };
        if let Some(why) = refused {
            out.push(Problem {
                statement: n,
                rule: "parse_error".into(),
                line: 1,
                message: why,
                suggestion: "Split the statement or simplify the expression.".into(),
            });
            continue;
        }
        let diagnostics = if lint_it {
            dsql_lint::lint_sql(&reflowed)
        } else {
            Vec::new()
        };
        for d in diagnostics {
            let rule = rule_name(&d.rule);
            // `ALTER TABLE async …` parses for us but not for dsql-lint.
            if rule == "parse_error" {
                continue;
            }
            out.push(Problem {
                statement: n,
                rule,
                line: lint::original_line(&lines, d.line),
                message: d.message,
                suggestion: d.suggestion,
            });
        }
        for stmt in &statements {
            own_rules(stmt, text, n, rules, &mut out);
            if guard::is_ddl(stmt) {
                ddl += 1;
            } else if guard::is_dml(stmt) {
                dml += 1;
            }
            rows += literal_rows(stmt);
        }
    }
    if rows > MAX_ROWS && !out.iter().any(|p| p.rule == "transaction_row_limit") {
        out.push(Problem {
            statement: 0,
            rule: "transaction_row_limit".into(),
            line: 1,
            message: format!(
                "The statements insert {rows} literal rows together; DSQL modifies at most {MAX_ROWS} rows in one transaction."
            ),
            suggestion: format!(
                "Send the rows in several transactions of at most {MAX_ROWS} rows each."
            ),
        });
    }
    if ddl > 1 {
        out.push(Problem {
            statement: 0,
            rule: "multi_ddl_transaction".into(),
            line: 1,
            message: format!(
                "The transaction contains {ddl} DDL statements; DSQL allows one DDL statement per transaction."
            ),
            suggestion: "Send each DDL statement in its own call (its own transaction).".into(),
        });
    }
    if ddl > 0 && dml > 0 {
        out.push(Problem {
            statement: 0,
            rule: "mixed_ddl_dml_transaction".into(),
            line: 1,
            message: format!(
                "The transaction mixes DDL and DML ({ddl} DDL, {dml} DML); DSQL does not allow both in one transaction."
            ),
            suggestion:
                "Send the DDL and the data changes in separate calls (separate transactions).".into(),
        });
    }
    out
}

/// The rules of one statement that are ours, not dsql-lint's: an inline constraint on
/// `ADD COLUMN`, more than 3,000 literal rows, and (`RuleSet::Power`) the power's policy
/// rules. `text` is the statement's text, `n` its position (for `Problem::statement`).
/// Shared by the rule checker and `dsql_lint` (`lint::policy_diagnostics`), so the tool
/// reports exactly what `execute` refuses.
pub(crate) fn own_rules(
    stmt: &Statement,
    text: &str,
    n: usize,
    rules: RuleSet,
    out: &mut Vec<Problem>,
) {
    if let Some(p) = add_column_constraint(stmt, n, out) {
        out.push(p);
    }
    let r = literal_rows(stmt);
    if r > MAX_ROWS {
        out.push(Problem {
            statement: n,
            rule: "transaction_row_limit".into(),
            line: 1,
            message: format!(
                "INSERT ... VALUES has {r} rows; DSQL modifies at most {MAX_ROWS} rows in one transaction."
            ),
            suggestion: format!(
                "Split the rows into batches of at most {MAX_ROWS} (500 to 1,000 is a good size), one transaction each."
            ),
        });
    }
    if rules == RuleSet::Power {
        policy_rules(stmt, text, n, out);
    }
}

/// `ALTER TABLE ... ADD COLUMN` with an inline CHECK, UNIQUE, PRIMARY KEY or generated
/// clause: DSQL refuses every inline constraint there (`0A000 ALTER TABLE ADD COLUMN with
/// constraint not supported`), but dsql-lint reports only DEFAULT, NOT NULL, REFERENCES and
/// identity. Reported under dsql-lint's rule name, once per statement.
fn add_column_constraint(stmt: &Statement, n: usize, found: &[Problem]) -> Option<Problem> {
    const RULE: &str = "add_column_constraint";
    if found.iter().any(|p| p.statement == n && p.rule == RULE) {
        return None;
    }
    let Statement::AlterTable(at) = stmt else {
        return None;
    };
    at.operations.iter().find_map(|op| {
        let AlterTableOperation::AddColumn { column_def, .. } = op else {
            return None;
        };
        let clause = column_def.options.iter().find_map(|o| match o.option {
            ColumnOption::Check(_) => Some("CHECK"),
            ColumnOption::Unique(_) => Some("UNIQUE"),
            ColumnOption::PrimaryKey(_) => Some("PRIMARY KEY"),
            ColumnOption::Generated { .. } => Some("GENERATED"),
            _ => None,
        })?;
        let column = &column_def.name.value;
        Some(Problem {
            statement: n,
            rule: RULE.into(),
            line: 1,
            message: format!(
                "ADD COLUMN '{column}' with an inline {clause} clause is not supported in DSQL (ALTER TABLE ADD COLUMN takes no constraints)."
            ),
            suggestion: match clause {
                "CHECK" => format!(
                    "Add the column without it, then ALTER TABLE ... ADD CONSTRAINT ... CHECK (...) NOT VALID and ALTER TABLE ASYNC ... VALIDATE CONSTRAINT; or define '{column}' with its CHECK in CREATE TABLE."
                ),
                "UNIQUE" => format!(
                    "Add the column without it, backfill, then CREATE UNIQUE INDEX ASYNC on '{column}' and ALTER TABLE ... ADD CONSTRAINT ... UNIQUE USING INDEX."
                ),
                _ => format!(
                    "Define '{column}' with this clause when the table is created (recreate the table and copy the rows in batches), or add a plain column and backfill it."
                ),
            },
        })
    })
}

/// dsql-lint's on-wire (snake_case) name for a rule.
pub(crate) fn rule_name(rule: &dsql_lint::LintRule) -> String {
    match serde_json::to_value(rule) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{rule:?}"),
    }
}

/// Literal rows of an `INSERT … VALUES`.
fn literal_rows(stmt: &Statement) -> usize {
    let Statement::Insert(ins) = stmt else {
        return 0;
    };
    match ins.source.as_deref().map(|q| q.body.as_ref()) {
        Some(SetExpr::Values(v)) => v.rows.len(),
        _ => 0,
    }
}

fn policy_rules(stmt: &Statement, text: &str, n: usize, out: &mut Vec<Problem>) {
    let mut fk = false;
    let mut json: Vec<String> = Vec::new();
    fn columns<'a>(
        cols: impl Iterator<Item = &'a ColumnDef>,
        fk: &mut bool,
        json: &mut Vec<String>,
    ) {
        for c in cols {
            if is_json(&c.data_type) {
                json.push(c.name.value.clone());
            }
            if c.options
                .iter()
                .any(|o| matches!(o.option, ColumnOption::ForeignKey(_)))
            {
                *fk = true;
            }
        }
    }
    match stmt {
        Statement::CreateTable(ct) => {
            columns(ct.columns.iter(), &mut fk, &mut json);
            if ct
                .constraints
                .iter()
                .any(|c| matches!(c, TableConstraint::ForeignKey(_)))
            {
                fk = true;
            }
        }
        Statement::AlterTable(at) => {
            for op in &at.operations {
                match op {
                    AlterTableOperation::AddColumn { column_def, .. } => {
                        columns(std::iter::once(column_def), &mut fk, &mut json)
                    }
                    AlterTableOperation::AddConstraint {
                        constraint: TableConstraint::ForeignKey(_),
                        ..
                    } => fk = true,
                    AlterTableOperation::AlterColumn {
                        column_name,
                        op: sqlparser::ast::AlterColumnOperation::SetDataType { data_type, .. },
                    } if is_json(data_type) => json.push(column_name.value.clone()),
                    _ => {}
                }
            }
        }
        Statement::CreateDomain(d) if is_json(&d.data_type) => json.push(d.name.to_string()),
        _ => {}
    }
    if fk {
        out.push(Problem {
            statement: n,
            rule: "foreign_key".into(),
            line: line_of(text, &["references", "foreign"]),
            message: "FOREIGN KEY constraints are refused by this server's policy (the power's rule; the cluster itself accepts them): keep references between tables in the application layer.".into(),
            suggestion: format!(
                "Drop the REFERENCES / FOREIGN KEY clause and check the relationship in application code, or {POLICY_SWITCH}."
            ),
        });
    }
    if !json.is_empty() {
        out.push(Problem {
            statement: n,
            rule: "json_type".into(),
            line: line_of(text, &["jsonb", "json"]),
            message: format!(
                "JSON/JSONB column types are refused by this server's policy (the power's rule; the cluster itself accepts them): store JSON as TEXT. Column: {}",
                json.join(", ")
            ),
            suggestion: format!(
                "Declare the column as TEXT and cast in queries (col::jsonb), or {POLICY_SWITCH}."
            ),
        });
    }
}

fn is_json(t: &DataType) -> bool {
    match t {
        DataType::JSON | DataType::JSONB => true,
        DataType::Custom(name, _) => name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|id| matches!(guard::fold(id).as_str(), "json" | "jsonb")),
        _ => false,
    }
}

/// 1-based line of the first of `needles` found in `text` as a word (1 if none).
fn line_of(text: &str, needles: &[&str]) -> usize {
    let lower = text.to_ascii_lowercase();
    for needle in needles {
        let mut from = 0;
        while let Some(p) = lower[from..].find(needle) {
            let at = from + p;
            let end = at + needle.len();
            let word = |i: Option<&u8>| i.is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
            let before = at.checked_sub(1).and_then(|i| lower.as_bytes().get(i));
            if !word(before) && !word(lower.as_bytes().get(end)) {
                return text[..at].matches('\n').count() + 1;
            }
            from = at + 1;
        }
    }
    1
}

/// Renders problems as the tool error an agent sees.
pub(crate) fn violation(problems: &[Problem], statements: usize) -> RuleViolation {
    let mut m = format!(
        "DSQL rules refused {} ({} problem{}):\n",
        if statements > 1 {
            "the transaction"
        } else {
            "the statement"
        },
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        let at = match (p.statement, statements > 1) {
            (0, _) => "transaction".to_string(),
            (n, true) => format!("statement {n}, line {}", p.line),
            (_, false) => format!("line {}", p.line),
        };
        let stop = if p.message.ends_with(['.', '!', '?']) {
            ""
        } else {
            "."
        };
        m.push_str(&format!(
            "- {} ({at}): {}{stop} Suggestion: {}\n",
            p.rule, p.message, p.suggestion
        ));
    }
    m.push_str(
        "Nothing was sent to the cluster. The dsql_lint tool with fix: true can rewrite the fixable problems.",
    );
    RuleViolation { message: m }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_finds_words() {
        assert_eq!(
            line_of("CREATE TABLE t (\n a int\n REFERENCES u)", &["references"]),
            3
        );
        assert_eq!(
            line_of("CREATE TABLE t (jsonbx int,\n b jsonb)", &["jsonb"]),
            2
        );
        assert_eq!(line_of("x", &["json"]), 1);
    }
}
