//! Group commit: many writers share each `fsync`.
//!
//! Awaiting sled's `flush_async` once per request stalls under concurrency,
//! so writers instead register with one committer thread and wait. The
//! committer takes every writer registered so far, flushes once, and answers
//! them all; writers that register during a flush wait for the next one.
//! A writer registers only after its batch is applied, so the flush that
//! answers it covers its write.
//!
//! Flushes start at least `interval` apart. Under load that gathers more
//! writers into each flush (each costs the committer and sled's writer
//! threads some CPU whatever its size); when writes are rare the last flush
//! is long past and a writer is flushed at once.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::error;

/// What a waiting writer is told: durable, or why not.
pub(crate) type FlushResult = Result<(), Arc<sled::Error>>;

/// The handle writers use to wait for durability.
#[derive(Clone)]
pub(crate) struct Committer {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// Writers whose batches are applied and who wait for a flush.
    waiting: Vec<oneshot::Sender<FlushResult>>,
    /// Set once, when the journal closes: the thread then flushes what is
    /// left and stops.
    closing: bool,
    /// Whether the thread waits on the condition variable for a writer. When
    /// it does not (it is flushing, or pausing between flushes), it will look
    /// at `waiting` anyway, and writers spare themselves the wake-up call.
    idle: bool,
}

impl Committer {
    /// Starts the committer thread for `db`, flushing at most once per
    /// `interval`.
    pub(crate) fn start(db: sled::Db, interval: Duration) -> (Committer, thread::JoinHandle<()>) {
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            wake: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let handle = thread::Builder::new()
            .name("journal-commit".into())
            .spawn(move || run(&db, &worker, interval))
            .expect("spawning the committer thread only fails when the OS is out of threads");
        (Committer { shared }, handle)
    }

    /// Waits until everything written before this call is on disk.
    pub(crate) async fn durable(&self) -> FlushResult {
        let (tx, rx) = oneshot::channel();
        let idle = {
            let mut state = lock(&self.shared.state);
            state.waiting.push(tx);
            state.idle
        };
        if idle {
            self.shared.wake.notify_one();
        }
        match rx.await {
            Ok(result) => result,
            // The committer dropped the sender without answering: it is gone.
            Err(_) => Err(Arc::new(sled::Error::ReportableBug(
                "journal committer stopped".into(),
            ))),
        }
    }

    /// Asks the thread to make a last flush and stop.
    pub(crate) fn close(&self) {
        lock(&self.shared.state).closing = true;
        self.shared.wake.notify_one();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding this lock leaves only a Vec behind: still usable.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn run(db: &sled::Db, shared: &Shared, interval: Duration) {
    let mut last_flush: Option<Instant> = None;
    loop {
        if let Some(wait) = last_flush.and_then(|at| interval.checked_sub(at.elapsed())) {
            thread::sleep(wait);
        }
        let (batch, closing) = {
            let mut state = lock(&shared.state);
            while state.waiting.is_empty() && !state.closing {
                state.idle = true;
                state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                state.idle = false;
            }
            (std::mem::take(&mut state.waiting), state.closing)
        };

        last_flush = Some(Instant::now());
        let result = db.flush().map(drop).map_err(Arc::new);
        if let Err(err) = &result {
            error!(error = %err, waiting = batch.len(), "journal flush failed");
        }
        for waiter in batch {
            // A writer that stopped waiting (its request was dropped) is fine.
            let _ = waiter.send(result.clone());
        }

        if closing && lock(&shared.state).waiting.is_empty() {
            return;
        }
    }
}
