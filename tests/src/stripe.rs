//! A stand-in for the Stripe API endpoints GPU-Bridge uses, in Stripe's wire
//! format: form-encoded requests with the secret key as bearer and an
//! Idempotency-Key (the same key returns the same object), customers, Checkout
//! Sessions with a payment page, PaymentIntents; and webhooks signed exactly as
//! Stripe signs them (`Stripe-Signature: t=…,v1=…,v0=…`), computed here with
//! ring independently of GPU-Bridge's own code.

use bytes::Bytes;
use gpubridge_gateway::outgoing::Outgoing;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// One API call as received.
#[derive(Clone, Debug)]
pub struct StripeCall {
    pub method: String,
    pub path: String,
    pub idempotency_key: Option<String>,
    pub form: HashMap<String, String>,
}

/// How off-session PaymentIntents (automatic top-ups) go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IntentMode {
    /// Paid; `payment_intent.succeeded` is delivered at once.
    #[default]
    Succeed,
    /// Paid, but the webhook waits for [`StripeStandin::release_held`].
    Hold,
    /// The card is declined (HTTP 402, as Stripe answers).
    Decline,
}

#[derive(Default)]
struct State {
    intent_mode: IntentMode,
    /// Webhooks held back in [`IntentMode::Hold`].
    held: Vec<Value>,
    secret_key: String,
    webhook_secret: String,
    /// Where webhooks go (the daemon's `/webhooks/stripe`).
    target: Option<String>,
    next: u64,
    calls: Vec<StripeCall>,
    /// Answers by idempotency key: a retried call gets the same object.
    replays: HashMap<String, Value>,
    sessions: HashMap<String, Value>,
    intents: HashMap<String, Value>,
}

/// Stops when dropped.
pub struct StripeStandin {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StripeStandin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The keys the stand-in expects and signs with.
pub const SECRET_KEY: &str = "sk_test_gpubridge";
pub const WEBHOOK_SECRET: &str = "whsec_test_gpubridge";

impl StripeStandin {
    pub async fn start() -> StripeStandin {
        let (secret_key, webhook_secret) = (SECRET_KEY, WEBHOOK_SECRET);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("loopback port");
        let addr = listener.local_addr().expect("bound address");
        let state = Arc::new(Mutex::new(State {
            secret_key: secret_key.into(),
            webhook_secret: webhook_secret.into(),
            ..State::default()
        }));
        let shared = Arc::new(Shared {
            state: state.clone(),
            base: format!("http://{addr}"),
        });
        let task = crate::serve::spawn(listener, shared, |shared, request| async move {
            shared.handle(request).await
        });
        StripeStandin { addr, state, task }
    }

    /// The daemon's environment for card payments through this stand-in.
    pub fn daemon_env(&self) -> Vec<(String, String)> {
        vec![
            ("STRIPE_SECRET_KEY".into(), SECRET_KEY.into()),
            ("STRIPE_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into()),
            ("GPUBRIDGE_STRIPE_BASE_URL".into(), self.base_url()),
        ]
    }

    /// `GPUBRIDGE_STRIPE_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where to deliver webhooks from now on.
    pub fn deliver_to(&self, url: &str) {
        self.state.lock().target = Some(url.into());
    }

    pub fn set_intent_mode(&self, mode: IntentMode) {
        self.state.lock().intent_mode = mode;
    }

    /// Delivers the webhooks held back; their statuses.
    pub async fn release_held(&self) -> Vec<u16> {
        let held = std::mem::take(&mut self.state.lock().held);
        let mut statuses = Vec::new();
        for event in &held {
            statuses.push(self.deliver(event).await);
        }
        statuses
    }

    /// The off-session PaymentIntents asked for.
    pub fn intent_calls(&self) -> Vec<StripeCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == "POST" && c.path == "/v1/payment_intents")
            .collect()
    }

    pub fn calls(&self) -> Vec<StripeCall> {
        self.state.lock().calls.clone()
    }

    pub fn session(&self, id: &str) -> Option<Value> {
        self.state.lock().sessions.get(id).cloned()
    }

    /// What paying on the Checkout page does: the session is paid (with a new
    /// PaymentIntent and card) and `checkout.session.completed` is delivered.
    /// Returns the event and the daemon's answer status.
    pub async fn pay(&self, session_id: &str) -> (Value, u16) {
        let session = pay_session(&self.state, session_id).expect("a known session");
        let event = self.event("checkout.session.completed", session);
        let status = self.deliver(&event).await;
        (event, status)
    }

    /// An event of `kind` about `object`, as Stripe's envelope carries it.
    pub fn event(&self, kind: &str, object: Value) -> Value {
        make_event(&self.state, kind, object)
    }

    /// A `charge.refunded` event for the PaymentIntent, `refunded` cents in all.
    pub fn refund_event(&self, intent: &str, refunded: u64) -> Value {
        let amount = self.intent_amount(intent);
        self.event(
            "charge.refunded",
            json!({"id": format!("ch_{intent}"), "object": "charge", "payment_intent": intent,
                   "amount": amount, "amount_refunded": refunded, "refunded": refunded == amount}),
        )
    }

