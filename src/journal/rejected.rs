//! The ring of rejected requests: the newest requests the public listener
//! refused after matching a route (bad signature or token, address not
//! allowed, rate limited, body too large), kept so an operator can see why
//! a provider's callbacks are refused.
//!
//! Each is kept under `x` id. The ring holds at most `keep` of them: every
//! insert that takes the count over `keep` removes the oldest. The count is
//! kept in memory, so an insert costs one sled insert and, once the ring is
//! full, one seek and one removal; nothing is scanned.
//!
//! Nothing here waits for a flush. A rejected request was never
//! acknowledged, so losing the newest few at a crash loses nothing a
//! provider relies on; group commit or sled's own periodic flush writes them
//! out soon after.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::codec::{Decoder, Encoder};
use super::{CallbackId, Journal, JournalError, key};

/// The first byte of every key of the ring.
const PREFIX: u8 = b'x';

/// Headers kept per rejected request, names and values together: hyper
/// allows far larger heads, and a flood of refused requests must not fill
/// the disk through them.
const HEADERS_CAP: usize = 16 * 1024;

/// How many rejected requests a journal keeps, and how much of each body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectedLimits {
    /// The most kept; the oldest goes when a new one comes. 0 keeps none.
    pub keep: usize,
    /// The most body bytes kept of each.
    pub body_cap: usize,
}

impl Default for RejectedLimits {
    /// The defaults of `[journal] rejected_keep` and `rejected_body_cap`.
    fn default() -> Self {
        RejectedLimits {
            keep: 1000,
            body_cap: 4 * 1024,
        }
    }
}

/// One request the public listener refused after matching a route.
#[derive(Clone, Debug, PartialEq)]
pub struct RejectedRecord {
    /// A ULID from [`Journal::next_id`], so the ring sorts by arrival.
    pub id: CallbackId,
    /// Name of the route the request matched.
    pub route: String,
    /// Milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    pub method: String,
    /// Path with the query string, if any, as received.
    pub path_and_query: String,
    /// The caller's address, `ip:port`.
    pub peer: String,
    /// The status the caller was answered (401, 403, 413, 429, ...).
    pub status: u16,
    /// A short snake_case label such as `bad_signature`.
    pub reason: String,
    /// A message for people; never holds a secret.
    pub detail: String,
    /// Headers as received, in order; values need not be UTF-8. Cut after
    /// 16 KiB of names and values.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The start of the body, at most the journal's body cap.
    pub body: Vec<u8>,
    /// The body's length as received or declared, kept or not.
    pub body_len: u64,
}

const REJECTED_V1: u8 = 1;

impl RejectedRecord {
    fn encode(&self) -> Vec<u8> {
        let mut enc = Encoder::with_version(REJECTED_V1);
        enc.bytes(&self.id.to_bytes())
            .str(&self.route)
            .u64(self.received_at_ms)
            .str(&self.method)
            .str(&self.path_and_query)
            .str(&self.peer)
            .u16(self.status)
            .str(&self.reason)
            .str(&self.detail)
            .u64(self.body_len)
            .bytes(&self.body)
            .u32(u32::try_from(self.headers.len()).expect("header count is bounded by hyper"));
        for (name, value) in &self.headers {
            enc.str(name).bytes(value);
        }
        enc.finish()
    }

    fn decode(bytes: &[u8]) -> Result<RejectedRecord, JournalError> {
        let mut dec = Decoder::new(bytes, REJECTED_V1, "rejected record")?;
        let id_bytes: [u8; 16] = dec
            .bytes()?
            .try_into()
            .map_err(|_| JournalError::Corrupt("rejected record: bad id".into()))?;
        let mut record = RejectedRecord {
            id: CallbackId(u128::from_be_bytes(id_bytes)),
            route: dec.string()?,
            received_at_ms: dec.u64()?,
            method: dec.string()?,
            path_and_query: dec.string()?,
            peer: dec.string()?,
            status: dec.u16()?,
            reason: dec.string()?,
            detail: dec.string()?,
            body_len: dec.u64()?,
            body: dec.bytes()?.to_vec(),
            headers: Vec::new(),
        };
        let count = dec.u32()?;
        for _ in 0..count {
            record.headers.push((dec.string()?, dec.bytes()?.to_vec()));
        }
        Ok(record)
    }

