//! Card top-ups. `POST /account/topup {package}` opens a Stripe Checkout
//! Session and answers where to send the payer; `POST /account/auto-topup`
//! sets automatic top-ups on the saved card; `POST /webhooks/stripe` is
//! where Stripe says it was paid (or refunded, or disputed), signed: nothing is
//! read before the signature is checked.

use crate::app::{json, App, HttpResponse};
use crate::body;
use crate::error::ApiError;
use crate::handlers::unknown_package;
use crate::requests::{AutoTopupBody, TopupBody};
use crate::views::{AutoTopupView, CheckoutOpened};
use gpubridge_billing::card::{CardError, Cards, EventError, Handled};
use gpubridge_billing::{AccountError, Accounts, AutoTopup};
use gpubridge_protocol::{AccountId, Micros};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;
use std::sync::Arc;

pub(crate) fn cards(app: &App) -> Result<&Arc<Cards>, ApiError> {
    app.cards.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "Card top-ups are not enabled on this deployment",
            "Top up with USDC (POST /account/topup-crypto) where it is on, or ask the operator; they enable cards with STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET.",
        )
    })
}

pub async fn open(app: &App, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let account = app.access.require(request.headers())?;
    let cards = cards(app)?;
    let base = app.http.public_base(request.headers());
    let topup: TopupBody = body::read(request).await?;
    let checkout = cards
        .checkout(account, &topup.package, &base)
        .await
        .map_err(card_error)?;
    Ok(json(StatusCode::CREATED, &CheckoutOpened::of(&checkout)))
}

/// Highest automatic top-up threshold, in dollars.
const MAX_THRESHOLD: f64 = 10_000.0;

/// `POST /account/auto-topup {enabled, threshold, package}`: buy `package` by
/// card whenever a settlement leaves the balance below `threshold`.
pub async fn auto_topup(
    app: &App,
    accounts: &Accounts,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let account = app.access.require(request.headers())?;
    cards(app)?;
    let body: AutoTopupBody = body::read(request).await?;
    let (settings, card_saved) = apply_auto_topup(app, accounts, account, &body).await?;
    Ok(json(
        StatusCode::OK,
        &AutoTopupView::of(&settings, card_saved),
    ))
}

/// Checks and stores automatic top-up settings (the API's and the
/// dashboard's); they and whether a card is saved.
pub(crate) async fn apply_auto_topup(
    app: &App,
    accounts: &Accounts,
    account: AccountId,
    body: &AutoTopupBody,
) -> Result<(AutoTopup, bool), ApiError> {
    let cards = cards(app)?;
    let previous = accounts.auto_topup(account);
    let settings = match body.enabled {
        true => enabled_settings(body)?,
        // Off keeps what was set, for turning it on again.
        false => AutoTopup {
            enabled: false,
            disabled_reason: None,
            threshold: previous.as_ref().map_or(Micros::ZERO, |p| p.threshold),
            package: previous.map_or_else(|| "credits_10".into(), |p| p.package),
        },
    };
    let card_saved = cards.has_saved_card(account).await.map_err(card_error)?;
    if settings.enabled && !card_saved {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Automatic top-ups need a saved card",
            "Top up by card once (POST /account/topup): Checkout saves the card for automatic top-ups.",
        ));
    }
    accounts
        .set_auto_topup(account, Some(settings.clone()))
        .await
        .map_err(crate::access::account_error)?;
    Ok((settings, card_saved))
}

fn enabled_settings(body: &AutoTopupBody) -> Result<AutoTopup, ApiError> {
    let threshold = body
        .threshold
        .filter(|t| t.is_finite() && *t > 0.0 && *t <= MAX_THRESHOLD)
        .and_then(|t| Micros::from_dollars(t).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "threshold must be a dollar amount above 0 and at most 10000",
                "Send {\"enabled\": true, \"threshold\": 1.00, \"package\": \"credits_10\"}.",
            )
            .with_field("threshold")
        })?;
    let package = body.package.as_deref().unwrap_or_default();
    if gpubridge_billing::package(package).is_none() {
        return Err(unknown_package(package));
    }
    Ok(AutoTopup {
        enabled: true,
        threshold,
        package: package.to_string(),
        disabled_reason: None,
    })
}

pub(crate) fn card_error(error: CardError) -> ApiError {
    match error {
        CardError::UnknownPackage(package) => unknown_package(&package),
        CardError::Store(e) => ApiError::from_store(&e, "Nothing was charged; retry shortly."),
        other => {
            tracing::warn!(error = %other, "card top-up failed");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "The card processor could not open a payment page",
                "Nothing was charged; retry shortly.",
            )
            .retry_after(5)
        }
    }
}

/// Stripe's deliveries. 2xx once handled (or deliberately ignored), so Stripe
/// stops; 400 for what is not a genuine event; 503 when it should come again.
pub async fn webhook(app: &App, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let Some(cards) = app.cards.as_ref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Card payments are not enabled on this deployment",
            "Remove this endpoint from the Stripe dashboard, or set STRIPE_SECRET_KEY.",
        ));
    };
    let (parts, incoming) = request.into_parts();
    let signature = parts
        .headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = body::read_limited(incoming, &parts).await?;
    match cards.handle_event(signature.as_deref(), &bytes).await {
        Ok(handled) => Ok(json(StatusCode::OK, &json!({"received": true, "outcome": outcome(&handled)}))),
        Err(EventError::Card(CardError::Account(AccountError::UnknownAccount))) => {
            tracing::error!("a Stripe payment names an account that does not exist");
            Ok(json(StatusCode::OK, &json!({"received": true, "outcome": "ignored: unknown account"})))
        }
        Err(e @ (EventError::Unsigned | EventError::Signature(_) | EventError::Unparsable(_))) => {
            Err(ApiError::bad_request(
                e.to_string(),
                "Stripe signs each event with the endpoint's secret (Stripe-Signature: t=…,v1=…); nothing was changed.",
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "a Stripe event could not be handled; Stripe will send it again");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The event could not be handled right now",
                "Stripe retries; nothing was changed.",
            )
            .retry_after(5))
        }
    }
}

fn outcome(handled: &Handled) -> String {
    match handled {
        Handled::Credited { credits, .. } => format!("credited {credits}"),
        Handled::AlreadyDone => "already handled".into(),
        Handled::Debited { amount, .. } => format!("debited {amount}"),
        Handled::Ignored(why) => format!("ignored: {why}"),
    }
}
