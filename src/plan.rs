//! Reading `EXPLAIN` text output: DSQL's plan nodes (and PostgreSQL's, on the sandbox) as
//! structured nodes with their filters placed in DSQL's three-level model, plus the
//! trailer (planning/execution time, the `Statement DPU Estimate` block).
//!
//! Parsed by hand: no crate reads DSQL plans (its node names — `Full Scan (btree-table)`,
//! `Storage Scan`, `Storage Lookup`, `B-Tree Scan` — and its `Filters:` storage lines are
//! DSQL's own), and whether DSQL's `FORMAT JSON` carries them is undocumented, so the
//! documented text format is what is read here.

use serde_json::{Map, Value, json};

/// Where a filter line is applied, best first (DSQL's model).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterLevel {
    /// `Index Cond:`: limits what is read from storage.
    IndexCondition,
    /// `Filters:` inside a Storage Scan / Storage Lookup: applied at storage.
    Storage,
    /// `Filter:` on a scan node: applied after the rows left storage.
    AboveStorage,
}

impl FilterLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            FilterLevel::IndexCondition => "index_condition",
            FilterLevel::Storage => "storage_filter",
            FilterLevel::AboveStorage => "above_storage",
        }
    }
}

/// One plan node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Node {
    /// Nesting depth (0 for the root).
    pub depth: usize,
    /// Index of the parent node in `Plan::nodes`.
    pub parent: Option<usize>,
    pub node_type: String,
    pub relation: Option<String>,
    pub index: Option<String>,
    pub estimated_rows: Option<f64>,
    pub actual_rows: Option<f64>,
    /// The end of `actual time=a..b` (milliseconds per loop).
    pub actual_time_ms: Option<f64>,
    pub loops: Option<f64>,
    pub filters: Vec<(FilterLevel, String)>,
    pub rows_removed_by_filter: Option<f64>,
}

/// A parsed plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub nodes: Vec<Node>,
    pub planning_time_ms: Option<f64>,
    pub execution_time_ms: Option<f64>,
    /// The `Statement DPU Estimate:` block, in its order (`Compute`, `Read`, `Write`, ..., `Total`).
    pub dpu: Vec<(String, f64)>,
}

/// DSQL's own node names; a plan with none of them and a PostgreSQL scan is PostgreSQL's.
const DSQL_NODES: &[&str] = &[
    "Full Scan",
    "Storage Scan",
    "Storage Lookup",
    "B-Tree Scan",
    "B-Tree Lookup",
];

impl Plan {
    /// True when the node names are PostgreSQL's (the sandbox or a stand-in), not DSQL's.
    pub fn is_postgresql(&self) -> bool {
        !self
            .nodes
            .iter()
            .any(|n| DSQL_NODES.iter().any(|d| n.node_type.starts_with(d)))
    }

    /// A full-table scan node: DSQL's `Full Scan (btree-table)` or PostgreSQL's `Seq Scan`.
    pub fn is_full_scan(node: &Node) -> bool {
        node.node_type.starts_with("Full Scan") || node.node_type.ends_with("Seq Scan")
    }

    /// The filters applied to a scan node's rows: its own, and the `Filters:` of the
    /// Storage Scan / Storage Lookup beneath it.
    pub fn scan_filters(&self, at: usize) -> Vec<(FilterLevel, String)> {
        let mut out = self.nodes[at].filters.clone();
        for n in &self.nodes {
            if n.parent == Some(at) && n.node_type.starts_with("Storage ") {
                out.extend(n.filters.iter().cloned());
            }
        }
        out
    }
}

