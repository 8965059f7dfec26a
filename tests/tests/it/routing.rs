//! `cheap` routing by expected cost: a provider with the lower price per second
//! but a much longer learned duration loses to a dearer, faster one, and
//! `/status` says which backend was chosen, what it was expected to cost there,
//! and what it cost.

use gpubridge_tests::{wait_terminal, Behavior, InProcess, JsonClient, Standin};
use serde_json::{json, Value};
use std::time::Duration;

async fn cheap_job(client: &JsonClient, base: &str, prompt: &str) -> Value {
    let reply = client
        .post_json(
            &format!("{base}/run"),
            &json!({"service": "llm-4090", "input": {"prompt": prompt}}),
            &[("x-priority", "cheap")],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.body["job_id"].as_str().unwrap();
    let done = wait_terminal(client, base, id, 20).await.unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    done
}

#[tokio::test]
async fn cheap_minimises_price_times_learned_duration() {
    // DeepInfra costs 300 µ$/s and Groq 600 µ$/s for this model (catalog.json).
    let groq = Standin::start("k").await.unwrap();
    let deepinfra = Standin::start("k").await.unwrap();
    let config = format!(
        "[scheduler]\nallow_private_urls = true\n[scheduler.breaker]\nfailure_threshold = 5\nopen_seconds = 60\n\
         [scheduler.providers.groq]\napi_key = \"k\"\nbase_url = \"{}\"\nrequest_timeout_seconds = 5\n\
         [scheduler.providers.deepinfra]\napi_key = \"k\"\nbase_url = \"{}\"\nrequest_timeout_seconds = 5\n",
        groq.base_url(),
        deepinfra.base_url()
    );
    let dir = tempfile::tempdir().unwrap();
    let daemon = InProcess::configured(dir.path(), &config).await;
    let client = JsonClient::new();

    // Nothing learned yet: equal expected durations, so the lower price wins.
    deepinfra.set_behavior(Behavior::Slow(Duration::from_millis(800)));
    groq.set_behavior(Behavior::ServerError);
    let first = cheap_job(&client, &daemon.base, "one").await;
    let routing = &first["routing"];
    assert!(
        routing["backend"]
            .as_str()
            .unwrap()
            .starts_with("deepinfra"),
        "{first}"
    );
    assert_eq!(routing["priority"], "cheap");
    assert_eq!(routing["backend_cost_per_second_usd"], 0.0003);
    assert_eq!(routing["expected_seconds"], 1.25, "the service's default");
    assert_eq!(routing["expected_cost_usd"], 0.000375);
    let seconds = first["execution_time_seconds"].as_f64().unwrap();
    let actual = routing["actual_cost_usd"].as_f64().unwrap();
    assert!((actual - 0.0003 * seconds).abs() < 2e-6, "{first}");

    // DeepInfra is tried first again (300 × 0.8 s < 600 × 1.25 s) and fails
    // over to Groq, whose short duration is learned.
    deepinfra.set_behavior(Behavior::ServerError);
    groq.set_behavior(Behavior::Ok);
    let second = cheap_job(&client, &daemon.base, "two").await;
    assert!(
        second["backend"].as_str().unwrap().starts_with("groq"),
        "{second}"
    );
    assert_eq!(second["attempts"].as_array().unwrap().len(), 2, "{second}");

    // Healthy again and still cheaper per second, DeepInfra now loses: 300 µ$/s
    // × 0.8 s costs more than 600 µ$/s × a few milliseconds.
    deepinfra.set_behavior(Behavior::Slow(Duration::from_millis(800)));
    let deepinfra_requests = deepinfra.requests();
    let third = cheap_job(&client, &daemon.base, "three").await;
    let routing = &third["routing"];
    assert!(
        routing["backend"].as_str().unwrap().starts_with("groq"),
        "{third}"
    );
    assert!(
        routing["expected_seconds"].as_f64().unwrap() < 0.5,
        "{third}"
    );
    assert!(
        routing["expected_cost_usd"].as_f64().unwrap() < 0.0003 * 0.8,
        "{third}"
    );
    assert!(routing["actual_cost_usd"].is_number(), "{third}");
    assert_eq!(
        deepinfra.requests(),
        deepinfra_requests,
        "DeepInfra was not asked"
    );
    daemon.stop().await;
}
