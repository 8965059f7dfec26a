//! The whole path with the free `echo` service: accept, persist, run, read back.
//! Also the public read-only endpoints.

use gpubridge_tests::{submit, wait_terminal, DaemonOptions, InProcess, JsonClient};
use serde_json::json;

#[tokio::test]
async fn echo_job_round_trips_through_run_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = InProcess::start(DaemonOptions::new(dir.path().join("data"))).await;
    let client = JsonClient::new();
    let input = json!({"hello": "world", "n": [1, 2, 3]});
    let reply = client
        .post_json(
            &daemon.url("/run"),
            &json!({"service": "echo", "input": input}),
            &[("x-priority", "fast")],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.body["job_id"].as_str().unwrap().to_string();
    assert_eq!(reply.body["service"], "echo");
    assert_eq!(reply.body["status"], "pending");
    assert_eq!(reply.body["status_url"], format!("/status/{id}"));
    assert_eq!(reply.body["estimated_cost_usd"], 0.0);
    assert_eq!(reply.headers["location"], format!("/status/{id}"));

    let done = wait_terminal(&client, &daemon.base, &id, 10).await.unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["id"], id);
    assert_eq!(done["output"], input);
    assert_eq!(done["backend"], "local:echo");
    assert!(done["execution_time_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(done["attempts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn catalog_estimate_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = InProcess::start(DaemonOptions::new(dir.path().join("data"))).await;
    let client = JsonClient::new();

    let catalog = client.get(&daemon.url("/catalog")).await.unwrap();
    assert_eq!(catalog.status, 200);
    let services = catalog.body["services"].as_array().unwrap();
    assert_eq!(services.len(), 31, "30 services and echo");
    let llm = services.iter().find(|s| s["key"] == "llm-4090").unwrap();
    assert_eq!(llm["pricing"]["from_usd"], 0.003);
    assert_eq!(llm["available"], false, "no provider key configured");
    assert_eq!(llm["route"], "/inference");
    assert!(llm["input_schema"]["properties"]["prompt"].is_object());
    let models = catalog.body["models"]["llm"].as_array().unwrap();
    assert!(models
        .iter()
        .any(|m| m["id"] == "deepseek-ai/DeepSeek-V3.2"));
    assert!(catalog.body["models"]["image"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "black-forest-labs/FLUX.2-dev"));
    let echo = services.iter().find(|s| s["key"] == "echo").unwrap();
    assert_eq!(echo["available"], true);
    assert_eq!(catalog.body["live_providers"], json!(["local"]));

    let estimate = client
        .get(&daemon.url("/catalog/estimate?service=llm-4090&seconds=25"))
        .await
        .unwrap();
    assert_eq!(estimate.status, 200);
    assert_eq!(
        estimate.body,
        json!({"service": "llm-4090", "estimated_seconds": 25.0, "price_per_second": 0.0024, "estimated_cost_usd": 0.06})
    );
    let floor = client
        .get(&daemon.url("/catalog/estimate?service=rerank&seconds=0.01"))
        .await
        .unwrap();
    assert_eq!(
        floor.body["estimated_cost_usd"], 0.001,
        "never below the from price"
    );

    let health = client.get(&daemon.url("/health")).await.unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "ok");

    submit(&client, &daemon.base, "echo", json!({}))
        .await
        .unwrap();
    let metrics = client.get(&daemon.url("/metrics")).await.unwrap();
    let text = String::from_utf8_lossy(&metrics.raw);
    for series in [
        "gpubridge_http_requests_total{class=\"2xx\",route=\"/run\"}",
        "gpubridge_http_request_duration_seconds_bucket",
        "gpubridge_jobs_total{service=\"echo\",status=\"accepted\"}",
        "gpubridge_backend_circuit_state{backend=\"local:echo\"} 0",
        "gpubridge_backend_queue_depth",
        "gpubridge_jobs_live{status=\"pending\"}",
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
}
