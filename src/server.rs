//! The MCP server: rmcp's `ServerHandler` over the toolbox.
//!
//! This layer speaks the protocol and nothing else: it lists the tools, turns a tool's
//! `Output` into MCP content, turns a `ToolError` into an `isError` result whose text
//! carries the message, capped at 16 KiB (and the same text as a log notification), and
//! honours `logging/setLevel`. stdout belongs to the JSON-RPC stream (rmcp's, through the
//! front door in `stdio.rs`); logs go to stderr.

// MCP logging is deprecated by the 2026-07-28 revision (SEP-2577), but the protocol
// versions agent hosts negotiate today still carry it, and the reference's clients rely
// on error notifications. Remove with the deprecation once hosts move on.
#![allow(deprecated)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    ContentBlock, Implementation, InitializeResult, ListToolsResult, LoggingLevel,
    LoggingMessageNotificationParam, PaginatedRequestParams, ProgressNotificationParam,
    ProgressToken, ServerCapabilities, ServerConfig, SetLevelRequestParams,
};
use rmcp::model::{
    GetPromptRequestParams, GetPromptResponse, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ReadResourceRequestParams, ReadResourceResponse,
};
use rmcp::service::{Peer, RequestContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};

use crate::clusters::Clusters;
use crate::connection::error::capped;
use crate::executor::{Control, Event, Observer};
use crate::knowledge::{prompts, resources};
use crate::splice::Splices;
use crate::stdio::MCP_REQUEST_METHODS;
use crate::tools::{Caller, Credential, Output, ToolError, Toolbox, truncation_note};
use rmcp::model::{CustomRequest, CustomResult, ErrorCode};

/// What the server tells an agent about itself at `initialize`.
pub const INSTRUCTIONS: &str = "\
This server connects an agent to one Amazon Aurora DSQL cluster (PostgreSQL-compatible, serverless, \
optimistic concurrency). Use readonly_query or query for reads, get_schema / list_tables / describe_table \
to learn the schema, and transact or execute to change data when the server was started with --allow-writes \
(it is read-only otherwise). Pass values as parameters, never inside the SQL text. One statement per SQL \
string. DSQL differences to respect: CREATE INDEX must be CREATE INDEX ASYNC (poll sys.jobs or CALL \
sys.wait_for_job), one DDL statement per transaction and never DDL with DML, at most 3,000 modified rows and \
5 minutes per transaction, no TRUNCATE, SERIAL, triggers, temporary tables or extensions; a transaction can \
fail at COMMIT with SQLSTATE 40001 (OC000/OC001) and should then be retried whole. dsql_lint checks SQL for \
DSQL compatibility without a cluster.";

/// What `main` prints on stderr when stdin is a terminal: someone started the server by hand.
pub const WAITING_NOTE: &str = "aurora-dsql-mcp-server: waiting for an MCP client on stdin (JSON-RPC, one message per line); \
start it from an agent host or `npx -y @modelcontextprotocol/inspector`; Ctrl-C stops it";

/// The first sentence of [`INSTRUCTIONS`], which holds for one cluster only.
const ONE_CLUSTER: &str = "This server connects an agent to one Amazon Aurora DSQL cluster (PostgreSQL-compatible, serverless, \
optimistic concurrency).";

/// What the server tells an agent at `initialize`: [`INSTRUCTIONS`] with one cluster (or
/// none); with several, which ones `caller` may use, the default, and that each has its
/// own mode.
pub fn instructions(clusters: &Clusters, caller: &Caller) -> String {
    if !clusters.several() {
        return match clusters.resolve(None, caller) {
            // An HTTP credential that may only read, on a server that allows writes.
            Ok(Some(c)) if c.access_for(caller) != c.access => INSTRUCTIONS.replacen(
                "when the server was started with --allow-writes (it is read-only otherwise)",
                "when the credential may write (this one may only read)",
                1,
            ),
            _ => INSTRUCTIONS.to_owned(),
        };
    }
    let names: Vec<String> = clusters
        .visible(caller)
        .map(|c| {
            format!(
                "{} ({})",
                c.name,
                crate::tools::clusters::mode_name(c.access_for(caller))
            )
        })
        .collect();
    let several = format!(
        "This server connects an agent to several Amazon Aurora DSQL clusters (PostgreSQL-compatible, serverless, \
optimistic concurrency): {}. Every database tool takes an optional `cluster` argument naming the one to use \
(default: {}); list_clusters shows each one's endpoint and mode, and writes are allowed only on a read-write cluster.",
        names.join(", "),
        clusters.default_name()
    );
    INSTRUCTIONS.replacen(ONE_CLUSTER, &several, 1).replacen(
        "when the server was started with --allow-writes (it is read-only otherwise)",
        "on a cluster whose mode is read-write",
        1,
    )
}

