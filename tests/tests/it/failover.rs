//! Failure injection: a provider answering 5xx, hanging past the attempt timeout,
//! or returning garbage fails over to another backend and trips its breaker.

use gpubridge_tests::{wait_terminal, Behavior, InProcess, JsonClient, Standin};
use serde_json::{json, Value};

/// Two providers serving the same model from separate stand-ins. With
/// `X-Priority: cheap`, DeepInfra (300 µ$/s) is tried first, Groq (600 µ$/s)
/// second. `cheap` weighs price by learned duration, so tests that need
/// DeepInfra tried on every job give Groq [`SLOWER`] answers.
fn config(flaky: &Standin, healthy: &Standin) -> String {
    format!(
        "[scheduler]\nallow_private_urls = true\n[scheduler.breaker]\nfailure_threshold = 2\nopen_seconds = 600\n\
         [scheduler.providers.deepinfra]\napi_key = \"k\"\nbase_url = \"{}\"\nrequest_timeout_seconds = 1\n\
         [scheduler.providers.groq]\napi_key = \"k\"\nbase_url = \"{}\"\nrequest_timeout_seconds = 5\n",
        flaky.base_url(),
        healthy.base_url()
    )
}

/// Groq's answers take this long: 600 µ$/s × 0.7 s outweighs DeepInfra's 300
/// µ$/s × the service's default 1.25 s, so DeepInfra, never learned (it only
/// fails), stays first in `cheap` order.
const SLOWER: std::time::Duration = std::time::Duration::from_millis(700);

