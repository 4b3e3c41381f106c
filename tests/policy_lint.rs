//! The `dsql_lint` tool's JSON (`policy::lint`), in the reference's shape.
//! Pure: no database.

use std::time::Instant;

use aurora_dsql_mcp_server::policy::{
    AllowedFunctions, RuleSet, check_rules, lint, lint_as_execute,
};
use serde_json::{Value, json};

fn keys(v: &Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn empty_input_short_circuits() {
    let empty = json!({"diagnostics": [], "fixed_sql": null, "summary": {"errors": 0, "warnings": 0, "fixed": 0}});
    for sql in ["", "   ", "\n\t "] {
        assert_eq!(lint(sql, false), empty);
        assert_eq!(lint(sql, true), empty);
    }
}

#[test]
fn lint_shape_and_counts() {
    let v = lint("CREATE INDEX i ON t (a ASC);\nTRUNCATE t;", false);
    assert_eq!(keys(&v), ["diagnostics", "fixed_sql", "summary"]);
    assert_eq!(v["fixed_sql"], Value::Null);
    let d = v["diagnostics"].as_array().unwrap();
    assert_eq!(d.len(), 3);
    for x in d {
        assert_eq!(
            keys(x),
            [
                "rule",
                "line",
                "message",
                "suggestion",
                "fix_result",
                "statement_preview"
            ]
        );
    }
    assert_eq!(d[0]["rule"], "index_async");
    assert_eq!(d[0]["line"], 1);
    assert_eq!(d[0]["fix_result"]["status"], "fixed_with_warning");
    assert!(
        d[0]["fix_result"]["detail"]
            .as_str()
            .unwrap()
            .contains("ASYNC")
    );
    // the crate (and so the CLI) keeps the statement's semicolon in the preview
    assert_eq!(d[0]["statement_preview"], "CREATE INDEX i ON t (a ASC);");
    assert_eq!(d[1]["rule"], "index_sort_direction");
    assert_eq!(
        d[1]["fix_result"],
        json!({"status": "fixed", "detail": "Removed explicit ASC index-key direction"})
    );
    assert_eq!(d[2]["rule"], "truncate");
    assert_eq!(d[2]["line"], 2);
    assert_eq!(d[2]["fix_result"], json!({"status": "unfixable"}));
    assert_eq!(d[2]["message"], "TRUNCATE is not supported in DSQL.");
    // lint mode counts as the CLI does: unfixable = error, fixed-with-warning = warning
    assert_eq!(
        v["summary"],
        json!({"errors": 1, "warnings": 1, "fixed": 0})
    );
}

#[test]
fn fix_mode_returns_fixed_sql() {
    let v = lint("CREATE INDEX i ON t (a ASC);\nTRUNCATE t;", true);
    let fixed = v["fixed_sql"].as_str().unwrap();
    assert!(fixed.contains("CREATE INDEX ASYNC i ON t(a)"), "{fixed}");
    assert!(fixed.contains("TRUNCATE t"), "{fixed}");
    // Two fixes were applied (ASYNC added, with a warning; ASC removed): `fixed` counts
    // both, and the one with a warning is still a warning.
    assert_eq!(
        v["summary"],
        json!({"errors": 1, "warnings": 1, "fixed": 2})
    );
    // A text whose only finding is fixed with a warning: `fixed: 1`, not 0.
    let v = lint("CREATE INDEX i ON t (a);", true);
    assert_eq!(
        v["fixed_sql"].as_str().unwrap().trim(),
        "CREATE INDEX ASYNC i ON t(a);"
    );
    assert_eq!(
        v["summary"],
        json!({"errors": 0, "warnings": 1, "fixed": 1})
    );
    // Lint mode applies nothing.
    assert_eq!(
        lint("CREATE INDEX i ON t (a);", false)["summary"],
        json!({"errors": 0, "warnings": 1, "fixed": 0})
    );
    let v = lint("SELECT 1", true);
    assert_eq!(v["diagnostics"], json!([]));
    assert!(v["fixed_sql"].as_str().unwrap().contains("SELECT 1"));
}

#[test]
fn clean_sql_has_no_diagnostics() {
    let v = lint(
        "CREATE TABLE t (id uuid PRIMARY KEY, body text);\nCREATE INDEX ASYNC i ON t (body);",
        false,
    );
    assert_eq!(
        v,
        json!({"diagnostics": [], "fixed_sql": null, "summary": {"errors": 0, "warnings": 0, "fixed": 0}})
    );
}

#[test]
fn parse_errors_are_diagnostics() {
    let v = lint("CREATE TABLE (", false);
    assert_eq!(v["diagnostics"][0]["rule"], "parse_error");
    assert_eq!(v["summary"]["errors"], 1);
}

#[test]
fn preview_is_collapsed_and_cut() {
    let cols: Vec<String> = (0..40).map(|i| format!("c{i} int")).collect();
    let v = lint(
        &format!("CREATE TEMP TABLE t (\n  {}\n)", cols.join(",\n  ")),
        false,
    );
    let p = v["diagnostics"][0]["statement_preview"].as_str().unwrap();
    assert!(
        p.starts_with("CREATE TEMP TABLE t ( c0 int, c1 int,"),
        "{p}"
    );
    assert!(p.ends_with('…'), "{p}");
    assert_eq!(p.chars().count(), 81);
}

#[test]
fn long_lines_are_fast_and_keep_line_numbers() {
    let rows: Vec<String> = (0..3000).map(|i| format!("({i}, 'row {i}')")).collect();
    let sql = format!(
        "INSERT INTO t (id, name) VALUES {};\nCREATE TABLE u (id int, tags text[]);",
        rows.join(", ")
    );
    let t = Instant::now();
    let v = lint(&sql, false);
    println!("3,000-row single-line INSERT linted in {:?}", t.elapsed());
    assert_eq!(v["diagnostics"][0]["rule"], "array_type");
    assert_eq!(v["diagnostics"][0]["line"], 2);
    let t = Instant::now();
    let v = lint(&sql, true);
    println!("... and fixed in {:?}", t.elapsed());
    assert_eq!(v["summary"]["errors"], 1);
}

#[test]
fn too_complex_input_is_a_diagnostic_not_a_crash() {
    let v = lint(&format!("SELECT {}1", "1+".repeat(50_000)), false);
    assert_eq!(v["diagnostics"][0]["rule"], "parse_error");
    assert!(
        v["diagnostics"][0]["message"]
            .as_str()
            .unwrap()
            .contains("too complex")
    );
    assert_eq!(v["summary"]["errors"], 1);
}

#[test]
fn large_inputs_are_linted_in_chunks_with_their_own_line_numbers() {
    // 3,000 statements (about 30,000 tokens): linted chunk by chunk, diagnostics keep the
    // caller's line numbers, the list is capped and the summary counts every finding.
    let sql: String = (0..3000)
        .map(|i| format!("CREATE INDEX i{i} ON t (a);\n"))
        .collect();
    let v = lint(&sql, false);
    let d = v["diagnostics"].as_array().unwrap();
    assert_eq!(d.len(), 1000);
    for (k, x) in d.iter().enumerate() {
        assert_eq!(x["rule"], "index_async");
        assert_eq!(x["line"], k + 1);
        assert_eq!(
            x["statement_preview"],
            format!("CREATE INDEX i{k} ON t (a);")
        );
    }
    assert_eq!(
        v["summary"],
        json!({"errors": 0, "warnings": 3000, "fixed": 0})
    );
    assert_eq!(
        v["diagnostics_truncated"],
        "3000 diagnostics found; the first 1000 are listed (the summary counts all)"
    );
    let fixed = lint(&sql, true);
    let out = fixed["fixed_sql"].as_str().unwrap();
    assert_eq!(
        out.matches("CREATE INDEX ASYNC").count(),
        3000,
        "every chunk fixed"
    );
    assert!(
        out.contains("ASYNC i2999 ON t"),
        "the last chunk is in the fixed text"
    );
}

#[test]
fn a_transaction_block_is_never_split_between_chunks() {
    // Two DDL statements inside one BEGIN ... COMMIT, past the chunk size: still one
    // transaction for dsql-lint, which reports the multi-DDL transaction.
    let filler: String = (0..2500)
        .map(|i| format!("SELECT {i}, 1, 2, 3;\n"))
        .collect();
    let sql = format!(
        "{filler}BEGIN;\nCREATE TABLE a (id int PRIMARY KEY);\n{filler}CREATE TABLE b (id int PRIMARY KEY);\nCOMMIT;\n"
    );
    let v = lint(&sql, false);
    let rules: Vec<&str> = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"multi_ddl_transaction"), "{rules:?}");
}

