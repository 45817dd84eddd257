//! Export and import: callbacks as JSON Lines, one callback per line, so a
//! capture taken on one relay can be inspected or replayed on another.
//!
//! Bodies and header values are kept byte for byte: as UTF-8 text when
//! they are, else base64, with a field saying which. Deliveries are
//! exported for reading only; an import adds the callback itself, and new
//! deliveries to the importing relay's destinations only when asked to.
//!
//! Secrets (credentials, signatures, tokens in the path) are hidden unless
//! the export is asked to reveal them; such a line says `"redacted": true`,
//! and imports with the placeholders in place of the values.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::ingest::now_ms;
use crate::journal::{CallbackId, CallbackRecord, Filter, Journal, JournalError};
use crate::redact::Redactor;

/// The format version written in every line.
pub const FORMAT: u32 = 1;

/// How a byte string is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// As text: the bytes were valid UTF-8.
    #[default]
    Utf8,
    /// As standard base64 with padding.
    Base64,
}

/// One exported callback: one line of the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportedCallback {
    /// Always [`FORMAT`].
    pub format: u32,
    pub id: String,
    pub route: String,
    /// RFC 3339, UTC; `received_at_ms` is what an import keeps.
    pub received_at: String,
    pub received_at_ms: u64,
    pub method: String,
    pub path_and_query: String,
    pub peer: String,
    pub tls: bool,
    pub task_id: Option<String>,
    pub headers: Vec<ExportedHeader>,
    pub body_encoding: Encoding,
    pub body: String,
    /// The callback's state when exported; not imported.
    #[serde(default)]
    pub state: Option<String>,
    /// Its deliveries when exported; not imported.
    #[serde(default)]
    pub deliveries: Vec<ExportedDelivery>,
    /// Whether secrets in the headers or path were hidden: the line holds
    /// placeholders where they were.
    #[serde(default, skip_serializing_if = "is_false")]
    pub redacted: bool,
}

/// One header of an exported callback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportedHeader {
    pub name: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "is_utf8")]
    pub value_encoding: Encoding,
}

/// One delivery of an exported callback, for reading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportedDelivery {
    pub url: String,
    pub state: String,
    pub replay: bool,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

/// Why a line could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Gives a route's destination URLs, when the route is configured.
pub type RouteDestinations<'a> = &'a (dyn Fn(&str) -> Option<Vec<String>> + Sync);

/// What an import did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    /// Callbacks added.
    pub added: usize,
    /// Callbacks skipped because the journal already had their id.
    pub existing: usize,
    /// Deliveries queued (with requeue).
    pub queued: usize,
    /// Callbacks added whose secrets had been hidden at export.
    #[serde(default)]
    pub redacted: usize,
}

fn is_utf8(encoding: &Encoding) -> bool {
    *encoding == Encoding::Utf8
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Writes bytes as text when they are UTF-8, else as base64.
pub(crate) fn encode(bytes: &[u8]) -> (String, Encoding) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_string(), Encoding::Utf8),
        Err(_) => (BASE64.encode(bytes), Encoding::Base64),
    }
}

fn decode(text: &str, encoding: Encoding) -> Result<Vec<u8>, String> {
    match encoding {
        Encoding::Utf8 => Ok(text.as_bytes().to_vec()),
        Encoding::Base64 => BASE64.decode(text).map_err(|e| format!("bad base64: {e}")),
    }
}

