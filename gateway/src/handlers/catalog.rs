//! `GET /catalog` (services, models, prices, schemas, routes, payment metadata,
//! live backends) and `GET /catalog/estimate`.

use crate::app::{json, App, HttpResponse};
use crate::error::ApiError;
use gpubridge_protocol::Micros;
use gpubridge_scheduler::{ModelKind, Route, ServiceSpec};
use hyper::StatusCode;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Serialize)]
struct BackendView {
    provider: &'static str,
    model: String,
    live: bool,
    circuit: &'static str,
}

impl From<&Route> for BackendView {
    fn from(route: &Route) -> Self {
        BackendView {
            provider: route.backend.id.provider_name(),
            model: route.backend.id.model().to_string(),
            live: route.backend.is_live(),
            circuit: route.backend.breaker.state().as_str(),
        }
    }
}

#[derive(Serialize)]
struct Pricing {
    from_usd: f64,
    price_per_second_usd: f64,
    estimated_seconds: f64,
    estimated_cost_usd: f64,
    /// The estimate as an x402 price in the asset's atomic units; with x402 on.
    #[serde(skip_serializing_if = "Option::is_none")]
    x402_amount_atomic: Option<String>,
}

/// A price as x402 asks for it (atomic units, rounded up), when x402 is on.
fn x402_amount(app: &App, price: Micros) -> Option<String> {
    app.access
        .x402()
        .map(|x402| x402.rules().atomic(price).to_string())
}

#[derive(Serialize)]
struct ServiceView<'a> {
    key: &'a str,
    name: &'a str,
    category: &'a str,
    description: &'a str,
    pricing: Pricing,
    max_seconds: u64,
    input_schema: &'a Value,
    available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    models: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    default_model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backends: Option<Vec<BackendView>>,
}

fn service_view<'a>(app: &'a App, spec: &'a ServiceSpec) -> ServiceView<'a> {
    let scheduler = &app.scheduler;
    let seconds = scheduler.expected_seconds(spec);
    let cost = scheduler
        .estimate(&spec.key, Some(seconds))
        .map(|e| e.estimated_cost)
        .unwrap_or_default();
    let backends = match spec.models {
        Some(_) => None,
        None => Some(
            scheduler
                .backends()
                .routes(&spec.key, None)
                .unwrap_or_default()
                .iter()
                .map(BackendView::from)
                .collect(),
        ),
    };
    ServiceView {
        key: &spec.key,
        name: &spec.name,
        category: &spec.category,
        description: &spec.description,
        pricing: Pricing {
            from_usd: spec.from_price().as_dollars(),
            price_per_second_usd: spec.price_per_second().as_dollars(),
            estimated_seconds: seconds,
            estimated_cost_usd: cost.as_dollars(),
            x402_amount_atomic: x402_amount(app, cost),
        },
        max_seconds: spec.max_seconds,
        input_schema: &spec.input_schema,
        available: scheduler.is_service_live(spec),
        route: spec.route.as_deref(),
        models: spec.models.map(kind_name),
        default_model: spec
            .models
            .map(|kind| scheduler.catalog().default_model(kind)),
        backends,
    }
}

fn kind_name(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Llm => "llm",
        ModelKind::Image => "image",
    }
}

#[derive(Serialize)]
struct ModelView<'a> {
    id: &'a str,
    name: &'a str,
    available: bool,
    backends: Vec<BackendView>,
}

fn models_view<'a>(app: &'a App, kind: ModelKind, service: &str) -> Vec<ModelView<'a>> {
    let scheduler = &app.scheduler;
    scheduler
        .catalog()
        .models_of(kind)
        .map(|model| {
            let routes = scheduler
                .backends()
                .routes(service, Some(&model.id))
                .unwrap_or_default();
            ModelView {
                id: &model.id,
                name: &model.name,
                available: routes.iter().any(|r| r.backend.is_live()),
                backends: routes.iter().map(BackendView::from).collect(),
            }
        })
        .collect()
}

#[derive(Serialize)]
struct Models<'a> {
    llm: Vec<ModelView<'a>>,
    image: Vec<ModelView<'a>>,
}

/// How to call a dedicated route.
#[derive(Serialize)]
struct RouteDoc {
    method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<[&'static str; 2]>,
}

#[derive(Serialize)]
struct Credits {
    enabled: bool,
    auth: &'static str,
    register: &'static str,
}

/// x402's terms, when it is on.
#[derive(Serialize)]
struct X402Terms {
    enabled: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    on: Option<X402On>,
}

#[derive(Serialize)]
struct X402On {
    network: String,
    chain_id: u64,
    asset: String,
    asset_decimals: u8,
    pay_to: String,
    max_timeout_seconds: u64,
    confirmations: u64,
    large_payment_usd: f64,
    large_payment_confirmations: u64,
    /// `tx-hash`: send, then prove with `X-Payment`; `exact`: an EIP-3009
    /// authorization GPU-Bridge settles (only with a relayer).
    schemes: Vec<&'static str>,
    sanctions_screening: bool,
}

fn x402_terms(app: &App) -> X402Terms {
    let on = app.access.x402().map(|x402| {
        let rules = x402.rules();
        let mut schemes = vec!["tx-hash"];
        if x402.settles_authorizations() {
            schemes.push("exact");
        }
        X402On {
            network: gpubridge_billing::x402::network_v1(rules.chain_id),
            chain_id: rules.chain_id,
            asset: rules.asset.to_string(),
            asset_decimals: rules.asset_decimals,
            pay_to: rules.pay_to.to_string(),
            max_timeout_seconds: rules.max_payment_age.as_secs(),
            confirmations: rules.confirmations,
            large_payment_usd: rules.large_payment.as_dollars(),
            large_payment_confirmations: rules.large_payment_confirmations,
            schemes,
            sanctions_screening: rules.sanctions_oracle.is_some(),
        }
    });
    X402Terms {
        enabled: on.is_some(),
        on,
    }
}

#[derive(Serialize)]
struct Payment {
    currency: &'static str,
    credits: Credits,
    x402: X402Terms,
}

#[derive(Serialize)]
pub(crate) struct CatalogView<'a> {
    version: u32,
    services: Vec<ServiceView<'a>>,
    models: Models<'a>,
    tts_voices: &'a [String],
    routes: BTreeMap<&'static str, RouteDoc>,
    payment: Payment,
    live_providers: Vec<&'static str>,
}

