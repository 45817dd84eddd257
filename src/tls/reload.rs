//! [`ServerTls`]: the TLS settings in use, swapped whole when their files change.
//!
//! A reload re-reads every certificate, key and CA file and swaps the settings
//! only when all of them load and validate; otherwise the settings in use stay
//! and the error is logged. Connections take the settings of the moment they
//! are accepted, so a swap never touches a connection already open.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use super::TlsError;
use crate::config::TlsConfig;

/// The public listener's TLS settings, reloadable while the relay runs.
pub struct ServerTls {
    /// The files to read and how often to look at them.
    config: TlsConfig,
    /// What new connections get.
    current: RwLock<Arc<ServerConfig>>,
    /// What the last reload saw; held for a whole reload so two never overlap.
    state: Mutex<State>,
}

/// What the settings in use were built from.
struct State {
    /// Modification time and length of every file, taken before it was read,
    /// so a change made while reading is seen on the next check.
    stamps: Vec<Option<Stamp>>,
    /// The certificates in use, to tell whether a reload changed anything.
    certificates: Vec<Vec<CertificateDer<'static>>>,
}

/// What the watcher compares to notice that a file was written or replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl ServerTls {
    /// Loads every file `config` names.
    pub fn load(config: &TlsConfig) -> Result<ServerTls, TlsError> {
        let stamps = stamps(&files(config));
        let loaded = super::load(config)?;
        let default = config.cert.display();
        info!(names = ?loaded.names, default = %default, "tls certificates loaded");
        Ok(ServerTls {
            config: config.clone(),
            current: RwLock::new(loaded.config),
            state: Mutex::new(State {
                stamps,
                certificates: loaded.certificates,
            }),
        })
    }

    /// An acceptor with the settings in use now; take one per connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        TlsAcceptor::from(Arc::clone(&current))
    }

    /// Re-reads every file and swaps the settings when all of them load and
    /// validate. `Ok(false)` means they hold the certificates already in use.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // Recorded even when loading fails: a file that stays broken is reported
        // once, not on every check, and fixing it is a change again.
        state.stamps = stamps(&files(&self.config));
        let loaded = super::load(&self.config)?;
        if loaded.certificates == state.certificates {
            return Ok(false);
        }
        state.certificates = loaded.certificates;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded.config;
        let default = self.config.cert.display();
        info!(names = ?loaded.names, default = %default, "tls certificates reloaded");
        Ok(true)
    }

    /// Reloads on SIGHUP and whenever a certificate, key or CA file changes
    /// (checked every `reload_interval`), until `shutdown` resolves.
    ///
    /// SIGHUP is taken over when this is called rather than when the future is
    /// first polled: from then on the signal reloads instead of ending the
    /// process.
    pub fn watch(
        self: Arc<Self>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let mut hangups = Hangups::register();
        async move {
            let period = self.config.reload_interval;
            let mut checks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(shutdown);
            loop {
                let cause = tokio::select! {
                    () = &mut shutdown => return,
                    () = hangups.recv() => "sighup",
                    _ = checks.tick() => {
                        if !self.files_changed() {
                            continue;
                        }
                        "file changed"
                    }
                };
                self.reload_logged(cause);
            }
        }
    }

    fn files_changed(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.stamps != stamps(&files(&self.config))
    }

    fn reload_logged(&self, cause: &'static str) {
        match self.reload() {
            Ok(true) => {}
            Ok(false) => debug!(cause, "tls files unchanged"),
            Err(err) => error!(
                cause,
                error = %err,
                "tls reload failed; still serving the previous certificates"
            ),
        }
    }
}

/// Every file the settings are built from.
fn files(config: &TlsConfig) -> Vec<PathBuf> {
    let mut files = vec![config.cert.clone(), config.key.clone()];
    for entry in &config.certs {
        files.extend([entry.cert.clone(), entry.key.clone()]);
    }
    files.extend(config.client_ca.clone());
    files
}

/// `None` for a file that cannot be looked at now; reading it will say why.
fn stamps(files: &[PathBuf]) -> Vec<Option<Stamp>> {
    files
        .iter()
        .map(|path| {
            let metadata = std::fs::metadata(path).ok()?;
            Some(Stamp {
                modified: metadata.modified().ok(),
                len: metadata.len(),
            })
        })
        .collect()
}

/// SIGHUP as a stream; never fires where there is no such signal, or when it
/// could not be registered.
struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    #[cfg(unix)]
    fn register() -> Hangups {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(signal) => Hangups {
                signal: Some(signal),
            },
            Err(err) => {
                warn!(error = %err, "cannot listen for SIGHUP; tls reloads on file changes only");
                Hangups { signal: None }
            }
        }
    }

    #[cfg(not(unix))]
    fn register() -> Hangups {
        Hangups {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            if signal.recv().await.is_some() {
                return;
            }
            // The runtime is shutting down: no more signals will come.
            self.signal = None;
        }
        std::future::pending().await
    }
}
