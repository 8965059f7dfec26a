//! What the dashboard's forms do. Every post is checked for its CSRF token
//! first (the session's; before sign-in, the sign-in cookie's); a success
//! redirects back (303) with a notice, a refusal shows the reason.

use super::html::{problem, respond, see_other};
use super::pages;
use super::session::{cookie, same, session_max_age, set_cookie, Session, SESSION, SIGN_IN};
use super::Form;
use crate::app::{App, HttpResponse};
use crate::error::ApiError;
use crate::handlers::topup_card::{apply_auto_topup, card_error, cards};
use crate::requests::AutoTopupBody;
use gpubridge_billing::Accounts;
use gpubridge_protocol::Micros;
use hyper::header::SET_COOKIE;
use hyper::{HeaderMap, StatusCode};

/// The same answer whether the email has no account or the key is wrong.
const NO_MATCH: &str = "That email and API key do not match an account.";

pub async fn sign_in(
    app: &App,
    accounts: &Accounts,
    headers: &HeaderMap,
    form: &Form,
) -> HttpResponse {
    let expected = cookie(headers, SIGN_IN).unwrap_or_default();
    if expected.is_empty() || !same(expected, form.get("csrf")) {
        return problem(
            StatusCode::FORBIDDEN,
            "The sign-in form expired; load it again.",
        );
    }
    let account = accounts
        .authenticate(form.get("api_key").trim())
        .filter(|id| {
            let email = form.get("email").trim().to_ascii_lowercase();
            accounts.view(*id).is_ok_and(|view| view.email == email)
        });
    let Some(account) = account else {
        let again = super::session::random_token().unwrap_or_default();
        let mut page = respond(
            StatusCode::UNAUTHORIZED,
            pages::sign_in(&again, Some(NO_MATCH)),
        );
        page.headers_mut().append(
            SET_COOKIE,
            set_cookie(SIGN_IN, &again, 3600, app.dashboard.secure(app)),
        );
        return page;
    };
    let rotated = accounts.key_rotated_ms(account).unwrap_or(0);
    let Some(id) = app.dashboard.sessions.open(account, rotated) else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Could not open a session; retry.",
        );
    };
    let secure = app.dashboard.secure(app);
    let mut response = see_other("/account/dashboard");
    let headers = response.headers_mut();
    headers.append(
        SET_COOKIE,
        set_cookie(SESSION, &id, session_max_age(), secure),
    );
    headers.append(SET_COOKIE, set_cookie(SIGN_IN, "", 0, secure));
    response
}

pub fn sign_out(app: &App, headers: &HeaderMap) -> HttpResponse {
    if let Some(id) = cookie(headers, SESSION) {
        app.dashboard.sessions.close(id);
    }
    let mut response = see_other("/account/dashboard");
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(SESSION, "", 0, app.dashboard.secure(app)),
    );
    response
}

/// A signed-in form post: `action` names it.
pub async fn act(
    app: &App,
    accounts: &Accounts,
    session: &Session,
    action: &str,
    form: &Form,
    base: &str,
) -> HttpResponse {
    let result = match action {
        "topup" => topup_card(app, session, form, base).await,
        "topup-crypto" => topup_crypto(app, session, form).await,
        "limit" => limit(accounts, session, form).await,
        "auto-topup" => auto_topup(app, accounts, session, form).await,
        "rotate-key" => rotate_key(app, accounts, session).await,
        "webhook-secret" => rotate_webhook_secret(accounts, session).await,
        _ => return problem(StatusCode::NOT_FOUND, "No such dashboard action."),
    };
    result.unwrap_or_else(|e| problem(e.status, &e.error))
}

async fn topup_card(
    app: &App,
    session: &Session,
    form: &Form,
    base: &str,
) -> Result<HttpResponse, ApiError> {
    let checkout = cards(app)?
        .checkout(session.account, form.get("package"), base)
        .await
        .map_err(card_error)?;
    Ok(see_other(&checkout.checkout_url))
}

async fn topup_crypto(app: &App, session: &Session, form: &Form) -> Result<HttpResponse, ApiError> {
    let opened =
        crate::handlers::topup_crypto::open_for(app, session.account, form.get("package")).await?;
    Ok(respond(StatusCode::OK, pages::crypto_topup(&opened)))
}

async fn limit(
    accounts: &Accounts,
    session: &Session,
    form: &Form,
) -> Result<HttpResponse, ApiError> {
    let limit = form
        .get("daily_limit")
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|d| Micros::from_dollars(d).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "The daily limit must be a dollar amount.",
                "From 1 to 10000.",
            )
        })?;
    accounts
        .set_daily_limit(session.account, limit)
        .await
        .map_err(crate::access::account_error)?;
    Ok(see_other("/account/dashboard?notice=limit"))
}

async fn auto_topup(
    app: &App,
    accounts: &Accounts,
    session: &Session,
    form: &Form,
) -> Result<HttpResponse, ApiError> {
    let body = AutoTopupBody {
        enabled: form.get("enabled") == "true",
        threshold: form.get("threshold").trim().parse().ok(),
        package: Some(form.get("package").to_string()),
    };
    apply_auto_topup(app, accounts, session.account, &body).await?;
    Ok(see_other("/account/dashboard?notice=auto-topup"))
}

async fn rotate_webhook_secret(
    accounts: &Accounts,
    session: &Session,
) -> Result<HttpResponse, ApiError> {
    accounts
        .rotate_webhook_secret(session.account)
        .await
        .map_err(crate::access::account_error)?;
    Ok(see_other("/account/dashboard?notice=webhook-secret"))
}

/// A new key, shown once; every session of the account ends with the old key.
async fn rotate_key(
    app: &App,
    accounts: &Accounts,
    session: &Session,
) -> Result<HttpResponse, ApiError> {
    let api_key = accounts
        .rotate_key(session.account)
        .await
        .map_err(crate::access::account_error)?;
    app.dashboard.sessions.close_all(session.account);
    let mut response = respond(StatusCode::OK, pages::new_key(&api_key));
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(SESSION, "", 0, app.dashboard.secure(app)),
    );
    Ok(response)
}
