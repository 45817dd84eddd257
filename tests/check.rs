//! `callback-relay check` and the start-up checks `serve` shares with it: the
//! routes printed for a good config, exit 2 naming the file for a certificate
//! or CA that cannot be used, and the warning for clear text off loopback.

mod support;

use support::{RelayProcess, TestCerts, cli, stderr, stdout, write_config};

#[test]
fn check_prints_each_route_with_its_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "http://127.0.0.1:3000/hooks/wav", "");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "[routes.music]\npath = \"/callbacks/music\"\nmethods = [\"POST\", \"PUT\"]\n\
         destinations = [\"http://127.0.0.1:3001/a\", { url = \"https://music.internal/b\", timeout = \"5s\" }]\n",
    );
    std::fs::write(&config, text).unwrap();

    let checked = cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(checked.status.code(), Some(0), "{}", stderr(&checked));
    let out = stdout(&checked);
    assert!(out.contains("listen http://127.0.0.1:0"), "{out}");
    assert!(out.contains("route wav /callbacks/wav [POST]"), "{out}");
    assert!(
        out.contains("  -> http://127.0.0.1:3000/hooks/wav"),
        "{out}"
    );
    assert!(
        out.contains("route music /callbacks/music [POST, PUT]"),
        "{out}"
    );
    assert!(out.contains("  -> http://127.0.0.1:3001/a"), "{out}");
    assert!(out.contains("  -> https://music.internal/b"), "{out}");
    assert!(
        !dir.path().join("journal").exists(),
        "check opens no journal"
    );
}

#[test]
fn a_certificate_that_cannot_be_used_is_a_config_error_for_check_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "http://127.0.0.1:9/hooks", "");
    let config_arg = config.to_str().unwrap();

    // A missing file: both commands name it and exit 2 before starting anything.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[server.tls]\ncert = \"missing.crt\"\nkey = \"missing.key\"\n");
    std::fs::write(&config, &text).unwrap();
    for command in ["check", "serve"] {
        let out = cli(&[command, "--config", config_arg]);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("missing.crt"),
            "{command}: {}",
            stderr(&out)
        );
    }
    assert!(!dir.path().join("journal").exists(), "serve opened nothing");

    // A file that is there but holds no certificate.
    std::fs::write(dir.path().join("missing.crt"), "not a certificate\n").unwrap();
    let out = cli(&["check", "--config", config_arg]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds no PEM certificate"),
        "{}",
        stderr(&out)
    );

    // Real files pass.
    let certs = TestCerts::new();
    let text = text
        .replace("missing.crt", certs.cert_path().to_str().unwrap())
        .replace("missing.key", certs.key_path().to_str().unwrap());
    std::fs::write(&config, text).unwrap();
    let out = cli(&["check", "--config", config_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("listen https://127.0.0.1:0"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_destination_ca_that_cannot_be_used_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "https://127.0.0.1:9/hooks", "");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[delivery]\nca = \"internal-ca.pem\"\n");
    std::fs::write(&config, text).unwrap();
    std::fs::write(dir.path().join("internal-ca.pem"), "").unwrap();

    let out = cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("internal-ca.pem"), "{}", stderr(&out));
}

#[test]
fn clear_text_off_loopback_is_warned_about_and_loopback_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "http://127.0.0.1:9/hooks", "");
    let relay = RelayProcess::start(&config);
    assert!(
        !relay.log_text().contains("clear text"),
        "{}",
        relay.log_text()
    );
    relay.stop();

    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        "listen = \"127.0.0.1:0\"\nshutdown",
        "listen = \"0.0.0.0:0\"\nshutdown",
    );
    std::fs::write(&config, text).unwrap();
    let relay = RelayProcess::start(&config);
    let log = relay.log_text();
    assert!(log.contains("\"level\":\"WARN\""), "{log}");
    assert!(log.contains("clear text"), "{log}");
}
