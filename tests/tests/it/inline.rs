//! Answers given inline (`/inference`, OpenAI routes, MCP) on a daemon without
//! accounts: a job nobody pays for is written once, at its end, and a job
//! that outlives the wait is durable before its id is shown.

use gpubridge_tests::{
    metric_sample, providers_config, wait_terminal, Behavior, Daemon, DaemonOptions, InProcess,
    JsonClient, Reply, Standin,
};
use serde_json::json;
use std::time::Duration;

async fn commits(client: &JsonClient, daemon: &InProcess) -> f64 {
    let scrape = client.get(&daemon.url("/metrics")).await.unwrap();
    metric_sample(
        &String::from_utf8_lossy(&scrape.raw),
        "gpubridge_store_commits_total",
    )
    .unwrap_or_default()
}

async fn infer(client: &JsonClient, base: &str, prompt: &str) -> Reply {
    let body = json!({ "prompt": prompt });
    client
        .post_json(&format!("{base}/inference"), &body, &[])
        .await
        .unwrap()
}

#[tokio::test]
async fn an_answer_given_inline_is_written_once() {
    let standin = Standin::start("k").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = providers_config(&standin.base_url(), "k", &["groq"]);
    let daemon = InProcess::configured(dir.path(), &config).await;
    let client = JsonClient::new();
    const N: usize = 30;
    let before = commits(&client, &daemon).await;
    let mut ids = Vec::new();
    for n in 0..N {
        let reply = infer(&client, &daemon.base, &format!("once {n}")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        ids.push(reply.body["job_id"].as_str().unwrap().to_string());
    }
    let written = commits(&client, &daemon).await - before;
    // One commit per job; a learned estimate may be flushed meanwhile.
    assert!(
        (N as f64..N as f64 + 3.0).contains(&written),
        "{written} commits for {N} jobs"
    );
    // Not held in memory once answered, so these are read back from disk.
    for (n, id) in ids.iter().enumerate() {
        let status = client
            .get(&daemon.url(&format!("/status/{id}")))
            .await
            .unwrap();
        assert_eq!(status.body["status"], "completed", "{}", status.body);
        assert_eq!(
            status.body["output"]["text"],
            format!("stand-in reply to: once {n}")
        );
    }
}

#[tokio::test]
async fn a_job_that_outlives_the_inline_wait_is_durable_before_its_id_is_shown() {
    let standin = Standin::start("k").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = providers_config(&standin.base_url(), "k", &["groq"]);
    config.push_str("[http]\ninline_wait_ms = 100\n");
    let start = || {
        let mut options = DaemonOptions::new(&data);
        options.config = Some(&config);
        Daemon::start(options)
    };
    let mut daemon = start();
    let client = JsonClient::new();
    let mut shown = Vec::new();
    for n in 0..5 {
        let reply = infer(&client, &daemon.base, &format!("quick {n}")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        shown.push((
            reply.body["job_id"].as_str().unwrap().to_string(),
            n,
            "quick",
        ));
    }
    // Outlives the 100 ms wait by far: answered 202 with an id while running.
    standin.set_behavior(Behavior::Slow(Duration::from_millis(1500)));
    let slow: Vec<_> = (0..8)
        .map(|n| {
            let (client, base) = (client.clone(), daemon.base.clone());
            tokio::spawn(async move { infer(&client, &base, &format!("slow {n}")).await })
        })
        .collect();
    for (n, reply) in slow.into_iter().enumerate() {
        let reply = reply.await.unwrap();
        assert_eq!(reply.status, 202, "{}", reply.body);
        shown.push((
            reply.body["job_id"].as_str().unwrap().to_string(),
            n,
            "slow",
        ));
    }
    daemon.kill9();
    standin.set_behavior(Behavior::Ok);
    let daemon = start();
    for (id, n, kind) in &shown {
        let done = wait_terminal(&client, &daemon.base, id, 30).await.unwrap();
        assert_eq!(done["status"], "completed", "{kind} {n}: {done}");
        assert_eq!(
            done["output"]["text"],
            format!("stand-in reply to: {kind} {n}")
        );
        if *kind == "slow" {
            assert_eq!(done["recoveries"], 1, "ran again after the kill: {done}");
        }
    }
}