/// The MCP server for one session (stdio's one, or one HTTP session or request).
#[derive(Clone)]
pub struct DsqlServer {
    toolbox: Arc<Toolbox>,
    /// Who this session's calls act for.
    callers: Callers,
    /// The longest one tool call may run (`--http-request-timeout`); `None` on stdio.
    call_deadline: Option<Duration>,
    /// The lowest level of log notification the client wants (`logging/setLevel`).
    min_level: Arc<AtomicU8>,
    /// The calls in flight, and how to stop them all.
    calls: Stopper,
    /// Where rendered rows wait for the front door to write them (stdio); `None` when the
    /// transport serializes answers itself.
    splices: Option<Arc<Splices>>,
    /// The catalog listings `completion/complete` suggests from.
    completions: Arc<crate::completion::CatalogCache>,
}

/// Where a session's caller comes from.
#[derive(Clone)]
enum Callers {
    /// stdio: one caller for the whole process (`Caller::local`).
    Fixed(Arc<Caller>),
    /// HTTP: each request's own [`Credential`], put into the request by `http::auth`. A
    /// request without one is refused (fail closed). A session (legacy protocol versions)
    /// is bound to the credential that opened it: another credential presenting its session
    /// id is refused, so a leaked session id is worth nothing without its token.
    PerRequest(Arc<std::sync::OnceLock<Arc<str>>>),
}

/// Stops every call in flight and waits for them (main's SIGTERM and end-of-stdin paths).
///
/// Each call's units see `shutdown` cancelled: the running statement is cancelled on the
/// server, the transaction rolled back, and the call answers with `ExecError::ShuttingDown`
/// through the still-open session, so the caller hears about it before the process exits.
#[derive(Clone, Default)]
pub struct Stopper {
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Stopper {
    /// Cancels every call in flight (and any that starts from now on) and waits for them,
    /// at most `bound`. `true` when they all ended within it.
    pub async fn stop(&self, bound: Duration) -> bool {
        self.shutdown.cancel();
        self.drain(bound).await
    }

    /// Waits, at most `bound`, for the calls in flight to end by themselves (HTTP's
    /// graceful stop: `--shutdown-grace`). `true` when none is left.
    pub async fn drain(&self, bound: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(bound, self.tracker.wait())
            .await
            .is_ok()
    }

    /// Calls still in flight.
    pub fn in_flight(&self) -> usize {
        self.tracker.len()
    }
}

/// How long one log notification may take to go out before it is given up: during
/// shutdown the session loop no longer sends them, and a call's response must not wait.
const NOTIFY_BOUND: Duration = Duration::from_millis(500);

impl DsqlServer {
    pub fn new(toolbox: Toolbox) -> DsqlServer {
        let caller = Caller::local(&toolbox.config);
        DsqlServer {
            toolbox: Arc::new(toolbox),
            callers: Callers::Fixed(Arc::new(caller)),
            call_deadline: None,
            min_level: Arc::new(AtomicU8::new(rank(LoggingLevel::Info))),
            calls: Stopper::default(),
            splices: None,
            completions: Arc::default(),
        }
    }

    /// The same server on a transport that writes rendered rows in place (`splice`).
    pub fn with_splices(mut self, splices: Arc<Splices>) -> DsqlServer {
        self.splices = Some(splices);
        self
    }

    /// The same server for HTTP: every request names its own caller (see [`Callers`]), and
    /// a tool call runs at most `deadline`. `session` makes the copy for one new session.
    pub fn for_http(mut self, deadline: Duration) -> DsqlServer {
        self.callers = Callers::PerRequest(Arc::default());
        self.call_deadline = Some(deadline);
        self
    }

