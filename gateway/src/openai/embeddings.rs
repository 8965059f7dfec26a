//! `POST /v1/embeddings`: one `embedding-l4` job, answered as OpenAI's list of
//! embeddings — as floats, or as base64 little-endian f32s, which OpenAI's SDKs
//! ask for by default.

use super::chat::{failed, job_id_header};
use super::requests::{EmbeddingsRequest, EncodingFormat};
use super::EMBEDDINGS_SERVICE;
use crate::app::{json, App, HttpResponse};
use crate::body;
use crate::error::ApiError;
use crate::handlers::{accepted_headers, arrive, x402_tagged};
use crate::intake::IntakeRequest;
use base64::Engine;
use gpubridge_billing::IdempotencyClaim;
use gpubridge_scheduler::{Origin, StreamTap};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

pub async fn handle(app: &Arc<App>, request: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let x402 = app.access.x402_version(request.headers());
    x402_tagged(x402, embed(app, request, x402).await)
}

async fn embed(
    app: &Arc<App>,
    request: Request<Incoming>,
    x402: Option<u8>,
) -> Result<HttpResponse, ApiError> {
    let arrival = arrive(app, request).await?;
    let embeddings: EmbeddingsRequest = body::parse(&arrival.bytes)?;
    let input = embeddings.input()?;
    let idempotency = arrival
        .idempotency_key
        .map(|key| IdempotencyClaim::new(key, "/v1/embeddings", &input));
    // The job stops if its client leaves before the answer.
    let (tap, _watching) = StreamTap::watch_only();
    let request = IntakeRequest {
        service: EMBEDDINGS_SERVICE.into(),
        input,
        priority: arrival.priority,
        origin: Origin::Openai,
        webhook_url: None,
        idempotency,
        stream: Some(tap),
        clock: arrival.clock,
        id_shown_late: true,
    };
    let mut accepted = app.intake(arrival.caller, request).await?;
    if let Some(user) = &embeddings.user {
        tracing::info!(job_id = %accepted.record.id, end_user = %user, "embeddings");
    }
    let (driver, replay) = (accepted.driver.take(), accepted.replay_clock.take());
    let record = super::chat::finished(app, &accepted.record, driver, replay).await?;
    let output = super::stream::output_of(&record);
    let format = embeddings.encoding_format.unwrap_or_default();
    let body = list(&output, &embeddings.model, format).ok_or_else(|| failed(&record))?;
    let mut response = json(StatusCode::OK, &body);
    job_id_header(&mut response, &accepted.record.id);
    accepted_headers(app, x402, &accepted, &mut response);
    Ok(response)
}

/// OpenAI's `{object: "list", data: [...], model, usage}` from the job's output.
fn list(output: &Value, model: &str, format: EncodingFormat) -> Option<Value> {
    let vectors: Vec<&Value> = match output.get("embeddings") {
        Some(many) => many.as_array()?.iter().collect(),
        None => vec![output.get("embedding")?],
    };
    let mut data = Vec::with_capacity(vectors.len());
    for (index, vector) in vectors.into_iter().enumerate() {
        let numbers = vector.as_array()?;
        let embedding = match format {
            EncodingFormat::Float => vector.clone(),
            EncodingFormat::Base64 => json!(base64_f32(numbers)?),
        };
        data.push(json!({"object": "embedding", "index": index, "embedding": embedding}));
    }
    let mut body = json!({"object": "list", "data": data, "model": model});
    if let Some(usage) = output.get("usage").filter(|u| u.is_object()) {
        body["usage"] = usage.clone();
    }
    Some(body)
}

fn base64_f32(numbers: &[Value]) -> Option<String> {
    let mut bytes = Vec::with_capacity(numbers.len() * 4);
    for number in numbers {
        bytes.extend_from_slice(&(number.as_f64()? as f32).to_le_bytes());
    }
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_become_openais_list_as_floats_or_base64() {
        let one = json!({"embedding": [0.5, -1.0], "dimensions": 2, "usage": {"prompt_tokens": 2, "total_tokens": 2}});
        let body = list(&one, "m", EncodingFormat::Float).unwrap();
        assert_eq!(
            body["data"][0],
            json!({"object": "embedding", "index": 0, "embedding": [0.5, -1.0]})
        );
        assert_eq!(body["usage"]["total_tokens"], 2);
        let many = json!({"embeddings": [[1.0], [2.0]]});
        let body = list(&many, "m", EncodingFormat::Base64).unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(body["data"][1]["embedding"].as_str().unwrap())
            .unwrap();
        assert_eq!(decoded, 2.0f32.to_le_bytes());
        assert!(list(&json!({"text": "no"}), "m", EncodingFormat::Float).is_none());
    }
}
