//! A webhook receiver on loopback: answers each delivery as planned (fail,
//! redirect, accept) and keeps what it was sent, for tests to check signatures
//! and counts.

use bytes::Bytes;
use gpubridge_gateway::outgoing::Outgoing;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response, StatusCode};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The name `.ci/setup-deps` maps to 127.0.0.1 in /etc/hosts: a webhook host
/// that passes the syntactic checks and resolves to loopback.
pub const LOOPBACK_NAME: &str = "hooks.gpubridge.test";

/// How the receiver answers one delivery.
#[derive(Clone, Debug)]
pub enum Answer {
    Status(u16),
    /// A redirect (307) to this URL.
    Redirect(String),
}

/// One delivery as received.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub answered: u16,
}

struct State {
    /// Answers for the next deliveries, in order; then `otherwise`.
    planned: Mutex<VecDeque<Answer>>,
    otherwise: Mutex<Answer>,
    received: Mutex<Vec<Delivered>>,
}

/// Stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Answers `planned` in turn, then `otherwise` for every later delivery.
    pub async fn start(planned: Vec<Answer>, otherwise: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("loopback port");
        let addr = listener.local_addr().expect("bound address");
        let state = Arc::new(State {
            planned: Mutex::new(planned.into()),
            otherwise: Mutex::new(otherwise),
            received: Mutex::new(Vec::new()),
        });
        let task = crate::serve::spawn(listener, state.clone(), |state, request| async move {
            receive(&state, request).await
        });
        Receiver { addr, state, task }
    }

    /// `http://hooks.gpubridge.test:PORT/hook`, which resolves to this receiver.
    pub fn url_by_name(&self) -> String {
        assert_loopback_name();
        format!("http://{LOOPBACK_NAME}:{}/hook", self.addr.port())
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// How later deliveries are answered from now on.
    pub fn answer_from_now(&self, answer: Answer) {
        self.state.planned.lock().clear();
        *self.state.otherwise.lock() = answer;
    }

    pub fn received(&self) -> Vec<Delivered> {
        self.state.received.lock().clone()
    }

    /// Waits up to `seconds` until `n` deliveries came in; returns them all.
    pub async fn wait_for(&self, n: usize, seconds: u64) -> Vec<Delivered> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            let received = self.received();
            if received.len() >= n || std::time::Instant::now() > deadline {
                return received;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// The test machine must resolve [`LOOPBACK_NAME`] to 127.0.0.1 (`.ci/setup-deps`
/// adds it to /etc/hosts): otherwise tests of name checks would prove nothing.
pub fn assert_loopback_name() {
    use std::net::ToSocketAddrs;
    let resolved: Vec<SocketAddr> = (LOOPBACK_NAME, 80)
        .to_socket_addrs()
        .map(|addrs| addrs.collect())
        .unwrap_or_default();
    assert!(
        !resolved.is_empty() && resolved.iter().all(|a| a.ip().is_loopback()),
        "{LOOPBACK_NAME} must resolve to 127.0.0.1 (run .ci/setup-deps, which adds it to /etc/hosts); it resolves to {resolved:?}"
    );
}

async fn receive(state: &State, request: Request<Incoming>) -> Response<Outgoing> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let answer = state
        .planned
        .lock()
        .pop_front()
        .unwrap_or_else(|| state.otherwise.lock().clone());
    let mut response = Response::new(Outgoing::whole(Bytes::from_static(b"{}")));
    let status = match &answer {
        Answer::Status(code) => *code,
        Answer::Redirect(to) => {
            if let Ok(location) = to.parse() {
                response
                    .headers_mut()
                    .insert(hyper::header::LOCATION, location);
            }
            307
        }
    };
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    state.received.lock().push(Delivered {
        headers: parts.headers,
        body,
        answered: status,
    });
    response
}
