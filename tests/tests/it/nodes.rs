//! Node agents over QUIC, as separate processes against the real daemon: jobs
//! flow through agents, survive an agent's kill -9 and another's drain, and every
//! refusal (token, certificate, protocol) is clear.

use gpubridge_tests::{
    create_token, echo_service, submit, wait_terminal, AgentProcess, Daemon, DaemonOptions,
    JsonClient, Standin, ADMIN_TOKEN,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A daemon whose `echo` runs only on agents, with the admin API on.
fn agent_daemon(data: &Path, extra_config: &str) -> Daemon {
    let config = format!("[scheduler]\nbuiltin_echo = false\n{extra_config}");
    let mut options = DaemonOptions::new(data);
    options.config = Some(&config);
    options
        .env
        .push(("GPUBRIDGE_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()));
    Daemon::start(options)
}

fn nodes_addr(daemon: &Daemon) -> String {
    daemon.nodes_addr.clone().expect("the node listener is on")
}

async fn admin_nodes(daemon: &Daemon) -> Value {
    let reply = JsonClient::new()
        .with_bearer(ADMIN_TOKEN)
        .get(&daemon.url("/admin/nodes"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

async fn wait_for_nodes(daemon: &Daemon, count: usize) -> Value {
    for _ in 0..500 {
        let nodes = admin_nodes(daemon).await;
        if nodes["count"] == count {
            return nodes;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("expected {count} nodes: {}", admin_nodes(daemon).await);
}

#[tokio::test]
async fn echo_runs_through_an_agent_and_admin_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = agent_daemon(&dir.path().join("data"), "");
    let client = JsonClient::new();

    // Before any agent: echo has no live backend.
    let refused = submit(&client, &daemon.base, "echo", json!({}))
        .await
        .unwrap();
    assert_eq!(refused.status, 503, "{}", refused.body);

    let agent = AgentProcess::start(
        dir.path(),
        "gpu-a",
        &nodes_addr(&daemon),
        &daemon.join_token(),
        &echo_service(8, 0),
    );
    agent.wait_joined();
    let nodes = wait_for_nodes(&daemon, 1).await;
    let node = &nodes["nodes"][0];
    assert_eq!(node["node_id"], "gpu-a");
    assert_eq!(node["tier"], "other", "no GPU here");
    assert_eq!(node["services"][0]["service"], "echo");
    assert_eq!(node["services"][0]["slots"], 8);
    assert_eq!(node["healthy"], true);

    let input = json!({"hello": "agent", "n": [1, 2, 3], "text": "é".repeat(3000)});
    let accepted = submit(&client, &daemon.base, "echo", input.clone())
        .await
        .unwrap();
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let id = accepted.body["job_id"].as_str().unwrap();
    let done = wait_terminal(&client, &daemon.base, id, 20).await.unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"], input);
    assert_eq!(done["backend"], "node:other:echo@gpu-a");

    // /inference-style inline wait works through an agent too, and the catalog says echo is live.
    let catalog = client.get(&daemon.url("/catalog")).await.unwrap();
    assert!(catalog.raw.len() > 100);
    let metrics = client.get(&daemon.url("/metrics")).await.unwrap();
    let text = String::from_utf8_lossy(&metrics.raw);
    assert!(text.contains("gpubridge_nodes_connected 1"), "{text}");
    assert!(
        text.contains("gpubridge_node_free_slots{node=\"gpu-a\",service=\"echo\"} 8"),
        "{text}"
    );
    let nodes = admin_nodes(&daemon).await;
    assert_eq!(nodes["nodes"][0]["completed"], 1);
    assert!(nodes["nodes"][0]["latency_ms"].as_f64().is_some());
}

#[tokio::test]
async fn thousands_of_jobs_survive_a_kill_9_and_a_drain_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = agent_daemon(&dir.path().join("data"), "");
    let addr = nodes_addr(&daemon);
    let token = daemon.join_token();
    // Slow enough that every agent always has jobs in flight.
    let services = echo_service(16, 20);
    let mut doomed = AgentProcess::start(dir.path(), "doomed", &addr, &token, &services);
    let mut drained = AgentProcess::start(dir.path(), "drained", &addr, &token, &services);
    let steady = AgentProcess::start(dir.path(), "steady", &addr, &token, &services);
    for agent in [&doomed, &drained, &steady] {
        agent.wait_joined();
    }
    wait_for_nodes(&daemon, 3).await;

    let client = JsonClient::new();
    let url = daemon.url("/run");
    let accepted = Arc::new(parking_lot::Mutex::new(Vec::<(String, Value)>::new()));
    let total = 2400;
    let workers = 24;
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let (client, url, accepted) = (client.clone(), url.clone(), accepted.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..total / workers {
                let input = json!({"worker": worker, "n": n});
                let reply = client
                    .post_json(&url, &json!({"service": "echo", "input": input}), &[])
                    .await
                    .unwrap();
                assert_eq!(reply.status, 202, "{}", reply.body);
                let id = reply.body["job_id"].as_str().unwrap().to_string();
                accepted.lock().push((id, input));
            }
        }));
    }
    while accepted.lock().len() < total / 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    doomed.process.kill9();
    while accepted.lock().len() < total / 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drained.process.signal_term();
    for task in tasks {
        task.await.unwrap();
    }
    // The drained agent finishes what it holds, then exits cleanly by itself.
    let exit = drained.process.wait_exit(Duration::from_secs(30));
    assert!(
        exit.is_some_and(|s| s.success()),
        "drained agent exit {exit:?}; log:\n{}",
        drained.process.log_text()
    );
    assert!(drained.process.log_text().contains("drained"));

    let accepted = accepted.lock().clone();
    assert_eq!(accepted.len(), total);
    let mut served_by: HashMap<String, usize> = HashMap::new();
    let mut moved_off_the_dead = 0;
    for (id, input) in &accepted {
        let done = wait_terminal(&client, &daemon.base, id, 60).await.unwrap();
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(&done["output"], input, "output intact");
        let backend = done["backend"].as_str().unwrap().to_string();
        // Exactly one successful attempt, and it is the one reported.
        let attempts = done["attempts"].as_array().cloned().unwrap_or_default();
        let successes: Vec<&Value> = attempts.iter().filter(|a| a["error"].is_null()).collect();
        assert_eq!(successes.len(), 1, "{done}");
        if attempts
            .iter()
            .any(|a| a["backend"] == "node:other:echo@doomed" && !a["error"].is_null())
        {
            moved_off_the_dead += 1;
        }
        *served_by.entry(backend).or_default() += 1;
    }
    assert!(
        moved_off_the_dead > 0,
        "jobs running on the killed agent moved elsewhere"
    );
    // Every agent did real work; the survivor finished what the others left.
    for node in ["doomed", "drained", "steady"] {
        let key = format!("node:other:echo@{node}");
        assert!(
            served_by.get(&key).copied().unwrap_or(0) > 0,
            "{served_by:?}"
        );
    }
    // The dead and the drained agents are gone; the steady one remains.
    let nodes = wait_for_nodes(&daemon, 1).await;
    assert_eq!(nodes["nodes"][0]["node_id"], "steady");
    drop(steady);
}

#[tokio::test]
async fn a_reconnecting_node_replaces_its_old_session_and_admin_drain_works() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = agent_daemon(&dir.path().join("data"), "");
    let addr = nodes_addr(&daemon);
    let token = daemon.join_token();
    let first = AgentProcess::start(dir.path(), "same", &addr, &token, &echo_service(4, 0));
    first.wait_joined();
    let before = wait_for_nodes(&daemon, 1).await;
    // A second process with the same node id takes over.
    let second_dir = dir.path().join("second");
    std::fs::create_dir_all(&second_dir).unwrap();
    let second = AgentProcess::start(&second_dir, "same", &addr, &token, &echo_service(4, 0));
    second.wait_joined();
    let mut after = admin_nodes(&daemon).await;
    for _ in 0..200 {
        if after["nodes"][0]["session"] != before["nodes"][0]["session"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = admin_nodes(&daemon).await;
    }
    assert_eq!(after["count"], 1, "{after}");
    assert_ne!(after["nodes"][0]["session"], before["nodes"][0]["session"]);

    // Draining through the admin API: the node stops taking jobs and leaves.
    let admin = JsonClient::new().with_bearer(ADMIN_TOKEN);
    let reply = admin
        .post_json(&daemon.url("/admin/nodes/same/drain"), &json!({}), &[])
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.body);
    let missing = admin
        .post_json(&daemon.url("/admin/nodes/nobody/drain"), &json!({}), &[])
        .await
        .unwrap();
    assert_eq!(missing.status, 404);
    assert!(missing.body["error"].is_string());
    wait_for_nodes(&daemon, 0).await;
    let unauthorized = JsonClient::new()
        .get(&daemon.url("/admin/nodes"))
        .await
        .unwrap();
    assert_eq!(unauthorized.status, 401);
    drop((first, second));
}

#[tokio::test]
async fn bad_tokens_and_a_foreign_scheduler_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = agent_daemon(&dir.path().join("data"), "");
    let addr = nodes_addr(&daemon);
    let good = daemon.join_token();

    let refused = |name: &str, token: &str| {
        let mut agent = AgentProcess::start(dir.path(), name, &addr, token, &echo_service(1, 0));
        let status = agent.process.wait_exit(Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| !s.success()),
            "{name} should exit with an error: {status:?}"
        );
        agent.process.log_text()
    };
    // Another scheduler's token pins another certificate.
    let foreign = create_token(&dir.path().join("other-scheduler"));
    let log = refused("foreign", &foreign);
    assert!(log.contains("certificate"), "{log}");
    // This scheduler's certificate, but a secret it never issued.
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged_secret = "0".repeat(64);
    parts[2] = &forged_secret;
    let log = refused("forged", &parts.join("."));
    assert!(log.contains("not valid here"), "{log}");
    // Not a token at all.
    let log = refused("garbled", "gpub_not-a-join-token");
    assert!(log.contains("not a join token"), "{log}");
    // A revoked token, while the daemon runs: no restart needed.
    let revoked = daemon.join_token();
    let id = revoked.split('.').nth(1).unwrap().to_string();
    let token_cli = |args: &[&str]| {
        std::process::Command::new(gpubridge_tests::binary("gpubridge"))
            .arg("token")
            .args(args)
            .arg("--data-dir")
            .arg(&daemon.data_dir)
            .output()
            .unwrap()
    };
    let listed = token_cli(&["list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id));
    assert!(token_cli(&["revoke", &id]).status.success());
    assert!(!token_cli(&["revoke", "0123456789abcdef"]).status.success());
    let log = refused("revoked", &revoked);
    assert!(log.contains("revoked"), "{log}");
    // None of them joined.
    assert_eq!(admin_nodes(&daemon).await["count"], 0);
}

#[tokio::test]
async fn a_crashing_runtime_fails_over_to_a_healthy_agent() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = agent_daemon(&dir.path().join("data"), "");
    let addr = nodes_addr(&daemon);
    let token = daemon.join_token();
    let crashing = "[services.echo]\nruntime = \"command\"\nslots = 8\ncommand = [\"/bin/sh\", \"-c\", \"echo segfault >&2; kill -SEGV $$\"]\n";
    let bad = AgentProcess::start(dir.path(), "crashy", &addr, &token, crashing);
    let good = AgentProcess::start(dir.path(), "healthy", &addr, &token, &echo_service(8, 30));
    bad.wait_joined();
    good.wait_joined();
    wait_for_nodes(&daemon, 2).await;
    let client = JsonClient::new();
    let mut ids = Vec::new();
    for n in 0..40 {
        let reply = submit(&client, &daemon.base, "echo", json!({"n": n}))
            .await
            .unwrap();
        assert_eq!(reply.status, 202);
        ids.push((reply.body["job_id"].as_str().unwrap().to_string(), n));
    }
    let mut moved = 0;
    for (id, n) in ids {
        let done = wait_terminal(&client, &daemon.base, &id, 30).await.unwrap();
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["output"], json!({"n": n}));
        assert_eq!(done["backend"], "node:other:echo@healthy");
        let attempts = done["attempts"].as_array().unwrap();
        if attempts.len() > 1 {
            assert!(
                attempts[0]["backend"]
                    .as_str()
                    .unwrap()
                    .ends_with("@crashy"),
                "{done}"
            );
            assert!(
                attempts[0]["error"].as_str().unwrap().contains("segfault"),
                "{done}"
            );
            moved += 1;
        }
    }
    let nodes = admin_nodes(&daemon).await;
    let crashy = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == "crashy")
        .cloned()
        .unwrap();
    assert!(crashy["failed"].as_u64().unwrap() > 0, "{nodes}");
    assert!(
        moved > 0,
        "some jobs went to the crashing agent first and moved"
    );
    drop((bad, good));
}

