//! The public edge under hostile or careless clients, over real sockets against the real
//! binary: bodies over `max_body` (declared, or streamed far past it with bounded
//! memory), slowloris heads and trickled bodies cut by their timeouts, rate limits,
//! `allow_ips` behind trusted proxies, head size and field limits, `max_connections`,
//! and garbage. Whatever is refused is never journaled as a callback, the refusals the
//! ingest makes are counted and kept in the rejected ring, and the relay keeps serving.
//!
//! Requests that must be sent byte for byte go over a raw [`TcpStream`]; the answer is
//! read while the request is still being written, as a real client would see it.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Client, FakeDestination, RelayConfig, RelayProcess, Script, TestCerts, Version};
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

/// How long any single wait in these tests may take before it fails.
const WAIT: Duration = Duration::from_secs(10);
const MIB: usize = 1024 * 1024;
/// A small callback body with a task id.
const BODY: &str = r#"{"data":{"task_id":"edge-0001"}}"#;

/// A relay run as the real binary on `config`, with the directory it lives in.
struct Edge {
    relay: RelayProcess,
    _dir: TempDir,
}

impl Edge {
    /// Writes `config(journal)` and starts the binary on it.
    fn start(config: impl FnOnce(&std::path::Path) -> RelayConfig) -> Edge {
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = config(&dir.path().join("journal"));
        let relay = RelayProcess::start(&config.write(dir.path()));
        Edge { relay, _dir: dir }
    }

    fn addr(&self) -> SocketAddr {
        self.relay.public
    }

    fn url(&self, path: &str) -> String {
        self.relay.url(path)
    }

    /// `GET` on the admin API, asserting a 200.
    async fn admin(&self, path: &str) -> support::Response {
        let response = Client::plain().get(&self.relay.admin_url(path)).await;
        assert_eq!(response.status, 200, "GET {path}: {}", response.text());
        response
    }

    /// The callbacks in the journal, newest first.
    async fn callbacks(&self) -> Vec<Value> {
        let list = self.admin("/v1/callbacks").await.json();
        list["callbacks"].as_array().expect("a list").clone()
    }

    /// The rejected ring, newest first.
    async fn rejected(&self) -> Vec<Value> {
        let list = self.admin("/v1/rejected?limit=1000").await.json();
        list["rejected"].as_array().expect("a list").clone()
    }

    /// `(route, status, reason)` of each rejected request, oldest first.
    async fn rejections(&self) -> Vec<(String, u64, String)> {
        let mut all: Vec<_> = self
            .rejected()
            .await
            .iter()
            .map(|r| {
                let text = |key: &str| r[key].as_str().unwrap_or_default().to_owned();
                (
                    text("route"),
                    r["status"].as_u64().unwrap_or(0),
                    text("reason"),
                )
            })
            .collect();
        all.reverse();
        all
    }

    /// Posts [`BODY`] to `path` and asserts the 200 ack.
    async fn assert_acks(&self, path: &str) {
        let response = Client::plain().post(&self.url(path), BODY, &[]).await;
        assert_eq!(response.status, 200, "POST {path}: {}", response.text());
    }
}

/// What a client sending raw bytes saw.
#[derive(Debug)]
enum Answer {
    /// A response head (and body, up to its `content-length`), however the connection
    /// ended after it.
    Response { status: u16, head: String },
    /// The relay ended the connection without a response: EOF, or the error read.
    Closed(String),
}

/// What the failure messages show: the response head, or how the connection ended.
impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Response { head, .. } => write!(f, "answered {:?}", head.trim_end()),
            Answer::Closed(how) => write!(f, "closed without an answer: {how}"),
        }
    }
}

impl Answer {
    fn status(&self) -> Option<u16> {
        match self {
            Answer::Response { status, .. } => Some(*status),
            Answer::Closed(_) => None,
        }
    }

    /// Whether this is a 4xx answer or a closed connection: what garbage may get.
    fn refuses(&self) -> bool {
        self.status().is_none_or(|s| (400..500).contains(&s))
    }
}

