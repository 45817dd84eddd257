//! Ingest: where a callback is accepted, journaled and acknowledged.
//!
//! A request is matched to a route, and then admitted in the order that
//! costs least first: the client's address against `allow_ips` (403), its
//! rate limit (429), the declared size (413), the body read within its size
//! and time limits (413, 408), the caller's credentials (401). Each refusal
//! is counted and kept in the journal's bounded list of rejected requests;
//! nothing refused is forwarded. Then the whole callback is written to the
//! journal. Only once the journal says the write is on disk does the caller
//! get `200 {"id": ...}`; if it cannot be made durable the caller gets 503
//! and will send it again. The ack never waits for a destination.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use tracing::{debug, error};

use crate::access::{self, IpNet};
use crate::dispatcher::Dispatcher;
use crate::journal::{CallbackRecord, Journal, RejectedRecord};
use crate::rate_limit;
use crate::route::{Route, RouteTable};
use crate::verify::Presented;

/// What the ingest side needs, shared by every connection.
pub struct Ingest {
    pub routes: Arc<RouteTable>,
    pub journal: Arc<Journal>,
    pub dispatcher: Arc<Dispatcher>,
    /// How long a whole body may take to arrive.
    pub body_read_timeout: Duration,
    /// Whether the public listener speaks TLS (for `x-forwarded-proto`).
    pub tls: bool,
    /// Peers whose `Forwarded`/`X-Forwarded-For` name the real client.
    pub trusted_proxies: Vec<IpNet>,
}

/// The error type of a request body, as `http-body-util` boxes it.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The relay's answer to the caller.
pub type Reply = Response<Full<Bytes>>;

/// Why a request to a route was refused, before anything was journaled.
struct Refusal {
    status: StatusCode,
    /// A short stable label for metrics and the rejected list.
    reason: &'static str,
    /// What went wrong, for the operator; never a secret.
    detail: String,
    /// Seconds for `Retry-After`, on a 429.
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, reason: &'static str, detail: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason,
            detail: detail.into(),
            retry_after: None,
        }
    }
}

impl Ingest {
    /// Handles one request from `peer`. The listener passes hyper's
    /// incoming body; any body type will do (the fuzz target passes whole
    /// bodies it made up).
    pub async fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> Reply
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let Some((route, token)) = self.routes.lookup(req.uri().path()) else {
            return plain(StatusCode::NOT_FOUND, "no route for this path\n");
        };
        let (route, token) = (Arc::clone(route), token.map(str::to_owned));
        if !route.methods.contains(req.method()) {
            let mut reply = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            reply.headers_mut().insert(ALLOW, route.allow.clone());
            return reply;
        }

