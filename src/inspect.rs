//! Inspection: callbacks, deliveries and attempts in the JSON shapes the
//! admin API answers with and the command line prints with `--json`.
//!
//! The same functions serve both, so a command gives the same answer
//! whether it reads the journal itself or asks a running relay. Field names
//! here are a public contract: add fields, never rename them.
//!
//! Views that show headers or paths take a [`Redactor`]: secrets are hidden
//! unless the caller passes `None` to reveal them.

use serde::{Deserialize, Serialize};

use crate::clock;
use crate::export::{self, Encoding};
use crate::ingest::now_ms;
use crate::journal::{
    Attempt, CallbackId, CallbackState, Delivery, Detail, Filter, Journal, JournalError,
    RejectedRecord, SentReplay, Summary,
};
use crate::redact::Redactor;

/// Shortest id prefix shown in tables: the ULID's time and two more
/// characters, so prefixes stay stable as the journal grows.
pub const SHORT_ID_MIN: usize = 12;

/// Largest page a listing returns.
pub const MAX_LIMIT: usize = 1000;

/// One callback in a listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallbackView {
    pub id: String,
    /// The shortest prefix of `id` that no other callback in the journal
    /// shares (at least 12 characters).
    pub short_id: String,
    /// RFC 3339, UTC.
    pub received_at: String,
    pub received_at_ms: u64,
    pub route: String,
    pub task_id: Option<String>,
    /// `pending`, `delivered`, `dead` or `stored` (no deliveries).
    pub state: String,
    /// Attempts made over every delivery.
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

/// A page of a listing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListView {
    pub callbacks: Vec<CallbackView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// One callback with everything known of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DetailView {
    #[serde(flatten)]
    pub callback: CallbackView,
    pub method: String,
    /// Secrets in the path and query hidden unless revealed.
    pub path_and_query: String,
    pub peer: String,
    pub tls: bool,
    /// Headers as received, in order, secrets hidden unless revealed;
    /// values that are not UTF-8 are shown with replacement characters (the
    /// export keeps them exact).
    pub headers: Vec<HeaderView>,
    pub content_type: Option<String>,
    pub body_bytes: usize,
    pub deliveries: Vec<DeliveryView>,
    /// One-off sends to targets given at replay time.
    pub sent: Vec<SentView>,
}

/// A header name and value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeaderView {
    pub name: String,
    pub value: String,
}

/// One request the public listener refused after matching a route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RejectedView {
    pub id: String,
    /// RFC 3339, UTC.
    pub received_at: String,
    pub received_at_ms: u64,
    pub route: String,
    pub method: String,
    /// Secrets in the path and query hidden unless revealed.
    pub path_and_query: String,
    pub peer: String,
    /// The status the caller was answered.
    pub status: u16,
    /// A short label such as `bad_signature`.
    pub reason: String,
    pub detail: String,
    /// Secrets hidden unless revealed, as in [`DetailView`].
    pub headers: Vec<HeaderView>,
    /// The body's length as received or declared.
    pub body_len: u64,
    /// How much of the body was kept (the journal keeps a capped start).
    pub body_kept: usize,
    /// `utf8` when `body` is the kept bytes as text, `base64` otherwise.
    pub body_encoding: Encoding,
    pub body: String,
}

/// The rejected requests kept, newest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RejectedList {
    pub rejected: Vec<RejectedView>,
}

/// One delivery and its attempts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeliveryView {
    pub seq: u32,
    pub url: String,
    pub state: String,
    /// Queued by a replay rather than at ingest.
    pub replay: bool,
    /// When the next attempt is due (RFC 3339), while pending.
    pub next_attempt_at: Option<String>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub attempts: Vec<AttemptView>,
}

/// One attempt of a delivery.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttemptView {
    pub number: u32,
    pub started_at: String,
    pub started_at_ms: u64,
    pub latency_ms: f64,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// One one-off send made by a replay.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SentView {
    pub number: u32,
    pub url: String,
    pub started_at: String,
    pub latency_ms: f64,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// Whether headers or the body were changed for this send.
    pub modified: bool,
}

/// Filters as the API's query string and the command line give them:
/// text, checked when turned into a [`Filter`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FilterParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// A time, a date, ms since the epoch, or a duration back from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// Why a filter value was refused.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {message}")]
pub struct BadFilter {
    pub name: &'static str,
    pub message: String,
}

impl FilterParams {
    /// Whether any filter is set.
    pub fn is_empty(&self) -> bool {
        self.route.is_none()
            && self.task.is_none()
            && self.state.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }

    /// Checks the values and reads times relative to now.
    pub fn to_filter(&self) -> Result<Filter, BadFilter> {
        let now = now_ms();
        let time = |name: &'static str, text: &Option<String>| {
            text.as_deref()
                .map(|t| {
                    clock::parse_instant(t, now).map_err(|message| BadFilter { name, message })
                })
                .transpose()
        };
        let state = self
            .state
            .as_deref()
            .map(str::parse::<CallbackState>)
            .transpose();
        Ok(Filter {
            route: self.route.clone(),
            task: self.task.clone(),
            state: state.map_err(|message| BadFilter {
                name: "state",
                message,
            })?,
            since_ms: time("since", &self.since)?,
            until_ms: time("until", &self.until)?,
        })
    }
}

/// A page of callbacks matching `filter`, newest first, before `cursor`.
pub fn list(
    journal: &Journal,
    filter: &Filter,
    cursor: Option<CallbackId>,
    limit: usize,
) -> Result<ListView, JournalError> {
    let page = journal.list(filter, cursor, limit.clamp(1, MAX_LIMIT))?;
    let callbacks = page
        .callbacks
        .iter()
        .map(|summary| callback_view(journal, summary))
        .collect::<Result<_, _>>()?;
    Ok(ListView {
        callbacks,
        next_cursor: page.next.map(|id| id.to_string()),
    })
}

