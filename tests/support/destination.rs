//! [`FakeDestination`]: a recording HTTP/1.1 + HTTP/2 server that answers per a [`Script`].

use super::certs::TestCerts;
use super::script::{Call, Reply, Script};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::Location;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// Header carrying the callback id on forwarded requests.
pub const RELAY_ID: &str = "x-relay-id";
/// Header carrying the 1-based attempt number on forwarded requests.
pub const RELAY_ATTEMPT: &str = "x-relay-attempt";

/// How long a TLS handshake with the fake destination may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One request as the fake destination received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// When the request head reached the service.
    pub at: Instant,
    /// Request method.
    pub method: Method,
    /// Path with query, e.g. `/hooks/wav?x=1`.
    pub path: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// The whole request body.
    pub body: Bytes,
    /// HTTP version of the request (`HTTP_11` or `HTTP_2`).
    pub version: http::Version,
    /// Status the destination answered with; `None` while pending, or for a reset.
    pub status: Option<u16>,
}

impl Received {
    /// The value of header `name`, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `x-relay-id` header.
    pub fn relay_id(&self) -> Option<&str> {
        self.header(RELAY_ID)
    }

    /// The `x-relay-attempt` header, parsed.
    pub fn attempt(&self) -> Option<u32> {
        self.header(RELAY_ATTEMPT).and_then(|v| v.parse().ok())
    }

    /// The body parsed as JSON; panics with the body text if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "request body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Whether the destination answered 2xx.
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    fn summary(&self) -> String {
        let status = self.status.map_or("-".to_owned(), |s| s.to_string());
        format!(
            "{} {} {:?} id={} attempt={} -> {status}",
            self.method,
            self.path,
            self.version,
            self.relay_id().unwrap_or("-"),
            self.header(RELAY_ATTEMPT).unwrap_or("-"),
        )
    }
}

/// [`FakeDestination::try_wait_for`] ran out of time.
#[derive(Debug)]
pub struct WaitTimeout {
    /// What was waited for, e.g. "at least 3 requests".
    pub wanted: String,
    /// The destination's address.
    pub addr: SocketAddr,
    /// How long it waited.
    pub timeout: Duration,
    /// What had arrived by then.
    pub received: Vec<Received>,
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (wanted, addr, timeout) = (&self.wanted, self.addr, self.timeout);
        let n = self.received.len();
        write!(
            f,
            "fake destination {addr}: expected {wanted} within {timeout:?}, "
        )?;
        write!(f, "but {n} request(s) arrived")?;
        for (i, r) in self.received.iter().enumerate() {
            write!(f, "\n  #{i}: {}", r.summary())?;
        }
        Ok(())
    }
}

impl std::error::Error for WaitTimeout {}

/// An HTTP/1.1 + HTTP/2 server on `127.0.0.1` that records requests and answers per a
/// [`Script`]. Stops (closing open connections too) when dropped.
pub struct FakeDestination {
    addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeDestination {
    /// Starts a plain-HTTP destination on a free port.
    pub async fn start(script: Script) -> FakeDestination {
        FakeDestination::start_at(loopback(0), script).await
    }

    /// Starts a plain-HTTP destination on `addr`, e.g. to bring one back on the port of a
    /// dropped destination or of [`FakeDestination::closed_port`].
    pub async fn start_at(addr: SocketAddr, script: Script) -> FakeDestination {
        let listener = bind(addr).await;
        FakeDestination::launch(listener, script, None)
    }

    /// Starts an HTTPS destination (ALPN h2 + http/1.1) presenting `certs`' leaf.
    pub async fn start_tls(certs: &TestCerts, script: Script) -> FakeDestination {
        let listener = bind(loopback(0)).await;
        let acceptor = TlsAcceptor::from(Arc::new(certs.server_config()));
        FakeDestination::launch(listener, script, Some(acceptor))
    }

    /// A base URL (`http://127.0.0.1:PORT`, no trailing slash) where nothing listens.
    ///
    /// The port was free a moment ago; another process could take it, which is unlikely.
    pub fn closed_port() -> String {
        let listener = std::net::TcpListener::bind(loopback(0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        drop(listener);
        format!("http://127.0.0.1:{port}")
    }

    fn launch(listener: TcpListener, script: Script, tls: Option<TlsAcceptor>) -> Self {
        let addr = listener.local_addr().expect("local addr");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared::new(script));
        let task = tokio::spawn(accept_loop(listener, shared.clone(), tls));
        FakeDestination {
            addr,
            scheme,
            shared,
            task,
        }
    }

    /// The bound address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The URL of `path` here, e.g. `url("/hooks/wav")`; a missing leading `/` is added.
    pub fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("{}{slash}{path}", self.base_url())
    }

    /// Replaces the script for requests from now on; positions keep counting.
    pub fn set_script(&self, script: Script) {
        *lock(&self.shared.script) = script;
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.state().received.clone()
    }

    /// How many requests have arrived.
    pub fn count(&self) -> usize {
        self.shared.state().received.len()
    }

    /// How many TCP connections were accepted.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The requests carrying `x-relay-id: id` (the attempts of one callback), in order.
    pub fn for_id(&self, id: &str) -> Vec<Received> {
        let state = self.shared.state();
        let mine = state.received.iter().filter(|r| r.relay_id() == Some(id));
        mine.cloned().collect()
    }

    /// The distinct `x-relay-id` values that got a 2xx answer.
    pub fn ids(&self) -> BTreeSet<String> {
        ok_ids(&self.shared.state().received)
    }

    /// Waits (without polling) until at least `n` requests have arrived, and returns all.
    ///
    /// Panics after `timeout`, naming `n`, the timeout and what did arrive.
    #[track_caller]
    pub fn wait_for(&self, n: usize, timeout: Duration) -> impl Future<Output = Vec<Received>> {
        let caller = Location::caller();
        async move {
            match self.try_wait_for(n, timeout).await {
                Ok(received) => received,
                Err(e) => panic!("wait_for at {caller}: {e}"),
            }
        }
    }

    /// Like [`FakeDestination::wait_for`], but returns the timeout as an error.
    pub async fn try_wait_for(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Received>, WaitTimeout> {
        let wanted = format!("at least {n} request(s)");
        self.wait_state(&wanted, timeout, |r| (r.len() >= n).then(|| r.to_vec()))
            .await
    }

    /// Waits until at least `n` distinct `x-relay-id`s got a 2xx answer; returns them.
    ///
    /// Panics after `timeout` like [`FakeDestination::wait_for`].
    #[track_caller]
    pub fn wait_for_ids(
        &self,
        n: usize,
        timeout: Duration,
    ) -> impl Future<Output = BTreeSet<String>> {
        let caller = Location::caller();
        async move {
            let wanted = format!("at least {n} relay id(s) answered 2xx");
            let check = |r: &[Received]| Some(ok_ids(r)).filter(|ids| ids.len() >= n);
            match self.wait_state(&wanted, timeout, check).await {
                Ok(ids) => ids,
                Err(e) => panic!("wait_for_ids at {caller}: {e}"),
            }
        }
    }

    async fn wait_state<T>(
        &self,
        wanted: &str,
        timeout: Duration,
        mut check: impl FnMut(&[Received]) -> Option<T>,
    ) -> Result<T, WaitTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = check(&self.shared.state().received) {
                return Ok(found);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let received = self.received();
                let (wanted, addr) = (wanted.to_owned(), self.addr);
                return Err(WaitTimeout {
                    wanted,
                    addr,
                    timeout,
                    received,
                });
            }
        }
    }
}