fn route_docs(llm_service: String) -> BTreeMap<&'static str, RouteDoc> {
    let doc = |method, service, description, query| RouteDoc {
        method,
        service,
        description,
        query,
    };
    BTreeMap::from([
        (
            "/run",
            doc(
                "POST",
                None,
                Some("Universal contract: {service, input, webhook_url?}"),
                None,
            ),
        ),
        (
            "/inference",
            doc(
                "POST",
                Some(llm_service),
                Some("Prompt-centric LLM route; inline when fast"),
                None,
            ),
        ),
        ("/status/:job_id", doc("GET", None, None, None)),
        (
            "/catalog/estimate",
            doc("GET", None, None, Some(["service", "seconds"])),
        ),
    ])
}

pub fn catalog(app: &App) -> HttpResponse {
    json(StatusCode::OK, &view(app))
}

/// What `GET /catalog` shows (and MCP's `gpu_catalog`).
pub(crate) fn view(app: &App) -> CatalogView<'_> {
    let catalog = app.scheduler.catalog();
    let mut live: Vec<&str> = app
        .scheduler
        .backends()
        .all()
        .iter()
        .filter(|b| b.is_live())
        .map(|b| b.id.provider_name())
        .collect();
    live.sort_unstable();
    live.dedup();
    let llm_service = service_for(app, ModelKind::Llm);
    let image_service = service_for(app, ModelKind::Image);
    let body = CatalogView {
        version: catalog.version(),
        services: catalog
            .services()
            .iter()
            .map(|s| service_view(app, s))
            .collect(),
        models: Models {
            llm: models_view(app, ModelKind::Llm, &llm_service),
            image: models_view(app, ModelKind::Image, &image_service),
        },
        tts_voices: catalog.tts_voices(),
        routes: route_docs(llm_service),
        payment: Payment {
            currency: "USD",
            credits: Credits {
                enabled: app.accounts.is_some(),
                auth: "Authorization: Bearer gpub_…",
                register: "POST /account/register",
            },
            x402: x402_terms(app),
        },
        live_providers: live,
    };
    body
}

/// The service whose backends come from a model list of this kind.
fn service_for(app: &App, kind: ModelKind) -> String {
    app.scheduler
        .catalog()
        .services()
        .iter()
        .find(|s| s.models == Some(kind))
        .map(|s| s.key.clone())
        .unwrap_or_default()
}

#[derive(Serialize)]
pub(crate) struct EstimateView {
    service: String,
    estimated_seconds: f64,
    price_per_second: f64,
    estimated_cost_usd: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    x402_amount_atomic: Option<String>,
}

pub fn estimate(app: &App, query: Option<&str>) -> Result<HttpResponse, ApiError> {
    let query = query.unwrap_or_default();
    let example = ESTIMATE_EXAMPLE;
    let seconds = match crate::body::query_text(query, "seconds") {
        None => None,
        Some(value) => Some(value.parse::<f64>().map_err(|_| bad_seconds(&value))?),
    };
    let Some(service) = crate::body::query_text(query, "service").filter(|s| !s.is_empty()) else {
        let mut error = ApiError::bad_request("The service query parameter is required", example);
        error.available_services = Some(app.scheduler.catalog().service_keys());
        return Err(error);
    };
    Ok(json(
        StatusCode::OK,
        &estimate_view(app, &service, seconds)?,
    ))
}

const ESTIMATE_EXAMPLE: &str = "Example: GET /catalog/estimate?service=llm-4090&seconds=30; omit seconds for the service's learned duration.";

fn bad_seconds(value: &dyn std::fmt::Display) -> ApiError {
    ApiError::bad_request(
        format!("seconds must be a number between 0 and 86400, not {value}"),
        ESTIMATE_EXAMPLE,
    )
    .with_field("seconds")
}

/// The upfront price of `service` over `seconds` (else its expected duration),
/// for `/catalog/estimate` and MCP's `gpu_estimate` alike.
pub(crate) fn estimate_view(
    app: &App,
    service: &str,
    seconds: Option<f64>,
) -> Result<EstimateView, ApiError> {
    if let Some(s) = seconds.filter(|s| !(s.is_finite() && *s > 0.0 && *s <= 86_400.0)) {
        return Err(bad_seconds(&s));
    }
    let estimate = app
        .scheduler
        .estimate(service, seconds)
        .map_err(|e| app.submit_error(e))?;
    Ok(EstimateView {
        service: estimate.service,
        estimated_seconds: estimate.estimated_seconds,
        price_per_second: estimate.price_per_second.as_dollars(),
        estimated_cost_usd: estimate.estimated_cost.as_dollars(),
        x402_amount_atomic: x402_amount(app, estimate.estimated_cost),
    })
}
