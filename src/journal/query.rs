//! Reading the journal for people: callbacks listed with filters (newest
//! first, a page at a time), one callback with its whole history, the
//! callbacks of a task, and the short id prefixes shown in tables.
//!
//! A callback's state is not stored: it follows from its deliveries, so it
//! can never disagree with them.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use super::replay::SentReplay;
use super::{Attempt, CallbackId, CallbackRecord, Delivery, DeliveryState, Journal, JournalError};
use super::{key, task_prefix};

/// Where a callback stands, from its deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackState {
    /// Some destination still waits for an attempt.
    Pending,
    /// Every destination took it.
    Delivered,
    /// Some destination gave up on it, and nothing else is pending.
    Dead,
    /// It has no deliveries at all (imported without requeueing).
    Stored,
}

impl CallbackState {
    /// The state's name, as the API and the command line spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackState::Pending => "pending",
            CallbackState::Delivered => "delivered",
            CallbackState::Dead => "dead",
            CallbackState::Stored => "stored",
        }
    }

    /// Derives the state from a callback's deliveries, given in `seq` order.
    ///
    /// The latest delivery to each destination speaks for it, so a dead
    /// delivery that a replay later delivered counts as delivered.
    pub fn of(deliveries: &[Delivery]) -> CallbackState {
        let mut latest: HashMap<&str, DeliveryState> = HashMap::new();
        for delivery in deliveries {
            latest.insert(&delivery.url, delivery.state);
        }
        if latest.is_empty() {
            CallbackState::Stored
        } else if latest.values().any(|s| *s == DeliveryState::Pending) {
            CallbackState::Pending
        } else if latest.values().any(|s| *s == DeliveryState::Dead) {
            CallbackState::Dead
        } else {
            CallbackState::Delivered
        }
    }
}

impl fmt::Display for CallbackState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CallbackState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(CallbackState::Pending),
            "delivered" => Ok(CallbackState::Delivered),
            "dead" => Ok(CallbackState::Dead),
            "stored" => Ok(CallbackState::Stored),
            other => Err(format!(
                "unknown state {other:?} (expected pending, delivered, dead or stored)"
            )),
        }
    }
}

/// Which callbacks a listing selects; every field set must match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub route: Option<String>,
    pub task: Option<String>,
    pub state: Option<CallbackState>,
    /// Received at or after this time, ms since the epoch.
    pub since_ms: Option<u64>,
    /// Received before this time, ms since the epoch.
    pub until_ms: Option<u64>,
}

/// One callback as a listing shows it.
#[derive(Clone, Debug)]
pub struct Summary {
    pub record: CallbackRecord,
    pub state: CallbackState,
    /// Attempts made over all its deliveries.
    pub attempts: u32,
    /// The outcome of the latest delivery that made an attempt.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page {
    pub callbacks: Vec<Summary>,
    /// Where the next page starts (pass it back as `before`); `None` when
    /// this page is the last.
    pub next: Option<CallbackId>,
}

/// One callback with everything the journal knows of it.
#[derive(Debug)]
pub struct Detail {
    pub summary: Summary,
    pub body: Bytes,
    /// Every delivery, in `seq` order, with its attempts.
    pub deliveries: Vec<(Delivery, Vec<Attempt>)>,
    /// One-off sends to a target given at replay time.
    pub sent: Vec<SentReplay>,
}

