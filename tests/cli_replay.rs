//! The inspection commands run as the real binary: against a running relay (through its
//! admin API) and against a stopped one (straight from the journal).

mod support;

use std::time::Duration;

use support::{
    Client, FakeDestination, RelayProcess, Reply, Script, cli_async, command_args, fixture, stderr,
    stdout, write_config,
};

const WAIT: Duration = Duration::from_secs(10);

/// Posts `body` to the relay's wav route and returns the callback id it acknowledged.
async fn post(relay: &RelayProcess, body: impl Into<bytes::Bytes>, content_type: &str) -> String {
    let response = Client::plain().post(
        &relay.url("/callbacks/wav"),
        body,
        &[("content-type", content_type)],
    );
    let response = response.await;
    assert_eq!(response.status.as_u16(), 200, "ack: {}", response.text());
    response.json()["id"]
        .as_str()
        .expect("the ack has an id")
        .to_string()
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_show_and_replay_through_retries_on_a_running_relay() {
    // Per callback id: the original delivery succeeds, the replay's first attempt
    // gets a 500 and its retry a 200.
    let script = Script::sequence(vec![Reply::ok(), Reply::status(500), Reply::ok()]);
    let dest = FakeDestination::start(script).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dest.url("/hooks/wav"), "");
    let relay = RelayProcess::start(&config);
    let admin = relay.admin.to_string();
    let id = post(&relay, fixture("wav-success"), "application/json").await;
    dest.wait_for(1, WAIT).await;

    let listed = cli_async(command_args(
        "list",
        &config,
        &["--admin", &admin, "--json"],
    ))
    .await;
    assert!(listed.status.success(), "list: {}", stderr(&listed));
    let rows = json_lines(&stdout(&listed));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], id.as_str());
    assert_eq!(rows[0]["task_id"], "988e1f7a2b3c4d5e6f708192a3b4c8d3");

    let table = cli_async(command_args("list", &config, &["--admin", &admin])).await;
    let text = stdout(&table);
    assert!(text.starts_with("ID"), "{text}");
    assert!(
        text.contains(&id[..12]) && text.contains("delivered"),
        "{text}"
    );

    let replayed = cli_async(command_args(
        "replay",
        &config,
        &["--admin", &admin, &id[..14]],
    ))
    .await;
    assert!(replayed.status.success(), "replay: {}", stderr(&replayed));
    assert!(
        stdout(&replayed).contains("queued 1 deliveries"),
        "{}",
        stdout(&replayed)
    );

    let got = dest.wait_for(3, WAIT).await;
    let replays: Vec<_> = got
        .iter()
        .filter(|r| r.header("x-relay-replay") == Some("true"))
        .collect();
    assert_eq!(replays.len(), 2, "the replay was retried once");
    for (n, request) in replays.iter().enumerate() {
        assert_eq!(request.relay_id(), Some(id.as_str()));
        assert_eq!(request.attempt(), Some(n as u32 + 1));
        assert_eq!(request.body, fixture("wav-success"));
    }
    assert_eq!(
        got[0].header("x-relay-replay"),
        None,
        "the original is no replay"
    );

    // The journal shows the replay delivery with both of its attempts.
    let detail = support::wait_until_async(WAIT, || {
        let config = config.clone();
        let (admin, id) = (admin.clone(), id.clone());
        async move {
            let shown = cli_async(command_args(
                "show",
                &config,
                &["--admin", &admin, &id, "--json"],
            ))
            .await;
            let detail: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
            detail["deliveries"][1]["state"] == "delivered"
        }
    });
    detail.await;
    let shown = cli_async(command_args(
        "show",
        &config,
        &["--admin", &admin, &id, "--json"],
    ))
    .await;
    let detail: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let replay = &detail["deliveries"][1];
    assert_eq!(replay["replay"], true);
    assert_eq!(replay["attempts"][0]["status"], 500);
    assert_eq!(replay["attempts"][1]["status"], 200);
    assert_eq!(detail["state"], "delivered");
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_to_sends_the_original_body_and_id_to_a_local_target() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let target = FakeDestination::start(Script::always_reply(
        Reply::status(500).body("handler blew up\nat line 3\n"),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dest.url("/hooks/wav"), "");
    let relay = RelayProcess::start(&config);
    let admin = relay.admin.to_string();
    let id = post(&relay, fixture("wav-failed"), "application/json").await;

    let to = target.url("/hooks/wav");
    let sent = cli_async(command_args(
        "replay",
        &config,
        &["--admin", &admin, &id, "--to", &to],
    ))
    .await;
    assert_eq!(
        sent.status.code(),
        Some(1),
        "a 500 is a failed replay: {}",
        stderr(&sent)
    );
    let out = stdout(&sent);
    assert!(
        out.contains("500") && out.contains("handler blew up"),
        "{out}"
    );

    let got = target.wait_for(1, WAIT).await;
    assert_eq!(got[0].body, fixture("wav-failed"));
    assert_eq!(got[0].relay_id(), Some(id.as_str()));
    assert_eq!(got[0].header("x-relay-replay"), Some("true"));
    assert_eq!(got[0].path, "/hooks/wav");

    // A changed header and body reach the target; the stored record stays as it was.
    let body_file = dir.path().join("fixed.json");
    std::fs::write(&body_file, b"{\"fixed\":true}").unwrap();
    let rest = [
        "--admin",
        &admin,
        &id,
        "--to",
        &to,
        "--header",
        "X-Debug: 1",
        "--body-file",
        body_file.to_str().unwrap(),
    ];
    cli_async(command_args("replay", &config, &rest)).await;
    let got = target.wait_for(2, WAIT).await;
    assert_eq!(&got[1].body[..], b"{\"fixed\":true}");
    assert_eq!(got[1].header("x-debug"), Some("1"));
    let body = cli_async(command_args(
        "show",
        &config,
        &["--admin", &admin, &id, "--body"],
    ))
    .await;
    let shown: serde_json::Value = serde_json::from_slice(&body.stdout).unwrap();
    assert_eq!(shown, support::fixture_json("wav-failed"));

    let shown = cli_async(command_args(
        "show",
        &config,
        &["--admin", &admin, &id, "--json"],
    ))
    .await;
    let detail: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(detail["sent"].as_array().map(Vec::len), Some(2), "{detail}");
    assert_eq!(detail["sent"][0]["status"], 500);
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_open_the_journal_when_the_relay_is_stopped() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let target = FakeDestination::start(Script::always(204)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dest.url("/hooks/wav"), "");
    let relay = RelayProcess::start(&config);
    let first = post(&relay, fixture("wav-success"), "application/json").await;
    let second = post(&relay, fixture("wav-failed"), "application/json").await;
    dest.wait_for(2, WAIT).await;
    relay.stop();

    // No relay: the config's admin port is 0, so the commands read the journal.
    let listed = cli_async(command_args("list", &config, &["--json"])).await;
    assert!(listed.status.success(), "list: {}", stderr(&listed));
    let ids: Vec<_> = json_lines(&stdout(&listed))
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()], "newest first");

    let shown = cli_async(command_args("show", &config, &[&first])).await;
    assert!(shown.status.success(), "show: {}", stderr(&shown));
    assert!(stdout(&shown).contains("delivered"), "{}", stdout(&shown));

    let to = target.url("/local");
    let sent = cli_async(command_args("replay", &config, &[&first, "--to", &to])).await;
    assert!(sent.status.success(), "replay --to: {}", stderr(&sent));
    assert_eq!(
        target.wait_for(1, WAIT).await[0].relay_id(),
        Some(first.as_str())
    );

    // Many selected without --yes and no terminal to ask on: refused.
    let many = cli_async(command_args("replay", &config, &["--route", "wav"])).await;
    assert_eq!(many.status.code(), Some(2));
    assert!(stderr(&many).contains("--yes"), "{}", stderr(&many));
    let dry = cli_async(command_args(
        "replay",
        &config,
        &["--route", "wav", "--dry-run"],
    ))
    .await;
    assert!(stdout(&dry).contains("would queue deliveries") && dest.count() == 2);

    // A paced bulk send to a local target ends with a summary.
    let started = std::time::Instant::now();
    let bulk = ["--route", "wav", "--to", &to, "--yes", "--rate", "4/s"];
    let bulk = cli_async(command_args("replay", &config, &bulk)).await;
    assert!(bulk.status.success(), "bulk replay: {}", stderr(&bulk));
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "two sends at 4/s are a quarter second apart"
    );
    assert!(
        stderr(&bulk).contains("replayed 2: 2 succeeded, 0 failed"),
        "{}",
        stderr(&bulk)
    );
    let got = target.wait_for(3, WAIT).await;
    let ids: std::collections::BTreeSet<_> = got[1..].iter().map(|r| r.relay_id()).collect();
    assert_eq!(ids, [Some(first.as_str()), Some(second.as_str())].into());

    // Queued while stopped, sent by the next serve.
    let queued = cli_async(command_args("replay", &config, &[&second])).await;
    assert!(queued.status.success(), "replay: {}", stderr(&queued));
    assert!(
        stderr(&queued).contains("when one next runs"),
        "{}",
        stderr(&queued)
    );
    let relay = RelayProcess::start(&config);
    let got = dest.wait_for(3, WAIT).await;
    assert_eq!(got[2].relay_id(), Some(second.as_str()));
    assert_eq!(got[2].header("x-relay-replay"), Some("true"));
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_journal_with_a_silent_admin_api_is_reported() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dest.url("/hooks/wav"), "");
    let relay = RelayProcess::start(&config);
    let closed = FakeDestination::closed_port();
    let listed = cli_async(command_args("list", &config, &["--admin", &closed])).await;
    assert_eq!(listed.status.code(), Some(1));
    let err = stderr(&listed);
    assert!(err.contains("is locked by a running relay"), "{err}");
    assert!(err.contains("does not answer"), "{err}");
    assert!(
        !err.contains("could not acquire lock"),
        "no raw sled error: {err}"
    );
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_keeps_bodies_byte_for_byte() {
    let dest = FakeDestination::start(Script::always(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dest.url("/hooks/wav"), "");
    let relay = RelayProcess::start(&config);
    let binary: Vec<u8> = vec![0xff, 0xfe, 0x00, 0x01, b'{', 0x80, b'\n', 0xc3];
    let json_id = post(&relay, fixture("wav-success"), "application/json").await;
    let binary_id = post(&relay, binary.clone(), "application/octet-stream").await;

    let file = dir.path().join("capture.jsonl");
    let rest = [
        "--admin",
        &relay.admin.to_string(),
        "--out",
        file.to_str().unwrap(),
    ]
    .map(String::from);
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let exported = cli_async(command_args("export", &config, &rest)).await;
    assert!(exported.status.success(), "export: {}", stderr(&exported));
    let lines = json_lines(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["body_encoding"], "utf8");
    assert_eq!(lines[1]["body_encoding"], "base64");
    relay.stop();

    // A laptop: another journal, no relay running.
    let laptop = tempfile::tempdir().unwrap();
    let laptop_config = write_config(laptop.path(), &dest.url("/hooks/wav"), "");
    let imported = cli_async(command_args(
        "import",
        &laptop_config,
        &[file.to_str().unwrap()],
    ))
    .await;
    assert!(imported.status.success(), "import: {}", stderr(&imported));
    assert!(stdout(&imported).contains("imported 2 callbacks (0 already present)"));
    let again = cli_async(command_args(
        "import",
        &laptop_config,
        &[file.to_str().unwrap()],
    ))
    .await;
    assert!(stdout(&again).contains("imported 0 callbacks (2 already present)"));

    let body = cli_async(command_args(
        "show",
        &laptop_config,
        &[&binary_id, "--body"],
    ))
    .await;
    assert_eq!(body.stdout, binary, "the non-UTF-8 body is byte-identical");
    let second = cli_async(command_args("export", &laptop_config, &[])).await;
    let relines = json_lines(&stdout(&second));
    assert_eq!(relines[0]["id"], json_id.as_str());
    assert_eq!(relines[0]["body"], lines[0]["body"]);
    assert_eq!(
        relines[0]["body"].as_str().unwrap().as_bytes(),
        &fixture("wav-success")[..]
    );
    assert_eq!(relines[1]["body"], lines[1]["body"]);
    assert_eq!(relines[1]["headers"], lines[1]["headers"]);
    assert_eq!(
        relines[0]["state"], "stored",
        "imported without --requeue: no deliveries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_sees_a_callback_posted_after_it_started() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dest = FakeDestination::start(Script::always(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dest.url("/hooks/wav"), "");
    let relay = RelayProcess::start(&config);
    let mut tail = Command::new(support::BIN)
        .args(command_args(
            "tail",
            &config,
            &["--admin", &relay.admin.to_string()],
        ))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait until tail follows, then post.
    let mut err = BufReader::new(tail.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("following events"), "{line}");
    let id = post(&relay, fixture("wav-success"), "application/json").await;

    let out = BufReader::new(tail.stdout.take().unwrap());
    let seen = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in out.lines().map_while(Result::ok) {
            let done = line.contains("attempt") && line.contains("delivered");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let lines = tokio::time::timeout(WAIT, seen)
        .await
        .expect("tail printed")
        .unwrap();
    let _ = tail.kill();
    let _ = tail.wait();
    assert!(
        lines[0].contains("accepted") && lines[0].contains(&id),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("attempt") && l.contains("200")),
        "{lines:?}"
    );
    relay.stop();
}
