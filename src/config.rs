//! Relay configuration: owns the TOML config file format.
//!
//! This module reads the file, replaces `${ENV_VAR}` references inside string values,
//! parses the result into typed settings, fills in defaults, resolves relative paths against
//! the config file's directory and validates every value. Nothing else in the relay parses
//! the config file; other modules receive a fully validated [`Config`].
//!
//! Durations are strings such as `"250ms"`, `"30s"`, `"10m"`, `"2h"`, `"14d"` or `"1h30m"`
//! (see [`parse_duration`]). Sizes are integers (bytes) or strings such as `"512KiB"` or
//! `"10MB"` (see [`parse_size`]). Unknown keys are errors.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{Method, Uri};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::access::IpNet;
use crate::rate_limit::RateLimit;
use crate::verify::{RawVerify, VerifyConfig};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

const DEFAULT_MAX_BODY: u64 = MIB;
/// The largest `max_body` allowed: a body is held whole in memory and
/// journaled as one value, so the limit must stay far below 4 GiB.
const MAX_BODY_LIMIT: u64 = 1024 * MIB;
const DEFAULT_MAX_CONNECTIONS: usize = 4096;
const DEFAULT_MAX_HEADERS: usize = 100;
const DEFAULT_MAX_HEADER_SIZE: u64 = 16 * KIB;
const DEFAULT_H2_STREAMS: u32 = 100;
const DEFAULT_CACHE_CAPACITY: u64 = 24 * MIB;
const DEFAULT_JOURNAL_PATH: &str = "data/journal";
const DEFAULT_TASK_ID: [&str; 4] = ["/data/task_id", "/data/taskId", "/task_id", "/taskId"];

/// Duration units accepted by [`parse_duration`], largest first, with their length in ms.
const DURATION_UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// The whole relay configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[server]`: the public webhook listener.
    pub server: ServerConfig,
    /// `[admin]`: the admin API listener.
    pub admin: AdminConfig,
    /// `[journal]`: the on-disk journal.
    pub journal: JournalConfig,
    /// `[retry]`: retry defaults for every route.
    pub retry: RetryConfig,
    /// `[delivery]`: delivery defaults for every destination.
    pub delivery: DeliveryConfig,
    /// `[routes.NAME]`: the routes, keyed by route name (at least one).
    pub routes: BTreeMap<String, RouteConfig>,
}

/// `[server]`: the public listener that receives webhook callbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to bind (required).
    pub listen: SocketAddr,
    /// `[server.tls]`; `None` means plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Largest accepted request body in bytes (default 1 MiB, at least 1).
    pub max_body: u64,
    /// Time allowed for a TLS handshake (default 10s).
    pub tls_handshake_timeout: Duration,
    /// Time allowed to receive the request head (default 10s).
    pub header_read_timeout: Duration,
    /// Time allowed to receive the request body (default 30s).
    pub body_read_timeout: Duration,
    /// How long an idle connection is kept open (default 60s).
    pub keep_alive_timeout: Duration,
    /// How long shutdown waits for in-flight requests and attempts (default 30s).
    pub shutdown_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog (default 4096).
    pub max_connections: usize,
    /// Most header fields in one request; more is a 431 (default 100).
    pub max_headers: usize,
    /// Largest request head (request line and headers) in bytes; larger is a 431
    /// (default 16 KiB).
    pub max_header_size: u64,
    /// Streams an HTTP/2 client may have open at once (default 100).
    pub http2_max_concurrent_streams: u32,
    /// Peers whose `Forwarded`/`X-Forwarded-For` headers are believed (default none).
    pub trusted_proxies: Vec<IpNet>,
    /// Default per-client rate limit of every route (default none).
    pub rate_limit: Option<RateLimit>,
}

/// `[server.tls]`: certificate files for the public listener. Every path is resolved
/// against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain of the default certificate, served when the client's SNI
    /// matches no name in `certs` or it sends none: `cert`, or the first `certs` entry's
    /// file when `cert` is absent.
    pub cert: PathBuf,
    /// PEM private key for `cert`.
    pub key: PathBuf,
    /// `[[server.tls.certs]]`: certificates chosen by SNI, in file order.
    pub certs: Vec<TlsCert>,
    /// `client_ca`: PEM CA certificates; when set, a client must present a certificate
    /// chained to one of them.
    pub client_ca: Option<PathBuf>,
    /// How often the cert, key and CA files are checked for changes (default 5s).
    pub reload_interval: Duration,
}

/// One `[[server.tls.certs]]` entry: a certificate served to clients asking for its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCert {
    /// DNS names in lower case, at least one; `*.example.com` matches one label below.
    pub names: Vec<String>,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key for `cert`.
    pub key: PathBuf,
}

/// `[admin]`: the admin API listener. `Debug` redacts the token.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Address to bind (default 127.0.0.1:9090); always differs from `server.listen`.
    pub listen: SocketAddr,
    /// Shared secret for the admin API; never empty, and always set when `listen` is
    /// not a loopback address.
    pub token: Option<String>,
}

/// `[journal]`: where accepted callbacks are stored before acknowledging them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// Journal directory (default `data/journal`, resolved against the config file's directory).
    pub path: PathBuf,
    /// Page cache size in bytes (default 24 MiB).
    pub cache_capacity: u64,
    /// Rejected requests kept for inspection, newest first (default 1000; 0 keeps none).
    pub rejected_keep: usize,
    /// Body bytes kept of each rejected request (default 4 KiB, at least 1).
    pub rejected_body_cap: u64,
    /// Shortest time between two flushes of the journal (default 1ms): longer
    /// puts more callbacks in each flush, for less CPU and more ack latency.
    pub commit_interval: Duration,
}

/// Retry policy: `[retry]` globally, merged with a route's optional `retry` override.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryConfig {
    /// Delay before the first retry (default 1s, never longer than `max_backoff`).
    pub initial_backoff: Duration,
    /// Upper bound for the delay between attempts (default 10m).
    pub max_backoff: Duration,
    /// Attempts per destination before giving up, the first one included (default 12, >= 1).
    pub max_attempts: u32,
    /// Time limit for a single delivery attempt (default 10s).
    pub attempt_timeout: Duration,
}

/// `[delivery]`: defaults for every destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Attempts in flight per destination (default 32, at least 1).
    pub concurrency: usize,
    /// Time limit for opening a connection to a destination (default 5s).
    pub connect_timeout: Duration,
    /// Extra PEM CA bundle trusted for every https destination.
    pub ca: Option<PathBuf>,
}

/// `[routes.NAME]`: one inbound path and where its callbacks are forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// The route name (the table key): non-empty, only `[A-Za-z0-9_-]`.
    pub name: String,
    /// Exact request path; starts with '/' and is unique across routes.
    pub path: String,
    /// Accepted methods, uppercase, without duplicates (default `[POST]`).
    pub methods: Vec<Method>,
    /// Where callbacks are forwarded (at least one, no duplicate urls).
    pub destinations: Vec<Destination>,
    /// `[retry]` merged with the route's `retry = { ... }` override.
    pub retry: RetryConfig,
    /// JSON pointers tried in order to find a task id in the callback body.
    pub task_id: Vec<String>,
    /// Largest accepted body in bytes (default `server.max_body`).
    pub max_body: u64,
    /// Client addresses allowed to call; empty means any (default any).
    pub allow_ips: Vec<IpNet>,
    /// Per-client rate limit (default `server.rate_limit`).
    pub rate_limit: Option<RateLimit>,
    /// Whether debug logs may show this route's bodies (default false).
    pub log_bodies: bool,
    /// `[routes.NAME.verify]`: how callers prove who they are (default: not checked).
    pub verify: Option<VerifyConfig>,
}

/// One forwarding target of a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// Absolute http or https url with a host.
    pub url: Uri,
    /// Extra PEM CA bundle for this destination (falls back to `delivery.ca`).
    pub ca: Option<PathBuf>,
    /// Attempt timeout for this destination (falls back to the route's `attempt_timeout`).
    pub timeout: Option<Duration>,
    /// Attempts in flight for this destination (falls back to `delivery.concurrency`).
    pub concurrency: Option<usize>,
}

/// Why a configuration could not be loaded. `path` is the config file, when known.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("{}: cannot read config file: {source}", .path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The text is not valid TOML, or has an unknown key or a value of the wrong type.
    #[error("{}{message}", origin(.path))]
    Parse {
        /// The config file, if the text came from one.
        path: Option<PathBuf>,
        /// toml's message, with line, column and the offending key.
        message: String,
    },
    /// A `${VAR}` reference names an environment variable that is not set.
    #[error("{}{key}: environment variable {var:?} is not set", origin(.path))]
    MissingEnv {
        /// The config file, if the text came from one.
        path: Option<PathBuf>,
        /// The variable name.
        var: String,
        /// Dotted key of the value that references it, like `routes.wav.destinations[0]`.
        key: String,
    },
    /// A value is out of range, malformed or inconsistent with another value.
    #[error("{}{key}: {message}", origin(.path))]
    Invalid {
        /// The config file, if the text came from one.
        path: Option<PathBuf>,
        /// Dotted key of the offending value, like `routes.wav.path`.
        key: String,
        /// What is wrong, quoting the value.
        message: String,
    },
}

fn origin(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

impl ConfigError {
    /// Records the config file the error came from.
    fn in_file(mut self, file: &Path) -> Self {
        match &mut self {
            ConfigError::Parse { path, .. }
            | ConfigError::MissingEnv { path, .. }
            | ConfigError::Invalid { path, .. } => *path = Some(file.to_path_buf()),
            ConfigError::Read { .. } => {}
        }
        self
    }
}

pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: None,
        key: key.into(),
        message: message.into(),
    }
}

fn parse_error(err: toml::de::Error) -> ConfigError {
    ConfigError::Parse {
        path: None,
        message: err.to_string().trim_end().to_owned(),
    }
}

