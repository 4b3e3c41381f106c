//! `--local`: a DSQL sandbox on this machine's PostgreSQL, so the server can be tried,
//! taught and tested without an AWS account, a cluster or credentials.
//!
//! [`Sandbox::start`] starts a [`cluster::LocalCluster`] (TLS, loopback, a temporary folder
//! or `--local-dir`), installs the emulation of [`emulation::SETUP_SQL`], and the server
//! then runs exactly as against a cluster: endpoint `localhost`, the sandbox's port, user
//! `admin` (DbConnectAdmin tokens are still minted, with placeholder credentials when
//! none are configured; the sandbox trusts any password), `--ssl-root-cert` set to the
//! generated CA. The executor gets [`rewriter`], which turns DSQL-only statements into
//! calls of the emulation (`rewrite.rs`). The cluster stops and its temporary folder is
//! removed when the `Sandbox` drops; if the process dies first, PostgreSQL gets SIGQUIT
//! from the kernel and the folder is swept at the next start.
//!
//! # What the sandbox gives
//!
//! - The rule checker, always on (strict: `power` rules unless `--rules cluster`), so
//!   what a cluster refuses is refused here too, before it reaches PostgreSQL.
//! - REPEATABLE READ as the only isolation (`default_transaction_isolation` in
//!   `postgresql.conf`; other levels refused with 0A000 "Unsupported isolation level").
//! - `CREATE [UNIQUE] INDEX ASYNC` and `ALTER TABLE ASYNC … VALIDATE CONSTRAINT`, returning
//!   a one-row `job_id` result; `sys.jobs` with DSQL's columns; `CALL sys.wait_for_job(id)`.
//! - The 3,000-row transaction limit: 54000 "transaction row limit exceeded" at the
//!   statement that crosses it, cascades included.
//! - `AWS IAM GRANT/REVOKE`: refused with 0A000 "… not available in the local sandbox".
//!
//! # Differences from a real cluster that remain
//!
//! - It is PostgreSQL (the machine's version, e.g. 15 or 16), not DSQL: `version()`, the
//!   catalog, plans, error wording outside the rules above, and the types and functions
//!   DSQL lacks are PostgreSQL's. Statements the rule checker does not know about run
//!   as PostgreSQL runs them.
//! - Concurrency is PostgreSQL's: row locks and waits instead of optimistic concurrency.
//!   Two writers of the same row block, then fail with 40001 "could not serialize access"
//!   (not OC000), and there are no OC001 schema-change conflicts.
//! - Asynchronous jobs are synchronous: the index is built, or the constraint validated,
//!   inside the statement and its transaction, so the job is `completed` or `failed`
//!   before `job_id` returns (never `submitted`/`processing`), and a rolled-back
//!   transaction leaves no job. A failed unique build leaves *no* index (DSQL leaves an
//!   invalid one that still enforces uniqueness). `DROP INDEX` cannot cancel a job.
//!   Indexes are plain PostgreSQL btrees (`btree`, not `btree_index`).
//! - `sys.wait_for_job` also works inside a transaction block (DSQL refuses that with
//!   0A000; the server's tools always run it outside one). An unknown but well-formed id
//!   is 42704 "job … does not exist".
//! - Only the row limit is enforced: not the 10 MiB transaction size, the 5-minute
//!   transaction age, the 1 MiB value, 2 MiB row and key-size limits, nor the
//!   connection limits (60-minute lifetime, connection rate). Rows changed through
//!   tables that existed before the sandbox's event trigger (none, unless made by hand
//!   as the superuser) are not counted. Each table carries three `dsql_row_limit_*`
//!   triggers, visible in `pg_trigger`.
//! - No IAM: tokens are minted but not checked (`trust` authentication over TLS);
//!   `AWS IAM GRANT/REVOKE` and `sys.iam_pg_role_mappings` are not available.
//! - One database (`postgres`) and one Region: no multi-Region peers, witness, cluster
//!   lifecycle or control-plane API.
//! - Isolation: the rewriter refuses only levels other than REPEATABLE READ; that
//!   `SET TRANSACTION … REPEATABLE READ` / `READ ONLY` are refused too, as DSQL refuses
//!   every `SET TRANSACTION` (0A000), is the rule checker's doing (`set_transaction`).

pub mod cluster;
pub mod emulation;
pub mod rewrite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

pub use cluster::{ClusterError, ClusterOptions, LocalCluster};

use crate::executor::Rewriter;

/// Prefix of the sandbox's temporary folders (in the system temp folder).
pub const TEMP_PREFIX: &str = "aurora-dsql-sandbox-";
/// Region reported for the sandbox when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";
/// `provider_name` of the placeholder credentials used when none are configured.
pub const PLACEHOLDER_PROVIDER: &str = "LocalSandboxPlaceholder";

/// A running sandbox; dropping it stops PostgreSQL and removes a temporary folder.
pub struct Sandbox {
    cluster: LocalCluster,
}

impl Sandbox {
    /// Starts PostgreSQL (in `dir`, kept between runs, or a temporary folder) and installs
    /// the DSQL emulation. Blocks until ready.
    pub fn start(dir: Option<PathBuf>) -> Result<Sandbox, ClusterError> {
        let mut opts = ClusterOptions::new(TEMP_PREFIX, "aurora-dsql-mcp-server local sandbox CA");
        opts.dir = dir;
        opts.extra_conf = emulation::CONF.to_owned();
        let cluster = LocalCluster::start(&opts)?;
        cluster
            .superuser_batch(emulation::SETUP_SQL)
            .map_err(|e| ClusterError(format!("installing the DSQL emulation failed: {e}")))?;
        Ok(Sandbox { cluster })
    }

    pub fn cluster(&self) -> &LocalCluster {
        &self.cluster
    }

    pub fn port(&self) -> u16 {
        self.cluster.port()
    }

    pub fn ca_path(&self) -> &Path {
        self.cluster.ca_path()
    }
}

/// The executor hook that makes DSQL-only statements run in the sandbox.
pub fn rewriter() -> Rewriter {
    Arc::new(rewrite::rewrite)
}

/// The SDK configuration tokens are minted with in the sandbox: static credentials, never
/// a network credential source. The environment's `AWS_ACCESS_KEY_ID` /
/// `AWS_SECRET_ACCESS_KEY` when set, else placeholders (`local`/`local`): the sandbox
/// accepts any token, and minting one keeps the path the same as against a cluster.
pub async fn sdk_config(region: &str) -> SdkConfig {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let credentials = match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => {
            Credentials::new(id, secret, get("AWS_SESSION_TOKEN"), None, "Environment")
        }
        _ => Credentials::new("local", "local", None, None, PLACEHOLDER_PROVIDER),
    };
    // The loader reads only local settings here: the credentials are given.
    Box::pin(
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .credentials_provider(credentials)
            .load(),
    )
    .await
}
