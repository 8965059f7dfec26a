//! `/account/*`: registration, key rotation and recovery, balance, spending
//! limit and job history. Money leaves as dollars here.

use crate::access::account_error;
use crate::app::{json, App, HttpResponse};
use crate::body;
use crate::error::ApiError;
use crate::handlers::topup_crypto;
use crate::requests::{EmailBody, SpendingLimitBody};
use crate::views::{
    AccountBody, Acknowledged, HistoryItem, HistoryPageView, KeyRotated, Registered,
    WebhookSecretView,
};
use gpubridge_billing::{Accounts, PageStart};
use gpubridge_protocol::{AccountId, JobId, Micros};
use gpubridge_scheduler::jobs::JOBS;
use gpubridge_scheduler::JobRecord;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

const MAX_PAGE: usize = 200;

pub async fn register(
    app: &App,
    accounts: &Accounts,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let body: EmailBody = body::read(request).await?;
    let (view, api_key) = accounts
        .register(&body.email)
        .await
        .map_err(account_error)?;
    let webhook_secret = app.webhooks.account_secret(view.id).as_str().to_string();
    let registered = Registered {
        account: view.into(),
        api_key,
        webhook_secret,
        message:
            "Store this API key now: it is shown only once. Send it as Authorization: Bearer <key>.",
    };
    Ok(json(StatusCode::CREATED, &registered))
}

pub async fn recover(
    accounts: &Accounts,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let body: EmailBody = body::read(request).await?;
    accounts
        .request_recovery(&body.email)
        .await
        .map_err(account_error)?;
    // The same answer whether or not the address has an account.
    let answer = Acknowledged {
        status: "received",
        message: "If an account exists for this address, support will contact it with recovery steps. Keys are never sent by email.",
    };
    Ok(json(StatusCode::ACCEPTED, &answer))
}

pub async fn regenerate_key(
    app: &App,
    accounts: &Accounts,
    request: &Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let account = app.access.require(request.headers())?;
    let api_key = accounts.rotate_key(account).await.map_err(account_error)?;
    let rotated = KeyRotated {
        api_key,
        account_id: account.to_string(),
        message: "The previous key no longer works. Store this one now: it is shown only once.",
    };
    Ok(json(StatusCode::OK, &rotated))
}

/// `GET /account/webhook-secret` shows the secret that signs the account's
/// webhooks; `POST` replaces it (deliveries from then on use the new one).
pub async fn webhook_secret(
    app: &App,
    accounts: &Accounts,
    request: &Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let account = app.access.require(request.headers())?;
    let rotated = request.method() == hyper::Method::POST;
    if rotated {
        accounts
            .rotate_webhook_secret(account)
            .await
            .map_err(account_error)?;
    }
    let view = WebhookSecretView {
        account_id: account.to_string(),
        webhook_secret: app.webhooks.account_secret(account).as_str().to_string(),
        signature_header: "X-GPUBridge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"{t}.{body}\" keyed with this secret>",
        rotated,
    };
    Ok(json(StatusCode::OK, &view))
}

pub async fn balance(
    app: &App,
    accounts: &Accounts,
    request: &Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let account = app.access.require(request.headers())?;
    Ok(json(
        StatusCode::OK,
        &balance_view(app, accounts, account).await?,
    ))
}

/// What `GET /account/balance` shows (and MCP's `gpu_balance`).
pub(crate) async fn balance_view(
    app: &App,
    accounts: &Accounts,
    account: AccountId,
) -> Result<AccountBody, ApiError> {
    let view = accounts.view(account).map_err(account_error)?;
    let mut body = AccountBody::from(view);
    body.crypto_topups = topup_crypto::recent(app, account).await?;
    Ok(body)
}

pub async fn spending_limit(
    app: &App,
    accounts: &Accounts,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let account = app.access.require(request.headers())?;
    let body: SpendingLimitBody = body::read(request).await?;
    let limit = Micros::from_dollars(body.daily_limit).map_err(|e| {
        ApiError::bad_request(
            format!("daily_limit: {e}"),
            "Send {\"daily_limit\": 100}: dollars per UTC day, from 1 to 10000.",
        )
        .with_field("daily_limit")
    })?;
    let view = accounts
        .set_daily_limit(account, limit)
        .await
        .map_err(account_error)?;
    Ok(json(StatusCode::OK, &AccountBody::from(view)))
}

/// `GET /account/jobs?limit=&offset=` or `?limit=&cursor=`: newest first; each
/// page says where the next starts. Both seek directly, at any depth.
pub async fn jobs(
    app: &App,
    accounts: &Accounts,
    request: &Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let account = app.access.require(request.headers())?;
    let query = request.uri().query().unwrap_or_default();
    let limit = body::query_number(query, "limit", 50, MAX_PAGE)?.max(1);
    let offset = body::query_number(query, "offset", 0, usize::MAX)? as u64;
    let start = match body::query_text(query, "cursor") {
        Some(cursor) => PageStart::Cursor(cursor.parse().map_err(|_| {
            ApiError::bad_request(
                format!("cursor {cursor:?} is not one this API gave out"),
                "Pass next_cursor from the previous page, or use offset.",
            )
            .with_field("cursor")
        })?),
        None => PageStart::Offset(offset),
    };
    let (records, next_cursor) = history(app, accounts, account, start, limit).await?;
    let jobs: Vec<HistoryItem> = records.iter().map(HistoryItem::of).collect();
    let view = HistoryPageView {
        count: jobs.len(),
        jobs,
        limit,
        offset: matches!(start, PageStart::Offset(_)).then_some(offset),
        next_cursor,
        crypto_topups: topup_crypto::recent(app, account).await?,
    };
    Ok(json(StatusCode::OK, &view))
}

/// One page of the account's jobs, newest first, and where the next starts
/// (also the dashboard's).
pub(crate) async fn history(
    app: &App,
    accounts: &Accounts,
    account: AccountId,
    start: PageStart,
    limit: usize,
) -> Result<(Vec<JobRecord>, Option<String>), ApiError> {
    let page = accounts
        .history(account, start, limit)
        .await
        .map_err(account_error)?;
    let keys = page
        .job_ids
        .iter()
        .map(|id| id.as_bytes().to_vec())
        .collect();
    let stored = app
        .scheduler
        .store()
        .get_many::<JobRecord>(JOBS, keys)
        .await
        .map_err(|e| ApiError::from_store(&e, "Retry shortly."))?;
    let records = latest(app, &page.job_ids, stored).await?;
    Ok((records, page.next_cursor.map(|n| n.to_string())))
}

/// Jobs still running are read from memory, where they are newer than on disk.
async fn latest(
    app: &App,
    ids: &[JobId],
    stored: Vec<Option<JobRecord>>,
) -> Result<Vec<JobRecord>, ApiError> {
    let mut records = Vec::with_capacity(ids.len());
    for (id, stored) in ids.iter().zip(stored) {
        let record = match stored {
            Some(record) if record.status.is_terminal() => Some(record),
            _ => app
                .scheduler
                .status(id)
                .await
                .map_err(|e| ApiError::from_store(&e, "Retry shortly."))?
                .map(std::sync::Arc::unwrap_or_clone),
        };
        records.extend(record);
    }
    Ok(records)
}
