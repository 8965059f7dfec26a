//! MCP at `/mcp`: rmcp's Streamable HTTP server (stateless, so any daemon of a
//! fleet answers any request; protocol 2026-07-28, negotiating the older
//! revisions clients send) with five tools over the same intake, views and
//! keys as the HTTP routes.
//!
//! Where to add what: a tool's schema and arguments in `tools.rs`, its call in
//! `calls.rs`; the rmcp glue (server info, listing, dispatch) is `server.rs`.

mod calls;
mod server;
mod tools;

use crate::app::{App, HttpResponse};
use crate::error::ApiError;
use crate::outgoing::Outgoing;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Request, StatusCode};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::sync::{Arc, OnceLock};
use tower_service::Service as _;

pub type McpService = StreamableHttpService<server::GpuTools, NeverSessionManager>;

/// The service, made on the first request (its tools hold the app weakly).
#[derive(Default)]
pub struct Mcp(OnceLock<McpService>);

pub async fn handle(app: &Arc<App>, request: Request<Incoming>) -> HttpResponse {
    let mut service = app.mcp.0.get_or_init(|| build(app)).clone();
    let sent_json = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // Read here, within the route's size and time rules, as every other
    // route's body is: rmcp would wait for a trickling body as long as it took.
    let (parts, body) = request.into_parts();
    let body = match crate::body::read_limited(body, &parts).await {
        Ok(bytes) => Full::new(bytes),
        Err(refused) => return refused.into_response(),
    };
    let response = match service.call(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/event-stream"));
    if response.status().is_success() || is_json {
        return response.map(Outgoing::Boxed);
    }
    transport_error(response, sent_json).await
}

/// rmcp's own refusals (unreadable body, wrong headers, a foreign Host) are
/// plain text: they get the contract's envelope, and a body that is not JSON
/// is a 400 however rmcp classed it.
async fn transport_error(response: rmcp_response::Response, sent_json: bool) -> HttpResponse {
    let mut status = response.status();
    let text = match response.into_body().collect().await {
        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        Err(never) => match never {},
    };
    if status == StatusCode::UNSUPPORTED_MEDIA_TYPE && sent_json {
        status = StatusCode::BAD_REQUEST;
    }
    ApiError::new(
        status,
        format!("MCP request refused: {}", text.trim()),
        "POST JSON-RPC 2.0 messages with Content-Type: application/json and Accept: application/json, text/event-stream, as MCP's Streamable HTTP transport defines.",
    )
    .into_response()
}

/// The response type rmcp's service answers with.
mod rmcp_response {
    pub type Response = hyper::Response<
        http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>,
    >;
}

fn build(app: &Arc<App>) -> McpService {
    let mut config = StreamableHttpServerConfig::default();
    // Every request stands alone: no session to lose on a restart or another daemon.
    config.legacy_session_mode = false;
    config.json_response = true;
    config.max_request_body_bytes = app.http.max_body_bytes;
    // DNS-rebinding protection: loopback, and the host clients are told to use.
    let public_host = app
        .http
        .public_url
        .as_deref()
        .and_then(|url| url::Url::parse(url).ok())
        .and_then(|url| url.host_str().map(str::to_string));
    config.allowed_hosts.extend(public_host);
    let tools = server::GpuTools::new(Arc::downgrade(app));
    StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    )
}
