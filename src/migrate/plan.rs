//! A migration's plan: its statements checked exactly as `execute` checks them, given a
//! kind, and grouped into the transactions DSQL allows.
//!
//! Grouping follows DSQL's rules by construction: each DDL statement alone in its
//! transaction (a DDL and its history row cannot share one either); consecutive plain DML
//! together while the row count known before running (`INSERT … VALUES`) plus their history
//! rows stays within 3,000; any other DML alone; a batched write (`-- dsql:batched`) as its
//! own run of transactions. Nothing here touches the network.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::split::{self, Source};
use crate::policy::{self, Access, AllowedFunctions, Placeholders, RuleSet, StatementKind};

/// DSQL's modified-row limit per transaction.
pub const ROW_LIMIT: usize = 3000;

/// What a step is, which decides how the runner runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A schema change, alone in its transaction.
    Ddl,
    /// A schema change that returns a `job_id` (`CREATE [UNIQUE] INDEX ASYNC`, `ALTER TABLE
    /// ASYNC … VALIDATE`): run alone, then waited for.
    Job,
    /// A data change, possibly sharing its transaction with neighbours.
    Dml,
    /// `-- dsql:batched`: an UPDATE or DELETE run in batches over the primary key.
    Batched,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ddl => "ddl",
            Kind::Job => "ddl_job",
            Kind::Dml => "dml",
            Kind::Batched => "batched",
        }
    }
}

/// One statement of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// 1-based.
    pub index: usize,
    /// 1-based number of the transaction (or, for a batched step, the run of batches).
    pub transaction: usize,
    pub kind: Kind,
    /// The statement as the guard accepted it (what is sent).
    pub sql: String,
    /// The command tag (`CREATE TABLE`, `UPDATE`, ...).
    pub command: String,
    /// sha256 of `sql`, hex.
    pub hash: String,
    pub batch_size: Option<u32>,
    /// Rows written, when known before running.
    pub rows: Option<usize>,
    pub line: usize,
    /// dsql-lint's diagnostics of the statement (warnings the rules let through).
    pub lint: Vec<Value>,
}

/// The checked, grouped migration.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// sha256 over every step's kind, batch size and hash: what "the applied text" is.
    pub checksum: String,
}

/// What the checks need from the configuration.
pub struct Checks<'a> {
    pub allowed: &'a AllowedFunctions,
    pub rules: RuleSet,
}

pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a DDL statement returns a job id, from its leading words.
fn returns_job(sql: &str) -> bool {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(4)
        .map(str::to_ascii_uppercase)
        .collect();
    let w = |i: usize| words.get(i).map(String::as_str);
    matches!(
        (w(0), w(1), w(2), w(3)),
        (Some("CREATE"), Some("INDEX"), Some("ASYNC"), _)
            | (Some("CREATE"), Some("UNIQUE"), Some("INDEX"), Some("ASYNC"))
            | (Some("ALTER"), Some("TABLE"), Some("ASYNC"), _)
    )
}

