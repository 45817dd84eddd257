//! [`RelayProcess`]: the real `callback-relay` binary run as a child process on a config
//! written into a temp dir, with both listeners on `127.0.0.1:0`; and [`cli`] to run the
//! binary's commands against that config.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_callback-relay");

/// How long a relay may take to log that it listens.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Writes `config.toml` in `dir`: public and admin listeners on port 0, a journal in
/// `dir/journal`, fast retries and one route `wav` at `/callbacks/wav` forwarding to
/// `destination`. `admin` is extra text for the `[admin]` table (like a token).
pub fn write_config(dir: &Path, destination: &str, admin: &str) -> PathBuf {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_timeout = \"2s\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n{admin}\n\
         [journal]\npath = \"journal\"\ncache_capacity = \"8MiB\"\n\
         [retry]\ninitial_backoff = \"100ms\"\nmax_backoff = \"200ms\"\nmax_attempts = 5\n\
         attempt_timeout = \"2s\"\n\
         [routes.wav]\npath = \"/callbacks/wav\"\ndestinations = [\"{destination}\"]\n"
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("the temp dir is writable");
    path
}

/// A relay running as a child process; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct RelayProcess {
    child: Child,
    /// The public listener's address.
    pub public: SocketAddr,
    /// The admin API's address.
    pub admin: SocketAddr,
    /// Every stderr line so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl RelayProcess {
    /// Starts `serve --config config` and waits until both listeners are logged.
    pub fn start(config: &Path) -> RelayProcess {
        RelayProcess::start_with(config, |_| {})
    }

    /// Like [`RelayProcess::start`], letting the test adjust the command first.
    pub fn start_with(config: &Path, adjust: impl FnOnce(&mut Command)) -> RelayProcess {
        let mut command = Command::new(BIN);
        command
            .args(["--log-format", "json", "serve", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        adjust(&mut command);
        let mut child = command.spawn().expect("the relay binary starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let found = (
                logged_addr(&log, "relay listening"),
                logged_addr(&log, "admin listening"),
            );
            if let (Some(public), Some(admin)) = found {
                return RelayProcess {
                    child,
                    public,
                    admin,
                    log,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "relay exited with {status} before listening: {:?}",
                    log.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "relay did not start: {:?}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The URL of a path on the public listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public)
    }

    /// The URL of a path on the admin API.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The relay's process id, e.g. to read `/proc/PID/status`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the relay has logged so far, one JSON object per line.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends `signal` (like `libc::SIGHUP`) to the relay.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pids fit in pid_t");
        // SAFETY: kill has no memory effects; the pid is our own child, not yet reaped.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "signal {signal} to the relay");
    }

    /// Kills the relay with SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the relay");
        self.child.wait().expect("reap the relay");
    }

    /// Waits up to `timeout` for the relay to exit by itself, and returns how.
    /// Panics if it is still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the relay") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "relay still running after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the relay with SIGTERM and waits for it to exit.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("pids fit in pid_t");
        // SAFETY: kill has no memory effects; the pid is our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The `addr` field of the first JSON log line whose message is `message`.
fn logged_addr(log: &Mutex<Vec<String>>, message: &str) -> Option<SocketAddr> {
    let lines = log.lock().unwrap();
    lines.iter().find_map(|line| {
        let json: serde_json::Value = serde_json::from_str(line).ok()?;
        let fields = json.get("fields")?;
        if fields.get("message")?.as_str()? != message {
            return None;
        }
        fields.get("addr")?.as_str()?.parse().ok()
    })
}

/// `callback-relay <command> --config <config> <rest...>` as owned args, for
/// [`cli_async`].
pub fn command_args(command: &str, config: &Path, rest: &[&str]) -> Vec<String> {
    let mut all = vec![
        command.to_string(),
        "--config".into(),
        config.display().to_string(),
    ];
    all.extend(rest.iter().map(|s| s.to_string()));
    all
}

/// Runs `callback-relay <args>` to completion with stdin closed.
pub fn cli(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("CALLBACK_RELAY_ADMIN")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("the relay binary runs")
}

/// [`cli`] on a blocking thread, for async tests whose runtime serves fake destinations.
pub async fn cli_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&args)
    })
    .await
    .expect("the command thread does not panic")
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
