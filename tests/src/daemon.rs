//! Starts the real `gpubridge` binary as a child process on an ephemeral port,
//! with its own data directory and configuration, and stops it (gently or by
//! SIGKILL) on request.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Where cargo put the workspace binaries: beside the test executable's `deps/`.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| {
            if deps.ends_with("deps") {
                deps.parent()
            } else {
                Some(deps)
            }
        })
        .expect("target directory")
        .to_path_buf();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

pub struct Daemon {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

pub struct DaemonOptions<'a> {
    pub data_dir: PathBuf,
    /// TOML configuration written beside the data directory.
    pub config: Option<&'a str>,
    pub env: Vec<(String, String)>,
    /// Reuse a port (restart tests); `None` picks a free one.
    pub port: Option<u16>,
    /// Run with accounts (API keys, credits) and the admin API on [`ADMIN_TOKEN`];
    /// off, anyone may run jobs, as routing tests want.
    pub accounts: bool,
}

/// The operator token of daemons started with `accounts: true`.
pub const ADMIN_TOKEN: &str = "test-operator-token-0123456789";

impl<'a> DaemonOptions<'a> {
    pub fn new(data_dir: impl AsRef<Path>) -> Self {
        DaemonOptions {
            data_dir: data_dir.as_ref().to_path_buf(),
            config: None,
            env: Vec::new(),
            port: None,
            accounts: false,
        }
    }
}

impl Daemon {
    pub fn start(options: DaemonOptions<'_>) -> Daemon {
        let port = options.port.unwrap_or(0);
        let log = options
            .data_dir
            .with_extension(format!("log.{}", std::process::id()));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("daemon log file");
        let mut command = Command::new(binary("gpubridge"));
        command
            .arg("serve")
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&options.data_dir)
            .env_remove("GPUBRIDGE_CONFIG")
            .env("GPUBRIDGE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        for provider in ["GROQ", "TOGETHER", "DEEPINFRA", "FIREWORKS", "JINA"] {
            command.env_remove(format!("{provider}_API_KEY"));
            command.env_remove(format!("GPUBRIDGE_{provider}_BASE_URL"));
        }
        command
            .env_remove("REPLICATE_API_TOKEN")
            .env_remove("GPUBRIDGE_REPLICATE_BASE_URL")
            .env_remove("GPUBRIDGE_KEY_HASH_SECRET")
            .env_remove("GPUBRIDGE_SIGNUP_CREDITS_USD");
        if options.accounts {
            command
                .env("GPUBRIDGE_ACCOUNTS_ENABLED", "true")
                .env("GPUBRIDGE_ADMIN_TOKEN", ADMIN_TOKEN);
        } else {
            command
                .env("GPUBRIDGE_ACCOUNTS_ENABLED", "false")
                .env_remove("GPUBRIDGE_ADMIN_TOKEN");
        }
        if let Some(config) = options.config {
            let path = options.data_dir.with_extension("toml");
            std::fs::write(&path, config).expect("writing daemon config");
            command.arg("--config").arg(path);
        }
        for (key, value) in &options.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawning gpubridge");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("gpubridge listening on ") {
                    let _ = sender.send(addr.trim().to_string());
                }
            }
        });
        let base = match receiver.recv_timeout(Duration::from_secs(60)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("gpubridge did not start within 60 s; its log:\n{text}");
            }
        };
        Daemon {
            child: Some(child),
            base,
            data_dir: options.data_dir.clone(),
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn port(&self) -> u16 {
        self.base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in base URL")
    }

    /// SIGKILL: no shutdown code runs, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        for _ in 0..600 {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}
