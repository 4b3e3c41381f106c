//! Proves the shared integration-test harness (`tests/common`) works: the throw-away TLS
//! PostgreSQL cluster starts, refuses plain TCP, restarts, runs twice at once and is gone after
//! drop; and (once the server binary exists) that an MCP session initializes and lists tools.

mod common;

use std::time::Duration;

use common::{McpSession, PgCluster};

fn process_exists(pid: u32) -> bool {
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

#[tokio::test]
async fn shared_cluster_accepts_tls_as_admin() {
    let pg = common::shared();
    let admin = pg.connect_as("admin").await;
    let row = admin.query_one("SHOW ssl", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "on");
    let row = admin
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "this connection itself uses TLS");
    let row = admin.query_one("SELECT current_user", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "admin");
}

#[tokio::test]
async fn roles_and_unique_names() {
    let pg = common::shared();
    let table = common::unique_name("harness_t");
    assert_ne!(table, common::unique_name("harness_t"));

    let admin = pg.connect_as("admin").await;
    admin
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY); INSERT INTO {table} VALUES (1)"
        ))
        .await
        .unwrap();

    let app = pg.connect_as("app_user").await;
    let other = common::unique_name("harness_app");
    app.batch_execute(&format!("CREATE TABLE {other} (x text)"))
        .await
        .unwrap();
    let err = app
        .query(&format!("SELECT * FROM {table}"), &[])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );

    let su = pg.superuser().await;
    let row = su
        .query_one(
            "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = 'admin'",
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0) && row.get::<_, bool>(1));
    let n: i64 = su
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn plain_tcp_is_refused_by_pg_hba() {
    let pg = common::shared();
    let err = match pg.config("admin").connect(tokio_postgres::NoTls).await {
        Ok(_) => panic!("a connection without TLS was accepted"),
        Err(e) => e,
    };
    let db = err.as_db_error().expect("a server-side refusal");
    assert!(
        db.message().contains("pg_hba.conf rejects connection")
            && db.message().contains("no encryption"),
        "unexpected refusal: {}",
        db.message()
    );
}

#[tokio::test]
async fn wrong_ca_is_rejected() {
    let pg = common::shared();
    let other = common::start();
    // TLS config trusting the *other* cluster's CA must not verify this cluster's certificate.
    let err = pg
        .config("admin")
        .connect(other.make_tls())
        .await
        .err()
        .expect("certificate from another CA must be refused");
    assert!(
        format!("{err:?}").contains("UnknownIssuer"),
        "unexpected error: {err:?}"
    );
}

#[test]
fn restart_keeps_data_and_port() {
    let pg = PgCluster::start();
    let port = pg.port();
    let table = common::unique_name("harness_restart");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let first_pid = pg.pid().unwrap();
    rt.block_on(async {
        let admin = pg.connect_as("admin").await;
        admin
            .batch_execute(&format!(
                "CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (7)"
            ))
            .await
            .unwrap();
    });

    pg.restart();
    assert_eq!(pg.port(), port);
    assert_ne!(pg.pid().unwrap(), first_pid);
    assert!(!process_exists(first_pid));
    rt.block_on(async {
        let admin = pg.connect_as("admin").await;
        let v: i32 = admin
            .query_one(&format!("SELECT id FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, 7);
    });

    pg.stop();
    assert!(pg.pid().is_none());
    rt.block_on(async {
        let err = pg.config("admin").connect(pg.make_tls()).await.err();
        assert!(err.is_some(), "connected to a stopped cluster");
    });
    pg.start_again();
    rt.block_on(async {
        pg.connect_as("admin").await;
    });
}

#[tokio::test]
async fn two_clusters_at_once_and_gone_after_drop() {
    let a = common::start();
    let b = common::start();
    assert_ne!(a.port(), b.port());
    let (ca, cb) = (a.connect_as("admin").await, b.connect_as("admin").await);
    let ta = common::unique_name("harness_a");
    ca.batch_execute(&format!("CREATE TABLE {ta} (x int)"))
        .await
        .unwrap();
    let in_b: i64 = cb
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = $1",
            &[&ta],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_b, 0, "the clusters are independent");

    let (pid, root, port) = (a.pid().unwrap(), a.root().to_path_buf(), a.port());
    assert!(process_exists(pid));
    drop(ca);
    drop(a);
    assert!(!process_exists(pid), "postmaster {pid} survived Drop");
    assert!(!root.exists(), "cluster folder survived Drop");
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .unwrap();
    assert!(refused.is_err(), "port {port} still accepts connections");
    cb.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test]

async fn mcp_session_initializes_and_lists_tools() {
    let pg = common::shared();
    let session = McpSession::for_cluster(pg, &[]).await;
    let info = session
        .peer()
        .peer_info()
        .expect("server info after initialize");
    assert_ne!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("rmcp")
    );
    let tools = session.list_tools().await;
    assert!(!tools.is_empty(), "no tools listed");
    let stderr = session.stderr();
    assert!(!stderr.contains(common::FAKE_SECRET_ACCESS_KEY));
    let status = session.close().await;
    assert!(status.success(), "server exit status {status}");
}
