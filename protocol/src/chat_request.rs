//! A chat completion request borrowed from a job's input and written straight
//! to JSON: the usual shapes (`prompt`, `system` + `prompt`, given `messages`)
//! never become a JSON tree first, which cost an allocation per key and value.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;

/// Optional sampling fields passed through unchanged when present.
pub(crate) const PASS_THROUGH: [&str; 4] = ["max_tokens", "temperature", "top_p", "stop"];

/// `{model, messages, <sampling fields>, stream[, stream_options]}`.
pub struct ChatRequest<'a> {
    input: &'a Value,
    model: &'a str,
    messages: Messages<'a>,
    stream: bool,
}

/// Where a request's messages come from.
pub enum Messages<'a> {
    /// The input's own `messages`, as given.
    Given(&'a Value),
    /// An optional system turn, then the prompt as the user's turn.
    Prompt {
        system: Option<&'a str>,
        prompt: &'a str,
    },
    /// Built by the caller (vision's text and image parts).
    Built(Value),
}

impl<'a> Messages<'a> {
    /// From either `messages` or `system` + `prompt`.
    pub fn of(input: &'a Value) -> Messages<'a> {
        if let Some(messages) = input.get("messages") {
            return Messages::Given(messages);
        }
        let text = |name| input.get(name).and_then(Value::as_str);
        Messages::Prompt {
            system: text("system"),
            prompt: text("prompt").unwrap_or_default(),
        }
    }
}

impl<'a> ChatRequest<'a> {
    /// A request answered whole.
    pub fn new(input: &'a Value, model: &'a str, messages: Messages<'a>) -> ChatRequest<'a> {
        ChatRequest {
            input,
            model,
            messages,
            stream: false,
        }
    }

    /// The same, answered as chunks while they are generated, with the usage in
    /// a last chunk (what the job is billed and reported on).
    pub fn streamed(self) -> ChatRequest<'a> {
        ChatRequest {
            stream: true,
            ..self
        }
    }
}

impl Serialize for ChatRequest<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("model", self.model)?;
        map.serialize_entry("messages", &self.messages)?;
        for field in PASS_THROUGH {
            if let Some(value) = self.input.get(field) {
                map.serialize_entry(field, value)?;
            }
        }
        map.serialize_entry("stream", &self.stream)?;
        if self.stream {
            map.serialize_entry("stream_options", &StreamOptions)?;
        }
        map.end()
    }
}

impl Serialize for Messages<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Messages::Given(messages) => messages.serialize(serializer),
            Messages::Built(messages) => messages.serialize(serializer),
            Messages::Prompt { system, prompt } => {
                let mut turns = serializer.serialize_seq(None)?;
                if let Some(system) = system {
                    turns.serialize_element(&Turn::new("system", system))?;
                }
                turns.serialize_element(&Turn::new("user", prompt))?;
                turns.end()
            }
        }
    }
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: &'a str,
}

impl<'a> Turn<'a> {
    fn new(role: &'static str, content: &'a str) -> Turn<'a> {
        Turn { role, content }
    }
}

struct StreamOptions;

impl Serialize for StreamOptions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("include_usage", &true)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn written(request: &ChatRequest) -> Value {
        serde_json::to_value(request).expect("serializes")
    }

    #[test]
    fn a_prompt_becomes_the_users_turn_after_an_optional_system_turn() {
        let input = json!({"prompt": "hi", "system": "be brief", "max_tokens": 16, "top_p": 0.9, "seed": 4});
        let request = ChatRequest::new(&input, "m", Messages::of(&input));
        assert_eq!(
            written(&request),
            json!({
                "model": "m",
                "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
                "max_tokens": 16,
                "top_p": 0.9,
                "stream": false,
            })
        );
        let bare = json!({});
        let request = ChatRequest::new(&bare, "m", Messages::of(&bare));
        assert_eq!(
            written(&request)["messages"],
            json!([{"role": "user", "content": ""}])
        );
    }

    #[test]
    fn given_messages_pass_unchanged_and_a_stream_asks_for_usage() {
        let given = json!([{"role": "user", "content": [{"type": "text", "text": "x"}]}]);
        let input =
            json!({"messages": given, "prompt": "ignored", "stop": ["\n"], "temperature": 0});
        let request = ChatRequest::new(&input, "m", Messages::of(&input)).streamed();
        assert_eq!(
            written(&request),
            json!({
                "model": "m",
                "messages": given,
                "stop": ["\n"],
                "temperature": 0,
                "stream": true,
                "stream_options": {"include_usage": true},
            })
        );
    }

    #[test]
    fn text_needs_no_escaping_help() {
        let input = json!({"prompt": "quote \" and \u{e9}\n"});
        let bytes = serde_json::to_vec(&ChatRequest::new(&input, "m", Messages::of(&input)))
            .expect("serializes");
        let back: Value = serde_json::from_slice(&bytes).expect("valid JSON");
        assert_eq!(back["messages"][0]["content"], "quote \" and \u{e9}\n");
    }
}
