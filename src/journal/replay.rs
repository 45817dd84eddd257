//! What replays and imports write: new deliveries queued for a callback
//! that is already journaled, one-off sends to a target given at replay
//! time, and callbacks imported from an export.
//!
//! A one-off send is not a delivery: it is made once, outside the retry
//! pipeline, to a URL that is no destination of the route, so it is kept
//! under its own key (`s` id number) and never changes a callback's state.

use std::sync::Mutex;

use super::codec::{Decoder, Encoder};
use super::{CallbackId, CallbackRecord, Delivery, DeliveryState, Journal, JournalError};
use super::{Writes, key, lane_of, queue_key, task_key};

/// One send of a callback to a target given at replay time.
#[derive(Clone, Debug, PartialEq)]
pub struct SentReplay {
    /// Numbered from 1 within its callback.
    pub number: u32,
    pub url: String,
    /// When it started, ms since the epoch.
    pub started_ms: u64,
    /// How long it took, in microseconds.
    pub latency_us: u64,
    /// The target's status, when it answered.
    pub status: Option<u16>,
    /// Why it failed without a status.
    pub error: Option<String>,
    /// Whether headers or the body were changed for this send.
    pub modified: bool,
}

const SENT_V1: u8 = 1;

impl SentReplay {
    fn encode(&self) -> Vec<u8> {
        let mut enc = Encoder::with_version(SENT_V1);
        enc.u32(self.number)
            .str(&self.url)
            .u64(self.started_ms)
            .u64(self.latency_us)
            .u16(self.status.unwrap_or(0))
            .opt_str(self.error.as_deref())
            .u8(u8::from(self.modified));
        enc.finish()
    }

    fn decode(bytes: &[u8]) -> Result<SentReplay, JournalError> {
        let mut dec = Decoder::new(bytes, SENT_V1, "sent replay")?;
        Ok(SentReplay {
            number: dec.u32()?,
            url: dec.string()?,
            started_ms: dec.u64()?,
            latency_us: dec.u64()?,
            status: Some(dec.u16()?).filter(|s| *s != 0),
            error: dec.opt_string()?,
            modified: dec.u8()? != 0,
        })
    }
}

/// Serializes the read-then-write of new sequence numbers, so two replays
/// of one callback at once never pick the same `seq`.
static NUMBERING: Mutex<()> = Mutex::new(());

impl Journal {
    /// Queues a new delivery of callback `id` to each of `urls`, due at
    /// `now_ms`, marked as a replay; returns them once they are on disk.
    pub async fn queue_replay(
        &self,
        id: CallbackId,
        urls: &[String],
        now_ms: u64,
    ) -> Result<Vec<Delivery>, JournalError> {
        let queued = {
            let _numbering = NUMBERING.lock().unwrap_or_else(|p| p.into_inner());
            let first = self.deliveries(id)?.last().map_or(0, |d| d.seq + 1);
            let mut writes = Writes::default();
            let mut queued = Vec::with_capacity(urls.len());
            for (offset, url) in urls.iter().enumerate() {
                let offset = u32::try_from(offset).expect("a route has far fewer than 2^32 urls");
                let delivery = replay_delivery(first + offset, url, now_ms);
                add_delivery(&mut writes, id, &delivery);
                queued.push(delivery);
            }
            self.apply(writes)?;
            queued
        };
        self.durable().await?;
        Ok(queued)
    }

    /// Records a one-off send of callback `id`, numbering it; returns it
    /// once it is on disk.
    pub async fn record_sent(
        &self,
        id: CallbackId,
        mut sent: SentReplay,
    ) -> Result<SentReplay, JournalError> {
        {
            let _numbering = NUMBERING.lock().unwrap_or_else(|p| p.into_inner());
            let count = self.tree.scan_prefix(key(b's', id, &[])).count();
            sent.number = u32::try_from(count + 1).unwrap_or(u32::MAX);
            self.tree
                .insert(key(b's', id, &sent.number.to_be_bytes()), sent.encode())?;
        }
        self.durable().await?;
        Ok(sent)
    }

    /// Every one-off send of a callback, in order.
    pub fn sent_replays(&self, id: CallbackId) -> Result<Vec<SentReplay>, JournalError> {
        self.tree
            .scan_prefix(key(b's', id, &[]))
            .map(|item| SentReplay::decode(&item?.1))
            .collect()
    }

    /// Adds a callback taken from another journal, keeping its id, with a
    /// replay delivery to each of `urls` (none: it is only kept). Returns
    /// false, writing nothing, when the journal already has that id. The
    /// write is not yet durable: call [`Journal::durable`] after a batch.
    pub fn import(
        &self,
        record: &CallbackRecord,
        body: &[u8],
        urls: &[String],
        now_ms: u64,
    ) -> Result<bool, JournalError> {
        if self.tree.contains_key(key(b'c', record.id, &[]))? {
            return Ok(false);
        }
        let mut writes = Writes::default();
        // Deliveries an import queues are replays, each with its own entry.
        writes.insert(key(b'c', record.id, &[]), record.encode_stored(body, &[]));
        if let Some(task) = &record.task_id {
            writes.insert(task_key(task, record.id), []);
        }
        for (seq, url) in urls.iter().enumerate() {
            let seq = u32::try_from(seq).expect("a route has far fewer than 2^32 destinations");
            add_delivery(&mut writes, record.id, &replay_delivery(seq, url, now_ms));
        }
        self.apply(writes)?;
        Ok(true)
    }
}

fn replay_delivery(seq: u32, url: &str, now_ms: u64) -> Delivery {
    Delivery {
        seq,
        url: url.to_string(),
        state: DeliveryState::Pending,
        attempts: 0,
        next_attempt_ms: now_ms,
        last_status: None,
        last_error: None,
        replay: true,
    }
}

/// Adds a pending delivery and its place in its destination's queue.
fn add_delivery(writes: &mut Writes, id: CallbackId, delivery: &Delivery) {
    let seq = delivery.seq.to_be_bytes();
    writes.insert(key(b'd', id, &seq), delivery.encode());
    let lane = lane_of(&delivery.url);
    writes.insert(
        queue_key(lane, delivery.next_attempt_ms, id, delivery.seq),
        [],
    );
}
