//! Plays the music API: POSTs a callback fixture to the relay, as the provider would, and
//! prints the relay's acknowledgement and how long it took.
//!
//! Run: `cargo run --example provider -- [--url http://127.0.0.1:8080/callbacks/wav]
//! [--fixture wav-success] [--count 1] [--concurrency 1] [--ca FILE] [--http2]`
//!
//! The body is `fixtures/callbacks/<fixture>.json` of this repository, or `--body-file`.
//! Each request prints its status, the ack body (`{"id":"..."}` from the relay) and its
//! latency; with `--count` above 1 a summary follows (sent, ok, failed, p50, p99).
//! The exit status is 1 when any request failed (error or non-2xx answer).
//!
//! HTTPS: the server's certificate must chain to `--ca FILE` (PEM, e.g. the `ca.crt` of
//! `cargo run --example gen_cert`) or, without `--ca`, to the Mozilla roots (webpki-roots).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

type Error = Box<dyn std::error::Error + Send + Sync>;
type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// POST a callback fixture to the relay and print the ack and its latency.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Where to POST (http:// or https://).
    #[arg(long, default_value = "http://127.0.0.1:8080/callbacks/wav")]
    url: Uri,

    /// Name of a file in fixtures/callbacks/, without .json (e.g. wav-failed,
    /// lyrics-complete, music-complete).
    #[arg(long, default_value = "wav-success")]
    fixture: String,

    /// Send this file as the body instead of a fixture.
    #[arg(long, value_name = "PATH", conflicts_with = "fixture")]
    body_file: Option<PathBuf>,

    /// Number of requests to send.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,

    /// Number of requests in flight at once (each worker keeps its connection alive).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    concurrency: u64,

    /// PEM file of the CA to trust for https:// (replaces the built-in Mozilla roots).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,

    /// Speak HTTP/2 (ALPN h2 over https, prior knowledge over http) instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,

    /// Give up on a request after this many seconds (the real provider waits 15).
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    timeout: u64,
}

/// The outcome of one request.
struct Outcome {
    ok: bool,
    latency: Option<Duration>,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let body = Bytes::from(read_body(&args)?);
    let client = build_client(&args)?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();

    let mut workers = Vec::new();
    for _ in 0..args.concurrency.min(args.count) {
        let job = Job {
            client: client.clone(),
            url: args.url.clone(),
            body: body.clone(),
            next: next.clone(),
            count: args.count,
            timeout: Duration::from_secs(args.timeout),
        };
        workers.push(tokio::spawn(job.run()));
    }
    let mut outcomes = Vec::new();
    for worker in workers {
        outcomes.extend(worker.await?);
    }
    if args.count > 1 {
        print_summary(&outcomes, started.elapsed());
    }
    if outcomes.iter().any(|o| !o.ok) {
        std::process::exit(1);
    }
    Ok(())
}

fn read_body(args: &Args) -> Result<Vec<u8>, Error> {
    let path = match &args.body_file {
        Some(path) => path.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/callbacks")
            .join(format!("{}.json", args.fixture)),
    };
    std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()).into())
}

fn build_client(args: &Args) -> Result<HttpClient, Error> {
    let tls = tls_config(args.ca.as_deref())?;
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    // Without it, Nagle's algorithm holds small writes back (about 40 ms per request).
    tcp.set_nodelay(true);
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let connector = if args.http2 {
        connector.enable_http2().wrap_connector(tcp)
    } else {
        connector.enable_http1().wrap_connector(tcp)
    };
    Ok(Client::builder(TokioExecutor::new())
        .http2_only(args.http2)
        .build(connector))
}

fn tls_config(ca: Option<&Path>) -> Result<ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
    let builder = match ca {
        Some(path) => builder.with_root_certificates(load_roots(path)?),
        None => builder.with_webpki_roots(),
    };
    Ok(builder.with_no_client_auth())
}

fn load_roots(path: &Path) -> Result<RootCertStore, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert?)?;
    }
    if roots.is_empty() {
        return Err(format!("no certificate found in {}", path.display()).into());
    }
    Ok(roots)
}

/// One worker: takes request numbers from the shared counter until `count` are taken.
struct Job {
    client: HttpClient,
    url: Uri,
    body: Bytes,
    next: Arc<AtomicU64>,
    count: u64,
    timeout: Duration,
}

impl Job {
    async fn run(self) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        loop {
            let number = self.next.fetch_add(1, Ordering::Relaxed) + 1;
            if number > self.count {
                return outcomes;
            }
            outcomes.push(self.send(number).await);
        }
    }

    async fn send(&self, number: u64) -> Outcome {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.post()).await;
        let latency = started.elapsed();
        let ms = latency.as_secs_f64() * 1000.0;
        match result {
            Ok(Ok((status, ack))) => {
                println!("#{number} {status} {ack} {ms:.1} ms");
                Outcome {
                    ok: status.is_success(),
                    latency: Some(latency),
                }
            }
            Ok(Err(e)) => {
                println!("#{number} error: {} ({ms:.1} ms)", error_chain(e.as_ref()));
                Outcome {
                    ok: false,
                    latency: None,
                }
            }
            Err(_) => {
                println!(
                    "#{number} error: no answer within {} s",
                    self.timeout.as_secs()
                );
                Outcome {
                    ok: false,
                    latency: None,
                }
            }
        }
    }

    async fn post(&self) -> Result<(http::StatusCode, String), Error> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(self.body.clone()))?;
        let response = self.client.request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((
            status,
            String::from_utf8_lossy(&body).trim_end().to_string(),
        ))
    }
}

/// "client error (Connect): tcp connect error: Connection refused", not just the first.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn print_summary(outcomes: &[Outcome], elapsed: Duration) {
    let ok = outcomes.iter().filter(|o| o.ok).count();
    let mut latencies: Vec<Duration> = outcomes.iter().filter_map(|o| o.latency).collect();
    latencies.sort();
    let rate = outcomes.len() as f64 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "sent {}, ok {ok}, failed {}, p50 {}, p99 {} ({rate:.0} req/s over {:.2} s)",
        outcomes.len(),
        outcomes.len() - ok,
        percentile_ms(&latencies, 0.50),
        percentile_ms(&latencies, 0.99),
        elapsed.as_secs_f64(),
    );
}

/// Nearest-rank percentile of sorted latencies (of the requests that got an answer).
fn percentile_ms(sorted: &[Duration], quantile: f64) -> String {
    if sorted.is_empty() {
        return "-".to_string();
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    format!("{:.1} ms", sorted[index].as_secs_f64() * 1000.0)
}
