//! The route table: one match on the path, each route with the methods it takes.

use crate::body::BodyRules;
use crate::config::HttpConfig;
use crate::http_metrics::RouteLabel;
use hyper::Method;
use std::time::Duration;

pub enum Route<'a> {
    Run,
    Inference,
    Status(&'a str),
    Cancel(&'a str),
    Catalog,
    Estimate,
    Health,
    Metrics,
    Register,
    Recover,
    RegenerateKey,
    /// `GET` reads the account's webhook signing secret, `POST` rotates it.
    WebhookSecret,
    Balance,
    SpendingLimit,
    Jobs,
    TopupCard,
    AutoTopup,
    TopupCrypto,
    TopupCryptoClaim,
    /// Stripe's signed events.
    StripeWebhook,
    /// `/account/dashboard` and its pages (the rest of the path).
    Dashboard(&'a str),
    AdminCredits,
    AdminAccount(&'a str),
    AdminRecoveries,
    AdminAudit,
    AdminNodes,
    AdminNodeDrain(&'a str),
    ChatCompletions,
    Embeddings,
    Models,
    /// A model id may contain `/`: everything after `/v1/models/`.
    Model(&'a str),
    /// Any other path under `/v1`: answered in OpenAI's shape.
    V1Unknown,
    Mcp,
}

pub fn route(path: &str) -> Option<(Route<'_>, &'static [Method])> {
    const POST: &[Method] = &[Method::POST];
    const GET: &[Method] = &[Method::GET, Method::HEAD];
    const ANY: &[Method] = &[
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ];
    // Streamable HTTP without sessions: every message is a POST (no server
    // stream to GET, no session to DELETE).
    const MCP: &[Method] = &[Method::POST];
    const GET_OR_POST: &[Method] = &[Method::GET, Method::HEAD, Method::POST];
    const DASHBOARD: &[Method] = GET_OR_POST;
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
        "/account/webhook-secret" => (Route::WebhookSecret, GET_OR_POST),
        "/account/balance" => (Route::Balance, GET),
        "/account/spending-limit" => (Route::SpendingLimit, POST),
        "/account/jobs" => (Route::Jobs, GET),
        "/account/topup" => (Route::TopupCard, POST),
        "/webhooks/stripe" => (Route::StripeWebhook, POST),
        "/account/topup-crypto" => (Route::TopupCrypto, POST),
        "/account/topup-crypto/claim" => (Route::TopupCryptoClaim, POST),
        "/account/auto-topup" => (Route::AutoTopup, POST),
        "/account/dashboard" => (Route::Dashboard(""), DASHBOARD),
        "/admin/credits" => (Route::AdminCredits, POST),
        "/admin/recoveries" => (Route::AdminRecoveries, GET),
        "/admin/ledger/audit" => (Route::AdminAudit, GET),
        "/admin/nodes" => (Route::AdminNodes, GET),
        "/v1/chat/completions" => (Route::ChatCompletions, POST),
        "/v1/embeddings" => (Route::Embeddings, POST),
        "/v1/models" => (Route::Models, GET),
        "/mcp" => (Route::Mcp, MCP),
        other => {
            let segment = |prefix: &str| {
                other
                    .strip_prefix(prefix)
                    .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            };
            if let Some(id) = segment("/status/") {
                (Route::Status(id), GET)
            } else if let Some(id) = segment("/cancel/") {
                (Route::Cancel(id), POST)
            } else if let Some(page) = segment("/account/dashboard/") {
                (Route::Dashboard(page), DASHBOARD)
            } else if let Some(query) = segment("/admin/accounts/") {
                (Route::AdminAccount(query), GET)
            } else if let Some(node) = other
                .strip_prefix("/admin/nodes/")
                .and_then(|rest| rest.strip_suffix("/drain"))
                .filter(|node| !node.is_empty() && !node.contains('/'))
            {
                (Route::AdminNodeDrain(node), POST)
            } else if let Some(id) = other
                .strip_prefix("/v1/models/")
                .filter(|id| !id.is_empty())
            {
                (Route::Model(id), GET)
            } else if other.starts_with("/v1/") {
                (Route::V1Unknown, ANY)
            } else {
                return None;
            }
        }
    })
}

impl Route<'_> {
    /// The metrics label of the route.
    pub fn label(&self) -> RouteLabel {
        match self {
            Route::Run => RouteLabel::Run,
            Route::Inference => RouteLabel::Inference,
            Route::Status(_) => RouteLabel::Status,
            Route::Cancel(_) => RouteLabel::Cancel,
            Route::Catalog => RouteLabel::Catalog,
            Route::Estimate => RouteLabel::Estimate,
            Route::Health => RouteLabel::Health,
            Route::Metrics => RouteLabel::Metrics,
            Route::Register
            | Route::Recover
            | Route::RegenerateKey
            | Route::WebhookSecret
            | Route::Balance
            | Route::SpendingLimit
            | Route::Jobs
            | Route::TopupCard
            | Route::AutoTopup
            | Route::TopupCrypto
            | Route::TopupCryptoClaim
            | Route::StripeWebhook
            | Route::Dashboard(_) => RouteLabel::Account,
            Route::AdminCredits
            | Route::AdminAccount(_)
            | Route::AdminRecoveries
            | Route::AdminAudit
            | Route::AdminNodes
            | Route::AdminNodeDrain(_) => RouteLabel::Admin,
            Route::ChatCompletions => RouteLabel::ChatCompletions,
            Route::Embeddings => RouteLabel::Embeddings,
            Route::Models | Route::Model(_) => RouteLabel::Models,
            Route::V1Unknown => RouteLabel::Other,
            Route::Mcp => RouteLabel::Mcp,
        }
    }

    /// Jobs' inputs may be large; everything else is a small form. Stripe's
    /// events are signed, but only checked once read: a fixed 1 MiB.
    pub fn body_rules(&self, http: &HttpConfig) -> BodyRules {
        let max = match self {
            Route::Run
            | Route::Inference
            | Route::ChatCompletions
            | Route::Embeddings
            | Route::Mcp => http.max_body_bytes,
            Route::StripeWebhook => 1024 * 1024,
            _ => http.max_small_body_bytes,
        };
        BodyRules {
            max,
            timeout: Duration::from_millis(http.body_read_timeout_ms.max(1)),
        }
    }

    /// Probes and scrapes are not rate-limited: they are cheap, and a load
    /// balancer or Prometheus behind one address must not be locked out.
    pub fn is_limited(&self) -> bool {
        !matches!(self, Route::Health | Route::Metrics)
    }

    /// Routes that may submit jobs: their requests carry a [`BackendClock`], so
    /// their overhead is their time less their jobs' time on backends.
    ///
    /// [`BackendClock`]: gpubridge_scheduler::BackendClock
    pub fn submits_jobs(&self) -> bool {
        matches!(
            self,
            Route::Run | Route::Inference | Route::ChatCompletions | Route::Embeddings | Route::Mcp
        )
    }

    /// Routes whose errors take OpenAI's shape.
    pub fn is_openai(&self) -> bool {
        matches!(
            self,
            Route::ChatCompletions
                | Route::Embeddings
                | Route::Models
                | Route::Model(_)
                | Route::V1Unknown
        )
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
        assert!(matches!(
            route("/v1/models/deepseek-ai/DeepSeek-V3.2"),
            Some((Route::Model("deepseek-ai/DeepSeek-V3.2"), _))
        ));
        assert!(matches!(
            route("/v1/completions"),
            Some((Route::V1Unknown, _))
        ));
        assert!(matches!(
            route("/v1/chat/completions/"),
            Some((Route::ChatCompletions, _))
        ));
    }
}