/// The ids of every callback matching `filter`, oldest first.
pub fn select(journal: &Journal, filter: &Filter) -> Result<Vec<CallbackId>, JournalError> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = journal.list(filter, cursor, crate::inspect::MAX_LIMIT)?;
        ids.extend(page.callbacks.iter().map(|s| s.record.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    ids.reverse();
    Ok(ids)
}

/// One callback as an export line (without the newline), if it exists,
/// its secrets hidden by `redact` (kept as stored when `None`).
pub fn line(
    journal: &Journal,
    id: CallbackId,
    redact: Option<&Redactor>,
) -> Result<Option<String>, JournalError> {
    let Some(detail) = journal.detail(id)? else {
        return Ok(None);
    };
    let record = &detail.summary.record;
    let (headers, path_and_query) = match redact {
        Some(redactor) => (
            redactor.headers(&record.route, &record.headers),
            redactor.path_and_query(&record.route, &record.path_and_query),
        ),
        None => (record.headers.clone(), record.path_and_query.clone()),
    };
    let redacted = headers != record.headers || path_and_query != record.path_and_query;
    let (body, body_encoding) = encode(&detail.body);
    let exported = ExportedCallback {
        format: FORMAT,
        id: record.id.to_string(),
        route: record.route.clone(),
        received_at: clock::rfc3339(record.received_at_ms),
        received_at_ms: record.received_at_ms,
        method: record.method.clone(),
        path_and_query,
        peer: record.peer.clone(),
        tls: record.tls,
        task_id: record.task_id.clone(),
        headers: headers.iter().map(exported_header).collect(),
        body_encoding,
        body,
        state: Some(detail.summary.state.as_str().to_string()),
        deliveries: detail
            .deliveries
            .iter()
            .map(|(d, _)| ExportedDelivery {
                url: d.url.clone(),
                state: d.state.as_str().to_string(),
                replay: d.replay,
                attempts: d.attempts,
                last_status: d.last_status,
                last_error: d.last_error.clone(),
            })
            .collect(),
        redacted,
    };
    let text = serde_json::to_string(&exported).expect("an export line is plain data");
    Ok(Some(text))
}

fn exported_header((name, value): &(String, Vec<u8>)) -> ExportedHeader {
    let (value, value_encoding) = encode(value);
    ExportedHeader {
        name: name.clone(),
        value,
        value_encoding,
    }
}

/// Adds the callbacks of an export to `journal`. With `requeue`, each gets
/// a replay delivery to every destination `destinations` gives its route
/// (a route it does not know is an error). Stops at the first bad line;
/// what was added before it stays. Durable when it returns.
pub async fn import(
    journal: &Journal,
    text: &str,
    requeue: Option<RouteDestinations<'_>>,
) -> Result<ImportSummary, ImportError> {
    let mut summary = ImportSummary::default();
    let result = import_lines(journal, text, requeue, &mut summary);
    journal.durable().await?;
    result.map(|()| summary)
}

fn import_lines(
    journal: &Journal,
    text: &str,
    requeue: Option<RouteDestinations<'_>>,
    summary: &mut ImportSummary,
) -> Result<(), ImportError> {
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let bad = |message: String| ImportError::Line { line, message };
        let exported: ExportedCallback =
            serde_json::from_str(raw).map_err(|e| bad(format!("not an exported callback: {e}")))?;
        let (record, body) = to_record(&exported).map_err(bad)?;
        let urls = match requeue {
            Some(destinations) => destinations(&record.route).ok_or_else(|| {
                bad(format!(
                    "route {:?} is not configured here; cannot requeue",
                    record.route
                ))
            })?,
            None => Vec::new(),
        };
        if journal.import(&record, &body, &urls, now_ms())? {
            summary.added += 1;
            summary.queued += urls.len();
            summary.redacted += usize::from(exported.redacted);
        } else {
            summary.existing += 1;
        }
    }
    Ok(())
}

fn to_record(exported: &ExportedCallback) -> Result<(CallbackRecord, Vec<u8>), String> {
    if exported.format != FORMAT {
        return Err(format!(
            "format {} is not supported (expected {FORMAT})",
            exported.format
        ));
    }
    let id: CallbackId = exported
        .id
        .parse()
        .map_err(|_| format!("{:?} is not a callback id", exported.id))?;
    let mut headers = Vec::with_capacity(exported.headers.len());
    for header in &exported.headers {
        let value = decode(&header.value, header.value_encoding)
            .map_err(|e| format!("header {:?}: {e}", header.name))?;
        headers.push((header.name.clone(), value));
    }
    let body = decode(&exported.body, exported.body_encoding).map_err(|e| format!("body: {e}"))?;
    let record = CallbackRecord {
        id,
        route: exported.route.clone(),
        received_at_ms: exported.received_at_ms,
        method: exported.method.clone(),
        path_and_query: exported.path_and_query.clone(),
        headers,
        peer: exported.peer.clone(),
        tls: exported.tls,
        task_id: exported.task_id.clone(),
    };
    Ok((record, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_utf8_go_as_base64() {
        assert_eq!(
            encode(b"{\"a\":1}"),
            ("{\"a\":1}".to_string(), Encoding::Utf8)
        );
        let (text, encoding) = encode(&[0xff, 0x00, 0x80]);
        assert_eq!(encoding, Encoding::Base64);
        assert_eq!(decode(&text, encoding), Ok(vec![0xff, 0x00, 0x80]));
    }
}
