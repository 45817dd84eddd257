//! The public listener's TLS over real sockets: the certificate chosen by SNI, reloads on
//! SIGHUP and on file changes (connections already open keep theirs, a broken file keeps
//! the previous certificate), and client certificates required by `client_ca`.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use support::{
    ClientIdentity, FakeDestination, RelayConfig, RelayProcess, Script, TestCerts, TlsConnection,
    fixture, inspecting_client_config,
};

const WAIT: Duration = Duration::from_secs(10);
const PATH: &str = "/callbacks/wav";
const LOCALHOST: [&str; 2] = ["localhost", "127.0.0.1"];

/// A `[[server.tls.certs]]` table.
fn cert_entry(names: &[&str], cert: &Path, key: &Path) -> String {
    format!("[[server.tls.certs]]\nnames = {names:?}\ncert = {cert:?}\nkey = {key:?}\n")
}

/// Opens a connection asking for `name` and returns the leaf it was served.
async fn served(addr: SocketAddr, name: Option<&str>) -> CertificateDer<'static> {
    let config = inspecting_client_config(None);
    match TlsConnection::open(addr, name, config).await {
        Ok(connection) => connection.leaf,
        Err(err) => panic!("TLS connection asking for {name:?}: {err}"),
    }
}

/// Opens a connection (as `identity`, if any) and posts a callback on it.
async fn post(
    addr: SocketAddr,
    identity: Option<&ClientIdentity>,
) -> Result<support::Response, String> {
    let config = inspecting_client_config(identity);
    let mut connection = TlsConnection::open(addr, Some("localhost"), config).await?;
    connection.post(PATH, fixture("wav-success")).await
}

/// Posts on `connection` and asserts a 200 ack.
async fn assert_acks(connection: &mut TlsConnection) {
    let response = connection.post(PATH, fixture("wav-success")).await;
    let response = response.unwrap_or_else(|err| panic!("post: {err}"));
    assert_eq!(response.status, 200, "ack: {}", response.text());
}

async fn relay_config(journal: &Path, certs: &TestCerts) -> (RelayConfig, FakeDestination) {
    let dest = FakeDestination::start(Script::always(200)).await;
    let config =
        RelayConfig::new(journal)
            .tls(certs)
            .route("wav", PATH, &[dest.url("/hooks/wav")], "");
    (config, dest)
}

#[tokio::test]
async fn sni_chooses_the_certificate_and_unknown_names_get_the_default() {
    let certs = TestCerts::new();
    let journal = tempfile::tempdir().unwrap();
    let exact = certs.issue(&["a.example.test"], "a.pem", "a-key.pem");
    let wildcard = certs.issue(&["*.b.example.test"], "b.pem", "b-key.pem");
    let dir = certs.dir();
    let entries = cert_entry(
        &["a.example.test"],
        &dir.join("a.pem"),
        &dir.join("a-key.pem"),
    ) + &cert_entry(
        &["*.b.example.test"],
        &dir.join("b.pem"),
        &dir.join("b-key.pem"),
    );
    let (config, _dest) = relay_config(journal.path(), &certs).await;
    let relay = config.tls_extra(&entries).start().await;
    let addr = relay.addr();

    assert_eq!(served(addr, Some("a.example.test")).await, exact);
    assert_eq!(served(addr, Some("A.Example.TEST")).await, exact);
    assert_eq!(served(addr, Some("x.b.example.test")).await, wildcard);
    let default = certs.cert_der();
    assert_ne!(default, exact);
    for name in [
        Some("unknown.test"),
        Some("y.x.b.example.test"),
        Some("b.example.test"),
        None,
    ] {
        assert_eq!(served(addr, name).await, default, "asking for {name:?}");
    }

    let config = inspecting_client_config(None);
    let mut connection = TlsConnection::open(addr, Some("a.example.test"), config)
        .await
        .expect("connects");
    assert_acks(&mut connection).await;
    relay.stop().await;
}

