//! The SQL policy: what may reach the cluster.
//!
//! Two checks stand between an agent's SQL and the database, both on a real
//! parser (sqlparser-dsql, which knows DSQL-only syntax):
//! - the guard (`guard`): safety in every mode, and read-only by default;
//! - the rule checker (`rules`): what DSQL itself refuses, plus the power's
//!   policy rules, applied to every statement that may write.
//!
//! Both run before a connection is taken: nothing they reject reaches the database.
//!
//! Supporting files: `functions` (the function allowlist and refused set, over the
//! generated catalog `functions.tsv`), `objects` (write-mode rules on system relations,
//! temporary objects, roles and grants), `names` (refused session settings),
//! `placeholders` (psycopg `%s` translation), `scan` (the lexical pre-pass that decodes
//! `U&` escapes and measures the input before any parser runs), `lint` (the `dsql_lint`
//! tool's JSON). Every entry point runs with a large stack (`on_big_stack`: on the
//! server's own threads, which are started with it, or else on long-lived helper threads),
//! so no input can overflow the caller's stack; a panic there is reported as a refusal.

use std::fmt;

mod converge;
mod functions;
#[cfg(test)]
mod fuzz;
mod guard;
mod lint;
mod names;
mod objects;
mod placeholders;
mod rules;
mod scan;
mod shape;
mod tenant;

pub use converge::{ColumnFact, Facts};
pub use functions::{AllowedFunctions, is_listed as is_known_function};
pub use scan::{Piece, split};
pub use shape::{Verb, WriteShape};
pub use tenant::{ScopeError, Scoped, Tenancy};

/// How a tool writes placeholders in its SQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholders {
    /// The reference tools: psycopg's `%s` (also `%b`, `%t`) and `%%` for a literal `%`,
    /// translated only when parameters are supplied.
    Psycopg,
    /// The power tools: PostgreSQL's own `$1`, `$2`, ...
    Numbered,
}

/// Whether the server was started with `--allow-writes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// What kind of statement the guard let through; the executor uses it to decide
/// how the statement runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementKind {
    /// SELECT (without side effects), VALUES, SHOW, EXPLAIN of a read.
    Read,
    /// INSERT, UPDATE, DELETE, and other data changes.
    Dml,
    /// Schema changes (CREATE, ALTER, DROP, GRANT, ...).
    Ddl,
    /// `SET TRANSACTION ...` that only tightens the transaction.
    TransactionSetting,
    /// Any other statement allowed in read-write mode (SET, RESET of a plain setting, ...).
    Other,
    /// DSQL's `CALL sys.wait_for_job('<job id>')`: must run outside a transaction block.
    WaitForJob,
}

/// A statement the guard accepted, ready for the extended protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The SQL with placeholders translated to `$n`.
    pub sql: String,
    pub kind: StatementKind,
    /// The command tag an agent sees (`SELECT`, `INSERT`, `CREATE TABLE`, ...).
    pub command: String,
    /// Number of `$n` parameters the statement takes.
    pub param_count: usize,
}

/// Why the guard refused a statement. `Display` starts with the reference
/// server's message (agents match on it) and ends with the specific reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// A write in read-only mode.
    WriteNotAllowed(String),
    /// Something dangerous in any mode, or SQL that cannot be parsed (fail closed).
    Injection(String),
    /// More than one statement, or caller transaction control.
    Bypass(String),
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::WriteNotAllowed(why) => write!(
                f,
                "Your MCP server does not allow write operations. To use write operations, change the MCP configuration per README.md ({why})"
            ),
            PolicyError::Injection(why) => {
                write!(f, "Your query contains risky injection patterns: {why}")
            }
            PolicyError::Bypass(why) => write!(
                f,
                "Query contains patterns that could bypass read-only transaction controls: {why}"
            ),
        }
    }
}

impl std::error::Error for PolicyError {}

/// Checks one caller statement. `params` is the number of parameters supplied
/// (`None` when the caller passed none, which for `Psycopg` leaves `%` alone).
///
/// Runs on a helper thread with a large stack, so that no input can overflow
/// the caller's stack (see `guard::MAX_TOKEN_RUN`).
pub fn check(
    sql: &str,
    params: Option<usize>,
    style: Placeholders,
    access: Access,
) -> Result<Checked, PolicyError> {
    check_with(sql, params, style, access, &AllowedFunctions::default())
}

