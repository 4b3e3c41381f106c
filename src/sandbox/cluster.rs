//! `LocalCluster`: a PostgreSQL server of this machine's own binaries, started on a free
//! loopback port with TLS only, standing in for an Aurora DSQL cluster. The `--local`
//! sandbox and the integration-test harness both run on it, so there is one copy of the
//! fiddly parts:
//!
//! - finding the server binaries (`pg_config --bindir`, `PATH`, `/usr/lib/postgresql/*/bin`
//!   newest first, Homebrew's folders), with an error naming the package when none is found;
//! - a fresh CA and server certificate per start (rcgen; SANs `localhost` and `127.0.0.1`);
//! - `pg_hba.conf`, rewritten at every start from [`Auth`]: the `--local` sandbox's
//!   [`Auth::Scram`] (SCRAM-SHA-256 over TLS for its login roles only, the superuser only
//!   through a private Unix socket folder), or the test harness's [`Auth::TrustTls`] (any
//!   password over TLS on loopback: a stand-in that accepts IAM tokens as passwords);
//! - running as root: `initdb` and `postgres` refuse root, so they run as the `postgres` OS
//!   user (`CommandExt::uid/gid`), and the folder is handed to that user;
//! - lifetime: the postmaster is forked by one long-lived "keeper" thread and gets
//!   `PR_SET_PDEATHSIG(SIGQUIT)`, so it dies with this process even on SIGKILL or a crash
//!   (the signal fires when the forking *thread* exits, hence the keeper); `Drop` stops it
//!   (SIGINT = fast shutdown) and removes a temporary folder; temporary folders left by
//!   processes that no longer exist are swept at the next start.
//!
//! A folder given by the caller (`ClusterOptions::dir`) is kept: an initialized data
//! directory in it is reused, so data survives between runs.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a local cluster could not be started or used. One line, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClusterError(pub String);

fn err(message: impl Into<String>) -> ClusterError {
    ClusterError(message.into())
}

/// How to start a [`LocalCluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// A folder kept between runs (created if missing; an initialized data directory in
    /// it is reused). `None`: a fresh temporary folder, removed when the cluster drops.
    pub dir: Option<PathBuf>,
    /// Name prefix of temporary folders (`<prefix><pid>-<n>`); the sweep of stale
    /// folders only touches folders with this prefix.
    pub temp_prefix: String,
    /// Folder holding `postgres` and `initdb`; found automatically when `None`.
    pub bindir: Option<PathBuf>,
    /// Common name of the generated CA (a counter is appended, so two CAs never share a
    /// name and a certificate from another one is an unknown issuer).
    pub ca_name: String,
    /// Lines appended to `postgresql.conf` after `initdb` (fixed settings; not rewritten
    /// when a kept data directory is reused).
    pub extra_conf: String,
    /// A fixed loopback port (the benchmark needs 5432); a free one when `None`.
    pub port: Option<u16>,
    /// Who may log in, and how.
    pub auth: Auth,
}

/// How a [`LocalCluster`] authenticates connections (its `pg_hba.conf`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `trust` for every role over TLS on loopback; plain TCP is rejected. Only for the
    /// test harness's stand-in, which must accept whatever IAM token the server sends as
    /// a password: any local process can log in as any role, the superuser included.
    TrustTls,
    /// Over TCP only TLS with SCRAM-SHA-256, and only for `roles` (whose passwords the
    /// caller sets, e.g. with [`scram_password_sql`]); every other role is rejected, the
    /// `postgres` superuser first. The superuser logs in only through the Unix socket in
    /// a private folder (mode 0700, see [`LocalCluster::socket_dir`]), which other OS
    /// users cannot enter.
    Scram { roles: Vec<String> },
}

impl ClusterOptions {
    pub fn new(temp_prefix: &str, ca_name: &str) -> ClusterOptions {
        ClusterOptions {
            dir: None,
            temp_prefix: temp_prefix.to_owned(),
            bindir: None,
            ca_name: ca_name.to_owned(),
            extra_conf: String::new(),
            port: None,
            auth: Auth::TrustTls,
        }
    }
}

