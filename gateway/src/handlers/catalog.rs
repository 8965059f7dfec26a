//! `GET /catalog` (services, models, prices, schemas, routes, payment metadata,
//! live backends) and `GET /catalog/estimate`.

use crate::app::{json, App, HttpResponse};
use crate::error::ApiError;
use gpubridge_scheduler::{ModelKind, Route, ServiceSpec};
use hyper::StatusCode;
use serde_json::{json, Map, Value};

fn backend_view(route: &Route) -> Value {
    json!({
        "provider": route.backend.provider.name(),
        "model": route.backend.model,
        "live": route.backend.is_live(),
        "circuit": route.backend.breaker.state().as_str(),
    })
}

fn service_view(app: &App, spec: &ServiceSpec) -> Value {
    let scheduler = &app.scheduler;
    let seconds = scheduler.expected_seconds(spec);
    let cost = scheduler
        .estimate(&spec.key, Some(seconds))
        .map(|e| e.estimated_cost.as_dollars())
        .unwrap_or_default();
    let mut view = json!({
        "key": spec.key,
        "name": spec.name,
        "category": spec.category,
        "description": spec.description,
        "pricing": {
            "from_usd": spec.from_price().as_dollars(),
            "price_per_second_usd": spec.price_per_second().as_dollars(),
            "estimated_seconds": seconds,
            "estimated_cost_usd": cost,
        },
        "max_seconds": spec.max_seconds,
        "input_schema": spec.input_schema,
        "available": scheduler.is_service_live(spec),
    });
    if let Some(route) = &spec.route {
        view["route"] = json!(route);
    }
    match spec.models {
        Some(kind) => {
            view["models"] = json!(kind_name(kind));
            view["default_model"] = json!(scheduler.catalog().default_model(kind));
        }
        None => {
            let routes = scheduler
                .backends()
                .routes(&spec.key, None)
                .unwrap_or_default();
            view["backends"] = routes.iter().map(backend_view).collect();
        }
    }
    view
}

fn kind_name(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Llm => "llm",
        ModelKind::Image => "image",
    }
}

fn models_view(app: &App, kind: ModelKind, service: &str) -> Value {
    let scheduler = &app.scheduler;
    scheduler
        .catalog()
        .models_of(kind)
        .map(|model| {
            let routes = scheduler
                .backends()
                .routes(service, Some(&model.id))
                .unwrap_or_default();
            json!({
                "id": model.id,
                "name": model.name,
                "available": routes.iter().any(|r| r.backend.is_live()),
                "backends": routes.iter().map(backend_view).collect::<Vec<_>>(),
            })
        })
        .collect()
}

pub fn catalog(app: &App) -> HttpResponse {
    let catalog = app.scheduler.catalog();
    let services: Vec<Value> = catalog
        .services()
        .iter()
        .map(|s| service_view(app, s))
        .collect();
    let mut live: Vec<&str> = app
        .scheduler
        .backends()
        .all()
        .iter()
        .filter(|b| b.is_live())
        .map(|b| b.provider.name())
        .collect();
    live.sort_unstable();
    live.dedup();
    let llm_service = service_for(app, ModelKind::Llm);
    let image_service = service_for(app, ModelKind::Image);
    let body = json!({
        "version": catalog.version(),
        "services": services,
        "models": {
            "llm": models_view(app, ModelKind::Llm, &llm_service),
            "image": models_view(app, ModelKind::Image, &image_service),
        },
        "tts_voices": catalog.tts_voices(),
        "routes": {
            "/run": {"method": "POST", "description": "Universal contract: {service, input, webhook_url?}"},
            "/inference": {"method": "POST", "service": llm_service, "description": "Prompt-centric LLM route; inline when fast"},
            "/status/:job_id": {"method": "GET"},
            "/catalog/estimate": {"method": "GET", "query": ["service", "seconds"]},
        },
        "payment": {
            "currency": "USD",
            "credits": {
                "enabled": app.accounts.is_some(),
                "auth": "Authorization: Bearer gpub_…",
                "register": "POST /account/register",
            },
            "x402": {"enabled": false},
        },
        "live_providers": live,
    });
    json(StatusCode::OK, &body)
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

pub fn estimate(app: &App, query: Option<&str>) -> Result<HttpResponse, ApiError> {
    let mut service = None;
    let mut seconds = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "service" => service = Some(value.into_owned()),
            "seconds" => {
                let parsed = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            format!("seconds must be a number between 0 and 86400, not {value:?}"),
                            "Example: GET /catalog/estimate?service=llm-4090&seconds=30",
                        )
                    })?;
                seconds = Some(parsed);
            }
            _ => {}
        }
    }
    let Some(service) = service.filter(|s| !s.is_empty()) else {
        let mut error = ApiError::bad_request(
            "The service query parameter is required",
            "Example: GET /catalog/estimate?service=llm-4090&seconds=30",
        );
        error.available_services = Some(app.scheduler.catalog().service_keys());
        return Err(error);
    };
    let estimate = app
        .scheduler
        .estimate(&service, seconds)
        .map_err(|e| app.submit_error(e))?;
    let mut body = Map::new();
    body.insert("service".into(), json!(estimate.service));
    body.insert(
        "estimated_seconds".into(),
        json!(estimate.estimated_seconds),
    );
    body.insert(
        "price_per_second".into(),
        json!(estimate.price_per_second.as_dollars()),
    );
    body.insert(
        "estimated_cost_usd".into(),
        json!(estimate.estimated_cost.as_dollars()),
    );
    Ok(json(StatusCode::OK, &Value::Object(body)))
}
