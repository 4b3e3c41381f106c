//! The HTTP transport's part of the configuration (issue 13): `--transport http` and the
//! flags of a shared server (where it listens, how callers authenticate, what the HTTP layer
//! refuses), resolved and checked once at start-up like the rest of `config`.
//!
//! The one rule that shapes the rest: a server reachable from other machines must know who
//! calls it. Listening on anything but loopback without `--auth-tokens` or `--oauth-issuer`
//! is refused at start, so an unauthenticated database front door is never one flag away.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;

/// `--transport`: how MCP messages reach the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportKind {
    /// One client, JSON-RPC on stdin/stdout (what agent hosts start from `mcp.json`).
    #[default]
    Stdio,
    /// Streamable HTTP on `--listen`, endpoint `/mcp`: many clients, one pool per cluster.
    Http,
}

/// The HTTP flags, as clap parses them (flattened into `Args`).
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// `stdio` (the default: one agent host starts the server) or `http` (Streamable HTTP on
    /// --listen, path /mcp: one server for a team or a hosted agent).
    #[arg(long = "transport", value_name = "KIND", value_enum, default_value_t = TransportKind::Stdio)]
    pub transport: TransportKind,

    /// With --transport http: the address and port to listen on. Anything but loopback needs
    /// --auth-tokens or --oauth-issuer.
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Bearer tokens allowed to call the server: a TOML file of `[[token]]` tables
    /// (`sha256`, `access` = "read"|"write", optional `name`, `clusters`, `tenant`); re-read
    /// on SIGHUP. See README, "Running it for a team".
    #[arg(long = "auth-tokens", value_name = "FILE")]
    pub auth_tokens: Option<PathBuf>,

    /// OAuth 2.1: the authorization server whose JWT access tokens are accepted (its `iss`).
    /// Its signing keys are fetched from its metadata's `jwks_uri` and cached.
    #[arg(long = "oauth-issuer", value_name = "URL", requires = "oauth_audience")]
    pub oauth_issuer: Option<String>,

    /// OAuth: the audience (`aud`) an access token must be issued for: this server's
    /// resource identifier, usually its public URL ending in /mcp.
    #[arg(long = "oauth-audience", value_name = "AUD", requires = "oauth_issuer")]
    pub oauth_audience: Option<String>,

    /// OAuth: the issuer's JWKS address, when its metadata document does not name one.
    #[arg(long = "oauth-jwks-url", value_name = "URL", requires = "oauth_issuer")]
    pub oauth_jwks_url: Option<String>,

    /// OAuth: the claim that binds a token to a tenant (tenant isolation); a token without
    /// it is refused.
    #[arg(
        long = "oauth-tenant-claim",
        value_name = "CLAIM",
        requires = "oauth_issuer"
    )]
    pub oauth_tenant_claim: Option<String>,

    /// The URL clients reach the server at, without /mcp (e.g. https://dsql-mcp.example.com),
    /// when a proxy stands in front; it names the protected resource in OAuth metadata.
    /// Default: http://<--listen>.
    #[arg(long = "public-url", value_name = "URL")]
    pub public_url: Option<String>,

    /// A Host header value accepted besides loopback names (DNS-rebinding defence);
    /// repeatable. The --public-url host is accepted without it.
    #[arg(long = "allowed-host", value_name = "HOST")]
    pub allowed_host: Vec<String>,

    /// A browser Origin accepted (scheme://host[:port]); repeatable. Requests with any other
    /// Origin are refused with 403; requests without one (non-browser clients) pass.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origin: Vec<String>,

    /// The largest request body accepted; larger ones get 413.
    #[arg(long = "max-request-bytes", value_name = "BYTES", default_value_t = 8 << 20)]
    pub max_request_bytes: usize,

    /// The longest one tool call may run over HTTP; past it the call is cancelled (its
    /// transaction rolled back) and answers with an error saying so.
    #[arg(
        long = "http-request-timeout",
        value_name = "SECONDS",
        default_value_t = 120
    )]
    pub http_request_timeout: u64,

    /// On SIGINT/SIGTERM, how long calls in flight get to finish before they are cancelled.
    #[arg(long = "shutdown-grace", value_name = "SECONDS", default_value_t = 10)]
    pub shutdown_grace: u64,
}

/// How the server is reached, resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    Stdio,
    Http(Box<HttpConfig>),
}

