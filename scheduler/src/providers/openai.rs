//! The OpenAI-compatible wire format spoken by Groq, Together, DeepInfra, Fireworks
//! and Jina: chat completions, embeddings, audio transcription and speech.

use super::client::{parse_json, ProviderClient};
use crate::catalog::Operation;
use crate::executor::{AttemptError, Call};
use crate::stream::Disconnected;
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use gpubridge_protocol::chat_request::{ChatRequest, Messages};
use gpubridge_protocol::chat_stream::{read_chat_stream, ChatStreamError};
use gpubridge_protocol::openai;
use hyper::header::CONTENT_TYPE;
use hyper::Method;
use serde_json::{json, Value};

fn bad(reason: String) -> AttemptError {
    AttemptError::BadResponse(reason)
}

/// Every operation the OpenAI-compatible API offers.
pub async fn serve(client: &ProviderClient, call: &Call<'_>) -> Result<Value, AttemptError> {
    match call.binding.operation {
        Operation::Chat => chat(client, call).await,
        Operation::Vision => vision(client, call).await,
        Operation::Embedding => embeddings(client, call).await,
        Operation::Transcription => transcription(client, call).await,
        Operation::Speech => speech(client, call).await,
        other => Err(AttemptError::Unsupported(other)),
    }
}

/// The longest single event a stream may send (a chunk is usually a few hundred bytes).
const MAX_STREAM_EVENT: usize = 1 << 20;

pub async fn chat(client: &ProviderClient, call: &Call<'_>) -> Result<Value, AttemptError> {
    let model = &call.binding.provider_model;
    let body = ChatRequest::new(call.input, model, Messages::of(call.input));
    if let Some(tap) = call.stream {
        let body = body.streamed();
        let stream = client.post_for_stream("/chat/completions", &body).await?;
        read_chat_stream(stream, MAX_STREAM_EVENT, |chunk| tap.send(chunk))
            .await
            .map_err(stream_error)?;
        return Ok(tap.output());
    }
    chat_completion(client, &body).await
}

async fn chat_completion(
    client: &ProviderClient,
    body: &ChatRequest<'_>,
) -> Result<Value, AttemptError> {
    client
        .post_json_read("/chat/completions", body, openai::chat_output_from_slice)
        .await?
        .map_err(bad)
}

fn stream_error(error: ChatStreamError<Disconnected>) -> AttemptError {
    match error {
        ChatStreamError::Sink(Disconnected) => AttemptError::Cancelled,
        ChatStreamError::Read(e) => AttemptError::Connect(format!("stream broke: {e}")),
        ChatStreamError::Upstream(message) => AttemptError::Failed(message),
        other => AttemptError::BadResponse(other.to_string()),
    }
}

pub async fn vision(client: &ProviderClient, call: &Call<'_>) -> Result<Value, AttemptError> {
    let messages = Messages::Built(openai::vision_messages(call.input));
    let body = ChatRequest::new(call.input, &call.binding.provider_model, messages);
    chat_completion(client, &body).await
}

pub async fn embeddings(client: &ProviderClient, call: &Call<'_>) -> Result<Value, AttemptError> {
    let model = &call.binding.provider_model;
    let body = openai::embeddings_request(call.input, model);
    let response = client.post_json("/embeddings", &body).await?;
    openai::embeddings_output(call.input, model, response).map_err(bad)
}

pub async fn transcription(
    client: &ProviderClient,
    call: &Call<'_>,
) -> Result<Value, AttemptError> {
    let url = call.str_field("audio_url").unwrap_or_default();
    let media = client.media.fetch(url).await?;
    let boundary = format!("gpubridge-{}", uuid::Uuid::new_v4().simple());
    let mut form = Multipart::new(&boundary);
    form.text("model", &call.binding.provider_model);
    form.text("response_format", "json");
    for field in ["language", "prompt"] {
        if let Some(value) = call.str_field(field) {
            form.text(field, value);
        }
    }
    let content_type = media
        .content_type
        .as_deref()
        .unwrap_or("application/octet-stream");
    form.file("file", &media.file_name, content_type, &media.bytes);
    let request = client
        .request(Method::POST, "/audio/transcriptions")
        .header(
            CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        );
    let response = client.send(request, form.finish()).await?;
    let parsed = parse_json(&response)?;
    let text = parsed
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| AttemptError::BadResponse("transcription without text".into()))?;
    let mut output = json!({"text": text});
    for field in ["language", "duration", "segments"] {
        if let Some(value) = parsed.get(field) {
            output[field] = value.clone();
        }
    }
    Ok(output)
}

pub async fn speech(client: &ProviderClient, call: &Call<'_>) -> Result<Value, AttemptError> {
    let format = call.str_field("format").unwrap_or("mp3");
    let mut body = json!({
        "model": call.binding.provider_model,
        "input": call.str_field("text").unwrap_or_default(),
        "voice": call.str_field("voice").unwrap_or("af_alloy"),
        "response_format": format,
    });
    if let Some(speed) = call.input.get("speed") {
        body["speed"] = speed.clone();
    }
    let request = client
        .request(Method::POST, "/audio/speech")
        .header(CONTENT_TYPE, "application/json");
    let bytes = serde_json::to_vec(&body).map_err(|e| AttemptError::BadResponse(e.to_string()))?;
    let response = client.send(request, Bytes::from(bytes)).await?;
    let content_type = response
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    if content_type.starts_with("application/json") || response.body.is_empty() {
        return Err(AttemptError::BadResponse(format!(
            "expected audio, got {content_type}"
        )));
    }
    Ok(json!({
        "audio_base64": base64::engine::general_purpose::STANDARD.encode(&response.body),
        "content_type": content_type,
        "format": format,
        "bytes": response.body.len(),
    }))
}

/// A multipart/form-data body (RFC 7578) for the transcription upload.
struct Multipart {
    boundary: String,
    body: BytesMut,
}

impl Multipart {
    fn new(boundary: &str) -> Self {
        Multipart {
            boundary: boundary.to_string(),
            body: BytesMut::new(),
        }
    }

    fn text(&mut self, name: &str, value: &str) {
        self.part_header(name, None, None);
        self.body.put_slice(value.as_bytes());
        self.body.put_slice(b"\r\n");
    }

    fn file(&mut self, name: &str, file_name: &str, content_type: &str, data: &[u8]) {
        self.part_header(name, Some(file_name), Some(content_type));
        self.body.put_slice(data);
        self.body.put_slice(b"\r\n");
    }

    fn part_header(&mut self, name: &str, file_name: Option<&str>, content_type: Option<&str>) {
        let clean = |s: &str| s.replace(['"', '\r', '\n'], "_");
        self.body
            .put_slice(format!("--{}\r\n", self.boundary).as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", clean(name));
        if let Some(file_name) = file_name {
            disposition.push_str(&format!("; filename=\"{}\"", clean(file_name)));
        }
        self.body.put_slice(disposition.as_bytes());
        self.body.put_slice(b"\r\n");
        if let Some(content_type) = content_type {
            self.body
                .put_slice(format!("Content-Type: {}\r\n", clean(content_type)).as_bytes());
        }
        self.body.put_slice(b"\r\n");
    }

    fn finish(mut self) -> Bytes {
        self.body
            .put_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        self.body.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_is_well_formed() {
        let mut form = Multipart::new("B");
        form.text("model", "w");
        form.file("file", "a\".wav", "audio/wav", b"RIFF");
        let body = form.finish();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.starts_with("--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nw\r\n")
        );
        assert!(text.contains("filename=\"a_.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n"));
        assert!(text.ends_with("--B--\r\n"));
    }
}