    /// A `charge.dispute.created` event for `cents` of the PaymentIntent.
    pub fn dispute_event(&self, intent: &str, cents: u64) -> Value {
        self.event(
            "charge.dispute.created",
            json!({"id": format!("dp_{intent}"), "object": "dispute", "charge": format!("ch_{intent}"),
                   "payment_intent": intent, "amount": cents, "status": "needs_response"}),
        )
    }

    fn intent_amount(&self, intent: &str) -> u64 {
        self.state
            .lock()
            .intents
            .get(intent)
            .and_then(|i| i["amount"].as_u64())
            .unwrap_or(0)
    }

    /// Delivers `event` signed as Stripe signs it; the daemon's status.
    pub async fn deliver(&self, event: &Value) -> u16 {
        deliver_signed(&self.state, event).await
    }

    /// Delivers `event` `n` times at once, as Stripe may; the statuses.
    pub async fn deliver_concurrently(&self, event: &Value, n: usize) -> Vec<u16> {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (state, event) = (self.state.clone(), event.clone());
                tokio::spawn(async move { deliver_signed(&state, &event).await })
            })
            .collect();
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.unwrap_or(0));
        }
        statuses
    }

    /// Delivers any body with any signature header (tests of refusals).
    pub async fn deliver_raw(&self, body: Vec<u8>, signature: Option<&str>) -> u16 {
        post_webhook(&self.state, body, signature).await
    }

    pub fn webhook_secret(&self) -> String {
        self.state.lock().webhook_secret.clone()
    }
}

/// `t=…,v1=…,v0=…` over `"{t}.{body}"`, the way Stripe documents it (the v0
/// value is a decoy older scheme receivers must ignore).
pub fn stripe_signature(secret: &str, t: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    let tag = ring::hmac::sign(&key, &signed);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex},v0={}", "0".repeat(64))
}

fn make_event(state: &Mutex<State>, kind: &str, object: Value) -> Value {
    let id = next_id(state, "evt");
    json!({
        "id": id, "object": "event", "api_version": "2024-06-20",
        "created": now_seconds(), "type": kind, "livemode": false,
        "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null},
        "data": {"object": object}
    })
}

async fn deliver_signed(state: &Mutex<State>, event: &Value) -> u16 {
    let body = event.to_string();
    let secret = state.lock().webhook_secret.clone();
    let header = stripe_signature(&secret, now_seconds(), body.as_bytes());
    post_webhook(state, body.into_bytes(), Some(&header)).await
}

