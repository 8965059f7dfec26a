//! The gateway's shared state and its request dispatch: one match on method and
//! path, every outcome a response (errors in the spec's envelope).

use crate::access::{Access, Credentials, KeyChecked};
use crate::config::HttpConfig;
use crate::error::ApiError;
use crate::handlers;
use crate::http_metrics::{HttpMetrics, RouteLabel};
use crate::limits::Peer;
use crate::outgoing::Outgoing;
use crate::router::{route, Route};
use gpubridge_billing::deposits::Deposits;
use gpubridge_billing::Accounts;
use gpubridge_scheduler::{BackendClock, Scheduler};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, STRICT_TRANSPORT_SECURITY};
use hyper::{Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct App {
    pub scheduler: Scheduler,
    pub access: Access,
    /// `None` when accounts are disabled.
    pub accounts: Option<Arc<Accounts>>,
    /// USDC top-ups; `None` without x402's chain or with top-ups off.
    pub deposits: Option<Arc<Deposits>>,
    /// Card top-ups through Stripe; `None` without its keys.
    pub cards: Option<Arc<gpubridge_billing::card::Cards>>,
    /// The operator token guarding `/admin/*`; `None` disables it.
    pub admin_token: Option<String>,
    pub http: HttpConfig,
    pub registry: prometheus::Registry,
    pub metrics: HttpMetrics,
    pub started: Instant,
    /// `/mcp`'s server, made on first use.
    pub mcp: crate::mcp::Mcp,
    /// Finished jobs' webhooks: their secrets and how each delivery stands.
    pub webhooks: Arc<gpubridge_webhooks::Webhooks>,
    /// The web dashboard's sessions.
    pub dashboard: crate::dashboard::Dashboard,
    /// Rates per API key and client address; unfinished jobs per account.
    pub limits: crate::limits::Limits,
    /// The certificate in use when clients reach this gateway over TLS.
    pub tls: Option<Arc<crate::tls::Tls>>,
}

/// Browsers that reached us over TLS keep to it for a year.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");

pub type HttpResponse = Response<Outgoing>;

pub fn json<T: Serialize>(status: StatusCode, body: &T) -> HttpResponse {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = Response::new(Outgoing::whole(bytes));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("response encoding failed: {e}"),
            "Report this.",
        )
        .into_response(),
    }
}

impl App {
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> HttpResponse {
        let started = Instant::now();
        let (label, mut response, clock) = self.dispatch(request).await;
        let on_backends = clock.map_or(Duration::ZERO, |clock| clock.spent());
        if self.tls.is_some() {
            response
                .headers_mut()
                .insert(STRICT_TRANSPORT_SECURITY, HSTS);
        }
        self.metrics
            .observe(label, response.status(), started.elapsed(), on_backends);
        response
    }

