//! JSON shapes of jobs as clients see them. Money leaves as dollars here.

use gpubridge_scheduler::JobRecord;
use serde_json::{json, Map, Value};

pub fn status_url(id: &str) -> String {
    format!("/status/{id}")
}

fn output(record: &JobRecord) -> Value {
    record
        .output
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null)
}

/// `GET /status/:id`. `full` includes output and errors; otherwise status, timing and hints.
pub fn status(record: &JobRecord, full: bool) -> Value {
    let mut body = Map::new();
    body.insert("id".into(), json!(record.id));
    body.insert("status".into(), json!(record.status.as_str()));
    body.insert("service".into(), json!(record.service));
    if let Some(seconds) = record.execution_seconds() {
        body.insert("execution_time_seconds".into(), json!(seconds));
    }
    body.insert("created_at_ms".into(), json!(record.created_ms));
    if let Some(ms) = record.started_ms {
        body.insert("started_at_ms".into(), json!(ms));
    }
    if let Some(ms) = record.finished_ms {
        body.insert("finished_at_ms".into(), json!(ms));
    }
    body.insert(
        "estimated_cost_usd".into(),
        json!(record.estimated_cost.as_dollars()),
    );
    if !full {
        body.insert(
            "hint".into(),
            json!("Pass the API key that created this job to see its output."),
        );
        return Value::Object(body);
    }
    if let Some(model) = &record.model {
        body.insert("model".into(), json!(model));
    }
    if record.status.is_terminal() {
        if let Some(error) = &record.error {
            body.insert("error".into(), json!(error));
        } else {
            body.insert("output".into(), output(record));
        }
    }
    if let Some(backend) = &record.backend {
        body.insert("backend".into(), json!(backend));
    }
    let attempts: Vec<Value> = record
        .attempts
        .iter()
        .map(|a| json!({"backend": a.backend, "duration_ms": a.duration_ms, "error": a.error}))
        .collect();
    body.insert("attempts".into(), Value::Array(attempts));
    if record.recoveries > 0 {
        body.insert("recoveries".into(), json!(record.recoveries));
    }
    if let Some(url) = &record.webhook_url {
        body.insert("webhook_url".into(), json!(url));
    }
    insert_settlement(&mut body, record);
    Value::Object(body)
}

/// What a billed job cost, once settled: the charge and the refund of the rest.
fn insert_settlement(body: &mut Map<String, Value>, record: &JobRecord) {
    let settled = record.billing.as_ref().and_then(|b| b.settled);
    body.insert(
        "charged_usd".into(),
        settled.map_or(Value::Null, |s| json!(s.charged.as_dollars())),
    );
    body.insert(
        "refunded_usd".into(),
        settled.map_or(Value::Null, |s| json!(s.refunded.as_dollars())),
    );
}

/// One row of `GET /account/jobs`.
pub fn history_item(record: &JobRecord) -> Value {
    let mut body = Map::new();
    body.insert("job_id".into(), json!(record.id));
    body.insert("service".into(), json!(record.service));
    if let Some(model) = &record.model {
        body.insert("model".into(), json!(model));
    }
    body.insert("status".into(), json!(record.status.as_str()));
    body.insert("created_at_ms".into(), json!(record.created_ms));
    body.insert(
        "estimated_cost_usd".into(),
        json!(record.estimated_cost.as_dollars()),
    );
    insert_settlement(&mut body, record);
    body.insert(
        "execution_time_seconds".into(),
        record.execution_seconds().map_or(Value::Null, |s| json!(s)),
    );
    if let Some(error) = &record.error {
        body.insert("error".into(), json!(error));
    }
    Value::Object(body)
}

/// `POST /inference` answer: inline output when done, else where to poll.
pub fn inference(record: &JobRecord) -> Value {
    let mut body = json!({
        "job_id": record.id,
        "status": record.status.as_str(),
        "status_url": status_url(&record.id),
        "estimated_cost_usd": record.estimated_cost.as_dollars(),
    });
    if record.status.is_terminal() && record.error.is_none() {
        body["output"] = output(record);
    }
    if let Some(seconds) = record.execution_seconds() {
        body["execution_time_seconds"] = json!(seconds);
    }
    if let Some(model) = &record.model {
        body["model"] = json!(model);
    }
    if let Some(backend) = &record.backend {
        body["backend"] = json!(backend);
    }
    body
}
