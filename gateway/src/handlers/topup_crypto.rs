//! `POST /account/topup-crypto {package}`: where to send how much USDC for a
//! package; the watcher credits it once confirmed. `POST
//! /account/topup-crypto/claim {tx_hash, signature}`: credit a deposit that paid
//! no top-up, at the base rate less the fee, to the account its sender names.

use crate::app::{json, App, HttpResponse};
use crate::body;
use crate::error::ApiError;
use crate::handlers::unknown_package;
use crate::requests::{ClaimBody, TopupBody};
use crate::views::{TopupClaimed, TopupOpened, TopupView};
use gpubridge_billing::deposits::{claim_message, ClaimError, CreditError, Deposits, TopupError};
use gpubridge_billing::x402::{network_v1, Refusal};
use gpubridge_billing::Accounts;
use gpubridge_protocol::AccountId;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;
use std::sync::Arc;

fn deposits(app: &App) -> Result<&Arc<Deposits>, ApiError> {
    app.deposits.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "USDC top-ups are not enabled on this deployment",
            "The operator enables them with GPUBRIDGE_BASE_RPC_URL and GPUBRIDGE_X402_PAY_TO.",
        )
    })
}

pub async fn open(app: &App, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let account = app.access.require(request.headers())?;
    deposits(app)?;
    let topup: TopupBody = body::read(request).await?;
    Ok(json(
        StatusCode::CREATED,
        &open_for(app, account, &topup.package).await?,
    ))
}

/// Opens a USDC top-up of `package` (the API's and the dashboard's).
pub(crate) async fn open_for(
    app: &App,
    account: AccountId,
    package: &str,
) -> Result<TopupOpened, ApiError> {
    let deposits = deposits(app)?;
    let record = deposits
        .open_topup(account, package)
        .await
        .map_err(|e| match e {
            TopupError::UnknownPackage(package) => unknown_package(&package),
            TopupError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                e.to_string(),
                "Retry in a minute.",
            )
            .retry_after(60),
            TopupError::Store(e) => ApiError::from_store(&e, "Nothing was opened; retry shortly."),
        })?;
    let rules = deposits.x402().rules();
    Ok(TopupOpened::of(&record, rules, network_v1(rules.chain_id)))
}

pub async fn claim(
    app: &App,
    accounts: &Accounts,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let account = app.access.require(request.headers())?;
    let deposits = deposits(app)?;
    let body: ClaimBody = body::read(request).await?;
    let tx = body.tx_hash.parse().map_err(|_| {
        ApiError::bad_request(
            "tx_hash must be 0x and 64 hex digits",
            "Send the deposit's transaction hash.",
        )
        .with_field("tx_hash")
    })?;
    let to_sign = claim_message(account, tx);
    let Some(signature) = body.signature.as_deref() else {
        return Err(ApiError::bad_request(
            "signature is required: sign the message in details with the address that sent the deposit",
            "personal_sign (EIP-191) details.message with the sending wallet, then send {\"tx_hash\", \"signature\"}.",
        )
        .with_details(json!({"field": "signature", "message": to_sign})));
    };
    let signature = signature.parse().map_err(|_| {
        ApiError::bad_request(
            "signature must be a 65-byte hex signature",
            "Send the 0x… signature personal_sign returned.",
        )
        .with_details(json!({"field": "signature", "message": to_sign}))
    })?;
    let credited = deposits
        .claim(account, tx, &signature)
        .await
        .map_err(|e| claim_error(e, account, &to_sign))?;
    let view = accounts
        .view(account)
        .map_err(crate::access::account_error)?;
    Ok(json(
        StatusCode::OK,
        &TopupClaimed {
            credited_usd: credited.as_dollars(),
            balance: view.balance.as_dollars(),
            transaction: tx.to_string(),
        },
    ))
}

fn claim_error(error: ClaimError, account: AccountId, message: &str) -> ApiError {
    let text = error.to_string();
    let retry = "Retry the same claim once it is mined and confirmed.";
    match error {
        ClaimError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, text, retry).retry_after(2),
        ClaimError::Unconfirmed { has, needs } => ApiError::new(StatusCode::CONFLICT, text, retry)
            .with_details(json!({"confirmations": has, "required_confirmations": needs}))
            .retry_after(2),
        ClaimError::NoDeposit(_) => ApiError::bad_request(
            text,
            "Claim a transaction that sent the asset to the deposit address.",
        ),
        ClaimError::NotSender => ApiError::new(
            StatusCode::FORBIDDEN,
            text,
            "Sign details.message with the wallet that sent the deposit.",
        )
        .with_details(json!({"message": message, "account_id": account.to_string()})),
        ClaimError::PaysTopup(_) | ClaimError::AlreadyCredited | ClaimError::PaidForJob => {
            ApiError::new(
                StatusCode::CONFLICT,
                text,
                "Nothing more to credit for this transaction.",
            )
        }
        ClaimError::Credit(CreditError::Refused(Refusal::Sanctioned(_))) => ApiError::new(
            StatusCode::FORBIDDEN,
            text,
            "Deposits from addresses on the sanctions list are not credited.",
        ),
        ClaimError::Credit(CreditError::Refused(_)) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The chain's RPC node cannot be reached",
            "Retry shortly; nothing was credited.",
        )
        .retry_after(5),
        ClaimError::Credit(CreditError::Store(e)) => {
            ApiError::from_store(&e, "Retry shortly; nothing was credited.")
        }
        ClaimError::Credit(CreditError::Account(e)) => crate::access::account_error(e),
    }
}

/// How many top-ups the account views list.
const RECENT: usize = 10;

/// The account's latest top-ups, when top-ups are on.
pub async fn recent(app: &App, account: AccountId) -> Result<Option<Vec<TopupView>>, ApiError> {
    let Some(deposits) = &app.deposits else {
        return Ok(None);
    };
    let records = deposits
        .topups_of(account, RECENT)
        .await
        .map_err(|e| ApiError::from_store(&e, "Retry shortly."))?;
    Ok(Some(records.iter().map(TopupView::of).collect()))
}