#[tokio::test]
async fn agent_runtimes_speak_openai_cog_http_and_command() {
    let standin = Standin::start("local-key").await.unwrap();
    let v1 = standin.base_url();
    let root = v1.trim_end_matches("/v1");
    let dir = tempfile::tempdir().unwrap();
    let daemon = agent_daemon(&dir.path().join("data"), "");
    let services = format!(
        r#"
# The media URL below is on loopback.
allow_private_urls = true

[services.llm-4090]
runtime = "openai"
url = "{v1}"
api_key = "local-key"
slots = 4
model_map = {{ "meta-llama/Llama-3.3-70B-Instruct" = "llama-local" }}

[services.embedding-l4]
runtime = "openai"
api = "embeddings"
url = "{v1}"
api_key = "local-key"

[services.image-4090]
runtime = "cog"
url = "{root}/cog"
api_key = "local-key"

[services.rembg-l4]
runtime = "http"
url = "{root}/cog/predictions"
api_key = "local-key"

[services.ocr]
runtime = "command"
command = ["/bin/cat"]
fetch_inputs = ["image_url"]
"#
    );
    let agent = AgentProcess::start(
        dir.path(),
        "gpu-host",
        &nodes_addr(&daemon),
        &daemon.join_token(),
        &services,
    );
    agent.wait_joined();
    wait_for_nodes(&daemon, 1).await;
    let client = JsonClient::new();
    let run = |service: &'static str, input: Value| {
        let (client, base) = (client.clone(), daemon.base.clone());
        async move {
            let reply = submit(&client, &base, service, input).await.unwrap();
            assert_eq!(reply.status, 202, "{service}: {}", reply.body);
            let id = reply.body["job_id"].as_str().unwrap().to_string();
            let done = wait_terminal(&client, &base, &id, 20).await.unwrap();
            assert_eq!(done["status"], "completed", "{service}: {done}");
            assert!(
                done["backend"].as_str().unwrap().ends_with("@gpu-host"),
                "{done}"
            );
            done["output"].clone()
        }
    };
    let chat = run(
        "llm-4090",
        json!({"prompt": "hi", "model": "meta-llama/Llama-3.3-70B-Instruct"}),
    )
    .await;
    assert_eq!(chat["text"], "stand-in reply to: hi", "{chat}");
    assert_eq!(
        chat["model"], "llama-local",
        "the local server's own model name"
    );
    let embedding = run("embedding-l4", json!({"text": "a"})).await;
    assert!(embedding["embedding"].is_array(), "{embedding}");
    let image = run("image-4090", json!({"prompt": "a red fox"})).await;
    assert_eq!(image["output"]["echo"]["prompt"], "a red fox", "{image}");
    assert!(image["metrics"]["predict_time"].is_number());
    let http = run(
        "rembg-l4",
        json!({"image_url": "https://example.com/x.png"}),
    )
    .await;
    assert_eq!(http["status"], "succeeded", "the raw answer: {http}");
    // The agent fetched the URL itself and the command got the file inline.
    let media = format!("{root}/media/clip.wav");
    let ocr = run("ocr", json!({"image_url": media})).await;
    assert_eq!(
        ocr["image_url"], "data:audio/wav;base64,UklGRiQAAABXQVZFZm10IA==",
        "{ocr}"
    );
    assert_eq!(standin.requests_to("/media/clip.wav"), 1);
    assert!(standin.requests_to("/v1/chat/completions") >= 1);
    assert!(standin.requests_to("/cog/predictions") >= 2);
}

