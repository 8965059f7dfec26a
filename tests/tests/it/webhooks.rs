//! Webhooks against a real receiver: signed deliveries retried with backoff
//! (visible in /status) until accepted, secrets rotated, delivery resumed after
//! a kill -9 of the daemon, 410 honoured, and neither redirects nor names that
//! resolve to loopback followed when private addresses are not allowed.

use gpubridge_tests::accounts::funded;
use gpubridge_tests::receiver::{Answer, Delivered, Receiver};
use gpubridge_tests::{wait_terminal, Daemon, DaemonOptions, InProcess, JsonClient};
use gpubridge_webhooks::{verify, WebhookSecret};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Quick retries, private addresses allowed (the receiver is on loopback).
const QUICK: &str = "[scheduler]\nallow_private_urls = true\n[webhooks]\nfirst_retry_seconds = 1.0\nmax_retry_seconds = 2.0\ntimeout_seconds = 2.0\n";

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn assert_signed(delivery: &Delivered, secret: &str) {
    let header = delivery.headers["x-gpubridge-signature"].to_str().unwrap();
    let secret = WebhookSecret::from_text(secret);
    verify(&secret, header, &delivery.body, now_seconds(), 300)
        .unwrap_or_else(|e| panic!("{e}: {header}"));
}

async fn run_with_hook(client: &JsonClient, base: &str, url: &str, text: &str) -> Value {
    let reply = client
        .post_json(
            &format!("{base}/run"),
            &json!({"service": "echo", "input": {"text": text}, "webhook_url": url}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.body);
    reply.body
}

/// Polls `/status` until `check` holds of its `webhook` object.
async fn webhook_until(
    client: &JsonClient,
    base: &str,
    id: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..1000 {
        // A restarted daemon closes the connections its predecessor had.
        if let Ok(reply) = client.get(&format!("{base}/status/{id}")).await {
            if check(&reply.body["webhook"]) {
                return reply.body;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("webhook of {id} never reached the expected state");
}

#[tokio::test]
async fn deliveries_are_signed_retried_until_accepted_and_secrets_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DaemonOptions::new(dir.path().join("data"));
    options.config = Some(QUICK);
    options.accounts = true;
    let daemon = InProcess::start(options).await;
    let account = funded(&daemon.base, "hooks@example.com", 1.0)
        .await
        .unwrap();
    assert!(account.webhook_secret.starts_with("whsec_"));
    let client = JsonClient::new().with_bearer(&account.key);
    // Fails twice, then accepts; addressed by a name that resolves to 127.0.0.1.
    let receiver = Receiver::start(
        vec![Answer::Status(500), Answer::Status(503)],
        Answer::Status(200),
    )
    .await;
    let job = run_with_hook(&client, &daemon.base, &receiver.url_by_name(), "first").await;
    let id = job["job_id"].as_str().unwrap();
    assert!(
        job.get("webhook_secret").is_none(),
        "account jobs use the account's secret"
    );

    // After the first failure: waiting for its next attempt, and why.
    let status = webhook_until(&client, &daemon.base, id, |w| w["attempts"] == 1).await;
    let webhook = &status["webhook"];
    assert_eq!(webhook["state"], "pending", "{status}");
    assert_eq!(webhook["last_status"], 500);
    assert_eq!(webhook["last_error"], "HTTP 500 Internal Server Error");
    assert!(webhook["next_attempt_at"].is_string(), "{webhook}");

    let status = webhook_until(&client, &daemon.base, id, |w| w["state"] == "delivered").await;
    let webhook = &status["webhook"];
    assert_eq!(webhook["attempts"], 3, "{status}");
    assert!(webhook["delivered_at"].is_string());
    assert!(webhook.get("next_attempt_at").is_none());
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    for (n, delivery) in received.iter().enumerate() {
        assert_signed(delivery, &account.webhook_secret);
        assert_eq!(delivery.headers["x-gpubridge-attempt"], (n + 1).to_string());
        assert_eq!(delivery.headers["x-gpubridge-event"], "job.completed");
        let body: Value = serde_json::from_slice(&delivery.body).unwrap();
        assert_eq!(
            (body["id"].as_str(), &body["status"]),
            (Some(id), &json!("completed"))
        );
        assert_eq!(body["output"], json!({"text": "first"}));
    }
    // A forged body fails the same check.
    let header = received[2].headers["x-gpubridge-signature"]
        .to_str()
        .unwrap();
    let secret = WebhookSecret::from_text(&account.webhook_secret);
    assert!(verify(
        &secret,
        header,
        b"{\"status\":\"completed\"}",
        now_seconds(),
        300
    )
    .is_err());

    // Reading and rotating the secret.
    let url = format!("{}/account/webhook-secret", daemon.base);
    let read = client.get(&url).await.unwrap();
    assert_eq!(read.body["webhook_secret"], account.webhook_secret.as_str());
    let rotated = client.post_json(&url, &json!({}), &[]).await.unwrap();
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new_secret = rotated.body["webhook_secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, account.webhook_secret);
    assert_eq!(
        client.get(&url).await.unwrap().body["webhook_secret"],
        new_secret.as_str()
    );
    let anonymous = JsonClient::new().get(&url).await.unwrap();
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);

    let job = run_with_hook(&client, &daemon.base, &receiver.url(), "second").await;
    let id = job["job_id"].as_str().unwrap();
    webhook_until(&client, &daemon.base, id, |w| w["state"] == "delivered").await;
    let last = receiver.received().pop().unwrap();
    assert_signed(&last, &new_secret);
    let header = last.headers["x-gpubridge-signature"].to_str().unwrap();
    let old = WebhookSecret::from_text(&account.webhook_secret);
    assert!(verify(&old, header, &last.body, now_seconds(), 300).is_err());
    daemon.stop().await;
}

#[tokio::test]
async fn a_kill_9_between_attempts_resumes_delivery_with_one_success() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut options = DaemonOptions::new(&data);
    options.config = Some(QUICK);
    let mut daemon = Daemon::start(options);
    let receiver = Receiver::start(vec![], Answer::Status(503)).await;
    let client = JsonClient::new();
    // No account owns it: the 202 carries the job's own secret.
    let job = run_with_hook(&client, &daemon.base, &receiver.url(), "survives").await;
    let id = job["job_id"].as_str().unwrap().to_string();
    let secret = job["webhook_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{job}");
    webhook_until(&client, &daemon.base, &id, |w| w["attempts"] == 1).await;
    daemon.kill9();
    receiver.answer_from_now(Answer::Status(204));

    let port = daemon.port();
    let mut options = DaemonOptions::new(&data);
    options.config = Some(QUICK);
    options.port = Some(port);
    let daemon = Daemon::start(options);
    let status = webhook_until(&client, &daemon.base, &id, |w| w["state"] == "delivered").await;
    // Whatever the receiver saw after it accepted is one delivery.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let received = receiver.received();
    let accepted: Vec<_> = received.iter().filter(|d| d.answered == 204).collect();
    assert_eq!(accepted.len(), 1, "{received:?}");
    assert_eq!(
        status["webhook"]["attempts"].as_u64().unwrap() as usize,
        received.len(),
        "every attempt counted once: {status}"
    );
    for delivery in &received {
        assert_signed(delivery, &secret);
    }
}

#[tokio::test]
async fn gone_stops_and_redirects_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = InProcess::configured(dir.path(), QUICK).await;
    let client = JsonClient::new();

    let gone = Receiver::start(vec![], Answer::Status(410)).await;
    let job = run_with_hook(&client, &daemon.base, &gone.url(), "unwanted").await;
    let id = job["job_id"].as_str().unwrap();
    let status = webhook_until(&client, &daemon.base, id, |w| w["state"] == "gone").await;
    assert_eq!(status["webhook"]["attempts"], 1, "{status}");

    let target = Receiver::start(vec![], Answer::Status(200)).await;
    let redirecting = Receiver::start(vec![], Answer::Redirect(target.url())).await;
    let job = run_with_hook(&client, &daemon.base, &redirecting.url(), "moved").await;
    let id = job["job_id"].as_str().unwrap();
    let status = webhook_until(&client, &daemon.base, id, |w| w["attempts"] == 2).await;
    let webhook = &status["webhook"];
    assert_eq!(webhook["state"], "pending", "{status}");
    assert_eq!(webhook["last_status"], 307);
    let error = webhook["last_error"].as_str().unwrap();
    assert!(error.contains("redirects are not followed"), "{error}");
    assert!(target.received().is_empty(), "the redirect was followed");
    // 410 ended it: one attempt, however long we wait.
    assert_eq!(gone.received().len(), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn names_resolving_to_loopback_are_refused_at_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = InProcess::configured(dir.path(), "[webhooks]\nfirst_retry_seconds = 1.0\n").await;
    let client = JsonClient::new();
    let receiver = Receiver::start(vec![], Answer::Status(200)).await;
    // A literal loopback address is refused when the job is submitted...
    let literal = client
        .post_json(
            &daemon.url("/run"),
            &json!({"service": "echo", "input": {}, "webhook_url": receiver.url()}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(literal.status, 400, "{}", literal.body);
    assert_eq!(
        literal.body["details"]["field"], "webhook_url",
        "{}",
        literal.body
    );
    // ...a name that resolves to it, when the delivery looks it up.
    let job = run_with_hook(&client, &daemon.base, &receiver.url_by_name(), "private").await;
    let id = job["job_id"].as_str().unwrap();
    let done = wait_terminal(&client, &daemon.base, id, 10).await.unwrap();
    assert_eq!(done["status"], "completed");
    let status = webhook_until(&client, &daemon.base, id, |w| w["attempts"] == 1).await;
    let error = status["webhook"]["last_error"].as_str().unwrap();
    assert!(error.contains("private or loopback"), "{error}");
    assert!(
        receiver.received().is_empty(),
        "nothing reached the loopback receiver"
    );
    daemon.stop().await;
}