/// The end of the head in `buf` and the `content-length` it declares.
fn head_of(buf: &[u8]) -> Option<(usize, Option<usize>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]);
    let length = head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        let is_length = key.trim().eq_ignore_ascii_case("content-length");
        is_length.then(|| value.trim().parse().ok()).flatten()
    });
    Some((end, length))
}

/// Reads one response from `reader`, or what ended the connection; panics if neither
/// happens within [`WAIT`].
async fn read_answer(reader: &mut (impl AsyncRead + Unpin)) -> Answer {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let read = async {
        loop {
            if let Some((end, Some(length))) = head_of(&buf)
                && buf.len() >= end + length
            {
                return "complete".to_owned();
            }
            match reader.read(&mut chunk).await {
                Ok(0) => return "EOF".to_owned(),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(err) => return format!("read error: {err}"),
            }
        }
    };
    let ended = tokio::time::timeout(WAIT, read)
        .await
        .unwrap_or_else(|_| panic!("neither an answer nor a close within {WAIT:?}"));
    match head_of(&buf) {
        Some((end, _)) => {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
            let status = status.unwrap_or_else(|| panic!("not an HTTP response: {head:?}"));
            Answer::Response { status, head }
        }
        None => Answer::Closed(format!("{ended} after {} bytes", buf.len())),
    }
}

/// Sends `bytes` on a new connection to `addr` (writing on while the answer is read) and
/// returns the answer. With `then_close`, the write side is shut once all is sent.
async fn exchange(addr: SocketAddr, bytes: Vec<u8>, then_close: bool) -> Answer {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the relay");
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move {
        // The relay may answer and close before everything is sent.
        let _ = writer.write_all(&bytes).await;
        if then_close {
            let _ = writer.shutdown().await;
        }
        // Held until the answer is read: dropping it would half-close the connection.
        writer
    });
    let answer = read_answer(&mut reader).await;
    sending.abort();
    answer
}

/// [`exchange`] of a request with headers `head` (without the blank line) and `body`.
async fn request(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let mut bytes = format!("{head}\r\n\r\n").into_bytes();
    bytes.extend_from_slice(body);
    exchange(addr, bytes, false).await
}

/// A `POST path` head declaring `length` body bytes.
fn post_head(path: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: relay\r\ncontent-type: application/json\r\n\
         content-length: {length}"
    )
}

/// A field of `/proc/PID/status` in KiB, like `VmHWM` (peak resident set).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let value = status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    });
    value.unwrap_or_else(|| panic!("no {field} in {path}"))
}

/// Streams a chunked body of `total` bytes to `path` in 64 KiB chunks while reading the
/// answer; returns it with the bytes the client managed to send.
async fn stream_chunked(addr: SocketAddr, path: &str, total: usize) -> (Answer, usize) {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the relay");
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: relay\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n"
    );
    let sent = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&sent);
    let sending = tokio::spawn(async move {
        let chunk = [b'7'; 64 * 1024];
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(&chunk);
        frame.extend_from_slice(b"\r\n");
        writer.write_all(head.as_bytes()).await?;
        while counted.load(Ordering::SeqCst) < total {
            writer.write_all(&frame).await?;
            counted.fetch_add(chunk.len(), Ordering::SeqCst);
        }
        writer.write_all(b"0\r\n\r\n").await?;
        Ok::<OwnedWriteHalf, std::io::Error>(writer)
    });
    let answer = read_answer(&mut reader).await;
    sending.abort();
    (answer, sent.load(Ordering::SeqCst))
}

