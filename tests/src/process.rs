//! A child process of a test, with its log in a file: stopped by SIGKILL (a
//! crash) or SIGTERM (a clean stop), and killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

pub struct ChildProcess {
    child: Option<Child>,
    pub log: PathBuf,
}

impl ChildProcess {
    pub fn new(child: Child, log: PathBuf) -> Self {
        ChildProcess {
            child: Some(child),
            log,
        }
    }

    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no shutdown code runs, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and leaves the process to stop by itself.
    pub fn signal_term(&self) {
        self.signal("TERM");
    }

    /// Sends the signal named (`HUP`, `TERM`, …) as `kill -NAME` would.
    pub fn signal(&self, name: &str) {
        if let Some(id) = self.id() {
            let _ = Command::new("kill")
                .arg(format!("-{name}"))
                .arg(id.to_string())
                .status();
        }
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            // Test-side polling of a child process, never on a daemon's runtime.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, then wait (30 s at most) for a clean exit; returns whether it
    /// exited successfully.
    pub fn terminate(&mut self) -> bool {
        self.signal_term();
        match self.wait_exit(Duration::from_secs(30)) {
            Some(status) => status.success(),
            None => {
                self.kill9();
                false
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