/// Does once, ahead of the first tool call, what that call's check would otherwise pay
/// for: building the function catalog and the parser's first run. The server calls it
/// right after `initialize` (`main.rs`).
pub fn warm() {
    let _ = check(
        "SELECT lower('a')",
        None,
        Placeholders::Psycopg,
        Access::ReadOnly,
    );
}

/// `check`, with the user's `--allow-function` names.
pub fn check_with(
    sql: &str,
    params: Option<usize>,
    style: Placeholders,
    access: Access,
    allowed: &AllowedFunctions,
) -> Result<Checked, PolicyError> {
    let sql = sql.to_owned();
    let allowed = allowed.clone();
    on_big_stack(move || guard::check(&sql, params, style, access, &allowed)).unwrap_or_else(|| {
        Err(PolicyError::Injection(
            "SQL could not be checked (internal error in the checker)".into(),
        ))
    })
}

/// Rewrites a statement the guard accepted (`sql` is its `Checked::sql`) so that it reads
/// and changes only `tenant`'s rows (see `tenant`); the tenant is bound as parameter
/// `params.len() + 1`. Refuses what cannot be proven scoped.
pub fn scope_to_tenant(
    sql: &str,
    params: &[serde_json::Value],
    tenant: &str,
    tenancy: &Tenancy,
    map: std::sync::Arc<crate::catalog::tenant_map::Snapshot>,
    access: Access,
    allowed: &AllowedFunctions,
) -> Result<Scoped, ScopeError> {
    let (sql, params, tenant) = (sql.to_owned(), params.to_vec(), tenant.to_owned());
    let (tenancy, allowed) = (tenancy.clone(), allowed.clone());
    on_big_stack(move || {
        tenant::scope(&tenant::Request {
            sql: &sql,
            params: &params,
            tenant: &tenant,
            tenancy: &tenancy,
            map: &map,
            access,
            allowed: &allowed,
        })
    })
    .unwrap_or_else(|| {
        Err(ScopeError::Refused(
            "SQL could not be scoped (internal error in the tenant rewrite)".into(),
        ))
    })
}

/// Stack for the parser, the tree walks and the tree's drop. The deepest tree
/// the guard's token-run bound lets through needs under 16 MiB in a debug
/// build (tests/policy_pathological.rs); only the pages touched are committed.
pub const CHECK_STACK: usize = 64 * 1024 * 1024;

thread_local! {
    /// Whether this thread was started with `CHECK_STACK` of stack ([`big_stack_thread`]).
    static BIG_STACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Declares that the calling thread was started with at least [`CHECK_STACK`] bytes of
/// stack, so the policy runs on it directly. The server's runtime threads call it as they
/// start (`main.rs`); any other thread (a test's, a library user's) hands the work to the
/// helper threads below. Calling it on a thread with a smaller stack can only make a deep
/// statement overflow that stack (the process aborts); it never makes a check accept.
pub fn big_stack_thread() {
    BIG_STACK.set(true);
}

/// Runs `f` with `CHECK_STACK` bytes of stack and returns its result; `None` if `f`
/// panicked or no helper thread could start (callers fail closed). On a thread that has
/// that stack (`big_stack_thread`) it runs right here. Otherwise it runs on one of a few
/// long-lived helper threads and the caller waits: a new 64 MiB thread per call cost more
/// than the check itself (measured by the benchmark), and the hand-over to a helper and
/// back is two thread switches, which is why the server's own threads avoid it.
fn on_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    use std::sync::{Arc, Mutex, OnceLock, mpsc};
    if BIG_STACK.get() {
        // A panicking check loses only its own result, as on a helper thread.
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok();
    }
    type Job = Box<dyn FnOnce() + Send>;
    static WORKERS: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
    let workers = WORKERS.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let count = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
        let mut started = 0;
        for i in 0..count {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("sql-policy-{i}"))
                .stack_size(CHECK_STACK)
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // A panicking check loses only its own result (the caller fails
                            // closed); the worker goes on serving.
                            Ok(job) => {
                                drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)))
                            }
                            Err(_) => return,
                        }
                    }
                });
            started += usize::from(spawned.is_ok());
        }
        (started > 0).then_some(tx)
    });
    let (tx, rx) = mpsc::sync_channel(1);
    workers
        .as_ref()?
        .send(Box::new(move || {
            let _ = tx.send(f());
        }))
        .ok()?;
    rx.recv().ok()
}

