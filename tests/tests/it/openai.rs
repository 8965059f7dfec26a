//! The OpenAI-compatible routes against the real daemon and the stand-in
//! providers: whole and streamed chat completions, failover before the first
//! byte, a backend dying mid-stream, a client leaving mid-stream (the backend
//! stopped, the time used billed), embeddings, models, and errors in OpenAI's
//! shape. The official OpenAI Python SDK's run is `openai_sdk.rs`.

use gpubridge_tests::accounts::{funded, micros, register};
use gpubridge_tests::{
    providers_config, streamed_content, streamed_text, wait_terminal, Behavior, DaemonOptions,
    EventStream, InProcess, JsonClient, Standin, StreamPlan,
};
use serde_json::{json, Value};
use std::time::Duration;

const MODEL: &str = "deepseek-ai/DeepSeek-V3.2";

/// A daemon with accounts whose `cheap` chat route tries DeepInfra (`first`)
/// before Fireworks (`second`), and a funded account's key.
struct Setup {
    daemon: InProcess,
    first: Standin,
    second: Standin,
    key: String,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let first = Standin::start("sk-a").await.unwrap();
    let second = Standin::start("sk-b").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = providers_config(&first.base_url(), "sk-a", &["deepinfra"]);
    config.push_str(&format!(
        "[scheduler.providers.fireworks]\napi_key = \"sk-b\"\nbase_url = \"{}\"\nrequest_timeout_seconds = 5\n[scheduler.providers.jina]\napi_key = \"sk-b\"\nbase_url = \"{}\"\n",
        second.base_url(),
        second.base_url()
    ));
    let mut options = DaemonOptions::new(dir.path().join("data"));
    options.config = Some(&config);
    options.accounts = true;
    let daemon = InProcess::start(options).await;
    let account = funded(&daemon.base, "streams@example.com", 10.0)
        .await
        .unwrap();
    Setup {
        daemon,
        first,
        second,
        key: account.key,
        _dir: dir,
    }
}

impl Setup {
    fn auth(&self) -> String {
        format!("Bearer {}", self.key)
    }

    async fn stream(&self, body: Value) -> EventStream {
        let auth = self.auth();
        let headers = [("authorization", auth.as_str()), ("x-priority", "cheap")];
        EventStream::open(&self.daemon.url("/v1/chat/completions"), &headers, &body)
            .await
            .unwrap()
    }

    async fn balance(&self) -> i64 {
        let client = JsonClient::new().with_bearer(&self.key);
        let reply = client
            .get(&self.daemon.url("/account/balance"))
            .await
            .unwrap();
        micros(&reply.body["balance"])
    }

    async fn job(&self, stream: &EventStream) -> Value {
        let id = stream.headers["x-gpubridge-job-id"].to_str().unwrap();
        let client = JsonClient::new().with_bearer(&self.key);
        wait_terminal(&client, &self.daemon.base, id, 10)
            .await
            .unwrap()
    }
}

fn chat(stream: bool) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream})
}

