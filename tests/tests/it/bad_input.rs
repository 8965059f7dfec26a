//! Every kind of bad request gets the spec's envelope (`error`, `hint`) with the
//! right 4xx (or 503 when an operator must act) — never a 500, never a hang.

use gpubridge_tests::{assert_envelope, raw_exchange, DaemonOptions, InProcess, JsonClient};
use hyper::Method;
use serde_json::json;

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = InProcess::start(DaemonOptions::new(dir.path().join("data"))).await;
    let client = JsonClient::new();
    let run = daemon.url("/run");
    let json_ct = [("content-type", "application/json")];

    let malformed = client
        .send(Method::POST, &run, &json_ct, "{\"service\": \"echo\",")
        .await
        .unwrap();
    assert_envelope(&malformed, 400);
    assert!(malformed.body["error"]
        .as_str()
        .unwrap()
        .starts_with("Malformed JSON"));

    let empty = client.send(Method::POST, &run, &json_ct, "").await.unwrap();
    assert_envelope(&empty, 400);

    let array = client
        .send(Method::POST, &run, &json_ct, "[1,2]")
        .await
        .unwrap();
    assert_envelope(&array, 400);

    let unknown = client
        .post_json(&run, &json!({"service": "foo", "input": {}}), &[])
        .await
        .unwrap();
    assert_envelope(&unknown, 400);
    assert_eq!(unknown.body["error"], "Unknown service: foo");
    assert!(unknown.body["available_services"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "llm-4090"));

    let wrong_type = client
        .post_json(&run, &json!({"service": 42, "input": {}}), &[])
        .await
        .unwrap();
    assert_envelope(&wrong_type, 400);
    let input_not_object = client
        .post_json(&run, &json!({"service": "echo", "input": "hi"}), &[])
        .await
        .unwrap();
    assert_envelope(&input_not_object, 400);
    let missing_input = client
        .post_json(&run, &json!({"service": "echo"}), &[])
        .await
        .unwrap();
    assert_envelope(&missing_input, 400);
    let extra_field = client
        .post_json(
            &run,
            &json!({"service": "echo", "input": {}, "inputs": {}}),
            &[],
        )
        .await
        .unwrap();
    assert_envelope(&extra_field, 400);
    let bad_webhook = client
        .post_json(
            &run,
            &json!({"service": "echo", "input": {}, "webhook_url": "ftp://x"}),
            &[],
        )
        .await
        .unwrap();
    assert_envelope(&bad_webhook, 400);

    // Schema violations list what is wrong where.
    let schema = client
        .post_json(
            &run,
            &json!({"service": "llm-4090", "input": {"prompt": "hi", "max_tokens": "lots"}}),
            &[],
        )
        .await
        .unwrap();
    assert_envelope(&schema, 422);
    assert_eq!(schema.body["details"][0]["path"], "/input/max_tokens");
    let inference_schema = client
        .post_json(&daemon.url("/inference"), &json!({"prompt": 5}), &[])
        .await
        .unwrap();
    assert_envelope(&inference_schema, 422);
    assert_eq!(inference_schema.body["details"][0]["path"], "/prompt");

    let unknown_model = client
        .post_json(
            &run,
            &json!({"service": "llm-4090", "input": {"prompt": "hi", "model": "gpt-9"}}),
            &[],
        )
        .await
        .unwrap();
    assert_envelope(&unknown_model, 400);
    assert!(unknown_model.body["details"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m == "deepseek-ai/DeepSeek-V3.2"));

    // Valid request, but no provider key: the operator must configure one.
    let unconfigured = client
        .post_json(
            &run,
            &json!({"service": "llm-4090", "input": {"prompt": "hi"}}),
            &[],
        )
        .await
        .unwrap();
    assert_envelope(&unconfigured, 503);
    assert!(
        unconfigured.body["hint"]
            .as_str()
            .unwrap()
            .contains("GROQ_API_KEY"),
        "{}",
        unconfigured.body
    );

    let bad_priority = client
        .post_json(
            &run,
            &json!({"service": "echo", "input": {}}),
            &[("x-priority", "urgent")],
        )
        .await
        .unwrap();
    assert_envelope(&bad_priority, 400);
    let bad_idempotency = client
        .send(
            Method::POST,
            &run,
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "a b"),
            ],
            "{}",
        )
        .await
        .unwrap();
    assert_envelope(&bad_idempotency, 400);

    // Oversized bodies, declared or chunked, are refused before being read whole.
    let addr = daemon.base.trim_start_matches("http://").to_string();
    let huge = vec![b'x'; 11 * 1024 * 1024];
    let mut declared = format!("POST /run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", huge.len()).into_bytes();
    declared.extend_from_slice(&huge);
    let (status, body) = raw_exchange(&addr, declared).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("larger than"),
        "{body}"
    );
    let mut chunked =
        b"POST /run HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in huge.chunks(1 << 20) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = raw_exchange(&addr, chunked).await;
    assert_eq!(status, 413, "{body}");

    let not_found = client.get(&daemon.url("/nope")).await.unwrap();
    assert_envelope(&not_found, 404);
    let wrong_method = client.get(&run).await.unwrap();
    assert_envelope(&wrong_method, 405);
    assert_eq!(wrong_method.headers["allow"], "POST");
    let no_job = client
        .get(&daemon.url("/status/00000000-0000-0000-0000-000000000000"))
        .await
        .unwrap();
    assert_envelope(&no_job, 404);

    let no_service = client.get(&daemon.url("/catalog/estimate")).await.unwrap();
    assert_envelope(&no_service, 400);
    let bad_seconds = client
        .get(&daemon.url("/catalog/estimate?service=ocr&seconds=-3"))
        .await
        .unwrap();
    assert_envelope(&bad_seconds, 400);
    let unknown_estimate = client
        .get(&daemon.url("/catalog/estimate?service=foo"))
        .await
        .unwrap();
    assert_envelope(&unknown_estimate, 400);

    // After all that, the daemon still serves.
    let fine = client
        .post_json(&run, &json!({"service": "echo", "input": {}}), &[])
        .await
        .unwrap();
    assert_eq!(fine.status, 202);
}

/// Writes a raw request while reading the answer, as curl does, so an early
/// answer (before the body is sent whole) is seen rather than a broken pipe.
#[tokio::test]
async fn raw_garbage_on_the_socket_does_not_hurt_the_daemon() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let daemon = InProcess::start(DaemonOptions::new(dir.path().join("data"))).await;
    let addr = daemon.base.trim_start_matches("http://").to_string();
    for garbage in [
        &b"\x00\x01\x02 not http\r\n\r\n"[..],
        b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    ] {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(garbage).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read_to_end(&mut answer),
        )
        .await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 400"),
            "{text}"
        );
    }
    let health = JsonClient::new().get(&daemon.url("/health")).await.unwrap();
    assert_eq!(health.status, 200);
}
