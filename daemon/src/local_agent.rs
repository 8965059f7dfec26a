//! `--local-agent`: a node agent inside the daemon, over QUIC on loopback,
//! serving `echo` — the whole agent path with one command.

use gpubridge_node_agent::{Agent, AgentConfig, Telemetry};
use gpubridge_scheduler::nodes::{Identity, NodePool};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;

pub struct LocalAgent {
    task: JoinHandle<()>,
}

impl LocalAgent {
    pub fn start(identity: &Identity, scheduler: SocketAddr) -> Result<LocalAgent, String> {
        let mut config = AgentConfig {
            scheduler: SocketAddr::from(([127, 0, 0, 1], scheduler.port())).to_string(),
            token: Some(identity.create_token().to_string()),
            node_id: "local".into(),
            ..AgentConfig::default()
        };
        let echo = toml::from_str("runtime = \"echo\"\nslots = 1024").map_err(|e| e.to_string())?;
        config.services.insert("echo".into(), echo);
        let agent = Agent::new(config, Telemetry::none()).map_err(|e| e.to_string())?;
        let task = tokio::spawn(async move {
            if let Err(e) = agent.run().await {
                tracing::error!(error = %e, "the local agent stopped");
            }
        });
        Ok(LocalAgent { task })
    }

    /// Lets echo be live before the first request arrives (5 s at most).
    pub async fn wait_joined(pool: &NodePool) {
        let joined = async {
            while pool.sessions().is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), joined)
            .await
            .is_err()
        {
            tracing::warn!("the local agent has not joined yet");
        }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}
