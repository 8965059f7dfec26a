//! `/account/*`: registration, key rotation and recovery, balance, spending
//! limit and job history. Money leaves as dollars here.

use crate::access::{account_error, AccountAccess};
use crate::app::{json, App, HttpResponse};
use crate::body;
use crate::error::ApiError;
use crate::views;
use gpubridge_protocol::Micros;
use gpubridge_scheduler::accounts::{AccountView, Accounts};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

/// The account endpoints, when accounts are enabled.
pub struct AccountRoutes {
    pub accounts: Arc<Accounts>,
    pub access: Arc<AccountAccess>,
}

const MAX_PAGE: usize = 200;

/// An account in the shape of `GET /account/balance`, plus what explains it.
pub fn account_json(view: &AccountView) -> Value {
    json!({
        "balance": view.balance.as_dollars(),
        "email": view.email,
        "daily_spend": view.daily_spend.as_dollars(),
        "daily_limit": view.daily_limit.as_dollars(),
        "volume_discount": {
            "tier": view.tier,
            "discount_percent": f64::from(view.discount_bps) / 100.0,
        },
        "trailing_30d_spend": view.trailing_30d_spend.as_dollars(),
        "open_reservations": view.open_reservations.as_dollars(),
        "credits": view.credits.as_dollars(),
        "charges": view.charges.as_dollars(),
        "account_id": view.id,
        "created_at_ms": view.created_ms,
    })
}

async fn email_field(app: &App, request: Request<Incoming>) -> Result<String, ApiError> {
    let mut fields = body::json_request(request, app.http.max_body_bytes).await?;
    match fields.remove("email") {
        Some(Value::String(email)) => Ok(email),
        Some(other) => Err(ApiError::bad_request(
            format!("email must be a string, not {}", body::kind(&other)),
            "Send {\"email\": \"you@example.com\"}.",
        )),
        None => Err(ApiError::bad_request(
            "email is required",
            "Send {\"email\": \"you@example.com\"}.",
        )),
    }
}

pub async fn register(
    app: &App,
    routes: &AccountRoutes,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let email = email_field(app, request).await?;
    let (view, api_key) = routes.accounts.register(&email).map_err(account_error)?;
    let mut body = account_json(&view);
    body["api_key"] = json!(api_key);
    body["message"] = json!(
        "Store this API key now: it is shown only once. Send it as Authorization: Bearer <key>."
    );
    Ok(json(StatusCode::CREATED, &body))
}

pub async fn recover(
    app: &App,
    routes: &AccountRoutes,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let email = email_field(app, request).await?;
    routes
        .accounts
        .request_recovery(&email)
        .map_err(account_error)?;
    // The same answer whether or not the address has an account.
    Ok(json(
        StatusCode::ACCEPTED,
        &json!({
            "status": "received",
            "message": "If an account exists for this address, support will contact it with recovery steps. Keys are never sent by email.",
        }),
    ))
}

pub fn regenerate_key(
    routes: &AccountRoutes,
    request: &Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let account = routes.access.require(request.headers())?;
    let api_key = routes.accounts.rotate_key(account).map_err(account_error)?;
    Ok(json(
        StatusCode::OK,
        &json!({
            "api_key": api_key,
            "account_id": account.to_string(),
            "message": "The previous key no longer works. Store this one now: it is shown only once.",
        }),
    ))
}

pub fn balance(
    routes: &AccountRoutes,
    request: &Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let account = routes.access.require(request.headers())?;
    let view = routes.accounts.view(account).map_err(account_error)?;
    Ok(json(StatusCode::OK, &account_json(&view)))
}

pub async fn spending_limit(
    app: &App,
    routes: &AccountRoutes,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let account = routes.access.require(request.headers())?;
    let fields = body::json_request(request, app.http.max_body_bytes).await?;
    let hint = "Send {\"daily_limit\": 100}: dollars per UTC day, from 1 to 10000.";
    let limit = fields
        .get("daily_limit")
        .ok_or_else(|| ApiError::bad_request("daily_limit is required", hint))?
        .as_f64()
        .ok_or_else(|| ApiError::bad_request("daily_limit must be a number", hint))?;
    let limit = Micros::from_dollars(limit)
        .map_err(|e| ApiError::bad_request(format!("daily_limit: {e}"), hint))?;
    let view = routes
        .accounts
        .set_daily_limit(account, limit)
        .map_err(account_error)?;
    Ok(json(StatusCode::OK, &account_json(&view)))
}

pub fn jobs(
    app: &App,
    routes: &AccountRoutes,
    request: &Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let account = routes.access.require(request.headers())?;
    let query = request.uri().query().unwrap_or_default();
    let limit = body::query_number(query, "limit", 50, MAX_PAGE)?;
    let offset = body::query_number(query, "offset", 0, usize::MAX)?;
    let ids = routes
        .accounts
        .job_ids(account, limit.max(1), offset)
        .map_err(account_error)?;
    let mut jobs = Vec::with_capacity(ids.len());
    for id in &ids {
        match app.scheduler.status(id) {
            Ok(Some(record)) => jobs.push(views::history_item(&record)),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "reading job history");
                return Err(ApiError::storage_unavailable("Retry shortly."));
            }
        }
    }
    Ok(json(
        StatusCode::OK,
        &json!({"jobs": jobs, "limit": limit.max(1), "offset": offset, "count": jobs.len()}),
    ))
}
