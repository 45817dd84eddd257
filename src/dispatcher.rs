//! The dispatcher: sends every pending delivery to its destination.
//!
//! Each destination has a lane: its own HTTP client, its own limit on
//! attempts in flight, and its own task. A lane takes due deliveries from
//! its queue in the journal (ordered by due time), so a slow or dead
//! destination only ever holds up its own lane, and a restart resumes from
//! exactly what the journal holds. Ingest wakes the lanes it added work to;
//! otherwise a lane sleeps until its next delivery is due.

use std::collections::{HashMap, HashSet};
use std::future::pending;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::{self, JoinSet};
use tracing::{Instrument, debug, debug_span, error, info, warn};

use crate::config::{Config, Destination, RetryConfig};
use crate::delivery::{ClientError, Sender};
use crate::events::Events;
use crate::ingest::now_ms;
use crate::journal::{Attempt, CallbackId, DeliveryState, Journal, QueueEntry, lane_of};
use crate::retry::{Outcome, RetryPolicy};
use crate::route::RouteTable;

/// Settings that decide how a destination's lane is built.
#[derive(Clone, Debug)]
struct LaneDefaults {
    concurrency: usize,
    connect_timeout: Duration,
    ca: Option<std::path::PathBuf>,
    /// Destinations as configured, by URL, for their own overrides.
    destinations: HashMap<String, Destination>,
    /// Retry settings for deliveries whose route is no longer configured.
    retry: RetryConfig,
}

/// Sends pending deliveries, one lane per destination.
pub struct Dispatcher {
    journal: Arc<Journal>,
    routes: Arc<RouteTable>,
    defaults: LaneDefaults,
    lanes: Mutex<HashMap<u64, Arc<Lane>>>,
    tasks: Mutex<JoinSet<()>>,
    stop: watch::Sender<bool>,
    /// Where finished attempts are announced.
    events: Events,
}

/// One destination's queue runner.
struct Lane {
    id: u64,
    url: String,
    sender: Sender,
    /// Attempts in flight at most.
    limit: usize,
    /// This destination's own attempt timeout, over the route's.
    timeout: Option<Duration>,
    wake: Notify,
}

impl Dispatcher {
    /// Builds lanes for every configured destination and for every lane
    /// with pending deliveries in the journal, and starts them.
    pub fn start(
        config: &Config,
        journal: Arc<Journal>,
        routes: Arc<RouteTable>,
    ) -> Result<Arc<Dispatcher>, ClientError> {
        let destinations = config
            .routes
            .values()
            .flat_map(|route| route.destinations.iter())
            .map(|dest| (dest.url.to_string(), dest.clone()))
            .collect::<HashMap<_, _>>();
        let defaults = LaneDefaults {
            concurrency: config.delivery.concurrency,
            connect_timeout: config.delivery.connect_timeout,
            ca: config.delivery.ca.clone(),
            destinations,
            retry: config.retry,
        };
        let dispatcher = Arc::new(Dispatcher {
            journal,
            routes,
            defaults,
            lanes: Mutex::default(),
            tasks: Mutex::new(JoinSet::new()),
            stop: watch::channel(false).0,
            events: Events::default(),
        });

        let configured: Vec<String> = dispatcher.defaults.destinations.keys().cloned().collect();
        for url in configured {
            dispatcher.lane(&url)?;
        }
        let pending = dispatcher.journal.pending_lanes().unwrap_or_else(|err| {
            error!(error = %err, "cannot read the delivery queue; only new callbacks will be sent");
            Vec::new()
        });
        for (_, url) in pending {
            if let Err(err) = dispatcher.lane(&url) {
                error!(
                    destination = %url,
                    error = %err,
                    "cannot build a client; its deliveries wait"
                );
            }
        }
        Ok(dispatcher)
    }

    /// The lane for `url`, started on first use.
    fn lane(self: &Arc<Self>, url: &str) -> Result<Arc<Lane>, ClientError> {
        let id = lane_of(url);
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lane) = lanes.get(&id) {
            return Ok(Arc::clone(lane));
        }
        let own = self.defaults.destinations.get(url);
        let ca = own
            .and_then(|d| d.ca.as_deref())
            .or(self.defaults.ca.as_deref());
        let lane = Arc::new(Lane {
            id,
            url: url.to_string(),
            sender: Sender::new(ca, self.defaults.connect_timeout)?,
            limit: own
                .and_then(|d| d.concurrency)
                .unwrap_or(self.defaults.concurrency),
            timeout: own.and_then(|d| d.timeout),
            wake: Notify::new(),
        });
        lanes.insert(id, Arc::clone(&lane));