    /// The route's answer, and the clock of the jobs it submitted, if it may.
    async fn dispatch(
        self: &Arc<Self>,
        mut request: Request<Incoming>,
    ) -> (RouteLabel, HttpResponse, Option<BackendClock>) {
        let path = request.uri().path().to_string();
        let Some((route, methods)) = route(&path) else {
            let error = ApiError::new(
                StatusCode::NOT_FOUND,
                format!("No endpoint at {path}"),
                "Endpoints: POST /run, POST /inference, GET /status/:job_id, POST /cancel/:job_id, GET /catalog, GET /catalog/estimate, /account/*, GET /health, GET /metrics.",
            );
            return (RouteLabel::Other, error.into_response(), None);
        };
        let label = route.label();
        let shape: fn(ApiError) -> HttpResponse = match route.is_openai() {
            true => crate::openai::error_response,
            false => ApiError::into_response,
        };
        if !methods.contains(request.method()) {
            return (
                label,
                shape(method_not_allowed(request.method(), &path, methods)),
                None,
            );
        }
        if route.is_limited() {
            if let Err(refused) = self.check_rate(&mut request) {
                return (label, shape(refused), None);
            }
        }
        request
            .extensions_mut()
            .insert(route.body_rules(&self.http));
        let clock = route.submits_jobs().then(|| {
            let clock = BackendClock::default();
            request.extensions_mut().insert(clock.clone());
            clock
        });
        let result = match route {
            Route::Run => handlers::run::handle(self, request).await,
            Route::Inference => handlers::inference::handle(self, request).await,
            Route::Status(id) => handlers::status::handle(self, Credentials::of(&request), id).await,
            Route::Cancel(id) => handlers::cancel::handle(self, Credentials::of(&request), id).await,
            Route::Catalog => Ok(handlers::catalog::catalog(self)),
            Route::Estimate => handlers::catalog::estimate(self, request.uri().query()),
            Route::Health => Ok(handlers::ops::health(self)),
            Route::Metrics => Ok(handlers::ops::metrics(self)),
            Route::AdminNodes => handlers::admin::authorize(self, request.headers())
                .map(|()| handlers::nodes::list(self)),
            Route::AdminNodeDrain(node) => handlers::admin::authorize(self, request.headers())
                .and_then(|()| {
                    handlers::nodes::drain(self, &percent_decode_str(node).decode_utf8_lossy())
                }),
            Route::ChatCompletions => crate::openai::chat(self, request).await,
            Route::Embeddings => crate::openai::embeddings(self, request).await,
            // Open like /catalog; a key that is sent must be valid, since
            // clients list models to check their key.
            Route::Models => self
                .access
                .identify(request.headers())
                .map(|_| crate::openai::models(self)),
            Route::Model(id) => self.access.identify(request.headers()).and_then(|_| {
                crate::openai::model(self, &percent_decode_str(id).decode_utf8_lossy())
            }),
            Route::V1Unknown => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("No endpoint at {path}"),
                "The OpenAI-compatible routes here: POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models.",
            )),
            // Cold routes with large futures are boxed: every request's future
            // is as large as its largest branch, and is moved as a whole.
            Route::Mcp => Ok(Box::pin(crate::mcp::handle(self, request)).await),
            Route::Dashboard(page) => {
                Ok(Box::pin(crate::dashboard::handle(self, request, page)).await)
            }
            account_or_admin => Box::pin(self.account_or_admin(account_or_admin, request)).await,
        };
        (label, result.unwrap_or_else(shape), clock)
    }

    /// A request with a valid API key spends its account's tokens; any other
    /// (no key, a bad one, x402, sign-up) its client address's.
    /// Limits the request by its key's account, or else by its address. A
    /// valid key is noted on the request (`KeyChecked`) so its route need not
    /// hash it again.
    fn check_rate(&self, request: &mut Request<Incoming>) -> Result<(), ApiError> {
        let account = match (&self.accounts, crate::access::bearer(request.headers())) {
            (Some(accounts), Ok(Some(token))) => accounts.authenticate(token),
            _ => None,
        };
        if let Some(account) = account {
            request.extensions_mut().insert(KeyChecked(account));
            return self.limits.check_key(account);
        }
        match request.extensions().get::<Peer>() {
            Some(peer) => self.limits.check_ip(peer.0, request.headers()),
            None => Ok(()),
        }
    }

    async fn account_or_admin(
        &self,
        route: Route<'_>,
        request: Request<Incoming>,
    ) -> Result<HttpResponse, ApiError> {
        use handlers::{account, admin};
        if route.label() == RouteLabel::Admin {
            admin::authorize(self, request.headers())?;
        }
        let Some(accounts) = &self.accounts else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "Accounts are disabled on this deployment",
                "Every caller may run jobs without a key here; the operator enables accounts with accounts.enabled = true.",
            ));
        };
        match route {
            Route::Register => account::register(self, accounts, request).await,
            Route::Recover => account::recover(accounts, request).await,
            Route::RegenerateKey => account::regenerate_key(self, accounts, &request).await,
            Route::WebhookSecret => account::webhook_secret(self, accounts, &request).await,
            Route::Balance => account::balance(self, accounts, &request).await,
            Route::TopupCard => handlers::topup_card::open(self, request).await,
            Route::AutoTopup => handlers::topup_card::auto_topup(self, accounts, request).await,
            Route::StripeWebhook => handlers::topup_card::webhook(self, request).await,
            Route::TopupCrypto => handlers::topup_crypto::open(self, request).await,
            Route::TopupCryptoClaim => handlers::topup_crypto::claim(self, accounts, request).await,
            Route::SpendingLimit => account::spending_limit(self, accounts, request).await,
            Route::Jobs => account::jobs(self, accounts, &request).await,
            Route::AdminCredits => admin::grant(accounts, request).await,
            Route::AdminAccount(query) => {
                admin::account(accounts, &percent_decode_str(query).decode_utf8_lossy())
            }
            Route::AdminRecoveries => admin::recoveries(accounts, request.uri().query()).await,
            Route::AdminAudit => admin::audit(accounts).await,
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "No such endpoint",
                "See GET /catalog for the routes.",
            )),
        }
    }
}

fn method_not_allowed(method: &Method, path: &str, allowed: &[Method]) -> ApiError {
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let error = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {path}"),
        format!("Use {allow}."),
    );
    match HeaderValue::from_str(&allow) {
        Ok(value) => error.with_header(ALLOW, value),
        Err(_) => error,
    }
}