/// Every callback of a task, oldest first.
pub fn task(journal: &Journal, task: &str) -> Result<Vec<CallbackView>, JournalError> {
    journal
        .task(task)?
        .iter()
        .map(|summary| callback_view(journal, summary))
        .collect()
}

/// One callback in full, if it exists, its secrets hidden by `redact`
/// (shown as stored when `None`).
pub fn detail(
    journal: &Journal,
    id: CallbackId,
    redact: Option<&Redactor>,
) -> Result<Option<DetailView>, JournalError> {
    let Some(detail) = journal.detail(id)? else {
        return Ok(None);
    };
    Ok(Some(detail_view(journal, &detail, redact)?))
}

/// The rejected requests kept, newest first, of `route` when given, at
/// most `limit` (up to [`MAX_LIMIT`]), secrets hidden by `redact`.
pub fn rejected(
    journal: &Journal,
    route: Option<&str>,
    limit: usize,
    redact: Option<&Redactor>,
) -> Result<RejectedList, JournalError> {
    let records = journal.rejected(route, limit.clamp(1, MAX_LIMIT))?;
    Ok(RejectedList {
        rejected: records.iter().map(|r| rejected_view(r, redact)).collect(),
    })
}

/// A summary as a listing shows it.
pub fn callback_view(journal: &Journal, summary: &Summary) -> Result<CallbackView, JournalError> {
    let record = &summary.record;
    Ok(CallbackView {
        id: record.id.to_string(),
        short_id: journal.short_id(record.id, SHORT_ID_MIN)?,
        received_at: clock::rfc3339(record.received_at_ms),
        received_at_ms: record.received_at_ms,
        route: record.route.clone(),
        task_id: record.task_id.clone(),
        state: summary.state.as_str().to_string(),
        attempts: summary.attempts,
        last_status: summary.last_status,
        last_error: summary.last_error.clone(),
    })
}

fn detail_view(
    journal: &Journal,
    detail: &Detail,
    redact: Option<&Redactor>,
) -> Result<DetailView, JournalError> {
    let record = &detail.summary.record;
    let (headers, path_and_query) = shown(
        redact,
        &record.route,
        &record.headers,
        &record.path_and_query,
    );
    Ok(DetailView {
        callback: callback_view(journal, &detail.summary)?,
        method: record.method.clone(),
        path_and_query,
        peer: record.peer.clone(),
        tls: record.tls,
        content_type: content_type(&record.headers),
        headers,
        body_bytes: detail.body.len(),
        deliveries: detail
            .deliveries
            .iter()
            .map(|(d, a)| delivery_view(d, a))
            .collect(),
        sent: detail.sent.iter().map(sent_view).collect(),
    })
}

fn rejected_view(record: &RejectedRecord, redact: Option<&Redactor>) -> RejectedView {
    let (headers, path_and_query) = shown(
        redact,
        &record.route,
        &record.headers,
        &record.path_and_query,
    );
    let (body, body_encoding) = export::encode(&record.body);
    RejectedView {
        id: record.id.to_string(),
        received_at: clock::rfc3339(record.received_at_ms),
        received_at_ms: record.received_at_ms,
        route: record.route.clone(),
        method: record.method.clone(),
        path_and_query,
        peer: record.peer.clone(),
        status: record.status,
        reason: record.reason.clone(),
        detail: record.detail.clone(),
        headers,
        body_len: record.body_len,
        body_kept: record.body.len(),
        body_encoding,
        body,
    }
}

/// Headers and path as they are shown: redacted, or as stored.
fn shown(
    redact: Option<&Redactor>,
    route: &str,
    headers: &[(String, Vec<u8>)],
    path_and_query: &str,
) -> (Vec<HeaderView>, String) {
    let header_view = |(name, value): &(String, Vec<u8>)| HeaderView {
        name: name.clone(),
        value: String::from_utf8_lossy(value).into_owned(),
    };
    match redact {
        Some(redactor) => (
            redactor
                .headers(route, headers)
                .iter()
                .map(header_view)
                .collect(),
            redactor.path_and_query(route, path_and_query),
        ),
        None => (
            headers.iter().map(header_view).collect(),
            path_and_query.to_string(),
        ),
    }
}

fn delivery_view(delivery: &Delivery, attempts: &[Attempt]) -> DeliveryView {
    let pending = delivery.state == crate::journal::DeliveryState::Pending;
    DeliveryView {
        seq: delivery.seq,
        url: delivery.url.clone(),
        state: delivery.state.as_str().to_string(),
        replay: delivery.replay,
        next_attempt_at: pending.then(|| clock::rfc3339(delivery.next_attempt_ms)),
        last_status: delivery.last_status,
        last_error: delivery.last_error.clone(),
        attempts: attempts
            .iter()
            .map(|a| AttemptView {
                number: a.number,
                started_at: clock::rfc3339(a.started_ms),
                started_at_ms: a.started_ms,
                latency_ms: a.latency_us as f64 / 1000.0,
                status: a.status,
                error: a.error.clone(),
            })
            .collect(),
    }
}

fn sent_view(sent: &SentReplay) -> SentView {
    SentView {
        number: sent.number,
        url: sent.url.clone(),
        started_at: clock::rfc3339(sent.started_ms),
        latency_ms: sent.latency_us as f64 / 1000.0,
        status: sent.status,
        error: sent.error.clone(),
        modified: sent.modified,
    }
}

/// The `content-type` a callback arrived with.
pub fn content_type(headers: &[(String, Vec<u8>)]) -> Option<String> {
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
}
