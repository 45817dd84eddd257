//! The real binary as a child process: killed with SIGKILL in the middle of a burst, and
//! run on a journal that cannot be written.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callback_relay::journal::CallbackId;
use support::{Client, FakeDestination, RelayConfig, RelayProcess, Reply, Script, fixture};

/// Posts the WAV fixture in a loop from `workers` tasks until told to stop or the relay goes
/// away; returns the ids of every 200 ack and the statuses of every other answer.
async fn burst(
    url: String,
    workers: usize,
    stop: Arc<tokio::sync::Notify>,
    acked: Arc<Mutex<BTreeSet<String>>>,
) -> Vec<u16> {
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (url, stop, acked) = (url.clone(), stop.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let client = Client::plain().with_timeout(Duration::from_secs(5));
            let mut refused = Vec::new();
            loop {
                let post = client.try_post(&url, fixture("wav-success"), &[]);
                let response = tokio::select! {
                    response = post => response,
                    _ = stop.notified() => return refused,
                };
                match response {
                    Ok(r) if r.status == 200 => {
                        let id = r.json()["id"].as_str().expect("an id").to_owned();
                        acked.lock().unwrap().insert(id);
                    }
                    Ok(r) => refused.push(r.status.as_u16()),
                    Err(_) => return refused,
                }
            }
        }));
    }
    let mut refused = Vec::new();
    for task in tasks {
        refused.extend(task.await.expect("burst worker"));
    }
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_callback_is_delivered_after_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    // A slow destination, so that a backlog is pending when the relay dies.
    let slow = Reply::ok().delay(Duration::from_millis(100));
    let dest = FakeDestination::start(Script::always_reply(slow)).await;
    let config = RelayConfig::new(&dir.path().join("journal"))
        .route("wav", "/callbacks/wav", &[dest.url("/hooks/wav")], "")
        .write(dir.path());
    let mut relay = RelayProcess::start(&config);

    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let load = tokio::spawn(burst(
        relay.url("/callbacks/wav"),
        8,
        stop.clone(),
        acked.clone(),
    ));
    // Long enough for the relay to move its intake mark (once a second) while first
    // attempts are still waiting.
    let started = tokio::time::Instant::now();
    support::wait_until(Duration::from_secs(20), || {
        acked.lock().unwrap().len() >= 300 && started.elapsed() >= Duration::from_millis(2500)
    })
    .await;
    relay.kill();
    let refused = load.await.unwrap();
    assert!(
        refused.is_empty(),
        "nothing but 200 before the kill: {refused:?}"
    );

    let acked = acked.lock().unwrap().clone();
    let before_restart = dest.ids();
    assert!(
        before_restart.len() < acked.len(),
        "some acknowledged callbacks were still pending at the kill"
    );

    // The relay moved its intake mark before it died, so the restart resumes from a mark,
    // not from the journal's start.
    {
        let journal = support::open_stopped_journal(&dir.path().join("journal")).await;
        let mark = journal.intake_mark().unwrap();
        assert!(mark > CallbackId(0), "the intake mark never moved");
    }

    dest.set_script(Script::always(200));
    let relay = RelayProcess::start(&config);
    // The destination may also see callbacks journaled but not acknowledged before the kill,
    // so wait for every acknowledged id rather than for a count.
    let all_arrived = || acked.is_subset(&dest.ids());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !all_arrived() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = dest.ids();
    let lost: Vec<_> = acked.difference(&delivered).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but never delivered: {lost:?}\n{}",
        relay.log_text()
    );
}

/// Limits the size of any file the child writes to `bytes`, with SIGXFSZ ignored so that a
/// write past it fails with EFBIG, as a full disk fails with ENOSPC.
fn limit_file_size(command: &mut std::process::Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_cannot_be_written_answers_503_and_never_200() {
    let dir = tempfile::tempdir().unwrap();
    let dest = FakeDestination::start(Script::always(200)).await;
    let config = RelayConfig::new(&dir.path().join("journal"))
        .route("wav", "/callbacks/wav", &[dest.url("/hooks/wav")], "")
        .write(dir.path());
    let relay = RelayProcess::start_with(&config, |c| limit_file_size(c, 4 << 20));
    let client = Client::plain();
    let body = vec![b'x'; 8 * 1024];

    let mut acked = Vec::new();
    let mut first_refusal = None;
    for _ in 0..2000 {
        let response = client
            .post(&relay.url("/callbacks/wav"), body.clone(), &[])
            .await;
        if response.status == 200 {
            acked.push(response.json()["id"].as_str().unwrap().to_owned());
            continue;
        }
        first_refusal = Some(response);
        break;
    }
    let refusal = first_refusal.expect("the journal fills up within 2000 callbacks");
    assert_eq!(refusal.status, 503, "{}", refusal.text());
    assert!(refusal.header("retry-after").is_some());

    for _ in 0..20 {
        let response = client.post(&relay.url("/callbacks/wav"), "{}", &[]).await;
        assert_eq!(response.status, 503, "never a 2xx once the journal fails");
    }
    let log = relay.log_text();
    assert!(
        log.contains("journal write failed"),
        "the error log names the cause:\n{log}"
    );
    assert!(
        !acked.is_empty(),
        "callbacks were accepted before the journal filled up"
    );
}
