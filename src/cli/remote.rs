//! A small client for a running relay's admin API, used by the commands
//! while `serve` holds the journal.

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::CliError;

/// How long the first question to the admin API may take before the
/// command decides no relay is answering.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A running relay's admin API.
pub struct AdminClient {
    /// `http://host:port`, without a trailing slash.
    base: String,
    token: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// What the first question to the admin API found.
pub enum Probe {
    /// A relay answered.
    Up,
    /// Nothing answered; the reason, for the message.
    Down(String),
}

impl AdminClient {
    /// A client for the admin API at `addr` (`host:port` or an http URL).
    pub fn new(addr: &str, token: Option<String>) -> AdminClient {
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{addr}")
        };
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(PROBE_TIMEOUT));
        http.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(http);
        AdminClient {
            base,
            token,
            client,
        }
    }

    /// The API's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Asks `/healthz` whether a relay answers; a wrong token is an error.
    pub async fn probe(&self) -> Result<Probe, CliError> {
        let asked = tokio::time::timeout(PROBE_TIMEOUT, self.send(Method::GET, "/healthz", None));
        match asked.await {
            Ok(Ok(response)) if response.status().is_success() => Ok(Probe::Up),
            Ok(Ok(response)) if response.status() == StatusCode::UNAUTHORIZED => {
                Err(CliError::usage(format!(
                    "the admin api at {} refused the token (check [admin] token)",
                    self.base
                )))
            }
            Ok(Ok(response)) => Ok(Probe::Down(format!("it answered {}", response.status()))),
            Ok(Err(reason)) => Ok(Probe::Down(reason)),
            Err(_) => Ok(Probe::Down(format!("no answer within {PROBE_TIMEOUT:?}"))),
        }
    }

    /// GETs `path` and reads the JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let response = self.call(Method::GET, path, None).await?;
        read_json(response).await
    }

    /// POSTs `body` as JSON to `path` and reads the JSON answer.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CliError> {
        let body = serde_json::to_vec(body).expect("requests are plain data");
        let response = self
            .call(Method::POST, path, Some(Bytes::from(body)))
            .await?;
        read_json(response).await
    }

    /// Sends a request and fails unless the answer is 2xx.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Response<Incoming>, CliError> {
        let response = self.send(method, path, body).await.map_err(|reason| {
            CliError::failed(format!(
                "the admin api at {} did not answer: {reason}",
                self.base
            ))
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(error_of(response).await)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Response<Incoming>, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| format!("bad request: {e}"))?;
        self.client.request(request).await.map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            text
        })
    }
}

async fn read_json<T: DeserializeOwned>(response: Response<Incoming>) -> Result<T, CliError> {
    let bytes = read_all(response).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| CliError::failed(format!("the admin api answered something unexpected: {e}")))
}

/// Reads a whole answer body.
pub async fn read_all(response: Response<Incoming>) -> Result<Bytes, CliError> {
    let collected = response.into_body().collect().await;
    collected
        .map(|c| c.to_bytes())
        .map_err(|e| CliError::failed(format!("reading the admin api's answer: {e}")))
}

/// Turns an error answer into the command's error: 4xx but 404 is bad
/// usage (exit 2), anything else a failure (exit 1).
async fn error_of(response: Response<Incoming>) -> CliError {
    let status = response.status();
    let bytes = read_all(response).await.unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| format!("the admin api answered {status}"));
    let usage = status.is_client_error() && status != StatusCode::NOT_FOUND;
    if usage && status != StatusCode::UNPROCESSABLE_ENTITY {
        CliError::usage(message)
    } else {
        CliError::failed(message)
    }
}

/// Escapes `text` for a URL path segment or query value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