/// Which DSQL rules the checker enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RuleSet {
    /// What the cluster refuses plus the power's policy (no foreign keys, no JSON columns).
    #[default]
    Power,
    /// Only what the cluster itself refuses (`--rules cluster`).
    Cluster,
}

/// Statements the rule checker refused; `Display` lists each diagnostic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleViolation {
    pub message: String,
}

impl fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RuleViolation {}

/// Checks the statements of one transaction against DSQL's rules: each
/// statement, and the per-transaction rules over the whole list. Pass the
/// guard's `Checked::sql` for each statement (placeholders already `$n`).
pub fn check_rules(statements: &[&str], rules: RuleSet) -> Result<(), RuleViolation> {
    let owned: Vec<String> = statements.iter().map(|s| (*s).to_owned()).collect();
    let found = on_big_stack(move || {
        let statements: Vec<&str> = owned.iter().map(String::as_str).collect();
        rules::problems(&statements, rules)
    })
    .unwrap_or_else(|| {
        vec![rules::Problem {
            statement: 0,
            rule: "parse_error".into(),
            line: 1,
            message: "SQL could not be checked (internal error in the checker).".into(),
            suggestion: "Simplify the statement and try again.".into(),
        }]
    });
    if found.is_empty() {
        Ok(())
    } else {
        Err(rules::violation(&found, statements.len()))
    }
}

/// The `dsql_lint` tool's result, in the reference's JSON shape:
/// `{"diagnostics": [{rule, line, message, suggestion, fix_result, statement_preview}],
/// "fixed_sql": null unless fix, "summary": {errors, warnings, fixed}}`.
/// (The 1,000,000-character limit is the tool layer's.)
pub fn lint(sql: &str, fix: bool) -> serde_json::Value {
    lint_checked(sql, fix, None)
}

/// `lint`, plus every statement `execute` would refuse under `rules` and `allowed` that
/// dsql-lint does not flag (caller transaction control, the power's rules, the guard's
/// write-mode refusals), each as an unfixable diagnostic after dsql-lint's: the
/// `dsql_lint` tool.
pub fn lint_as_execute(
    sql: &str,
    fix: bool,
    rules: RuleSet,
    allowed: &AllowedFunctions,
) -> serde_json::Value {
    lint_checked(sql, fix, Some((rules, allowed.clone())))
}

fn lint_checked(
    sql: &str,
    fix: bool,
    policy: Option<(RuleSet, AllowedFunctions)>,
) -> serde_json::Value {
    let owned = sql.to_owned();
    on_big_stack(move || {
        let policy = policy.as_ref().map(|(rules, allowed)| lint::WritePolicy {
            rules: *rules,
            allowed,
        });
        lint::lint(&owned, fix, policy)
    })
    .unwrap_or_else(|| {
        serde_json::json!({
            "diagnostics": [{
                "rule": "parse_error",
                "line": 1,
                "message": "SQL could not be linted (internal error in the linter).",
                "suggestion": "Simplify the statement and try again.",
                "fix_result": {"status": "unfixable"},
                "statement_preview": lint::preview(sql),
            }],
            "fixed_sql": null,
            "summary": {"errors": 1, "warnings": 0, "fixed": 0},
        })
    })
}

/// Rows an `INSERT … VALUES` writes, known before it runs; `None` for any other statement.
/// Pass a statement the guard accepted (`Checked::sql`).
pub fn values_rows(sql: &str) -> Option<usize> {
    let owned = sql.to_owned();
    on_big_stack(move || shape::values_rows(&owned)).flatten()
}

/// Whether a batched `UPDATE` converges: its `SET` makes its `WHERE` false for every row it
/// changes (see `converge`); `facts` has its parameters and, once read, the table's columns.
/// Pass a statement the guard accepted (`Checked::sql`).
pub fn converges(sql: &str, facts: Facts) -> Result<(), String> {
    let owned = sql.to_owned();
    on_big_stack(move || shape::converges(&owned, &facts))
        .unwrap_or_else(|| Err("SQL could not be read (internal error in the checker)".into()))
}

/// A one-table `UPDATE` / `DELETE` taken apart for a batched write (see `shape`), or why
/// it cannot be batched. Pass a statement the guard accepted (`Checked::sql`).
pub fn write_shape(sql: &str) -> Result<WriteShape, String> {
    let owned = sql.to_owned();
    on_big_stack(move || shape::write_shape(&owned))
        .unwrap_or_else(|| Err("SQL could not be read (internal error in the checker)".into()))
}
