//! The web dashboard in a real Chromium: sign in, top up by card through the
//! Stripe stand-in's Checkout page (its webhook credits the account), see the
//! balance and the ledger line, set the spending limit and automatic top-ups,
//! rotate the key (the old one is refused and the session ends). Over plain
//! HTTP: a wrong key says nothing about the email, and a form posted without
//! its CSRF token changes nothing.

use gpubridge_tests::accounts::{balance, micros, register};
use gpubridge_tests::browser::Browser;
use gpubridge_tests::dashboard::{between, set_cookie};
use gpubridge_tests::stripe::StripeStandin;
use gpubridge_tests::{DaemonOptions, InProcess, JsonClient};
use hyper::Method;

async fn daemon(dir: &std::path::Path, stripe: &StripeStandin) -> InProcess {
    let mut options = DaemonOptions::new(dir.join("data"));
    options.accounts = true;
    options.env = stripe.daemon_env();
    let daemon = InProcess::start(options).await;
    stripe.deliver_to(&daemon.url("/webhooks/stripe"));
    daemon
}

// WebDriver calls block on the browser: the daemon needs workers of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_tops_up_sets_limits_and_rotates_the_key_in_chromium() {
    let stripe = StripeStandin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path(), &stripe).await;
    let api = JsonClient::new();
    let account = register(&api, &daemon.base, "browser@example.com")
        .await
        .unwrap();
    let browser = Browser::start().await;
    let dashboard = daemon.url("/account/dashboard");

    // A wrong key and an unknown email get the same answer.
    browser.goto(&dashboard).await;
    browser
        .fill("input[name=email]", "browser@example.com")
        .await;
    browser
        .fill(
            "input[name=api_key]",
            "gpub_wrongwrongwrongwrongwrongwrongwrong",
        )
        .await;
    browser.click_and_wait("button[type=submit]").await;
    let wrong_key = browser.text("section.error").await;
    browser
        .fill("input[name=email]", "nobody@example.com")
        .await;
    browser.fill("input[name=api_key]", &account.key).await;
    browser.click_and_wait("button[type=submit]").await;
    let unknown_email = browser.text("section.error").await;
    assert!(wrong_key.contains("do not match"), "{wrong_key}");
    assert_eq!(wrong_key, unknown_email);

    browser
        .fill("input[name=email]", "Browser@Example.com")
        .await;
    browser.fill("input[name=api_key]", &account.key).await;
    browser.click_and_wait("button[type=submit]").await;
    browser.wait_for("#balance").await;
    assert_eq!(browser.text("#balance").await, "$0.00");

    // Top up by card: Checkout (the stand-in's page), paid, back with credits.
    browser
        .client
        .find(fantoccini::Locator::Css("form[action$='/topup'] select"))
        .await
        .unwrap()
        .select_by_value("credits_25")
        .await
        .unwrap();
    browser
        .click_and_wait("form[action$='/topup'] button")
        .await;
    browser.wait_for("#pay").await;
    assert!(
        browser.url().await.starts_with(&stripe.base_url()),
        "{}",
        browser.url().await
    );
    browser.click_and_wait("#pay").await;
    browser.wait_for("section.notice").await;
    assert!(browser
        .text("section.notice")
        .await
        .contains("being credited"));
    assert_eq!(browser.text("#balance").await, "$26.25");
    let ledger = browser.text("#ledger").await;
    assert!(
        ledger.contains("$26.25") && ledger.contains("card payment cs_"),
        "{ledger}"
    );
    let by_key = api.with_bearer(&account.key);
    assert_eq!(
        micros(&balance(&by_key, &daemon.base).await["balance"]),
        26_250_000
    );

    // The spending limit and automatic top-ups.
    browser.fill("input[name=daily_limit]", "20").await;
    browser
        .click_and_wait("form[action$='/limit'] button")
        .await;
    browser.wait_for("section.notice").await;
    assert_eq!(browser.text("section.notice").await, "Daily limit saved.");
    assert_eq!(browser.text("#daily-limit").await, "$20.00");
    browser.click("input[name=enabled]").await;
    browser.fill("input[name=threshold]", "5").await;
    browser
        .click_and_wait("form[action$='/auto-topup'] button")
        .await;
    browser.wait_for("section.notice").await;
    assert_eq!(
        browser.text("section.notice").await,
        "Automatic top-up saved."
    );
    let shown = balance(&by_key, &daemon.base).await;
    assert_eq!(micros(&shown["daily_limit"]), 20_000_000, "{shown}");
    assert_eq!(shown["auto_topup"]["enabled"], true, "{shown}");
    assert_eq!(micros(&shown["auto_topup"]["threshold"]), 5_000_000);

    // A phone-width screen needs no sideways scrolling.
    browser.client.set_window_size(390, 844).await.unwrap();
    let fits = browser
        .client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fits, serde_json::Value::Bool(true));

    // Rotating the key: shown once, the old key refused, the session over.
    browser
        .click_and_wait("form[action$='/rotate-key'] button")
        .await;
    browser.wait_for("#new-key").await;
    let new_key = browser.text("#new-key").await;
    assert!(new_key.starts_with("gpub_") && new_key != account.key);
    let old = by_key.get(&daemon.url("/account/balance")).await.unwrap();
    assert_eq!(old.status, 401, "{}", old.body);
    let new = api
        .with_bearer(&new_key)
        .get(&daemon.url("/account/balance"))
        .await
        .unwrap();
    assert_eq!(new.status, 200);
    browser.goto(&dashboard).await;
    browser.wait_for("input[name=api_key]").await;
    drop(browser);
    daemon.stop().await;
}

