//! A stand-in x402 facilitator speaking x402 v2's facilitator API — `POST
//! /verify` and `POST /settle` with `{x402Version, paymentPayload,
//! paymentRequirements}` — that settles `exact` payments on the local chain
//! from its own relayer key. It can be told to find payments invalid, and
//! counts and keeps what it was sent.

use crate::chain::{Chain, BASE, DEV_KEYS, USDC};
use gpubridge_billing::chain::{Chain as Node, ChainSettings};
use gpubridge_gateway::outgoing::Outgoing;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

struct State {
    node: Node,
    refuse: AtomicBool,
    verified: AtomicU64,
    settled: AtomicU64,
    last: Mutex<Value>,
}

pub struct FacilitatorStandin {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FacilitatorStandin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FacilitatorStandin {
    pub async fn start(chain: &Chain) -> FacilitatorStandin {
        let settings = ChainSettings {
            rpc_url: chain.url.clone(),
            chain_id: BASE,
            asset: USDC.parse().expect("address"),
            sanctions_oracle: None,
            rpc_timeout: Duration::from_secs(10),
        };
        let key: alloy::primitives::B256 = DEV_KEYS[4].parse().expect("a dev key");
        let relayer = alloy::signers::local::PrivateKeySigner::from_bytes(&key).expect("a dev key");
        let node = Node::connect(settings, Some(relayer))
            .await
            .expect("the facilitator reaches the chain");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(State {
            node,
            refuse: AtomicBool::new(false),
            verified: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            last: Mutex::new(Value::Null),
        });
        let task = crate::serve::spawn(listener, state.clone(), |state, request| async move {
            handle(&state, request).await
        });
        FacilitatorStandin { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on `/verify` answers `isValid: false`.
    pub fn refuse(&self) {
        self.state.refuse.store(true, Ordering::Relaxed);
    }

    /// (`/verify` calls, `/settle` calls).
    pub fn calls(&self) -> (u64, u64) {
        (
            self.state.verified.load(Ordering::Relaxed),
            self.state.settled.load(Ordering::Relaxed),
        )
    }

    /// The last request body it was sent.
    pub fn last_request(&self) -> Value {
        self.state.last.lock().clone()
    }
}

async fn handle(state: &State, request: Request<Incoming>) -> Response<Outgoing> {
    let path = request.uri().path().to_string();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    *state.last.lock() = body.clone();
    let answer = match path.as_str() {
        "/verify" => verify(state, &body),
        "/settle" => settle(state, &body).await,
        _ => json!({"error": "not found"}),
    };
    Response::new(Outgoing::whole(answer.to_string()))
}

fn verify(state: &State, body: &Value) -> Value {
    state.verified.fetch_add(1, Ordering::Relaxed);
    let payer = &body["paymentPayload"]["payload"]["authorization"]["from"];
    let well_formed = body["x402Version"] == 2
        && body["paymentRequirements"]["scheme"] == "exact"
        && body["paymentPayload"]["payload"]["signature"].is_string();
    match well_formed && !state.refuse.load(Ordering::Relaxed) {
        true => json!({"isValid": true, "payer": payer}),
        false => json!({"isValid": false, "invalidReason": "insufficient_funds", "payer": payer}),
    }
}

async fn settle(state: &State, body: &Value) -> Value {
    state.settled.fetch_add(1, Ordering::Relaxed);
    let network = body["paymentRequirements"]["network"].clone();
    let payload = &body["paymentPayload"]["payload"];
    let a = &payload["authorization"];
    let field = |name: &str| a[name].as_str().unwrap_or_default().to_string();
    let signature = payload["signature"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("0x");
    let signature = alloy::primitives::hex::decode(signature)
        .ok()
        .and_then(|bytes| alloy::primitives::Signature::from_raw(&bytes).ok());
    let (Some(signature), Ok(from), Ok(to), Ok(value), Ok(after), Ok(before), Ok(nonce)) = (
        signature,
        field("from").parse(),
        field("to").parse(),
        field("value").parse(),
        field("validAfter").parse(),
        field("validBefore").parse(),
        field("nonce").parse(),
    ) else {
        return json!({"success": false, "errorReason": "invalid_payload", "transaction": "", "network": network});
    };
    match state
        .node
        .transfer_with_authorization(from, to, value, after, before, nonce, &signature)
        .await
    {
        Ok(receipt) => json!({
            "success": true,
            "transaction": receipt.transaction_hash.to_string(),
            "network": network,
            "payer": field("from"),
        }),
        Err(e) => {
            json!({"success": false, "errorReason": e.to_string(), "transaction": "", "network": network})
        }
    }
}
