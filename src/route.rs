//! Routes: which public paths exist, what they accept and where their
//! callbacks go. Only configured routes exist; every other path is a 404.
//!
//! A path matches exactly, except that a route whose path ends in a
//! `{token}` segment (`/callbacks/wav/{token}`) matches any one non-empty
//! last segment there; the segment is handed to the route's verification.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderValue, Method};

use crate::access::IpNet;
use crate::config::{Config, Destination};
use crate::metrics::RouteStats;
use crate::rate_limit::RateLimiter;
use crate::retry::RetryPolicy;
use crate::verify::Verifier;

/// The last path segment that carries a route's secret token.
pub const TOKEN_SEGMENT: &str = "{token}";

/// One configured route, ready for requests.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub path: String,
    pub methods: Vec<Method>,
    /// The `Allow` header sent with a 405.
    pub allow: HeaderValue,
    pub destinations: Vec<Destination>,
    /// Destination URLs as strings, as the journal stores them.
    pub destination_urls: Vec<String>,
    pub retry: RetryPolicy,
    /// JSON pointers tried in order to find a callback's task id.
    pub task_id: Vec<String>,
    /// Largest accepted body, in bytes.
    pub max_body: u64,
    /// Client addresses allowed to call; empty means any.
    pub allow_ips: Vec<IpNet>,
    /// Per-client rate limit, if the route has one.
    pub rate_limiter: Option<RateLimiter>,
    /// Whether debug logs may show bodies.
    pub log_bodies: bool,
    /// Accepted and rejected counts.
    pub stats: RouteStats,
    /// How callers prove who they are; `None` checks nothing.
    pub verifier: Option<Verifier>,
}

impl Route {
    /// The task id at the first of the route's JSON pointers that matches
    /// a string or number in `body`; `None` for a body that is not JSON.
    pub fn task_id(&self, body: &[u8]) -> Option<String> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
        if *first != b'{' && *first != b'[' {
            return None;
        }
        let json: serde_json::Value = serde_json::from_slice(body).ok()?;
        self.task_id
            .iter()
            .find_map(|pointer| match json.pointer(pointer)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
    }
}

/// Every route, by path and by name.
#[derive(Debug, Default)]
pub struct RouteTable {
    by_path: HashMap<String, Arc<Route>>,
    /// Routes ending in a `{token}` segment, by the path before it (with its
    /// trailing '/').
    by_prefix: HashMap<String, Arc<Route>>,
    by_name: HashMap<String, Arc<Route>>,
}

impl RouteTable {
    pub fn from_config(config: &Config) -> RouteTable {
        let mut table = RouteTable::default();
        for route in config.routes.values() {
            let allow = route
                .methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            let route = Arc::new(Route {
                name: route.name.clone(),
                path: route.path.clone(),
                methods: route.methods.clone(),
                allow: HeaderValue::from_str(&allow)
                    .expect("method names are valid header characters"),
                destination_urls: route
                    .destinations
                    .iter()
                    .map(|d| d.url.to_string())
                    .collect(),
                destinations: route.destinations.clone(),
                retry: RetryPolicy::new(route.retry),
                task_id: route.task_id.clone(),
                max_body: route.max_body,
                allow_ips: route.allow_ips.clone(),
                rate_limiter: route.rate_limit.map(RateLimiter::new),
                log_bodies: route.log_bodies,
                stats: RouteStats::default(),
                verifier: route.verify.as_ref().map(Verifier::new),
            });
            match route.path.strip_suffix(TOKEN_SEGMENT) {
                Some(prefix) => table
                    .by_prefix
                    .insert(prefix.to_owned(), Arc::clone(&route)),
                None => table.by_path.insert(route.path.clone(), Arc::clone(&route)),
            };
            table.by_name.insert(route.name.clone(), route);
        }
        table
    }

    /// The route serving `path`, with the `{token}` segment it carried if the
    /// route has one.
    pub fn lookup<'p>(&self, path: &'p str) -> Option<(&Arc<Route>, Option<&'p str>)> {
        if let Some(route) = self.by_path.get(path) {
            return Some((route, None));
        }
        let cut = path.rfind('/')? + 1;
        let (prefix, token) = path.split_at(cut);
        if token.is_empty() {
            return None;
        }
        let route = self.by_prefix.get(prefix)?;
        Some((route, Some(token)))
    }

    /// The route with this name.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Route>> {
        self.by_name.get(name)
    }

    /// Every route, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.by_name.values()
    }
}
