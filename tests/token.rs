//! The IAM token: minted by aws-sdk-dsql and checked here by an independent SigV4
//! verifier (hmac + sha2), so a wrong action, host, region, scope, expiry or signature
//! fails the test. AWS itself cannot be reached from here; signing is local, so this is
//! the real signing path with static test credentials.

use std::collections::BTreeMap;

use aurora_dsql_mcp_server::config::Database;
use aurora_dsql_mcp_server::connection::token::{Action, TOKEN_LIFETIME, TokenMinter};
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const AKID: &str = "AKIDTOKENTEST0000001";
const SECRET: &str = "token/test/secret/key/0123456789abcdefghij";

fn database(user: &str) -> Database {
    Database {
        endpoint: "abcdefghijklmnopqrstuvwxyz.dsql.eu-west-1.on.aws".into(),
        port: 5432,
        user: user.into(),
        region: "eu-west-1".into(),
        profile: None,
        ssl_root_cert: None,
    }
}

async fn minter(user: &str, token: Option<&str>) -> TokenMinter {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new(
            AKID,
            SECRET,
            token.map(str::to_owned),
            None,
            "test",
        ))
        .load()
        .await;
    TokenMinter::with_sdk_config(&database(user), sdk)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .unwrap()
        .1
        .into_owned()
}

/// Splits `host/?k=v&...` into the host and the raw (still encoded) query pairs.
fn parse(token: &str) -> (String, BTreeMap<String, String>) {
    let (host, query) = token.split_once("/?").expect("token is host/?query");
    let pairs = query
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    (host.to_owned(), pairs)
}

/// Recomputes the SigV4 query-string signature from the token's own fields.
fn expected_signature(host: &str, pairs: &BTreeMap<String, String>) -> String {
    let canonical_query = pairs
        .iter()
        .filter(|(k, _)| k.as_str() != "X-Amz-Signature")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let empty_payload = hex(&Sha256::digest(b""));
    let canonical_request =
        format!("GET\n/\n{canonical_query}\nhost:{host}\n\nhost\n{empty_payload}");
    let amz_date = &pairs["X-Amz-Date"];
    let credential = decode(&pairs["X-Amz-Credential"]);
    let scope = credential.split_once('/').unwrap().1;
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut parts = scope.split('/');
    let (date, region, service) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let k_date = hmac(format!("AWS4{SECRET}").as_bytes(), date);
    let k_region = hmac(&k_date, region);
    let k_service = hmac(&k_region, service);
    let k_signing = hmac(&k_service, "aws4_request");
    hex(&hmac(&k_signing, &string_to_sign))
}

fn check(token: &str, action: &str) -> BTreeMap<String, String> {
    let (host, pairs) = parse(token);
    assert_eq!(host, "abcdefghijklmnopqrstuvwxyz.dsql.eu-west-1.on.aws");
    assert!(!token.starts_with("https://"), "the scheme is stripped");
    assert_eq!(pairs["Action"], action);
    assert_eq!(pairs["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
    assert_eq!(pairs["X-Amz-SignedHeaders"], "host");
    assert_eq!(pairs["X-Amz-Expires"], TOKEN_LIFETIME.as_secs().to_string());
    assert_eq!(pairs["X-Amz-Expires"], "900");

    let now = chrono::Utc::now();
    let credential = decode(&pairs["X-Amz-Credential"]);
    assert_eq!(
        credential,
        format!(
            "{AKID}/{}/eu-west-1/dsql/aws4_request",
            now.format("%Y%m%d")
        )
    );
    let signed_at = chrono::NaiveDateTime::parse_from_str(&pairs["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc();
    assert!(
        (now - signed_at).num_seconds().abs() < 60,
        "signed now: {signed_at}"
    );

    assert_eq!(pairs["X-Amz-Signature"], expected_signature(&host, &pairs));
    pairs
}

#[tokio::test]
async fn admin_gets_a_db_connect_admin_token_with_a_valid_signature() {
    let m = minter("admin", None).await;
    assert_eq!(m.action(), Action::DbConnectAdmin);
    let token = m.mint().await.unwrap();
    let pairs = check(token.expose(), "DbConnectAdmin");
    assert!(!pairs.contains_key("X-Amz-Security-Token"));
}

#[tokio::test]
async fn other_users_get_db_connect_and_session_tokens_are_signed_in() {
    let m = minter("app_user", Some("SESSIONTOKEN")).await;
    assert_eq!(m.action(), Action::DbConnect);
    let token = m.mint().await.unwrap();
    let pairs = check(token.expose(), "DbConnect");
    assert_eq!(pairs["X-Amz-Security-Token"], "SESSIONTOKEN");
}

#[tokio::test]
async fn every_mint_is_fresh_and_a_tampered_token_fails_verification() {
    let m = minter("admin", None).await;
    let a = m.mint().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let b = m.mint().await.unwrap();
    assert_ne!(a, b, "a new token per connection");
    // The verifier is not vacuous: changing the action breaks the signature.
    let forged = a
        .expose()
        .replace("Action=DbConnectAdmin", "Action=DbConnect");
    let (host, pairs) = parse(&forged);
    assert_ne!(pairs["X-Amz-Signature"], expected_signature(&host, &pairs));
}

#[tokio::test]
async fn tokens_never_show_in_debug_output() {
    let token = minter("admin", None).await.mint().await.unwrap();
    assert_eq!(format!("{token:?}"), "Token(<redacted>)");
}
