//! `/mcp` with the official MCP inspector's CLI (`@modelcontextprotocol/inspector
//! --cli --transport http`, pinned in tests/mcp): it lists the tools and calls
//! each, with and without the account's key, against the real daemon; and the
//! transport's refusals in the contract's envelope.

use gpubridge_tests::accounts::{funded, micros};
use gpubridge_tests::{providers_config, DaemonOptions, InProcess, JsonClient, Standin};
use serde_json::{json, Value};
use std::path::PathBuf;

struct Setup {
    daemon: InProcess,
    key: String,
    _standin: Standin,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let standin = Standin::start("sk-test").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = providers_config(&standin.base_url(), "sk-test", &["groq", "together"]);
    let mut options = DaemonOptions::new(dir.path().join("data"));
    options.config = Some(&config);
    options.accounts = true;
    let daemon = InProcess::start(options).await;
    let account = funded(&daemon.base, "mcp@example.com", 5.0).await.unwrap();
    Setup {
        daemon,
        key: account.key,
        _standin: standin,
        dir,
    }
}

impl Setup {
    /// Runs the inspector CLI with `args` after the server URL; its first JSON answer.
    async fn inspector(&self, args: &[&str], key: bool) -> Value {
        let bin =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mcp/node_modules/.bin/mcp-inspector");
        let mut command = tokio::process::Command::new(&bin);
        command
            .args(["--cli", &self.daemon.url("/mcp"), "--transport", "http"])
            .args(args)
            .env("MCP_CATALOG_PATH", self.dir.path().join("inspector.json"));
        let auth = format!("Authorization: Bearer {}", self.key);
        if key {
            command.args(["--header", &auth]);
        }
        let output = command
            .output()
            .await
            .unwrap_or_else(|e| panic!("{} (bash .ci/setup-deps installs it): {e}", bin.display()));
        let mut answers = serde_json::Deserializer::from_slice(&output.stdout).into_iter::<Value>();
        match answers.next() {
            Some(Ok(answer)) => answer,
            _ => panic!(
                "no JSON from the inspector: {}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }

    async fn call(&self, tool: &str, args: &[&str], key: bool) -> Value {
        let mut all = vec!["--method", "tools/call", "--tool-name", tool];
        for arg in args {
            all.extend(["--tool-arg", arg]);
        }
        self.inspector(&all, key).await
    }
}

/// A tool result's JSON text.
fn text(result: &Value) -> Value {
    let text = result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{result}"));
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn the_inspector_lists_and_calls_every_tool() {
    let s = setup().await;
    let listed = s.inspector(&["--method", "tools/list"], false).await;
    let tools = listed["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"));
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "gpu_run",
            "gpu_catalog",
            "gpu_status",
            "gpu_balance",
            "gpu_estimate"
        ]
    );
    let service = &tools[0]["inputSchema"]["properties"]["service"];
    let keys = service["enum"].as_array().unwrap();
    assert!(
        keys.contains(&json!("llm-4090")) && keys.contains(&json!("echo")),
        "{service}"
    );
    assert!(service["description"]
        .as_str()
        .unwrap()
        .contains("llm-4090: LLM Inference"));

    // Discovery is open.
    let entry = s.call("gpu_catalog", &["service=llm-4090"], false).await;
    assert_eq!(entry["isError"], false, "{entry}");
    assert_eq!(text(&entry)["key"], "llm-4090");
    let estimate = s
        .call("gpu_estimate", &["service=llm-4090", "seconds=10"], false)
        .await;
    assert_eq!(
        micros(&text(&estimate)["estimated_cost_usd"]),
        24_000,
        "{estimate}"
    );

    // Running needs the key, and says how to get one or pay with x402.
    let refused = s
        .call(
            "gpu_run",
            &["service=llm-4090", r#"input={"prompt": "hi"}"#],
            false,
        )
        .await;
    assert_eq!(refused["isError"], true, "{refused}");
    let envelope = text(&refused);
    assert_eq!(envelope["status"], 401);
    assert!(
        envelope["hint"].as_str().unwrap().contains("x402"),
        "{envelope}"
    );

    let ran = s
        .call(
            "gpu_run",
            &["service=llm-4090", r#"input={"prompt": "hi"}"#],
            true,
        )
        .await;
    assert_eq!(ran["isError"], false, "{ran}");
    let job = text(&ran);
    assert_eq!(job["status"], "completed", "{job}");
    assert!(
        job["output"]["text"].as_str().unwrap().contains("hi"),
        "{job}"
    );
    let charged = micros(&job["charged_usd"]);
    assert!(charged > 0);

    let id = job["id"].as_str().unwrap();
    // A retried call with the same idempotency key is the same job, charged once.
    let args = [
        "service=llm-4090",
        r#"input={"prompt": "hi"}"#,
        "idempotency_key=mcp-retry-1",
    ];
    let first = text(&s.call("gpu_run", &args, true).await);
    let again = text(&s.call("gpu_run", &args, true).await);
    assert_eq!(first["id"], again["id"], "{again}");
    let other = s
        .call(
            "gpu_run",
            &[
                "service=llm-4090",
                r#"input={"prompt": "ho"}"#,
                "idempotency_key=mcp-retry-1",
            ],
            true,
        )
        .await;
    assert_eq!(text(&other)["status"], 422, "{other}");
    let charged = charged + micros(&first["charged_usd"]);
    let status = s.call("gpu_status", &[&format!("job_id={id}")], true).await;
    assert_eq!(text(&status)["output"], job["output"]);
    let balance = s.call("gpu_balance", &[], true).await;
    assert_eq!(
        micros(&text(&balance)["balance"]),
        5_000_000 - charged,
        "{balance}"
    );

    // Errors are tool results with the envelope, not protocol failures.
    let invalid = s
        .call(
            "gpu_run",
            &["service=llm-4090", r#"input={"prompt": 7}"#],
            true,
        )
        .await;
    assert_eq!(invalid["isError"], true);
    assert_eq!(text(&invalid)["status"], 422, "{invalid}");
    let unknown = s
        .call("gpu_run", &["service=teleport", "input={}"], true)
        .await;
    assert_eq!(text(&unknown)["status"], 400);
    assert!(text(&unknown)["available_services"].is_array());
}

#[tokio::test]
async fn every_revision_is_served_and_bad_requests_get_the_envelope() {
    let s = setup().await;
    let client = JsonClient::new();
    let url = s.daemon.url("/mcp");
    let headers = [
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
    ];
    for version in ["2025-03-26", "2025-06-18", "2025-11-25"] {
        let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
        let reply = client
            .send(hyper::Method::POST, &url, &headers, initialize.to_string())
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body["result"]["protocolVersion"], version);
        assert_eq!(reply.body["result"]["serverInfo"]["name"], "gpubridge");
    }
    // 2026-07-28 has no handshake: every request says its version and method.
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}});
    let auth = format!("Bearer {}", s.key);
    for (method, params) in [
        ("server/discover", json!({"_meta": meta})),
        ("tools/list", json!({"_meta": meta})),
        (
            "tools/call",
            json!({"_meta": meta, "name": "gpu_run", "arguments": {"service": "echo", "input": {"n": 1}}}),
        ),
    ] {
        let mut current = headers.to_vec();
        current.extend([
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", method),
            ("authorization", auth.as_str()),
        ]);
        if method == "tools/call" {
            current.push(("mcp-name", "gpu_run"));
        }
        let message = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
        let reply = client
            .send(hyper::Method::POST, &url, &current, message.to_string())
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{method}: {}", reply.body);
        assert!(
            reply.body.get("error").is_none(),
            "{method}: {}",
            reply.body
        );
        if method == "tools/call" {
            assert_eq!(
                text(&reply.body["result"])["output"],
                json!({"n": 1}),
                "{}",
                reply.body
            );
        }
    }
    let garbage = client
        .send(hyper::Method::POST, &url, &headers, "{not json")
        .await
        .unwrap();
    assert_eq!(garbage.status, 400);
    assert!(
        garbage.body["error"]
            .as_str()
            .unwrap()
            .contains("MCP request refused"),
        "{}",
        garbage.body
    );
    assert!(garbage.body["hint"].is_string());
    let get = client.get(&url).await.unwrap();
    assert_eq!(get.status, 405);
    assert_eq!(get.headers["allow"], "POST");
}
