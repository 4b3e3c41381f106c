//! The MCP tool surface: which tools exist, their schemas, and dispatch.
//!
//! Each tool handler is thin: read and validate its arguments, ask the SQL policy and
//! the executor, shape the result. Schemas are written out by hand rather than derived
//! so they match what the reference server emits on the wire (pydantic's shapes: titles,
//! `anyOf` with `null`, defaults), which is part of being a drop-in replacement.

pub mod args;
pub mod caller;
pub mod clusters;
pub mod explain;
pub mod jobs;
pub mod knowledge;
pub mod lint;
pub mod migrations;
pub mod names;
pub mod power;
pub mod reference;
pub mod tenant;

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::model::{Tool, ToolAnnotations};
use serde_json::{Map, Value, json};

use crate::clusters::{Cluster, Clusters, lower};
use crate::config::Config;
use crate::executor::{Control, Truncation};
use crate::policy::Access;
use crate::value::render::RenderedRows;

pub use caller::{Call, Caller, Credential};

/// The message every database tool answers with when no cluster is configured.
pub const NOT_CONFIGURED: &str =
    "Database not configured. Please configure --cluster_endpoint, --database_user, and --region.";

/// What a tool produced, before it becomes MCP content.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The reference's row tools: one pretty-JSON text per row, and
    /// `structuredContent = {"result": rows}`; a cut result says so after the rows. The
    /// rows arrive rendered (`value::render`), ready for the transport to write.
    Rows {
        rows: RenderedRows,
        truncated: Option<Truncation>,
        /// Rows in the whole result, kept or not (`Outcome::rows_read`): a cut answer says
        /// it as `totalRows`.
        total_rows: u64,
    },
    /// One pretty-JSON text and no structured content (`dsql_lint`, documentation tools).
    Text(Value),
    /// Structured content plus the same JSON as text (the power's tools).
    Structured(Value),
    /// A JSON text with a structured object around it (structured content must be an
    /// object, so a bare list travels as `text` and inside `structured`).
    Listing { text: Value, structured: Value },
    /// A result of a tenant-bound call (`tools/tenant.rs`): shaped as `inner`, plus a last
    /// text line and a `scopedToTenant` field saying it was scoped.
    Scoped { inner: Box<Output>, tenant: String },
}

/// A failed call: the message after "Error executing tool <name>: ".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError(pub String);

impl<E: std::fmt::Display> From<E> for ToolError {
    fn from(e: E) -> Self {
        ToolError(e.to_string())
    }
}

pub type ToolResult = Result<Output, ToolError>;

/// The tools that run on a cluster. With several clusters configured each takes an
/// optional `cluster` argument, resolved in [`Toolbox::call`] (a unit test keeps every
/// listed tool either here or in [`CLUSTERLESS_TOOLS`], so a new tool must choose).
pub const DATABASE_TOOLS: &[&str] = &[
    "readonly_query",
    "transact",
    "get_schema",
    "query",
    "execute",
    "list_tables",
    "describe_table",
    "wait_for_job",
    "list_jobs",
    "explain",
    "apply_migration",
    "list_migrations",
    "execute_batched",
];

/// The tools that wait by design, bounded by their own limits (`--job-timeout`, a wait's
/// `timeout_seconds`, a batched write's progress) rather than a transport's per-request
/// deadline: over HTTP a migration waiting for a 20-minute index build must not be cut at
/// `--http-request-timeout`. The client can still cancel them.
pub const LONG_RUNNING_TOOLS: &[&str] = &["wait_for_job", "apply_migration", "execute_batched"];

/// The tools that need no cluster.
pub const CLUSTERLESS_TOOLS: &[&str] = &[
    "dsql_search_documentation",
    "dsql_read_documentation",
    "dsql_recommend",
    "dsql_lint",
    "list_clusters",
];

/// The argument that names a call's cluster (several clusters only).
pub const CLUSTER_ARG: &str = "cluster";

/// A database tool call's cluster and the arguments its handler reads.
type Resolved<'a, 'b> = (Option<&'a Cluster>, Cow<'b, Map<String, Value>>);

/// Everything a tool handler may use.
pub struct Toolbox {
    pub config: Config,
    /// Every configured cluster (none, one, or several).
    pub clusters: Clusters,
}