#[tokio::test]
async fn serve_with_a_local_agent_runs_echo_over_quic() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DaemonOptions::new(dir.path().join("data"));
    options
        .env
        .push(("GPUBRIDGE_LOCAL_AGENT".into(), "true".into()));
    let daemon = Daemon::start(options);
    let client = JsonClient::new();
    let reply = submit(&client, &daemon.base, "echo", json!({"via": "quic"}))
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.body["job_id"].as_str().unwrap();
    let done = wait_terminal(&client, &daemon.base, id, 20).await.unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"], json!({"via": "quic"}));
    assert_eq!(done["backend"], "node:other:echo@local");
}

#[tokio::test]
async fn gpu_inventory_and_telemetry_come_from_nvml() {
    let dir = tempfile::tempdir().unwrap();
    // A stand-in NVML library with one RTX 4090, loaded by the agent as the real one would be.
    let lib_dir = dir.path().join("nvml");
    std::fs::create_dir_all(&lib_dir).unwrap();
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/fake-nvml.c");
    let built = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(lib_dir.join("libnvidia-ml.so.1"))
        .arg(source)
        .status()
        .expect("a C compiler (cc)");
    assert!(built.success());
    let daemon = agent_daemon(&dir.path().join("data"), "");
    let mut agent = AgentProcess::start_with_env(
        dir.path(),
        "gpu-4090",
        &nodes_addr(&daemon),
        &daemon.join_token(),
        &echo_service(2, 0),
        &[("LD_LIBRARY_PATH", lib_dir.to_str().unwrap())],
    );
    agent.wait_joined();
    let nodes = wait_for_nodes(&daemon, 1).await;
    let node = &nodes["nodes"][0];
    assert_eq!(
        node["tier"], "rtx4090",
        "priced and routed as its GPU: {node}"
    );
    let gpu = &node["gpus"][0];
    assert_eq!(gpu["model"], "NVIDIA GeForce RTX 4090");
    assert_eq!(gpu["memory_mib"], 24564);
    // Telemetry arrives with the heartbeats.
    let mut gpu = gpu.clone();
    for _ in 0..100 {
        if gpu["utilization_percent"] == 42 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        gpu = admin_nodes(&daemon).await["nodes"][0]["gpus"][0].clone();
    }
    assert_eq!(gpu["utilization_percent"], 42, "{gpu}");
    assert_eq!(gpu["memory_used_mib"], 20000);
    assert_eq!(gpu["temperature_celsius"], 61);
    let client = JsonClient::new();
    let done = submit(&client, &daemon.base, "echo", json!({"on": "gpu"}))
        .await
        .unwrap();
    let id = done.body["job_id"].as_str().unwrap();
    let done = wait_terminal(&client, &daemon.base, id, 20).await.unwrap();
    assert_eq!(done["backend"], "node:rtx4090:echo@gpu-4090");
    let metrics = client.get(&daemon.url("/metrics")).await.unwrap();
    let text = String::from_utf8_lossy(&metrics.raw);
    assert!(
        text.contains("gpubridge_node_gpu_temperature_celsius{gpu=\"0\",node=\"gpu-4090\"} 61"),
        "{text}"
    );
    assert!(
        agent.process.terminate(),
        "SIGTERM drains and exits cleanly"
    );
}
