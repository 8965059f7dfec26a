//! Card top-ups against a Stripe stand-in: Checkout opened as Stripe expects
//! it, the package credited once however often (and however concurrently) its
//! webhook arrives, refunds and disputes taken back (into a debt that blocks
//! paid jobs), and every delivery that is not a genuine, fresh, signed event
//! refused without a change. The books are audited at the end.

use gpubridge_tests::accounts::{balance, micros, register, TestAccount};
use gpubridge_tests::stripe::{stripe_signature, StripeStandin};
use gpubridge_tests::{
    providers_config, DaemonOptions, InProcess, JsonClient, Standin, ADMIN_TOKEN,
};
use serde_json::{json, Value};

const SECRET_KEY: &str = "sk_test_gpubridge";
const WEBHOOK_SECRET: &str = "whsec_test_gpubridge";

struct Setup {
    stripe: StripeStandin,
    _provider: Standin,
    daemon: InProcess,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let stripe = StripeStandin::start(SECRET_KEY, WEBHOOK_SECRET).await;
    let provider = Standin::start("k").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = providers_config(&provider.base_url(), "k", &["groq"]);
    let mut options = DaemonOptions::new(dir.path().join("data"));
    options.config = Some(&config);
    options.accounts = true;
    options.env = vec![
        ("STRIPE_SECRET_KEY".into(), SECRET_KEY.into()),
        ("STRIPE_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into()),
        ("GPUBRIDGE_STRIPE_BASE_URL".into(), stripe.base_url()),
    ];
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

    let audit = anonymous
        .send(
            hyper::Method::GET,
            &format!("{base}/admin/ledger/audit"),
            &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(audit.body["problems"], json!([]), "{}", audit.body);
    assert_eq!(audit.body["card_payments"], 1);
    assert_eq!(audit.body["card_debits_micros"], 26_250_000);
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
