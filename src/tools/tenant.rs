//! Tenant isolation at the tool layer: between the SQL policy and the executor.
//!
//! When the call's caller is bound to a tenant (`Caller.tenant`: `--tenant` on stdio, a
//! token's tenant over HTTP), each statement the guard and the rule checker accepted is
//! rewritten by `policy::scope_to_tenant` against the cluster's tenant map
//! (`catalog::tenant_map`), and the tenant value is appended to its parameters. A statement
//! that names a relation the cached map does not know (or knows without the column) gets one
//! fresh read of the map before it is refused. Without a tenant nothing changes.

use serde_json::Value;

use super::{Call, Output, ToolError};
use crate::executor::Control;
use crate::policy::{self, Access, ScopeError};

/// One statement after scoping: the SQL to run and its parameters.
pub struct Scoped {
    pub sql: String,
    pub params: Vec<Value>,
}

/// Scopes one checked statement for the call's tenant (as given when there is none).
pub async fn scope(
    call: &Call<'_>,
    sql: String,
    params: Vec<Value>,
    access: Access,
    ctl: &Control<'_>,
) -> Result<Scoped, ToolError> {
    let Some(tenant) = call.tenant() else {
        return Ok(Scoped { sql, params });
    };
    let executor = call.executor()?;
    let cluster = call
        .cluster()
        .ok_or_else(|| ToolError(super::NOT_CONFIGURED.to_owned()))?;
    let tenancy = &call.config.tenancy;
    let mut fresh = false;
    loop {
        let map = cluster
            .tenant_map
            .get(executor, &tenancy.column, fresh, ctl)
            .await
            .map_err(ToolError)?;
        match policy::scope_to_tenant(
            &sql,
            &params,
            tenant,
            tenancy,
            map,
            access,
            &call.config.allowed_functions,
        ) {
            Ok(s) => {
                let mut params = params;
                if s.param_count > params.len() {
                    params.push(Value::String(tenant.to_owned()));
                }
                return Ok(Scoped { sql: s.sql, params });
            }
            Err(ScopeError::Stale(_)) if !fresh => fresh = true,
            Err(ScopeError::Stale(why) | ScopeError::Refused(why)) => {
                return Err(ToolError(format!(
                    "Tenant isolation refused the statement: {why}"
                )));
            }
        }
    }
}

/// The call's output, marked as scoped when a tenant is bound.
pub fn mark(call: &Call<'_>, output: Output) -> Output {
    match call.tenant() {
        Some(t) => Output::Scoped {
            inner: Box::new(output),
            tenant: t.to_owned(),
        },
        None => output,
    }
}

/// After a unit that ran DDL: the cluster's tenant map may be stale.
pub fn ddl_ran(call: &Call<'_>) {
    if let Some(c) = call.cluster() {
        c.tenant_map.invalidate();
    }
}
