//! Each tool call, on the same code as its HTTP route: `gpu_run` through the
//! shared intake, the others through the views `/catalog`, `/catalog/estimate`,
//! `/status` and `/account/balance` answer with.

use super::tools::{self, BalanceArgs, CatalogArgs, EstimateArgs, RunArgs, StatusArgs};
use crate::access::{unauthorized, Caller, Credentials};
use crate::app::App;
use crate::body;
use crate::error::ApiError;
use crate::handlers::{account, catalog, status};
use crate::intake::IntakeRequest;
use crate::views::{status_url, StatusView};
use gpubridge_billing::IdempotencyClaim;
use gpubridge_protocol::Priority;
use gpubridge_scheduler::{BackendClock, Origin};
use hyper::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_WAIT_SECONDS: u64 = 20;

pub async fn call(
    app: &Arc<App>,
    name: &str,
    arguments: Value,
    credentials: Credentials<'_>,
    clock: Option<BackendClock>,
) -> Result<Value, ApiError> {
    match name {
        tools::RUN => run(app, args(arguments)?, credentials, clock).await,
        tools::CATALOG => catalog_entry(app, args(arguments)?),
        tools::STATUS => {
            let StatusArgs { job_id } = args(arguments)?;
            let account = require_key(app, credentials, name)?;
            let credentials = credentials.with_account(account);
            let (record, full) = status::read(app, credentials, &job_id).await?;
            to_value(&StatusView::of(&record, full))
        }
        tools::BALANCE => {
            let BalanceArgs {} = args(arguments)?;
            let (Some(accounts), Some(account)) =
                (&app.accounts, require_key(app, credentials, name)?)
            else {
                return Err(no_accounts());
            };
            to_value(&account::balance_view(app, accounts, account).await?)
        }
        tools::ESTIMATE => {
            let EstimateArgs { service, seconds } = args(arguments)?;
            to_value(&catalog::estimate_view(app, &service, seconds)?)
        }
        other => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("No tool named {other:?}"),
            "tools/list names the tools: gpu_run, gpu_catalog, gpu_status, gpu_balance, gpu_estimate.",
        )),
    }
}

/// Runs a job and waits (bounded) for it: the finished job, or where it stands.
async fn run(
    app: &Arc<App>,
    args: RunArgs,
    credentials: Credentials<'_>,
    clock: Option<BackendClock>,
) -> Result<Value, ApiError> {
    // The key is checked once: the account it names is the caller.
    let caller = Caller {
        account: require_key(app, credentials, tools::RUN)?,
        payer: None,
    };
    let priority = match args.priority.as_deref() {
        None => Priority::Fast,
        Some(text) => text.parse().map_err(|_| {
            ApiError::bad_request(
                format!("Invalid priority {text:?}"),
                "Use \"fast\" or \"cheap\".",
            )
            .with_field("priority")
        })?,
    };
    let wait = args.wait_seconds.unwrap_or(DEFAULT_WAIT_SECONDS);
    if wait > tools::MAX_WAIT_SECONDS {
        return Err(ApiError::bad_request(
            format!("wait_seconds is at most {}", tools::MAX_WAIT_SECONDS),
            "A longer job returns its job_id; read it with gpu_status.",
        )
        .with_field("wait_seconds"));
    }
    let input = Value::Object(args.input);
    let idempotency = match &args.idempotency_key {
        None => None,
        Some(key) => {
            let key = body::checked_idempotency_key(key, "Invalid idempotency_key")
                .map_err(|e| e.with_field("idempotency_key"))?;
            Some(IdempotencyClaim::new(
                key,
                "mcp:gpu_run",
                &(&args.service, &input),
            ))
        }
    };
    let request = IntakeRequest {
        service: args.service,
        input,
        priority,
        origin: Origin::Mcp,
        webhook_url: None,
        idempotency,
        stream: None,
        clock,
        id_shown_late: true,
    };
    let mut accepted = app.intake(caller, request).await?;
    let id = accepted.record.id.clone();
    let (driver, replay) = (accepted.driver.take(), accepted.replay_clock.take());
    let ended = app
        .wait_inline(&id, Duration::from_secs(wait), driver, replay)
        .await?;
    let record = ended.as_deref().unwrap_or(&accepted.record);
    if !record.status.is_terminal() {
        return Ok(json!({
            "job_id": id,
            "status": record.status.as_str(),
            "status_url": status_url(&id),
            "hint": "Still running: call gpu_status with this job_id.",
        }));
    }
    to_value(&StatusView::of(record, true))
}

/// The whole catalog, or one service's entry.
fn catalog_entry(app: &App, args: CatalogArgs) -> Result<Value, ApiError> {
    let all = to_value(&catalog::view(app))?;
    let Some(key) = args.service else {
        return Ok(all);
    };
    all["services"]
        .as_array()
        .and_then(|services| services.iter().find(|s| s["key"] == key.as_str()))
        .cloned()
        .ok_or_else(|| {
            let mut error = ApiError::bad_request(
                format!("Unknown service: {key}"),
                "Call gpu_catalog without a service to see them all.",
            );
            error.available_services = Some(app.scheduler.catalog().service_keys());
            error
        })
}

/// With accounts on, the tools that run or read jobs need the caller's key; the
/// account it names, or `None` on a deployment without accounts.
fn require_key(
    app: &App,
    credentials: Credentials,
    tool: &str,
) -> Result<Option<gpubridge_protocol::AccountId>, ApiError> {
    if app.accounts.is_none() {
        return Ok(None);
    }
    match app.access.identify_credentials(credentials)?.account {
        Some(account) => Ok(Some(account)),
        None => {
            let mut error = unauthorized(&format!("{tool} needs an API key"));
            error.hint = "Connect with the header Authorization: Bearer gpub_… (POST /account/register gives a key). \
                Agents without an account can pay per request in USDC over HTTP instead: POST /run with an x402 payment (GET /catalog, payment.x402)."
                .into();
            Err(error)
        }
    }
}

fn no_accounts() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "Accounts are disabled on this deployment",
        "Jobs run without a key here; there is no balance to show.",
    )
}

/// A tool's arguments as their type; a wrong or unknown one is named.
fn args<T: DeserializeOwned>(arguments: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(arguments).map_err(|e| {
        let path = e.path().to_string();
        ApiError::bad_request(
            format!("Invalid arguments: {}", e.into_inner()),
            "tools/list shows each tool's input schema.",
        )
        .with_field(&path)
    })
}

fn to_value<T: Serialize>(view: &T) -> Result<Value, ApiError> {
    serde_json::to_value(view).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("The answer could not be encoded: {e}"),
            "Report this.",
        )
    })
}