        let runner = LaneRunner::new(Arc::clone(self), Arc::clone(&lane));
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.spawn(
            runner
                .run()
                .instrument(debug_span!("lane", destination = %url)),
        );
        Ok(lane)
    }

    /// Tells the lanes of these destinations that new deliveries are due.
    pub fn wake(&self, urls: &[String]) {
        let lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        for url in urls {
            if let Some(lane) = lanes.get(&lane_of(url)) {
                lane.wake.notify_one();
            }
        }
    }

    /// The live event hub: attempts are announced here, and ingest
    /// announces accepted callbacks.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The routes whose deliveries this dispatcher sends.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// Whether the lanes are running (shutdown has not begun).
    pub fn running(&self) -> bool {
        !*self.stop.borrow()
    }

    /// Stops starting attempts, waits up to `grace` for those in flight,
    /// then abandons the rest (they stay pending in the journal).
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.stop.send(true);
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} });
        if drained.await.is_err() {
            warn!(
                ?grace,
                "attempts still in flight at shutdown; they will be retried"
            );
            tasks.shutdown().await;
        }
    }

    fn policy_for(&self, route: &str) -> RetryPolicy {
        match self.routes.by_name(route) {
            Some(route) => route.retry,
            None => RetryPolicy::new(self.defaults.retry),
        }
    }
}

/// The state of one running lane.
struct LaneRunner {
    dispatcher: Arc<Dispatcher>,
    lane: Arc<Lane>,
    running: JoinSet<()>,
    /// Which delivery each running attempt is for.
    in_flight: HashMap<task::Id, (CallbackId, u32)>,
    busy: HashSet<(CallbackId, u32)>,
    /// Where the last scan stopped; `None` scans from the queue's start.
    cursor: Option<Vec<u8>>,
}

impl LaneRunner {
    fn new(dispatcher: Arc<Dispatcher>, lane: Arc<Lane>) -> LaneRunner {
        LaneRunner {
            dispatcher,
            lane,
            running: JoinSet::new(),
            in_flight: HashMap::new(),
            busy: HashSet::new(),
            cursor: None,
        }
    }

    async fn run(mut self) {
        let mut stop = self.dispatcher.stop.subscribe();
        loop {
            let wake_at = self.launch_due();
            let sleep = async {
                match wake_at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => pending().await,
                }
            };
            tokio::select! {
                _ = self.lane.wake.notified() => {}
                Some(done) = self.running.join_next_with_id() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(err) => err.id(),
                    };
                    if let Some(key) = self.in_flight.remove(&id) {
                        self.busy.remove(&key);
                    }
                }
                _ = sleep => {}
                _ = stop.changed() => break,
            }
        }
        // Let attempts in flight finish; the dispatcher bounds the wait.
        while self.running.join_next().await.is_some() {}
    }

    /// Starts attempts for due deliveries while the lane has room, and
    /// returns when the next one is due, if any is waiting.
    fn launch_due(&mut self) -> Option<Instant> {
        let journal = Arc::clone(&self.dispatcher.journal);
        while self.running.len() < self.lane.limit {
            let busy = &self.busy;
            let next = journal.next_due(self.lane.id, self.cursor.as_deref(), |id, seq| {
                busy.contains(&(id, seq))
            });
            match next {
                Err(err) => {
                    error!(error = %err, "cannot read the delivery queue; trying again in 1s");
                    return Some(Instant::now() + Duration::from_secs(1));
                }
                Ok(Some(entry)) if entry.due_ms <= now_ms() => {
                    self.cursor = Some(entry.key.clone());
                    self.launch(entry);
                }
                // Nothing due after the cursor: look once more from the
                // start, for entries written behind it since.
                Ok(found) if self.cursor.take().is_some() => drop(found),
                Ok(Some(entry)) => {
                    let wait = entry.due_ms.saturating_sub(now_ms());
                    return Some(Instant::now() + Duration::from_millis(wait));
                }
                Ok(None) => return None,
            }
        }
        None
    }

    fn launch(&mut self, entry: QueueEntry) {
        let key = (entry.id, entry.seq);
        let dispatcher = Arc::clone(&self.dispatcher);
        let lane = Arc::clone(&self.lane);
        let handle = self.running.spawn(attempt(dispatcher, lane, entry));
        self.in_flight.insert(handle.id(), key);
        self.busy.insert(key);
    }
}

