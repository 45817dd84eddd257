//! The admin API's routes:
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /healthz` | 200 while the process is up |
//! | `GET /readyz` | 200 when the journal flushes and the dispatcher runs, else 503 |
//! | `GET /v1/callbacks` | a page of callbacks, newest first (filters below) |
//! | `GET /v1/callbacks/{id}` | one callback with headers, deliveries and attempts |
//! | `GET /v1/callbacks/{id}/body` | the raw body with its original content type |
//! | `POST /v1/callbacks/{id}/replay` | replays one callback ([`ReplayRequest`]) |
//! | `POST /v1/replay` | replays every selected callback ([`BulkReplayRequest`]) |
//! | `GET /v1/tasks/{task_id}` | every callback of a task, oldest first |
//! | `GET /v1/rejected` | refused requests, newest first (`route`, `limit`) |
//! | `GET /v1/events` | server-sent events (`route` filters) |
//! | `GET /v1/export` | JSON Lines of the callbacks matching the filters, oldest first |
//! | `POST /v1/import` | adds the callbacks of an export (`requeue=true` queues deliveries) |
//!
//! Filters: `route`, `task`, `state`, `since`, `until`; listings also take
//! `limit` and `cursor`. Ids may be given as unique prefixes. Secrets in
//! headers and paths are hidden unless `reveal=true`, which needs a
//! configured token (403 without one). Errors answer `{"error": "..."}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use tracing::error;

use super::{Admin, Body, BoxError, sse};
use crate::export::{self, ImportError};
use crate::inspect::{self, BadFilter, FilterParams};
use crate::journal::{CallbackId, JournalError, LookupError};
use crate::percent;
use crate::redact::Redactor;
use crate::replay::{
    BulkReplayRequest, BulkReplayResult, ReplayError, ReplayRequest, ReplayResult, ReplaySummary,
    SelectError,
};

/// Largest replay request body (a replacement body travels in base64).
const MAX_REPLAY_REQUEST: usize = 16 * 1024 * 1024;

/// Largest import in one request.
const MAX_IMPORT: usize = 256 * 1024 * 1024;

/// A page's size when `limit` is not given.
const DEFAULT_LIMIT: usize = 50;

/// An answer other than success: a status and a message for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn into_response(self) -> Response<Body> {
        #[derive(Serialize)]
        struct Error {
            error: String,
        }
        json(
            self.status,
            &Error {
                error: self.message,
            },
        )
    }
}

impl From<LookupError> for ApiError {
    fn from(err: LookupError) -> Self {
        let status = match &err {
            LookupError::NotFound(_) => StatusCode::NOT_FOUND,
            LookupError::Malformed(_) | LookupError::Ambiguous { .. } => StatusCode::BAD_REQUEST,
            LookupError::Journal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, err.to_string())
    }
}

impl From<JournalError> for ApiError {
    fn from(err: JournalError) -> Self {
        error!(error = %err, "admin request failed on the journal");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
    }
}

impl From<BadFilter> for ApiError {
    fn from(err: BadFilter) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, err.to_string())
    }
}

impl From<ReplayError> for ApiError {
    fn from(err: ReplayError) -> Self {
        match err {
            ReplayError::Lookup(err) => err.into(),
            ReplayError::Journal(err) => err.into(),
            ReplayError::NoRoute { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, err.to_string())
            }
            _ => ApiError::new(StatusCode::BAD_REQUEST, err.to_string()),
        }
    }
}

impl From<SelectError> for ApiError {
    fn from(err: SelectError) -> Self {
        match err {
            SelectError::Lookup(err) => err.into(),
            SelectError::Journal(err) => err.into(),
            SelectError::Filter(message) => ApiError::new(StatusCode::BAD_REQUEST, message),
        }
    }
}

impl From<ImportError> for ApiError {
    fn from(err: ImportError) -> Self {
        match err {
            ImportError::Journal(err) => err.into(),
            ImportError::Line { .. } => ApiError::new(StatusCode::BAD_REQUEST, err.to_string()),
        }
    }
}

