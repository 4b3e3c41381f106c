//! The Streamable HTTP transport (issue 13): one server for a team or a hosted agent.
//!
//! rmcp's `StreamableHttpService` speaks the protocol (both eras: sessions for clients of
//! 2025-11-25 and older, stateless requests for 2026-07-28; Host and Origin allow-lists;
//! the body cap). This module mounts it at `/mcp` behind the authentication layer
//! (`auth`), serves the OAuth protected resource metadata, and runs the graceful stop.
//!
//! Nothing below the server changes: each session is a [`DsqlServer`] copy over the one
//! toolbox (one pool per cluster, shared by every caller), and each request carries the
//! [`crate::tools::Credential`] the layer found, which is the call's `Caller`: its ceiling
//! lowers the cluster's mode, its clusters and tenant bound what it reaches.
//!
//! Stopping (SIGINT/SIGTERM): the listener stops accepting, calls in flight get
//! `--shutdown-grace` to finish, the rest are cancelled and rolled back (and answered),
//! then sessions and their streams are closed and the pools with them.

pub mod auth;
pub mod oauth;
pub mod tokens;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, HttpConfig};
use crate::server::DsqlServer;

use self::auth::{Auth, METADATA_PATH};

/// How long calls get after the grace has run out to be cancelled, roll back and answer.
const CANCEL_WAIT: std::time::Duration =
    crate::executor::CANCEL_GRACE.saturating_add(std::time::Duration::from_secs(2));

/// How long connections get, once every call has ended, to write their last answers
/// before open streams (legacy GET streams, which never end by themselves) are closed.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A bound listener, ready to serve (split from [`Listener::serve`] so tests and `main` can
/// learn the port before requests arrive).
pub struct Listener {
    listener: tokio::net::TcpListener,
    router: Router,
    server: DsqlServer,
    auth: Arc<Auth>,
    cancel: CancellationToken,
    settings: HttpConfig,
    public_url: String,
}

impl Listener {
    /// Binds `--listen` and builds the routes; any failure is the line the server stops with.
    pub async fn bind(
        server: DsqlServer,
        config: &Config,
        settings: HttpConfig,
    ) -> Result<Listener, String> {
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
        let bound = listener
            .local_addr()
            .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
        let public_url = settings.public_url(bound);
        let auth = Auth::new(config, &settings, &public_url)?;
        let cancel = CancellationToken::new();
        let server = server.for_http(settings.request_timeout);
        let auth = Arc::new(auth);
        let mut config = StreamableHttpServerConfig::default()
            .with_allowed_hosts(settings.allowed_hosts.clone())
            .with_max_request_body_bytes(settings.max_request_bytes)
            .with_cancellation_token(cancel.child_token());
        // Origin validation is always on: a browser page may call only from this server's
        // own origin or one named by --allowed-origin (a request without Origin, from a
        // non-browser client, passes).
        let mut origins = own_origins(bound, &public_url);
        origins.extend(settings.allowed_origins.iter().cloned());
        config = config
            .with_allowed_origins(origins)
            .enforce_origin_validation();
        let factory = {
            let server = server.clone();
            move || Ok(server.session())
        };
        let mcp =
            StreamableHttpService::new(factory, Arc::new(LocalSessionManager::default()), config);
        let mcp =
            Router::new()
                .nest_service("/mcp", mcp)
                .layer(axum::middleware::from_fn_with_state(
                    auth.clone(),
                    auth::layer,
                ));
        let mut router = Router::new().merge(mcp);
        if let Some(doc) = auth.metadata() {
            let doc = Arc::new(doc);
            let serve_doc = move || {
                let doc = doc.clone();
                async move { auth::json_response(&doc) }
            };
            router = router
                .route(METADATA_PATH, get(serve_doc.clone()))
                .route(&format!("{METADATA_PATH}/mcp"), get(serve_doc));
        }
        Ok(Listener {
            public_url,
            listener,
            router,
            server,
            auth,
            cancel,
            settings,
        })
    }

    /// The address it listens on (the port, when `--listen` asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` resolves, then stops gracefully (see the module's doc).
    pub async fn serve(self, stop: impl Future<Output = &'static str>) -> Result<(), String> {
        let Listener {
            listener,
            router,
            server,
            auth,
            cancel,
            settings,
            public_url,
        } = self;
        tracing::info!(
            address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            url = %format!("{public_url}/mcp"),
            tokens = settings.auth_tokens.is_some(),
            oauth = settings.oauth.is_some(),
            "serving MCP over Streamable HTTP"
        );
        let reload = tokio::spawn(reload_on_hangup(auth));
        let calls = server.stopper();
        let stopping = CancellationToken::new();
        let graceful = {
            let stopping = stopping.clone();
            async move { stopping.cancelled().await }
        };
        let serving = axum::serve(listener, router).with_graceful_shutdown(graceful);
        let serving = tokio::spawn(async move { serving.await });
        let signal = stop.await;
        tracing::info!(
            signal,
            in_flight = calls.in_flight(),
            "stopping: no new connections"
        );
        stopping.cancel();
        if !calls.drain(settings.shutdown_grace).await {
            tracing::warn!(
                left = calls.in_flight(),
                "calls still running after --shutdown-grace; cancelling them"
            );
            if !calls.stop(CANCEL_WAIT).await {
                tracing::warn!(left = calls.in_flight(), "calls did not stop in time");
            }
        }
        // Answers of calls that just ended are still on their way out: let the connections
        // finish (each closes after its last answer) before the sessions and their open
        // streams are ended, which would drop an answer not yet written.
        reload.abort();
        let mut serving = serving;
        let finished = tokio::select! {
            done = &mut serving => Some(done),
            _ = tokio::time::sleep(FLUSH_WAIT) => None,
        };
        cancel.cancel();
        let done = match finished {
            Some(done) => done,
            None => match tokio::time::timeout(CANCEL_WAIT, serving).await {
                Ok(done) => done,
                Err(_) => {
                    tracing::warn!("connections still open at exit; closing them");
                    return Ok(());
                }
            },
        };
        match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("the HTTP server failed: {e}")),
            Err(e) => Err(format!("the HTTP server task failed: {e}")),
        }
    }
}

/// The origins of this server itself: loopback names on the bound port, and the public URL's.
fn own_origins(bound: std::net::SocketAddr, public_url: &str) -> Vec<String> {
    let port = bound.port();
    let mut origins = vec![
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{port}"),
        format!("http://[::1]:{port}"),
    ];
    if let Ok(url) = url::Url::parse(public_url) {
        let origin = url.origin().ascii_serialization();
        let explicit = match url.port_or_known_default() {
            Some(p) if !origin.ends_with(&format!(":{p}")) => format!("{origin}:{p}"),
            _ => origin,
        };
        origins.push(explicit);
    }
    origins.sort();
    origins.dedup();
    origins
}

/// SIGHUP re-reads the token file.
async fn reload_on_hangup(auth: Arc<Auth>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: the token file will not be reloaded");
        return;
    };
    while hangup.recv().await.is_some() {
        auth.reload();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_origins_name_the_bound_port_and_the_public_url() {
        let bound = "127.0.0.1:8765".parse().unwrap();
        assert_eq!(
            super::own_origins(bound, "https://mcp.example.com"),
            [
                "http://127.0.0.1:8765",
                "http://[::1]:8765",
                "http://localhost:8765",
                "https://mcp.example.com:443"
            ]
        );
        assert_eq!(
            super::own_origins(bound, "http://127.0.0.1:8765"),
            [
                "http://127.0.0.1:8765",
                "http://[::1]:8765",
                "http://localhost:8765"
            ]
        );
    }
}
