//! Choosing a connection's certificate from the name the client asked for (SNI):
//! an exact name first, then a wildcard one label up, then the default.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{TlsError, pem};
use crate::config::TlsConfig;

/// The certificates of one `[server.tls]` table, by name.
pub(super) struct SniResolver {
    /// Served when the client's name matches nothing below, or it sends none.
    default: Arc<CertifiedKey>,
    /// Lower-case names as configured, like `relay.example.com`.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` entries, keyed by `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Every certificate chain loaded: the default one, then each entry's.
    chains: Vec<Vec<CertificateDer<'static>>>,
}

impl SniResolver {
    /// Loads every certificate and key `tls` names.
    pub(super) fn load(tls: &TlsConfig, provider: &CryptoProvider) -> Result<Self, TlsError> {
        let default = Arc::new(pem::certified_key(&tls.cert, &tls.key, provider)?);
        let mut resolver = SniResolver::new(Arc::clone(&default));
        for entry in &tls.certs {
            // Without a top-level cert the first entry is the default: load it once.
            let key = if (&entry.cert, &entry.key) == (&tls.cert, &tls.key) {
                Arc::clone(&default)
            } else {
                Arc::new(pem::certified_key(&entry.cert, &entry.key, provider)?)
            };
            resolver.chains.push(key.cert.clone());
            for name in &entry.names {
                resolver.insert(name, Arc::clone(&key));
            }
        }
        Ok(resolver)
    }

    fn new(default: Arc<CertifiedKey>) -> SniResolver {
        SniResolver {
            chains: vec![default.cert.clone()],
            default,
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }

    fn insert(&mut self, name: &str, key: Arc<CertifiedKey>) {
        match name.strip_prefix("*.") {
            Some(parent) => self.wildcard.insert(parent.to_owned(), key),
            None => self.exact.insert(name.to_owned(), key),
        };
    }

    /// The certificate for a client that asked for `server_name`.
    fn choose(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name.map(str::to_ascii_lowercase) else {
            return &self.default;
        };
        self.exact
            .get(&name)
            .or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
            .unwrap_or(&self.default)
    }

    /// The configured names, sorted, wildcards as `*.example.com`.
    pub(super) fn names(&self) -> Vec<String> {
        let wildcards = self.wildcard.keys().map(|parent| format!("*.{parent}"));
        let mut names: Vec<String> = self.exact.keys().cloned().chain(wildcards).collect();
        names.sort();
        names
    }

    /// Every certificate chain loaded, the default one first.
    pub(super) fn chains(&self) -> Vec<Vec<CertificateDer<'static>>> {
        self.chains.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.choose(client_hello.server_name())))
    }
}

/// Names only: the keys stay out of debug output.
impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("names", &self.names())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    /// A self-signed certificate for `name` with its key.
    fn certified(name: &str) -> Arc<CertifiedKey> {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("self-signed");
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = rustls::crypto::ring::default_provider();
        let certified = CertifiedKey::from_der(vec![cert.der().clone()], der, &provider);
        Arc::new(certified.expect("matching key"))
    }

    fn resolver() -> (SniResolver, [Arc<CertifiedKey>; 3]) {
        let keys = [
            certified("default.test"),
            certified("relay.example.com"),
            certified("any.example.com"),
        ];
        let mut resolver = SniResolver::new(Arc::clone(&keys[0]));
        resolver.insert("relay.example.com", Arc::clone(&keys[1]));
        resolver.insert("*.example.com", Arc::clone(&keys[2]));
        (resolver, keys)
    }

    #[test]
    fn exact_names_win_over_wildcards() {
        let (resolver, [_, exact, wildcard]) = resolver();
        assert!(Arc::ptr_eq(
            resolver.choose(Some("relay.example.com")),
            &exact
        ));
        assert!(Arc::ptr_eq(
            resolver.choose(Some("RELAY.Example.com")),
            &exact
        ));
        assert!(Arc::ptr_eq(
            resolver.choose(Some("api.example.com")),
            &wildcard
        ));
    }

    #[test]
    fn wildcards_cover_one_label_and_the_rest_gets_the_default() {
        let (resolver, [default, ..]) = resolver();
        for name in [
            Some("a.b.example.com"),
            Some("example.com"),
            Some("other.test"),
            Some("com"),
            None,
        ] {
            assert!(Arc::ptr_eq(resolver.choose(name), &default), "{name:?}");
        }
    }

    #[test]
    fn names_list_every_configured_name() {
        let (resolver, _) = resolver();
        assert_eq!(resolver.names(), ["*.example.com", "relay.example.com"]);
        assert!(format!("{resolver:?}").contains("relay.example.com"));
    }
}
