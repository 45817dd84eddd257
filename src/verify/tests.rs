//! Each scheme against correctly signed requests and against tampered,
//! stale, unsigned and wrongly keyed ones.
//!
//! Expected signatures are constants made outside the code under test, with
//! `openssl dgst -sha256 -hmac KEY` (hex) or `openssl dgst -sha256 -hmac KEY
//! -binary | base64` over the exact bytes named beside each one; the
//! Standard Webhooks one is the specification's published test vector.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};

use super::{Presented, RawVerify, Rejection, Verifier};

const WAV: &[u8] = include_bytes!("../../fixtures/callbacks/wav-success.json");
const WAV_TASK_ID: &str = "988e1f7a2b3c4d5e6f708192a3b4c8d3";
const MUSIC: &[u8] = include_bytes!("../../fixtures/callbacks/music-complete.json");
const MP4: &[u8] = include_bytes!("../../fixtures/callbacks/mp4-success.json");
const COVER: &[u8] = include_bytes!("../../fixtures/callbacks/cover-images.json");
const STEMS: &[u8] = include_bytes!("../../fixtures/callbacks/vocal-separation.json");
const LYRICS: &[u8] = include_bytes!("../../fixtures/callbacks/lyrics-complete.json");
const LYRICS_TASK_ID: &str = "11dc7e6f5a4b3c2d1e0f9a8b7c6d8b0f";

/// The time every signed test request was made, in unix seconds.
const SIGNED_AT: u64 = 1_700_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn verifier_for(table: &str, route_path: &str) -> Verifier {
    let raw: RawVerify = toml::from_str(table)
        .unwrap_or_else(|err| panic!("expected {table:?} to be a verify table: {err}"));
    let config = raw
        .into_verify("routes.test.verify", route_path)
        .unwrap_or_else(|err| panic!("expected {table:?} to be valid: {err}"));
    Verifier::new(&config)
}

/// An owned request to present, built up by the tests.
#[derive(Clone)]
struct Request {
    headers: HeaderMap,
    path_token: Option<String>,
    query: Option<String>,
    body: Vec<u8>,
    task_id: Option<String>,
    now: SystemTime,
}

