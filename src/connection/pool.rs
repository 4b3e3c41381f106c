//! The connection pool: deadpool managing tokio-postgres connections over rustls.
//!
//! The pool crate does the queueing and bookkeeping; this file supplies what is DSQL's
//! own: every *new* physical connection mints a fresh IAM token, and a pooled connection
//! is retired before DSQL's 60-minute cap (at 55 minutes) or after sitting idle, the
//! values the AWS connectors use.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::error::DbError;
use super::tls;
use super::token::{TokenError, TokenMinter};
use crate::config::Database;
use crate::policy::Access;

/// Retire a connection this long after it was opened (DSQL closes it at 60 minutes).
pub const MAX_LIFETIME: Duration = Duration::from_secs(55 * 60);
/// Retire a connection idle for this long instead of reusing it.
pub const MAX_IDLE: Duration = Duration::from_secs(10 * 60);
/// How many connections tool calls may hold at once (per cluster; a clusters file may
/// give a cluster its own `pool_size`).
pub const MAX_SIZE: usize = 10;
/// How long a connection attempt (TCP, TLS, authentication) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The `application_name` the server reports to the cluster.
pub const APPLICATION_NAME: &str = "aurora-dsql-mcp-server";

/// One physical connection.
pub struct PgConnection {
    pub client: tokio_postgres::Client,
    /// Sequence number, for logs ("connection 3").
    pub serial: u64,
    /// The session's default is READ ONLY (`SET SESSION CHARACTERISTICS AS TRANSACTION
    /// READ ONLY`), re-applied by every reset: a second layer under `BEGIN READ ONLY`
    /// that lets a read-only call pipeline BEGIN with its statement.
    pub session_read_only: bool,
    /// The user the session must be after every reset (the configured database user).
    pub user: String,
    /// The reset, and COMMIT / ROLLBACK followed by it: built once per connection from the
    /// same pieces (`reset_script`), so the connect-time state and every reset agree.
    reset: String,
    commit_reset: String,
    rollback_reset: String,
    /// The task driving the socket. Dropping the client alone leaves the socket open while a
    /// statement is still running, so a connection discarded mid-statement aborts this.
    pub task: tokio::task::AbortHandle,
}

/// Makes every transaction of the session read-only unless it says otherwise.
pub const SESSION_READ_ONLY: &str = "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY";

/// Undoes `SET SESSION AUTHORIZATION` (which the guard refuses in every spelling; this is
/// the layer under it). Probed once per connection: a server that does not know it keeps
/// the rest of the reset and the verification.
pub const RESET_SESSION_AUTHORIZATION: &str = "RESET SESSION AUTHORIZATION";

/// Read back after every reset (and at connect) in the same round trip: who the session
/// is, and the lexer setting the guard's reading of SQL relies on.
pub const VERIFY_SESSION: &str =
    "SELECT session_user, current_user, current_setting('standard_conforming_strings')";

/// The scrub that follows every unit: settings, role (and session authorization where the
/// server has it), the read-only default when the server is read-only, then the check.
pub fn reset_script(session_read_only: bool, session_authorization: bool) -> String {
    let mut parts = vec!["RESET ALL"];
    if session_authorization {
        parts.push(RESET_SESSION_AUTHORIZATION);
    }
    parts.push("RESET ROLE");
    if session_read_only {
        parts.push(SESSION_READ_ONLY);
    }
    parts.push(VERIFY_SESSION);
    parts.join("; ")
}

/// Why a session read back by `VERIFY_SESSION` cannot serve calls, if it cannot.
pub fn session_problem(expected_user: &str, values: [Option<&str>; 3]) -> Option<String> {
    match values {
        [Some(session), Some(current), Some(scs)]
            if session == expected_user && current == expected_user && scs == "on" =>
        {
            None
        }
        [Some(_), Some(_), Some(scs)] if scs != "on" => Some(format!(
            "the session's standard_conforming_strings is {scs:?}, but the SQL guard reads SQL as PostgreSQL does with it on; reset it for the role or database (ALTER ROLE ... RESET standard_conforming_strings)"
        )),
        [session, current, _] => Some(format!(
            "the session is {} (current user {}), not the configured user {expected_user}",
            session.unwrap_or("NULL"),
            current.unwrap_or("NULL")
        )),
    }
}

impl PgConnection {
    /// Scrubs session state between calls, keeping the session's read-only default, and
    /// reads the session back (`VERIFY_SESSION`).
    pub fn reset_sql(&self) -> &str {
        &self.reset
    }

    /// Ends a transaction (`COMMIT` or `ROLLBACK`) and scrubs the session, in one message.
    pub fn end_sql(&self, commit: bool) -> &str {
        if commit {
            &self.commit_reset
        } else {
            &self.rollback_reset
        }
    }
}

/// Creates and vets connections for deadpool.
pub struct Manager {
    base: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    minter: TokenMinter,
    opened: AtomicU64,
    /// The server is read-only: give every session a read-only default.
    read_only_sessions: bool,
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("could not connect to the cluster: {0}")]
    Postgres(DbError),
}

impl Manager {
    pub fn new(db: &Database, access: Access) -> Result<Manager, tls::TlsError> {
        Manager::with_minter(db, access, TokenMinter::new(db))
    }