/// Plans `sql`. An error names the statement (its step and line) and why it is refused.
pub fn plan(sql: &str, checks: &Checks<'_>) -> Result<Plan, String> {
    let sources = split::statements(sql)?;
    if sources.is_empty() {
        return Err("the migration holds no SQL statement".into());
    }
    let mut steps = Vec::with_capacity(sources.len());
    for (i, source) in sources.into_iter().enumerate() {
        steps.push(step(i + 1, source, checks)?);
    }
    group(&mut steps);
    for t in 1..=steps.last().map_or(0, |s| s.transaction) {
        let members: Vec<&str> = steps
            .iter()
            .filter(|s| s.transaction == t && s.kind == Kind::Dml)
            .map(|s| s.sql.as_str())
            .collect();
        if members.len() > 1 {
            policy::check_rules(&members, checks.rules)
                .map_err(|e| format!("transaction {t} of the plan: {e}"))?;
        }
    }
    let checksum = sha256_hex(
        &steps
            .iter()
            .map(|s| {
                format!(
                    "{}:{}:{}",
                    s.kind.as_str(),
                    s.batch_size.unwrap_or(0),
                    s.hash
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    );
    Ok(Plan { steps, checksum })
}

fn step(index: usize, source: Source, checks: &Checks<'_>) -> Result<Step, String> {
    let at = format!("step {index} (line {})", source.line);
    let checked = policy::check_with(
        &source.sql,
        Some(0),
        Placeholders::Numbered,
        Access::ReadWrite,
        checks.allowed,
    )
    .map_err(|e| format!("{at}: {e}"))?;
    let kind = match (checked.kind, source.batched) {
        (StatementKind::Dml, Some(_)) => Kind::Batched,
        (_, Some(_)) => {
            return Err(format!(
                "{at}: `-- dsql:batched` applies to an UPDATE or a DELETE, not to {}",
                checked.command
            ));
        }
        (StatementKind::Ddl, None) if returns_job(&checked.sql) => Kind::Job,
        (StatementKind::Ddl, None) => Kind::Ddl,
        (StatementKind::Dml, None) => Kind::Dml,
        (StatementKind::WaitForJob, None) => {
            return Err(format!(
                "{at}: CALL sys.wait_for_job is not needed in a migration: each CREATE INDEX ASYNC or \
                 ALTER TABLE ASYNC … VALIDATE step is waited for (polling sys.jobs) before the next one"
            ));
        }
        (StatementKind::Read, None) => {
            return Err(format!(
                "{at}: a {} changes nothing; a migration holds DDL and DML only",
                checked.command
            ));
        }
        (_, None) => {
            return Err(format!(
                "{at}: {} is not allowed in a migration (each step runs in its own transaction, so a session \
                 setting would not carry over to the next step)",
                checked.command
            ));
        }
    };
    if checked.param_count > 0 {
        return Err(format!(
            "{at}: a migration statement takes no $n parameters; write the values as literals"
        ));
    }
    policy::check_rules(&[checked.sql.as_str()], checks.rules).map_err(|e| format!("{at}: {e}"))?;
    if kind == Kind::Batched {
        policy::write_shape(&checked.sql).map_err(|e| format!("{at}: {e}"))?;
        super::batched::converges(&checked.sql, &[], None).map_err(|e| format!("{at}: {e}"))?;
    }
    let lint = policy::lint(&checked.sql, true);
    let lint = lint["diagnostics"].as_array().cloned().unwrap_or_default();
    let rows = match kind {
        Kind::Dml => policy::values_rows(&checked.sql),
        _ => None,
    };
    Ok(Step {
        index,
        transaction: 0,
        kind,
        hash: sha256_hex(&checked.sql),
        sql: checked.sql,
        command: checked.command,
        batch_size: source.batched,
        rows,
        line: source.line,
        lint,
    })
}

/// Numbers the transactions: DDL, job and batched steps alone; consecutive DML with known
/// row counts together while rows plus one history row per step stay within `ROW_LIMIT`.
fn group(steps: &mut [Step]) {
    let mut t = 0;
    let mut open: Option<usize> = None; // rows (plus history rows) of the open DML group
    for s in steps.iter_mut() {
        match (s.kind, s.rows, open) {
            (Kind::Dml, Some(rows), Some(used)) if used + rows < ROW_LIMIT => {
                open = Some(used + rows + 1);
            }
            (Kind::Dml, Some(rows), _) => {
                t += 1;
                open = Some(rows + 1);
            }
            _ => {
                t += 1;
                open = None;
            }
        }
        s.transaction = t;
    }
}

impl Plan {
    /// The dry run's JSON: each step with its transaction, kind, statement and findings.
    pub fn to_json(&self) -> Value {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|s| {
                let mut v = json!({
                    "step": s.index,
                    "transaction": s.transaction,
                    "kind": s.kind.as_str(),
                    "command": s.command,
                    "line": s.line,
                    "sql": s.sql,
                    "hash": s.hash,
                });
                if let Some(b) = s.batch_size {
                    v["batch_size"] = json!(b);
                }
                if let Some(r) = s.rows {
                    v["rows"] = json!(r);
                }
                if !s.lint.is_empty() {
                    v["lint"] = Value::Array(s.lint.clone());
                }
                v
            })
            .collect();
        json!({
            "checksum": self.checksum,
            "transactions": self.steps.last().map_or(0, |s| s.transaction),
            "steps": steps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks() -> (AllowedFunctions, RuleSet) {
        (AllowedFunctions::default(), RuleSet::Cluster)
    }

    #[test]
    fn statements_are_grouped_as_dsql_allows() {
        let (allowed, rules) = checks();
        let c = Checks {
            allowed: &allowed,
            rules,
        };
        let p = plan(
            "CREATE TABLE t (id int PRIMARY KEY, s text);\n\
             INSERT INTO t VALUES (1, 'a'), (2, 'b');\n\
             INSERT INTO t VALUES (3, 'c');\n\
             UPDATE t SET s = 'z' WHERE id = 1;\n\
             CREATE INDEX ASYNC t_s ON t (s);\n\
             -- dsql:batched 100\nUPDATE t SET s = 'y' WHERE s IS NULL;",
            &c,
        )
        .unwrap();
        let shape: Vec<(usize, &str)> = p
            .steps
            .iter()
            .map(|s| (s.transaction, s.kind.as_str()))
            .collect();
        assert_eq!(
            shape,
            [
                (1, "ddl"),
                (2, "dml"),
                (2, "dml"),
                (3, "dml"),
                (4, "ddl_job"),
                (5, "batched")
            ]
        );
        assert_eq!(p.steps[1].rows, Some(2));
        assert_eq!(p.steps[5].batch_size, Some(100));
        assert_eq!(p.checksum.len(), 64);
    }

    #[test]
    fn refusals_name_the_step() {
        let (allowed, rules) = checks();
        let c = Checks {
            allowed: &allowed,
            rules,
        };
        let e = plan(
            "CREATE TABLE t (id int PRIMARY KEY);\nCREATE INDEX i ON t (id);",
            &c,
        )
        .unwrap_err();
        assert!(
            e.starts_with("step 2 (line 2): DSQL rules refused the statement"),
            "{e}"
        );
        let e = plan("SELECT 1", &c).unwrap_err();
        assert_eq!(
            e,
            "step 1 (line 1): a SELECT changes nothing; a migration holds DDL and DML only"
        );
        let e = plan("-- dsql:batched\nCREATE TABLE t (id int PRIMARY KEY)", &c).unwrap_err();
        assert_eq!(
            e,
            "step 1 (line 2): `-- dsql:batched` applies to an UPDATE or a DELETE, not to CREATE TABLE"
        );
        assert_eq!(
            plan("-- nothing\n", &c).unwrap_err(),
            "the migration holds no SQL statement"
        );
    }
}
