//! Answers given inline (`/inference`, OpenAI routes, MCP) on a daemon without
//! accounts: a job nobody pays for is written once, just after its answer and
//! without an fsync of its own (the log's is at most a second later), and is
//! found by `/status` meanwhile; a job that outlives the wait is durable before
//! its id is shown, and so is a streamed one by its first chunk.

use gpubridge_tests::{
    metric_sample, providers_config, streamed_content, streamed_text, wait_terminal, Behavior,
    Daemon, DaemonOptions, EventStream, InProcess, JsonClient, Reply, Standin, StreamPlan,
};
use serde_json::json;
use std::time::Duration;

async fn sample(client: &JsonClient, daemon: &InProcess, series: &str) -> f64 {
    let scrape = client.get(&daemon.url("/metrics")).await.unwrap();
    metric_sample(&String::from_utf8_lossy(&scrape.raw), series).unwrap_or_default()
}

async fn commits(client: &JsonClient, daemon: &InProcess) -> f64 {
    sample(client, daemon, "gpubridge_store_commits_total").await
}

/// fsyncs of the store's log made for a commit that asked for one, and made
/// because logged-only commits waited their longest.
async fn syncs(client: &JsonClient, daemon: &InProcess) -> (f64, f64) {
    let series = |cause| format!("gpubridge_store_syncs_total{{cause=\"{cause}\"}}");
    (
        sample(client, daemon, &series("commit")).await,
        sample(client, daemon, &series("deadline")).await,
    )
}

async fn infer(client: &JsonClient, base: &str, prompt: &str) -> Reply {
    let body = json!({ "prompt": prompt });
    client
        .post_json(&format!("{base}/inference"), &body, &[])
        .await
        .unwrap()
}