type Answer = Result<Response<Body>, ApiError>;

/// Dispatches one authorized request.
pub(super) async fn route(admin: &Arc<Admin>, req: Request<Incoming>) -> Response<Body> {
    let query = parse_query(req.uri().query().unwrap_or(""));
    let segments: Vec<String> = req
        .uri()
        .path()
        .trim_matches('/')
        .split('/')
        .map(|segment| percent::decode_lossy(segment, false))
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.method().clone();
    let answer = match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => Ok(text(StatusCode::OK, "ok\n")),
        (&Method::GET, ["readyz"]) => Ok(readyz(admin).await),
        (&Method::GET, ["metrics"]) => Ok(metrics(admin)),
        (&Method::GET, ["v1", "callbacks"]) => off_runtime(admin, move |a| list(a, &query)).await,
        (&Method::GET, ["v1", "callbacks", id]) => {
            let id = id.to_string();
            off_runtime(admin, move |a| show(a, &id, &query)).await
        }
        (&Method::GET, ["v1", "rejected"]) => {
            off_runtime(admin, move |a| rejected(a, &query)).await
        }
        (&Method::GET, ["v1", "callbacks", id, "body"]) => {
            let id = id.to_string();
            off_runtime(admin, move |a| body(a, &id)).await
        }
        (&Method::POST, ["v1", "callbacks", id, "replay"]) => replay_one(admin, id, req).await,
        (&Method::POST, ["v1", "replay"]) => replay_bulk(admin, req).await,
        (&Method::GET, ["v1", "tasks", task]) => {
            let task = task.to_string();
            off_runtime(admin, move |a| task_callbacks(a, &task)).await
        }
        (&Method::GET, ["v1", "events"]) => Ok(sse::stream(admin, query.get("route").cloned())),
        (&Method::GET, ["v1", "export"]) => off_runtime(admin, move |a| export(a, &query)).await,
        (&Method::POST, ["v1", "import"]) => import(admin, &query, req).await,
        (_, ["healthz" | "readyz"] | ["v1", "callbacks", ..] | ["v1", "replay" | "import"])
        | (_, ["v1", "tasks" | "events" | "export" | "rejected", ..]) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        )),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such admin endpoint",
        )),
    };
    answer.unwrap_or_else(ApiError::into_response)
}

/// Answers with `handler` on tokio's blocking pool. A query reads the journal
/// synchronously, perhaps many entries (and the first task query after a
/// burst indexes it), and the runtime's workers also answer callbacks.
async fn off_runtime(
    admin: &Arc<Admin>,
    handler: impl FnOnce(&Admin) -> Answer + Send + 'static,
) -> Answer {
    let admin = Arc::clone(admin);
    tokio::task::spawn_blocking(move || handler(&admin))
        .await
        .unwrap_or_else(|err| {
            error!(error = %err, "an admin query did not finish");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the query did not finish",
            ))
        })
}

/// The answer to a request without the right token.
pub(super) fn unauthorized() -> Response<Body> {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

async fn readyz(admin: &Admin) -> Response<Body> {
    #[derive(Serialize)]
    struct Ready {
        ready: bool,
        journal: String,
        dispatcher: &'static str,
        public_listener: String,
        accepting: bool,
    }
    let flush = tokio::time::timeout(Duration::from_secs(2), admin.journal.durable()).await;
    let journal = match flush {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(err)) => format!("cannot flush: {err}"),
        Err(_) => "flush took longer than 2s".to_string(),
    };
    let running = admin.dispatcher.running();
    let accepting = !*admin.draining.borrow();
    let ready = journal == "ok" && running && accepting;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let answer = Ready {
        ready,
        journal,
        dispatcher: if running { "running" } else { "stopped" },
        public_listener: admin.public_addr.clone(),
        accepting,
    };
    json(status, &answer)
}

