//! Configuration: the command line and environment, resolved once at start-up.
//!
//! Two ways of configuring the server must keep working side by side:
//! - the reference server's flags (`--cluster_endpoint`, `--database_user`, `--region`, ...),
//!   spelled exactly as the Python `awslabs.aurora-dsql-mcp-server` spells them, so an
//!   existing `mcp.json` only swaps the command;
//! - the Kiro power's environment (`CLUSTER`, `REGION`, `AWS_PROFILE`).
//!
//! Flags win over the environment. A missing cluster is not an error: the server starts
//! without database tools' backing ("docs-only"), as the reference does.
//!
//! Or several clusters, from `--clusters FILE` (`cluster_file.rs`). Either way the result is
//! a list of [`ClusterConfig`]s and the default's name: the flags' cluster is a list of one
//! named [`FLAGS_CLUSTER`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::executor::{Limits, RetryPolicy};

mod http;
pub use http::{DEFAULT_LISTEN, HttpArgs, HttpConfig, OAuthConfig, Transport, TransportKind};

/// `--text-format`: every result is sent twice, as structuredContent and as text; this says
/// how the text copy is printed (issue 14).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TextFormat {
    /// Indented JSON, as the reference server prints it.
    #[default]
    Pretty,
    /// One line of JSON per block: the same values in fewer bytes and tokens.
    Compact,
}
use crate::policy::{Access, AllowedFunctions, RuleSet};

/// The name of the one cluster configured by flags or environment (what an HTTP
/// credential's `clusters = [...]` names to reach it).
pub const FLAGS_CLUSTER: &str = "default";

/// The database port when none is given (DSQL's).
pub const DEFAULT_PORT: u16 = 5432;

/// The reference server's effective knowledge-server default (its argparse default).
pub const DEFAULT_KNOWLEDGE_SERVER: &str = "https://xmfe3hc3pk.execute-api.us-east-2.amazonaws.com";

/// The command line, as parsed by clap. See [`Config::from_args`] for how it is resolved.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "aurora-dsql-mcp-server",
    version,
    about = "MCP server for Amazon Aurora DSQL (stdio, or Streamable HTTP with --transport http). Read-only unless --allow-writes.",
    long_about = None
)]
pub struct Args {
    /// Cluster endpoint, e.g. <id>.dsql.us-east-1.on.aws (env CLUSTER also accepts a bare cluster id).
    #[arg(global = true, long = "cluster_endpoint", value_name = "HOST")]
    pub cluster_endpoint: Option<String>,

    /// Database user; `admin` mints DbConnectAdmin tokens, any other role DbConnect.
    #[arg(global = true, long = "database_user", value_name = "USER")]
    pub database_user: Option<String>,

    /// AWS region of the cluster (env REGION, then AWS_REGION).
    #[arg(global = true, long = "region", value_name = "REGION")]
    pub region: Option<String>,

    /// Allow write operations (transact/execute); without it every call is read-only.
    #[arg(global = true, long = "allow-writes")]
    pub allow_writes: bool,

    /// AWS profile for credentials (env AWS_PROFILE).
    #[arg(global = true, long = "profile", value_name = "PROFILE")]
    pub profile: Option<String>,

    /// Remote knowledge server for the documentation tools (https only).
    #[arg(global = true, long = "knowledge-server", value_name = "URL", default_value = DEFAULT_KNOWLEDGE_SERVER)]
    pub knowledge_server: String,

