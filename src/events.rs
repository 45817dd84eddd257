//! Live events: callbacks as they are accepted and delivery attempts as they
//! finish, broadcast to whoever follows `GET /v1/events`.
//!
//! Publishing never waits: with nobody listening it costs one atomic read,
//! and a listener that falls behind loses the oldest events (it is told how
//! many) rather than slowing ingest or the dispatcher down.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::clock;
use crate::journal::{Attempt, CallbackRecord, Delivery};

/// How many events a slow listener may fall behind before losing some.
const BACKLOG: usize = 1024;

/// One thing that happened, as the event stream sends it (JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A callback was journaled and acknowledged.
    Accepted {
        id: String,
        route: String,
        task_id: Option<String>,
        received_at: String,
    },
    /// An attempt of a delivery finished.
    Attempt {
        id: String,
        route: String,
        seq: u32,
        url: String,
        attempt: u32,
        status: Option<u16>,
        error: Option<String>,
        latency_ms: f64,
        /// The delivery's state after the attempt.
        state: String,
        replay: bool,
    },
    /// A replay sent a callback once to a target given at replay time.
    Sent {
        id: String,
        route: String,
        url: String,
        status: Option<u16>,
        error: Option<String>,
        latency_ms: f64,
    },
}

impl Event {
    /// The route the event is about.
    pub fn route(&self) -> &str {
        match self {
            Event::Accepted { route, .. } | Event::Attempt { route, .. } => route,
            Event::Sent { route, .. } => route,
        }
    }

    /// The name the event stream gives this kind of event.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Accepted { .. } => "accepted",
            Event::Attempt { .. } => "attempt",
            Event::Sent { .. } => "sent",
        }
    }
}

/// The broadcast hub; clones share it.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Events {
    /// A new listener, seeing every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Publishes an event built only when someone listens.
    pub fn publish(&self, event: impl FnOnce() -> Event) {
        if self.tx.receiver_count() > 0 {
            // Sending fails only when every listener left since the check.
            let _ = self.tx.send(event());
        }
    }

    /// Tells listeners a callback was accepted.
    pub fn accepted(&self, record: &CallbackRecord) {
        self.publish(|| Event::Accepted {
            id: record.id.to_string(),
            route: record.route.clone(),
            task_id: record.task_id.clone(),
            received_at: clock::rfc3339(record.received_at_ms),
        });
    }

    /// Tells listeners an attempt of `delivery` finished.
    pub fn attempted(&self, record: &CallbackRecord, delivery: &Delivery, attempt: &Attempt) {
        self.publish(|| Event::Attempt {
            id: record.id.to_string(),
            route: record.route.clone(),
            seq: delivery.seq,
            url: delivery.url.clone(),
            attempt: attempt.number,
            status: attempt.status,
            error: attempt.error.clone(),
            latency_ms: attempt.latency_us as f64 / 1000.0,
            state: delivery.state.as_str().to_string(),
            replay: delivery.replay,
        });
    }
}
