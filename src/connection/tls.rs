//! TLS for database connections: always verifying, never optional.
//!
//! DSQL refuses plain connections and its certificates chain to Amazon Root CA 1, which
//! both the webpki roots and the OS store carry. For a local stand-in the user names a CA
//! file (`--ssl-root-cert`, `PGSSLROOTCERT`) and only that CA is trusted. There is no
//! switch that turns verification off. SNI is sent (rustls does so for host names), which
//! DSQL requires.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[error("TLS configuration: {0}")]
pub struct TlsError(String);

impl TlsError {
    pub fn other(message: String) -> TlsError {
        TlsError(message)
    }
}

/// The crypto provider of database TLS: *ring*.
///
/// Not aws-lc-rs (which the AWS SDK and the knowledge client use): since AWS-LC 1.60 its
/// random generator seeds itself on first use in a process from CPU jitter entropy, about
/// 20 ms of CPU here, and the first TLS handshake, which is the first tool call after
/// start, paid for it (aws/aws-lc-rs#1140; only a build-time variable turns it off, which
/// `cargo install` cannot carry). ring takes its randomness from the OS (`getrandom`) at
/// once. It is in the build anyway (rcgen, the sandbox's certificates, uses it).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client configuration for database connections.
///
/// Built with an explicit crypto provider: with two providers in the dependency graph,
/// `ClientConfig::builder()` would panic at run time.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| TlsError(format!("cannot read {}: {e}", path.display())))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TlsError(format!("cannot parse {}: {e}", path.display())))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TlsError(format!(
                    "{} contains no usable CA certificate",
                    path.display()
                )));
            }
        }
        None => {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            // The OS store may add corporate roots; failures to read it are not fatal
            // because the webpki roots already carry Amazon's.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
