//! Durability: kill -9 of the daemon under load loses no accepted job; a clean
//! SIGTERM keeps learned estimates.

use gpubridge_tests::{
    providers_config, submit, wait_terminal, Behavior, Daemon, DaemonOptions, JsonClient, Standin,
};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn kill_9_under_load_loses_no_accepted_job() {
    let standin = Standin::start("k").await.unwrap();
    // Slow answers keep many jobs in flight when the daemon dies.
    standin.set_behavior(Behavior::Slow(Duration::from_millis(150)));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = providers_config(&standin.base_url(), "k", &["groq"]);
    let mut options = DaemonOptions::new(&data);
    options.config = Some(&config);
    let mut daemon = Daemon::start(options);
    let client = JsonClient::new();
    let url = daemon.url("/run");

    let accepted = Arc::new(parking_lot::Mutex::new(Vec::<(String, String)>::new()));
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let (client, url, accepted) = (client.clone(), url.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..40 {
                let prompt = format!("job {worker}-{n}");
                let body = json!({"service": "llm-4090", "input": {"prompt": prompt}});
                match client.post_json(&url, &body, &[]).await {
                    Ok(reply) if reply.status == 202 => {
                        let id = reply.body["job_id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string();
                        accepted.lock().push((id, prompt));
                    }
                    // Refused or cut off by the kill: never acknowledged, so not ours to keep.
                    _ => break,
                }
            }
        }));
    }
    // Kill mid-load, once a good number of jobs are acknowledged.
    while accepted.lock().len() < 150 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    daemon.kill9();
    for task in tasks {
        let _ = task.await;
    }
    let accepted = accepted.lock().clone();
    assert!(accepted.len() >= 150);

    let mut options = DaemonOptions::new(&data);
    options.config = Some(&config);
    let daemon = Daemon::start(options);
    assert!(
        daemon.log_text().contains("recovered unfinished jobs"),
        "{}",
        daemon.log_text()
    );
    let mut recovered = 0;
    for (id, prompt) in &accepted {
        let done = wait_terminal(&client, &daemon.base, id, 60).await.unwrap();
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(
            done["output"]["text"],
            format!("stand-in reply to: {prompt}")
        );
        if done["recoveries"].as_u64().unwrap_or(0) > 0 {
            recovered += 1;
        }
    }
    assert!(
        recovered > 0,
        "the kill should have caught some jobs in flight"
    );
}

#[tokio::test]
async fn clean_shutdown_keeps_learned_estimates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut daemon = Daemon::start(DaemonOptions::new(&data));
    let client = JsonClient::new();
    let mut ids = Vec::new();
    for _ in 0..20 {
        let reply = submit(&client, &daemon.base, "echo", json!({"x": 1}))
            .await
            .unwrap();
        ids.push(reply.body["job_id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        wait_terminal(&client, &daemon.base, id, 10).await.unwrap();
    }
    let learned = echo_seconds(&client, &daemon).await;
    assert_ne!(learned, 0.001, "echo's duration was learned");
    assert!(
        daemon.terminate(),
        "SIGTERM exits cleanly: {}",
        daemon.log_text()
    );

    let daemon = Daemon::start(DaemonOptions::new(&data));
    assert_eq!(echo_seconds(&client, &daemon).await, learned);
    let old = client
        .get(&daemon.url(&format!("/status/{}", ids[0])))
        .await
        .unwrap();
    assert_eq!(old.body["status"], "completed");
    assert_eq!(old.body["output"], json!({"x": 1}));
}

async fn echo_seconds(client: &JsonClient, daemon: &Daemon) -> f64 {
    let catalog = client.get(&daemon.url("/catalog")).await.unwrap();
    let echo = catalog.body["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "echo")
        .cloned()
        .unwrap();
    echo["pricing"]["estimated_seconds"].as_f64().unwrap()
}
