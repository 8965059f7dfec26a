//! Retention: a finished job's input and output go once its time is up. An
//! account's job keeps the summary its history shows; a job nobody owns goes
//! whole; a job whose webhook is still being retried waits for it; and the
//! expiry index survives a restart.

use gpubridge_tests::accounts::{audit_live, funded};
use gpubridge_tests::receiver::{Answer, Receiver};
use gpubridge_tests::{submit, wait_terminal, DaemonOptions, InProcess, JsonClient};
use serde_json::{json, Value};
use std::time::Duration;

/// Two seconds of retention, swept every 100 ms; nothing served from memory.
const SHORT: &str = "[scheduler]\nallow_private_urls = true\nfinished_job_cache_seconds = 0\n[scheduler.retention]\nkeep_seconds = 2\nsweep_interval_ms = 100\n[webhooks]\nfirst_retry_seconds = 1.0\nmax_retry_seconds = 1.0\ntimeout_seconds = 2.0\n";

/// Polls `/status/{id}` until `check` holds of the reply.
async fn status_until(
    client: &JsonClient,
    base: &str,
    id: &str,
    check: impl Fn(u16, &Value) -> bool,
) -> (u16, Value) {
    for _ in 0..1500 {
        let reply = client.get(&format!("{base}/status/{id}")).await.unwrap();
        let status = reply.status.as_u16();
        if check(status, &reply.body) {
            return (status, reply.body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("status of {id} never reached the expected state");
}

fn expired(status: u16, body: &Value) -> bool {
    status == 200 && body["expired_at_ms"].is_u64()
}

#[tokio::test]
async fn account_jobs_keep_their_summary_and_wait_for_their_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DaemonOptions::new(dir.path().join("data"));
    options.accounts = true;
    options.config = Some(SHORT);
    let daemon = InProcess::start(options).await;
    let account = funded(&daemon.base, "kept@example.com", 1.0).await.unwrap();
    let client = JsonClient::new().with_bearer(&account.key);
    // The receiver refuses the first four deliveries: about four seconds of
    // retries, past the job's two seconds of retention.
    let refusals = vec![Answer::Status(500); 4];
    let receiver = Receiver::start(refusals, Answer::Status(200)).await;
    let hooked = client
        .post_json(
            &daemon.url("/run"),
            &json!({"service": "echo", "input": {"text": "hooked"}, "webhook_url": receiver.url()}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(hooked.status, 202, "{}", hooked.body);
    let hooked = hooked.body["job_id"].as_str().unwrap().to_string();
    let plain = submit(&client, &daemon.base, "echo", json!({"text": "plain"}))
        .await
        .unwrap();
    let plain = plain.body["job_id"].as_str().unwrap().to_string();
    let done = wait_terminal(&client, &daemon.base, &plain, 30)
        .await
        .unwrap();
    assert_eq!(done["output"]["text"], "plain", "{done}");

    let (_, summary) = status_until(&client, &daemon.base, &plain, expired).await;
    assert_eq!(summary["status"], "completed", "{summary}");
    assert_eq!(summary["service"], "echo");
    assert!(summary.get("output").is_none(), "output gone: {summary}");
    assert!(
        summary["hint"].as_str().unwrap().contains("retention"),
        "{summary}"
    );
    assert!(summary["finished_at_ms"].is_u64());

    // Past its retention, the job with a pending webhook still has its output.
    let held = client
        .get(&daemon.url(&format!("/status/{hooked}")))
        .await
        .unwrap();
    assert_eq!(held.body["output"]["text"], "hooked", "{}", held.body);
    assert_ne!(held.body["webhook"]["state"], "delivered", "{}", held.body);
    // Once delivered, it goes too, delivery record and all.
    receiver.wait_for(5, 30).await;
    let (_, summary) = status_until(&client, &daemon.base, &hooked, expired).await;
    assert!(summary.get("output").is_none(), "{summary}");
    assert!(summary.get("webhook").is_none(), "{summary}");
    let delivered = &receiver.received()[4];
    assert_eq!(delivered.answered, 200);
    let sent: Value = serde_json::from_slice(&delivered.body).unwrap();
    assert_eq!(
        sent["output"]["text"], "hooked",
        "the delivery had the output"
    );

    let history = client.get(&daemon.url("/account/jobs")).await.unwrap();
    let rows = history.body["jobs"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{}", history.body);
    assert!(rows.iter().all(|row| row["status"] == "completed"));
    let audit = audit_live(&daemon.base).await;
    assert_eq!(audit["problems"], json!([]), "{audit}");
    let metrics = client.get(&daemon.url("/metrics")).await.unwrap();
    let text = String::from_utf8_lossy(&metrics.raw);
    assert!(
        text.lines().any(|l| l == "gpubridge_jobs_expired_total 2"),
        "{text}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn jobs_nobody_owns_go_whole_and_the_index_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = SHORT.replace("keep_seconds = 2", "keep_seconds = 3");
    let start = || {
        let mut options = DaemonOptions::new(dir.path().join("data"));
        options.config = Some(&config);
        InProcess::start(options)
    };
    let daemon = start().await;
    let client = JsonClient::new();
    let accepted = submit(&client, &daemon.base, "echo", json!({"text": "open"}))
        .await
        .unwrap();
    let id = accepted.body["job_id"].as_str().unwrap().to_string();
    wait_terminal(&client, &daemon.base, &id, 30).await.unwrap();
    daemon.stop().await;

    let daemon = start().await;
    let found = client
        .get(&daemon.url(&format!("/status/{id}")))
        .await
        .unwrap();
    assert_eq!(found.status, 200, "kept until its time: {}", found.body);
    let (_, gone) = status_until(&client, &daemon.base, &id, |status, _| status == 404).await;
    assert!(
        gone["hint"].as_str().unwrap().contains("retention"),
        "{gone}"
    );
    daemon.stop().await;
}
