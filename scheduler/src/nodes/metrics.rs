//! Prometheus gauges of the connected agents, read off the sessions at scrape
//! time only; a node that left drops out of every series.

use super::session::Session;
use prometheus::{GaugeVec, IntGauge, IntGaugeVec, Opts, Registry};
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub struct NodeMetrics {
    connected: IntGauge,
    free_slots: IntGaugeVec,
    running: IntGaugeVec,
    heartbeat_age: GaugeVec,
    gpu_utilization: IntGaugeVec,
    gpu_memory_used: IntGaugeVec,
    gpu_temperature: IntGaugeVec,
}

impl NodeMetrics {
    pub fn register(registry: &Registry) -> Result<NodeMetrics, prometheus::Error> {
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let gauge = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(gauge.clone()))?;
            Ok::<_, prometheus::Error>(gauge)
        };
        let connected = IntGauge::new("gpubridge_nodes_connected", "Node agents connected")?;
        registry.register(Box::new(connected.clone()))?;
        let heartbeat_age = GaugeVec::new(
            Opts::new(
                "gpubridge_node_heartbeat_age_seconds",
                "Time since each agent's last heartbeat",
            ),
            &["node"],
        )?;
        registry.register(Box::new(heartbeat_age.clone()))?;
        Ok(NodeMetrics {
            connected,
            free_slots: gauge_vec(
                "gpubridge_node_free_slots",
                "Free job slots per agent and service",
                &["node", "service"],
            )?,
            running: gauge_vec(
                "gpubridge_node_running_jobs",
                "Jobs running on each agent",
                &["node"],
            )?,
            heartbeat_age,
            gpu_utilization: gauge_vec(
                "gpubridge_node_gpu_utilization_percent",
                "GPU utilisation reported by each agent (NVML)",
                &["node", "gpu"],
            )?,
            gpu_memory_used: gauge_vec(
                "gpubridge_node_gpu_memory_used_mib",
                "GPU memory in use reported by each agent (NVML)",
                &["node", "gpu"],
            )?,
            gpu_temperature: gauge_vec(
                "gpubridge_node_gpu_temperature_celsius",
                "GPU temperature reported by each agent (NVML)",
                &["node", "gpu"],
            )?,
        })
    }

    pub fn refresh(&self, sessions: &[Arc<Session>], now_ms: u64) {
        self.connected.set(sessions.len() as i64);
        for vec in [
            &self.free_slots,
            &self.running,
            &self.gpu_utilization,
            &self.gpu_memory_used,
            &self.gpu_temperature,
        ] {
            vec.reset();
        }
        self.heartbeat_age.reset();
        for session in sessions {
            let node = session.node_id.as_str();
            for (service, slots) in &session.services {
                self.free_slots
                    .with_label_values(&[node, service])
                    .set(slots.free() as i64);
            }
            self.running
                .with_label_values(&[node])
                .set(session.running() as i64);
            let last = session.last_heartbeat_ms.load(Ordering::Acquire);
            self.heartbeat_age
                .with_label_values(&[node])
                .set(now_ms.saturating_sub(last) as f64 / 1000.0);
            for gpu in session.telemetry.lock().iter() {
                let labels = [node, &gpu.index.to_string()];
                self.gpu_utilization
                    .with_label_values(&labels)
                    .set(gpu.utilization_percent as i64);
                self.gpu_memory_used
                    .with_label_values(&labels)
                    .set(gpu.memory_used_mib as i64);
                if let Some(celsius) = gpu.temperature_celsius {
                    self.gpu_temperature
                        .with_label_values(&labels)
                        .set(celsius as i64);
                }
            }
        }
    }
}
