//! TLS on the gateway: HTTP/2 and HTTP/1.1 by ALPN, Strict-Transport-Security,
//! and a certificate replaced on SIGHUP while an open connection keeps working.

use gpubridge_tests::tls::{connect, CertFiles};
use gpubridge_tests::{Daemon, DaemonOptions};
use std::time::Duration;

#[tokio::test]
async fn serves_h2_and_http1_and_reloads_its_certificate_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let first = CertFiles::write(dir.path(), "live");
    let config = first.toml();
    let mut options = DaemonOptions::new(dir.path().join("data"));
    options.config = Some(&config);
    let daemon = Daemon::start(options);
    assert!(daemon.base.starts_with("https://"), "{}", daemon.base);
    let addr = daemon.base.trim_start_matches("https://").to_string();

    let (mut h2, alpn) = connect(&addr, &first.cert, &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let (status, headers, _) = h2.get("/health").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["strict-transport-security"], "max-age=31536000");
    let (mut h1, alpn) = connect(&addr, &first.cert, &[b"http/1.1"]).await.unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(h1.get("/catalog").await.unwrap().0, 200);

    // A new certificate in the same files, then SIGHUP.
    let second = CertFiles::write(dir.path(), "live");
    daemon.hangup();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while connect(&addr, &second.cert, &[b"h2"]).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        h2.get("/health").await.unwrap().0,
        200,
        "the open connection goes on"
    );
    assert!(
        connect(&addr, &first.cert, &[b"h2"]).await.is_err(),
        "the old certificate is gone"
    );

    // A broken file on reload changes nothing.
    std::fs::write(&second.cert_file, "garbage").unwrap();
    daemon.hangup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut fresh, _) = connect(&addr, &second.cert, &[b"h2"]).await.unwrap();
    assert_eq!(fresh.get("/health").await.unwrap().0, 200);
    assert!(
        daemon.log_text().contains("certificate in use stays"),
        "the failure is logged"
    );
}