    /// Timeout in seconds for knowledge-server requests.
    #[arg(
        global = true,
        long = "knowledge-timeout",
        value_name = "SECONDS",
        default_value_t = 30.0,
        allow_negative_numbers = true
    )]
    pub knowledge_timeout: f64,

    /// Database port [default: 5432] (DSQL listens on 5432; change it only for a local stand-in).
    #[arg(global = true, long = "port", value_name = "PORT")]
    pub port: Option<u16>,

    /// PEM file of the CA that signs the server certificate, instead of the system and
    /// webpki roots (for a local stand-in). Verification is always on.
    #[arg(
        global = true,
        long = "ssl-root-cert",
        value_name = "PATH",
        env = "PGSSLROOTCERT"
    )]
    pub ssl_root_cert: Option<PathBuf>,

    /// Which DSQL rules the checker enforces: `power` (default: what the cluster refuses
    /// plus the power's policy on foreign keys and JSON columns) or `cluster`.
    #[arg(global = true, long = "rules", value_name = "SET", env = "DSQL_RULES", value_parser = parse_rules, default_value = "power")]
    pub rules: RuleSet,

    /// Bound on every tool call, retries included; the running statement is cancelled on the
    /// server when it expires. Below agent hosts' own 60 s request timeout.
    #[arg(
        global = true,
        long = "query-timeout",
        value_name = "SECONDS",
        default_value_t = 50.0,
        allow_negative_numbers = true
    )]
    pub query_timeout: f64,

    /// Rows kept from one result; the rest is cut and the result says so.
    #[arg(
        global = true,
        long = "max-rows",
        value_name = "N",
        default_value_t = 1000
    )]
    pub max_rows: usize,

    /// Bytes of row JSON kept from one result.
    #[arg(global = true, long = "max-result-bytes", value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_result_bytes: usize,

    /// How a result's text content is printed beside its structuredContent: `pretty`
    /// (indented JSON, as the reference prints it; the default) or `compact` (one line each).
    #[arg(global = true, long = "text-format", value_name = "FORMAT", value_enum, default_value_t = TextFormat::Pretty)]
    pub text_format: TextFormat,

    /// Bytes of row JSON all calls together may hold at once; a result that would go past it
    /// is cut and says so. Default: 256 MiB, or --max-result-bytes if that is larger.
    #[arg(global = true, long = "result-memory-bytes", value_name = "BYTES")]
    pub result_memory_bytes: Option<usize>,

    /// Re-runs of a unit after an OCC conflict (SQLSTATE 40001) or a waking cluster.
    #[arg(
        global = true,
        long = "occ-retries",
        value_name = "N",
        default_value_t = 3
    )]
    pub occ_retries: u32,

    /// First backoff delay in milliseconds; doubles per retry, with jitter.
    #[arg(
        global = true,
        long = "occ-backoff-ms",
        value_name = "MS",
        default_value_t = 100
    )]
    pub occ_backoff_ms: u64,

    /// Longest backoff delay in milliseconds.
    #[arg(
        global = true,
        long = "occ-backoff-max-ms",
        value_name = "MS",
        default_value_t = 5000
    )]
    pub occ_backoff_max_ms: u64,

    /// A function of your own that read-only calls may use (`NAME` or `SCHEMA.NAME`;
    /// repeatable). Built-ins without side effects need no flag; the refused set (host,
    /// files, SQL-text executors, session and server control) cannot be allowed.
    #[arg(global = true, long = "allow-function", value_name = "NAME")]
    pub allow_function: Vec<String>,

    /// Bind every SQL call to one tenant (env DSQL_TENANT): reads see only its rows, writes
    /// touch only its rows, DDL is refused (see README, "Tenant isolation").
    #[arg(global = true, long = "tenant", value_name = "VALUE")]
    pub tenant: Option<String>,

    /// The column that holds the tenant (as stored in the catalog).
    #[arg(
        global = true,
        long = "tenant-column",
        value_name = "NAME",
        default_value = "tenant_id"
    )]
    pub tenant_column: String,

    /// A table without the tenant column that tenant calls may read (reference data):
    /// `NAME` (in `public`) or `SCHEMA.NAME`; repeatable.
    #[arg(global = true, long = "shared-table", value_name = "NAME")]
    pub shared_table: Vec<String>,

    /// Serve a local DSQL sandbox instead of a cluster: a throw-away PostgreSQL of this
    /// machine's binaries, with TLS and DSQL's rules (see README, "Try it locally"). Connects
    /// as `admin`, or as the read-only `reader` with `--database_user reader`.
    #[arg(global = true, long = "local", conflicts_with_all = ["cluster_endpoint", "clusters"])]
    pub local: bool,

    /// Serve several clusters from a TOML file (`default = "name"` and one
    /// `[clusters.NAME]` table each: endpoint, region, user, profile, port, ssl_root_cert,
    /// allow_writes, max_rows, max_result_bytes, query_timeout, pool_size; see README).
    /// Replaces --cluster_endpoint, --database_user, --region, --port and --allow-writes.
    #[arg(global = true, long = "clusters", value_name = "FILE")]
    pub clusters: Option<PathBuf>,

    /// With --local: keep the sandbox's data in this folder between runs.
    #[arg(
        global = true,
        long = "local-dir",
        value_name = "PATH",
        requires = "local"
    )]
    pub local_dir: Option<PathBuf>,

    /// With --local: each async job (CREATE INDEX ASYNC, ALTER TABLE ASYNC … VALIDATE)
    /// reports `processing` in sys.jobs for this many seconds before its final state, as a
    /// build on a cluster takes time [default: 0, final at once].
    #[arg(
        global = true,
        long = "local-job-seconds",
        value_name = "SECONDS",
        requires = "local",
        default_value_t = 0,
        hide_default_value = true
    )]
    pub local_job_seconds: u64,

    /// How long a migration waits for one async job (CREATE INDEX ASYNC, ALTER TABLE ASYNC …
    /// VALIDATE) before it stops, failing closed; the job keeps running.
    #[arg(
        global = true,
        long = "job-timeout",
        value_name = "SECONDS",
        default_value_t = 1800
    )]
    pub job_timeout: u64,

    /// `--transport http` and the flags of a shared server (`config::http`).
    #[command(flatten)]
    pub http: HttpArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do instead of serving MCP.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Diagnose the configuration (the same flags and environment as serving): endpoint,
    /// credentials, TLS, connection, server version, tables, and a timed `SELECT 1`.
    /// Prints one line per check; exit code 0 only when all pass.
    Check,
    /// Apply every `*.sql` file of DIR in lexical order as a migration named by its file
    /// stem (resuming where a previous run stopped); needs --allow-writes unless --dry-run.
    /// One line per step; exit code 0 only when everything applied.
    Migrate {
        /// Show the plan of each file (and what the history has applied) and change nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// The folder of migration files.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

fn parse_rules(s: &str) -> Result<RuleSet, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "power" => Ok(RuleSet::Power),
        "cluster" => Ok(RuleSet::Cluster),
        other => Err(format!("expected `power` or `cluster`, got `{other}`")),
    }
}

