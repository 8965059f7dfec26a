//! `/admin/*`: the operator's API, behind a token from the configuration: grant
//! credits, look up accounts, list recovery requests, audit the ledger.

use crate::access::account_error;
use crate::app::{json, App, HttpResponse};
use crate::body;
use crate::error::ApiError;
use crate::requests::GrantBody;
use crate::views::AccountBody;
use gpubridge_billing::Accounts;
use gpubridge_protocol::{AccountId, Micros};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, StatusCode};
use serde::Serialize;
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

fn find(accounts: &Accounts, query: &str) -> Result<AccountId, ApiError> {
    accounts.find(query).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("No account {query:?}"),
            "Look accounts up by acct_… id or by email.",
        )
    })
}

const MAX_NOTE: usize = 200;

pub async fn grant(
    accounts: &Accounts,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let grant: GrantBody = body::read(request).await?;
    let amount = Micros::from_dollars(grant.amount_usd).map_err(|e| {
        ApiError::bad_request(
            format!("amount_usd: {e}"),
            <GrantBody as crate::requests::Body>::HINT,
        )
        .with_field("amount_usd")
    })?;
    let note = grant.note.unwrap_or_else(|| "operator grant".to_string());
    if note.len() > MAX_NOTE {
        return Err(ApiError::bad_request(
            format!("note must be at most {MAX_NOTE} characters"),
            <GrantBody as crate::requests::Body>::HINT,
        )
        .with_field("note"));
    }
    let account = find(accounts, &grant.account)?;
    let view = accounts
        .credit(account, amount, &note)
        .await
        .map_err(account_error)?;
    Ok(json(StatusCode::OK, &AccountBody::from(view)))
}

pub fn account(accounts: &Accounts, query: &str) -> Result<HttpResponse, ApiError> {
    let account = find(accounts, query)?;
    let view = accounts.view(account).map_err(account_error)?;
    Ok(json(StatusCode::OK, &AccountBody::from(view)))
}

#[derive(Serialize)]
struct Recoveries {
    recovery_requests: Vec<gpubridge_billing::RecoveryRequest>,
}

pub async fn recoveries(
    accounts: &Accounts,
    query: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let limit = body::query_number(query.unwrap_or_default(), "limit", 100, 1000)?;
    let recovery_requests = accounts
        .recovery_requests(limit)
        .await
        .map_err(account_error)?;
    Ok(json(StatusCode::OK, &Recoveries { recovery_requests }))
}

pub async fn audit(accounts: &Accounts) -> Result<HttpResponse, ApiError> {
    let report = gpubridge_billing::audit(accounts.store())
        .await
        .map_err(|e| ApiError::from_store(&e, "Retry shortly."))?;
    Ok(json(StatusCode::OK, &report))
}
