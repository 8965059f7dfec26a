//! `/admin/nodes`: the operator's view of connected GPU agents — their GPUs,
//! services, free slots, health and recent latency — and draining one.

use crate::app::{json, App, HttpResponse};
use crate::error::ApiError;
use crate::views::Acknowledged;
use gpubridge_scheduler::nodes::Session;
use gpubridge_scheduler::now_ms;
use hyper::StatusCode;
use serde::Serialize;
use std::sync::atomic::Ordering;

#[derive(Serialize)]
struct Nodes {
    enabled: bool,
    count: usize,
    nodes: Vec<NodeView>,
}

#[derive(Serialize)]
struct GpuView {
    index: u32,
    model: String,
    tier: &'static str,
    memory_mib: u64,
    utilization_percent: Option<u8>,
    memory_used_mib: Option<u64>,
    temperature_celsius: Option<u16>,
}

#[derive(Serialize)]
struct ServiceView {
    service: String,
    slots: u32,
    free_slots: u32,
    models: Vec<String>,
}

#[derive(Serialize)]
struct NodeView {
    node_id: String,
    session: u64,
    remote: String,
    agent_version: String,
    tier: &'static str,
    gpus: Vec<GpuView>,
    services: Vec<ServiceView>,
    running: u32,
    draining: bool,
    healthy: bool,
    last_heartbeat_ms_ago: u64,
    connected_seconds: u64,
    latency_ms: Option<f64>,
    rtt_ms: f64,
    completed: u64,
    failed: u64,
}

pub fn list(app: &App) -> HttpResponse {
    let pool = app.scheduler.nodes();
    let now = now_ms();
    let nodes: Vec<NodeView> = pool
        .sessions()
        .iter()
        .map(|s| node_view(s, now, pool.cfg.dead_after_ms))
        .collect();
    let body = Nodes {
        enabled: pool.cfg.enabled,
        count: nodes.len(),
        nodes,
    };
    json(StatusCode::OK, &body)
}

#[derive(Serialize)]
struct Draining<'a> {
    node_id: &'a str,
    #[serde(flatten)]
    status: Acknowledged<'a>,
}

pub fn drain(app: &App, node_id: &str) -> Result<HttpResponse, ApiError> {
    if !app.scheduler.nodes().drain(node_id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("No connected node {node_id:?}"),
            "GET /admin/nodes lists the connected nodes.",
        ));
    }
    let body = Draining {
        node_id,
        status: Acknowledged {
            status: "draining",
            message: "No new jobs go to this node; running ones finish, then it leaves.",
        },
    };
    Ok(json(StatusCode::ACCEPTED, &body))
}

fn node_view(session: &Session, now: u64, dead_after_ms: u64) -> NodeView {
    let telemetry = session.telemetry.lock().clone();
    let gpus = session
        .gpus
        .iter()
        .map(|gpu| {
            let live = telemetry.iter().find(|t| t.index == gpu.index);
            GpuView {
                index: gpu.index,
                model: gpu.model.clone(),
                tier: gpu.tier.name(),
                memory_mib: gpu.memory_mib,
                utilization_percent: live.map(|t| t.utilization_percent),
                memory_used_mib: live.map(|t| t.memory_used_mib),
                temperature_celsius: live.and_then(|t| t.temperature_celsius),
            }
        })
        .collect();
    let mut services: Vec<ServiceView> = session
        .services
        .iter()
        .map(|(name, slots)| ServiceView {
            service: name.clone(),
            slots: slots.slots,
            free_slots: slots.free(),
            models: slots.models.clone(),
        })
        .collect();
    services.sort_by(|a, b| a.service.cmp(&b.service));
    let silent_ms = now.saturating_sub(session.last_heartbeat_ms.load(Ordering::Acquire));
    NodeView {
        node_id: session.node_id.clone(),
        session: session.id,
        remote: session.remote.to_string(),
        agent_version: session.agent_version.clone(),
        tier: session.tier.name(),
        gpus,
        services,
        running: session.running(),
        draining: session.is_draining(),
        healthy: silent_ms <= dead_after_ms && !session.is_draining(),
        last_heartbeat_ms_ago: silent_ms,
        connected_seconds: now.saturating_sub(session.connected_ms) / 1000,
        latency_ms: session.latency_ms.get(),
        rtt_ms: session.connection.rtt().as_secs_f64() * 1000.0,
        completed: session.completed.load(Ordering::Relaxed),
        failed: session.failed.load(Ordering::Relaxed),
    }
}
