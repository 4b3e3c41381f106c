//! MCP prompts: ready-made conversations an agent host can offer its user.
//!
//! - `onboarding`: the power's "get started with DSQL" flow (check the configuration, look
//!   at the tables, create a first table, insert and query, enable writes).
//! - `migration-review` (argument `sql`): lint a migration for DSQL, explain each
//!   diagnostic, propose the fixed SQL, then plan it with `apply_migration` (`dry_run`) and
//!   apply it when the user agrees. The linter runs in-process, so its findings are put into
//!   the prompt itself; the agent still re-lints its proposal with `dsql_lint`.

use rmcp::model::{GetPromptResult, Prompt, PromptArgument, PromptMessage, Role};
use serde_json::{Map, Value};

use super::guides;
use crate::policy;

pub const ONBOARDING: &str = "onboarding";
pub const MIGRATION_REVIEW: &str = "migration-review";
/// The steering guide with the power's step-by-step onboarding, attached when bundled.
const ONBOARDING_GUIDE: &str = "onboarding";

/// The largest `sql` argument `migration-review` takes, in bytes (about 25,000 tokens).
pub const MAX_PROMPT_SQL_BYTES: usize = 100_000;

/// Why a prompt cannot be produced (MCP's invalid-params).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptError(pub String);

/// The prompts this server offers.
pub fn list() -> Vec<Prompt> {
    vec![
        Prompt::new(
            ONBOARDING,
            Some(
                "Get started with Aurora DSQL: check the server's configuration, look at the tables, \
                 create a first table, insert and query a row, and learn how writes are enabled.",
            ),
            None,
        )
        .with_title("Get started with Aurora DSQL"),
        Prompt::new(
            MIGRATION_REVIEW,
            Some(
                "Review a SQL migration for Aurora DSQL: lint it, explain each diagnostic, and propose \
                 SQL that DSQL accepts.",
            ),
            Some(vec![
                PromptArgument::new("sql")
                    .with_title("Migration SQL")
                    .with_description("The migration to review (one or more SQL statements).")
                    .with_required(true),
            ]),
        )
        .with_title("Review a migration for DSQL"),
    ]
}

/// Produces the named prompt with its arguments.
pub fn get(
    name: &str,
    arguments: Option<&Map<String, Value>>,
) -> Result<GetPromptResult, PromptError> {
    match name {
        ONBOARDING => {
            let mut messages = vec![PromptMessage::new_text(Role::User, onboarding_text())];
            // The power's full onboarding guide travels with the prompt when it is bundled.
            if let Some(guide) = guides::get(ONBOARDING_GUIDE) {
                messages.push(PromptMessage::new_resource(
                    Role::User,
                    guide.uri(),
                    Some("text/markdown".into()),
                    Some(guide.text.to_owned()),
                    None,
                    None,
                    None,
                ));
            }
            Ok(GetPromptResult::new(messages).with_description("Get started with Aurora DSQL"))
        }
        MIGRATION_REVIEW => {
            let sql = arguments
                .and_then(|a| a.get("sql"))
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| {
                    PromptError(
                        "migration-review needs the argument `sql` (the migration to review)"
                            .into(),
                    )
                })?;
            if sql.len() > MAX_PROMPT_SQL_BYTES {
                // The prompt quotes the SQL and the linter's findings (which quote it again):
                // unbounded, one call could cost gigabytes and never fit an agent's context.
                return Err(PromptError(format!(
                    "migration-review: the argument `sql` is {} bytes; the limit is {MAX_PROMPT_SQL_BYTES}. \
                     Review a large migration in parts, or lint it whole with the dsql_lint tool.",
                    sql.len()
                )));
            }
            Ok(GetPromptResult::new(vec![PromptMessage::new_text(
                Role::User,
                migration_review_text(sql),
            )])
            .with_description("Review a migration for Aurora DSQL"))
        }
        other => Err(PromptError(format!(
            "unknown prompt \"{}\" (prompts: {ONBOARDING}, {MIGRATION_REVIEW})",
            crate::tools::names::preview(other)
        ))),
    }
}

