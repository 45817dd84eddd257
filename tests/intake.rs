//! New callbacks across restarts: an ack writes only the callback, lanes find deliveries never
//! attempted by scanning, and the journal's intake mark says where a restart scans from.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use callback_relay::journal::CallbackId;
use support::{Client, FakeDestination, RelayConfig, Reply, Script, fixture};

const WAIT: Duration = Duration::from_secs(10);

/// Posts the WAV fixture `n` times and returns the acknowledged ids.
async fn post(client: &Client, url: &str, n: usize) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for _ in 0..n {
        let response = client.post(url, fixture("wav-success"), &[]).await;
        assert_eq!(response.status, 200, "ack: {}", response.text());
        ids.insert(response.json()["id"].as_str().expect("an id").to_owned());
    }
    ids
}

#[tokio::test]
async fn a_restart_sends_nothing_that_was_delivered_again() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let dest = FakeDestination::start(Script::always(200)).await;
    let config =
        RelayConfig::new(&journal).route("wav", "/callbacks/wav", &[dest.url("/hooks/wav")], "");
    let client = Client::plain();

    let relay = config.start().await;
    let first = post(&client, &relay.url("/callbacks/wav"), 10).await;
    assert_eq!(dest.wait_for_ids(10, WAIT).await, first);
    relay.stop().await;

    // The mark moved past every callback delivered.
    let newest: CallbackId = first.iter().max().unwrap().parse().unwrap();
    {
        let journal = support::open_stopped_journal(&journal).await;
        let mark = journal.intake_mark().unwrap();
        assert!(mark > newest, "intake mark {mark} is not past {newest}");
    }

    let relay = config.start().await;
    let second = post(&client, &relay.url("/callbacks/wav"), 1).await;
    dest.wait_for(11, WAIT).await;
    // Time for anything sent twice to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received: Vec<String> = dest
        .received()
        .iter()
        .filter_map(|r| r.relay_id().map(str::to_owned))
        .collect();
    assert_eq!(received.len(), 11, "each callback once: {received:?}");
    let all: BTreeSet<String> = first.union(&second).cloned().collect();
    assert_eq!(received.into_iter().collect::<BTreeSet<_>>(), all);
    relay.stop().await;
}

#[tokio::test]
async fn deliveries_never_attempted_still_go_to_a_destination_no_longer_configured() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    // The old destination takes one attempt at a time and holds it, so at the stop one attempt
    // is cut off and the rest were never made.
    let old = FakeDestination::start(Script::always_reply(
        Reply::ok().delay(Duration::from_secs(60)),
    ))
    .await;
    let new = FakeDestination::start(Script::always(200)).await;
    let client = Client::plain();

    let before = RelayConfig::new(&journal)
        .server("shutdown_timeout = \"200ms\"")
        .route("wav", "/callbacks/wav", &[old.url("/hooks/wav")], "")
        .tables("[delivery]\nconcurrency = 1");
    let relay = before.start().await;
    let ids = post(&client, &relay.url("/callbacks/wav"), 4).await;
    old.wait_for(1, WAIT).await;
    relay.stop().await;
    assert_eq!(old.count(), 1, "one attempt was made before the stop");

    // The route now sends to another destination; what was accepted for the old one still
    // goes there.
    old.set_script(Script::always(200));
    let after =
        RelayConfig::new(&journal).route("wav", "/callbacks/wav", &[new.url("/hooks/wav")], "");
    let relay = after.start().await;
    let delivered = old.wait_for_ids(4, WAIT).await;
    assert_eq!(delivered, ids);
    let fresh = post(&client, &relay.url("/callbacks/wav"), 1).await;
    assert_eq!(new.wait_for_ids(1, WAIT).await, fresh);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        new.count(),
        1,
        "the new destination only gets new callbacks"
    );
    relay.stop().await;
}

/// Posts the WAV fixture `n` times over `workers` connections at once.
async fn post_concurrently(
    client: &Client,
    url: &str,
    n: usize,
    workers: usize,
) -> BTreeSet<String> {
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let (client, url) = (client.clone(), url.to_owned());
        let share = n / workers + usize::from(worker < n % workers);
        tasks.push(tokio::spawn(
            async move { post(&client, &url, share).await },
        ));
    }
    let mut ids = BTreeSet::new();
    for task in tasks {
        ids.extend(task.await.expect("a posting task"));
    }
    ids
}

#[tokio::test]
async fn a_lane_far_behind_the_intake_mark_scans_its_way_to_new_callbacks() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    // One destination holds its only attempt, so the intake mark stays at its callback while
    // the other destination gets thousands after it: more than a lane reads in one turn.
    let held = FakeDestination::start(Script::always_reply(
        Reply::ok().delay(Duration::from_secs(60)),
    ))
    .await;
    let fast = FakeDestination::start(Script::always(200)).await;
    let config = RelayConfig::new(&journal)
        .server("shutdown_timeout = \"200ms\"")
        .route(
            "held",
            "/callbacks/held",
            &[held.url("/hooks/held")],
            "retry = { attempt_timeout = \"5m\" }",
        )
        .route("wav", "/callbacks/wav", &[fast.url("/hooks/wav")], "");
    let client = Client::plain();

    let relay = config.start().await;
    let oldest = post(&client, &relay.url("/callbacks/held"), 1).await;
    held.wait_for(1, WAIT).await;
    let behind = post_concurrently(&client, &relay.url("/callbacks/wav"), 3000, 8).await;
    assert_eq!(
        fast.wait_for_ids(3000, Duration::from_secs(60)).await,
        behind
    );
    relay.stop().await;
    let oldest: CallbackId = oldest.first().unwrap().parse().unwrap();
    {
        let journal = support::open_stopped_journal(&journal).await;
        let mark = journal.intake_mark().unwrap();
        assert!(
            mark <= oldest,
            "intake mark {mark} passed the held callback {oldest}"
        );
    }

    // After the restart the fast destination's lane reads every callback since the mark
    // again; it must get through them to a new one without being woken for each turn.
    held.set_script(Script::always(200));
    let relay = config.start().await;
    let new = post(&client, &relay.url("/callbacks/wav"), 1).await;
    let all: BTreeSet<String> = behind.union(&new).cloned().collect();
    assert_eq!(fast.wait_for_ids(3001, WAIT).await, all);
    assert_eq!(
        held.wait_for(2, WAIT).await.len(),
        2,
        "the cut-off attempt is made again"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fast.count(), 3001, "nothing delivered is sent again");
    relay.stop().await;
}
