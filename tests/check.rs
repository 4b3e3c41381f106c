//! `aurora-dsql-mcp-server check` through the real binary: against the `--local` sandbox,
//! against the harness cluster, with a CA that did not sign the server's certificate,
//! against nothing listening, and with no cluster configured. Exit code 0 only when every
//! line is OK.

mod common;

use std::process::{Command, Output, Stdio};

use common::mcp::{server_binary, server_env};

fn check(args: &[String]) -> (i32, String, String) {
    let (home, env) = server_env(&[]);
    let out: Output = Command::new(server_binary())
        .arg("check")
        .args(args)
        .env_clear()
        .envs(env)
        .current_dir(home.path())
        .stdin(Stdio::null())
        .output()
        .expect("run the server binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn line<'a>(stdout: &'a str, prefix: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{stdout}"))
}

const STEPS: [&str; 11] = [
    "endpoint",
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

#[test]
fn check_local_passes() {
    let (code, stdout, stderr) = check(&["--local".into()]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    line(&stdout, "OK    sandbox: PostgreSQL from ");
    for step in STEPS {
        line(&stdout, &format!("OK    {step}: "));
    }
    assert!(
        line(&stdout, "OK    endpoint: ")
            .ends_with("user admin, password: the sandbox's per-run secret")
    );
    assert_eq!(
        line(&stdout, "OK    credentials: "),
        "OK    credentials: none needed: the sandbox authenticates this server with its own password"
    );
    assert_eq!(
        line(&stdout, "OK    token: "),
        "OK    token: the sandbox's password (SCRAM-SHA-256, random per run, never printed) in place of an IAM token"
    );
    assert!(
        line(&stdout, "OK    connect: ")
            .starts_with("OK    connect: authenticated as admin with the sandbox's password in ")
    );
    let tls = line(&stdout, "OK    tls: ");
    assert!(tls.contains("subject \"CN=localhost\""), "{tls}");
    assert!(tls.contains("local sandbox CA"), "{tls}");
    assert!(tls.contains("verified"), "{tls}");
    // A fresh sandbox: admin can create roles and objects in public, so a read-only
    // server connected as admin gets a warning (not a failure).
    assert_eq!(
        privilege_lines(&stdout),
        [
            "OK    role: admin: superuser no, create roles yes, create databases no",
            "OK    schemas: can create objects in: public; can write tables in: none",
            READ_ONLY_WARNING_ADMIN,
        ]
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("all checks passed, 1 warning(s)"),
        "{stdout}"
    );
    assert!(!stdout.contains(common::FAKE_SECRET_ACCESS_KEY));
    assert!(!stdout.contains(common::FAKE_ACCESS_KEY_ID));
}

const READ_ONLY_WARNING_ADMIN: &str = "WARN  read-only: the server is read-only (no --allow-writes) but role admin \
     can create roles, can create objects in public: if a write got past the SQL guard, the database would not \
     stop it | fix: connect as a role that can only read: CREATE ROLE reader WITH LOGIN, GRANT USAGE ON SCHEMA \
     and SELECT ON ALL TABLES IN SCHEMA to it, map it with AWS IAM GRANT, and pass --database_user reader \
     (README, \"Least privilege\")";

/// The lines of the privilege steps, in order.
fn privilege_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| {
            ["role: ", "schemas: ", "read-only: "]
                .iter()
                .any(|s| l[6..].starts_with(s))
        })
        .collect()
}

