//! `/admin/*`: the operator's API, behind a token from the configuration: grant
//! credits, look up accounts, list recovery requests, audit the ledger.

use crate::access::account_error;
use crate::app::{json, App, HttpResponse};
use crate::body;
use crate::error::ApiError;
use crate::handlers::account::{account_json, AccountRoutes};
use gpubridge_protocol::Micros;
use gpubridge_scheduler::accounts;
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, StatusCode};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

/// Refuses anything but the configured operator token, compared in constant time.
pub fn authorize(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = app.admin_token.as_deref() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "The admin API is disabled",
            "Set admin.token in the configuration (or GPUBRIDGE_ADMIN_TOKEN) and restart.",
        ));
    };
    let given = crate::access::bearer(headers)
        .ok()
        .flatten()
        .unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Invalid operator token",
            "Send Authorization: Bearer <admin token>.",
        ))
    }
}

fn find(
    routes: &AccountRoutes,
    query: &str,
) -> Result<gpubridge_scheduler::accounts::AccountId, ApiError> {
    routes.accounts.find(query).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("No account {query:?}"),
            "Look accounts up by acct_… id or by email.",
        )
    })
}

pub async fn grant(
    app: &App,
    routes: &AccountRoutes,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let fields = body::json_request(request, app.http.max_body_bytes).await?;
    let hint = "Send {\"account\": \"acct_… or email\", \"amount_usd\": 25, \"note\": \"why\"}.";
    let query = fields
        .get("account")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("account is required (id or email)", hint))?;
    let amount = fields
        .get("amount_usd")
        .and_then(Value::as_f64)
        .ok_or_else(|| ApiError::bad_request("amount_usd must be a number", hint))?;
    let amount = Micros::from_dollars(amount)
        .map_err(|e| ApiError::bad_request(format!("amount_usd: {e}"), hint))?;
    let note = match fields.get("note") {
        None | Some(Value::Null) => "operator grant".to_string(),
        Some(Value::String(note)) if note.len() <= 200 => note.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "note must be a string of at most 200 characters",
                hint,
            ))
        }
    };
    let account = find(routes, query)?;
    let view = routes
        .accounts
        .credit(account, amount, &note)
        .map_err(account_error)?;
    Ok(json(StatusCode::OK, &account_json(&view)))
}

pub fn account(routes: &AccountRoutes, query: &str) -> Result<HttpResponse, ApiError> {
    let account = find(routes, query)?;
    let view = routes.accounts.view(account).map_err(account_error)?;
    Ok(json(StatusCode::OK, &account_json(&view)))
}

pub fn recoveries(routes: &AccountRoutes, query: Option<&str>) -> Result<HttpResponse, ApiError> {
    let limit = body::query_number(query.unwrap_or_default(), "limit", 100, 1000)?;
    let requests = routes
        .accounts
        .recovery_requests(limit)
        .map_err(account_error)?;
    Ok(json(
        StatusCode::OK,
        &json!({"recovery_requests": requests}),
    ))
}

pub fn audit(app: &App) -> Result<HttpResponse, ApiError> {
    let report = accounts::audit(app.scheduler.store()).map_err(|e| {
        tracing::error!(error = %e, "ledger audit failed");
        ApiError::storage_unavailable("Retry shortly.")
    })?;
    Ok(json(StatusCode::OK, &report))
}
