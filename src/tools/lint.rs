//! The `dsql_lint` tool: DSQL compatibility diagnostics, computed in-process.
//!
//! The reference shells out to the `dsql-lint` binary; here the same crate runs inside
//! the server (no subprocess, no PATH lookup), through the SQL policy's `lint`, which adds
//! what `execute` would refuse (the guard's write mode and the rule checker's own rules), so
//! a clean lint means `execute` accepts each statement.

use serde_json::{Map, Value};

use super::args::ArgReader;
use super::{Output, ToolError, ToolResult};
use crate::config::Config;
use crate::policy;

/// The reference's input limit.
pub const MAX_SQL_CHARS: usize = 1_000_000;

/// dsql-lint's diagnostics plus what `execute` refuses under this server's `--rules` and
/// `--allow-function` (`policy::lint_as_execute`).
pub fn dsql_lint(args: &Map<String, Value>, config: &Config) -> ToolResult {
    let mut a = ArgReader::new("dsql_lint", args);
    let sql = a.string("sql");
    let fix = a.boolean_or("fix", false);
    a.finish().map_err(ToolError)?;
    let chars = sql.chars().count();
    if chars > MAX_SQL_CHARS {
        return Err(ToolError(format!(
            "SQL is too long for dsql_lint: {chars} characters (the limit is {MAX_SQL_CHARS}); lint it in smaller parts"
        )));
    }
    Ok(Output::Text(policy::lint_as_execute(
        &sql,
        fix,
        config.rules,
        &config.allowed_functions,
    )))
}