    /// Cuts the body to `body_cap` and the headers to [`HEADERS_CAP`],
    /// keeping `body_len` at the length received.
    fn capped(mut self, body_cap: usize) -> RejectedRecord {
        self.body_len = self.body_len.max(self.body.len() as u64);
        self.body.truncate(body_cap);
        let mut total = 0;
        let kept = self
            .headers
            .iter()
            .take_while(|(name, value)| {
                total += name.len() + value.len();
                total <= HEADERS_CAP
            })
            .count();
        self.headers.truncate(kept);
        self
    }
}

/// The ring's limits and how many records it holds now.
pub(super) struct Ring {
    limits: RejectedLimits,
    /// Records in the tree, counted at open and kept up to date by every
    /// insert and removal, so that inserts never count by scanning.
    count: AtomicUsize,
}

impl Ring {
    /// The ring of `tree`, counting what an earlier run left.
    pub(super) fn open(tree: &sled::Tree, limits: RejectedLimits) -> Result<Ring, sled::Error> {
        let mut count = 0;
        for key in tree.scan_prefix([PREFIX]).keys() {
            key?;
            count += 1;
        }
        Ok(Ring {
            limits,
            count: AtomicUsize::new(count),
        })
    }

    /// Takes the right to remove one record, when the ring holds more than
    /// it keeps. Each right is taken once, so concurrent inserts together
    /// remove exactly as many records as the ring is over.
    fn claim_removal(&self) -> bool {
        let keep = self.limits.keep;
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n > keep).then(|| n - 1)
            })
            .is_ok()
    }
}

impl Journal {
    /// Keeps a rejected request in the ring, cutting its body to the cap
    /// and removing the oldest records when the ring is over its size. Does
    /// not wait for a flush (see the module's notes); with `keep` 0 it keeps
    /// nothing and removes what an earlier run kept.
    pub fn record_rejected(&self, record: RejectedRecord) -> Result<(), JournalError> {
        let ring = &self.rejected;
        if ring.limits.keep > 0 {
            let record = record.capped(ring.limits.body_cap);
            let previous = self
                .tree
                .insert(key(PREFIX, record.id, &[]), record.encode())?;
            if previous.is_none() {
                ring.count.fetch_add(1, Ordering::AcqRel);
            }
        }
        while ring.claim_removal() {
            if let Err(err) = self.remove_oldest_rejected() {
                // The record stays, so it still counts.
                ring.count.fetch_add(1, Ordering::AcqRel);
                return Err(err);
            }
        }
        Ok(())
    }

