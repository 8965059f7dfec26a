//! Limits that answer 429 with `Retry-After` in the contract's envelope:
//! request rates per client address and per API key (with the operator's
//! per-account overrides, reloaded while running), unfinished jobs per
//! account, full queues, and bodies too large or too slow per route.

use gpubridge_tests::accounts::{audit_live, funded, register};
use gpubridge_tests::{
    assert_envelope, exchange_on, raw_exchange, wait_terminal, Behavior, DaemonOptions, InProcess,
    JsonClient, Reply, Standin,
};
use hyper::Method;
use serde_json::json;

fn assert_limited(reply: &Reply, limit: &str) {
    assert_envelope(reply, 429);
    let wait: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1, "Retry-After {wait}");
    assert_eq!(reply.body["details"]["limit"], limit, "{}", reply.body);
}

const RATES: &str = "[limits]\nper_ip = { per_second = 0.01, burst = 4 }\nper_key = { per_second = 0.01, burst = 2 }\n";

#[tokio::test]
async fn rates_per_address_and_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DaemonOptions::new(dir.path().join("data"));
    options.accounts = true;
    options.limits = true;
    options.config = Some(RATES);
    let daemon = InProcess::start(options).await;
    let anonymous = JsonClient::new();
    let account = register(&anonymous, &daemon.base, "rates@example.com")
        .await
        .unwrap();
    for _ in 0..3 {
        let catalog = anonymous.get(&daemon.url("/catalog")).await.unwrap();
        assert_eq!(catalog.status, 200);
    }
    let refused = anonymous.get(&daemon.url("/catalog")).await.unwrap();
    assert_limited(&refused, "per client address");
    for _ in 0..5 {
        let health = anonymous.get(&daemon.url("/health")).await.unwrap();
        assert_eq!(health.status, 200, "probes are not limited");
    }
    // A key that is not one spends the address's tokens: no way around them.
    let guessed = JsonClient::new().with_bearer("gpub_0000000000000000000000000000000000000000");
    let guess = guessed.get(&daemon.url("/account/balance")).await.unwrap();
    assert_limited(&guess, "per client address");

    let keyed = anonymous.with_bearer(&account.key);
    let balance = daemon.url("/account/balance");
    for _ in 0..2 {
        assert_eq!(keyed.get(&balance).await.unwrap().status, 200);
    }
    assert_limited(&keyed.get(&balance).await.unwrap(), "per API key");

    // The operator lifts this account's rate and trusts a proxy in front.
    let lifted = format!(
        "{RATES}trusted_proxies = [\"127.0.0.1\"]\n[limits.accounts.{}]\nper_second = 0\n",
        account.id
    );
    daemon.reload(&lifted).unwrap();
    for _ in 0..10 {
        assert_eq!(keyed.get(&balance).await.unwrap().status, 200);
    }
    let behind_proxy = anonymous
        .send(
            Method::GET,
            &daemon.url("/catalog"),
            &[("x-forwarded-for", "203.0.113.9")],
            "",
        )
        .await
        .unwrap();
    assert_eq!(behind_proxy.status, 200, "another client behind the proxy");

    let broken = RATES.replace("burst = 2", "burst = 0");
    let error = daemon.reload(&broken).unwrap_err();
    assert!(error.contains("limits.per_key.burst"), "{error}");
    assert_eq!(
        keyed.get(&balance).await.unwrap().status,
        200,
        "still lifted"
    );
}

/// Groq only, one request in flight and one queued, answering never.
fn one_slot_config(standin: &Standin, extra: &str) -> String {
    format!(
        "[scheduler]\nallow_private_urls = true\n[scheduler.breaker]\nfailure_threshold = 50\n\
         [scheduler.providers.groq]\napi_key = \"k\"\nbase_url = \"{}\"\nrequest_timeout_seconds = 3\n\
         max_in_flight = 1\nqueue_limit = 1\n{extra}",
        standin.base_url()
    )
}

