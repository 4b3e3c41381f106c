//! OAuth 2.1 resource server (issue 13): JWT access tokens from `--oauth-issuer`, verified
//! against the issuer's published keys.
//!
//! rmcp's auth features are client side only, so the resource-server half is here, on
//! `jsonwebtoken` for the signature and claim checks. What this module decides:
//! - **Keys.** The JWKS address comes from the issuer's metadata (RFC 8414
//!   `/.well-known/oauth-authorization-server`, then OpenID Connect discovery), whose
//!   `issuer` must equal `--oauth-issuer`, or from `--oauth-jwks-url`. Keys are cached for
//!   [`KEYS_TTL`]; a token signed with a key id the cache does not hold triggers one
//!   re-fetch (key rotation), at most every [`REFETCH_GAP`], so garbage key ids cannot make
//!   the server hammer the issuer.
//! - **Algorithms.** Asymmetric only, and the one the key declares (or its family): an
//!   `HS256` token "signed" with a public key, or `none`, never verifies.
//! - **Claims.** `iss` and `exp` required and checked (30 s leeway), `aud` must contain
//!   `--oauth-audience` (the resource, RFC 8707), `nbf` honoured.
//! - **Scopes.** `scope` (space-separated) or `scp`: `dsql:write` grants writes (where the
//!   cluster allows them), `dsql:read` reads; neither is a 403 `insufficient_scope`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::{Config, OAuthConfig};
use crate::policy::Access;
use crate::tools::{Caller, Credential};

/// The scope that lets a token read.
pub const SCOPE_READ: &str = "dsql:read";
/// The scope that lets a token write (and read).
pub const SCOPE_WRITE: &str = "dsql:write";

/// How long fetched keys are trusted before they are fetched again.
pub const KEYS_TTL: Duration = Duration::from_secs(600);
/// The least time between two fetches caused by unknown key ids.
pub const REFETCH_GAP: Duration = Duration::from_secs(10);
/// How long one fetch of metadata or keys may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not a valid token for this resource (401 `invalid_token`).
    Invalid(String),
    /// Valid, but without a scope that allows anything (403 `insufficient_scope`).
    Scope(String),
    /// The issuer's keys could not be had (503): nothing about the token is known.
    Unavailable(String),
}

/// Verifies access tokens for one issuer and audience.
pub struct Verifier {
    settings: OAuthConfig,
    /// The server's `--tenant`, inherited by tokens when no tenant claim is configured.
    tenant: Option<String>,
    keys: Mutex<Keys>,
}

#[derive(Default)]
struct Keys {
    set: Option<Arc<JwkSet>>,
    fetched: Option<Instant>,
    jwks_url: Option<String>,
}

impl Verifier {
    pub fn new(settings: OAuthConfig, config: &Config) -> Verifier {
        let jwks_url = settings.jwks_url.clone();
        Verifier {
            settings,
            tenant: config.tenant.clone(),
            keys: Mutex::new(Keys {
                jwks_url,
                ..Keys::default()
            }),
        }
    }

    /// The issuer, for the protected resource metadata.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// Checks `token` and returns the credential it carries.
    pub async fn verify(&self, token: &str) -> Result<Credential, Rejection> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Rejection::Invalid(format!("not a JWT: {e}")))?;
        if !is_asymmetric(header.alg) {
            return Err(Rejection::Invalid(format!(
                "signature algorithm {:?} is not accepted (asymmetric keys only)",
                header.alg
            )));
        }
        let kid = header.kid.clone();
        let jwk = self.key(kid.as_deref()).await?;
        if let Some(declared) = jwk.common.key_algorithm
            && declared != jsonwebtoken::jwk::KeyAlgorithm::from(header.alg)
        {
            return Err(Rejection::Invalid(
                "the token's algorithm is not its key's".into(),
            ));
        }
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| Rejection::Invalid(format!("the signing key cannot be used: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation)
            .map_err(|e| Rejection::Invalid(describe(&e)))?;
        let claims = data.claims;
        let access = access_of(&claims)?;
        let tenant = match &self.settings.tenant_claim {
            Some(name) => match claims.get(name) {
                Some(Value::String(t)) if !t.is_empty() && !t.contains('\0') => Some(t.clone()),
                _ => {
                    return Err(Rejection::Scope(format!(
                        "the token carries no tenant (claim {name})"
                    )));
                }
            },
            None => self.tenant.clone(),
        };
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("-");
        Ok(Credential {
            id: Arc::from(format!("{}#{sub}", self.settings.issuer)),
            caller: Arc::new(Caller {
                access,
                tenant,
                clusters: None,
            }),
        })
    }

    /// The key `kid` names (or the only key, when the token names none), fetching the set
    /// when it is stale or does not hold `kid`.
    async fn key(&self, kid: Option<&str>) -> Result<Jwk, Rejection> {
        let mut keys = self.keys.lock().await;
        let fresh = keys.fetched.is_some_and(|t| t.elapsed() < KEYS_TTL);
        if !fresh {
            self.refresh(&mut keys).await?;
        }
        if let Some(jwk) = keys.set.as_deref().and_then(|set| pick(set, kid)) {
            return Ok(jwk);
        }
        // An unknown key id: the issuer may have rotated its keys since the last fetch.
        let recent = keys.fetched.is_some_and(|t| t.elapsed() < REFETCH_GAP);
        if fresh && !recent {
            self.refresh(&mut keys).await?;
            if let Some(jwk) = keys.set.as_deref().and_then(|set| pick(set, kid)) {
                return Ok(jwk);
            }
        }
        Err(Rejection::Invalid(match kid {
            Some(kid) => format!("no key {kid:?} among the issuer's keys"),
            None => "the token names no key and the issuer has several".into(),
        }))
    }

    /// Fetches the key set (and, the first time, where it is). A failure keeps the keys
    /// held so far, so a flaky issuer does not lock out tokens signed with known keys.
    async fn refresh(&self, keys: &mut Keys) -> Result<(), Rejection> {
        let fetched = async {
            let url = match &keys.jwks_url {
                Some(url) => url.clone(),
                None => self.discover().await?,
            };
            let set: JwkSet = serde_json::from_value(get_json(&url).await?)
                .map_err(|e| format!("the key set at {url} does not parse: {e}"))?;
            Ok::<_, String>((url, set))
        }
        .await;
        match fetched {
            Ok((url, set)) => {
                tracing::info!(
                    keys = set.keys.len(),
                    "fetched the OAuth issuer's signing keys"
                );
                keys.jwks_url = Some(url);
                keys.set = Some(Arc::new(set));
                keys.fetched = Some(Instant::now());
                Ok(())
            }
            Err(e) if keys.set.is_some() => {
                tracing::warn!(
                    "could not refresh the OAuth issuer's keys; keeping the last ones: {e}"
                );
                // Try again after the gap, not on every request.
                keys.fetched = Some(Instant::now() - KEYS_TTL + REFETCH_GAP);
                Ok(())
            }
            Err(e) => {
                tracing::warn!("could not fetch the OAuth issuer's keys: {e}");
                Err(Rejection::Unavailable(e))
            }
        }
    }

    /// The `jwks_uri` of the issuer's metadata: RFC 8414 first, then OpenID Connect.
    async fn discover(&self) -> Result<String, String> {
        let issuer = &self.settings.issuer;
        let mut last = String::new();
        for url in metadata_urls(issuer) {
            match get_json(&url).await {
                Ok(doc) => {
                    if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
                        return Err(format!(
                            "the metadata at {url} names another issuer than {issuer}"
                        ));
                    }
                    return doc
                        .get("jwks_uri")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| format!("the metadata at {url} has no jwks_uri"));
                }
                Err(e) => last = e,
            }
        }
        Err(format!(
            "no authorization server metadata for {issuer}: {last}"
        ))
    }
}

