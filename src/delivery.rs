//! Delivery: one attempt to send a journaled callback to one destination.
//!
//! The forwarded request keeps the method, the body bytes and the
//! end-to-end headers; hop-by-hop headers are dropped, `host` is the
//! destination's, and the relay adds `x-relay-id`, `x-relay-attempt`,
//! `x-forwarded-for` and `x-forwarded-proto`, and `x-relay-replay: true` on
//! replays. Headers a caller sends under
//! `x-relay-` are dropped so that they cannot pose as the relay's own.

use std::error::Error as _;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::journal::CallbackRecord;
use crate::retry::Outcome;

/// Why a destination's client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read CA file {path}: {source}")]
    ReadCa {
        path: String,
        source: std::io::Error,
    },
    #[error("CA file {path} holds no usable certificate")]
    NoCa { path: String },
    #[error("cannot use TLS settings: {0}")]
    Tls(#[from] rustls::Error),
}

/// The most of a destination's answer that is read (and thrown away) so the
/// connection can be reused; a longer answer closes the connection.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Headers that belong to one connection and are never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// A pooled HTTP/HTTPS client for one destination.
#[derive(Clone)]
pub struct Sender {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Sender {
    /// A client trusting the system and webpki roots, plus `extra_ca`.
    pub fn new(extra_ca: Option<&Path>, connect_timeout: Duration) -> Result<Sender, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(root_store(extra_ca)?)
            .with_no_client_auth();

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);

        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        Ok(Sender { client })
    }

    /// Sends `record` to `url` as attempt number `attempt` (of a replay when
    /// `replay`), within `timeout`.
    pub async fn send(
        &self,
        url: &str,
        record: &CallbackRecord,
        body: Bytes,
        attempt: u32,
        replay: bool,
        timeout: Duration,
    ) -> Outcome {
        let request = match forwarded_request(url, record, body, attempt, replay) {
            Ok(request) => request,
            Err(error) => return Outcome::Unsendable { error },
        };
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| error_chain(&e))?;
            let (parts, body) = response.into_parts();
            // Read a little of the answer so the connection can be reused.
            let _ = Limited::new(body, MAX_RESPONSE_BODY).collect().await;
            Ok::<_, String>(Outcome::from_response(parts.status, &parts.headers))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(err)) => Outcome::failed(err),
            Err(_) => Outcome::failed(format!("attempt timed out after {timeout:?}")),
        }
    }

    /// Sends a request once within `timeout` and returns the answer with
    /// at most `keep` bytes of its body, for a person to read.
    pub async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
        keep: usize,
    ) -> Result<Answer, String> {
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| error_chain(&e))?;
            let (parts, mut body) = response.into_parts();
            let mut head = Vec::new();
            while head.len() < keep {
                match body.frame().await {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => head.extend_from_slice(&data),
                        Err(_) => continue,
                    },
                    Some(Err(err)) => return Err(format!("reading the answer: {err}")),
                    None => break,
                }
            }
            head.truncate(keep);
            let head = Bytes::from(head);
            Ok(Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                head,
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("request timed out after {timeout:?}")),
        }
    }
}

/// What a target answered to a request sent once.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    /// The start of the answer's body.
    pub head: Bytes,
}

/// Builds the request a destination receives.
pub fn forwarded_request(
    url: &str,
    record: &CallbackRecord,
    body: Bytes,
    attempt: u32,
    replay: bool,
) -> Result<Request<Full<Bytes>>, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("bad destination url {url:?}: {e}"))?;
    let method = Method::from_bytes(record.method.as_bytes())
        .map_err(|_| format!("bad method {:?} in record", record.method))?;
    let mut request = Request::builder().method(method).uri(uri);
    let headers = request.headers_mut().expect("the builder has no error yet");

    let dropped = connection_tokens(record);
    for (name, value) in &record.headers {
        let lower = name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lower.as_str())
            || lower.starts_with("x-relay-")
            || dropped.contains(&lower)
            || lower == "x-forwarded-proto"
        {
            continue;
        }
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        headers.append(name, value);
    }

    let forwarded_for = forwarded_for(headers, record);
    headers.insert("x-forwarded-for", forwarded_for);
    let proto = if record.tls { "https" } else { "http" };
    let relay_headers = [
        ("x-relay-id", record.id.to_string()),
        ("x-relay-attempt", attempt.to_string()),
        ("x-forwarded-proto", proto.to_string()),
    ];
    for (name, value) in relay_headers {
        let value = HeaderValue::from_str(&value).map_err(|e| format!("{name}: {e}"))?;
        headers.insert(name, value);
    }
    if replay {
        headers.insert("x-relay-replay", HeaderValue::from_static("true"));
    }

    request.body(Full::new(body)).map_err(|e| e.to_string())
}