// What `execute` refuses, reported by the tool's lint (`lint_as_execute`) after dsql-lint's
// own diagnostics, with the same rule checker and guard that `execute` runs.

const POLICY_SWITCH: &str =
    "start the server with `--rules cluster` (env DSQL_RULES=cluster) to allow it";

fn as_execute(sql: &str, fix: bool, rules: RuleSet) -> Value {
    lint_as_execute(sql, fix, rules, &AllowedFunctions::default())
}

fn unfixable(rule: &str, line: u64, message: &str, suggestion: &str, preview: &str) -> Value {
    json!({
        "rule": rule,
        "line": line,
        "message": message,
        "suggestion": suggestion,
        "fix_result": {"status": "unfixable"},
        "statement_preview": preview,
    })
}

#[test]
fn json_columns_and_foreign_keys_are_reported_under_the_powers_rules_only() {
    let sql = "CREATE TABLE orders (\n  id uuid PRIMARY KEY,\n  doc jsonb,\n  customer uuid REFERENCES customers (id)\n);";
    let preview =
        "CREATE TABLE orders ( id uuid PRIMARY KEY, doc jsonb, customer uuid REFERENCES c…";
    assert_eq!(
        as_execute(sql, false, RuleSet::Power),
        json!({
            "diagnostics": [
                unfixable(
                    "foreign_key",
                    4,
                    "FOREIGN KEY constraints are refused by this server's policy (the power's rule; the cluster itself accepts them): keep references between tables in the application layer.",
                    &format!("Drop the REFERENCES / FOREIGN KEY clause and check the relationship in application code, or {POLICY_SWITCH}."),
                    preview,
                ),
                unfixable(
                    "json_type",
                    3,
                    "JSON/JSONB column types are refused by this server's policy (the power's rule; the cluster itself accepts them): store JSON as TEXT. Column: doc",
                    &format!("Declare the column as TEXT and cast in queries (col::jsonb), or {POLICY_SWITCH}."),
                    preview,
                ),
            ],
            "fixed_sql": null,
            "summary": {"errors": 2, "warnings": 0, "fixed": 0},
        })
    );
    // The same as `execute` refuses it.
    let refused = check_rules(&[sql], RuleSet::Power).unwrap_err().to_string();
    assert!(
        refused
            .starts_with("DSQL rules refused the statement (2 problems):\n- foreign_key (line 4)"),
        "{refused}"
    );
    // Under `--rules cluster` neither rule applies, to `execute` or to the lint.
    assert_eq!(
        as_execute(sql, false, RuleSet::Cluster),
        json!({"diagnostics": [], "fixed_sql": null, "summary": {"errors": 0, "warnings": 0, "fixed": 0}})
    );
    assert!(check_rules(&[sql], RuleSet::Cluster).is_ok());
    // `policy::lint` (migrations, the review prompt) stays dsql-lint's alone.
    assert_eq!(lint(sql, false)["diagnostics"], json!([]));
}

