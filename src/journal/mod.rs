//! The journal: every callback received, its deliveries and their attempts,
//! kept in sled and made durable before anything is acknowledged.
//!
//! Everything lives in one sled tree. Keys start with a byte naming the kind
//! of entry:
//!
//! | key | value |
//! | --- | --- |
//! | `c` id | [`CallbackRecord`], then the body, then the URL of each delivery it started with |
//! | `d` id seq | [`Delivery`], once an attempt changed it (or a replay added it) |
//! | `a` id seq attempt | [`Attempt`] |
//! | `q` lane due id seq | nothing: deliveries waiting for a retry (or a replay), per destination, by due time |
//! | `t` len task id | nothing: which callbacks carried a task id, written when a query needs it |
//! | `m` name | how far a scan of new callbacks got: see [`intake`] |
//! | `s` id number | [`SentReplay`]: a one-off send made by a replay |
//! | `x` id | [`RejectedRecord`]: the ring of refused requests, newest kept |
//!
//! Numbers are big-endian so that keys sort in numeric order; ids are ULIDs,
//! so callbacks sort by the time they were received.
//!
//! # Order of writes
//!
//! An ack writes a single entry, the callback's `c` entry: every insert
//! into sled's tree costs a copy of the leaf it lands in, and on a 2-core
//! machine those copies were the largest part of an ack's cost. A delivery
//! that was never attempted needs no entry of its own (lanes find it by
//! scanning new callbacks, see [`intake`]), and the task index is brought
//! up to date when it is read.
//!
//! Other changes are written as plain inserts in a fixed order, not as one
//! sled batch: `apply_batch` serializes every writer behind one lock and
//! measured ten times slower than inserts (3,966 against 45,441 callbacks a
//! second with one flush per 64, on a 2-core machine). sled recovers a
//! prefix of the writes made, so only a change in progress at a crash can be
//! found half done, and each is written so that readers cope. An attempt's
//! new queue entry goes in first, then the attempt and the delivery, and the
//! old queue entry goes out last: a queue entry whose due time is not its
//! delivery's is stale and dropped, so a crash anywhere in between either
//! repeats the attempt (from the old entry, or from the scan for deliveries
//! never attempted) or finds everything written. Attempt outcomes are not
//! waited on to be flushed: the group commit of the next callbacks, or
//! sled's own flush every 200 ms, writes them out, and one lost in a crash
//! repeats that attempt.

mod codec;
mod commit;
mod intake;
mod query;
mod record;
mod rejected;
mod replay;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

pub use intake::{Fresh, Reservation, Scanned};
pub use query::{CallbackState, Detail, Filter, LookupError, Page, Summary};
pub use record::{Attempt, CallbackId, CallbackRecord, Delivery, DeliveryState};
pub use rejected::{RejectedLimits, RejectedRecord};
pub use replay::SentReplay;

use commit::Committer;

use crate::config::JournalConfig;

/// Why the journal could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Another process (usually a running relay) holds the journal's lock.
    #[error("journal {path} is locked by another process (is a relay running on it?)")]
    Locked { path: PathBuf },
    #[error("cannot open journal {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    /// A write or flush failed; nothing written since the last good flush
    /// may be relied on.
    #[error("journal write failed: {0}")]
    Write(Arc<sled::Error>),
    #[error("journal record is corrupt: {0}")]
    Corrupt(String),
}

impl From<sled::Error> for JournalError {
    fn from(err: sled::Error) -> Self {
        JournalError::Write(Arc::new(err))
    }
}

/// Inserts and removals for [`Journal::apply`], in the order they are to reach the tree.
#[derive(Default)]
pub(crate) struct Writes(Vec<(Vec<u8>, Option<Vec<u8>>)>);

impl Writes {
    pub(crate) fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.0
            .push((key.as_ref().to_vec(), Some(value.as_ref().to_vec())));
    }

    pub(crate) fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.0.push((key.as_ref().to_vec(), None));
    }
}

/// A pending delivery's place in a destination's queue.
#[derive(Clone, Debug)]
pub struct QueueEntry {
    /// The queue key itself, for resuming a scan after it.
    pub key: Vec<u8>,
    /// When the delivery is due, ms since the epoch.
    pub due_ms: u64,
    pub id: CallbackId,
    pub seq: u32,
}

/// The journal. Only one process may open a journal directory at a time.
pub struct Journal {
    db: sled::Db,
    tree: sled::Tree,
    committer: Committer,
    committer_thread: Mutex<Option<JoinHandle<()>>>,
    intake: Mutex<intake::Intake>,
    /// Held while the task index is brought up to date.
    task_indexing: Mutex<()>,
    /// The ring of rejected requests.
    rejected: rejected::Ring,
    path: PathBuf,
}

/// The shortest time between two flushes, unless configured.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(1);