impl Request {
    fn new(body: &[u8]) -> Request {
        Request {
            headers: HeaderMap::new(),
            path_token: None,
            query: None,
            body: body.to_vec(),
            task_id: None,
            now: at(SIGNED_AT),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Request {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("test header name");
        let value = HeaderValue::from_str(value).expect("test header value");
        self.headers.append(name, value);
        self
    }

    fn without(mut self, name: &str) -> Request {
        self.headers.remove(name);
        self
    }

    fn query(mut self, query: &str) -> Request {
        self.query = Some(query.to_owned());
        self
    }

    fn path_token(mut self, token: &str) -> Request {
        self.path_token = Some(token.to_owned());
        self
    }

    fn task_id(mut self, task_id: &str) -> Request {
        self.task_id = Some(task_id.to_owned());
        self
    }

    fn now(mut self, secs: u64) -> Request {
        self.now = at(secs);
        self
    }

    /// The same request with one byte of the body changed.
    fn tampered(mut self) -> Request {
        let middle = self.body.len() / 2;
        self.body[middle] ^= 0x01;
        self
    }

    fn presented(&self) -> Presented<'_> {
        Presented {
            headers: &self.headers,
            path_token: self.path_token.as_deref(),
            query: self.query.as_deref(),
            body: &self.body,
            task_id: self.task_id.as_deref(),
            now: self.now,
        }
    }
}

fn assert_accepts(verifier: &Verifier, request: &Request) {
    if let Err(rejection) = verifier.check(&request.presented()) {
        panic!("expected the request to be accepted, got: {rejection}");
    }
}

/// Asserts a rejection with `reason` and returns its message.
fn assert_rejects(verifier: &Verifier, request: &Request, reason: &str) -> String {
    match verifier.check(&request.presented()) {
        Ok(()) => panic!("expected a rejection with reason {reason}, the request was accepted"),
        Err(rejection) => {
            assert_eq!(rejection.reason(), reason, "{rejection}");
            rejection.to_string()
        }
    }
}

// ---------------------------------------------------------------------------------------
// token

const QUERY_TOKEN: &str = "scheme = \"token\"\nparam = \"token\"\nsecrets = [\"s3cret\", \"n3w\"]";

#[test]
fn token_in_the_query_is_accepted_under_every_secret() {
    let verifier = verifier_for(QUERY_TOKEN, "/callbacks/wav");
    assert_accepts(&verifier, &Request::new(WAV).query("token=s3cret"));
    assert_accepts(&verifier, &Request::new(WAV).query("token=n3w"));
    assert_accepts(&verifier, &Request::new(WAV).query("a=1&token=n3w&b"));
    assert_eq!(verifier.scheme().secret_param(), Some("token"));
}

#[test]
fn token_in_the_query_is_percent_decoded_and_plus_is_literal() {
    let table = "scheme = \"token\"\nparam = \"key\"\nsecrets = [\"a b/c+d\"]";
    let verifier = verifier_for(table, "/callbacks/wav");
    assert_accepts(&verifier, &Request::new(WAV).query("key=a%20b%2Fc+d"));
    assert_accepts(&verifier, &Request::new(WAV).query("key=a%20b%2fc%2Bd"));
    assert_rejects(
        &verifier,
        &Request::new(WAV).query("key=a+b%2Fc+d"),
        "bad_secret",
    );
}

#[test]
fn token_in_the_query_rejects_wrong_missing_and_malformed_tokens() {
    let verifier = verifier_for(QUERY_TOKEN, "/callbacks/wav");
    let message = assert_rejects(
        &verifier,
        &Request::new(WAV).query("token=guess"),
        "bad_secret",
    );
    assert_eq!(
        message,
        "query parameter \"token\" matches no configured secret"
    );
    assert_rejects(
        &verifier,
        &Request::new(WAV).query("token=s3cre"),
        "bad_secret",
    );
    assert_rejects(&verifier, &Request::new(WAV).query("token="), "bad_secret");
    let message = assert_rejects(
        &verifier,
        &Request::new(WAV).query("tok=s3cret"),
        "missing_param",
    );
    assert_eq!(message, "missing query parameter \"token\"");
    assert_rejects(&verifier, &Request::new(WAV), "missing_param");
    let message = assert_rejects(
        &verifier,
        &Request::new(WAV).query("token=%zz"),
        "malformed",
    );
    assert_eq!(
        message,
        "malformed query parameter \"token\": has an invalid percent escape"
    );
    let twice = Request::new(WAV).query("token=s3cret&token=guess");
    assert_rejects(&verifier, &twice, "malformed");
}

#[test]
fn token_in_the_path_is_checked() {
    let table = "scheme = \"token\"\nsecrets = [\"s3cret\", \"n3w\"]";
    let verifier = verifier_for(table, "/callbacks/wav/{token}");
    assert!(verifier.scheme().secret_in_path());
    assert_accepts(&verifier, &Request::new(WAV).path_token("s3cret"));
    assert_accepts(&verifier, &Request::new(WAV).path_token("n3w"));
    assert_accepts(&verifier, &Request::new(WAV).path_token("s3cr%65t"));
    let message = assert_rejects(
        &verifier,
        &Request::new(WAV).path_token("guess"),
        "bad_secret",
    );
    assert_eq!(message, "{token} path segment matches no configured secret");
    assert_rejects(&verifier, &Request::new(WAV), "missing_token");
    assert_rejects(
        &verifier,
        &Request::new(WAV).path_token(""),
        "missing_token",
    );
}

// ---------------------------------------------------------------------------------------
// header

const HEADER: &str =
    "scheme = \"header\"\nheader = \"X-Relay-Token\"\nsecrets = [\"old\", \"new\"]";

#[test]
fn header_equal_to_any_secret_is_accepted() {
    let verifier = verifier_for(HEADER, "/callbacks/wav");
    assert_accepts(&verifier, &Request::new(WAV).header("X-Relay-Token", "old"));
    assert_accepts(&verifier, &Request::new(WAV).header("x-relay-token", "new"));
    assert_eq!(verifier.scheme().secret_headers(), ["x-relay-token"]);
}

#[test]
fn header_rejects_a_wrong_missing_or_repeated_value() {
    let verifier = verifier_for(HEADER, "/callbacks/wav");
    let wrong = Request::new(WAV).header("X-Relay-Token", "older");
    let message = assert_rejects(&verifier, &wrong, "bad_secret");
    assert_eq!(message, "x-relay-token header matches no configured secret");
    let message = assert_rejects(&verifier, &Request::new(WAV), "missing_header");
    assert_eq!(message, "missing x-relay-token header");
    let twice = Request::new(WAV)
        .header("X-Relay-Token", "old")
        .header("X-Relay-Token", "x");
    let message = assert_rejects(&verifier, &twice, "malformed");
    assert_eq!(
        message,
        "malformed x-relay-token header: appears more than once"
    );
}

// ---------------------------------------------------------------------------------------
// basic

/// `printf 'relay:pa55' | base64` and `printf 'relay:n3w-pa55' | base64`.
const BASIC_OLD: &str = "cmVsYXk6cGE1NQ==";
const BASIC_NEW: &str = "cmVsYXk6bjN3LXBhNTU=";
/// `printf 'relay:guess' | base64`.
const BASIC_WRONG: &str = "cmVsYXk6Z3Vlc3M=";

fn basic() -> Verifier {
    verifier_for(
        "scheme = \"basic\"\nsecrets = [\"relay:pa55\", \"relay:n3w-pa55\"]",
        "/callbacks/wav",
    )
}

#[test]
fn basic_credentials_are_accepted_under_every_secret() {
    let verifier = basic();
    let auth = |value: String| Request::new(WAV).header("Authorization", &value);
    assert_accepts(&verifier, &auth(format!("Basic {BASIC_OLD}")));
    assert_accepts(&verifier, &auth(format!("Basic {BASIC_NEW}")));
    assert_accepts(&verifier, &auth(format!("bAsIc {BASIC_OLD}")));
}

#[test]
fn basic_rejects_wrong_missing_and_malformed_credentials() {
    let verifier = basic();
    let auth = |value: &str| Request::new(WAV).header("Authorization", value);
    let message = assert_rejects(
        &verifier,
        &auth(&format!("Basic {BASIC_WRONG}")),
        "bad_secret",
    );
    assert_eq!(message, "authorization header matches no configured secret");
    assert_rejects(&verifier, &Request::new(WAV), "missing_header");
    let message = assert_rejects(
        &verifier,
        &auth(&format!("Bearer {BASIC_OLD}")),
        "malformed",
    );
    assert_eq!(
        message,
        "malformed authorization header: does not use the Basic scheme"
    );
    assert_rejects(&verifier, &auth("Basic not*base64"), "malformed");
    assert_rejects(&verifier, &auth(BASIC_OLD), "malformed");
}

// ---------------------------------------------------------------------------------------
// github

/// `openssl dgst -sha256 -hmac gh-secret-2024 -hex < fixtures/callbacks/wav-success.json`.
const GITHUB_OLD: &str = "679cc7d7646f363f610eacc42e2a8b349e7919bcfeca6bdde8d18fc190caf4e0";
/// The same with `-hmac gh-secret-2025`.
const GITHUB_NEW: &str = "c0088332d88eb5227e8ad802e6e633545fbc2ed799d33d76c40c7d404f5cbde0";

fn github(secrets: &str) -> Verifier {
    verifier_for(
        &format!("scheme = \"github\"\nsecrets = {secrets}"),
        "/callbacks/wav",
    )
}

fn github_request(signature: &str) -> Request {
    Request::new(WAV).header("X-Hub-Signature-256", &format!("sha256={signature}"))
}

#[test]
fn github_accepts_a_signature_under_any_secret() {
    let verifier = github("[\"gh-secret-2024\", \"gh-secret-2025\"]");
    assert_accepts(&verifier, &github_request(GITHUB_OLD));
    assert_accepts(&verifier, &github_request(GITHUB_NEW));
    assert_accepts(&verifier, &github_request(&GITHUB_NEW.to_uppercase()));
}

#[test]
fn github_rejects_tampering_wrong_secrets_and_missing_signatures() {
    let verifier = github("[\"gh-secret-2024\"]");
    let message = assert_rejects(
        &verifier,
        &github_request(GITHUB_OLD).tampered(),
        "bad_signature",
    );
    assert_eq!(
        message,
        "x-hub-signature-256 signature does not match the request"
    );
    assert_rejects(&verifier, &github_request(GITHUB_NEW), "bad_signature");
    assert_rejects(
        &github("[\"other\"]"),
        &github_request(GITHUB_OLD),
        "bad_signature",
    );
    assert_rejects(&verifier, &Request::new(WAV), "missing_header");

    let unprefixed = Request::new(WAV).header("X-Hub-Signature-256", GITHUB_OLD);
    let message = assert_rejects(&verifier, &unprefixed, "malformed");
    assert_eq!(
        message,
        "malformed x-hub-signature-256 header: lacks the configured prefix"
    );
    let odd = github_request(&GITHUB_OLD[1..]);
    let message = assert_rejects(&verifier, &odd, "malformed");
    assert_eq!(
        message,
        "malformed x-hub-signature-256 header: is not valid hex"
    );
}

// ---------------------------------------------------------------------------------------
// stripe

/// `{ printf '1700000000.'; cat fixtures/callbacks/music-complete.json; } |
/// openssl dgst -sha256 -hmac whsec_stripe_test_key -hex`.
const STRIPE_SIGNATURE: &str = "0d72bc8101f32a65969b8d9c0cb197c15736ac3e4b9cd5f57f7ea24eeae0a97e";
/// The same with `-hmac whsec_stripe_rolled_key`.
const STRIPE_ROLLED: &str = "caa3a5470c391d99bfdd4f521a090cd18d4184750f5b70e5fc584de23d61c8b1";

fn stripe(secrets: &str) -> Verifier {
    verifier_for(
        &format!("scheme = \"stripe\"\nsecrets = {secrets}"),
        "/callbacks/music",
    )
}

fn stripe_request(header: &str) -> Request {
    Request::new(MUSIC)
        .header("Stripe-Signature", header)
        .now(SIGNED_AT + 3)
}

#[test]
fn stripe_accepts_any_v1_signature_under_any_secret() {
    let verifier = stripe("[\"whsec_stripe_test_key\"]");
    assert_accepts(
        &verifier,
        &stripe_request(&format!("t={SIGNED_AT},v1={STRIPE_SIGNATURE}")),
    );

    // Stripe signs with the old and the new secret while one is rolled.
    let both = format!("t={SIGNED_AT},v1={STRIPE_ROLLED},v0=abc,v1=zz,v1={STRIPE_SIGNATURE}");
    assert_accepts(&verifier, &stripe_request(&both));
    assert_accepts(
        &stripe("[\"whsec_stripe_rolled_key\"]"),
        &stripe_request(&both),
    );

    // The relay holds both secrets while the sender rolls over.
    let verifier = stripe("[\"whsec_stripe_test_key\", \"whsec_stripe_rolled_key\"]");
    assert_accepts(
        &verifier,
        &stripe_request(&format!("t={SIGNED_AT},v1={STRIPE_ROLLED}")),
    );
}

#[test]
fn stripe_rejects_tampering_wrong_secrets_and_other_schemes() {
    let verifier = stripe("[\"whsec_stripe_test_key\"]");
    let good = format!("t={SIGNED_AT},v1={STRIPE_SIGNATURE}");
    let message = assert_rejects(
        &verifier,
        &stripe_request(&good).tampered(),
        "bad_signature",
    );
    assert_eq!(
        message,
        "stripe-signature signature does not match the request"
    );
    assert_rejects(
        &stripe("[\"whsec_other\"]"),
        &stripe_request(&good),
        "bad_signature",
    );
    let later = format!("t={},v1={STRIPE_SIGNATURE}", SIGNED_AT + 1);
    assert_rejects(&verifier, &stripe_request(&later), "bad_signature");
    let v0_only = format!("t={SIGNED_AT},v0={STRIPE_SIGNATURE}");
    assert_rejects(&verifier, &stripe_request(&v0_only), "bad_signature");
    assert_rejects(&verifier, &Request::new(MUSIC), "missing_header");
}

#[test]
fn stripe_rejects_malformed_headers() {
    let verifier = stripe("[\"whsec_stripe_test_key\"]");
    let cases = [
        (format!("v1={STRIPE_SIGNATURE}"), "has no t= timestamp"),
        (
            format!("t=soon,v1={STRIPE_SIGNATURE}"),
            "is not a unix time in seconds",
        ),
        (
            format!("t=1,t=2,v1={STRIPE_SIGNATURE}"),
            "has more than one t=",
        ),
        (
            STRIPE_SIGNATURE.to_owned(),
            "has an item that is not name=value",
        ),
    ];
    for (header, problem) in cases {
        let message = assert_rejects(&verifier, &stripe_request(&header), "malformed");
        assert_eq!(
            message,
            format!("malformed stripe-signature header: {problem}")
        );
    }
}

#[test]
fn stripe_rejects_a_timestamp_outside_the_tolerance() {
    let verifier = stripe("[\"whsec_stripe_test_key\"]");
    let request = stripe_request(&format!("t={SIGNED_AT},v1={STRIPE_SIGNATURE}"));
    assert_accepts(&verifier, &request.clone().now(SIGNED_AT + 300));
    assert_accepts(&verifier, &request.clone().now(SIGNED_AT - 300));
    let message = assert_rejects(
        &verifier,
        &request.clone().now(SIGNED_AT + 301),
        "stale_timestamp",
    );
    assert_eq!(
        message,
        "stripe-signature timestamp is more than 300s away from the relay's clock"
    );
    assert_rejects(
        &verifier,
        &request.clone().now(SIGNED_AT - 301),
        "stale_timestamp",
    );

    let table = "scheme = \"stripe\"\ntolerance = \"10m\"\nsecrets = [\"whsec_stripe_test_key\"]";
    assert_accepts(
        &verifier_for(table, "/callbacks/music"),
        &request.now(SIGNED_AT + 599),
    );
}

// ---------------------------------------------------------------------------------------
// standard-webhooks

/// The test vector of the Standard Webhooks specification's reference
/// libraries: secret, message id, timestamp, payload and signature.
const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const VECTOR_TIMESTAMP: u64 = 1_614_265_330;
const VECTOR_PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

/// `whsec_` and `printf 'relay-test-rotation-key!' | base64`.
const ROTATED_SECRET: &str = "whsec_cmVsYXktdGVzdC1yb3RhdGlvbi1rZXkh";
/// `{ printf 'msg_2Vx9.1700000000.'; cat fixtures/callbacks/vocal-separation.json; } |
/// openssl dgst -sha256 -mac HMAC -macopt hexkey:<hex of relay-test-rotation-key!>
/// -binary | base64`.
const ROTATED_SIGNATURE: &str = "v1,c6Y0VQu632fobxbBvT9pVl0N+iryPqulQJ2CdyPWkIA=";

fn standard(secrets: &[&str]) -> Verifier {
    let table = format!("scheme = \"standard-webhooks\"\nsecrets = {secrets:?}");
    verifier_for(&table, "/callbacks/stems")
}

fn vector_request(signature: &str) -> Request {
    Request::new(VECTOR_PAYLOAD)
        .header("webhook-id", VECTOR_ID)
        .header("webhook-timestamp", &VECTOR_TIMESTAMP.to_string())
        .header("webhook-signature", signature)
        .now(VECTOR_TIMESTAMP + 1)
}

#[test]
fn standard_webhooks_accepts_the_published_test_vector() {
    assert_accepts(
        &standard(&[VECTOR_SECRET]),
        &vector_request(VECTOR_SIGNATURE),
    );
}

#[test]
fn standard_webhooks_accepts_any_v1_signature_and_ignores_other_versions() {
    let verifier = standard(&[VECTOR_SECRET]);
    let other = "v1,Zm9yZ2VkLXNpZ25hdHVyZS1mb3ItdGVzdHMtb25seSE=";
    let listed = format!(
        "v1a,bm90LWNoZWNrZWQ= {other} v1,%%% v2,{} {VECTOR_SIGNATURE}",
        &VECTOR_SIGNATURE[3..]
    );
    assert_accepts(&verifier, &vector_request(&listed));
    let unpadded = VECTOR_SIGNATURE.trim_end_matches('=');
    assert_accepts(&verifier, &vector_request(unpadded));
    let versions_only = format!("v2,{}", &VECTOR_SIGNATURE[3..]);
    assert_rejects(&verifier, &vector_request(&versions_only), "bad_signature");
}

#[test]
fn standard_webhooks_accepts_old_and_new_secrets_during_rotation() {
    let verifier = standard(&[VECTOR_SECRET, ROTATED_SECRET]);
    assert_accepts(&verifier, &vector_request(VECTOR_SIGNATURE));
    let rotated = Request::new(STEMS)
        .header("webhook-id", "msg_2Vx9")
        .header("webhook-timestamp", &SIGNED_AT.to_string())
        .header("webhook-signature", ROTATED_SIGNATURE);
    assert_accepts(&verifier, &rotated);
    assert_rejects(&standard(&[VECTOR_SECRET]), &rotated, "bad_signature");
}

#[test]
fn standard_webhooks_rejects_tampering_and_wrong_secrets() {
    let verifier = standard(&[VECTOR_SECRET]);
    let message = assert_rejects(
        &verifier,
        &vector_request(VECTOR_SIGNATURE).tampered(),
        "bad_signature",
    );
    assert_eq!(
        message,
        "webhook-signature signature does not match the request"
    );
    let other_id = vector_request(VECTOR_SIGNATURE)
        .without("webhook-id")
        .header("webhook-id", "msg_2");
    assert_rejects(&verifier, &other_id, "bad_signature");
    assert_rejects(
        &standard(&[ROTATED_SECRET]),
        &vector_request(VECTOR_SIGNATURE),
        "bad_signature",
    );
}

#[test]
fn standard_webhooks_needs_all_three_headers() {
    let verifier = standard(&[VECTOR_SECRET]);
    for header in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let request = vector_request(VECTOR_SIGNATURE).without(header);
        let message = assert_rejects(&verifier, &request, "missing_header");
        assert_eq!(message, format!("missing {header} header"));
    }
    let garbled = vector_request(VECTOR_SIGNATURE)
        .without("webhook-timestamp")
        .header("webhook-timestamp", "1614265330.5");
    assert_rejects(&verifier, &garbled, "malformed");
}

