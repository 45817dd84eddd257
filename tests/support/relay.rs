//! A relay under test, in-process on `127.0.0.1:0`, with its journal in a directory the
//! test owns; [`RelayConfig::write`] also serves a child process (see `process.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use callback_relay::config::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::TestCerts;

/// The text of a relay configuration, built up by a test.
///
/// Retries are fast by default (50ms initial backoff, 1s max, 5 attempts) so tests that
/// exercise them finish quickly; [`RelayConfig::retry`] replaces the whole `[retry]` table.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    journal: PathBuf,
    tls: Option<(PathBuf, PathBuf)>,
    /// More lines for `[server.tls]`, like `client_ca` or `[[server.tls.certs]]` tables.
    tls_extra: String,
    /// Lines of `[server]` after `listen`, one `key = value` each.
    server: Vec<String>,
    retry: String,
    routes: Vec<String>,
    /// Whole tables after the routes.
    tables: String,
}

impl RelayConfig {
    /// A relay journaling under `journal` (a directory the test owns) with no routes yet.
    pub fn new(journal: &Path) -> RelayConfig {
        RelayConfig {
            journal: journal.to_path_buf(),
            tls: None,
            tls_extra: String::new(),
            server: vec![
                "shutdown_timeout = \"2s\"".to_owned(),
                "body_read_timeout = \"2s\"".to_owned(),
            ],
            retry: "initial_backoff = \"50ms\"\nmax_backoff = \"1s\"\nmax_attempts = 5\n\
                    attempt_timeout = \"2s\"\n"
                .to_owned(),
            routes: Vec::new(),
            tables: String::new(),
        }
    }

    /// Serves TLS with the test's certificates.
    pub fn tls(mut self, certs: &TestCerts) -> RelayConfig {
        self.tls = Some((certs.cert_path(), certs.key_path()));
        self
    }

    /// Adds `lines` to `[server.tls]` after `cert` and `key` (set by [`RelayConfig::tls`]),
    /// e.g. `reload_interval = "100ms"` or whole `[[server.tls.certs]]` tables.
    pub fn tls_extra(mut self, lines: &str) -> RelayConfig {
        self.tls_extra += lines;
        self.tls_extra += "\n";
        self
    }

    /// Adds `lines` (one `key = value` each) to `[server]`, e.g. `max_connections = 2`;
    /// a key set already (like the default `body_read_timeout = "2s"`) is replaced.
    pub fn server(mut self, lines: &str) -> RelayConfig {
        for line in lines.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let key = line.split('=').next().unwrap_or(line).trim();
            self.server
                .retain(|old| old.split('=').next().map(str::trim) != Some(key));
            self.server.push(line.to_owned());
        }
        self
    }

    /// Replaces the `[retry]` table's body, e.g. `"max_attempts = 3"`.
    pub fn retry(mut self, body: &str) -> RelayConfig {
        self.retry = format!("{body}\n");
        self
    }

    /// Adds `[routes.NAME]` with `path`, `destinations` and any `extra` lines.
    pub fn route(mut self, name: &str, path: &str, destinations: &[String], extra: &str) -> Self {
        let list: Vec<String> = destinations.iter().map(|d| format!("{d:?}")).collect();
        self.routes.push(format!(
            "[routes.{name}]\npath = {path:?}\ndestinations = [{}]\n{extra}\n",
            list.join(", ")
        ));
        self
    }

    /// Adds whole tables after the routes, e.g. `"[delivery]\nconcurrency = 1"`.
    pub fn tables(mut self, text: &str) -> RelayConfig {
        self.tables += text;
        self.tables += "\n";
        self
    }

    /// The configuration file's text.
    pub fn text(&self) -> String {
        let mut text = String::from("[server]\nlisten = \"127.0.0.1:0\"\n");
        for line in &self.server {
            text += line;
            text += "\n";
        }
        if let Some((cert, key)) = &self.tls {
            text += &format!("[server.tls]\ncert = {cert:?}\nkey = {key:?}\n");
            text += &self.tls_extra;
        }
        text += "[admin]\nlisten = \"127.0.0.1:0\"\n";
        text += &format!(
            "[journal]\npath = {:?}\ncache_capacity = \"8MiB\"\n",
            self.journal
        );
        text += &format!("[retry]\n{}", self.retry);
        for route in &self.routes {
            text += route;
        }
        text += &self.tables;
        text
    }

    /// The parsed configuration; panics with the error and the text if it is invalid.
    pub fn config(&self) -> Config {
        let text = self.text();
        Config::parse(&text, Path::new("."), &|_| None)
            .unwrap_or_else(|err| panic!("test config is invalid: {err}\n{text}"))
    }

    /// Starts the relay in this process.
    pub async fn start(&self) -> TestRelay {
        wait_until_journal_unlocked(&self.journal).await;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let config = self.config();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            callback_relay::relay::run(config, listener, shutdown)
                .await
                .map_err(|err| err.to_string())
        });
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        TestRelay {
            addr,
            base: format!("{scheme}://{addr}"),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Writes the configuration to `dir/relay.toml` and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("relay.toml");
        std::fs::write(&path, self.text()).expect("write the test config");
        path
    }
}

/// A relay running inside the test process.
pub struct TestRelay {
    addr: SocketAddr,
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), String>>>,
}

impl TestRelay {
    /// The public listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http(s)://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Shuts the relay down gracefully and waits until its journal is closed.
    pub async fn stop(mut self) {
        self.stop_inner().await;
    }

    async fn stop_inner(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("the relay stops within 15s");
            result
                .expect("relay task panicked")
                .expect("relay ran without error");
        }
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Opens the journal at `path` once the relay that used it has let go: sled's threads drop
/// its lock a moment after a relay stops, and the kernel's as soon as a killed one is gone.
pub async fn open_stopped_journal(path: &Path) -> callback_relay::journal::Journal {
    wait_until_journal_unlocked(path).await;
    callback_relay::journal::Journal::open(path, 8 << 20)
        .unwrap_or_else(|err| panic!("open the journal at {}: {err}", path.display()))
}

/// Waits until nothing holds the lock of the journal at `path`, if it exists. A journal
/// closed in this process (a relay stopped, or one opened by the test) lets go of its lock
/// only when sled's flusher thread next wakes, so a relay restarted at once could find it
/// locked and fail to start.
async fn wait_until_journal_unlocked(path: &Path) {
    let db = path.join("db");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let Ok(file) = std::fs::File::open(&db) else {
            return;
        };
        match file.try_lock() {
            // Dropping the file lets go of the lock just taken.
            Ok(()) => return,
            Err(std::fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("journal {} stays locked: {err}", db.display()),
        }
    }
}

/// A delivery of callback `id` as the journal at `journal` holds it, with its attempts, in
/// delivery order. Opens the journal, so the relay that used it must have stopped.
pub fn journaled_deliveries(
    journal: &Path,
    id: &str,
) -> Vec<(
    callback_relay::journal::Delivery,
    Vec<callback_relay::journal::Attempt>,
)> {
    let journal = callback_relay::journal::Journal::open(journal, 8 << 20)
        .unwrap_or_else(|err| panic!("open the journal at {}: {err}", journal.display()));
    let id = id
        .parse()
        .unwrap_or_else(|err| panic!("{id:?} is not a callback id: {err}"));
    let deliveries = journal.deliveries(id).expect("read deliveries");
    let result = deliveries
        .into_iter()
        .map(|d| {
            let attempts = journal.attempts(id, d.seq).expect("read attempts");
            (d, attempts)
        })
        .collect();
    journal.close();
    result
}