/// Where the database is and who connects to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub endpoint: String,
    pub port: u16,
    pub user: String,
    pub region: String,
    pub profile: Option<String>,
    pub ssl_root_cert: Option<PathBuf>,
}

impl Database {
    /// Whether tokens are minted for the built-in `admin` role (DbConnectAdmin).
    pub fn is_admin(&self) -> bool {
        self.user == "admin"
    }
}

/// One configured cluster: where it is, its own access mode and its own bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// [`FLAGS_CLUSTER`] for the flags' cluster; the table name in a clusters file.
    pub name: String,
    pub database: Database,
    /// What calls may do on this cluster (a caller's ceiling may lower it, never raise it).
    pub access: Access,
    /// Bounds on one call (the result budget in it is the process-wide one).
    pub limits: Limits,
    /// Connections its pool may hold at once.
    pub pool_size: usize,
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The configured clusters, sorted by name. Empty when endpoint, user or region could
    /// not be resolved: database tools then answer "Database not configured".
    pub clusters: Vec<ClusterConfig>,
    /// The cluster a call uses when it names none (the only one without a file).
    pub default_cluster: String,
    /// Whether the clusters came from `--clusters FILE`.
    pub from_file: bool,
    /// What is missing when no cluster is configured, for the start-up warning.
    pub missing: Vec<&'static str>,
    /// The most any cluster allows (`--allow-writes`, or any `allow_writes = true` of the
    /// file): the local caller's ceiling. A call's access is its cluster's mode, lowered
    /// by the caller's ceiling (`Call::access`).
    pub access: Access,
    /// `--allow-function` names.
    pub allowed_functions: AllowedFunctions,
    pub rules: RuleSet,
    /// `--tenant` / `DSQL_TENANT`: the local caller's tenant (see `policy::tenant`).
    pub tenant: Option<String>,
    /// `--tenant-column` and `--shared-table`.
    pub tenancy: crate::policy::Tenancy,
    /// `--text-format`: how results' text content is printed.
    pub text_format: TextFormat,
    pub knowledge_server: String,
    pub knowledge_timeout: Duration,
    /// `--job-timeout`: a migration's longest wait for one async job.
    pub job_timeout: Duration,
    pub limits: Limits,
    pub retry: RetryPolicy,
    /// `--transport`: stdio, or HTTP with its settings.
    pub transport: Transport,
}

