//! The `--local` sandbox through the real binary and a real MCP client: DSQL's behaviours
//! (ASYNC index builds and jobs, the row limit, the rule checker, IAM and isolation
//! refusals) and its clean-up (no folder and no postmaster left after stdin closes,
//! SIGTERM or SIGKILL; `--local-dir` keeps data between runs).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{McpSession, structured, text};
use serde_json::{Value, json};

fn args(extra: &[&str]) -> Vec<String> {
    let mut a = vec!["--local".to_string(), "--allow-writes".to_string()];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// The sandbox folder, from the server's start-up log line.
fn sandbox_folder(session: &McpSession) -> PathBuf {
    let stderr = session.stderr();
    let line = stderr
        .lines()
        .find(|l| l.contains("local sandbox started"))
        .unwrap_or_else(|| panic!("no start-up line in stderr:\n{stderr}"));
    let folder = line
        .split("folder=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("folder= in the start-up line");
    PathBuf::from(folder)
}

/// The postmaster's pid, from `postmaster.pid` in the data directory.
fn postmaster_pid(folder: &std::path::Path) -> i32 {
    let pidfile = std::fs::read_to_string(folder.join("data/postmaster.pid"))
        .expect("postmaster.pid while the sandbox runs");
    pidfile.lines().next().unwrap().trim().parse().unwrap()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks whether the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Waits up to 10 s for `cond`.
fn eventually(cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

async fn execute(s: &McpSession, sql: &str) -> Value {
    let r = s.call("execute", json!({ "sql": sql })).await;
    assert_ne!(r.is_error, Some(true), "{sql}: {}", text(&r));
    structured(&r)
}

async fn execute_err(s: &McpSession, sql: &str) -> String {
    let r = s.call("execute", json!({ "sql": sql })).await;
    assert_eq!(r.is_error, Some(true), "{sql} succeeded: {}", text(&r));
    text(&r)
}

async fn query(s: &McpSession, sql: &str, params: Value) -> Vec<Value> {
    let r = s
        .call("query", json!({ "sql": sql, "parameters": params }))
        .await;
    assert_ne!(r.is_error, Some(true), "{sql}: {}", text(&r));
    structured(&r)["rows"].as_array().unwrap().clone()
}

fn is_job_id(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 26
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    })
}

#[tokio::test]
async fn sandbox_behaves_like_dsql() {
    let s = McpSession::start(&args(&[]), &[]).await;
    execute(&s, "CREATE TABLE items (id int PRIMARY KEY, name text)").await;
    let inserted = execute(
        &s,
        "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g",
    )
    .await;
    assert_eq!(inserted["rowCount"], 100);

    // CREATE INDEX ASYNC answers with a job id, recorded in sys.jobs as completed.
    let created = execute(&s, "CREATE INDEX ASYNC items_name_idx ON items (name)").await;
    let job_id = created["rows"][0]["job_id"].clone();
    assert!(is_job_id(&job_id), "job id: {created}");
    let jobs = query(
        &s,
        "SELECT job_id, status, details, job_type, class_id, object_id, object_name, start_time, update_time \
         FROM sys.jobs WHERE job_id = $1",
        json!([job_id]),
    )
    .await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["status"], "completed");
    assert_eq!(jobs[0]["job_type"], "INDEX_BUILD");
    assert_eq!(jobs[0]["object_name"], "public.items_name_idx");

    // CALL sys.wait_for_job, outside a transaction, says it succeeded.
    let waited = execute(
        &s,
        &format!("CALL sys.wait_for_job('{}')", job_id.as_str().unwrap()),
    )
    .await;
    assert_eq!(waited["rows"][0]["succeeded"], true, "{waited}");
    let bad = execute_err(&s, "CALL sys.wait_for_job('no-such-job')").await;
    assert!(bad.contains("22P02"), "{bad}");

    // describe_table shows the index, valid.
    let described = s
        .call("describe_table", json!({ "table_name": "items" }))
        .await;
    let described = structured(&described);
    let index = described["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "items_name_idx")
        .unwrap_or_else(|| panic!("index missing: {described}"));
    assert_eq!(index["valid"], true);

    // A unique build over duplicates: the job fails and says why.
    execute(&s, "INSERT INTO items VALUES (101, 'item 1')").await;
    let unique = execute(
        &s,
        "CREATE UNIQUE INDEX ASYNC items_name_key ON items (name)",
    )
    .await;
    let failed = query(
        &s,
        "SELECT status, details FROM sys.jobs WHERE job_id = $1",
        json!([unique["rows"][0]["job_id"]]),
    )
    .await;
    assert_eq!(failed[0]["status"], "failed");
    assert!(
        failed[0]["details"].as_str().unwrap().contains("duplicate"),
        "{failed:?}"
    );
    let waited = execute(
        &s,
        &format!(
            "CALL sys.wait_for_job('{}')",
            unique["rows"][0]["job_id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(waited["rows"][0]["succeeded"], false);

    // ALTER TABLE ASYNC ... VALIDATE CONSTRAINT runs as a job too.
    execute(
        &s,
        "ALTER TABLE items ADD CONSTRAINT name_not_empty CHECK (name <> '') NOT VALID",
    )
    .await;
    let validated = execute(
        &s,
        "ALTER TABLE ASYNC items VALIDATE CONSTRAINT name_not_empty",
    )
    .await;
    let job = query(
        &s,
        "SELECT status, job_type, object_name FROM sys.jobs WHERE job_id = $1",
        json!([validated["rows"][0]["job_id"]]),
    )
    .await;
    assert_eq!(job[0]["status"], "completed");
    assert_eq!(job[0]["job_type"], "VALIDATE_CONSTRAINT");
    assert_eq!(job[0]["object_name"], "public.name_not_empty");

    // 3,000 rows per transaction: 3,000 pass, 3,001 fail with DSQL's SQLSTATE and message.
    execute(&s, "CREATE TABLE bulk (id int PRIMARY KEY)").await;
    let ok = execute(
        &s,
        "INSERT INTO bulk SELECT g FROM generate_series(1, 3000) g",
    )
    .await;
    assert_eq!(ok["rowCount"], 3000);
    let too_many = execute_err(
        &s,
        "INSERT INTO bulk SELECT g FROM generate_series(5001, 8001) g",
    )
    .await;
    assert!(too_many.contains("54000"), "{too_many}");
    assert!(
        too_many.contains("transaction row limit exceeded"),
        "{too_many}"
    );
    let count = query(&s, "SELECT count(*) AS n FROM bulk", json!([])).await;
    assert_eq!(count[0]["n"], 3000, "the failed statement left nothing");
    let deleted = execute(&s, "DELETE FROM bulk WHERE id > 0").await;
    assert_eq!(
        deleted["rowCount"], 3000,
        "exactly 3,000 rows is within the limit"
    );

    // The rule checker refuses what DSQL refuses, before the database sees it.
    let sync_index = execute_err(&s, "CREATE INDEX items_id_idx ON items (id)").await;
    assert!(sync_index.to_uppercase().contains("ASYNC"), "{sync_index}");

    // IAM and isolation levels.
    let iam = execute_err(
        &s,
        "AWS IAM GRANT app_reader TO 'arn:aws:iam::123456789012:role/reader'",
    )
    .await;
    assert!(iam.contains("not available in the local sandbox"), "{iam}");
    let serializable = execute_err(&s, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").await;
    assert!(
        serializable.to_lowercase().contains("isolation"),
        "{serializable}"
    );
    let level = query(&s, "SHOW transaction_isolation", json!([])).await;
    assert_eq!(level[0]["transaction_isolation"], "repeatable read");

    let folder = sandbox_folder(&s);
    let pid = postmaster_pid(&folder);
    assert!(alive(pid));
    let status = s.close().await;
    assert!(status.success(), "exit status {status}");
    assert!(
        eventually(|| !alive(pid)),
        "postmaster {pid} survived the server"
    );
    assert!(!folder.exists(), "{} survived the server", folder.display());
}

#[tokio::test]
async fn sigterm_and_sigkill_leave_nothing_running() {
    // SIGTERM: a clean stop, folder removed.
    let s = McpSession::start(&args(&[]), &[]).await;
    let folder = sandbox_folder(&s);
    let pid = postmaster_pid(&folder);
    let server = s.pid().unwrap() as i32;
    unsafe { libc::kill(server, libc::SIGTERM) };
    assert!(eventually(|| !alive(pid)), "postmaster survived SIGTERM");
    assert!(eventually(|| !folder.exists()), "folder survived SIGTERM");
    drop(s);

    // SIGKILL: the kernel takes the postmaster down with the server.
    let s = McpSession::start(&args(&[]), &[]).await;
    let folder = sandbox_folder(&s);
    let pid = postmaster_pid(&folder);
    let server = s.pid().unwrap() as i32;
    unsafe { libc::kill(server, libc::SIGKILL) };
    assert!(eventually(|| !alive(pid)), "postmaster survived SIGKILL");
    drop(s);
    // The folder of the killed run is swept by the next start.
    let next = McpSession::start(&args(&[]), &[]).await;
    assert!(
        eventually(|| !folder.exists()),
        "the killed run's folder was not swept"
    );
    next.close().await;
}

#[tokio::test]
async fn local_dir_keeps_data_between_runs() {
    let dir = tempfile::Builder::new()
        .prefix("dsql-sandbox-kept-")
        .tempdir()
        .unwrap();
    let kept = dir.path().join("sandbox");
    let kept_arg = kept.display().to_string();

    let first = McpSession::start(&args(&["--local-dir", &kept_arg]), &[]).await;
    execute(&first, "CREATE TABLE notes (id int PRIMARY KEY, body text)").await;
    execute(&first, "INSERT INTO notes VALUES (1, 'kept')").await;
    let pid = postmaster_pid(&kept);
    assert!(first.close().await.success());
    assert!(eventually(|| !alive(pid)));
    assert!(
        kept.join("data/PG_VERSION").is_file(),
        "data folder removed"
    );

    let second = McpSession::start(&args(&["--local-dir", &kept_arg]), &[]).await;
    let rows = query(&second, "SELECT body FROM notes WHERE id = 1", json!([])).await;
    assert_eq!(rows[0]["body"], "kept");
    // The emulation is still in place on a reused data directory.
    let too_many = execute_err(
        &second,
        "INSERT INTO notes SELECT g, 'x' FROM generate_series(2, 3002) g",
    )
    .await;
    assert!(too_many.contains("54000"), "{too_many}");
    assert!(second.close().await.success());
    assert!(kept.exists());
}

/// The sandbox's port, from the server's start-up log line.
fn sandbox_port(session: &McpSession) -> u16 {
    let stderr = session.stderr();
    stderr
        .lines()
        .find(|l| l.contains("local sandbox started"))
        .and_then(|l| l.split("port=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in the start-up line:\n{stderr}"))
}

/// A TLS connection attempt to the sandbox as `user` (verified against its CA), with
/// `password` if any. `Ok` carries `current_user` of the session.
async fn try_login(
    folder: &std::path::Path,
    port: u16,
    user: &str,
    password: Option<&str>,
) -> Result<String, String> {
    let pem = std::fs::read(folder.join("ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    use rustls::pki_types::pem::PemObject;
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut config = tokio_postgres::Config::new();
    config
        .host("localhost")
        .hostaddr(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
        .port(port)
        .user(user)
        .dbname("postgres")
        .ssl_mode(tokio_postgres::config::SslMode::Require)
        .connect_timeout(Duration::from_secs(10));
    if let Some(p) = password {
        config.password(p);
    }
    let (client, conn) = config
        .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => match std::error::Error::source(&e) {
                Some(source) => format!("{e}: {source}"),
                None => e.to_string(),
            },
        })?;
    tokio::spawn(conn);
    let row = client
        .query_one("SELECT current_user::text", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

/// The same over plain TCP (no TLS).
async fn try_plain_login(port: u16, user: &str) -> Result<(), String> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .dbname("postgres")
        .password("guess")
        .connect_timeout(Duration::from_secs(10));
    config
        .connect(tokio_postgres::NoTls)
        .await
        .map(drop)
        .map_err(|e| match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        })
}

#[tokio::test]
async fn only_the_server_can_log_in_to_the_sandbox() {
    // Debug logging: every connection the server opens is logged, and still no secret.
    let s = McpSession::start(
        &args(&[]),
        &[("RUST_LOG", "debug,aurora_dsql_mcp_server=trace")],
    )
    .await;
    let folder = sandbox_folder(&s);
    let port = sandbox_port(&s);

    // The server's own connections log in (as admin) and work.
    execute(&s, "CREATE TABLE secrets (id int PRIMARY KEY)").await;
    execute(&s, "INSERT INTO secrets VALUES (1)").await;
    let who = query(
        &s,
        "SELECT current_user AS who, count(*) AS n FROM secrets",
        json!([]),
    )
    .await;
    assert_eq!(who, vec![json!({"who": "admin", "n": 1})]);

    // Every role, with a wrong password and with none, over TLS: refused by the server.
    let host_line = |user: &str| {
        format!(
            "28000: pg_hba.conf rejects connection for host \"127.0.0.1\", user \"{user}\", database \"postgres\", SSL encryption"
        )
    };
    let wrong = |user: &str| format!("28P01: password authentication failed for user \"{user}\"");
    for (user, with_wrong, without) in [
        ("postgres", host_line("postgres"), host_line("postgres")),
        (
            "made_up_role",
            host_line("made_up_role"),
            host_line("made_up_role"),
        ),
        // The server asks these for a password; without one the client cannot answer.
        (
            "admin",
            wrong("admin"),
            "invalid configuration: password missing".to_owned(),
        ),
        (
            "reader",
            wrong("reader"),
            "invalid configuration: password missing".to_owned(),
        ),
    ] {
        let guessed = "0".repeat(64);
        assert_eq!(
            try_login(&folder, port, user, Some(&guessed)).await,
            Err(with_wrong.clone()),
            "{user} with a wrong password"
        );
        assert_eq!(
            try_login(&folder, port, user, Some("")).await,
            Err(with_wrong),
            "{user} with an empty password"
        );
        assert_eq!(
            try_login(&folder, port, user, None).await,
            Err(without),
            "{user} without a password"
        );
        // Plain TCP is rejected for everyone before any password is asked for.
        assert_eq!(
            try_plain_login(port, user).await,
            Err(format!(
                "28000: pg_hba.conf rejects connection for host \"127.0.0.1\", user \"{user}\", database \"postgres\", no encryption"
            )),
            "{user} without TLS"
        );
    }

    // The superuser's only way in is the socket folder, which only its owner may enter.
    use std::os::unix::fs::MetadataExt;
    let socket = std::fs::metadata(folder.join("socket")).unwrap();
    assert_eq!(socket.mode() & 0o777, 0o700, "socket folder mode");
    // The database holds a SCRAM verifier, not the password (read as the superuser through
    // that folder: the test runs as the same OS user as the server, or as root).
    let mut su = tokio_postgres::Config::new();
    su.host_path(folder.join("socket"))
        .port(port)
        .user("postgres")
        .dbname("postgres");
    let (client, conn) = su.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT rolname::text, rolpassword FROM pg_catalog.pg_authid \
             WHERE rolpassword IS NOT NULL ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let stored: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        stored.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
        ["admin", "reader"]
    );
    for (role, verifier) in &stored {
        assert!(
            verifier.starts_with("SCRAM-SHA-256$4096:"),
            "{role}: {verifier}"
        );
    }

    // After all those refusals the server still works, on as many connections as it needs.
    let (a, b) = tokio::join!(
        s.call(
            "transact",
            json!({ "sql_list": ["INSERT INTO secrets VALUES (2)"] })
        ),
        s.call(
            "transact",
            json!({ "sql_list": ["INSERT INTO secrets VALUES (3)"] })
        ),
    );
    assert_ne!(a.is_error, Some(true), "{}", text(&a));
    assert_ne!(b.is_error, Some(true), "{}", text(&b));
    let n = query(&s, "SELECT count(*) AS n FROM secrets", json!([])).await;
    assert_eq!(n[0]["n"], 3);

    // No secret on stderr, at debug level: no run of 32 or more hex digits at all (the
    // password is 64), and neither fake AWS key.
    let stderr = s.stderr();
    assert!(stderr.contains("opened a connection"), "{stderr}");
    let longest_hex = stderr
        .split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(longest_hex < 32, "a long hex string on stderr:\n{stderr}");
    assert!(!stderr.contains(common::FAKE_SECRET_ACCESS_KEY));
    assert!(s.close().await.success());
}

#[tokio::test]
async fn the_reader_role_cannot_write_even_when_the_server_allows_writes() {
    let dir = tempfile::Builder::new()
        .prefix("dsql-sandbox-reader-")
        .tempdir()
        .unwrap();
    let kept = dir.path().join("sandbox");
    let kept_arg = kept.display().to_string();

    // admin makes a schema and two tables: reader gets SELECT on them by default privileges.
    let admin = McpSession::start(&args(&["--local-dir", &kept_arg]), &[]).await;
    execute(&admin, "CREATE TABLE notes (id int PRIMARY KEY, body text)").await;
    execute(&admin, "INSERT INTO notes VALUES (1, 'one')").await;
    execute(&admin, "CREATE SCHEMA app").await;
    execute(&admin, "CREATE TABLE app.events (id int PRIMARY KEY)").await;
    execute(&admin, "INSERT INTO app.events VALUES (7)").await;
    assert!(admin.close().await.success());

    let reader = McpSession::start(
        &args(&["--local-dir", &kept_arg, "--database_user", "reader"]),
        &[],
    )
    .await;
    let rows = query(
        &reader,
        "SELECT current_user AS who, (SELECT body FROM notes WHERE id = 1) AS body, \
         (SELECT id FROM app.events) AS event",
        json!([]),
    )
    .await;
    assert_eq!(
        rows,
        vec![json!({"who": "reader", "body": "one", "event": 7})]
    );
    // --allow-writes lets the statements past the guard; the database refuses them.
    let insert = execute_err(&reader, "INSERT INTO notes VALUES (2, 'two')").await;
    assert!(
        insert.contains("permission denied for table notes") && insert.contains("42501"),
        "{insert}"
    );
    let update = execute_err(&reader, "UPDATE app.events SET id = 8").await;
    assert!(
        update.contains("permission denied for table events"),
        "{update}"
    );
    let create = execute_err(&reader, "CREATE TABLE mine (id int PRIMARY KEY)").await;
    assert!(
        create.contains("permission denied for schema public"),
        "{create}"
    );
    let role = execute_err(&reader, "CREATE ROLE other").await;
    assert!(role.contains("permission denied to create role"), "{role}");
    let rows = query(
        &reader,
        "SELECT (SELECT string_agg(id || ':' || body, ',' ORDER BY id) FROM notes) AS notes, \
         (SELECT string_agg(id::text, ',') FROM app.events) AS events, \
         (SELECT count(*) FROM pg_catalog.pg_class WHERE relname = 'mine') AS mine",
        json!([]),
    )
    .await;
    assert_eq!(
        rows,
        vec![json!({"notes": "1:one", "events": "7", "mine": 0})],
        "nothing changed"
    );
    // Nor can reader write through the emulation's definer-rights function (checked in
    // the database itself, as the superuser through the private socket with SET ROLE).
    let mut su = tokio_postgres::Config::new();
    su.host_path(kept.join("socket"))
        .port(sandbox_port(&reader))
        .user("postgres")
        .dbname("postgres");
    let (client, conn) = su.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute("SET ROLE reader").await.unwrap();
    let e = client
        .batch_execute(
            "SELECT sys.record_job('INDEX_BUILD', 'completed', NULL, NULL, NULL, 'x', now())",
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.as_db_error().map(|d| d.message()),
        Some("permission denied for function record_job")
    );
    drop(client);
    assert!(reader.close().await.success());
}

#[tokio::test]
async fn only_the_sandbox_roles_can_be_chosen() {
    let (home, env) = common::mcp::server_env(&[]);
    let out = std::process::Command::new(common::mcp::server_binary())
        .args(["--local", "--database_user", "postgres"])
        .env_clear()
        .envs(env)
        .current_dir(home.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "aurora-dsql-mcp-server: --local: --database_user postgres: the sandbox's roles are admin and reader (admin can write, reader only read)\n"
    );
    assert!(out.stdout.is_empty());
}
