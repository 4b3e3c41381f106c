//! `aurora-dsql-mcp-server check`: diagnoses a configuration the way a user needs when
//! their agent says "no tools" or "connection closed".
//!
//! It resolves the configuration exactly as serving does (same flags and environment),
//! then walks the path of a first tool call one step at a time, so the first step that
//! fails is the one named: configuration → credentials → token → TCP → TLS (handshake and
//! certificate chain, verified as the server verifies) → connection (token accepted) →
//! server version → tables → a timed `SELECT 1` → what the role may do (superuser,
//! create roles and databases, the schemas it can create objects in and write tables
//! in). Each step prints one line, `OK` or `FAIL` with the fix; steps that cannot run
//! after a failure print `SKIP`. A `WARN` line (not a failure) says when a read-only
//! server connects as a role that can write: then the SQL guard is the only layer, and
//! the fix is a read-only role (README, "Least privilege"). Secrets are never printed:
//! credentials are named by their provider only, the sandbox's password not at all.
//!
//! The privilege queries use only `pg_roles`, `pg_namespace`, `pg_class`,
//! `has_schema_privilege` and `has_table_privilege`, which PostgreSQL 15 and DSQL both
//! have.
//!
//! This is a command-line mode, not MCP: it prints to stdout.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_credential_types::provider::ProvideCredentials;
use deadpool::managed::Manager as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{ClusterConfig, Config, Database};
use crate::connection::pool::{Manager, PgConnection};
use crate::connection::token::{Action, TOKEN_LIFETIME, TokenMinter};
use crate::connection::{ConnectError, DbError, tls};
use crate::policy::Access;
use crate::sandbox::Sandbox;

const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// Prints the report of each step as it completes; counts failures and warnings.
struct Report {
    failed: usize,
    warned: usize,
}

impl Report {
    fn ok(&mut self, step: &str, detail: impl AsRef<str>) {
        println!("OK    {step}: {}", detail.as_ref()); // stdout-ok
    }

    fn fail(&mut self, step: &str, problem: impl AsRef<str>, fix: impl AsRef<str>) {
        self.failed += 1;
        println!("FAIL  {step}: {} | fix: {}", problem.as_ref(), fix.as_ref()); // stdout-ok
    }

    fn warn(&mut self, step: &str, problem: impl AsRef<str>, fix: impl AsRef<str>) {
        self.warned += 1;
        println!("WARN  {step}: {} | fix: {}", problem.as_ref(), fix.as_ref()); // stdout-ok
    }

    fn skip(&mut self, steps: &[&str], why: &str) {
        for step in steps {
            println!("SKIP  {step}: not run ({why})"); // stdout-ok
        }
    }

    fn finish(self) -> ExitCode {
        if self.failed == 0 && self.warned > 0 {
            println!("all checks passed, {} warning(s)", self.warned); // stdout-ok
            ExitCode::SUCCESS
        } else if self.failed == 0 {
            println!("all checks passed"); // stdout-ok
            ExitCode::SUCCESS
        } else {
            println!("{} check(s) failed", self.failed); // stdout-ok
            ExitCode::from(1)
        }
    }
}

const AFTER_CONFIG: &[&str] = &[
    "credentials",
    "token",
    "tcp",
    "tls",
    "connect",
    "server version",
    "tables",
    "select 1",
    "role",
    "schemas",
];

/// The report when the flags and environment themselves are invalid.
pub fn config_failed(e: &crate::config::ConfigError) -> ExitCode {
    let mut report = Report {
        failed: 0,
        warned: 0,
    };
    report.fail(
        "configuration",
        e.to_string(),
        "correct the flag or environment variable named (see --help)",
    );
    report.finish()
}

/// How the sandbox start went, for `check --local`.
pub enum Local<'a> {
    /// Not `--local`.
    No,
    Started(&'a Sandbox),
    Failed(String),
}