/// Streams 64 MiB chunked to `/callbacks/wav` (max_body 1 MiB): a chunked body
/// declares nothing, so it is cut once past max_body, and the relay's peak memory
/// (`VmHWM`, which a transient buffer would raise too) does not follow the size sent.
async fn assert_a_long_stream_is_cut_in_bounded_memory(edge: &Edge) {
    let pid = edge.relay.pid();
    let peak_before = memory_kib(pid, "VmHWM");
    let (streamed, sent) = stream_chunked(edge.addr(), "/callbacks/wav", 64 * MIB).await;
    let peak_after = memory_kib(pid, "VmHWM");
    assert_eq!(
        streamed.status(),
        Some(413),
        "{streamed} after {sent} bytes"
    );
    let grown = peak_after.saturating_sub(peak_before);
    assert!(
        grown < 16 * 1024,
        "peak RSS grew {grown} KiB ({peak_before} -> {peak_after}) for a 64 MiB body \
         refused after {sent} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_max_body_get_413_early_and_cost_bounded_memory() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let edge = Edge::start(|journal| {
        RelayConfig::new(journal)
            .server("max_body = \"1MiB\"")
            .route("wav", "/callbacks/wav", &[dest.url("/wav")], "")
            .route(
                "small",
                "/callbacks/small",
                &[dest.url("/small")],
                "max_body = \"1KiB\"",
            )
            .route(
                "big",
                "/callbacks/big",
                &[dest.url("/big")],
                "max_body = \"2MiB\"",
            )
    });
    edge.assert_acks("/callbacks/wav").await;

    // Declared too large: answered from the head alone, the body never sent. Waiting
    // for it would end in a 408 after body_read_timeout instead.
    let declared = request(edge.addr(), &post_head("/callbacks/wav", 2 * MIB), b"").await;
    assert_eq!(declared.status(), Some(413), "{declared}");

    assert_a_long_stream_is_cut_in_bounded_memory(&edge).await;

    // Per route: smaller and larger than [server] max_body.
    let small_body = vec![b' '; 2048];
    let small = request(
        edge.addr(),
        &post_head("/callbacks/small", 2048),
        &small_body,
    )
    .await;
    assert_eq!(small.status(), Some(413), "{small}");
    let body = [BODY.as_bytes(), &vec![b' '; 3 * MIB / 2]].concat();
    let wav = request(edge.addr(), &post_head("/callbacks/wav", body.len()), &body).await;
    assert_eq!(wav.status(), Some(413), "{wav}");
    let client = Client::plain();
    let big = client.post(&edge.url("/callbacks/big"), body, &[]).await;
    assert_eq!(big.status, 200, "1.5 MiB under big's 2 MiB: {}", big.text());

    // Only the two acknowledged callbacks were journaled and forwarded.
    let received = dest.wait_for(2, WAIT).await;
    let mut paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/big", "/wav"]);
    assert_eq!(edge.callbacks().await.len(), 2);
    let too_large = |route: &str| (route.to_owned(), 413, "body_too_large".to_owned());
    let expected = [
        too_large("wav"),
        too_large("wav"),
        too_large("small"),
        too_large("wav"),
    ];
    assert_eq!(edge.rejections().await, expected);
    assert_eq!(dest.count(), 2, "nothing refused was forwarded");
}

/// How a slowloris connection ended, and when, counted from its connect.
#[derive(Debug)]
struct SlowEnd {
    after: Duration,
    how: String,
}

