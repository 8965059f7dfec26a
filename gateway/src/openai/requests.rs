//! OpenAI's request bodies, as far as GPU-Bridge serves them. A field OpenAI
//! defines that we cannot honour (tools, n > 1, logprobs, …) is refused by name,
//! never accepted and ignored; each request becomes the catalog input of the
//! service it runs on.

use crate::error::ApiError;
use crate::requests::Body;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stop: Option<Value>,
    /// Only one choice is generated; `n` is accepted when it says so.
    #[serde(default)]
    pub n: Option<u32>,
    /// The end user, as OpenAI takes it: logged with the job for abuse
    /// tracing, not sent upstream.
    #[serde(default)]
    pub user: Option<String>,
}

impl Body for ChatRequest {
    const HINT: &'static str = "Send {\"model\": \"<id from GET /v1/models>\", \"messages\": [{\"role\": \"user\", \"content\": \"...\"}], \"stream\": true|false}; tools, logprobs and n > 1 are not served here.";
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: Role,
    pub content: Content,
    /// A participant's name. The models here are not told names, so it is
    /// refused rather than dropped.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    /// OpenAI's newer name for system instructions.
    Developer,
    User,
    Assistant,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

/// One part of a message's content; only text parts are served, and any other
/// part (an image, audio, a file) is refused by its type.
#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

fn unsupported(field: &str, why: &str) -> ApiError {
    ApiError::bad_request(
        format!("{field} is not supported here: {why}"),
        ChatRequest::HINT,
    )
    .with_field(field)
}

impl ChatRequest {
    pub fn streams(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn include_usage(&self) -> bool {
        let asked = self.stream_options.as_ref().and_then(|o| o.include_usage);
        asked.unwrap_or(false)
    }

    /// The `llm-4090` input this request stands for.
    pub fn into_input(self) -> Result<Value, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(unsupported("n", "one choice is generated per request"));
        }
        if self.stream_options.is_some() && !self.streams() {
            return Err(ApiError::bad_request(
                "stream_options is only allowed when stream is true",
                ChatRequest::HINT,
            )
            .with_field("stream_options"));
        }
        if self.max_tokens.is_some() && self.max_completion_tokens.is_some() {
            return Err(ApiError::bad_request(
                "Send max_tokens or max_completion_tokens, not both",
                ChatRequest::HINT,
            )
            .with_field("max_completion_tokens"));
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        for (index, message) in self.messages.into_iter().enumerate() {
            messages.push(message.into_input(index)?);
        }
        let mut input = Map::new();
        input.insert("model".into(), json!(self.model));
        input.insert("messages".into(), Value::Array(messages));
        let max_tokens = self.max_tokens.or(self.max_completion_tokens);
        let optional = [
            ("max_tokens", max_tokens.map(Value::from)),
            ("temperature", self.temperature.map(Value::from)),
            ("top_p", self.top_p.map(Value::from)),
            ("stop", self.stop.filter(|s| !s.is_null())),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                input.insert(name.into(), value);
            }
        }
        Ok(Value::Object(input))
    }
}

impl Message {
    fn into_input(self, index: usize) -> Result<Value, ApiError> {
        let at = |what: &str| format!("messages[{index}].{what}");
        if self.name.is_some() {
            return Err(unsupported(
                &at("name"),
                "participant names are not passed to models",
            ));
        }
        let role = match self.role {
            Role::System | Role::Developer => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let content = match self.content {
            Content::Text(text) => text,
            Content::Parts(parts) => {
                let mut text = String::new();
                for part in parts {
                    match (part.kind.as_str(), part.text) {
                        ("text", Some(piece)) if part.rest.is_empty() => text.push_str(&piece),
                        (kind, _) => {
                            return Err(unsupported(
                                &at("content"),
                                &format!("only text parts are served, not {kind:?}"),
                            ))
                        }
                    }
                }
                text
            }
        };
        Ok(json!({"role": role, "content": content}))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(default)]
    pub encoding_format: Option<EncodingFormat>,
    #[serde(default)]
    pub dimensions: Option<u32>,
    #[serde(default)]
    pub user: Option<String>,
}

impl Body for EmbeddingsRequest {
    const HINT: &'static str = "Send {\"model\": \"<id from GET /v1/models>\", \"input\": \"text\" or [\"text\", ...]}; token arrays are not served here.";
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    #[default]
    Float,
    /// Little-endian f32s, base64: what OpenAI's SDKs ask for by default.
    Base64,
}

impl EmbeddingsRequest {
    /// The `embedding-l4` input this request stands for.
    pub fn input(&self) -> Result<Value, ApiError> {
        if self.dimensions.is_some() {
            return Err(ApiError::bad_request(
                "dimensions is not supported here: each model returns its own size",
                EmbeddingsRequest::HINT,
            )
            .with_field("dimensions"));
        }
        Ok(json!({"model": self.model, "text": self.input}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: Value) -> Result<Value, ApiError> {
        let request: ChatRequest =
            serde_json::from_value(body).map_err(|e| ApiError::bad_request(e.to_string(), ""))?;
        request.into_input()
    }

    #[test]
    fn chat_requests_become_llm_inputs() {
        let input = chat(json!({"model": "m", "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]}
        ], "max_completion_tokens": 5, "stop": null, "n": 1}))
        .unwrap();
        assert_eq!(
            input,
            json!({"model": "m", "max_tokens": 5, "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi there"}]})
        );
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let refused = |body: Value| chat(body).unwrap_err();
        let base = |extra: Value| {
            let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            body
        };
        assert!(refused(base(json!({"tools": []}))).error.contains("tools"));
        assert_eq!(refused(base(json!({"n": 2}))).field(), Some("n"));
        assert_eq!(
            refused(base(json!({"stream_options": {"include_usage": true}}))).field(),
            Some("stream_options")
        );
        let image = json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]});
        assert_eq!(refused(base(image)).field(), Some("messages[0].content"));
        assert!(refused(base(
            json!({"messages": [{"role": "tool", "content": "x"}]})
        ))
        .error
        .contains("tool"));
    }
}