/// Runs every check and prints the report. `minter` signs tokens as serving would.
pub async fn run(config: &Config, local: Local<'_>, minter: Option<TokenMinter>) -> ExitCode {
    let mut report = Report {
        failed: 0,
        warned: 0,
    };
    match local {
        Local::No => {}
        Local::Started(sandbox) => {
            let cluster = sandbox.cluster();
            report.ok(
                "sandbox",
                format!(
                    "PostgreSQL from {} on 127.0.0.1:{} in {} ({})",
                    cluster.bindir().display(),
                    cluster.port(),
                    cluster.root().display(),
                    if cluster.kept() {
                        "kept between runs"
                    } else {
                        "removed at exit"
                    }
                ),
            );
        }
        Local::Failed(e) => {
            report.fail(
                "sandbox",
                format!("the local sandbox did not start: {e}"),
                if e.contains("not found") {
                    "install the PostgreSQL server package named above"
                } else if e.starts_with("--database_user") {
                    "pass --database_user admin or --database_user reader, or leave it out (admin)"
                } else {
                    "check the folder given with --local-dir (writable, and enterable by the `postgres` OS user when run as root) and the PostgreSQL log above"
                },
            );
            report.skip(&[&["endpoint"], AFTER_CONFIG].concat(), "no sandbox");
            return report.finish();
        }
    }

    if config.clusters.is_empty() {
        report.fail(
            "endpoint",
            format!(
                "no cluster configured (missing: {})",
                config.missing.join(", ")
            ),
            "pass --cluster_endpoint <id>.dsql.<region>.on.aws --region <region> --database_user admin \
             (or set CLUSTER and REGION), or try the local sandbox: `aurora-dsql-mcp-server check --local`",
        );
        report.skip(AFTER_CONFIG, "no cluster configured");
        return report.finish();
    }
    // Every configured cluster, each in its own named section when there are several.
    let several = config.clusters.len() > 1;
    let mut minter = minter;
    for cluster in &config.clusters {
        if several {
            let default = if cluster.name == config.default_cluster {
                ", the default"
            } else {
                ""
            };
            println!("== cluster {}{default} ==", cluster.name); // stdout-ok
        }
        check_cluster(&mut report, cluster, minter.take()).await;
    }
    report.finish()
}

/// The steps after the configuration, for one cluster.
async fn check_cluster(report: &mut Report, cluster: &ClusterConfig, minter: Option<TokenMinter>) {
    let report = &mut *report;
    let db = &cluster.database;
    let access = cluster.access;

    let minter = minter.unwrap_or_else(|| TokenMinter::new(db));
    report.ok(
        "endpoint",
        format!(
            "{} port {}, region {}, user {}, {}",
            db.endpoint,
            db.port,
            db.region,
            db.user,
            match Action::for_user(&db.user) {
                _ if minter.uses_password() => "password: the sandbox's per-run secret",
                Action::DbConnectAdmin => "token action DbConnectAdmin (admin)",
                Action::DbConnect => "token action DbConnect (custom role)",
            }
        ),
    );

    if minter.uses_password() {
        report.ok(
            "credentials",
            "none needed: the sandbox authenticates this server with its own password",
        );
    } else if !credentials(report, db, &minter).await {
        report.skip(&AFTER_CONFIG[1..], "no credentials");
        return;
    }
    match minter.mint().await {
        Ok(_) if minter.uses_password() => report.ok(
            "token",
            "the sandbox's password (SCRAM-SHA-256, random per run, never printed) in place of an IAM token",
        ),
        Ok(_) => report.ok(
            "token",
            format!(
                "signed locally, valid {} s for connecting (a fresh one per connection)",
                TOKEN_LIFETIME.as_secs()
            ),
        ),
        Err(e) => {
            report.fail(
                "token",
                e.to_string(),
                "check the region and the credentials above",
            );
            report.skip(&AFTER_CONFIG[2..], "no token");
            return;
        }
    }

    let Some(stream) = tcp(report, db).await else {
        report.skip(&AFTER_CONFIG[3..], "the endpoint is unreachable");
        return;
    };
    if !tls_handshake(report, db, stream).await {
        report.skip(&AFTER_CONFIG[4..], "TLS failed");
        return;
    }

    let Some(conn) = connect(report, db, access, minter).await else {
        report.skip(&AFTER_CONFIG[5..], "not connected");
        return;
    };
    queries(report, &conn).await;
    privileges(report, db, access, &conn).await;
}

