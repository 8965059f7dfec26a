//! Messages between the scheduler and a node agent. One long-lived control
//! stream per agent carries registration, heartbeats and drain; each job gets its
//! own stream, opened by the scheduler with an [`Assignment`] and answered with
//! [`JobEvent`]s. Inputs and outputs travel as JSON text: bincode does not carry
//! self-describing values.

use serde::{Deserialize, Serialize};

/// The ALPN both sides require: a QUIC peer speaking anything else is not an agent.
pub const ALPN: &[u8] = b"gpubridge-node/1";

/// Application close codes of a scheduler ↔ agent connection; the close reason
/// carries the human-readable why.
pub mod close {
    /// Registration refused: bad token, unknown service, wrong first message.
    pub const REFUSED: u32 = 1;
    /// The peer sent a frame that does not decode, is too large, or is out of place.
    pub const PROTOCOL: u32 = 2;
    /// No heartbeat within the dead-after window.
    pub const DEAD: u32 = 3;
    /// A new session of the same node id took over.
    pub const REPLACED: u32 = 4;
    /// The agent drained and left.
    pub const DRAINED: u32 = 5;
    /// The scheduler is shutting down.
    pub const SHUTDOWN: u32 = 6;
    /// Stream code: the scheduler cancelled this job.
    pub const CANCELLED: u32 = 7;
}

/// GPU tiers the router prices and routes by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuTier {
    Rtx4090,
    L4,
    Other,
}

impl GpuTier {
    pub const ALL: [GpuTier; 3] = [GpuTier::Rtx4090, GpuTier::L4, GpuTier::Other];

    pub fn name(self) -> &'static str {
        match self {
            GpuTier::Rtx4090 => "rtx4090",
            GpuTier::L4 => "l4",
            GpuTier::Other => "other",
        }
    }

    pub fn from_name(name: &str) -> Option<GpuTier> {
        GpuTier::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The tier of a set of GPUs: the first one's, `Other` without any.
    pub fn of(gpus: &[Gpu]) -> GpuTier {
        gpus.first().map_or(GpuTier::Other, |g| g.tier)
    }

    /// The tier of a GPU by its marketing name, as NVML reports it.
    pub fn from_model(model: &str) -> GpuTier {
        let model = model.to_ascii_lowercase();
        if model.contains("4090") {
            GpuTier::Rtx4090
        } else if model
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w == "l4")
        {
            GpuTier::L4
        } else {
            GpuTier::Other
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    pub index: u32,
    pub model: String,
    pub memory_mib: u64,
    pub tier: GpuTier,
}

/// A service an agent serves and how many of its jobs may run at once (or are free).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSlots {
    pub service: String,
    pub slots: u32,
    /// Catalog model ids it serves, for services with a model list; empty: any.
    pub models: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Stable across restarts: a reconnecting agent replaces its old session.
    pub node_id: String,
    pub agent_version: String,
    /// The join token from `gpubridge token create`.
    pub join_token: String,
    pub gpus: Vec<Gpu>,
    /// The tier it is priced and routed as: its GPUs', unless the operator says.
    pub tier: GpuTier,
    pub services: Vec<ServiceSlots>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuTelemetry {
    pub index: u32,
    pub utilization_percent: u8,
    pub memory_used_mib: u64,
    /// `None` where no driver reports it.
    pub temperature_celsius: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub seq: u64,
    pub free_slots: Vec<ServiceSlots>,
    pub gpus: Vec<GpuTelemetry>,
}

/// Control stream, agent → scheduler.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AgentMessage {
    Register(Registration),
    Heartbeat(Heartbeat),
    /// No new jobs please; the agent leaves once its running jobs finish.
    Draining,
}

/// Control stream, scheduler → agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SchedulerMessage {
    Welcome {
        session: u64,
        heartbeat_interval_ms: u64,
        /// Silence longer than this and the scheduler takes the agent's jobs back.
        dead_after_ms: u64,
    },
    /// Registration refused (bad token, unknown service…); the stream closes.
    Refused { reason: String },
    /// Finish running jobs, accept no more, then disconnect.
    Drain,
}

