//! callback-relay: a durable relay for webhook callbacks.
//!
//! A provider POSTs a callback to a public route; the relay writes it to its
//! journal, answers only once it is on disk, and forwards it to every
//! destination of the route, retrying until each takes it.
//!
//! # Layout
//!
//! - [`config`]: the TOML configuration, validated.
//! - [`relay`]: starts and stops the whole relay; the entry point.
//! - [`listener`]: the public listener: TLS, HTTP/1.1 and HTTP/2, timeouts.
//! - [`ingest`]: where a callback is journaled and acknowledged.
//! - [`route`]: the configured routes; every other path is a 404.
//! - [`access`]: who is calling (behind trusted proxies), and `allow_ips`.
//! - [`rate_limit`]: per-client token buckets on a route.
//! - [`verify`]: checks that a callback comes from the route's provider:
//!   shared tokens, Basic credentials, HMAC signatures.
//! - [`metrics`]: counters of accepted and rejected requests per route.
//! - [`journal`]: sled storage of callbacks, deliveries and attempts, with
//!   group commit, and a bounded ring of rejected requests.
//! - [`dispatcher`]: one lane per destination that sends due deliveries.
//! - [`delivery`]: one forwarded request and its outcome.
//! - [`retry`]: which outcomes are retried, and when.
//! - [`tls`]: the listener's certificates, chosen by SNI and reloaded while
//!   running, and the client certificates it may require.
//! - [`admin`]: the admin API: inspection, replay, live events, health.
//! - [`inspect`]: callbacks, deliveries, attempts and rejected requests as
//!   the API shows them.
//! - [`redact`]: hiding credentials, signatures and tokens in what is shown.
//! - [`replay`]: sending a journaled callback again, queued or once.
//! - [`export`]: callbacks as JSON Lines, out of and into a journal.
//! - [`events`]: the live stream of accepted callbacks and attempts.
//! - [`cli`]: the inspection commands (list, show, replay, tail, export,
//!   import), through the admin API or straight from the journal.
//! - [`clock`]: times as people read and write them.
//! - [`percent`]: `%XX` decoding of URL parts, strict for secrets and lossy
//!   for what people read.

pub mod access;
pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod dispatcher;
pub mod events;
pub mod export;
pub mod ingest;
pub mod inspect;
pub mod journal;
pub mod listener;
pub mod metrics;
pub mod percent;
pub mod rate_limit;
pub mod redact;
pub mod relay;
pub mod replay;
pub mod retry;
pub mod route;
pub mod tls;
pub mod verify;
