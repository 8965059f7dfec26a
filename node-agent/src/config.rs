//! The agent's typed configuration: TOML file, then environment, then flags.

use gpubridge_protocol::node::GpuTier;
use gpubridge_protocol::wire::DEFAULT_MAX_FRAME;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// The scheduler's node address (UDP), `host:port`.
    pub scheduler: String,
    /// Join token from `gpubridge token create`; `GPUBRIDGE_AGENT_TOKEN` overrides.
    pub token: Option<String>,
    /// A file holding the join token (for systemd credentials and secrets mounts).
    pub token_file: Option<PathBuf>,
    /// Stable name of this host: a reconnect with the same id replaces the old session.
    pub node_id: String,
    /// Tier to be routed and priced as; default: the first GPU's.
    pub tier: Option<GpuTier>,
    pub max_frame_bytes: usize,
    /// Longest wait between reconnection attempts.
    pub reconnect_max_seconds: u64,
    /// How long running jobs may take to finish when draining.
    pub drain_grace_seconds: u64,
    /// Largest response read from a local runtime.
    pub max_output_bytes: usize,
    /// Largest file fetched for a `fetch_inputs` field.
    pub max_media_bytes: usize,
    /// Let `fetch_inputs` URLs point at private, loopback and link-local addresses.
    pub allow_private_urls: bool,
    pub services: BTreeMap<String, ServiceConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Any OpenAI-compatible server: vLLM, SGLang, llama.cpp, Ollama, TGI.
    Openai,
    /// The Cog HTTP prediction API (`POST /predictions`).
    Cog,
    /// A generic JSON POST: the input as body, the response as output.
    Http,
    /// One process per job: JSON input on stdin, JSON output on stdout.
    Command,
    /// Returns the input: diagnostics and load tests.
    Echo,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub runtime: RuntimeKind,
    /// Jobs of this service that may run at once.
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// Catalog model ids served (services with a model list); empty: any.
    #[serde(default)]
    pub models: Vec<String>,
    /// Catalog model id → the local server's own model name.
    #[serde(default)]
    pub model_map: BTreeMap<String, String>,
    /// Plain HTTP. `openai`: API root, like `http://127.0.0.1:8000/v1`; `cog`: the container's
    /// root, like `http://127.0.0.1:5000`; `http`: the full URL posted to.
    #[serde(default)]
    pub url: Option<String>,
    /// `openai`: `chat` (default, also vision), `completions` or `embeddings`.
    #[serde(default)]
    pub api: Option<String>,
    /// Sent as `Authorization: Bearer` to servers started with a key (vLLM
    /// `--api-key`); prefer the agent's environment file for it.
    #[serde(default)]
    pub api_key: Option<String>,
    /// `command`: program and arguments.
    #[serde(default)]
    pub command: Vec<String>,
    /// `command`: extra environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Longest a job may run here, below the scheduler's deadline.
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
    /// Input fields holding http(s) URLs the agent fetches itself (size and time
    /// limited, private addresses refused) and hands to the runtime as `data:` URLs,
    /// for runtimes that cannot or should not reach the Internet.
    #[serde(default)]
    pub fetch_inputs: Vec<String>,
    /// `echo`: wait this long before answering, to stand in for real work.
    #[serde(default)]
    pub delay_ms: u64,
}

fn default_slots() -> u32 {
    4
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            scheduler: "127.0.0.1:7443".into(),
            token: None,
            token_file: None,
            node_id: default_node_id(),
            tier: None,
            max_frame_bytes: DEFAULT_MAX_FRAME,
            reconnect_max_seconds: 10,
            drain_grace_seconds: 600,
            max_output_bytes: 64 * 1024 * 1024,
            max_media_bytes: 25 * 1024 * 1024,
            allow_private_urls: false,
            services: BTreeMap::new(),
        }
    }
}