/// Opens a connection that sends a partial request head and then one byte every 100 ms,
/// until the relay ends it. `opened` is counted up once the first bytes are sent.
async fn slowloris(addr: SocketAddr, opened: Arc<AtomicUsize>) -> SlowEnd {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the relay");
    let head = b"POST /callbacks/wav HTTP/1.1\r\nhost: relay\r\nx-slow: ";
    stream.write_all(head).await.expect("send the first bytes");
    opened.fetch_add(1, Ordering::SeqCst);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut buf = [0u8; 1024];
    let how = loop {
        tokio::select! {
            read = stream.read(&mut buf) => break match read {
                Ok(0) => "EOF".to_owned(),
                Ok(n) => format!("answered: {:?}", String::from_utf8_lossy(&buf[..n])),
                Err(err) => format!("read error: {err}"),
            },
            _ = tick.tick() => {
                if let Err(err) = stream.write_all(b"a").await {
                    break format!("write error: {err}");
                }
            }
        }
    };
    SlowEnd {
        after: started.elapsed(),
        how,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_heads_are_cut_at_header_read_timeout_and_starve_no_one() {
    const SLOW: usize = 200;
    let timeout = Duration::from_secs(1);
    let dest = FakeDestination::start(Script::always(200)).await;
    let edge = Edge::start(|journal| {
        RelayConfig::new(journal)
            .server("header_read_timeout = \"1s\"")
            .route("wav", "/callbacks/wav", &[dest.url("/wav")], "")
    });

    let opened = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let (opened, closed) = (Arc::clone(&opened), Arc::clone(&closed));
        let addr = edge.addr();
        slow.push(tokio::spawn(async move {
            let end = slowloris(addr, opened).await;
            closed.fetch_add(1, Ordering::SeqCst);
            end
        }));
    }
    support::wait_until(WAIT, || opened.load(Ordering::SeqCst) == SLOW).await;

    // A bound on behaviour, not speed: had the slow heads taken the relay's attention,
    // this would wait for their timeout.
    let started = Instant::now();
    let response = Client::plain()
        .post(&edge.url("/callbacks/wav"), BODY, &[])
        .await;
    let took = started.elapsed();
    let closed_by_then = closed.load(Ordering::SeqCst);
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        took < timeout,
        "the ack took {took:?} beside {SLOW} slow heads"
    );
    assert_eq!(
        closed_by_then, 0,
        "the ack came while every slow head was open"
    );

    // Trickling does not extend the timeout: every one is closed once it is over.
    for task in slow {
        let end = tokio::time::timeout(WAIT, task)
            .await
            .expect("the relay closes every slow head within the wait")
            .expect("the slow client does not panic");
        assert!(end.after >= timeout - Duration::from_millis(100), "{end:?}");
        // A byte trickled just as the relay closes reaches a closed socket, and the
        // kernel answers it with a reset: closed all the same.
        assert!(
            end.how == "EOF" || end.how.contains("reset"),
            "closed by the relay, not answered: {end:?}"
        );
    }
    edge.assert_acks("/callbacks/wav").await;
    assert_eq!(
        edge.callbacks().await.len(),
        2,
        "only the two acks were journaled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_408_at_body_read_timeout() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let edge = Edge::start(|journal| {
        RelayConfig::new(journal)
            .server("body_read_timeout = \"1s\"")
            .route("wav", "/callbacks/wav", &[dest.url("/wav")], "")
    });

    let stream = TcpStream::connect(edge.addr()).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        let head = format!("{}\r\n\r\n", post_head("/callbacks/wav", 1000));
        writer.write_all(head.as_bytes()).await?;
        for _ in 0..1000 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            writer.write_all(b" ").await?;
        }
        Ok::<OwnedWriteHalf, std::io::Error>(writer)
    });
    let answer = read_answer(&mut reader).await;
    let took = started.elapsed();
    trickle.abort();
    assert_eq!(answer.status(), Some(408), "{answer}");
    assert!(
        took >= Duration::from_millis(900),
        "408 after only {took:?}"
    );
    assert!(took < Duration::from_secs(5), "408 only after {took:?}");

    assert!(edge.callbacks().await.is_empty(), "nothing journaled");
    let expected = ("wav".to_owned(), 408, "body_timeout".to_owned());
    assert_eq!(edge.rejections().await, [expected]);
    edge.assert_acks("/callbacks/wav").await;
}

