//! `/account/dashboard`: the account's web pages, served by the daemon as plain
//! HTML — forms that work without JavaScript, no external assets, readable on a
//! phone. Sign in with email and API key; a server-side session in an
//! `HttpOnly`, `SameSite=Strict` cookie; a CSRF token in every form.
//!
//! Where to add what: a page in `pages`, what a form does in `actions` (and its
//! name in [`handle`]), markup helpers in `html`, the chart in `chart`.

mod actions;
mod chart;
mod html;
mod pages;
mod session;

use crate::app::{App, HttpResponse};
use crate::body;
use html::{problem, respond, see_other};
use hyper::body::Incoming;
use hyper::header::SET_COOKIE;
use hyper::{Method, Request, StatusCode};
use session::{cookie, same, set_cookie, Sessions, SESSION, SIGN_IN};
use std::collections::HashMap;

/// The dashboard's state: its open sessions.
#[derive(Default)]
pub struct Dashboard {
    sessions: Sessions,
}

impl Dashboard {
    /// Cookies are `Secure` when clients reach the daemon over TLS.
    fn secure(&self, app: &App) -> bool {
        app.tls.is_some()
            || app
                .http
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
    }
}

/// A posted form's fields; a missing one reads as empty.
pub struct Form(HashMap<String, String>);

impl Form {
    fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }
}

pub async fn handle(app: &App, request: Request<Incoming>, page: &str) -> HttpResponse {
    let Some(accounts) = app.accounts.clone() else {
        return problem(
            StatusCode::NOT_FOUND,
            "Accounts are disabled on this deployment.",
        );
    };
    let (parts, incoming) = request.into_parts();
    let session = cookie(&parts.headers, SESSION).and_then(|id| {
        app.dashboard
            .sessions
            .get(id, |a| accounts.key_rotated_ms(a))
    });
    let query = parts.uri.query().unwrap_or_default();
    match (&parts.method, page) {
        (&Method::GET | &Method::HEAD, "") => match session {
            Some(session) => {
                let shown = pages::home(app, &accounts, &session, notice(query)).await;
                shown.map_or_else(
                    |e| problem(e.status, &e.error),
                    |p| respond(StatusCode::OK, p),
                )
            }
            None => sign_in_page(app),
        },
        (&Method::GET | &Method::HEAD, "jobs") => match session {
            Some(session) => {
                let offset = body::query_number(query, "offset", 0, usize::MAX).unwrap_or(0);
                let shown = pages::jobs(app, &accounts, &session, offset as u64).await;
                shown.map_or_else(
                    |e| problem(e.status, &e.error),
                    |p| respond(StatusCode::OK, p),
                )
            }
            None => see_other("/account/dashboard"),
        },
        (&Method::POST, action) => {
            let form = match body::read_limited(incoming, &parts).await {
                Ok(bytes) => Form(url::form_urlencoded::parse(&bytes).into_owned().collect()),
                Err(e) => return problem(e.status, &e.error),
            };
            if action == "login" {
                return actions::sign_in(app, &accounts, &parts.headers, &form).await;
            }
            let Some(session) = session else {
                return problem(
                    StatusCode::UNAUTHORIZED,
                    "Your session has ended: sign in again.",
                );
            };
            if !same(&session.csrf, form.get("csrf")) {
                return problem(
                    StatusCode::FORBIDDEN,
                    "This form is missing its security token: reload the dashboard and try again.",
                );
            }
            if action == "logout" {
                return actions::sign_out(app, &parts.headers);
            }
            let base = app.http.public_base(&parts.headers);
            actions::act(app, &accounts, &session, action, &form, &base).await
        }
        (&Method::GET | &Method::HEAD, _) => {
            problem(StatusCode::NOT_FOUND, "No such dashboard page.")
        }
        _ => problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "The dashboard takes GET and POST.",
        ),
    }
}

/// The sign-in form, with a fresh token in its cookie and its form.
fn sign_in_page(app: &App) -> HttpResponse {
    let Some(token) = session::random_token() else {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "Retry in a moment.");
    };
    let mut response = respond(StatusCode::OK, pages::sign_in(&token, None));
    let secure = app.dashboard.secure(app);
    response
        .headers_mut()
        .append(SET_COOKIE, set_cookie(SIGN_IN, &token, 3600, secure));
    response
}

/// What a redirect back says happened (fixed texts: nothing from the URL is shown).
fn notice(query: &str) -> Option<&'static str> {
    let value = |name: &str| body::query_text(query, name);
    match (value("notice").as_deref(), value("topup").as_deref()) {
        (Some("limit"), _) => Some("Daily limit saved."),
        (Some("auto-topup"), _) => Some("Automatic top-up saved."),
        (Some("webhook-secret"), _) => {
            Some("Webhook secret replaced: deliveries are signed with the new one.")
        }
        (_, Some("success")) => Some("Thank you: your payment is being credited."),
        (_, Some("cancelled")) => Some("The payment was cancelled; nothing was charged."),
        _ => None,
    }
}
