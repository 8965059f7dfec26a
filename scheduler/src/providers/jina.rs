//! Jina: embeddings through its OpenAI-compatible API, and its rerank wire
//! format (`POST /rerank`), which Together's rerank also speaks.

use super::client::ProviderClient;
use super::openai;
use crate::catalog::Operation;
use crate::executor::{AttemptError, BoxFuture, Call, Executed, Executor};
use serde_json::{json, Value};

pub struct Jina(pub ProviderClient);

impl Executor for Jina {
    fn execute<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Executed, AttemptError>> {
        Box::pin(async move {
            let output = match call.binding.operation {
                Operation::Rerank => rerank(&self.0, call).await,
                _ => openai::serve(&self.0, call).await,
            };
            output.map(Executed::output)
        })
    }
}

pub async fn rerank(client: &ProviderClient, call: &Call<'_>) -> Result<Value, AttemptError> {
    let documents = call
        .input
        .get("documents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let top_n = call
        .input
        .get("top_n")
        .and_then(Value::as_u64)
        .unwrap_or(documents.len() as u64)
        .min(documents.len() as u64);
    let body = json!({
        "model": call.binding.provider_model,
        "query": call.input.get("query").cloned().unwrap_or_default(),
        "documents": documents,
        "top_n": top_n,
        "return_documents": false,
    });
    let response = client.post_json("/rerank", &body).await?;
    let results = response
        .get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| AttemptError::BadResponse("rerank response without results".into()))?;
    let mut out = Vec::with_capacity(results.len());
    for result in results {
        let index = result
            .get("index")
            .and_then(Value::as_u64)
            .filter(|&i| (i as usize) < documents.len())
            .ok_or_else(|| AttemptError::BadResponse("rerank result with a bad index".into()))?;
        let score = result
            .get("relevance_score")
            .and_then(Value::as_f64)
            .ok_or_else(|| AttemptError::BadResponse("rerank result without a score".into()))?;
        out.push(json!({"index": index, "relevance_score": score, "document": documents[index as usize]}));
    }
    Ok(json!({"results": out, "model": call.binding.provider_model}))
}