#[tokio::test]
async fn chat_completions_whole_and_streamed_with_usage_billed() {
    let setup = setup().await;
    let client = JsonClient::new().with_bearer(&setup.key);
    let whole = client
        .post_json(&setup.daemon.url("/v1/chat/completions"), &chat(false), &[])
        .await
        .unwrap();
    assert_eq!(whole.status, 200, "{}", whole.body);
    assert_eq!(whole.body["object"], "chat.completion");
    assert_eq!(whole.body["model"], MODEL);
    assert_eq!(whole.body["choices"][0]["message"]["role"], "assistant");
    assert!(whole.body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("hi"));

    let before = setup.balance().await;
    let mut body = chat(true);
    body["stream_options"] = json!({"include_usage": true});
    let stream = setup.stream(body).await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    let job = setup.job(&stream).await;
    let events = stream.rest().await.unwrap();
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    assert_eq!(streamed_content(&events), streamed_text(4));
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 4);
    for event in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(event).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], MODEL);
        assert!(chunk["id"].as_str().unwrap().starts_with("chatcmpl-"));
    }
    // The job kept what was streamed, with the usage the backend reported, and
    // was charged exactly what its settlement says.
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["output"]["text"], streamed_text(4));
    assert_eq!(job["output"]["usage"]["total_tokens"], 9);
    assert_eq!(before - setup.balance().await, micros(&job["charged_usd"]));
    assert!(micros(&job["charged_usd"]) > 0);

    // Without include_usage no usage chunk is passed on.
    let events = setup.stream(chat(true)).await.rest().await.unwrap();
    assert!(
        events.iter().all(|e| !e.contains("\"usage\"")),
        "{events:?}"
    );
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn a_failing_backend_is_failed_over_before_the_first_byte() {
    let setup = setup().await;
    setup.first.set_behavior(Behavior::ServerError);
    let stream = setup.stream(chat(true)).await;
    assert_eq!(stream.status, 200);
    let events = stream.rest().await.unwrap();
    assert_eq!(streamed_content(&events), streamed_text(4));
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(setup.first.requests_to("/v1/chat/completions") >= 1);
    assert_eq!(
        setup
            .second
            .streams()
            .finished
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // With every backend failing, the client gets an HTTP error, not a stream.
    setup.second.set_behavior(Behavior::ServerError);
    let stream = setup.stream(chat(true)).await;
    assert_eq!(stream.status, 502);
    let body: Value =
        serde_json::from_str(&stream.rest().await.unwrap().join("")).unwrap_or(Value::Null);
    assert!(body.is_null(), "an error is JSON, not events");
}

#[tokio::test]
async fn a_backend_dying_mid_stream_ends_with_an_error_event_and_no_done() {
    let setup = setup().await;
    setup.first.set_stream_plan(StreamPlan {
        die_after: Some(2),
        ..StreamPlan::default()
    });
    let before = setup.balance().await;
    let stream = setup.stream(chat(true)).await;
    assert_eq!(stream.status, 200);
    let job = setup.job(&stream).await;
    let events = stream.rest().await.unwrap();
    assert_eq!(streamed_content(&events), streamed_text(2));
    assert!(!events.iter().any(|e| e == "[DONE]"), "{events:?}");
    let error: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mid-stream"),
        "{error}"
    );
    // Nobody took over once output had gone out, and nothing was charged.
    assert_eq!(setup.second.requests_to("/v1/chat/completions"), 0);
    assert_eq!(job["status"], "failed");
    assert_eq!(setup.balance().await, before);
}

#[tokio::test]
async fn a_client_that_leaves_stops_the_backend_and_pays_for_the_time_used() {
    let setup = setup().await;
    setup.first.set_stream_plan(StreamPlan {
        chunks: 64,
        interval: Duration::from_millis(20),
        die_after: None,
    });
    let before = setup.balance().await;
    let mut stream = setup.stream(chat(true)).await;
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap();
    }
    let id = stream.headers["x-gpubridge-job-id"]
        .to_str()
        .unwrap()
        .to_string();
    drop(stream);
    let client = JsonClient::new().with_bearer(&setup.key);
    let job = wait_terminal(&client, &setup.daemon.base, &id, 10)
        .await
        .unwrap();
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["stopped"]["chunks_delivered"].as_u64().unwrap() >= 3,
        "{job}"
    );
    let counts = setup.first.streams();
    for _ in 0..100 {
        if counts
            .cut_by_client
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        counts
            .cut_by_client
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        counts.finished.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // Charged for the seconds it ran: something, less than the reservation.
    let charged = micros(&job["charged_usd"]);
    assert!(charged > 0 && micros(&job["refunded_usd"]) > 0, "{job}");
    assert_eq!(before - setup.balance().await, charged);
    let audit = JsonClient::new()
        .with_bearer(gpubridge_tests::ADMIN_TOKEN)
        .get(&setup.daemon.url("/admin/ledger/audit"))
        .await
        .unwrap();
    assert_eq!(audit.status, 200, "{}", audit.body);
}

