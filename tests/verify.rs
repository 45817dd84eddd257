//! Caller verification end to end: the real binary with routes that check a
//! path token and a GitHub signature; what passes is journaled and forwarded,
//! what fails gets 401, is counted at `/metrics`, is kept in the rejected
//! ring, and shows no secret.

mod support;

use std::time::Duration;

use base64::Engine as _;
use ring::hmac;
use support::{
    Client, FakeDestination, RelayConfig, RelayProcess, Script, cli, fixture, stderr, stdout,
};

const WAIT: Duration = Duration::from_secs(10);
const OLD_TOKEN: &str = "tok-old-6c1b3015141849d1";
const NEW_TOKEN: &str = "tok-new-c153143acc634090";
const GITHUB_SECRET: &str = "gh-secret-8431cf0e90cb";

fn github_signature(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn kie_signature(secret: &str, task_id: &str, timestamp: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, format!("{task_id}.{timestamp}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_secs()
}

/// A relay with three verified routes, all forwarding to `dest`.
fn start_relay(
    dir: &std::path::Path,
    dest: &FakeDestination,
) -> (RelayProcess, std::path::PathBuf) {
    let config = RelayConfig::new(&dir.join("journal"))
        .route(
            "wav",
            "/callbacks/wav/{token}",
            &[dest.url("/hooks/wav")],
            &format!(
                "verify = {{ scheme = \"token\", secrets = [\"{OLD_TOKEN}\", \"{NEW_TOKEN}\"] }}"
            ),
        )
        .route(
            "gh",
            "/callbacks/gh",
            &[dest.url("/hooks/gh")],
            &format!("verify = {{ scheme = \"github\", secrets = [\"{GITHUB_SECRET}\"] }}"),
        )
        .route(
            "lyrics",
            "/callbacks/lyrics",
            &[dest.url("/hooks/lyrics")],
            "verify = { scheme = \"kie\", secrets = [\"kie-key-1\"] }",
        );
    let path = config.write(dir);
    (RelayProcess::start(&path), path)
}

#[tokio::test]
async fn a_path_token_admits_old_and_new_secrets_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let dest = FakeDestination::start(Script::always(200)).await;
    let (relay, config) = start_relay(dir.path(), &dest);
    let client = Client::plain();
    let body = fixture("wav-success");

    for token in [OLD_TOKEN, NEW_TOKEN] {
        let url = relay.url(&format!("/callbacks/wav/{token}"));
        let response = client.post(&url, body.clone(), &[]).await;
        assert_eq!(response.status, 200, "token accepted: {}", response.text());
    }
    let wrong = relay.url("/callbacks/wav/tok-guess");
    let response = client.post(&wrong, body.clone(), &[]).await;
    assert_eq!(response.status, 401);
    assert!(!response.text().contains("tok-"), "{}", response.text());
    let response = client
        .post(&relay.url("/callbacks/wav/"), body.clone(), &[])
        .await;
    assert_eq!(response.status, 404, "no token segment: no route");

    // Exactly the two accepted callbacks are forwarded.
    let received = dest.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(dest.count(), 2, "{received:?}");
    assert!(received.iter().all(|r| r.body == body));

    // The refusal is counted and kept, and the kept path hides the token.
    let metrics = client.get(&relay.admin_url("/metrics")).await.text();
    assert!(
        metrics.contains("callback_relay_accepted_total{route=\"wav\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("callback_relay_rejected_total{route=\"wav\",reason=\"bad_secret\"} 1"),
        "{metrics}"
    );
    let config = config.to_str().unwrap();
    let admin = relay.admin.to_string();
    let admin = admin.as_str();
    let rejected = cli(&[
        "list",
        "--rejected",
        "--json",
        "--config",
        config,
        "--admin",
        admin,
    ]);
    let text = stdout(&rejected);
    assert!(text.contains("bad_secret"), "{text} {}", stderr(&rejected));
    assert!(
        !text.contains("tok-guess"),
        "the presented token is hidden: {text}"
    );

    // `show` of an accepted callback hides the valid token in its path.
    let listed = stdout(&cli(&[
        "list", "--route", "wav", "--json", "--config", config, "--admin", admin,
    ]));
    let id =
        serde_json::from_str::<serde_json::Value>(listed.lines().next().unwrap()).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let shown = stdout(&cli(&[
        "show", &id, "--json", "--config", config, "--admin", admin,
    ]));
    assert!(
        !shown.contains(OLD_TOKEN) && !shown.contains(NEW_TOKEN),
        "{shown}"
    );
    assert!(shown.contains("/callbacks/wav/<redacted>"), "{shown}");
    relay.stop();
}

#[tokio::test]
async fn a_github_signature_must_match_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let dest = FakeDestination::start(Script::always(200)).await;
    let (relay, _config) = start_relay(dir.path(), &dest);
    let client = Client::plain();
    let url = relay.url("/callbacks/gh");
    let body = fixture("music-complete");
    let signature = github_signature(GITHUB_SECRET, &body);

    let signed = [("x-hub-signature-256", signature.as_str())];
    let response = client.post(&url, body.clone(), &signed).await;
    assert_eq!(response.status, 200, "{}", response.text());

    let mut tampered = body.to_vec();
    tampered[10] ^= 1;
    assert_eq!(client.post(&url, tampered, &signed).await.status, 401);
    let wrong = github_signature("another-secret", &body);
    let wrong = [("x-hub-signature-256", wrong.as_str())];
    assert_eq!(client.post(&url, body.clone(), &wrong).await.status, 401);
    assert_eq!(client.post(&url, body.clone(), &[]).await.status, 401);

    let received = dest.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(dest.count(), 1, "only the signed callback is forwarded");
    assert_eq!(received[0].body, body);
    assert_eq!(
        received[0].header("x-hub-signature-256"),
        Some(signature.as_str())
    );
    let metrics = client.get(&relay.admin_url("/metrics")).await.text();
    for line in [
        "callback_relay_rejected_total{route=\"gh\",reason=\"bad_signature\"} 2",
        "callback_relay_rejected_total{route=\"gh\",reason=\"missing_header\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    relay.stop();
}

#[tokio::test]
async fn a_kie_signature_covers_the_task_id_and_a_fresh_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let dest = FakeDestination::start(Script::always(200)).await;
    let (relay, _config) = start_relay(dir.path(), &dest);
    let client = Client::plain();
    let url = relay.url("/callbacks/lyrics");
    let body = fixture("lyrics-complete");
    let task = "11dc7e6f5a4b3c2d1e0f9a8b7c6d8b0f";

    let now = unix_now().to_string();
    let signature = kie_signature("kie-key-1", task, &now);
    let headers = [
        ("x-webhook-timestamp", now.as_str()),
        ("x-webhook-signature", signature.as_str()),
    ];
    let response = client.post(&url, body.clone(), &headers).await;
    assert_eq!(response.status, 200, "{}", response.text());

    let stale = (unix_now() - 3600).to_string();
    let signature = kie_signature("kie-key-1", task, &stale);
    let headers = [
        ("x-webhook-timestamp", stale.as_str()),
        ("x-webhook-signature", signature.as_str()),
    ];
    let response = client.post(&url, body.clone(), &headers).await;
    assert_eq!(response.status, 401, "an hour-old signature is refused");

    dest.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(dest.count(), 1);
    relay.stop();
}
