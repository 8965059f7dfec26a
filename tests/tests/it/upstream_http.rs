//! The HTTP version spoken to hosted providers: HTTP/2 where a provider offers
//! it over TLS, h2c or HTTP/1.1 when configured, a second connection before a
//! server's stream limit is reached, and a provider's own CA.

use gpubridge_daemon::{Config, Daemon, Overrides};
use gpubridge_tests::multiplexed::{Multiplexed, MultiplexedOptions};
use gpubridge_tests::tls::CertFiles;
use gpubridge_tests::{InProcess, JsonClient};
use serde_json::json;
use std::path::Path;

/// A daemon whose only provider, groq, is `base_url`, with `extra` in its table.
async fn daemon_for(dir: &Path, base_url: &str, extra: &str) -> InProcess {
    std::fs::create_dir_all(dir).unwrap();
    let config = format!(
        "[scheduler.providers.groq]\napi_key = \"sk-test\"\nbase_url = \"{base_url}\"\n\
         max_in_flight = 400\nrequest_timeout_seconds = 30\n{extra}\n"
    );
    InProcess::configured(dir, &config).await
}

fn ca(cert: &CertFiles) -> String {
    format!("ca_file = {:?}", cert.cert_file.display().to_string())
}

/// `count` chat requests on `/inference` at once; each must answer 200.
async fn infer_at_once(daemon: &InProcess, count: usize) {
    let client = JsonClient::new();
    let url = daemon.url("/inference");
    let body = json!({"prompt": "hello", "max_tokens": 8});
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        calls.spawn(async move { client.post_json(&url, &body, &[]).await });
    }
    while let Some(reply) = calls.join_next().await {
        let reply = reply.expect("the call ran").expect("an answer");
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body["output"]["text"], "multiplexed reply");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_tls_and_another_connection_before_the_stream_limit() {
    let dir = tempfile::tempdir().unwrap();
    let cert = CertFiles::write(dir.path(), "upstream");
    // 150 answers wait until 150 requests are open at once: with at most 100
    // streams per connection, only a client that opens a second connection
    // ever gets there.
    let upstream = Multiplexed::start(MultiplexedOptions {
        tls: Some(&cert),
        max_streams: 100,
        hold_until: 150,
    })
    .await
    .unwrap();
    let base = format!("https://localhost:{}/v1", upstream.addr.port());
    let daemon = daemon_for(dir.path(), &base, &ca(&cert)).await;

    infer_at_once(&daemon, 150).await;

    assert_eq!(upstream.versions(), (0, 150), "every request over HTTP/2");
    assert_eq!(upstream.peak_in_flight(), 150, "all open at once");
    let peaks = upstream.connection_peaks();
    assert!(peaks.len() >= 2, "{peaks:?}");
    assert!(
        peaks.iter().all(|&peak| peak <= 100),
        "no connection past the server's limit: {peaks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_version_is_the_one_spoken() {
    let dir = tempfile::tempdir().unwrap();
    let cert = CertFiles::write(dir.path(), "upstream");
    let options = |tls| MultiplexedOptions {
        tls,
        max_streams: 100,
        hold_until: 0,
    };
    // Over TLS the server offers both; `http1` takes HTTP/1.1.
    let tls = Multiplexed::start(options(Some(&cert))).await.unwrap();
    let base = format!("https://localhost:{}/v1", tls.addr.port());
    let extra = format!("{}\nhttp_version = \"http1\"", ca(&cert));
    let daemon = daemon_for(&dir.path().join("http1"), &base, &extra).await;
    infer_at_once(&daemon, 3).await;
    assert_eq!(tls.versions(), (3, 0));
    drop(daemon);

    // Plain `http://`: HTTP/1.1 unless `http2` asks for h2c.
    let plain = Multiplexed::start(options(None)).await.unwrap();
    let base = format!("http://127.0.0.1:{}/v1", plain.addr.port());
    let daemon = daemon_for(&dir.path().join("auto"), &base, "").await;
    infer_at_once(&daemon, 2).await;
    assert_eq!(plain.versions(), (2, 0));
    drop(daemon);
    let daemon = daemon_for(&dir.path().join("h2c"), &base, "http_version = \"http2\"").await;
    infer_at_once(&daemon, 4).await;
    assert_eq!(plain.versions(), (2, 4));
}

#[tokio::test]
async fn an_unusable_ca_file_stops_the_start_and_names_the_provider() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("not-a-ca.pem");
    std::fs::write(&bad, "not a certificate\n").unwrap();
    let config = dir.path().join("gpubridge.toml");
    let text = format!(
        "[scheduler.providers.together]\napi_key = \"sk-test\"\nca_file = {:?}\n",
        bad.display().to_string()
    );
    std::fs::write(&config, text).unwrap();
    let overrides = Overrides {
        http_addr: Some(([127, 0, 0, 1], 0).into()),
        data_dir: Some(dir.path().join("data")),
        ..Overrides::default()
    };
    let env = |name: &str| (name == "GPUBRIDGE_ACCOUNTS_ENABLED").then(|| "false".to_string());
    let config = Config::load(Some(&config), env, &overrides).unwrap();
    let error = match Daemon::start(config).await {
        Ok(_) => panic!("started with a CA file holding no certificate"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("together"), "{error}");
    assert!(error.contains("not-a-ca.pem"), "{error}");
}