async fn credentials(report: &mut Report, db: &Database, minter: &TokenMinter) -> bool {
    let sdk = minter.sdk_config().await;
    let profile = db
        .profile
        .as_deref()
        .map(|p| format!(" (profile {p})"))
        .unwrap_or_default();
    let fix = "configure AWS credentials: `aws configure` or `aws sso login`, --profile / AWS_PROFILE, \
               or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY";
    let Some(provider) = sdk.credentials_provider() else {
        report.fail("credentials", "no credential provider is configured", fix);
        return false;
    };
    match tokio::time::timeout(STEP_TIMEOUT, provider.provide_credentials()).await {
        Ok(Ok(creds)) => {
            let expiry = creds
                .expiry()
                .and_then(|t| t.duration_since(std::time::SystemTime::now()).ok())
                .map(|d| format!(", expire in {} min", d.as_secs() / 60))
                .unwrap_or_default();
            let provider_name = provider_name(&creds);
            report.ok(
                "credentials",
                format!("found{profile} from provider {provider_name}{expiry}"),
            );
            true
        }
        Ok(Err(e)) => {
            let message = crate::connection::error::error_chain(&e);
            report.fail(
                "credentials",
                format!("none found{profile}: {message}"),
                fix,
            );
            false
        }
        Err(_) => {
            report.fail(
                "credentials",
                format!("the credential chain did not answer within {STEP_TIMEOUT:?}{profile}"),
                fix,
            );
            false
        }
    }
}

async fn tcp(report: &mut Report, db: &Database) -> Option<tokio::net::TcpStream> {
    let fix = "check --cluster_endpoint and --port (DSQL listens on 5432), that the cluster is \
               ACTIVE in that region, and that outbound TCP to it is allowed";
    let started = Instant::now();
    let addrs = match tokio::time::timeout(
        STEP_TIMEOUT,
        tokio::net::lookup_host((db.endpoint.as_str(), db.port)),
    )
    .await
    {
        Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
        Ok(Err(e)) => {
            report.fail("tcp", format!("cannot resolve {}: {e}", db.endpoint), fix);
            return None;
        }
        Err(_) => {
            report.fail("tcp", format!("resolving {} timed out", db.endpoint), fix);
            return None;
        }
    };
    let mut errors = Vec::new();
    for addr in &addrs {
        match tokio::time::timeout(STEP_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                report.ok(
                    "tcp",
                    format!(
                        "{}:{} reachable at {addr} in {}",
                        db.endpoint,
                        db.port,
                        ms(started.elapsed())
                    ),
                );
                return Some(stream);
            }
            Ok(Err(e)) => errors.push(format!("{addr}: {e}")),
            Err(_) => errors.push(format!("{addr}: timed out")),
        }
    }
    report.fail(
        "tcp",
        format!(
            "cannot connect to {}:{} ({})",
            db.endpoint,
            db.port,
            errors.join("; ")
        ),
        fix,
    );
    None
}

/// SSLRequest, then a TLS handshake verified exactly as the server's connections are.
async fn tls_handshake(
    report: &mut Report,
    db: &Database,
    mut stream: tokio::net::TcpStream,
) -> bool {
    let roots = match &db.ssl_root_cert {
        Some(path) => format!("the CA in {}", path.display()),
        None => "the webpki and system roots".to_owned(),
    };
    let config = match tls::client_config(db.ssl_root_cert.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            report.fail(
                "tls",
                e.to_string(),
                "--ssl-root-cert (or PGSSLROOTCERT) must name a readable PEM file holding the CA certificate",
            );
            return false;
        }
    };
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let mut answer = [0u8; 1];
    let asked = async {
        stream.write_all(&SSL_REQUEST).await?;
        stream.read_exact(&mut answer).await
    };
    match tokio::time::timeout(STEP_TIMEOUT, asked).await {
        Ok(Ok(_)) if answer[0] == b'S' => {}
        Ok(Ok(_)) => {
            report.fail(
                "tls",
                "the server does not accept TLS",
                "point --cluster_endpoint at an Aurora DSQL endpoint (or a PostgreSQL with ssl = on)",
            );
            return false;
        }
        Ok(Err(e)) => {
            report.fail(
                "tls",
                format!("the server closed the connection before TLS: {e}"),
                "check that the port belongs to PostgreSQL/DSQL",
            );
            return false;
        }
        Err(_) => {
            report.fail(
                "tls",
                "no answer to the TLS request",
                "check that the port belongs to PostgreSQL/DSQL",
            );
            return false;
        }
    }
    let Ok(name) = rustls::pki_types::ServerName::try_from(db.endpoint.clone()) else {
        report.fail(
            "tls",
            format!("`{}` is not a valid TLS server name", db.endpoint),
            "use the cluster's host name as the endpoint",
        );
        return false;
    };
    let started = Instant::now();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match tokio::time::timeout(STEP_TIMEOUT, connector.connect(name, stream)).await {
        Ok(Ok(tls)) => {
            let session = tls.get_ref().1;
            let version = session
                .protocol_version()
                .map(|v| format!("{v:?}").replace('_', "."))
                .unwrap_or_else(|| "TLS".into());
            let chain = session.peer_certificates().unwrap_or_default();
            let (subject, issuer) = chain
                .first()
                .and_then(|c| x509_parser::parse_x509_certificate(c.as_ref()).ok())
                .map(|(_, cert)| (cert.subject().to_string(), cert.issuer().to_string()))
                .unwrap_or_else(|| ("?".into(), "?".into()));
            report.ok(
                "tls",
                format!(
                    "{version} handshake in {}; server certificate subject \"{subject}\", issuer \"{issuer}\"; \
                     chain of {} certificate(s) verified against {roots}, host name {} matches",
                    ms(started.elapsed()),
                    chain.len(),
                    db.endpoint
                ),
            );
            true
        }
        Ok(Err(e)) => {
            let problem = e.to_string();
            let fix = if problem.contains("UnknownIssuer") || problem.contains("BadSignature") {
                match &db.ssl_root_cert {
                    Some(_) => "--ssl-root-cert (or PGSSLROOTCERT) must be the CA that signed the server's certificate"
                        .to_owned(),
                    None => "DSQL certificates chain to Amazon Root CA 1 (in the built-in roots); behind a \
                             TLS-inspecting proxy, pass its CA with --ssl-root-cert"
                        .to_owned(),
                }
            } else if problem.contains("NotValidForName") {
                "connect with the host name the certificate was issued for (the cluster endpoint), not an \
                 IP address or alias"
                    .to_owned()
            } else if problem.contains("Expired") || problem.contains("NotValidYet") {
                "the server certificate is outside its validity period: check this machine's clock"
                    .to_owned()
            } else {
                "check that the endpoint is an Aurora DSQL cluster and nothing intercepts TLS"
                    .to_owned()
            };
            report.fail(
                "tls",
                format!("handshake failed, certificate not trusted against {roots}: {problem}"),
                fix,
            );
            false
        }
        Err(_) => {
            report.fail(
                "tls",
                "the TLS handshake timed out",
                "check for a proxy or firewall between this machine and the cluster",
            );
            false
        }
    }
}

