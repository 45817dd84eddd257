//! The dispatcher: sends every pending delivery to its destination.
//!
//! Each destination has a lane: its own HTTP client, its own limit on
//! attempts in flight, and its own task, so a slow or dead destination only
//! ever holds up its own lane. A lane takes deliveries from two places in
//! the journal, whichever is due first: new callbacks, scanned in id order
//! for deliveries to its destination that were never attempted, and its
//! queue of deliveries waiting for a retry, ordered by due time. A restart
//! resumes from what the journal holds: the queue, and the scan from the
//! journal's intake mark, which the dispatcher moves forward as lanes get
//! past callbacks. Ingest wakes the lanes it added work to; otherwise a lane
//! sleeps until its next delivery is due.

use std::collections::{BTreeSet, HashMap, HashSet};
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
use crate::journal::{
    Attempt, CallbackId, CallbackRecord, Delivery, DeliveryState, Fresh, Journal, JournalError,
    QueueEntry, Scanned, lane_of,
};
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
    /// Where lanes that scan new callbacks start: the journal's intake mark
    /// when the dispatcher started.
    scan_start: CallbackId,
    /// The intake mark as last written.
    mark_written: Mutex<CallbackId>,
}

/// How often the intake mark is moved forward.
const MARK_INTERVAL: Duration = Duration::from_secs(1);

/// How many new callbacks a lane reads for one turn of its loop. A lane far
/// behind, as after a restart from an old intake mark, would otherwise hold
/// a runtime worker, which also answers callbacks, for its whole scan.
const SCAN_BUDGET: usize = 1024;

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
    /// Whether the lane scans new callbacks: only configured destinations
    /// get new deliveries.
    scans: bool,
    /// No delivery of this lane that was never attempted is older than
    /// this callback, but for those whose first attempt is running.
    low_mark: Mutex<CallbackId>,
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
        let scan_start = journal.intake_mark().unwrap_or_else(|err| {
            error!(error = %err, "cannot read the intake mark; scanning every callback");
            CallbackId(0)
        });
        let dispatcher = Arc::new(Dispatcher {
            journal,
            routes,
            defaults,
            lanes: Mutex::default(),
            tasks: Mutex::new(JoinSet::new()),
            stop: watch::channel(false).0,
            events: Events::default(),
            scan_start,
            mark_written: Mutex::new(scan_start),
        });

        let configured: Vec<String> = dispatcher.defaults.destinations.keys().cloned().collect();
        // Deliveries never attempted to a destination that is no longer
        // configured: no lane scans for them, so they join its queue.
        let scanned: Vec<u64> = configured.iter().map(|url| lane_of(url)).collect();
        match dispatcher.journal.queue_unscanned(scan_start, &scanned) {
            Ok(0) => {}
            Ok(queued) => info!(
                queued,
                "queued deliveries to destinations no longer configured"
            ),
            Err(err) => error!(error = %err, "cannot queue deliveries to old destinations"),
        }
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
        let keeper = Arc::clone(&dispatcher);
        let mut stop = dispatcher.stop.subscribe();
        dispatcher
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(MARK_INTERVAL) => keeper.keep_mark(),
                        _ = stop.changed() => break,
                    }
                }
            });
        Ok(dispatcher)
    }

    /// Moves the journal's intake mark to the oldest callback a scanning
    /// lane may still have a delivery never attempted for.
    fn keep_mark(&self) {
        let low = {
            let lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
            lanes
                .values()
                .filter(|lane| lane.scans)
                .map(|lane| *lane.low_mark.lock().unwrap_or_else(|p| p.into_inner()))
                .min()
        };
        let low = low.unwrap_or_else(|| self.journal.horizon());
        let mut written = self.mark_written.lock().unwrap_or_else(|p| p.into_inner());
        if low == *written {
            return;
        }
        match self.journal.set_intake_mark(low) {
            Ok(()) => *written = low,
            Err(err) => error!(error = %err, "cannot move the intake mark"),
        }
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
            scans: own.is_some(),
            low_mark: Mutex::new(self.scan_start),
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
        self.keep_mark();
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
    /// Which delivery each running attempt is for, and whether it is a
    /// first attempt found by the scan of new callbacks.
    in_flight: HashMap<task::Id, (CallbackId, u32, bool)>,
    busy: HashSet<(CallbackId, u32)>,
    /// Where the last queue scan stopped; `None` scans from the queue's start.
    cursor: Option<Vec<u8>>,
    /// Where the scan of new callbacks goes on from (a callback id and a
    /// delivery seq): every delivery never attempted before it is started.
    scan_from: (CallbackId, u32),
    /// The delivery never attempted that the scan found, not started yet.
    found: Option<Box<Fresh>>,
    /// Deliveries whose first attempt, found by the scan, is running.
    first_attempts: BTreeSet<(CallbackId, u32)>,
}