#[test]
fn standard_webhooks_rejects_stale_and_future_timestamps() {
    let verifier = standard(&[VECTOR_SECRET]);
    let request = vector_request(VECTOR_SIGNATURE);
    assert_accepts(&verifier, &request.clone().now(VECTOR_TIMESTAMP + 300));
    let message = assert_rejects(
        &verifier,
        &request.clone().now(VECTOR_TIMESTAMP + 301),
        "stale_timestamp",
    );
    assert_eq!(
        message,
        "webhook-timestamp timestamp is more than 300s away from the relay's clock"
    );
    assert_rejects(
        &verifier,
        &request.now(VECTOR_TIMESTAMP - 301),
        "stale_timestamp",
    );
}

// ---------------------------------------------------------------------------------------
// kie

/// `printf '988e1f7a2b3c4d5e6f708192a3b4c8d3.1700000000' |
/// openssl dgst -sha256 -hmac kie-hmac-key -binary | base64`.
const KIE_WAV: &str = "7pNI8Wt9Be6HllGgOMzG5jRn/zO5V6pz5BM7G1jSt5Q=";
/// The same for task `11dc7e6f5a4b3c2d1e0f9a8b7c6d8b0f`.
const KIE_LYRICS: &str = "0ANs1uEqsDVD5mEFs1oSho5b50tvRadK2/jJQJs6hpg=";