#[tokio::test]
async fn embeddings_and_models_speak_openais_shapes() {
    let setup = setup().await;
    let client = JsonClient::new().with_bearer(&setup.key);
    let models = client.get(&setup.daemon.url("/v1/models")).await.unwrap();
    assert_eq!(models.status, 200);
    assert_eq!(models.body["object"], "list");
    let ids: Vec<&str> = models.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&MODEL) && ids.contains(&"jina-embeddings-v3"),
        "{ids:?}"
    );
    let one = client
        .get(&setup.daemon.url(&format!("/v1/models/{MODEL}")))
        .await
        .unwrap();
    assert_eq!(
        (one.status.as_u16(), one.body["id"].as_str()),
        (200, Some(MODEL))
    );

    let url = setup.daemon.url("/v1/embeddings");
    let floats = client
        .post_json(
            &url,
            &json!({"model": "jina-embeddings-v3", "input": ["a", "b"]}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(floats.status, 200, "{}", floats.body);
    assert_eq!(floats.body["object"], "list");
    assert_eq!(floats.body["data"][1]["index"], 1);
    let vector = floats.body["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .len();
    let encoded = client
        .post_json(
            &url,
            &json!({"model": "jina-embeddings-v3", "input": "a", "encoding_format": "base64"}),
            &[],
        )
        .await
        .unwrap();
    let text = encoded.body["data"][0]["embedding"].as_str().unwrap();
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap();
    assert_eq!(bytes.len(), vector * 4);
}

#[tokio::test]
async fn errors_take_openais_shape_with_the_envelopes_status() {
    let setup = setup().await;
    let url = setup.daemon.url("/v1/chat/completions");
    let keyed = JsonClient::new().with_bearer(&setup.key);
    let check = |reply: gpubridge_tests::Reply, status: u16, kind: &str| {
        assert_eq!(reply.status.as_u16(), status, "{}", reply.body);
        assert_eq!(reply.body["error"]["type"], kind, "{}", reply.body);
        assert!(reply.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        reply.body
    };
    let anonymous = JsonClient::new()
        .post_json(&url, &chat(false), &[])
        .await
        .unwrap();
    check(anonymous, 401, "invalid_request_error");
    let mut unknown_model = chat(false);
    unknown_model["model"] = json!("no-such-model");
    check(
        keyed.post_json(&url, &unknown_model, &[]).await.unwrap(),
        400,
        "invalid_request_error",
    );
    let mut tools = chat(false);
    tools["tools"] = json!([]);
    let body = check(
        keyed.post_json(&url, &tools, &[]).await.unwrap(),
        400,
        "invalid_request_error",
    );
    assert_eq!(body["error"]["param"], "tools");
    let garbage = keyed
        .send(
            hyper::Method::POST,
            &url,
            &[("content-type", "application/json")],
            "{not json",
        )
        .await
        .unwrap();
    check(garbage, 400, "invalid_request_error");
    check(keyed.get(&url).await.unwrap(), 405, "invalid_request_error");
    check(
        keyed.get(&setup.daemon.url("/v1/nothing")).await.unwrap(),
        404,
        "invalid_request_error",
    );
    let bad_priority = keyed
        .post_json(&url, &chat(false), &[("x-priority", "now")])
        .await
        .unwrap();
    check(bad_priority, 400, "invalid_request_error");
    // An account without credits: 402, before anything runs.
    let broke = register(&JsonClient::new(), &setup.daemon.base, "broke@example.com")
        .await
        .unwrap();
    let reply = JsonClient::new()
        .with_bearer(&broke.key)
        .post_json(&url, &chat(false), &[])
        .await
        .unwrap();
    check(reply, 402, "insufficient_quota");
    assert_eq!(setup.first.requests() + setup.second.requests(), 0);
}

#[tokio::test]
async fn the_official_openai_python_sdk_works_unchanged() {
    let setup = setup().await;
    let (python, script) = gpubridge_tests::python_client("openai_sdk.py");
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(setup.daemon.url("/v1"))
        .arg(&setup.key)
        .arg(MODEL)
        .arg("jina-embeddings-v3")
        .arg(streamed_text(4))
        .output()
        .await
        .unwrap_or_else(|e| panic!("{} (bash .ci/setup-deps makes it): {e}", python.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["stream"], streamed_text(4), "{seen}");
    assert_eq!(seen["stream_usage"], 9);
    assert!(
        seen["error"].as_str().unwrap().contains("no-such-model"),
        "{seen}"
    );
    assert_eq!(seen["bad_key"], 401, "{seen}");
}

/// Streams through a node agent's `openai` runtime: chunks cross the agent's
/// QUIC job stream as they are made; a model server dying mid-stream ends the
/// client's stream with an error event; a client leaving stops the model server.
#[tokio::test]
async fn streams_pass_through_node_agents() {
    let standin = Standin::start("local-key").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let daemon = gpubridge_tests::Daemon::start(DaemonOptions::new(dir.path().join("data")));
    let services = format!(
        "[services.llm-4090]\nruntime = \"openai\"\nurl = \"{}\"\napi_key = \"local-key\"\nslots = 4\n",
        standin.base_url()
    );
    let agent = gpubridge_tests::AgentProcess::start(
        dir.path(),
        "gpu-host",
        daemon
            .nodes_addr
            .as_deref()
            .expect("the node listener is on"),
        &daemon.join_token(),
        &services,
    );
    agent.wait_joined();
    let url = daemon.url("/v1/chat/completions");
    let body = chat(true);
    let open = || EventStream::open(&url, &[], &body);

    let stream = open().await.unwrap();
    assert_eq!(stream.status, 200);
    let id = stream.headers["x-gpubridge-job-id"]
        .to_str()
        .unwrap()
        .to_string();
    let events = stream.rest().await.unwrap();
    assert_eq!(streamed_content(&events), streamed_text(4));
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let job = wait_terminal(&JsonClient::new(), &daemon.base, &id, 10)
        .await
        .unwrap();
    assert!(
        job["backend"].as_str().unwrap().ends_with("@gpu-host"),
        "{job}"
    );
    assert_eq!(job["output"]["text"], streamed_text(4));

    standin.set_stream_plan(StreamPlan {
        die_after: Some(2),
        ..StreamPlan::default()
    });
    let events = open().await.unwrap().rest().await.unwrap();
    assert_eq!(streamed_content(&events), streamed_text(2));
    assert!(events.last().unwrap().contains("\"error\""), "{events:?}");
    assert!(!events.iter().any(|e| e == "[DONE]"));

    standin.set_stream_plan(StreamPlan {
        chunks: 64,
        interval: Duration::from_millis(20),
        die_after: None,
    });
    let mut stream = open().await.unwrap();
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap();
    }
    drop(stream);
    let cut = &standin.streams().cut_by_client;
    for _ in 0..150 {
        if cut.load(std::sync::atomic::Ordering::Relaxed) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        cut.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the model server was not stopped"
    );
}

/// A client waiting for a whole answer that leaves stops its job too, which
/// pays nothing: nothing reached it.
#[tokio::test]
async fn a_client_that_leaves_before_a_whole_answer_stops_its_job() {
    use tokio::io::AsyncWriteExt;
    let setup = setup().await;
    setup
        .first
        .set_behavior(Behavior::Slow(Duration::from_secs(5)));
    let before = setup.balance().await;
    let body = chat(false).to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\nauthorization: {}\r\nx-priority: cheap\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        setup.auth(),
        body.len()
    );
    let address = setup.daemon.base.trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(socket);
    let client = JsonClient::new().with_bearer(&setup.key);
    let mut job = Value::Null;
    for _ in 0..100 {
        let jobs = client
            .get(&setup.daemon.url("/account/jobs"))
            .await
            .unwrap();
        job = jobs.body["jobs"][0].clone();
        if job["status"] == "failed" || job["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Well before the 5 s the backend would have taken.
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("client disconnected"),
        "{job}"
    );
    assert_eq!(micros(&job["charged_usd"]), 0);
    assert_eq!(setup.balance().await, before);
}