/// The value of the Prometheus sample `name` in `text`.
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_rate_limit_answers_429_with_retry_after_and_is_counted() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let edge = Edge::start(|journal| {
        let limit = "rate_limit = { rate = \"1/m\", burst = 2 }";
        RelayConfig::new(journal)
            .route(
                "limited",
                "/callbacks/limited",
                &[dest.url("/limited")],
                limit,
            )
            .route("open", "/callbacks/open", &[dest.url("/open")], "")
    });

    edge.assert_acks("/callbacks/limited").await;
    edge.assert_acks("/callbacks/limited").await;
    let url = edge.url("/callbacks/limited");
    let third = Client::plain().post(&url, BODY, &[]).await;
    assert_eq!(third.status, 429, "{}", third.text());
    let retry_after = third.header("retry-after").expect("a Retry-After header");
    let seconds: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {retry_after:?} is not whole seconds"));
    assert!((1..=60).contains(&seconds), "Retry-After {seconds}");

    // Another route has no limit, and the same client is not limited there.
    for _ in 0..5 {
        edge.assert_acks("/callbacks/open").await;
    }

    let metrics = edge.admin("/metrics").await.text();
    let rejected = "callback_relay_rejected_total{route=\"limited\",reason=\"rate_limited\"}";
    assert_eq!(sample(&metrics, rejected), Some(1), "{metrics}");
    let accepted = |route: &str| format!("callback_relay_accepted_total{{route=\"{route}\"}}");
    assert_eq!(sample(&metrics, &accepted("limited")), Some(2), "{metrics}");
    assert_eq!(sample(&metrics, &accepted("open")), Some(5), "{metrics}");
    assert!(!metrics.contains("route=\"open\",reason"), "{metrics}");
    let expected = ("limited".to_owned(), 429, "rate_limited".to_owned());
    assert_eq!(edge.rejections().await, [expected]);
    assert_eq!(edge.callbacks().await.len(), 7);
}

/// Posts to the `/callbacks/allowed` route with an `X-Forwarded-For` header, if any.
async fn allowed_status(edge: &Edge, forwarded_for: Option<&str>) -> Option<u16> {
    let mut head = post_head("/callbacks/allowed", BODY.len());
    if let Some(client) = forwarded_for {
        head += &format!("\r\nx-forwarded-for: {client}");
    }
    request(edge.addr(), &head, BODY.as_bytes()).await.status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_ips_sees_the_client_behind_a_trusted_proxy_only() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let route = |config: RelayConfig| {
        let only = "allow_ips = [\"192.0.2.0/24\"]";
        config.route(
            "allowed",
            "/callbacks/allowed",
            &[dest.url("/allowed")],
            only,
        )
    };

    // Without trusted proxies the peer 127.0.0.1 is the client, whatever it claims.
    let direct = Edge::start(|journal| route(RelayConfig::new(journal)));
    assert_eq!(allowed_status(&direct, None).await, Some(403));
    assert_eq!(allowed_status(&direct, Some("192.0.2.7")).await, Some(403));
    assert!(direct.callbacks().await.is_empty());
    let refused = ("allowed".to_owned(), 403, "ip_not_allowed".to_owned());
    assert_eq!(
        direct.rejections().await,
        [refused.clone(), refused.clone()]
    );

    // Behind a trusted proxy on 127.0.0.1 the forwarded address decides.
    let proxied = Edge::start(|journal| {
        route(RelayConfig::new(journal).server("trusted_proxies = [\"127.0.0.1/32\"]"))
    });
    assert_eq!(allowed_status(&proxied, Some("192.0.2.7")).await, Some(200));
    assert_eq!(
        allowed_status(&proxied, Some("198.51.100.1")).await,
        Some(403)
    );
    assert_eq!(allowed_status(&proxied, None).await, Some(403));
    assert_eq!(proxied.callbacks().await.len(), 1);
    assert_eq!(proxied.rejections().await, [refused.clone(), refused]);
    assert_eq!(dest.wait_for(1, WAIT).await.len(), 1);
}

