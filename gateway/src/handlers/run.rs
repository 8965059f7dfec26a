//! `POST /run`: the universal contract. Parses the typed body and headers, then
//! the shared intake; answers 202 with where to poll — or, with `Prefer:
//! wait=N`, holds the answer up to N seconds and gives the finished job's
//! status document (200) when it ends in time.

use crate::app::{json, App, HttpResponse};
use crate::body;
use crate::error::ApiError;
use crate::handlers::{accepted_headers, arrive, x402_tagged};
use crate::intake::IntakeRequest;
use crate::requests::RunBody;
use crate::views::{status_url, RunAccepted, StatusView};
use gpubridge_billing::IdempotencyClaim;
use gpubridge_protocol::JobId;
use gpubridge_scheduler::{BackendClock, JobRecord, Origin};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, LOCATION};
use hyper::{Request, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

pub async fn handle(app: &Arc<App>, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let x402 = app.access.x402_version(request.headers());
    x402_tagged(x402, run(app, request, x402).await)
}

async fn run(
    app: &Arc<App>,
    request: Request<Incoming>,
    x402: Option<u8>,
) -> Result<HttpResponse, ApiError> {
    let wait = body::prefer_wait(request.headers())?;
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
                clock: arrival.clock,
                id_shown_late: false,
            },
        )
        .await?;
    let ended = match wait {
        Some(seconds) => {
            let replay = accepted.replay_clock.as_ref();
            waited(app, &accepted.record.id, seconds, replay).await
        }
        None => None,
    };
    let record = ended.as_deref().unwrap_or(&accepted.record);
    let secret = (record.webhook_url.is_some() && record.owner.is_none()).then(|| {
        app.webhooks
            .secret_for(None, &record.id)
            .as_str()
            .to_string()
    });
    // Without `Prefer: wait` the answer is the contract's 202, also for an
    // idempotent replay of a job that has ended.
    let mut response = match wait.is_some() && record.status.is_terminal() {
        true => finished(app, record, secret).await?,
        false => {
            let mut view = RunAccepted::of(record);
            view.webhook_secret = secret;
            json(StatusCode::ACCEPTED, &view)
        }
    };
    if let Ok(value) = HeaderValue::from_str(&status_url(&record.id)) {
        response.headers_mut().insert(LOCATION, value);
    }
    if let Some(seconds) = wait {
        let applied = HeaderValue::from_str(&format!("wait={seconds}"));
        if let Ok(applied) = applied {
            response.headers_mut().insert(PREFERENCE_APPLIED, applied);
        }
    }
    accepted_headers(app, x402, &accepted, &mut response);
    Ok(response)
}

/// The job after up to `seconds` of waiting (on a replay's clock if it is
/// one); `None` (answer as accepted) if it cannot be read (it is persisted and
/// running: the answer points at /status).
async fn waited(
    app: &App,
    id: &JobId,
    seconds: u64,
    replay_clock: Option<&BackendClock>,
) -> Option<Arc<JobRecord>> {
    let _counted = replay_clock.map(BackendClock::span);
    app.scheduler
        .wait(id, Duration::from_secs(seconds))
        .await
        .ok()
        .flatten()
}

/// A job that ended within `Prefer: wait`: its status document, as /status
/// shows it to its owner.
async fn finished(
    app: &App,
    record: &JobRecord,
    webhook_secret: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let mut view = StatusView::of(record, true);
    view.webhook_secret = webhook_secret;
    if record.webhook_url.is_some() {
        view.webhook = Some(crate::handlers::status::webhook_view(app, record).await?);
    }
    Ok(json(StatusCode::OK, &view))
}
