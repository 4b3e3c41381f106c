//! Tenant isolation: rewrites a statement the guard accepted so that it sees and changes only
//! the bound tenant's rows, or refuses it.
//!
//! DSQL has no row-level security, so the server is the enforcement point. This runs after
//! the guard and the rule checker, on the same parse (sqlparser-dsql), and what it prints is
//! what the database runs:
//! - every reference to a relation that has the tenant column becomes
//!   `(SELECT * FROM "schema"."table" WHERE "tenant_id" = $N OFFSET 0) AS <alias>`, wherever it
//!   stands (FROM, any JOIN, subqueries in any clause, CTEs, LATERAL, set operations, `TABLE t`,
//!   `INSERT … SELECT` sources, `UPDATE … FROM`, `DELETE … USING`). `$N` is one past the
//!   caller's parameters; the tenant value is bound, never spliced. `OFFSET 0` is a fence:
//!   PostgreSQL neither pulls the subquery up nor pushes the caller's predicates into it, so no
//!   caller expression (a cast that fails and quotes the value, say) is ever evaluated on
//!   another tenant's row. Its cost: outer predicates and join keys cannot use indexes through
//!   it (README, "Tenant isolation").
//! - writes: `INSERT` names its columns and leaves the tenant column out (the server adds it)
//!   or sets it to the bound value; `UPDATE`/`DELETE` get `"t"."tenant_id" = $N AND (…)` first
//!   and may not assign the column; `ON CONFLICT DO UPDATE` gets the same predicate, so it
//!   cannot reach another tenant's row. Writes to shared tables and every other statement kind
//!   (DDL, SET, …) are refused.
//! - names resolve as PostgreSQL resolves them (folding, quotes, schema qualification, the
//!   session's search path from the catalog), and a CTE name shadows a table where it is
//!   visible. A relation without the column is refused unless it is a `--shared-table`;
//!   catalog relations that expose row values (`pg_stat*`, `pg_statistic*`) are refused.
//!
//! Then the printed statement is parsed again, passed through the guard again, and walked
//! once more by a verifier that proves every tenant relation sits inside a fence (or is a
//! write target carrying the predicate); anything it cannot prove is refused (fail closed).

use std::ops::ControlFlow;

use serde_json::Value as Json;
use sqlparser::ast::{
    AssignmentTarget, BinaryOperator, Expr, FromTable, Ident, ObjectName, OnConflictAction,
    OnInsert, Query, SetExpr, Statement, TableFactor, TableObject, Value, Visit, VisitMut, Visitor,
    VisitorMut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::functions::{self, AllowedFunctions, Site, Verdict};
use super::guard::{self, fold};
use super::{Access, Placeholders};
use crate::catalog::tenant_map::Snapshot;

/// `--tenant-column` and `--shared-table`, resolved once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenancy {
    /// The tenant column, as stored.
    pub column: String,
    /// Shared tables: (schema, table) as stored (`public` when unqualified).
    pub shared: Vec<(String, String)>,
}

impl Default for Tenancy {
    fn default() -> Tenancy {
        Tenancy {
            column: "tenant_id".into(),
            shared: Vec::new(),
        }
    }
}

impl Tenancy {
    /// Reads the flags: a shared table is `name` or `schema.name`, each part folded to lower
    /// case unless double-quoted.
    pub fn new(column: &str, shared: &[String]) -> Result<Tenancy, String> {
        if column.is_empty() || column.contains('\0') || column.len() > 63 {
            return Err(format!(
                "--tenant-column must be a column name of 1 to 63 bytes without NUL, got {column:?}"
            ));
        }
        let mut out = Vec::new();
        for s in shared {
            let name = parse_name(s).ok_or_else(|| {
                format!("--shared-table {s:?} is not a table name (NAME or SCHEMA.NAME)")
            })?;
            match name.as_slice() {
                [t] => out.push(("public".to_owned(), t.clone())),
                [sch, t] => out.push((sch.clone(), t.clone())),
                _ => {
                    return Err(format!(
                        "--shared-table {s:?} is not a table name (NAME or SCHEMA.NAME)"
                    ));
                }
            }
        }
        Ok(Tenancy {
            column: column.to_owned(),
            shared: out,
        })
    }

    fn is_shared(&self, schema: &str, table: &str) -> bool {
        self.shared.iter().any(|(s, t)| s == schema && t == table)
    }
}

fn parse_name(s: &str) -> Option<Vec<String>> {
    let name = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(s)
        .ok()?
        .parse_object_name(false)
        .ok()?;
    name.0.iter().map(|p| p.as_ident().map(fold)).collect()
}

