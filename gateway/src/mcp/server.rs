//! The rmcp side: who we are, which tools there are, and each call dispatched
//! with the HTTP request's headers (its `Authorization`). Every failure of a
//! call is a tool result carrying the contract's error envelope, never a
//! protocol or transport error.

use super::calls;
use super::tools;
use crate::access::Credentials;
use crate::app::App;
use crate::error::ApiError;
use gpubridge_scheduler::BackendClock;
use hyper::http::request::Parts;
use hyper::{HeaderMap, StatusCode};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::Value;
use std::sync::{Arc, Weak};

#[derive(Clone)]
pub struct GpuTools {
    app: Weak<App>,
}

impl GpuTools {
    pub fn new(app: Weak<App>) -> GpuTools {
        GpuTools { app }
    }

    fn app(&self) -> Result<Arc<App>, ApiError> {
        self.app.upgrade().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The daemon is shutting down",
                "Retry in a few seconds.",
            )
        })
    }
}

const INSTRUCTIONS: &str = "GPU-Bridge runs AI jobs (LLMs, embeddings, images, speech, OCR, …) on GPU backends. \
gpu_catalog lists services with their input schemas and prices; gpu_estimate prices a job; \
gpu_run runs one (waiting up to wait_seconds for its output); gpu_status reads a job; gpu_balance shows credits. \
gpu_run, gpu_status and gpu_balance need the account's API key as `Authorization: Bearer gpub_…` on the MCP connection.";

impl ServerHandler for GpuTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("gpubridge", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let listed = match self.app() {
            Ok(app) => tools::all(&app),
            Err(_) => Vec::new(),
        };
        Ok(ListToolsResult::with_all_items(listed))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let parts = context.extensions.get::<Parts>();
        let no_headers = HeaderMap::new();
        let credentials = match parts {
            Some(parts) => Credentials::from_parts(&parts.headers, &parts.extensions),
            None => Credentials::headers(&no_headers),
        };
        let clock = parts.and_then(|p| p.extensions.get::<BackendClock>().cloned());
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        let outcome = match self.app() {
            Ok(app) => calls::call(&app, &request.name, arguments, credentials, clock).await,
            Err(e) => Err(e),
        };
        Ok(result(outcome).into())
    }
}

/// A call's answer as MCP content: the JSON as text (and as structured content),
/// or the envelope of its error with `isError`.
fn result(outcome: Result<Value, ApiError>) -> CallToolResult {
    match outcome {
        Ok(value) => {
            let mut result = CallToolResult::success(vec![ContentBlock::text(value.to_string())]);
            result.structured_content = Some(value);
            result
        }
        Err(error) => CallToolResult::error(vec![ContentBlock::text(envelope(&error))]),
    }
}

/// The contract's envelope, with the HTTP status the same failure would have had.
pub(super) fn envelope(error: &ApiError) -> String {
    let mut body = serde_json::to_value(&**error).unwrap_or(Value::Null);
    if let Some(fields) = body.as_object_mut() {
        fields.insert("status".into(), error.status.as_u16().into());
    }
    body.to_string()
}
