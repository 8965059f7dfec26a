//! Settings of the node-agent listener and of the fleets agents form.

use gpubridge_protocol::node::GpuTier;
use gpubridge_protocol::wire::DEFAULT_MAX_FRAME;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodesConfig {
    /// Listen for node agents (QUIC, UDP). Off: only hosted backends and `echo`.
    pub enabled: bool,
    /// UDP address agents connect to; `0.0.0.0:7443` to reach other hosts.
    pub addr: SocketAddr,
    /// How often agents send heartbeats.
    pub heartbeat_interval_ms: u64,
    /// Silence after which an agent is dead and its running jobs run elsewhere.
    pub dead_after_ms: u64,
    /// Largest frame accepted from an agent; outputs stream as several.
    pub max_frame_bytes: usize,
    /// Largest job output accepted from an agent.
    pub max_output_bytes: usize,
    /// What a second of a job costs on each tier, in micro-dollars: `cheap`
    /// routing compares it with hosted providers' prices.
    pub cost_per_second_micros: TierCosts,
    /// Also run an agent inside the daemon, over QUIC on loopback, serving `echo`
    /// (which then runs on it instead of built in): the whole agent path, one command.
    pub local_agent: bool,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TierCosts {
    pub rtx4090: u64,
    pub l4: u64,
    pub other: u64,
}

impl Default for TierCosts {
    fn default() -> Self {
        // Roughly what an owned or rented card costs per second of use.
        TierCosts {
            rtx4090: 110,
            l4: 200,
            other: 300,
        }
    }
}

impl TierCosts {
    pub fn of(&self, tier: GpuTier) -> u64 {
        match tier {
            GpuTier::Rtx4090 => self.rtx4090,
            GpuTier::L4 => self.l4,
            GpuTier::Other => self.other,
        }
    }
}

impl Default for NodesConfig {
    fn default() -> Self {
        NodesConfig {
            enabled: true,
            addr: SocketAddr::from(([127, 0, 0, 1], 7443)),
            heartbeat_interval_ms: 250,
            dead_after_ms: 1000,
            max_frame_bytes: DEFAULT_MAX_FRAME,
            max_output_bytes: 64 * 1024 * 1024,
            cost_per_second_micros: TierCosts::default(),
            local_agent: false,
        }
    }
}