fn list(admin: &Admin, query: &HashMap<String, String>) -> Answer {
    let filter = filter_params(query).to_filter()?;
    // A listing shows no headers; reveal is checked so it fails alike.
    redactor(admin, query)?;
    let limit = limit(query)?;
    let cursor = match query.get("cursor") {
        Some(text) => Some(text.parse::<CallbackId>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("cursor: {text:?} is not a cursor"),
            )
        })?),
        None => None,
    };
    let page = inspect::list(&admin.journal, &filter, cursor, limit)?;
    Ok(json(StatusCode::OK, &page))
}

fn show(admin: &Admin, id: &str, query: &HashMap<String, String>) -> Answer {
    let redact = redactor(admin, query)?;
    let id = admin.journal.resolve(id)?;
    let detail = inspect::detail(&admin.journal, id, redact)?
        .ok_or_else(|| LookupError::NotFound(id.to_string()))?;
    Ok(json(StatusCode::OK, &detail))
}

fn rejected(admin: &Admin, query: &HashMap<String, String>) -> Answer {
    let redact = redactor(admin, query)?;
    let limit = limit(query)?;
    let route = query.get("route").map(String::as_str);
    let list = inspect::rejected(&admin.journal, route, limit, redact)?;
    Ok(json(StatusCode::OK, &list))
}

/// The page size a request asks for with `limit`.
fn limit(query: &HashMap<String, String>) -> Result<usize, ApiError> {
    match query.get("limit") {
        Some(text) => text.parse::<usize>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("limit: {text:?} is not a number"),
            )
        }),
        None => Ok(DEFAULT_LIMIT),
    }
}

/// The redactor for a request's answer: `None` when it asks `reveal=true`
/// and may, which needs a configured token (every request then carries
/// it, so the caller holds the relay's own secret).
fn redactor<'a>(
    admin: &'a Admin,
    query: &HashMap<String, String>,
) -> Result<Option<&'a Redactor>, ApiError> {
    let reveal = match query.get("reveal").map(String::as_str) {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(other) => {
            let message = format!("reveal: {other:?} is not true or false");
            return Err(ApiError::new(StatusCode::BAD_REQUEST, message));
        }
    };
    match (reveal, &admin.token) {
        (false, _) => Ok(Some(&admin.redactor)),
        (true, Some(_)) => Ok(None),
        (true, None) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "reveal=true needs an [admin] token to be configured; without one, secrets stay hidden",
        )),
    }
}

fn body(admin: &Admin, id: &str) -> Answer {
    let id = admin.journal.resolve(id)?;
    let record = admin
        .journal
        .record(id)?
        .ok_or_else(|| LookupError::NotFound(id.to_string()))?;
    let content_type = inspect::content_type(&record.headers)
        .and_then(|t| HeaderValue::from_str(&t).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut response = Response::new(full(admin.journal.body(id)?));
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    Ok(response)
}

fn task_callbacks(admin: &Admin, task: &str) -> Answer {
    #[derive(Serialize)]
    struct Task<'a> {
        task_id: &'a str,
        callbacks: Vec<inspect::CallbackView>,
    }
    let callbacks = inspect::task(&admin.journal, task)?;
    Ok(json(
        StatusCode::OK,
        &Task {
            task_id: task,
            callbacks,
        },
    ))
}

async fn replay_one(admin: &Admin, id: &str, req: Request<Incoming>) -> Answer {
    let request: ReplayRequest = read_json(req).await?;
    let id = admin.journal.resolve(id)?;
    let result = admin.replayer.replay(id, &request).await?;
    Ok(json(StatusCode::OK, &result))
}

