//! What the journal stores: callbacks, their deliveries, and attempts.

use std::fmt;
use std::str::FromStr;

use super::JournalError;
use super::codec::{Decoder, Encoder};

/// A callback's id: a ULID, so ids sort by the time they were received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallbackId(pub u128);

impl CallbackId {
    /// The id as 16 big-endian bytes, the form used in journal keys.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// Milliseconds since the Unix epoch at which the id was made.
    pub fn timestamp_ms(self) -> u64 {
        ulid::Ulid(self.0).timestamp_ms()
    }

    /// The id's random part, used to spread retry jitter across callbacks.
    pub fn random_bits(self) -> u64 {
        self.0 as u64
    }
}

impl fmt::Display for CallbackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&ulid::Ulid(self.0), f)
    }
}

impl FromStr for CallbackId {
    type Err = ulid::DecodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ulid::Ulid::from_string(s).map(|u| CallbackId(u.0))
    }
}

/// One received callback, as it was received.
#[derive(Clone, Debug, PartialEq)]
pub struct CallbackRecord {
    pub id: CallbackId,
    /// Name of the route that accepted it.
    pub route: String,
    /// Milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    pub method: String,
    /// Path with the query string, if any.
    pub path_and_query: String,
    /// Every header as received, in order; values need not be UTF-8.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The caller's address, `ip:port`.
    pub peer: String,
    /// Whether it came over TLS (forwarded as `x-forwarded-proto`).
    pub tls: bool,
    /// The task id found at the route's first matching JSON pointer.
    pub task_id: Option<String>,
}

const CALLBACK_V1: u8 = 1;

impl CallbackRecord {
    fn encode_fields(&self, enc: &mut Encoder) {
        enc.bytes(&self.id.to_bytes())
            .str(&self.route)
            .u64(self.received_at_ms)
            .str(&self.method)
            .str(&self.path_and_query)
            .str(&self.peer)
            .u8(u8::from(self.tls))
            .opt_str(self.task_id.as_deref())
            .u32(u32::try_from(self.headers.len()).expect("header count is bounded by hyper"));
        for (name, value) in &self.headers {
            enc.str(name).bytes(value);
        }
    }

    /// The record as the journal stores it at ingest: the record, its body,
    /// and the URL of each delivery it starts with. One write for all of it,
    /// and one read when an attempt needs them; a delivery gets an entry of
    /// its own only once an attempt changes it.
    pub(crate) fn encode_stored(&self, body: &[u8], destinations: &[&str]) -> Vec<u8> {
        let mut enc = Encoder::with_version(CALLBACK_V1);
        self.encode_fields(&mut enc);
        enc.bytes(body).u32(
            u32::try_from(destinations.len())
                .expect("a route has far fewer than 2^32 destinations"),
        );
        for url in destinations {
            enc.str(url);
        }
        enc.finish()
    }