/// A `POST /callbacks/wav` head with `fields` header fields in all.
fn head_with_fields(fields: usize) -> String {
    let mut head = post_head("/callbacks/wav", BODY.len());
    for n in 3..fields {
        head += &format!("\r\nx-field-{n}: {n}");
    }
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_over_max_header_size_or_max_headers_get_431() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let edge = Edge::start(|journal| {
        RelayConfig::new(journal)
            .server("max_header_size = \"8KiB\"\nmax_headers = 10")
            .route("wav", "/callbacks/wav", &[dest.url("/wav")], "")
    });
    let addr = edge.addr();

    // Just under each limit passes: 10 fields, a 6 KiB head.
    let ten = request(addr, &head_with_fields(10), BODY.as_bytes()).await;
    assert_eq!(ten.status(), Some(200), "{ten}");
    let padded = format!(
        "{}\r\nx-pad: {}",
        post_head("/callbacks/wav", BODY.len()),
        "p".repeat(6000)
    );
    let six_kib = request(addr, &padded, BODY.as_bytes()).await;
    assert_eq!(six_kib.status(), Some(200), "{six_kib}");

    // One field too many, and a head of 10 KiB.
    let eleven = request(addr, &head_with_fields(11), BODY.as_bytes()).await;
    assert_eq!(eleven.status(), Some(431), "{eleven}");
    let padded = format!(
        "{}\r\nx-pad: {}",
        post_head("/callbacks/wav", BODY.len()),
        "p".repeat(10_000)
    );
    let ten_kib = request(addr, &padded, BODY.as_bytes()).await;
    assert_eq!(ten_kib.status(), Some(431), "{ten_kib}");

    assert_eq!(
        edge.callbacks().await.len(),
        2,
        "only the two under the limits"
    );
    edge.assert_acks("/callbacks/wav").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_a_client_waits_for_a_free_slot() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let edge = Edge::start(|journal| {
        RelayConfig::new(journal)
            .server("max_connections = 2\nheader_read_timeout = \"2s\"")
            .route("wav", "/callbacks/wav", &[dest.url("/wav")], "")
    });
    let addr = edge.addr();
    let close = format!(
        "{}\r\nconnection: close",
        post_head("/callbacks/wav", BODY.len())
    );
    let third = move || {
        let head = close.clone();
        async move { request(addr, &head, BODY.as_bytes()).await }
    };

    // Two idle connections take both slots; a third is not served while they stand...
    let first = TcpStream::connect(addr).await.expect("connect");
    let second = TcpStream::connect(addr).await.expect("connect");
    let mut waiting = tokio::spawn(third());
    let early = tokio::time::timeout(Duration::from_millis(500), &mut waiting).await;
    assert!(early.is_err(), "served past max_connections: {early:?}");

    // ...and is once one of them closes.
    drop(first);
    let answer = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("served once a slot is free")
        .expect("the client does not panic");
    assert_eq!(answer.status(), Some(200), "{answer}");

    // Idle connections give their slots back at header_read_timeout, never closed.
    drop(second);
    let mut idle = [
        TcpStream::connect(addr).await.expect("connect"),
        TcpStream::connect(addr).await.expect("connect"),
    ];
    let started = Instant::now();
    let answer = third().await;
    let waited = started.elapsed();
    assert_eq!(answer.status(), Some(200), "{answer}");
    assert!(
        waited >= Duration::from_secs(1),
        "served after {waited:?} beside two idle"
    );
    for stream in &mut idle {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(WAIT, stream.read(&mut buf)).await;
        let read = read.expect("the relay closes an idle connection");
        assert!(matches!(read, Ok(0)), "{read:?}");
    }
    edge.assert_acks("/callbacks/wav").await;
    assert_eq!(edge.callbacks().await.len(), 3);
}