/// What an attempt is for.
enum Job {
    /// A delivery from the lane's queue.
    Queued(QueueEntry),
    /// A delivery never attempted, found by the scan of new callbacks.
    First(Box<Fresh>),
}

impl LaneRunner {
    fn new(dispatcher: Arc<Dispatcher>, lane: Arc<Lane>) -> LaneRunner {
        let scan_from = (dispatcher.scan_start, 0);
        LaneRunner {
            dispatcher,
            lane,
            running: JoinSet::new(),
            in_flight: HashMap::new(),
            busy: HashSet::new(),
            cursor: None,
            scan_from,
            found: None,
            first_attempts: BTreeSet::new(),
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
                Some(done) = self.running.join_next_with_id() => self.finished(done),
                _ = sleep => {}
                _ = stop.changed() => break,
            }
        }
        // Let attempts in flight finish; the dispatcher bounds the wait.
        while let Some(done) = self.running.join_next_with_id().await {
            self.finished(done);
        }
    }

    fn finished(&mut self, done: Result<(task::Id, ()), task::JoinError>) {
        let (id, failed) = match done {
            Ok((id, ())) => (id, false),
            Err(err) => {
                error!(error = %err, "an attempt did not finish");
                (err.id(), true)
            }
        };
        let Some((callback, seq, first)) = self.in_flight.remove(&id) else {
            return;
        };
        self.busy.remove(&(callback, seq));
        // A first attempt that did not finish may have journaled nothing:
        // it keeps the intake mark behind it, so a restart tries it again.
        if first && !failed {
            self.first_attempts.remove(&(callback, seq));
            self.publish_low_mark();
        }
    }

    /// Starts attempts for due deliveries while the lane has room, and
    /// returns when the next one is due, if any is waiting.
    fn launch_due(&mut self) -> Option<Instant> {
        let mut budget = SCAN_BUDGET;
        while self.running.len() < self.lane.limit {
            let next = self.scan(&mut budget).and_then(|()| self.next_queued());
            let queued = match next {
                Ok(queued) => queued,
                Err(err) => {
                    error!(error = %err, "cannot read the journal; trying again in 1s");
                    return Some(Instant::now() + Duration::from_secs(1));
                }
            };
            let now = now_ms();
            let first_due = self.found.as_ref().map(|f| f.delivery.next_attempt_ms);
            match (first_due, queued) {
                (Some(first), Some(entry)) if entry.due_ms <= now && entry.due_ms < first => {
                    self.launch(Job::Queued(entry))
                }
                (Some(_), _) => {
                    let found = self.found.take().expect("first_due is Some");
                    self.launch(Job::First(found));
                }
                (None, Some(entry)) if entry.due_ms <= now => self.launch(Job::Queued(entry)),
                // The scan stopped short of the horizon: go on with it
                // after letting other tasks run.
                (None, _) if budget == 0 => return Some(Instant::now()),
                (None, Some(entry)) => {
                    let wait = entry.due_ms.saturating_sub(now);
                    return Some(Instant::now() + Duration::from_millis(wait));
                }
                (None, None) => return None,
            }
        }
        None
    }

    /// Looks for the next delivery never attempted, reading at most `budget`
    /// callbacks, unless one is found already or the lane does not scan.
    fn scan(&mut self, budget: &mut usize) -> Result<(), JournalError> {
        if !self.lane.scans || self.found.is_some() || *budget == 0 {
            return Ok(());
        }
        let journal = &self.dispatcher.journal;
        let horizon = journal.horizon();
        if self.scan_from.0 >= horizon {
            return Ok(());
        }
        match journal.next_fresh(self.lane.id, self.scan_from, horizon, budget)? {
            Scanned::Found(found) => {
                self.scan_from = (found.record.id, found.delivery.seq);
                self.found = Some(found);
            }
            Scanned::Upto(at) => self.scan_from = at,
        }
        self.publish_low_mark();
        Ok(())
    }

    /// The first queued delivery not running: the first due after the
    /// cursor, else the first from the queue's start.
    fn next_queued(&mut self) -> Result<Option<QueueEntry>, JournalError> {
        let journal = &self.dispatcher.journal;
        let busy = &self.busy;
        let skip = |id, seq| busy.contains(&(id, seq));
        if let Some(cursor) = self.cursor.as_deref() {
            match journal.next_due(self.lane.id, Some(cursor), skip)? {
                Some(entry) if entry.due_ms <= now_ms() => return Ok(Some(entry)),
                // Nothing due after the cursor: look from the start, for
                // entries written behind it since.
                _ => self.cursor = None,
            }
        }
        journal.next_due(self.lane.id, None, skip)
    }

    fn publish_low_mark(&self) {
        let running = self.first_attempts.first().map(|(id, _)| *id);
        let low = running.map_or(self.scan_from.0, |id| id.min(self.scan_from.0));
        *self.lane.low_mark.lock().unwrap_or_else(|p| p.into_inner()) = low;
    }

    fn launch(&mut self, job: Job) {
        let (key, first) = match &job {
            Job::Queued(entry) => {
                self.cursor = Some(entry.key.clone());
                ((entry.id, entry.seq), false)
            }
            Job::First(found) => {
                let key = (found.record.id, found.delivery.seq);
                self.scan_from = (key.0, key.1.saturating_add(1));
                self.first_attempts.insert(key);
                (key, true)
            }
        };
        let dispatcher = Arc::clone(&self.dispatcher);
        let lane = Arc::clone(&self.lane);
        let handle = self.running.spawn(attempt(dispatcher, lane, job));
        self.in_flight.insert(handle.id(), (key.0, key.1, first));
        self.busy.insert(key);
        if first {
            self.publish_low_mark();
        }
    }
}