impl Drop for FakeDestination {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for FakeDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FakeDestination({}, {} received)",
            self.base_url(),
            self.count()
        )
    }
}

/// State shared by the handle, the accept loop and every connection.
struct Shared {
    state: Mutex<State>,
    script: Mutex<Script>,
    changed: Notify,
    connections: AtomicUsize,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    per_id: HashMap<String, usize>,
}

impl Shared {
    fn new(script: Script) -> Shared {
        let state = Mutex::new(State::default());
        let (script, changed) = (Mutex::new(script), Notify::new());
        Shared {
            state,
            script,
            changed,
            connections: AtomicUsize::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Records `request` and returns its index with the scripted reply.
    fn record(&self, request: &Received) -> (usize, Reply) {
        let (index, index_for_id) = {
            let mut state = self.state();
            let id = request.relay_id().unwrap_or_default().to_owned();
            let slot = state.per_id.entry(id).or_insert(0);
            let index_for_id = *slot;
            *slot += 1;
            state.received.push(request.clone());
            (state.received.len() - 1, index_for_id)
        };
        self.changed.notify_waiters();
        let script = lock(&self.script).clone();
        let reply = script.reply(&Call {
            request,
            index,
            index_for_id,
        });
        (index, reply)
    }

    fn answered(&self, index: usize, status: u16) {
        self.state().received[index].status = Some(status);
        self.changed.notify_waiters();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ok_ids(received: &[Received]) -> BTreeSet<String> {
    let ok = received.iter().filter(|r| r.succeeded());
    ok.filter_map(|r| r.relay_id().map(str::to_owned)).collect()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn bind(addr: SocketAddr) -> TcpListener {
    TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("fake destination: bind {addr}: {e}"))
}

/// Accepts connections until aborted; aborting drops the set, which ends every connection.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, shared.clone(), tls.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(stream: TcpStream, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = tls else {
        return serve_io(stream, shared).await;
    };
    if let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        serve_io(stream, shared).await;
    }
}

async fn serve_io<I>(io: I, shared: Arc<Shared>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| handle(shared.clone(), request));
    let builder = auto::Builder::new(TokioExecutor::new());
    let _ = builder.serve_connection(TokioIo::new(io), service).await;
}

/// The service error that makes hyper drop the connection (h1) or reset the stream (h2).
#[derive(Debug)]
struct Reset;

impl fmt::Display for Reset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("scripted reset")
    }
}

impl std::error::Error for Reset {}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Reset> {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(|_| Reset)?.to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let (method, headers, version) = (parts.method, parts.headers, parts.version);
    let received = Received {
        at,
        method,
        path,
        headers,
        body,
        version,
        status: None,
    };
    let (index, reply) = shared.record(&received);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    if reply.reset {
        return Err(Reset);
    }
    shared.answered(index, reply.status.as_u16());
    Ok(build_response(reply))
}

fn build_response(reply: Reply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() = reply.status;
    for (name, value) in reply.headers {
        response.headers_mut().append(name, value);
    }
    response
}