async fn connect(
    report: &mut Report,
    db: &Database,
    access: Access,
    minter: TokenMinter,
) -> Option<PgConnection> {
    let secret = if minter.uses_password() {
        "the sandbox's password"
    } else {
        "a fresh token"
    };
    let manager = match Manager::with_minter(db, access, minter) {
        Ok(m) => m,
        Err(e) => {
            report.fail("connect", e.to_string(), "fix the TLS configuration above");
            return None;
        }
    };
    let started = Instant::now();
    match manager.create().await {
        Ok(conn) => {
            report.ok(
                "connect",
                format!(
                    "authenticated as {} with {secret} in {} (token, TCP, TLS, login)",
                    db.user,
                    ms(started.elapsed())
                ),
            );
            Some(conn)
        }
        Err(e) => {
            let text = e.to_string();
            let fix = match &e {
                ConnectError::Postgres(DbError { code: Some(c), .. })
                    if c == "28P01" || c == "28000" =>
                {
                    format!(
                        "the cluster refused the token: the credentials' IAM policy must allow dsql:{:?} on this \
                         cluster, the region must be the cluster's, and the role `{}` must exist (custom roles \
                         need AWS IAM GRANT)",
                        Action::for_user(&db.user),
                        db.user
                    )
                }
                _ => "check the endpoint, port and credentials above".to_owned(),
            };
            report.fail("connect", text, fix);
            None
        }
    }
}

async fn queries(report: &mut Report, conn: &PgConnection) {
    let client = &conn.client;
    let one = |sql: &'static str| async move {
        tokio::time::timeout(STEP_TIMEOUT, client.query_one(sql, &[]))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| DbError::from(&e).to_string())
    };
    match one("SELECT pg_catalog.current_setting('server_version')").await {
        Ok(row) => report.ok("server version", row.get::<_, String>(0)),
        Err(e) => report.fail(
            "server version",
            e,
            "the session cannot run queries: check the role's grants",
        ),
    }
    match one("SELECT count(*) FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'sys') \
           AND n.nspname NOT LIKE 'pg\\_%'")
    .await
    {
        Ok(row) => {
            let n: i64 = row.get(0);
            report.ok("tables", format!("{n} in user schemas"));
        }
        Err(e) => report.fail("tables", e, "the role needs to read the catalog"),
    }
    let started = Instant::now();
    match one("SELECT 1").await {
        Ok(_) => report.ok(
            "select 1",
            format!("round trip in {}", ms(started.elapsed())),
        ),
        Err(e) => report.fail("select 1", e, "the session cannot run queries"),
    }
}