/// Why a statement was not scoped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScopeError {
    /// Refused: the message says what and why.
    Refused(String),
    /// The statement names a relation the map does not know, or knows without the column:
    /// re-read the map once and try again; refuse with this message if it still fails.
    Stale(String),
}

/// A statement rewritten for one tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scoped {
    /// The statement to run; it takes `param_count` parameters, the last one the tenant.
    pub sql: String,
    pub param_count: usize,
}

/// What one scoping needs.
pub struct Request<'a> {
    /// The guard's `Checked::sql` (placeholders already `$n`).
    pub sql: &'a str,
    /// The caller's parameters (the tenant is bound after them).
    pub params: &'a [Json],
    pub tenant: &'a str,
    pub tenancy: &'a Tenancy,
    pub map: &'a Snapshot,
    pub access: Access,
    pub allowed: &'a AllowedFunctions,
}

/// Catalog relations that expose row values (statistics, other sessions' SQL text).
fn exposes_rows(schema: &str, name: &str) -> bool {
    schema == "pg_catalog" && (name.starts_with("pg_stat") || name == "pg_largeobject")
}

fn is_catalog(schema: &str) -> bool {
    schema == "pg_catalog" || schema == "information_schema"
}

pub(crate) fn scope(req: &Request<'_>) -> Result<Scoped, ScopeError> {
    let refuse = |m: String| ScopeError::Refused(m);
    let mut stmts = guard::parse_text(req.sql).map_err(refuse)?;
    if stmts.len() != 1 {
        return Err(refuse("Exactly one SQL statement is allowed".into()));
    }
    let n = req.params.len() + 1;
    let stmt = &mut stmts[0];
    let top_ok = |s: &Statement| {
        matches!(
            s,
            Statement::Query(_)
                | Statement::Insert(_)
                | Statement::Update(_)
                | Statement::Delete(_)
        )
    };
    match &*stmt {
        s if top_ok(s) => {}
        Statement::Explain { statement, .. } if top_ok(statement) => {}
        Statement::ShowVariable { .. } | Statement::ShowVariables { .. } => {
            // Settings only; no rows of any table. Runs as given, with the tenant unbound.
            return Ok(Scoped {
                sql: req.sql.to_owned(),
                param_count: req.params.len(),
            });
        }
        s => {
            return Err(refuse(format!(
                "statement type not allowed in tenant mode: {} (a tenant-bound call may read and change its own rows only; DDL and session changes are refused)",
                guard::command_tag(s)
            )));
        }
    }
    let mut rw = Rewriter {
        req,
        n,
        scopes: Scopes::default(),
        targets: Vec::new(),
        error: None,
        used: false,
    };
    let _ = stmt.visit(&mut rw);
    if let Some(e) = rw.error {
        return Err(e);
    }
    let sql = stmt.to_string();
    drop(stmts);
    // A statement that reads only shared or catalog relations binds no tenant parameter.
    let param_count = if rw.used { n } else { req.params.len() };
    verify(req, &sql, n, param_count)?;
    Ok(Scoped { sql, param_count })
}

/// The CTE names visible at each point of a walk (a CTE shadows a table where visible).
#[derive(Default)]
struct Scopes {
    frames: Vec<Frame>,
}

struct Frame {
    query: *const Query,
    names: Vec<String>,
    ctes: Vec<*const Query>,
    recursive: bool,
    /// Which CTE of this WITH is being walked (`None`: the body, where all are visible).
    defining: Option<usize>,
}

impl Scopes {
    fn enter(&mut self, q: &Query) {
        let p = q as *const Query;
        if let Some(f) = self.frames.last_mut()
            && let Some(i) = f.ctes.iter().position(|c| *c == p)
        {
            f.defining = Some(i);
        }
        let (names, ctes, recursive) = match &q.with {
            Some(w) => (
                w.cte_tables.iter().map(|c| fold(&c.alias.name)).collect(),
                w.cte_tables
                    .iter()
                    .map(|c| &*c.query as *const Query)
                    .collect(),
                w.recursive,
            ),
            None => (Vec::new(), Vec::new(), false),
        };
        self.frames.push(Frame {
            query: p,
            names,
            ctes,
            recursive,
            defining: None,
        });
    }

    fn leave(&mut self, q: &Query) {
        let p = q as *const Query;
        if self.frames.last().is_some_and(|f| f.query == p) {
            self.frames.pop();
        }
        if let Some(f) = self.frames.last_mut()
            && f.ctes.contains(&p)
        {
            f.defining = None;
        }
    }

    fn is_cte(&self, name: &str) -> bool {
        self.frames.iter().rev().any(|f| {
            let visible = match f.defining {
                Some(i) if !f.recursive => &f.names[..i],
                _ => &f.names[..],
            };
            visible.iter().any(|n| n == name)
        })
    }
}

