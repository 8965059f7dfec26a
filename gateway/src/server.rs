//! The hyper HTTP/1.1 server: accept loop with a cap on open connections,
//! per-connection tasks, header-read timeout, and graceful shutdown that lets
//! in-flight requests finish.

use crate::app::App;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Serves until `shutdown` resolves, then waits (bounded) for open requests.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(
            app.http.header_read_timeout_ms.max(1),
        ))
        .keep_alive(true);
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
            Ok(((stream, _peer), room)) => {
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let service = service_fn(move |request| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(app.handle(request).await) }
                });
                let connection =
                    graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    drop(room);
                });
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
