//! Self-tests of `tests/support`: the fake destination, client and certificates work over
//! real sockets, so failures elsewhere point at the relay, not at the tools.

mod support;

use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::{
    Call, Client, FakeDestination, Reply, Script, TestCerts, Version, fixture, fixture_json,
    wait_until, wait_until_async,
};

const WAIT: Duration = Duration::from_secs(5);

/// Posts an empty JSON object as attempt `attempt` of callback `id`; returns the status.
async fn attempt(client: &Client, url: &str, id: &str, attempt: u32) -> u16 {
    let n = attempt.to_string();
    let headers = [("x-relay-id", id), ("x-relay-attempt", n.as_str())];
    client.post(url, "{}", &headers).await.status.as_u16()
}

#[tokio::test]
async fn sequence_applies_per_relay_id_and_repeats_last() {
    let replies = vec![Reply::status(500), Reply::status(503), Reply::ok()];
    let dest = FakeDestination::start(Script::sequence(replies)).await;
    let (client, url) = (Client::plain(), dest.url("/hooks/wav"));
    assert_eq!(attempt(&client, &url, "a", 1).await, 500);
    assert_eq!(attempt(&client, &url, "b", 1).await, 500);
    assert_eq!(attempt(&client, &url, "a", 2).await, 503);
    assert_eq!(attempt(&client, &url, "a", 3).await, 200);
    assert_eq!(attempt(&client, &url, "a", 4).await, 200);
    assert_eq!(attempt(&client, &url, "b", 2).await, 503);
    assert_eq!(dest.count(), 6);
    assert_eq!(dest.ids().into_iter().collect::<Vec<_>>(), ["a"]);
    let statuses: Vec<_> = dest.received().iter().map(|r| r.status).collect();
    let want = [500, 500, 503, 200, 200, 503].map(Some);
    assert_eq!(statuses, want);
    let attempts: Vec<_> = dest.for_id("a").iter().map(|r| r.attempt()).collect();
    assert_eq!(attempts, [1, 2, 3, 4].map(Some));
}

#[tokio::test]
async fn overall_sequence_ignores_ids() {
    let script = Script::overall(vec![Reply::status(502), Reply::status(201)]);
    let dest = FakeDestination::start(script).await;
    let (client, url) = (Client::plain(), dest.url("x"));
    assert_eq!(attempt(&client, &url, "a", 1).await, 502);
    assert_eq!(attempt(&client, &url, "b", 1).await, 201);
    assert_eq!(attempt(&client, &url, "c", 1).await, 201);
    assert_eq!(dest.ids().len(), 2);
}

#[tokio::test]
async fn from_fn_sees_positions_and_request() {
    let script = Script::from_fn(|call: &Call<'_>| {
        let attempt = call.request.attempt().unwrap_or(0) as usize;
        assert_eq!(
            attempt,
            call.index_for_id + 1,
            "attempt header matches position"
        );
        Reply::status(200 + call.index as u16)
    });
    let dest = FakeDestination::start(script).await;
    let (client, url) = (Client::plain(), dest.url("/"));
    assert_eq!(attempt(&client, &url, "a", 1).await, 200);
    assert_eq!(attempt(&client, &url, "a", 2).await, 201);
    assert_eq!(attempt(&client, &url, "b", 1).await, 202);
}

#[tokio::test]
async fn reply_429_carries_retry_after_and_body() {
    let reply = Reply::status(429)
        .header("retry-after", "2")
        .body("slow down");
    let dest = FakeDestination::start(Script::always_reply(reply)).await;
    let response = Client::plain().post(&dest.url("/hooks"), "{}", &[]).await;
    assert_eq!(response.status, 429);
    assert_eq!(response.header("retry-after"), Some("2"));
    assert_eq!(response.text(), "slow down");
    assert!(dest.ids().is_empty(), "429 is not a success");
}

#[tokio::test]
async fn json_reply_sets_content_type() {
    let reply = Reply::ok().json(&serde_json::json!({"ok": true}));
    let dest = FakeDestination::start(Script::always_reply(reply)).await;
    let response = Client::plain().get(&dest.url("/")).await;
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.json()["ok"], true);
}