/// A configuration the server cannot start with; printed as one line on stderr.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("Knowledge server URL must use HTTPS protocol. Got: {0}")]
    KnowledgeNotHttps(String),
    #[error("Knowledge server URL is malformed. Got: {0}")]
    KnowledgeMalformed(String),
    #[error("Knowledge timeout must be positive. Got: {0}")]
    KnowledgeTimeout(f64),
    #[error("--ssl-root-cert {0}: file cannot be read: {1}")]
    RootCert(String, String),
    #[error("{0}")]
    Invalid(String),
}

/// The environment variables the server reads, captured so resolution is testable.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub cluster: Option<String>,
    pub region: Option<String>,
    pub aws_region: Option<String>,
    pub aws_profile: Option<String>,
    pub tenant: Option<String>,
}

impl Env {
    /// Reads the process environment; empty values count as unset.
    pub fn from_process() -> Env {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Env {
            cluster: get("CLUSTER"),
            region: get("REGION"),
            aws_region: get("AWS_REGION"),
            aws_profile: get("AWS_PROFILE"),
            tenant: get("DSQL_TENANT"),
        }
    }
}

impl Config {
    /// The default cluster's database (the only one's, without a file).
    pub fn database(&self) -> Option<&Database> {
        self.default_cluster_config().map(|c| &c.database)
    }

    /// The default cluster.
    pub fn default_cluster_config(&self) -> Option<&ClusterConfig> {
        self.clusters
            .iter()
            .find(|c| c.name == self.default_cluster)
    }