/// A checked `--transport http` configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub auth_tokens: Option<PathBuf>,
    pub oauth: Option<OAuthConfig>,
    /// `--public-url`: where clients reach the server, without a trailing slash and without
    /// `/mcp`; `None`: the address the listener is bound to ([`HttpConfig::public_url`]).
    pub public_url: Option<String>,
    /// Host header values accepted (loopback names, the listen address, the public host, and
    /// `--allowed-host`).
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub max_request_bytes: usize,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
}

impl HttpConfig {
    /// Whether any authentication is configured.
    pub fn authenticates(&self) -> bool {
        self.auth_tokens.is_some() || self.oauth.is_some()
    }

    /// Where clients reach the server, once it listens on `bound` (which tells the port
    /// when `--listen` asked for port 0).
    pub fn public_url(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
    }
}

/// `--oauth-*`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthConfig {
    /// The issuer identifier, exactly as tokens carry it in `iss`.
    pub issuer: String,
    pub audience: String,
    pub jwks_url: Option<String>,
    pub tenant_claim: Option<String>,
}

/// The default `--listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8765";

/// The Host values accepted on every server (rmcp's own loopback defaults).
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

impl HttpArgs {
    /// Resolves the HTTP flags; an error is the one line the server stops with.
    pub fn resolve(&self) -> Result<Transport, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.transport == TransportKind::Stdio {
            let given = [
                ("--listen", self.listen.is_some()),
                ("--auth-tokens", self.auth_tokens.is_some()),
                ("--oauth-issuer", self.oauth_issuer.is_some()),
                ("--public-url", self.public_url.is_some()),
                ("--allowed-host", !self.allowed_host.is_empty()),
                ("--allowed-origin", !self.allowed_origin.is_empty()),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
                return invalid(format!(
                    "{flag} applies to the HTTP transport only: add --transport http (or remove {flag})"
                ));
            }
            return Ok(Transport::Stdio);
        }
        let listen = self
            .listen
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid default address"));
        let oauth = match (&self.oauth_issuer, &self.oauth_audience) {
            (Some(issuer), Some(audience)) => {
                let issuer = issuer.trim().trim_end_matches('/').to_owned();
                check_url("--oauth-issuer", &issuer, true)?;
                if let Some(jwks) = &self.oauth_jwks_url {
                    check_url("--oauth-jwks-url", jwks, true)?;
                }
                if audience.trim().is_empty() {
                    return invalid("--oauth-audience must not be empty".into());
                }
                Some(OAuthConfig {
                    issuer,
                    audience: audience.trim().to_owned(),
                    jwks_url: self.oauth_jwks_url.clone(),
                    tenant_claim: self.oauth_tenant_claim.clone(),
                })
            }
            _ => None,
        };
        let authenticates = self.auth_tokens.is_some() || oauth.is_some();
        if !listen.ip().is_loopback() && !authenticates {
            return invalid(format!(
                "refusing to listen on {listen} without authentication: give --auth-tokens FILE or --oauth-issuer URL --oauth-audience AUD, or listen on loopback (127.0.0.1)"
            ));
        }
        let public_url = match &self.public_url {
            Some(url) => {
                let url = url.trim().trim_end_matches('/').to_owned();
                check_url("--public-url", &url, false)?;
                Some(url)
            }
            None => None,
        };
        let mut allowed_hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect();
        if !listen.ip().is_unspecified() {
            allowed_hosts.push(listen.ip().to_string());
        }
        if let Some(Ok(url)) = public_url.as_deref().map(url::Url::parse)
            && let Some(host) = url.host_str()
        {
            allowed_hosts.push(host.trim_matches(['[', ']']).to_owned());
        }
        for host in &self.allowed_host {
            let host = host.trim();
            if host.is_empty() || host.contains('/') {
                return invalid(format!(
                    "--allowed-host {host:?}: give a host name or host:port, without a scheme or path"
                ));
            }
            allowed_hosts.push(host.to_owned());
        }
        allowed_hosts.sort();
        allowed_hosts.dedup();
        if listen.ip().is_unspecified() && self.public_url.is_none() && self.allowed_host.is_empty()
        {
            return invalid(format!(
                "listening on {listen} accepts only loopback Host names unless you say which names clients use: add --public-url URL or --allowed-host HOST"
            ));
        }
        for origin in &self.allowed_origin {
            if origin != "null" && !origin.contains("://") {
                return invalid(format!(
                    "--allowed-origin {origin:?}: give scheme://host[:port] (e.g. https://app.example.com)"
                ));
            }
        }
        if self.max_request_bytes < 1024 {
            return invalid("--max-request-bytes must be at least 1024".into());
        }
        if self.http_request_timeout == 0 {
            return invalid("--http-request-timeout must be at least 1 second".into());
        }
        Ok(Transport::Http(Box::new(HttpConfig {
            listen,
            auth_tokens: self.auth_tokens.clone(),
            oauth,
            public_url,
            allowed_hosts,
            allowed_origins: self.allowed_origin.clone(),
            max_request_bytes: self.max_request_bytes,
            request_timeout: Duration::from_secs(self.http_request_timeout),
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
        })))
    }
}

