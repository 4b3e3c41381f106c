//! Write-mode rules on the objects a statement touches: system relations, temporary
//! objects, roles and grants.
//!
//! With `--allow-writes` the guard accepts DSQL's DDL and DML surface, but not everything
//! PostgreSQL would run under that name: a write to `pg_catalog` or `information_schema`,
//! an object in `pg_temp` (it outlives the call on the pooled backend and shadows real
//! tables in later calls), a role created with attributes or memberships that escalate
//! privilege, an `ALTER ROLE` (its settings and attributes apply to every later session,
//! including this server's own), and grants on functions of the refused set.

use sqlparser::ast::{CreateRole, GrantObjects, ObjectName, ObjectNamePart, SchemaName, Statement};

use super::functions::{self, Class};
use super::guard::fold;

/// Schemas whose relations belong to the server, never to the caller.
const SYSTEM_SCHEMAS: &[&str] = &["pg_catalog", "information_schema", "pg_toast", "sys"];

fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(id) => fold(id),
            ObjectNamePart::Function(f) => f.to_string(),
        })
        .collect()
}

fn is_temp_schema(schema: &str) -> bool {
    schema.starts_with("pg_temp") || schema.starts_with("pg_toast_temp")
}

/// Why `name` is a system or temporary object, if it is one. An unqualified name that starts
/// with `pg_` resolves to `pg_catalog` first, so it counts as a system name.
fn system_reason(name: &ObjectName) -> Option<String> {
    let parts = parts(name);
    let shown = parts.join(".");
    match parts.as_slice() {
        [single] if single.starts_with("pg_") => Some(format!(
            "{shown} is a system relation (unqualified names starting with pg_ resolve to pg_catalog first; qualify your own object with its schema)"
        )),
        [.., schema, _] if SYSTEM_SCHEMAS.contains(&schema.as_str()) => {
            Some(format!("{shown} is in the system schema {schema}"))
        }
        [.., schema, _] if is_temp_schema(schema) => Some(format!(
            "{shown} is a temporary object (it would outlive the call on the pooled connection)"
        )),
        _ => None,
    }
}

/// Names a statement creates, changes or drops beyond those the tree walk reports as
/// relations (schemas, sequences, domains, comments, grants).
fn named_objects(stmt: &Statement) -> Vec<&ObjectName> {
    let mut out = Vec::new();
    match stmt {
        Statement::Drop { names, .. } => out.extend(names),
        Statement::DropFunction(d) => out.extend(d.func_desc.iter().map(|f| &f.name)),
        Statement::DropDomain(d) => out.push(&d.name),
        Statement::Comment { object_name, .. } => out.push(object_name),
        Statement::CreateSchema { schema_name, .. } => match schema_name {
            SchemaName::Simple(n) | SchemaName::NamedAuthorization(n, _) => out.push(n),
            SchemaName::UnnamedAuthorization(_) => {}
        },
        Statement::AlterSchema(a) => out.push(&a.name),
        Statement::CreateSequence { name, .. } => out.push(name),
        Statement::AlterSequence(a) => out.push(&a.name),
        Statement::CreateDomain(d) => out.push(&d.name),
        Statement::AlterIndex { name, .. }
        | Statement::AlterView { name, .. }
        | Statement::AlterViewOperation { name, .. } => out.push(name),
        Statement::CreateView(v) => out.push(&v.name),
        Statement::CreateStatistics(s) => {
            out.extend(s.name.as_ref());
            out.push(&s.table);
        }
        Statement::Truncate(t) => out.extend(t.table_names.iter().map(|t| &t.name)),
        Statement::Grant(_) | Statement::Revoke(_) => out.extend(grant_names(stmt).0),
        _ => {}
    }
    out
}

/// The objects a `GRANT` or `REVOKE` names, and whether they are schemas
/// (`ON SCHEMA s`, `ON ALL TABLES IN SCHEMA s`, ...).
fn grant_names(stmt: &Statement) -> (Vec<&ObjectName>, bool) {
    use GrantObjects as G;
    let objects = match stmt {
        Statement::Grant(g) => g.objects.as_ref(),
        Statement::Revoke(r) => r.objects.as_ref(),
        _ => None,
    };
    match objects {
        Some(
            G::AllSequencesInSchema { schemas }
            | G::AllTablesInSchema { schemas }
            | G::AllViewsInSchema { schemas }
            | G::AllFunctionsInSchema { schemas }
            | G::FutureTablesInSchema { schemas }
            | G::FutureViewsInSchema { schemas }
            | G::FutureSequencesInSchema { schemas }
            | G::Schemas(schemas),
        ) => (schemas.iter().collect(), true),
        Some(G::Sequences(v) | G::Tables(v) | G::Views(v)) => (v.iter().collect(), false),
        Some(G::Function { name, .. } | G::Procedure { name, .. }) => (vec![name], false),
        _ => (Vec::new(), false),
    }
}