        let (parts, body) = req.into_parts();
        let client = access::client_ip(peer, &parts.headers, &self.trusted_proxies);
        if let Err(refusal) = admit(&route, &parts, client) {
            return self.refuse(&route, &parts, peer, &[], refusal);
        }
        let body = match self.read_body(body, route.max_body).await {
            Ok(body) => body,
            Err(refusal) => return self.refuse(&route, &parts, peer, &[], refusal),
        };
        let task_id = route.task_id(&body);
        if let Some(verifier) = &route.verifier {
            let presented = Presented {
                headers: &parts.headers,
                path_token: token.as_deref(),
                query: parts.uri.query(),
                body: &body,
                task_id: task_id.as_deref(),
                now: SystemTime::now(),
            };
            if let Err(rejection) = verifier.check(&presented) {
                let refusal = Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    rejection.reason(),
                    rejection.to_string(),
                );
                return self.refuse(&route, &parts, peer, &body, refusal);
            }
        }
        self.accept(&route, parts, peer, body, task_id).await
    }

    /// Journals an admitted callback and answers once it is durable.
    async fn accept(
        &self,
        route: &Route,
        parts: Parts,
        peer: SocketAddr,
        body: Bytes,
        task_id: Option<String>,
    ) -> Reply {
        // Held until the write is done: see `Journal::reserve_id`.
        let reservation = self.journal.reserve_id();
        let record = CallbackRecord {
            id: reservation.id(),
            route: route.name.clone(),
            received_at_ms: now_ms(),
            method: parts.method.as_str().to_string(),
            path_and_query: path_and_query(&parts),
            headers: header_list(&parts),
            peer: peer.to_string(),
            tls: self.tls,
            task_id,
        };
        let urls: Vec<&str> = route.destination_urls.iter().map(String::as_str).collect();

        let written = self
            .journal
            .append(&reservation, &record, &body, &urls)
            .await;
        drop(reservation);
        if let Err(err) = written {
            error!(route = %route.name, error = %err, "journal write failed; answering 503");
            return unavailable();
        }
        route.stats.accepted();
        if route.log_bodies {
            let text = String::from_utf8_lossy(&body);
            debug!(route = %route.name, callback.id = %record.id, body = %text, "accepted");
        } else {
            let task = record.task_id.as_deref();
            debug!(route = %route.name, callback.id = %record.id, ?task, "accepted");
        }
        self.dispatcher.wake(&route.destination_urls);
        self.dispatcher.events().accepted(&record);
        ack(&record)
    }

    /// Counts, logs and keeps a refused request, and answers it.
    fn refuse(
        &self,
        route: &Route,
        parts: &Parts,
        peer: SocketAddr,
        body: &[u8],
        refusal: Refusal,
    ) -> Reply {
        route.stats.rejected(refusal.reason);
        debug!(
            route = %route.name,
            client.addr = %peer,
            status = refusal.status.as_u16(),
            reason = refusal.reason,
            detail = %refusal.detail,
            "request refused"
        );
        self.keep_rejected(route, parts, peer, body, &refusal);
        let mut reply = plain(refusal.status, &refusal_text(&refusal));
        if let Some(secs) = refusal.retry_after {
            reply
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        reply
    }

    /// Keeps a refused request in the journal's bounded list of rejections.
    /// A failure to keep it is logged and changes nothing for the caller.
    fn keep_rejected(
        &self,
        route: &Route,
        parts: &Parts,
        peer: SocketAddr,
        body: &[u8],
        refusal: &Refusal,
    ) {
        let body_len = match body.len() {
            0 => declared_length(parts).unwrap_or(0),
            n => n as u64,
        };
        let record = RejectedRecord {
            id: self.journal.next_id(),
            route: route.name.clone(),
            received_at_ms: now_ms(),
            method: parts.method.as_str().to_string(),
            path_and_query: path_and_query(parts),
            peer: peer.to_string(),
            status: refusal.status.as_u16(),
            reason: refusal.reason.to_owned(),
            detail: refusal.detail.clone(),
            headers: header_list(parts),
            // Only what the ring keeps is copied.
            body: body[..body.len().min(self.journal.rejected_limits().body_cap)].to_vec(),
            body_len,
        };
        if let Err(err) = self.journal.record_rejected(record) {
            error!(route = %route.name, error = %err, "cannot keep a rejected request");
        }
    }

    /// Reads the whole body within `max_body` and `body_read_timeout`.
    async fn read_body<B>(&self, body: B, max_body: u64) -> Result<Bytes, Refusal>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
        let collect = Limited::new(body, limit).collect();
        match tokio::time::timeout(self.body_read_timeout, collect).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => {
                Err(too_large(max_body))
            }
            Ok(Err(err)) => Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("request body could not be read: {err}"),
            )),
            Err(_) => Err(Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("body read timed out after {:?}", self.body_read_timeout),
            )),
        }
    }
}

/// The checks that need no body: address, rate and declared size.
fn admit(route: &Route, parts: &Parts, client: IpAddr) -> Result<(), Refusal> {
    if !route.allow_ips.is_empty() && !access::any_contains(&route.allow_ips, client) {
        let detail = format!("client address {client} is not in allow_ips");
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "ip_not_allowed",
            detail,
        ));
    }
    if let Some(limiter) = &route.rate_limiter
        && let Err(wait) = limiter.check(client, Instant::now())
    {
        let mut refusal = Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("client address {client} is over the route's rate limit"),
        );
        refusal.retry_after = Some(rate_limit::retry_after_secs(wait));
        return Err(refusal);
    }
    if declared_length(parts).is_some_and(|len| len > route.max_body) {
        return Err(too_large(route.max_body));
    }
    Ok(())
}

/// What the caller is told: the status and, where it helps them, why.
fn refusal_text(refusal: &Refusal) -> String {
    match refusal.status {
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT => {
            format!("{}\n", refusal.detail)
        }
        StatusCode::TOO_MANY_REQUESTS => "too many requests\n".to_owned(),
        StatusCode::FORBIDDEN => "forbidden\n".to_owned(),
        StatusCode::UNAUTHORIZED => "unauthorized\n".to_owned(),
        _ => "request body could not be read\n".to_owned(),
    }
}

fn path_and_query(parts: &Parts) -> String {
    parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string()
}

fn header_list(parts: &Parts) -> Vec<(String, Vec<u8>)> {
    parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
        .collect()
}

fn declared_length(parts: &Parts) -> Option<u64> {
    parts
        .headers
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

fn too_large(max_body: u64) -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("body larger than {max_body} bytes"),
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