impl Toolbox {
    /// The most the server allows on any cluster (a call's may be lower: `Call::access`).
    pub fn access(&self) -> Access {
        self.config.access
    }

    /// The cluster a database tool's call runs on, and its arguments without `cluster`
    /// (borrowed when there was none). With one cluster the argument is not part of the
    /// tool surface (the schemas are the reference's) and is left alone; the caller's
    /// allowed clusters hold either way.
    fn cluster_of<'a, 'b>(
        &'a self,
        tool: &str,
        args: &'b Map<String, Value>,
        caller: &Caller,
    ) -> Result<Resolved<'a, 'b>, ToolError> {
        if !self.clusters.several() {
            let cluster = self.clusters.resolve(None, caller).map_err(|_| {
                ToolError("this credential may not use the cluster this server serves".into())
            })?;
            return Ok((cluster.map(|c| &**c), Cow::Borrowed(args)));
        }
        let requested = match args.get(CLUSTER_ARG) {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) => Some(name.as_str()),
            Some(_) => {
                return Err(ToolError(format!(
                    "1 validation error for {tool}Arguments\n{CLUSTER_ARG}\n  Input should be a valid string"
                )));
            }
        };
        let cluster = self
            .clusters
            .resolve(requested, caller)
            .map_err(ToolError)?;
        // The handlers validate their own arguments: `cluster` is the toolbox's, not theirs.
        let args = if args.contains_key(CLUSTER_ARG) {
            let mut own = args.clone();
            own.remove(CLUSTER_ARG);
            Cow::Owned(own)
        } else {
            Cow::Borrowed(args)
        };
        Ok((cluster.map(|c| &**c), args))
    }

    /// Runs the named tool. `None` when there is no such tool.
    pub async fn call(
        &self,
        name: &str,
        args: &Map<String, Value>,
        caller: &Caller,
        ctl: &Control<'_>,
    ) -> Option<ToolResult> {
        if !DATABASE_TOOLS.contains(&name) {
            let tb = &Call::new(self, caller, None);
            return Some(match name {
                "dsql_lint" => lint::dsql_lint(args, &self.config),
                "dsql_search_documentation" => knowledge::search_documentation(tb, args, ctl).await,
                "dsql_read_documentation" => knowledge::read_documentation(tb, args, ctl).await,
                "dsql_recommend" => knowledge::recommend(tb, args, ctl).await,
                "list_clusters" if self.clusters.several() => clusters::list_clusters(tb, args),
                _ => return None,
            });
        }
        // The cluster is resolved once, here: the handler sees its executor and access.
        let (cluster, args) = match self.cluster_of(name, args, caller) {
            Ok(resolved) => resolved,
            Err(e) => return Some(Err(e)),
        };
        let args = &*args;
        let tb = &Call::new(self, caller, cluster);
        Some(match name {
            "readonly_query" => reference::readonly_query(tb, args, ctl).await,
            "transact" => reference::transact(tb, args, ctl).await,
            "get_schema" => reference::get_schema(tb, args, ctl).await,
            "query" => power::query(tb, args, ctl).await,
            "execute" => power::execute(tb, args, ctl).await,
            "list_tables" => power::list_tables(tb, args, ctl).await,
            "describe_table" => power::describe_table(tb, args, ctl).await,
            "wait_for_job" => jobs::wait_for_job(tb, args, ctl).await,
            "list_jobs" => jobs::list_jobs(tb, args, ctl).await,
            "explain" => explain::explain(tb, args, ctl).await,
            "apply_migration" => Box::pin(migrations::apply_migration(tb, args, ctl)).await,
            "list_migrations" => migrations::list_migrations(tb, args, ctl).await,
            "execute_batched" => Box::pin(migrations::execute_batched(tb, args, ctl)).await,
            _ => return None,
        })
    }

    /// The tools this server offers `caller`, in the order `tools/list` shows them. With
    /// one cluster (or none) they are the reference's and the power's, byte for byte; with
    /// several, each database tool also takes `cluster` (one of the names the caller may
    /// use) and `list_clusters` is added.
    pub fn catalogue(&self, caller: &Caller) -> Vec<Tool> {
        // The write tools are marked destructive when the caller can write somewhere.
        let writes = if self.clusters.is_empty() {
            lower(self.access(), caller.access) == Access::ReadWrite
        } else {
            self.clusters
                .visible(caller)
                .any(|c| c.access_for(caller) == Access::ReadWrite)
        };
        let mut tools = self.base_catalogue(writes);
        if self.clusters.several() {
            let names: Vec<&str> = self
                .clusters
                .visible(caller)
                .map(|c| c.name.as_str())
                .collect();
            for t in tools
                .iter_mut()
                .filter(|t| DATABASE_TOOLS.contains(&t.name.as_ref()))
            {
                clusters::add_cluster_argument(t, &names, self.clusters.default_name());
            }
            tools.push(clusters::list_clusters_tool());
        }
        tools
    }

    fn base_catalogue(&self, writes: bool) -> Vec<Tool> {
        vec![
            tool(
                "readonly_query",
                "Run one read-only SQL statement (SELECT, SHOW, EXPLAIN) against the Aurora DSQL cluster and return its rows. \
                 Runs inside a read-only transaction whatever the server mode. Use %s placeholders with `params` for values; \
                 never splice values into the SQL text. Exactly one statement per call.",
                json!({
                    "properties": {
                        "sql": string_prop("Sql", "The SQL statement to run (one statement; %s placeholders for params)."),
                        "params": nullable(
                            json!({"items": {}, "type": "array"}),
                            "Params",
                            "Values bound to the %s placeholders, in order. Use %% for a literal percent sign when params are given."
                        ),
                    },
                    "required": ["sql"],
                    "title": "readonly_queryArguments",
                    "type": "object"
                }),
                Some(rows_output("readonly_query")),
                read_only_hints(),
            ),
            tool(
                "transact",
                "Run a list of SQL statements in one transaction and return the rows of the last one. \
                 Without --allow-writes the transaction is read-only (useful for consistent multi-query reads). \
                 DSQL allows one DDL statement per transaction and no mix of DDL and DML: send DDL in its own call. \
                 At most 3,000 modified rows per transaction.",
                json!({
                    "properties": {
                        "sql_list": {
                            "description": "The SQL statements to run in order, in one transaction.",
                            "items": {"type": "string"},
                            "title": "Sql List",
                            "type": "array"
                        },
                        "params_list": nullable(
                            json!({"items": {"anyOf": [{"items": {}, "type": "array"}, {"type": "null"}]}, "type": "array"}),
                            "Params List",
                            "One parameter list (or null) per statement, same length as sql_list; %s placeholders."
                        ),
                    },
                    "required": ["sql_list"],
                    "title": "transactArguments",
                    "type": "object"
                }),
                Some(rows_output("transact")),
                ToolAnnotations::new()
                    .read_only(!writes)
                    .destructive(writes)
                    .idempotent(!writes)
                    .open_world(false),
            ),
            tool(
                "get_schema",
                "Describe a table: its columns and their data types, each row naming its table_schema and table_name. \
                 The name is matched case-insensitively; `schema.table` narrows it to one schema; a part in double \
                 quotes (public.\"a.b\") matches exactly. A table that is not found is an error.",
                json!({
                    "properties": {
                        "table_name": string_prop("Table Name", "Table name, optionally schema-qualified (schema.table)."),
                    },
                    "required": ["table_name"],
                    "title": "get_schemaArguments",
                    "type": "object"
                }),
                Some(rows_output("get_schema")),
                read_only_hints(),
            ),
            // Documentation tools (knowledge server, with the bundled guides offline).
            tool(
                "dsql_search_documentation",
                "Search the Aurora DSQL documentation and return the most relevant pages. When the documentation \
                 server cannot be reached, searches the DSQL guides bundled with this server instead and says so \
                 in the result (source \"bundled_guides\").",
                json!({
                    "properties": {
                        "search_phrase": string_prop("Search Phrase", "Search phrase to use"),
                        "limit": nullable(json!({"type": "integer"}), "Limit", "Maximum number of results to return"),
                    },
                    "required": ["search_phrase"],
                    "title": "dsql_search_documentationArguments",
                    "type": "object"
                }),
                None,
                documentation_hints(),
            ),
            tool(
                "dsql_read_documentation",
                "Read an Aurora DSQL documentation page by URL, in parts for long pages (start_index, max_length). \
                 The guides bundled with this server (dsql://guides/<name>) are read without the network.",
                json!({
                    "properties": {
                        "url": string_prop("Url", "Specific url to read"),
                        "start_index": nullable(json!({"type": "integer"}), "Start Index", "Starting character index"),
                        "max_length": nullable(json!({"type": "integer"}), "Max Length", "Maximum number of characters to return"),
                    },
                    "required": ["url"],
                    "title": "dsql_read_documentationArguments",
                    "type": "object"
                }),
                None,
                documentation_hints(),
            ),
            tool(
                "dsql_recommend",
                "Get recommendations for DSQL best practices: documentation pages related to the given page URL.",
                json!({
                    "properties": {
                        "url": string_prop("Url", "URL of the documentation page to get recommendations for"),
                    },
                    "required": ["url"],
                    "title": "dsql_recommendArguments",
                    "type": "object"
                }),
                None,
                documentation_hints(),
            ),
            tool(
                "dsql_lint",
                "Check SQL for Aurora DSQL compatibility without running it, and optionally rewrite it (fix=true). \
                 Reports each problem with its rule, line, message and a suggestion. Works without a cluster.",
                json!({
                    "properties": {
                        "sql": {
                            "description": "The SQL to check (one or more statements).",
                            "maxLength": lint::MAX_SQL_CHARS,
                            "title": "Sql",
                            "type": "string"
                        },
                        "fix": {
                            "default": false,
                            "description": "Also return the SQL rewritten to fix what can be fixed automatically.",
                            "title": "Fix",
                            "type": "boolean"
                        }
                    },
                    "required": ["sql"],
                    "title": "dsql_lintArguments",
                    "type": "object"
                }),
                None,
                read_only_hints(),
            ),
            tool(
                "query",
                "Run one read-only SQL statement and return its rows with their column names and types. \
                 Use $1, $2, ... placeholders with `parameters` (JSON values; the server infers their SQL types). \
                 Runs in a read-only transaction.",
                json!({
                    "type": "object",
                    "properties": {
                        "sql": {"type": "string", "description": "One SELECT, SHOW or EXPLAIN statement with $n placeholders."},
                        "parameters": {"type": "array", "items": {}, "description": "Values for $1, $2, ... in order (numbers, strings, booleans, null; objects and arrays are sent as JSON text)."}
                    },
                    "required": ["sql"]
                }),
                Some(json!({
                    "type": "object",
                    "properties": {
                        "rows": {"type": "array", "items": {"type": "object", "additionalProperties": true}},
                        "rowCount": {"type": "integer"},
                        "columns": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "type": {"type": "string"}}, "required": ["name", "type"]}}
                    },
                    "required": ["rows", "rowCount", "columns"]
                })),
                read_only_hints(),
            ),
            tool(
                "execute",
                "Run one DDL or DML statement in its own transaction (needs --allow-writes). Returns the command and \
                 the number of rows it affected, plus the rows for RETURNING and for CREATE INDEX ASYNC (its job_id). \
                 Statements DSQL would refuse are rejected before they reach the cluster, with what to do instead.",
                json!({
                    "type": "object",
                    "properties": {
                        "sql": {"type": "string", "description": "One DDL or DML statement with $n placeholders."},
                        "parameters": {"type": "array", "items": {}, "description": "Values for $1, $2, ... in order."}
                    },
                    "required": ["sql"]
                }),
                Some(json!({
                    "type": "object",
                    "properties": {
                        "command": {"type": "string"},
                        "rowCount": {"type": "integer"},
                        "rows": {"type": "array", "items": {"type": "object", "additionalProperties": true}}
                    },
                    "required": ["command", "rowCount"]
                })),
                ToolAnnotations::new()
                    .read_only(!writes)
                    .destructive(writes)
                    .idempotent(false)
                    .open_world(false),
            ),
            tool(
                "list_tables",
                "List the tables of a schema (default `public`), sorted by name. A bare schema name matches as stored, \
                 then lower-cased; one in double quotes matches exactly.",
                json!({
                    "type": "object",
                    "properties": {
                        "schema": {"type": "string", "default": "public", "description": "Schema to list."},
                        "include_views": {"type": "boolean", "default": false, "description": "Also list the schema's views and materialized views (as `views`)."}
                    }
                }),
                Some(json!({
                    "type": "object",
                    "properties": {
                        "schema": {"type": "string"},
                        "tables": {"type": "array", "items": {"type": "string"}},
                        "views": {"type": "array", "items": {"type": "string"}}
                    },
                    "required": ["schema", "tables"]
                })),
                read_only_hints(),
            ),
            tool(
                "describe_table",
                "Describe a table: columns (type, nullability, default, identity, generated), indexes (definition, \
                 unique, primary, valid; valid=false means an ASYNC index is still building or failed) and constraints.",
                json!({
                    "type": "object",
                    "properties": {
                        "table_name": {"type": "string", "description": "The table's name: bare (as stored, then lower-cased) or in double quotes (exact); `schema.table` names its schema too."},
                        "schema": {"type": "string", "default": "public", "description": "The table's schema, named the same way."}
                    },
                    "required": ["table_name"]
                }),
                Some(json!({
                    "type": "object",
                    "properties": {
                        "schema": {"type": "string"},
                        "table": {"type": "string"},
                        "columns": {"type": "array", "items": {"type": "object"}},
                        "indexes": {"type": "array", "items": {"type": "object"}},
                        "constraints": {"type": "array", "items": {"type": "object"}}
                    },
                    "required": ["schema", "table", "columns", "indexes", "constraints"]
                })),
                read_only_hints(),
            ),
            tool(
                "wait_for_job",
                "Wait for an asynchronous DSQL job (CREATE INDEX ASYNC, ALTER TABLE ASYNC ... VALIDATE) to finish, by \
                 polling sys.jobs with short read-only queries (works on a read-only server). Returns how the job ended: \
                 status, job_type, object_name, details when it failed, and how long the wait took. Sends progress \
                 notifications while waiting when the request carries a progressToken. On timeout the job keeps running: \
                 call again with the same job_id.",
                json!({
                    "type": "object",
                    "properties": {
                        "job_id": {"type": "string", "minLength": 26, "maxLength": 26, "pattern": "^[a-z2-7]{26}$", "description": "The job_id returned by CREATE INDEX ASYNC (or shown by list_jobs)."},
                        "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 3600, "default": 300, "description": "How long to wait before giving up (the job keeps running)."}
                    },
                    "required": ["job_id"]
                }),
                Some(json!({
                    "type": "object",
                    "properties": {
                        "job_id": {"type": "string"},
                        "status": {"type": "string"},
                        "succeeded": {"type": "boolean"},
                        "job_type": {"type": ["string", "null"]},
                        "object_name": {"type": ["string", "null"]},
                        "details": {"type": ["string", "null"]},
                        "start_time": {"type": ["string", "null"]},
                        "update_time": {"type": ["string", "null"]},
                        "waited_seconds": {"type": "number"},
                        "note": {"type": "string"}
                    },
                    "required": ["job_id", "status", "succeeded", "waited_seconds"]
                })),
                read_only_hints(),
            ),
            tool(
                "list_jobs",
                "List DSQL's asynchronous jobs from sys.jobs (index builds, constraint validations), newest first, at most 100; \
                 optionally only those with one status (submitted, processing, completed, failed, cancelled). DSQL keeps \
                 finished jobs for at least 30 minutes.",
                json!({
                    "type": "object",
                    "properties": {
                        "status": {"type": "string", "enum": crate::jobs::STATUSES, "description": "Only jobs in this state."}
                    }
                }),
                Some(json!({
                    "type": "object",
                    "properties": {
                        "jobs": {"type": "array", "items": {"type": "object", "additionalProperties": true}},
                        "count": {"type": "integer"},
                        "status": {"type": "string"},
                        "note": {"type": "string"}
                    },
                    "required": ["jobs", "count"]
                })),
                read_only_hints(),
            ),
            tool(
                "explain",
                "Show how the cluster runs a read (SELECT, VALUES): the EXPLAIN text plus a structured reading (each node's \
                 type, relation, index, estimated and, with analyze=true, actual rows and time; each filter placed as \
                 index_condition, storage_filter (DSQL's Filters: at storage) or above_storage (Filter:)), and findings with \
                 a concrete fix: a full scan filtered by equality on an unindexed column (with the CREATE INDEX ASYNC \
                 statement, checked by the DSQL rule checker), a row estimate more than 10x off, the DPU estimate. \
                 analyze=true runs the statement (EXPLAIN (ANALYZE, VERBOSE)), always inside a read-only transaction.",
                json!({
                    "type": "object",
                    "properties": {
                        "sql": {"type": "string", "description": "One read (SELECT, VALUES) with $n placeholders, without EXPLAIN."},
                        "parameters": {"type": "array", "items": {}, "description": "Values for $1, $2, ... in order."},
                        "analyze": {"type": "boolean", "default": false, "description": "Run the statement and report actual rows, time and (on DSQL) the DPU estimate."}
                    },
                    "required": ["sql"]
                }),
                Some(json!({
                    "type": "object",
                    "properties": {
                        "plan": {"type": "string"},
                        "analyze": {"type": "boolean"},
                        "engine": {"type": "string", "enum": ["dsql", "postgresql"]},
                        "nodes": {"type": "array", "items": {"type": "object", "additionalProperties": true}},
                        "findings": {"type": "array", "items": {"type": "object", "properties": {"kind": {"type": "string"}, "message": {"type": "string"}, "fix": {"type": "string"}, "statement": {"type": "string"}}, "required": ["kind", "message", "fix"]}},
                        "note": {"type": "string"},
                        "planning_time_ms": {"type": "number"},
                        "execution_time_ms": {"type": "number"},
                        "dpu": {"type": "object", "additionalProperties": {"type": "number"}}
                    },
                    "required": ["plan", "analyze", "engine", "nodes", "findings"]
                })),
                read_only_hints(),
            ),
            tool(
                "apply_migration",
                "Apply a migration: one or more SQL statements, checked as execute checks them and grouped into the \
                 transactions DSQL allows (each DDL alone; INSERT ... VALUES together under 3,000 rows; other DML alone). \
                 Each CREATE INDEX ASYNC / ALTER TABLE ASYNC ... VALIDATE step is waited for (polling sys.jobs, progress \
                 notifications) before the next. `-- dsql:batched [SIZE]` before an UPDATE or DELETE runs it in batches. \
                 Every step is recorded in public.dsql_mcp_migrations: a re-run with the same name resumes at the first \
                 step not done; a changed applied step is refused. A lock row keeps two runners apart. dry_run=true \
                 returns the plan (steps, transactions, kinds, lint findings) and changes nothing. Needs --allow-writes \
                 unless dry_run.",
                json!({
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "description": "The migration's unique name, e.g. 0003_add_status."},
                        "sql": {"type": "string", "description": "The migration's statements, separated by semicolons."},
                        "dry_run": {"type": "boolean", "default": false, "description": "Return the plan only; change nothing."}
                    },
                    "required": ["name", "sql"]
                }),
                Some(json!({
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "checksum": {"type": "string"},
                        "status": {"type": "string"},
                        "dry_run": {"type": "boolean"},
                        "transactions": {"type": "integer"},
                        "steps": {"type": "array", "items": {"type": "object", "additionalProperties": true}},
                        "problem": {"type": "string"},
                        "note": {"type": "string"},
                        "lock_note": {"type": "string"}
                    },
                    "required": ["name", "checksum", "steps"]
                })),
                ToolAnnotations::new()
                    .read_only(!writes)
                    .destructive(writes)
                    .idempotent(true)
                    .open_world(false),
            ),
            tool(
                "list_migrations",
                "List the migrations recorded in public.dsql_mcp_migrations, applied and partly applied: name, checksum, \
                 steps done and total, started and finished at, status (applied, failed, started, partial) and the last error.",
                json!({"type": "object", "properties": {}}),
                Some(json!({
                    "type": "object",
                    "properties": {
                        "migrations": {"type": "array", "items": {"type": "object", "additionalProperties": true}},
                        "count": {"type": "integer"},
                        "table": {"type": "string"}
                    },
                    "required": ["migrations", "count", "table"]
                })),
                read_only_hints(),
            ),
            tool(
                "execute_batched",
                "Run one UPDATE or DELETE whose effect may exceed DSQL's 3,000-row limit as repeated transactions of at \
                 most batch_size rows over the table's primary key, until none is left (needs --allow-writes). Each batch \
                 commits on its own (not atomic) with OCC retry; progress is notified. An UPDATE must change what its \
                 WHERE selects (e.g. SET c = ... WHERE c IS NULL), or it is refused. Returns batches, rows and seconds.",
                json!({
                    "type": "object",
                    "properties": {
                        "sql": {"type": "string", "description": "One UPDATE or DELETE with $n placeholders."},
                        "parameters": {"type": "array", "items": {}, "description": "Values for $1, $2, ... in order."},
                        "batch_size": {"type": "integer", "minimum": 1, "maximum": 3000, "default": 1000, "description": "Rows per batch (transaction)."}
                    },
                    "required": ["sql"]
                }),
                Some(json!({
                    "type": "object",
                    "properties": {
                        "batches": {"type": "integer"},
                        "rows": {"type": "integer"},
                        "batch_size": {"type": "integer"},
                        "seconds": {"type": "number"},
                        "atomic": {"type": "boolean"},
                        "note": {"type": "string"}
                    },
                    "required": ["batches", "rows", "batch_size", "seconds", "atomic"]
                })),
                ToolAnnotations::new()
                    .read_only(!writes)
                    .destructive(writes)
                    .idempotent(false)
                    .open_world(false),
            ),
        ]
    }
}

