//! `POST /cancel/:id` against real backends: a queued job is released in full,
//! a running one (on a hosted provider, on a node agent whose progress shows in
//! /status) is stopped and pays for the seconds it ran, a finished one is a 409,
//! and only its owner may cancel it. Also `Prefer: wait=N` on /run.

use gpubridge_tests::accounts::{balance, funded, micros, TestAccount};
use gpubridge_tests::{
    providers_config, wait_terminal, AgentProcess, Behavior, DaemonOptions, InProcess, JsonClient,
    Standin,
};
use serde_json::{json, Value};
use std::time::Duration;

fn llm(prompt: &str) -> Value {
    json!({"service": "llm-4090", "input": {"prompt": prompt}})
}

async fn accepted(client: &JsonClient, base: &str, body: &Value) -> String {
    let reply = client
        .post_json(&format!("{base}/run"), body, &[])
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.body);
    reply.body["job_id"].as_str().unwrap().to_string()
}

async fn status(client: &JsonClient, base: &str, id: &str) -> Value {
    client
        .get(&format!("{base}/status/{id}"))
        .await
        .unwrap()
        .body
}

async fn until(client: &JsonClient, base: &str, id: &str, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..1000 {
        let now = status(client, base, id).await;
        if check(&now) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{id} never reached the expected state: {}",
        status(client, base, id).await
    );
}

async fn cancel(client: &JsonClient, base: &str, id: &str) -> (u16, Value) {
    let reply = client
        .post_json(&format!("{base}/cancel/{id}"), &json!({}), &[])
        .await
        .unwrap();
    (reply.status.as_u16(), reply.body)
}

/// A cancelled running job pays its price per second for the seconds it ran,
/// and the account's books say exactly that.
fn assert_charged_for_time(done: &Value, price_per_second: i64) {
    let seconds = done["execution_time_seconds"].as_f64().unwrap();
    assert!(seconds > 0.1, "{done}");
    let charged = micros(&done["charged_usd"]);
    let expected = (price_per_second as f64 * seconds).round() as i64;
    assert!(
        (charged - expected).abs() <= 1,
        "{charged} vs {expected}: {done}"
    );
    assert!(charged > 0);
}

async fn price_per_second(client: &JsonClient, base: &str, service: &str) -> i64 {
    let estimate = client
        .get(&format!("{base}/catalog/estimate?service={service}"))
        .await
        .unwrap();
    micros(&estimate.body["price_per_second"])
}

#[tokio::test]
async fn queued_running_and_finished_hosted_jobs() {
    let standin = Standin::start("k").await.unwrap();
    standin.set_behavior(Behavior::Slow(Duration::from_secs(30)));
    let dir = tempfile::tempdir().unwrap();
    // One request at a time: the second job waits in the queue.
    let config = format!(
        "{}max_in_flight = 1\n",
        providers_config(&standin.base_url(), "k", &["groq"])
    );
    let mut options = DaemonOptions::new(dir.path().join("data"));
    options.config = Some(&config);
    options.accounts = true;
    let daemon = InProcess::start(options).await;
    let base = daemon.base.clone();
    let owner: TestAccount = funded(&base, "owner@example.com", 5.0).await.unwrap();
    let client = JsonClient::new().with_bearer(&owner.key);
    let pps = price_per_second(&client, &base, "llm-4090").await;
    let before = micros(&balance(&client, &base).await["balance"]);

    let running = accepted(&client, &base, &llm("long")).await;
    until(&client, &base, &running, |s| s["status"] == "running").await;
    let queued = accepted(&client, &base, &llm("waits")).await;
    assert_eq!(status(&client, &base, &queued).await["status"], "pending");

    // Only the owner may cancel.
    let stranger = funded(&base, "stranger@example.com", 1.0).await.unwrap();
    let (code, body) = cancel(&client.with_bearer(&stranger.key), &base, &queued).await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = cancel(&client, &base, "not-a-job").await;
    assert_eq!(code, 404, "{body}");

    // Queued: cancelled, nothing charged, its reservation released in full.
    let (code, done) = cancel(&client, &base, &queued).await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["status"], "cancelled");
    assert_eq!(micros(&done["charged_usd"]), 0, "{done}");
    assert!(micros(&done["refunded_usd"]) > 0);
    assert!(done["stopped"]["reason"]
        .as_str()
        .unwrap()
        .contains("cancelled"));
    assert!(
        done.get("routing").is_none(),
        "it never reached a backend: {done}"
    );
    assert_eq!(
        standin.requests(),
        1,
        "the queued job never reached the provider"
    );

    // Running: stopped at the provider, charged for the seconds it ran.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (code, done) = cancel(&client, &base, &running).await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["status"], "cancelled");
    assert_charged_for_time(&done, pps);
    let charged = micros(&done["charged_usd"]);
    let metrics = client.get(&daemon.url("/metrics")).await.unwrap();
    let text = String::from_utf8_lossy(&metrics.raw);
    assert!(
        text.lines().any(
            |l| l.starts_with("gpubridge_backend_in_flight{backend=\"groq") && l.ends_with(" 0")
        ),
        "the provider request is no longer in flight:\n{text}"
    );
    let after = balance(&client, &base).await;
    assert_eq!(micros(&after["balance"]), before - charged, "{after}");
    assert_eq!(micros(&after["open_reservations"]), 0, "{after}");

    // Finished jobs cannot be cancelled: 409 with their status.
    let (code, body) = cancel(&client, &base, &running).await;
    assert_eq!(
        (code, &body["details"]["status"]),
        (409, &json!("cancelled")),
        "{body}"
    );
    standin.set_behavior(Behavior::Ok);
    let quick = accepted(&client, &base, &llm("quick")).await;
    wait_terminal(&client, &base, &quick, 10).await.unwrap();
    let (code, body) = cancel(&client, &base, &quick).await;
    assert_eq!(
        (code, &body["details"]["status"]),
        (409, &json!("completed")),
        "{body}"
    );
    assert!(
        body["hint"].as_str().unwrap().contains("/status/"),
        "{body}"
    );
    daemon.stop().await;
}

