//! The benchmark's baseline: a bare hyper server that reads each request's whole body and
//! answers `200` with a tiny JSON body, and does nothing else (no journal, no forwarding).
//! `bench/run.sh` loads it and the relay the same way and reports the relay's throughput
//! as a ratio of this "ceiling".
//!
//! Run, HTTPS (ALPN h2 and http/1.1):
//! `cargo run --release --example bare_server -- --listen 127.0.0.1:8443 --cert C --key K`
//! Run, plain HTTP/1.1 and h2c: `cargo run --release --example bare_server`
//!
//! It is kept as lean as a typical hyper server: multi-thread tokio runtime, hyper-util's
//! auto (HTTP/1.1 + HTTP/2) connection builder, one task per connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Same length as the relay's ack (`{"id":"<26-character ULID>"}`).
const ACK: &str = r#"{"id":"00000000000000000000000000"}"#;

/// Bare hyper (+ rustls) server: reads the body, answers 200 with a tiny JSON body.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,

    /// Server certificate chain (PEM). With --key, serves HTTPS; without, plain HTTP.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,

    /// Private key for --cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let tls = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => Some(TlsAcceptor::from(tls_config(cert, key)?)),
        _ => None,
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!(
        "bare_server listening on {scheme}://{}",
        listener.local_addr()?
    );

    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(stream, tls.clone()));
    }
}

async fn serve_connection(stream: TcpStream, tls: Option<TlsAcceptor>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let service = service_fn(handle);
    // Connection errors (client gone, bad handshake) are part of normal life: not logged.
    let _ = match tls {
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(tls_stream) => {
                builder
                    .serve_connection(TokioIo::new(tls_stream), service)
                    .await
            }
            Err(_) => return,
        },
        None => {
            builder
                .serve_connection(TokioIo::new(stream), service)
                .await
        }
    };
}

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    // Read the whole body, as the relay must before it can journal anything.
    let _body = request.into_body().collect().await?.to_bytes();
    let mut response = Response::new(Full::new(Bytes::from_static(ACK.as_bytes())));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn tls_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(load_certs(cert)?, load_key(key)?)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(format!("no certificate found in {}", path.display()).into());
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("no private key in {}: {e}", path.display()).into())
}
