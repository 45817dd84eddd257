//! The admin API: inspection and replay of the journal, the live event
//! stream and health checks, on `[admin] listen` and never on the public
//! listener.
//!
//! It speaks plain HTTP/1.1 with JSON under `/v1` (see [`api`] for the
//! routes). When `[admin] token` is set, every request must carry
//! `Authorization: Bearer <token>`, compared in constant time; the config
//! refuses a non-loopback address without one.
//!
//! Secrets in what it shows (credentials, signatures, tokens in paths) are
//! hidden. `reveal=true` shows them, and only when a token is configured:
//! without one, anyone who reaches the port could read every credential a
//! provider sent.

mod api;
mod sse;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{Instrument, debug, debug_span, error, warn};

use crate::dispatcher::Dispatcher;
use crate::journal::Journal;
use crate::redact::Redactor;
use crate::replay::Replayer;

pub use api::ApiError;

/// The body of every admin answer: whole JSON, raw bytes or a stream. A
/// stream that fails midway aborts with an error, so the client can tell.
pub type Body = BoxBody<Bytes, BoxError>;

/// Why a streamed answer stopped early.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long a client may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin API needs, shared by every connection.
pub struct Admin {
    pub journal: Arc<Journal>,
    pub dispatcher: Arc<Dispatcher>,
    pub replayer: Replayer,
    /// The bearer token every request must carry, when set.
    pub token: Option<String>,
    /// Hides secrets in what is shown, unless a request asks to reveal.
    pub redactor: Redactor,
    /// The public listener's address, reported by `/readyz`.
    pub public_addr: String,
    /// Turns true when the public listener stops accepting (`/readyz`).
    pub draining: watch::Receiver<bool>,
    /// Turns true when the relay shuts down, ending event streams.
    pub stopping: watch::Receiver<bool>,
}

impl Admin {
    /// Whether `req` carries the token (always true when none is set).
    fn authorized<B>(&self, req: &Request<B>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, token)| token.trim_start());
        // Only the length can leak: the bytes are compared in constant time.
        bool::from(given.as_bytes().ct_eq(token.as_bytes()))
    }

    /// Answers one request.
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        if !self.authorized(&req) {
            debug!(
                path = req.uri().path(),
                "admin request without the right token"
            );
            return api::unauthorized();
        }
        api::route(&self, req).await
    }
}

/// Serves the admin API on `listener` until `shutdown` resolves, then
/// waits up to `drain` for answers in flight.
pub async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    error!(error = %err, "failed to accept an admin connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let admin = Arc::clone(&admin);
        let service = service_fn(move |req| {
            let admin = Arc::clone(&admin);
            async move { Ok::<_, Infallible>(admin.handle(req).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(conn);
        let span = debug_span!("admin_connection", client.addr = %peer);
        tokio::spawn(
            async move {
                if let Err(err) = watched.await {
                    debug!(error = %err, "admin connection ended with an error");
                }
            }
            .instrument(span),
        );
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            ?drain,
            "admin connections still open after the drain timeout; closing them"
        );
    }
}
