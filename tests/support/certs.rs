//! A throwaway CA and a server certificate for `localhost` and `127.0.0.1`.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tempfile::TempDir;

/// A test CA and a server leaf signed by it, written as PEM into a private temp dir.
///
/// The leaf is valid for DNS name `localhost` and IP `127.0.0.1`. The directory (and the
/// files) live as long as this value.
pub struct TestCerts {
    dir: TempDir,
    ca_der: CertificateDer<'static>,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl TestCerts {
    /// Generates a fresh CA and leaf, and writes `ca.pem`, `cert.pem` and `key.pem`.
    pub fn new() -> TestCerts {
        let dir = tempfile::Builder::new()
            .prefix("relay-certs-")
            .tempdir()
            .expect("temp dir");
        let (ca, ca_key) = make_ca(&dir.path().file_name().unwrap().to_string_lossy());
        let (leaf, leaf_key) = make_leaf(&ca, &ca_key);
        write(dir.path(), "ca.pem", &ca.pem());
        write(dir.path(), "cert.pem", &leaf.pem());
        write(dir.path(), "key.pem", &leaf_key.serialize_pem());
        TestCerts {
            dir,
            ca_der: ca.der().clone(),
            cert_der: leaf.der().clone(),
            key_der: leaf_key.serialize_der(),
        }
    }

    /// The directory holding the PEM files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// PEM file with the server leaf certificate (`localhost`, `127.0.0.1`).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// PEM file with the leaf's private key (PKCS#8, ECDSA P-256).
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// PEM file with the CA certificate, the only one that clients here trust.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The CA certificate in DER.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca_der.clone()
    }

    /// A client config (ring provider) trusting only the test CA, offering `alpn`.
    ///
    /// Pass `&[]` when handing it to `hyper_rustls`, which sets ALPN itself.
    pub fn client_config(&self, alpn: &[&[u8]]) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca_der())
            .expect("test CA is a valid trust anchor");
        let mut config = ClientConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }

    /// A server config (ring provider) presenting the leaf, with ALPN `h2` and `http/1.1`.
    pub fn server_config(&self) -> ServerConfig {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut config = ServerConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], key)
            .expect("leaf certificate and key match");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

impl Default for TestCerts {
    fn default() -> Self {
        TestCerts::new()
    }
}

/// The ring crypto provider, used explicitly for every rustls config in the tests.
pub(crate) fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A CA named after `tag`, so that two `TestCerts` never share an issuer name.
fn make_ca(tag: &str) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    let name = format!("callback-relay test CA {tag}");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).expect("self-signed CA");
    (cert, key)
}

fn make_leaf(ca: &Certificate, ca_key: &KeyPair) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().expect("leaf key");
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let mut params = CertificateParams::new(names).expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .signed_by(&key, ca, ca_key)
        .expect("leaf signed by CA");
    (cert, key)
}

fn write(dir: &Path, name: &str, pem: &str) {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
