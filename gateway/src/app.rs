//! The gateway's shared state and its request dispatch: one match on method and
//! path, every outcome a response (errors in the spec's envelope).

use crate::access::Access;
use crate::config::HttpConfig;
use crate::error::ApiError;
use crate::handlers;
use crate::handlers::account::AccountRoutes;
use crate::http_metrics::{HttpMetrics, RouteLabel};
use bytes::Bytes;
use gpubridge_scheduler::Scheduler;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

pub struct App {
    pub scheduler: Scheduler,
    pub access: Arc<dyn Access>,
    /// `None` when accounts are disabled.
    pub accounts: Option<AccountRoutes>,
    /// The operator token guarding `/admin/*`; `None` disables it.
    pub admin_token: Option<String>,
    pub http: HttpConfig,
    pub registry: prometheus::Registry,
    pub metrics: HttpMetrics,
    pub started: Instant,
}

pub type HttpResponse = Response<Full<Bytes>>;

pub fn json<T: Serialize>(status: StatusCode, body: &T) -> HttpResponse {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = Response::new(Full::new(Bytes::from(bytes)));
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

enum Route<'a> {
    Run,
    Inference,
    Status(&'a str),
    Catalog,
    Estimate,
    Health,
    Metrics,
    Register,
    Recover,
    RegenerateKey,
    Balance,
    SpendingLimit,
    Jobs,
    /// Card and crypto top-ups, auto top-up and the dashboard: not on this build.
    NotYet(&'static str),
    AdminCredits,
    AdminAccount(&'a str),
    AdminRecoveries,
    AdminAudit,
    AdminNodes,
    AdminNodeDrain(&'a str),
}

fn route(path: &str) -> Option<(Route<'_>, &'static [Method])> {
    const POST: &[Method] = &[Method::POST];
    const GET: &[Method] = &[Method::GET, Method::HEAD];
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    Some(match path {
        "/run" => (Route::Run, POST),
        "/inference" => (Route::Inference, POST),
        "/catalog" => (Route::Catalog, GET),
        "/catalog/estimate" => (Route::Estimate, GET),
        "/health" => (Route::Health, GET),
        "/metrics" => (Route::Metrics, GET),
        "/account/register" => (Route::Register, POST),
        "/account/recover" => (Route::Recover, POST),
        "/account/regenerate-key" => (Route::RegenerateKey, POST),
        "/account/balance" => (Route::Balance, GET),
        "/account/spending-limit" => (Route::SpendingLimit, POST),
        "/account/jobs" => (Route::Jobs, GET),
        "/account/topup" => (Route::NotYet("Card top-ups"), POST),
        "/account/topup-crypto" => (Route::NotYet("Crypto top-ups"), POST),
        "/account/auto-topup" => (Route::NotYet("Automatic top-ups"), POST),
        "/account/dashboard" => (Route::NotYet("The web dashboard"), GET),
        "/admin/credits" => (Route::AdminCredits, POST),
        "/admin/recoveries" => (Route::AdminRecoveries, GET),
        "/admin/ledger/audit" => (Route::AdminAudit, GET),
        "/admin/nodes" => (Route::AdminNodes, GET),
        other => {
            let segment = |prefix: &str| {
                other
                    .strip_prefix(prefix)
                    .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            };
            if let Some(id) = segment("/status/") {
                (Route::Status(id), GET)
            } else if let Some(query) = segment("/admin/accounts/") {
                (Route::AdminAccount(query), GET)
            } else if let Some(node) = other
                .strip_prefix("/admin/nodes/")
                .and_then(|rest| rest.strip_suffix("/drain"))
                .filter(|node| !node.is_empty() && !node.contains('/'))
            {
                (Route::AdminNodeDrain(node), POST)
            } else {
                return None;
            }
        }
    })
}

impl App {
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> HttpResponse {
        let started = Instant::now();
        let (label, response) = self.dispatch(request).await;
        self.metrics
            .observe(label, response.status(), started.elapsed());
        response
    }

    async fn dispatch(&self, request: Request<Incoming>) -> (RouteLabel, HttpResponse) {
        let path = request.uri().path().to_string();
        let Some((route, methods)) = route(&path) else {
            let error = ApiError::new(
                StatusCode::NOT_FOUND,
                format!("No endpoint at {path}"),
                "Endpoints: POST /run, POST /inference, GET /status/:job_id, GET /catalog, GET /catalog/estimate, /account/*, GET /health, GET /metrics.",
            );
            return (RouteLabel::Other, error.into_response());
        };
        let label = match route {
            Route::Run => RouteLabel::Run,
            Route::Inference => RouteLabel::Inference,
            Route::Status(_) => RouteLabel::Status,
            Route::Catalog => RouteLabel::Catalog,
            Route::Estimate => RouteLabel::Estimate,
            Route::Health => RouteLabel::Health,
            Route::Metrics => RouteLabel::Metrics,
            Route::Register
            | Route::Recover
            | Route::RegenerateKey
            | Route::Balance
            | Route::SpendingLimit
            | Route::Jobs
            | Route::NotYet(_) => RouteLabel::Account,
            Route::AdminCredits
            | Route::AdminAccount(_)
            | Route::AdminRecoveries
            | Route::AdminAudit
            | Route::AdminNodes
            | Route::AdminNodeDrain(_) => RouteLabel::Admin,
        };
        if !methods.contains(request.method()) {
            let allow = methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            let mut response = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not allowed on {path}", request.method()),
                format!("Use {allow}."),
            )
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(ALLOW, value);
            }
            return (label, response);
        }
        let result = match route {
            Route::Run => handlers::run::handle(self, request).await,
            Route::Inference => handlers::inference::handle(self, request).await,
            Route::Status(id) => handlers::status::handle(self, request.headers(), id),
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
            Route::NotYet(what) => Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                format!("{what} are not available on this deployment yet"),
                "Ask the operator to add credits to your account.",
            )),
            account_or_admin => self.account_or_admin(account_or_admin, request).await,
        };
        (label, result.unwrap_or_else(ApiError::into_response))
    }

    async fn account_or_admin(
        &self,
        route: Route<'_>,
        request: Request<Incoming>,
    ) -> Result<HttpResponse, ApiError> {
        use handlers::{account, admin};
        let admin_route = matches!(
            route,
            Route::AdminCredits
                | Route::AdminAccount(_)
                | Route::AdminRecoveries
                | Route::AdminAudit
        );
        if admin_route {
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
            Route::Recover => account::recover(self, accounts, request).await,
            Route::RegenerateKey => account::regenerate_key(accounts, &request),
            Route::Balance => account::balance(accounts, &request),
            Route::SpendingLimit => account::spending_limit(self, accounts, request).await,
            Route::Jobs => account::jobs(self, accounts, &request),
            Route::AdminCredits => admin::grant(self, accounts, request).await,
            Route::AdminAccount(query) => {
                admin::account(accounts, &percent_decode_str(query).decode_utf8_lossy())
            }
            Route::AdminRecoveries => admin::recoveries(accounts, request.uri().query()),
            Route::AdminAudit => admin::audit(self),
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "No such endpoint",
                "See GET /catalog for the routes.",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_exactly() {
        assert!(matches!(route("/run"), Some((Route::Run, _))));
        assert!(matches!(route("/run/"), Some((Route::Run, _))));
        assert!(matches!(
            route("/status/abc"),
            Some((Route::Status("abc"), _))
        ));
        assert!(route("/status/").is_none());
        assert!(route("/status/a/b").is_none());
        assert!(route("/runs").is_none());
        assert!(route("/").is_none());
        assert!(matches!(
            route("/admin/nodes/gpu-1/drain"),
            Some((Route::AdminNodeDrain("gpu-1"), _))
        ));
        assert!(route("/admin/nodes//drain").is_none());
        assert!(route("/admin/nodes/a/b/drain").is_none());
    }
}