#[tokio::test]
async fn records_method_path_query_headers_body_and_version() {
    let dest = FakeDestination::start(Script::always(204)).await;
    let body = fixture("wav-success");
    let headers = [
        ("x-relay-id", "cb-1"),
        ("x-relay-attempt", "1"),
        ("x-extra", "yes"),
    ];
    let url = dest.url("/hooks/wav?source=test");
    let response = Client::plain().post(&url, body.clone(), &headers).await;
    assert_eq!(response.status, 204);
    let got = dest.wait_for(1, WAIT).await;
    let r = &got[0];
    assert_eq!(r.method, http::Method::POST);
    assert_eq!(r.path, "/hooks/wav?source=test");
    assert_eq!(r.body, body);
    assert_eq!(r.version, http::Version::HTTP_11);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-extra"), Some("yes"));
    assert_eq!((r.relay_id(), r.attempt()), (Some("cb-1"), Some(1)));
    assert_eq!(r.json(), fixture_json("wav-success"));
    assert_eq!(r.status, Some(204));
    assert!(r.at <= Instant::now());
}

#[tokio::test]
async fn request_sends_no_default_headers() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let url = dest.url("/raw");
    let client = Client::plain();
    client
        .request(
            http::Method::PUT,
            &url,
            "text",
            &[("content-type", "text/plain")],
        )
        .await;
    client.request(http::Method::POST, &url, "x", &[]).await;
    let got = dest.wait_for(2, WAIT).await;
    assert_eq!(got[0].method, http::Method::PUT);
    assert_eq!(got[0].header("content-type"), Some("text/plain"));
    assert_eq!(got[1].header("content-type"), None);
}

#[tokio::test]
async fn stall_delays_the_answer() {
    let stall = Duration::from_millis(300);
    let dest = FakeDestination::start(Script::always_reply(Reply::stall(stall))).await;
    let started = Instant::now();
    let response = Client::plain().post(&dest.url("/"), "{}", &[]).await;
    assert_eq!(response.status, 200);
    assert!(
        started.elapsed() >= stall,
        "answered after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn stall_past_client_timeout_times_out_and_is_not_answered() {
    let dest = FakeDestination::start(Script::always_reply(Reply::stall(WAIT))).await;
    let client = Client::plain().with_timeout(Duration::from_millis(200));
    let headers = [("x-relay-id", "slow")];
    let err = client
        .try_post(&dest.url("/"), "{}", &headers)
        .await
        .unwrap_err();
    assert!(err.timed_out, "{err}");
    assert_eq!(dest.count(), 1, "the request did arrive");
    assert!(dest.ids().is_empty(), "no answer was given yet");
}

#[tokio::test]
async fn reset_gives_http1_client_an_error() {
    let dest = FakeDestination::start(Script::always_reply(Reply::reset())).await;
    let err = Client::plain()
        .try_post(&dest.url("/"), "{}", &[])
        .await
        .unwrap_err();
    assert!(!err.timed_out, "{err}");
    let got = dest.wait_for(1, WAIT).await;
    assert_eq!(got[0].status, None, "a reset is not an answer");
}

#[tokio::test]
async fn reset_gives_h2c_client_an_error() {
    let dest = FakeDestination::start(Script::always_reply(Reply::reset())).await;
    let err = Client::h2c()
        .try_post(&dest.url("/"), "{}", &[])
        .await
        .unwrap_err();
    assert!(!err.timed_out, "{err}");
    assert_eq!(dest.received()[0].version, http::Version::HTTP_2);
}

#[tokio::test]
async fn reset_then_success_on_a_new_connection() {
    let script = Script::sequence(vec![Reply::reset(), Reply::ok()]);
    let dest = FakeDestination::start(script).await;
    let client = Client::plain();
    let url = dest.url("/");
    let headers = [("x-relay-id", "r")];
    assert!(client.try_post(&url, "{}", &headers).await.is_err());
    assert_eq!(client.post(&url, "{}", &headers).await.status, 200);
    assert_eq!(
        dest.connections(),
        2,
        "the reset closed the first connection"
    );
    assert!(dest.ids().contains("r"));
}

#[tokio::test]
async fn h2c_client_speaks_http2_to_plain_destination() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let response = Client::h2c().post(&dest.url("/"), "{}", &[]).await;
    assert_eq!(response.version, http::Version::HTTP_2);
    assert_eq!(dest.received()[0].version, http::Version::HTTP_2);
}

