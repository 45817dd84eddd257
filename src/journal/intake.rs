//! New callbacks, found without an index written on the ack path.
//!
//! An ack writes one entry: the callback, with the destinations its
//! deliveries start with. Nothing else is written for it until an attempt
//! changes a delivery. Two things that used to be written with it are now
//! found from the callbacks themselves, in id order:
//!
//! - **Deliveries never attempted.** A delivery with no `d` entry of its own
//!   has never been attempted. Each lane scans the callbacks in id order for
//!   such deliveries to its destination, up to the *horizon*.
//! - **The task index.** `t` entries are written by [`Journal::index_tasks`]
//!   when a query needs them, for every callback not indexed yet.
//!
//! # The horizon
//!
//! Ids are handed out in increasing order, but callbacks are written by many
//! requests at once, so one with a smaller id may land after one with a
//! larger id. A scan that had passed it would miss it. So every id handed
//! out for a callback is held (a [`Reservation`]) until its write is done,
//! and scans stop at the horizon: the oldest id still held, or past the
//! newest one handed out when none is. Below the horizon, every callback
//! that will ever be written under this process's ids is written.
//!
//! # Marks kept across restarts
//!
//! `m` entries hold how far each scan got: `mintake` is the id from which a
//! restart scans for deliveries never attempted, `mtasks` the id from which
//! the task index is incomplete. Both are written without waiting for a
//! flush: a mark lost in a crash is an older one, and scanning again from it
//! finds only deliveries that now have entries (skipped) and task keys that
//! already exist (written again, unchanged). A mark is never ahead of what
//! it covers: it only moves past callbacks whose entries are written first.

use std::collections::BTreeSet;
use std::sync::MutexGuard;

use bytes::Bytes;

use super::query::id_of_key;
use super::{CallbackId, CallbackRecord, Delivery, Journal, JournalError};
use super::{key, lane_of, lane_of_bytes, queue_key, task_key};

/// Where a restart scans for deliveries never attempted from.
const INTAKE_MARK: &[u8] = b"mintake";
/// Where the task index stops being complete.
const TASKS_MARK: &[u8] = b"mtasks";

/// Ids handed out, and which of them are still being written.
pub(super) struct Intake {
    ids: ulid::Generator,
    /// The newest id handed out; every new one is greater, even should the
    /// clock go back across a restart.
    last: u128,
    /// Ids of callbacks whose write has not finished.
    writing: BTreeSet<u128>,
}

impl Intake {
    /// Hands out ids greater than `floor`.
    pub(super) fn new(floor: u128) -> Intake {
        Intake {
            ids: ulid::Generator::new(),
            last: floor,
            writing: BTreeSet::new(),
        }
    }

    pub(super) fn next(&mut self) -> CallbackId {
        // The generator only fails when 2^80 ids are made in one millisecond.
        let made = self.ids.generate().map_or(0, |id| id.0);
        self.last = made.max(self.last.saturating_add(1));
        CallbackId(self.last)
    }

    fn horizon(&self) -> CallbackId {
        CallbackId(
            self.writing
                .first()
                .copied()
                .unwrap_or(self.last.saturating_add(1)),
        )
    }
}

/// An id held for a callback being written: scans of new callbacks stop
/// short of it until it is dropped. Drop it once the write is done, or has
/// failed.
pub struct Reservation<'a> {
    journal: &'a Journal,
    id: CallbackId,
}

impl Reservation<'_> {
    pub fn id(&self) -> CallbackId {
        self.id
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.journal.intake().writing.remove(&self.id.0);
    }
}

/// A delivery never attempted, with what its first attempt needs.
#[derive(Debug)]
pub struct Fresh {
    pub record: CallbackRecord,
    pub body: Bytes,
    pub delivery: Delivery,
}