async fn llm_job(client: &JsonClient, daemon: &InProcess) -> Value {
    let reply = client
        .post_json(
            &daemon.url("/run"),
            &json!({"service": "llm-4090", "input": {"prompt": "hi"}}),
            &[("x-priority", "cheap")],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.body["job_id"].as_str().unwrap().to_string();
    wait_terminal(client, &daemon.base, &id, 30).await.unwrap()
}

fn circuit_state(metrics: &str, backend: &str) -> Option<i64> {
    let prefix = format!("gpubridge_backend_circuit_state{{backend=\"{backend}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn failures_fail_over_and_trip_the_breaker() {
    for behavior in [Behavior::ServerError, Behavior::Hang, Behavior::Garbage] {
        let flaky = Standin::start("k").await.unwrap();
        let healthy = Standin::start("k").await.unwrap();
        flaky.set_behavior(behavior);
        healthy.set_behavior(Behavior::Slow(SLOWER));
        let dir = tempfile::tempdir().unwrap();
        let config = config(&flaky, &healthy);
        let daemon = InProcess::configured(dir.path(), &config).await;
        let client = JsonClient::new();

        for _ in 0..2 {
            let done = llm_job(&client, &daemon).await;
            assert_eq!(done["status"], "completed", "{behavior:?}: {done}");
            assert_eq!(
                done["backend"], "groq:llama-3.3-70b-versatile",
                "{behavior:?}"
            );
            let attempts = done["attempts"].as_array().unwrap();
            assert_eq!(attempts.len(), 2, "{behavior:?}: {done}");
            assert!(attempts[0]["backend"]
                .as_str()
                .unwrap()
                .starts_with("deepinfra:"));
            assert!(attempts[0]["error"].is_string());
            assert!(attempts[1]["error"].is_null());
        }
        // Two consecutive failures opened DeepInfra's circuit: no more traffic to it.
        let before = flaky.requests();
        let done = llm_job(&client, &daemon).await;
        assert_eq!(
            done["attempts"].as_array().unwrap().len(),
            1,
            "{behavior:?}: {done}"
        );
        assert_eq!(
            flaky.requests(),
            before,
            "{behavior:?}: open circuit still called"
        );
        let metrics = client.get(&daemon.url("/metrics")).await.unwrap();
        let text = String::from_utf8_lossy(&metrics.raw).to_string();
        assert_eq!(
            circuit_state(&text, "deepinfra:meta-llama/Llama-3.3-70B-Instruct-Turbo"),
            Some(2),
            "{behavior:?}"
        );
        assert_eq!(
            circuit_state(&text, "groq:llama-3.3-70b-versatile"),
            Some(0)
        );
        assert!(text.contains("gpubridge_failovers_total 2"), "{behavior:?}");
    }
}

#[tokio::test]
async fn a_job_fails_only_when_no_candidate_is_left_with_every_reason() {
    let flaky = Standin::start("k").await.unwrap();
    let also_flaky = Standin::start("k").await.unwrap();
    flaky.set_behavior(Behavior::ServerError);
    also_flaky.set_behavior(Behavior::Garbage);
    let dir = tempfile::tempdir().unwrap();
    let config = config(&flaky, &also_flaky);
    let daemon = InProcess::configured(dir.path(), &config).await;
    let client = JsonClient::new();
    let done = llm_job(&client, &daemon).await;
    assert_eq!(done["status"], "failed");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.contains("deepinfra:") && error.contains("HTTP 500"),
        "{error}"
    );
    assert!(
        error.contains("groq:") && error.contains("unreadable"),
        "{error}"
    );
    assert_eq!(done["attempts"].as_array().unwrap().len(), 2);

    // Once both circuits are open, new work is refused up front (nothing accepted).
    let _ = llm_job(&client, &daemon).await;
    let refused = client
        .post_json(
            &daemon.url("/run"),
            &json!({"service": "llm-4090", "input": {"prompt": "hi"}}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn rejected_requests_do_not_trip_the_breaker() {
    let rejecting = Standin::start("k").await.unwrap();
    let healthy = Standin::start("k").await.unwrap();
    rejecting.set_behavior(Behavior::Reject);
    healthy.set_behavior(Behavior::Slow(SLOWER));
    let dir = tempfile::tempdir().unwrap();
    let config = config(&rejecting, &healthy);
    let daemon = InProcess::configured(dir.path(), &config).await;
    let client = JsonClient::new();
    for _ in 0..3 {
        let done = llm_job(&client, &daemon).await;
        assert_eq!(done["status"], "completed");
        assert_eq!(
            done["attempts"].as_array().unwrap().len(),
            2,
            "DeepInfra is still tried: {done}"
        );
    }
}

/// A provider that stalls in any phase — no headers, headers and no body, a
/// body that stops — is cut off at that phase's limit, well inside the
/// attempt's, and the job fails over; /metrics counts each cut by phase.
#[tokio::test]
async fn each_phase_of_a_stalled_call_has_its_own_limit() {
    for (behavior, phase) in [
        (Behavior::Hang, "headers"),
        (Behavior::Stall, "first_byte"),
        (Behavior::Trickle, "idle"),
    ] {
        let flaky = Standin::start("k").await.unwrap();
        let healthy = Standin::start("k").await.unwrap();
        flaky.set_behavior(behavior);
        healthy.set_behavior(Behavior::Slow(SLOWER));
        let dir = tempfile::tempdir().unwrap();
        // The attempt may last 60 s: only the phase limits can end it early.
        let config = config(&flaky, &healthy).replacen(
            "request_timeout_seconds = 1\n",
            "request_timeout_seconds = 60\nheaders_timeout_ms = 400\nfirst_byte_timeout_ms = 400\nidle_timeout_ms = 400\n",
            1,
        );
        let daemon = InProcess::configured(dir.path(), &config).await;
        let client = JsonClient::new();
        let job = llm_job(&client, &daemon).await;
        assert_eq!(job["status"], "completed", "{behavior:?}: {job}");
        let metrics = client.get(&daemon.url("/metrics")).await.unwrap();
        let text = String::from_utf8_lossy(&metrics.raw);
        let line = format!(
            "gpubridge_upstream_timeouts_total{{phase=\"{phase}\",provider=\"deepinfra\"}} "
        );
        let count: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        assert!(
            count >= 1,
            "{behavior:?}: no {phase} timeout counted:\n{text}"
        );
        daemon.stop().await;
    }
}