/// POSTs to the webhook target; its status, 0 if it could not be reached.
async fn post_webhook(state: &Mutex<State>, body: Vec<u8>, signature: Option<&str>) -> u16 {
    let target = state.lock().target.clone().expect("deliver_to first");
    let mut request = Request::post(target).header("content-type", "application/json");
    if let Some(signature) = signature {
        request = request.header("stripe-signature", signature);
    }
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let request = request.body(Full::new(Bytes::from(body))).expect("request");
    match client.request(request).await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn next_id(state: &Mutex<State>, prefix: &str) -> String {
    let mut state = state.lock();
    state.next += 1;
    format!("{prefix}_test_{}", state.next)
}

/// Marks a session paid with a new PaymentIntent and card; the session.
fn pay_session(state: &Arc<Mutex<State>>, id: &str) -> Option<Value> {
    let intent = next_id(state, "pi");
    let method = next_id(state, "pm");
    let mut state = state.lock();
    let session = state.sessions.get_mut(id)?;
    session["payment_status"] = json!("paid");
    session["status"] = json!("complete");
    session["payment_intent"] = json!(intent);
    let amount = session["amount_total"].clone();
    let customer = session["customer"].clone();
    let session = session.clone();
    state.intents.insert(
        intent.clone(),
        json!({"id": intent, "object": "payment_intent", "amount": amount, "currency": "usd",
               "customer": customer, "payment_method": method, "status": "succeeded"}),
    );
    Some(session)
}

struct Shared {
    state: Arc<Mutex<State>>,
    base: String,
}

impl Shared {
    async fn handle(&self, request: Request<Incoming>) -> Response<Outgoing> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path().to_string();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        // The payer's browser: the Checkout page and its Pay button.
        if let Some(id) = path.strip_prefix("/pay/") {
            return self.payment_page(&parts.method, id).await;
        }
        let bearer = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let expected = format!("Bearer {}", self.state.lock().secret_key);
        if bearer != Some(expected.as_str()) {
            return answer(
                401,
                json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}),
            );
        }
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(&bytes).into_owned().collect();
        let key = parts
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.state.lock().calls.push(StripeCall {
            method: parts.method.to_string(),
            path: path.clone(),
            idempotency_key: key.clone(),
            form: form.clone(),
        });
        if let Some(replay) = key
            .as_ref()
            .and_then(|k| self.state.lock().replays.get(k).cloned())
        {
            return answer(200, replay);
        }
        let object = match (parts.method.clone(), path.as_str()) {
            (Method::POST, "/v1/customers") => {
                let id = next_id(&self.state, "cus");
                json!({"id": id, "object": "customer", "email": form.get("email")})
            }
            (Method::POST, "/v1/checkout/sessions") => self.new_session(&form),
            (Method::POST, "/v1/payment_intents") => match self.new_intent(&form) {
                Ok(intent) => intent,
                Err(declined) => return answer(402, declined),
            },
            (Method::GET, p) if p.starts_with("/v1/payment_intents/") => {
                let id = &p["/v1/payment_intents/".len()..];
                match self.state.lock().intents.get(id) {
                    Some(intent) => intent.clone(),
                    None => {
                        return answer(404, json!({"error": {"message": "No such payment_intent"}}))
                    }
                }
            }
            _ => {
                return answer(
                    404,
                    json!({"error": {"message": format!("Unrecognized request URL ({path})")}}),
                )
            }
        };
        if let Some(key) = key {
            self.state.lock().replays.insert(key, object.clone());
        }
        answer(200, object)
    }

    /// An off-session, confirmed PaymentIntent: paid (its webhook sent or
    /// held) or declined.
    /// `Err`: the body of Stripe's 402 for a declined card.
    fn new_intent(&self, form: &HashMap<String, String>) -> Result<Value, Value> {
        let mode = self.state.lock().intent_mode;
        if mode == IntentMode::Decline {
            return Err(json!({"error": {
                "type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds."}}));
        }
        let id = next_id(&self.state, "pi");
        let field = |name: &str| form.get(name).cloned();
        let amount: u64 = field("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
        let intent = json!({
            "id": id, "object": "payment_intent", "amount": amount, "currency": field("currency"),
            "customer": field("customer"), "payment_method": field("payment_method"),
            "status": "succeeded", "off_session": field("off_session"),
            "metadata": {"account": field("metadata[account]"), "package": field("metadata[package]"),
                         "automatic": field("metadata[automatic]")},
        });
        self.state.lock().intents.insert(id, intent.clone());
        let event = make_event(&self.state, "payment_intent.succeeded", intent.clone());
        match mode {
            IntentMode::Hold => self.state.lock().held.push(event),
            _ => {
                let state = self.state.clone();
                tokio::spawn(async move { deliver_signed(&state, &event).await });
            }
        }
        Ok(intent)
    }

    fn new_session(&self, form: &HashMap<String, String>) -> Value {
        let id = next_id(&self.state, "cs");
        let field = |name: &str| form.get(name).cloned();
        let amount: u64 = field("line_items[0][price_data][unit_amount]")
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        let session = json!({
            "id": id, "object": "checkout.session", "mode": field("mode"),
            "url": format!("{}/pay/{id}", self.base),
            "amount_total": amount, "currency": field("line_items[0][price_data][currency]"),
            "client_reference_id": field("client_reference_id"), "customer": field("customer"),
            "metadata": {"account": field("metadata[account]"), "package": field("metadata[package]")},
            "payment_intent": null, "payment_status": "unpaid", "status": "open",
            "success_url": field("success_url"), "cancel_url": field("cancel_url"),
        });
        self.state.lock().sessions.insert(id, session.clone());
        session
    }

    /// GET: a page with the amount and a Pay button; POST: pays, delivers the
    /// webhook, and sends the browser to the success URL.
    async fn payment_page(&self, method: &Method, id: &str) -> Response<Outgoing> {
        let session = self.state.lock().sessions.get(id).cloned();
        let Some(session) = session else {
            return answer(404, json!({"error": {"message": "no such session"}}));
        };
        if method == Method::GET {
            let cents = session["amount_total"].as_u64().unwrap_or(0);
            let page = format!(
                "<!doctype html><title>Stripe Checkout (stand-in)</title><h1>Pay ${}.{:02}</h1>\
                 <form method=post action=/pay/{id}><button id=pay type=submit>Pay</button></form>",
                cents / 100,
                cents % 100
            );
            let mut response = Response::new(Outgoing::whole(Bytes::from(page)));
            if let Ok(value) = "text/html".parse() {
                response.headers_mut().insert("content-type", value);
            }
            return response;
        }
        let Some(paid) = pay_session(&self.state, id) else {
            return answer(404, json!({}));
        };
        let event = make_event(&self.state, "checkout.session.completed", paid.clone());
        deliver_signed(&self.state, &event).await;
        let mut response = Response::new(Outgoing::whole(Bytes::new()));
        *response.status_mut() = StatusCode::SEE_OTHER;
        if let Some(Ok(location)) = paid["success_url"].as_str().map(str::parse) {
            response.headers_mut().insert("location", location);
        }
        response
    }
}

fn answer(status: u16, body: Value) -> Response<Outgoing> {
    let mut response = Response::new(Outgoing::whole(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if let Ok(value) = "application/json".parse() {
        response.headers_mut().insert("content-type", value);
    }
    response
}