/// What a scan for deliveries never attempted got to.
#[derive(Debug)]
pub enum Scanned {
    /// The next such delivery.
    Found(Box<Fresh>),
    /// None before this delivery (an id and seq): the horizon, or where the
    /// budget ran out.
    Upto((CallbackId, u32)),
}

impl Journal {
    pub(super) fn intake(&self) -> MutexGuard<'_, Intake> {
        // A panic while holding this lock leaves plain data behind: still usable.
        self.intake.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new callback id, held until the returned reservation is dropped.
    pub fn reserve_id(&self) -> Reservation<'_> {
        let mut intake = self.intake();
        let id = intake.next();
        intake.writing.insert(id.0);
        Reservation { journal: self, id }
    }

    /// Every callback with an id below this one is written, or never will be.
    pub fn horizon(&self) -> CallbackId {
        self.intake().horizon()
    }

    /// The first delivery to `lane` that was never attempted, from delivery
    /// `from` (an id and seq) on and below `horizon`, reading at most
    /// `budget` callbacks (each one read is taken off it).
    pub fn next_fresh(
        &self,
        lane: u64,
        from: (CallbackId, u32),
        horizon: CallbackId,
        budget: &mut usize,
    ) -> Result<Scanned, JournalError> {
        for item in self.callbacks_between(from.0, horizon) {
            let (id, value) = item?;
            let first = if id == from.0 { from.1 } else { 0 };
            if *budget == 0 {
                return Ok(Scanned::Upto((id, first)));
            }
            *budget -= 1;
            let ours = |url: &[u8]| lane_of_bytes(url) == lane;
            let Some(seq) = self
                .never_attempted(id, &value, ours)?
                .into_iter()
                .find(|seq| *seq >= first)
            else {
                continue;
            };
            let stored = CallbackRecord::decode_stored(&value)?;
            if let Some(delivery) = stored.initial_delivery(seq) {
                return Ok(Scanned::Found(Box::new(Fresh {
                    body: Bytes::copy_from_slice(stored.body),
                    record: stored.record,
                    delivery,
                })));
            }
        }
        Ok(Scanned::Upto((horizon, 0)))
    }

    /// Queues every delivery never attempted, from `from` on, whose lane is
    /// not one of `scanned`: no lane will scan for it, so it joins its
    /// destination's queue, due when it was received. Returns how many.
    pub fn queue_unscanned(
        &self,
        from: CallbackId,
        scanned: &[u64],
    ) -> Result<usize, JournalError> {
        let horizon = self.horizon();
        let mut queued = 0;
        for item in self.callbacks_between(from, horizon) {
            let (id, value) = item?;
            let unscanned = |url: &[u8]| !scanned.contains(&lane_of_bytes(url));
            let seqs = self.never_attempted(id, &value, unscanned)?;
            if seqs.is_empty() {
                continue;
            }
            let stored = CallbackRecord::decode_stored(&value)?;
            for seq in seqs {
                if let Some(delivery) = stored.initial_delivery(seq) {
                    let lane = lane_of(&delivery.url);
                    let due = delivery.next_attempt_ms;
                    self.tree.insert(queue_key(lane, due, id, seq), &[])?;
                    queued += 1;
                }
            }
        }
        Ok(queued)
    }

    /// The callbacks with ids from `from` up to `horizon`, in id order, with
    /// their stored values.
    fn callbacks_between(
        &self,
        from: CallbackId,
        horizon: CallbackId,
    ) -> impl Iterator<Item = Result<(CallbackId, sled::IVec), JournalError>> + '_ {
        let range = key(b'c', from, &[])..key(b'c', horizon, &[]);
        self.tree.range(range).map(|item| {
            let (key, value) = item?;
            Ok((id_of_key(&key)?, value))
        })
    }

    /// The seqs of callback `id`'s first deliveries (`value` is its stored
    /// entry) whose URL `wanted` picks and that were never attempted: they
    /// have no entry of their own. Reads only the URLs of the stored entry.
    fn never_attempted(
        &self,
        id: CallbackId,
        value: &[u8],
        wanted: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<u32>, JournalError> {
        let mut seqs = Vec::new();
        let urls = CallbackRecord::stored_destinations(value)?;
        for (seq, url) in urls.into_iter().enumerate() {
            let seq = u32::try_from(seq).expect("a route has far fewer than 2^32 destinations");
            if wanted(url) && !self.tree.contains_key(key(b'd', id, &seq.to_be_bytes()))? {
                seqs.push(seq);
            }
        }
        Ok(seqs)
    }

    /// The id from which a restart scans for deliveries never attempted.
    pub fn intake_mark(&self) -> Result<CallbackId, JournalError> {
        Ok(self.mark(INTAKE_MARK)?.unwrap_or(CallbackId(0)))
    }

    /// Moves the intake mark to `id`: every delivery never attempted below
    /// it has an entry of its own now, or a queue entry. Not flushed.
    pub fn set_intake_mark(&self, id: CallbackId) -> Result<(), JournalError> {
        self.tree.insert(INTAKE_MARK, &id.to_bytes())?;
        Ok(())
    }

    /// Brings the task index up to the horizon: writes the `t` entry of
    /// every callback with a task id that has none yet.
    pub fn index_tasks(&self) -> Result<(), JournalError> {
        let _one_at_a_time = self.task_indexing.lock().unwrap_or_else(|p| p.into_inner());
        let from = self.mark(TASKS_MARK)?.unwrap_or(CallbackId(0));
        let horizon = self.horizon();
        if from >= horizon {
            return Ok(());
        }
        for item in self.callbacks_between(from, horizon) {
            let (id, value) = item?;
            if let Some(task) = CallbackRecord::decode(&value)?.task_id {
                self.tree.insert(task_key(&task, id), &[])?;
            }
        }
        self.tree.insert(TASKS_MARK, &horizon.to_bytes())?;
        Ok(())
    }

    /// Sets both marks for a journal that has none: a new one starts at the
    /// beginning; one written before the marks existed queued every delivery
    /// and indexed every task at ingest, so its marks start past its newest
    /// callback.
    pub(super) fn init_marks(&self, newest: Option<CallbackId>) -> Result<(), JournalError> {
        let start = newest.map_or(CallbackId(0), |id| CallbackId(id.0.saturating_add(1)));
        for mark in [INTAKE_MARK, TASKS_MARK] {
            if self.mark(mark)?.is_none() {
                self.tree.insert(mark, &start.to_bytes())?;
            }
        }
        Ok(())
    }

    /// The greatest id any mark names, or `None` without marks.
    pub(super) fn marks_max(&self) -> Result<Option<CallbackId>, JournalError> {
        Ok(self.mark(INTAKE_MARK)?.max(self.mark(TASKS_MARK)?))
    }

    fn mark(&self, name: &[u8]) -> Result<Option<CallbackId>, JournalError> {
        let Some(value) = self.tree.get(name)? else {
            return Ok(None);
        };
        let bytes: [u8; 16] = value[..].try_into().map_err(|_| {
            JournalError::Corrupt(format!(
                "mark {} has a bad length",
                String::from_utf8_lossy(name)
            ))
        })?;
        Ok(Some(CallbackId(u128::from_be_bytes(bytes))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Attempt, DeliveryState, RejectedLimits};

    const FIRST: &str = "http://127.0.0.1:3000/hooks/wav";
    const SECOND: &str = "http://127.0.0.1:3001/hooks/wav";

    fn record(id: CallbackId, task: Option<&str>) -> CallbackRecord {
        CallbackRecord {
            id,
            route: "wav".into(),
            received_at_ms: 1_700_000_000_000,
            method: "POST".into(),
            path_and_query: "/callbacks/wav".into(),
            headers: vec![("content-type".into(), b"application/json".to_vec())],
            peer: "127.0.0.1:50000".into(),
            tls: false,
            task_id: task.map(str::to_owned),
        }
    }

    /// Journals one callback to both destinations, as ingest does.
    async fn accept(journal: &Journal, task: Option<&str>) -> CallbackId {
        let reservation = journal.reserve_id();
        let record = record(reservation.id(), task);
        journal
            .append(&reservation, &record, b"{}", &[FIRST, SECOND])
            .await
            .expect("append");
        record.id
    }

    /// The next delivery to `lane` never attempted, scanning without a
    /// budget: a scan that finds none gets to the horizon.
    fn fresh(
        journal: &Journal,
        lane: u64,
        from: (CallbackId, u32),
        horizon: CallbackId,
    ) -> Option<Box<Fresh>> {
        let mut unbounded = usize::MAX;
        match journal
            .next_fresh(lane, from, horizon, &mut unbounded)
            .unwrap()
        {
            Scanned::Found(found) => Some(found),
            Scanned::Upto(at) => {
                assert_eq!(at, (horizon, 0), "an unbounded scan gets to the horizon");
                None
            }
        }
    }

    fn open(dir: &std::path::Path) -> Journal {
        Journal::open_for_test(dir, RejectedLimits::default())
    }

    #[test]
    fn the_horizon_waits_for_every_reserved_id() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path());
        let older = journal.reserve_id();
        let newer = journal.reserve_id();
        assert!(older.id() < newer.id());
        assert_eq!(journal.horizon(), older.id());
        let newer_id = newer.id();
        drop(newer);
        assert_eq!(journal.horizon(), older.id(), "the older write is not done");
        drop(older);
        assert!(journal.horizon() > newer_id);
    }

    #[test]
    fn ids_sort_after_the_marks_even_when_the_clock_is_behind() {
        // A mark an hour ahead of the clock, as after a clock set back across a restart.
        let dir = tempfile::tempdir().unwrap();
        let ahead = CallbackId(u128::from(crate::ingest::now_ms() + 3_600_000) << 80);
        {
            let journal = open(dir.path());
            journal.set_intake_mark(ahead).unwrap();
        }
        let journal = open(dir.path());
        assert!(journal.next_id() > ahead);
        assert!(journal.reserve_id().id() > ahead);
    }

    #[tokio::test]
    async fn a_scan_stops_where_its_budget_runs_out_and_goes_on_from_there() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path());
        let one = accept(&journal, None).await;
        let two = accept(&journal, None).await;
        let horizon = journal.horizon();
        let elsewhere = lane_of("http://127.0.0.1:3002/hooks/wav");

        // A lane with no delivery reads one callback and stops before the next.
        let mut budget = 1;
        let scanned = journal.next_fresh(elsewhere, (one, 0), horizon, &mut budget);
        assert!(matches!(scanned, Ok(Scanned::Upto(at)) if at == (two, 0)));
        assert_eq!(budget, 0);
        // With nothing left, it stays where it was, seq included.
        let scanned = journal.next_fresh(lane_of(SECOND), (one, 1), horizon, &mut budget);
        assert!(matches!(scanned, Ok(Scanned::Upto(at)) if at == (one, 1)));
        // Going on from there gets to the horizon.
        let mut budget = 1;
        let scanned = journal.next_fresh(elsewhere, (two, 0), horizon, &mut budget);
        assert!(matches!(scanned, Ok(Scanned::Upto(at)) if at == (horizon, 0)));
        // A find within the budget is returned, and costs what it read.
        let mut budget = 5;
        let scanned = journal.next_fresh(lane_of(SECOND), (one, 0), horizon, &mut budget);
        assert!(
            matches!(scanned, Ok(Scanned::Found(f)) if (f.record.id, f.delivery.seq) == (one, 1))
        );
        assert_eq!(budget, 4);
    }

    #[tokio::test]
    async fn each_lane_finds_its_deliveries_until_an_attempt_changes_them() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path());
        let one = accept(&journal, None).await;
        let two = accept(&journal, None).await;
        let horizon = journal.horizon();
        let start = (CallbackId(0), 0);

        let first = fresh(&journal, lane_of(FIRST), start, horizon);
        let first = first.expect("a delivery to the first destination");
        assert_eq!((first.record.id, first.delivery.seq), (one, 0));
        assert_eq!(&first.body[..], b"{}");
        let second = fresh(&journal, lane_of(SECOND), start, horizon);
        assert_eq!(
            second.map(|f| (f.record.id, f.delivery.seq)),
            Some((one, 1))
        );

        // Scanning on from just after it finds the next callback's.
        let next = fresh(&journal, lane_of(FIRST), (one, 1), horizon);
        assert_eq!(next.map(|f| f.record.id), Some(two));
        // Nothing at or past the horizon.
        assert!(fresh(&journal, lane_of(FIRST), (one, 1), two).is_none());

        // Once an attempt is journaled, the delivery is no longer new.
        let mut delivery = first.delivery;
        delivery.state = DeliveryState::Delivered;
        delivery.attempts = 1;
        let attempt = Attempt {
            number: 1,
            started_ms: 1_700_000_000_100,
            latency_us: 900,
            status: Some(200),
            error: None,
        };
        journal
            .finish_attempt(None, one, &delivery, &attempt)
            .unwrap();
        let found = fresh(&journal, lane_of(FIRST), start, horizon);
        assert_eq!(found.map(|f| f.record.id), Some(two));
        assert!(
            journal.pending_lanes().unwrap().is_empty(),
            "a delivered one is not queued"
        );
    }

    #[tokio::test]
    async fn deliveries_no_lane_scans_for_join_their_queue_once() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open(dir.path());
        let id = accept(&journal, None).await;
        let queued = journal
            .queue_unscanned(CallbackId(0), &[lane_of(FIRST)])
            .unwrap();
        assert_eq!(queued, 1, "only the second destination's delivery");
        let lanes = journal.pending_lanes().unwrap();
        assert_eq!(lanes, vec![(lane_of(SECOND), SECOND.to_string())]);
        let entry = journal
            .next_due(lane_of(SECOND), None, |_, _| false)
            .unwrap();
        let entry = entry.expect("a queue entry");
        assert_eq!((entry.id, entry.seq), (id, 1));
        // Its due time is the delivery's, so a lane does not drop it as stale.
        let (_, _, delivery) = journal.load(id, 1).unwrap().unwrap();
        assert_eq!(entry.due_ms, delivery.next_attempt_ms);
    }

    #[tokio::test]
    async fn the_task_index_catches_up_when_read_and_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let one = {
            let journal = open(dir.path());
            let one = accept(&journal, Some("task-a")).await;
            accept(&journal, Some("task-b")).await;
            let found: Vec<_> = journal.task("task-a").unwrap();
            assert_eq!(found.iter().map(|s| s.record.id).collect::<Vec<_>>(), [one]);
            one
        };
        let journal = open(dir.path());
        let two = accept(&journal, Some("task-a")).await;
        let found = journal.task("task-a").unwrap();
        assert_eq!(
            found.iter().map(|s| s.record.id).collect::<Vec<_>>(),
            [one, two]
        );
    }

    #[test]
    fn a_journal_written_before_the_marks_is_not_scanned_again() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let journal = open(dir.path());
            let id = journal.next_id();
            // As the older format wrote it, without marks.
            journal
                .tree
                .insert(
                    key(b'c', id, &[]),
                    record(id, None).encode_stored(b"{}", &[FIRST]),
                )
                .unwrap();
            journal.tree.remove(INTAKE_MARK).unwrap();
            journal.tree.remove(TASKS_MARK).unwrap();
            id
        };
        let journal = open(dir.path());
        assert!(journal.intake_mark().unwrap() > id);
        assert!(journal.next_id() > id);
    }
}
