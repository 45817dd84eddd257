//! Replay: sending a journaled callback again.
//!
//! Without a target, a replay queues new deliveries to the route's
//! configured destinations; they go through the dispatcher's retrying
//! pipeline like any other, marked as replays (`x-relay-replay: true`).
//! With a target (`to`), the callback is sent now, once, to that URL, and
//! the answer is reported and journaled as a one-off send. Changed headers
//! or body apply only to such a send: the stored record never changes.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::delivery::{ClientError, Sender, forwarded_request};
use crate::dispatcher::Dispatcher;
use crate::events::Event;
use crate::ingest::now_ms;
use crate::inspect::{CallbackView, FilterParams};
use crate::journal::{CallbackId, CallbackRecord, Journal, JournalError, LookupError, SentReplay};

/// How much of a target's answer a one-off send keeps to show.
const ANSWER_HEAD: usize = 4 * 1024;

/// What to replay a callback as.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReplayRequest {
    /// Send once to this URL now instead of queueing deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Headers set (replacing any of the same name) on a one-off send.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// A body sent instead of the stored one on a one-off send, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

/// A bulk replay: which callbacks, and how to replay them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BulkReplayRequest {
    /// Callbacks named by id or unique prefix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    /// Callbacks matching these filters (added to `ids`).
    #[serde(flatten)]
    pub filter: FilterParams,
    #[serde(flatten)]
    pub replay: ReplayRequest,
    /// Only say what would be replayed.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a replay of one callback did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplayResult {
    pub id: String,
    pub route: String,
    /// Deliveries queued (replay without a target).
    #[serde(default)]
    pub queued: Vec<QueuedView>,
    /// The one-off send (replay with a target).
    #[serde(default)]
    pub sent: Option<SentResult>,
    /// Why this callback could not be replayed (bulk replays only; a
    /// single replay answers with an error instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ReplayResult {
    /// A replay that could not be made, as a bulk replay reports it.
    pub fn failed(id: String, error: &ReplayError) -> ReplayResult {
        ReplayResult {
            id,
            route: String::new(),
            queued: Vec::new(),
            sent: None,
            error: Some(error.to_string()),
        }
    }

    /// Whether the replay did what was asked: deliveries queued, or a
    /// one-off send answered 2xx.
    pub fn succeeded(&self) -> bool {
        if self.error.is_some() {
            return false;
        }
        match &self.sent {
            Some(sent) => sent.succeeded,
            None => !self.queued.is_empty(),
        }
    }
}

/// One delivery a replay queued.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueuedView {
    pub seq: u32,
    pub url: String,
}

/// The answer to a one-off send.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SentResult {
    pub url: String,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: f64,
    /// Whether the target answered 2xx.
    pub succeeded: bool,
    pub content_type: Option<String>,
    /// The start of the answer's body, as text.
    pub response_head: String,
}

/// What a bulk replay did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BulkReplayResult {
    /// The callbacks selected, oldest first.
    pub selected: Vec<CallbackView>,
    pub results: Vec<ReplayResult>,
    pub summary: ReplaySummary,
}

/// Counts of a bulk replay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaySummary {
    pub selected: usize,
    pub sent: usize,
    pub succeeded: usize,
    pub failed: usize,
}

impl ReplaySummary {
    /// Counts one replay's result.
    pub fn add(&mut self, result: &ReplayResult) {
        self.sent += 1;
        if result.succeeded() {
            self.succeeded += 1;
        } else {
            self.failed += 1;
        }
    }
}

