//! The floor: a bare HTTP/1.1 reverse proxy on the gateway's own runtime,
//! server and pooled client (Tokio, hyper, hyper-util's keep-alive pool), and
//! nothing else: no job, no routing, no store, no JSON. Benchmarked beside the
//! gateway at the same rate (`gpubridge-floor`, BENCHMARKS.md), it shows what
//! the runtime alone adds on a machine, and so what the gateway's own work
//! adds on top.

use bytes::Bytes;
use gpubridge_gateway::outgoing::Outgoing;
use gpubridge_gateway::ApiError;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Bodies past this are refused (413), as a gateway would.
const MAX_BODY: usize = 16 << 20;

/// Headers passed on both ways: what a JSON API call needs.
const FORWARDED: [hyper::header::HeaderName; 2] = [CONTENT_TYPE, AUTHORIZATION];

pub struct FloorProxy {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    /// `http://host:port` of the upstream, without a trailing slash.
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl FloorProxy {
    /// Listens on `addr` and forwards every request to the same path and
    /// query under `upstream` (`http://host:port`).
    pub async fn start(addr: SocketAddr, upstream: &Uri) -> std::io::Result<FloorProxy> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let state = Arc::new(State {
            upstream: upstream.to_string().trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        });
        let task = crate::serve::spawn(listener, state, |state, request| async move {
            forward(&state, request).await.unwrap_or_else(|e| e)
        });
        Ok(FloorProxy { addr, task })
    }
}

impl Drop for FloorProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    state: &State,
    request: Request<Incoming>,
) -> Result<Response<Outgoing>, Response<Outgoing>> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            let status = match e.downcast_ref::<LengthLimitError>() {
                Some(_) => StatusCode::PAYLOAD_TOO_LARGE,
                None => StatusCode::BAD_REQUEST,
            };
            failure(status, "reading the request", &*e)
        })?
        .to_bytes();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = Request::builder()
        .method(parts.method)
        .uri(format!("{}{path}", state.upstream))
        .body(Full::new(body))
        .map_err(|e| failure(StatusCode::BAD_REQUEST, "building the request", &e))?;
    copy_headers(&parts.headers, upstream.headers_mut());
    let answer = state
        .client
        .request(upstream)
        .await
        .map_err(|e| failure(StatusCode::BAD_GATEWAY, "calling the upstream", &e))?;
    let (parts, body) = answer.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| failure(StatusCode::BAD_GATEWAY, "reading the upstream", &*e))?
        .to_bytes();
    let mut response = Response::new(Outgoing::whole(body));
    *response.status_mut() = parts.status;
    copy_headers(&parts.headers, response.headers_mut());
    Ok(response)
}

fn copy_headers(from: &hyper::HeaderMap, to: &mut hyper::HeaderMap) {
    for name in FORWARDED {
        if let Some(value) = from.get(&name) {
            to.insert(name, value.clone());
        }
    }
}

/// The contract's error envelope, so a benchmark's failures read like the gateway's.
fn failure(status: StatusCode, doing: &str, error: &dyn std::error::Error) -> Response<Outgoing> {
    ApiError::new(
        status,
        format!("{doing}: {error}"),
        "the floor proxy only forwards; check the upstream it was given",
    )
    .into_response()
}
