//! The admin API of a relay run as the real binary: where it may listen, its token, and
//! its health and inspection routes.

mod support;

use http::Method;
use support::{Client, FakeDestination, RelayProcess, Script, cli, fixture, stderr, write_config};

#[test]
fn admin_off_loopback_without_a_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "http://127.0.0.1:9/hooks", "");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        "[admin]\nlisten = \"0.0.0.0:0\"",
    );
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();

    let checked = cli(&["check", "--config", config]);
    assert_eq!(checked.status.code(), Some(2));
    assert!(
        stderr(&checked).contains("admin.token: required"),
        "{}",
        stderr(&checked)
    );

    let served = cli(&["serve", "--config", config]);
    assert_eq!(served.status.code(), Some(2), "serve must refuse, not run");
    assert!(
        stderr(&served).contains("admin.token"),
        "{}",
        stderr(&served)
    );
    assert!(!dir.path().join("journal").exists(), "nothing was started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_gets_401_and_the_right_one_gets_in() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &dest.url("/hooks/wav"),
        "token = \"s3cret-token\"",
    );
    let relay = RelayProcess::start(&config);
    let client = Client::plain();
    let url = relay.admin_url("/v1/callbacks");

    let none = client.request(Method::GET, &url, "", &[]).await;
    assert_eq!(none.status.as_u16(), 401);
    let wrong = [("authorization", "Bearer s3cret-tokem")];
    assert_eq!(
        client
            .request(Method::GET, &url, "", &wrong)
            .await
            .status
            .as_u16(),
        401
    );
    let short = [("authorization", "Bearer s3cret")];
    assert_eq!(
        client
            .request(Method::GET, &url, "", &short)
            .await
            .status
            .as_u16(),
        401
    );
    let health = client
        .request(Method::GET, &relay.admin_url("/healthz"), "", &wrong)
        .await;
    assert_eq!(health.status.as_u16(), 401, "every route needs the token");

    let right = [("authorization", "Bearer s3cret-token")];
    let listed = client.request(Method::GET, &url, "", &right).await;
    assert_eq!(listed.status.as_u16(), 200, "{}", listed.text());
    let lower_case = [("authorization", "bearer s3cret-token")];
    let listed_too = client.request(Method::GET, &url, "", &lower_case).await;
    assert_eq!(
        listed_too.status.as_u16(),
        200,
        "the scheme name is case-insensitive"
    );
    assert_eq!(listed.json()["callbacks"], serde_json::json!([]));

    // The commands send the config's token.
    let admin = relay.admin.to_string();
    let config = config.to_str().unwrap().to_string();
    let list = move || cli(&["list", "--config", &config, "--admin", &admin]);
    let out = tokio::task::spawn_blocking(list).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_listing_body_and_task_routes_answer() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dest.url("/hooks/wav"), "");
    let relay = RelayProcess::start(&config);
    let client = Client::plain();

    assert_eq!(
        client
            .get(&relay.admin_url("/healthz"))
            .await
            .status
            .as_u16(),
        200
    );
    let ready = client.get(&relay.admin_url("/readyz")).await;
    assert_eq!(ready.status.as_u16(), 200, "{}", ready.text());
    assert_eq!(ready.json()["dispatcher"], "running");

    let headers = [("content-type", "application/json; charset=utf-8")];
    let ack = client
        .post(
            &relay.url("/callbacks/wav"),
            fixture("wav-success"),
            &headers,
        )
        .await;
    let id = ack.json()["id"].as_str().unwrap().to_string();
    let body = client
        .get(&relay.admin_url(&format!("/v1/callbacks/{id}/body")))
        .await;
    assert_eq!(body.body, fixture("wav-success"));
    assert_eq!(
        body.header("content-type"),
        Some("application/json; charset=utf-8")
    );

    let task = client
        .get(&relay.admin_url("/v1/tasks/988e1f7a2b3c4d5e6f708192a3b4c8d3"))
        .await;
    assert_eq!(task.json()["callbacks"][0]["id"], id.as_str());
    let missing = client
        .get(&relay.admin_url("/v1/callbacks/01ZZZZZZZZZZZZZZZZZZZZZZZZ"))
        .await;
    assert_eq!(missing.status.as_u16(), 404);
    let bad = client
        .get(&relay.admin_url("/v1/callbacks?state=lost"))
        .await;
    assert_eq!(bad.status.as_u16(), 400);
    assert!(
        bad.text().contains("unknown state \\\"lost\\\""),
        "{}",
        bad.text()
    );

    // Not on the public listener.
    let public = client.get(&relay.url("/v1/callbacks")).await;
    assert_eq!(public.status.as_u16(), 404);
    relay.stop();
}