#[tokio::test]
async fn forms_without_their_csrf_token_change_nothing() {
    let stripe = StripeStandin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path(), &stripe).await;
    let api = JsonClient::new();
    let account = register(&api, &daemon.base, "csrf@example.com")
        .await
        .unwrap();
    let url = daemon.url("/account/dashboard");
    let form = [("content-type", "application/x-www-form-urlencoded")];

    let page = api.send(Method::GET, &url, &[], Vec::new()).await.unwrap();
    let signin = set_cookie(&page, "gpub_signin");
    let token = signin.trim_start_matches("gpub_signin=");
    assert!(String::from_utf8_lossy(&page.raw).contains(token));
    let cookie_rules = page.headers["set-cookie"].to_str().unwrap();
    assert!(cookie_rules.contains("HttpOnly") && cookie_rules.contains("SameSite=Strict"));

    // Sign-in needs the token its form was given.
    let body = format!("email=csrf%40example.com&api_key={}", account.key);
    let forged = api
        .send(
            Method::POST,
            &format!("{url}/login"),
            &[form[0], ("cookie", &signin)],
            body.clone(),
        )
        .await
        .unwrap();
    assert_eq!(forged.status, 403);
    let body = format!("{body}&csrf={token}");
    let signed_in = api
        .send(
            Method::POST,
            &format!("{url}/login"),
            &[form[0], ("cookie", &signin)],
            body,
        )
        .await
        .unwrap();
    assert_eq!(signed_in.status, 303);
    let session = set_cookie(&signed_in, "gpub_session");
    assert!(session.len() > "gpub_session=".len());

    // A signed-in post without the session's token, or with another, is refused.
    for body in ["daily_limit=5", "daily_limit=5&csrf=not-the-token"] {
        let refused = api
            .send(
                Method::POST,
                &format!("{url}/limit"),
                &[form[0], ("cookie", &session)],
                body,
            )
            .await
            .unwrap();
        assert_eq!(refused.status, 403, "{body}");
    }
    let shown = balance(&api.with_bearer(&account.key), &daemon.base).await;
    assert_eq!(
        micros(&shown["daily_limit"]),
        50_000_000,
        "unchanged: {shown}"
    );
    // No session at all: told to sign in.
    let anonymous = api
        .send(
            Method::POST,
            &format!("{url}/limit"),
            &[form[0]],
            "daily_limit=5",
        )
        .await
        .unwrap();
    assert_eq!(anonymous.status, 401);

    // The page's own token works; the webhook secret is shown and replaced.
    let home = api
        .send(Method::GET, &url, &[("cookie", &session)], Vec::new())
        .await
        .unwrap();
    let html = String::from_utf8_lossy(&home.raw).to_string();
    let csrf = between(&html, "name=csrf value=\"", "\"");
    assert!(
        html.contains(&account.webhook_secret),
        "the webhook secret is shown"
    );
    let rotated = api
        .send(
            Method::POST,
            &format!("{url}/webhook-secret"),
            &[form[0], ("cookie", &session)],
            format!("csrf={csrf}"),
        )
        .await
        .unwrap();
    assert_eq!(rotated.status, 303);
    let back = rotated.headers["location"].to_str().unwrap();
    assert_eq!(back, "/account/dashboard?notice=webhook-secret");
    let home = api
        .send(
            Method::GET,
            &daemon.url(back),
            &[("cookie", &session)],
            Vec::new(),
        )
        .await
        .unwrap();
    let html = String::from_utf8_lossy(&home.raw).to_string();
    assert!(html.contains("Webhook secret replaced"), "{html}");
    assert!(!html.contains(&account.webhook_secret), "a new secret");

    // History a page at a time.
    let runner = api.with_bearer(&account.key);
    for n in 0..30 {
        let body = serde_json::json!({"service": "echo", "input": {"n": n}});
        let reply = runner
            .post_json(&daemon.url("/run"), &body, &[])
            .await
            .unwrap();
        assert_eq!(reply.status, 202);
    }
    let mut pages = Vec::new();
    for offset in [0, 25] {
        let reply = api
            .send(
                Method::GET,
                &format!("{url}/jobs?offset={offset}"),
                &[("cookie", &session)],
                Vec::new(),
            )
            .await
            .unwrap();
        pages.push(String::from_utf8_lossy(&reply.raw).to_string());
    }
    assert_eq!(
        pages[0].matches("<tr><td>echo</td>").count(),
        25,
        "{}",
        pages[0]
    );
    assert!(pages[0].contains("offset=25\">Older") && !pages[0].contains("Newer"));
    assert_eq!(pages[1].matches("<tr><td>echo</td>").count(), 5);
    assert!(pages[1].contains("offset=0\">Newer") && !pages[1].contains("Older"));

    // Signing out ends the session.
    let out = api
        .send(
            Method::POST,
            &format!("{url}/logout"),
            &[form[0], ("cookie", &session)],
            format!("csrf={csrf}"),
        )
        .await
        .unwrap();
    assert_eq!(out.status, 303);
    let after = api
        .send(Method::GET, &url, &[("cookie", &session)], Vec::new())
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&after.raw).contains("name=api_key"),
        "the sign-in form again"
    );
    daemon.stop().await;
}
