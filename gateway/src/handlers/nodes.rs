//! `/admin/nodes`: the operator's view of connected GPU agents — their GPUs,
//! services, free slots, health and recent latency — and draining one.

use crate::app::{json, App, HttpResponse};
use crate::error::ApiError;
use gpubridge_scheduler::nodes::Session;
use gpubridge_scheduler::now_ms;
use hyper::StatusCode;
use serde_json::{json, Value};

pub fn list(app: &App) -> HttpResponse {
    let pool = app.scheduler.nodes();
    let now = now_ms();
    let nodes: Vec<Value> = pool
        .sessions()
        .iter()
        .map(|s| node_json(s, now, pool.cfg.dead_after_ms))
        .collect();
    json(
        StatusCode::OK,
        &json!({
            "enabled": pool.cfg.enabled,
            "count": nodes.len(),
            "nodes": nodes,
        }),
    )
}

pub fn drain(app: &App, node_id: &str) -> Result<HttpResponse, ApiError> {
    if app.scheduler.nodes().drain(node_id) {
        Ok(json(
            StatusCode::ACCEPTED,
            &json!({"node_id": node_id, "status": "draining"}),
        ))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("No connected node {node_id:?}"),
            "GET /admin/nodes lists the connected nodes.",
        ))
    }
}

fn node_json(session: &Session, now: u64, dead_after_ms: u64) -> Value {
    let telemetry = session.telemetry.lock().clone();
    let gpus: Vec<Value> = session
        .gpus
        .iter()
        .map(|gpu| {
            let live = telemetry.iter().find(|t| t.index == gpu.index);
            json!({
                "index": gpu.index,
                "model": gpu.model,
                "tier": gpu.tier.name(),
                "memory_mib": gpu.memory_mib,
                "utilization_percent": live.map(|t| t.utilization_percent),
                "memory_used_mib": live.map(|t| t.memory_used_mib),
                "temperature_celsius": live.and_then(|t| t.temperature_celsius),
            })
        })
        .collect();
    let mut services: Vec<Value> = session
        .services
        .iter()
        .map(|(name, slots)| {
            json!({
                "service": name,
                "slots": slots.slots,
                "free_slots": slots.free(),
                "models": slots.models,
            })
        })
        .collect();
    services.sort_by(|a, b| a["service"].as_str().cmp(&b["service"].as_str()));
    let silent_ms = now.saturating_sub(
        session
            .last_heartbeat_ms
            .load(std::sync::atomic::Ordering::Acquire),
    );
    json!({
        "node_id": session.node_id,
        "session": session.id,
        "remote": session.remote.to_string(),
        "agent_version": session.agent_version,
        "tier": session.tier.name(),
        "gpus": gpus,
        "services": services,
        "running": session.running(),
        "draining": session.is_draining(),
        "healthy": silent_ms <= dead_after_ms && !session.is_draining(),
        "last_heartbeat_ms_ago": silent_ms,
        "connected_seconds": now.saturating_sub(session.connected_ms) / 1000,
        "latency_ms": session.latency_ms.get(),
        "rtt_ms": session.connection.rtt().as_secs_f64() * 1000.0,
        "completed": session.completed.load(std::sync::atomic::Ordering::Relaxed),
        "failed": session.failed.load(std::sync::atomic::Ordering::Relaxed),
    })
}
