//! Together: the OpenAI-compatible API, Jina-style rerank, and its own image
//! generation (`POST /images/generations`).

use super::client::ProviderClient;
use super::{jina, openai};
use crate::catalog::Operation;
use crate::executor::{AttemptError, BoxFuture, Call, Executed, Executor};
use serde_json::{json, Map, Value};

pub struct Together(pub ProviderClient);

impl Executor for Together {
    fn execute<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Executed, AttemptError>> {
        Box::pin(async move {
            let output = match call.binding.operation {
                Operation::Rerank => jina::rerank(&self.0, call).await,
                Operation::Image => images(&self.0, call).await,
                _ => openai::serve(&self.0, call).await,
            };
            output.map(Executed::output)
        })
    }
}

pub async fn images(client: &ProviderClient, call: &Call<'_>) -> Result<Value, AttemptError> {
    let mut body = Map::new();
    body.insert("model".into(), json!(call.binding.provider_model));
    for field in [
        "prompt",
        "negative_prompt",
        "width",
        "height",
        "steps",
        "n",
        "seed",
    ] {
        if let Some(value) = call.input.get(field) {
            body.insert(field.into(), value.clone());
        }
    }
    body.insert("response_format".into(), json!("url"));
    let response = client
        .post_json("/images/generations", &Value::Object(body))
        .await?;
    let data = response
        .get("data")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| AttemptError::BadResponse("image response without data".into()))?;
    let images: Vec<Value> = data
        .iter()
        .filter_map(|item| {
            item.get("url")
                .map(|url| json!({"url": url}))
                .or_else(|| item.get("b64_json").map(|b| json!({"b64_json": b})))
        })
        .collect();
    let first_url = images.iter().find_map(|i| i.get("url")).cloned();
    if images.is_empty() {
        return Err(AttemptError::BadResponse(
            "image response without url or b64_json".into(),
        ));
    }
    let mut output = json!({"images": images, "model": call.binding.provider_model});
    if let Some(url) = first_url {
        output["image_url"] = url;
    }
    Ok(output)
}
