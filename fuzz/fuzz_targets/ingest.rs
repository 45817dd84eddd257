//! Fuzzes the request path behind the listener: routing, admission (allow_ips
//! behind trusted proxies, rate limits, body size), caller verification and
//! journaling, with arbitrary methods, targets, headers and bodies.
//!
//! An input reads like a small HTTP/1 request, so seeds are easy to write and
//! the fuzzer's mutations stay meaningful:
//!
//! ```text
//! POST /callbacks/github sign
//! content-type: application/json
//!
//! {"code":200,...}
//! ```
//!
//! A request line ending in `sign` asks the harness to add a valid signature
//! for the route (github, kie), so accepted signed callbacks are reached too.
//! Inputs that hyper itself would refuse before any route sees them (a method
//! or header that does not parse) are skipped.
//!
//! What must hold for every input: no panic; an answer from the relay's list
//! of statuses; a 200 only with the callback durable in the journal exactly as
//! received (body bytes, headers in order, one pending delivery per
//! destination, the route's task id); and nothing journaled for any other
//! answer.

#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use callback_relay::config::Config;
use callback_relay::dispatcher::Dispatcher;
use callback_relay::ingest::Ingest;
use callback_relay::journal::{CallbackId, DeliveryState, Filter, Journal};
use callback_relay::route::{Route, RouteTable};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use ring::hmac;

/// Every route the relay knows in this harness. Destinations point at a port
/// nothing listens on, with an hour's backoff, so the dispatcher stays quiet.
const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
max_body = "64KiB"
body_read_timeout = "1s"
trusted_proxies = ["127.0.0.0/8"]

[admin]
listen = "127.0.0.1:0"

[journal]
path = "journal"
cache_capacity = "8MiB"
commit_interval = "0ms"

[retry]
initial_backoff = "1h"
max_backoff = "1h"
attempt_timeout = "1s"

[delivery]
connect_timeout = "1s"

[routes.wav]
path = "/callbacks/wav"
methods = ["POST", "PUT"]
destinations = ["http://127.0.0.1:9/hooks/wav", "http://127.0.0.1:9/hooks/copy"]

[routes.token]
path = "/callbacks/token/{token}"
destinations = ["http://127.0.0.1:9/hooks/token"]
verify = { scheme = "token", secrets = ["s3cret", "n3w"] }

[routes.query]
path = "/callbacks/query"
destinations = ["http://127.0.0.1:9/hooks/query"]
verify = { scheme = "token", param = "token", secrets = ["s3cret"] }

[routes.header]
path = "/callbacks/header"
destinations = ["http://127.0.0.1:9/hooks/header"]
verify = { scheme = "header", header = "X-Relay-Token", secrets = ["s3cret"] }

[routes.basic]
path = "/callbacks/basic"
destinations = ["http://127.0.0.1:9/hooks/basic"]
verify = { scheme = "basic", secrets = ["relay:pa55"] }

[routes.github]
path = "/callbacks/github"
destinations = ["http://127.0.0.1:9/hooks/github"]
verify = { scheme = "github", secrets = ["gh-secret"] }

[routes.stripe]
path = "/callbacks/stripe"
destinations = ["http://127.0.0.1:9/hooks/stripe"]
verify = { scheme = "stripe", secrets = ["whsec_stripe"] }

[routes.standard]
path = "/callbacks/standard"
destinations = ["http://127.0.0.1:9/hooks/standard"]
verify = { scheme = "standard-webhooks", secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] }

[routes.kie]
path = "/callbacks/kie"
destinations = ["http://127.0.0.1:9/hooks/kie"]
verify = { scheme = "kie", secrets = ["kie-key"] }

[routes.hmac]
path = "/callbacks/hmac"
destinations = ["http://127.0.0.1:9/hooks/hmac"]
verify = { scheme = "hmac", header = "X-Signature", algorithm = "sha512", encoding = "base64", signed = "{timestamp}.{body}", timestamp_header = "X-Timestamp", secrets = ["k"] }

[routes.allow]
path = "/callbacks/allow"
destinations = ["http://127.0.0.1:9/hooks/allow"]
allow_ips = ["203.0.113.0/24", "2001:db8::/32"]

[routes.small]
path = "/callbacks/small"
destinations = ["http://127.0.0.1:9/hooks/small"]
max_body = "100B"
rate_limit = { rate = "1000/s", burst = 1000 }
"#;

/// The statuses ingest may answer with. 503 is not among them: the journal
/// here is healthy, so a 503 would mean some input broke a journal write.
const STATUSES: [u16; 9] = [200, 400, 401, 403, 404, 405, 408, 413, 429];

/// Headers past this many are refused by the listener before ingest.
const MAX_HEADERS: usize = 100;

/// The relay's ingest side, built once per fuzzing process.
struct Harness {
    runtime: tokio::runtime::Runtime,
    ingest: Ingest,
    journal: Arc<Journal>,
    routes: Arc<RouteTable>,
    /// Keeps the journal's directory until the process ends.
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        // On a memory file system where there is one: every accepted input
        // waits for a flush, and a disk's fsync would set the pace.
        let dir = match std::path::Path::new("/dev/shm").is_dir() {
            true => tempfile::tempdir_in("/dev/shm"),
            false => tempfile::tempdir(),
        };
        let dir = dir.expect("a temp dir for the journal");
        let config = Config::parse(CONFIG, dir.path(), &|_| None).expect("the harness config");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let journal = Arc::new(Journal::from_config(&config.journal).expect("a fresh journal"));
        let routes = Arc::new(RouteTable::from_config(&config));
        let dispatcher = {
            let _entered = runtime.enter();
            Dispatcher::start(&config, Arc::clone(&journal), Arc::clone(&routes))
                .expect("the dispatcher")
        };
        let ingest = Ingest {
            routes: Arc::clone(&routes),
            journal: Arc::clone(&journal),
            dispatcher,
            body_read_timeout: config.server.body_read_timeout,
            tls: true,
            trusted_proxies: config.server.trusted_proxies.clone(),
        };
        Harness {
            runtime,
            ingest,
            journal,
            routes,
            _dir: dir,
        }
    })
}

