//! Card top-ups against a Stripe stand-in: Checkout opened as Stripe expects
//! it, the package credited once however often (and however concurrently) its
//! webhook arrives, refunds and disputes taken back (into a debt that blocks
//! paid jobs), and every delivery that is not a genuine, fresh, signed event
//! refused without a change. The books are audited at the end.

use gpubridge_tests::accounts::{audit_live, balance, micros, register, TestAccount};
use gpubridge_tests::dashboard::DashboardSession;
use gpubridge_tests::stripe::{stripe_signature, IntentMode, StripeStandin};
use gpubridge_tests::{providers_config, DaemonOptions, InProcess, JsonClient, Standin};
use serde_json::{json, Value};

use gpubridge_tests::stripe::WEBHOOK_SECRET;

struct Setup {
    stripe: StripeStandin,
    _provider: Standin,
    daemon: InProcess,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    setup_with("").await
}

async fn setup_with(extra_config: &str) -> Setup {
    let stripe = StripeStandin::start().await;
    let provider = Standin::start("k").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = providers_config(&provider.base_url(), "k", &["groq"]) + extra_config;
    let mut options = DaemonOptions::new(dir.path().join("data"));
    options.config = Some(&config);
    options.accounts = true;
    options.env = stripe.daemon_env();
    let daemon = InProcess::start(options).await;
    stripe.deliver_to(&daemon.url("/webhooks/stripe"));
    Setup {
        stripe,
        _provider: provider,
        daemon,
        _dir: dir,
    }
}

