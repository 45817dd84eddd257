//! TLS for the public listener: which certificate a client is served, whether it
//! must present one of its own, and reloading both from their files while the
//! relay runs.
//!
//! - [`server_config`] builds rustls settings from [`TlsConfig`]'s files: TLS 1.2
//!   and 1.3 with rustls' safe defaults on ring, ALPN `h2` and `http/1.1`, the
//!   certificate chosen by SNI, and a client CA when one is configured.
//! - [`ServerTls`] holds the settings new connections get, and swaps them when a
//!   reload (on SIGHUP, or when a file changes) loads and validates every file.

mod pem;
mod reload;
mod resolver;

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

use crate::config::TlsConfig;
use resolver::SniResolver;

pub use reload::ServerTls;

/// Why the TLS settings could not be loaded. Each names the file at fault; none
/// carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{what} file {path} holds no PEM {what}")]
    Empty { what: &'static str, path: String },
    #[error("cannot use certificate {cert} with key {key}: {source}")]
    Rustls {
        cert: String,
        key: String,
        source: rustls::Error,
    },
    #[error("cannot trust the CA certificate in {path}: {source}")]
    ClientCa { path: String, source: rustls::Error },
    #[error("cannot verify client certificates with {path}: {source}")]
    ClientVerifier {
        path: String,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("the ring provider rejects the default TLS versions: {0}")]
    Versions(rustls::Error),
}

/// Settings built from one reading of the files, with what identifies them.
struct Loaded {
    config: Arc<ServerConfig>,
    /// Every certificate read (chains, then CA certificates), to tell whether a
    /// reload changed anything. Public data only.
    certificates: Vec<Vec<CertificateDer<'static>>>,
    /// The names served by SNI, for the logs.
    names: Vec<String>,
}

/// Builds the server's TLS settings from the configured files.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    load(tls).map(|loaded| loaded.config)
}

fn load(tls: &TlsConfig) -> Result<Loaded, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver = SniResolver::load(tls, &provider)?;
    let mut certificates = resolver.chains();
    let names = resolver.names();

    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Versions)?;
    let builder = match &tls.client_ca {
        Some(path) => {
            let cas = pem::load_certs("CA certificate", path)?;
            let verifier = client_verifier(path, &cas, provider)?;
            certificates.push(cas);
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        certificates,
        names,
    })
}

/// A verifier that requires a client certificate chained to one of `cas`, the
/// CA certificates read from `path`.
fn client_verifier(
    path: &Path,
    cas: &[CertificateDer<'static>],
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let name = || path.display().to_string();
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(ca.clone()).map_err(|source| TlsError::ClientCa {
            path: name(),
            source,
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|source| TlsError::ClientVerifier {
            path: name(),
            source,
        })
}