    /// Resolves flags and environment into a configuration.
    pub fn from_args(args: Args, env: &Env) -> Result<Config, ConfigError> {
        let knowledge_server = validate_knowledge_url(&args.knowledge_server)?;
        if !(args.knowledge_timeout > 0.0 && args.knowledge_timeout.is_finite()) {
            return Err(ConfigError::KnowledgeTimeout(args.knowledge_timeout));
        }
        if !(args.query_timeout > 0.0 && args.query_timeout.is_finite()) {
            return Err(ConfigError::Invalid(format!(
                "--query-timeout must be a positive number of seconds. Got: {}",
                args.query_timeout
            )));
        }
        if args.max_rows == 0 || args.max_result_bytes == 0 || args.result_memory_bytes == Some(0) {
            return Err(ConfigError::Invalid(
                "--max-rows, --max-result-bytes and --result-memory-bytes must be at least 1"
                    .into(),
            ));
        }
        if args.occ_backoff_ms > args.occ_backoff_max_ms {
            return Err(ConfigError::Invalid(
                "--occ-backoff-ms must not exceed --occ-backoff-max-ms".into(),
            ));
        }
        if let Some(path) = &args.ssl_root_cert {
            std::fs::metadata(path)
                .map_err(|e| ConfigError::RootCert(path.display().to_string(), e.to_string()))?;
        }

        let trimmed = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        if args.port == Some(0) {
            return Err(ConfigError::Invalid(
                "--port must be between 1 and 65535".into(),
            ));
        }
        let limits = Limits {
            timeout: Duration::from_secs_f64(args.query_timeout),
            max_rows: args.max_rows,
            max_bytes: args.max_result_bytes,
            budget_bytes: 0, // set below, once every cluster's max_bytes is known
        };
        let mut missing = Vec::new();
        let (mut clusters, default_cluster) = match &args.clusters {
            Some(path) => {
                // The file describes every cluster: a flag that describes one is a mistake
                // (which would win?), so it is refused rather than ignored.
                let one_cluster_flags = [
                    ("--cluster_endpoint", args.cluster_endpoint.is_some()),
                    ("the CLUSTER environment variable", env.cluster.is_some()),
                    ("--database_user", args.database_user.is_some()),
                    ("--region", args.region.is_some()),
                    ("--port", args.port.is_some()),
                    ("--allow-writes", args.allow_writes),
                ];
                if let Some((flag, _)) = one_cluster_flags.iter().find(|(_, given)| *given) {
                    return Err(ConfigError::Invalid(format!(
                        "--clusters and {flag} cannot be used together: the clusters file describes every cluster (endpoint, region, user, port, allow_writes per cluster); remove {flag} or put it in the file"
                    )));
                }
                let defaults = crate::cluster_file::Defaults {
                    profile: trimmed(&args.profile).or_else(|| env.aws_profile.clone()),
                    ssl_root_cert: args.ssl_root_cert.clone(),
                    limits,
                    pool_size: crate::connection::pool::MAX_SIZE,
                };
                let resolved = crate::cluster_file::load(path, &defaults)?;
                (resolved.clusters, resolved.default)
            }
            None => {
                let database = Self::flags_database(&args, env, &mut missing)?;
                let clusters = database
                    .map(|database| ClusterConfig {
                        name: FLAGS_CLUSTER.to_owned(),
                        database,
                        access: if args.allow_writes {
                            Access::ReadWrite
                        } else {
                            Access::ReadOnly
                        },
                        limits,
                        pool_size: crate::connection::pool::MAX_SIZE,
                    })
                    .into_iter()
                    .collect();
                (clusters, FLAGS_CLUSTER.to_owned())
            }
        };
        // One process-wide budget: by default large enough for one whole result of the
        // cluster with the largest bound.
        let largest = clusters
            .iter()
            .map(|c| c.limits.max_bytes)
            .fold(args.max_result_bytes, usize::max);
        let budget_bytes = args
            .result_memory_bytes
            .unwrap_or_else(|| crate::executor::default_budget(largest));
        for c in &mut clusters {
            c.limits.budget_bytes = budget_bytes;
        }
        let access = if clusters.iter().any(|c| c.access == Access::ReadWrite) || args.allow_writes
        {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };

        let allowed_functions =
            AllowedFunctions::parse(&args.allow_function).map_err(ConfigError::Invalid)?;
        let tenant = args.tenant.clone().or_else(|| env.tenant.clone());
        if tenant
            .as_deref()
            .is_some_and(|t| t.is_empty() || t.contains('\0'))
        {
            return Err(ConfigError::Invalid(
                "--tenant must be a non-empty value without NUL bytes".into(),
            ));
        }
        let tenancy = crate::policy::Tenancy::new(&args.tenant_column, &args.shared_table)
            .map_err(ConfigError::Invalid)?;
        let transport = args.http.resolve()?;
        Ok(Config {
            transport,
            tenant,
            tenancy,
            clusters,
            default_cluster,
            from_file: args.clusters.is_some(),
            missing,
            allowed_functions,
            access,
            rules: args.rules,
            text_format: args.text_format,
            knowledge_server,
            knowledge_timeout: Duration::from_secs_f64(args.knowledge_timeout),
            job_timeout: Duration::from_secs(args.job_timeout.max(1)),
            limits: Limits {
                budget_bytes,
                ..limits
            },
            retry: RetryPolicy {
                max_retries: args.occ_retries,
                base: Duration::from_millis(args.occ_backoff_ms),
                cap: Duration::from_millis(args.occ_backoff_max_ms),
            },
        })
    }

