//! Replicate predictions: create (with `Prefer: wait`), then poll until the
//! prediction succeeds, fails or our deadline passes (then cancel it). An
//! attempt dropped while its prediction runs (the job was cancelled, its client
//! left) cancels the prediction too.

use super::client::{parse_json, ProviderClient};
use crate::catalog::Operation;
use crate::executor::{AttemptError, BoxFuture, Call, Executed, Executor};
use bytes::Bytes;
use hyper::header::CONTENT_TYPE;
use hyper::Method;
use serde_json::{json, Map, Value};
use std::time::Duration;

pub struct Replicate(pub ProviderClient);

impl Executor for Replicate {
    fn execute<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Executed, AttemptError>> {
        Box::pin(async move { run(&self.0, call).await.map(Executed::output) })
    }
}

async fn run(client: &ProviderClient, call: &Call<'_>) -> Result<Value, AttemptError> {
    let input = provider_input(call);
    let model = &call.binding.provider_model;
    // `owner/name:version` runs a pinned version; `owner/name` the model's latest.
    let (path, body) = match model.split_once(':') {
        Some((_, version)) => (
            "/predictions".to_string(),
            json!({"version": version, "input": input}),
        ),
        None => (
            format!("/models/{model}/predictions"),
            json!({"input": input}),
        ),
    };
    let wait = client
        .prefer_wait_seconds
        .min(call.remaining().as_secs().max(1));
    let request = client
        .request(Method::POST, &path)
        .header(CONTENT_TYPE, "application/json")
        .header("prefer", format!("wait={wait}"));
    let bytes = serde_json::to_vec(&body).map_err(|e| AttemptError::BadResponse(e.to_string()))?;
    let response = client.send(request, Bytes::from(bytes)).await?;
    let mut prediction = parse_json(&response)?;
    let mut running = Running { client, id: None };
    let mut delay = Duration::from_millis(250);
    loop {
        match prediction.get("status").and_then(Value::as_str) {
            Some("succeeded") => {
                running.id = None;
                return Ok(output(call.binding.operation, &prediction));
            }
            Some("failed") | Some("canceled") | Some("aborted") => {
                running.id = None;
                let error = prediction
                    .get("error")
                    .map(Value::to_string)
                    .unwrap_or_default();
                return Err(AttemptError::Failed(format!("prediction ended: {error}")));
            }
            Some(_) => {}
            None => {
                return Err(AttemptError::BadResponse(
                    "prediction without status".into(),
                ))
            }
        }
        let id = prediction
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| AttemptError::BadResponse("prediction without id".into()))?
            .to_string();
        running.id = Some(id.clone());
        if call.remaining() <= delay {
            running.id = None;
            cancel(client, &id).await;
            return Err(AttemptError::Timeout);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
        prediction = match client.get_json(&format!("/predictions/{id}")).await {
            Ok(p) => p,
            Err(e) => {
                running.id = None;
                cancel(client, &id).await;
                return Err(e);
            }
        };
    }
}

/// A prediction in flight: cancelled upstream if the attempt is dropped before
/// it ends, so a cancelled job stops costing.
struct Running<'a> {
    client: &'a ProviderClient,
    id: Option<String>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        let client = self.client.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { cancel(&client, &id).await });
        }
    }
}

/// Best effort: a prediction we gave up on should not keep running (and billing).
async fn cancel(client: &ProviderClient, id: &str) {
    let request = client.request(Method::POST, &format!("/predictions/{id}/cancel"));
    if let Err(e) = client.send(request, Bytes::new()).await {
        tracing::debug!(prediction = id, error = %e, "replicate cancel failed");
    }
}

