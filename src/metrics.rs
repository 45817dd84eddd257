//! Counters an operator watches: callbacks accepted per route, and requests
//! rejected per route and reason, served by the admin API as Prometheus
//! text on `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::route::RouteTable;

/// The counters of one route.
#[derive(Debug, Default)]
pub struct RouteStats {
    accepted: AtomicU64,
    /// Rejections by reason label (`bad_signature`, `rate_limited`, ...).
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl RouteStats {
    /// Counts one acknowledged callback.
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request refused for `reason`.
    pub fn rejected(&self, reason: &'static str) {
        // A poisoned lock only means a panic elsewhere mid-increment; the
        // counts are still usable.
        let mut rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        *rejected.entry(reason).or_default() += 1;
    }

    /// Callbacks accepted so far.
    pub fn accepted_total(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Requests refused so far, by reason.
    pub fn rejected_totals(&self) -> BTreeMap<&'static str, u64> {
        self.rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Every route's counters in the Prometheus text format.
pub fn render(routes: &RouteTable) -> String {
    let mut routes: Vec<_> = routes.iter().collect();
    routes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::new();
    out.push_str("# HELP callback_relay_accepted_total Callbacks journaled and acknowledged.\n");
    out.push_str("# TYPE callback_relay_accepted_total counter\n");
    for route in &routes {
        let total = route.stats.accepted_total();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "callback_relay_accepted_total{{route=\"{}\"}} {total}",
            route.name
        );
    }
    out.push_str("# HELP callback_relay_rejected_total Requests refused, by reason.\n");
    out.push_str("# TYPE callback_relay_rejected_total counter\n");
    for route in &routes {
        for (reason, total) in route.stats.rejected_totals() {
            let _ = writeln!(
                out,
                "callback_relay_rejected_total{{route=\"{}\",reason=\"{reason}\"}} {total}",
                route.name
            );
        }
    }
    out
}