/// Makes one attempt for a due delivery and journals its outcome.
async fn attempt(dispatcher: Arc<Dispatcher>, lane: Arc<Lane>, entry: QueueEntry) {
    let journal = &dispatcher.journal;
    let loaded = match journal.load(entry.id, entry.seq) {
        Ok(Some(loaded)) => loaded,
        Ok(None) => {
            // Only a callback that was never acknowledged can be half written: an
            // ack waits for every one of its entries to be flushed.
            warn!(callback.id = %entry.id, "dropping a queue entry without its callback");
            if let Err(err) = journal.drop_queue_entry(&entry.key) {
                error!(callback.id = %entry.id, error = %err, "cannot drop a queue entry");
            }
            return;
        }
        Err(err) => return error!(callback.id = %entry.id, error = %err, "cannot load delivery"),
    };
    let (record, body, mut delivery) = loaded;
    if delivery.state != DeliveryState::Pending || delivery.next_attempt_ms != entry.due_ms {
        // Left behind by a crash between the writes of an earlier attempt.
        debug!(callback.id = %entry.id, seq = entry.seq, "dropping a stale queue entry");
        if let Err(err) = journal.drop_queue_entry(&entry.key) {
            error!(callback.id = %entry.id, error = %err, "cannot drop a stale queue entry");
        }
        return;
    }
    let policy = dispatcher.policy_for(&record.route);
    let number = delivery.attempts + 1;
    let span = debug_span!("attempt", route = %record.route, callback.id = %record.id,
        attempt = number, destination = %lane.url);

    let started_ms = now_ms();
    let started = Instant::now();
    let timeout = lane.timeout.unwrap_or(policy.attempt_timeout());
    let outcome = lane
        .sender
        .send(
            &delivery.url,
            &record,
            body,
            number,
            delivery.replay,
            timeout,
        )
        .instrument(span.clone())
        .await;
    let latency = started.elapsed();

    let _entered = span.enter();
    let seed = record.id.random_bits() ^ u64::from(delivery.seq);
    let timing = (started_ms, latency);
    let attempt = settle(&mut delivery, number, &outcome, &policy, seed, timing);
    log_outcome(
        &record.route,
        record.id,
        &delivery.url,
        &attempt,
        delivery.state,
    );
    drop(_entered);
    if let Err(err) = journal.finish_attempt(&entry.key, record.id, &delivery, &attempt) {
        error!(callback.id = %record.id, error = %err, "cannot journal an attempt's outcome");
    }
    dispatcher.events.attempted(&record, &delivery, &attempt);
}

/// Applies an attempt's outcome to its delivery and returns the attempt.
fn settle(
    delivery: &mut crate::journal::Delivery,
    number: u32,
    outcome: &Outcome,
    policy: &RetryPolicy,
    seed: u64,
    (started_ms, latency): (u64, Duration),
) -> Attempt {
    delivery.attempts = number;
    let (status, error) = match outcome {
        Outcome::Delivered { status } => {
            delivery.state = DeliveryState::Delivered;
            (Some(*status), None)
        }
        Outcome::Rejected { status } => {
            delivery.state = DeliveryState::Dead;
            (Some(*status), None)
        }
        Outcome::Unsendable { error } => {
            delivery.state = DeliveryState::Dead;
            (None, Some(error.clone()))
        }
        Outcome::Retryable {
            status,
            error,
            retry_after,
        } => {
            match policy.next_delay(number, *retry_after, seed) {
                Some(delay) => {
                    let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                    delivery.next_attempt_ms = now_ms().saturating_add(delay_ms);
                }
                None => delivery.state = DeliveryState::Dead,
            }
            (*status, error.clone())
        }
    };
    delivery.last_status = status;
    delivery.last_error = error.clone();
    let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    Attempt {
        number,
        started_ms,
        latency_us,
        status,
        error,
    }
}

fn log_outcome(route: &str, id: CallbackId, url: &str, attempt: &Attempt, state: DeliveryState) {
    let status = attempt.status;
    let error = attempt.error.as_deref();
    let latency_ms = attempt.latency_us / 1000;
    match state {
        DeliveryState::Delivered => debug!(status, latency_ms, "delivered"),
        DeliveryState::Pending => {
            info!(route, callback.id = %id, attempt = attempt.number, destination = url,
                status, error, "attempt failed; will retry")
        }
        DeliveryState::Dead => {
            warn!(route, callback.id = %id, attempt = attempt.number, destination = url,
                status, error, "delivery is dead; it will not be retried")
        }
    }
}
