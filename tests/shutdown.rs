//! Graceful shutdown of the real binary on SIGTERM: it stops being ready at
//! once, waits a bounded time for an attempt in flight, exits 0, and whatever
//! was not delivered goes out from the journal on the next start.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{
    Client, FakeDestination, RelayProcess, Reply, Script, fixture, wait_until, wait_until_async,
    write_config,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_within_the_shutdown_timeout_and_keeps_what_is_pending() {
    // Every attempt stalls far longer than the relay's shutdown_timeout (2s).
    let dest =
        FakeDestination::start(Script::always_reply(Reply::stall(Duration::from_secs(30)))).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dest.url("/hooks/wav"), "");
    // An attempt may take longer than the relay may take to stop.
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("attempt_timeout = \"2s\"", "attempt_timeout = \"20s\"");
    std::fs::write(&config, text).unwrap();
    let mut relay = RelayProcess::start(&config);
    let client = Client::plain();

    let ack = client
        .post(
            &relay.url("/callbacks/wav"),
            fixture("wav-success.json"),
            &[],
        )
        .await;
    assert_eq!(ack.status.as_u16(), 200);
    let id = ack.json()["id"].as_str().unwrap().to_owned();
    dest.wait_for(1, Duration::from_secs(10)).await;
    let ready = client.get(&relay.admin_url("/readyz")).await;
    assert_eq!(ready.status.as_u16(), 200, "{}", ready.text());

    // The attempt is in flight. Ask the relay to stop.
    let asked = Instant::now();
    relay.signal(libc::SIGTERM);
    let readyz = relay.admin_url("/readyz");
    let seen = Arc::new(Mutex::new(None));
    wait_until_async(Duration::from_secs(2), || {
        let answer = client.try_request(http::Method::GET, &readyz, "", &[]);
        let seen = Arc::clone(&seen);
        async move {
            match answer.await {
                Ok(answer) if answer.status.as_u16() == 503 => {
                    *seen.lock().unwrap() = Some(answer.json());
                    true
                }
                _ => false,
            }
        }
    })
    .await;
    let seen = seen
        .lock()
        .unwrap()
        .take()
        .expect("readyz said 503 while draining");
    assert_eq!(seen["accepting"], false, "{seen}");

    let status = relay.wait_exit(Duration::from_secs(10));
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0), "a graceful stop exits 0");
    assert!(
        took < Duration::from_secs(6),
        "stopping took {took:?}, over one shutdown_timeout"
    );
    // The log is read on another thread: give it the last lines.
    let stopped = || relay.log_text().contains("relay stopped");
    wait_until(Duration::from_secs(5), stopped).await;
    let log = relay.log_text();
    assert!(
        log.contains("attempts still in flight at shutdown"),
        "{log}"
    );

    // The next start sends the callback again, to a destination that now takes it.
    dest.set_script(Script::always(200));
    let relay = RelayProcess::start(&config);
    let got = dest.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got[1].relay_id(), Some(id.as_str()));
    drop(relay);
}