/// Why an id given by a person does not name one callback.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("{0:?} is not a callback id (ids are 26 characters of Crockford base32)")]
    Malformed(String),
    #[error("no callback with id {0}")]
    NotFound(String),
    #[error("id prefix {prefix} matches more than one callback ({first}, {second}, ...)")]
    Ambiguous {
        prefix: String,
        first: String,
        second: String,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Length of a ULID in text.
const ID_LEN: usize = 26;

impl Journal {
    /// The callbacks matching `filter`, newest first, received before the
    /// callback `before` (from the newest when `None`), at most `limit`.
    pub fn list(
        &self,
        filter: &Filter,
        before: Option<CallbackId>,
        limit: usize,
    ) -> Result<Page, JournalError> {
        let limit = limit.max(1);
        let mut callbacks = Vec::with_capacity(limit.min(256));
        let mut next = None;
        for id in self.candidates(filter, before)? {
            let id = id?;
            let Some(summary) = self.summary(id)? else {
                continue;
            };
            if !matches(filter, &summary) {
                continue;
            }
            if callbacks.len() == limit {
                next = callbacks.last().map(|s: &Summary| s.record.id);
                break;
            }
            callbacks.push(summary);
        }
        Ok(Page { callbacks, next })
    }

    /// Every callback that carried `task`, oldest first.
    pub fn task(&self, task: &str) -> Result<Vec<Summary>, JournalError> {
        self.index_tasks()?;
        let mut found = Vec::new();
        for id in self.task_ids(task) {
            if let Some(summary) = self.summary(id?)? {
                found.push(summary);
            }
        }
        Ok(found)
    }

    /// One callback with its body, deliveries, attempts and one-off sends.
    pub fn detail(&self, id: CallbackId) -> Result<Option<Detail>, JournalError> {
        // One read of the callback gives its record, body and first deliveries.
        let Some(value) = self.tree.get(key(b'c', id, &[]))? else {
            return Ok(None);
        };
        let stored = CallbackRecord::decode_stored(&value)?;
        let deliveries = self.deliveries_from(id, stored.initial_deliveries())?;
        let body = Bytes::copy_from_slice(stored.body);
        let summary = summarize(stored.record, &deliveries);
        let mut with_attempts = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let attempts = self.attempts(id, delivery.seq)?;
            with_attempts.push((delivery, attempts));
        }
        Ok(Some(Detail {
            summary,
            body,
            deliveries: with_attempts,
            sent: self.sent_replays(id)?,
        }))
    }

    /// A callback's record alone.
    pub fn record(&self, id: CallbackId) -> Result<Option<CallbackRecord>, JournalError> {
        match self.tree.get(key(b'c', id, &[]))? {
            Some(bytes) => CallbackRecord::decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// A callback's body, empty when it has none.
    pub fn body(&self, id: CallbackId) -> Result<Bytes, JournalError> {
        let Some(value) = self.tree.get(key(b'c', id, &[]))? else {
            return Ok(Bytes::new());
        };
        let stored = CallbackRecord::decode_stored(&value)?;
        Ok(Bytes::copy_from_slice(stored.body))
    }

    /// The callback a person means by `text`: a whole id or a prefix of one
    /// that only one callback has (case does not matter).
    pub fn resolve(&self, text: &str) -> Result<CallbackId, LookupError> {
        let prefix = text.trim().to_ascii_uppercase();
        let crockford = |c: char| c.is_ascii_digit() || ("ABCDEFGHJKMNPQRSTVWXYZ").contains(c);
        if prefix.is_empty() || prefix.len() > ID_LEN || !prefix.chars().all(crockford) {
            return Err(LookupError::Malformed(text.to_string()));
        }
        // ULID text sorts like the number, so a prefix covers one key range.
        let low = format!("{prefix:0<ID_LEN$}");
        let high = format!("{prefix:Z<ID_LEN$}");
        let (Ok(low), high) = (low.parse::<CallbackId>(), high.parse::<CallbackId>()) else {
            return Err(LookupError::NotFound(prefix));
        };
        let high = high.unwrap_or(CallbackId(u128::MAX));
        let range = key(b'c', low, &[])..=key(b'c', high, &[]);
        let mut found = self.tree.range(range).keys();
        let mut next = || -> Result<Option<CallbackId>, JournalError> {
            found.next().transpose()?.map(|k| id_of_key(&k)).transpose()
        };
        let (first, second) = (next()?, next()?);
        match (first, second) {
            (None, _) => Err(LookupError::NotFound(prefix)),
            (Some(id), None) => Ok(id),
            (Some(first), Some(second)) => Err(LookupError::Ambiguous {
                prefix,
                first: first.to_string(),
                second: second.to_string(),
            }),
        }
    }

    /// The shortest prefix of `id`, at least `min` characters, that no other
    /// callback in the journal shares.
    pub fn short_id(&self, id: CallbackId, min: usize) -> Result<String, JournalError> {
        let text = id.to_string();
        let own = key(b'c', id, &[]);
        let before = self.tree.get_lt(&own)?.map(|(k, _)| k);
        let after = self.tree.range(own.clone()..).keys().nth(1).transpose()?;
        let mut shared = 0;
        for neighbour in [before, after].into_iter().flatten() {
            if neighbour.first() == Some(&b'c') && neighbour.len() == own.len() {
                let other = id_of_key(&neighbour)?.to_string();
                let common = text
                    .bytes()
                    .zip(other.bytes())
                    .take_while(|(a, b)| a == b)
                    .count();
                shared = shared.max(common);
            }
        }
        let len = (shared + 1).max(min).min(ID_LEN);
        Ok(text[..len].to_string())
    }

    /// A callback's summary, when it exists.
    pub fn summary(&self, id: CallbackId) -> Result<Option<Summary>, JournalError> {
        let Some(value) = self.tree.get(key(b'c', id, &[]))? else {
            return Ok(None);
        };
        let stored = CallbackRecord::decode_stored(&value)?;
        let deliveries = self.deliveries_from(id, stored.initial_deliveries())?;
        Ok(Some(summarize(stored.record, &deliveries)))
    }

    /// Ids that may match `filter`, newest first: from the task index when a
    /// task is asked for, else every id within the time range.
    fn candidates(
        &self,
        filter: &Filter,
        before: Option<CallbackId>,
    ) -> Result<Box<dyn Iterator<Item = Result<CallbackId, JournalError>> + '_>, JournalError> {
        let low = CallbackId(u128::from(filter.since_ms.unwrap_or(0)) << 80);
        let mut high = match filter.until_ms {
            Some(until) => CallbackId(u128::from(until) << 80),
            None => CallbackId(u128::MAX),
        };
        if let Some(before) = before {
            high = high.min(before);
        }
        if let Some(task) = &filter.task {
            self.index_tasks()?;
            let mut ids = self.task_ids(task).collect::<Result<Vec<_>, _>>()?;
            ids.retain(|id| *id >= low && *id < high);
            ids.reverse();
            return Ok(Box::new(ids.into_iter().map(Ok)));
        }
        let range = key(b'c', low, &[])..key(b'c', high, &[]);
        Ok(Box::new(
            self.tree.range(range).keys().rev().map(|k| id_of_key(&k?)),
        ))
    }

    /// Ids of the callbacks that carried `task`, oldest first.
    fn task_ids(&self, task: &str) -> impl Iterator<Item = Result<CallbackId, JournalError>> + '_ {
        let prefix = task_prefix(task);
        let skip = prefix.len();
        self.tree.scan_prefix(prefix).keys().map(move |k| {
            let k = k?;
            let bytes: [u8; 16] = k
                .get(skip..)
                .and_then(|rest| rest.try_into().ok())
                .ok_or_else(|| JournalError::Corrupt("task key has a bad length".into()))?;
            Ok(CallbackId(u128::from_be_bytes(bytes)))
        })
    }
}

fn summarize(record: CallbackRecord, deliveries: &[Delivery]) -> Summary {
    let attempts = deliveries.iter().map(|d| d.attempts).sum();
    let last = deliveries.iter().rev().find(|d| d.attempts > 0);
    Summary {
        state: CallbackState::of(deliveries),
        attempts,
        last_status: last.and_then(|d| d.last_status),
        last_error: last.and_then(|d| d.last_error.clone()),
        record,
    }
}

fn matches(filter: &Filter, summary: &Summary) -> bool {
    let record = &summary.record;
    filter.route.as_ref().is_none_or(|r| *r == record.route)
        && filter.state.is_none_or(|s| s == summary.state)
        && filter.since_ms.is_none_or(|t| record.received_at_ms >= t)
        && filter.until_ms.is_none_or(|t| record.received_at_ms < t)
}

/// The id in a callback's key (`c` id).
pub(super) fn id_of_key(key: &[u8]) -> Result<CallbackId, JournalError> {
    let bytes: [u8; 16] = key
        .get(1..)
        .and_then(|rest| rest.try_into().ok())
        .ok_or_else(|| JournalError::Corrupt("callback key has a bad length".into()))?;
    Ok(CallbackId(u128::from_be_bytes(bytes)))
}
