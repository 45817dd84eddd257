//! The public listener: accepts connections, runs the TLS handshake and
//! serves HTTP/1.1 and HTTP/2 to [`Ingest`].
//!
//! Each phase of a connection has its own limit: the TLS handshake, reading
//! request headers, and (in ingest) reading the body. An error on one
//! connection is logged at debug and never stops the accept loop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, debug, debug_span, error, warn};

use crate::ingest::Ingest;
use crate::tls::ServerTls;

/// Limits on each connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
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
    let graceful = GracefulShutdown::new();
    let builder = http_builder(limits);
    tokio::pin!(shutdown);

    loop {
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
        };
        let span = debug_span!("connection", client.addr = %peer);
        match &tls {
            Some(tls) => {
                // Taken per connection, so a reload serves the next one.
                let acceptor = tls.acceptor();
                let watcher = graceful.watcher();
                tokio::spawn(
                    connection
                        .serve_tls(acceptor, stream, watcher)
                        .instrument(span),
                );
            }
            None => {
                let watcher = graceful.watcher();
                tokio::spawn(connection.serve_plain(stream, watcher).instrument(span));
            }
        }
    }

    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            ?drain,
            "connections still open after the drain timeout; closing them"
        );
    }
}

fn http_builder(limits: ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.keep_alive_timeout / 2)
        .keep_alive_timeout(limits.keep_alive_timeout);
    builder
}

/// One accepted connection.
struct Connection {
    builder: auto::Builder<TokioExecutor>,
    ingest: Arc<Ingest>,
    peer: SocketAddr,
    limits: ConnectionLimits,
}

impl Connection {
    async fn serve_tls(
        self,
        acceptor: TlsAcceptor,
        stream: TcpStream,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let timeout = self.limits.tls_handshake_timeout;
        let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return debug!(error = %err, "TLS handshake failed"),
            Err(_) => return debug!(?timeout, "TLS handshake timed out"),
        };
        self.serve_plain(stream, watcher).await;
    }

    async fn serve_plain<S>(self, stream: S, watcher: hyper_util::server::graceful::Watcher)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            builder,
            ingest,
            peer,
            ..
        } = self;
        let service = service_fn(move |req| {
            let ingest = Arc::clone(&ingest);
            async move { Ok::<_, std::convert::Infallible>(ingest.handle(req, peer).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        if let Err(err) = watcher.watch(conn).await {
            debug!(error = %err, "connection ended with an error");
        }
    }
}