/// A request as the input spells it.
struct Input {
    method: Method,
    uri: Uri,
    sign: bool,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

/// Reads an input; `None` for what hyper would refuse before ingest.
fn parse(data: &[u8]) -> Option<Input> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|b| *b == b'\n');
    let mut words = lines.next()?.split(|b| *b == b' ');
    let method = Method::from_bytes(words.next()?).ok()?;
    let uri = Uri::try_from(words.next()?).ok()?;
    uri.path().starts_with('/').then_some(())?;
    let sign = words.next() == Some(b"sign".as_slice());

    let mut headers = Vec::new();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|b| *b == b':')?;
        let name = HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = line[colon + 1..].trim_ascii_start();
        headers.push((name, HeaderValue::from_bytes(value).ok()?));
    }
    (headers.len() <= MAX_HEADERS).then_some(())?;
    Some(Input {
        method,
        uri,
        sign,
        headers,
        body: Bytes::copy_from_slice(body),
    })
}

/// Adds the signature headers the route's scheme expects, made with its key.
fn sign(route: &Route, input: &mut Input) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
        .to_string();
    let mut add = |name: &'static str, value: String| {
        let value = HeaderValue::from_str(&value).expect("signatures are ASCII");
        input.headers.push((HeaderName::from_static(name), value));
    };
    match route.name.as_str() {
        "github" => {
            let key = hmac::Key::new(hmac::HMAC_SHA256, b"gh-secret");
            let tag = hmac::sign(&key, &input.body);
            let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            add("x-hub-signature-256", format!("sha256={hex}"));
        }
        "kie" => {
            let task = route.task_id(&input.body).unwrap_or_default();
            let key = hmac::Key::new(hmac::HMAC_SHA256, b"kie-key");
            let tag = hmac::sign(&key, format!("{task}.{now}").as_bytes());
            add("x-webhook-timestamp", now);
            add(
                "x-webhook-signature",
                base64::prelude::BASE64_STANDARD.encode(tag),
            );
        }
        _ => {}
    }
}

/// The newest callback in the journal.
fn newest(journal: &Journal) -> Option<CallbackId> {
    let page = journal
        .list(&Filter::default(), None, 1)
        .expect("list the journal");
    page.callbacks.first().map(|summary| summary.record.id)
}

/// Checks that the callback acknowledged as `id` is in the journal exactly as
/// it was received.
fn assert_journaled(journal: &Journal, route: &Route, input: &Input, id: CallbackId) {
    let record = journal
        .record(id)
        .expect("read the record")
        .expect("an acked record");
    assert_eq!(record.route, route.name);
    assert_eq!(record.method, input.method.as_str());
    assert_eq!(journal.body(id).expect("read the body"), input.body);
    let sent: Vec<(String, Vec<u8>)> = input
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let mut kept = record.headers.clone();
    // The harness sends none of its own, but hyper's map groups repeated
    // names together: compare as multisets in received order per name.
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    let mut sent = sent;
    sent.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(kept, sent);
    assert_eq!(record.task_id, route.task_id(&input.body));

    let deliveries = journal.deliveries(id).expect("read the deliveries");
    assert_eq!(deliveries.len(), route.destination_urls.len());
    for delivery in deliveries {
        // Its first attempt may have failed already (nothing listens on
        // port 9), which leaves it pending for an hour.
        assert_eq!(delivery.state, DeliveryState::Pending);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(mut input) = parse(data) else {
        return;
    };
    let h = harness();
    let route = h
        .routes
        .lookup(input.uri.path())
        .map(|(route, _)| Arc::clone(route));
    if let (true, Some(route)) = (input.sign, &route) {
        sign(route, &mut input);
    }

    let mut request = Request::new(Full::new(input.body.clone()));
    *request.method_mut() = input.method.clone();
    *request.uri_mut() = input.uri.clone();
    for (name, value) in &input.headers {
        request.headers_mut().append(name.clone(), value.clone());
    }
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000));

    let before = newest(&h.journal);
    let (status, answer) = h.runtime.block_on(async {
        let reply = h.ingest.handle(request, peer).await;
        let status = reply.status();
        let body = reply
            .into_body()
            .collect()
            .await
            .expect("a full body")
            .to_bytes();
        (status, body)
    });
    assert!(
        STATUSES.contains(&status.as_u16()),
        "unexpected status {status}"
    );

    if status != StatusCode::OK {
        assert_eq!(
            newest(&h.journal),
            before,
            "a {status} journaled a callback"
        );
        return;
    }
    let route = route.expect("a 200 came from a route");
    let answer = std::str::from_utf8(&answer).expect("the ack is text");
    let id = answer
        .strip_prefix("{\"id\":\"")
        .and_then(|rest| rest.strip_suffix("\"}"))
        .expect("the ack is {\"id\":...}");
    let id: CallbackId = id.parse().expect("the ack's id is a ULID");
    assert_journaled(&h.journal, &route, &input, id);
});