/// Schemas a privilege query looks at: every schema but PostgreSQL's own.
const USER_SCHEMAS: &str = "n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'";

/// What the configured role may do, and a warning when a read-only server's role can
/// write (then only the SQL guard stands between an agent and a write).
async fn privileges(report: &mut Report, db: &Database, access: Access, conn: &PgConnection) {
    let client = &conn.client;
    let fix = "the role needs to read pg_roles, pg_namespace and pg_class";
    let role = tokio::time::timeout(
        STEP_TIMEOUT,
        client.query_opt(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_catalog.pg_roles \
             WHERE rolname = current_user",
            &[],
        ),
    )
    .await;
    let (superuser, create_role, create_db) = match role {
        Ok(Ok(Some(row))) => (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2),
        ),
        Ok(Ok(None)) => {
            report.fail("role", format!("{} is not in pg_roles", db.user), fix);
            report.skip(&["schemas"], "no role");
            return;
        }
        Ok(Err(e)) => {
            report.fail("role", DbError::from(&e).to_string(), fix);
            report.skip(&["schemas"], "no role");
            return;
        }
        Err(_) => {
            report.fail("role", "timed out", fix);
            report.skip(&["schemas"], "no role");
            return;
        }
    };
    let yes = |b: bool| if b { "yes" } else { "no" };
    report.ok(
        "role",
        format!(
            "{}: superuser {}, create roles {}, create databases {}",
            db.user,
            yes(superuser),
            yes(create_role),
            yes(create_db)
        ),
    );
    let names = |sql: String| async move {
        match tokio::time::timeout(STEP_TIMEOUT, client.query(&sql, &[])).await {
            Ok(Ok(rows)) => Ok(rows
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()),
            Ok(Err(e)) => Err(DbError::from(&e).to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    };
    let create_in = names(format!(
        "SELECT n.nspname FROM pg_catalog.pg_namespace n \
         WHERE pg_catalog.has_schema_privilege(n.oid, 'CREATE') AND {USER_SCHEMAS} ORDER BY 1"
    ))
    .await;
    let write_in = names(format!(
        "SELECT DISTINCT n.nspname FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMAS} \
           AND pg_catalog.has_table_privilege(c.oid, 'INSERT,UPDATE,DELETE') ORDER BY 1"
    ))
    .await;
    let (create_in, write_in) = match (create_in, write_in) {
        (Ok(c), Ok(w)) => (c, w),
        (Err(e), _) | (_, Err(e)) => {
            report.fail("schemas", e, fix);
            return;
        }
    };
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    report.ok(
        "schemas",
        format!(
            "can create objects in: {}; can write tables in: {}",
            list(&create_in),
            list(&write_in)
        ),
    );
    if access != Access::ReadOnly {
        return;
    }
    let mut can = Vec::new();
    if superuser {
        can.push("is a superuser".to_owned());
    }
    if create_role {
        can.push("can create roles".to_owned());
    }
    if create_db {
        can.push("can create databases".to_owned());
    }
    if !create_in.is_empty() {
        can.push(format!("can create objects in {}", list(&create_in)));
    }
    if !write_in.is_empty() {
        can.push(format!("can write tables in {}", list(&write_in)));
    }
    if can.is_empty() {
        report.ok(
            "read-only",
            format!("{} can only read: the database refuses writes too", db.user),
        );
    } else {
        report.warn(
            "read-only",
            format!(
                "the server is read-only (no --allow-writes) but role {} {}: if a write got past \
                 the SQL guard, the database would not stop it",
                db.user,
                can.join(", ")
            ),
            "connect as a role that can only read: CREATE ROLE reader WITH LOGIN, GRANT USAGE ON SCHEMA \
             and SELECT ON ALL TABLES IN SCHEMA to it, map it with AWS IAM GRANT, and pass \
             --database_user reader (README, \"Least privilege\")",
        );
    }
}

/// The name of the provider that supplied `creds`. `Credentials` has no getter for it;
/// its `Debug` (which redacts the secret) shows it first. Only that field is taken.
fn provider_name(creds: &aws_credential_types::Credentials) -> String {
    let debug = format!("{creds:?}");
    debug
        .split_once("provider_name: \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or_else(|| "unknown".to_owned(), |(name, _)| name.to_owned())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
