//! The relay end to end, in-process: ingest over TLS and plain HTTP, the ack, and
//! forwarding with retries to fake destinations that fail, stall and come back.

mod support;

use std::time::{Duration, Instant};

use callback_relay::journal::DeliveryState;
use http::Method;
use support::{
    Client, FakeDestination, RelayConfig, Reply, Script, TestCerts, Version, fixture,
    journaled_deliveries,
};

const WAIT: Duration = Duration::from_secs(10);

/// Posts `body` to `url` and returns the callback id from a 200 ack.
async fn ack(client: &Client, url: &str, body: impl Into<bytes::Bytes>) -> String {
    let response = client.post(url, body, &[]).await;
    assert_eq!(response.status, 200, "ack: {}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    let id = response.json()["id"]
        .as_str()
        .expect("ack carries an id")
        .to_owned();
    assert_eq!(id.len(), 26, "a ULID: {id}");
    id
}

#[tokio::test]
async fn tls_ingest_over_http1_and_http2_forwards_byte_identical_bodies() {
    let certs = TestCerts::new();
    let journal = tempfile::tempdir().unwrap();
    let dest = FakeDestination::start(Script::always(200)).await;
    let relay = RelayConfig::new(journal.path())
        .tls(&certs)
        .route("wav", "/callbacks/wav", &[dest.url("/hooks/wav")], "")
        .start()
        .await;
    let url = relay.url("/callbacks/wav");
    assert!(url.starts_with("https://"));

    let h1 = Client::tls(&certs, Version::Http1);
    let h2 = Client::tls(&certs, Version::Http2);
    let response = h2.post(&url, fixture("wav-success"), &[]).await;
    assert_eq!(response.version, http::Version::HTTP_2);
    assert_eq!(response.status, 200);
    let id2 = response.json()["id"].as_str().unwrap().to_owned();
    let id1 = ack(&h1, &url, fixture("wav-success-snake-case")).await;
    assert_ne!(id1, id2);

    let received = dest.wait_for(2, WAIT).await;
    for (id, name) in [(&id1, "wav-success-snake-case"), (&id2, "wav-success")] {
        let got = received
            .iter()
            .find(|r| r.relay_id() == Some(id))
            .expect("forwarded");
        assert_eq!(got.body, fixture(name), "{name} arrives byte for byte");
        assert_eq!(got.method, Method::POST);
        assert_eq!(got.path, "/hooks/wav");
        assert_eq!(got.attempt(), Some(1));
        assert_eq!(got.header("x-forwarded-proto"), Some("https"));
        assert_eq!(got.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(got.header("content-type"), Some("application/json"));
        assert_eq!(got.header("host"), Some(dest.addr().to_string().as_str()));
    }
    relay.stop().await;
}

#[tokio::test]
async fn end_to_end_headers_are_kept_and_hop_by_hop_ones_dropped() {
    let journal = tempfile::tempdir().unwrap();
    let dest = FakeDestination::start(Script::always(200)).await;
    let relay = RelayConfig::new(journal.path())
        .route("wav", "/callbacks/wav", &[dest.url("/hooks/wav")], "")
        .start()
        .await;
    let headers = [
        ("x-webhook-timestamp", "1733212800"),
        ("user-agent", "music-api/1.0"),
        ("connection", "keep-alive, x-secret-hop"),
        ("x-secret-hop", "must not pass"),
        ("x-relay-id", "forged"),
        ("x-forwarded-for", "203.0.113.7"),
    ];
    let response = Client::plain()
        .post(
            &relay.url("/callbacks/wav"),
            fixture("wav-success"),
            &headers,
        )
        .await;
    assert_eq!(response.status, 200);
    let id = response.json()["id"].as_str().unwrap().to_owned();

    let got = dest.wait_for(1, WAIT).await.remove(0);
    assert_eq!(
        got.relay_id(),
        Some(id.as_str()),
        "the relay's id replaces a forged one"
    );
    assert_eq!(got.header("x-webhook-timestamp"), Some("1733212800"));
    assert_eq!(got.header("user-agent"), Some("music-api/1.0"));
    assert_eq!(got.header("x-secret-hop"), None);
    assert_eq!(
        got.header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(got.header("x-forwarded-proto"), Some("http"));
    relay.stop().await;
}

#[tokio::test]
async fn unknown_paths_wrong_methods_and_large_bodies_are_refused() {
    let journal = tempfile::tempdir().unwrap();
    let dest = FakeDestination::start(Script::always(200)).await;
    let relay = RelayConfig::new(journal.path())
        .route("wav", "/callbacks/wav", &[dest.url("/hooks/wav")], "")
        .route(
            "put",
            "/callbacks/put",
            &[dest.url("/hooks/put")],
            "methods = [\"PUT\"]",
        )
        .start()
        .await;
    let client = Client::plain();

    let missing = client.post(&relay.url("/callbacks/nope"), "{}", &[]).await;
    assert_eq!(missing.status, 404);
    let trailing = client.post(&relay.url("/callbacks/wav/"), "{}", &[]).await;
    assert_eq!(trailing.status, 404, "routing is by exact path");

    let get = client.get(&relay.url("/callbacks/wav")).await;
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));
    let post = client.post(&relay.url("/callbacks/put"), "{}", &[]).await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("PUT"));
    let put = client
        .request(Method::PUT, &relay.url("/callbacks/put"), "{}", &[])
        .await;
    assert_eq!(put.status, 200, "a route may accept PUT");

    let huge = vec![b'x'; 1024 * 1024 + 1];
    let large = client.post(&relay.url("/callbacks/wav"), huge, &[]).await;
    assert_eq!(large.status, 413);

    // A body that is not JSON has no task id but is still a callback.
    let text = [("content-type", "text/plain")];
    let plain = client
        .post(&relay.url("/callbacks/wav"), "not json", &text)
        .await;
    assert_eq!(plain.status, 200);

    let got = dest.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        dest.count(),
        2,
        "only the accepted callbacks are forwarded: {got:?}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn fan_out_reaches_every_destination_while_one_is_down() {
    let journal = tempfile::tempdir().unwrap();
    let up = FakeDestination::start(Script::always(200)).await;
    let down = FakeDestination::closed_port();
    let down_url = format!("{down}/hooks/wav");
    let relay = RelayConfig::new(journal.path())
        .retry("initial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\nmax_attempts = 1000")
        .route(
            "wav",
            "/callbacks/wav",
            &[up.url("/hooks/wav"), down_url.clone()],
            "",
        )
        .start()
        .await;
    let client = Client::plain();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            ack(
                &client,
                &relay.url("/callbacks/wav"),
                fixture("wav-success"),
            )
            .await,
        );
    }
    let delivered = up.wait_for_ids(3, WAIT).await;
    assert_eq!(delivered, ids.iter().cloned().collect());

    // The second destination comes up on its port and receives the backlog.
    let addr = down.trim_start_matches("http://").parse().unwrap();
    let late = FakeDestination::start_at(addr, Script::always(200)).await;
    let delivered = late.wait_for_ids(3, WAIT).await;
    assert_eq!(delivered, ids.iter().cloned().collect());
    for id in &ids {
        let attempts = late.for_id(id);
        assert!(
            attempts.iter().all(|r| r.attempt().unwrap() > 1),
            "earlier attempts failed"
        );
    }
    assert_eq!(
        up.count(),
        3,
        "the healthy destination got each callback once"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_stalled_destination_delays_neither_acks_nor_other_destinations() {
    let journal = tempfile::tempdir().unwrap();
    let stalled = FakeDestination::start(Script::always_reply(Reply::stall(WAIT))).await;
    let fast = FakeDestination::start(Script::always(200)).await;
    let relay = RelayConfig::new(journal.path())
        .route(
            "wav",
            "/callbacks/wav",
            &[stalled.url("/a"), fast.url("/b")],
            "",
        )
        .start()
        .await;
    let client = Client::plain();
    let started = Instant::now();
    for _ in 0..5 {
        ack(
            &client,
            &relay.url("/callbacks/wav"),
            fixture("wav-success"),
        )
        .await;
    }
    fast.wait_for_ids(5, Duration::from_secs(3)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "acks and the fast destination did not wait for the stalled one"
    );
    assert!(
        stalled.count() >= 1,
        "the stalled destination is being tried"
    );
    relay.stop().await;
}

#[tokio::test]
async fn server_errors_are_retried_until_the_destination_takes_the_callback() {
    let journal = tempfile::tempdir().unwrap();
    let script = Script::sequence(vec![Reply::status(500), Reply::status(503), Reply::ok()]);
    let dest = FakeDestination::start(script).await;
    let relay = RelayConfig::new(journal.path())
        .route("wav", "/callbacks/wav", &[dest.url("/hooks/wav")], "")
        .start()
        .await;
    let id = ack(
        &Client::plain(),
        &relay.url("/callbacks/wav"),
        fixture("wav-success"),
    )
    .await;

    dest.wait_for_ids(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let attempts = dest.for_id(&id);
    let numbers: Vec<_> = attempts.iter().map(|r| r.attempt()).collect();
    assert_eq!(
        numbers,
        [Some(1), Some(2), Some(3)],
        "three attempts, then none"
    );
    assert!(attempts.iter().all(|r| r.body == fixture("wav-success")));
    relay.stop().await;

    let deliveries = journaled_deliveries(journal.path(), &id);
    assert_eq!(deliveries.len(), 1);
    let (delivery, attempts) = &deliveries[0];
    assert_eq!(delivery.state, DeliveryState::Delivered);
    assert_eq!(delivery.attempts, 3);
    let statuses: Vec<_> = attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(503), Some(200)]);
    assert_eq!(
        attempts.iter().map(|a| a.number).collect::<Vec<_>>(),
        [1, 2, 3]
    );
}