/// What a relation reference is, for the rewriter and the verifier alike.
enum Relation {
    /// A CTE, or a catalog relation that shows structure only, or a shared table: as written.
    AsWritten,
    /// A relation with the tenant column: (schema, table, column type).
    Tenant(String, String, String),
}

fn classify(
    req: &Request<'_>,
    scopes: &Scopes,
    name: &ObjectName,
    write: bool,
) -> Result<Relation, ScopeError> {
    let parts: Option<Vec<String>> = name.0.iter().map(|p| p.as_ident().map(fold)).collect();
    let parts = parts.ok_or_else(|| {
        ScopeError::Refused(format!("relation name could not be resolved: {name}"))
    })?;
    let (schema, table) = match parts.as_slice() {
        [t] if !write && scopes.is_cte(t) => return Ok(Relation::AsWritten),
        [t] => (None, t.clone()),
        [s, t] => (Some(s.clone()), t.clone()),
        _ => {
            return Err(ScopeError::Refused(format!(
                "relation `{name}` names a database; in tenant mode name relations as table or schema.table"
            )));
        }
    };
    let Some((schema, ty)) = req.map.resolve(schema.as_deref(), &table) else {
        return Err(ScopeError::Stale(format!(
            "relation `{name}` does not exist (or this role cannot see it)"
        )));
    };
    let col = &req.tenancy.column;
    if exposes_rows(&schema, &table) {
        return Err(ScopeError::Refused(format!(
            "catalog relation `{schema}.{table}` exposes row values and is refused in tenant mode (table structure stays readable through get_schema, describe_table and list_tables)"
        )));
    }
    match ty {
        Some(ty) => Ok(Relation::Tenant(schema, table, ty.to_owned())),
        None if write => Err(ScopeError::Refused(
            if req.tenancy.is_shared(&schema, &table) || is_catalog(&schema) {
                format!("writes to shared table `{table}` are refused in tenant mode")
            } else {
                format!("table `{table}` has no {col} column and is not a shared table")
            },
        )),
        None if is_catalog(&schema) || req.tenancy.is_shared(&schema, &table) => {
            Ok(Relation::AsWritten)
        }
        None => Err(ScopeError::Stale(format!(
            "table `{table}` has no {col} column and is not a shared table"
        ))),
    }
}

/// `"name"` with inner quotes doubled.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn parse_expr(text: &str) -> Result<Expr, ScopeError> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| ScopeError::Refused(format!("statement could not be scoped: {e}")))
}

fn parse_query(text: &str) -> Result<Query, ScopeError> {
    let mut s = guard::parse_text(text)
        .map_err(|e| ScopeError::Refused(format!("statement could not be scoped: {e}")))?;
    match s.pop() {
        Some(Statement::Query(q)) => Ok(*q),
        _ => Err(ScopeError::Refused("statement could not be scoped".into())),
    }
}

/// The fenced derived table for one reference, with the reference's alias (or its name).
fn fence(
    schema: &str,
    table: &str,
    column: &str,
    n: usize,
    alias_name: &Ident,
    alias: Option<&sqlparser::ast::TableAlias>,
) -> Result<TableFactor, ScopeError> {
    let text = format!(
        "SELECT 1 FROM (SELECT * FROM {}.{} WHERE {} = ${n} OFFSET 0) AS {}",
        quote(schema),
        quote(table),
        quote(column),
        alias_name
    );
    let q = parse_query(&text)?;
    let SetExpr::Select(mut sel) = *q.body else {
        return Err(ScopeError::Refused("statement could not be scoped".into()));
    };
    let mut tf = sel.from.remove(0).relation;
    if let (TableFactor::Derived { alias: a, .. }, Some(orig)) = (&mut tf, alias) {
        *a = Some(orig.clone());
    }
    Ok(tf)
}

fn is_fence<'q>(q: &'q Query, column: &str, n: usize) -> Option<&'q TableFactor> {
    let SetExpr::Select(s) = &*q.body else {
        return None;
    };
    let [only] = s.from.as_slice() else {
        return None;
    };
    let rel @ TableFactor::Table {
        alias: None,
        args: None,
        ..
    } = &only.relation
    else {
        return None;
    };
    // The whole subquery, printed, is exactly the fence the rewriter writes.
    let want = format!(
        "SELECT * FROM {rel} WHERE {} = ${n} OFFSET 0",
        quote(column)
    );
    (q.to_string() == want).then_some(rel)
}

fn and_first(pred: Expr, rest: Option<Expr>) -> Expr {
    match rest {
        None => pred,
        Some(r) => Expr::BinaryOp {
            left: Box::new(pred),
            op: BinaryOperator::And,
            right: Box::new(Expr::Nested(Box::new(r))),
        },
    }
}