    /// Reads what [`CallbackRecord::encode_stored`] wrote.
    pub(crate) fn decode_stored(bytes: &[u8]) -> Result<Stored<'_>, JournalError> {
        let mut dec = Decoder::new(bytes, CALLBACK_V1, "callback record")?;
        let record = CallbackRecord::decode_fields(&mut dec)?;
        let body = dec.bytes()?;
        let mut destinations = Vec::new();
        for _ in 0..dec.u32()? {
            destinations.push(dec.string()?);
        }
        Ok(Stored {
            record,
            body,
            destinations,
        })
    }

    /// The destination URLs of what [`CallbackRecord::encode_stored`] wrote,
    /// read without building the record: a lane looking for its deliveries
    /// reads every new callback, and most need no more than this.
    pub(crate) fn stored_destinations(bytes: &[u8]) -> Result<Vec<&[u8]>, JournalError> {
        let mut dec = Decoder::new(bytes, CALLBACK_V1, "callback record")?;
        // The fields encode_fields writes, in its order, skipped.
        dec.bytes()?; // id
        dec.bytes()?; // route
        dec.u64()?; // received at
        for _ in 0..3 {
            dec.bytes()?; // method, path and query, peer
        }
        dec.u8()?; // tls
        if dec.u8()? != 0 {
            dec.bytes()?; // task id
        }
        for _ in 0..dec.u32()? {
            dec.bytes()?; // header name
            dec.bytes()?; // header value
        }
        dec.bytes()?; // body
        (0..dec.u32()?).map(|_| dec.bytes()).collect()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<CallbackRecord, JournalError> {
        let mut dec = Decoder::new(bytes, CALLBACK_V1, "callback record")?;
        CallbackRecord::decode_fields(&mut dec)
    }

    fn decode_fields(dec: &mut Decoder<'_>) -> Result<CallbackRecord, JournalError> {
        let id_bytes: [u8; 16] = dec
            .bytes()?
            .try_into()
            .map_err(|_| JournalError::Corrupt("callback record: bad id".into()))?;
        let mut record = CallbackRecord {
            id: CallbackId(u128::from_be_bytes(id_bytes)),
            route: dec.string()?,
            received_at_ms: dec.u64()?,
            method: dec.string()?,
            path_and_query: dec.string()?,
            peer: dec.string()?,
            tls: dec.u8()? != 0,
            task_id: dec.opt_string()?,
            headers: Vec::new(),
        };
        let count = dec.u32()?;
        for _ in 0..count {
            record.headers.push((dec.string()?, dec.bytes()?.to_vec()));
        }
        Ok(record)
    }
}

/// A callback as stored: the record, its body and the destinations its
/// deliveries started with.
pub(crate) struct Stored<'a> {
    pub(crate) record: CallbackRecord,
    pub(crate) body: &'a [u8],
    pub(crate) destinations: Vec<String>,
}

impl Stored<'_> {
    /// The deliveries as they stood when the callback was accepted: pending,
    /// due at once, no attempt yet.
    pub(crate) fn initial_deliveries(&self) -> Vec<Delivery> {
        (0..self.destinations.len())
            .filter_map(|seq| self.initial_delivery(u32::try_from(seq).ok()?))
            .collect()
    }

    /// Delivery `seq` as it stood when the callback was accepted, if the
    /// callback started with one.
    pub(crate) fn initial_delivery(&self, seq: u32) -> Option<Delivery> {
        let url = self.destinations.get(usize::try_from(seq).ok()?)?;
        Some(Delivery {
            seq,
            url: url.clone(),
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_ms: self.record.received_at_ms,
            last_status: None,
            last_error: None,
            replay: false,
        })
    }
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// A destination answered 2xx.
    Delivered,
    /// Given up: a non-retryable answer, or attempts exhausted.
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    fn code(self) -> u8 {
        match self {
            DeliveryState::Pending => 0,
            DeliveryState::Delivered => 1,
            DeliveryState::Dead => 2,
        }
    }

    fn from_code(code: u8) -> Result<DeliveryState, JournalError> {
        match code {
            0 => Ok(DeliveryState::Pending),
            1 => Ok(DeliveryState::Delivered),
            2 => Ok(DeliveryState::Dead),
            other => Err(JournalError::Corrupt(format!(
                "delivery: unknown state {other}"
            ))),
        }
    }
}

/// One callback's journey to one destination.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// Number of this delivery within its callback, from 0.
    pub seq: u32,
    pub url: String,
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (ms since the epoch); meaningful while pending.
    pub next_attempt_ms: u64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// Queued by a replay rather than at ingest.
    pub replay: bool,
}

const DELIVERY_V1: u8 = 1;

impl Delivery {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut enc = Encoder::with_version(DELIVERY_V1);
        enc.u32(self.seq)
            .str(&self.url)
            .u8(self.state.code())
            .u32(self.attempts)
            .u64(self.next_attempt_ms)
            .u16(self.last_status.unwrap_or(0))
            .opt_str(self.last_error.as_deref())
            .u8(u8::from(self.replay));
        enc.finish()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Delivery, JournalError> {
        let mut dec = Decoder::new(bytes, DELIVERY_V1, "delivery")?;
        Ok(Delivery {
            seq: dec.u32()?,
            url: dec.string()?,
            state: DeliveryState::from_code(dec.u8()?)?,
            attempts: dec.u32()?,
            next_attempt_ms: dec.u64()?,
            last_status: Some(dec.u16()?).filter(|s| *s != 0),
            last_error: dec.opt_string()?,
            replay: dec.u8()? != 0,
        })
    }
}

