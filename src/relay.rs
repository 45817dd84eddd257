//! Starting and stopping a relay: the journal, the dispatcher and the
//! public listener, wired together from a [`Config`].
//!
//! [`run`] takes an already bound listener and a shutdown future, so tests
//! start a relay on `127.0.0.1:0` in-process and stop it when they like.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::info;

use crate::config::Config;
use crate::delivery::ClientError;
use crate::dispatcher::Dispatcher;
use crate::ingest::Ingest;
use crate::journal::{Journal, JournalError};
use crate::listener::{self, ConnectionLimits};
use crate::route::RouteTable;
use crate::tls::{self, TlsError};

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot build a destination client: {0}")]
    Client(#[from] ClientError),
}

/// Runs a relay on `public` until `shutdown` resolves, then drains: stops
/// accepting, answers requests in flight, lets attempts in flight finish
/// (bounded by `server.shutdown_timeout`) and closes the journal.
pub async fn run(
    config: Config,
    public: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RelayError> {
    let tls = match &config.server.tls {
        Some(tls) => Some(TlsAcceptor::from(tls::server_config(tls)?)),
        None => None,
    };
    let journal = Arc::new(Journal::open(
        &config.journal.path,
        config.journal.cache_capacity,
    )?);
    let routes = Arc::new(RouteTable::from_config(&config));
    let dispatcher = Dispatcher::start(&config, Arc::clone(&journal), Arc::clone(&routes))?;

    let ingest = Arc::new(Ingest {
        routes,
        journal: Arc::clone(&journal),
        dispatcher: Arc::clone(&dispatcher),
        max_body: config.server.max_body,
        body_read_timeout: config.server.body_read_timeout,
        tls: tls.is_some(),
    });
    let limits = ConnectionLimits {
        tls_handshake_timeout: config.server.tls_handshake_timeout,
        header_read_timeout: config.server.header_read_timeout,
        keep_alive_timeout: config.server.keep_alive_timeout,
    };
    let addr = public
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    info!(addr = %addr, tls = tls.is_some(), journal = %journal.path().display(), "relay listening");

    let grace = config.server.shutdown_timeout;
    listener::serve(public, tls, ingest, limits, shutdown, grace).await;
    info!("stopped accepting; finishing attempts in flight");
    dispatcher.shutdown(grace).await;
    journal.close();
    info!("relay stopped");
    Ok(())
}
