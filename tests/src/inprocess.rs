//! The daemon started inside the test process with `gpubridge_daemon::Daemon`:
//! real RocksDB, real HTTP on an ephemeral port, no child process. For every
//! test that needs neither kill -9 nor a process of its own. Configured exactly
//! as [`crate::Daemon`] configures the binary, from the same options, and blind
//! to the developer's environment (no stray provider keys).

use crate::daemon::{DaemonOptions, ADMIN_TOKEN};
use gpubridge_daemon::{Config, Daemon, Overrides};
use std::collections::HashMap;
use std::path::PathBuf;

pub struct InProcess {
    daemon: Option<Daemon>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Where node agents connect (`127.0.0.1:PORT`, UDP).
    pub nodes_addr: Option<String>,
    pub data_dir: PathBuf,
    /// What it was configured from, for [`InProcess::reload`].
    env: HashMap<String, String>,
    overrides: Overrides,
}

impl InProcess {
    pub async fn start(options: DaemonOptions<'_>) -> InProcess {
        let mut env: HashMap<String, String> = HashMap::from([
            ("GPUBRIDGE_NODES_ADDR".into(), "127.0.0.1:0".into()),
            (
                "GPUBRIDGE_ACCOUNTS_ENABLED".into(),
                options.accounts.to_string(),
            ),
        ]);
        if options.accounts {
            env.insert("GPUBRIDGE_ADMIN_TOKEN".into(), ADMIN_TOKEN.into());
        }
        env.extend(options.env.iter().cloned());
        let path = options.data_dir.with_extension("toml");
        std::fs::write(&path, options.config_text()).expect("writing daemon config");
        let file = Some(path);
        let overrides = Overrides {
            http_addr: Some(([127, 0, 0, 1], options.port.unwrap_or(0)).into()),
            data_dir: Some(options.data_dir.clone()),
            ..Overrides::default()
        };
        let config = Config::load(file.as_deref(), |name| env.get(name).cloned(), &overrides)
            .expect("test configuration");
        let daemon = Daemon::start(config).await.expect("the daemon starts");
        InProcess {
            base: format!("http://{}", daemon.http_addr()),
            nodes_addr: daemon.nodes_addr().map(|a| a.to_string()),
            data_dir: options.data_dir,
            daemon: Some(daemon),
            env,
            overrides,
        }
    }

    /// A daemon with data under `dir` and this configuration (TOML), else defaults.
    pub async fn configured(dir: &std::path::Path, config: &str) -> InProcess {
        let mut options = DaemonOptions::new(dir.join("data"));
        options.config = Some(config);
        InProcess::start(options).await
    }

    /// Applies `config` (TOML) as a SIGHUP would: what can change while running changes.
    pub fn reload(&self, config: &str) -> Result<(), String> {
        let path = self.data_dir.with_extension("toml");
        std::fs::write(&path, config).expect("writing daemon config");
        let config = Config::load(
            Some(&path),
            |name| self.env.get(name).cloned(),
            &self.overrides,
        )
        .map_err(|e| e.to_string())?;
        self.daemon().reload(&config).map_err(|e| e.to_string())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("running")
    }

    /// A clean stop, as on SIGTERM.
    pub async fn stop(mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.shutdown().await;
        }
    }
}
