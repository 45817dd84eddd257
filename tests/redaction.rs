//! Secrets a callback carried (credentials, signatures, cookies) are hidden wherever the
//! inspection side shows them: `show`, `show --json`, the admin API's detail and `export`.
//! `--reveal` shows them from the journal; the admin API reveals only with a configured
//! token. Replays always send what was received.

mod support;

use std::time::Duration;

use http::Method;
use support::{
    Client, FakeDestination, RelayProcess, Script, cli_async, command_args, fixture, stderr,
    stdout, write_config,
};

const WAIT: Duration = Duration::from_secs(10);

const SECRETS: [(&str, &str); 3] = [
    ("authorization", "Bearer x"),
    (
        "stripe-signature",
        "t=1738300000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd",
    ),
    ("cookie", "session=8d1f0c"),
];

/// Posts the wav fixture with [`SECRETS`] and returns the acknowledged id.
async fn post_with_secrets(relay: &RelayProcess) -> String {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(SECRETS);
    let ack = Client::plain()
        .post(
            &relay.url("/callbacks/wav"),
            fixture("wav-success"),
            &headers,
        )
        .await;
    assert_eq!(ack.status.as_u16(), 200, "{}", ack.text());
    ack.json()["id"].as_str().expect("an id").to_string()
}

/// The value of header `name` in a JSON view's `headers` array.
fn header<'a>(view: &'a serde_json::Value, name: &str) -> &'a str {
    view["headers"]
        .as_array()
        .expect("headers is an array")
        .iter()
        .find(|h| h["name"] == name)
        .and_then(|h| h["value"].as_str())
        .unwrap_or_else(|| panic!("no header {name} in {view}"))
}

/// Panics unless every secret is hidden in `view` and the other headers are not.
#[track_caller]
fn assert_hidden(view: &serde_json::Value) {
    for (name, _) in SECRETS {
        assert_eq!(header(view, name), "<redacted>", "{name} in {view}");
    }
    assert_eq!(header(view, "content-type"), "application/json");
}

#[track_caller]
fn assert_revealed(view: &serde_json::Value) {
    for (name, value) in SECRETS {
        assert_eq!(header(view, name), value, "{name} in {view}");
    }
}

fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(output)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_hidden_in_show_the_api_and_export_but_replays_send_them() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let target = FakeDestination::start(Script::always(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dest.url("/hooks/wav"), "");
    let relay = RelayProcess::start(&config);
    let admin = relay.admin.to_string();
    let id = post_with_secrets(&relay).await;

    // The destination got the originals.
    let got = dest.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("authorization"), Some("Bearer x"));

    let text = cli_async(command_args("show", &config, &["--admin", &admin, &id])).await;
    assert!(text.status.success(), "show: {}", stderr(&text));
    let out = stdout(&text);
    assert!(out.contains("authorization: <redacted>"), "{out}");
    assert!(out.contains("stripe-signature: <redacted>"), "{out}");
    assert!(out.contains("cookie: <redacted>"), "{out}");
    assert!(
        !out.contains("Bearer x") && !out.contains("session=8d1f0c"),
        "{out}"
    );

    let shown = cli_async(command_args(
        "show",
        &config,
        &["--admin", &admin, &id, "--json"],
    ))
    .await;
    assert_hidden(&json(&shown));

    let client = Client::plain();
    let api = client
        .get(&relay.admin_url(&format!("/v1/callbacks/{id}")))
        .await;
    assert_eq!(api.status.as_u16(), 200, "{}", api.text());
    assert_hidden(&api.json());
    assert!(!api.text().contains("Bearer x"), "{}", api.text());

    // Without an admin token nobody may reveal through the API.
    let revealed = client
        .get(&relay.admin_url(&format!("/v1/callbacks/{id}?reveal=true")))
        .await;
    assert_eq!(revealed.status.as_u16(), 403, "{}", revealed.text());
    assert!(
        revealed.text().contains("[admin] token"),
        "{}",
        revealed.text()
    );
    let export = client.get(&relay.admin_url("/v1/export?reveal=true")).await;
    assert_eq!(export.status.as_u16(), 403);
    let show = cli_async(command_args(
        "show",
        &config,
        &["--admin", &admin, &id, "--reveal"],
    ))
    .await;
    assert_eq!(show.status.code(), Some(2), "{}", stderr(&show));

    let exported = cli_async(command_args("export", &config, &["--admin", &admin])).await;
    assert!(exported.status.success(), "export: {}", stderr(&exported));
    let line: serde_json::Value = serde_json::from_str(stdout(&exported).trim()).unwrap();
    assert_hidden(&line);
    assert_eq!(line["redacted"], true);

    // A replay sends what was received, not what is shown.
    let to = target.url("/local");
    let sent = cli_async(command_args(
        "replay",
        &config,
        &["--admin", &admin, &id, "--to", &to],
    ))
    .await;
    assert!(sent.status.success(), "replay --to: {}", stderr(&sent));
    let got = target.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("authorization"), Some("Bearer x"));
    assert_eq!(got[0].header("cookie"), Some("session=8d1f0c"));
    relay.stop();

    // From the journal itself, --reveal simply works.
    let offline = cli_async(command_args("show", &config, &[&id, "--json"])).await;
    assert!(offline.status.success(), "show: {}", stderr(&offline));
    assert_hidden(&json(&offline));
    let offline = cli_async(command_args("show", &config, &[&id, "--json", "--reveal"])).await;
    assert_revealed(&json(&offline));
    let text = cli_async(command_args("show", &config, &[&id, "--reveal"])).await;
    assert!(
        stdout(&text).contains("authorization: Bearer x"),
        "{}",
        stdout(&text)
    );

    let hidden = cli_async(command_args("export", &config, &[])).await;
    let line: serde_json::Value = serde_json::from_str(stdout(&hidden).trim()).unwrap();
    assert_hidden(&line);
    let exact = cli_async(command_args("export", &config, &["--reveal"])).await;
    let line: serde_json::Value = serde_json::from_str(stdout(&exact).trim()).unwrap();
    assert_revealed(&line);
    assert_eq!(line.get("redacted"), None, "a revealed line is not marked");

    // Offline replays send the originals too.
    let sent = cli_async(command_args("replay", &config, &[&id, "--to", &to])).await;
    assert!(sent.status.success(), "replay --to: {}", stderr(&sent));
    let got = target.wait_for(2, WAIT).await;
    assert_eq!(got[1].header("authorization"), Some("Bearer x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_admin_token_lets_a_request_reveal() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &dest.url("/hooks/wav"),
        "token = \"admin-s3cret\"",
    );
    let relay = RelayProcess::start(&config);
    let admin = relay.admin.to_string();
    let id = post_with_secrets(&relay).await;

    let client = Client::plain();
    let bearer = [("authorization", "Bearer admin-s3cret")];
    let detail = |query: &str| relay.admin_url(&format!("/v1/callbacks/{id}{query}"));
    let hidden = client.request(Method::GET, &detail(""), "", &bearer).await;
    assert_hidden(&hidden.json());
    let revealed = client
        .request(Method::GET, &detail("?reveal=true"), "", &bearer)
        .await;
    assert_eq!(revealed.status.as_u16(), 200, "{}", revealed.text());
    assert_revealed(&revealed.json());
    let without = client.get(&detail("?reveal=true")).await;
    assert_eq!(without.status.as_u16(), 401, "the token is still needed");
    let odd = client
        .request(Method::GET, &detail("?reveal=yes"), "", &bearer)
        .await;
    assert_eq!(odd.status.as_u16(), 400);

    // The commands send the config's token, so --reveal works through the API.
    let shown = cli_async(command_args(
        "show",
        &config,
        &["--admin", &admin, &id, "--json", "--reveal"],
    ))
    .await;
    assert!(shown.status.success(), "show: {}", stderr(&shown));
    assert_revealed(&json(&shown));
    let exported = cli_async(command_args(
        "export",
        &config,
        &["--admin", &admin, "--reveal"],
    ))
    .await;
    let line: serde_json::Value = serde_json::from_str(stdout(&exported).trim()).unwrap();
    assert_revealed(&line);
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_of_a_redacted_export_says_so() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dest.url("/hooks/wav"), "");
    let relay = RelayProcess::start(&config);
    post_with_secrets(&relay).await;
    relay.stop();

    let file = dir.path().join("capture.jsonl");
    let out = file.to_str().unwrap();
    let exported = cli_async(command_args("export", &config, &["--out", out])).await;
    assert!(exported.status.success(), "{}", stderr(&exported));

    let laptop = tempfile::tempdir().unwrap();
    let laptop_config = write_config(laptop.path(), &dest.url("/hooks/wav"), "");
    let imported = cli_async(command_args("import", &laptop_config, &[out])).await;
    assert!(imported.status.success(), "{}", stderr(&imported));
    let text = stdout(&imported);
    assert!(text.contains("imported 1 callbacks"), "{text}");
    assert!(
        text.contains("1 of them had secrets hidden at export"),
        "{text}"
    );
}
