//! A daemon process's CPU time and resident memory, read from `/proc`: what
//! the fleet and queue scenarios charge to heartbeats, agents and waiting jobs.

use anyhow::Context;
use gpubridge_tests::{Daemon, DaemonOptions};
use std::path::{Path, PathBuf};

/// The daemon (`binary`, or the one built beside the bench) with data under
/// `dir` and `config`, logging warnings only, and its pid to sample.
pub fn start_daemon(
    dir: &Path,
    config: &str,
    binary: Option<PathBuf>,
) -> anyhow::Result<(Daemon, u32)> {
    let mut options = DaemonOptions::new(dir.join("data"));
    options.config = Some(config);
    options.binary = binary;
    options.env.push(("GPUBRIDGE_LOG".into(), "warn".into()));
    let daemon = Daemon::start(options);
    let pid = daemon.pid().context("daemon pid")?;
    Ok((daemon, pid))
}

/// One clock tick of `/proc/<pid>/stat` (`getconf CLK_TCK` is 100 on Linux):
/// the resolution of [`cpu_seconds`].
pub const TICK_SECONDS: f64 = 0.01;

/// User plus system CPU seconds the process has used.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces: fields are counted after its ')'.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("stat fields")?.parse::<u64>()? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) * TICK_SECONDS)
}

/// Resident set size in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .context("no VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()?;
    Ok(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        let spin: u64 = (0..5_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        assert!(spin > 0);
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(rss_bytes(pid).unwrap() > 1024 * 1024);
    }
}
