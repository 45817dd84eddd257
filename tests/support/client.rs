//! [`Client`]: posts to the relay under test over HTTP/1.1, h2c, or TLS with h1 or h2; and
//! [`TlsConnection`]: one TLS connection, showing the certificate it was served.

use super::certs::TestCerts;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client as Legacy;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How long a request may take, from sending to the end of the response body, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP version a TLS [`Client`] speaks (negotiated with ALPN for HTTP/2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.1 only (no ALPN offered).
    Http1,
    /// HTTP/2 only (ALPN `h2`).
    Http2,
}

/// A response, read whole.
#[derive(Clone, Debug)]
pub struct Response {
    /// Response status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole response body.
    pub body: Bytes,
    /// HTTP version of the response.
    pub version: http::Version,
}

impl Response {
    /// The body parsed as JSON; panics with status and body text if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response {} is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value of header `name`, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request failed before a whole response arrived (refused, reset, timed out, bad TLS...).
#[derive(Debug)]
pub struct ClientError {
    /// `METHOD url` of the request.
    pub request: String,
    /// The error and its sources, joined with `: `.
    pub message: String,
    /// Whether the client's timeout expired.
    pub timed_out: bool,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.request, self.message)
    }
}

impl StdError for ClientError {}

type Inner = Legacy<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A small HTTP client for the relay under test. Cheap to clone; pools connections.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Inner,
    timeout: Duration,
}

impl Client {
    /// Plain HTTP/1.1, for `http://` URLs (an `https://` URL fails: it trusts no CA).
    pub fn plain() -> Client {
        Client::build(plain_connector(), false)
    }

    /// Plain HTTP/2 with prior knowledge (h2c), for `http://` URLs.
    pub fn h2c() -> Client {
        Client::build(plain_connector(), true)
    }

    /// HTTPS trusting only `certs`' CA, speaking only `version` (`https://` URLs only).
    pub fn tls(certs: &TestCerts, version: Version) -> Client {
        let builder = HttpsConnectorBuilder::new()
            .with_tls_config(certs.client_config(&[]))
            .https_only();
        match version {
            Version::Http1 => Client::build(builder.enable_http1().wrap_connector(tcp()), false),
            Version::Http2 => Client::build(builder.enable_http2().wrap_connector(tcp()), true),
        }
    }