async fn run_llm(client: &JsonClient, base: &str) -> Reply {
    client
        .post_json(
            &format!("{base}/run"),
            &json!({"service": "llm-4090", "input": {"prompt": "hi"}}),
            &[],
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn unfinished_jobs_per_account_and_full_queues() {
    let standin = Standin::start("k").await.unwrap();
    standin.set_behavior(Behavior::Hang);
    let dir = tempfile::tempdir().unwrap();
    let config = one_slot_config(&standin, "");
    let mut options = DaemonOptions::new(dir.path().join("data"));
    options.accounts = true;
    options.config = Some(&config);
    let daemon = InProcess::start(options).await;
    let a = funded(&daemon.base, "a@example.com", 5.0).await.unwrap();
    let b = funded(&daemon.base, "b@example.com", 5.0).await.unwrap();
    let limited = format!(
        "{config}[limits.accounts.{}]\nmax_concurrent_jobs = 1\n",
        a.id
    );
    daemon.reload(&limited).unwrap();
    let (client_a, client_b) = (
        JsonClient::new().with_bearer(&a.key),
        JsonClient::new().with_bearer(&b.key),
    );

    let first = run_llm(&client_a, &daemon.base).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let busy = run_llm(&client_a, &daemon.base).await;
    assert_envelope(&busy, 429);
    assert_eq!(
        busy.body["details"]["max_concurrent_jobs"], 1,
        "{}",
        busy.body
    );

    // B's job waits in Groq's one-place queue; the next finds every queue full.
    let queued = run_llm(&client_b, &daemon.base).await;
    assert_eq!(queued.status, 202, "{}", queued.body);
    let full = run_llm(&client_b, &daemon.base).await;
    assert_envelope(&full, 429);
    assert!(
        full.body["error"].as_str().unwrap().contains("queue"),
        "{}",
        full.body
    );

    // Once A's job ends, A may run another.
    let id = first.body["job_id"].as_str().unwrap();
    let ended = wait_terminal(&client_a, &daemon.base, id, 30)
        .await
        .unwrap();
    assert_eq!(ended["status"], "failed", "{ended}");
    let queued_id = queued.body["job_id"].as_str().unwrap();
    wait_terminal(&client_b, &daemon.base, queued_id, 30)
        .await
        .unwrap();
    let again = run_llm(&client_a, &daemon.base).await;
    assert_eq!(again.status, 202, "{}", again.body);
    let again_id = again.body["job_id"].as_str().unwrap();
    wait_terminal(&client_a, &daemon.base, again_id, 30)
        .await
        .unwrap();

    // Refusals reserved nothing; failed jobs gave their reservations back.
    let audit = audit_live(&daemon.base).await;
    assert_eq!(audit["problems"], json!([]), "{audit}");
    assert_eq!(
        audit["jobs_billed"], 3,
        "refusals were never billed: {audit}"
    );
    for account in audit["accounts"].as_array().unwrap() {
        assert_eq!(account["balance_micros"], 5_000_000, "{audit}");
        assert_eq!(account["open_reservations_micros"], 0, "{audit}");
    }
}

#[tokio::test]
async fn bodies_are_limited_per_route_and_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DaemonOptions::new(dir.path().join("data"));
    options.accounts = true;
    options.config = Some("[http]\nmax_small_body_bytes = 1024\nbody_read_timeout_ms = 1000\n");
    let daemon = InProcess::start(options).await;
    let client = JsonClient::new();
    let padding = "x".repeat(2048);
    let register = client
        .post_json(
            &daemon.url("/account/register"),
            &json!({"email": "big@example.com", "padding": padding}),
            &[],
        )
        .await
        .unwrap();
    assert_envelope(&register, 413);
    let account = funded(&daemon.base, "small@example.com", 1.0)
        .await
        .unwrap();
    let keyed = client.with_bearer(&account.key);
    let run = keyed
        .post_json(
            &daemon.url("/run"),
            &json!({"service": "echo", "input": {"padding": padding}}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(run.status, 202, "jobs take large bodies: {}", run.body);

    // Headers in, then a body that stops short: 408, not a held connection.
    let addr = daemon.base.trim_start_matches("http://").to_string();
    let slow = format!(
        "POST /run HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"serv",
        account.key
    );
    let (status, body) = raw_exchange(&addr, slow.into_bytes()).await;
    assert_eq!(status, 408, "{body}");
    assert!(
        body["hint"].as_str().is_some_and(|h| !h.is_empty()),
        "{body}"
    );
    // `/mcp` too, whose body its MCP server would otherwise read at leisure.
    let slow_mcp = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n{\"jsonrpc";
    let (status, body) = raw_exchange(&addr, slow_mcp.as_bytes().to_vec()).await;
    assert_eq!(status, 408, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

/// Reads until the daemon closes the connection (bounded), and returns what came.
async fn until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut rest),
    );
    // A reset counts as closed too.
    let _ = read.await.expect("the daemon closed the connection");
    rest
}

#[tokio::test]
async fn a_keep_alive_connection_outlives_the_head_limit_and_ends_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DaemonOptions::new(dir.path().join("data"));
    options.config = Some("[http]\nheader_read_timeout_ms = 300\nkeep_alive_idle_ms = 5000\n");
    let daemon = InProcess::start(options).await;
    let addr = daemon.base.trim_start_matches("http://").to_string();
    let health = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

    // Idle for three times the head's limit between two requests: the same
    // connection serves both (hyper's own timer closed it after 300 ms).
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert_eq!(exchange_on(&mut stream, health).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    assert_eq!(exchange_on(&mut stream, health).await.0, 200);
    // Then idle past keep_alive_idle_ms: closed, with nothing sent.
    assert!(until_closed(&mut stream).await.is_empty());

    // A head that stops short is cut at the head's limit, long before the
    // idle one; on a fresh connection and after a served request alike.
    for served_first in [false, true] {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        if served_first {
            assert_eq!(exchange_on(&mut stream, health).await.0, 200);
        }
        use tokio::io::AsyncWriteExt;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHo")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        until_closed(&mut stream).await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "cut by the idle limit, not the head's"
        );
    }
    daemon.stop().await;
}
