//! `PgCluster`: a throw-away PostgreSQL with TLS (generated CA, `hostssl` only) on a free
//! local port, the stand-in for an Aurora DSQL cluster in every integration test.
//!
//! The cluster itself is the product's `sandbox::cluster::LocalCluster` (binaries, TLS,
//! running as `postgres` when root, the keeper thread and PR_SET_PDEATHSIG, sweeping
//! folders of killed runs); this file only adds the harness's roles (`admin`,
//! `app_user`), panics instead of errors, and the per-binary shared cluster, which statics
//! never drop, stopped and removed by an `atexit` hook.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use aurora_dsql_mcp_server::sandbox::cluster::{Auth, ClusterOptions, LocalCluster};
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

const DIR_PREFIX: &str = "dsql-harness-";

/// A running (or stopped) throw-away PostgreSQL cluster with TLS.
pub struct PgCluster {
    inner: LocalCluster,
}

static SHARED: OnceLock<PgCluster> = OnceLock::new();

/// The cluster shared by every test of this test binary, started on first use.
pub fn shared() -> &'static PgCluster {
    SHARED.get_or_init(|| {
        let cluster = start();
        // Statics are never dropped: stop the server and remove its folder at process exit.
        unsafe { libc::atexit(cleanup_shared_at_exit) };
        cluster
    })
}

extern "C" fn cleanup_shared_at_exit() {
    if let Some(cluster) = SHARED.get() {
        cluster.stop();
        let _ = std::fs::remove_dir_all(cluster.root());
    }
}

/// A private cluster (e.g. for restart tests); stopped and removed on drop.
pub fn start() -> PgCluster {
    PgCluster::start()
}

/// A table (or any identifier) name unique within this process and across test binaries.
/// Lower case, starts with `prefix`, safe to use unquoted.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}_{}_{}",
        prefix.to_ascii_lowercase(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl PgCluster {
    /// initdb, certificates, configuration, start, wait until ready, create roles.
    pub fn start() -> PgCluster {
        PgCluster::start_on(None)
    }

    /// Like `start`, on a given loopback port (`None`: a free one). The benchmark uses 5432,
    /// the only port the Python reference can reach.
    pub fn start_on(port: Option<u16>) -> PgCluster {
        PgCluster::start_with(port, "")
    }

    /// A cluster whose log records every statement it receives (`log_statement = 'all'`),
    /// so a test can prove that a refused statement never reached it.
    pub fn start_logging_statements() -> PgCluster {
        PgCluster::start_with(None, "log_statement = 'all'\n")
    }

    fn start_with(port: Option<u16>, extra_conf: &str) -> PgCluster {
        let mut opts = ClusterOptions::new(DIR_PREFIX, "aurora-dsql-mcp-server test CA");
        opts.port = port;
        opts.extra_conf = extra_conf.to_owned();
        opts.bindir = std::env::var_os("HARNESS_PG_BINDIR").map(PathBuf::from);
        // A test stand-in, not the sandbox: `trust` over TLS, so the IAM tokens the server
        // mints (which no PostgreSQL can check) are accepted as passwords, and tests can log
        // in as any role, the superuser included, for their assertions.
        opts.auth = Auth::TrustTls;
        let inner = LocalCluster::start(&opts).unwrap_or_else(|e| panic!("start PostgreSQL: {e}"));
        inner
            .superuser_batch(
                "CREATE ROLE admin LOGIN CREATEROLE;
                 ALTER DATABASE postgres OWNER TO admin;
                 GRANT ALL ON SCHEMA public TO admin;
                 CREATE ROLE app_user LOGIN;
                 GRANT USAGE, CREATE ON SCHEMA public TO app_user;",
            )
            .unwrap_or_else(|e| panic!("create roles admin and app_user: {e}"));
        PgCluster { inner }
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.inner.port()
    }

    /// PEM file of the CA that signed the server certificate (SANs `localhost`, `127.0.0.1`).
    pub fn ca_path(&self) -> &Path {
        self.inner.ca_path()
    }

    /// Folder holding the data directory, certificates, socket and `postgres.log`.
    pub fn root(&self) -> &Path {
        self.inner.root()
    }

    /// Process id of the running postmaster, if running.
    pub fn pid(&self) -> Option<u32> {
        self.inner.pid()
    }

    /// Everything the server wrote to its log (stdout and stderr) so far.
    pub fn server_log(&self) -> String {
        self.inner.server_log()
    }

    /// rustls client config trusting only this cluster's CA (aws-lc-rs provider, explicitly).
    pub fn tls_config(&self) -> rustls::ClientConfig {
        self.inner.tls_config()
    }

    /// The TLS connector for tokio-postgres.
    pub fn make_tls(&self) -> MakeRustlsConnect {
        self.inner.make_tls()
    }

    /// Connection settings for `user` on database `postgres`: host name `localhost` (checked
    /// against the certificate), address 127.0.0.1, any password accepted (trust).
    pub fn config(&self, user: &str) -> tokio_postgres::Config {
        self.inner.config(user)
    }

    /// A TLS connection as the `postgres` superuser (for assertions).
    pub async fn superuser(&self) -> Client {
        self.connect_as("postgres").await
    }

    /// A TLS connection as `user`; the connection task is spawned on the current runtime.
    pub async fn connect_as(&self, user: &str) -> Client {
        let (client, conn) = self
            .config(user)
            .connect(self.make_tls())
            .await
            .unwrap_or_else(|e| panic!("connect as {user} on port {}: {e:?}", self.port()));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Stop, then start the same data directory on the same port; returns once it accepts
    /// TLS connections.
    pub fn restart(&self) {
        self.inner
            .restart()
            .unwrap_or_else(|e| panic!("restart PostgreSQL: {e}"));
    }

    /// Stop the server (SIGINT = fast shutdown, then wait; SIGKILL after 20 s). Idempotent.
    pub fn stop(&self) {
        self.inner.stop();
    }

    /// Start the (stopped) server again on the same port; returns once it accepts TLS
    /// connections. Does nothing if it is running.
    pub fn start_again(&self) {
        self.inner
            .start_again()
            .unwrap_or_else(|e| panic!("start PostgreSQL again: {e}"));
    }
}