#[test]
fn check_local_as_reader_reports_a_read_only_role() {
    let (code, stdout, stderr) =
        check(&["--local".into(), "--database_user".into(), "reader".into()]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(line(&stdout, "OK    endpoint: ").contains("user reader, password"));
    assert_eq!(
        privilege_lines(&stdout),
        [
            "OK    role: reader: superuser no, create roles no, create databases no",
            "OK    schemas: can create objects in: none; can write tables in: none",
            "OK    read-only: reader can only read: the database refuses writes too",
        ]
    );
    assert!(!stdout.contains("WARN"), "{stdout}");
    assert!(stdout.trim_end().ends_with("all checks passed"), "{stdout}");
}

#[test]
fn check_local_with_writes_allowed_does_not_warn() {
    let (code, stdout, _) = check(&["--local".into(), "--allow-writes".into()]);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(
        privilege_lines(&stdout),
        [
            "OK    role: admin: superuser no, create roles yes, create databases no",
            "OK    schemas: can create objects in: public; can write tables in: none",
        ]
    );
    assert!(stdout.trim_end().ends_with("all checks passed"), "{stdout}");
}

#[tokio::test]
async fn check_reports_what_the_role_may_do_on_the_stand_in() {
    // A private stand-in, so that no other test's tables change the lists.
    let pg = common::start();
    let admin = pg.connect_as("admin").await;
    admin
        .batch_execute(
            "CREATE SCHEMA shop; CREATE TABLE shop.orders (id int PRIMARY KEY); \
             CREATE TABLE public.notes (id int PRIMARY KEY); \
             CREATE ROLE viewer LOGIN; GRANT USAGE ON SCHEMA shop TO viewer; \
             GRANT SELECT ON shop.orders TO viewer; GRANT UPDATE ON public.notes TO viewer",
        )
        .await
        .unwrap();
    let run = |user: &str| {
        let mut args = common::cluster_args(&pg, &[]);
        let at = args.iter().position(|a| a == "--database_user").unwrap();
        args[at + 1] = user.to_owned();
        check(&args)
    };

    let (code, stdout, _) = run("admin");
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(
        privilege_lines(&stdout),
        [
            "OK    role: admin: superuser no, create roles yes, create databases no",
            "OK    schemas: can create objects in: public, shop; can write tables in: public, shop",
            "WARN  read-only: the server is read-only (no --allow-writes) but role admin can create roles, \
             can create objects in public, shop, can write tables in public, shop: if a write got past the SQL \
             guard, the database would not stop it | fix: connect as a role that can only read: CREATE ROLE \
             reader WITH LOGIN, GRANT USAGE ON SCHEMA and SELECT ON ALL TABLES IN SCHEMA to it, map it with AWS \
             IAM GRANT, and pass --database_user reader (README, \"Least privilege\")",
        ]
    );

    // The stand-in trusts any password, so even the superuser can be checked: reported.
    let (code, stdout, _) = run("postgres");
    assert_eq!(code, 0, "{stdout}");
    let lines = privilege_lines(&stdout);
    assert_eq!(
        lines[0],
        "OK    role: postgres: superuser yes, create roles yes, create databases yes"
    );
    assert!(
        lines[2].starts_with(
            "WARN  read-only: the server is read-only (no --allow-writes) but role postgres is a superuser, \
             can create roles, can create databases, can create objects in "
        ),
        "{}",
        lines[2]
    );

    // UPDATE on one table is a write: warned, naming only that schema.
    let (code, stdout, _) = run("viewer");
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(
        privilege_lines(&stdout),
        [
            "OK    role: viewer: superuser no, create roles no, create databases no",
            "OK    schemas: can create objects in: none; can write tables in: public",
            "WARN  read-only: the server is read-only (no --allow-writes) but role viewer can write tables in \
             public: if a write got past the SQL guard, the database would not stop it | fix: connect as a role \
             that can only read: CREATE ROLE reader WITH LOGIN, GRANT USAGE ON SCHEMA and SELECT ON ALL TABLES \
             IN SCHEMA to it, map it with AWS IAM GRANT, and pass --database_user reader (README, \"Least \
             privilege\")",
        ]
    );
}

#[test]
fn check_against_the_harness_cluster_passes() {
    let pg = common::shared();
    let (code, stdout, stderr) = check(&common::cluster_args(pg, &[]));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    for step in STEPS {
        line(&stdout, &format!("OK    {step}: "));
    }
    let endpoint = line(&stdout, "OK    endpoint: ");
    assert!(
        endpoint.contains(&format!("localhost port {}", pg.port())),
        "{endpoint}"
    );
    assert!(endpoint.contains("region us-east-1"), "{endpoint}");
    assert!(line(&stdout, "OK    tls: ").contains("test CA"));
    assert!(line(&stdout, "OK    server version: ").contains('.'));
}

#[test]
fn check_with_the_wrong_ca_fails_at_tls() {
    let pg = common::shared();
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(&other, cert.cert.pem()).unwrap();
    let mut args = common::cluster_args(pg, &[]);
    let at = args.iter().position(|a| a == "--ssl-root-cert").unwrap();
    args[at + 1] = other.display().to_string();

    let (code, stdout, _) = check(&args);
    assert_eq!(code, 1, "{stdout}");
    line(&stdout, "OK    tcp: ");
    let tls = line(&stdout, "FAIL  tls: ");
    assert!(tls.contains("UnknownIssuer"), "{tls}");
    assert!(tls.contains("fix: --ssl-root-cert"), "{tls}");
    line(&stdout, "SKIP  connect: ");
    assert!(stdout.trim_end().ends_with("1 check(s) failed"), "{stdout}");
}

#[test]
fn check_with_nothing_listening_fails_at_tcp() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed again when the listener drops
    let args: Vec<String> = [
        "--cluster_endpoint",
        "localhost",
        "--port",
        &port.to_string(),
        "--database_user",
        "admin",
        "--region",
        "us-east-1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, stdout, _) = check(&args);
    assert_eq!(code, 1, "{stdout}");
    line(&stdout, "OK    endpoint: ");
    line(&stdout, "OK    credentials: ");
    let tcp = line(&stdout, "FAIL  tcp: ");
    assert!(tcp.contains("cannot connect to localhost"), "{tcp}");
    assert!(
        tcp.contains("fix: check --cluster_endpoint and --port"),
        "{tcp}"
    );
    line(&stdout, "SKIP  tls: ");
}

#[test]
fn check_without_a_cluster_fails_clearly() {
    let (code, stdout, _) = check(&[]);
    assert_eq!(code, 1, "{stdout}");
    let endpoint = line(&stdout, "FAIL  endpoint: no cluster configured");
    assert!(endpoint.contains("--cluster_endpoint"), "{endpoint}");
    assert!(endpoint.contains("check --local"), "{endpoint}");
    line(&stdout, "SKIP  select 1: ");
}

#[test]
fn flags_before_the_subcommand_work_too() {
    let (code, stdout, _) = check(&[]);
    assert_eq!(code, 1);
    // `--region x check` parses the same as `check --region x`.
    let (home, env) = server_env(&[]);
    let out = Command::new(server_binary())
        .args(["--region", "eu-west-1", "check"])
        .env_clear()
        .envs(env)
        .current_dir(home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout2 = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout2.contains("FAIL  endpoint: no cluster configured"),
        "{stdout2}"
    );
    assert!(!stdout.is_empty());
}

#[test]
fn check_with_an_unreadable_ca_file_fails_on_the_configuration_line() {
    let (code, stdout, _) = check(&[
        "--cluster_endpoint".into(),
        "localhost".into(),
        "--ssl-root-cert".into(),
        "/nonexistent/ca.pem".into(),
    ]);
    assert_eq!(code, 1, "{stdout}");
    let line = line(
        &stdout,
        "FAIL  configuration: --ssl-root-cert /nonexistent/ca.pem",
    );
    assert!(line.contains("fix: "), "{line}");
}