fn last_ident(name: &ObjectName) -> Option<Ident> {
    name.0.last().and_then(|p| p.as_ident()).cloned()
}

struct Rewriter<'a, 'b> {
    req: &'a Request<'b>,
    n: usize,
    scopes: Scopes,
    /// Write targets (UPDATE, DELETE): scoped by predicate, not by a fence.
    targets: Vec<*const TableFactor>,
    error: Option<ScopeError>,
    /// Whether the tenant parameter was written anywhere.
    used: bool,
}

impl Rewriter<'_, '_> {
    fn fail(&mut self, e: ScopeError) -> ControlFlow<()> {
        self.error.get_or_insert(e);
        ControlFlow::Break(())
    }

    fn placeholder(&mut self) -> String {
        self.used = true;
        format!("${}", self.n)
    }

    /// Whether an INSERT value for the tenant column is the bound tenant.
    fn is_tenant_value(&self, e: &Expr) -> bool {
        let Expr::Value(v) = e else { return false };
        match &v.value {
            Value::SingleQuotedString(s) => s == self.req.tenant,
            Value::Number(s, _) => s == self.req.tenant,
            Value::Placeholder(p) => p
                .strip_prefix('$')
                .and_then(|d| d.parse::<usize>().ok())
                .and_then(|k| self.req.params.get(k.checked_sub(1)?))
                .is_some_and(|j| match j {
                    Json::String(s) => s == self.req.tenant,
                    Json::Number(x) => x.to_string() == self.req.tenant,
                    _ => false,
                }),
            _ => false,
        }
    }

    /// A write target: must be a tenant table; returns the reference name for predicates.
    fn target(
        &self,
        name: &ObjectName,
        alias: Option<&Ident>,
    ) -> Result<(Ident, String), ScopeError> {
        match classify(self.req, &self.scopes, name, true)? {
            Relation::Tenant(_, _, ty) => {
                let r = alias.cloned().or_else(|| last_ident(name)).ok_or_else(|| {
                    ScopeError::Refused(format!("relation name could not be resolved: {name}"))
                })?;
                Ok((r, ty))
            }
            Relation::AsWritten => Err(ScopeError::Refused(format!(
                "writes to `{name}` are refused in tenant mode"
            ))),
        }
    }

    fn predicate(&mut self, r: &Ident) -> Result<Expr, ScopeError> {
        let p = self.placeholder();
        parse_expr(&format!("{r}.{} = {p}", quote(&self.req.tenancy.column)))
    }

    fn assigns_tenant(&self, a: &[sqlparser::ast::Assignment]) -> bool {
        let col = &self.req.tenancy.column;
        let hits = |n: &ObjectName| last_ident(n).is_some_and(|i| fold(&i) == *col);
        a.iter().any(|a| match &a.target {
            AssignmentTarget::ColumnName(n) => hits(n),
            AssignmentTarget::Tuple(ns) => ns.iter().any(hits),
        })
    }

