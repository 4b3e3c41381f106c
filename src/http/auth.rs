//! Who is calling (issue 13): the layer in front of `/mcp` that turns a request's
//! `Authorization: Bearer` header into a [`Credential`], or answers 401/403/503 itself so
//! that an unauthenticated request never reaches a session, a pool or the cluster.
//!
//! Order: the token file first (a constant-time hash lookup), then, when OAuth is
//! configured, JWT verification. Without any authentication configured (loopback only,
//! `config::http` refuses anything else) every request acts for the local caller, as on
//! stdio. Rejections are logged with their reason, never with the token.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::oauth::{Rejection, SCOPE_READ, SCOPE_WRITE, Verifier};
use super::tokens::TokenSet;
use crate::config::{Config, HttpConfig};
use crate::tools::{Caller, Credential};

/// The authentication a server was started with.
pub struct Auth {
    /// `--auth-tokens`: the file and its last good contents.
    tokens: Option<(PathBuf, RwLock<Arc<TokenSet>>)>,
    oauth: Option<Verifier>,
    /// No authentication configured: everyone is the local caller (loopback only).
    anonymous: Option<Credential>,
    /// The protected resource (the `/mcp` URL) and where its metadata is served.
    resource: String,
    metadata_url: String,
    /// Read again on SIGHUP: a token file entry naming a cluster is checked against it.
    config: Config,
}

impl Auth {
    /// Builds the layer's state for a server reached at `public_url`; a token file that
    /// does not load stops the server.
    pub fn new(config: &Config, http: &HttpConfig, public_url: &str) -> Result<Auth, String> {
        let tokens = match &http.auth_tokens {
            Some(path) => {
                let set = TokenSet::load(path, config)?;
                tracing::info!(tokens = set.len(), "bearer tokens loaded");
                Some((path.clone(), RwLock::new(Arc::new(set))))
            }
            None => None,
        };
        let oauth = http.oauth.clone().map(|o| Verifier::new(o, config));
        let anonymous = (!http.authenticates()).then(|| Credential {
            id: Arc::from("local"),
            caller: Arc::new(Caller::local(config)),
        });
        Ok(Auth {
            tokens,
            oauth,
            anonymous,
            resource: format!("{public_url}/mcp"),
            metadata_url: format!("{public_url}{METADATA_PATH}"),
            config: config.clone(),
        })
    }

    /// Re-reads the token file (SIGHUP). A file that no longer loads keeps the last set.
    pub fn reload(&self) {
        let Some((path, current)) = &self.tokens else {
            return;
        };
        match TokenSet::load(path, &self.config) {
            Ok(set) => {
                tracing::info!(tokens = set.len(), "bearer tokens reloaded");
                *current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
            }
            Err(e) => tracing::warn!("token file not reloaded, the previous tokens stay: {e}"),
        }
    }

    /// The protected resource metadata (RFC 9728), when OAuth is configured.
    pub fn metadata(&self) -> Option<serde_json::Value> {
        let oauth = self.oauth.as_ref()?;
        Some(json!({
            "resource": self.resource,
            "authorization_servers": [oauth.issuer()],
            "scopes_supported": [SCOPE_READ, SCOPE_WRITE],
            "bearer_methods_supported": ["header"],
            "resource_name": "Aurora DSQL MCP server",
        }))
    }

    async fn authenticate(&self, authorization: Option<String>) -> Result<Credential, Response> {
        if let Some(anonymous) = &self.anonymous {
            return Ok(anonymous.clone());
        }
        let Some(token) = authorization.as_deref().and_then(bearer) else {
            return Err(self.challenge(StatusCode::UNAUTHORIZED, None));
        };
        if let Some((_, set)) = &self.tokens {
            let set = set.read().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(credential) = set.find(token) {
                return Ok(credential);
            }
        }
        let why = match &self.oauth {
            Some(verifier) if looks_like_jwt(token) => match verifier.verify(token).await {
                Ok(credential) => return Ok(credential),
                Err(rejection) => rejection,
            },
            _ => Rejection::Invalid("unknown token".into()),
        };
        tracing::warn!("request refused: {}", reason(&why));
        Err(match why {
            Rejection::Invalid(m) => {
                self.challenge(StatusCode::UNAUTHORIZED, Some(("invalid_token", m)))
            }
            Rejection::Scope(m) => {
                self.challenge(StatusCode::FORBIDDEN, Some(("insufficient_scope", m)))
            }
            Rejection::Unavailable(_) => error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the authorization server's keys cannot be fetched now; try again",
                None,
            ),
        })
    }

    /// A 401/403 with `WWW-Authenticate` (RFC 6750 §3), naming the resource metadata when
    /// OAuth is configured (RFC 9728 §5.1) and the scopes this server knows.
    fn challenge(&self, status: StatusCode, error: Option<(&str, String)>) -> Response {
        let mut params = vec![r#"realm="aurora-dsql-mcp-server""#.to_owned()];
        if self.oauth.is_some() {
            params.push(format!(r#"resource_metadata="{}""#, self.metadata_url));
            params.push(format!(r#"scope="{SCOPE_READ} {SCOPE_WRITE}""#));
        }
        if let Some((code, description)) = &error {
            params.push(format!(r#"error="{code}""#));
            params.push(format!(
                r#"error_description="{}""#,
                description.replace(['"', '\\'], "'")
            ));
        }
        let challenge = format!("Bearer {}", params.join(", "));
        let (code, description) = error.unwrap_or((
            "invalid_request",
            "this server needs a bearer token (Authorization: Bearer <token>)".into(),
        ));
        error_response(status, code, &description, Some(challenge))
    }
}

/// Where the protected resource metadata is served (RFC 9728 §3).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// The axum middleware: authenticate, then pass the request on with its credential.
pub async fn layer(State(auth): State<Arc<Auth>>, mut request: Request, next: Next) -> Response {
    // The header's value, owned: the request (whose body is not `Sync`) is not held
    // across the verification's awaits.
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match auth.authenticate(authorization).await {
        Ok(credential) => {
            request.extensions_mut().insert(credential);
            next.run(request).await
        }
        Err(response) => response,
    }
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

fn reason(r: &Rejection) -> &str {
    match r {
        Rejection::Invalid(m) | Rejection::Scope(m) | Rejection::Unavailable(m) => m,
    }
}

/// A JSON document as a 200 response.
pub fn json_response(doc: &serde_json::Value) -> Response {
    let mut response = Body::from(doc.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(
    status: StatusCode,
    code: &str,
    description: &str,
    challenge: Option<String>,
) -> Response {
    let body = json!({"error": code, "error_description": description}).to_string();
    let mut response = (status, Body::from(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::WWW_AUTHENTICATE, value);
    }
    response
}
