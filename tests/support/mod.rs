//! Shared support for the integration tests of `callback-relay`.
//!
//! Everything here talks over real sockets on `127.0.0.1`, binding port 0:
//! - [`TestCerts`]: a throwaway CA and a `localhost`/`127.0.0.1` server leaf, as PEM files,
//!   more server and client certificates from it, and [`inspecting_client_config`].
//! - [`FakeDestination`]: an HTTP/1.1 + HTTP/2 server (plain or TLS) that records every
//!   request and answers per a [`Script`] of [`Reply`]s.
//! - [`Client`]: posts to the relay under test over HTTP/1.1, h2c or TLS (h1 or h2 via ALPN);
//!   [`TlsConnection`]: one TLS connection, showing the certificate it was served.
//! - [`RelayConfig`]: a relay under test, in-process ([`TestRelay`]) or written out for
//!   [`RelayProcess`], journaling in a directory the test owns.
//! - [`RelayProcess`] and [`cli`]: the real binary as a child process on a temp config.
//! - [`fixture`], [`wait_until`] and [`wait_until_async`]: small helpers.
//!
//! Each integration test file compiles this module on its own (`mod support;`), so unused
//! items are expected and allowed.
#![allow(dead_code, unused_imports)]

mod certs;
mod client;
mod destination;
mod process;
mod relay;
mod script;
mod wait;

pub use certs::{ClientIdentity, TestCerts, inspecting_client_config};
pub use client::{Client, ClientError, Response, TlsConnection, Version};
pub use destination::{FakeDestination, RELAY_ATTEMPT, RELAY_ID, Received, WaitTimeout};
pub use process::{BIN, RelayProcess, cli, cli_async, command_args, stderr, stdout, write_config};
pub use relay::{RelayConfig, TestRelay, journaled_deliveries, open_stopped_journal};
pub use script::{Call, Reply, Script};
pub use wait::{wait_until, wait_until_async};

use bytes::Bytes;
use std::path::PathBuf;

/// Path of `fixtures/callbacks/<name>.json` in this crate (`.json` is optional in `name`).
pub fn fixture_path(name: &str) -> PathBuf {
    let file = if name.ends_with(".json") {
        name.to_owned()
    } else {
        format!("{name}.json")
    };
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/callbacks")
        .join(file)
}

/// The bytes of `fixtures/callbacks/<name>.json`, e.g. `fixture("wav-success")`.
///
/// Panics naming the path if the file cannot be read.
#[track_caller]
pub fn fixture(name: &str) -> Bytes {
    let path = fixture_path(name);
    match std::fs::read(&path) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => panic!("fixture {name:?}: cannot read {}: {e}", path.display()),
    }
}

/// The fixture `name` parsed as JSON; panics if it is missing or not JSON.
#[track_caller]
pub fn fixture_json(name: &str) -> serde_json::Value {
    let bytes = fixture(name);
    match serde_json::from_slice(&bytes) {
        Ok(value) => value,
        Err(e) => panic!("fixture {name:?} is not valid JSON: {e}"),
    }
}