    fn dml(&mut self, stmt: &mut Statement) -> Result<(), ScopeError> {
        let col = self.req.tenancy.column.clone();
        let no_assign = || {
            ScopeError::Refused(format!(
                "the {col} column cannot be assigned in tenant mode (the server keeps every row in its tenant)"
            ))
        };
        match stmt {
            Statement::Insert(ins) => {
                let TableObject::TableName(name) = &ins.table else {
                    return Err(ScopeError::Refused(
                        "INSERT into a table function is refused in tenant mode".into(),
                    ));
                };
                let alias = ins.table_alias.as_ref().map(|a| a.alias.clone());
                let (r, ty) = self.target(name, alias.as_ref())?;
                if !ins.assignments.is_empty() || ins.partitioned.is_some() {
                    return Err(ScopeError::Refused(
                        "this INSERT form is refused in tenant mode".into(),
                    ));
                }
                if ins.columns.is_empty() {
                    return Err(ScopeError::Refused(format!(
                        "INSERT in tenant mode must name its columns (leave {col} out: the server sets it)"
                    )));
                }
                let pos = ins
                    .columns
                    .iter()
                    .position(|c| last_ident(c).is_some_and(|i| fold(&i) == col));
                let Some(source) = ins.source.as_mut() else {
                    return Err(ScopeError::Refused(
                        "INSERT without a source is refused in tenant mode".into(),
                    ));
                };
                let values = matches!(&*source.body, SetExpr::Values(_))
                    && source.with.is_none()
                    && source.order_by.is_none()
                    && source.limit_clause.is_none();
                if values {
                    let SetExpr::Values(v) = &mut *source.body else {
                        unreachable!()
                    };
                    for row in &mut v.rows {
                        match pos {
                            Some(p) => {
                                let ok =
                                    row.content.get(p).is_some_and(|e| self.is_tenant_value(e));
                                if !ok {
                                    return Err(ScopeError::Refused(format!(
                                        "INSERT sets {col} to a value other than the bound tenant"
                                    )));
                                }
                                row.content[p] = parse_expr(&self.placeholder())?;
                            }
                            None => row.content.push(parse_expr(&self.placeholder())?),
                        }
                    }
                } else {
                    if pos.is_some() {
                        return Err(ScopeError::Refused(format!(
                            "INSERT … SELECT in tenant mode must leave {col} out (the server sets it)"
                        )));
                    }
                    let text = format!(
                        "SELECT *, CAST({} AS {ty}) FROM ({source}) AS \"tenant_source\"",
                        self.placeholder()
                    );
                    **source = parse_query(&text)?;
                }
                if pos.is_none() {
                    ins.columns
                        .push(ObjectName::from(vec![Ident::with_quote('"', col.clone())]));
                }
                match &mut ins.on {
                    None => {}
                    Some(OnInsert::OnConflict(oc)) => {
                        if let OnConflictAction::DoUpdate(du) = &mut oc.action {
                            if self.assigns_tenant(&du.assignments) {
                                return Err(no_assign());
                            }
                            du.selection =
                                Some(and_first(self.predicate(&r)?, du.selection.take()));
                        }
                    }
                    Some(_) => {
                        return Err(ScopeError::Refused(
                            "this ON clause is refused in tenant mode".into(),
                        ));
                    }
                }
            }
            Statement::Update(up) => {
                if !up.table.joins.is_empty() || !up.order_by.is_empty() || up.limit.is_some() {
                    return Err(ScopeError::Refused(
                        "this UPDATE form is refused in tenant mode".into(),
                    ));
                }
                let TableFactor::Table {
                    name,
                    alias,
                    args: None,
                    ..
                } = &up.table.relation
                else {
                    return Err(ScopeError::Refused(
                        "UPDATE of this target is refused in tenant mode".into(),
                    ));
                };
                let (r, _) = self.target(name, alias.as_ref().map(|a| &a.name))?;
                if self.assigns_tenant(&up.assignments) {
                    return Err(no_assign());
                }
                self.targets.push(&up.table.relation as *const TableFactor);
                up.selection = Some(and_first(self.predicate(&r)?, up.selection.take()));
            }
            Statement::Delete(d) => {
                if !d.tables.is_empty() || !d.order_by.is_empty() || d.limit.is_some() {
                    return Err(ScopeError::Refused(
                        "this DELETE form is refused in tenant mode".into(),
                    ));
                }
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &d.from;
                let [only] = from.as_slice() else {
                    return Err(ScopeError::Refused(
                        "DELETE names one table in tenant mode".into(),
                    ));
                };
                let TableFactor::Table {
                    name,
                    alias,
                    args: None,
                    ..
                } = &only.relation
                else {
                    return Err(ScopeError::Refused(
                        "DELETE from this target is refused in tenant mode".into(),
                    ));
                };
                if !only.joins.is_empty() {
                    return Err(ScopeError::Refused(
                        "DELETE names one table in tenant mode".into(),
                    ));
                }
                let (r, _) = self.target(name, alias.as_ref().map(|a| &a.name))?;
                self.targets.push(&only.relation as *const TableFactor);
                d.selection = Some(and_first(self.predicate(&r)?, d.selection.take()));
            }
            Statement::Merge(_) => {
                return Err(ScopeError::Refused(
                    "MERGE is refused in tenant mode".into(),
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

impl VisitorMut for Rewriter<'_, '_> {
    type Break = ();

    fn pre_visit_statement(&mut self, stmt: &mut Statement) -> ControlFlow<()> {
        match self.dml(stmt) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => self.fail(e),
        }
    }

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        if !q.locks.is_empty() {
            return self.fail(ScopeError::Refused(
                "SELECT … FOR UPDATE/SHARE is refused in tenant mode".into(),
            ));
        }
        self.scopes.enter(q);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        self.scopes.leave(q);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        // Functions: the read allowlist in every mode (a user function's body is opaque and
        // could read any tenant's rows).
        if let Expr::Function(f) = e {
            let parts: Option<Vec<String>> =
                f.name.0.iter().map(|p| p.as_ident().map(fold)).collect();
            let verdict = match parts {
                Some(p) => functions::judge(&p, Site::Call, Access::ReadOnly, self.req.allowed),
                None => Verdict::Refuse(format!("function name could not be resolved: {}", f.name)),
            };
            match verdict {
                Verdict::Allow => {}
                Verdict::WriteOnly(why) | Verdict::Refuse(why) => {
                    return self.fail(ScopeError::Refused(format!(
                        "in tenant mode only built-in read functions may be called: {why}"
                    )));
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, tf: &mut TableFactor) -> ControlFlow<()> {
        if self.targets.contains(&(tf as *const TableFactor)) {
            return ControlFlow::Continue(());
        }
        let replacement = match tf {
            TableFactor::Table {
                name,
                alias,
                args: None,
                with_hints,
                version,
                partitions,
                json_path,
                sample,
                index_hints,
                with_ordinality: _,
            } => {
                if !with_hints.is_empty()
                    || version.is_some()
                    || !partitions.is_empty()
                    || json_path.is_some()
                    || sample.is_some()
                    || !index_hints.is_empty()
                {
                    return self.fail(ScopeError::Refused(format!(
                        "this form of table reference is refused in tenant mode: {name}"
                    )));
                }
                match classify(self.req, &self.scopes, name, false) {
                    Err(e) => return self.fail(e),
                    Ok(Relation::AsWritten) => None,
                    Ok(Relation::Tenant(s, t, _)) => {
                        let Some(id) = last_ident(name) else {
                            return self.fail(ScopeError::Refused(format!(
                                "relation name could not be resolved: {name}"
                            )));
                        };
                        let alias_name = alias.as_ref().map(|a| a.name.clone()).unwrap_or(id);
                        self.used = true;
                        match fence(
                            &s,
                            &t,
                            &self.req.tenancy.column,
                            self.n,
                            &alias_name,
                            alias.as_ref(),
                        ) {
                            Ok(f) => Some(f),
                            Err(e) => return self.fail(e),
                        }
                    }
                }
            }
            TableFactor::Table { name, .. } | TableFactor::Function { name, .. } => {
                // `FROM f(...)`: the read allowlist, as for calls in expressions.
                let parts: Option<Vec<String>> =
                    name.0.iter().map(|p| p.as_ident().map(fold)).collect();
                let allowed = parts.is_some_and(|p| {
                    functions::judge(&p, Site::Call, Access::ReadOnly, self.req.allowed)
                        == Verdict::Allow
                });
                if !allowed {
                    return self.fail(ScopeError::Refused(format!(
                        "in tenant mode only built-in read functions may be called: {name}"
                    )));
                }
                None
            }
            TableFactor::Derived { .. }
            | TableFactor::NestedJoin { .. }
            | TableFactor::UNNEST { .. }
            | TableFactor::TableFunction { .. } => None,
            other => {
                return self.fail(ScopeError::Refused(format!(
                    "this form of table reference is refused in tenant mode: {other}"
                )));
            }
        };
        if let Some(r) = replacement {
            *tf = r;
        }
        ControlFlow::Continue(())
    }
}

/// Re-reads the printed statement: the guard must accept it, and every relation with the
/// tenant column must be the one relation of a fence, or a write target whose predicate
/// starts with the tenant test.
fn verify(req: &Request<'_>, sql: &str, n: usize, params: usize) -> Result<(), ScopeError> {
    let fail = |why: String| {
        ScopeError::Refused(format!(
            "statement could not be proven scoped to the tenant ({why}); it was not run"
        ))
    };
    guard::check(
        sql,
        Some(params),
        Placeholders::Numbered,
        req.access,
        req.allowed,
    )
    .map_err(|e| fail(e.to_string()))?;
    let stmts = guard::parse_text(sql).map_err(fail)?;
    let mut v = Verifier {
        req,
        n,
        scopes: Scopes::default(),
        fenced: Vec::new(),
        targets: Vec::new(),
        error: None,
    };
    for s in &stmts {
        let _ = s.visit(&mut v);
    }
    match v.error {
        Some(why) => Err(fail(why)),
        None => Ok(()),
    }
}

struct Verifier<'a, 'b> {
    req: &'a Request<'b>,
    n: usize,
    scopes: Scopes,
    fenced: Vec<*const TableFactor>,
    targets: Vec<*const TableFactor>,
    error: Option<String>,
}

impl Verifier<'_, '_> {
    fn has_predicate(&self, sel: Option<&Expr>, r: Option<&Ident>) -> bool {
        let (Some(sel), Some(r)) = (sel, r) else {
            return false;
        };
        let want = format!("{r}.{} = ${}", quote(&self.req.tenancy.column), self.n);
        match sel {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                ..
            } => left.to_string() == want,
            e => e.to_string() == want,
        }
    }
}

impl Visitor for Verifier<'_, '_> {
    type Break = ();

    fn pre_visit_statement(&mut self, stmt: &Statement) -> ControlFlow<()> {
        let ok = match stmt {
            Statement::Update(up) => match &up.table.relation {
                TableFactor::Table { name, alias, .. } => {
                    self.targets.push(&up.table.relation as *const TableFactor);
                    let r = alias
                        .as_ref()
                        .map(|a| a.name.clone())
                        .or_else(|| last_ident(name));
                    self.has_predicate(up.selection.as_ref(), r.as_ref())
                }
                _ => false,
            },
            Statement::Delete(d) => {
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &d.from;
                match from.first().map(|t| &t.relation) {
                    Some(rel @ TableFactor::Table { name, alias, .. }) => {
                        self.targets.push(rel as *const TableFactor);
                        let r = alias
                            .as_ref()
                            .map(|a| a.name.clone())
                            .or_else(|| last_ident(name));
                        self.has_predicate(d.selection.as_ref(), r.as_ref())
                    }
                    _ => false,
                }
            }
            Statement::Insert(ins) => ins
                .columns
                .iter()
                .any(|c| last_ident(c).is_some_and(|i| fold(&i) == self.req.tenancy.column)),
            _ => true,
        };
        if !ok {
            self.error
                .get_or_insert_with(|| "a write target lacks the tenant predicate".into());
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        self.scopes.enter(q);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        self.scopes.leave(q);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        match tf {
            TableFactor::Derived { subquery, .. } => {
                if let Some(inner) = is_fence(subquery, &self.req.tenancy.column, self.n) {
                    self.fenced.push(inner as *const TableFactor);
                }
            }
            TableFactor::Table {
                name, args: None, ..
            } => {
                let p = tf as *const TableFactor;
                if self.fenced.contains(&p) || self.targets.contains(&p) {
                    return ControlFlow::Continue(());
                }
                match classify(self.req, &self.scopes, name, false) {
                    Ok(Relation::AsWritten) => {}
                    Ok(Relation::Tenant(..)) => {
                        self.error.get_or_insert_with(|| {
                            format!("`{name}` is read outside a tenant fence")
                        });
                        return ControlFlow::Break(());
                    }
                    Err(ScopeError::Refused(m) | ScopeError::Stale(m)) => {
                        self.error.get_or_insert(m);
                        return ControlFlow::Break(());
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> Snapshot {
        let mut s = Snapshot::default();
        for (sch, t, ty) in [
            ("public", "orders", Some("text")),
            ("public", "customers", Some("text")),
            ("public", "countries", None),
            ("public", "audit_log", None),
            ("sales", "Items", Some("text")),
            ("pg_catalog", "pg_class", None),
            ("pg_catalog", "pg_stats", None),
        ] {
            s.relations
                .insert((sch.into(), t.into()), ty.map(str::to_owned));
        }
        s.search_path = vec!["pg_catalog".into(), "public".into()];
        s
    }

    fn run(sql: &str, params: &[Json], access: Access) -> Result<String, ScopeError> {
        let tenancy = Tenancy::new("tenant_id", &["countries".into()]).unwrap();
        let map = map();
        let allowed = AllowedFunctions::default();
        scope(&Request {
            sql,
            params,
            tenant: "acme",
            tenancy: &tenancy,
            map: &map,
            access,
            allowed: &allowed,
        })
        .map(|s| s.sql)
    }

    fn ro(sql: &str) -> String {
        run(sql, &[], Access::ReadOnly).unwrap()
    }

    fn rw(sql: &str) -> Result<String, ScopeError> {
        run(sql, &[], Access::ReadWrite)
    }

    const F: &str = "(SELECT * FROM \"public\".\"orders\" WHERE \"tenant_id\" = $1 OFFSET 0)";

    #[test]
    fn reads_are_fenced_with_the_alias() {
        assert_eq!(
            ro("SELECT id FROM orders"),
            format!("SELECT id FROM {F} AS orders")
        );
        assert_eq!(
            ro("select o.id from Orders o"),
            format!("SELECT o.id FROM {F} o")
        );
        assert_eq!(
            ro("SELECT * FROM public.orders AS o LEFT JOIN countries c ON c.code = o.country"),
            format!("SELECT * FROM {F} AS o LEFT JOIN countries c ON c.code = o.country")
        );
        assert_eq!(
            ro("SELECT * FROM sales.\"Items\""),
            "SELECT * FROM (SELECT * FROM \"sales\".\"Items\" WHERE \"tenant_id\" = $1 OFFSET 0) AS \"Items\""
        );
        assert_eq!(ro("TABLE orders"), format!("SELECT * FROM {F} AS orders"));
    }

    #[test]
    fn subqueries_ctes_and_set_operations() {
        assert_eq!(
            ro("SELECT 1 WHERE EXISTS (SELECT 1 FROM orders)"),
            format!("SELECT 1 WHERE EXISTS (SELECT 1 FROM {F} AS orders)")
        );
        // A CTE name shadows the table in the body, not inside its own (non-recursive) body.
        assert_eq!(
            ro("WITH orders AS (SELECT id FROM orders) SELECT id FROM orders"),
            format!("WITH orders AS (SELECT id FROM {F} AS orders) SELECT id FROM orders")
        );
        assert_eq!(
            ro("SELECT id FROM orders UNION SELECT id FROM customers"),
            format!(
                "SELECT id FROM {F} AS orders UNION SELECT id FROM (SELECT * FROM \"public\".\"customers\" WHERE \"tenant_id\" = $1 OFFSET 0) AS customers"
            )
        );
        assert_eq!(
            run(
                "SELECT * FROM orders WHERE id = $1",
                &[Json::from(3)],
                Access::ReadOnly
            )
            .unwrap(),
            "SELECT * FROM (SELECT * FROM \"public\".\"orders\" WHERE \"tenant_id\" = $2 OFFSET 0) AS orders WHERE id = $1"
        );
    }

    #[test]
    fn refusals_name_what_and_why() {
        assert_eq!(
            run("SELECT * FROM audit_log", &[], Access::ReadOnly),
            Err(ScopeError::Stale(
                "table `audit_log` has no tenant_id column and is not a shared table".into()
            ))
        );
        assert!(
            matches!(run("SELECT * FROM pg_stats", &[], Access::ReadOnly), Err(ScopeError::Refused(m)) if m.contains("exposes row values"))
        );
        assert!(matches!(
            run("SELECT * FROM nowhere", &[], Access::ReadOnly),
            Err(ScopeError::Stale(_))
        ));
        assert!(
            matches!(rw("CREATE TABLE x (a int)"), Err(ScopeError::Refused(m)) if m.starts_with("statement type not allowed in tenant mode: CREATE TABLE"))
        );
        assert!(
            matches!(rw("INSERT INTO countries (code) VALUES ('x')"), Err(ScopeError::Refused(m)) if m == "writes to shared table `countries` are refused in tenant mode")
        );
        assert!(
            matches!(rw("UPDATE orders SET tenant_id = 'other'"), Err(ScopeError::Refused(m)) if m.contains("cannot be assigned"))
        );
        assert!(
            matches!(rw("INSERT INTO orders (id, tenant_id) VALUES (1, 'other')"), Err(ScopeError::Refused(m)) if m.contains("other than the bound tenant"))
        );
        assert!(
            matches!(rw("INSERT INTO orders VALUES (1)"), Err(ScopeError::Refused(m)) if m.contains("must name its columns"))
        );
    }

    #[test]
    fn writes_carry_the_tenant() {
        assert_eq!(
            rw("INSERT INTO orders (id) VALUES (1), (2)").unwrap(),
            "INSERT INTO orders (id, \"tenant_id\") VALUES (1, $1), (2, $1)"
        );
        assert_eq!(
            rw("INSERT INTO orders (id, tenant_id) VALUES (1, 'acme')").unwrap(),
            "INSERT INTO orders (id, tenant_id) VALUES (1, $1)"
        );
        assert_eq!(
            rw("UPDATE orders SET total = 0 WHERE id = 1 OR true").unwrap(),
            "UPDATE orders SET total = 0 WHERE orders.\"tenant_id\" = $1 AND (id = 1 OR true)"
        );
        assert_eq!(
            rw("DELETE FROM orders o USING customers c WHERE c.id = o.customer").unwrap(),
            "DELETE FROM orders o USING (SELECT * FROM \"public\".\"customers\" WHERE \"tenant_id\" = $1 OFFSET 0) c WHERE o.\"tenant_id\" = $1 AND (c.id = o.customer)"
        );
        assert_eq!(
            rw("INSERT INTO orders (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET total = 1")
                .unwrap(),
            "INSERT INTO orders (id, \"tenant_id\") VALUES (1, $1) ON CONFLICT(id) DO UPDATE SET total = 1 WHERE orders.\"tenant_id\" = $1"
        );
        assert_eq!(
            rw("INSERT INTO orders (id) SELECT id FROM customers").unwrap(),
            "INSERT INTO orders (id, \"tenant_id\") SELECT *, CAST($1 AS TEXT) FROM (SELECT id FROM (SELECT * FROM \"public\".\"customers\" WHERE \"tenant_id\" = $1 OFFSET 0) AS customers) AS \"tenant_source\""
        );
    }
}
