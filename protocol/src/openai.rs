//! The OpenAI-compatible JSON shapes, as pure functions: a GPU-Bridge input to a
//! chat or embeddings request, and the response back to GPU-Bridge output. Hosted
//! adapters and agents' local model servers share them, so a job's output has one
//! shape wherever it ran.

use crate::chat_request::{Messages, PASS_THROUGH};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// Chat messages from either `messages` or `system` + `prompt`, as JSON (for
/// formats that nest them in a bigger body; a chat request writes them itself).
pub fn messages(input: &Value) -> Value {
    serde_json::to_value(Messages::of(input)).unwrap_or(Value::Null)
}

/// Messages for a vision request: the prompt and the image as one user turn.
pub fn vision_messages(input: &Value) -> Value {
    let text = |name: &str| input.get(name).and_then(Value::as_str);
    json!([{"role": "user", "content": [
        {"type": "text", "text": text("prompt").unwrap_or("Describe this image.")},
        {"type": "image_url", "image_url": {"url": text("image_url").unwrap_or_default()}},
    ]}])
}

/// What one event of a streamed completion carries.
#[derive(Debug, PartialEq)]
pub enum StreamData {
    Chunk(Value),
    /// `[DONE]`: the stream is complete.
    Done,
    /// The server reported an error inside the stream.
    Error(String),
}

/// Reads one event's data.
pub fn stream_data(data: &str) -> Result<StreamData, String> {
    if data.trim() == "[DONE]" {
        return Ok(StreamData::Done);
    }
    let value: Value = serde_json::from_str(data).map_err(|e| format!("chunk is not JSON: {e}"))?;
    if let Some(error) = value.get("error") {
        let message = error.get("message").and_then(Value::as_str);
        return Ok(StreamData::Error(
            message.map_or_else(|| error.to_string(), str::to_string),
        ));
    }
    if !value.is_object() {
        return Err("chunk is not a JSON object".into());
    }
    Ok(StreamData::Chunk(value))
}

/// Builds a job's output from the chunks of a streamed completion, as they pass.
#[derive(Debug, Default)]
pub struct ChatAccumulator {
    text: String,
    reasoning: String,
    model: Option<Value>,
    finish_reason: Option<Value>,
    usage: Option<Value>,
    chunks: u32,
}

impl ChatAccumulator {
    pub fn add(&mut self, chunk: &Value) {
        self.chunks += 1;
        if let Some(model) = chunk.get("model").filter(|m| m.is_string()) {
            self.model.get_or_insert_with(|| model.clone());
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
            return;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta.get("content").and_then(Value::as_str) {
            self.text.push_str(text);
        }
        if let Some(text) = delta.get("reasoning_content").and_then(Value::as_str) {
            self.reasoning.push_str(text);
        }
        if let Some(reason) = choice.get("finish_reason").filter(|r| !r.is_null()) {
            self.finish_reason = Some(reason.clone());
        }
    }

    /// Chunks seen so far.
    pub fn chunks(&self) -> u32 {
        self.chunks
    }

    /// `{text, model, finish_reason, usage}`, the shape of a non-streamed answer.
    pub fn output(&self) -> Value {
        // As for whole answers: reasoning models may put everything in reasoning.
        let text = match self.text.is_empty() {
            true => &self.reasoning,
            false => &self.text,
        };
        let mut output = Map::new();
        output.insert("text".into(), json!(text));
        if let Some(model) = &self.model {
            output.insert("model".into(), model.clone());
        }
        if let Some(usage) = &self.usage {
            output.insert("usage".into(), usage.clone());
        }
        if let Some(reason) = &self.finish_reason {
            output.insert("finish_reason".into(), reason.clone());
        }
        Value::Object(output)
    }
}

/// `{text, model, finish_reason, usage}` from a chat completion.
pub fn chat_output(response: Value) -> Result<Value, String> {
    let choice = response
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or("chat completion without choices")?;
    let message = choice.get("message").unwrap_or(&Value::Null);
    // Reasoning models may put everything in `reasoning_content` and leave content null.
    let text = message
        .get("content")
        .and_then(Value::as_str)
        .or_else(|| message.get("reasoning_content").and_then(Value::as_str))
        .ok_or("chat completion without message content")?;
    Ok(text_output(text, &response, choice))
}

/// [`chat_output`] from the answer's bytes. The usual shape is read into
/// borrowed fields, skipping the rest without building a tree (a third of
/// `/inference`'s JSON work); any other shape is read as a tree and given to
/// [`chat_output`], so both paths answer alike. `Err` when it is not JSON.
pub fn chat_output_from_slice(body: &[u8]) -> Result<Result<Value, String>, serde_json::Error> {
    let usual = serde_json::from_slice::<Completion>(body).ok();
    match usual.and_then(Completion::output) {
        Some(output) => Ok(Ok(output)),
        None => serde_json::from_slice(body).map(chat_output),
    }
}

/// What [`chat_output`] reads of a chat completion.
#[derive(Deserialize)]
struct Completion<'a> {
    #[serde(default)]
    model: Present,
    #[serde(default)]
    usage: Present,
    #[serde(borrow, default)]
    choices: Vec<CompletionChoice<'a>>,
}

