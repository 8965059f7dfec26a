//! Media URLs in jobs are fetched only from public addresses: a name is
//! resolved once, private and loopback answers are dropped, and the fetch
//! connects to what was checked — so a name that resolves to loopback (DNS
//! rebinding's end state) reaches nothing. Literal addresses are checked too.

use gpubridge_tests::receiver::{assert_loopback_name, LOOPBACK_NAME};
use gpubridge_tests::{wait_terminal, InProcess, JsonClient, Standin};
use serde_json::json;

#[tokio::test]
async fn media_on_private_addresses_is_never_fetched() {
    assert_loopback_name();
    let standin = Standin::start("k").await.unwrap();
    // The provider is on loopback (operators may run one there); media may not be.
    let config = format!(
        "[scheduler]\nallow_private_urls = false\n[scheduler.providers.groq]\napi_key = \"k\"\nbase_url = \"{}\"\n",
        standin.base_url()
    );
    let dir = tempfile::tempdir().unwrap();
    let daemon = InProcess::configured(dir.path(), &config).await;
    let client = JsonClient::new();
    let port = standin.addr.port();
    for url in [
        format!("http://{LOOPBACK_NAME}:{port}/media/clip.wav"),
        format!("http://127.0.0.1:{port}/media/clip.wav"),
        format!("http://[::ffff:127.0.0.1]:{port}/media/clip.wav"),
        format!("http://0x7f.1:{port}/media/clip.wav"),
    ] {
        let reply = client
            .post_json(
                &daemon.url("/run"),
                &json!({"service": "whisper-l4", "input": {"audio_url": url}}),
                &[],
            )
            .await
            .unwrap();
        let job = match reply.status.as_u16() {
            202 => {
                let id = reply.body["job_id"].as_str().unwrap();
                wait_terminal(&client, &daemon.base, id, 30).await.unwrap()
            }
            _ => reply.body,
        };
        let error = job["error"].as_str().unwrap_or_default().to_lowercase();
        assert!(error.contains("private"), "{url}: {job}");
    }
    assert_eq!(
        standin.requests_to("/media/clip.wav"),
        0,
        "a refused URL was fetched"
    );
    assert_eq!(
        standin.requests(),
        0,
        "no provider was called for an unfetchable input"
    );
}