/// The caller's `X-Forwarded-For` list with the caller's address appended.
/// Every incoming `X-Forwarded-For` line counts, in order; a list that is not
/// visible ASCII is dropped rather than sent on mangled.
fn forwarded_for(headers: &http::HeaderMap, record: &CallbackRecord) -> HeaderValue {
    let peer_ip = match record.peer.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.ip().to_string(),
        Err(_) => record.peer.clone(),
    };
    let earlier: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|value| value.to_str().unwrap_or(""))
        .filter(|value| !value.trim().is_empty())
        .collect();
    let mut list = earlier.join(", ");
    if !list.is_empty() {
        list.push_str(", ");
    }
    list.push_str(&peer_ip);
    HeaderValue::from_str(&list)
        .or_else(|_| HeaderValue::from_str(&peer_ip))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Header names listed in the caller's `Connection` header: hop-by-hop too.
fn connection_tokens(record: &CallbackRecord) -> Vec<String> {
    record
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(CONNECTION.as_str()))
        .flat_map(|(_, value)| {
            let value = String::from_utf8_lossy(value);
            value
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// An error and its causes, joined: hyper's top-level messages alone
/// ("client error (Connect)") do not say what went wrong.
fn error_chain(err: &hyper_util::client::legacy::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn root_store(extra_ca: Option<&Path>) -> Result<rustls::RootCertStore, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // System roots that fail to load or parse are skipped: the webpki set
    // and any configured CA still apply.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);

    if let Some(path) = extra_ca {
        let shown = path.display().to_string();
        let pem = fs::read(path).map_err(|source| ClientError::ReadCa {
            path: shown.clone(),
            source,
        })?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .filter_map(Result::ok)
            .collect();
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(ClientError::NoCa { path: shown });
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::CallbackId;

    fn record(headers: &[(&str, &[u8])], peer: &str) -> CallbackRecord {
        CallbackRecord {
            id: CallbackId(1),
            route: "wav".into(),
            received_at_ms: 0,
            method: "POST".into(),
            path_and_query: "/callbacks/wav".into(),
            headers: headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_vec()))
                .collect(),
            peer: peer.into(),
            tls: true,
            task_id: None,
        }
    }

    fn forwarded(record: &CallbackRecord) -> Request<Full<Bytes>> {
        forwarded_request(
            "http://127.0.0.1:3000/hooks",
            record,
            Bytes::new(),
            1,
            false,
        )
        .expect("a valid request")
    }

    #[test]
    fn every_forwarded_for_line_is_kept_and_the_peer_appended() {
        let record = record(
            &[
                ("x-forwarded-for", b"203.0.113.7"),
                ("content-type", b"application/json"),
                ("X-Forwarded-For", b"198.51.100.2, 10.0.0.1"),
            ],
            "127.0.0.1:5000",
        );
        let request = forwarded(&record);
        let values: Vec<_> = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .collect();
        assert_eq!(values, ["203.0.113.7, 198.51.100.2, 10.0.0.1, 127.0.0.1"]);
        assert_eq!(request.headers()["x-forwarded-proto"], "https");
    }

    #[test]
    fn a_forwarded_for_line_that_is_not_text_is_dropped() {
        let record = record(
            &[
                ("x-forwarded-for", b"\xff\xfe"),
                ("x-forwarded-for", b"203.0.113.7"),
            ],
            "[2001:db8::1]:443",
        );
        let request = forwarded(&record);
        assert_eq!(
            request.headers()["x-forwarded-for"],
            "203.0.113.7, 2001:db8::1"
        );
    }
}