/// What an agent reads when a result was cut: `kept` rows returned, of `total` when the
/// whole result's row count is known (the executor reads a cut result to its end anyway).
pub fn truncation_note(kept: usize, total: Option<u64>, why: &Truncation) -> String {
    let returned = match total {
        Some(total) => format!("{kept} of {total} rows returned"),
        None => format!("{kept} rows returned"),
    };
    if let Truncation::Budget(_) = why {
        // Other calls' results hold the memory: the same call may fit when they are done.
        return format!(
            "Result truncated: {returned} because {why}. Re-run it when fewer large results are in flight, or narrow it (LIMIT, fewer or shorter columns)."
        );
    }
    if kept == 0 {
        // The first row alone is over --max-result-bytes: paging cannot help, narrowing can.
        return format!(
            "Result truncated: {returned} because {why} and its first row alone exceeds that. Select fewer columns or shorter values (e.g. left(column, 1000))."
        );
    }
    format!(
        "Result truncated: {returned} because {why}. Add LIMIT/OFFSET (or keyset pagination on the primary key) or a narrower WHERE to read the rest."
    )
}

/// The longest SQL text a database tool takes, in characters: `dsql_lint`'s bound, so the
/// guard never parses (and the cluster never receives) a multi-megabyte statement.
pub const MAX_SQL_CHARS: usize = lint::MAX_SQL_CHARS;

