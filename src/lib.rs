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
//! - [`journal`]: sled storage of callbacks, deliveries and attempts, with
//!   group commit.
//! - [`dispatcher`]: one lane per destination that sends due deliveries.
//! - [`delivery`]: one forwarded request and its outcome.
//! - [`retry`]: which outcomes are retried, and when.
//! - [`tls`]: the listener's certificates.

pub mod config;
pub mod delivery;
pub mod dispatcher;
pub mod ingest;
pub mod journal;
pub mod listener;
pub mod relay;
pub mod retry;
pub mod route;
pub mod tls;
