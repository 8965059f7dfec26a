//! The five tools as MCP lists them, their input schemas made from the catalog
//! (the service keys as an enum, each explained), and their arguments as types.

use crate::app::App;
use rmcp::model::{Tool, ToolAnnotations};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub const RUN: &str = "gpu_run";
pub const CATALOG: &str = "gpu_catalog";
pub const STATUS: &str = "gpu_status";
pub const BALANCE: &str = "gpu_balance";
pub const ESTIMATE: &str = "gpu_estimate";

/// The longest `gpu_run` waits for a job's output before answering with its id.
pub const MAX_WAIT_SECONDS: u64 = 60;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunArgs {
    pub service: String,
    pub input: Map<String, Value>,
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub wait_seconds: Option<u64>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogArgs {
    #[serde(default)]
    pub service: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusArgs {
    pub job_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceArgs {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimateArgs {
    pub service: String,
    #[serde(default)]
    pub seconds: Option<f64>,
}

pub fn all(app: &App) -> Vec<Tool> {
    let services = service_enum(app);
    vec![
        tool(RUN, RUN_TEXT, run_schema(&services), false),
        tool(
            CATALOG,
            "The live catalog: every service with its input JSON Schema, prices, models and live backends, and how to pay. Give `service` for one entry.",
            object(json!({"service": services.clone()}), &[]),
            true,
        ),
        tool(
            STATUS,
            "A job's status; with the key that created it, its output or error, backend, attempts and charge.",
            object(json!({"job_id": {"type": "string", "description": "The job_id gpu_run returned."}}), &["job_id"]),
            true,
        ),
        tool(
            BALANCE,
            "The account's balance, today's spend against its daily limit, and its volume discount.",
            object(json!({}), &[]),
            true,
        ),
        tool(
            ESTIMATE,
            "The upfront price of a job: the service's minimum or its price per second over the expected (or given) duration.",
            object(
                json!({"service": services, "seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400, "description": "Expected run time; the service's learned duration when omitted."}}),
                &["service"],
            ),
            true,
        ),
    ]
}

const RUN_TEXT: &str = "Run an AI job on a GPU backend, paid from the account's credits. `input` follows the service's \
input schema (gpu_catalog shows each). Waits up to wait_seconds (default 20, at most 60) and returns the finished job \
with its output; a job still running returns its job_id for gpu_status.";

fn tool(name: &'static str, description: &'static str, schema: Value, read_only: bool) -> Tool {
    let schema = match schema {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let mut tool = Tool::new(name, description, Arc::new(schema));
    let mut annotations = ToolAnnotations::default();
    annotations.read_only_hint = Some(read_only);
    annotations.open_world_hint = Some(!read_only);
    tool.annotations = Some(annotations);
    tool
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// The services as an enum, each explained in the description.
fn service_enum(app: &App) -> Value {
    let services = app.scheduler.catalog().services();
    let keys: Vec<&str> = services.iter().map(|s| s.key.as_str()).collect();
    let explained: Vec<String> = services
        .iter()
        .map(|s| {
            format!(
                "{}: {} — {} (from ${:.4}, ${:.4}/s)",
                s.key,
                s.name,
                s.description,
                s.from_price().as_dollars(),
                s.price_per_second().as_dollars()
            )
        })
        .collect();
    json!({"type": "string", "enum": keys, "description": format!("The service. One of:\n{}", explained.join("\n"))})
}

fn run_schema(services: &Value) -> Value {
    object(
        json!({
            "service": services,
            "input": {"type": "object", "description": "The service's input, as its input_schema in gpu_catalog says; for llm-4090 e.g. {\"prompt\": \"Explain quantum computing\", \"max_tokens\": 256}."},
            "priority": {"type": "string", "enum": ["fast", "cheap"], "description": "fast (default): the quickest backend; cheap: the lowest price."},
            "wait_seconds": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_SECONDS, "description": "How long to wait for the output before returning the job_id (default 20)."},
            "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 255, "description": "As HTTP's Idempotency-Key: a retried call with the same key and arguments returns the first call's job, charged once (keys last 24 h); other arguments under the same key are refused."},
        }),
        &["service", "input"],
    )
}
