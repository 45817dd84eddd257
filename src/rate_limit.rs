//! Per-client rate limits on a route: a token bucket for each client
//! address, refilled at the configured rate up to its burst.
//!
//! IPv6 clients are counted by their /64, the block one subscriber usually
//! holds, so hopping between addresses of one block does not reset the
//! bucket. The table of buckets is bounded: when it is full, buckets that
//! have refilled completely (idle clients) are dropped, and if that frees
//! nothing the table starts over. Memory stays bounded; at worst a client
//! briefly gets a fresh bucket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Clients tracked per route before idle buckets are dropped.
const MAX_CLIENTS: usize = 65_536;

/// A configured limit: `count` requests per `per`, bursts of up to `burst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per `per`, at least 1.
    pub count: u32,
    /// The period of `count`: one second, minute or hour.
    pub per: Duration,
    /// Requests a client may make at once after being idle, at least 1.
    pub burst: u32,
}

impl RateLimit {
    /// Parses a rate such as `"10/s"`, `"600/m"` or `"1000/h"`.
    pub fn parse_rate(text: &str) -> Result<(u32, Duration), String> {
        let bad = || format!("{text:?} is not a rate like \"10/s\", \"600/m\" or \"1000/h\"");
        let (count, unit) = text.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!(
                "{text:?} allows no requests (at least 1 is needed)"
            ));
        }
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok((count, per))
    }

    /// Tokens added per second.
    fn refill_per_sec(&self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }
}

/// One client's bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The buckets of every client of one route.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    max_clients: usize,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter::with_capacity(limit, MAX_CLIENTS)
    }

    fn with_capacity(limit: RateLimit, max_clients: usize) -> RateLimiter {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
            max_clients,
        }
    }

    /// Takes a token for `client` at `now`, or says how long until one is
    /// there (for `Retry-After`).
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = bucket_key(client);
        let burst = f64::from(self.limit.burst);
        let rate = self.limit.refill_per_sec();
        // A poisoned lock only means another request panicked mid-update; the
        // table of numbers is still usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(&key) && buckets.len() >= self.max_clients {
            prune(&mut buckets, now, rate, burst, self.max_clients);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
    }

    /// Clients tracked now.
    pub fn clients(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Drops the buckets that would be full by `now`; if that leaves the table
/// still full, all of them.
fn prune(buckets: &mut HashMap<IpAddr, Bucket>, now: Instant, rate: f64, burst: f64, max: usize) {
    buckets.retain(|_, b| {
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens + elapsed * rate < burst
    });
    if buckets.len() >= max {
        buckets.clear();
    }
}

/// IPv4 addresses count alone, IPv6 ones by their /64.
fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        v4 => v4,
    }
}

/// Whole seconds for a `Retry-After` header, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(count: u32, per_secs: u64, burst: u32) -> RateLimit {
        RateLimit {
            count,
            per: Duration::from_secs(per_secs),
            burst,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let limiter = RateLimiter::new(limit(2, 1, 3));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(ip("192.0.2.1"), t0).is_ok());
        }
        let wait = limiter.check(ip("192.0.2.1"), t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(retry_after_secs(wait), 1);
        // Another client has its own bucket.
        assert!(limiter.check(ip("192.0.2.2"), t0).is_ok());
        // Half a second later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert!(limiter.check(ip("192.0.2.1"), t1).is_ok());
        assert!(limiter.check(ip("192.0.2.1"), t1).is_err());
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let limiter = RateLimiter::new(limit(1, 60, 1));
        let now = Instant::now();
        assert!(limiter.check(ip("2001:db8:1:2::1"), now).is_ok());
        assert!(limiter.check(ip("2001:db8:1:2::ffff"), now).is_err());
        assert!(limiter.check(ip("2001:db8:1:3::1"), now).is_ok());
    }

    #[test]
    fn the_table_of_clients_stays_bounded() {
        let limiter = RateLimiter::with_capacity(limit(1, 3600, 1), 100);
        let now = Instant::now();
        for n in 0..10_000u32 {
            let _ = limiter.check(IpAddr::from(n.to_be_bytes()), now);
            assert!(limiter.clients() <= 100, "{} clients", limiter.clients());
        }
    }

    #[test]
    fn rates_parse_with_their_unit() {
        assert_eq!(
            RateLimit::parse_rate("10/s"),
            Ok((10, Duration::from_secs(1)))
        );
        assert_eq!(
            RateLimit::parse_rate("600/m"),
            Ok((600, Duration::from_secs(60)))
        );
        assert!(
            RateLimit::parse_rate("0/s")
                .unwrap_err()
                .contains("\"0/s\"")
        );
        assert!(
            RateLimit::parse_rate("10/day")
                .unwrap_err()
                .contains("10/day")
        );
        assert!(RateLimit::parse_rate("ten").is_err());
    }
}