const QUEUE_KEY_LEN: usize = 1 + 8 + 8 + 16 + 4;

impl Journal {
    /// Opens (or creates) the journal at `path` with a page cache of
    /// `cache_capacity` bytes, keeping rejected requests within the default
    /// limits.
    pub fn open(path: &Path, cache_capacity: u64) -> Result<Journal, JournalError> {
        Journal::open_with(path, cache_capacity, RejectedLimits::default())
    }

    /// Opens the journal as `[journal]` configures it.
    pub fn from_config(config: &JournalConfig) -> Result<Journal, JournalError> {
        let limits = RejectedLimits {
            keep: config.rejected_keep,
            body_cap: usize::try_from(config.rejected_body_cap).unwrap_or(usize::MAX),
        };
        Journal::open_inner(
            &config.path,
            config.cache_capacity,
            limits,
            config.commit_interval,
        )
    }

    /// Like [`Journal::open`], keeping rejected requests within `limits`.
    pub fn open_with(
        path: &Path,
        cache_capacity: u64,
        limits: RejectedLimits,
    ) -> Result<Journal, JournalError> {
        Journal::open_inner(path, cache_capacity, limits, DEFAULT_COMMIT_INTERVAL)
    }

    fn open_inner(
        path: &Path,
        cache_capacity: u64,
        limits: RejectedLimits,
        commit_interval: Duration,
    ) -> Result<Journal, JournalError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity)
            .mode(sled::Mode::HighThroughput)
            // Group commit flushes whatever is acknowledged; this only bounds
            // how long attempt outcomes may wait when nothing is acked.
            .flush_every_ms(Some(200))
            .open()
            .map_err(|source| open_error(path, source))?;
        let tree = db
            .open_tree("journal")
            .map_err(|source| open_error(path, source))?;
        let rejected =
            rejected::Ring::open(&tree, limits).map_err(|source| open_error(path, source))?;
        let newest = newest_callback(&tree).map_err(|source| open_error(path, source))?;
        let (committer, thread) = Committer::start(db.clone(), commit_interval);
        let journal = Journal {
            db,
            tree,
            committer,
            committer_thread: Mutex::new(Some(thread)),
            intake: Mutex::new(intake::Intake::new(0)),
            task_indexing: Mutex::new(()),
            rejected,
            path: path.to_path_buf(),
        };
        journal.init_marks(newest)?;
        // New ids sort after everything written before, whatever the clock says.
        let floor = newest.max(journal.marks_max()?).map_or(0, |id| id.0);
        *journal.intake() = intake::Intake::new(floor);
        Ok(journal)
    }

    /// Opens the journal in `dir` for a test, waiting out the lock of one
    /// just dropped: sled's own threads let go of it a moment later.
    #[cfg(test)]
    pub(crate) fn open_for_test(dir: &Path, limits: RejectedLimits) -> Journal {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Journal::open_with(dir, 8 << 20, limits) {
                Err(JournalError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                opened => return opened.expect("open a journal in a temp dir"),
            }
        }
    }

    /// The directory this journal lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new callback id, later than every id this process made before.
    pub fn next_id(&self) -> CallbackId {
        self.intake().next()
    }

    /// Stores a received callback with one pending delivery per destination,
    /// due now, and returns once all of it is on disk. The record's id is the
    /// one `reservation` holds (see [`Journal::reserve_id`]), so that lanes
    /// scanning for new callbacks wait for this write.
    pub async fn append(
        &self,
        reservation: &Reservation<'_>,
        record: &CallbackRecord,
        body: &[u8],
        destinations: &[&str],
    ) -> Result<(), JournalError> {
        debug_assert_eq!(
            record.id,
            reservation.id(),
            "a callback is written under its reserved id"
        );
        // The deliveries start inside the callback's own value: see the
        // module's notes.
        self.tree.insert(
            key(b'c', record.id, &[]),
            record.encode_stored(body, destinations),
        )?;
        self.durable().await
    }

    /// Writes `writes` in order; see the module's notes on the order of writes.
    pub(crate) fn apply(&self, writes: Writes) -> Result<(), JournalError> {
        for (key, value) in writes.0 {
            match value {
                Some(value) => self.tree.insert(key, value)?,
                None => self.tree.remove(key)?,
            };
        }
        Ok(())
    }

    /// Waits until every write made so far is on disk.
    pub async fn durable(&self) -> Result<(), JournalError> {
        self.committer.durable().await.map_err(JournalError::Write)
    }

    /// The first entry of `lane`'s queue after `after` (from the start when
    /// `None`) for which `skip` is false.
    pub fn next_due(
        &self,
        lane: u64,
        after: Option<&[u8]>,
        skip: impl Fn(CallbackId, u32) -> bool,
    ) -> Result<Option<QueueEntry>, JournalError> {
        let mut prefix = vec![b'q'];
        prefix.extend_from_slice(&lane.to_be_bytes());
        let end = lane_end(lane);
        let range = match after {
            Some(after) => self.tree.range::<&[u8], _>((
                std::ops::Bound::Excluded(after),
                std::ops::Bound::Excluded(&end[..]),
            )),
            None => self.tree.range::<&[u8], _>(&prefix[..]..&end[..]),
        };
        for item in range {
            let (key, _) = item?;
            let entry = parse_queue_key(&key)?;
            if !skip(entry.id, entry.seq) {
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }

    /// Loads what an attempt needs: the callback, its body and the delivery.
    pub fn load(
        &self,
        id: CallbackId,
        seq: u32,
    ) -> Result<Option<(CallbackRecord, Bytes, Delivery)>, JournalError> {
        let Some(value) = self.tree.get(key(b'c', id, &[]))? else {
            return Ok(None);
        };
        let stored = CallbackRecord::decode_stored(&value)?;
        let delivery = match self.tree.get(key(b'd', id, &seq.to_be_bytes()))? {
            Some(delivery) => Delivery::decode(&delivery)?,
            None => match stored.initial_delivery(seq) {
                Some(delivery) => delivery,
                None => return Ok(None),
            },
        };
        Ok(Some((
            stored.record,
            Bytes::copy_from_slice(stored.body),
            delivery,
        )))
    }

    /// Removes a queue entry that no longer matches its delivery. Not
    /// flushed: should it come back after a crash, it is dropped again.
    pub fn drop_queue_entry(&self, entry_key: &[u8]) -> Result<(), JournalError> {
        self.tree.remove(entry_key)?;
        Ok(())
    }

    /// Records an attempt and the delivery's new state, moving its queue
    /// entry (`entry_key`; `None` for a delivery found by the scan for new
    /// callbacks) to the new due time, or removing it when the delivery is no
    /// longer pending.
    ///
    /// It does not wait for the disk: the next group commit, or sled's own
    /// flush at most 200 ms later, writes it out. An outcome lost in a crash
    /// only means that attempt is made again, which at-least-once delivery
    /// allows, while waiting would hold a destination's slot for a flush on
    /// every attempt.
    pub fn finish_attempt(
        &self,
        entry_key: Option<&[u8]>,
        id: CallbackId,
        delivery: &Delivery,
        attempt: &Attempt,
    ) -> Result<(), JournalError> {
        let seq = delivery.seq.to_be_bytes();
        let mut attempt_suffix = seq.to_vec();
        attempt_suffix.extend_from_slice(&attempt.number.to_be_bytes());

        // The order matters: see the module's notes.
        let pending = delivery.state == DeliveryState::Pending;
        let lane = lane_of(&delivery.url);
        let requeue = pending.then(|| queue_key(lane, delivery.next_attempt_ms, id, delivery.seq));
        let unchanged =
            matches!((&requeue, entry_key), (Some(next), Some(old)) if next[..] == *old);
        let mut writes = Writes::default();
        if let Some(next) = requeue.filter(|_| !unchanged) {
            writes.insert(next, []);
        }
        writes.insert(key(b'a', id, &attempt_suffix), attempt.encode());
        writes.insert(key(b'd', id, &seq), delivery.encode());
        if let Some(old) = entry_key.filter(|_| !unchanged) {
            writes.remove(old);
        }
        self.apply(writes)
    }

    /// Every destination lane with pending deliveries, with the URL of one
    /// of them (all deliveries of a lane share its URL but for hash clashes,
    /// which only share a concurrency limit).
    pub fn pending_lanes(&self) -> Result<Vec<(u64, String)>, JournalError> {
        let mut lanes = Vec::new();
        let mut start = vec![b'q'];
        loop {
            let Some((key, _)) = self.tree.range(&start[..]..&b"r"[..]).next().transpose()? else {
                break;
            };
            let entry = parse_queue_key(&key)?;
            let lane = u64::from_be_bytes(key[1..9].try_into().expect("queue keys are 37 bytes"));
            if let Some((_, _, delivery)) = self.load(entry.id, entry.seq)? {
                lanes.push((lane, delivery.url));
            }
            start = lane_end(lane).to_vec();
        }
        Ok(lanes)
    }

    /// Every delivery of a callback, in order.
    pub fn deliveries(&self, id: CallbackId) -> Result<Vec<Delivery>, JournalError> {
        let initial = match self.tree.get(key(b'c', id, &[]))? {
            Some(value) => CallbackRecord::decode_stored(&value)?.initial_deliveries(),
            None => Vec::new(),
        };
        self.deliveries_from(id, initial)
    }

    /// The deliveries a callback started with, each replaced by its own
    /// entry once it has one, and the deliveries added since (replays).
    pub(crate) fn deliveries_from(
        &self,
        id: CallbackId,
        initial: Vec<Delivery>,
    ) -> Result<Vec<Delivery>, JournalError> {
        let mut by_seq: std::collections::BTreeMap<u32, Delivery> =
            initial.into_iter().map(|d| (d.seq, d)).collect();
        for item in self.tree.scan_prefix(key(b'd', id, &[])) {
            let delivery = Delivery::decode(&item?.1)?;
            by_seq.insert(delivery.seq, delivery);
        }
        Ok(by_seq.into_values().collect())
    }

    /// Every attempt of one delivery, in order.
    pub fn attempts(&self, id: CallbackId, seq: u32) -> Result<Vec<Attempt>, JournalError> {
        self.tree
            .scan_prefix(key(b'a', id, &seq.to_be_bytes()))
            .map(|item| Attempt::decode(&item?.1))
            .collect()
    }

    /// Every callback id in the journal, oldest first.
    pub fn callback_ids(&self) -> impl Iterator<Item = Result<CallbackId, JournalError>> + '_ {
        self.tree.scan_prefix([b'c']).map(|item| {
            let (key, _) = item?;
            let bytes: [u8; 16] = key[1..]
                .try_into()
                .map_err(|_| JournalError::Corrupt("callback key has a bad length".into()))?;
            Ok(CallbackId(u128::from_be_bytes(bytes)))
        })
    }

    /// Flushes what is left and stops the committer thread.
    pub fn close(&self) {
        self.committer.close();
        let thread = self
            .committer_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        let _ = self.db.flush();
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

/// A destination's lane: a stable 64-bit FNV-1a hash of its URL.
pub fn lane_of(url: &str) -> u64 {
    lane_of_bytes(url.as_bytes())
}

/// [`lane_of`] for a URL as the journal stores it.
fn lane_of_bytes(url: &[u8]) -> u64 {
    url.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn open_error(path: &Path, source: sled::Error) -> JournalError {
    if source.to_string().contains("could not acquire lock") {
        JournalError::Locked {
            path: path.to_path_buf(),
        }
    } else {
        JournalError::Open {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The id of the newest callback in `tree`, if any.
fn newest_callback(tree: &sled::Tree) -> Result<Option<CallbackId>, sled::Error> {
    let Some((key, _)) = tree.scan_prefix([b'c']).next_back().transpose()? else {
        return Ok(None);
    };
    Ok(query::id_of_key(&key).ok())
}

fn key(kind: u8, id: CallbackId, suffix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(17 + suffix.len());
    key.push(kind);
    key.extend_from_slice(&id.to_bytes());
    key.extend_from_slice(suffix);
    key
}

fn queue_key(lane: u64, due_ms: u64, id: CallbackId, seq: u32) -> [u8; QUEUE_KEY_LEN] {
    let mut key = [0u8; QUEUE_KEY_LEN];
    key[0] = b'q';
    key[1..9].copy_from_slice(&lane.to_be_bytes());
    key[9..17].copy_from_slice(&due_ms.to_be_bytes());
    key[17..33].copy_from_slice(&id.to_bytes());
    key[33..37].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The first key after every queue key of `lane`.
fn lane_end(lane: u64) -> [u8; 9] {
    let mut end = [0u8; 9];
    match lane.checked_add(1) {
        Some(next) => {
            end[0] = b'q';
            end[1..].copy_from_slice(&next.to_be_bytes());
        }
        // The last lane ends where the next kind of key begins.
        None => end[0] = b'r',
    }
    end
}

fn parse_queue_key(key: &[u8]) -> Result<QueueEntry, JournalError> {
    if key.len() != QUEUE_KEY_LEN {
        return Err(JournalError::Corrupt(format!(
            "queue key of {} bytes",
            key.len()
        )));
    }
    let num = |range: std::ops::Range<usize>| -> u128 {
        key[range]
            .iter()
            .fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
    };
    Ok(QueueEntry {
        key: key.to_vec(),
        due_ms: num(9..17) as u64,
        id: CallbackId(num(17..33)),
        seq: num(33..37) as u32,
    })
}

fn task_key(task: &str, id: CallbackId) -> Vec<u8> {
    let mut key = task_prefix(task);
    key.extend_from_slice(&id.to_bytes());
    key
}

/// The start of every task index key of `task`.
fn task_prefix(task: &str) -> Vec<u8> {
    // Task ids are capped so the length fits; longer ones are not indexed.
    let task = &task.as_bytes()[..task.len().min(u16::MAX as usize)];
    let mut key = Vec::with_capacity(3 + task.len() + 16);
    key.push(b't');
    key.extend_from_slice(&(task.len() as u16).to_be_bytes());
    key.extend_from_slice(task);
    key
}