/// `n` pseudo-random bytes from a fixed seed (xorshift64), the same every run.
fn noise(n: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_a_4xx_or_a_close_and_is_never_journaled() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let edge = Edge::start(|journal| {
        RelayConfig::new(journal).route("wav", "/callbacks/wav", &[dest.url("/wav")], "")
    });
    let addr = edge.addr();
    let short = format!("{}\r\n\r\n{{\"data\":", post_head("/callbacks/wav", 100));
    let cases: Vec<(&str, Vec<u8>, bool)> =
        vec![
        ("random bytes", noise(4096), false),
        ("HTTP/1.0 GET", b"GET /callbacks/wav HTTP/1.0\r\n\r\n".to_vec(), false),
        (
            "HTTP/1.0 with transfer-encoding",
            b"POST /callbacks/wav HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n\
              2\r\n{}\r\n0\r\n\r\n"
                .to_vec(),
            false,
        ),
        ("a body shorter than content-length, then EOF", short.into_bytes(), true),
        (
            "a malformed chunked body",
            b"POST /callbacks/wav HTTP/1.1\r\nhost: relay\r\ntransfer-encoding: chunked\r\n\r\n\
              zz\r\n{}\r\n0\r\n\r\n"
                .to_vec(),
            false,
        ),
    ];
    for (what, bytes, then_close) in cases {
        let answer = exchange(addr, bytes, then_close).await;
        assert!(answer.refuses(), "{what}: {answer}");
    }

    edge.assert_acks("/callbacks/wav").await;
    assert_eq!(edge.callbacks().await.len(), 1, "only the normal request");
    assert_eq!(dest.wait_for(1, WAIT).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_hello_without_the_rest_is_closed_at_tls_handshake_timeout() {
    let certs = TestCerts::new();
    let dest = FakeDestination::start(Script::always(200)).await;
    let edge = Edge::start(|journal| {
        RelayConfig::new(journal)
            .tls(&certs)
            .server("tls_handshake_timeout = \"1s\"")
            .route("wav", "/callbacks/wav", &[dest.url("/wav")], "")
    });

    // A real ClientHello, and then silence.
    let name: rustls::pki_types::ServerName<'static> = "localhost".try_into().expect("a name");
    let config = Arc::new(certs.client_config(&[]));
    let mut tls = rustls::ClientConnection::new(config, name).expect("a TLS client");
    let mut hello = Vec::new();
    tls.write_tls(&mut hello).expect("the ClientHello");
    let mut stream = TcpStream::connect(edge.addr()).await.expect("connect");
    let started = Instant::now();
    stream
        .write_all(&hello)
        .await
        .expect("send the ClientHello");
    let mut served = Vec::new();
    let ended = tokio::time::timeout(WAIT, stream.read_to_end(&mut served)).await;
    let took = started.elapsed();
    assert!(ended.is_ok(), "not closed within {WAIT:?}");
    assert!(!served.is_empty(), "the relay answered the hello");
    assert!(
        took >= Duration::from_millis(900),
        "closed after only {took:?}"
    );

    // Garbage in place of a hello is closed too, and the listener still serves.
    let noise = exchange(edge.addr(), noise(512), false).await;
    assert!(matches!(noise, Answer::Closed(_)), "{noise}");
    let url = format!("https://{}/callbacks/wav", edge.addr());
    let response = Client::tls(&certs, Version::Http1)
        .post(&url, BODY, &[])
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(edge.callbacks().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_at_keep_alive_timeout() {
    let certs = TestCerts::new();
    let dest = FakeDestination::start(Script::always(200)).await;
    let edge = Edge::start(|journal| {
        RelayConfig::new(journal)
            .tls(&certs)
            .server("keep_alive_timeout = \"1s\"")
            .route("wav", "/callbacks/wav", &[dest.url("/wav")], "")
    });

    // An HTTP/2 client that answers pings but sends nothing after one request.
    let config = Arc::new(certs.client_config(&[b"h2"]));
    let tcp = TcpStream::connect(edge.addr()).await.expect("connect");
    let name: rustls::pki_types::ServerName<'static> = "localhost".try_into().expect("a name");
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("the TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let io = hyper_util::rt::TokioIo::new(tls);
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("the HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let request = http::Request::post("https://localhost/callbacks/wav")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            BODY.as_bytes(),
        )))
        .expect("a request");
    let response = sender.send_request(request).await.expect("an answer");
    assert_eq!(response.status(), 200);
    let answered = Instant::now();

    // The relay closes it about a second after the answer, and not before.
    let ended = tokio::time::timeout(WAIT, connection).await;
    let idle = answered.elapsed();
    assert!(
        ended.is_ok(),
        "an idle HTTP/2 connection still open after {WAIT:?}"
    );
    assert!(
        idle >= Duration::from_millis(900),
        "closed after only {idle:?}"
    );
    assert_eq!(edge.callbacks().await.len(), 1);
}
