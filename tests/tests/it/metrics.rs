//! What operators scrape and how the front door takes connections: the
//! gateway's own overhead per route, series only for what is used, and a
//! listen backlog that holds a burst of clients.

use gpubridge_tests::accounts::funded;
use gpubridge_tests::{
    metric_sample as sample, providers_config, Behavior, DaemonOptions, InProcess, JsonClient,
    Standin, ALL_PROVIDERS,
};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// The upstream takes at least this long to answer.
const UPSTREAM: Duration = Duration::from_millis(400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overhead_leaves_out_the_time_spent_on_backends() {
    let standin = Standin::start("k").await.unwrap();
    standin.set_behavior(Behavior::Slow(UPSTREAM));
    let dir = tempfile::tempdir().unwrap();
    let config = providers_config(&standin.base_url(), "k", &["groq"]);
    let daemon = InProcess::configured(dir.path(), &config).await;
    let client = JsonClient::new();
    let answer = client
        .post_json(&daemon.url("/inference"), &json!({"prompt": "hi"}), &[])
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let chat = json!({"model": "meta-llama/Llama-3.3-70B-Instruct", "messages": [{"role": "user", "content": "hi"}]});
    let answer = client
        .post_json(&daemon.url("/v1/chat/completions"), &chat, &[])
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);

    let metrics = client.get(&daemon.url("/metrics")).await.unwrap();
    let text = String::from_utf8_lossy(&metrics.raw);
    // The two jobs are in RocksDB's memtables, and the scrape says how much they hold.
    let memtables = sample(&text, "gpubridge_store_memory_bytes{part=\"memtables\"}");
    assert!(memtables.is_some_and(|bytes| bytes > 0.0), "{text}");
    for route in ["/inference", "/v1/chat/completions"] {
        let (count, overhead, total) = overhead_of(&text, route);
        assert_eq!(count, 1.0, "{route}: {text}");
        // The request spent at least the upstream's delay on the backend, and
        // none of that is the gateway's.
        assert!(
            overhead >= 0.0 && overhead <= total - UPSTREAM.as_secs_f64(),
            "{route}: overhead {overhead} s of {total} s"
        );
    }
    // A route that waits on nothing is overhead through and through.
    let again = client.get(&daemon.url("/metrics")).await.unwrap();
    let text = String::from_utf8_lossy(&again.raw);
    let series = |name: &str| format!("{name}{{route=\"/metrics\"}}");
    let overhead = sample(&text, &series("gpubridge_overhead_seconds_sum"));
    let total = sample(
        &text,
        &series("gpubridge_http_request_duration_seconds_sum"),
    );
    assert!(
        overhead.is_some() && overhead == total,
        "{overhead:?} {total:?}"
    );
    daemon.stop().await;
}

/// A route's overhead in a scrape: requests counted, overhead and time in
/// the gateway (sums, seconds).
fn overhead_of(text: &str, route: &str) -> (f64, f64, f64) {
    let series = |name: &str| format!("{name}{{route=\"{route}\"}}");
    let read = |name: &str| sample(text, &series(name)).unwrap_or_else(|| panic!("{name}: {text}"));
    (
        read("gpubridge_overhead_seconds_count"),
        read("gpubridge_overhead_seconds_sum"),
        read("gpubridge_http_request_duration_seconds_sum"),
    )
}

/// A second request with the same Idempotency-Key, sent while the first one's
/// job runs, waits for that job: time on a backend for it too, not overhead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_waiting_for_the_first_request_is_not_overhead() {
    let slow = Duration::from_millis(1500);
    let standin = Standin::start("k").await.unwrap();
    standin.set_behavior(Behavior::Slow(slow));
    let dir = tempfile::tempdir().unwrap();
    let config = providers_config(&standin.base_url(), "k", &["groq"]);
    let mut options = DaemonOptions::new(dir.path().join("data"));
    options.config = Some(&config);
    options.accounts = true;
    let daemon = InProcess::start(options).await;
    let account = funded(&daemon.base, "replay@example.com", 5.0)
        .await
        .unwrap();
    let client = JsonClient::new().with_bearer(&account.key);
    let url = daemon.url("/inference");
    let ask = |client: JsonClient, url: String| async move {
        let body = json!({"prompt": "once"});
        client
            .post_json(&url, &body, &[("idempotency-key", "replay-1")])
            .await
    };
    let first = tokio::spawn(ask(client.clone(), url.clone()));
    // The first job is running on the stand-in before the replay arrives.
    while standin.requests() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = ask(client.clone(), url).await.unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(first.body["job_id"], second.body["job_id"], "one job");
    assert_eq!(standin.requests(), 1);

    let metrics = client.get(&daemon.url("/metrics")).await.unwrap();
    let text = String::from_utf8_lossy(&metrics.raw);
    let (count, overhead, total) = overhead_of(&text, "/inference");
    assert_eq!(count, 2.0, "{text}");
    // Both requests waited on the stand-in for most of its delay; counted as
    // the gateway's, the replay's wait alone would be over a second.
    assert!(
        total >= slow.as_secs_f64() * 1.5 && overhead < slow.as_secs_f64() / 2.0,
        "overhead {overhead} s of {total} s"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_carries_series_only_for_what_was_used() {
    let standin = Standin::start("k").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = providers_config(&standin.base_url(), "k", &ALL_PROVIDERS);
    let daemon = InProcess::configured(dir.path(), &config).await;
    let client = JsonClient::new();
    let scrape = || async { client.get(&daemon.url("/metrics")).await.unwrap().raw };
    let idle = scrape().await;
    let text = String::from_utf8_lossy(&idle);
    assert!(
        !text.contains("gpubridge_backend_attempt_seconds_bucket"),
        "no attempt series before any attempt"
    );
    let answer = client
        .post_json(&daemon.url("/inference"), &json!({"prompt": "hi"}), &[])
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    let used = scrape().await;
    let text = String::from_utf8_lossy(&used);
    let attempts: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("gpubridge_backend_attempt_seconds_count"))
        .collect();
    assert_eq!(attempts.len(), 1, "only the backend that ran: {attempts:?}");
    assert!(attempts[0].contains("outcome=\"success\""), "{attempts:?}");
    assert!(
        used.len() < 100_000,
        "a scrape of {} bytes with every provider configured",
        used.len()
    );
    daemon.stop().await;
}

/// The HTTP server accepts nothing while its one connection slot is held, so
/// a burst of clients connecting at once waits in the kernel's accept queue:
/// with the OS default backlog of 128 most of 600 would have their
/// handshakes dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connections_waits_in_the_listen_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = InProcess::configured(dir.path(), "[http]\nmax_connections = 1\n").await;
    let addr: SocketAddr = daemon.base.trim_start_matches("http://").parse().unwrap();
    let holder = TcpStream::connect(addr).await.unwrap();
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..600 {
        // A dropped handshake is retried after a second and dropped again
        // while the queue stays full: two seconds tells queued from dropped.
        burst.spawn(tokio::time::timeout(
            Duration::from_secs(2),
            TcpStream::connect(addr),
        ));
    }
    let mut open = Vec::new();
    while let Some(connected) = burst.join_next().await {
        if let Ok(Ok(Ok(stream))) = connected {
            open.push(stream);
        }
    }
    assert_eq!(open.len(), 600, "handshakes dropped by a full accept queue");
    drop((holder, open));
    daemon.stop().await;
}
