//! The hyper server: accept loop with a cap on open connections, TLS when
//! configured (ALPN h2 and http/1.1), HTTP/1.1 and HTTP/2 per connection,
//! header-read, keep-alive idle and handshake timeouts (`keepalive`), and
//! graceful shutdown that lets in-flight requests finish.

use crate::app::App;
use crate::keepalive::{Served, Waits, Watched};
use crate::limits::Peer;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Binds the HTTP listener with `backlog` queued connections: tokio's
/// `TcpListener::bind` uses 128, which a burst of clients overflows.
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As tokio's own bind does: a restarted daemon rebinds a port in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog.max(1))
}

/// Serves until `shutdown` resolves, then waits (bounded) for open requests.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(builder(&app));
    // At the cap, connections wait in the kernel's backlog until one closes.
    let open = Arc::new(Semaphore::new(app.http.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            room = open.clone().acquire_owned() => match room {
                Ok(room) => tokio::select! {
                    accepted = listener.accept() => accepted.map(|a| (a, room)),
                    () = &mut shutdown => break,
                },
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        match accepted {
            Ok(((stream, peer), room)) => {
                let _ = stream.set_nodelay(true);
                let connection = Connection {
                    app: app.clone(),
                    builder: builder.clone(),
                    watcher: graceful.watcher(),
                    peer: Peer(peer.ip()),
                    _room: room,
                };
                tokio::spawn(connection.run(stream));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    let grace = Duration::from_secs(app.http.shutdown_grace_seconds.max(1));
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the grace period; closing them");
    }
}

fn builder(app: &App) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // `Watched` keeps the head's deadline: hyper's would also close idle connections.
    builder.http1().header_read_timeout(None).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(app.http.max_streams_per_connection)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

/// One accepted connection and what it holds until it closes.
struct Connection {
    app: Arc<App>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    peer: Peer,
    /// Its place under `max_connections`.
    _room: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let Some(tls) = self.app.tls.clone() else {
            return self.serve(stream).await;
        };
        // A client that never finishes its handshake holds a slot no longer
        // than one that never sends its headers.
        let limit = Duration::from_millis(self.app.http.header_read_timeout_ms.max(1));
        match tokio::time::timeout(limit, tls.acceptor().accept(stream)).await {
            Ok(Ok(stream)) => self.serve(stream).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
    }

    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (app, peer) = (self.app, self.peer);
        let waits = Waits {
            head: Duration::from_millis(app.http.header_read_timeout_ms.max(1)),
            idle: Duration::from_millis(app.http.keep_alive_idle_ms.max(1)),
        };
        let (io, requests) = Watched::new(io, waits);
        let service = service_fn(move |mut request: hyper::Request<_>| {
            request.extensions_mut().insert(peer);
            let app = app.clone();
            let in_flight = requests.start();
            async move {
                let response = app.handle(request).await;
                Ok::<_, Infallible>(response.map(|body| Served::new(body, in_flight)))
            }
        });
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        if let Err(e) = self.watcher.watch(connection).await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}