async fn tls_round_trip(version: Version, want: http::Version) {
    let certs = TestCerts::new();
    let dest = FakeDestination::start_tls(&certs, Script::always(200)).await;
    assert!(dest.url("/a").starts_with("https://127.0.0.1:"));
    let client = Client::tls(&certs, version);
    for url in [
        dest.url("/a"),
        dest.url("/a").replace("127.0.0.1", "localhost"),
    ] {
        let response = client.post(&url, "{}", &[("x-relay-id", "t")]).await;
        assert_eq!(
            (response.status.as_u16(), response.version),
            (200, want),
            "{url}"
        );
    }
    let got = dest.wait_for(2, WAIT).await;
    assert!(got.iter().all(|r| r.version == want));
}

#[tokio::test]
async fn tls_destination_over_http1() {
    tls_round_trip(Version::Http1, http::Version::HTTP_11).await;
}

#[tokio::test]
async fn tls_destination_over_http2() {
    tls_round_trip(Version::Http2, http::Version::HTTP_2).await;
}

#[tokio::test]
async fn tls_client_trusts_only_its_own_ca() {
    let (ours, theirs) = (TestCerts::new(), TestCerts::new());
    let dest = FakeDestination::start_tls(&theirs, Script::always(200)).await;
    for version in [Version::Http1, Version::Http2] {
        let client = Client::tls(&ours, version);
        let err = client
            .try_post(&dest.url("/"), "{}", &[])
            .await
            .unwrap_err();
        assert!(!err.timed_out, "{err}");
    }
    assert_eq!(dest.count(), 0);
}

#[tokio::test]
async fn tls_client_refuses_plain_http_urls() {
    let certs = TestCerts::new();
    let dest = FakeDestination::start(Script::always(200)).await;
    let client = Client::tls(&certs, Version::Http1);
    assert!(client.try_post(&dest.url("/"), "{}", &[]).await.is_err());
}

#[tokio::test]
async fn test_certs_write_usable_pem_files() {
    let certs = TestCerts::new();
    for path in [certs.cert_path(), certs.key_path(), certs.ca_path()] {
        assert!(
            path.starts_with(certs.dir()) && path.is_file(),
            "{}",
            path.display()
        );
    }
    let pem = std::fs::read(certs.cert_path()).unwrap();
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&pem).collect();
    assert_eq!(chain.len(), 1);
    let key = std::fs::read(certs.key_path()).unwrap();
    assert!(PrivateKeyDer::from_pem_slice(&key).is_ok());
    let ca = std::fs::read(certs.ca_path()).unwrap();
    let ca: Vec<_> = CertificateDer::pem_slice_iter(&ca)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ca[0], certs.ca_der());
    let alpn = certs.server_config().alpn_protocols;
    assert_eq!(alpn, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert_eq!(
        certs.client_config(&[b"h2"]).alpn_protocols,
        [b"h2".to_vec()]
    );
    let dir = certs.dir().to_owned();
    drop(certs);
    assert!(!dir.exists(), "files go away with the TestCerts");
}

#[tokio::test]
async fn wait_for_wakes_when_requests_arrive() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let (client, url) = (Client::plain(), dest.url("/"));
    let sender = tokio::spawn(async move {
        for i in 0..3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.post(&url, format!("{{\"i\":{i}}}"), &[]).await;
        }
    });
    let got = dest.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].json()["i"], 2);
    sender.await.unwrap();
}

#[tokio::test]
async fn wait_for_ids_waits_for_2xx_answers() {
    let script = Script::sequence(vec![Reply::status(500), Reply::ok()]);
    let dest = FakeDestination::start(script).await;
    let (client, url) = (Client::plain(), dest.url("/"));
    let task = tokio::spawn(async move {
        for n in 1..=2 {
            for id in ["x", "y"] {
                attempt(&client, &url, id, n).await;
            }
        }
    });
    let ids = dest.wait_for_ids(2, WAIT).await;
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["x", "y"]);
    task.await.unwrap();
}