    fn build(connector: HttpsConnector<HttpConnector>, http2_only: bool) -> Client {
        let inner = Legacy::builder(TokioExecutor::new())
            .http2_only(http2_only)
            .build(connector);
        Client {
            inner,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same client (sharing its pool) with another per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// POSTs `body`, adding `content-type: application/json` unless `headers` has one.
    ///
    /// Panics (naming the caller) if no response arrives; see [`Client::try_post`].
    #[track_caller]
    pub fn post<B: Into<Bytes>>(
        &self,
        url: &str,
        body: B,
        headers: &[(&str, &str)],
    ) -> impl Future<Output = Response> + use<B> {
        let caller = Location::caller();
        let future = self.try_post(url, body, headers);
        async move {
            future
                .await
                .unwrap_or_else(|e| panic!("post at {caller}: {e}"))
        }
    }

    /// Like [`Client::post`], returning transport errors.
    pub fn try_post<B: Into<Bytes>>(
        &self,
        url: &str,
        body: B,
        headers: &[(&str, &str)],
    ) -> impl Future<Output = Result<Response, ClientError>> + use<B> {
        let has_type = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        let mut all = headers.to_vec();
        if !has_type {
            all.push(("content-type", "application/json"));
        }
        self.start(Method::POST, url, body.into(), &all)
    }

    /// GETs `url`; panics if no response arrives.
    #[track_caller]
    pub fn get(&self, url: &str) -> impl Future<Output = Response> + use<> {
        self.request(Method::GET, url, Bytes::new(), &[])
    }

    /// Sends any request, exactly as given (no default headers); panics if no response.
    #[track_caller]
    pub fn request<B: Into<Bytes>>(
        &self,
        method: Method,
        url: &str,
        body: B,
        headers: &[(&str, &str)],
    ) -> impl Future<Output = Response> + use<B> {
        let caller = Location::caller();
        let future = self.try_request(method, url, body, headers);
        async move {
            future
                .await
                .unwrap_or_else(|e| panic!("request at {caller}: {e}"))
        }
    }

    /// Like [`Client::request`], returning transport errors (and timeouts) as [`ClientError`].
    ///
    /// Panics at once on an unusable URL or header, which is a bug in the test.
    pub fn try_request<B: Into<Bytes>>(
        &self,
        method: Method,
        url: &str,
        body: B,
        headers: &[(&str, &str)],
    ) -> impl Future<Output = Result<Response, ClientError>> + use<B> {
        self.start(method, url, body.into(), headers)
    }

    /// Builds the request now; the returned future borrows nothing.
    fn start(
        &self,
        method: Method,
        url: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> impl Future<Output = Result<Response, ClientError>> + use<> {
        let what = format!("{method} {url}");
        let request = build_request(method, url, body, headers);
        let (inner, timeout) = (self.inner.clone(), self.timeout);
        async move {
            match tokio::time::timeout(timeout, send(&inner, request)).await {
                Ok(result) => result.map_err(|message| fail(&what, message, false)),
                Err(_) => Err(fail(&what, format!("no response within {timeout:?}"), true)),
            }
        }
    }
}

/// One HTTP/1.1 connection over TLS, kept open across requests, with the server
/// certificate it was served. Every step fails after [`DEFAULT_TIMEOUT`].
pub struct TlsConnection {
    /// The leaf certificate the server presented.
    pub leaf: CertificateDer<'static>,
    sender: SendRequest<Full<Bytes>>,
}

impl TlsConnection {
    /// Connects to `addr` with `config` (see [`super::inspecting_client_config`]), asking
    /// for `server_name` by SNI; `None` sends no SNI.
    pub async fn open(
        addr: SocketAddr,
        server_name: Option<&str>,
        mut config: ClientConfig,
    ) -> Result<TlsConnection, String> {
        config.enable_sni = server_name.is_some();
        let name = ServerName::try_from(server_name.unwrap_or("localhost").to_owned())
            .map_err(|e| format!("bad server name {server_name:?}: {e}"))?;
        let connect = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| chain(&e))?;
            let connector = TlsConnector::from(Arc::new(config));
            connector.connect(name, tcp).await.map_err(|e| chain(&e))
        };
        let tls = within("the TLS handshake", connect).await?;
        let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
        let leaf = leaf.cloned().ok_or("the server sent no certificate")?;
        let handshake = hyper::client::conn::http1::handshake(TokioIo::new(tls));
        let (sender, connection) = within("the HTTP handshake", async {
            handshake.await.map_err(|e| chain(&e))
        })
        .await?;
        tokio::spawn(connection);
        Ok(TlsConnection { leaf, sender })
    }

    /// POSTs `body` as JSON to `path` on this connection.
    pub async fn post(&mut self, path: &str, body: impl Into<Bytes>) -> Result<Response, String> {
        let headers = [("host", "localhost"), ("content-type", "application/json")];
        let request = build_request(Method::POST, path, body.into(), &headers);
        let sender = &mut self.sender;
        within(&format!("POST {path}"), async move {
            sender.ready().await.map_err(|e| chain(&e))?;
            let response = sender.send_request(request).await.map_err(|e| chain(&e))?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| chain(&e))?.to_bytes();
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
                version: parts.version,
            })
        })
        .await
    }
}

/// `future`, or an error naming `what` after [`DEFAULT_TIMEOUT`].
async fn within<T>(
    what: &str,
    future: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(DEFAULT_TIMEOUT, future).await {
        Ok(result) => result,
        Err(_) => Err(format!("{what} took longer than {DEFAULT_TIMEOUT:?}")),
    }
}

fn plain_connector() -> HttpsConnector<HttpConnector> {
    let roots = rustls::RootCertStore::empty();
    let config = rustls::ClientConfig::builder_with_provider(super::certs::ring_provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp())
}

fn tcp() -> HttpConnector {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http
}

fn build_request(
    method: Method,
    url: &str,
    body: Bytes,
    headers: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(body))
        .unwrap_or_else(|e| panic!("bad request to {url}: {e}"))
}

async fn send(inner: &Inner, request: Request<Full<Bytes>>) -> Result<Response, String> {
    let response = inner.request(request).await.map_err(|e| chain(&e))?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| chain(&e))?.to_bytes();
    let (status, headers, version) = (parts.status, parts.headers, parts.version);
    Ok(Response {
        status,
        headers,
        body,
        version,
    })
}

fn fail(request: &str, message: String, timed_out: bool) -> ClientError {
    ClientError {
        request: request.to_owned(),
        message,
        timed_out,
    }
}

/// An error and its sources, joined with `: `.
fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