/// Why a replay could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("route {route:?} is no longer configured; replay with a target (--to URL)")]
    NoRoute { route: String },
    #[error("bad header {name:?}: {reason}")]
    BadHeader { name: String, reason: String },
    #[error("body_base64 is not base64: {0}")]
    BadBody(String),
    #[error("changed headers or body need a target (--to URL); queued replays send the record")]
    ChangesNeedTarget,
    #[error("cannot send to {url}: {reason}")]
    BadTarget { url: String, reason: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Replays callbacks of one journal.
pub struct Replayer {
    journal: Arc<Journal>,
    /// Each route's destination URLs, as the journal stores them.
    destinations: HashMap<String, Vec<String>>,
    /// Each route's attempt timeout, for one-off sends.
    timeouts: HashMap<String, Duration>,
    default_timeout: Duration,
    sender: Sender,
    /// The running relay's dispatcher, woken when deliveries are queued;
    /// `None` when the journal is opened by a command with no relay running.
    dispatcher: Option<Arc<Dispatcher>>,
}

impl Replayer {
    /// A replayer for `journal` with `config`'s routes.
    pub fn new(
        config: &Config,
        journal: Arc<Journal>,
        dispatcher: Option<Arc<Dispatcher>>,
    ) -> Result<Replayer, ClientError> {
        let routes = config.routes.values();
        Ok(Replayer {
            journal,
            destinations: routes
                .clone()
                .map(|r| {
                    (
                        r.name.clone(),
                        r.destinations.iter().map(|d| d.url.to_string()).collect(),
                    )
                })
                .collect(),
            timeouts: routes
                .map(|r| (r.name.clone(), r.retry.attempt_timeout))
                .collect(),
            default_timeout: config.retry.attempt_timeout,
            sender: Sender::new(
                config.delivery.ca.as_deref(),
                config.delivery.connect_timeout,
            )?,
            dispatcher,
        })
    }

    /// The journal replayed from.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The configured destinations of `route`.
    pub fn destinations(&self, route: &str) -> Option<&[String]> {
        self.destinations.get(route).map(Vec::as_slice)
    }

    /// Every configured destination URL.
    pub fn all_destinations(&self) -> Vec<String> {
        let mut urls: Vec<String> = self.destinations.values().flatten().cloned().collect();
        urls.sort();
        urls.dedup();
        urls
    }

    /// Replays the callback `id` as `request` asks.
    pub async fn replay(
        &self,
        id: CallbackId,
        request: &ReplayRequest,
    ) -> Result<ReplayResult, ReplayError> {
        let record = self
            .journal
            .record(id)?
            .ok_or_else(|| LookupError::NotFound(id.to_string()))?;
        match &request.to {
            Some(url) => self.send_once(record, url, request).await,
            None if !request.headers.is_empty() || request.body_base64.is_some() => {
                Err(ReplayError::ChangesNeedTarget)
            }
            None => self.queue(record).await,
        }
    }

    /// Selects callbacks for a bulk replay: those named in `ids` and those
    /// matching `filter` (when any filter is set), oldest first, without
    /// duplicates.
    pub fn select(
        &self,
        ids: &[String],
        filter: &FilterParams,
    ) -> Result<Vec<CallbackId>, SelectError> {
        let mut selected = Vec::new();
        for text in ids {
            selected.push(self.journal.resolve(text)?);
        }
        if !filter.is_empty() {
            let filter = filter
                .to_filter()
                .map_err(|e| SelectError::Filter(e.to_string()))?;
            let mut cursor = None;
            loop {
                let page = self
                    .journal
                    .list(&filter, cursor, crate::inspect::MAX_LIMIT)?;
                selected.extend(page.callbacks.iter().map(|s| s.record.id));
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        selected.sort();
        selected.dedup();
        Ok(selected)
    }

    async fn queue(&self, record: CallbackRecord) -> Result<ReplayResult, ReplayError> {
        let urls = self
            .destinations(&record.route)
            .ok_or_else(|| ReplayError::NoRoute {
                route: record.route.clone(),
            })?;
        let queued = self.journal.queue_replay(record.id, urls, now_ms()).await?;
        if let Some(dispatcher) = &self.dispatcher {
            dispatcher.wake(urls);
        }
        Ok(ReplayResult {
            id: record.id.to_string(),
            route: record.route,
            queued: queued
                .iter()
                .map(|d| QueuedView {
                    seq: d.seq,
                    url: d.url.clone(),
                })
                .collect(),
            sent: None,
            error: None,
        })
    }

    async fn send_once(
        &self,
        record: CallbackRecord,
        url: &str,
        request: &ReplayRequest,
    ) -> Result<ReplayResult, ReplayError> {
        let body = match &request.body_base64 {
            Some(text) => Bytes::from(
                BASE64
                    .decode(text)
                    .map_err(|e| ReplayError::BadBody(e.to_string()))?,
            ),
            None => self.journal.body(record.id)?,
        };
        let number = self.journal.sent_replays(record.id)?.len() as u32 + 1;
        let bad_target = |reason: String| ReplayError::BadTarget {
            url: url.to_string(),
            reason,
        };
        let mut http_request =
            forwarded_request(url, &record, body, number, true).map_err(bad_target)?;
        apply_headers(http_request.headers_mut(), &request.headers)?;

        let timeout = self
            .timeouts
            .get(&record.route)
            .copied()
            .unwrap_or(self.default_timeout);
        let started_ms = now_ms();
        let started = Instant::now();
        let answer = self
            .sender
            .exchange(http_request, timeout, ANSWER_HEAD)
            .await;
        let latency = started.elapsed();

        let (status, error) = match &answer {
            Ok(answer) => (Some(answer.status), None),
            Err(err) => (None, Some(err.clone())),
        };
        let sent = SentReplay {
            number,
            url: url.to_string(),
            started_ms,
            latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            status,
            error: error.clone(),
            modified: !request.headers.is_empty() || request.body_base64.is_some(),
        };
        self.journal.record_sent(record.id, sent).await?;
        let latency_ms = latency.as_secs_f64() * 1000.0;
        self.announce(&record, url, status, error.clone(), latency_ms);

        let (content_type, response_head) = match &answer {
            Ok(answer) => (
                answer
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok()),
                String::from_utf8_lossy(&answer.head).into_owned(),
            ),
            Err(_) => (None, String::new()),
        };
        Ok(ReplayResult {
            id: record.id.to_string(),
            route: record.route,
            queued: Vec::new(),
            sent: Some(SentResult {
                url: url.to_string(),
                status,
                error,
                latency_ms,
                succeeded: status.is_some_and(|s| (200..300).contains(&s)),
                content_type: content_type.map(str::to_string),
                response_head,
            }),
            error: None,
        })
    }

    fn announce(
        &self,
        record: &CallbackRecord,
        url: &str,
        status: Option<u16>,
        error: Option<String>,
        latency_ms: f64,
    ) {
        if let Some(dispatcher) = &self.dispatcher {
            dispatcher.events().publish(|| Event::Sent {
                id: record.id.to_string(),
                route: record.route.clone(),
                url: url.to_string(),
                status,
                error,
                latency_ms,
            });
        }
    }
}

/// Why a bulk selection failed.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("{0}")]
    Filter(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Sets each header, replacing any of the same name.
fn apply_headers(
    headers: &mut http::HeaderMap,
    changes: &[(String, String)],
) -> Result<(), ReplayError> {
    for (name, value) in changes {
        let bad = |reason: String| ReplayError::BadHeader {
            name: name.clone(),
            reason,
        };
        let header = HeaderName::from_str(name.trim()).map_err(|e| bad(e.to_string()))?;
        let value = HeaderValue::from_str(value.trim()).map_err(|e| bad(e.to_string()))?;
        headers.insert(header, value);
    }
    Ok(())
}

/// Reads a `--header` value written as `Name: value`.
pub fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not a header (expected \"Name: value\")"))?;
    let name = name.trim();
    HeaderName::from_str(name).map_err(|_| format!("{name:?} is not a header name"))?;
    Ok((name.to_string(), value.trim().to_string()))
}
