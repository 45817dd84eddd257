//! Plays the internal service behind the relay: prints each callback the relay forwards to
//! it, and can be told to fail or to be slow, to watch the relay retry.
//!
//! Run: `cargo run --example receiver -- [--listen 127.0.0.1:3000] [--fail-first N]
//! [--fail-status 500] [--delay 0ms] [--quiet]`
//!
//! Each request prints one line: method, path, `x-relay-id`, `x-relay-attempt`, the task id
//! (`/data/task_id` or `/data/taskId` of a JSON body), body size and the status answered,
//! then the body pretty-printed when it is JSON.
//!
//! Delivery is at least once: the same callback (same `x-relay-id`) can arrive again after it
//! was answered 2xx, for instance when the relay restarted before it recorded the delivery.
//! Such a line is marked `duplicate`; a real service would skip its side effects for it,
//! keyed on `x-relay-id` as done here (kept in memory here; a real service would keep the
//! ids it processed in its own database).
//!
//! `--quiet` (used by `bench/run.sh`) prints instead, once a second while requests come in,
//! the number of POSTs received so far and the rate, and serves `GET /count`: the
//! plain-text number of POSTs received.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Bodies larger than this are answered 413.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A destination for the relay: prints callbacks, can fail the first N attempts of each.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on (HTTP/1.1 and h2c, no TLS).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,

    /// Answer the first N requests of each x-relay-id with --fail-status, then 2xx.
    /// Requests without x-relay-id share one counter.
    #[arg(long, value_name = "N", default_value_t = 0)]
    fail_first: u32,

    /// Status answered to the requests failed by --fail-first.
    #[arg(long, value_name = "STATUS", default_value_t = 500,
          value_parser = clap::value_parser!(u16).range(200..=599))]
    fail_status: u16,

    /// Wait this long before answering each request ("250ms", "2s", "1m").
    #[arg(long, value_name = "DURATION", default_value = "0ms", value_parser = parse_duration)]
    delay: Duration,

    /// Print no line per request; print a count and a rate once a second instead, and
    /// serve GET /count (the number of POSTs received, as plain text).
    #[arg(long)]
    quiet: bool,
}

/// What the receiver remembers of one x-relay-id.
#[derive(Default)]
struct Seen {
    attempts: u32,
    delivered: bool,
}

struct State {
    args: Args,
    fail_status: StatusCode,
    posts: AtomicU64,
    duplicates: AtomicU64,
    seen: Mutex<HashMap<String, Seen>>,
}

/// How the receiver answers one request, decided before the delay.
struct Verdict {
    status: StatusCode,
    duplicate: bool,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let fail_status = StatusCode::from_u16(args.fail_status)?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    println!(
        "receiver listening on http://{} (fail first {} with {fail_status}, delay {:?})",
        listener.local_addr()?,
        args.fail_first,
        args.delay,
    );
    let state = Arc::new(State {
        args,
        fail_status,
        posts: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        seen: Mutex::new(HashMap::new()),
    });
    if state.args.quiet {
        tokio::spawn(report_rate(state.clone()));
    }
    tokio::select! {
        result = accept_loop(listener, state) => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) -> Result<(), Error> {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, state.clone()));
            }
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    let _ = stream.set_nodelay(true);
    let quiet = state.args.quiet;
    let service = service_fn(move |request| handle(request, state.clone()));
    let builder = auto::Builder::new(TokioExecutor::new());
    let served = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served
        && !quiet
    {
        eprintln!("connection error: {e}");
    }
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if state.args.quiet && request.method() == Method::GET && request.uri().path() == "/count" {
        let count = state.posts.load(Ordering::Relaxed);
        return Ok(respond(StatusCode::OK, "text/plain", format!("{count}\n")));
    }
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Ok(respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain",
                e.to_string(),
            ));
        }
    };
    if parts.method == Method::POST {
        state.posts.fetch_add(1, Ordering::Relaxed);
    }
    let relay_id = header_str(&parts.headers, "x-relay-id");
    let verdict = decide(&state, relay_id);
    if !state.args.delay.is_zero() {
        tokio::time::sleep(state.args.delay).await;
    }
    if !state.args.quiet {
        print_request(&parts, &body, &verdict);
    }
    let answer = if verdict.status.is_success() {
        r#"{"received":true}"#.to_string()
    } else {
        format!(
            r#"{{"error":"failure asked for by --fail-first","status":{}}}"#,
            verdict.status.as_u16()
        )
    };
    Ok(respond(verdict.status, "application/json", answer))
}

/// Counts the attempt of this x-relay-id and decides the status: fail while the id has had
/// at most --fail-first attempts, succeed after; a success after a success is a duplicate.
fn decide(state: &State, relay_id: &str) -> Verdict {
    let mut seen = state
        .seen
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let entry = seen.entry(relay_id.to_string()).or_default();
    entry.attempts = entry.attempts.saturating_add(1);
    if entry.attempts <= state.args.fail_first {
        return Verdict {
            status: state.fail_status,
            duplicate: false,
        };
    }
    let duplicate = entry.delivered;
    entry.delivered = true;
    if duplicate {
        state.duplicates.fetch_add(1, Ordering::Relaxed);
    }
    Verdict {
        status: StatusCode::OK,
        duplicate,
    }
}

fn print_request(parts: &http::request::Parts, body: &Bytes, verdict: &Verdict) {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let task_id = json.as_ref().and_then(task_id).unwrap_or("-");
    println!(
        "{} {} relay-id={} attempt={} task={} {} B -> {}{}",
        parts.method,
        parts.uri.path(),
        or_dash(header_str(&parts.headers, "x-relay-id")),
        or_dash(header_str(&parts.headers, "x-relay-attempt")),
        task_id,
        body.len(),
        verdict.status.as_u16(),
        if verdict.duplicate {
            " duplicate (already answered 2xx: skip side effects)"
        } else {
            ""
        },
    );
    if let Some(value) = json {
        match serde_json::to_string_pretty(&value) {
            Ok(pretty) => println!("{pretty}"),
            Err(e) => println!("(cannot pretty-print: {e})"),
        }
    }
}

/// The provider puts the task id at `data.task_id` or, in some callbacks, `data.taskId`.
fn task_id(json: &serde_json::Value) -> Option<&str> {
    ["/data/task_id", "/data/taskId"]
        .iter()
        .find_map(|ptr| json.pointer(ptr)?.as_str())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

fn or_dash(value: &str) -> &str {
    if value.is_empty() { "-" } else { value }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// In --quiet mode: once a second, when the count moved, prints it and the rate.
async fn report_rate(state: Arc<State>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut last = (Instant::now(), 0u64);
    loop {
        ticker.tick().await;
        let count = state.posts.load(Ordering::Relaxed);
        if count == last.1 {
            last.0 = Instant::now();
            continue;
        }
        let elapsed = last.0.elapsed().as_secs_f64().max(1e-3);
        let rate = (count - last.1) as f64 / elapsed;
        let duplicates = state.duplicates.load(Ordering::Relaxed);
        println!("received {count} POSTs ({rate:.0}/s), {duplicates} duplicates");
        last = (Instant::now(), count);
    }
}

/// Parses "250ms", "2s", "1m" or a bare number of milliseconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("not a duration: {text:?}"))?;
    match unit.trim() {
        "" | "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value.saturating_mul(60))),
        _ => Err(format!("unknown unit in {text:?}: use ms, s or m")),
    }
}
