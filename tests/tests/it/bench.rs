//! `gpubridge-bench --target` and `--compare`, as a benchmarker runs them: a
//! real process driving open-loop load at loopback targets, its JSON report
//! read back.

use gpubridge_tests::{binary, Standin};
use serde_json::Value;

/// Two targets compared at one rate (`--compare`), each warmed up, then each
/// run taken in two slices in turn: every slice's requests count, once, in
/// its target's run, and the warm-up's in none.
#[tokio::test]
async fn targets_taken_in_turn_count_every_slice() {
    let standin = Standin::start("k").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("sweep.json");
    let url = format!("{}/chat/completions", standin.base_url());
    let output = tokio::process::Command::new(binary("gpubridge-bench"))
        .args([
            "--bearer",
            "k",
            "--seconds",
            "2",
            "--rounds",
            "2",
            "--rates",
            "50",
            "--warmup-seconds",
            "0.5",
        ])
        .args([
            "--compare",
            &format!("direct=openai-chat@{url},again=openai-chat@{url}"),
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["rounds"], 2, "{report}");
    assert_eq!(report["warmup_seconds"], 0.5, "{report}");
    assert_eq!(report["pacing"], "precise", "the default, {report}");
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{report}");
    for run in runs {
        // 50 req/s for 2 s, in two 1 s slices.
        assert_eq!(run["ok"], 100, "{run}");
        assert_eq!(run["errors"], 0, "{run}");
        // Sent at 50 req/s, every request's lateness was measured.
        assert!(run["sent_late_max_us"].as_u64().is_some(), "{run}");
        assert!(
            run["slowest_due_unix_ms"].as_u64() > Some(1_700_000_000_000),
            "{run}"
        );
        // Window by window, both slices: every request in the window it was due.
        let windows = run["timeline"].as_array().unwrap();
        let ok: u64 = windows.iter().map(|w| w["ok"].as_u64().unwrap()).sum();
        assert_eq!(ok, 100, "{run}");
        let starts: Vec<u64> = windows
            .iter()
            .map(|w| w["start_unix_ms"].as_u64().unwrap())
            .collect();
        assert!(starts.windows(2).all(|p| p[0] < p[1]), "{starts:?}");
        assert!(starts.iter().all(|s| s % 100 == 0), "{starts:?}");
    }
    // Each target's 25 warm-up requests were sent, and counted in no run.
    assert_eq!(standin.requests(), 250);
    assert!(stdout.contains("again"), "{stdout}");
}

/// Two targets of one name could not be told apart in the report: refused
/// before any request is sent.
#[tokio::test]
async fn targets_need_names_of_their_own() {
    let standin = Standin::start("k").await.unwrap();
    let url = format!("{}/chat/completions", standin.base_url());
    let output = tokio::process::Command::new(binary("gpubridge-bench"))
        .args(["--rates", "50", "--seconds", "1"])
        .args(["--target", &format!("direct=openai-chat@{url}")])
        .args(["--compare", &format!("direct=openai-chat@{url}")])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("two targets are named direct"), "{stderr}");
    assert_eq!(standin.requests(), 0);
}

/// The floor proxy answers as its upstream does, key and all: the same chat
/// completion as asked directly, the upstream's 401 for a wrong key; a refused
/// upstream is a 502 and an oversized body a 413, in the contract's envelope.
#[tokio::test]
async fn the_floor_proxy_forwards_and_fails_in_the_envelope() {
    use gpubridge_tests::floor::FloorProxy;
    use gpubridge_tests::{assert_envelope, JsonClient};
    let standin = Standin::start("floor-key").await.unwrap();
    let upstream = format!("http://{}", standin.addr).parse().unwrap();
    let floor = FloorProxy::start("127.0.0.1:0".parse().unwrap(), &upstream)
        .await
        .unwrap();
    let chat = serde_json::json!({
        "model": "llama-3.3-70b-versatile",
        "messages": [{"role": "user", "content": "hello"}],
    });
    let client = JsonClient::new().with_bearer("floor-key");
    let direct = client
        .post_json(
            &format!("{}/chat/completions", standin.base_url()),
            &chat,
            &[],
        )
        .await
        .unwrap();
    let url = format!("http://{}/v1/chat/completions", floor.addr);
    let through = client.post_json(&url, &chat, &[]).await.unwrap();
    assert_eq!(through.status, 200, "{}", through.body);
    assert_eq!(
        through.headers["content-type"],
        direct.headers["content-type"]
    );
    assert_eq!(through.body["object"], "chat.completion");
    assert_eq!(
        through.body["choices"][0]["message"]["content"],
        direct.body["choices"][0]["message"]["content"]
    );
    assert_eq!(standin.requests_to("/v1/chat/completions"), 2);

    let wrong_key = JsonClient::new().with_bearer("not-the-key");
    let refused = wrong_key.post_json(&url, &chat, &[]).await.unwrap();
    assert_eq!(refused.status, 401, "{}", refused.body);

    let huge = vec![b'x'; (16 << 20) + 1];
    let reply = client
        .send(hyper::Method::POST, &url, &[], huge)
        .await
        .unwrap();
    assert_envelope(&reply, 413);

    // An upstream that is gone: a loopback port nothing listens on any more.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_uri = format!("http://{}", gone.local_addr().unwrap())
        .parse()
        .unwrap();
    drop(gone);
    let orphan = FloorProxy::start("127.0.0.1:0".parse().unwrap(), &gone_uri)
        .await
        .unwrap();
    let url = format!("http://{}/v1/chat/completions", orphan.addr);
    assert_envelope(&client.post_json(&url, &chat, &[]).await.unwrap(), 502);
}