/// An absolute http(s) URL; plain http only for a loopback host when `secure` (keys and
/// metadata must not be fetched over a network in clear).
fn check_url(flag: &str, url: &str, secure: bool) -> Result<(), ConfigError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| ConfigError::Invalid(format!("{flag} {url:?} is not a URL: {e}")))?;
    let loopback = parsed
        .host_str()
        .is_some_and(|h| super::is_loopback_host(h.trim_matches(['[', ']'])));
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if !secure || loopback => Ok(()),
        "http" => Err(ConfigError::Invalid(format!(
            "{flag} must use https (plain http is accepted for a loopback address only): {url}"
        ))),
        other => Err(ConfigError::Invalid(format!(
            "{flag} must be an http(s) URL, not {other}: {url}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        http: HttpArgs,
    }

    fn resolve(args: &[&str]) -> Result<Transport, ConfigError> {
        let mut all = vec!["t"];
        all.extend_from_slice(args);
        T::try_parse_from(all).expect("flags parse").http.resolve()
    }

    fn http(args: &[&str]) -> HttpConfig {
        match resolve(args) {
            Ok(Transport::Http(h)) => *h,
            other => panic!("expected HTTP, got {other:?}"),
        }
    }

    #[test]
    fn stdio_is_the_default_and_refuses_http_flags() {
        assert_eq!(resolve(&[]).unwrap(), Transport::Stdio);
        assert_eq!(
            resolve(&["--listen", "127.0.0.1:9000"])
                .unwrap_err()
                .to_string(),
            "--listen applies to the HTTP transport only: add --transport http (or remove --listen)"
        );
    }

    #[test]
    fn loopback_without_auth_is_allowed_and_anything_else_is_refused() {
        let h = http(&["--transport", "http"]);
        assert_eq!(h.listen.to_string(), "127.0.0.1:8765");
        assert_eq!(h.public_url(h.listen), "http://127.0.0.1:8765");
        assert_eq!(h.allowed_hosts, ["127.0.0.1", "::1", "localhost"]);
        assert!(!h.authenticates());
        assert_eq!(
            resolve(&["--transport", "http", "--listen", "0.0.0.0:8765"])
                .unwrap_err()
                .to_string(),
            "refusing to listen on 0.0.0.0:8765 without authentication: give --auth-tokens FILE or --oauth-issuer URL --oauth-audience AUD, or listen on loopback (127.0.0.1)"
        );
        assert_eq!(
            resolve(&[
                "--transport",
                "http",
                "--listen",
                "0.0.0.0:8765",
                "--auth-tokens",
                "t.toml"
            ])
            .unwrap_err()
            .to_string(),
            "listening on 0.0.0.0:8765 accepts only loopback Host names unless you say which names clients use: add --public-url URL or --allowed-host HOST"
        );
        let h = http(&[
            "--transport",
            "http",
            "--listen",
            "0.0.0.0:8765",
            "--auth-tokens",
            "t.toml",
            "--public-url",
            "https://mcp.example.com/",
        ]);
        assert_eq!(h.public_url(h.listen), "https://mcp.example.com");
        assert_eq!(
            h.allowed_hosts,
            ["127.0.0.1", "::1", "localhost", "mcp.example.com"]
        );
    }

    #[test]
    fn oauth_needs_https_off_loopback() {
        assert_eq!(
            resolve(&[
                "--transport",
                "http",
                "--oauth-issuer",
                "http://issuer.example.com",
                "--oauth-audience",
                "a"
            ])
            .unwrap_err()
            .to_string(),
            "--oauth-issuer must use https (plain http is accepted for a loopback address only): http://issuer.example.com"
        );
        let h = http(&[
            "--transport",
            "http",
            "--oauth-issuer",
            "http://127.0.0.1:9/",
            "--oauth-audience",
            "http://127.0.0.1:8765/mcp",
        ]);
        let o = h.oauth.unwrap();
        assert_eq!(o.issuer, "http://127.0.0.1:9");
        assert_eq!(o.audience, "http://127.0.0.1:8765/mcp");
    }
}