/// RFC 8414 §3.1 puts the well-known segment before the issuer's path; OpenID Connect
/// appends it.
fn metadata_urls(issuer: &str) -> Vec<String> {
    let (origin, path) = match issuer.find("://").map(|i| i + 3) {
        Some(start) => match issuer[start..].find('/') {
            Some(p) => issuer.split_at(start + p),
            None => (issuer, ""),
        },
        None => (issuer, ""),
    };
    vec![
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{issuer}/.well-known/openid-configuration"),
    ]
}

async fn get_json(url: &str) -> Result<Value, String> {
    let client = crate::knowledge::http_client()?;
    let response = client
        .get(url)
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", response.status()));
    }
    response
        .json()
        .await
        .map_err(|e| format!("GET {url}: not JSON: {e}"))
}

fn pick(set: &JwkSet, kid: Option<&str>) -> Option<Jwk> {
    match kid {
        Some(kid) => set.find(kid).cloned(),
        None if set.keys.len() == 1 => set.keys.first().cloned(),
        None => None,
    }
}

fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The access a token's scopes grant.
fn access_of(claims: &serde_json::Map<String, Value>) -> Result<Access, Rejection> {
    let mut scopes: Vec<&str> = Vec::new();
    if let Some(Value::String(s)) = claims.get("scope") {
        scopes.extend(s.split_ascii_whitespace());
    }
    match claims.get("scp") {
        Some(Value::String(s)) => scopes.extend(s.split_ascii_whitespace()),
        Some(Value::Array(items)) => scopes.extend(items.iter().filter_map(Value::as_str)),
        _ => {}
    }
    if scopes.contains(&SCOPE_WRITE) {
        Ok(Access::ReadWrite)
    } else if scopes.contains(&SCOPE_READ) {
        Ok(Access::ReadOnly)
    } else {
        Err(Rejection::Scope(format!(
            "the token has neither {SCOPE_READ} nor {SCOPE_WRITE}"
        )))
    }
}

/// A verification error in words for the `error_description` (no token content).
fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "the token has expired".into(),
        K::ImmatureSignature => "the token is not valid yet".into(),
        K::InvalidAudience => "the token was not issued for this resource (audience)".into(),
        K::InvalidIssuer => "the token was issued by another issuer".into(),
        K::InvalidSignature => "the token's signature does not verify".into(),
        K::MissingRequiredClaim(c) => format!("the token has no {c} claim"),
        other => format!("the token is not valid: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_looked_for_where_rfc_8414_and_oidc_put_it() {
        assert_eq!(
            metadata_urls("https://auth.example.com"),
            [
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            metadata_urls("https://auth.example.com/realms/dev"),
            [
                "https://auth.example.com/.well-known/oauth-authorization-server/realms/dev",
                "https://auth.example.com/realms/dev/.well-known/openid-configuration"
            ]
        );
    }

    #[test]
    fn scopes_grant_access() {
        let claims = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            access_of(&claims(serde_json::json!({"scope": "openid dsql:read"}))),
            Ok(Access::ReadOnly)
        );
        assert_eq!(
            access_of(&claims(
                serde_json::json!({"scp": ["dsql:read", "dsql:write"]})
            )),
            Ok(Access::ReadWrite)
        );
        assert_eq!(
            access_of(&claims(serde_json::json!({"scope": "dsql:readx"}))),
            Err(Rejection::Scope(
                "the token has neither dsql:read nor dsql:write".into()
            ))
        );
    }
}
