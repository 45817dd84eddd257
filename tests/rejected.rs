//! The ring of rejected requests as the inspection side shows it: `list --rejected` from
//! the journal when no relay runs, and through the admin API (`GET /v1/rejected`) of one
//! that does, with secrets hidden unless revealed.
//!
//! Records are put in with `Journal::record_rejected`, the call the public listener makes.
//! For the running case the admin API is started in this process on a journal the test
//! holds, since a relay started whole keeps its journal to itself.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use callback_relay::admin::{self, Admin};
use callback_relay::config::Config;
use callback_relay::dispatcher::Dispatcher;
use callback_relay::journal::{Journal, RejectedRecord};
use callback_relay::redact::redactor_for;
use callback_relay::replay::Replayer;
use callback_relay::route::RouteTable;
use support::{Client, cli_async, stderr, stdout, write_config};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// `callback-relay list --rejected --config <config> <rest...>` as owned args.
fn list_rejected(config: &Path, rest: &[&str]) -> Vec<String> {
    let mut all = vec![
        "list".to_string(),
        "--rejected".into(),
        "--config".into(),
        config.display().to_string(),
    ];
    all.extend(rest.iter().map(|s| s.to_string()));
    all
}

/// A refused request to `route`, `seconds` after a fixed time.
fn refused(journal: &Journal, route: &str, seconds: u64, reason: &str) -> RejectedRecord {
    RejectedRecord {
        id: journal.next_id(),
        route: route.to_string(),
        received_at_ms: 1_738_300_000_000 + seconds * 1000,
        method: "POST".into(),
        path_and_query: format!("/callbacks/{route}?attempt=2"),
        peer: "198.51.100.4:52100".into(),
        status: 401,
        reason: reason.to_string(),
        detail: "the signature does not match the body".into(),
        headers: vec![
            ("content-type".into(), b"application/json".to_vec()),
            ("authorization".into(), b"Bearer leaked-token".to_vec()),
        ],
        body: b"{\"code\":200}".to_vec(),
        body_len: 12,
    }
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// An admin API served in this process on a journal the test can write to.
struct InProcessAdmin {
    addr: SocketAddr,
    journal: Arc<Journal>,
    dispatcher: Arc<Dispatcher>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl InProcessAdmin {
    async fn start(config: &Config) -> InProcessAdmin {
        let journal = Arc::new(Journal::from_config(&config.journal).expect("open the journal"));
        let routes = Arc::new(RouteTable::from_config(config));
        let dispatcher =
            Dispatcher::start(config, Arc::clone(&journal), routes).expect("start dispatcher");
        let replayer = Replayer::new(config, Arc::clone(&journal), Some(Arc::clone(&dispatcher)))
            .expect("build the replayer");
        let (_stopping, stopped) = watch::channel(false);
        let state = Arc::new(Admin {
            journal: Arc::clone(&journal),
            dispatcher: Arc::clone(&dispatcher),
            replayer,
            token: config.admin.token.clone(),
            redactor: redactor_for(config),
            public_addr: "127.0.0.1:9".into(),
            draining: stopped.clone(),
            stopping: stopped,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let addr = listener.local_addr().expect("admin addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(admin::serve(
            listener,
            state,
            shutdown,
            Duration::from_secs(2),
        ));
        InProcessAdmin {
            addr,
            journal,
            dispatcher,
            stop,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("the admin api stops");
        self.dispatcher.shutdown(Duration::from_secs(2)).await;
        self.journal.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_rejected_reads_the_journal_when_no_relay_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "http://127.0.0.1:9/hooks/wav", "");
    let ids = {
        let journal = Journal::open(&dir.path().join("journal"), 8 << 20).unwrap();
        let records = [
            refused(&journal, "wav", 0, "bad_signature"),
            refused(&journal, "mp4", 1, "rate_limited"),
            refused(&journal, "wav", 2, "address_not_allowed"),
        ];
        let ids: Vec<String> = records.iter().map(|r| r.id.to_string()).collect();
        for record in records {
            journal.record_rejected(record).unwrap();
        }
        journal.close();
        ids
    };

    let table = cli_async(list_rejected(&config, &[])).await;
    assert!(table.status.success(), "list: {}", stderr(&table));
    let text = stdout(&table);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for column in ["TIME", "ROUTE", "PEER", "STATUS", "REASON", "DETAIL/PATH"] {
        assert!(lines[0].contains(column), "{text}");
    }
    assert!(
        lines[1].contains("address_not_allowed"),
        "newest first: {text}"
    );
    assert!(lines[3].contains("bad_signature"), "{text}");
    assert!(
        lines[1].contains("198.51.100.4:52100")
            && lines[1].contains("401")
            && lines[1].contains("the signature does not match the body")
            && lines[1].contains("POST /callbacks/wav?attempt=2"),
        "{text}"
    );
    let status_at = lines[0].find("STATUS").unwrap();
    assert_eq!(
        &lines[1][status_at..status_at + 3],
        "401",
        "aligned: {text}"
    );

    let wav = cli_async(list_rejected(&config, &["--route", "wav", "--json"])).await;
    let rows = json_lines(&stdout(&wav));
    let got: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(got, [ids[2].as_str(), ids[0].as_str()]);
    assert_eq!(rows[0]["body"], "{\"code\":200}");
    assert_eq!(rows[0]["body_len"], 12);
    assert_eq!(rows[0]["headers"][1]["value"], "<redacted>");

    let limited = cli_async(list_rejected(&config, &["--limit", "1", "--json"])).await;
    assert_eq!(json_lines(&stdout(&limited)).len(), 1);

    // Whoever reads the journal directory holds the secrets anyway.
    let revealed = cli_async(list_rejected(&config, &["--json", "--reveal"])).await;
    assert!(revealed.status.success(), "{}", stderr(&revealed));
    let rows = json_lines(&stdout(&revealed));
    assert_eq!(rows[0]["headers"][1]["value"], "Bearer leaked-token");

    let mixed = cli_async(list_rejected(&config, &["--state", "dead"])).await;
    assert_eq!(mixed.status.code(), Some(2), "--state does not apply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_rejected_asks_the_admin_api_of_a_running_relay() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "http://127.0.0.1:9/hooks/wav", "");
    let config = Config::load(&path).unwrap();
    let admin = InProcessAdmin::start(&config).await;
    let first = refused(&admin.journal, "wav", 0, "bad_signature");
    let second = refused(&admin.journal, "mp4", 1, "body_too_large");
    admin.journal.record_rejected(first.clone()).unwrap();
    admin.journal.record_rejected(second.clone()).unwrap();
    let addr = admin.addr.to_string();

    // The journal is held open here, so an answer proves the command asked the API.
    let listed = cli_async(list_rejected(&path, &["--admin", &addr, "--json"])).await;
    assert!(listed.status.success(), "list: {}", stderr(&listed));
    let rows = json_lines(&stdout(&listed));
    let got: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(got, [second.id.to_string(), first.id.to_string()]);
    assert_eq!(rows[1]["reason"], "bad_signature");
    assert_eq!(rows[1]["headers"][1]["value"], "<redacted>");

    let table = cli_async(list_rejected(&path, &["--admin", &addr, "--route", "wav"])).await;
    let text = stdout(&table);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("bad_signature") && !text.contains("body_too_large"));

    let client = Client::plain();
    let api = client
        .get(&admin.url("/v1/rejected?route=mp4&limit=5"))
        .await;
    assert_eq!(api.status.as_u16(), 200, "{}", api.text());
    assert_eq!(api.json()["rejected"][0]["id"], second.id.to_string());
    assert_eq!(api.json()["rejected"].as_array().unwrap().len(), 1);
    let bad = client.get(&admin.url("/v1/rejected?limit=many")).await;
    assert_eq!(bad.status.as_u16(), 400);

    // No token configured: nobody may reveal through the API.
    let reveal = client.get(&admin.url("/v1/rejected?reveal=true")).await;
    assert_eq!(reveal.status.as_u16(), 403);
    assert!(reveal.text().contains("token"), "{}", reveal.text());
    let denied = cli_async(list_rejected(&path, &["--admin", &addr, "--reveal"])).await;
    assert_eq!(denied.status.code(), Some(2), "{}", stderr(&denied));
    assert!(stderr(&denied).contains("token"), "{}", stderr(&denied));
    admin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_lets_list_rejected_reveal() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "http://127.0.0.1:9/hooks/wav",
        "token = \"admin-s3cret\"",
    );
    let config = Config::load(&path).unwrap();
    let admin = InProcessAdmin::start(&config).await;
    let record = refused(&admin.journal, "wav", 0, "bad_signature");
    admin.journal.record_rejected(record).unwrap();
    let addr = admin.addr.to_string();

    let shown = cli_async(list_rejected(&path, &["--admin", &addr, "--json"])).await;
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert_eq!(
        json_lines(&stdout(&shown))[0]["headers"][1]["value"],
        "<redacted>"
    );
    let revealed = cli_async(list_rejected(
        &path,
        &["--admin", &addr, "--json", "--reveal"],
    ))
    .await;
    assert!(revealed.status.success(), "{}", stderr(&revealed));
    assert_eq!(
        json_lines(&stdout(&revealed))[0]["headers"][1]["value"],
        "Bearer leaked-token"
    );
    admin.stop().await;
}
