//! Who a tool call acts for, and the per-call view of the toolbox it runs with.
//!
//! Access and tenant are properties of the *call*, not of the process: on stdio there is
//! one caller (the local user, with the server's configured access and tenant), but a
//! shared HTTP server serves many credentials at once, each with its own ceiling. Tool
//! handlers therefore never read the server's access mode directly; they ask their
//! [`Call`], which is the lower of what the server allows and what the caller may do.

use serde_json::{Map, Value};

use crate::config::Config;
use crate::executor::Executor;
use crate::policy::Access;

use super::{ToolError, Toolbox};

/// The identity a call runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The most this caller may do. The call's access is the lower of this and the
    /// server's (a read credential cannot write on a server started with `--allow-writes`).
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
            tenant: None,
            clusters: None,
        }
    }
}

/// One tool call's view of the toolbox: the server's parts, seen through the caller.
pub struct Call<'a> {
    pub toolbox: &'a Toolbox,
    pub config: &'a Config,
    pub caller: &'a Caller,
}

impl<'a> Call<'a> {
    pub fn new(toolbox: &'a Toolbox, caller: &'a Caller) -> Call<'a> {
        Call {
            toolbox,
            config: &toolbox.config,
            caller,
        }
    }

    /// What this call may do: the lower of the server's mode and the caller's ceiling.
    pub fn access(&self) -> Access {
        match (self.config.access, self.caller.access) {
            (Access::ReadWrite, Access::ReadWrite) => Access::ReadWrite,
            _ => Access::ReadOnly,
        }
    }

    /// The tenant this call is bound to, if any.
    pub fn tenant(&self) -> Option<&str> {
        self.caller.tenant.as_deref()
    }

    /// The executor, or the reference's "not configured" error.
    pub fn executor(&self) -> Result<&'a Executor, ToolError> {
        self.toolbox.executor()
    }

    /// See [`Toolbox::statement_call`].
    pub fn statement_call(
        &self,
        tool: &str,
        args: &Map<String, Value>,
        params_field: &str,
    ) -> Result<(&'a Executor, String, Option<Vec<Value>>), ToolError> {
        self.toolbox.statement_call(tool, args, params_field)
    }
}
