//! A hundred simulated agents over real QUIC against the in-process daemon: the
//! scheduler spreads jobs over them, notices one gone silent, and moves the
//! jobs it held; every job completes exactly once with its own output.

use gpubridge_protocol::node::GpuTier;
use gpubridge_tests::fleet::{Arrival, SimAgentSpec, SimFleet};
use gpubridge_tests::{create_token, wait_terminal, InProcess, JsonClient};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const CONFIG: &str = "[scheduler]\nbuiltin_echo = false\n[scheduler.nodes]\nheartbeat_interval_ms = 100\ndead_after_ms = 500\n";

fn specs(agents: usize) -> Vec<SimAgentSpec> {
    (0..agents)
        .map(|i| SimAgentSpec {
            node_id: format!("sim-{i}"),
            service: "echo".into(),
            // The first is the fastest, so it holds jobs when it goes silent.
            slots: if i == 0 { 32 } else { 4 + (i % 5) as u32 },
            latency: Duration::from_millis(if i == 0 { 2 } else { 5 + 3 * (i % 7) as u64 }),
            tier: GpuTier::Other,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_agents_share_jobs_and_a_silent_ones_jobs_move() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = InProcess::configured(dir.path(), CONFIG).await;
    let token = create_token(&daemon.data_dir);
    let scheduler = daemon.nodes_addr.clone().unwrap().parse().unwrap();
    let arrivals = Arc::new(Mutex::new(Vec::<(usize, u64)>::new()));
    let seen = arrivals.clone();
    let on_arrival = Arc::new(move |arrival: &Arrival<'_>| {
        let input: Value = serde_json::from_str(&arrival.assignment.input_json).unwrap();
        seen.lock()
            .push((arrival.agent, input["n"].as_u64().unwrap()));
    });
    let fleet = SimFleet::join(scheduler, &token, specs(100), on_arrival)
        .await
        .unwrap();
    assert_eq!(fleet.len(), 100);

    let client = JsonClient::new();
    let url = daemon.url("/run");
    let total = 400u64;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let accepted = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (client, url, next, accepted) =
                (client.clone(), url.clone(), next.clone(), accepted.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= total {
                        return;
                    }
                    let body = json!({"service": "echo", "input": {"n": n}});
                    let reply = client.post_json(&url, &body, &[]).await.unwrap();
                    assert_eq!(reply.status, 202, "{}", reply.body);
                    let id = reply.body["job_id"].as_str().unwrap().to_string();
                    accepted.lock().push((id, n));
                }
            })
        })
        .collect();
    while accepted.lock().len() < 100 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    fleet.silence(0);
    for worker in workers {
        worker.await.unwrap();
    }

    let accepted = accepted.lock().clone();
    let mut moved = 0;
    for (id, n) in &accepted {
        let done = wait_terminal(&client, &daemon.base, id, 60).await.unwrap();
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["output"], json!({"n": n}), "its own output");
        let attempts = done["attempts"].as_array().cloned().unwrap_or_default();
        let successes = attempts.iter().filter(|a| a["error"].is_null()).count();
        assert_eq!(successes, 1, "{done}");
        if attempts
            .iter()
            .any(|a| a["backend"] == "node:other:echo@sim-0" && !a["error"].is_null())
        {
            assert_ne!(done["backend"], "node:other:echo@sim-0", "{done}");
            moved += 1;
        }
    }
    assert!(moved > 0, "the silent agent held jobs, and they moved");

    // Each job reached at most one live agent and at most once the silent one:
    // answered there before it went quiet, or moved from it exactly once.
    let arrivals = arrivals.lock().clone();
    let mut by_job: HashMap<u64, Vec<usize>> = HashMap::new();
    for (agent, n) in &arrivals {
        by_job.entry(*n).or_default().push(*agent);
    }
    assert_eq!(by_job.len(), total as usize);
    let mut moved_seen = 0;
    for (n, agents) in &by_job {
        let on_silent = agents.iter().filter(|a| **a == 0).count();
        let on_live = agents.len() - on_silent;
        assert!(on_silent <= 1 && on_live <= 1, "job {n} went to {agents:?}");
        moved_seen += usize::from(on_silent == 1 && on_live == 1);
    }
    // A job sent to the silent agent as its connection closed may never have
    // reached it; every move an agent saw is one the job records.
    assert!(
        moved_seen > 0 && moved_seen <= moved,
        "{moved_seen} of {moved}"
    );
    let workers: HashSet<usize> = arrivals.iter().map(|(agent, _)| *agent).collect();
    assert!(workers.len() > 2, "the load spread: {workers:?}");

    let (_, why) = fleet
        .closed(0)
        .expect("the scheduler closed the silent agent");
    assert!(why.contains("heartbeat"), "{why}");
    assert!(fleet.closed(1).is_none(), "the others stay");
    assert!(fleet.heartbeats() > 100);
    fleet.leave().await;
    daemon.stop().await;
}
