//! Serving HTTP on a loopback listener with a request handler: the stand-ins'
//! accept loop. Plain TCP is HTTP/1.1; TLS is HTTP/2 or HTTP/1.1 by ALPN.

use gpubridge_gateway::outgoing::Outgoing;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Serves every connection `listener` accepts with `handle`, until aborted.
pub fn spawn<S, F, Fut>(listener: TcpListener, state: Arc<S>, handle: F) -> JoinHandle<()>
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request<Incoming>) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Response<Outgoing>> + Send + 'static,
{
    spawn_with(listener, None, state, handle)
}

/// The same over TLS when `tls` is set.
pub fn spawn_with<S, F, Fut>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<S>,
    handle: F,
) -> JoinHandle<()>
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request<Incoming>) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Response<Outgoing>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(state, request).await) }
                });
                match tls {
                    None => {
                        let io = TokioIo::new(stream);
                        let _ = http1::Builder::new().serve_connection(io, service).await;
                    }
                    Some(tls) => {
                        let Ok(stream) = tls.accept(stream).await else {
                            return;
                        };
                        let builder = auto::Builder::new(TokioExecutor::new());
                        let io = TokioIo::new(stream);
                        let _ = builder.serve_connection(io, service).await;
                    }
                }
            });
        }
    })
}
