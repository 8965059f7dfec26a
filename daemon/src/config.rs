//! The daemon's configuration: defaults that run, then a TOML file, then the
//! environment, then command-line flags, each overriding the one before.

use gpubridge_billing::card::StripeConfig;
use gpubridge_billing::x402::X402Config;
use gpubridge_billing::AccountsConfig;
use gpubridge_gateway::{AdminConfig, HttpConfig, LimitsConfig};
use gpubridge_scheduler::{Provider, SchedulerConfig};
use gpubridge_webhooks::WebhookConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub scheduler: SchedulerConfig,
    pub accounts: AccountsConfig,
    pub admin: AdminConfig,
    pub x402: X402Config,
    pub webhooks: WebhookConfig,
    pub stripe: StripeConfig,
    pub limits: LimitsConfig,
}

/// Shortest operator token accepted: anything shorter is guessable.
const MIN_ADMIN_TOKEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("environment variable {name}={value:?}: {reason}")]
    Env {
        name: String,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Command-line values that override everything else.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub http_addr: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub nodes_addr: Option<SocketAddr>,
    pub local_agent: bool,
}

impl Config {
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.display().to_string(),
                    source,
                })?
            }
            None => Config::default(),
        };
        config.apply_env(env)?;
        if let Some(addr) = flags.http_addr {
            config.http.addr = addr;
        }
        if let Some(dir) = &flags.data_dir {
            config.scheduler.data_dir = dir.clone();
        }
        if let Some(addr) = flags.nodes_addr {
            config.scheduler.nodes.addr = addr;
        }
        if flags.local_agent {
            config.scheduler.nodes.local_agent = true;
        }
        if config.scheduler.nodes.local_agent {
            if !config.scheduler.nodes.enabled {
                return Err(ConfigError::Invalid(
                    "nodes.local_agent needs nodes.enabled = true".into(),
                ));
            }
            // The in-process agent serves echo; the built-in one would always win.
            config.scheduler.builtin_echo = false;
        }
        if config
            .admin
            .token
            .as_ref()
            .is_some_and(|t| t.trim().len() < MIN_ADMIN_TOKEN)
        {
            return Err(ConfigError::Invalid(format!(
                "admin.token must be at least {MIN_ADMIN_TOKEN} characters"
            )));
        }
        if let Some(url) = &config.http.public_url {
            if url::Url::parse(url).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
                return Err(ConfigError::Invalid(format!(
                    "http.public_url {url:?} must be an http(s) URL, like https://api.example.com"
                )));
            }
        }
        config
            .accounts
            .rules()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let x402 = config
            .x402
            .rules()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if x402.is_some() && !config.accounts.enabled {
            return Err(ConfigError::Invalid(
                "x402 needs accounts.enabled = true: with accounts off every job is already free"
                    .into(),
            ));
        }
        config
            .x402
            .relayer()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config
            .x402
            .facilitator()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.webhooks.check().map_err(ConfigError::Invalid)?;
        config.limits.validate().map_err(ConfigError::Invalid)?;
        let cards = config
            .stripe
            .enabled()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if cards && !config.accounts.enabled {
            return Err(ConfigError::Invalid(
                "stripe needs accounts.enabled = true: card payments buy an account's credits"
                    .into(),
            ));
        }
        Ok(config)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let Some(value) = get("GPUBRIDGE_HTTP_ADDR") {
            self.http.addr = value.parse().map_err(|_| ConfigError::Env {
                name: "GPUBRIDGE_HTTP_ADDR".into(),
                value: value.clone(),
                reason: "expected host:port, like 127.0.0.1:8080".into(),
            })?;
        }
        if let Some(value) = get("GPUBRIDGE_PUBLIC_URL") {
            self.http.public_url = Some(value);
        }
        if let Some(value) = get("GPUBRIDGE_DATA_DIR") {
            self.scheduler.data_dir = PathBuf::from(value);
        }
        if let Some(value) = get("GPUBRIDGE_NODES_ADDR") {
            self.scheduler.nodes.addr = value.parse().map_err(|_| ConfigError::Env {
                name: "GPUBRIDGE_NODES_ADDR".into(),
                value: value.clone(),
                reason: "expected host:port, like 0.0.0.0:7443".into(),
            })?;
        }
        if let Some(value) = get("GPUBRIDGE_NODES_ENABLED") {
            self.scheduler.nodes.enabled = parse_bool("GPUBRIDGE_NODES_ENABLED", &value)?;
        }
        if let Some(value) = get("GPUBRIDGE_LOCAL_AGENT") {
            self.scheduler.nodes.local_agent = parse_bool("GPUBRIDGE_LOCAL_AGENT", &value)?;
        }
        if let Some(value) = get("GPUBRIDGE_ALLOW_PRIVATE_URLS") {
            self.scheduler.allow_private_urls = parse_bool("GPUBRIDGE_ALLOW_PRIVATE_URLS", &value)?;
        }
        if let Some(value) = get("GPUBRIDGE_SYNC_WRITES") {
            self.scheduler.sync_writes = parse_bool("GPUBRIDGE_SYNC_WRITES", &value)?;
        }
        if let Some(value) = get("GPUBRIDGE_ACCOUNTS_ENABLED") {
            self.accounts.enabled = parse_bool("GPUBRIDGE_ACCOUNTS_ENABLED", &value)?;
        }
        if let Some(value) = get("GPUBRIDGE_SIGNUP_CREDITS_USD") {
            self.accounts.signup_credits_usd =
                value.trim().parse().map_err(|_| ConfigError::Env {
                    name: "GPUBRIDGE_SIGNUP_CREDITS_USD".into(),
                    value: value.clone(),
                    reason: "expected a dollar amount, like 1.50".into(),
                })?;
        }
        if let Some(secret) = get("GPUBRIDGE_KEY_HASH_SECRET") {
            self.accounts.key_hash_secret = Some(secret);
        }
        if let Some(token) = get("GPUBRIDGE_ADMIN_TOKEN") {
            self.admin.token = Some(token);
        }
        self.apply_x402_env(&get)?;
        let stripe: [(&str, &mut Option<String>); 2] = [
            ("STRIPE_SECRET_KEY", &mut self.stripe.secret_key),
            ("STRIPE_WEBHOOK_SECRET", &mut self.stripe.webhook_secret),
        ];
        for (name, field) in stripe {
            if let Some(value) = get(name) {
                *field = Some(value);
            }
        }
        if let Some(value) = get("GPUBRIDGE_STRIPE_BASE_URL") {
            self.stripe.base_url = value;
        }
        for provider in Provider::HOSTED {
            let settings = self.scheduler.providers.entry(provider).or_default();
            if let Some(key) = provider.key_env().and_then(get) {
                settings.api_key = Some(key);
            }
            if let Some(url) = provider.base_url_env().and_then(|n| get(&n)) {
                settings.base_url = Some(url);
            }
        }
        Ok(())
    }

    fn apply_x402_env(&mut self, get: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let x402 = &mut self.x402;
        if let Some(value) = get("GPUBRIDGE_BASE_CHAIN_ID") {
            x402.chain_id = value.trim().parse().map_err(|_| ConfigError::Env {
                name: "GPUBRIDGE_BASE_CHAIN_ID".into(),
                value: value.clone(),
                reason: "expected a chain id, like 8453".into(),
            })?;
        }
        let texts: [(&str, &mut Option<String>); 4] = [
            ("GPUBRIDGE_BASE_RPC_URL", &mut x402.rpc_url),
            ("GPUBRIDGE_X402_PAY_TO", &mut x402.pay_to),
            ("GPUBRIDGE_X402_RELAYER_KEY", &mut x402.relayer_key),
            ("GPUBRIDGE_X402_FACILITATOR_URL", &mut x402.facilitator_url),
        ];
        for (name, field) in texts {
            if let Some(value) = get(name) {
                *field = Some(value);
            }
        }
        if let Some(value) = get("GPUBRIDGE_X402_RELAYER_KEY_FILE") {
            x402.relayer_key_file = Some(PathBuf::from(value));
        }
        if let Some(value) = get("GPUBRIDGE_X402_ASSET") {
            x402.asset = value;
        }
        if let Some(value) = get("GPUBRIDGE_SANCTIONS_ORACLE") {
            x402.sanctions_oracle = value;
        }
        Ok(())
    }

    /// The configuration as TOML with credentials masked, for `gpubridge config`.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        let mask = |secret: &mut Option<String>| {
            if secret.is_some() {
                *secret = Some("<set>".into());
            }
        };
        for settings in shown.scheduler.providers.values_mut() {
            mask(&mut settings.api_key);
        }
        mask(&mut shown.accounts.key_hash_secret);
        mask(&mut shown.admin.token);
        mask(&mut shown.x402.relayer_key);
        mask(&mut shown.stripe.secret_key);
        mask(&mut shown.stripe.webhook_secret);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Env {
            name: name.into(),
            value: value.into(),
            reason: "expected true or false".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_run_without_a_file() {
        let config = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(config.http.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.scheduler.data_dir, PathBuf::from("./data"));
        assert!(!config.scheduler.is_live(Provider::Groq));
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gpubridge.toml");
        std::fs::write(
            &path,
            "[http]\naddr = \"127.0.0.1:1111\"\n[scheduler]\ndata_dir = \"/file\"\n[scheduler.providers.groq]\napi_key = \"from-file\"\nmax_in_flight = 3\n",
        )
        .unwrap();
        let from_file = Config::load(Some(&path), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(from_file.http.addr.port(), 1111);
        assert_eq!(
            from_file.scheduler.provider(Provider::Groq).max_in_flight,
            Some(3)
        );

        let with_env = Config::load(
            Some(&path),
            env(&[
                ("GPUBRIDGE_HTTP_ADDR", "127.0.0.1:2222"),
                ("GROQ_API_KEY", "from-env"),
                ("GPUBRIDGE_GROQ_BASE_URL", "http://127.0.0.1:9/v1"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(with_env.http.addr.port(), 2222);
        let groq = with_env.scheduler.provider(Provider::Groq);
        assert_eq!(groq.api_key.as_deref(), Some("from-env"));
        assert_eq!(
            groq.max_in_flight,
            Some(3),
            "env overrides only what it names"
        );
        assert_eq!(
            with_env.scheduler.base_url(Provider::Groq),
            "http://127.0.0.1:9/v1"
        );

        let flags = Overrides {
            http_addr: Some("127.0.0.1:3333".parse().unwrap()),
            data_dir: Some("/flag".into()),
            ..Default::default()
        };
        let with_flags =
            Config::load(Some(&path), env(&[("GPUBRIDGE_DATA_DIR", "/env")]), &flags).unwrap();
        assert_eq!(with_flags.http.addr.port(), 3333);
        assert_eq!(with_flags.scheduler.data_dir, PathBuf::from("/flag"));
        assert!(
            !with_flags.redacted_toml().contains("from-file"),
            "secrets are masked"
        );
        let secrets = Config::load(
            None,
            env(&[
                ("GPUBRIDGE_ADMIN_TOKEN", "operator-token-123456"),
                ("GPUBRIDGE_KEY_HASH_SECRET", "k".repeat(40).as_str()),
                ("GPUBRIDGE_ACCOUNTS_ENABLED", "false"),
                ("GPUBRIDGE_SIGNUP_CREDITS_USD", "1.5"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert!(!secrets.accounts.enabled);
        assert_eq!(secrets.accounts.signup_credits_usd, 1.5);
        let shown = secrets.redacted_toml();
        assert!(
            !shown.contains("operator-token") && !shown.contains("kkkk"),
            "{shown}"
        );
    }

    #[test]
    fn example_config_parses() {
        let example: Config = toml::from_str(include_str!("../gpubridge.example.toml")).unwrap();
        assert_eq!(example.http.addr.port(), 8080);
        assert_eq!(example.scheduler.breaker.failure_threshold, 5);
        assert_eq!(example.webhooks, WebhookConfig::default());
        assert_eq!(example.limits, gpubridge_gateway::LimitsConfig::default());
    }

    #[test]
    fn bad_values_are_reported_by_name() {
        let err = Config::load(
            None,
            env(&[("GPUBRIDGE_HTTP_ADDR", "nope")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("GPUBRIDGE_HTTP_ADDR"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[http]\nadress = 1\n").unwrap();
        assert!(
            Config::load(Some(&path), env(&[]), &Overrides::default()).is_err(),
            "unknown keys are refused"
        );
        let short = Config::load(
            None,
            env(&[("GPUBRIDGE_ADMIN_TOKEN", "short")]),
            &Overrides::default(),
        );
        assert!(short.unwrap_err().to_string().contains("admin.token"));
    }
}
