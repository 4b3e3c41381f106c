//! Pathological inputs: the guard must answer (never hang, never overflow the
//! stack) and answer fast. Timings are printed (`--nocapture`), not asserted
//! tightly: a loose ceiling only catches a runaway (quadratic) scan.

use std::time::{Duration, Instant};

use aurora_dsql_mcp_server::policy::{Access, Placeholders, check};

fn timed(label: &str, sql: &str, params: Option<usize>) -> bool {
    let t = Instant::now();
    let ok = check(sql, params, Placeholders::Psycopg, Access::ReadOnly).is_ok();
    let el = t.elapsed();
    println!(
        "{label:<40} {:>9} bytes  {:>10.3?}  accepted={ok}",
        sql.len(),
        el
    );
    assert!(el < Duration::from_secs(10), "{label} took {el:?}");
    ok
}

#[test]
fn pathological_inputs_finish() {
    assert!(timed(
        "5 MB of spaces + SELECT 1",
        &format!("{}SELECT 1{}", " ".repeat(2_500_000), " ".repeat(2_500_000)),
        None
    ));
    timed("5,000 spaces", &" ".repeat(5000), None);
    timed("1,000,001 single quotes", &"'".repeat(1_000_001), None);
    timed("1,000,000 double quotes", &"\"".repeat(1_000_000), None);
    timed("500,000 dollars", &"$".repeat(500_000), None);
    timed(
        "500,000 dollars, with params",
        &"$".repeat(500_000),
        Some(0),
    );
    timed("'union ' x 6000", &"union ".repeat(6000), None);
    timed("'commit ' x 6000", &"commit ".repeat(6000), None);
    timed(
        "SELECT 1 'union select' x 6000",
        &format!("SELECT 1 {}", "union select 1 ".repeat(6000)),
        None,
    );
    timed(
        "100,000 nested comments",
        &format!("{}x{} SELECT 1", "/*".repeat(100_000), "*/".repeat(100_000)),
        None,
    );
    timed(
        "unterminated nested comment",
        &format!("SELECT 1 {}", "/*".repeat(200_000)),
        None,
    );
    timed(
        "100,000 parentheses",
        &format!("SELECT {}1{}", "(".repeat(100_000), ")".repeat(100_000)),
        None,
    );
    timed(
        "1+1+... x 100,000",
        &format!("SELECT {}1", "1+".repeat(100_000)),
        None,
    );
    assert!(timed(
        "1+1+... x 9,000 (deep but allowed)",
        &format!("SELECT {}1", "1+".repeat(9_000)),
        None
    ));
    timed(
        "a OR a OR ... x 100,000",
        &format!("SELECT 1 WHERE {}true", "true OR ".repeat(100_000)),
        None,
    );
    assert!(timed(
        "x OR ... x 4,000",
        &format!("SELECT 1 FROM t WHERE {}true", "a = 1 OR ".repeat(4_000)),
        None
    ));
    timed(
        "UNION chain x 50,000",
        &format!("SELECT 1{}", " UNION SELECT 1".repeat(50_000)),
        None,
    );
    assert!(timed(
        "UNION chain x 3,000",
        &format!("SELECT 1{}", " UNION SELECT 1".repeat(3_000)),
        None
    ));
    timed(
        "NOT x 100,000",
        &format!("SELECT {}true", "NOT ".repeat(100_000)),
        None,
    );
    timed(
        "unary minus x 100,000",
        &format!("SELECT {}1", "-".repeat(100_000)),
        None,
    );
    timed(
        "casts x 50,000",
        &format!("SELECT 1{}", "::int".repeat(50_000)),
        None,
    );
    timed(
        "a.b.c... x 50,000",
        &format!("SELECT a{}", ".b".repeat(50_000)),
        None,
    );
    timed(
        "subscripts x 50,000",
        &format!("SELECT a{}", "[1]".repeat(50_000)),
        None,
    );
    timed("% x 100,000 with params", &"%%".repeat(100_000), Some(0));
    timed(
        "%s x 100,000 with params",
        &format!("SELECT {}1", "%s+".repeat(100_000)),
        Some(100_000),
    );
    timed(
        "U&\"…\" x 20,000",
        &format!("SELECT {}1", "U&\"\\0061\", ".repeat(20_000)),
        None,
    );
    timed(
        "E'\\\\' x 200,000",
        &format!("SELECT E'{}'", "\\\\".repeat(200_000)),
        None,
    );
    let values: Vec<String> = (0..3000)
        .map(|i| format!("({i}, -{i}, '2024-01-01'::date, 'x')"))
        .collect();
    let c = check(
        &format!("INSERT INTO t VALUES {}", values.join(", ")),
        None,
        Placeholders::Psycopg,
        Access::ReadWrite,
    );
    assert!(c.is_ok(), "{c:?}");
}

/// The deepest trees the token-run bound lets through must not overflow the
/// checker's stack, in the guard, the rule checker or the linter.
#[test]
fn deepest_allowed_trees_are_handled_everywhere() {
    use aurora_dsql_mcp_server::policy::{RuleSet, check_rules, lint};
    let sums = format!("SELECT {}1", "1+".repeat(9_999));
    let unions = format!("SELECT 1{}", " UNION SELECT 1".repeat(6_600));
    let ors = format!("SELECT 1 FROM t WHERE {}true", "a = 1 OR ".repeat(4_990));
    let casts = format!("SELECT 1{}", "::int".repeat(6_600));
    for sql in [&sums, &unions, &ors, &casts] {
        let t = Instant::now();
        let r = check(sql, None, Placeholders::Psycopg, Access::ReadWrite);
        assert!(
            r.is_ok(),
            "{:?}",
            r.map_err(|e| e.to_string().chars().take(200).collect::<String>())
        );
        let t1 = t.elapsed();
        let rules = check_rules(&[sql], RuleSet::Power);
        assert!(rules.is_ok(), "{rules:?}");
        let t2 = t.elapsed();
        // the linter either lints it or says it is too complex: it does not crash or hang
        let v = lint(sql, false);
        let e = v["summary"]["errors"].as_u64().unwrap();
        assert!(
            e == 0 || v.to_string().contains("too complex"),
            "{}",
            v.to_string().chars().take(300).collect::<String>()
        );
        let t3 = t.elapsed();
        let v = lint(sql, true);
        assert!(v["summary"]["errors"] == 0 || v.to_string().contains("too complex"));
        println!(
            "{} bytes: guard {t1:?}, rules {:?}, lint {:?}, fix {:?}",
            sql.len(),
            t2 - t1,
            t3 - t2,
            t.elapsed() - t3
        );
    }
}
