//! `PgCluster`: a throw-away PostgreSQL 15 with TLS (generated CA, `hostssl` only) on a free
//! local port, the stand-in for an Aurora DSQL cluster in every integration test.
//!
//! Lifetime rules: the postmaster is a child of a dedicated long-lived "keeper" thread and gets
//! `PR_SET_PDEATHSIG(SIGQUIT)`, so it dies with the test process even on SIGKILL; `Drop` stops it
//! (SIGINT, wait) and removes its temp folder; the per-binary shared cluster, which statics never
//! drop, is stopped and removed by an `atexit` hook; folders left by killed runs are swept.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
const DIR_PREFIX: &str = "dsql-harness-";

/// A running (or stopped) throw-away PostgreSQL cluster with TLS.
pub struct PgCluster {
    root: PathBuf,
    data_dir: PathBuf,
    port: u16,
    ca_path: PathBuf,
    ca_pem: Vec<u8>,
    bindir: PathBuf,
    owner: Option<(u32, u32)>,
    child: Mutex<Option<Child>>,
    /// Dropped with the cluster: removes `root`.
    _tmp: Option<tempfile::TempDir>,
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
        let _ = fs::remove_dir_all(&cluster.root);
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

    /// Same as [`PgCluster::start`], on `port` when given (for a client that cannot change
    /// its port, e.g. the reference server's fixed 5432), else on a free port.
    pub fn start_on(port: Option<u16>) -> PgCluster {
        sweep_stale_dirs();
        let bindir = find_bindir();
        let owner = if unsafe { libc::geteuid() } == 0 {
            Some(postgres_ids())
        } else {
            None
        };
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .expect("create temp dir for the cluster");
        let root = tmp.path().to_path_buf();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid)).expect("chown cluster dir");
        }
        let data_dir = root.join("data");

        let (ca_pem, cert_pem, key_pem) = make_certs();
        let ca_path = root.join("ca.pem");
        write_file(&ca_path, ca_pem.as_bytes(), 0o644, None);
        write_file(&root.join("server.crt"), cert_pem.as_bytes(), 0o644, owner);
        write_file(&root.join("server.key"), key_pem.as_bytes(), 0o600, owner);

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
            .current_dir(&root)
            .stdin(Stdio::null());
        clean_env(&mut initdb);
        if let Some((uid, gid)) = owner {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let port = port.unwrap_or_else(free_port);
        let mut conf = fs::OpenOptions::new()
            .append(true)
            .open(data_dir.join("postgresql.conf"))
            .expect("open postgresql.conf");
        write!(
            conf,
            "\n# added by the integration-test harness\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{root}'\n\
             ssl = on\n\
             ssl_cert_file = '{root}/server.crt'\n\
             ssl_key_file = '{root}/server.key'\n\
             max_connections = 200\n\
             shared_buffers = 32MB\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n",
            root = root.display()
        )
        .expect("write postgresql.conf");
        fs::write(
            data_dir.join("pg_hba.conf"),
            "# written by the integration-test harness: TLS only\n\
             hostssl   all all 127.0.0.1/32   trust\n\
             hostssl   all all ::1/128        trust\n\
             hostnossl all all 0.0.0.0/0      reject\n\
             hostnossl all all ::/0           reject\n",
        )
        .expect("write pg_hba.conf");

        let cluster = PgCluster {
            root,
            data_dir,
            port,
            ca_path,
            ca_pem: ca_pem.into_bytes(),
            bindir,
            owner,
            child: Mutex::new(None),
            _tmp: Some(tmp),
        };
        cluster.start_again();
        block_on_own_thread({
            let config = cluster.config("postgres");
            let tls = cluster.make_tls();
            async move {
                let (client, conn) = config.connect(tls).await.expect("connect as postgres");
                tokio::spawn(conn);
                client
                    .batch_execute(
                        "CREATE ROLE admin LOGIN CREATEROLE;
                         ALTER DATABASE postgres OWNER TO admin;
                         GRANT ALL ON SCHEMA public TO admin;
                         CREATE ROLE app_user LOGIN;
                         GRANT USAGE, CREATE ON SCHEMA public TO app_user;",
                    )
                    .await
                    .expect("create roles admin and app_user");
            }
        });
        cluster
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// PEM file of the CA that signed the server certificate (SANs `localhost`, `127.0.0.1`).
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// Folder holding the data directory, certificates, socket and `postgres.log`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Process id of the running postmaster, if running.
    pub fn pid(&self) -> Option<u32> {
        self.lock_child().as_ref().map(Child::id)
    }

    /// Everything the server wrote to its log (stdout and stderr) so far.
    pub fn server_log(&self) -> String {
        fs::read_to_string(self.root.join("postgres.log")).unwrap_or_default()
    }

    /// rustls client config trusting only this cluster's CA (aws-lc-rs provider, explicitly).
    pub fn tls_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.ca_pem) {
            roots.add(cert.expect("parse CA pem")).expect("add CA");
        }
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
    }

    /// The TLS connector for tokio-postgres.
    pub fn make_tls(&self) -> MakeRustlsConnect {
        MakeRustlsConnect::new(self.tls_config())
    }

    /// Connection settings for `user` on database `postgres`: host name `localhost` (checked
    /// against the certificate), address 127.0.0.1, any password accepted (trust).
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
            .unwrap_or_else(|e| panic!("connect as {user} on port {}: {e:?}", self.port));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Stop, then start the same data directory on the same port; returns once it accepts
    /// TLS connections.
    pub fn restart(&self) {
        self.stop();
        self.start_again();
    }

    /// Stop the server (SIGINT = fast shutdown, then wait; SIGKILL after 20 s). Idempotent.
    pub fn stop(&self) {
        let mut guard = self.lock_child();
        if let Some(mut child) = guard.take() {
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

    /// Start the (stopped) server again on the same port; returns once it accepts TLS
    /// connections. Does nothing if it is running.
    pub fn start_again(&self) {
        let mut guard = self.lock_child();
        if guard.is_some() {
            return;
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("postgres.log"))
            .expect("open postgres.log");
        let mut cmd = Command::new(self.bindir.join("postgres"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        clean_env(&mut cmd);
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls between fork and exec. The closure runs after
        // setuid (which clears the parent-death signal), so the setting sticks.
        unsafe {
            cmd.pre_exec(move || {
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
                    return Err(std::io::Error::other("test process is gone"));
                }
                Ok(())
            });
        }
        let child = spawn_from_keeper(cmd).expect("spawn postgres");
        *guard = Some(child);
        drop(guard);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let config = self.config("postgres");
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
                Ok(()) => return,
                Err(e) => e,
            };
            if let Some(status) = self
                .lock_child()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "postgres exited during startup ({status}); log:\n{}",
                    self.server_log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "postgres not ready after {READY_TIMEOUT:?}: {last_error:?}; log:\n{}",
                    self.server_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn lock_child(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
        // `_tmp` (the folder) is removed after this.
    }
}

/// Run a future to completion on a fresh current-thread runtime on a new OS thread, so this
/// works both from plain `#[test]`s and from inside a `#[tokio::test]` runtime.
fn block_on_own_thread<F>(fut: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(fut)
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

type SpawnJob = Box<dyn FnOnce() + Send>;

/// Spawn `cmd` from one thread that lives as long as the process: PR_SET_PDEATHSIG fires when
/// the *thread* that forked exits, and test threads exit when their test ends.
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
            .expect("spawn keeper thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    keeper
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(Box::new(move || {
            let _ = tx.send(cmd.spawn());
        }))
        .expect("keeper thread alive");
    rx.recv().expect("keeper answered")
}

fn clean_env(cmd: &mut Command) {
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("LC_ALL", "C");
}

fn find_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HARNESS_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let has_server = |dir: &Path| dir.join("postgres").is_file() && dir.join("initdb").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return dir;
        }
    }
    let fallback = PathBuf::from("/usr/lib/postgresql/15/bin");
    assert!(
        has_server(&fallback),
        "PostgreSQL server binaries not found (pg_config --bindir, {}); set HARNESS_PG_BINDIR",
        fallback.display()
    );
    fallback
}