fn default_node_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gpu-node".into())
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl AgentConfig {
    /// Loads `file` (if any), then applies `GPUBRIDGE_AGENT_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<AgentConfig, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_path_buf(),
                    source,
                })?
            }
            None => AgentConfig::default(),
        };
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let Some(addr) = get("GPUBRIDGE_AGENT_SCHEDULER") {
            config.scheduler = addr;
        }
        if let Some(token) = get("GPUBRIDGE_AGENT_TOKEN") {
            config.token = Some(token);
        }
        if let Some(id) = get("GPUBRIDGE_AGENT_NODE_ID") {
            config.node_id = id;
        }
        Ok(config)
    }

    /// The join token, from the config, the environment or `token_file`.
    pub fn token(&self) -> Result<String, ConfigError> {
        if let Some(token) = &self.token {
            return Ok(token.trim().to_string());
        }
        if let Some(path) = &self.token_file {
            return std::fs::read_to_string(path)
                .map(|t| t.trim().to_string())
                .map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                });
        }
        Err(ConfigError::Invalid(
            "no join token: set token, token_file or GPUBRIDGE_AGENT_TOKEN (create one with `gpubridge token create` on the scheduler)".into(),
        ))
    }

    /// Checks what TOML types cannot: every service has what its runtime needs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.services.is_empty() {
            return Err(ConfigError::Invalid(
                "no services: add a [services.<name>] table, e.g. runtime = \"echo\"".into(),
            ));
        }
        for (name, service) in &self.services {
            let invalid = |what: &str| ConfigError::Invalid(format!("services.{name}: {what}"));
            if service.slots == 0 {
                return Err(invalid("slots must be at least 1"));
            }
            match service.runtime {
                RuntimeKind::Openai | RuntimeKind::Cog | RuntimeKind::Http => {
                    let url = service
                        .url
                        .as_deref()
                        .ok_or_else(|| invalid("url is required"))?;
                    // Model servers run on the host or its private network: plain HTTP.
                    if !url.starts_with("http://") {
                        return Err(invalid("url must start with http://"));
                    }
                }
                RuntimeKind::Command if service.command.is_empty() => {
                    return Err(invalid("command is required, e.g. [\"/usr/bin/ocr\"]"))
                }
                _ => {}
            }
            if let Some(api) = &service.api {
                if !["chat", "completions", "embeddings"].contains(&api.as_str()) {
                    return Err(invalid("api is chat, completions or embeddings"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "scheduler = \"10.0.0.1:7443\"\nnode_id = \"a\"\ntier = \"l4\"\n[services.echo]\nruntime = \"echo\"\nslots = 8\n[services.ocr]\nruntime = \"command\"\ncommand = [\"/bin/cat\"]\n",
        )
        .unwrap();
        let env = |name: &str| (name == "GPUBRIDGE_AGENT_NODE_ID").then(|| "b".to_string());
        let config = AgentConfig::load(Some(&path), env).unwrap();
        assert_eq!(config.scheduler, "10.0.0.1:7443");
        assert_eq!(config.node_id, "b");
        assert_eq!(config.tier, Some(GpuTier::L4));
        assert_eq!(config.services["echo"].slots, 8);
        config.validate().unwrap();
        assert!(config.token().is_err(), "no token anywhere");
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let example: AgentConfig = toml::from_str(include_str!("../agent.example.toml")).unwrap();
        example.validate().unwrap();
        assert_eq!(example.services["ocr"].fetch_inputs, ["image_url"]);
        assert_eq!(example.services["llm-4090"].runtime, RuntimeKind::Openai);
    }

    #[test]
    fn services_need_what_their_runtime_needs() {
        let mut config = AgentConfig::default();
        assert!(config.validate().is_err(), "no services");
        let service = |runtime| ServiceConfig {
            runtime,
            slots: 1,
            models: vec![],
            model_map: BTreeMap::new(),
            url: None,
            api: None,
            api_key: None,
            command: vec![],
            env: BTreeMap::new(),
            timeout_seconds: None,
            fetch_inputs: vec![],
            delay_ms: 0,
        };
        config
            .services
            .insert("llm-4090".into(), service(RuntimeKind::Openai));
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("services.llm-4090: url"), "{error}");
        config
            .services
            .insert("llm-4090".into(), service(RuntimeKind::Command));
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("command"));
        config
            .services
            .insert("llm-4090".into(), service(RuntimeKind::Echo));
        config.validate().unwrap();
    }
}