#[tokio::test]
async fn client_ca_admits_only_clients_with_a_certificate_from_it() {
    let certs = TestCerts::new();
    let mesh = TestCerts::new();
    let other = TestCerts::new();
    let journal = tempfile::tempdir().unwrap();
    let (config, dest) = relay_config(journal.path(), &certs).await;
    let relay = config
        .tls_extra(&format!("client_ca = {:?}", mesh.ca_path()))
        .start()
        .await;
    let addr = relay.addr();

    let member = mesh.client_identity("svc.mesh.test");
    let response = post(addr, Some(&member))
        .await
        .expect("a mesh client posts");
    assert_eq!(response.status, 200, "ack: {}", response.text());

    let anonymous = post(addr, None).await.expect_err("no client certificate");
    assert!(anonymous.contains("CertificateRequired"), "{anonymous}");
    let stranger = other.client_identity("svc.other.test");
    let stranger = post(addr, Some(&stranger))
        .await
        .expect_err("a certificate from another CA");
    assert!(stranger.contains("UnknownCA"), "{stranger}");

    dest.wait_for(1, WAIT).await;
    assert_eq!(
        dest.count(),
        1,
        "only the mesh client's callback is forwarded"
    );
    relay.stop().await;
}

#[tokio::test]
async fn changed_files_are_reloaded_and_open_connections_keep_their_certificate() {
    let certs = TestCerts::new();
    let journal = tempfile::tempdir().unwrap();
    let (config, _dest) = relay_config(journal.path(), &certs).await;
    let relay = config.tls_extra("reload_interval = \"50ms\"").start().await;
    let addr = relay.addr();
    let config = inspecting_client_config(None);
    let mut before = TlsConnection::open(addr, Some("localhost"), config)
        .await
        .expect("connects");
    assert_eq!(before.leaf, certs.cert_der());

    let renewed = certs.issue(&LOCALHOST, "cert.pem", "key.pem");
    support::wait_until_async(WAIT, || {
        let renewed = renewed.clone();
        async move { served(addr, Some("localhost")).await == renewed }
    })
    .await;

    assert_acks(&mut before).await;
    assert_eq!(before.leaf, certs.cert_der());
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_broken_file_keeps_the_previous_certificate() {
    let certs = TestCerts::new();
    let dir = tempfile::tempdir().unwrap();
    let (config, _dest) = relay_config(&dir.path().join("journal"), &certs).await;
    // Only the signal reloads in this test: the files are not checked in its lifetime.
    let config = config
        .tls_extra("reload_interval = \"1h\"")
        .write(dir.path());
    let relay = RelayProcess::start(&config);
    let addr = relay.public;
    let client = inspecting_client_config(None);
    let mut before = TlsConnection::open(addr, Some("localhost"), client)
        .await
        .expect("connects");
    assert_eq!(before.leaf, certs.cert_der());
    assert_acks(&mut before).await;

    let renewed = certs.issue(&LOCALHOST, "cert.pem", "key.pem");
    relay.signal(libc::SIGHUP);
    support::wait_until_async(WAIT, || {
        let renewed = renewed.clone();
        async move { served(addr, Some("localhost")).await == renewed }
    })
    .await;
    assert_acks(&mut before).await;

    std::fs::write(certs.cert_path(), "not a certificate\n").expect("write");
    relay.signal(libc::SIGHUP);
    support::wait_until(WAIT, || relay.log_text().contains("tls reload failed")).await;
    let log = relay.log_text();
    let failure = log
        .lines()
        .find(|line| line.contains("tls reload failed"))
        .expect("logged");
    let cert_file = certs.cert_path().display().to_string();
    assert!(failure.contains(&cert_file), "names the file: {failure}");
    assert!(!log.contains("PRIVATE KEY"), "no key material in the log");

    assert_eq!(served(addr, Some("localhost")).await, renewed);
    let response = post(addr, None)
        .await
        .expect("posts after the failed reload");
    assert_eq!(response.status, 200, "ack: {}", response.text());
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_speaking_only_tls_1_2_or_only_tls_1_3_are_both_served() {
    let certs = TestCerts::new();
    let dir = tempfile::tempdir().unwrap();
    let (config, dest) = relay_config(&dir.path().join("journal"), &certs).await;
    let relay = RelayProcess::start(&config.write(dir.path()));
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let client = certs.client_config_with_versions(&[version]);
        let mut connection = TlsConnection::open(relay.public, Some("localhost"), client)
            .await
            .unwrap_or_else(|err| panic!("{version:?}: {err}"));
        assert_acks(&mut connection).await;
    }
    assert_eq!(dest.wait_for(2, WAIT).await.len(), 2);
}