    /// The one cluster of the reference's flags and the power's environment, or `None`
    /// (with what is missing) when they do not name one.
    fn flags_database(
        args: &Args,
        env: &Env,
        missing: &mut Vec<&'static str>,
    ) -> Result<Option<Database>, ConfigError> {
        let trimmed = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let flag_endpoint = trimmed(&args.cluster_endpoint);
        let from_env = flag_endpoint.is_none() && env.cluster.is_some();
        let raw_endpoint = flag_endpoint.or_else(|| trimmed(&env.cluster));

        let region = trimmed(&args.region)
            .or_else(|| trimmed(&env.region))
            .or_else(|| trimmed(&env.aws_region))
            .or_else(|| raw_endpoint.as_deref().and_then(region_of_endpoint));

        let endpoint = match (&raw_endpoint, &region) {
            (Some(e), Some(r)) if is_cluster_id(e) => Some(format!("{e}.dsql.{r}.on.aws")),
            (Some(e), None) if is_cluster_id(e) => None,
            (Some(e), _) => Some(validate_host(e)?),
            (None, _) => None,
        };

        let user = trimmed(&args.database_user).or_else(|| from_env.then(|| "admin".to_owned()));

        if endpoint.is_none() {
            missing.push(if raw_endpoint.is_some() {
                "--region (needed to expand the CLUSTER id)"
            } else {
                "--cluster_endpoint (or CLUSTER)"
            });
        }
        if user.is_none() {
            missing.push("--database_user");
        }
        if region.is_none() && raw_endpoint.is_none() {
            missing.push("--region (or REGION)");
        }

        Ok(match (endpoint, user, region) {
            (Some(endpoint), Some(user), Some(region)) => Some(Database {
                endpoint,
                port: args.port.unwrap_or(DEFAULT_PORT),
                user,
                region,
                profile: trimmed(&args.profile).or_else(|| env.aws_profile.clone()),
                ssl_root_cert: args.ssl_root_cert.clone(),
            }),
            _ => None,
        })
    }
}

/// A DSQL cluster id: 26 lower-case letters and digits.
pub fn is_cluster_id(s: &str) -> bool {
    s.len() == 26
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The region inside a DSQL endpoint (`<id>.dsql[-suffix].<region>.on.aws`), if it is one.
pub fn region_of_endpoint(endpoint: &str) -> Option<String> {
    let host = endpoint.strip_suffix(".on.aws")?;
    let (rest, region) = host.rsplit_once('.')?;
    let (_, service) = rest.rsplit_once('.')?;
    (service.starts_with("dsql") && !region.is_empty()).then(|| region.to_owned())
}

pub(crate) fn validate_host(host: &str) -> Result<String, ConfigError> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if ok {
        Ok(host.to_ascii_lowercase())
    } else {
        Err(ConfigError::Invalid(format!(
            "cluster endpoint `{host}` is not a host name (expected <cluster id>.dsql.<region>.on.aws or a 26-character cluster id)"
        )))
    }
}

/// https only; plain http only to a loopback address (tests and local mirrors).
fn validate_knowledge_url(url: &str) -> Result<String, ConfigError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| ConfigError::KnowledgeNotHttps(url.to_owned()))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host_of_authority(authority);
    if host.is_empty() {
        return Err(ConfigError::KnowledgeMalformed(url.to_owned()));
    }
    let loopback = is_loopback_host(host);
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(url.to_owned()),
        "http" if loopback => Ok(url.to_owned()),
        _ => Err(ConfigError::KnowledgeNotHttps(url.to_owned())),
    }
}