#[derive(Deserialize)]
struct CompletionChoice<'a> {
    #[serde(borrow, default)]
    message: Option<CompletionMessage<'a>>,
    #[serde(default)]
    finish_reason: Present,
}

#[derive(Deserialize)]
struct CompletionMessage<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
}

/// A field as sent, `null` included (which `Option` would fold into absent).
#[derive(Default)]
struct Present(Option<Value>);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(|value| Present(Some(value)))
    }
}

impl Completion<'_> {
    /// The output, when the answer has text; else `None`, and the tree path
    /// says what is missing.
    fn output(self) -> Option<Value> {
        let choice = self.choices.into_iter().next()?;
        let message = choice.message?;
        let text = message.content.or(message.reasoning_content)?;
        let mut output = Map::new();
        output.insert("text".into(), Value::String(text.into_owned()));
        let fields = [
            ("model", self.model),
            ("usage", self.usage),
            ("finish_reason", choice.finish_reason),
        ];
        for (name, Present(value)) in fields {
            if let Some(value) = value {
                output.insert(name.into(), value);
            }
        }
        Some(Value::Object(output))
    }
}

/// The generated text with the response's model, usage and finish reason.
fn text_output(text: &str, response: &Value, choice: &Value) -> Value {
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
    Value::Object(output)
}

/// A legacy text completion request: the prompt as is, for base models.
pub fn completion_request(input: &Value, model: &str) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "prompt".into(),
        input.get("prompt").cloned().unwrap_or(json!("")),
    );
    for field in PASS_THROUGH {
        if let Some(value) = input.get(field) {
            body.insert(field.into(), value.clone());
        }
    }
    body.insert("stream".into(), json!(false));
    Value::Object(body)
}

/// `{text, model, finish_reason, usage}` from a text completion.
pub fn completion_output(response: Value) -> Result<Value, String> {
    let choice = response
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or("completion without choices")?;
    let text = choice
        .get("text")
        .and_then(Value::as_str)
        .ok_or("completion without text")?;
    Ok(text_output(text, &response, choice))
}

pub fn embeddings_request(input: &Value, model: &str) -> Value {
    json!({"model": model, "input": input.get("text").cloned().unwrap_or(Value::Null)})
}