/// The outcome of one attempt, kept for inspection.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    /// Numbered from 1.
    pub number: u32,
    /// When it started, ms since the epoch.
    pub started_ms: u64,
    /// How long it took, in microseconds.
    pub latency_us: u64,
    /// The destination's status, when it answered.
    pub status: Option<u16>,
    /// Why it failed without a status (connect error, timeout, ...).
    pub error: Option<String>,
}

const ATTEMPT_V1: u8 = 1;

impl Attempt {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut enc = Encoder::with_version(ATTEMPT_V1);
        enc.u32(self.number)
            .u64(self.started_ms)
            .u64(self.latency_us)
            .u16(self.status.unwrap_or(0))
            .opt_str(self.error.as_deref());
        enc.finish()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Attempt, JournalError> {
        let mut dec = Decoder::new(bytes, ATTEMPT_V1, "attempt")?;
        Ok(Attempt {
            number: dec.u32()?,
            started_ms: dec.u64()?,
            latency_us: dec.u64()?,
            status: Some(dec.u16()?).filter(|s| *s != 0),
            error: dec.opt_string()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> CallbackRecord {
        CallbackRecord {
            id: CallbackId(42),
            route: "wav".into(),
            received_at_ms: 1_700_000_000_000,
            method: "POST".into(),
            path_and_query: "/callbacks/wav?x=1".into(),
            headers: vec![("content-type".into(), b"application/json".to_vec())],
            peer: "127.0.0.1:5000".into(),
            tls: true,
            task_id: Some("988e1f7a2b3c4d5e6f708192a3b4c8d3".into()),
        }
    }

    #[test]
    fn a_stored_record_reads_back_with_its_body_and_deliveries() {
        let urls = ["http://127.0.0.1:3000/a", "https://b.internal/hooks"];
        for body in [&b""[..], b"{\"code\":200}", b"\xff\x00\xfe not text"] {
            let value = record().encode_stored(body, &urls);
            let stored = CallbackRecord::decode_stored(&value).unwrap();
            assert_eq!(stored.record, record());
            assert_eq!(stored.body, body);
            assert_eq!(stored.destinations, urls);
            let initial = stored.initial_deliveries();
            assert_eq!(initial.len(), 2);
            assert_eq!(initial[1].seq, 1);
            assert_eq!(initial[1].url, urls[1]);
            assert_eq!(initial[1].state, DeliveryState::Pending);
            assert_eq!(initial[1].next_attempt_ms, record().received_at_ms);
            assert!(stored.initial_delivery(2).is_none());
            assert_eq!(CallbackRecord::decode(&value).unwrap(), record());
        }
    }

    #[test]
    fn destination_urls_read_alone_match_the_whole_read() {
        let urls = ["http://127.0.0.1:3000/a", "https://b.internal/hooks"];
        let without_task = CallbackRecord {
            task_id: None,
            headers: Vec::new(),
            ..record()
        };
        for rec in [record(), without_task] {
            for body in [&b""[..], b"{\"code\":200}"] {
                let value = rec.encode_stored(body, &urls);
                let read = CallbackRecord::stored_destinations(&value).unwrap();
                assert_eq!(read, urls.map(str::as_bytes));
            }
        }
        let none = record().encode_stored(b"{}", &[]);
        assert!(
            CallbackRecord::stored_destinations(&none)
                .unwrap()
                .is_empty()
        );
        let value = record().encode_stored(b"{}", &urls);
        assert!(matches!(
            CallbackRecord::stored_destinations(&value[..value.len() - 3]),
            Err(JournalError::Corrupt(_))
        ));
    }

    #[test]
    fn a_body_cut_short_is_corrupt_not_a_shorter_body() {
        let value = record().encode_stored(b"0123456789", &[]);
        let cut = &value[..value.len() - 7];
        assert!(matches!(
            CallbackRecord::decode_stored(cut),
            Err(JournalError::Corrupt(_))
        ));
    }
}
