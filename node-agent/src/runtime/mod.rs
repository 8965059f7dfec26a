//! Where a job actually runs on the host. One runtime per configured service;
//! every failure is classified for the scheduler (`FailureKind`) so it knows
//! whether another agent could do better.

mod command;
mod http;

use crate::config::{RuntimeKind, ServiceConfig};
use base64::Engine;
use gpubridge_protocol::chat_request::{ChatRequest, Messages};
use gpubridge_protocol::chat_stream::{read_chat_stream, ChatStreamError};
use gpubridge_protocol::media::MediaFetcher;
use gpubridge_protocol::node::{FailureKind, JobEvent};
use gpubridge_protocol::openai;
use http::JsonPoster;

/// Where a runtime sends what it has to say while a job runs: output chunks
/// (`Delta`, when the job is streamed) and `Progress`.
pub type Events = tokio::sync::mpsc::Sender<JobEvent>;

/// A running job's line back to the scheduler.
#[derive(Clone, Copy)]
pub struct Feed<'a> {
    pub events: &'a Events,
    /// The job is streamed: a runtime that can sends its output in pieces.
    pub stream: bool,
}
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct RuntimeFailure {
    pub kind: FailureKind,
    pub message: String,
}

impl RuntimeFailure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        RuntimeFailure {
            kind,
            message: message.into(),
        }
    }
}

pub struct Runtime {
    service: String,
    cfg: ServiceConfig,
    http: JsonPoster,
    media: MediaFetcher,
    max_output_bytes: usize,
}

impl Runtime {
    pub fn new(
        service: &str,
        cfg: &ServiceConfig,
        max_output_bytes: usize,
        media: MediaFetcher,
    ) -> Runtime {
        Runtime {
            service: service.to_string(),
            cfg: cfg.clone(),
            http: JsonPoster::new(max_output_bytes),
            media,
            max_output_bytes,
        }
    }

    /// Replaces each `fetch_inputs` URL with the fetched file as a `data:` URL. A
    /// URL that cannot be fetched fails the same on every agent: the job is rejected.
    async fn fetch_inputs(&self, input: &mut Value) -> Result<(), RuntimeFailure> {
        for field in &self.cfg.fetch_inputs {
            let Some(url) = input.get(field).and_then(Value::as_str) else {
                continue;
            };
            if url.starts_with("data:") {
                continue;
            }
            let media =
                self.media.fetch(url).await.map_err(|e| {
                    RuntimeFailure::new(FailureKind::Rejected, format!("{field}: {e}"))
                })?;
            let content_type = media
                .content_type
                .as_deref()
                .unwrap_or("application/octet-stream");
            let encoded = base64::engine::general_purpose::STANDARD.encode(&media.bytes);
            input[field] = json!(format!("data:{content_type};base64,{encoded}"));
        }
        Ok(())
    }

    pub fn kind(&self) -> RuntimeKind {
        self.cfg.runtime
    }

    /// Runs one job. The caller enforces the deadline by dropping the future,
    /// which also kills a command's process. Through `feed`, a runtime that can
    /// stream (an OpenAI chat completion) sends each chunk as it comes, and a
    /// command reports its progress.
    pub async fn run(
        &self,
        model: Option<&str>,
        mut input: Value,
        feed: Option<Feed<'_>>,
    ) -> Result<Value, RuntimeFailure> {
        self.fetch_inputs(&mut input).await?;
        let url = self.cfg.url.as_deref().unwrap_or_default();
        match self.cfg.runtime {
            RuntimeKind::Echo => {
                if self.cfg.delay_ms > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(self.cfg.delay_ms)).await;
                }
                Ok(input)
            }
            RuntimeKind::Http => self.post(url, &input).await,
            RuntimeKind::Cog => {
                let body = json!({"input": without_model(input)});
                let prediction = self
                    .post(&format!("{}/predictions", url.trim_end_matches('/')), &body)
                    .await?;
                cog_output(prediction)
            }
            RuntimeKind::Openai => {
                let deltas = feed.filter(|f| f.stream).map(|f| f.events);
                self.openai(url, model, &input, deltas).await
            }
            RuntimeKind::Command => {
                let progress = feed.map(|f| f.events);
                command::run(
                    &self.cfg,
                    &self.service,
                    &input,
                    self.max_output_bytes,
                    progress,
                )
                .await
            }
        }
    }

    async fn post(&self, url: &str, body: &Value) -> Result<Value, RuntimeFailure> {
        self.http.post(url, self.cfg.api_key.as_deref(), body).await
    }

    async fn openai(
        &self,
        root: &str,
        model: Option<&str>,
        input: &Value,
        deltas: Option<&Events>,
    ) -> Result<Value, RuntimeFailure> {
        let root = root.trim_end_matches('/');
        let asked = model.or_else(|| input.get("model").and_then(Value::as_str));
        // The local server's own name for the model, else the catalog id as is.
        let local_model = asked
            .map(|m| self.cfg.model_map.get(m).map_or(m, String::as_str))
            .unwrap_or("default");
        let bad = |e: String| RuntimeFailure::new(FailureKind::Runtime, e);
        match self.cfg.api.as_deref() {
            Some("embeddings") => {
                let body = openai::embeddings_request(input, local_model);
                let response = self.post(&format!("{root}/embeddings"), &body).await?;
                return openai::embeddings_output(input, local_model, response).map_err(bad);
            }
            Some("completions") => {
                let body = openai::completion_request(input, local_model);
                let response = self.post(&format!("{root}/completions"), &body).await?;
                return openai::completion_output(response).map_err(bad);
            }
            _ => {}
        }
        let messages = match input.get("image_url") {
            Some(_) => Messages::Built(openai::vision_messages(input)),
            None => Messages::of(input),
        };
        let url = format!("{root}/chat/completions");
        let body = ChatRequest::new(input, local_model, messages);
        if let Some(deltas) = deltas {
            return self.stream(&url, &body.streamed(), deltas).await;
        }
        let bearer = self.cfg.api_key.as_deref();
        let read = openai::chat_output_from_slice;
        let output = self.http.post_read(&url, bearer, &body, read).await?;
        output.map_err(bad)
    }

    /// A streamed chat completion: each chunk to `deltas` as it arrives, the
    /// whole answer (as a non-streamed one would be) at the end.
    async fn stream(
        &self,
        url: &str,
        body: &ChatRequest<'_>,
        deltas: &Events,
    ) -> Result<Value, RuntimeFailure> {
        let stream = self
            .http
            .post_for_stream(url, self.cfg.api_key.as_deref(), body)
            .await?;
        let mut answer = openai::ChatAccumulator::default();
        let sink = |chunk: Value| {
            answer.add(&chunk);
            deltas.send(JobEvent::Delta(chunk.to_string()))
        };
        read_chat_stream(stream, self.max_output_bytes, sink)
            .await
            .map_err(|e| match e {
                ChatStreamError::Sink(_) => {
                    RuntimeFailure::new(FailureKind::Unavailable, "the job stream closed")
                }
                other => RuntimeFailure::new(FailureKind::Runtime, other.to_string()),
            })?;
        Ok(answer.output())
    }
}

