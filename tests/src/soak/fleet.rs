//! Everything the soak runs: three hosted stand-ins (Groq, Together,
//! DeepInfra), a local model server behind the node agents, the daemon as a
//! real process on fixed ports (so it can be killed and started again), the
//! agents, and funded accounts.

use super::SoakSpec;
use crate::accounts::{unlimited, TestAccount};
use crate::{AgentProcess, Behavior, Daemon, DaemonOptions, JsonClient, Standin, StreamPlan};
use parking_lot::Mutex;
use std::path::{Path, PathBuf};

const KEY: &str = "soak-key";
const PROVIDERS: [&str; 3] = ["groq", "together", "deepinfra"];

pub struct Fleet {
    /// One per entry of `PROVIDERS`.
    pub hosted: Vec<Standin>,
    /// What the agents' `openai` runtime calls.
    pub model_server: Standin,
    pub base: String,
    pub data_dir: PathBuf,
    pub accounts: Vec<(TestAccount, JsonClient)>,
    dir: PathBuf,
    config: String,
    nodes_addr: String,
    port: u16,
    daemon: Mutex<Option<Daemon>>,
    agents: Mutex<Vec<Option<AgentProcess>>>,
    token: String,
}

/// Short limits so faults cost seconds, and a breaker that closes again soon.
fn config(hosted: &[Standin]) -> String {
    let mut text = String::from(
        "[scheduler]\nallow_private_urls = true\nbuiltin_echo = false\n[scheduler.breaker]\nfailure_threshold = 3\nopen_seconds = 1.0\n",
    );
    for (provider, standin) in PROVIDERS.iter().zip(hosted) {
        text.push_str(&format!(
            "[scheduler.providers.{provider}]\napi_key = \"{KEY}\"\nbase_url = \"{}\"\nrequest_timeout_seconds = 2\nfirst_byte_timeout_ms = 800\nidle_timeout_ms = 800\n",
            standin.base_url()
        ));
    }
    text
}

fn agent_services(model_server: &Standin) -> String {
    format!(
        "[services.llm-4090]\nruntime = \"openai\"\nurl = \"{}\"\napi_key = \"local-key\"\nslots = 16\n{}",
        model_server.base_url(),
        crate::echo_service(256, 5)
    )
}

