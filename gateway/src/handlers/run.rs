//! `POST /run`: the universal contract. Parses the typed body and headers, then
//! the shared intake; answers 202 with where to poll.

use crate::app::{json, App, HttpResponse};
use crate::body;
use crate::error::ApiError;
use crate::handlers::{accepted_headers, arrive, x402_tagged};
use crate::intake::IntakeRequest;
use crate::requests::RunBody;
use crate::views::RunAccepted;
use gpubridge_billing::IdempotencyClaim;
use gpubridge_scheduler::Origin;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, LOCATION};
use hyper::{Request, StatusCode};
use serde_json::Value;
use std::sync::Arc;

pub async fn handle(app: &Arc<App>, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let x402 = app.access.x402_version(request.headers());
    x402_tagged(x402, run(app, request, x402).await)
}

async fn run(
    app: &Arc<App>,
    request: Request<Incoming>,
    x402: Option<u8>,
) -> Result<HttpResponse, ApiError> {
    let arrival = arrive(app, request).await?;
    let run: RunBody = body::parse(&arrival.bytes).map_err(|mut e| {
        if e.field() == Some("service") {
            e.available_services = Some(app.scheduler.catalog().service_keys());
        }
        e
    })?;
    let idempotency = arrival
        .idempotency_key
        .map(|key| IdempotencyClaim::new(key, "/run", &run));
    let accepted = app
        .intake(
            arrival.caller,
            IntakeRequest {
                service: run.service,
                input: Value::Object(run.input),
                priority: arrival.priority,
                origin: Origin::Run,
                webhook_url: run.webhook_url,
                idempotency,
                stream: None,
            },
        )
        .await?;
    let view = RunAccepted::of(&accepted.record);
    let mut response = json(StatusCode::ACCEPTED, &view);
    if let Ok(value) = HeaderValue::from_str(&view.status_url) {
        response.headers_mut().insert(LOCATION, value);
    }
    accepted_headers(app, x402, &accepted, &mut response);
    Ok(response)
}
