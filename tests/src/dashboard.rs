//! Using the web dashboard over plain HTTP, as a browser without JavaScript
//! would: sign in (the sign-in cookie's token echoed), keep the session
//! cookie, read pages, and post forms with the session's CSRF token.

use crate::{JsonClient, Reply};
use hyper::Method;

pub struct DashboardSession {
    client: JsonClient,
    base: String,
    /// `gpub_session=…`
    cookie: String,
    csrf: String,
}

/// The `name=value` of a `Set-Cookie` the reply carries.
pub fn set_cookie(reply: &Reply, name: &str) -> String {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .to_string()
}

/// The text between `start` and the next `end`.
pub fn between(text: &str, start: &str, end: &str) -> String {
    let from = text.find(start).map(|i| i + start.len()).unwrap_or(0);
    let to = text[from..].find(end).map_or(text.len(), |i| from + i);
    text[from..to].to_string()
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

impl DashboardSession {
    pub async fn sign_in(base: &str, email: &str, key: &str) -> DashboardSession {
        let client = JsonClient::new();
        let url = format!("{base}/account/dashboard");
        let page = client
            .send(Method::GET, &url, &[], Vec::new())
            .await
            .expect("sign-in page");
        let signin = set_cookie(&page, "gpub_signin");
        let token = signin.trim_start_matches("gpub_signin=").to_string();
        let body = format!(
            "email={}&api_key={key}&csrf={token}",
            url::form_urlencoded::byte_serialize(email.as_bytes()).collect::<String>()
        );
        let login = client
            .send(
                Method::POST,
                &format!("{url}/login"),
                &[FORM, ("cookie", &signin)],
                body,
            )
            .await
            .expect("sign-in");
        assert_eq!(login.status, 303, "sign-in refused");
        let mut session = DashboardSession {
            cookie: set_cookie(&login, "gpub_session"),
            client,
            base: base.to_string(),
            csrf: String::new(),
        };
        let home = session.page("").await;
        session.csrf = between(&home, "name=csrf value=\"", "\"");
        session
    }

    /// The HTML of `/account/dashboard{path}`.
    pub async fn page(&self, path: &str) -> String {
        let url = format!("{}/account/dashboard{path}", self.base);
        let reply = self
            .client
            .send(Method::GET, &url, &[("cookie", &self.cookie)], Vec::new())
            .await
            .expect("dashboard page");
        String::from_utf8_lossy(&reply.raw).to_string()
    }

    /// Posts `fields` (form-encoded) to `/account/dashboard/{action}` with the CSRF token.
    pub async fn post(&self, action: &str, fields: &str) -> Reply {
        let url = format!("{}/account/dashboard/{action}", self.base);
        let body = format!("csrf={}&{fields}", self.csrf);
        self.client
            .send(Method::POST, &url, &[FORM, ("cookie", &self.cookie)], body)
            .await
            .expect("dashboard form")
    }
}