#[tokio::test]
async fn an_answer_given_inline_is_written_once_and_fsynced_later() {
    let standin = Standin::start("k").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = providers_config(&standin.base_url(), "k", &["groq"]);
    let daemon = InProcess::configured(dir.path(), &config).await;
    let client = JsonClient::new();
    const N: usize = 30;
    let before = commits(&client, &daemon).await;
    let (synced_before, _) = syncs(&client, &daemon).await;
    let mut ids = Vec::new();
    for n in 0..N {
        let reply = infer(&client, &daemon.base, &format!("once {n}")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let id = reply.body["job_id"].as_str().unwrap().to_string();
        // Answered before its write lands, yet found at once.
        let status = client
            .get(&daemon.url(&format!("/status/{id}")))
            .await
            .unwrap();
        assert_eq!(status.body["status"], "completed", "{}", status.body);
        ids.push(id);
    }
    // Written just after the answers, so perhaps not all yet.
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    let mut written = commits(&client, &daemon).await - before;
    while written < N as f64 && std::time::Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(10)).await;
        written = commits(&client, &daemon).await - before;
    }
    // One commit per job; a learned estimate may be flushed meanwhile.
    assert!(
        (N as f64..N as f64 + 3.0).contains(&written),
        "{written} commits for {N} jobs"
    );
    // Each answered from the log: the fsyncs come later, a few for all of them.
    let (synced, _) = syncs(&client, &daemon).await;
    assert!(
        synced - synced_before <= 3.0,
        "{} fsyncs for {N} answers",
        synced - synced_before
    );
    while syncs(&client, &daemon).await.1 == 0.0 {
        assert!(
            std::time::Instant::now() < give_up,
            "the answers never reached the disk"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let start = || Daemon::start(DaemonOptions::new(&data).with_config(&config));
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

/// Sends `path` a JSON body over a raw connection and hangs up `after`,
/// without reading an answer.
async fn leave_after(base: &str, path: &str, body: &serde_json::Value, after: Duration) {
    use tokio::io::AsyncWriteExt;
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let address = base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(after).await;
    drop(socket);
}

/// `gpubridge_jobs_total` for the LLM service, completed and failed, once
/// `jobs` were accepted and have ended (their end counts once written).
async fn settled(client: &JsonClient, daemon: &InProcess, jobs: f64) -> (f64, f64) {
    let count = |status| {
        let series = format!("gpubridge_jobs_total{{service=\"llm-4090\",status=\"{status}\"}}");
        async move { sample(client, daemon, &series).await }
    };
    let give_up = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (accepted, completed, failed) = (
            count("accepted").await,
            count("completed").await,
            count("failed").await,
        );
        let ended = accepted >= jobs && completed + failed >= accepted;
        if ended || std::time::Instant::now() > give_up {
            assert_eq!(
                (accepted, completed + failed),
                (jobs, jobs),
                "(accepted, ended)"
            );
            return (completed, failed);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An inline job runs in its waiting request's task. When that request stops
/// waiting (its wait ran out, or its client left) the job goes on in a task of
/// its own: to its end, or to its stop if the client's leaving stops it.
#[tokio::test]
async fn a_job_whose_request_stops_waiting_still_ends() {
    let standin = Standin::start("k").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = providers_config(&standin.base_url(), "k", &["groq"]);
    config.push_str("[http]\ninline_wait_ms = 100\n");
    let daemon = InProcess::configured(dir.path(), &config).await;
    let client = JsonClient::new();
    standin.set_behavior(Behavior::Slow(Duration::from_millis(600)));

    // The wait runs out: 202 with an id, and the job ends on its own.
    let reply = infer(&client, &daemon.base, "outwaited").await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.body["job_id"].as_str().unwrap();
    let done = wait_terminal(&client, &daemon.base, id, 20).await.unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["text"], "stand-in reply to: outwaited");
    let (completed, failed) = settled(&client, &daemon, 1.0).await;

    // The client of /inference leaves: its job still completes.
    let prompt = json!({ "prompt": "left" });
    leave_after(
        &daemon.base,
        "/inference",
        &prompt,
        Duration::from_millis(50),
    )
    .await;
    assert_eq!(
        settled(&client, &daemon, 2.0).await,
        (completed + 1.0, failed),
        "completed without its client"
    );

    // The client of a whole chat completion leaves: its job stops there,
    // long before the backend's 30 s.
    standin.set_behavior(Behavior::Slow(Duration::from_secs(30)));
    let chat = json!({"model": "meta-llama/Llama-3.3-70B-Instruct", "messages": [{"role": "user", "content": "hi"}]});
    leave_after(
        &daemon.base,
        "/v1/chat/completions",
        &chat,
        Duration::from_millis(50),
    )
    .await;
    assert_eq!(
        settled(&client, &daemon, 3.0).await,
        (completed + 1.0, failed + 1.0),
        "stopped when its client left"
    );
}

/// A stream shows its job's id with its first chunk. Without accounts the job
/// starts before it is written, and is written while its backend makes that
/// chunk: by then it is durable, so it survives a `kill -9` and runs again. A
/// stream that ends is stored with all it streamed.
#[tokio::test]
async fn a_streamed_job_is_durable_by_its_first_chunk() {
    let standin = Standin::start("k").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = providers_config(&standin.base_url(), "k", &["groq"]);
    let start = || Daemon::start(DaemonOptions::new(&data).with_config(&config));
    let mut daemon = start();
    let client = JsonClient::new();
    let body = json!({"model": "meta-llama/Llama-3.3-70B-Instruct", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let url = daemon.url("/v1/chat/completions");
    let job_id = |stream: &EventStream| {
        stream.headers["x-gpubridge-job-id"]
            .to_str()
            .unwrap()
            .to_string()
    };

    let stream = EventStream::open(&url, &[], &body).await.unwrap();
    assert_eq!(stream.status, 200);
    let id = job_id(&stream);
    let events = stream.rest().await.unwrap();
    assert_eq!(streamed_content(&events), streamed_text(4));
    let done = wait_terminal(&client, &daemon.base, &id, 10).await.unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["text"], streamed_text(4), "{done}");

    // Each stream still running, past its first chunk, when the daemon dies.
    standin.set_stream_plan(StreamPlan {
        chunks: 8,
        interval: Duration::from_millis(300),
        die_after: None,
    });
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = EventStream::open(&url, &[], &body).await.unwrap();
        assert_eq!(stream.status, 200);
        assert!(stream.next().await.unwrap().is_some(), "a first chunk");
        open.push((job_id(&stream), stream));
    }
    daemon.kill9();
    standin.set_stream_plan(StreamPlan::default());
    let daemon = start();
    for (id, _stream) in &open {
        let done = wait_terminal(&client, &daemon.base, id, 30).await.unwrap();
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["recoveries"], 1, "ran again after the kill: {done}");
    }
}