impl Config {
    /// Reads, substitutes `${ENV}`, parses and validates. Relative paths in the file
    /// (journal.path, tls cert/key, any `ca`) are resolved against the config file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base_dir = path.parent().unwrap_or(Path::new(""));
        let env = |name: &str| std::env::var(name).ok();
        Config::parse(&text, base_dir, &env).map_err(|err| err.in_file(path))
    }

    /// Same as [`Config::load`] from text; `base_dir` resolves relative paths. `env` looks
    /// up variables (load() passes a closure over `std::env::var`).
    pub fn parse(
        text: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        // Typed pass over the original text first: toml then reports unknown keys and
        // wrong types with line, column and the key. Substitution only replaces strings
        // with strings, so the second typed pass below cannot fail where this one passed.
        let _schema: RawConfig = toml::from_str(text).map_err(parse_error)?;
        let mut table: toml::Table = toml::from_str(text).map_err(parse_error)?;
        substitute_table(&mut table, "", env)?;
        let raw: RawConfig = toml::Value::Table(table).try_into().map_err(parse_error)?;
        raw.into_config(base_dir)
    }
}

impl Default for RetryConfig {
    /// The `[retry]` defaults: 1s initial backoff, 10m max, 12 attempts, 10s per attempt.
    fn default() -> Self {
        RetryConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            max_attempts: 12,
            attempt_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for DeliveryConfig {
    /// The `[delivery]` defaults: concurrency 32, 5s connect timeout, no extra CA.
    fn default() -> Self {
        DeliveryConfig {
            concurrency: 32,
            connect_timeout: Duration::from_secs(5),
            ca: None,
        }
    }
}

impl Default for AdminConfig {
    /// The `[admin]` defaults: listen on 127.0.0.1:9090 without a token.
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9090)),
            token: None,
        }
    }
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// Raw (as written) structures.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    journal: RawJournal,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    routes: BTreeMap<String, RawRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: String,
    tls: Option<RawTls>,
    max_body: Option<RawSize>,
    tls_handshake_timeout: Option<String>,
    header_read_timeout: Option<String>,
    body_read_timeout: Option<String>,
    keep_alive_timeout: Option<String>,
    shutdown_timeout: Option<String>,
    max_connections: Option<usize>,
    max_headers: Option<usize>,
    max_header_size: Option<RawSize>,
    http2_max_concurrent_streams: Option<u32>,
    trusted_proxies: Option<Vec<String>>,
    rate_limit: Option<RawRateLimit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    rate: String,
    burst: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    reload_interval: Option<String>,
    #[serde(default)]
    certs: Vec<RawTlsCert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsCert {
    #[serde(default)]
    names: Vec<String>,
    cert: Option<String>,
    key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    token: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJournal {
    path: Option<String>,
    cache_capacity: Option<RawSize>,
    rejected_keep: Option<usize>,
    rejected_body_cap: Option<RawSize>,
    commit_interval: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    initial_backoff: Option<String>,
    max_backoff: Option<String>,
    max_attempts: Option<u32>,
    attempt_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    concurrency: Option<usize>,
    connect_timeout: Option<String>,
    ca: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: String,
    methods: Option<Vec<String>>,
    destinations: Vec<RawDestination>,
    retry: Option<RawRetry>,
    task_id: Option<Vec<String>>,
    max_body: Option<RawSize>,
    allow_ips: Option<Vec<String>>,
    rate_limit: Option<RawRateLimit>,
    log_bodies: Option<bool>,
    verify: Option<RawVerify>,
}

/// A destination: a url string or a table. Hand-written `Deserialize` (instead of an
/// untagged enum) so an unknown key in the table is reported by name.
enum RawDestination {
    Url(String),
    Table(RawDestinationTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestinationTable {
    url: String,
    ca: Option<String>,
    timeout: Option<String>,
    concurrency: Option<usize>,
}

impl<'de> Deserialize<'de> for RawDestination {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DestinationVisitor)
    }
}

struct DestinationVisitor;

impl<'de> Visitor<'de> for DestinationVisitor {
    type Value = RawDestination;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a url string or a table like { url = \"https://host/path\" }")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<RawDestination, E> {
        Ok(RawDestination::Url(value.to_owned()))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawDestination, A::Error> {
        let table = RawDestinationTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(RawDestination::Table(table))
    }
}

/// A size as written: an integer byte count or a string like "1MiB".
enum RawSize {
    Bytes(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SizeVisitor)
    }
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = RawSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte count like 1048576 or a string like \"1MiB\"")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<RawSize, E> {
        Ok(RawSize::Bytes(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<RawSize, E> {
        i64::try_from(value).map(RawSize::Bytes).map_err(E::custom)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<RawSize, E> {
        Ok(RawSize::Text(value.to_owned()))
    }
}

// ---------------------------------------------------------------------------------------
// Environment substitution.

fn substitute_table(
    table: &mut toml::Table,
    prefix: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for (name, value) in table.iter_mut() {
        substitute_value(value, &join_key(prefix, name), env)?;
    }
    Ok(())
}

fn substitute_value(
    value: &mut toml::Value,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(text) if text.contains("${") => *text = expand_env(text, key, env)?,
        toml::Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                substitute_value(item, &format!("{key}[{index}]"), env)?;
            }
        }
        toml::Value::Table(table) => substitute_table(table, key, env)?,
        _ => {}
    }
    Ok(())
}

/// Replaces every `${VAR}` in `text`; replacements are not expanded again.
fn expand_env(
    text: &str,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| invalid(key, format!("unterminated \"${{\" in {text:?}")))?;
        let var = &after[..end];
        if !is_env_name(var) {
            let message = format!("{var:?} is not a valid environment variable name in {text:?}");
            return Err(invalid(key, message));
        }
        let value = env(var).ok_or_else(|| ConfigError::MissingEnv {
            path: None,
            var: var.to_owned(),
            key: key.to_owned(),
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_bare_key(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Appends `name` to a dotted key, quoting it unless it is a bare TOML key.
fn join_key(prefix: &str, name: &str) -> String {
    let segment = if is_bare_key(name) {
        name.to_owned()
    } else {
        format!("{name:?}")
    };
    if prefix.is_empty() {
        segment
    } else {
        format!("{prefix}.{segment}")
    }
}

// ---------------------------------------------------------------------------------------
// Conversion and validation.

impl RawConfig {
    fn into_config(self, base: &Path) -> Result<Config, ConfigError> {
        let server = self.server.into_server(base)?;
        let admin = self.admin.into_admin(server.listen)?;
        let journal = self.journal.into_journal(base)?;
        let retry = self.retry.apply(RetryConfig::default(), "retry")?;
        let delivery = self.delivery.into_delivery(base)?;
        let routes = build_routes(self.routes, &server, &retry, base)?;
        Ok(Config {
            server,
            admin,
            journal,
            retry,
            delivery,
            routes,
        })
    }
}

impl RawServer {
    fn into_server(self, base: &Path) -> Result<ServerConfig, ConfigError> {
        let secs = Duration::from_secs;
        let timeout = |name: &str, text: Option<String>, default: Duration| {
            duration_or(&format!("server.{name}"), text.as_deref(), default)
        };
        Ok(ServerConfig {
            listen: socket_addr("server.listen", &self.listen)?,
            tls: self.tls.map(|tls| tls.into_tls(base)).transpose()?,
            max_body: max_body_or("server.max_body", self.max_body, DEFAULT_MAX_BODY)?,
            tls_handshake_timeout: timeout(
                "tls_handshake_timeout",
                self.tls_handshake_timeout,
                secs(10),
            )?,
            header_read_timeout: timeout(
                "header_read_timeout",
                self.header_read_timeout,
                secs(10),
            )?,
            body_read_timeout: timeout("body_read_timeout", self.body_read_timeout, secs(30))?,
            keep_alive_timeout: timeout("keep_alive_timeout", self.keep_alive_timeout, secs(60))?,
            shutdown_timeout: timeout("shutdown_timeout", self.shutdown_timeout, secs(30))?,
            max_connections: at_least_one(
                "server.max_connections",
                self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            )?,
            max_headers: at_least_one(
                "server.max_headers",
                self.max_headers.unwrap_or(DEFAULT_MAX_HEADERS),
            )?,
            max_header_size: header_size(self.max_header_size)?,
            http2_max_concurrent_streams: self
                .http2_max_concurrent_streams
                .map_or(Ok(DEFAULT_H2_STREAMS), |n| {
                    at_least_one("server.http2_max_concurrent_streams", n as usize).map(|_| n)
                })?,
            trusted_proxies: ip_nets("server.trusted_proxies", self.trusted_proxies)?,
            rate_limit: self
                .rate_limit
                .map(|r| r.into_rate_limit("server.rate_limit"))
                .transpose()?,
        })
    }
}

fn at_least_one(key: &str, value: usize) -> Result<usize, ConfigError> {
    if value == 0 {
        return Err(invalid(key, "0 is too small (at least 1 is required)"));
    }
    Ok(value)
}

/// `server.max_header_size`: hyper's smallest read buffer is 8 KiB, and a
/// head larger than 1 MiB is no callback's.
fn header_size(raw: Option<RawSize>) -> Result<u64, ConfigError> {
    let key = "server.max_header_size";
    let size = size_or(key, raw, DEFAULT_MAX_HEADER_SIZE)?;
    if !(8 * KIB..=MIB).contains(&size) {
        let message = format!("{size} bytes is outside 8KiB..=1MiB");
        return Err(invalid(key, message));
    }
    Ok(size)
}

/// A list of address blocks such as `["10.0.0.0/8", "2001:db8::/32"]`.
fn ip_nets(key: &str, raw: Option<Vec<String>>) -> Result<Vec<IpNet>, ConfigError> {
    let raw = raw.unwrap_or_default();
    raw.iter()
        .enumerate()
        .map(|(index, text)| {
            text.parse()
                .map_err(|err| invalid(format!("{key}[{index}]"), err))
        })
        .collect()
}

impl RawRateLimit {
    fn into_rate_limit(self, key: &str) -> Result<RateLimit, ConfigError> {
        let (count, per) =
            RateLimit::parse_rate(&self.rate).map_err(|err| invalid(format!("{key}.rate"), err))?;
        let burst = self.burst.unwrap_or(count);
        if burst == 0 {
            return Err(invalid(
                format!("{key}.burst"),
                "0 is too small (at least 1 request must pass)",
            ));
        }
        Ok(RateLimit { count, per, burst })
    }
}

impl RawTls {
    fn into_tls(self, base: &Path) -> Result<TlsConfig, ConfigError> {
        let certs = tls_certs(self.certs, base)?;
        let pair = cert_and_key("server.tls", self.cert, self.key, base)?;
        let (cert, key) = match (pair, certs.first()) {
            (Some(pair), _) => pair,
            (None, Some(first)) => (first.cert.clone(), first.key.clone()),
            (None, None) => {
                let message = "no certificate configured (set cert and key, \
                               or add a [[server.tls.certs]] entry)";
                return Err(invalid("server.tls.cert", message));
            }
        };
        Ok(TlsConfig {
            cert,
            key,
            certs,
            client_ca: optional_path("server.tls.client_ca", self.client_ca.as_deref(), base)?,
            reload_interval: duration_or(
                "server.tls.reload_interval",
                self.reload_interval.as_deref(),
                Duration::from_secs(5),
            )?,
        })
    }
}

/// Validates the `[[server.tls.certs]]` entries; a name may be served by one entry only.
fn tls_certs(raw: Vec<RawTlsCert>, base: &Path) -> Result<Vec<TlsCert>, ConfigError> {
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    let mut certs = Vec::with_capacity(raw.len());
    for (index, entry) in raw.into_iter().enumerate() {
        let prefix = format!("server.tls.certs[{index}]");
        let Some((cert, key)) = cert_and_key(&prefix, entry.cert, entry.key, base)? else {
            return Err(invalid(format!("{prefix}.cert"), "required in every entry"));
        };
        let names = tls_names(&prefix, &entry.names)?;
        for (position, name) in names.iter().enumerate() {
            if let Some(owner) = owners.insert(name.clone(), prefix.clone()) {
                let message = format!("{name:?} is already served by {owner}");
                return Err(invalid(format!("{prefix}.names[{position}]"), message));
            }
        }
        certs.push(TlsCert { names, cert, key });
    }
    Ok(certs)
}

/// A certificate file and its key under `prefix`: both or neither.
fn cert_and_key(
    prefix: &str,
    cert: Option<String>,
    key: Option<String>,
    base: &Path,
) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some((
            resolve_path(&format!("{prefix}.cert"), &cert, base)?,
            resolve_path(&format!("{prefix}.key"), &key, base)?,
        ))),
        (Some(_), None) => Err(invalid(
            format!("{prefix}.key"),
            format!("required when {prefix}.cert is set"),
        )),
        (None, Some(_)) => Err(invalid(
            format!("{prefix}.cert"),
            format!("required when {prefix}.key is set"),
        )),
        (None, None) => Ok(None),
    }
}

/// The names of one `certs` entry, in lower case: DNS names, `*.` allowed in front.
fn tls_names(prefix: &str, names: &[String]) -> Result<Vec<String>, ConfigError> {
    if names.is_empty() {
        let message = "[] is empty (expected at least one DNS name)";
        return Err(invalid(format!("{prefix}.names"), message));
    }
    let mut checked = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let host = name.strip_prefix("*.").unwrap_or(name);
        if !is_dns_name(host) {
            let message = format!(
                "{name:?} is not a DNS name (expected labels of letters, digits and '-', \
                 optionally after \"*.\")"
            );
            return Err(invalid(format!("{prefix}.names[{index}]"), message));
        }
        checked.push(name.to_ascii_lowercase());
    }
    Ok(checked)
}