    /// A copy for one new HTTP session (or stateless request): same toolbox, pools and
    /// stopper, its own credential binding.
    pub fn session(&self) -> DsqlServer {
        let mut s = self.clone();
        if let Callers::PerRequest(_) = s.callers {
            s.callers = Callers::PerRequest(Arc::default());
        }
        // `logging/setLevel` is one session's wish, not the server's.
        s.min_level = Arc::new(AtomicU8::new(rank(LoggingLevel::Info)));
        s
    }

    /// Who the request with these extensions acts for.
    fn caller(&self, extensions: &rmcp::model::Extensions) -> Result<Arc<Caller>, McpError> {
        let bound = match &self.callers {
            Callers::Fixed(caller) => return Ok(caller.clone()),
            Callers::PerRequest(bound) => bound,
        };
        let credential = extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Credential>())
            .ok_or_else(|| {
                McpError::invalid_request("the request carries no authenticated credential", None)
            })?;
        let owner = bound.get_or_init(|| credential.id.clone());
        if *owner != credential.id {
            tracing::warn!(credential = %credential.id, "a session opened by another credential was refused");
            return Err(McpError::invalid_request(
                "this session was opened with another credential; start a session of your own",
                None,
            ));
        }
        Ok(credential.caller.clone())
    }

    /// The clusters whose tables `caller` may read as resources.
    fn tables<'a>(&'a self, caller: &'a Caller) -> resources::Tables<'a> {
        let clusters = &self.toolbox.clusters;
        if clusters.several() {
            return resources::Tables::Several(
                clusters
                    .visible(caller)
                    .map(|c| (c.name.as_str(), &*c.executor))
                    .collect(),
            );
        }
        match clusters.resolve(None, caller) {
            Ok(Some(c)) => resources::Tables::One(&c.executor),
            _ => resources::Tables::None,
        }
    }

    /// The handle main uses to stop the calls in flight on its way out.
    pub fn stopper(&self) -> Stopper {
        self.calls.clone()
    }

    /// A call's controls: the client's cancellation plus the server's shutdown.
    fn control<'a>(&self, ct: &CancellationToken, observer: &'a dyn Observer) -> Control<'a> {
        let mut ctl = Control::new(ct.clone(), observer);
        ctl.shutdown = self.calls.shutdown.clone();
        ctl
    }

    /// Sends a log notification if the client asked for this level; never fails a call,
    /// and never holds it up for more than `NOTIFY_BOUND`.
    async fn notify(&self, peer: &Peer<RoleServer>, level: LoggingLevel, data: Value) {
        if rank(level) < self.min_level.load(Ordering::Relaxed) {
            return;
        }
        let mut param = LoggingMessageNotificationParam::new(level, data);
        param.logger = Some("aurora-dsql-mcp-server".into());
        match tokio::time::timeout(NOTIFY_BOUND, peer.notify_logging_message(param)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("could not send a log notification: {e}"),
            Err(_) => tracing::debug!("a log notification was not sent in time"),
        }
    }
}

/// Turns executor events into log notifications (retries, reconnects, truncation) and,
/// when the request carried a `progressToken`, MCP progress notifications (`Event::progress`:
/// retries, reconnects, every 10,000 rows read, job waits and batches).
struct Notifier {
    server: DsqlServer,
    peer: Peer<RoleServer>,
    /// The request's `_meta.progressToken`: progress is sent only when the client asked.
    progress_token: Option<ProgressToken>,
    /// Progress goes through one task per call, in order: progress must increase, and one
    /// spawned task per event could overtake another.
    progress: Option<tokio::sync::mpsc::UnboundedSender<ProgressNotificationParam>>,
    /// The task that sends them; awaited before the response (`finish`).
    sending: Option<tokio::task::JoinHandle<()>>,
    /// Progress notifications sent so far: the next one's progress value is one more.
    sent: std::sync::Mutex<u64>,
}

