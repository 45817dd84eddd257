//! Starting and stopping a relay: the journal, the dispatcher, the public
//! listener and the admin API, wired together from a [`Config`].
//!
//! [`run`] takes an already bound listener and a shutdown future, so tests
//! start a relay on `127.0.0.1:0` in-process and stop it when they like. It
//! binds the admin API on `[admin] listen` (use `127.0.0.1:0` in tests), or
//! [`run_with_admin`] takes that listener bound too.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::admin::{self, Admin};
use crate::config::Config;
use crate::delivery::{ClientError, Sender};
use crate::dispatcher::Dispatcher;
use crate::ingest::Ingest;
use crate::journal::{Journal, JournalError};
use crate::listener::{self, ConnectionLimits};
use crate::replay::Replayer;
use crate::route::RouteTable;
use crate::tls::{ServerTls, TlsError};

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot build a destination client: {0}")]
    Client(#[from] ClientError),
    #[error("cannot bind the admin api on {addr}: {source}")]
    AdminBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Loads every file the configuration names but does not read itself: the
/// listener's certificates, keys and client CA, and each extra CA trusted for
/// destinations, as [`run`] will. `check` runs it, so that a missing or
/// broken file is reported before any relay is started; `serve` finds the same
/// errors when it starts (see [`RelayError::is_config`]).
pub fn preflight(config: &Config) -> Result<(), RelayError> {
    if let Some(tls) = &config.server.tls {
        ServerTls::load(tls)?;
    }
    let own = config
        .routes
        .values()
        .flat_map(|route| route.destinations.iter())
        .filter_map(|dest| dest.ca.as_deref());
    for ca in config.delivery.ca.as_deref().into_iter().chain(own) {
        Sender::new(Some(ca), config.delivery.connect_timeout)?;
    }
    Ok(())
}

impl RelayError {
    /// Whether the error is the configuration's fault (a file it names is
    /// missing or unusable) rather than the machine's.
    pub fn is_config(&self) -> bool {
        matches!(self, RelayError::Tls(_) | RelayError::Client(_))
    }
}

/// Runs a relay on `public` until `shutdown` resolves, then drains: stops
/// accepting, answers requests in flight, lets attempts in flight finish
/// (bounded by `server.shutdown_timeout`) and closes the journal.
pub async fn run(
    config: Config,
    public: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RelayError> {
    let addr = config.admin.listen;
    let admin = TcpListener::bind(addr)
        .await
        .map_err(|source| RelayError::AdminBind { addr, source })?;
    run_with_admin(config, public, admin, shutdown).await
}

/// Like [`run`], with the admin API on an already bound listener.
pub async fn run_with_admin(
    config: Config,
    public: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RelayError> {
    let tls = match &config.server.tls {
        Some(tls) => Some(Arc::new(ServerTls::load(tls)?)),
        None => None,
    };
    let journal = Arc::new(Journal::from_config(&config.journal)?);
    let routes = Arc::new(RouteTable::from_config(&config));
    let dispatcher = Dispatcher::start(&config, Arc::clone(&journal), Arc::clone(&routes))?;

    let ingest = Arc::new(Ingest {
        routes,
        journal: Arc::clone(&journal),
        dispatcher: Arc::clone(&dispatcher),
        body_read_timeout: config.server.body_read_timeout,
        tls: tls.is_some(),
        trusted_proxies: config.server.trusted_proxies.clone(),
    });
    let limits = ConnectionLimits::from_config(&config.server);
    let addr = public
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let grace = config.server.shutdown_timeout;
    let (draining, drained) = watch::channel(false);
    let (stopping, admin_task) = start_admin(
        &config,
        admin,
        &journal,
        &dispatcher,
        addr.clone(),
        drained.clone(),
    )?;
    if let Some(tls) = &tls {
        let mut stop = stopping.subscribe();
        let stopped = async move {
            let _ = stop.wait_for(|stopping| *stopping).await;
        };
        tokio::spawn(Arc::clone(tls).watch(stopped));
    }
    let journal_path = journal.path().display();
    info!(addr = %addr, tls = tls.is_some(), journal = %journal_path, "relay listening");

    // Both sides start stopping at once, each bounded by `grace`: the listener
    // answers the requests it is reading while the dispatcher starts no new
    // attempt and waits for those in flight.
    let shutdown = async move {
        shutdown.await;
        let _ = draining.send(true);
        info!("stopped accepting; finishing requests and attempts in flight");
    };
    let stop_dispatcher = async {
        let mut drained = drained;
        let _ = drained.wait_for(|draining| *draining).await;
        dispatcher.shutdown(grace).await;
    };
    tokio::join!(
        listener::serve(public, tls, ingest, limits, shutdown, grace),
        stop_dispatcher
    );
    let _ = stopping.send(true);
    let _ = admin_task.await;
    journal.close();
    info!("relay stopped");
    Ok(())
}

/// Starts the admin API; it stops when the returned sender says so.
fn start_admin(
    config: &Config,
    listener: TcpListener,
    journal: &Arc<Journal>,
    dispatcher: &Arc<Dispatcher>,
    public_addr: String,
    draining: watch::Receiver<bool>,
) -> Result<(watch::Sender<bool>, tokio::task::JoinHandle<()>), RelayError> {
    let (stopping, stopped) = watch::channel(false);
    let replayer = Replayer::new(config, Arc::clone(journal), Some(Arc::clone(dispatcher)))?;
    let admin = Arc::new(Admin {
        journal: Arc::clone(journal),
        dispatcher: Arc::clone(dispatcher),
        replayer,
        token: config.admin.token.clone(),
        redactor: crate::redact::redactor_for(config),
        public_addr,
        draining,
        stopping: stopped.clone(),
    });
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    info!(addr = %addr, token = admin.token.is_some(), "admin listening");
    let mut stop = stopped;
    let shutdown = async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    let grace = config.server.shutdown_timeout;
    Ok((
        stopping,
        tokio::spawn(admin::serve(listener, admin, shutdown, grace)),
    ))
}
