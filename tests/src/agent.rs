//! Starts the real `gpubridge-agent` binary against a daemon's node listener.

use crate::daemon::binary;
use crate::process::ChildProcess;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct AgentProcess {
    pub process: ChildProcess,
    pub node_id: String,
}

impl AgentProcess {
    /// `services` is the TOML of the agent's `[services.*]` tables.
    pub fn start(
        dir: &Path,
        node_id: &str,
        scheduler: &str,
        token: &str,
        services: &str,
    ) -> AgentProcess {
        Self::start_with_env(dir, node_id, scheduler, token, services, &[])
    }

    /// [`AgentProcess::start`] with extra environment variables.
    pub fn start_with_env(
        dir: &Path,
        node_id: &str,
        scheduler: &str,
        token: &str,
        services: &str,
        env: &[(&str, &str)],
    ) -> AgentProcess {
        let config = dir.join(format!("agent-{node_id}.toml"));
        let text = format!(
            "scheduler = \"{scheduler}\"\nnode_id = \"{node_id}\"\nreconnect_max_seconds = 1\ndrain_grace_seconds = 60\n{services}"
        );
        std::fs::write(&config, text).expect("writing agent config");
        let log = dir.join(format!("agent-{node_id}.log"));
        let log_file = std::fs::File::create(&log).expect("agent log file");
        let child = Command::new(binary("gpubridge-agent"))
            .arg("--config")
            .arg(&config)
            .env("GPUBRIDGE_AGENT_TOKEN", token)
            .env("GPUBRIDGE_LOG", "info")
            .env_remove("GPUBRIDGE_AGENT_CONFIG")
            .env_remove("GPUBRIDGE_AGENT_SCHEDULER")
            .env_remove("GPUBRIDGE_AGENT_NODE_ID")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawning gpubridge-agent");
        AgentProcess {
            process: ChildProcess::new(child, log),
            node_id: node_id.to_string(),
        }
    }

    /// Waits until the agent's log says it joined; panics with the log if not.
    pub fn wait_joined(&self) {
        for _ in 0..500 {
            if self.process.log_text().contains("joined the scheduler") {
                return;
            }
            // Test-side polling of a child process, never on a daemon's runtime.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "agent {} did not join within 10 s; its log:\n{}",
            self.node_id,
            self.process.log_text()
        );
    }
}

/// `[services.echo]` with `slots` and a per-job delay.
pub fn echo_service(slots: u32, delay_ms: u64) -> String {
    format!("[services.echo]\nruntime = \"echo\"\nslots = {slots}\ndelay_ms = {delay_ms}\n")
}