/// The model's input: ours renamed through the binding's map, over its defaults.
fn provider_input(call: &Call<'_>) -> Value {
    let mut input: Map<String, Value> = call.binding.defaults.clone();
    match call.binding.operation {
        Operation::Chat => {
            let messages = gpubridge_protocol::openai::messages(call.input);
            let mut prompt = String::new();
            let mut system = None;
            for m in messages.as_array().into_iter().flatten() {
                let content = m.get("content").and_then(Value::as_str).unwrap_or_default();
                match m.get("role").and_then(Value::as_str) {
                    Some("system") => system = Some(content.to_string()),
                    Some(role) => prompt.push_str(&format!("{role}: {content}\n")),
                    None => {}
                }
            }
            if call.input.get("prompt").is_some() && call.input.get("messages").is_none() {
                prompt = call.str_field("prompt").unwrap_or_default().to_string();
            }
            input.insert("prompt".into(), json!(prompt));
            if let Some(system) = system {
                input.insert("system_prompt".into(), json!(system));
            }
            for field in ["max_tokens", "temperature", "top_p"] {
                if let Some(v) = call.input.get(field) {
                    input.insert(field.into(), v.clone());
                }
            }
        }
        Operation::Image => {
            let renames = [("n", "num_outputs"), ("steps", "num_inference_steps")];
            for (key, value) in call.input.as_object().into_iter().flatten() {
                if key == "model" {
                    continue;
                }
                let name = renames
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or(key.as_str(), |(_, v)| v);
                input.insert(name.to_string(), value.clone());
            }
        }
        _ => {
            for (key, value) in call.input.as_object().into_iter().flatten() {
                if key == "model" {
                    continue;
                }
                let name = call.binding.input_map.get(key).unwrap_or(key);
                input.insert(name.clone(), value.clone());
            }
        }
    }
    Value::Object(input)
}

/// GPU-Bridge's output shape for the operation, from a succeeded prediction.
fn output(operation: Operation, prediction: &Value) -> Value {
    let raw = prediction.get("output").cloned().unwrap_or(Value::Null);
    let mut out = match operation {
        // Language models stream tokens as a list of strings.
        Operation::Chat | Operation::Vision => {
            let text = match &raw {
                Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect::<String>(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            json!({"text": text})
        }
        Operation::Image => {
            let urls: Vec<Value> = match &raw {
                Value::Array(items) => items.clone(),
                Value::Null => vec![],
                single => vec![single.clone()],
            };
            let images: Vec<Value> = urls.iter().map(|u| json!({"url": u})).collect();
            json!({"images": images, "image_url": urls.first().cloned().unwrap_or(Value::Null)})
        }
        Operation::Transcription => {
            let text = raw
                .get("transcription")
                .or_else(|| raw.get("text"))
                .cloned()
                .unwrap_or(Value::Null);
            json!({"text": text, "segments": raw.get("segments").cloned().unwrap_or(Value::Null)})
        }
        Operation::Speech => json!({"audio_url": raw}),
        _ => json!({"output": raw}),
    };
    if let Some(metrics) = prediction.get("metrics") {
        out["provider_metrics"] = metrics.clone();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Binding;
    use std::collections::HashMap;
    use std::time::Instant;

    fn binding(operation: Operation, map: &[(&str, &str)], defaults: Value) -> Binding {
        Binding {
            service: "svc".into(),
            operation,
            provider_model: "owner/name".into(),
            input_map: map
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<HashMap<_, _>>(),
            defaults: defaults.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn inputs_are_renamed_over_defaults() {
        let b = binding(
            Operation::Prediction,
            &[("image_url", "image")],
            json!({"task": "caption", "image": "x"}),
        );
        let input = json!({"image_url": "https://a/b.png", "model": "ignored"});
        let job_id = gpubridge_protocol::JobId::random();
        let call = Call {
            job_id: &job_id,
            service: "svc",
            model: None,
            input: &input,
            binding: &b,
            deadline: Instant::now(),
            job_deadline_unix_ms: 0,
            default_ms: 1000.0,
            stream: None,
            progress: &|_, _| {},
        };
        assert_eq!(
            provider_input(&call),
            json!({"task": "caption", "image": "https://a/b.png"})
        );
    }

    #[test]
    fn outputs_are_normalised() {
        let chat = output(Operation::Chat, &json!({"output": ["Hel", "lo"]}));
        assert_eq!(chat["text"], "Hello");
        let image = output(Operation::Image, &json!({"output": ["https://x/1.png"]}));
        assert_eq!(image["image_url"], "https://x/1.png");
        let other = output(Operation::Prediction, &json!({"output": {"a": 1}}));
        assert_eq!(other["output"]["a"], 1);
    }
}
