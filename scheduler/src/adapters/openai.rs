//! The OpenAI-compatible wire format spoken by Groq, Together, DeepInfra, Fireworks
//! and Jina: chat completions, embeddings, audio transcription and speech.

use super::{AttemptError, Call, ProviderClient};
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use hyper::header::CONTENT_TYPE;
use hyper::Method;
use serde_json::{json, Map, Value};

/// Optional sampling fields passed through unchanged when present.
const PASS_THROUGH: [&str; 4] = ["max_tokens", "temperature", "top_p", "stop"];

/// Chat messages from either `messages` or `system` + `prompt`.
pub fn messages(input: &Value) -> Value {
    if let Some(messages) = input.get("messages") {
        return messages.clone();
    }
    let mut list = Vec::with_capacity(2);
    if let Some(system) = input.get("system").and_then(Value::as_str) {
        list.push(json!({"role": "system", "content": system}));
    }
    let prompt = input
        .get("prompt")
        .and_then(Value::as_str)
        .unwrap_or_default();
    list.push(json!({"role": "user", "content": prompt}));
    Value::Array(list)
}

fn chat_body(call: &Call<'_>, messages: Value) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(call.binding.provider_model));
    body.insert("messages".into(), messages);
    for field in PASS_THROUGH {
        if let Some(value) = call.input.get(field) {
            body.insert(field.into(), value.clone());
        }
    }
    body.insert("stream".into(), json!(false));
    Value::Object(body)
}

/// `{text, model, finish_reason, usage}` from a chat completion.
fn chat_output(response: Value) -> Result<Value, AttemptError> {
    let choice = response
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| AttemptError::BadResponse("chat completion without choices".into()))?;
    let message = choice.get("message").unwrap_or(&Value::Null);
    // Reasoning models may put everything in `reasoning_content` and leave content null.
    let text = message
        .get("content")
        .and_then(Value::as_str)
        .or_else(|| message.get("reasoning_content").and_then(Value::as_str))
        .ok_or_else(|| {
            AttemptError::BadResponse("chat completion without message content".into())
        })?;
    let mut output = Map::new();
    output.insert("text".into(), json!(text));
    for field in ["model", "usage"] {
        if let Some(value) = response.get(field) {
            output.insert(field.into(), value.clone());
        }
    }
    if let Some(reason) = choice.get("finish_reason") {
        output.insert("finish_reason".into(), reason.clone());
    }
    Ok(Value::Object(output))
}

pub async fn chat(client: &ProviderClient, call: &Call<'_>) -> Result<Value, AttemptError> {
    let body = chat_body(call, messages(call.input));
    chat_output(client.post_json("/chat/completions", &body).await?)
}

pub async fn vision(client: &ProviderClient, call: &Call<'_>) -> Result<Value, AttemptError> {
    let content = json!([
        {"type": "text", "text": call.str_field("prompt").unwrap_or("Describe this image.")},
        {"type": "image_url", "image_url": {"url": call.str_field("image_url").unwrap_or_default()}},
    ]);
    let body = chat_body(call, json!([{"role": "user", "content": content}]));
    chat_output(client.post_json("/chat/completions", &body).await?)
}

pub async fn embeddings(client: &ProviderClient, call: &Call<'_>) -> Result<Value, AttemptError> {
    let text = call.input.get("text").cloned().unwrap_or(Value::Null);
    let body = json!({"model": call.binding.provider_model, "input": text});
    let response = client.post_json("/embeddings", &body).await?;
    let data = response
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| AttemptError::BadResponse("embeddings response without data".into()))?;
    let mut vectors = Vec::with_capacity(data.len());
    for item in data {
        let vector = item
            .get("embedding")
            .filter(|v| v.as_array().is_some_and(|a| a.iter().all(Value::is_number)))
            .ok_or_else(|| {
                AttemptError::BadResponse("embedding is not a list of numbers".into())
            })?;
        vectors.push(vector.clone());
    }
    let dimensions = vectors
        .first()
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let model = response
        .get("model")
        .cloned()
        .unwrap_or(json!(call.binding.provider_model));
    Ok(if text.is_array() {
        json!({"embeddings": vectors, "dimensions": dimensions, "model": model})
    } else {
        let first = vectors
            .into_iter()
            .next()
            .ok_or_else(|| AttemptError::BadResponse("no embedding returned".into()))?;
        json!({"embedding": first, "dimensions": dimensions, "model": model})
    })
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
    let parsed = super::parse_json(&response)?;
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
    fn prompt_and_system_become_messages() {
        let m = messages(&json!({"prompt": "hi", "system": "be brief"}));
        assert_eq!(
            m,
            json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
        );
        let given = json!([{"role": "user", "content": "x"}]);
        assert_eq!(messages(&json!({"messages": given.clone()})), given);
    }

    #[test]
    fn chat_output_requires_content() {
        let ok = chat_output(json!({"model": "m", "choices": [{"message": {"content": "yo"}, "finish_reason": "stop"}]})).unwrap();
        assert_eq!(
            ok,
            json!({"text": "yo", "model": "m", "finish_reason": "stop"})
        );
        assert!(chat_output(json!({"choices": []})).is_err());
        assert!(chat_output(json!({"choices": [{"message": {}}]})).is_err());
    }

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
