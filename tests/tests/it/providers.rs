//! Real jobs through every adapter against the local stand-in, which speaks the
//! providers' documented formats: /run and /inference end to end.

use gpubridge_tests::{providers_config, wait_terminal, InProcess, JsonClient, Standin};
use serde_json::{json, Value};

use gpubridge_tests::ALL_PROVIDERS as ALL;

async fn run(client: &JsonClient, daemon: &InProcess, service: &str, input: Value) -> Value {
    run_with(client, daemon, service, input, "fast").await
}

async fn run_with(
    client: &JsonClient,
    daemon: &InProcess,
    service: &str,
    input: Value,
    priority: &str,
) -> Value {
    let reply = client
        .post_json(
            &daemon.url("/run"),
            &json!({"service": service, "input": input}),
            &[("x-priority", priority)],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{service}: {}", reply.body);
    let id = reply.body["job_id"].as_str().unwrap().to_string();
    let done = wait_terminal(client, &daemon.base, &id, 20).await.unwrap();
    assert_eq!(done["status"], "completed", "{service}: {done}");
    done
}

#[tokio::test]
async fn every_adapter_completes_real_jobs() {
    let standin = Standin::start("sk-test").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = providers_config(&standin.base_url(), "sk-test", &ALL);
    let daemon = InProcess::configured(dir.path(), &config).await;
    let client = JsonClient::new();

    let llm = run(
        &client,
        &daemon,
        "llm-4090",
        json!({"prompt": "Hello world", "max_tokens": 16}),
    )
    .await;
    assert_eq!(llm["output"]["text"], "stand-in reply to: Hello world");
    assert_eq!(llm["model"], "meta-llama/Llama-3.3-70B-Instruct");
    assert!(llm["backend"].as_str().unwrap().contains(':'));

    let chat = run(
        &client,
        &daemon,
        "llm-4090",
        json!({"model": "deepseek-ai/DeepSeek-V3.2", "messages": [{"role": "user", "content": "hey"}]}),
    )
    .await;
    assert_eq!(chat["output"]["text"], "stand-in reply to: hey");

    let embedding = run(&client, &daemon, "embedding-l4", json!({"text": "abc"})).await;
    assert_eq!(embedding["output"]["dimensions"], 8);
    let batch = run(
        &client,
        &daemon,
        "embedding-l4",
        json!({"text": ["a", "b"]}),
    )
    .await;
    assert_eq!(batch["output"]["embeddings"].as_array().unwrap().len(), 2);

    let rerank = run(
        &client,
        &daemon,
        "rerank",
        json!({"query": "rust gpu", "documents": ["cooking", "rust on gpu", "gpu"], "top_n": 2}),
    )
    .await;
    let results = rerank["output"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["document"], "rust on gpu");

    // Together (2500 µ$/s) is FLUX.2's cheapest backend: its images format.
    let image = run_with(
        &client,
        &daemon,
        "image-4090",
        json!({"prompt": "a cat", "model": "black-forest-labs/FLUX.2-dev"}),
        "cheap",
    )
    .await;
    assert_eq!(image["backend"], "together:black-forest-labs/FLUX.2-dev");
    assert!(
        image["output"]["image_url"]
            .as_str()
            .is_some_and(|u| u.ends_with(".png")),
        "{image}"
    );

    let audio_url = format!("http://{}/media/clip.wav", standin.addr);
    let stt = run(
        &client,
        &daemon,
        "whisper-l4",
        json!({"audio_url": audio_url}),
    )
    .await;
    assert!(
        stt["output"]["text"]
            .as_str()
            .unwrap()
            .starts_with("transcribed"),
        "{stt}"
    );

    let tts = run(
        &client,
        &daemon,
        "tts-l4",
        json!({"text": "hi", "voice": "af_nova"}),
    )
    .await;
    assert_eq!(tts["output"]["content_type"], "audio/mpeg");
    assert!(!tts["output"]["audio_base64"].as_str().unwrap().is_empty());

    let vision = run(
        &client,
        &daemon,
        "llava-4090",
        json!({"image_url": "https://example.com/a.png", "prompt": "what?"}),
    )
    .await;
    assert_eq!(vision["output"]["text"], "stand-in saw 2 content parts");

    // Replicate: create, poll until succeeded; our input renamed to the model's.
    let caption = run(
        &client,
        &daemon,
        "caption",
        json!({"image_url": "https://example.com/a.png"}),
    )
    .await;
    assert_eq!(caption["backend"], "replicate:salesforce/blip");
    assert_eq!(
        caption["output"]["output"]["echo"]["image"],
        "https://example.com/a.png"
    );
    assert_eq!(
        caption["output"]["output"]["echo"]["task"],
        "image_captioning"
    );
    assert!(standin.requests_to("/v1/models/salesforce/blip/predictions") >= 1);
}

#[tokio::test]
async fn inference_answers_inline() {
    let standin = Standin::start("sk-test").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = providers_config(&standin.base_url(), "sk-test", &["groq"]);
    let daemon = InProcess::configured(dir.path(), &config).await;
    let client = JsonClient::new();
    let reply = client
        .post_json(
            &daemon.url("/inference"),
            &json!({"model": "openai/gpt-oss-20b", "prompt": "Summarize", "system": "Be brief.", "max_tokens": 64, "temperature": 0.2, "gpu": "4090"}),
            &[("x-priority", "cheap")],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["status"], "completed");
    assert_eq!(reply.body["output"]["text"], "stand-in reply to: Summarize");
    assert_eq!(reply.body["backend"], "groq:openai/gpt-oss-20b");
    assert!(reply.body["execution_time_seconds"].as_f64().unwrap() > 0.0);
    assert!(reply.body["estimated_cost_usd"].as_f64().unwrap() >= 0.003);
    let id = reply.body["job_id"].as_str().unwrap();
    let status = client
        .get(&daemon.url(&format!("/status/{id}")))
        .await
        .unwrap();
    assert_eq!(
        status.body["output"]["text"],
        "stand-in reply to: Summarize"
    );

    // A model only other providers serve has no live backend here.
    let elsewhere = client
        .post_json(
            &daemon.url("/inference"),
            &json!({"model": "moonshotai/Kimi-K2.5", "prompt": "x"}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(elsewhere.status, 503, "{}", elsewhere.body);
}
