//! An OpenAI-compatible chat stand-in that speaks HTTP/2 as well as HTTP/1.1:
//! over TLS by ALPN, or h2c on plain TCP. It caps streams per connection like
//! a real server (`SETTINGS_MAX_CONCURRENT_STREAMS`), records which protocol
//! and connection each request came on, and can hold its answers until a
//! number of requests are in flight at once, so a test sees whether the
//! client ever had them all open together.

use crate::tls::CertFiles;
use gpubridge_gateway::outgoing::Outgoing;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// How the stand-in listens.
pub struct MultiplexedOptions<'a> {
    /// TLS with this certificate, offering h2 and http/1.1; `None`: plain TCP.
    pub tls: Option<&'a CertFiles>,
    /// Streams a client may open on one HTTP/2 connection.
    pub max_streams: u32,
    /// Answers wait until this many requests are in flight at once (or, so a
    /// failing test ends, 15 s pass); 0 answers at once.
    pub hold_until: usize,
}

#[derive(Default)]
struct Seen {
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    released: AtomicBool,
    release: Notify,
    http1: AtomicU64,
    http2: AtomicU64,
    /// Per connection that carried requests: (in flight now, most at once).
    connections: Mutex<HashMap<u64, (usize, usize)>>,
}

/// A running stand-in; stops when dropped.
pub struct Multiplexed {
    pub addr: SocketAddr,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Multiplexed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Multiplexed {
    pub async fn start(options: MultiplexedOptions<'_>) -> anyhow::Result<Multiplexed> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let tls = options.tls.map(CertFiles::acceptor).transpose()?;
        let seen = Arc::new(Seen::default());
        let (streams, hold) = (options.max_streams, options.hold_until);
        let state = seen.clone();
        let task = tokio::spawn(async move {
            let mut next = 0u64;
            while let Ok((tcp, _)) = listener.accept().await {
                next += 1;
                let (seen, tls, id) = (state.clone(), tls.clone(), next);
                tokio::spawn(async move {
                    match tls {
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(tcp).await {
                                serve(stream, seen, id, streams, hold).await;
                            }
                        }
                        None => serve(tcp, seen, id, streams, hold).await,
                    }
                });
            }
        });
        Ok(Multiplexed { addr, seen, task })
    }

    /// Requests that came as (HTTP/1.x, HTTP/2).
    pub fn versions(&self) -> (u64, u64) {
        let seen = &self.seen;
        (
            seen.http1.load(Ordering::Relaxed),
            seen.http2.load(Ordering::Relaxed),
        )
    }

    /// Most requests in flight at once, across connections.
    pub fn peak_in_flight(&self) -> usize {
        self.seen.peak.load(Ordering::Relaxed)
    }

    /// For each connection that carried requests: the most it had in flight at once.
    pub fn connection_peaks(&self) -> Vec<usize> {
        let connections = self.seen.connections.lock();
        connections.values().map(|&(_, peak)| peak).collect()
    }
}

async fn serve<S>(stream: S, seen: Arc<Seen>, connection: u64, streams: u32, hold: usize)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let seen = seen.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(&seen, connection, hold, request).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(streams);
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn answer(
    seen: &Seen,
    connection: u64,
    hold: usize,
    request: Request<Incoming>,
) -> Response<Outgoing> {
    let counter = match request.version() {
        Version::HTTP_2 => &seen.http2,
        _ => &seen.http1,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let input: serde_json::Value = match request.into_body().collect().await {
        Ok(body) => serde_json::from_slice(&body.to_bytes()).unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    };
    arrive(seen, connection);
    if hold > 0 {
        wait_for_company(seen, hold).await;
    }
    leave(seen, connection);
    let body = serde_json::json!({
        "id": "chatcmpl-multiplexed",
        "object": "chat.completion",
        "model": input["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "multiplexed reply"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    });
    let mut response = Response::new(Outgoing::whole(body.to_string()));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn arrive(seen: &Seen, connection: u64) {
    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    seen.peak.fetch_max(now, Ordering::SeqCst);
    let mut connections = seen.connections.lock();
    let entry = connections.entry(connection).or_insert((0, 0));
    entry.0 += 1;
    entry.1 = entry.1.max(entry.0);
}

fn leave(seen: &Seen, connection: u64) {
    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
    if let Some(entry) = seen.connections.lock().get_mut(&connection) {
        entry.0 -= 1;
    }
}

/// Holds until `hold` requests are in flight together; once they have been,
/// every later request passes straight through.
async fn wait_for_company(seen: &Seen, hold: usize) {
    let released = seen.release.notified();
    if seen.in_flight.load(Ordering::SeqCst) >= hold {
        seen.released.store(true, Ordering::SeqCst);
        seen.release.notify_waiters();
    }
    if seen.released.load(Ordering::SeqCst) {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(15), released).await;
}
