//! Together's image generation (`POST /images/generations`).

use super::{AttemptError, Call, ProviderClient};
use serde_json::{json, Map, Value};

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