/// Letters, digits and inner hyphens in dot-separated labels of 1 to 63 bytes.
fn is_dns_name(name: &str) -> bool {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    name.len() <= 253 && name.split('.').all(label_ok)
}

impl RawAdmin {
    fn into_admin(self, server_listen: SocketAddr) -> Result<AdminConfig, ConfigError> {
        let listen = match &self.listen {
            Some(text) => socket_addr("admin.listen", text)?,
            None => AdminConfig::default().listen,
        };
        check_distinct(listen, server_listen)?;
        check_token(listen, self.token.as_deref())?;
        Ok(AdminConfig {
            listen,
            token: self.token,
        })
    }
}

/// The admin listener must not collide with the public one.
fn check_distinct(admin: SocketAddr, server: SocketAddr) -> Result<(), ConfigError> {
    let same_port = admin.port() == server.port() && admin.port() != 0;
    let same_host =
        admin.ip() == server.ip() || admin.ip().is_unspecified() || server.ip().is_unspecified();
    if same_port && same_host {
        let message =
            format!("\"{admin}\" conflicts with server.listen \"{server}\" (must differ)");
        return Err(invalid("admin.listen", message));
    }
    Ok(())
}

/// A token is required off loopback, and never blank when given.
fn check_token(listen: SocketAddr, token: Option<&str>) -> Result<(), ConfigError> {
    if token.is_some_and(|t| !t.trim().is_empty()) {
        return Ok(());
    }
    if !listen.ip().to_canonical().is_loopback() {
        let message = format!("required when admin.listen ({listen}) is not a loopback address");
        return Err(invalid("admin.token", message));
    }
    match token {
        Some(blank) => Err(invalid(
            "admin.token",
            format!("{blank:?} is blank (remove the key to run the admin api without a token)"),
        )),
        None => Ok(()),
    }
}

impl RawJournal {
    fn into_journal(self, base: &Path) -> Result<JournalConfig, ConfigError> {
        const DEFAULT_REJECTED_KEEP: usize = 1000;
        const DEFAULT_REJECTED_BODY_CAP: u64 = 4 * KIB;
        let path = self.path.as_deref().unwrap_or(DEFAULT_JOURNAL_PATH);
        Ok(JournalConfig {
            path: resolve_path("journal.path", path, base)?,
            cache_capacity: size_or(
                "journal.cache_capacity",
                self.cache_capacity,
                DEFAULT_CACHE_CAPACITY,
            )?,
            rejected_keep: self.rejected_keep.unwrap_or(DEFAULT_REJECTED_KEEP),
            rejected_body_cap: size_or(
                "journal.rejected_body_cap",
                self.rejected_body_cap,
                DEFAULT_REJECTED_BODY_CAP,
            )?,
            commit_interval: commit_interval(self.commit_interval.as_deref())?,
        })
    }
}

/// `journal.commit_interval`: zero is allowed (flush as soon as anyone
/// waits); more than a second would only hold every ack back.
fn commit_interval(text: Option<&str>) -> Result<Duration, ConfigError> {
    let key = "journal.commit_interval";
    let Some(text) = text else {
        return Ok(crate::journal::DEFAULT_COMMIT_INTERVAL);
    };
    let value = parse_duration(text)
        .map_err(|err| invalid(key, format!("invalid duration {text:?}: {err}")))?;
    if value > Duration::from_secs(1) {
        return Err(invalid(key, format!("{text:?} is longer than 1s")));
    }
    Ok(value)
}

impl RawRetry {
    /// Overrides the fields of `base` that are set here; `prefix` is the table's dotted key.
    fn apply(&self, base: RetryConfig, prefix: &str) -> Result<RetryConfig, ConfigError> {
        let key = |name: &str| format!("{prefix}.{name}");
        let mut retry = base;
        if let Some(text) = &self.initial_backoff {
            retry.initial_backoff = duration(&key("initial_backoff"), text)?;
        }
        if let Some(text) = &self.max_backoff {
            retry.max_backoff = duration(&key("max_backoff"), text)?;
        }
        if let Some(attempts) = self.max_attempts {
            retry.max_attempts = max_attempts(&key("max_attempts"), attempts)?;
        }
        if let Some(text) = &self.attempt_timeout {
            retry.attempt_timeout = duration(&key("attempt_timeout"), text)?;
        }
        self.check_backoff_order(&retry, prefix)?;
        Ok(retry)
    }

    /// Reports an inverted backoff range on whichever of the two keys this table set.
    fn check_backoff_order(&self, retry: &RetryConfig, prefix: &str) -> Result<(), ConfigError> {
        if retry.initial_backoff <= retry.max_backoff {
            return Ok(());
        }
        let initial = format_duration(retry.initial_backoff);
        let max = format_duration(retry.max_backoff);
        if self.initial_backoff.is_some() {
            let message = format!("\"{initial}\" is longer than max_backoff \"{max}\"");
            Err(invalid(format!("{prefix}.initial_backoff"), message))
        } else {
            let message = format!("\"{max}\" is shorter than initial_backoff \"{initial}\"");
            Err(invalid(format!("{prefix}.max_backoff"), message))
        }
    }
}

fn max_attempts(key: &str, attempts: u32) -> Result<u32, ConfigError> {
    if attempts == 0 {
        return Err(invalid(
            key,
            "0 is too small (at least 1 attempt is required)",
        ));
    }
    Ok(attempts)
}

impl RawDelivery {
    fn into_delivery(self, base: &Path) -> Result<DeliveryConfig, ConfigError> {
        let defaults = DeliveryConfig::default();
        let concurrency = self.concurrency.unwrap_or(defaults.concurrency);
        Ok(DeliveryConfig {
            concurrency: concurrency_limit("delivery.concurrency", concurrency)?,
            connect_timeout: duration_or(
                "delivery.connect_timeout",
                self.connect_timeout.as_deref(),
                defaults.connect_timeout,
            )?,
            ca: optional_path("delivery.ca", self.ca.as_deref(), base)?,
        })
    }
}

fn concurrency_limit(key: &str, limit: usize) -> Result<usize, ConfigError> {
    if limit == 0 {
        return Err(invalid(
            key,
            "0 is too small (at least 1 attempt must be allowed in flight)",
        ));
    }
    Ok(limit)
}

fn build_routes(
    raw: BTreeMap<String, RawRoute>,
    server: &ServerConfig,
    retry: &RetryConfig,
    base: &Path,
) -> Result<BTreeMap<String, RouteConfig>, ConfigError> {
    if raw.is_empty() {
        return Err(invalid(
            "routes",
            "no routes configured (add a table like [routes.wav])",
        ));
    }
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    let mut routes = BTreeMap::new();
    for (name, raw_route) in raw {
        let route = raw_route.into_route(&name, server, retry, base)?;
        if let Some(owner) = owners.get(&route.path) {
            let message = format!("{:?} is already used by route {owner:?}", route.path);
            return Err(invalid(
                format!("{}.path", join_key("routes", &name)),
                message,
            ));
        }
        owners.insert(route.path.clone(), name.clone());
        routes.insert(name, route);
    }
    Ok(routes)
}

