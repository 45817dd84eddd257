//! The public listener: accepts connections, runs the TLS handshake and
//! serves HTTP/1.1 and HTTP/2 to [`Ingest`].
//!
//! Each phase of a connection has its own limit: the TLS handshake, reading
//! request headers (which on HTTP/1 also bounds how long a kept-alive
//! connection may sit idle), reading the body (in ingest), and the idle time
//! with no request in flight (`keep_alive_timeout`, which is what closes an
//! HTTP/2 connection that answers pings but sends nothing). At most
//! `max_connections` are served at once; the next ones wait in the kernel's
//! listen backlog until one closes. Heads are bounded in size and field
//! count (431 past either), HTTP/2 in open streams, header list size and
//! reset streams (h2's rapid-reset protection). An error on one connection
//! is logged at debug and never stops the accept loop.
//!
//! The socket is bound with a listen backlog of [`LISTEN_BACKLOG`], not the
//! standard library's 128: a burst of connections (a slowloris attack opening
//! hundreds at once, or many providers at the same moment) would otherwise
//! overflow the kernel's accept queue, and every client arriving then would
//! have its SYN dropped and wait a second or more to retry.
//!
//! The protocol is fixed before the first byte is read: HTTP/2 only when
//! TLS negotiated `h2` by ALPN, HTTP/1.1 otherwise. That leaves no phase in
//! which a client that sends nothing is waited on without a timer.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, debug, debug_span, error, warn};

use crate::config::ServerConfig;
use crate::ingest::Ingest;
use crate::tls::ServerTls;

/// Connections the kernel holds, handshake done, until the accept loop takes
/// them (capped by the system's `net.core.somaxconn`).
pub const LISTEN_BACKLOG: u32 = 1024;

/// Reset streams an HTTP/2 client may cause before the connection is closed
/// (hyper's defaults, named here so they are visible).
const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
const H2_MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// Limits on each connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Header fields in one request.
    pub max_headers: usize,
    /// Bytes in one request head (hyper's read buffer, at least 8 KiB).
    pub max_header_size: usize,
    /// Open streams on one HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
}

impl ConnectionLimits {
    pub fn from_config(server: &ServerConfig) -> ConnectionLimits {
        ConnectionLimits {
            tls_handshake_timeout: server.tls_handshake_timeout,
            header_read_timeout: server.header_read_timeout,
            keep_alive_timeout: server.keep_alive_timeout,
            max_connections: server.max_connections,
            max_headers: server.max_headers,
            max_header_size: usize::try_from(server.max_header_size).unwrap_or(usize::MAX),
            http2_max_concurrent_streams: server.http2_max_concurrent_streams,
        }
    }
}

/// Binds the public listener on `addr` with a backlog of [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As the standard library's bind does: a restart may rebind at once while
    // connections of the previous process linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `listener` until `shutdown` resolves, then stops accepting and
/// waits up to `drain` for requests in flight to be answered.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    ingest: Arc<Ingest>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let builder = http_builder(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stopping, stop) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => {
                slot.expect("the connection semaphore is never closed")
            }
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Usually out of file descriptors: pause rather than spin.
                    error!(error = %err, "failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            builder: builder.clone(),
            ingest: Arc::clone(&ingest),
            peer,
            limits,
            stop: stop.clone(),
            _slot: slot,
        };
        let span = debug_span!("connection", client.addr = %peer);
        // Finished connections are reaped as new ones come, so the set holds
        // about as many tasks as there are open connections.
        while connections.try_join_next().is_some() {}
        match &tls {
            Some(tls) => {
                // Taken per connection, so a reload serves the next one.
                let acceptor = tls.acceptor();
                connections.spawn(connection.serve_tls(acceptor, stream).instrument(span));
            }
            None => {
                connections.spawn(connection.serve_http(stream, false).instrument(span));
            }
        }
    }

    // Every connection holds a slot until it ends: having them all back means
    // every connection has finished.
    drop(listener);
    let _ = stopping.send(true);
    let every_slot = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, slots.acquire_many(every_slot))
        .await
        .is_err()
    {
        warn!(
            ?drain,
            open = connections.len(),
            "connections still open after the drain timeout; closing them"
        );
    }
    // Requests cut here were never answered, so their callers send them again.
    connections.shutdown().await;
}

fn http_builder(limits: ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_size)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.keep_alive_timeout / 2)
        .keep_alive_timeout(limits.keep_alive_timeout)
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS);
    builder
}

/// One accepted connection.
struct Connection {
    builder: auto::Builder<TokioExecutor>,
    ingest: Arc<Ingest>,
    peer: SocketAddr,
    limits: ConnectionLimits,
    /// Turns true when the relay stops accepting.
    stop: watch::Receiver<bool>,
    /// Held while the connection lives: one of `max_connections`.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve_tls(self, acceptor: TlsAcceptor, stream: TcpStream) {
        let timeout = self.limits.tls_handshake_timeout;
        let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return debug!(error = %err, "TLS handshake failed"),
            Err(_) => return debug!(?timeout, "TLS handshake timed out"),
        };
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        self.serve_http(stream, h2).await;
    }

    /// Serves requests until the client closes, the relay stops, or the
    /// connection has been idle (no request in flight) for
    /// `keep_alive_timeout`; the last two close it gracefully.
    async fn serve_http<S>(self, stream: S, h2: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            builder,
            ingest,
            peer,
            limits,
            mut stop,
            ..
        } = self;
        let builder = if h2 {
            builder.http2_only()
        } else {
            builder.http1_only()
        };
        let activity = Arc::new(Activity::new());
        let tracked = Arc::clone(&activity);
        let service = service_fn(move |req| {
            let ingest = Arc::clone(&ingest);
            let busy = tracked.begin();
            async move {
                let reply = ingest.handle(req, peer).await;
                drop(busy);
                Ok::<_, std::convert::Infallible>(reply)
            }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);

        let idle_limit = limits.keep_alive_timeout;
        let mut check = tokio::time::interval(idle_check_period(idle_limit));
        let mut closing = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(err) = result {
                        debug!(error = %err, "connection ended with an error");
                    }
                    return;
                }
                _ = stop.wait_for(|stopping| *stopping), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = check.tick(), if !closing => {
                    if activity.idle_for() >= idle_limit {
                        debug!(?idle_limit, "closing an idle connection");
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        }
    }
}

/// How often a connection checks whether it has been idle too long.
fn idle_check_period(idle_limit: Duration) -> Duration {
    (idle_limit / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Requests in flight on one connection, and when the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    /// When the connection was last busy, as an offset from `since`.
    last_busy_ms: AtomicU64,
    since: Instant,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: Default::default(),
            last_busy_ms: Default::default(),
            since: Instant::now(),
        }
    }

    /// Marks a request in flight until the guard is dropped.
    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(self))
    }

    /// How long nothing has been in flight; zero while something is.
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_busy_ms.load(Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last)
    }
}

/// One request in flight on a connection.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let now = u64::try_from(self.0.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_busy_ms.store(now, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