#[tokio::test]
async fn try_wait_for_reports_what_arrived() {
    let dest = FakeDestination::start(Script::always(503)).await;
    Client::plain()
        .post(&dest.url("/late"), "{}", &[("x-relay-id", "q")])
        .await;
    let err = dest
        .try_wait_for(2, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(err.received.len(), 1);
    let text = err.to_string();
    assert!(
        text.contains("expected at least 2 request(s) within 100ms"),
        "{text}"
    );
    assert!(text.contains("POST /late") && text.contains("id=q") && text.contains("503"));
}

#[tokio::test]
#[should_panic(expected = "expected at least 2 request(s) within 100ms, but 0 request(s)")]
async fn wait_for_panics_on_timeout() {
    let dest = FakeDestination::start(Script::always(200)).await;
    dest.wait_for(2, Duration::from_millis(100)).await;
}

#[tokio::test]
#[should_panic(expected = "expected at least 1 relay id(s) answered 2xx")]
async fn wait_for_ids_panics_on_timeout() {
    let dest = FakeDestination::start(Script::always(500)).await;
    Client::plain()
        .post(&dest.url("/"), "{}", &[("x-relay-id", "z")])
        .await;
    dest.wait_for_ids(1, Duration::from_millis(100)).await;
}

#[tokio::test]
async fn closed_port_refuses_connections() {
    let url = format!("{}/hooks", FakeDestination::closed_port());
    let err = Client::plain().try_post(&url, "{}", &[]).await.unwrap_err();
    assert!(!err.timed_out, "{err}");
}

#[tokio::test]
async fn dropping_closes_even_kept_alive_connections_and_port_can_be_reused() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let (client, url, addr) = (Client::plain(), dest.url("/"), dest.addr());
    assert_eq!(client.post(&url, "{}", &[]).await.status, 200);
    drop(dest);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        client.try_post(&url, "{}", &[]).await.is_err(),
        "pooled connection is closed"
    );
    let again = FakeDestination::start_at(addr, Script::always(202)).await;
    assert_eq!(client.post(&url, "{}", &[]).await.status, 202);
    assert_eq!(again.count(), 1);
}

#[tokio::test]
async fn set_script_changes_later_answers() {
    let dest = FakeDestination::start(Script::always(500)).await;
    let (client, url) = (Client::plain(), dest.url("/"));
    assert_eq!(client.post(&url, "{}", &[]).await.status, 500);
    dest.set_script(Script::always(200));
    assert_eq!(client.post(&url, "{}", &[]).await.status, 200);
}

#[tokio::test]
async fn concurrent_posts_can_be_spawned() {
    let dest = FakeDestination::start(Script::always_reply(Reply::stall(Duration::from_millis(
        200,
    ))))
    .await;
    let client = Client::h2c();
    let started = Instant::now();
    let tasks: Vec<_> = (0..5)
        .map(|i| {
            let id = format!("c{i}");
            tokio::spawn(client.post(&dest.url("/"), "{}", &[("x-relay-id", id.as_str())]))
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "ran concurrently"
    );
    assert_eq!(dest.ids().len(), 5);
    assert_eq!(dest.connections(), 1, "one multiplexed h2 connection");
}

#[tokio::test]
async fn fixtures_are_read_from_the_crate() {
    let wav = fixture_json("wav-success");
    assert!(wav["data"]["task_id"].is_string(), "{wav}");
    assert_eq!(fixture("lyrics-complete.json"), fixture("lyrics-complete"));
}

#[test]
#[should_panic(expected = "fixture \"no-such-fixture\": cannot read")]
fn missing_fixture_panics_with_its_path() {
    fixture("no-such-fixture");
}

#[tokio::test]
async fn wait_until_returns_once_true() {
    let start = Instant::now();
    wait_until(WAIT, || start.elapsed() > Duration::from_millis(60)).await;
    let dest = FakeDestination::start(Script::always(200)).await;
    let (client, url) = (Client::plain(), dest.url("/"));
    wait_until_async(WAIT, || async { client.get(&url).await.status == 200 }).await;
}

#[tokio::test]
#[should_panic(expected = "condition still false after 50ms")]
async fn wait_until_panics_with_timeout() {
    wait_until(Duration::from_millis(50), || false).await;
}