fn without_model(mut input: Value) -> Value {
    if let Some(map) = input.as_object_mut() {
        map.remove("model");
    }
    input
}

/// `{output, metrics?}` from a Cog prediction response.
fn cog_output(prediction: Value) -> Result<Value, RuntimeFailure> {
    match prediction.get("status").and_then(Value::as_str) {
        Some("succeeded") | None if prediction.get("output").is_some() => {
            let mut output = json!({"output": prediction["output"].clone()});
            if let Some(metrics) = prediction.get("metrics") {
                output["metrics"] = metrics.clone();
            }
            Ok(output)
        }
        Some("failed") | Some("canceled") => Err(RuntimeFailure::new(
            FailureKind::Runtime,
            format!(
                "prediction failed: {}",
                prediction
                    .get("error")
                    .map(Value::to_string)
                    .unwrap_or_default()
            ),
        )),
        other => Err(RuntimeFailure::new(
            FailureKind::Runtime,
            format!("prediction answered status {other:?} without output"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cog_predictions_become_output_or_failures() {
        let ok = cog_output(
            json!({"status": "succeeded", "output": ["u"], "metrics": {"predict_time": 1.5}}),
        );
        assert_eq!(
            ok.unwrap(),
            json!({"output": ["u"], "metrics": {"predict_time": 1.5}})
        );
        let failed = cog_output(json!({"status": "failed", "error": "CUDA OOM"})).unwrap_err();
        assert_eq!(failed.kind, FailureKind::Runtime);
        assert!(failed.message.contains("CUDA OOM"));
        assert!(cog_output(json!({"status": "processing"})).is_err());
    }

    #[tokio::test]
    async fn fetched_inputs_become_data_urls_and_private_ones_are_refused() {
        let cfg: ServiceConfig =
            toml::from_str("runtime = \"echo\"\nfetch_inputs = [\"image_url\"]").unwrap();
        let strict = Runtime::new("ocr", &cfg, 1024, MediaFetcher::new(false, 1024));
        let refused = strict
            .run(None, json!({"image_url": "http://127.0.0.1:9/x.png"}), None)
            .await
            .unwrap_err();
        assert_eq!(refused.kind, FailureKind::Rejected);
        assert!(refused.message.contains("image_url"), "{}", refused.message);
        // data: URLs are already inline and pass untouched.
        let inline = json!({"image_url": "data:image/png;base64,iVBORw0K"});
        assert_eq!(
            strict.run(None, inline.clone(), None).await.unwrap(),
            inline
        );
    }

    #[tokio::test]
    async fn echo_returns_its_input() {
        let cfg: ServiceConfig = toml::from_str("runtime = \"echo\"").unwrap();
        let runtime = Runtime::new("echo", &cfg, 1024, MediaFetcher::new(false, 1024));
        let input = json!({"a": [1, 2, {"b": null}]});
        assert_eq!(runtime.run(None, input.clone(), None).await.unwrap(), input);
    }
}