#[test]
fn transaction_control_is_reported_once_per_statement() {
    let sql = "BEGIN;\nCREATE TABLE t (id int PRIMARY KEY);\nCOMMIT;\nSAVEPOINT s;\nROLLBACK;";
    let v = as_execute(sql, false, RuleSet::Power);
    let suggestion = "Drop it and send the statements in separate calls: execute commits each statement on its own, transact runs its list in one transaction (one DDL per transaction in DSQL).";
    let control = |what: &str, line: u64| {
        unfixable(
            "transaction_control",
            line,
            &format!(
                "Caller-supplied transaction control is not allowed: {what}. execute, transact and apply_migration run every call in a transaction of their own."
            ),
            suggestion,
            what,
        )
    };
    assert_eq!(
        v,
        json!({
            "diagnostics": [
                // dsql-lint's own finding; not reported a second time.
                {
                    "rule": "unsupported_savepoint",
                    "line": 4,
                    "message": "SAVEPOINT is not supported in DSQL.",
                    "suggestion": "Restructure logic to use separate transactions instead of partial rollbacks.",
                    "fix_result": {"status": "unfixable"},
                    "statement_preview": "SAVEPOINT s;",
                },
                control("BEGIN", 1),
                control("COMMIT", 3),
                control("ROLLBACK", 5),
            ],
            "fixed_sql": null,
            "summary": {"errors": 4, "warnings": 0, "fixed": 0},
        })
    );
    // In fix mode the text is left alone there, and the count of fixes stays honest.
    let v = as_execute("CREATE INDEX i ON t (a);\nBEGIN;", true, RuleSet::Power);
    assert_eq!(v["fixed_sql"], "CREATE INDEX ASYNC i ON t(a);\n\nBEGIN;\n");
    assert_eq!(v["diagnostics"][1], control("BEGIN", 2));
    assert_eq!(
        v["summary"],
        json!({"errors": 1, "warnings": 1, "fixed": 1})
    );
}