fn kie(secrets: &str) -> Verifier {
    verifier_for(
        &format!("scheme = \"kie\"\nsecrets = {secrets}"),
        "/callbacks/wav",
    )
}

fn kie_request(body: &[u8], task_id: &str, signature: &str) -> Request {
    Request::new(body)
        .header("X-Webhook-Timestamp", &SIGNED_AT.to_string())
        .header("X-Webhook-Signature", signature)
        .task_id(task_id)
        .now(SIGNED_AT + 2)
}

#[test]
fn kie_accepts_a_signature_over_task_id_and_timestamp() {
    let verifier = kie("[\"previous-key\", \"kie-hmac-key\"]");
    assert_accepts(&verifier, &kie_request(WAV, WAV_TASK_ID, KIE_WAV));
    assert_accepts(&verifier, &kie_request(LYRICS, LYRICS_TASK_ID, KIE_LYRICS));
    assert_eq!(verifier.scheme().secret_headers(), ["x-webhook-signature"]);
}

#[test]
fn kie_rejects_another_task_a_wrong_secret_and_missing_parts() {
    let verifier = kie("[\"kie-hmac-key\"]");
    let message = assert_rejects(
        &verifier,
        &kie_request(WAV, LYRICS_TASK_ID, KIE_WAV),
        "bad_signature",
    );
    assert_eq!(
        message,
        "x-webhook-signature signature does not match the request"
    );
    assert_rejects(
        &kie("[\"other-key\"]"),
        &kie_request(WAV, WAV_TASK_ID, KIE_WAV),
        "bad_signature",
    );

    let mut no_task = kie_request(WAV, WAV_TASK_ID, KIE_WAV);
    no_task.task_id = None;
    let message = assert_rejects(&verifier, &no_task, "missing_task_id");
    assert_eq!(
        message,
        "the signature covers the task id, and no task id was found in the body"
    );
    for header in ["x-webhook-timestamp", "x-webhook-signature"] {
        let request = kie_request(WAV, WAV_TASK_ID, KIE_WAV).without(header);
        assert_rejects(&verifier, &request, "missing_header");
    }
    let garbled = kie_request(WAV, WAV_TASK_ID, "not base64!");
    assert_rejects(&verifier, &garbled, "malformed");
}

