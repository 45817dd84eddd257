//! Retry policy: which outcomes are worth another attempt, and when.
//!
//! Attempts are numbered from 1. After a retryable failure the next attempt
//! waits an exponential backoff (`initial_backoff` doubled per attempt, at
//! most `max_backoff`) with jitter, or what the destination asked for in
//! `Retry-After`, capped at `max_backoff`. A delivery that runs out of
//! attempts, or gets an answer no retry will change, is dead.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

use crate::config::RetryConfig;

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The destination answered 2xx.
    Delivered { status: u16 },
    /// Worth another attempt: connect error, timeout, 408, 425, 429 or 5xx.
    Retryable {
        status: Option<u16>,
        error: Option<String>,
        retry_after: Option<Duration>,
    },
    /// No retry will help: any other answer (most 4xx, and 3xx).
    Rejected { status: u16 },
    /// The request cannot be built (say, a destination URL that no longer
    /// parses); no retry will help either.
    Unsendable { error: String },
}

impl Outcome {
    /// Classifies a destination's answer.
    pub fn from_response(status: StatusCode, headers: &HeaderMap) -> Outcome {
        let code = status.as_u16();
        if status.is_success() {
            Outcome::Delivered { status: code }
        } else if is_retryable(status) {
            let retry_after = headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            Outcome::Retryable {
                status: Some(code),
                error: None,
                retry_after,
            }
        } else {
            Outcome::Rejected { status: code }
        }
    }

    /// An attempt that got no answer.
    pub fn failed(error: impl Into<String>) -> Outcome {
        Outcome::Retryable {
            status: None,
            error: Some(error.into()),
            retry_after: None,
        }
    }
}

fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 425 | 429) || status.is_server_error()
}

/// Reads `Retry-After` as delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// When to try again, given the route's retry settings.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    config: RetryConfig,
}

impl RetryPolicy {
    pub fn new(config: RetryConfig) -> RetryPolicy {
        RetryPolicy { config }
    }

    /// How long each attempt may take.
    pub fn attempt_timeout(&self) -> Duration {
        self.config.attempt_timeout
    }

    /// The wait after failed attempt number `attempt` (from 1), or `None`
    /// when no attempts are left. `seed` spreads jitter: callbacks failing
    /// together do not retry together.
    pub fn next_delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        seed: u64,
    ) -> Option<Duration> {
        if attempt >= self.config.max_attempts {
            return None;
        }
        if let Some(asked) = retry_after {
            return Some(asked.min(self.config.max_backoff));
        }
        Some(self.backoff(attempt, seed))
    }

    /// Exponential backoff with jitter: a uniform pick from the upper half
    /// of the doubled delay, never below `initial_backoff`.
    fn backoff(&self, attempt: u32, seed: u64) -> Duration {
        let RetryConfig {
            initial_backoff,
            max_backoff,
            ..
        } = self.config;
        let doublings = attempt.saturating_sub(1).min(32);
        let full = initial_backoff
            .saturating_mul(1u32 << doublings.min(31))
            .min(max_backoff);
        let fraction = splitmix(seed ^ u64::from(attempt)) as f64 / u64::MAX as f64;
        let jittered = full.mul_f64(0.5 + 0.5 * fraction);
        jittered.max(initial_backoff).min(max_backoff)
    }
}

/// A well-mixed 64-bit hash (SplitMix64's finaliser).
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy::new(RetryConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_attempts,
            attempt_timeout: Duration::from_secs(10),
        })
    }

    #[test]
    fn classifies_answers() {
        let none = HeaderMap::new();
        let outcome = |code| Outcome::from_response(StatusCode::from_u16(code).unwrap(), &none);
        assert_eq!(outcome(204), Outcome::Delivered { status: 204 });
        for code in [408, 425, 429, 500, 502, 503] {
            assert!(matches!(outcome(code), Outcome::Retryable { .. }), "{code}");
        }
        for code in [301, 400, 401, 404, 410, 422] {
            assert_eq!(outcome(code), Outcome::Rejected { status: code });
        }
    }

    #[test]
    fn reads_retry_after_in_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_retry_after(" 2 ", now), Some(Duration::from_secs(2)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_doubles_within_bounds_and_stops_at_max_attempts() {
        let policy = policy(12);
        for seed in [0, 1, 42, u64::MAX] {
            for attempt in 1..12 {
                let delay = policy.next_delay(attempt, None, seed).unwrap();
                let full = Duration::from_secs(1 << (attempt - 1)).min(Duration::from_secs(60));
                assert!(delay <= full, "attempt {attempt}: {delay:?} > {full:?}");
                assert!(
                    delay >= (full / 2).max(Duration::from_secs(1)),
                    "attempt {attempt}"
                );
            }
        }
        assert_eq!(policy.next_delay(12, None, 7), None);
    }

    #[test]
    fn jitter_spreads_callbacks() {
        let policy = policy(12);
        let delays: std::collections::HashSet<_> = (0..50)
            .map(|seed| policy.next_delay(5, None, seed).unwrap())
            .collect();
        assert!(delays.len() > 40, "only {} distinct delays", delays.len());
    }

    #[test]
    fn retry_after_is_honoured_up_to_max_backoff() {
        let policy = policy(5);
        let asked = Some(Duration::from_secs(2));
        assert_eq!(policy.next_delay(1, asked, 3), Some(Duration::from_secs(2)));
        let too_long = Some(Duration::from_secs(3600));
        assert_eq!(
            policy.next_delay(1, too_long, 3),
            Some(Duration::from_secs(60))
        );
        assert_eq!(policy.next_delay(5, asked, 3), None);
    }
}
