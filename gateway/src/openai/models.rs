//! `GET /v1/models` and `GET /v1/models/{id}`: the catalog's chat models and the
//! embedding models, as OpenAI lists them.

use super::{CHAT_SERVICE, EMBEDDINGS_SERVICE};
use crate::app::{json, App, HttpResponse};
use crate::error::ApiError;
use hyper::StatusCode;
use serde::Serialize;

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<Model<'a>>,
}

#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    /// OpenAI's field; the catalog does not date its models.
    created: u64,
    owned_by: &'static str,
    /// The catalog service (and so the route) that runs it.
    service: &'static str,
}

fn all(app: &App) -> Vec<Model<'_>> {
    let catalog = app.scheduler.catalog();
    let model = |id, service| Model {
        id,
        object: "model",
        created: 0,
        owned_by: "gpubridge",
        service,
    };
    let chat = catalog
        .models_of(gpubridge_scheduler::ModelKind::Llm)
        .map(|m| model(m.id.as_str(), CHAT_SERVICE));
    let embeddings = catalog
        .service(EMBEDDINGS_SERVICE)
        .into_iter()
        .flat_map(|s| s.backends.iter())
        .map(|b| model(b.model.as_str(), EMBEDDINGS_SERVICE));
    let mut models: Vec<Model<'_>> = chat.chain(embeddings).collect();
    models.dedup_by(|a, b| a.id == b.id);
    models
}

pub fn list(app: &App) -> HttpResponse {
    json(
        StatusCode::OK,
        &ModelList {
            object: "list",
            data: all(app),
        },
    )
}

pub fn one(app: &App, id: &str) -> Result<HttpResponse, ApiError> {
    all(app)
        .into_iter()
        .find(|m| m.id == id)
        .map(|m| json(StatusCode::OK, &m))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("The model `{id}` does not exist"),
                "GET /v1/models lists the models served here.",
            )
            .with_field("model")
        })
}