/// Reads the text format, one output row per line.
pub fn parse(lines: &[String]) -> Plan {
    let mut plan = Plan::default();
    // (indent of the node's "->" or 0 for the root, node index)
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let mut in_dpu = false;
    for line in lines {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if let Some(v) = text.strip_prefix("Planning Time:") {
            plan.planning_time_ms = number(v);
            continue;
        }
        if let Some(v) = text.strip_prefix("Execution Time:") {
            plan.execution_time_ms = number(v);
            in_dpu = false;
            continue;
        }
        if text.starts_with("Statement DPU Estimate") {
            in_dpu = true;
            continue;
        }
        if in_dpu {
            if let Some((k, v)) = text.split_once(':')
                && let Some(x) = number(v)
            {
                plan.dpu.push((k.trim().to_owned(), x));
                continue;
            }
            in_dpu = false;
        }
        let node_text = if let Some(rest) = text.strip_prefix("->") {
            Some(rest.trim_start())
        } else if plan.nodes.is_empty() {
            Some(text)
        } else {
            None
        };
        if let Some(node_text) = node_text {
            while stack.last().is_some_and(|&(i, _)| i >= indent) && !plan.nodes.is_empty() {
                stack.pop();
            }
            let mut node = node_line(node_text);
            node.depth = stack.len();
            node.parent = stack.last().map(|&(_, n)| n);
            plan.nodes.push(node);
            stack.push((indent, plan.nodes.len() - 1));
            continue;
        }
        // An attribute line of the last node.
        let Some(node) = plan.nodes.last_mut() else {
            continue;
        };
        let (key, value) = match text.split_once(": ") {
            Some((k, v)) => (k, v.trim()),
            None => continue,
        };
        let level = match key {
            "Index Cond" => Some(FilterLevel::IndexCondition),
            "Filters" => Some(FilterLevel::Storage),
            "Filter" => Some(FilterLevel::AboveStorage),
            _ => None,
        };
        if let Some(level) = level {
            node.filters.push((level, value.to_owned()));
        } else if key == "Rows Removed by Filter" {
            node.rows_removed_by_filter = number(value);
        }
    }
    plan
}

/// `Index Scan using idx on public.t t1  (cost=0.29..8.31 rows=1 width=12) (actual time=0.01..0.02 rows=1 loops=1)`.
fn node_line(text: &str) -> Node {
    let mut node = Node::default();
    let head_end = ["  (cost=", " (cost=", " (actual ", " (never executed)"]
        .iter()
        .filter_map(|p| text.find(p))
        .min()
        .unwrap_or(text.len());
    let head = text[..head_end].trim();
    let tail = &text[head_end..];
    let (head, relation) = match head.rsplit_once(" on ") {
        Some((h, r)) => (h, r.split_whitespace().next().map(str::to_owned)),
        None => (head, None),
    };
    let (node_type, index) = match head.split_once(" using ") {
        Some((t, i)) => (t.to_owned(), Some(i.trim().to_owned())),
        None => (head.to_owned(), None),
    };
    // PostgreSQL's `Bitmap Index Scan on idx` names the index after "on".
    if node_type.ends_with("Bitmap Index Scan") {
        node.index = relation;
    } else {
        node.index = index;
        node.relation = relation;
    }
    node.node_type = node_type;
    if let Some(cost) = tail.split("(cost=").nth(1) {
        node.estimated_rows = field(cost.split(')').next().unwrap_or(""), "rows=");
    }
    if let Some(actual) = tail.split("(actual ").nth(1) {
        let actual = actual.split(')').next().unwrap_or("");
        node.actual_rows = field(actual, "rows=");
        node.loops = field(actual, "loops=");
        node.actual_time_ms = actual
            .split("time=")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .and_then(|t| t.split("..").nth(1))
            .and_then(|t| t.parse().ok());
    }
    node
}

/// The number after `name` in `a=1 rows=2 width=3`.
fn field(text: &str, name: &str) -> Option<f64> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(name))
        .and_then(|v| v.parse().ok())
}