impl Notifier {
    fn new(
        server: DsqlServer,
        peer: Peer<RoleServer>,
        progress_token: Option<ProgressToken>,
    ) -> Notifier {
        let (progress, sending) = match &progress_token {
            None => (None, None),
            Some(_) => {
                let (tx, mut rx) =
                    tokio::sync::mpsc::unbounded_channel::<ProgressNotificationParam>();
                let peer = peer.clone();
                // Ends when the call's Notifier (the only sender) is dropped.
                let task = tokio::spawn(async move {
                    while let Some(param) = rx.recv().await {
                        if let Err(e) = peer.notify_progress(param).await {
                            tracing::debug!("could not send a progress notification: {e}");
                        }
                    }
                });
                (Some(tx), Some(task))
            }
        };
        Notifier {
            server,
            peer,
            progress_token,
            progress,
            sending,
            sent: std::sync::Mutex::new(0),
        }
    }

    /// Waits until the call's progress notifications have gone out: MCP wants none after
    /// the response, and a queued one could otherwise overtake it.
    async fn finish(self) {
        let Notifier {
            progress, sending, ..
        } = self;
        drop(progress);
        if let Some(task) = sending {
            let _ = task.await;
        }
    }
}

impl Observer for Notifier {
    fn event(&self, event: Event) {
        if let (Some(token), Some(tx)) = (&self.progress_token, &self.progress)
            && let Some(message) = event.progress()
        {
            // Numbered and queued under one lock, so the values strictly increase whichever
            // events they come from (a job wait's polls, a retry inside one of them, rows).
            if let Ok(mut sent) = self.sent.lock() {
                *sent += 1;
                let param = ProgressNotificationParam::new(token.clone(), *sent as f64)
                    .with_message(message);
                // The receiver lives as long as this sender; a send cannot fail before.
                let _ = tx.send(param);
            }
        }
        let (level, text) = match &event {
            Event::Retry {
                retry,
                delay,
                reason,
                ..
            } => (
                LoggingLevel::Warning,
                format!(
                    "retrying the whole unit of work (retry {retry}, after {delay:?}): {reason}"
                ),
            ),
            Event::Reconnect { reason, .. } => (
                LoggingLevel::Warning,
                format!(
                    "connection lost; re-running the whole unit on a fresh connection: {reason}"
                ),
            ),
            Event::Truncated { kept, total, why } => (
                LoggingLevel::Notice,
                truncation_note(*kept, Some(*total), why),
            ),
            Event::RowsRead { .. } | Event::Progress { .. } => return,
        };
        let text = capped(&text);
        tracing::info!("{text}");
        let server = self.server.clone();
        let peer = self.peer.clone();
        tokio::spawn(async move { server.notify(&peer, level, Value::String(text)).await });
    }
}

fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// Pretty JSON as the reference prints it (two-space indent, non-ASCII kept).
fn pretty<T: serde::Serialize + ?Sized>(v: &T) -> String {
    // Serializing a JSON value or map cannot fail (keys are strings).
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// A JSON value or row printed as `--text-format` says.
trait ErasedJson {
    fn render(&self, format: crate::config::TextFormat) -> String;
}

impl<T: serde::Serialize> ErasedJson for T {
    fn render(&self, format: crate::config::TextFormat) -> String {
        match format {
            crate::config::TextFormat::Pretty => pretty(self),
            // Serializing a JSON value or map cannot fail (keys are strings).
            crate::config::TextFormat::Compact => serde_json::to_string(self).unwrap_or_default(),
        }
    }
}

/// Turns a tool's output into the MCP result, its text copy printed as `format` says. With
/// `splices` (a transport that writes rendered rows in place, `splice`), a row tool's rows
/// stay rendered (already in `format`) and the result holds markers where they go;
/// otherwise they are turned into values here.
pub fn shape(
    output: Output,
    splices: Option<&Splices>,
    format: crate::config::TextFormat,
) -> CallToolResult {
    let pretty = |v: &dyn ErasedJson| v.render(format);
    match output {
        Output::Rows {
            rows,
            truncated,
            total_rows,
        } => {
            let kept = rows.count;
            let note = truncated.map(|why| truncation_note(kept, Some(total_rows), &why));
            let (mut content, result) = match splices {
                Some(splices) if kept > 0 => {
                    let markers = splices.hold(rows);
                    (
                        vec![ContentBlock::text(markers.block)],
                        Value::String(markers.result),
                    )
                }
                _ => {
                    let (content, objects) = rows.to_values();
                    (content, Value::Array(objects))
                }
            };
            let mut structured = json!({ "result": result });
            if let Some(note) = note {
                content.push(ContentBlock::text(note.clone()));
                structured["truncated"] = Value::Bool(true);
                structured["totalRows"] = Value::from(total_rows);
                structured["note"] = Value::String(note);
            }
            let mut result = CallToolResult::success(content);
            result.structured_content = Some(structured);
            result
        }
        Output::Text(v) => CallToolResult::success(vec![ContentBlock::text(pretty(&v))]),
        Output::Structured(v) => {
            let mut result = CallToolResult::success(vec![ContentBlock::text(pretty(&v))]);
            result.structured_content = Some(v);
            result
        }
        Output::Listing { text, structured } => {
            let mut result = CallToolResult::success(vec![ContentBlock::text(pretty(&text))]);
            result.structured_content = Some(structured);
            result
        }
        // Tenant isolation: the inner result, plus a last line and a field saying so.
        Output::Scoped { inner, tenant } => {
            let mut result = shape(*inner, splices, format);
            result.content.push(ContentBlock::text(format!(
                "(scoped to tenant {tenant}: only its rows were read or changed)"
            )));
            if let Some(Value::Object(m)) = result.structured_content.as_mut() {
                m.insert("scopedToTenant".into(), Value::String(tenant));
            }
            result
        }
    }
}

impl DsqlServer {
    /// What `initialize` and `server/discover` say to `caller`.
    fn info_for(&self, caller: &Caller) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_tools()
            .enable_resources()
            .enable_prompts()
            .enable_completions()
            .build();
        InitializeResult::new(capabilities)
            .with_server_info(Implementation::new(
                "aurora-dsql-mcp-server",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(instructions(&self.toolbox.clusters, caller))
    }

    /// Runs one tool call under `--http-request-timeout` when there is one (not for
    /// [`crate::tools::LONG_RUNNING_TOOLS`], which have bounds of their own): past it the call
    /// is cancelled (its statement cancelled on the server, its transaction rolled back, as
    /// for a client's cancellation) and answers with an error that says why.
    async fn within_deadline(
        &self,
        tool: &str,
        call: impl std::future::Future<Output = Option<Result<Output, ToolError>>>,
        cancel: &CancellationToken,
    ) -> Option<Result<Output, ToolError>> {
        let deadline = self
            .call_deadline
            .filter(|_| !crate::tools::LONG_RUNNING_TOOLS.contains(&tool));
        let Some(deadline) = deadline else {
            return call.await;
        };
        tokio::pin!(call);
        tokio::select! {
            done = &mut call => done,
            _ = tokio::time::sleep(deadline) => {
                cancel.cancel();
                // The unit sees the cancellation and rolls back; wait for that, so the
                // connection goes back clean before the answer.
                let _ = call.await;
                Some(Err(ToolError(format!(
                    "the call ran longer than this server allows ({} s, --http-request-timeout) and was cancelled; \
                     nothing it started was committed. Narrow the query, add LIMIT, or run long work as a migration",
                    deadline.as_secs()
                ))))
            }
        }
    }
}

impl ServerHandler for DsqlServer {
    fn get_info(&self) -> ServerConfig {
        match &self.callers {
            Callers::Fixed(caller) => self.info_for(caller),
            // Only reached for requests that do not override it (initialize and discover
            // do): the server's own ceiling, no credential's view.
            Callers::PerRequest(_) => self.info_for(&Caller::local(&self.toolbox.config)),
        }
    }

    async fn initialize(
        &self,
        request: rmcp::model::InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        let caller = self.caller(&context.extensions)?;
        context.peer.set_peer_info(request.clone());
        let mut result = self.negotiate_initialize(&request)?;
        result.instructions = Some(instructions(&self.toolbox.clusters, &caller));
        Ok(result)
    }

    async fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::DiscoverResult, McpError> {
        let caller = self.caller(&context.extensions)?;
        Ok(rmcp::model::DiscoverResult::from_server_info(
            self.supported_protocol_versions().into_owned(),
            self.info_for(&caller),
        ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let caller = self.caller(&context.extensions)?;
        Ok(ListToolsResult::with_all_items(
            self.toolbox.catalogue(&caller),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let _in_flight = self.calls.tracker.token();
        let caller = self.caller(&context.extensions)?;
        let name = request.name.as_ref();
        let args = request.arguments.unwrap_or_default();
        let started = std::time::Instant::now();
        let observer = Notifier::new(
            self.clone(),
            context.peer.clone(),
            context.meta.get_progress_token(),
        );
        // The client's cancellation, or the deadline's (`within_deadline`).
        let cancel = context.ct.child_token();
        let ctl = self.control(&cancel, &observer);
        let call = self.toolbox.call(name, &args, &caller, &ctl);
        let Some(result) = self.within_deadline(name, call, &cancel).await else {
            return Err(McpError::invalid_params(
                format!("Unknown tool: {name}"),
                None,
            ));
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let result = match result {
            Ok(output) => {
                tracing::info!(tool = name, elapsed_ms, "tool call succeeded");
                shape(
                    output,
                    self.splices.as_deref(),
                    self.toolbox.config.text_format,
                )
            }
            Err(ToolError(message)) => {
                // The message names the problem, never the SQL text or a credential.
                tracing::info!(tool = name, elapsed_ms, "tool call failed");
                let text = capped(&format!("Error executing tool {name}: {message}"));
                self.notify(
                    &context.peer,
                    LoggingLevel::Error,
                    Value::String(text.clone()),
                )
                .await;
                CallToolResult::error(vec![ContentBlock::text(text)])
            }
        };
        drop(ctl);
        observer.finish().await;
        Ok(result.into())
    }

    // Resources and prompts (issue 7): guides, table descriptions, onboarding, migration review.
    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let _in_flight = self.calls.tracker.token();
        let caller = self.caller(&context.extensions)?;
        let ctl = self.control(&context.ct, &crate::executor::Silent);
        Ok(ListResourcesResult::with_all_items(
            resources::list(&self.tables(&caller), &ctl).await,
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let caller = self.caller(&context.extensions)?;
        Ok(ListResourceTemplatesResult::with_all_items(
            resources::templates(&self.tables(&caller)),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let _in_flight = self.calls.tracker.token();
        let caller = self.caller(&context.extensions)?;
        let ctl = self.control(&context.ct, &crate::executor::Silent);
        match resources::read(&self.tables(&caller), &request.uri, &ctl).await {
            Ok(result) => Ok(result.into()),
            Err(resources::ResourceError::NotFound(m)) => Err(McpError::resource_not_found(
                capped(&m),
                // A prefix only: the URI is the caller's input and may be huge.
                Some(json!({"uri": crate::tools::names::preview(&request.uri)})),
            )),
            Err(resources::ResourceError::Failed(m)) => {
                Err(McpError::internal_error(capped(&m), None))
            }
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        Ok(ListPromptsResult::with_all_items(prompts::list()))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        prompts::get(&request.name, request.arguments.as_ref())
            .map(Into::into)
            .map_err(|e| McpError::invalid_params(capped(&e.0), None))
    }

    /// Suggestions for resource-template variables (guide names, clusters, schemas, tables).
    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let _in_flight = self.calls.tracker.token();
        let caller = self.caller(&context.extensions)?;
        let ctl = self.control(&context.ct, &crate::executor::Silent);
        Ok(crate::completion::complete(
            &self.completions,
            &self.tables(&caller),
            self.toolbox.clusters.default_name(),
            &request,
            &ctl,
        )
        .await)
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.min_level.store(rank(request.level), Ordering::Relaxed);
        Ok(())
    }

    /// rmcp routes here any request it cannot read, including a standard method whose params
    /// have the wrong shape (`tools/call` with `"arguments": "x"`). "Method not found" would
    /// mislead the client there, so those get Invalid params (-32602) with the reason.
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        let CustomRequest { method, params, .. } = request;
        if !MCP_REQUEST_METHODS.contains(&method.as_str()) {
            return Err(McpError::new(ErrorCode::METHOD_NOT_FOUND, method, None));
        }
        let why = match method.as_str() {
            "tools/call" => {
                serde_json::from_value::<CallToolRequestParams>(params.unwrap_or_default())
                    .err()
                    .map(|e| e.to_string())
            }
            _ => None,
        }
        .unwrap_or_else(|| "they do not match the method's schema".into());
        Err(McpError::invalid_params(
            format!("Invalid params for {method}: {why}"),
            None,
        ))
    }
}