/// A schema name used as a whole (`CREATE SCHEMA`, `ON ALL TABLES IN SCHEMA`).
fn is_system_schema_name(name: &ObjectName) -> bool {
    match parts(name).as_slice() {
        [schema] => SYSTEM_SCHEMAS.contains(&schema.as_str()) || is_temp_schema(schema),
        _ => false,
    }
}

/// Role attributes and memberships that escalate privilege. `NO…` forms and plain
/// `LOGIN`/`INHERIT`/`CONNECTION LIMIT` are fine; a membership is given with `GRANT`.
fn role_escalation(r: &CreateRole) -> Option<String> {
    let flags = [
        (r.superuser, "SUPERUSER"),
        (r.create_db, "CREATEDB"),
        (r.create_role, "CREATEROLE"),
        (r.replication, "REPLICATION"),
        (r.bypassrls, "BYPASSRLS"),
    ];
    if let Some((_, word)) = flags.iter().find(|(on, _)| *on == Some(true)) {
        return Some(format!(
            "CREATE ROLE ... {word} grants privileges this server does not hand out; create the role without it"
        ));
    }
    if !(r.in_role.is_empty()
        && r.in_group.is_empty()
        && r.role.is_empty()
        && r.user.is_empty()
        && r.admin.is_empty())
    {
        return Some(
            "CREATE ROLE with IN ROLE / ROLE / ADMIN memberships is not allowed; create the role, then GRANT it the privileges it needs on tables and schemas".into(),
        );
    }
    if r.password.is_some() {
        return Some(
            "CREATE ROLE ... PASSWORD is not allowed: DSQL roles log in with IAM tokens (map the role with AWS IAM GRANT)".into(),
        );
    }
    None
}

/// The write-mode refusal for `stmt`, if any. `relations` are the relation names the tree
/// walk met; `pure_read` says the statement only reads (then system relations may be read).
pub(crate) fn refusal(
    stmt: &Statement,
    relations: &[ObjectName],
    pure_read: bool,
) -> Option<String> {
    let temporary = match stmt {
        Statement::CreateTable(t) => t.temporary,
        Statement::CreateView(v) => v.temporary,
        Statement::CreateSequence { temporary, .. } => *temporary,
        Statement::Drop { temporary, .. } => *temporary,
        _ => false,
    };
    if temporary {
        return Some(
            "Temporary objects are not allowed: they live in pg_temp, outlive the call on the pooled connection and shadow real tables in later calls".into(),
        );
    }
    match stmt {
        Statement::CreateRole(r) => {
            if let Some(why) = role_escalation(r) {
                return Some(why);
            }
        }
        Statement::AlterRole { .. } | Statement::AlterUser(_) => {
            return Some(
                "ALTER ROLE is not allowed: role attributes and per-role settings apply to every later session, this server's included".into(),
            );
        }
        Statement::Grant(g) => {
            if let Some(GrantObjects::Function { name, .. } | GrantObjects::Procedure { name, .. }) =
                &g.objects
                && let Some(ObjectNamePart::Identifier(base)) = name.0.last()
                && let Some(Class::Refused(_)) = functions::class_of(&fold(base))
            {
                return Some(format!(
                    "GRANT on {name} is not allowed: the function is in the refused set"
                ));
            }
        }
        _ => {}
    }
    if let Statement::CreateSchema {
        schema_name: SchemaName::Simple(n),
        ..
    } = stmt
        && is_system_schema_name(n)
    {
        return Some(format!("Writes to system schemas are not allowed: {n}"));
    }
    if let (granted, true) = grant_names(stmt)
        && let Some(schema) = granted.into_iter().find(|s| is_system_schema_name(s))
    {
        return Some(format!(
            "Grants on system schemas are not allowed: {schema}"
        ));
    }
    let extra = named_objects(stmt);
    let read_relations: &[ObjectName] = if pure_read { &[] } else { relations };
    read_relations
        .iter()
        .chain(extra)
        .find_map(system_reason)
        .map(|why| format!("Writes to system relations are not allowed: {why}"))
}
