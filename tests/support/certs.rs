//! A throwaway CA and a server certificate for `localhost` and `127.0.0.1`; more server
//! and client certificates from that CA on demand; and [`inspecting_client_config`], a client
//! that takes any server certificate so a test can look at which one it was served.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tempfile::TempDir;

/// A test CA and a server leaf signed by it, written as PEM into a private temp dir.
///
/// The leaf is valid for DNS name `localhost` and IP `127.0.0.1`. The directory (and the
/// files) live as long as this value.
pub struct TestCerts {
    dir: TempDir,
    ca: Certificate,
    ca_key: KeyPair,
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
        let (leaf, leaf_key) = make_leaf(&ca, &ca_key, &["localhost", "127.0.0.1"], false);
        write(dir.path(), "ca.pem", &ca.pem());
        write(dir.path(), "cert.pem", &leaf.pem());
        write(dir.path(), "key.pem", &leaf_key.serialize_pem());
        TestCerts {
            dir,
            ca_der: ca.der().clone(),
            ca,
            ca_key,
            cert_der: leaf.der().clone(),
            key_der: leaf_key.serialize_der(),
        }
    }

    /// Issues a new server leaf for `names` from this CA, writes it to `dir/cert_file` and its
    /// key to `dir/key_file` (replacing what is there) and returns the leaf in DER.
    ///
    /// `issue(&["localhost", "127.0.0.1"], "cert.pem", "key.pem")` replaces the original leaf
    /// on disk; [`TestCerts::server_config`] keeps presenting the original.
    pub fn issue(
        &self,
        names: &[&str],
        cert_file: &str,
        key_file: &str,
    ) -> CertificateDer<'static> {
        let (leaf, key) = make_leaf(&self.ca, &self.ca_key, names, false);
        write(self.dir(), key_file, &key.serialize_pem());
        write(self.dir(), cert_file, &leaf.pem());
        leaf.der().clone()
    }

    /// A client certificate for `name` from this CA, for servers that require one.
    pub fn client_identity(&self, name: &str) -> ClientIdentity {
        let (leaf, key) = make_leaf(&self.ca, &self.ca_key, &[name], true);
        ClientIdentity {
            chain: vec![leaf.der().clone()],
            key_der: key.serialize_der(),
        }
    }

    /// The original server leaf in DER (the one in `cert.pem` unless [`TestCerts::issue`]
    /// replaced it).
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
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
        let mut config = self.client_config_with_versions(rustls::DEFAULT_VERSIONS);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }

    /// A client config trusting only the test CA that offers only `versions` of TLS.
    pub fn client_config_with_versions(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca_der())
            .expect("test CA is a valid trust anchor");
        ClientConfig::builder_with_provider(ring_provider())
            .with_protocol_versions(versions)
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth()
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

/// A client certificate chain and its key.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The client leaf (its CA is not sent).
    pub chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl ClientIdentity {
    /// The private key (PKCS#8).
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// A client config (ring) that accepts any server certificate, so a test can look at the
/// one it was served; the handshake signatures are still checked. Presents `identity` when
/// the server asks for a client certificate, and offers no ALPN.
pub fn inspecting_client_config(identity: Option<&ClientIdentity>) -> ClientConfig {
    let provider = ring_provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)));
    match identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key())
            .expect("the client key matches its certificate"),
        None => builder.with_no_client_auth(),
    }
}

/// Trusts every server certificate; checks only that the server holds its key.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
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

/// A leaf for `names` (the first is also its common name), for a server or a client.
fn make_leaf(
    ca: &Certificate,
    ca_key: &KeyPair,
    names: &[&str],
    client: bool,
) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().expect("leaf key");
    let owned: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(owned).expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let cert = params
        .signed_by(&key, ca, ca_key)
        .expect("leaf signed by CA");
    (cert, key)
}

fn write(dir: &Path, name: &str, pem: &str) {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
