//! The OpenAI-compatible routes under `/v1`, for clients that already speak
//! OpenAI's API: chat completions (streamed as Server-Sent Events or whole),
//! embeddings, and the model list. Each request becomes an ordinary job through
//! the shared intake; only the shapes differ, errors included.
//!
//! Where to add what: a request body in `requests.rs`; a route's handler in its
//! own file; the SSE writing of a chat stream in `stream.rs`, and the body a
//! running job streams through in `live.rs`.

mod chat;
mod embeddings;
mod error;
mod live;
mod models;
mod requests;
mod stream;

pub use chat::handle as chat;
pub use embeddings::handle as embeddings;
pub use error::into_response as error_response;
pub use models::{list as models, one as model};
#[cfg(test)]
pub(crate) use requests::{ChatRequest, EmbeddingsRequest};

/// The catalog service each route runs.
pub const CHAT_SERVICE: &str = "llm-4090";
pub const EMBEDDINGS_SERVICE: &str = "embedding-l4";