#[test]
fn kie_rejects_a_stale_timestamp() {
    let verifier = kie("[\"kie-hmac-key\"]");
    let request = kie_request(WAV, WAV_TASK_ID, KIE_WAV);
    assert_rejects(
        &verifier,
        &request.clone().now(SIGNED_AT + 301),
        "stale_timestamp",
    );
    assert_rejects(&verifier, &request.now(SIGNED_AT - 301), "stale_timestamp");
}

// ---------------------------------------------------------------------------------------
// hmac

/// `openssl dgst -sha1 -hmac generic-key -hex < fixtures/callbacks/mp4-success.json`.
const SHA1_MP4: &str = "81d389a83ddd3941c4e87b3461216ed1b0c8fb1b";
/// `{ printf '1700000000.'; cat fixtures/callbacks/cover-images.json; } |
/// openssl dgst -sha512 -hmac generic-key -binary | base64`.
const SHA512_COVER: &str =
    "7wCIABrYp5jFKuISfv7cECbeAVvFS7m3pVRoV4fJMjytgcE+oym/uYY+5eQFydJk3RYNRe1fh0MPIHI/pqh/xA==";

#[test]
fn hmac_sha1_hex_over_the_body() {
    let table = r#"
scheme = "hmac"
header = "X-Signature"
algorithm = "sha1"
prefix = "sha1="
secrets = ["rotated-away", "generic-key"]
"#;
    let verifier = verifier_for(table, "/callbacks/mp4");
    let request = Request::new(MP4).header("X-Signature", &format!("sha1={SHA1_MP4}"));
    assert_accepts(&verifier, &request);
    assert_rejects(&verifier, &request.clone().tampered(), "bad_signature");
    assert_rejects(&verifier, &Request::new(MP4), "missing_header");
    let wrong =
        "scheme = \"hmac\"\nheader = \"X-Signature\"\nalgorithm = \"sha1\"\nsecrets = [\"k\"]";
    let unprefixed = Request::new(MP4).header("X-Signature", SHA1_MP4);
    assert_rejects(
        &verifier_for(wrong, "/callbacks/mp4"),
        &unprefixed,
        "bad_signature",
    );
}