async fn replay_bulk(admin: &Admin, req: Request<Incoming>) -> Answer {
    let request: BulkReplayRequest = read_json(req).await?;
    if request.ids.is_empty() && request.filter.is_empty() {
        let message = "select callbacks with ids or at least one filter";
        return Err(ApiError::new(StatusCode::BAD_REQUEST, message));
    }
    let ids = admin.replayer.select(&request.ids, &request.filter)?;
    let mut selected = Vec::with_capacity(ids.len());
    for id in &ids {
        if let Some(summary) = admin.journal.summary(*id)? {
            selected.push(inspect::callback_view(&admin.journal, &summary)?);
        }
    }
    let mut summary = ReplaySummary {
        selected: ids.len(),
        ..ReplaySummary::default()
    };
    let mut results = Vec::new();
    if !request.dry_run {
        for id in ids {
            let result = match admin.replayer.replay(id, &request.replay).await {
                Ok(result) => result,
                Err(err) => ReplayResult::failed(id.to_string(), &err),
            };
            summary.add(&result);
            results.push(result);
        }
    }
    Ok(json(
        StatusCode::OK,
        &BulkReplayResult {
            selected,
            results,
            summary,
        },
    ))
}

fn export(admin: &Admin, query: &HashMap<String, String>) -> Answer {
    let filter = filter_params(query).to_filter()?;
    let redact = redactor(admin, query)?.cloned();
    let ids = export::select(&admin.journal, &filter)?;
    let journal = Arc::clone(&admin.journal);
    let (mut tx, body) = Channel::<Bytes, BoxError>::new(4);
    tokio::spawn(async move {
        for chunk in ids.chunks(64) {
            let mut text = String::new();
            for id in chunk {
                match export::line(&journal, *id, redact.as_ref()) {
                    Ok(Some(line)) => {
                        text.push_str(&line);
                        text.push('\n');
                    }
                    Ok(None) => {}
                    Err(err) => {
                        error!(error = %err, "export stopped on a journal error");
                        // Aborting tells the client the export is incomplete.
                        return tx.abort(Box::new(err));
                    }
                }
            }
            if tx.send_data(Bytes::from(text)).await.is_err() {
                return;
            }
        }
    });
    let mut response = Response::new(body.boxed());
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

async fn import(admin: &Admin, query: &HashMap<String, String>, req: Request<Incoming>) -> Answer {
    let requeue = query
        .get("requeue")
        .is_some_and(|v| v == "true" || v == "1");
    let bytes = read_body(req, MAX_IMPORT).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the import is not UTF-8 text"))?;
    let destinations = |route: &str| admin.replayer.destinations(route).map(<[String]>::to_vec);
    let summary = export::import(&admin.journal, text, requeue.then_some(&destinations)).await?;
    if requeue {
        let urls: Vec<String> = admin.replayer.all_destinations();
        admin.dispatcher.wake(&urls);
    }
    Ok(json(StatusCode::OK, &summary))
}

fn filter_params(query: &HashMap<String, String>) -> FilterParams {
    FilterParams {
        route: query.get("route").cloned(),
        task: query.get("task").cloned(),
        state: query.get("state").cloned(),
        since: query.get("since").cloned(),
        until: query.get("until").cloned(),
    }
}

/// Reads a JSON request body; an empty body reads as the default value.
async fn read_json<T>(req: Request<Incoming>) -> Result<T, ApiError>
where
    T: serde::de::DeserializeOwned + Default,
{
    let bytes = read_body(req, MAX_REPLAY_REQUEST).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad request body: {e}")))
}

async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => {
            let message = format!("cannot read the request body (at most {limit} bytes): {err}");
            Err(ApiError::new(StatusCode::BAD_REQUEST, message))
        }
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let mut bytes = serde_json::to_vec(value).expect("admin answers are plain data");
    bytes.push(b'\n');
    let mut response = Response::new(full(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Prometheus text: accepted and rejected requests per route.
fn metrics(admin: &Admin) -> Response<Body> {
    let body = crate::metrics::render(admin.dispatcher.routes());
    let mut response = Response::new(full(Bytes::from(body)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// Splits `a=1&b=x%20y` into decoded pairs; the last of a repeated key wins.
fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent::decode_lossy(key, true),
                percent::decode_lossy(value, true),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded() {
        let query = parse_query("route=wav&task=a%2Fb+c&since=2h&bad=%zz");
        assert_eq!(query["route"], "wav");
        assert_eq!(query["task"], "a/b c");
        assert_eq!(query["bad"], "%zz");
    }
}