impl RawRoute {
    fn into_route(
        self,
        name: &str,
        server: &ServerConfig,
        retry: &RetryConfig,
        base: &Path,
    ) -> Result<RouteConfig, ConfigError> {
        let key = join_key("routes", name);
        check_route_name(&key, name)?;
        let retry = match &self.retry {
            Some(overrides) => overrides.apply(*retry, &format!("{key}.retry"))?,
            None => *retry,
        };
        let path = route_path(&format!("{key}.path"), self.path)?;
        let verify = match self.verify {
            Some(raw) => Some(raw.into_verify(&format!("{key}.verify"), &path)?),
            None if path.ends_with("/{token}") => {
                let message = format!(
                    "{path:?} ends in {{token}}, which only a verify table with \
                     scheme = \"token\" checks"
                );
                return Err(invalid(format!("{key}.path"), message));
            }
            None => None,
        };
        Ok(RouteConfig {
            name: name.to_owned(),
            path,
            methods: methods(&format!("{key}.methods"), self.methods)?,
            destinations: destinations(&format!("{key}.destinations"), self.destinations, base)?,
            retry,
            task_id: task_id_pointers(&format!("{key}.task_id"), self.task_id)?,
            max_body: max_body_or(&format!("{key}.max_body"), self.max_body, server.max_body)?,
            allow_ips: ip_nets(&format!("{key}.allow_ips"), self.allow_ips)?,
            rate_limit: match self.rate_limit {
                Some(raw) => Some(raw.into_rate_limit(&format!("{key}.rate_limit"))?),
                None => server.rate_limit,
            },
            log_bodies: self.log_bodies.unwrap_or(false),
            verify,
        })
    }
}

fn check_route_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(invalid(key, "route name \"\" is empty"));
    }
    if !is_bare_key(name) {
        let message = format!("route name {name:?} may only contain A-Z, a-z, 0-9, '_' and '-'");
        return Err(invalid(key, message));
    }
    Ok(())
}

fn route_path(key: &str, path: String) -> Result<String, ConfigError> {
    if !path.starts_with('/') {
        return Err(invalid(key, format!("{path:?} must start with '/'")));
    }
    if path.contains(['?', '#']) {
        return Err(invalid(
            key,
            format!("{path:?} must be a plain path without '?' or '#'"),
        ));
    }
    let plain = path.strip_suffix("/{token}").unwrap_or(&path);
    if plain.contains(['{', '}']) {
        let message = format!("{path:?} may hold '{{token}}' only as its whole last segment");
        return Err(invalid(key, message));
    }
    if http::uri::PathAndQuery::try_from(plain).is_err() {
        return Err(invalid(key, format!("{path:?} is not a valid url path")));
    }
    Ok(path)
}

fn methods(key: &str, raw: Option<Vec<String>>) -> Result<Vec<Method>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(vec![Method::POST]);
    };
    if raw.is_empty() {
        return Err(invalid(
            key,
            "[] lists no methods (remove the key for the default [\"POST\"])",
        ));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (index, text) in raw.iter().enumerate() {
        let item_key = format!("{key}[{index}]");
        let method = Method::from_bytes(text.to_ascii_uppercase().as_bytes())
            .map_err(|_| invalid(&item_key, format!("{text:?} is not an http method")))?;
        if out.contains(&method) {
            return Err(invalid(item_key, format!("{text:?} is listed twice")));
        }
        out.push(method);
    }
    Ok(out)
}

fn task_id_pointers(key: &str, raw: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_TASK_ID.iter().map(|p| (*p).to_owned()).collect());
    };
    if raw.is_empty() {
        return Err(invalid(
            key,
            "[] lists no json pointers (remove the key for the defaults)",
        ));
    }
    for (index, pointer) in raw.iter().enumerate() {
        check_json_pointer(&format!("{key}[{index}]"), pointer)?;
    }
    Ok(raw)
}

fn check_json_pointer(key: &str, pointer: &str) -> Result<(), ConfigError> {
    if !pointer.starts_with('/') {
        let message = format!(
            "{pointer:?} is not a json pointer (must start with '/', like \"/data/task_id\")"
        );
        return Err(invalid(key, message));
    }
    if pointer
        .split('~')
        .skip(1)
        .any(|rest| !rest.starts_with(['0', '1']))
    {
        let message = format!("{pointer:?} has a bad escape ('~' must be followed by 0 or 1)");
        return Err(invalid(key, message));
    }
    Ok(())
}

fn destinations(
    key: &str,
    raw: Vec<RawDestination>,
    base: &Path,
) -> Result<Vec<Destination>, ConfigError> {
    if raw.is_empty() {
        return Err(invalid(
            key,
            "[] lists no destinations (at least one is required)",
        ));
    }
    let mut out: Vec<Destination> = Vec::with_capacity(raw.len());
    for (index, item) in raw.into_iter().enumerate() {
        let item_key = format!("{key}[{index}]");
        let destination = item.into_destination(&item_key, base)?;
        if let Some(first) = out.iter().position(|d| d.url == destination.url) {
            let message = format!("\"{}\" is already listed as [{first}]", destination.url);
            return Err(invalid(item_key, message));
        }
        out.push(destination);
    }
    Ok(out)
}

impl RawDestination {
    fn into_destination(self, key: &str, base: &Path) -> Result<Destination, ConfigError> {
        match self {
            RawDestination::Url(url) => Ok(Destination {
                url: destination_url(key, &url)?,
                ca: None,
                timeout: None,
                concurrency: None,
            }),
            RawDestination::Table(table) => table.into_destination(key, base),
        }
    }
}

impl RawDestinationTable {
    fn into_destination(self, key: &str, base: &Path) -> Result<Destination, ConfigError> {
        let timeout_key = format!("{key}.timeout");
        let concurrency_key = format!("{key}.concurrency");
        Ok(Destination {
            url: destination_url(&format!("{key}.url"), &self.url)?,
            ca: optional_path(&format!("{key}.ca"), self.ca.as_deref(), base)?,
            timeout: self
                .timeout
                .map(|t| duration(&timeout_key, &t))
                .transpose()?,
            concurrency: self
                .concurrency
                .map(|n| concurrency_limit(&concurrency_key, n))
                .transpose()?,
        })
    }
}

fn destination_url(key: &str, text: &str) -> Result<Uri, ConfigError> {
    let uri: Uri = text
        .parse()
        .map_err(|err| invalid(key, format!("{text:?} is not a valid url: {err}")))?;
    let Some(scheme) = uri.scheme_str() else {
        let message = format!("{text:?} is not an absolute url (expected http:// or https://)");
        return Err(invalid(key, message));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        let message = format!("unsupported scheme {scheme:?} in {text:?} (expected http or https)");
        return Err(invalid(key, message));
    }
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Err(invalid(key, format!("{text:?} has no host")));
    };
    if authority.as_str().contains('@') {
        // Do not echo the url: the user info may hold a password.
        let message = format!(
            "url for host {:?} has user info, which is not supported",
            authority.host()
        );
        return Err(invalid(key, message));
    }
    Ok(uri)
}

fn socket_addr(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        invalid(
            key,
            format!("{text:?} is not a socket address (like 127.0.0.1:8443)"),
        )
    })
}

pub(crate) fn resolve_path(key: &str, text: &str, base: &Path) -> Result<PathBuf, ConfigError> {
    if text.is_empty() {
        return Err(invalid(key, "\"\" is empty (expected a file path)"));
    }
    let path = Path::new(text);
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    })
}

pub(crate) fn optional_path(
    key: &str,
    text: Option<&str>,
    base: &Path,
) -> Result<Option<PathBuf>, ConfigError> {
    text.map(|t| resolve_path(key, t, base)).transpose()
}

/// Parses a duration that must be longer than zero.
pub(crate) fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    let value = parse_duration(text)
        .map_err(|err| invalid(key, format!("invalid duration {text:?}: {err}")))?;
    if value.is_zero() {
        return Err(invalid(key, format!("{text:?} must be longer than zero")));
    }
    Ok(value)
}

pub(crate) fn duration_or(
    key: &str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    text.map_or(Ok(default), |t| duration(key, t))
}

/// Converts a size that must be at least one byte.
fn size_or(key: &str, raw: Option<RawSize>, default: u64) -> Result<u64, ConfigError> {
    let bytes = match raw {
        None => return Ok(default),
        Some(RawSize::Bytes(n)) => {
            u64::try_from(n).map_err(|_| invalid(key, format!("{n} is negative")))?
        }
        Some(RawSize::Text(text)) => parse_size(&text)
            .map_err(|err| invalid(key, format!("invalid size {text:?}: {err}")))?,
    };
    if bytes == 0 {
        return Err(invalid(key, "0 is too small (must be at least 1 byte)"));
    }
    Ok(bytes)
}

/// A `max_body`: a size of at most [`MAX_BODY_LIMIT`].
fn max_body_or(key: &str, raw: Option<RawSize>, default: u64) -> Result<u64, ConfigError> {
    let bytes = size_or(key, raw, default)?;
    if bytes > MAX_BODY_LIMIT {
        return Err(invalid(
            key,
            format!("{bytes} bytes is more than the 1GiB allowed"),
        ));
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------
// Duration and size syntax.

/// Parses `"250ms"`, `"30s"`, `"10m"`, `"2h"`, `"14d"` and compounds like `"1h30m"`
/// (units largest first, each at most once). Whole numbers only; no spaces or signs.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    check_number_syntax(text)?;
    let mut total_ms: u64 = 0;
    let mut last_rank: Option<usize> = None;
    let mut rest = text;
    while !rest.is_empty() {
        let (number, unit, tail) = split_term(rest)?;
        let (rank, unit_ms) = duration_unit(unit)?;
        if last_rank.is_some_and(|last| rank <= last) {
            return Err(format!(
                "unit {unit:?} is repeated or out of order (largest first, like \"1h30m\")"
            ));
        }
        last_rank = Some(rank);
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| "value is too large".to_owned())?;
        rest = tail;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Parses a byte size: `"100B"`, `"512KiB"`, `"1MiB"`, `"1GiB"` (binary), `"10KB"`, `"10MB"`,
/// `"1GB"` (decimal), or a bare number of bytes like `"4096"`. Units are case-insensitive.
pub fn parse_size(text: &str) -> Result<u64, String> {
    check_number_syntax(text)?;
    let (number, unit, tail) = split_term(text)?;
    if !tail.is_empty() {
        return Err(format!(
            "unexpected {tail:?} after the unit (expected one number and unit)"
        ));
    }
    let multiplier = size_unit(unit).ok_or_else(|| {
        format!("unknown unit {unit:?} (expected B, KB, MB, GB, KiB, MiB or GiB)")
    })?;
    number
        .checked_mul(multiplier)
        .ok_or_else(|| "value is too large".to_owned())
}

fn check_number_syntax(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("empty value".to_owned());
    }
    if text.starts_with('-') {
        return Err("negative values are not allowed".to_owned());
    }
    if text.contains('.') {
        return Err("fractions are not supported (use whole numbers, like \"1h30m\")".to_owned());
    }
    Ok(())
}

/// Splits `"10ms5"` into `(10, "ms", "5")`: a number, the unit after it and the rest.
fn split_term(text: &str) -> Result<(u64, &str, &str), String> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits == 0 {
        return Err(format!("expected a number at {text:?}"));
    }
    let unit_end = text[digits..]
        .find(|c: char| c.is_ascii_digit())
        .map_or(text.len(), |i| digits + i);
    let number = text[..digits]
        .parse::<u64>()
        .map_err(|_| format!("{:?} is too large", &text[..digits]))?;
    Ok((number, &text[digits..unit_end], &text[unit_end..]))
}

