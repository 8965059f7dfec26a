//! Starts the real `gpubridge` binary as a child process on an ephemeral port,
//! with its own data directory and configuration, and stops it (gently or by
//! SIGKILL) on request.

use crate::process::ChildProcess;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
    process: ChildProcess,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Where node agents connect (`127.0.0.1:PORT`, UDP).
    pub nodes_addr: Option<String>,
    pub data_dir: PathBuf,
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
    /// Another `gpubridge` binary to run (benchmarks of an older build).
    pub binary: Option<PathBuf>,
    /// Keep the request limits of `config` (or the defaults). Off, the test's
    /// load is not rate-limited: only the limits' own tests turn this on.
    pub limits: bool,
}

/// `[limits]` that refuse nothing: what test daemons run with unless a test
/// is about limits (its load comes from one address).
pub const NO_LIMITS: &str = "\n[limits]\nper_ip = { per_second = 0, burst = 1 }\nper_key = { per_second = 0, burst = 1 }\nmax_concurrent_jobs = 0\n";

impl DaemonOptions<'_> {
    /// The configuration file's text: `config`, without limits unless asked.
    pub fn config_text(&self) -> String {
        let mut text = self.config.unwrap_or_default().to_string();
        if !self.limits {
            text.push_str(NO_LIMITS);
        }
        text
    }
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
            binary: None,
            limits: false,
        }
    }

    /// These options with `config` as the configuration file.
    pub fn with_config(mut self, config: &'a str) -> Self {
        self.config = Some(config);
        self
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
        let program = options
            .binary
            .clone()
            .unwrap_or_else(|| binary("gpubridge"));
        let mut command = Command::new(program);
        command
            .arg("serve")
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&options.data_dir)
            .env_remove("GPUBRIDGE_CONFIG")
            .env("GPUBRIDGE_LOG", "info")
            // Parallel tests each get their own node port.
            .env("GPUBRIDGE_NODES_ADDR", "127.0.0.1:0")
            .env_remove("GPUBRIDGE_LOCAL_AGENT")
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
        for name in [
            "GPUBRIDGE_BASE_RPC_URL",
            "GPUBRIDGE_BASE_CHAIN_ID",
            "GPUBRIDGE_X402_PAY_TO",
            "GPUBRIDGE_X402_ASSET",
            "GPUBRIDGE_SANCTIONS_ORACLE",
            "GPUBRIDGE_X402_RELAYER_KEY",
            "GPUBRIDGE_X402_RELAYER_KEY_FILE",
            "GPUBRIDGE_X402_FACILITATOR_URL",
        ] {
            command.env_remove(name);
        }
        if options.accounts {
            command
                .env("GPUBRIDGE_ACCOUNTS_ENABLED", "true")
                .env("GPUBRIDGE_ADMIN_TOKEN", ADMIN_TOKEN);
        } else {
            command
                .env("GPUBRIDGE_ACCOUNTS_ENABLED", "false")
                .env_remove("GPUBRIDGE_ADMIN_TOKEN");
        }
        let path = options.data_dir.with_extension("toml");
        std::fs::write(&path, options.config_text()).expect("writing daemon config");
        command.arg("--config").arg(path);
        for (key, value) in &options.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawning gpubridge");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            // The node listener's line, if any, comes before the HTTP one.
            let mut nodes = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("gpubridge nodes listening on quic://") {
                    nodes = Some(addr.trim().to_string());
                }
                if let Some(addr) = line.strip_prefix("gpubridge listening on ") {
                    let _ = sender.send((addr.trim().to_string(), nodes.take()));
                }
            }
        });
        let (base, nodes_addr) = match receiver.recv_timeout(Duration::from_secs(60)) {
            Ok(found) => found,
            Err(_) => {
                let _ = child.kill();
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("gpubridge did not start within 60 s; its log:\n{text}");
            }
        };
        Daemon {
            process: ChildProcess::new(child, log),
            base,
            nodes_addr,
            data_dir: options.data_dir.clone(),
        }
    }

    /// The daemon's process id, for sampling its CPU time and memory.
    pub fn pid(&self) -> Option<u32> {
        self.process.id()
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
        self.process.kill9();
    }

    /// SIGTERM, then wait for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        self.process.terminate()
    }

    /// SIGHUP: the daemon reads its configuration again.
    pub fn hangup(&self) {
        self.process.signal("HUP");
    }

    /// Where the daemon's configuration file is (when it was given one).
    pub fn config_path(&self) -> PathBuf {
        self.data_dir.with_extension("toml")
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// A join token for this daemon's node listener, made by `gpubridge token create`.
    pub fn join_token(&self) -> String {
        create_token(&self.data_dir)
    }
}

/// Runs `gpubridge token create` on a data directory and returns the token.
pub fn create_token(data_dir: &Path) -> String {
    let output = Command::new(binary("gpubridge"))
        .args(["token", "create", "--data-dir"])
        .arg(data_dir)
        .env_remove("GPUBRIDGE_CONFIG")
        .output()
        .expect("running gpubridge token create");
    assert!(
        output.status.success(),
        "token create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