const SHA512_TABLE: &str = r#"
scheme = "hmac"
header = "X-Signature"
algorithm = "sha512"
encoding = "base64"
signed = "{timestamp}.{body}"
timestamp_header = "X-Timestamp"
tolerance = "1m"
secrets = ["generic-key"]
"#;

fn sha512_request() -> Request {
    Request::new(COVER)
        .header("X-Timestamp", &SIGNED_AT.to_string())
        .header("X-Signature", SHA512_COVER)
}

#[test]
fn hmac_sha512_base64_over_a_timestamped_body() {
    let verifier = verifier_for(SHA512_TABLE, "/callbacks/cover");
    assert_accepts(&verifier, &sha512_request());
    assert_accepts(&verifier, &sha512_request().now(SIGNED_AT + 60));
    let unpadded = Request::new(COVER)
        .header("X-Timestamp", &SIGNED_AT.to_string())
        .header("X-Signature", SHA512_COVER.trim_end_matches('='));
    assert_accepts(&verifier, &unpadded);
}

#[test]
fn hmac_with_a_timestamp_rejects_tampering_staleness_and_missing_parts() {
    let verifier = verifier_for(SHA512_TABLE, "/callbacks/cover");
    assert_rejects(&verifier, &sha512_request().tampered(), "bad_signature");
    let message = assert_rejects(
        &verifier,
        &sha512_request().now(SIGNED_AT + 61),
        "stale_timestamp",
    );
    assert_eq!(
        message,
        "x-timestamp timestamp is more than 60s away from the relay's clock"
    );
    let moved = sha512_request()
        .without("x-timestamp")
        .header("X-Timestamp", &(SIGNED_AT + 1).to_string())
        .now(SIGNED_AT + 1);
    assert_rejects(&verifier, &moved, "bad_signature");
    let message = assert_rejects(
        &verifier,
        &sha512_request().without("x-timestamp"),
        "missing_header",
    );
    assert_eq!(message, "missing x-timestamp header");
    let garbled = sha512_request()
        .without("x-timestamp")
        .header("X-Timestamp", "-5");
    let message = assert_rejects(&verifier, &garbled, "malformed");
    assert_eq!(
        message,
        "malformed x-timestamp header: is not a unix time in seconds"
    );
    let far = sha512_request()
        .without("x-timestamp")
        .header("X-Timestamp", "99999999999999999999");
    assert_rejects(&verifier, &far, "malformed");
}