async fn topup(client: &JsonClient, base: &str, package: &str) -> (u16, Value) {
    let reply = client
        .post_json(
            &format!("{base}/account/topup"),
            &json!({"package": package}),
            &[],
        )
        .await
        .unwrap();
    (reply.status.as_u16(), reply.body)
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_card_top_up_is_credited_once_and_taken_back_by_refunds_and_disputes() {
    let s = setup().await;
    let base = s.daemon.base.clone();
    let anonymous = JsonClient::new();
    let TestAccount { id, key, .. } = register(&anonymous, &base, "card@example.com")
        .await
        .unwrap();
    let client = anonymous.with_bearer(&key);

    // Opening: a Checkout Session for the package, for this account's customer.
    assert_eq!(topup(&anonymous, &base, "credits_25").await.0, 401);
    let (status, body) = topup(&client, &base, "credits_7").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["details"]["packages"].is_array(), "{body}");
    let (status, opened) = topup(&client, &base, "credits_25").await;
    assert_eq!(status, 201, "{opened}");
    assert_eq!(
        (
            opened["amount_usd"].as_f64(),
            opened["credits_usd"].as_f64()
        ),
        (Some(25.0), Some(26.25))
    );
    let session_id = opened["session_id"].as_str().unwrap().to_string();
    assert_eq!(
        opened["checkout_url"],
        format!("{}/pay/{session_id}", s.stripe.base_url())
    );
    let calls = s.stripe.calls();
    assert!(
        calls.iter().all(|c| c.idempotency_key.is_some()),
        "{calls:?}"
    );
    assert_eq!(calls[0].path, "/v1/customers");
    assert_eq!(calls[0].form["email"], "card@example.com");
    let session = &calls[1].form;
    assert_eq!(calls[1].path, "/v1/checkout/sessions");
    assert_eq!(session["client_reference_id"], id);
    assert_eq!(session["metadata[package]"], "credits_25");
    assert_eq!(session["line_items[0][price_data][unit_amount]"], "2500");
    assert_eq!(session["line_items[0][price_data][currency]"], "usd");
    assert_eq!(
        session["payment_intent_data[setup_future_usage]"],
        "off_session"
    );
    assert_eq!(
        session["success_url"],
        format!("{base}/account/dashboard?topup=success")
    );
    // A second top-up reuses the account's Stripe customer.
    let (_, again) = topup(&client, &base, "credits_10").await;
    let customers = s
        .stripe
        .calls()
        .iter()
        .filter(|c| c.path == "/v1/customers")
        .count();
    assert_eq!(customers, 1);
    assert_eq!(
        s.stripe
            .session(again["session_id"].as_str().unwrap())
            .unwrap()["customer"],
        s.stripe.session(&session_id).unwrap()["customer"]
    );

    // Paid: credited once, whatever the deliveries.
    let (event, status) = s.stripe.pay(&session_id).await;
    assert_eq!(status, 200);
    assert_eq!(
        micros(&balance(&client, &base).await["balance"]),
        26_250_000
    );
    let statuses = s.stripe.deliver_concurrently(&event, 8).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let now = balance(&client, &base).await;
    assert_eq!(micros(&now["balance"]), 26_250_000, "{now}");
    assert_eq!(micros(&now["credits"]), 26_250_000, "{now}");

    // Spend a little, then the card is refunded in part and disputed in full:
    // the credits go back, leaving what was spent as a debt.
    let job = client
        .post_json(
            &format!("{base}/run"),
            &json!({"service": "llm-4090", "input": {"prompt": "x"}}),
            &[("prefer", "wait=10")],
        )
        .await
        .unwrap();
    assert_eq!(job.status, 200, "{}", job.body);
    let spent = micros(&job.body["charged_usd"]);
    assert!(spent > 0);
    let intent = s.stripe.session(&session_id).unwrap()["payment_intent"]
        .as_str()
        .unwrap()
        .to_string();
    let refund = s.stripe.refund_event(&intent, 1_250);
    assert_eq!(s.stripe.deliver(&refund).await, 200);
    assert_eq!(
        s.stripe.deliver(&refund).await,
        200,
        "a repeated refund is no second debit"
    );
    let now = balance(&client, &base).await;
    assert_eq!(
        micros(&now["balance"]),
        26_250_000 - 13_125_000 - spent,
        "{now}"
    );
    let dispute = s.stripe.dispute_event(&intent, 2_500);
    assert_eq!(s.stripe.deliver(&dispute).await, 200);
    let now = balance(&client, &base).await;
    assert_eq!(micros(&now["balance"]), -spent, "in debt: {now}");
    assert_eq!(micros(&now["debits"]), 26_250_000);
    let refused = client
        .post_json(
            &format!("{base}/run"),
            &json!({"service": "llm-4090", "input": {"prompt": "y"}}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        refused.status, 402,
        "a debt blocks paid jobs: {}",
        refused.body
    );

    let audit = audit_live(&base).await;
    assert_eq!(audit["problems"], json!([]), "{audit}");
    assert_eq!(audit["card_payments"], 1);
    assert_eq!(audit["card_debits_micros"], 26_250_000);
}

#[tokio::test]
async fn only_genuine_fresh_events_change_anything() {
    let s = setup().await;
    let base = s.daemon.base.clone();
    let anonymous = JsonClient::new();
    let account = register(&anonymous, &base, "forger@example.com")
        .await
        .unwrap();
    let client = anonymous.with_bearer(&account.key);
    let (_, opened) = topup(&client, &base, "credits_10").await;
    let session_id = opened["session_id"].as_str().unwrap();
    let mut session = s.stripe.session(session_id).unwrap();
    session["payment_status"] = json!("paid");
    session["payment_intent"] = json!("pi_forged");
    let event = s.stripe.event("checkout.session.completed", session);
    let body = event.to_string().into_bytes();

    // The signature here is computed independently of the daemon's code and
    // must be accepted: checked first on a harmless event type.
    let harmless = s.stripe.event("customer.created", json!({"id": "cus_x"}));
    assert_eq!(
        s.stripe.deliver(&harmless).await,
        200,
        "unknown types are acknowledged"
    );

    let now = now_seconds();
    let refusals = [
        (None, "no signature"),
        (
            Some(stripe_signature("whsec_wrong", now, &body)),
            "another secret",
        ),
        (
            Some(stripe_signature(WEBHOOK_SECRET, now - 600, &body)),
            "ten minutes old",
        ),
        (
            Some(stripe_signature(WEBHOOK_SECRET, now, b"{}")),
            "another body",
        ),
        (Some("t=abc,v1=zz".to_string()), "malformed"),
    ];
    for (signature, why) in refusals {
        let status = s
            .stripe
            .deliver_raw(body.clone(), signature.as_deref())
            .await;
        assert_eq!(status, 400, "{why}");
    }
    let garbage = b"not json".to_vec();
    let signed = stripe_signature(WEBHOOK_SECRET, now, &garbage);
    assert_eq!(
        s.stripe.deliver_raw(garbage, Some(&signed)).await,
        400,
        "signed garbage"
    );
    assert_eq!(
        micros(&balance(&client, &base).await["balance"]),
        0,
        "nothing was credited"
    );

    // The same event, genuinely signed, is credited.
    let signed = stripe_signature(WEBHOOK_SECRET, now_seconds(), &body);
    assert_eq!(s.stripe.deliver_raw(body, Some(&signed)).await, 200);
    assert_eq!(
        micros(&balance(&client, &base).await["balance"]),
        10_000_000
    );
}

#[tokio::test]
async fn without_stripe_keys_card_top_ups_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DaemonOptions::new(dir.path().join("data"));
    options.accounts = true;
    let daemon = InProcess::start(options).await;
    let anonymous = JsonClient::new();
    let account = register(&anonymous, &daemon.base, "nocard@example.com")
        .await
        .unwrap();
    let (status, body) = topup(
        &anonymous.with_bearer(&account.key),
        &daemon.base,
        "credits_10",
    )
    .await;
    assert_eq!(status, 501, "{body}");
    assert!(body["hint"].as_str().unwrap().contains("STRIPE_SECRET_KEY"));
    daemon.stop().await;
}