/// The leading number of ` 0.123 ms` or ` 12.5 DPU`.
fn number(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Columns compared by equality with a constant or parameter in a filter:
/// `(col = 42)`, `(t.col = 'x'::text)`, `((col)::text = $1)`. Returned unqualified, as written.
pub fn equality_columns(condition: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in condition.split(" AND ") {
        let part = part.trim().trim_start_matches('(').trim_end_matches(')');
        let Some((left, right)) = part.split_once(" = ") else {
            continue;
        };
        let left = left.trim_start_matches('(');
        let left = left
            .split(")::")
            .next()
            .unwrap_or(left)
            .trim_end_matches(')');
        let right = right.trim();
        // The other side must be a constant or a parameter, not another column.
        let constant = right.starts_with('\'')
            || right.starts_with('$')
            || right.starts_with(|c: char| c.is_ascii_digit() || c == '-');
        if !constant {
            continue;
        }
        let column = left.rsplit('.').next().unwrap_or(left).trim_matches('"');
        if !column.is_empty()
            && column
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
            && !out.iter().any(|c| c == column)
        {
            out.push(column.to_owned());
        }
    }
    out
}

/// Full scans (`Full Scan`, `Seq Scan`) filtered by equality with a constant, below or above
/// storage: (node index, relation as written in the plan, the columns).
pub fn full_scan_equalities(plan: &Plan) -> Vec<(usize, String, Vec<String>)> {
    let mut out = Vec::new();
    for (i, node) in plan.nodes.iter().enumerate() {
        let Some(relation) = node.relation.as_ref().filter(|_| Plan::is_full_scan(node)) else {
            continue;
        };
        let mut columns: Vec<String> = Vec::new();
        for (level, cond) in plan.scan_filters(i) {
            if level == FilterLevel::IndexCondition {
                continue;
            }
            for c in equality_columns(&cond) {
                if !columns.contains(&c) {
                    columns.push(c);
                }
            }
        }
        if !columns.is_empty() {
            out.push((i, relation.clone(), columns));
        }
    }
    out
}

/// The findings that need no catalog: row estimates more than `factor` times off the
/// actual count (on scans, joins and the like; not on the Storage / B-Tree nodes beneath a
/// scan), and the DPU estimate.
pub fn estimate_findings(plan: &Plan, factor: f64) -> Vec<Value> {
    let mut out = Vec::new();
    for node in &plan.nodes {
        // Storage and B-Tree nodes repeat their scan's counts: report the scan only.
        if node.node_type.starts_with("Storage ") || node.node_type.starts_with("B-Tree ") {
            continue;
        }
        let (Some(est), Some(actual)) = (node.estimated_rows, node.actual_rows) else {
            continue;
        };
        let (lo, hi) = (est.min(actual).max(1.0), est.max(actual).max(1.0));
        if hi / lo > factor {
            let target = node
                .relation
                .as_deref()
                .map(|r| format!("ANALYZE {r}"))
                .unwrap_or_else(|| "ANALYZE the tables it reads".to_owned());
            out.push(json!({
                "kind": "row_estimate",
                "node": node.node_type,
                "message": format!(
                    "{} estimated {est} rows but returned {actual} (off by {:.0}x): the planner's statistics are stale or its predicates are correlated.",
                    node.node_type, hi / lo
                ),
                "fix": format!("Refresh the statistics ({target}) and explain again."),
            }));
        }
    }
    if let Some((_, total)) = plan.dpu.iter().find(|(k, _)| k == "Total") {
        let parts: Vec<String> = plan
            .dpu
            .iter()
            .filter(|(k, _)| k != "Total")
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        out.push(json!({
            "kind": "dpu_estimate",
            "message": format!("The statement is estimated at {total} DPU ({}).", parts.join(", ")),
            "fix": "Compare the Read DPU before and after a change (an index, fewer columns); costs are not comparable across queries.",
        }));
    }
    out
}

/// The nodes as JSON for the tool result.
pub fn nodes_json(plan: &Plan) -> Value {
    Value::Array(
        plan.nodes
            .iter()
            .map(|n| {
                let mut m = Map::new();
                m.insert("depth".into(), json!(n.depth));
                m.insert("type".into(), json!(n.node_type));
                if let Some(r) = &n.relation {
                    m.insert("relation".into(), json!(r));
                }
                if let Some(i) = &n.index {
                    m.insert("index".into(), json!(i));
                }
                if let Some(r) = n.estimated_rows {
                    m.insert("estimated_rows".into(), json!(r));
                }
                if let Some(r) = n.actual_rows {
                    m.insert("actual_rows".into(), json!(r));
                }
                if let Some(t) = n.actual_time_ms {
                    m.insert("actual_time_ms".into(), json!(t));
                }
                if let Some(l) = n.loops {
                    m.insert("loops".into(), json!(l));
                }
                if let Some(r) = n.rows_removed_by_filter {
                    m.insert("rows_removed_by_filter".into(), json!(r));
                }
                let filters: Vec<Value> = n
                    .filters
                    .iter()
                    .map(|(level, cond)| json!({"applied": level.as_str(), "condition": cond}))
                    .collect();
                m.insert("filters".into(), Value::Array(filters));
                Value::Object(m)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn reads_a_dsql_plan_with_its_three_filter_levels_and_dpu() {
        let plan = parse(&lines(
            "Index Scan using orders_tenant_idx on orders  (cost=100.15..112.40 rows=5 width=40) (actual time=1.20..1.90 rows=4 loops=1)
  Index Cond: (tenant_id = 7)
  Filter: (note ~~ '%x%'::text)
  Rows Removed by Filter: 1
  ->  Storage Scan on orders_tenant_idx  (cost=100.15..112.40 rows=5 width=40) (actual rows=5 loops=1)
        Projections: tenant_id, id
        ->  B-Tree Scan on orders_tenant_idx  (cost=100.15..112.40 rows=5 width=40) (actual rows=5 loops=1)
              Index Cond: (tenant_id = 7)
  ->  Storage Lookup on orders  (cost=100.15..112.40 rows=5 width=40) (actual rows=5 loops=1)
        Filters: (status = 'paid'::text)
        ->  B-Tree Lookup on orders  (cost=100.15..112.40 rows=5 width=40) (actual rows=5 loops=1)
Query Identifier: qymgw1m77maoe
Planning Time: 0.101 ms
Execution Time: 2.030 ms
Statement DPU Estimate:
  Compute: 0.01 DPU
  Read: 0.02 DPU
  Write: 0.00 DPU
  Total: 0.03 DPU",
        ));
        assert!(!plan.is_postgresql());
        let types: Vec<(&str, usize, Option<usize>)> = plan
            .nodes
            .iter()
            .map(|n| (n.node_type.as_str(), n.depth, n.parent))
            .collect();
        assert_eq!(
            types,
            [
                ("Index Scan", 0, None),
                ("Storage Scan", 1, Some(0)),
                ("B-Tree Scan", 2, Some(1)),
                ("Storage Lookup", 1, Some(0)),
                ("B-Tree Lookup", 2, Some(3)),
            ]
        );
        let root = &plan.nodes[0];
        assert_eq!(root.index.as_deref(), Some("orders_tenant_idx"));
        assert_eq!(root.relation.as_deref(), Some("orders"));
        assert_eq!(
            (
                root.estimated_rows,
                root.actual_rows,
                root.actual_time_ms,
                root.loops
            ),
            (Some(5.0), Some(4.0), Some(1.9), Some(1.0))
        );
        assert_eq!(root.rows_removed_by_filter, Some(1.0));
        assert_eq!(
            plan.scan_filters(0),
            [
                (FilterLevel::IndexCondition, "(tenant_id = 7)".to_owned()),
                (
                    FilterLevel::AboveStorage,
                    "(note ~~ '%x%'::text)".to_owned()
                ),
                (FilterLevel::Storage, "(status = 'paid'::text)".to_owned()),
            ]
        );
        assert_eq!(plan.planning_time_ms, Some(0.101));
        assert_eq!(plan.execution_time_ms, Some(2.03));
        let dpu: Vec<(&str, f64)> = plan.dpu.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            dpu,
            [
                ("Compute", 0.01),
                ("Read", 0.02),
                ("Write", 0.0),
                ("Total", 0.03)
            ]
        );
    }

    #[test]
    fn reads_dsql_full_scan_and_postgresql_seq_scan() {
        let dsql = parse(&lines(
            "Full Scan (btree-table) on t  (cost=100.00..5100.00 rows=1 width=8)
  ->  Storage Scan on t  (cost=100.00..5100.00 rows=1 width=8)
        Filters: (col = 42)
        ->  B-Tree Scan on t  (cost=100.00..5100.00 rows=10000 width=8)",
        ));
        assert_eq!(dsql.nodes[0].node_type, "Full Scan (btree-table)");
        assert_eq!(dsql.nodes[0].relation.as_deref(), Some("t"));
        assert!(Plan::is_full_scan(&dsql.nodes[0]));
        assert!(!dsql.is_postgresql());
        assert_eq!(
            dsql.scan_filters(0),
            [(FilterLevel::Storage, "(col = 42)".to_owned())]
        );
        let pg = parse(&lines(
            "Seq Scan on public.t x  (cost=0.00..180.00 rows=1 width=8) (actual time=0.020..0.900 rows=1.00 loops=1)\n  Filter: (x.col = 42)",
        ));
        assert!(pg.is_postgresql());
        assert_eq!(pg.nodes[0].relation.as_deref(), Some("public.t"));
        assert_eq!(pg.nodes[0].actual_rows, Some(1.0));
    }

    #[test]
    fn dsql_full_scan_estimates_and_dpu_become_findings() {
        let plan = parse(&lines(
            "Full Scan (btree-table) on orders  (cost=100.00..5100.00 rows=2 width=8) (actual time=0.50..9.50 rows=500 loops=1)
  ->  Storage Scan on orders  (cost=100.00..5100.00 rows=2 width=8) (actual rows=500 loops=1)
        Projections: id, customer_id
        Filters: (customer_id = 42)
        ->  B-Tree Scan on orders  (cost=100.00..5100.00 rows=10000 width=8) (actual rows=10000 loops=1)
Planning Time: 0.1 ms
Execution Time: 9.9 ms
Statement DPU Estimate:
  Compute: 0.5 DPU
  Read: 1.25 DPU
  Write: 0 DPU
  Total: 1.75 DPU",
        ));
        assert_eq!(
            full_scan_equalities(&plan),
            [(0, "orders".to_owned(), vec!["customer_id".to_owned()])]
        );
        assert_eq!(
            Value::Array(estimate_findings(&plan, 10.0)),
            json!([
                {"kind": "row_estimate", "node": "Full Scan (btree-table)",
                 "message": "Full Scan (btree-table) estimated 2 rows but returned 500 (off by 250x): the planner's statistics are stale or its predicates are correlated.",
                 "fix": "Refresh the statistics (ANALYZE orders) and explain again."},
                {"kind": "dpu_estimate",
                 "message": "The statement is estimated at 1.75 DPU (Compute 0.5, Read 1.25, Write 0).",
                 "fix": "Compare the Read DPU before and after a change (an index, fewer columns); costs are not comparable across queries."}
            ])
        );
        // 10x is not more than 10x; an index condition is not a full-scan filter.
        let plan = parse(&lines(
            "Seq Scan on t  (cost=0.00..1.00 rows=10 width=8) (actual time=0.01..0.02 rows=100 loops=1)\n  Index Cond: (a = 1)",
        ));
        assert!(estimate_findings(&plan, 10.0).is_empty());
        assert!(full_scan_equalities(&plan).is_empty());
    }

    #[test]
    fn finds_columns_compared_by_equality_with_a_constant() {
        assert_eq!(equality_columns("(col = 42)"), ["col"]);
        assert_eq!(
            equality_columns("((t.a = 'x'::text) AND (b = $1))"),
            ["a", "b"]
        );
        assert_eq!(equality_columns("((name)::text = 'x'::text)"), ["name"]);
        // Column to column (a join condition) and inequalities are not candidates.
        assert!(equality_columns("(a.id = b.id)").is_empty());
        assert!(equality_columns("(col > 42)").is_empty());
    }
}