// ---------------------------------------------------------------------------------------
// Across schemes

#[test]
fn a_verifier_can_be_shared_between_tasks() {
    fn shared<T: Send + Sync>() {}
    shared::<Verifier>();
}

#[test]
fn rejections_never_show_a_secret_or_a_presented_value() {
    let cases: Vec<(Verifier, Request)> = vec![
        (
            verifier_for(QUERY_TOKEN, "/c"),
            Request::new(WAV).query("token=n3v3r-shown"),
        ),
        (
            verifier_for(HEADER, "/c"),
            Request::new(WAV).header("X-Relay-Token", "n3v3r-shown"),
        ),
        (
            basic(),
            Request::new(WAV).header("Authorization", &format!("Basic {BASIC_WRONG}")),
        ),
        (github("[\"gh-secret-2025\"]"), github_request(GITHUB_OLD)),
        (
            stripe("[\"whsec_other\"]"),
            stripe_request(&format!("t={SIGNED_AT},v1={STRIPE_SIGNATURE}")),
        ),
        (
            standard(&[ROTATED_SECRET]),
            vector_request(VECTOR_SIGNATURE),
        ),
        (
            kie("[\"other-key\"]"),
            kie_request(WAV, WAV_TASK_ID, KIE_WAV),
        ),
    ];
    let never = [
        "n3v3r-shown",
        "s3cret",
        "n3w",
        "old",
        "guess",
        "pa55",
        BASIC_WRONG,
        GITHUB_OLD,
        "gh-secret",
        "whsec",
        STRIPE_SIGNATURE,
        &VECTOR_SIGNATURE[3..],
        "cmVsYXkt",
        KIE_WAV,
        "kie-hmac-key",
        "other-key",
    ];
    for (verifier, request) in cases {
        let rejection: Rejection = verifier
            .check(&request.presented())
            .expect_err("every case is rejected");
        let message = rejection.to_string();
        let leaked: Vec<_> = never
            .iter()
            .filter(|value| message.contains(*value))
            .collect();
        assert!(leaked.is_empty(), "{message:?} shows {leaked:?}");
    }
}

#[test]
fn debug_of_a_verifier_shows_no_key_material() {
    let shown = format!("{:?}", github("[\"gh-secret-2024\"]"));
    assert_eq!(shown, "Verifier { scheme: Github, .. }");
}