fn guide_list() -> String {
    guides::all()
        .map(|g| format!("- `{}`: {}", g.uri(), g.title()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn onboarding_text() -> String {
    let guide = if guides::get(ONBOARDING_GUIDE).is_some() {
        "The power's onboarding guide is attached below: follow it, and use this summary to keep on track.\n"
    } else {
        ""
    };
    format!(
        "Help me get started with Amazon Aurora DSQL through the aurora-dsql MCP server. Go step by step, \
tell me what you are doing, and stop to ask me before anything that changes data or configuration.
{guide}

1. **Check the configuration.** Call `list_tables` (schema `public`). If it answers \"Database not \
configured\", the server was started without a cluster: explain that the MCP configuration needs \
`--cluster_endpoint <id>.dsql.<region>.on.aws`, `--database_user admin` (or another role) and `--region`, \
or the environment variables `CLUSTER` and `REGION`, and that AWS credentials come from the usual chain \
(`--profile` / `AWS_PROFILE`). Stop there until I have configured it. If it fails with an authentication \
or TLS error, explain the error and how to fix it.
2. **Look around.** Show me the tables `list_tables` returned. For one or two of them, call \
`describe_table` and summarise the columns, indexes (an index with `valid: false` is still building) \
and constraints.
3. **Create a first table.** Propose a small table that follows DSQL's rules: a `UUID PRIMARY KEY \
DEFAULT gen_random_uuid()` (no SERIAL), explicit `NOT NULL` columns, a `created_at TIMESTAMPTZ NOT NULL \
DEFAULT now()`, no foreign keys and no JSON column types. Check the DDL with `dsql_lint` first. Creating it \
needs writes: if `execute` answers that the server does not allow write operations, explain that writes \
are enabled by adding `--allow-writes` to the server's arguments in the MCP configuration and restarting \
it, and ask me whether I want that. Run one DDL statement per `execute` call.
4. **Add an index the DSQL way.** If the table needs a secondary index, use `CREATE INDEX ASYNC`, which \
returns a job id; wait for it with the `wait_for_job` tool (it polls `sys.jobs`, works on a read-only \
server too, and says how the job ended), or see every job with `list_jobs`.
5. **Insert and query.** Insert two or three rows with `execute`, passing values as `parameters` (`$1`, \
`$2`, ...), never inside the SQL text. Read them back with `query`. Mention that a transaction can fail at \
COMMIT with SQLSTATE 40001 under concurrency and should then be retried whole.
6. **Next steps.** Point me to the bundled guides, which can be read as resources or with \
`dsql_read_documentation` on their URI:
{guides}

Remember: at most 3,000 modified rows per transaction, one DDL statement per transaction, and no \
TRUNCATE, triggers, temporary tables or extensions.",
        guides = guide_list()
    )
}

fn migration_review_text(sql: &str) -> String {
    let lint = serde_json::to_string_pretty(&policy::lint(sql, true)).unwrap_or_default();
    format!(
        "Review this database migration for Amazon Aurora DSQL before it runs.

```sql
{sql}
```

`dsql_lint` (with `fix: true`) found this:

```json
{lint}
```

1. For each diagnostic, in order: name its rule and line, explain in one or two sentences why Aurora DSQL \
refuses or discourages the construct, and say what to do instead.
2. Check what the linter cannot decide alone: one DDL statement per transaction and never DDL mixed with \
DML; `CREATE INDEX ASYNC` for every index (`apply_migration` waits for each job; on its own, wait with the `wait_for_job` tool); at most 3,000 modified \
rows per transaction (backfill in batches); `ADD COLUMN` without inline constraints or defaults (add the \
column, then `SET DEFAULT`, then backfill); no SERIAL (UUID keys, or identity columns and sequences with an \
explicit CACHE), TRUNCATE, triggers, temporary tables or extensions; a column type change, `SET NOT NULL` \
or a new primary key done by creating a new table, copying in batches and switching over.
3. Propose the complete fixed migration as one SQL block, in the order it must run. Start from `fixed_sql` \
when the linter gave one, but do not trust it blindly. Put `-- dsql:batched 1000` on the line before each \
backfill `UPDATE` or `DELETE` that may touch more than 3,000 rows, and write its `WHERE` so the `SET` makes it \
false for the rows it changes (for example `SET c = 0 WHERE c IS NULL`), or the batches would never end.
4. Call `dsql_lint` on your proposed SQL and show that it reports no errors; if it does, fix them and \
lint again.
5. Call `apply_migration` with a name for it (for example `0007_add_status`), the SQL, and `dry_run: true`, \
and show me the plan: each step, the transaction it runs in, the ASYNC jobs it will wait for and the \
batched writes. Apply it (the same call without `dry_run`) only when I say so; it runs each DDL alone, waits \
for every index and validation job, records each step in its history table, and resumes at the failed \
step if it is run again after a fix. `list_migrations` shows what has been applied.

The bundled guide `dsql://guides/development-guide` explains these rules in depth, when it is available."
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(result: &GetPromptResult) -> String {
        let v = serde_json::to_value(&result.messages[0]).unwrap();
        v["content"]["text"].as_str().unwrap().to_owned()
    }

    #[test]
    fn both_prompts_are_listed() {
        let names: Vec<String> = list().into_iter().map(|p| p.name).collect();
        assert_eq!(names, vec![ONBOARDING, MIGRATION_REVIEW]);
        let review = &list()[1];
        let args = review.arguments.as_ref().unwrap();
        assert_eq!(
            (args[0].name.as_str(), args[0].required),
            ("sql", Some(true))
        );
    }

    #[test]
    fn onboarding_walks_through_the_flow() {
        let t = text(&get(ONBOARDING, None).unwrap());
        for needle in [
            "list_tables",
            "describe_table",
            "--allow-writes",
            "execute",
            "query",
            "CREATE INDEX ASYNC",
        ] {
            assert!(t.contains(needle), "{needle}");
        }
        for g in guides::all() {
            assert!(t.contains(&g.uri()));
        }
        let result = get(ONBOARDING, None).unwrap();
        match guides::get(ONBOARDING_GUIDE) {
            Some(guide) => {
                assert_eq!(result.messages.len(), 2);
                let v = serde_json::to_value(&result.messages[1]).unwrap();
                assert_eq!(v["content"]["type"], "resource");
                assert_eq!(v["content"]["resource"]["uri"], guide.uri());
                assert_eq!(v["content"]["resource"]["text"], guide.text);
            }
            None => assert_eq!(result.messages.len(), 1),
        }
    }

    #[test]
    fn migration_review_carries_the_sql_and_the_lint() {
        let args = json!({"sql": "CREATE TABLE t (id SERIAL PRIMARY KEY)"});
        let t = text(&get(MIGRATION_REVIEW, args.as_object()).unwrap());
        assert!(t.contains("CREATE TABLE t (id SERIAL PRIMARY KEY)"));
        assert!(t.contains("\"diagnostics\""));
        assert!(t.contains("dsql_lint"));
        assert!(get(MIGRATION_REVIEW, None).is_err());
        assert!(get(MIGRATION_REVIEW, json!({"sql": "  "}).as_object()).is_err());
        assert!(get("nope", None).unwrap_err().0.contains("unknown prompt"));
    }
}
