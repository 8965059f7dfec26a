//! The daemon as a library: started and stopped in-process, its store behind
//! the port (an unreadable record is a counted 500, never a 404), its cap on
//! connections, and job history paged by offset and by cursor.

use gpubridge_scheduler::jobs::JOBS;
use gpubridge_store::WriteSet;
use gpubridge_tests::accounts::{grant, register};
use gpubridge_tests::{submit, wait_terminal, DaemonOptions, InProcess, JsonClient};
use serde_json::json;
use std::io::{Read, Write};
use std::time::Duration;

#[tokio::test]
async fn an_unreadable_record_is_a_counted_500_not_a_404() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = InProcess::start(DaemonOptions::new(dir.path().join("data"))).await;
    let client = JsonClient::new();
    let reply = submit(&client, &daemon.base, "echo", json!({"a": 1}))
        .await
        .unwrap();
    let id = reply.body["job_id"].as_str().unwrap().to_string();
    wait_terminal(&client, &daemon.base, &id, 10).await.unwrap();

    // Damage a stored job as a disk or a bad migration could.
    let damaged = "00000000-0000-4000-8000-000000000000";
    let mut writes = WriteSet::new();
    writes.put(JOBS, damaged, vec![1, 0xff, 0xfe]);
    daemon
        .daemon()
        .scheduler()
        .store()
        .commit(writes)
        .await
        .unwrap();

    let read = client
        .get(&daemon.url(&format!("/status/{damaged}")))
        .await
        .unwrap();
    assert_eq!(read.status, 500, "{}", read.body);
    assert!(read.body["error"]
        .as_str()
        .unwrap()
        .contains("could not be read"));
    assert!(read.body["hint"].is_string());
    let missing = client
        .get(&daemon.url("/status/00000000-0000-4000-8000-000000000001"))
        .await
        .unwrap();
    assert_eq!(missing.status, 404, "absent is still 404");
    let metrics = client.get(&daemon.url("/metrics")).await.unwrap();
    let text = String::from_utf8_lossy(&metrics.raw);
    assert!(
        text.contains("gpubridge_store_undecodable_records_total{table=\"jobs\"} 1"),
        "{text}"
    );
    assert!(text.contains("gpubridge_store_commits_total"));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_room() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[http]\nmax_connections = 2\n";
    let daemon = InProcess::configured(dir.path(), config).await;
    let addr = daemon.base.trim_start_matches("http://").to_string();
    let first = std::net::TcpStream::connect(&addr).unwrap();
    let second = std::net::TcpStream::connect(&addr).unwrap();
    // Both slots are taken by idle connections: a third request is not served...
    let third = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "served beyond the cap");
    // ...until one of them closes.
    drop(first);
    let answer = tokio::task::spawn_blocking(move || third.join().unwrap())
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(second);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_by_offset_and_by_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DaemonOptions::new(dir.path().join("data"));
    options.accounts = true;
    let daemon = InProcess::start(options).await;
    let anonymous = JsonClient::new();
    let me = register(&anonymous, &daemon.base, "pages@example.com")
        .await
        .unwrap();
    grant(&anonymous, &daemon.base, &me.id, 1.0).await.unwrap();
    let client = anonymous.with_bearer(&me.key);
    let mut ids = Vec::new();
    for n in 0..23 {
        let reply = submit(&client, &daemon.base, "echo", json!({"n": n}))
            .await
            .unwrap();
        assert_eq!(reply.status, 202, "{}", reply.body);
        ids.push(reply.body["job_id"].as_str().unwrap().to_string());
    }
    ids.reverse(); // newest first
    let mut seen = Vec::new();
    let mut url = daemon.url("/account/jobs?limit=10");
    loop {
        let page = client.get(&url).await.unwrap();
        assert_eq!(page.status, 200, "{}", page.body);
        seen.extend(
            page.body["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["job_id"].as_str().unwrap().to_string()),
        );
        match page.body["next_cursor"].as_str() {
            Some(cursor) => url = daemon.url(&format!("/account/jobs?limit=10&cursor={cursor}")),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every job once, newest first");
    let middle = client
        .get(&daemon.url("/account/jobs?limit=5&offset=10"))
        .await
        .unwrap();
    let middle: Vec<&str> = middle.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        middle,
        ids[10..15].iter().map(String::as_str).collect::<Vec<_>>()
    );
    let past = client
        .get(&daemon.url("/account/jobs?offset=23"))
        .await
        .unwrap();
    assert_eq!(past.body["count"], 0);
    let bad = client
        .get(&daemon.url("/account/jobs?cursor=nope"))
        .await
        .unwrap();
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["details"]["field"], "cursor");
    daemon.stop().await;
}

#[tokio::test]
async fn a_stopped_daemon_keeps_what_it_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let daemon = InProcess::start(DaemonOptions::new(&data)).await;
    let client = JsonClient::new();
    let reply = submit(&client, &daemon.base, "echo", json!({"kept": true}))
        .await
        .unwrap();
    let id = reply.body["job_id"].as_str().unwrap().to_string();
    wait_terminal(&client, &daemon.base, &id, 10).await.unwrap();
    let base = daemon.base.clone();
    daemon.stop().await;
    assert!(
        client.get(&format!("{base}/health")).await.is_err(),
        "the port is closed"
    );

    let again = InProcess::start(DaemonOptions::new(&data)).await;
    let read = client
        .get(&again.url(&format!("/status/{id}")))
        .await
        .unwrap();
    assert_eq!(read.body["output"], json!({"kept": true}));
    again.stop().await;
}

/// Names of a process's threads, with how many share each.
fn threads(pid: u32) -> std::collections::BTreeMap<String, usize> {
    let mut names = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let comm = std::fs::read_to_string(task.unwrap().path().join("comm")).unwrap_or_default();
        *names.entry(comm.trim().to_string()).or_default() += 1;
    }
    names
}

/// `gpubridge serve` purges freed memory from one jemalloc background thread
/// rather than in requests; an operator's MALLOC_CONF is left as given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allocator_purges_in_one_background_thread_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    for (env, expected) in [(None, 1), (Some("background_thread:false"), 0)] {
        let mut options = DaemonOptions::new(dir.path().join("data"));
        if let Some(conf) = env {
            options.env.push(("MALLOC_CONF".into(), conf.into()));
        }
        let mut daemon = gpubridge_tests::Daemon::start(options);
        let names = threads(daemon.pid().unwrap());
        let background = names.get("jemalloc_bg_thd").copied().unwrap_or(0);
        assert_eq!(background, expected, "MALLOC_CONF {env:?}: {names:?}");
        daemon.kill9();
    }
}
