//! The HTTP client the AWS credential chain is given: the SDK's own default client, except
//! that it reads the system's trust roots when it first sends a request, not when a client
//! is built.
//!
//! Why: loading the SDK configuration builds clients for the providers that may need the
//! network (STS for web identity, SSO, IMDS), and the SDK's default client validates itself
//! at that point by building its TLS connector, which reads every certificate file under
//! the system's certificate directory. The benchmark found that to be half the CPU of a
//! fresh server's first call. Signing a token is local, and with credentials from the
//! environment or a profile's static keys (the common case) no provider ever sends a
//! request, so the roots are read only when a provider really goes to the network.
//!
//! Nothing else changes: requests go through the very client the SDK would have chosen
//! (hyper 1 with rustls on aws-lc-rs, for this build's behavior version), which builds and
//! caches its connector on first use as it always does.

use aws_config::BehaviorVersion;
use aws_sdk_dsql::config::{
    ConfigBag, HttpClient, RuntimeComponents, RuntimeComponentsBuilder, SharedHttpClient,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{HttpConnectorSettings, SharedHttpConnector};
use aws_smithy_runtime_api::client::runtime_plugin::RuntimePlugin;

/// The SDK's default HTTP client, validated lazily.
#[derive(Debug, Clone)]
pub struct LazyRoots(SharedHttpClient);

impl LazyRoots {
    /// The default client the SDK would pick for `behavior`; `None` if this build has none
    /// (then the loader keeps its own default).
    pub fn default_client(behavior: BehaviorVersion) -> Option<LazyRoots> {
        let plugin = aws_smithy_runtime::client::defaults::default_http_client_plugin_v2(behavior)?;
        let components = plugin.runtime_components(&RuntimeComponentsBuilder::new("dsql-mcp"));
        components.http_client().map(LazyRoots)
    }
}

impl HttpClient for LazyRoots {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    /// The default client builds its TLS connector here (reading the trust roots) so that
    /// an error shows at construction; it is left to the first request instead, which
    /// reports the same error.
    fn validate_base_client_config(
        &self,
        _components: &RuntimeComponentsBuilder,
        _cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    fn validate_final_config(
        &self,
        components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.validate_final_config(components, cfg)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.0.connector_metadata()
    }
}