    /// The rejected requests kept, newest first, of `route` only when one
    /// is given, at most `limit`.
    pub fn rejected(
        &self,
        route: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RejectedRecord>, JournalError> {
        let mut found = Vec::with_capacity(limit.min(256));
        for item in self.tree.scan_prefix([PREFIX]).values().rev() {
            if found.len() == limit {
                break;
            }
            let record = RejectedRecord::decode(&item?)?;
            if route.is_none_or(|r| r == record.route) {
                found.push(record);
            }
        }
        Ok(found)
    }

    /// The limits the ring was opened with.
    pub fn rejected_limits(&self) -> RejectedLimits {
        self.rejected.limits
    }

    /// Removes the oldest record of the ring. Another insert may remove the
    /// same one first; then the next oldest goes, so each claimed removal
    /// removes exactly one record.
    fn remove_oldest_rejected(&self) -> Result<(), JournalError> {
        loop {
            let oldest = self.tree.scan_prefix([PREFIX]).keys().next().transpose()?;
            let Some(oldest) = oldest else {
                // Nothing left to remove: the count was already right.
                return Ok(());
            };
            if self.tree.remove(oldest)?.is_some() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn open(dir: &std::path::Path, keep: usize, body_cap: usize) -> Journal {
        let limits = RejectedLimits { keep, body_cap };
        Journal::open_for_test(dir, limits)
    }

    fn rejected(journal: &Journal, route: &str, body: &[u8]) -> RejectedRecord {
        RejectedRecord {
            id: journal.next_id(),
            route: route.to_string(),
            received_at_ms: 1_700_000_000_000,
            method: "POST".into(),
            path_and_query: format!("/callbacks/{route}"),
            peer: "192.0.2.7:41000".into(),
            status: 401,
            reason: "bad_signature".into(),
            detail: "signature does not match".into(),
            headers: vec![("stripe-signature".into(), b"t=1,v1=ab".to_vec())],
            body: body.to_vec(),
            body_len: body.len() as u64,
        }
    }

    fn ids(records: &[RejectedRecord]) -> Vec<CallbackId> {
        records.iter().map(|r| r.id).collect()
    }

    #[test]
    fn records_come_back_newest_first_and_by_route() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path(), 10, 4096);
        let mut made = Vec::new();
        for route in ["wav", "mp4", "wav"] {
            let record = rejected(&journal, route, b"{}");
            made.push(record.clone());
            journal.record_rejected(record).unwrap();
        }

        let all = journal.rejected(None, 10).unwrap();
        assert_eq!(ids(&all), [made[2].id, made[1].id, made[0].id]);
        assert_eq!(all[2], made[0], "a record reads back as written");
        let wav = journal.rejected(Some("wav"), 10).unwrap();
        assert_eq!(ids(&wav), [made[2].id, made[0].id]);
        assert_eq!(ids(&journal.rejected(None, 1).unwrap()), [made[2].id]);
    }

    #[test]
    fn the_oldest_go_when_the_ring_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path(), 3, 4096);
        let made: Vec<_> = (0..5).map(|_| rejected(&journal, "wav", b"")).collect();
        for record in &made {
            journal.record_rejected(record.clone()).unwrap();
        }
        let kept = journal.rejected(None, 100).unwrap();
        assert_eq!(ids(&kept), [made[4].id, made[3].id, made[2].id]);
    }

    #[test]
    fn the_cap_holds_under_concurrent_inserts() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(open(dir.path(), 50, 4096));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let journal = Arc::clone(&journal);
                std::thread::spawn(move || {
                    let mut made = Vec::new();
                    for _ in 0..100 {
                        let record = rejected(&journal, "wav", b"x");
                        made.push(record.id);
                        journal.record_rejected(record).unwrap();
                    }
                    made
                })
            })
            .collect();
        let mut made: Vec<CallbackId> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("an inserting thread panicked"))
            .collect();

        let kept = journal.rejected(None, 1000).unwrap();
        made.sort();
        let newest: Vec<CallbackId> = made.iter().rev().take(50).copied().collect();
        assert_eq!(ids(&kept), newest, "exactly the newest 50 are kept");

        // The count in memory stayed right: one more insert keeps 50.
        journal
            .record_rejected(rejected(&journal, "wav", b""))
            .unwrap();
        assert_eq!(journal.rejected(None, 1000).unwrap().len(), 50);
    }

    #[test]
    fn bodies_are_cut_to_the_cap_and_keep_their_length() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path(), 10, 16);
        let body = vec![b'a'; 100];
        journal
            .record_rejected(rejected(&journal, "wav", &body))
            .unwrap();
        let kept = &journal.rejected(None, 1).unwrap()[0];
        assert_eq!(kept.body, &body[..16]);
        assert_eq!(kept.body_len, 100);
    }

    #[test]
    fn oversized_heads_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path(), 10, 16);
        let mut record = rejected(&journal, "wav", b"");
        record.headers = (0..10)
            .map(|n| (format!("x-filler-{n}"), vec![b'v'; 4000]))
            .collect();
        journal.record_rejected(record).unwrap();
        let kept = &journal.rejected(None, 1).unwrap()[0];
        assert_eq!(kept.headers.len(), 4, "16 KiB holds four 4 KB headers");
    }

    #[test]
    fn keep_zero_keeps_nothing_and_clears_what_was_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let journal = open(dir.path(), 10, 4096);
            journal
                .record_rejected(rejected(&journal, "wav", b""))
                .unwrap();
        }
        let journal = open(dir.path(), 0, 4096);
        assert_eq!(journal.rejected(None, 10).unwrap().len(), 1);
        journal
            .record_rejected(rejected(&journal, "wav", b""))
            .unwrap();
        assert!(journal.rejected(None, 10).unwrap().is_empty());
    }

    #[test]
    fn a_lower_keep_trims_what_an_earlier_run_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let journal = open(dir.path(), 10, 4096);
            for _ in 0..6 {
                journal
                    .record_rejected(rejected(&journal, "wav", b""))
                    .unwrap();
            }
        }
        let journal = open(dir.path(), 2, 4096);
        let newest = rejected(&journal, "wav", b"");
        journal.record_rejected(newest.clone()).unwrap();
        let kept = journal.rejected(None, 10).unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].id, newest.id);
    }

    #[test]
    fn rejected_records_do_not_disturb_callbacks() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path(), 10, 4096);
        journal
            .record_rejected(rejected(&journal, "wav", b""))
            .unwrap();
        assert_eq!(journal.callback_ids().count(), 0);
        assert!(journal.pending_lanes().unwrap().is_empty());
        let page = journal
            .list(&super::super::Filter::default(), None, 10)
            .unwrap();
        assert!(page.callbacks.is_empty());
    }
}