#[test]
fn what_else_the_write_policy_refuses_is_reported_with_its_reason() {
    let sql = "COPY t FROM STDIN;\nSELECT pg_read_file('/etc/passwd');\nINSERT INTO t VALUES ($1);\n\
               ALTER TABLE t ADD COLUMN c int UNIQUE;\nCREATE TEMP TABLE tt (a int);";
    let v = as_execute(sql, false, RuleSet::Cluster);
    let suggestion = "Rewrite the statement without what the message names; this server's write policy does not send it to the cluster.";
    let d = v["diagnostics"].as_array().unwrap();
    // dsql-lint's temp_table first (the guard's refusal of the same statement is not
    // repeated); a placeholder is not a finding.
    assert_eq!(d.len(), 4, "{v}");
    assert_eq!(d[0]["rule"], "temp_table");
    assert_eq!(d[0]["line"], 5);
    assert_eq!(
        d[1],
        unfixable(
            "write_policy",
            1,
            "execute refuses this statement: COPY ... FROM STDIN / TO STDOUT needs a data stream that MCP tool calls do not carry: load rows with INSERT ... VALUES in batches of at most 3,000 rows, and read them with SELECT",
            suggestion,
            "COPY t FROM STDIN",
        )
    );
    assert_eq!(
        d[2],
        unfixable(
            "write_policy",
            2,
            "execute refuses this statement: Dangerous function call not allowed: pg_read_file (it reads the server's files or host details)",
            suggestion,
            "SELECT pg_read_file('/etc/passwd')",
        )
    );
    assert_eq!(
        d[3],
        unfixable(
            "add_column_constraint",
            4,
            "ADD COLUMN 'c' with an inline UNIQUE clause is not supported in DSQL (ALTER TABLE ADD COLUMN takes no constraints).",
            "Add the column without it, backfill, then CREATE UNIQUE INDEX ASYNC on 'c' and ALTER TABLE ... ADD CONSTRAINT ... UNIQUE USING INDEX.",
            "ALTER TABLE t ADD COLUMN c int UNIQUE",
        )
    );
    assert_eq!(
        v["summary"],
        json!({"errors": 3, "warnings": 1, "fixed": 0})
    );
}