/// Refuses SQL longer than `MAX_SQL_CHARS` before it is parsed.
pub fn check_sql_size(sql: &str) -> Result<(), ToolError> {
    // A string has at most as many characters as bytes: count only long ones.
    if sql.len() > MAX_SQL_CHARS {
        let chars = sql.chars().count();
        if chars > MAX_SQL_CHARS {
            return Err(ToolError(format!(
                "SQL is too long: {chars} characters (the limit is {MAX_SQL_CHARS}). Pass values as parameters instead of literals, and split bulk writes into batches of at most 3,000 rows."
            )));
        }
    }
    Ok(())
}

fn tool(
    name: &'static str,
    description: &'static str,
    input: Value,
    output: Option<Value>,
    hints: ToolAnnotations,
) -> Tool {
    let Value::Object(input) = input else {
        unreachable!("tool schemas are JSON objects")
    };
    let mut t = Tool::new(name, description, Arc::new(input)).with_annotations(hints);
    if let Some(Value::Object(output)) = output {
        t = t.with_raw_output_schema(Arc::new(output));
    }
    t
}

fn read_only_hints() -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(true)
        .destructive(false)
        .idempotent(true)
        .open_world(false)
}

/// The documentation tools: read-only, but they reach a server outside this one.
fn documentation_hints() -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(true)
        .destructive(false)
        .idempotent(true)
        .open_world(true)
}

fn string_prop(title: &str, description: &str) -> Value {
    json!({"description": description, "title": title, "type": "string"})
}

/// pydantic's shape for `T | None = None`.
fn nullable(inner: Value, title: &str, description: &str) -> Value {
    json!({"anyOf": [inner, {"type": "null"}], "default": null, "description": description, "title": title})
}

/// The reference's output schema for tools returning `list[dict]`.
fn rows_output(tool: &str) -> Value {
    json!({
        "properties": {
            "result": {
                "items": {"additionalProperties": true, "type": "object"},
                "title": "Result",
                "type": "array"
            }
        },
        "required": ["result"],
        "title": format!("{tool}Output"),
        "type": "object"
    })
}
