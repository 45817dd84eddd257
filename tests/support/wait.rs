//! Polling helpers for conditions that have no notification of their own.

use std::future::Future;
use std::panic::Location;
use std::time::Duration;
use tokio::time::Instant;

/// How often [`wait_until`] and [`wait_until_async`] check their condition.
pub const POLL_EVERY: Duration = Duration::from_millis(20);

/// Waits until `cond()` is true, checking every [`POLL_EVERY`].
///
/// Panics, naming the caller's location and the timeout, if it is still false after
/// `timeout`. The condition is checked once more at the deadline.
#[track_caller]
pub fn wait_until<F>(timeout: Duration, mut cond: F) -> impl Future<Output = ()>
where
    F: FnMut() -> bool,
{
    let caller = Location::caller();
    async move {
        let deadline = Instant::now() + timeout;
        while !cond() {
            if Instant::now() >= deadline {
                panic!("wait_until at {caller}: condition still false after {timeout:?}");
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

/// Like [`wait_until`], for a condition that must be awaited (e.g. an HTTP query).
///
/// Each check runs to completion; the deadline is checked between checks.
#[track_caller]
pub fn wait_until_async<F, Fut>(timeout: Duration, mut cond: F) -> impl Future<Output = ()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let caller = Location::caller();
    async move {
        let deadline = Instant::now() + timeout;
        while !cond().await {
            if Instant::now() >= deadline {
                panic!("wait_until_async at {caller}: condition still false after {timeout:?}");
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}
