//! `--local`: a DSQL sandbox on this machine's PostgreSQL, so the server can be tried,
//! taught and tested without an AWS account, a cluster or credentials.
//!
//! [`Sandbox::start`] starts a [`cluster::LocalCluster`] (TLS, loopback, a temporary folder
//! or `--local-dir`), installs the emulation of [`emulation::SETUP_SQL`], and the server
//! then runs exactly as against a cluster: endpoint `localhost`, the sandbox's port, user
//! `admin` (or `reader` with `--database_user reader`), `--ssl-root-cert` set to the
//! generated CA. The executor gets [`rewriter`], which turns DSQL-only statements into
//! calls of the emulation (`rewrite.rs`). The cluster stops and its temporary folder is
//! removed when the `Sandbox` drops; if the process dies first, PostgreSQL gets SIGQUIT
//! from the kernel and the folder is swept at the next start.
//!
//! # Who can log in
//!
//! Only this server. Each start draws a random password (32 bytes from the system's
//! secure generator, hex), kept in this process's memory only: the database receives
//! its SCRAM-SHA-256 verifier (over the private socket), and the server's connections
//! send it where a cluster would get an IAM token ([`TokenMinter::with_password`]; no
//! AWS credentials are needed or read). Over TCP `pg_hba.conf` accepts only TLS with
//! SCRAM and only the login roles [`LOGIN_ROLES`]; the `postgres` superuser is rejected
//! over TCP and reachable only through the Unix socket in the sandbox's private folder
//! (mode 0700), which is how the emulation is installed ([`cluster::Auth::Scram`]).
//!
//! # Roles
//!
//! - `admin`: as on a new DSQL cluster, owner of database `postgres` and schema `public`,
//!   can create roles; not a superuser.
//! - `reader`: LOGIN, USAGE on the schemas and SELECT on the tables, also on schemas
//!   and tables `admin` creates later (default privileges), nothing else. A server
//!   started with `--database_user reader` is read-only in the database itself, whatever
//!   the SQL guard lets through: the least-privilege setup README's "Least privilege"
//!   describes for a cluster.
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
//!   before `job_id` returns, and a rolled-back transaction leaves no job. With
//!   `--local-job-seconds N` the job still reports `processing` in `sys.jobs` for N
//!   seconds (so waiting, progress and `--job-timeout` can be tried), but the index or
//!   constraint is in place, and valid, from the start. A failed unique build leaves *no* index (DSQL leaves an
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
//! - No IAM: the per-run password stands in for tokens; `AWS IAM GRANT/REVOKE` and
//!   `sys.iam_pg_role_mappings` are not available.
//! - One database (`postgres`) and one Region: no multi-Region peers, witness, cluster
//!   lifecycle or control-plane API.
//! - Isolation: the rewriter refuses only levels other than REPEATABLE READ; that
//!   `SET TRANSACTION … REPEATABLE READ` / `READ ONLY` are refused too, as DSQL refuses
//!   every `SET TRANSACTION` (0A000), is the rule checker's doing (`set_transaction`).

pub mod cluster;
pub mod emulation;
pub mod lock;
pub mod rewrite;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use cluster::{Auth, ClusterError, ClusterOptions, LocalCluster};

use crate::config::Database;
use crate::connection::token::{Token, TokenMinter};
use crate::executor::Rewriter;

/// Prefix of the sandbox's temporary folders (in the system temp folder).
pub const TEMP_PREFIX: &str = "aurora-dsql-sandbox-";
/// Region reported for the sandbox when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The roles the server may connect as (`--database_user`); the first is the default.
pub const LOGIN_ROLES: [&str; 2] = ["admin", "reader"];
/// Random bytes in the per-run password.
const PASSWORD_BYTES: usize = 32;

/// A running sandbox; dropping it stops PostgreSQL and removes a temporary folder.
pub struct Sandbox {
    cluster: LocalCluster,
    /// The per-run password of every login role; `Token` redacts it in `Debug`.
    password: Token,
}

impl Sandbox {
    /// Starts PostgreSQL (in `dir`, kept between runs, or a temporary folder), installs
    /// the DSQL emulation and gives the login roles a fresh password. Blocks until ready.
    /// `job_seconds` (`--local-job-seconds`) is how long each async job reports
    /// `processing` in `sys.jobs` before its final state (0: final at once).
    pub fn start(dir: Option<PathBuf>, job_seconds: u64) -> Result<Sandbox, ClusterError> {
        let password = new_password()?;
        let mut opts = ClusterOptions::new(TEMP_PREFIX, "aurora-dsql-mcp-server local sandbox CA");
        opts.dir = dir;
        opts.extra_conf = emulation::CONF.to_owned();
        opts.auth = Auth::Scram {
            roles: LOGIN_ROLES.iter().map(|r| r.to_string()).collect(),
        };
        let cluster = LocalCluster::start(&opts)?;
        cluster
            .superuser_batch(emulation::SETUP_SQL)
            .map_err(|e| ClusterError(format!("installing the DSQL emulation failed: {e}")))?;
        cluster
            .superuser_batch(&emulation::job_seconds_sql(job_seconds))
            .map_err(|e| ClusterError(format!("setting the sandbox's job duration failed: {e}")))?;
        let passwords: Vec<String> = LOGIN_ROLES
            .iter()
            .map(|role| cluster::scram_password_sql(role, &password))
            .collect();
        cluster
            .superuser_batch(&passwords.join(";\n"))
            .map_err(|e| ClusterError(format!("setting the sandbox's password failed: {e}")))?;
        Ok(Sandbox {
            cluster,
            password: Token::from_password(password),
        })
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

    /// What the server's connections authenticate with: this run's password.
    pub fn minter(&self, db: &Database) -> TokenMinter {
        TokenMinter::with_password(db, self.password.clone())
    }
}

/// The role `--local` connects as: `requested` (`--database_user`) if it is one of
/// [`LOGIN_ROLES`], `admin` when none is given.
pub fn login_role(requested: Option<&str>) -> Result<String, String> {
    match requested.map(str::trim).filter(|u| !u.is_empty()) {
        None => Ok(LOGIN_ROLES[0].to_owned()),
        Some(user) if LOGIN_ROLES.contains(&user) => Ok(user.to_owned()),
        Some(user) => Err(format!(
            "--database_user {user}: the sandbox's roles are {} (admin can write, reader only read)",
            LOGIN_ROLES.join(" and ")
        )),
    }
}

/// `PASSWORD_BYTES` from the secure generator database TLS uses, as hex.
fn new_password() -> Result<String, ClusterError> {
    let mut bytes = [0u8; PASSWORD_BYTES];
    crate::connection::tls::provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| ClusterError("no secure random numbers for the sandbox's password".into()))?;
    let mut hex = String::with_capacity(2 * PASSWORD_BYTES);
    for b in bytes {
        let _ = write!(hex, "{b:02x}");
    }
    Ok(hex)
}

/// The executor hook that makes DSQL-only statements run in the sandbox.
pub fn rewriter() -> Rewriter {
    Arc::new(rewrite::rewrite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_fresh_and_long() {
        let a = new_password().unwrap();
        let b = new_password().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn only_the_sandbox_roles_can_be_chosen() {
        assert_eq!(login_role(None).unwrap(), "admin");
        assert_eq!(login_role(Some(" ")).unwrap(), "admin");
        assert_eq!(login_role(Some("reader")).unwrap(), "reader");
        assert_eq!(
            login_role(Some("postgres")).unwrap_err(),
            "--database_user postgres: the sandbox's roles are admin and reader (admin can write, reader only read)"
        );
    }
}