/// Makes one attempt for a due delivery and journals its outcome.
async fn attempt(dispatcher: Arc<Dispatcher>, lane: Arc<Lane>, job: Job) {
    let journal = &dispatcher.journal;
    let (entry_key, record, body, mut delivery) = match job {
        Job::First(found) => {
            let Fresh {
                record,
                body,
                delivery,
            } = *found;
            (None, record, body, delivery)
        }
        Job::Queued(entry) => match load_queued(journal, &entry) {
            Some((record, body, delivery)) => (Some(entry.key), record, body, delivery),
            None => return,
        },
    };
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
    if let Err(err) = journal.finish_attempt(entry_key.as_deref(), record.id, &delivery, &attempt) {
        error!(callback.id = %record.id, error = %err, "cannot journal an attempt's outcome");
    }
    dispatcher.events.attempted(&record, &delivery, &attempt);
}

/// Loads what a queued delivery's attempt needs, dropping the queue entry
/// instead when it no longer matches its delivery.
fn load_queued(
    journal: &Journal,
    entry: &QueueEntry,
) -> Option<(CallbackRecord, bytes::Bytes, Delivery)> {
    let loaded = match journal.load(entry.id, entry.seq) {
        Ok(Some(loaded)) => loaded,
        Ok(None) => {
            // Only a callback that was never acknowledged can be half written: an
            // ack waits for every one of its entries to be flushed.
            warn!(callback.id = %entry.id, "dropping a queue entry without its callback");
            if let Err(err) = journal.drop_queue_entry(&entry.key) {
                error!(callback.id = %entry.id, error = %err, "cannot drop a queue entry");
            }
            return None;
        }
        Err(err) => {
            error!(callback.id = %entry.id, error = %err, "cannot load delivery");
            return None;
        }
    };
    let delivery = &loaded.2;
    if delivery.state != DeliveryState::Pending || delivery.next_attempt_ms != entry.due_ms {
        // Left behind by a crash between the writes of an earlier attempt.
        debug!(callback.id = %entry.id, seq = entry.seq, "dropping a stale queue entry");
        if let Err(err) = journal.drop_queue_entry(&entry.key) {
            error!(callback.id = %entry.id, error = %err, "cannot drop a stale queue entry");
        }
        return None;
    }
    Some(loaded)
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
