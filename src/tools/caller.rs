//! Who a tool call acts for, and the per-call view of the toolbox it runs with.
//!
//! Access and tenant are properties of the *call*, not of the process: on stdio there is
//! one caller (the local user, with the server's configured access and tenant), but a
//! shared HTTP server serves many credentials at once, each with its own ceiling. The
//! cluster is one too: `Toolbox::call` resolves it once (the call's `cluster` argument or
//! the default, within the caller's allowed clusters) into the [`Call`]. Tool handlers
//! therefore never read the server's access mode or pick an executor themselves; they ask
//! their [`Call`], whose access is the lower of the cluster's own mode and the caller's
//! ceiling, and whose executor is the cluster's.

use serde_json::{Map, Value};

use crate::clusters::{Cluster, lower};
use crate::config::Config;
use crate::executor::Executor;
use crate::policy::Access;

use super::{NOT_CONFIGURED, ToolError, Toolbox, args, check_sql_size};

/// The identity a call runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The most this caller may do. The call's access is the lower of this and the
    /// cluster's (a read credential cannot write on a cluster that allows writes).
    pub access: Access,
    /// The tenant the caller is bound to, when tenant isolation is on.
    pub tenant: Option<String>,
    /// The configured clusters this caller may use, by name; `None`: all of them.
    pub clusters: Option<Vec<String>>,
}

impl Caller {
    /// The stdio caller: everything the configuration allows.
    pub fn local(config: &Config) -> Caller {
        Caller {
            access: config.access,
            tenant: config.tenant.clone(),
            clusters: None,
        }
    }
}

/// A caller as a transport authenticated it (HTTP: `http::auth` puts one in each request's
/// extensions). `id` names the credential in logs and binds a session to it; it is a label
/// (a token's name, a JWT's `iss`/`sub`), never the secret.
#[derive(Debug, Clone)]
pub struct Credential {
    pub id: std::sync::Arc<str>,
    pub caller: std::sync::Arc<Caller>,
}

/// One tool call's view of the toolbox: the server's parts, seen through the caller, on
/// the cluster the call resolved to.
pub struct Call<'a> {
    pub toolbox: &'a Toolbox,
    pub config: &'a Config,
    pub caller: &'a Caller,
    /// `None` when no cluster is configured, or for a tool that needs none.
    cluster: Option<&'a Cluster>,
}

impl<'a> Call<'a> {
    pub fn new(toolbox: &'a Toolbox, caller: &'a Caller, cluster: Option<&'a Cluster>) -> Call<'a> {
        Call {
            toolbox,
            config: &toolbox.config,
            caller,
            cluster,
        }
    }

    /// What this call may do: the lower of its cluster's mode and the caller's ceiling
    /// (without a cluster, of the server's most and the caller's).
    pub fn access(&self) -> Access {
        match self.cluster {
            Some(cluster) => cluster.access_for(self.caller),
            None => lower(self.config.access, self.caller.access),
        }
    }

    /// What a write refused on this call needs, for the refusal's text: the reference's
    /// "the server started with --allow-writes" with one cluster; with several, names the
    /// read-only cluster; when the caller's ceiling is what stops it, says that.
    pub fn write_requirement(&self) -> String {
        match self.cluster {
            Some(c) if c.access == Access::ReadWrite && self.caller.access == Access::ReadOnly => {
                "a credential that may write (this one may only read)".to_owned()
            }
            Some(c) if self.toolbox.clusters.several() => format!(
                "a read-write cluster (cluster {} is read-only; allow_writes = true in its table of the clusters file makes it read-write)",
                c.name
            ),
            _ => "the server started with --allow-writes".to_owned(),
        }
    }

    /// A guard refusal in words for this call: when the cluster allows writes and only the
    /// caller's ceiling stops this one, the reference's "change the MCP configuration"
    /// would be wrong advice, so the refusal says what would allow it instead (keeping the
    /// reference's opening words, which agents match).
    pub fn refusal(&self, e: crate::policy::PolicyError) -> String {
        match (&e, self.cluster) {
            (crate::policy::PolicyError::WriteNotAllowed(why), Some(c))
                if c.access == Access::ReadWrite && self.caller.access == Access::ReadOnly =>
            {
                format!(
                    "Your MCP server does not allow write operations to this credential: it may only read; writes need \
                     a token with access = \"write\" or an access token with the dsql:write scope ({why})"
                )
            }
            _ => e.to_string(),
        }
    }

    /// The tenant this call is bound to, if any.
    pub fn tenant(&self) -> Option<&str> {
        self.caller.tenant.as_deref()
    }

    /// The cluster this call runs on.
    pub fn cluster(&self) -> Option<&'a Cluster> {
        self.cluster
    }

    /// The call's cluster's executor, or the reference's "not configured" error.
    pub fn executor(&self) -> Result<&'a Executor, ToolError> {
        self.cluster
            .map(|c| &*c.executor)
            .ok_or_else(|| ToolError(NOT_CONFIGURED.to_owned()))
    }

    /// The preamble of every one-statement tool, in the reference's order of checks:
    /// arguments (`sql` and the optional parameter list named `params_field`), then a
    /// configured database, then non-empty SQL, then its size (`check_sql_size`).
    pub fn statement_call(
        &self,
        tool: &str,
        args: &Map<String, Value>,
        params_field: &str,
    ) -> Result<(&'a Executor, String, Option<Vec<Value>>), ToolError> {
        let mut a = args::ArgReader::new(tool, args);
        let sql = a.string("sql");
        let params = a.values(params_field);
        a.finish().map_err(ToolError)?;
        let executor = self.executor()?;
        if sql.trim().is_empty() {
            return Err(ToolError(format!(
                "Incorrect invocation: {tool} invoked without a SQL statement"
            )));
        }
        check_sql_size(&sql)?;
        Ok((executor, sql, params))
    }
}