/// Whether a URL's host (without brackets) is this machine: `localhost`, 127.0.0.0/8 or
/// `::1`. The one rule for every URL that may use plain http (the knowledge server, the
/// OAuth issuer and its keys).
pub(crate) fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The host of `user@host:port` or `[v6]:port`.
fn host_of_authority(authority: &str) -> &str {
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    hostport.split(':').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("aurora-dsql-mcp-server").chain(list.iter().copied()))
            .unwrap()
    }

    #[test]
    fn reference_flags_resolve() {
        let c = Config::from_args(
            args(&[
                "--cluster_endpoint",
                "abc.dsql.us-east-1.on.aws",
                "--database_user",
                "admin",
                "--region",
                "us-east-1",
            ]),
            &Env::default(),
        )
        .unwrap();
        let db = c.database().unwrap().clone();
        assert_eq!(db.endpoint, "abc.dsql.us-east-1.on.aws");
        assert_eq!(db.port, 5432);
        assert!(db.is_admin());
        assert_eq!(c.access, Access::ReadOnly);
        assert_eq!(c.rules, RuleSet::Power);
        assert_eq!(c.knowledge_server, DEFAULT_KNOWLEDGE_SERVER);
        assert_eq!(c.knowledge_timeout, Duration::from_secs(30));
    }

    #[test]
    fn the_result_budget_defaults_to_256_mib_or_one_whole_result() {
        let limits =
            |list: &[&str]| Config::from_args(args(list), &Env::default()).map(|c| c.limits);
        assert_eq!(limits(&[]).unwrap().budget_bytes, 256 << 20);
        assert_eq!(
            limits(&["--max-result-bytes", "400000000"])
                .unwrap()
                .budget_bytes,
            400_000_000
        );
        assert_eq!(
            limits(&["--result-memory-bytes", "1000"])
                .unwrap()
                .budget_bytes,
            1000
        );
        assert_eq!(
            limits(&["--result-memory-bytes", "0"])
                .unwrap_err()
                .to_string(),
            "--max-rows, --max-result-bytes and --result-memory-bytes must be at least 1"
        );
    }

    #[test]
    fn power_env_expands_cluster_id_and_defaults_admin() {
        let env = Env {
            cluster: Some("abcdefghijklmnopqrstuvwxyz".into()),
            aws_region: Some("eu-west-1".into()),
            aws_profile: Some("dev".into()),
            ..Env::default()
        };
        let c = Config::from_args(args(&[]), &env).unwrap();
        let db = c.database().unwrap().clone();
        assert_eq!(
            db.endpoint,
            "abcdefghijklmnopqrstuvwxyz.dsql.eu-west-1.on.aws"
        );
        assert_eq!(db.user, "admin");
        assert_eq!(db.region, "eu-west-1");
        assert_eq!(db.profile.as_deref(), Some("dev"));
    }

    #[test]
    fn flags_win_over_env() {
        let env = Env {
            cluster: Some("abcdefghijklmnopqrstuvwxyz".into()),
            region: Some("eu-west-1".into()),
            aws_profile: Some("envprofile".into()),
            ..Env::default()
        };
        let c = Config::from_args(
            args(&[
                "--cluster_endpoint",
                "other.dsql.us-west-2.on.aws",
                "--region",
                "us-west-2",
                "--database_user",
                "app",
                "--profile",
                "flagprofile",
                "--allow-writes",
            ]),
            &env,
        )
        .unwrap();
        let db = c.database().unwrap().clone();
        assert_eq!(db.endpoint, "other.dsql.us-west-2.on.aws");
        assert_eq!(db.region, "us-west-2");
        assert_eq!(db.user, "app");
        assert!(!db.is_admin());
        assert_eq!(db.profile.as_deref(), Some("flagprofile"));
        assert_eq!(c.access, Access::ReadWrite);
    }

    #[test]
    fn region_comes_from_endpoint_when_not_given() {
        assert_eq!(
            region_of_endpoint("abc.dsql.ap-northeast-1.on.aws").as_deref(),
            Some("ap-northeast-1")
        );
        assert_eq!(
            region_of_endpoint("abc.dsql-gamma.us-east-1.on.aws").as_deref(),
            Some("us-east-1")
        );
        assert_eq!(region_of_endpoint("localhost"), None);
        let env = Env {
            cluster: Some("abc.dsql.us-east-2.on.aws".into()),
            ..Env::default()
        };
        let db = Config::from_args(args(&[]), &env)
            .unwrap()
            .database()
            .unwrap()
            .clone();
        assert_eq!(db.region, "us-east-2");
    }

    #[test]
    fn missing_pieces_leave_database_unconfigured() {
        let c = Config::from_args(args(&[]), &Env::default()).unwrap();
        assert!(c.database().is_none());
        assert_eq!(
            c.missing,
            vec![
                "--cluster_endpoint (or CLUSTER)",
                "--database_user",
                "--region (or REGION)"
            ]
        );
        // A flag-given endpoint without a user stays unconfigured, as in the reference.
        let c = Config::from_args(
            args(&["--cluster_endpoint", "localhost", "--region", "us-east-1"]),
            &Env::default(),
        )
        .unwrap();
        assert!(c.database().is_none());
        assert_eq!(c.missing, vec!["--database_user"]);
        // A bare cluster id cannot be expanded without a region.
        let env = Env {
            cluster: Some("abcdefghijklmnopqrstuvwxyz".into()),
            ..Env::default()
        };
        let c = Config::from_args(args(&[]), &env).unwrap();
        assert!(c.database().is_none());
        assert_eq!(
            c.missing,
            vec!["--region (needed to expand the CLUSTER id)"]
        );
    }

    #[test]
    fn knowledge_server_must_be_https_except_loopback() {
        let bad = |url: &str| {
            Config::from_args(args(&["--knowledge-server", url]), &Env::default()).unwrap_err()
        };
        assert_eq!(
            bad("http://example.com").to_string(),
            "Knowledge server URL must use HTTPS protocol. Got: http://example.com"
        );
        assert_eq!(
            bad("https://").to_string(),
            "Knowledge server URL is malformed. Got: https://"
        );
        assert_eq!(
            bad("ftp://x").to_string(),
            "Knowledge server URL must use HTTPS protocol. Got: ftp://x"
        );
        for ok in [
            "http://127.0.0.1:8080/mcp",
            "http://localhost:9",
            "http://[::1]:80",
            "https://kb.example",
        ] {
            assert!(
                Config::from_args(args(&["--knowledge-server", ok]), &Env::default()).is_ok(),
                "{ok}"
            );
        }
    }

    #[test]
    fn knowledge_timeout_must_be_positive() {
        let err =
            Config::from_args(args(&["--knowledge-timeout", "0"]), &Env::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Knowledge timeout must be positive. Got: 0"
        );
        let err =
            Config::from_args(args(&["--knowledge-timeout", "-1.5"]), &Env::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Knowledge timeout must be positive. Got: -1.5"
        );
    }

    #[test]
    fn local_and_check_parse_in_any_order() {
        let a = args(&["check", "--local", "--allow-writes"]);
        assert_eq!(a.command, Some(Command::Check));
        assert!(a.local && a.allow_writes);
        let a = args(&["--local", "check"]);
        assert!(a.local);
        assert_eq!(a.command, Some(Command::Check));
        let a = args(&["--local", "--local-dir", "/tmp/kept"]);
        assert_eq!(a.local_dir, Some(PathBuf::from("/tmp/kept")));
        assert_eq!(a.command, None);
        assert!(Args::try_parse_from(["x", "--local-dir", "/tmp/kept"]).is_err());
        assert!(Args::try_parse_from(["x", "--local", "--cluster_endpoint", "h"]).is_err());
    }

    #[test]
    fn rules_switch_parses() {
        assert_eq!(args(&["--rules", "cluster"]).rules, RuleSet::Cluster);
        assert!(Args::try_parse_from(["x", "--rules", "lax"]).is_err());
    }

    #[test]
    fn bad_endpoint_is_rejected() {
        let err = Config::from_args(
            args(&[
                "--cluster_endpoint",
                "bad host/../",
                "--region",
                "r",
                "--database_user",
                "u",
            ]),
            &Env::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("is not a host name"), "{err}");
    }
}