fn duration_unit(unit: &str) -> Result<(usize, u64), String> {
    if unit.is_empty() {
        return Err("missing unit (expected ms, s, m, h or d, like \"30s\")".to_owned());
    }
    DURATION_UNITS
        .iter()
        .position(|(name, _)| *name == unit)
        .map(|rank| (rank, DURATION_UNITS[rank].1))
        .ok_or_else(|| format!("unknown unit {unit:?} (expected ms, s, m, h or d)"))
}

fn size_unit(unit: &str) -> Option<u64> {
    match unit.to_ascii_lowercase().as_str() {
        "" | "b" => Some(1),
        "kb" => Some(1_000),
        "mb" => Some(1_000_000),
        "gb" => Some(1_000_000_000),
        "kib" => Some(KIB),
        "mib" => Some(MIB),
        "gib" => Some(GIB),
        _ => None,
    }
}

/// Formats a duration the way the config file writes it, like "1h30m" or "500ms".
fn format_duration(value: Duration) -> String {
    let mut rest = value.as_millis();
    if rest == 0 {
        return if value.is_zero() {
            "0s".to_owned()
        } else {
            format!("{value:?}")
        };
    }
    let mut out = String::new();
    for (name, unit_ms) in DURATION_UNITS {
        let count = rest / u128::from(unit_ms);
        if count > 0 {
            out.push_str(&format!("{count}{name}"));
            rest %= u128::from(unit_ms);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKELETON: &str = r#"
[server]
listen = "127.0.0.1:8443"        # public listener
[server.tls]                      # absent => plain HTTP
cert = "certs/relay.crt"
key = "certs/relay.key"
[admin]
listen = "127.0.0.1:9090"
[journal]
path = "data/journal"
[retry]
initial_backoff = "1s"
max_backoff = "10m"
max_attempts = 12
attempt_timeout = "10s"
[routes.wav]
path = "/callbacks/wav"
destinations = ["http://127.0.0.1:3000/hooks/wav"]
# retry = { max_attempts = 5 }
"#;

    const BASE: &str = "/etc/relay";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new(BASE), &no_env)
    }

    fn parse_ok(text: &str) -> Config {
        parse(text).unwrap_or_else(|err| panic!("expected {text:?} to parse, got: {err}"))
    }

    /// Asserts that parsing fails with a message containing every part.
    fn assert_err(text: &str, parts: &[&str]) -> ConfigError {
        let err = parse(text).expect_err("expected an error");
        let message = err.to_string();
        for part in parts {
            assert!(
                message.contains(part),
                "{message:?} should contain {part:?}"
            );
        }
        err
    }

    /// A minimal valid config with extra lines in [server], in [routes.wav] and after it.
    fn config(server: &str, route: &str, tail: &str) -> String {
        format!(
            "[server]\nlisten = \"127.0.0.1:8080\"\n{server}\n\
             [routes.wav]\npath = \"/callbacks/wav\"\n\
             destinations = [\"http://127.0.0.1:3000/hooks/wav\"]\n{route}\n{tail}\n"
        )
    }

    fn route_with(route: &str) -> String {
        config("", route, "")
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn skeleton_parses_with_expected_values() {
        let config = parse_ok(SKELETON);
        assert_eq!(
            config.server.listen,
            "127.0.0.1:8443".parse().expect("addr")
        );
        let tls = config.server.tls.expect("tls table");
        assert_eq!(tls.cert, PathBuf::from("/etc/relay/certs/relay.crt"));
        assert_eq!(tls.key, PathBuf::from("/etc/relay/certs/relay.key"));
        assert_eq!(config.admin.listen, "127.0.0.1:9090".parse().expect("addr"));
        assert_eq!(config.admin.token, None);
        assert_eq!(
            config.journal.path,
            PathBuf::from("/etc/relay/data/journal")
        );
        assert_eq!(config.retry, RetryConfig::default());
        let route = &config.routes["wav"];
        assert_eq!(route.name, "wav");
        assert_eq!(route.path, "/callbacks/wav");
        assert_eq!(route.methods, vec![Method::POST]);
        assert_eq!(route.retry, config.retry);
        assert_eq!(route.destinations.len(), 1);
        assert_eq!(route.destinations[0].url, "http://127.0.0.1:3000/hooks/wav");
    }

    #[test]
    fn shipped_config_parses() {
        let config = parse_ok(include_str!("../config.toml"));
        assert_eq!(
            config.server.listen,
            "127.0.0.1:8080".parse().expect("addr")
        );
        assert_eq!(config.server.tls, None);
        assert_eq!(config.admin.listen, "127.0.0.1:9090".parse().expect("addr"));
        assert_eq!(
            config.journal.path,
            PathBuf::from("/etc/relay/data/journal")
        );
        let route = &config.routes["wav"];
        assert_eq!(route.path, "/callbacks/wav");
        assert_eq!(route.destinations[0].url, "http://127.0.0.1:3000/hooks/wav");
        assert_eq!(config.routes.len(), 1);
    }

    #[test]
    fn shipped_config_spells_out_the_defaults() {
        let shipped = parse_ok(include_str!("../config.toml"));
        let minimal = parse_ok(&config("", "", ""));
        assert_eq!(shipped, minimal);
    }

    #[test]
    fn defaults_fill_every_optional_key() {
        let config = parse_ok(&config("", "", ""));
        let server = &config.server;
        assert_eq!(server.tls, None);
        assert_eq!(server.max_body, 1024 * 1024);
        assert_eq!(server.tls_handshake_timeout, secs(10));
        assert_eq!(server.header_read_timeout, secs(10));
        assert_eq!(server.body_read_timeout, secs(30));
        assert_eq!(server.keep_alive_timeout, secs(60));
        assert_eq!(server.shutdown_timeout, secs(30));
        assert_eq!(config.admin, AdminConfig::default());
        assert_eq!(config.admin.listen, "127.0.0.1:9090".parse().expect("addr"));
        assert_eq!(
            config.journal.path,
            PathBuf::from("/etc/relay/data/journal")
        );
        assert_eq!(config.journal.cache_capacity, 24 * 1024 * 1024);
        assert_eq!(config.journal.rejected_keep, 1000);
        assert_eq!(config.journal.rejected_body_cap, 4096);
        assert_eq!(config.journal.commit_interval, Duration::from_millis(1));
        let retry = RetryConfig {
            initial_backoff: secs(1),
            max_backoff: secs(600),
            max_attempts: 12,
            attempt_timeout: secs(10),
        };
        assert_eq!(config.retry, retry);
        assert_eq!(config.delivery.concurrency, 32);
        assert_eq!(config.delivery.connect_timeout, secs(5));
        assert_eq!(config.delivery.ca, None);
        let route = &config.routes["wav"];
        assert_eq!(route.methods, vec![Method::POST]);
        assert_eq!(route.retry, retry);
        assert_eq!(
            route.task_id,
            ["/data/task_id", "/data/taskId", "/task_id", "/taskId"]
        );
        let destination = &route.destinations[0];
        assert_eq!((destination.ca.clone(), destination.timeout), (None, None));
        assert_eq!(destination.concurrency, None);
    }

    #[test]
    fn the_rejected_ring_is_configured_in_the_journal_table() {
        let tail = "[journal]\nrejected_keep = 0\nrejected_body_cap = \"1KiB\"";
        let journal = parse_ok(&config("", "", tail)).journal;
        assert_eq!(journal.rejected_keep, 0, "0 keeps none");
        assert_eq!(journal.rejected_body_cap, 1024);

        assert_err(
            &config("", "", "[journal]\nrejected_body_cap = 0"),
            &["journal.rejected_body_cap: 0 is too small"],
        );
        assert_err(
            &config("", "", "[journal]\nrejected_body_cap = \"4 KiB\""),
            &["journal.rejected_body_cap: invalid size \"4 KiB\""],
        );
        assert_err(
            &config("", "", "[journal]\nrejected_keep = -1"),
            &["rejected_keep"],
        );
    }

    #[test]
    fn explicit_values_override_defaults() {
        let server = "max_body = 2048\nkeep_alive_timeout = \"90s\"\nshutdown_timeout = \"1m\"";
        let tail = "[journal]\ncache_capacity = \"1GiB\"\n\
                    [delivery]\nconcurrency = 4\nconnect_timeout = \"250ms\"\nca = \"ca.pem\"\n\
                    [admin]\nlisten = \"0.0.0.0:9191\"\ntoken = \"s3cret\"";
        let config = parse_ok(&config(server, "", tail));
        assert_eq!(config.server.max_body, 2048);
        assert_eq!(config.server.keep_alive_timeout, secs(90));
        assert_eq!(config.server.shutdown_timeout, secs(60));
        assert_eq!(config.journal.cache_capacity, 1 << 30);
        assert_eq!(config.delivery.concurrency, 4);
        assert_eq!(config.delivery.connect_timeout, ms(250));
        assert_eq!(config.delivery.ca, Some(PathBuf::from("/etc/relay/ca.pem")));
        assert_eq!(config.admin.token.as_deref(), Some("s3cret"));
    }

    #[test]
    fn route_retry_override_merges_with_global_retry() {
        let tail = "[retry]\ninitial_backoff = \"2s\"\nmax_attempts = 20";
        let text = config(
            "",
            "retry = { max_attempts = 5, attempt_timeout = \"3s\" }",
            tail,
        );
        let config = parse_ok(&text);
        let global = config.retry;
        assert_eq!(global.initial_backoff, secs(2));
        assert_eq!(global.max_attempts, 20);
        let route = config.routes["wav"].retry;
        assert_eq!(route.initial_backoff, secs(2));
        assert_eq!(route.max_backoff, secs(600));
        assert_eq!(route.max_attempts, 5);
        assert_eq!(route.attempt_timeout, secs(3));
    }

    #[test]
    fn destinations_accept_strings_and_tables_mixed() {
        let text = r#"
[server]
listen = "127.0.0.1:8080"
[routes.wav]
path = "/callbacks/wav"
destinations = [
  "http://127.0.0.1:3000/hooks/wav",
  { url = "https://hooks.example.com/wav", ca = "certs/ca.pem", timeout = "5s", concurrency = 8 },
  { url = "https://other.example.com/", ca = "/abs/ca.pem" },
]
"#;
        let config = parse_ok(text);
        let list = &config.routes["wav"].destinations;
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].url, "http://127.0.0.1:3000/hooks/wav");
        assert_eq!(list[0].ca, None);
        assert_eq!(list[1].url, "https://hooks.example.com/wav");
        assert_eq!(list[1].ca, Some(PathBuf::from("/etc/relay/certs/ca.pem")));
        assert_eq!(list[1].timeout, Some(secs(5)));
        assert_eq!(list[1].concurrency, Some(8));
        assert_eq!(list[2].ca, Some(PathBuf::from("/abs/ca.pem")));
        assert_eq!((list[2].timeout, list[2].concurrency), (None, None));
    }

    #[test]
    fn methods_are_case_insensitive_and_stored_uppercase() {
        let config = parse_ok(&route_with("methods = [\"post\", \"Put\", \"PATCH\"]"));
        assert_eq!(
            config.routes["wav"].methods,
            vec![Method::POST, Method::PUT, Method::PATCH]
        );
    }

    #[test]
    fn task_id_pointers_can_be_replaced() {
        let config = parse_ok(&route_with("task_id = [\"/id\", \"/data/a~1b\"]"));
        assert_eq!(config.routes["wav"].task_id, ["/id", "/data/a~1b"]);
    }

    #[test]
    fn several_routes_parse() {
        let tail = "[routes.mp4-v2_x]\npath = \"/callbacks/mp4\"\n\
                    destinations = [\"https://example.com/mp4\"]";
        let config = parse_ok(&config("", "", tail));
        let names: Vec<&str> = config.routes.keys().map(String::as_str).collect();
        assert_eq!(names, ["mp4-v2_x", "wav"]);
        assert_eq!(config.routes["mp4-v2_x"].name, "mp4-v2_x");
    }

    #[test]
    fn relative_paths_resolve_against_base_dir_and_absolute_paths_stay() {
        let text = "[server]\nlisten = \"127.0.0.1:8080\"\n\
                    [server.tls]\ncert = \"/abs/relay.crt\"\nkey = \"relay.key\"\n\
                    [journal]\npath = \"/var/lib/relay\"\n\
                    [routes.wav]\npath = \"/w\"\ndestinations = [\"http://h/\"]\n";
        let config = Config::parse(text, Path::new("conf/dir"), &no_env).expect("parses");
        let tls = config.server.tls.expect("tls");
        assert_eq!(tls.cert, PathBuf::from("/abs/relay.crt"));
        assert_eq!(tls.key, PathBuf::from("conf/dir/relay.key"));
        assert_eq!(config.journal.path, PathBuf::from("/var/lib/relay"));
    }

    #[test]
    fn default_journal_path_resolves_against_base_dir() {
        let text = config("", "", "");
        let config = Config::parse(&text, Path::new("/srv/relay"), &no_env).expect("parses");
        assert_eq!(
            config.journal.path,
            PathBuf::from("/srv/relay/data/journal")
        );
    }

    #[test]
    fn load_reads_file_and_resolves_against_its_directory() {
        let dir = std::env::temp_dir().join(format!("cfgtest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let file = dir.join("relay.toml");
        std::fs::write(&file, SKELETON).expect("write config");
        let config = Config::load(&file).expect("loads");
        assert_eq!(config.journal.path, dir.join("data/journal"));
        std::fs::write(
            &file,
            "[server]\nlisten = \"nope\"\n[routes.wav]\npath = \"/w\"\n\
                               destinations = [\"http://h/\"]\n",
        )
        .expect("write config");
        let message = Config::load(&file).expect_err("invalid").to_string();
        let expected = format!("{}: server.listen: \"nope\"", file.display());
        assert!(message.starts_with(&expected), "{message:?}");
        std::fs::remove_dir_all(&dir).expect("remove temp dir");
    }

    #[test]
    fn load_reports_missing_file_with_its_path() {
        let err = Config::load(Path::new("/nonexistent/relay.toml")).expect_err("missing file");
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(
            err.to_string()
                .starts_with("/nonexistent/relay.toml: cannot read config file")
        );
    }

    // ---- env substitution --------------------------------------------------------------

    fn test_env(name: &str) -> Option<String> {
        match name {
            "HOOK_HOST" => Some("hooks.internal:3000".to_owned()),
            "PORT" => Some("8081".to_owned()),
            "TOKEN" => Some("t0k3n".to_owned()),
            "EMPTY" => Some(String::new()),
            "LOOP" => Some("${PORT}".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn env_vars_are_substituted_in_string_values() {
        let text = r#"
[server]
listen = "127.0.0.1:${PORT}"   # ${NOT_SET} in a comment is ignored
[admin]
token = "${TOKEN}"
[routes.wav]
path = "/callbacks/wav${EMPTY}"
destinations = ["http://${HOOK_HOST}/a", { url = "https://${HOOK_HOST}/b" }]
"#;
        let config = Config::parse(text, Path::new(BASE), &test_env).expect("parses");
        assert_eq!(config.server.listen.port(), 8081);
        assert_eq!(config.admin.token.as_deref(), Some("t0k3n"));
        let route = &config.routes["wav"];
        assert_eq!(route.path, "/callbacks/wav");
        assert_eq!(route.destinations[0].url, "http://hooks.internal:3000/a");
        assert_eq!(route.destinations[1].url, "https://hooks.internal:3000/b");
    }

    #[test]
    fn env_values_are_not_expanded_again() {
        let text = config("", "", "[admin]\ntoken = \"${LOOP}\"");
        let config = Config::parse(&text, Path::new(BASE), &test_env).expect("parses");
        assert_eq!(config.admin.token.as_deref(), Some("${PORT}"));
    }

    #[test]
    fn missing_env_var_names_the_var_and_the_key() {
        let text = "[server]\nlisten = \"127.0.0.1:8080\"\n[routes.wav]\npath = \"/w\"\n\
                    destinations = [\"http://${HOOK_HOST}/a\", { url = \"http://${NOPE}/\" }]\n";
        let err = Config::parse(text, Path::new(BASE), &test_env).expect_err("missing var");
        match &err {
            ConfigError::MissingEnv { var, key, .. } => {
                assert_eq!(var, "NOPE");
                assert_eq!(key, "routes.wav.destinations[1].url");
            }
            other => panic!("unexpected error {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("NOPE") && message.contains("routes.wav.destinations[1].url"));
        let text = config("", "", "").replace("http://127.0.0.1:3000", "http://${X}");
        assert_err(&text, &["routes.wav.destinations[0]", "\"X\"", "not set"]);
    }

    #[test]
    fn malformed_env_references_are_errors() {
        assert_err(
            &config("", "", "[admin]\ntoken = \"${TOKEN\""),
            &["admin.token", "unterminated", "${TOKEN"],
        );
        assert_err(
            &config("", "", "[admin]\ntoken = \"${1X}\""),
            &[
                "admin.token",
                "\"1X\" is not a valid environment variable name",
            ],
        );
    }

    // ---- validation errors -------------------------------------------------------------

    #[test]
    fn unsupported_destination_scheme_is_rejected() {
        let text = config("", "", "").replace("http://127.0.0.1:3000/hooks/wav", "ftp://x/y");
        assert_err(
            &text,
            &[
                "routes.wav.destinations[0]: unsupported scheme \"ftp\" in \"ftp://x/y\" \
             (expected http or https)",
            ],
        );
    }

    #[test]
    fn malformed_destination_urls_are_rejected() {
        let cases = [
            ("/relative/path", "is not an absolute url"),
            ("http://exa mple/", "is not a valid url"),
            ("http://user:pw@example.com/", "has user info"),
        ];
        for (url, expected) in cases {
            let text = config("", "", "").replace("http://127.0.0.1:3000/hooks/wav", url);
            let err = assert_err(&text, &["routes.wav.destinations[0]", expected]);
            assert!(!err.to_string().contains("pw"), "{err} leaks the password");
        }
        let text = route_with("").replace(
            "destinations = [\"http://127.0.0.1:3000/hooks/wav\"]",
            "destinations = [{ url = \"gopher://h/\" }]",
        );
        assert_err(&text, &["routes.wav.destinations[0].url", "\"gopher\""]);
    }

    #[test]
    fn destination_list_must_be_non_empty_and_unique() {
        let text = route_with("").replace(
            "[\"http://127.0.0.1:3000/hooks/wav\"]",
            "[\"http://h/a\", \"http://h/a\"]",
        );
        assert_err(
            &text,
            &[
                "routes.wav.destinations[1]",
                "\"http://h/a\" is already listed",
            ],
        );
        let text = route_with("").replace("[\"http://127.0.0.1:3000/hooks/wav\"]", "[]");
        assert_err(&text, &["routes.wav.destinations", "no destinations"]);
    }

    #[test]
    fn destination_table_values_are_validated() {
        let table = |fields: &str| {
            route_with("").replace(
                "[\"http://127.0.0.1:3000/hooks/wav\"]",
                &format!("[{{ url = \"http://h/\", {fields} }}]"),
            )
        };
        assert_err(
            &table("concurrency = 0"),
            &["routes.wav.destinations[0].concurrency", "0"],
        );
        assert_err(
            &table("timeout = \"0s\""),
            &[
                "routes.wav.destinations[0].timeout",
                "\"0s\" must be longer than zero",
            ],
        );
        assert_err(
            &table("timeout = \"5\""),
            &["routes.wav.destinations[0].timeout: invalid duration \"5\""],
        );
        assert_err(
            &table("ca = \"\""),
            &["routes.wav.destinations[0].ca", "empty"],
        );
    }

    #[test]
    fn inverted_backoff_range_is_rejected() {
        let tail = "[retry]\ninitial_backoff = \"1s\"\nmax_backoff = \"500ms\"";
        assert_err(
            &config("", "", tail),
            &["retry.initial_backoff: \"1s\" is longer than max_backoff \"500ms\""],
        );
        let tail = "[retry]\nmax_backoff = \"500ms\"";
        assert_err(
            &config("", "", tail),
            &["retry.max_backoff: \"500ms\" is shorter than initial_backoff \"1s\""],
        );
        let route = "retry = { initial_backoff = \"1h30m\" }";
        assert_err(
            &route_with(route),
            &["routes.wav.retry.initial_backoff: \"1h30m\" is longer than max_backoff \"10m\""],
        );
    }

    #[test]
    fn retry_values_are_range_checked() {
        assert_err(
            &config("", "", "[retry]\nmax_attempts = 0"),
            &["retry.max_attempts: 0"],
        );
        assert_err(
            &route_with("retry = { max_attempts = 0 }"),
            &["routes.wav.retry.max_attempts: 0"],
        );
        assert_err(
            &config("", "", "[retry]\nattempt_timeout = \"0ms\""),
            &["retry.attempt_timeout: \"0ms\" must be longer than zero"],
        );
        assert_err(
            &config("", "", "[retry]\nmax_backoff = \"10 minutes\""),
            &["retry.max_backoff: invalid duration \"10 minutes\": "],
        );
        assert_err(
            &config("", "", "[retry]\nmax_attempts = -1"),
            &["max_attempts", "-1"],
        );
    }

    #[test]
    fn duplicate_route_paths_are_rejected() {
        let tail = "[routes.a]\npath = \"/callbacks/wav\"\ndestinations = [\"http://h/\"]\n\
                    [routes.b]\npath = \"/callbacks/wav\"\ndestinations = [\"http://h/\"]";
        let text = format!("[server]\nlisten = \"127.0.0.1:8080\"\n{tail}\n");
        assert_err(
            &text,
            &["routes.b.path: \"/callbacks/wav\" is already used by route \"a\""],
        );
    }

    #[test]
    fn route_paths_are_validated() {
        let with_path =
            |path: &str| route_with("").replace("\"/callbacks/wav\"", &format!("{path:?}"));
        assert_err(
            &with_path("callbacks/wav"),
            &["routes.wav.path: \"callbacks/wav\" must start with '/'"],
        );
        assert_err(
            &with_path("/a?b=1"),
            &["routes.wav.path: \"/a?b=1\"", "without '?'"],
        );
        assert_err(
            &with_path("/a b"),
            &["routes.wav.path: \"/a b\" is not a valid url path"],
        );
    }

    #[test]
    fn server_listen_must_be_a_socket_address() {
        let text = config("", "", "").replace("\"127.0.0.1:8080\"", "\"nope\"");
        assert_err(
            &text,
            &["server.listen: \"nope\" is not a socket address (like 127.0.0.1:8443)"],
        );
        assert_err(
            &config("", "", "[admin]\nlisten = \"localhost\""),
            &["admin.listen: \"localhost\" is not a socket address"],
        );
    }

    #[test]
    fn server_sizes_and_timeouts_are_validated() {
        assert_err(
            &config("max_body = 0", "", ""),
            &["server.max_body: 0 is too small"],
        );
        assert_err(
            &config("max_body = \"0KiB\"", "", ""),
            &["server.max_body: 0"],
        );
        assert_err(
            &config("max_body = -5", "", ""),
            &["server.max_body: -5 is negative"],
        );
        assert_err(
            &config("max_body = \"1 MiB\"", "", ""),
            &["server.max_body: invalid size \"1 MiB\": "],
        );
        assert_err(&config("max_body = 1.5", "", ""), &["max_body", "1.5"]);
        assert_err(
            &config("max_body = \"5GiB\"", "", ""),
            &["server.max_body: 5368709120 bytes is more than the 1GiB allowed"],
        );
        assert_err(
            &config("header_read_timeout = \"0s\"", "", ""),
            &["server.header_read_timeout: \"0s\" must be longer than zero"],
        );
        assert_err(
            &config("shutdown_timeout = \"soon\"", "", ""),
            &["server.shutdown_timeout: invalid duration \"soon\""],
        );
        assert_err(
            &config("", "", "[journal]\ncache_capacity = \"64XB\""),
            &["journal.cache_capacity: invalid size \"64XB\": unknown unit \"XB\""],
        );
        assert_err(
            &config("", "", "[delivery]\nconcurrency = 0"),
            &["delivery.concurrency: 0"],
        );
        assert_err(
            &config("", "", "[delivery]\nconnect_timeout = \"0s\""),
            &["delivery.connect_timeout: \"0s\""],
        );
        assert_err(
            &config("", "", "[journal]\npath = \"\""),
            &["journal.path: \"\" is empty"],
        );
    }

    #[test]
    fn tls_table_needs_both_files() {
        assert_err(
            &config("[server.tls]\ncert = \"c.pem\"", "", ""),
            &["server.tls.key: required when server.tls.cert is set"],
        );
        assert_err(
            &config("[server.tls]\nkey = \"k.pem\"", "", ""),
            &["server.tls.cert: required when server.tls.key is set"],
        );
        assert_err(
            &config("[server.tls]\ncert = \"\"\nkey = \"k\"", "", ""),
            &["server.tls.cert: \"\" is empty"],
        );
    }

    /// `[server.tls]` with `extra` lines after it, then the minimal route.
    fn tls_with(extra: &str) -> String {
        config(&format!("[server.tls]\n{extra}"), "", "")
    }

    const SNI_ENTRY: &str = "[[server.tls.certs]]\n\
                             names = [\"Relay.Example.com\", \"*.example.com\"]\n\
                             cert = \"certs/example.crt\"\nkey = \"certs/example.key\"\n";

    #[test]
    fn tls_defaults_and_new_keys() {
        let plain = parse_ok(&tls_with("cert = \"c.pem\"\nkey = \"k.pem\""));
        let tls = plain.server.tls.expect("tls");
        assert_eq!(tls.certs, []);
        assert_eq!(tls.client_ca, None);
        assert_eq!(tls.reload_interval, secs(5));

        let text = tls_with(&format!(
            "cert = \"c.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca/mesh.crt\"\n\
             reload_interval = \"250ms\"\n{SNI_ENTRY}"
        ));
        let tls = parse_ok(&text).server.tls.expect("tls");
        assert_eq!(tls.cert, PathBuf::from("/etc/relay/c.pem"));
        assert_eq!(tls.client_ca, Some(PathBuf::from("/etc/relay/ca/mesh.crt")));
        assert_eq!(tls.reload_interval, ms(250));
        let entry = TlsCert {
            names: vec!["relay.example.com".to_owned(), "*.example.com".to_owned()],
            cert: PathBuf::from("/etc/relay/certs/example.crt"),
            key: PathBuf::from("/etc/relay/certs/example.key"),
        };
        assert_eq!(tls.certs, [entry]);
    }

    #[test]
    fn tls_default_certificate_is_the_first_entry_without_cert() {
        let second = "[[server.tls.certs]]\nnames = [\"other.test\"]\n\
                      cert = \"o.crt\"\nkey = \"o.key\"\n";
        let tls = parse_ok(&tls_with(&format!("{SNI_ENTRY}{second}")))
            .server
            .tls
            .expect("tls");
        assert_eq!(tls.cert, PathBuf::from("/etc/relay/certs/example.crt"));
        assert_eq!(tls.key, PathBuf::from("/etc/relay/certs/example.key"));
        assert_eq!(tls.certs.len(), 2);
    }

    #[test]
    fn tls_needs_a_certificate() {
        assert_err(
            &tls_with("reload_interval = \"5s\""),
            &["server.tls.cert: no certificate configured"],
        );
        assert_err(
            &tls_with("cert = \"c\"\nkey = \"k\"\nclient_ca = \"\""),
            &["server.tls.client_ca: \"\" is empty"],
        );
        assert_err(
            &tls_with("cert = \"c\"\nkey = \"k\"\nreload_interval = \"0s\""),
            &["server.tls.reload_interval: \"0s\" must be longer than zero"],
        );
    }

    #[test]
    fn tls_cert_entries_are_checked() {
        let entry = |body: &str| tls_with(&format!("[[server.tls.certs]]\n{body}"));
        assert_err(
            &entry("names = [\"a.test\"]\ncert = \"c\""),
            &["server.tls.certs[0].key: required when server.tls.certs[0].cert is set"],
        );
        assert_err(
            &entry("names = [\"a.test\"]\nkey = \"k\""),
            &["server.tls.certs[0].cert: required when server.tls.certs[0].key is set"],
        );
        assert_err(
            &entry("names = [\"a.test\"]"),
            &["server.tls.certs[0].cert: required in every entry"],
        );
        assert_err(
            &entry("cert = \"c\"\nkey = \"k\""),
            &["server.tls.certs[0].names: [] is empty"],
        );
        assert_err(
            &entry("names = [\"a.test\"]\ncert = \"c\"\nkey = \"k\"\nca = \"x\""),
            &["unknown field `ca`"],
        );
    }

    #[test]
    fn tls_names_must_be_dns_names() {
        for bad in [
            "", "*", "*.", "a..b", "-a.test", "a-.test", "a b.test", "a.*.test", "a.test.",
        ] {
            let text = tls_with(&format!(
                "[[server.tls.certs]]\nnames = [\"ok.test\", {bad:?}]\ncert = \"c\"\nkey = \"k\""
            ));
            assert_err(
                &text,
                &[&format!(
                    "server.tls.certs[0].names[1]: {bad:?} is not a DNS name"
                )],
            );
        }
        let long = format!("{}.test", "a".repeat(64));
        let text = tls_with(&format!(
            "[[server.tls.certs]]\nnames = [{long:?}]\ncert = \"c\"\nkey = \"k\""
        ));
        assert_err(
            &text,
            &["server.tls.certs[0].names[0]", "is not a DNS name"],
        );
        let good = "names = [\"localhost\", \"*.a-b.test\", \"x1.test\"]";
        parse_ok(&tls_with(&format!(
            "[[server.tls.certs]]\n{good}\ncert = \"c\"\nkey = \"k\""
        )));
    }

    #[test]
    fn tls_name_is_served_by_one_entry_only() {
        let twice = "[[server.tls.certs]]\nnames = [\"a.test\"]\ncert = \"1\"\nkey = \"1\"\n\
                     [[server.tls.certs]]\nnames = [\"b.test\", \"A.test\"]\n\
                     cert = \"2\"\nkey = \"2\"\n";
        assert_err(
            &tls_with(twice),
            &["server.tls.certs[1].names[1]: \"a.test\" is already served by server.tls.certs[0]"],
        );
    }

    #[test]
    fn routes_are_required() {
        assert_err(
            "[server]\nlisten = \"127.0.0.1:8080\"\n",
            &["routes: no routes configured"],
        );
        assert_err(
            "[server]\nlisten = \"127.0.0.1:8080\"\n[routes]\n",
            &["routes: no routes"],
        );
    }

    #[test]
    fn route_names_are_validated() {
        let route = |name: &str| {
            format!(
                "[server]\nlisten = \"127.0.0.1:8080\"\n[routes.{name}]\npath = \"/w\"\n\
                 destinations = [\"http://h/\"]\n"
            )
        };
        assert_err(&route("\"\""), &["routes.\"\": route name \"\" is empty"]);
        assert_err(
            &route("\"bad name\""),
            &["routes.\"bad name\": route name \"bad name\" may only contain"],
        );
        assert_err(&route("\"wav.v2\""), &["route name \"wav.v2\""]);
    }

    #[test]
    fn methods_are_validated() {
        assert_err(
            &route_with("methods = [\"POST\", \"post\"]"),
            &["routes.wav.methods[1]: \"post\" is listed twice"],
        );
        assert_err(
            &route_with("methods = [\"PO ST\"]"),
            &["routes.wav.methods[0]: \"PO ST\" is not an http method"],
        );
        assert_err(
            &route_with("methods = []"),
            &["routes.wav.methods", "no methods"],
        );
    }

    #[test]
    fn task_id_pointers_are_validated() {
        assert_err(
            &route_with("task_id = [\"/ok\", \"data/id\"]"),
            &["routes.wav.task_id[1]: \"data/id\" is not a json pointer"],
        );
        assert_err(
            &route_with("task_id = [\"/a~2b\"]"),
            &["routes.wav.task_id[0]: \"/a~2b\" has a bad escape"],
        );
        assert_err(
            &route_with("task_id = []"),
            &["routes.wav.task_id", "no json pointers"],
        );
    }

    #[test]
    fn admin_listen_must_differ_from_server_listen() {
        let tail = "[admin]\nlisten = \"127.0.0.1:8080\"";
        assert_err(
            &config("", "", tail),
            &["admin.listen: \"127.0.0.1:8080\" conflicts with server.listen \"127.0.0.1:8080\""],
        );
        let text = config("", "", "[admin]\nlisten = \"0.0.0.0:8080\"\ntoken = \"t\"");
        assert_err(&text, &["admin.listen: \"0.0.0.0:8080\" conflicts"]);
        let text = config("", "", "[admin]\nlisten = \"127.0.0.2:8080\"");
        parse_ok(&text);
    }

    #[test]
    fn admin_token_is_required_off_loopback() {
        let expected = "admin.token: required when admin.listen (0.0.0.0:9090) is not a loopback \
                        address";
        assert_err(
            &config("", "", "[admin]\nlisten = \"0.0.0.0:9090\""),
            &[expected],
        );
        let tail = "[admin]\nlisten = \"0.0.0.0:9090\"\ntoken = \"  \"";
        assert_err(&config("", "", tail), &[expected]);
        let tail = "[admin]\nlisten = \"0.0.0.0:9090\"\ntoken = \"secret\"";
        assert_eq!(
            parse_ok(&config("", "", tail)).admin.token.as_deref(),
            Some("secret")
        );
        let config_v6 = parse_ok(&config("", "", "[admin]\nlisten = \"[::1]:9090\""));
        assert_eq!(config_v6.admin.token, None);
    }

    #[test]
    fn blank_admin_token_is_rejected_on_loopback() {
        assert_err(
            &config("", "", "[admin]\ntoken = \"\""),
            &["admin.token: \"\" is blank"],
        );
    }

    #[test]
    fn admin_debug_redacts_the_token() {
        let admin = AdminConfig {
            token: Some("hunter2".to_owned()),
            ..AdminConfig::default()
        };
        let debug = format!("{admin:?}");
        assert!(
            !debug.contains("hunter2") && debug.contains("redacted"),
            "{debug}"
        );
    }

    // ---- unknown keys and parse errors -------------------------------------------------

    #[test]
    fn unknown_top_level_key_is_named() {
        let text = format!("{}\nbogus_section = 1\n", config("", "", ""));
        let err = assert_err(&text, &["bogus_section"]);
        assert!(matches!(err, ConfigError::Parse { .. }));
        assert_err(
            &format!("[bogus]\nx = 1\n{}", config("", "", "")),
            &["unknown field `bogus`"],
        );
    }

    #[test]
    fn unknown_server_key_is_named_with_its_line() {
        assert_err(
            &config("listn = \"x\"", "", ""),
            &["unknown field `listn`", "line 3"],
        );
        assert_err(
            &config(
                "[server.tls]\ncert = \"c\"\nkey = \"k\"\nca = \"x\"",
                "",
                "",
            ),
            &["unknown field `ca`"],
        );
    }

    #[test]
    fn unknown_route_key_is_named() {
        assert_err(
            &route_with("destination = [\"http://h/\"]"),
            &["unknown field `destination`"],
        );
        assert_err(
            &route_with("retry = { max_attempt = 5 }"),
            &["unknown field `max_attempt`"],
        );
    }

    #[test]
    fn unknown_destination_table_key_is_named() {
        let text = route_with("").replace(
            "[\"http://127.0.0.1:3000/hooks/wav\"]",
            "[\"http://h/a\", { url = \"http://h/b\", timout = \"5s\" }]",
        );
        assert_err(&text, &["unknown field `timout`", "line 6"]);
    }

    #[test]
    fn wrong_value_types_are_reported_by_toml() {
        assert_err(
            &route_with("").replace("[\"http://127.0.0.1:3000/hooks/wav\"]", "[3]"),
            &["a url string or a table"],
        );
        assert_err(
            &config("", "", "[retry]\nmax_attempts = \"5\""),
            &["max_attempts", "\"5\""],
        );
        assert_err(
            &config("", "", "[delivery]\nconcurrency = -1"),
            &["concurrency", "-1"],
        );
    }

    #[test]
    fn toml_syntax_errors_carry_line_and_path() {
        let err = assert_err("[server\nlisten = 1\n", &["line 1"]);
        assert!(matches!(err, ConfigError::Parse { path: None, .. }));
        let message = err.in_file(Path::new("relay.toml")).to_string();
        assert!(
            message.starts_with("relay.toml: TOML parse error at line 1"),
            "{message}"
        );
    }

    #[test]
    fn missing_required_keys_are_named() {
        assert_err(
            "[routes.wav]\npath = \"/w\"\ndestinations = []\n",
            &["missing field `server`"],
        );
        assert_err(
            &config("", "", "").replace("listen = \"127.0.0.1:8080\"", ""),
            &["missing field `listen`"],
        );
        assert_err(
            &config("", "", "").replace("path = \"/callbacks/wav\"", ""),
            &["missing field `path`"],
        );
    }

    // ---- durations and sizes -----------------------------------------------------------

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("30s"), Ok(secs(30)));
        assert_eq!(parse_duration("10m"), Ok(secs(600)));
        assert_eq!(parse_duration("2h"), Ok(secs(7_200)));
        assert_eq!(parse_duration("14d"), Ok(secs(14 * 86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(secs(5_400)));
        assert_eq!(parse_duration("1d2h3m4s5ms"), Ok(ms(93_784_005)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("007s"), Ok(secs(7)));
    }

    #[test]
    fn bad_durations_are_rejected_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("30", "missing unit"),
            ("-5s", "negative"),
            ("1.5h", "fractions"),
            ("10 minutes", "unknown unit \" minutes\""),
            ("5sec", "unknown unit \"sec\""),
            ("5S", "unknown unit \"S\""),
            ("s", "expected a number"),
            (" 5s", "expected a number"),
            ("1m1m", "repeated or out of order"),
            ("30m1h", "repeated or out of order"),
            ("99999999999999999999s", "too large"),
            ("18446744073709551615d", "too large"),
            ("213503982334601d1h", "too large"),
        ];
        for (text, reason) in cases {
            let err = parse_duration(text).expect_err(text);
            assert!(
                err.contains(reason),
                "{text:?}: {err:?} should contain {reason:?}"
            );
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("100B"), Ok(100));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("10KB"), Ok(10_000));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("3GB"), Ok(3_000_000_000));
        assert_eq!(parse_size("1mib"), Ok(1 << 20));
        assert_eq!(parse_size("0B"), Ok(0));
    }

    #[test]
    fn bad_sizes_are_rejected_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("-1MiB", "negative"),
            ("1.5MiB", "fractions"),
            ("1 MiB", "unknown unit \" MiB\""),
            ("MiB", "expected a number"),
            ("5TB", "unknown unit \"TB\""),
            ("1MiB2", "unexpected \"2\""),
            ("99999999999GiB", "too large"),
            ("99999999999999999999", "too large"),
        ];
        for (text, reason) in cases {
            let err = parse_size(text).expect_err(text);
            assert!(
                err.contains(reason),
                "{text:?}: {err:?} should contain {reason:?}"
            );
        }
    }

    #[test]
    fn sizes_accept_integers_and_strings_in_toml() {
        let config = parse_ok(&config(
            "max_body = \"512KiB\"",
            "",
            "[journal]\ncache_capacity = 1",
        ));
        assert_eq!(config.server.max_body, 512 * 1024);
        assert_eq!(config.journal.cache_capacity, 1);
    }

    #[test]
    fn durations_format_like_the_config_file() {
        assert_eq!(format_duration(ms(500)), "500ms");
        assert_eq!(format_duration(secs(5_400)), "1h30m");
        assert_eq!(format_duration(secs(86_401)), "1d1s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_micros(5)), "5µs");
    }
}