#[tokio::test]
async fn retry_after_from_a_429_is_honoured() {
    let journal = tempfile::tempdir().unwrap();
    let busy = Reply::status(429).header("retry-after", "2");
    let dest = FakeDestination::start(Script::sequence(vec![busy, Reply::ok()])).await;
    let relay = RelayConfig::new(journal.path())
        .retry("initial_backoff = \"50ms\"\nmax_backoff = \"30s\"")
        .route("wav", "/callbacks/wav", &[dest.url("/hooks/wav")], "")
        .start()
        .await;
    ack(
        &Client::plain(),
        &relay.url("/callbacks/wav"),
        fixture("wav-success"),
    )
    .await;

    let received = dest.wait_for(2, WAIT).await;
    let gap = received[1].at - received[0].at;
    assert!(
        gap >= Duration::from_millis(1900) && gap < Duration::from_secs(4),
        "second attempt {gap:?} after a 429 with Retry-After: 2"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_client_error_makes_the_delivery_dead_at_once() {
    let journal = tempfile::tempdir().unwrap();
    let dest = FakeDestination::start(Script::always(404)).await;
    let relay = RelayConfig::new(journal.path())
        .route("wav", "/callbacks/wav", &[dest.url("/hooks/wav")], "")
        .start()
        .await;
    let id = ack(
        &Client::plain(),
        &relay.url("/callbacks/wav"),
        fixture("wav-success"),
    )
    .await;
    dest.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(dest.count(), 1, "a 404 is not retried");
    relay.stop().await;

    let deliveries = journaled_deliveries(journal.path(), &id);
    let (delivery, attempts) = &deliveries[0];
    assert_eq!(delivery.state, DeliveryState::Dead);
    assert_eq!(delivery.last_status, Some(404));
    assert_eq!(attempts.len(), 1);
}

#[tokio::test]
async fn attempts_run_out_after_max_attempts() {
    let journal = tempfile::tempdir().unwrap();
    let dest = FakeDestination::start(Script::always(502)).await;
    let relay = RelayConfig::new(journal.path())
        .route(
            "wav",
            "/callbacks/wav",
            &[dest.url("/hooks/wav")],
            "retry = { max_attempts = 3 }",
        )
        .start()
        .await;
    let id = ack(
        &Client::plain(),
        &relay.url("/callbacks/wav"),
        fixture("wav-success"),
    )
    .await;
    dest.wait_for(3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        dest.count(),
        3,
        "the route's max_attempts overrides [retry]"
    );
    relay.stop().await;

    let deliveries = journaled_deliveries(journal.path(), &id);
    let (delivery, attempts) = &deliveries[0];
    assert_eq!(delivery.state, DeliveryState::Dead);
    assert_eq!(delivery.last_status, Some(502));
    assert_eq!(attempts.len(), 3);
}

#[tokio::test]
async fn timeouts_and_resets_are_retried() {
    let journal = tempfile::tempdir().unwrap();
    let script = Script::sequence(vec![
        Reply::reset(),
        Reply::stall(Duration::from_secs(5)),
        Reply::ok(),
    ]);
    let dest = FakeDestination::start(script).await;
    let relay = RelayConfig::new(journal.path())
        .retry("initial_backoff = \"50ms\"\nmax_backoff = \"100ms\"\nattempt_timeout = \"300ms\"")
        .route("wav", "/callbacks/wav", &[dest.url("/hooks/wav")], "")
        .start()
        .await;
    let id = ack(
        &Client::plain(),
        &relay.url("/callbacks/wav"),
        fixture("wav-success"),
    )
    .await;
    dest.wait_for_ids(1, WAIT).await;
    relay.stop().await;

    let deliveries = journaled_deliveries(journal.path(), &id);
    let (delivery, attempts) = &deliveries[0];
    assert_eq!(delivery.state, DeliveryState::Delivered);
    assert_eq!(attempts.len(), 3);
    assert!(
        attempts[0].status.is_none() && attempts[0].error.is_some(),
        "{attempts:?}"
    );
    let timeout = attempts[1].error.as_deref().unwrap_or_default();
    assert!(timeout.contains("timed out"), "second attempt: {timeout}");
}

#[tokio::test]
async fn a_restarted_relay_resumes_its_backlog() {
    let journal = tempfile::tempdir().unwrap();
    let port = FakeDestination::closed_port();
    let config = RelayConfig::new(journal.path()).route(
        "wav",
        "/callbacks/wav",
        &[format!("{port}/hooks/wav")],
        "",
    );
    let relay = config.start().await;
    let client = Client::plain();
    let mut ids = Vec::new();
    for name in ["wav-success-snake-case", "wav-success", "wav-failed"] {
        ids.push(ack(&client, &relay.url("/callbacks/wav"), fixture(name)).await);
    }
    relay.stop().await;

    let addr = port.trim_start_matches("http://").parse().unwrap();
    let dest = FakeDestination::start_at(addr, Script::always(200)).await;
    let relay = config.start().await;
    let delivered = dest.wait_for_ids(3, WAIT).await;
    assert_eq!(delivered, ids.iter().cloned().collect());
    relay.stop().await;
}
