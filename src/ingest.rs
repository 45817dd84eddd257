//! Ingest: where a callback is accepted, journaled and acknowledged.
//!
//! A request is matched to a route by exact path, its body is read within
//! the size and time limits, and the whole callback is written to the
//! journal. Only once the journal says the write is on disk does the caller
//! get `200 {"id": ...}`; if it cannot be made durable the caller gets 503
//! and will send it again. The ack never waits for a destination.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use tracing::{debug, error};

use crate::dispatcher::Dispatcher;
use crate::journal::{CallbackRecord, Journal};
use crate::route::RouteTable;

/// What the ingest side needs, shared by every connection.
pub struct Ingest {
    pub routes: Arc<RouteTable>,
    pub journal: Arc<Journal>,
    pub dispatcher: Arc<Dispatcher>,
    /// Largest body accepted, in bytes.
    pub max_body: u64,
    /// How long a whole body may take to arrive.
    pub body_read_timeout: Duration,
    /// Whether the public listener speaks TLS (for `x-forwarded-proto`).
    pub tls: bool,
}

/// The relay's answer to the caller.
pub type Reply = Response<Full<Bytes>>;

impl Ingest {
    /// Handles one request from `peer`.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Reply {
        let Some(route) = self.routes.by_path(req.uri().path()) else {
            return plain(StatusCode::NOT_FOUND, "no route for this path\n");
        };
        if !route.methods.contains(req.method()) {
            let mut reply = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            reply.headers_mut().insert(ALLOW, route.allow.clone());
            return reply;
        }
        if declared_length(&req).is_some_and(|len| len > self.max_body) {
            return too_large(self.max_body);
        }

        let (parts, body) = req.into_parts();
        let body = match self.read_body(body).await {
            Ok(body) => body,
            Err(reply) => return *reply,
        };

        let record = CallbackRecord {
            id: self.journal.next_id(),
            route: route.name.clone(),
            received_at_ms: now_ms(),
            method: parts.method.as_str().to_string(),
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
                .collect(),
            peer: peer.to_string(),
            tls: self.tls,
            task_id: route.task_id(&body),
        };
        let urls: Vec<&str> = route.destination_urls.iter().map(String::as_str).collect();

        if let Err(err) = self.journal.append(&record, &body, &urls).await {
            error!(route = %route.name, error = %err, "journal write failed; answering 503");
            return unavailable();
        }
        debug!(route = %route.name, callback.id = %record.id, task = ?record.task_id, "accepted");
        self.dispatcher.wake(&route.destination_urls);
        self.dispatcher.events().accepted(&record);
        ack(&record)
    }

    /// Reads the whole body within `max_body` and `body_read_timeout`.
    async fn read_body(&self, body: Incoming) -> Result<Bytes, Box<Reply>> {
        let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
        let collect = Limited::new(body, limit).collect();
        match tokio::time::timeout(self.body_read_timeout, collect).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => {
                Err(Box::new(too_large(self.max_body)))
            }
            Ok(Err(err)) => {
                debug!(error = %err, "request body could not be read");
                Err(Box::new(plain(
                    StatusCode::BAD_REQUEST,
                    "request body could not be read\n",
                )))
            }
            Err(_) => {
                let timeout = self.body_read_timeout;
                debug!(?timeout, "body read timed out");
                Err(Box::new(plain(
                    StatusCode::REQUEST_TIMEOUT,
                    "body read timed out\n",
                )))
            }
        }
    }
}

fn declared_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

fn ack(record: &CallbackRecord) -> Reply {
    let body = format!("{{\"id\":\"{}\"}}", record.id);
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reply
}

fn unavailable() -> Reply {
    let mut reply = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "journal unavailable; retry later\n",
    );
    reply
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    reply
}

fn too_large(max_body: u64) -> Reply {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("body larger than {max_body} bytes\n"),
    )
}

/// A short plain-text answer. It never echoes anything from the request.
pub fn plain(status: StatusCode, text: &str) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(text.to_string())));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    reply
}