/// `{embedding | embeddings, dimensions, model}`: one vector for one text, a list
/// for a list.
pub fn embeddings_output(input: &Value, model: &str, response: Value) -> Result<Value, String> {
    let data = response
        .get("data")
        .and_then(Value::as_array)
        .ok_or("embeddings response without data")?;
    let mut vectors = Vec::with_capacity(data.len());
    for item in data {
        let vector = item
            .get("embedding")
            .filter(|v| v.as_array().is_some_and(|a| a.iter().all(Value::is_number)))
            .ok_or("embedding is not a list of numbers")?;
        vectors.push(vector.clone());
    }
    let dimensions = vectors
        .first()
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let model = response.get("model").cloned().unwrap_or(json!(model));
    let mut output = if input.get("text").is_some_and(Value::is_array) {
        json!({"embeddings": vectors, "dimensions": dimensions, "model": model})
    } else {
        let first = vectors.into_iter().next().ok_or("no embedding returned")?;
        json!({"embedding": first, "dimensions": dimensions, "model": model})
    };
    if let Some(usage) = response.get("usage").filter(|u| u.is_object()) {
        output["usage"] = usage.clone();
    }
    Ok(output)
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
    fn chat_output_from_bytes_matches_the_tree_path() {
        let usual = r#"{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"caf\u00e9 \"ok\""},"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5},"system_fingerprint":null}"#;
        let fast = serde_json::from_slice::<Completion>(usual.as_bytes())
            .ok()
            .and_then(Completion::output);
        assert_eq!(
            fast.expect("the usual shape is read typed")["text"],
            "café \"ok\""
        );
        let bodies = [
            usual,
            r#"{"model":null,"usage":null,"choices":[{"message":{"content":"a"},"finish_reason":null}]}"#,
            r#"{"choices":[{"message":{"content":null,"reasoning_content":"thought"}}]}"#,
            r#"{"choices":[{"message":{"content":""},"finish_reason":"length"},{"message":{"content":7}}]}"#,
            r#"{"choices":[{"message":{"content":["part"],"reasoning_content":"r"}}]}"#,
            r#"{"choices":[{"message":{"content":"c","reasoning_content":5}}]}"#,
            r#"{"model":"a","model":"b","choices":[{"message":{"content":"dup"}}]}"#,
            r#"{"choices":[{"message":{}}]}"#,
            r#"{"choices":[{"message":null}]}"#,
            r#"{"choices":["text"]}"#,
            r#"{"choices":[]}"#,
            r#"{"choices":null}"#,
            r#"{"choices":{"0":{"message":{"content":"x"}}}}"#,
            r#"{}"#,
            r#"[1]"#,
        ];
        for body in bodies {
            let tree = serde_json::from_str::<Value>(body).map(chat_output);
            let bytes = chat_output_from_slice(body.as_bytes());
            assert_eq!(bytes.ok(), tree.ok(), "{body}");
        }
        assert!(chat_output_from_slice(b"<html>").is_err());
    }

    #[test]
    fn completions_take_the_prompt_as_is() {
        let body = completion_request(&json!({"prompt": "Once", "max_tokens": 5}), "base");
        assert_eq!(
            body,
            json!({"model": "base", "prompt": "Once", "max_tokens": 5, "stream": false})
        );
        let out =
            completion_output(json!({"choices": [{"text": " upon", "finish_reason": "length"}]}));
        assert_eq!(
            out.unwrap(),
            json!({"text": " upon", "finish_reason": "length"})
        );
        assert!(completion_output(json!({"choices": [{}]})).is_err());
    }

    #[test]
    fn streamed_chunks_add_up_to_the_answer() {
        let mut acc = ChatAccumulator::default();
        for data in [
            r#"{"model":"m","choices":[{"delta":{"role":"assistant"}}]}"#,
            r#"{"choices":[{"delta":{"content":"Hel"}}]}"#,
            r#"{"choices":[{"delta":{"content":"lo"},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#,
        ] {
            let StreamData::Chunk(chunk) = stream_data(data).unwrap() else {
                panic!("{data} is a chunk");
            };
            acc.add(&chunk);
        }
        assert_eq!(acc.chunks(), 4);
        assert_eq!(
            acc.output(),
            json!({"text": "Hello", "model": "m", "finish_reason": "stop",
                   "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
        );
        assert_eq!(stream_data(" [DONE]").unwrap(), StreamData::Done);
        assert_eq!(
            stream_data(r#"{"error":{"message":"overloaded"}}"#).unwrap(),
            StreamData::Error("overloaded".into())
        );
        assert!(stream_data("{").is_err());
        assert!(stream_data("[1]").is_err());
    }

    #[test]
    fn embeddings_keep_the_input_shape() {
        let response = json!({"data": [{"embedding": [0.5, 1.0]}]});
        let one = embeddings_output(&json!({"text": "a"}), "m", response.clone()).unwrap();
        assert_eq!(
            one,
            json!({"embedding": [0.5, 1.0], "dimensions": 2, "model": "m"})
        );
        let many = embeddings_output(&json!({"text": ["a"]}), "m", response).unwrap();
        assert_eq!(many["embeddings"], json!([[0.5, 1.0]]));
        assert!(embeddings_output(&json!({}), "m", json!({"data": [{"embedding": "x"}]})).is_err());
    }
}