/// uid and gid of the `postgres` OS user (initdb and postgres refuse to run as root).
fn postgres_ids() -> (u32, u32) {
    let out = Command::new("getent")
        .args(["passwd", "postgres"])
        .output()
        .expect("run getent");
    let line = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = line.trim().split(':').collect();
    assert!(
        out.status.success() && fields.len() >= 4,
        "running as root needs a `postgres` OS user (getent passwd postgres: {line:?})"
    );
    (
        fields[2].parse().expect("uid"),
        fields[3].parse().expect("gid"),
    )
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn write_file(path: &Path, contents: &[u8], mode: u32, owner: Option<(u32, u32)>) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    }
}

/// (CA certificate PEM, server certificate PEM, server key PEM).
fn make_certs() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    let mut dn = DistinguishedName::new();
    // A distinct name per CA, so a certificate from another harness CA is an unknown issuer.
    static N: AtomicU64 = AtomicU64::new(0);
    let ca_name = format!(
        "aurora-dsql-mcp-server test CA {}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    dn.push(DnType::CommonName, ca_name);
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    let key = KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// Remove cluster folders left behind by test processes that no longer exist (killed runs).
fn sweep_stale_dirs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            let alive = unsafe { libc::kill(pid, 0) } == 0
                || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
            if !alive {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    });
}