/// A running (or stopped) PostgreSQL with TLS on 127.0.0.1.
pub struct LocalCluster {
    root: PathBuf,
    data_dir: PathBuf,
    port: u16,
    ca_path: PathBuf,
    ca_pem: Vec<u8>,
    bindir: PathBuf,
    owner: Option<(u32, u32)>,
    child: Mutex<Option<Child>>,
    keep: bool,
    created: bool,
    auth: Auth,
    /// Folder of the Unix socket (`None`: TCP only, which [`Auth::TrustTls`] allows when
    /// the cluster folder's path is too long for a socket address).
    socket_dir: Option<PathBuf>,
    /// A socket folder of its own outside `root` (a long `root` path), removed on drop.
    own_socket_dir: bool,
    /// A kept folder's `server.lock`, held while this cluster lives (fields drop after
    /// `Drop::drop` has stopped the server, so the lock outlives PostgreSQL).
    _lock: Option<super::lock::FolderLock>,
}

impl LocalCluster {
    /// Finds the binaries, prepares the folder (initdb unless a kept data directory is
    /// reused), writes fresh certificates, starts the server and waits until it accepts
    /// TLS connections.
    pub fn start(opts: &ClusterOptions) -> Result<LocalCluster, ClusterError> {
        sweep_stale_dirs(&opts.temp_prefix);
        let bindir = match &opts.bindir {
            Some(dir) => {
                if !has_server(dir) {
                    return Err(err(format!(
                        "{} does not hold the PostgreSQL server binaries (postgres, initdb)",
                        dir.display()
                    )));
                }
                dir.clone()
            }
            None => find_bindir()?,
        };
        // SAFETY: geteuid has no preconditions.
        let owner = if unsafe { libc::geteuid() } == 0 {
            Some(postgres_ids()?)
        } else {
            None
        };
        let (root, keep, lock) = match &opts.dir {
            Some(dir) => {
                fs::create_dir_all(dir)
                    .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
                let dir = dir
                    .canonicalize()
                    .map_err(|e| err(format!("cannot resolve {}: {e}", dir.display())))?;
                // Before anything touches the folder: a second server is refused here.
                let lock = super::lock::FolderLock::take(&dir)?;
                (dir, true, Some(lock))
            }
            None => (make_temp_dir(&opts.temp_prefix)?, false, None),
        };
        // From here on a failure must not leave a temporary folder behind.
        let cleanup = |e: ClusterError| {
            if !keep {
                let _ = fs::remove_dir_all(&root);
            }
            e
        };
        let prepared = prepare(&root, &bindir, owner, opts).map_err(cleanup)?;
        let (socket_dir, own_socket_dir) = make_socket_dir(&root, owner, opts).map_err(cleanup)?;
        let cluster = LocalCluster {
            data_dir: root.join("data"),
            root: root.clone(),
            port: match opts.port {
                Some(port) => port,
                None => free_port().map_err(cleanup)?,
            },
            ca_path: root.join("ca.pem"),
            ca_pem: prepared.ca_pem,
            bindir,
            owner,
            child: Mutex::new(None),
            keep,
            created: prepared.created,
            auth: opts.auth.clone(),
            socket_dir,
            own_socket_dir,
            _lock: lock,
        };
        // On failure `cluster` drops: it stops the server and removes a temporary folder.
        cluster.start_again()?;
        Ok(cluster)
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// PEM file of the CA that signed the server certificate (SANs `localhost`, `127.0.0.1`).
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    /// Folder holding the data directory, certificates and `postgres.log`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Folder of the server binaries in use.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// Whether this start ran `initdb` (false when a kept data directory was reused).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Whether the folder is kept when the cluster drops.
    pub fn kept(&self) -> bool {
        self.keep
    }

    /// Process id of the running postmaster, if running.
    pub fn pid(&self) -> Option<u32> {
        self.lock_child().as_ref().map(Child::id)
    }

    /// Everything the server wrote to its log (stdout and stderr) so far.
    pub fn server_log(&self) -> String {
        fs::read_to_string(self.root.join("postgres.log")).unwrap_or_default()
    }

    /// rustls client configuration trusting only this cluster's CA.
    pub fn tls_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.ca_pem).flatten() {
            let _ = roots.add(cert);
        }
        rustls::ClientConfig::builder_with_provider(crate::connection::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("the database TLS provider supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth()
    }

    /// The TLS connector for tokio-postgres.
    pub fn make_tls(&self) -> MakeRustlsConnect {
        MakeRustlsConnect::new(self.tls_config())
    }

    /// Connection settings for `user` on database `postgres` over TCP: host name
    /// `localhost` (checked against the certificate), address 127.0.0.1, no password (which
    /// [`Auth::TrustTls`] does not ask for; with [`Auth::Scram`], set the role's password).
    pub fn config(&self, user: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("localhost")
            .hostaddr(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .port(self.port)
            .user(user)
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// Folder of the server's Unix socket, if it has one. With [`Auth::Scram`] it is
    /// private (mode 0700) and the only way in for the `postgres` superuser.
    pub fn socket_dir(&self) -> Option<&Path> {
        self.socket_dir.as_deref()
    }

    /// How the cluster authenticates connections.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Connection settings for the `postgres` superuser: the private Unix socket with
    /// [`Auth::Scram`] (TCP refuses the superuser there), else TCP as [`Self::config`].
    pub fn superuser_config(&self) -> tokio_postgres::Config {
        match (&self.auth, &self.socket_dir) {
            (Auth::Scram { .. }, Some(dir)) => {
                let mut config = tokio_postgres::Config::new();
                config
                    .host_path(dir)
                    .port(self.port)
                    .user("postgres")
                    .dbname("postgres")
                    // PostgreSQL has no TLS on Unix sockets; the folder's mode guards it.
                    .ssl_mode(tokio_postgres::config::SslMode::Disable)
                    .connect_timeout(Duration::from_secs(10));
                config
            }
            _ => self.config("postgres"),
        }
    }

    /// Runs `sql` (simple protocol, several statements allowed) as the `postgres`
    /// superuser. Blocks; callable from inside or outside an async runtime.
    pub fn superuser_batch(&self, sql: &str) -> Result<(), ClusterError> {
        let config = self.superuser_config();
        let tls = self.make_tls();
        let sql = sql.to_owned();
        block_on_own_thread(async move {
            let (client, conn) = config.connect(tls).await?;
            tokio::spawn(conn);
            client.batch_execute(&sql).await
        })
        .map_err(|e| err(crate::connection::DbError::from(&e).to_string()))
    }

    /// Stop, then start the same data directory on the same port.
    pub fn restart(&self) -> Result<(), ClusterError> {
        self.stop();
        self.start_again()
    }

    /// Stops the server (SIGINT = fast shutdown, then wait; SIGKILL after 20 s). Idempotent.
    pub fn stop(&self) {
        let mut guard = self.lock_child();
        if let Some(mut child) = guard.take() {
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            let deadline = Instant::now() + STOP_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }

    /// Starts the (stopped) server on its port and waits until it accepts TLS
    /// connections. Does nothing if it is running.
    pub fn start_again(&self) -> Result<(), ClusterError> {
        let mut guard = self.lock_child();
        if guard.is_some() {
            return Ok(());
        }
        let log_path = self.root.join("postgres.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| err(format!("cannot open {}: {e}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(|e| err(format!("cannot open {}: {e}", log_path.display())))?;
        let mut cmd = Command::new(self.bindir.join("postgres"));
        // Per-run settings on the command line; the fixed ones live in postgresql.conf.
        let root = self.root.display();
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("port={}", self.port)])
            .args([
                "-c",
                &format!(
                    "unix_socket_directories={}",
                    self.socket_dir
                        .as_deref()
                        .map(|d| d.display().to_string())
                        .unwrap_or_default()
                ),
            ])
            .args(["-c", "ssl=on"])
            .args(["-c", &format!("ssl_cert_file={root}/server.crt")])
            .args(["-c", &format!("ssl_key_file={root}/server.key")])
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        clean_env(&mut cmd);
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls between fork and exec. The closure runs after
        // setuid (which clears the parent-death signal), so the setting sticks.
        unsafe {
            cmd.pre_exec(move || {
                // Linux only: elsewhere a SIGKILLed parent leaves PostgreSQL running (Drop
                // and the server's signal handlers still stop it on every orderly exit).
                #[cfg(target_os = "linux")]
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGQUIT as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("the parent process is gone"));
                }
                Ok(())
            });
        }
        let child = spawn_from_keeper(cmd).map_err(|e| {
            err(format!(
                "cannot start {}/postgres: {e}",
                self.bindir.display()
            ))
        })?;
        *guard = Some(child);
        drop(guard);
        self.wait_ready()
    }

    fn wait_ready(&self) -> Result<(), ClusterError> {
        let config = self.superuser_config();
        let tls = self.make_tls();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let attempt = block_on_own_thread({
                let config = config.clone();
                let tls = tls.clone();
                async move {
                    let (client, conn) = config.connect(tls).await?;
                    tokio::spawn(conn);
                    client.simple_query("SELECT 1").await.map(|_| ())
                }
            });
            let last_error = match attempt {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let exited = self
                .lock_child()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.lock_child().take();
                return Err(err(format!(
                    "PostgreSQL exited during start-up ({status}); its log ({}):\n{}",
                    self.root.join("postgres.log").display(),
                    tail(&self.server_log(), 20)
                )));
            }
            if Instant::now() > deadline {
                return Err(err(format!(
                    "PostgreSQL did not accept connections within {READY_TIMEOUT:?} ({}); its log:\n{}",
                    crate::connection::DbError::from(&last_error),
                    tail(&self.server_log(), 20)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn lock_child(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
        if !self.keep {
            let _ = fs::remove_dir_all(&self.root);
        }
        if self.own_socket_dir
            && let Some(dir) = &self.socket_dir
        {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

struct Prepared {
    ca_pem: Vec<u8>,
    created: bool,
}

/// initdb (unless the data directory exists), configuration, certificates.
fn prepare(
    root: &Path,
    bindir: &Path,
    owner: Option<(u32, u32)>,
    opts: &ClusterOptions,
) -> Result<Prepared, ClusterError> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(root, Some(uid), Some(gid)).map_err(|e| {
            err(format!(
                "cannot hand {} to the postgres OS user: {e}",
                root.display()
            ))
        })?;
    }
    let data_dir = root.join("data");
    let created = !data_dir.join("PG_VERSION").is_file();
    if created {
        let mut initdb = Command::new(bindir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data_dir)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .current_dir(root)
            .stdin(Stdio::null());
        clean_env(&mut initdb);
        if let Some((uid, gid)) = owner {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb
            .output()
            .map_err(|e| err(format!("cannot run {}/initdb: {e}", bindir.display())))?;
        if !out.status.success() {
            let mut why = String::from_utf8_lossy(&out.stderr).into_owned();
            if owner.is_some() {
                why.push_str(
                    "\n(running as root: the `postgres` OS user must be able to enter every folder above the data directory)",
                );
            }
            return Err(err(format!("initdb failed: {}", why.trim())));
        }
        let conf_path = data_dir.join("postgresql.conf");
        let mut conf = fs::read_to_string(&conf_path)
            .map_err(|e| err(format!("cannot read {}: {e}", conf_path.display())))?;
        conf.push_str(
            "\n# added by aurora-dsql-mcp-server (local cluster)\n\
             max_connections = 200\n\
             shared_buffers = 32MB\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
        );
        conf.push_str(&opts.extra_conf);
        conf.push('\n');
        fs::write(&conf_path, conf)
            .map_err(|e| err(format!("cannot write {}: {e}", conf_path.display())))?;
    }
    // Every start, so a kept data directory gets the current rules too.
    write_file(
        &data_dir.join("pg_hba.conf"),
        hba_conf(&opts.auth).as_bytes(),
        0o600,
        owner,
    )?;
    let (ca_pem, cert_pem, key_pem) = make_certs(&opts.ca_name)?;
    write_file(&root.join("ca.pem"), ca_pem.as_bytes(), 0o644, None)?;
    write_file(&root.join("server.crt"), cert_pem.as_bytes(), 0o644, owner)?;
    write_file(&root.join("server.key"), key_pem.as_bytes(), 0o600, owner)?;
    Ok(Prepared {
        ca_pem: ca_pem.into_bytes(),
        created,
    })
}

/// Whether `dir` can be a Unix socket folder: `<dir>/.s.PGSQL.<port>` must fit a socket
/// address (108 bytes on Linux, 104 on macOS), and `unix_socket_directories` is a
/// comma-separated list.
fn socket_path_fits(dir: &Path) -> bool {
    let path = dir.display().to_string();
    path.len() < 80 && !path.contains([',', ' ', '\''])
}

/// The socket folder and whether it lies outside `root` (then removed on drop).
///
/// [`Auth::TrustTls`]: the cluster folder itself when its path fits, else none (TCP
/// only). [`Auth::Scram`]: `<root>/socket`, or a temporary folder when that path is too
/// long; either way mode 0700 and owned by the OS user PostgreSQL runs as, since a
/// process that can enter it can log in as the superuser.
fn make_socket_dir(
    root: &Path,
    owner: Option<(u32, u32)>,
    opts: &ClusterOptions,
) -> Result<(Option<PathBuf>, bool), ClusterError> {
    if opts.auth == Auth::TrustTls {
        return Ok((socket_path_fits(root).then(|| root.to_path_buf()), false));
    }
    let inside = root.join("socket");
    let (dir, own) = if socket_path_fits(&inside) {
        match fs::create_dir(&inside) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(format!("cannot create {}: {e}", inside.display()))),
        }
        (inside, false)
    } else {
        let dir = make_temp_dir(&opts.temp_prefix)?;
        if !socket_path_fits(&dir) {
            let _ = fs::remove_dir_all(&dir);
            return Err(err(format!(
                "no folder for the sandbox's Unix socket: {} and the temporary folder are too long \
                 for a socket address; use a shorter --local-dir or TMPDIR",
                inside.display()
            )));
        }
        (dir, true)
    };
    let fail = |e: std::io::Error| err(format!("cannot make {} private: {e}", dir.display()));
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(fail)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(fail)?;
    }
    Ok((Some(dir), own))
}

/// `pg_hba.conf` for `auth`. The first matching line decides, so the refusals of the
/// superuser come before anything that could accept it.
fn hba_conf(auth: &Auth) -> String {
    match auth {
        Auth::TrustTls => {
            "# written by aurora-dsql-mcp-server: TLS on loopback only, any password\n\
             # (test stand-in: accepts the IAM token the server sends)\n\
             hostssl   all all 127.0.0.1/32   trust\n\
             hostssl   all all ::1/128        trust\n\
             hostnossl all all 0.0.0.0/0      reject\n\
             hostnossl all all ::/0           reject\n"
                .to_owned()
        }
        Auth::Scram { roles } => {
            for role in roles {
                assert!(
                    !role.is_empty()
                        && role != "postgres"
                        && role.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                    "sandbox login roles are plain lower-case names, never the superuser"
                );
            }
            let roles = roles.join(",");
            format!(
                "# written by aurora-dsql-mcp-server at every start: only the sandbox's login roles,\n\
                 # with the per-run password (SCRAM-SHA-256) over TLS; the superuser only through\n\
                 # the private Unix socket folder.\n\
                 host      all      postgres 0.0.0.0/0    reject\n\
                 host      all      postgres ::/0         reject\n\
                 hostssl   postgres {roles} 127.0.0.1/32 scram-sha-256\n\
                 hostssl   postgres {roles} ::1/128      scram-sha-256\n\
                 host      all      all      0.0.0.0/0    reject\n\
                 host      all      all      ::/0         reject\n\
                 local     all      postgres              trust\n\
                 local     all      all                   reject\n"
            )
        }
    }
}

/// `ALTER ROLE <role> PASSWORD '<SCRAM-SHA-256 verifier>'`: the verifier is computed
/// here (salted, 4096 iterations, by `postgres-protocol`), so the password itself never
/// reaches the server, its log or its catalog. `role` must be a plain identifier.
pub fn scram_password_sql(role: &str, password: &str) -> String {
    assert!(
        role.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "a plain role name"
    );
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    // The verifier is `SCRAM-SHA-256$<iterations>:<salt>$<stored>:<server>` in base64: no quotes.
    format!("ALTER ROLE {role} PASSWORD '{verifier}'")
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs a future to completion on a fresh current-thread runtime on a new OS thread, so
/// this works from plain code and from inside an async runtime alike.
fn block_on_own_thread<F>(fut: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
            .block_on(fut)
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

type SpawnJob = Box<dyn FnOnce() + Send>;

/// Spawns `cmd` from one thread that lives as long as the process: PR_SET_PDEATHSIG fires
/// when the *thread* that forked exits, and other threads (tokio workers, test threads)
/// may exit long before the process does.
fn spawn_from_keeper(mut cmd: Command) -> std::io::Result<Child> {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("pg-keeper".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
                // The sender lives in a static, so this thread never gets here.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the keeper thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    keeper
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(Box::new(move || {
            let _ = tx.send(cmd.spawn());
        }))
        .map_err(|_| std::io::Error::other("the keeper thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the keeper thread did not answer"))?
}

fn clean_env(cmd: &mut Command) {
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("LC_ALL", "C");
}

fn has_server(dir: &Path) -> bool {
    dir.join("postgres").is_file() && dir.join("initdb").is_file()
}

/// Usual install folders: (parent, prefix of the versioned folder), e.g. Debian's
/// `/usr/lib/postgresql/16/bin`, Homebrew's `/opt/homebrew/opt/postgresql@16/bin`, the
/// PGDG RPMs' `/usr/pgsql-16/bin`.
const INSTALL_ROOTS: &[(&str, &str)] = &[
    ("/usr/lib/postgresql", ""),
    ("/usr/local/opt", "postgresql@"),
    ("/opt/homebrew/opt", "postgresql@"),
    ("/usr", "pgsql-"),
];

/// Where the PostgreSQL server binaries are: `pg_config --bindir`, then `PATH`, then the
/// usual install folders, newest version first.
pub fn find_bindir() -> Result<PathBuf, ClusterError> {
    find_bindir_in(Some("pg_config"), std::env::var_os("PATH"), INSTALL_ROOTS)
}

fn find_bindir_in(
    pg_config: Option<&str>,
    path: Option<std::ffi::OsString>,
    roots: &[(&str, &str)],
) -> Result<PathBuf, ClusterError> {
    let mut tried = Vec::new();
    if let Some(pg_config) = pg_config
        && let Ok(out) = Command::new(pg_config).arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Ok(dir);
        }
        tried.push(format!("{} (pg_config --bindir)", dir.display()));
    }
    if let Some(path) = path {
        for dir in std::env::split_paths(&path) {
            if has_server(&dir) {
                // A symlinked `postgres` (Debian's /usr/local/bin links) runs fine as is.
                return Ok(dir);
            }
        }
        tried.push("PATH".into());
    }
    let mut versioned: Vec<(u32, PathBuf)> = Vec::new();
    for (parent, prefix) in roots {
        tried.push(format!("{parent}/{prefix}*/bin"));
        let Ok(entries) = fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(major) = name
                .strip_prefix(prefix)
                .and_then(|v| v.split('.').next())
                .and_then(|v| v.parse::<u32>().ok())
            else {
                continue;
            };
            versioned.push((major, entry.path().join("bin")));
        }
    }
    versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
    if let Some((_, dir)) = versioned.into_iter().find(|(_, d)| has_server(d)) {
        return Ok(dir);
    }
    Err(err(format!(
        "PostgreSQL server binaries (postgres, initdb) not found; looked in: {}. Install them: \
         `sudo apt-get install postgresql` (Debian/Ubuntu), `sudo dnf install postgresql-server` \
         (Fedora/RHEL) or `brew install postgresql@16` (macOS)",
        tried.join(", ")
    )))
}

/// uid and gid of the `postgres` OS user (initdb and postgres refuse to run as root).
fn postgres_ids() -> Result<(u32, u32), ClusterError> {
    let missing = || {
        err(
            "running as root needs a `postgres` OS user to run PostgreSQL as (installing the \
             postgresql package creates it; or run the server as a normal user)",
        )
    };
    let out = Command::new("getent")
        .args(["passwd", "postgres"])
        .output()
        .map_err(|_| missing())?;
    let line = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = line.trim().split(':').collect();
    if !out.status.success() || fields.len() < 4 {
        return Err(missing());
    }
    match (fields[2].parse(), fields[3].parse()) {
        (Ok(uid), Ok(gid)) => Ok((uid, gid)),
        _ => Err(missing()),
    }
}

fn free_port() -> Result<u16, ClusterError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| err(format!("no free port on 127.0.0.1: {e}")))
}

fn write_file(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), ClusterError> {
    let fail = |e: std::io::Error| err(format!("cannot write {}: {e}", path.display()));
    // A key file from an earlier run may be read-only for us: replace, never append.
    let _ = fs::remove_file(path);
    fs::write(path, contents).map_err(fail)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(fail)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(fail)?;
    }
    Ok(())
}

/// `<temp>/<prefix><pid>-<n>`, created with mode 0700 (0755 when PostgreSQL runs as
/// another user, which owns it then).
fn make_temp_dir(prefix: &str) -> Result<PathBuf, ClusterError> {
    static N: AtomicU64 = AtomicU64::new(0);
    for _ in 0..100 {
        let path = std::env::temp_dir().join(format!(
            "{prefix}{}-{}-{:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        ));
        match fs::create_dir(&path) {
            Ok(()) => {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o700))
                    .map_err(|e| err(format!("chmod {}: {e}", path.display())))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(err(format!("cannot create a temporary folder: {e}"))),
        }
    }
    Err(err(
        "cannot create a temporary folder: too many name collisions",
    ))
}

/// (CA certificate PEM, server certificate PEM, server key PEM).
fn make_certs(ca_name: &str) -> Result<(String, String, String), ClusterError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let fail = |e: rcgen::Error| err(format!("cannot generate TLS certificates: {e}"));
    static N: AtomicU64 = AtomicU64::new(0);
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!(
            "{ca_name} {}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ),
    );
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(fail)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(fail)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(fail)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    let key = KeyPair::generate().map_err(fail)?;
    let cert = params.signed_by(&key, &issuer).map_err(fail)?;
    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}

/// Removes temporary cluster folders (`<prefix><pid>-...`) whose process no longer
/// exists (killed runs). Once per process and prefix.
fn sweep_stale_dirs(prefix: &str) {
    static SWEPT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    {
        let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
        if swept.iter().any(|p| p == prefix) {
            return;
        }
        swept.push(prefix.to_owned());
    }
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
        if !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_server(dir: &Path) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("postgres"), "").unwrap();
        fs::write(dir.join("initdb"), "").unwrap();
    }

    #[test]
    fn newest_install_wins_and_none_names_the_package() {
        let tmp = tempfile::tempdir().unwrap();
        let lib = tmp.path().join("lib");
        let lib = lib.to_str().unwrap();
        fake_server(&tmp.path().join("lib/13/bin"));
        fake_server(&tmp.path().join("lib/16/bin"));
        fs::create_dir_all(tmp.path().join("lib/17/bin")).unwrap(); // no binaries
        let found = find_bindir_in(None, None, &[(lib, "")]).unwrap();
        assert_eq!(found, tmp.path().join("lib/16/bin"));

        let empty = tmp.path().join("empty");
        let e = find_bindir_in(
            Some("/nonexistent/pg_config"),
            Some(empty.clone().into_os_string()),
            &[(empty.to_str().unwrap(), "")],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`sudo apt-get install postgresql`"), "{e}");
        assert!(e.contains("`brew install postgresql@16`"), "{e}");
    }
}
