//! The disk fills up under a running daemon: `/run` answers 503 with a hint
//! and nothing is half-written or charged; when space returns the daemon takes
//! jobs again by itself, and the ledger audits clean.

use gpubridge_tests::accounts::{audit_live, funded};
use gpubridge_tests::disk::SmallDisk;
use gpubridge_tests::{assert_envelope, wait_terminal, Daemon, DaemonOptions, JsonClient, Reply};
use serde_json::json;
use std::time::{Duration, Instant};

async fn run(client: &JsonClient, base: &str, n: u32) -> Reply {
    let body = json!({"service": "echo", "input": {"n": n, "pad": "x".repeat(4096)}});
    client
        .post_json(&format!("{base}/run"), &body, &[])
        .await
        .unwrap()
}

#[tokio::test]
async fn a_full_disk_refuses_jobs_cleanly_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(dir.path(), 64);
    let mut options = DaemonOptions::new(disk.path.join("data"));
    options.accounts = true;
    let daemon = Daemon::start(options);
    let account = funded(&daemon.base, "disk@example.com", 5.0).await.unwrap();
    let client = JsonClient::new().with_bearer(&account.key);
    let first = run(&client, &daemon.base, 0).await;
    assert_eq!(first.status, 202, "{}", first.body);

    disk.fill();
    // Space RocksDB set aside earlier may take a few writes to use up.
    let mut refused = None;
    for n in 1..2000 {
        let reply = run(&client, &daemon.base, n).await;
        match reply.status.as_u16() {
            202 => continue,
            _ => {
                refused = Some(reply);
                break;
            }
        }
    }
    let refused = refused.expect("a full disk never refused a job");
    assert_envelope(&refused, 503);
    assert!(
        refused.headers.contains_key("retry-after"),
        "{:?}",
        refused.headers
    );

    disk.free();
    let deadline = Instant::now() + Duration::from_secs(90);
    let accepted = loop {
        let reply = run(&client, &daemon.base, 9999).await;
        if reply.status == 202 {
            break reply;
        }
        assert!(
            Instant::now() < deadline,
            "still refusing after space returned: {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let id = accepted.body["job_id"].as_str().unwrap();
    let done = wait_terminal(&client, &daemon.base, id, 30).await.unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    let audit = audit_live(&daemon.base).await;
    assert_eq!(audit["problems"], json!([]), "{audit}");
    drop(daemon);
}