/// Job stream, scheduler → agent: its first and only frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub job_id: String,
    pub service: String,
    /// The catalog model asked for, for services with a model list.
    pub model: Option<String>,
    /// The validated input, as JSON text.
    pub input_json: String,
    /// Wall-clock deadline, milliseconds since the Unix epoch.
    pub deadline_unix_ms: u64,
    /// A client reads the output as it is made: send `Delta`s when the runtime
    /// can (a chat completion), before the output itself.
    pub stream: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    /// The runtime refused the input: another backend would too.
    Rejected,
    /// The runtime crashed or answered nonsense.
    Runtime,
    /// The deadline passed on the agent.
    Timeout,
    /// The agent cannot run it now (draining, no slot, model server down).
    Unavailable,
}

/// Job stream, agent → scheduler. The output arrives as `OutputChunk`s (JSON text,
/// split below the frame limit) followed by `Completed`. A streamed job first
/// sends each piece as a `Delta` as the runtime makes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobEvent {
    Progress {
        permille: u16,
        message: String,
    },
    OutputChunk(String),
    Completed {
        execution_us: u64,
    },
    Failed {
        kind: FailureKind,
        message: String,
    },
    /// One `chat.completion.chunk`, as JSON text.
    Delta(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, encode, DEFAULT_MAX_FRAME};

    fn round_trip<T>(message: T)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let frame = encode(&message, DEFAULT_MAX_FRAME).unwrap();
        let (back, used) = decode::<T>(&frame, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert_eq!((back, used), (message, frame.len()));
    }

    #[test]
    fn every_message_round_trips_through_a_frame() {
        round_trip(AgentMessage::Register(Registration {
            node_id: "gpu-host-1".into(),
            agent_version: "0.1.0".into(),
            join_token: "gbj_secret".into(),
            gpus: vec![Gpu {
                index: 0,
                model: "NVIDIA GeForce RTX 4090".into(),
                memory_mib: 24_564,
                tier: GpuTier::Rtx4090,
            }],
            tier: GpuTier::Rtx4090,
            services: vec![ServiceSlots {
                service: "llm-4090".into(),
                slots: 8,
                models: vec!["meta-llama/Llama-3.3-70B-Instruct".into()],
            }],
        }));
        round_trip(AgentMessage::Heartbeat(Heartbeat {
            seq: 9,
            free_slots: vec![],
            gpus: vec![GpuTelemetry {
                index: 0,
                utilization_percent: 97,
                memory_used_mib: 20_000,
                temperature_celsius: None,
            }],
        }));
        round_trip(AgentMessage::Draining);
        round_trip(SchedulerMessage::Welcome {
            session: 3,
            heartbeat_interval_ms: 250,
            dead_after_ms: 1_000,
        });
        round_trip(SchedulerMessage::Refused {
            reason: "bad join token".into(),
        });
        round_trip(Assignment {
            job_id: "j".into(),
            service: "echo".into(),
            model: None,
            input_json: r#"{"a":[1,2]}"#.into(),
            deadline_unix_ms: u64::MAX,
            stream: true,
        });
        for event in [
            JobEvent::Progress {
                permille: 500,
                message: "half".into(),
            },
            JobEvent::OutputChunk("{\"text\":".into()),
            JobEvent::Completed { execution_us: 12 },
            JobEvent::Delta("{\"choices\":[]}".into()),
            JobEvent::Failed {
                kind: FailureKind::Timeout,
                message: "deadline".into(),
            },
        ] {
            round_trip(event);
        }
    }

    #[test]
    fn tiers_come_from_gpu_names() {
        assert_eq!(
            GpuTier::from_model("NVIDIA GeForce RTX 4090"),
            GpuTier::Rtx4090
        );
        assert_eq!(GpuTier::from_model("NVIDIA L4"), GpuTier::L4);
        assert_eq!(GpuTier::from_model("NVIDIA L40S"), GpuTier::Other);
        assert_eq!(GpuTier::from_model("Tesla T4"), GpuTier::Other);
    }
}
