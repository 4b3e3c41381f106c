//! The Streamable HTTP transport (issue 13), end to end: the real binary with `--transport
//! http` against the throw-away TLS PostgreSQL, reached by rmcp's real HTTP client in both
//! protocol eras (sessions of 2025-11-25, stateless 2026-07-28) and by raw requests for
//! status codes and headers. Authentication by bearer-token file and by OAuth JWTs from a
//! local issuer this test starts (its metadata and keys served on loopback; AWS is the only
//! thing not real here, and no test needs it).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::http::{Era, HttpServer, initialize_body, stateless_call};
use common::*;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn sha(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A token file in a fresh folder (kept alive by the guard).
fn token_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

async fn call(
    client: &rmcp::service::RunningService<rmcp::RoleClient, rmcp::model::ClientConfig>,
    tool: &str,
    arguments: Value,
) -> rmcp::model::CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments))
        .await
        .expect("the call is answered")
}

async fn count(db: &tokio_postgres::Client, table: &str) -> i64 {
    db.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

const READ: &str = "read-token-0123456789";
const WRITE: &str = "write-token-9876543210";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_gate_every_request_and_a_read_token_cannot_write() {
    let pg = PgCluster::start_logging_statements();
    let db = pg.superuser().await;
    let t = unique_name("http_tok");
    db.batch_execute(&format!(
        "CREATE TABLE {t} (id int PRIMARY KEY, v text); GRANT ALL ON {t} TO admin;"
    ))
    .await
    .unwrap();
    let (_dir, tokens) = token_file(&format!(
        "[[token]]\nname = \"reader\"\nsha256 = \"{}\"\naccess = \"read\"\n\n[[token]]\nname = \"writer\"\nsha256 = \"{}\"\naccess = \"write\"\n",
        sha(READ),
        sha(WRITE)
    ));
    let tokens_arg = tokens.display().to_string();
    let mut server = HttpServer::start(&cluster_args(
        &pg,
        &["--allow-writes", "--auth-tokens", &tokens_arg],
    ))
    .await;

    // No token, then a wrong one: 401 before any session, pool or statement.
    let (body, headers) = stateless_call(
        1,
        "readonly_query",
        json!({"sql": "SELECT 'unauthenticated_marker'"}),
    );
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let none = server.post(&body, &headers).await;
    assert_eq!(none.status, 401, "{none:?}");
    assert_eq!(
        none.header("www-authenticate"),
        r#"Bearer realm="aurora-dsql-mcp-server""#
    );
    assert_eq!(
        none.json(),
        json!({"error": "invalid_request", "error_description": "this server needs a bearer token (Authorization: Bearer <token>)"})
    );
    let bearer_wrong = format!("Bearer {READ}x");
    let mut wrong_headers = headers.clone();
    wrong_headers.push(("authorization", &bearer_wrong));
    let wrong = server.post(&body, &wrong_headers).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.header("www-authenticate"),
        r#"Bearer realm="aurora-dsql-mcp-server", error="invalid_token", error_description="unknown token""#
    );
    assert!(
        !pg.server_log().contains("unauthenticated_marker"),
        "a refused request reached the database"
    );
    assert!(server.client(Era::Sessions, None).await.is_err());

    // A read token, sessions era: reads work, a write is refused although the server allows
    // writes, and nothing is written.
    let reader = server.client(Era::Sessions, Some(READ)).await.unwrap();
    let told = reader.peer_info().unwrap().instructions.clone().unwrap();
    assert!(
        told.contains("transact or execute to change data when the credential may write (this one may only read)"),
        "{told}"
    );
    let r = call(
        &reader,
        "readonly_query",
        json!({"sql": "SELECT 40 + 2 AS n"}),
    )
    .await;
    assert_eq!(structured(&r), json!({"result": [{"n": 42}]}));
    let r = call(
        &reader,
        "transact",
        json!({"sql_list": [format!("INSERT INTO {t} VALUES (1, 'r')")]}),
    )
    .await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(
        text(&r),
        "Error executing tool transact: Your MCP server does not allow write operations to this credential: it may only read; writes need a token with access = \"write\" or an access token with the dsql:write scope (statement type not allowed in read-only mode: INSERT)"
    );
    assert_eq!(count(&db, &t).await, 0);

    // A write token, stateless era: the write lands.
    let writer = server.client(Era::Stateless, Some(WRITE)).await.unwrap();
    let r = call(
        &writer,
        "transact",
        json!({"sql_list": [format!("INSERT INTO {t} VALUES (2, 'w')")]}),
    )
    .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    assert_eq!(count(&db, &t).await, 1);
    let r = call(
        &writer,
        "readonly_query",
        json!({"sql": format!("SELECT id, v FROM {t}")}),
    )
    .await;
    assert_eq!(structured(&r), json!({"result": [{"id": 2, "v": "w"}]}));

    // SIGHUP re-reads the file: a new token works, a removed one stops working.
    let newer = "new-token-abcdef";
    std::fs::write(
        &tokens,
        format!(
            "[[token]]\nname = \"newer\"\nsha256 = \"{}\"\naccess = \"read\"\n",
            sha(newer)
        ),
    )
    .unwrap();
    assert_eq!(unsafe { libc::kill(server.pid(), libc::SIGHUP) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("bearer tokens reloaded") {
        assert!(std::time::Instant::now() < deadline, "{}", server.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let newer_client = server.client(Era::Stateless, Some(newer)).await.unwrap();
    let r = call(
        &newer_client,
        "readonly_query",
        json!({"sql": "SELECT 1 AS one"}),
    )
    .await;
    assert_eq!(structured(&r), json!({"result": [{"one": 1}]}));
    let bearer_read = format!("Bearer {READ}");
    let mut old_headers = headers.clone();
    old_headers.push(("authorization", &bearer_read));
    assert_eq!(server.post(&body, &old_headers).await.status, 401);
    // A file that no longer parses keeps the tokens of the last good one.
    std::fs::write(&tokens, "[[token]]\nsha256 = \"zz\"\n").unwrap();
    assert_eq!(unsafe { libc::kill(server.pid(), libc::SIGHUP) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("token file not reloaded") {
        assert!(std::time::Instant::now() < deadline, "{}", server.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = call(
        &newer_client,
        "readonly_query",
        json!({"sql": "SELECT 2 AS two"}),
    )
    .await;
    assert_eq!(structured(&r), json!({"result": [{"two": 2}]}));

    let log = server.stderr();
    for secret in [READ, WRITE, newer] {
        assert!(!log.contains(secret), "a token reached the log");
    }
    drop((reader, writer, newer_client));
    let status = server
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(20))
        .await;
    assert!(status.success(), "{status:?}\n{}", server.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_origin_body_size_and_session_binding_are_enforced() {
    let pg = shared();
    let (_dir, tokens) = token_file(&format!(
        "[[token]]\nname = \"a\"\nsha256 = \"{}\"\naccess = \"read\"\n[[token]]\nname = \"b\"\nsha256 = \"{}\"\naccess = \"read\"\n",
        sha(READ),
        sha(WRITE)
    ));
    let tokens_arg = tokens.display().to_string();
    let server = HttpServer::start(&cluster_args(
        pg,
        &[
            "--auth-tokens",
            &tokens_arg,
            "--max-request-bytes",
            "4096",
            "--allowed-origin",
            "https://app.example.com",
        ],
    ))
    .await;
    let bearer_a = format!("Bearer {READ}");
    let bearer_b = format!("Bearer {WRITE}");
    let init = initialize_body();

    // DNS rebinding: a Host that is not ours, an Origin that is not allowed.
    let evil_host = server
        .post(
            &init,
            &[("authorization", &bearer_a), ("host", "evil.example.com")],
        )
        .await;
    assert_eq!(evil_host.status, 403, "{evil_host:?}");
    assert_eq!(evil_host.body, "Forbidden: Host header is not allowed");
    let evil_origin = server
        .post(
            &init,
            &[
                ("authorization", &bearer_a),
                ("origin", "https://evil.example.com"),
            ],
        )
        .await;
    assert_eq!(evil_origin.status, 403);
    assert_eq!(evil_origin.body, "Forbidden: Origin header is not allowed");
    let good_origin = server
        .post(
            &init,
            &[
                ("authorization", &bearer_a),
                ("origin", "https://app.example.com"),
            ],
        )
        .await;
    assert_eq!(good_origin.status, 200, "{good_origin:?}");

    // The body cap.
    let (_, headers) = stateless_call(1, "readonly_query", json!({}));
    let mut big_headers: Vec<(&str, &str)> =
        headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    big_headers.push(("authorization", &bearer_a));
    let big = stateless_call(
        1,
        "readonly_query",
        json!({"sql": format!("SELECT '{}'", "x".repeat(5000))}),
    )
    .0;
    assert_eq!(server.post(&big, &big_headers).await.status, 413);

    // A session opened with token a is a's: b presenting its id is refused.
    let opened = server.post(&init, &[("authorization", &bearer_a)]).await;
    assert_eq!(opened.status, 200);
    let session = opened.header("mcp-session-id");
    assert!(!session.is_empty());
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
    let ack = server
        .post(
            &initialized,
            &[
                ("authorization", &bearer_a),
                ("mcp-session-id", &session),
                ("mcp-protocol-version", "2025-11-25"),
            ],
        )
        .await;
    assert_eq!(ack.status, 202, "{ack:?}");
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let as_a = server
        .post(
            &list,
            &[
                ("authorization", &bearer_a),
                ("mcp-session-id", &session),
                ("mcp-protocol-version", "2025-11-25"),
            ],
        )
        .await;
    assert!(
        as_a.json()["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{as_a:?}"
    );
    let as_b = server
        .post(
            &list,
            &[
                ("authorization", &bearer_b),
                ("mcp-session-id", &session),
                ("mcp-protocol-version", "2025-11-25"),
            ],
        )
        .await;
    assert_eq!(
        as_b.json()["error"]["message"],
        json!("this session was opened with another credential; start a session of your own"),
        "{as_b:?}"
    );
}

#[test]
fn listening_beyond_loopback_without_authentication_is_refused_at_start() {
    let out = std::process::Command::new(common::mcp::server_binary())
        .args(["--transport", "http", "--listen", "0.0.0.0:0"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "aurora-dsql-mcp-server: refusing to listen on 0.0.0.0:0 without authentication: give --auth-tokens FILE or --oauth-issuer URL --oauth-audience AUD, or listen on loopback (127.0.0.1)\n"
    );
    assert!(out.stdout.is_empty());
}

/// A write of row 1 of `t` that waits on a row lock another session holds.
async fn locked_row(pg: &PgCluster, t: &str) -> (tokio_postgres::Client, tokio_postgres::Client) {
    let db = pg.superuser().await;
    db.batch_execute(&format!(
        "CREATE TABLE {t} (id int PRIMARY KEY, v int NOT NULL); INSERT INTO {t} VALUES (1, 0); GRANT ALL ON {t} TO admin;"
    ))
    .await
    .unwrap();
    let locker = pg.superuser().await;
    locker
        .batch_execute(&format!("BEGIN; SELECT * FROM {t} WHERE id = 1 FOR UPDATE"))
        .await
        .unwrap();
    (db, locker)
}

async fn wait_for_waiting(db: &tokio_postgres::Client, needle: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aurora-dsql-mcp-server' AND state = 'active' AND query LIKE '%' || $1 || '%'",
                &[&needle],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the write never waited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_the_deadline_is_rolled_back_and_a_graceful_stop_lets_calls_finish() {
    let pg = shared();
    let t = unique_name("http_stop");
    let (db, locker) = locked_row(pg, &t).await;
    let mut server = HttpServer::start(&cluster_args(
        pg,
        &[
            "--allow-writes",
            "--http-request-timeout",
            "3",
            "--shutdown-grace",
            "15",
        ],
    ))
    .await;
    let client = server.client(Era::Stateless, None).await.unwrap();

    // Past --http-request-timeout: cancelled, rolled back, and said so.
    let r = call(
        &client,
        "execute",
        json!({"sql": format!("UPDATE {t} SET v = v + 1 WHERE id = 1")}),
    )
    .await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(
        text(&r),
        "Error executing tool execute: the call ran longer than this server allows (3 s, --http-request-timeout) and was cancelled; nothing it started was committed. Narrow the query, add LIMIT, or run long work as a migration"
    );

    // A write waiting on the lock when SIGTERM arrives: within the grace it finishes and
    // commits once the lock goes, and its caller gets the answer.
    let url = server.url();
    let pending = tokio::spawn({
        let t = t.clone();
        async move {
            let (body, headers) = stateless_call(
                7,
                "execute",
                json!({"sql": format!("UPDATE {t} SET v = v + 10 WHERE id = 1 RETURNING v")}),
            );
            let mut request = common::http::web()
                .post(url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(body);
            for (k, v) in headers {
                request = request.header(k, v);
            }
            let response = request.send().await.unwrap();
            response.text().await.unwrap()
        }
    });
    wait_for_waiting(&db, "v + 10").await;
    assert_eq!(unsafe { libc::kill(server.pid(), libc::SIGTERM) }, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    locker.batch_execute("ROLLBACK").await.unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(20), pending)
        .await
        .unwrap()
        .unwrap();
    let last = answered
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .rfind(|d| !d.is_empty())
        .unwrap_or_else(|| panic!("no answer: {answered:?}\n{}", server.stderr()));
    let answer: Value = serde_json::from_str(last).unwrap();
    assert_eq!(
        answer["result"]["structuredContent"],
        json!({"command": "UPDATE", "rowCount": 1, "rows": [{"v": 10}]}),
        "{answer}"
    );
    let status = server
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(20))
        .await;
    assert!(status.success(), "{status:?}\n{}", server.stderr());
    let v: i32 = db
        .query_one(&format!("SELECT v FROM {t} WHERE id = 1"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        v, 10,
        "the timed-out write rolled back, the graceful one committed"
    );
    drop(client);
}

/// A local OAuth authorization server: RFC 8414 metadata and a JWKS on loopback, and ES256
/// signing keys (rcgen) whose set can be rotated.
struct Issuer {
    url: String,
    jwks: Arc<Mutex<Value>>,
    /// Both keys: what `rotate` publishes.
    rotated: Value,
    keys: Vec<(String, jsonwebtoken::EncodingKey)>,
}

impl Issuer {
    async fn start() -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let keys: Vec<_> = ["k1", "k2"]
            .iter()
            .map(|kid| {
                let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
                (kid.to_string(), pair)
            })
            .collect();
        let jwk = |kid: &str, pair: &rcgen::KeyPair| {
            let raw = pair.public_key_raw();
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
                   "x": b64.encode(&raw[1..33]), "y": b64.encode(&raw[33..65])})
        };
        // Only k1 is published at first; k2 appears with `rotate`.
        let jwks = Arc::new(Mutex::new(json!({"keys": [jwk("k1", &keys[0].1)]})));
        let all = json!({"keys": [jwk("k1", &keys[0].1), jwk("k2", &keys[1].1)]});
        let metadata = json!({"issuer": url, "jwks_uri": format!("{url}/jwks.json"),
                              "token_endpoint": format!("{url}/token")});
        let served = jwks.clone();
        let app = axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                axum::routing::get(move || {
                    let m = metadata.clone();
                    async move { m.to_string() }
                }),
            )
            .route(
                "/jwks.json",
                axum::routing::get(move || {
                    let j = served.lock().unwrap().clone();
                    async move { j.to_string() }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let keys = keys
            .into_iter()
            .map(|(kid, pair)| {
                (
                    kid,
                    jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes())
                        .unwrap(),
                )
            })
            .collect();
        Issuer {
            url,
            jwks,
            rotated: all,
            keys,
        }
    }

    /// Publishes k2 beside k1 (a key rotation).
    fn rotate(&self) {
        *self.jwks.lock().unwrap() = self.rotated.clone();
    }

    /// A token signed with `kid`, with these claims over the defaults (`iss` this issuer,
    /// `aud` AUDIENCE, `sub`, `exp` in 10 minutes).
    fn token(&self, kid: &str, claims: Value) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut all =
            json!({"iss": self.url, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 600});
        for (k, v) in claims.as_object().unwrap() {
            all[k] = v.clone();
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.into());
        let key = &self.keys.iter().find(|(k, _)| k == kid).unwrap().1;
        jsonwebtoken::encode(&header, &all, key).unwrap()
    }
}

const AUDIENCE: &str = "urn:dsql-mcp:test";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_access_tokens_are_verified_against_the_issuers_keys() {
    let pg = shared();
    let db = pg.superuser().await;
    let t = unique_name("http_jwt");
    db.batch_execute(&format!(
        "CREATE TABLE {t} (id int PRIMARY KEY); GRANT ALL ON {t} TO admin;"
    ))
    .await
    .unwrap();
    let issuer = Issuer::start().await;
    let server = HttpServer::start(&cluster_args(
        pg,
        &[
            "--allow-writes",
            "--oauth-issuer",
            &issuer.url,
            "--oauth-audience",
            AUDIENCE,
        ],
    ))
    .await;

    // The protected resource metadata, and the challenge that points at it.
    let prm = server.get("/.well-known/oauth-protected-resource").await;
    assert_eq!(prm.status, 200);
    assert_eq!(
        prm.json(),
        json!({"resource": server.url(), "authorization_servers": [issuer.url],
               "scopes_supported": ["dsql:read", "dsql:write"], "bearer_methods_supported": ["header"],
               "resource_name": "Aurora DSQL MCP server"})
    );
    assert_eq!(
        server
            .get("/.well-known/oauth-protected-resource/mcp")
            .await
            .json(),
        prm.json()
    );
    let init = initialize_body();
    let none = server.post(&init, &[]).await;
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        format!(
            r#"Bearer realm="aurora-dsql-mcp-server", resource_metadata="{}/.well-known/oauth-protected-resource", scope="dsql:read dsql:write""#,
            server.base
        )
    );

    // Refusals, each with its reason; none reaches a session.
    let refused = |token: String| {
        let server = &server;
        let init = init.clone();
        async move {
            let bearer = format!("Bearer {token}");
            let r = server.post(&init, &[("authorization", &bearer)]).await;
            (
                r.status,
                r.json()["error"].clone(),
                r.json()["error_description"].clone(),
            )
        }
    };
    let expired = issuer.token("k1", json!({"scope": "dsql:read", "exp": now() - 120}));
    assert_eq!(
        refused(expired).await,
        (401, json!("invalid_token"), json!("the token has expired"))
    );
    let other_audience = issuer.token(
        "k1",
        json!({"scope": "dsql:read", "aud": "urn:someone-else"}),
    );
    assert_eq!(
        refused(other_audience).await,
        (
            401,
            json!("invalid_token"),
            json!("the token was not issued for this resource (audience)")
        )
    );
    let other_issuer = issuer.token(
        "k1",
        json!({"scope": "dsql:read", "iss": "https://evil.example.com"}),
    );
    assert_eq!(
        refused(other_issuer).await,
        (
            401,
            json!("invalid_token"),
            json!("the token was issued by another issuer")
        )
    );
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"iss": issuer.url, "aud": AUDIENCE, "exp": now() + 600, "scope": "dsql:write"}),
        &jsonwebtoken::EncodingKey::from_secret(b"guess").unwrap(),
    )
    .unwrap();
    assert_eq!(
        refused(hs256).await,
        (
            401,
            json!("invalid_token"),
            json!("signature algorithm HS256 is not accepted (asymmetric keys only)")
        )
    );
    // A read token's signature on a write token's claims.
    let read = issuer.token("k1", json!({"scope": "dsql:read"}));
    let write = issuer.token("k1", json!({"scope": "dsql:write"}));
    let (r, w): (Vec<&str>, Vec<&str>) = (read.split('.').collect(), write.split('.').collect());
    let tampered = format!("{}.{}.{}", r[0], w[1], r[2]);
    assert_eq!(
        refused(tampered).await,
        (
            401,
            json!("invalid_token"),
            json!("the token's signature does not verify")
        )
    );
    let no_scope = issuer.token("k1", json!({"scope": "openid profile"}));
    assert_eq!(
        refused(no_scope).await,
        (
            403,
            json!("insufficient_scope"),
            json!("the token has neither dsql:read nor dsql:write")
        )
    );

    // dsql:read reads and cannot write; dsql:write writes.
    let reader = server
        .client(
            Era::Sessions,
            Some(&issuer.token("k1", json!({"scope": "dsql:read"}))),
        )
        .await
        .unwrap();
    let r = call(
        &reader,
        "readonly_query",
        json!({"sql": "SELECT 7 AS seven"}),
    )
    .await;
    assert_eq!(structured(&r), json!({"result": [{"seven": 7}]}));
    let r = call(
        &reader,
        "transact",
        json!({"sql_list": [format!("INSERT INTO {t} VALUES (1)")]}),
    )
    .await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(count(&db, &t).await, 0);
    let writer = server
        .client(
            Era::Stateless,
            Some(&issuer.token("k1", json!({"scp": ["dsql:write"]}))),
        )
        .await
        .unwrap();
    let r = call(
        &writer,
        "transact",
        json!({"sql_list": [format!("INSERT INTO {t} VALUES (2)")]}),
    )
    .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    assert_eq!(count(&db, &t).await, 1);

    // Key rotation: a token signed with a key published after the first fetch verifies
    // once the re-fetch gap (10 s) has passed.
    issuer.rotate();
    let rotated = issuer.token("k2", json!({"scope": "dsql:read"}));
    assert_eq!(
        refused(rotated.clone()).await,
        (
            401,
            json!("invalid_token"),
            json!("no key \"k2\" among the issuer's keys")
        )
    );
    tokio::time::sleep(Duration::from_secs(11)).await;
    let bearer = format!("Bearer {rotated}");
    assert_eq!(
        server
            .post(&init, &[("authorization", &bearer)])
            .await
            .status,
        200
    );
    assert!(
        !server.stderr().contains(&rotated),
        "a token reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_client_reads_through_a_token() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let has_sdk = std::process::Command::new(&python)
        .args(["-c", "import mcp.client.streamable_http"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_sdk,
        "the official MCP Python SDK is needed: pip install mcp==2.3.0 (.ci/run installs it)"
    );
    let pg = shared();
    let (_dir, tokens) = token_file(&format!(
        "[[token]]\nsha256 = \"{}\"\naccess = \"read\"\n",
        sha(READ)
    ));
    let tokens_arg = tokens.display().to_string();
    let server = HttpServer::start(&cluster_args(pg, &["--auth-tokens", &tokens_arg])).await;
    let script = r#"
import asyncio, json, sys
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

async def main(url, token):
    async with create_mcp_http_client(headers={"Authorization": "Bearer " + token}) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            async with ClientSession(streams[0], streams[1]) as s:
                init = (await s.initialize()).model_dump(by_alias=True, mode="json")
                tools = sorted(t.name for t in (await s.list_tools()).tools)
                res = await s.call_tool("readonly_query", {"sql": "SELECT 'py' AS who, 3 AS n"})
                res = res.model_dump(by_alias=True, mode="json")
                print(json.dumps({"server": init["serverInfo"]["name"], "has_query": "readonly_query" in tools,
                                  "structured": res.get("structuredContent"), "error": res.get("isError")}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"#;
    let out = tokio::process::Command::new(&python)
        .args(["-c", script, &server.url(), READ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "python client failed:\n{}\nserver:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.stderr()
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        line,
        json!({"server": "aurora-dsql-mcp-server", "has_query": true,
               "structured": {"result": [{"who": "py", "n": 3}]}, "error": false})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_serves_two_clusters_each_credential_within_its_own() {
    let alpha = PgCluster::start();
    let beta = PgCluster::start();
    let t = unique_name("http_two");
    for pg in [&alpha, &beta] {
        pg.superuser()
            .await
            .batch_execute(&format!(
                "CREATE TABLE {t} (id int PRIMARY KEY); GRANT ALL ON {t} TO admin;"
            ))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let clusters = dir.path().join("clusters.toml");
    std::fs::write(
        &clusters,
        format!(
            "default = \"alpha\"\n\n[clusters.alpha]\nendpoint = \"localhost\"\nregion = \"us-east-1\"\nport = {}\nuser = \"admin\"\nssl_root_cert = \"{}\"\n\n[clusters.beta]\nendpoint = \"localhost\"\nregion = \"eu-west-1\"\nport = {}\nuser = \"admin\"\nssl_root_cert = \"{}\"\nallow_writes = true\n",
            alpha.port(),
            alpha.ca_path().display(),
            beta.port(),
            beta.ca_path().display()
        ),
    )
    .unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[[token]]\nname = \"reader\"\nsha256 = \"{}\"\naccess = \"read\"\n\n[[token]]\nname = \"beta-writer\"\nsha256 = \"{}\"\naccess = \"write\"\nclusters = [\"beta\"]\n",
            sha(READ),
            sha(WRITE)
        ),
    )
    .unwrap();
    let server = HttpServer::start(&[
        "--clusters".to_owned(),
        clusters.display().to_string(),
        "--auth-tokens".to_owned(),
        tokens.display().to_string(),
    ])
    .await;

    // The writer reaches beta only: its writes land there, alpha is not even listed.
    let writer = server.client(Era::Stateless, Some(WRITE)).await.unwrap();
    let r = call(
        &writer,
        "transact",
        json!({"sql_list": [format!("INSERT INTO {t} VALUES (1)")], "cluster": "beta"}),
    )
    .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let r = call(
        &writer,
        "readonly_query",
        json!({"sql": "SELECT 1", "cluster": "alpha"}),
    )
    .await;
    assert_eq!(
        text(&r),
        "Error executing tool readonly_query: unknown cluster \"alpha\" (configured: beta). list_clusters shows each with its endpoint and mode."
    );
    let listed = call(&writer, "list_clusters", json!({})).await;
    let names: Vec<_> = structured(&listed)["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].clone(), c["mode"].clone()))
        .collect();
    assert_eq!(names, [(json!("beta"), json!("read-write"))]);
    assert_eq!(
        (count_in(&alpha, &t).await, count_in(&beta, &t).await),
        (0, 1)
    );

    // The reader reads both, writes neither (beta allows writes; the credential does not).
    let reader = server.client(Era::Sessions, Some(READ)).await.unwrap();
    for (cluster, port) in [("alpha", alpha.port()), ("beta", beta.port())] {
        let r = call(
            &reader,
            "readonly_query",
            json!({"sql": "SELECT current_setting('port')::int AS port", "cluster": cluster}),
        )
        .await;
        assert_eq!(
            structured(&r),
            json!({"result": [{"port": port}]}),
            "{cluster}"
        );
    }
    let r = call(
        &reader,
        "transact",
        json!({"sql_list": [format!("INSERT INTO {t} VALUES (2)")], "cluster": "beta"}),
    )
    .await;
    assert_eq!(r.is_error, Some(true));
    let r = call(
        &reader,
        "transact",
        json!({"sql_list": [format!("INSERT INTO {t} VALUES (3)")]}),
    )
    .await;
    assert_eq!(r.is_error, Some(true), "alpha is read-only");
    assert_eq!(
        (count_in(&alpha, &t).await, count_in(&beta, &t).await),
        (0, 1)
    );
}

async fn count_in(pg: &PgCluster, table: &str) -> i64 {
    count(&pg.superuser().await, table).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_bound_to_a_tenant_sees_only_its_rows() {
    let pg = shared();
    let s = unique_name("http_ten");
    pg.superuser()
        .await
        .batch_execute(&format!(
            "CREATE SCHEMA {s};
             CREATE TABLE {s}.orders (id int PRIMARY KEY, tenant_id text NOT NULL, total int);
             INSERT INTO {s}.orders VALUES (1, 'acme', 5), (2, 'globex', 20), (3, 'acme', 7);
             GRANT USAGE ON SCHEMA {s} TO admin; GRANT ALL ON ALL TABLES IN SCHEMA {s} TO admin;"
        ))
        .await
        .unwrap();
    let (_dir, tokens) = token_file(&format!(
        "[[token]]\nname = \"acme\"\nsha256 = \"{}\"\naccess = \"write\"\ntenant = \"acme\"\n\n[[token]]\nname = \"ops\"\nsha256 = \"{}\"\naccess = \"read\"\n",
        sha(WRITE),
        sha(READ)
    ));
    let tokens_arg = tokens.display().to_string();
    let server = HttpServer::start(&cluster_args(
        pg,
        &["--allow-writes", "--auth-tokens", &tokens_arg],
    ))
    .await;
    let sql = format!("SELECT id FROM {s}.orders ORDER BY id");
    let acme = server.client(Era::Stateless, Some(WRITE)).await.unwrap();
    let r = call(&acme, "query", json!({"sql": sql})).await;
    assert_eq!(structured(&r)["rows"], json!([{"id": 1}, {"id": 3}]));
    assert_eq!(structured(&r)["scopedToTenant"], json!("acme"));
    let r = call(
        &acme,
        "execute",
        json!({"sql": format!("UPDATE {s}.orders SET total = 0")}),
    )
    .await;
    assert_eq!(structured(&r)["rowCount"], json!(2), "{}", text(&r));
    // A token without a tenant (and a server without --tenant) sees every tenant's rows.
    let ops = server.client(Era::Sessions, Some(READ)).await.unwrap();
    let r = call(
        &ops,
        "query",
        json!({"sql": format!("SELECT id, total FROM {s}.orders ORDER BY id")}),
    )
    .await;
    assert_eq!(
        structured(&r)["rows"],
        json!([{"id": 1, "total": 0}, {"id": 2, "total": 20}, {"id": 3, "total": 0}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_each_get_their_own_answer() {
    let pg = shared();
    let (_dir, tokens) = token_file(&format!(
        "[[token]]\nname = \"a\"\nsha256 = \"{}\"\naccess = \"read\"\n[[token]]\nname = \"b\"\nsha256 = \"{}\"\naccess = \"read\"\n",
        sha(READ),
        sha(WRITE)
    ));
    let tokens_arg = tokens.display().to_string();
    let server = HttpServer::start(&cluster_args(pg, &["--auth-tokens", &tokens_arg])).await;
    let a = Arc::new(server.client(Era::Sessions, Some(READ)).await.unwrap());
    let b = Arc::new(server.client(Era::Stateless, Some(WRITE)).await.unwrap());
    // 24 calls at once over two clients of both eras, each asking for its own number.
    let calls = (0..24).map(|i| {
        let client = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            let r = call(
                &client,
                "readonly_query",
                json!({"sql": "SELECT %s::int AS i", "params": [i]}),
            )
            .await;
            (i, structured(&r))
        })
    });
    for handle in calls.collect::<Vec<_>>() {
        let (i, got) = handle.await.unwrap();
        assert_eq!(got, json!({"result": [{"i": i}]}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_tools_are_bounded_by_their_own_limits_not_the_request_deadline() {
    // The sandbox reports each ASYNC job `processing` for 4 s; the request deadline is 1 s.
    let server = HttpServer::start(&[
        "--local".to_owned(),
        "--local-job-seconds".to_owned(),
        "4".to_owned(),
        "--allow-writes".to_owned(),
        "--http-request-timeout".to_owned(),
        "1".to_owned(),
    ])
    .await;
    let client = server.client(Era::Stateless, None).await.unwrap();
    let r = call(
        &client,
        "execute",
        json!({"sql": "CREATE TABLE w (id int PRIMARY KEY, a int)"}),
    )
    .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let r = call(
        &client,
        "execute",
        json!({"sql": "CREATE INDEX ASYNC w_a ON w (a)"}),
    )
    .await;
    let job_id = structured(&r)["rows"][0]["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = call(&client, "wait_for_job", json!({"job_id": job_id})).await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let ended = structured(&r);
    assert_eq!(ended["status"], "completed", "{ended}");
    assert!(ended["waited_seconds"].as_f64().unwrap() > 1.0, "{ended}");
}