/// Tops up `package` by card for `client`'s account, through Checkout.
async fn paid_by_card(s: &Setup, client: &JsonClient, package: &str) {
    let (status, opened) = topup(client, &s.daemon.base, package).await;
    assert_eq!(status, 201, "{opened}");
    let (_, delivered) = s.stripe.pay(opened["session_id"].as_str().unwrap()).await;
    assert_eq!(delivered, 200);
}

async fn auto_topup(client: &JsonClient, base: &str, body: Value) -> (u16, Value) {
    let reply = client
        .post_json(&format!("{base}/account/auto-topup"), &body, &[])
        .await
        .unwrap();
    (reply.status.as_u16(), reply.body)
}

/// Runs one paid job to its end: a settlement, which checks the threshold.
async fn spend(client: &JsonClient, base: &str) {
    let job = client
        .post_json(
            &format!("{base}/run"),
            &json!({"service": "llm-4090", "input": {"prompt": "z"}}),
            &[("prefer", "wait=10")],
        )
        .await
        .unwrap();
    assert_eq!(job.status, 200, "{}", job.body);
}

async fn until_intents(s: &Setup, n: usize) {
    for _ in 0..500 {
        if s.stripe.intent_calls().len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!(
        "expected {n} automatic top-ups: {:?}",
        s.stripe.intent_calls()
    );
}

#[tokio::test]
async fn automatic_top_ups_charge_the_saved_card_one_at_a_time_within_a_daily_cap() {
    let s = setup_with("[stripe]\nauto_topups_per_day = 2\n").await;
    let base = s.daemon.base.clone();
    let anonymous = JsonClient::new();
    let account = register(&anonymous, &base, "auto@example.com")
        .await
        .unwrap();
    let client = anonymous.with_bearer(&account.key);
    let on =
        |threshold: f64| json!({"enabled": true, "threshold": threshold, "package": "credits_10"});

    // Settings are checked, and need a card saved by a Checkout top-up.
    let (status, body) = auto_topup(&client, &base, on(1.0)).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["hint"].as_str().unwrap().contains("/account/topup"),
        "{body}"
    );
    for bad in [
        json!({"enabled": true, "threshold": -1, "package": "credits_10"}),
        json!({"enabled": true, "threshold": 1, "package": "credits_7"}),
        json!({"enabled": true, "threshold": 1}),
        json!({"enabled": "yes"}),
    ] {
        assert_eq!(
            auto_topup(&client, &base, bad.clone()).await.0,
            400,
            "{bad}"
        );
    }
    paid_by_card(&s, &client, "credits_10").await;
    let (status, body) = auto_topup(&client, &base, on(9.999)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["enabled"].as_bool(), body["card_saved"].as_bool()),
        (Some(true), Some(true))
    );
    assert!(
        s.stripe.intent_calls().is_empty(),
        "$10 is not below $9.999"
    );

    // A settlement leaves the balance below the threshold: one payment, and
    // only one while it is in flight, however many settlements follow.
    s.stripe.set_intent_mode(IntentMode::Hold);
    spend(&client, &base).await;
    until_intents(&s, 1).await;
    for _ in 0..3 {
        spend(&client, &base).await;
    }
    let intents = s.stripe.intent_calls();
    assert_eq!(intents.len(), 1, "{intents:?}");
    let form = &intents[0].form;
    assert_eq!(
        (form["amount"].as_str(), form["currency"].as_str()),
        ("1000", "usd")
    );
    assert_eq!(
        (form["off_session"].as_str(), form["confirm"].as_str()),
        ("true", "true")
    );
    assert_eq!(form["metadata[automatic]"], "true");
    assert!(
        form["payment_method"].starts_with("pm_"),
        "the card saved at Checkout: {form:?}"
    );
    assert!(intents[0].idempotency_key.is_some());
    let before = micros(&balance(&client, &base).await["balance"]);
    assert_eq!(s.stripe.release_held().await, vec![200]);
    let after = balance(&client, &base).await;
    assert_eq!(micros(&after["balance"]), before + 10_000_000, "{after}");

    // Raising the threshold tops up at once; the daily cap (2) stops a third.
    s.stripe.set_intent_mode(IntentMode::Succeed);
    assert_eq!(auto_topup(&client, &base, on(100.0)).await.0, 200);
    until_intents(&s, 2).await;
    for _ in 0..50 {
        if micros(&balance(&client, &base).await["credits"]) == 30_000_000 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        micros(&balance(&client, &base).await["credits"]),
        30_000_000
    );
    spend(&client, &base).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(s.stripe.intent_calls().len(), 2, "capped at two a day");

    // A declined card turns automatic top-ups off, saying why.
    let declined_key = register(&anonymous, &base, "declined@example.com")
        .await
        .unwrap()
        .key;
    let declined = anonymous.with_bearer(&declined_key);
    paid_by_card(&s, &declined, "credits_10").await;
    s.stripe.set_intent_mode(IntentMode::Decline);
    assert_eq!(auto_topup(&declined, &base, on(10.5)).await.0, 200);
    let mut shown = Value::Null;
    for _ in 0..500 {
        shown = balance(&declined, &base).await;
        if shown["auto_topup"]["enabled"] == false {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(shown["auto_topup"]["enabled"], false, "{shown}");
    assert_eq!(
        shown["auto_topup"]["disabled_reason"],
        "Your card has insufficient funds."
    );
    assert_eq!(micros(&shown["credits"]), 10_000_000, "nothing credited");
    let session = DashboardSession::sign_in(&base, "declined@example.com", &declined_key).await;
    let page = session.page("").await;
    assert!(
        page.contains("Turned off: Your card has insufficient funds."),
        "{page}"
    );

    let audit = audit_live(&base).await;
    assert_eq!(audit["problems"], json!([]), "{audit}");
    assert_eq!(audit["card_payments"], 4, "two Checkouts, two automatic");
}