    /// A manager whose tokens come from `minter` (the `--local` sandbox's offline credentials).
    pub fn with_minter(
        db: &Database,
        access: Access,
        minter: TokenMinter,
    ) -> Result<Manager, tls::TlsError> {
        let mut base = tokio_postgres::Config::new();
        base.host(&db.endpoint)
            .port(db.port)
            .user(&db.user)
            .dbname("postgres")
            .application_name(APPLICATION_NAME)
            .ssl_mode(SslMode::Require)
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(60));
        let tls = MakeRustlsConnect::new(tls::client_config(db.ssl_root_cert.as_deref())?);
        Ok(Manager {
            base,
            tls,
            minter,
            opened: AtomicU64::new(0),
            read_only_sessions: access == Access::ReadOnly,
        })
    }

    /// Connections opened so far (each with its own token).
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    pub fn minter(&self) -> &TokenMinter {
        &self.minter
    }

    /// The TLS connector, also used to send cancel requests.
    pub fn tls(&self) -> &MakeRustlsConnect {
        &self.tls
    }
}

impl managed::Manager for Manager {
    type Type = PgConnection;
    type Error = ConnectError;

    async fn create(&self) -> Result<PgConnection, ConnectError> {
        let token = self.minter.mint().await?;
        let mut config = self.base.clone();
        config.password(token.expose());
        let (client, connection) = config
            .connect(self.tls.clone())
            .await
            .map_err(|e| ConnectError::Postgres(DbError::from(&e)))?;
        drop(config); // the token lives no longer than the handshake needs it
        let serial = self.opened.fetch_add(1, Ordering::Relaxed) + 1;
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(
                    connection = serial,
                    "connection closed: {}",
                    DbError::from(&e)
                );
            }
        });
        tracing::debug!(connection = serial, action = ?self.minter.action(), "opened a connection with a fresh token");
        // One round trip: the read-only default (on a read-only server), the probe for
        // RESET SESSION AUTHORIZATION, and the same verification every reset ends with, so
        // the first call on this connection starts from the state the reset maintains.
        let read_only = async {
            if self.read_only_sessions {
                Some(client.batch_execute(SESSION_READ_ONLY).await)
            } else {
                None
            }
        };
        let (read_only, auth, verify) = tokio::join!(
            read_only,
            client.batch_execute(RESET_SESSION_AUTHORIZATION),
            client.simple_query(VERIFY_SESSION)
        );
        let mut session_read_only = false;
        match read_only {
            Some(Ok(())) => session_read_only = true,
            Some(Err(e)) => {
                let e = DbError::from(&e);
                if e.broken {
                    return Err(ConnectError::Postgres(e));
                }
                // Still read-only through BEGIN READ ONLY; only the pipelining is lost.
                tracing::info!(
                    connection = serial,
                    "session read-only default not available: {e}"
                );
            }
            None => {}
        }
        let session_authorization = match auth {
            Ok(()) => true,
            Err(e) => {
                let e = DbError::from(&e);
                if e.broken {
                    return Err(ConnectError::Postgres(e));
                }
                tracing::info!(
                    connection = serial,
                    "RESET SESSION AUTHORIZATION not available: {e}"
                );
                false
            }
        };
        let user = self.base.get_user().unwrap_or_default().to_owned();
        let rows = verify.map_err(|e| ConnectError::Postgres(DbError::from(&e)))?;
        let values = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some([r.get(0), r.get(1), r.get(2)]),
            _ => None,
        });
        if let Some(problem) = session_problem(&user, values.unwrap_or([None, None, None])) {
            return Err(ConnectError::Postgres(DbError::other(
                format!("the new connection cannot be used: {problem}"),
                false,
            )));
        }
        let reset = reset_script(session_read_only, session_authorization);
        Ok(PgConnection {
            client,
            serial,
            session_read_only,
            user,
            commit_reset: format!("COMMIT; {reset}"),
            rollback_reset: format!("ROLLBACK; {reset}"),
            reset,
            task: task.abort_handle(),
        })
    }

    async fn recycle(
        &self,
        conn: &mut PgConnection,
        metrics: &Metrics,
    ) -> RecycleResult<ConnectError> {
        if conn.client.is_closed() {
            return Err(RecycleError::message("connection closed"));
        }
        if metrics.age() >= MAX_LIFETIME {
            return Err(RecycleError::message(
                "connection reached its maximum lifetime",
            ));
        }
        if metrics.last_used() >= MAX_IDLE {
            return Err(RecycleError::message("connection was idle too long"));
        }
        Ok(())
    }
}

/// The pool type the rest of the server uses.
pub type Pool = managed::Pool<Manager>;
/// A connection checked out of the pool for one tool call.
pub type Pooled = managed::Object<Manager>;

/// Builds the pool; no connection is opened until the first tool call needs one.
pub fn build(db: &Database, access: Access) -> Result<Arc<Pool>, tls::TlsError> {
    build_with(Manager::new(db, access)?)
}

/// Builds the pool around a given manager.
pub fn build_with(manager: Manager) -> Result<Arc<Pool>, tls::TlsError> {
    build_sized(manager, MAX_SIZE)
}

/// Builds a pool of at most `max_size` connections (a cluster's `pool_size`).
pub fn build_sized(manager: Manager, max_size: usize) -> Result<Arc<Pool>, tls::TlsError> {
    managed::Pool::builder(manager)
        .max_size(max_size)
        .runtime(deadpool::Runtime::Tokio1)
        .create_timeout(Some(CONNECT_TIMEOUT + Duration::from_secs(5)))
        .build()
        .map(Arc::new)
        .map_err(|e| tls::TlsError::other(format!("connection pool: {e}")))
}