/// A free loopback UDP port for the node listener, which must outlive restarts.
fn free_udp_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Fleet {
    pub async fn start(spec: &SoakSpec, dir: &Path) -> anyhow::Result<Fleet> {
        let mut hosted = Vec::new();
        for _ in PROVIDERS {
            hosted.push(Standin::start(KEY).await?);
        }
        let model_server = Standin::start("local-key").await?;
        let mut fleet = Fleet {
            config: config(&hosted),
            hosted,
            model_server,
            base: String::new(),
            data_dir: dir.join("data"),
            accounts: Vec::new(),
            dir: dir.to_path_buf(),
            nodes_addr: format!("127.0.0.1:{}", free_udp_port()?),
            port: 0,
            daemon: Mutex::new(None),
            agents: Mutex::new(Vec::new()),
            token: String::new(),
        };
        let daemon = fleet.spawn_daemon().await?;
        fleet.base = daemon.base.clone();
        fleet.port = daemon.port();
        fleet.token = daemon.join_token();
        *fleet.daemon.lock() = Some(daemon);
        for n in 0..spec.agents {
            let agent = fleet.spawn_agent(n).await?;
            fleet.agents.lock().push(Some(agent));
        }
        for n in 0..spec.accounts.max(1) {
            let email = format!("soak{n}@example.com");
            fleet
                .accounts
                .push(unlimited(&fleet.base, &email, 10_000.0).await?);
        }
        Ok(fleet)
    }

    async fn spawn_daemon(&self) -> anyhow::Result<Daemon> {
        let (data_dir, config) = (self.data_dir.clone(), self.config.clone());
        let (port, nodes) = (self.port, self.nodes_addr.clone());
        Ok(tokio::task::spawn_blocking(move || {
            let mut options = DaemonOptions::new(&data_dir);
            options.config = Some(&config);
            options.accounts = true;
            options.port = (port != 0).then_some(port);
            options.env = vec![
                ("GPUBRIDGE_NODES_ADDR".into(), nodes),
                ("GPUBRIDGE_LOG".into(), "warn".into()),
            ];
            Daemon::start(options)
        })
        .await?)
    }

    async fn spawn_agent(&self, n: usize) -> anyhow::Result<AgentProcess> {
        let (dir, nodes, token) = (
            self.dir.clone(),
            self.nodes_addr.clone(),
            self.token.clone(),
        );
        let services = agent_services(&self.model_server);
        Ok(tokio::task::spawn_blocking(move || {
            let agent = AgentProcess::start(&dir, &format!("soak-{n}"), &nodes, &token, &services);
            agent.wait_joined();
            agent
        })
        .await?)
    }

    /// kill -9 of the daemon, then the same daemon again on the same ports.
    pub async fn crash_daemon(&self) -> anyhow::Result<()> {
        let old = self.daemon.lock().take();
        if let Some(mut daemon) = old {
            tokio::task::spawn_blocking(move || daemon.kill9()).await?;
        }
        let daemon = self.spawn_daemon().await?;
        *self.daemon.lock() = Some(daemon);
        Ok(())
    }

    pub fn agent_count(&self) -> usize {
        self.agents.lock().len()
    }

    /// kill -9 of agent `n`, if it is up; it stays down until [`Fleet::restart_agent`].
    pub async fn crash_agent(&self, n: usize) -> anyhow::Result<bool> {
        let old = self.agents.lock().get_mut(n).and_then(Option::take);
        let Some(mut agent) = old else {
            return Ok(false);
        };
        tokio::task::spawn_blocking(move || agent.process.kill9()).await?;
        Ok(true)
    }

    pub async fn restart_agent(&self, n: usize) -> anyhow::Result<()> {
        if self.agents.lock().get(n).is_some_and(Option::is_none) {
            let agent = self.spawn_agent(n).await?;
            if let Some(slot) = self.agents.lock().get_mut(n) {
                *slot = Some(agent);
            }
        }
        Ok(())
    }

    /// Every stand-in well again and every agent running.
    pub async fn heal(&self) {
        for standin in self.hosted.iter().chain([&self.model_server]) {
            standin.set_behavior(Behavior::Ok);
            standin.set_stream_plan(StreamPlan::default());
        }
        for n in 0..self.agent_count() {
            if let Err(e) = self.restart_agent(n).await {
                eprintln!("soak: restarting agent {n}: {e}");
            }
        }
    }

    /// Each account's balance as the running daemon holds it, in micro-dollars.
    pub async fn balances(&self) -> Vec<(String, Option<i64>)> {
        let mut found = Vec::new();
        for (account, client) in &self.accounts {
            let reply = client.get(&format!("{}/account/balance", self.base)).await;
            let micros = reply
                .ok()
                .filter(|r| r.status == 200)
                .map(|r| crate::accounts::micros(&r.body["balance"]));
            found.push((account.id.clone(), micros));
        }
        found
    }

    /// A clean stop (SIGTERM); what went wrong, if anything.
    pub async fn stop(&self) -> Vec<String> {
        let daemon = self.daemon.lock().take();
        let mut problems = Vec::new();
        if let Some(mut daemon) = daemon {
            let clean = tokio::task::spawn_blocking(move || daemon.terminate()).await;
            if !matches!(clean, Ok(true)) {
                problems.push("the daemon did not stop cleanly on SIGTERM".to_string());
            }
        }
        for agent in self.agents.lock().iter_mut().flatten() {
            agent.process.kill9();
        }
        problems
    }
}