// Several workers: waiting for the agent to join blocks one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_agent_job_shows_progress_and_stops_when_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DaemonOptions::new(dir.path().join("data"));
    options.accounts = true;
    let daemon = InProcess::start(options).await;
    let base = daemon.base.clone();
    let marker = dir.path().join("finished");
    let services = format!(
        "[services.ocr]\nruntime = \"command\"\nslots = 1\ncommand = [\"/bin/sh\", \"-c\", \"echo 'progress 25% reading page 1' >&2; sleep 30; touch {}; cat\"]\n",
        marker.display()
    );
    let agent = AgentProcess::start(
        dir.path(),
        "gpu-cancel",
        daemon.nodes_addr.as_deref().unwrap(),
        &gpubridge_tests::create_token(&daemon.data_dir),
        &services,
    );
    agent.wait_joined();
    let owner = funded(&base, "agent-owner@example.com", 5.0).await.unwrap();
    let client = JsonClient::new().with_bearer(&owner.key);
    let pps = price_per_second(&client, &base, "ocr").await;
    let before = micros(&balance(&client, &base).await["balance"]);
    let body = json!({"service": "ocr", "input": {"image_url": "https://example.com/page.png"}});
    let id = accepted(&client, &base, &body).await;

    let running = until(&client, &base, &id, |s| s["progress"].is_object()).await;
    assert_eq!(running["status"], "running", "{running}");
    assert_eq!(running["progress"]["percent"], 25.0);
    assert_eq!(running["progress"]["message"], "reading page 1");
    tokio::time::sleep(Duration::from_millis(400)).await;

    let (code, done) = cancel(&client, &base, &id).await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["status"], "cancelled");
    assert_charged_for_time(&done, pps);
    let after = balance(&client, &base).await;
    assert_eq!(
        micros(&after["balance"]),
        before - micros(&done["charged_usd"])
    );
    assert_eq!(micros(&after["open_reservations"]), 0);
    // The agent stopped the job: its process was killed before finishing.
    for _ in 0..500 {
        if agent
            .process
            .log_text()
            .contains("job cancelled by the scheduler")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        agent
            .process
            .log_text()
            .contains("job cancelled by the scheduler"),
        "{}",
        agent.process.log_text()
    );
    assert!(!marker.exists(), "the job's process ran to its end");
    drop(agent);
    daemon.stop().await;
}

#[tokio::test]
async fn prefer_wait_answers_finished_jobs_and_falls_back_to_202() {
    let standin = Standin::start("k").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Long enough for the slow job below to outlast the wait and still finish.
    let config = providers_config(&standin.base_url(), "k", &["groq"]).replace(
        "request_timeout_seconds = 2",
        "request_timeout_seconds = 10",
    );
    let daemon = InProcess::configured(dir.path(), &config).await;
    let client = JsonClient::new();
    let run = daemon.url("/run");

    // Finishes inside N: the status document, at once.
    let reply = client
        .post_json(&run, &llm("now"), &[("prefer", "wait=10")])
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["status"], "completed");
    assert_eq!(reply.body["output"]["text"], "stand-in reply to: now");
    assert_eq!(reply.headers["preference-applied"], "wait=10");
    let id = reply.body["id"].as_str().unwrap();
    assert_eq!(reply.headers["location"], format!("/status/{id}"));

    // Still running after N: the usual 202, and the job goes on.
    standin.set_behavior(Behavior::Slow(Duration::from_secs(3)));
    let reply = client
        .post_json(&run, &llm("later"), &[("prefer", "respond-async, wait=1")])
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.body["status"], "running");
    assert_eq!(reply.headers["preference-applied"], "wait=1");
    let id = reply.body["job_id"].as_str().unwrap();
    let done = wait_terminal(&client, &daemon.base, id, 10).await.unwrap();
    assert_eq!(done["status"], "completed");

    // More than 60 s is cut to 60; a wait that is not seconds is refused.
    standin.set_behavior(Behavior::Ok);
    let reply = client
        .post_json(&run, &llm("capped"), &[("prefer", "wait=3600")])
        .await
        .unwrap();
    assert_eq!(reply.headers["preference-applied"], "wait=60");
    let reply = client
        .post_json(&run, &llm("bad"), &[("prefer", "wait=soon")])
        .await
        .unwrap();
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body["hint"].as_str().unwrap().contains("wait=N"));
    daemon.stop().await;
}
