//! One process per job: the input as JSON on stdin, the output as JSON on stdout.
//! The process is killed when the job's future is dropped (deadline or cancel).
//! A line `progress <percent>[%] [message]` on stderr reports how far it is;
//! other stderr lines explain a failure.

use super::{Events, RuntimeFailure};
use crate::config::ServiceConfig;
use gpubridge_protocol::node::{FailureKind, JobEvent};
use serde_json::Value;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// What of stderr is kept to explain a failure.
const STDERR_KEPT: usize = 4096;
/// Longest stderr line read (longer ones are cut).
const MAX_LINE: u64 = 8192;

pub async fn run(
    cfg: &ServiceConfig,
    service: &str,
    input: &Value,
    max_output: usize,
    progress: Option<&Events>,
) -> Result<Value, RuntimeFailure> {
    let failure = |kind, message: String| RuntimeFailure::new(kind, message);
    let (program, args) = cfg
        .command
        .split_first()
        .ok_or_else(|| failure(FailureKind::Unavailable, "no command configured".into()))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(&cfg.env)
        .env("GPUBRIDGE_SERVICE", service)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failure(FailureKind::Unavailable, format!("starting {program}: {e}")))?;
    let bytes = serde_json::to_vec(input).unwrap_or_default();
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let write = async {
        if let Some(stdin) = stdin.as_mut() {
            // A program that does not read its input is its own business.
            let _ = stdin.write_all(&bytes).await;
        }
        drop(stdin.take());
    };
    let read = async {
        let mut out = Vec::new();
        if let Some(stdout) = stdout.as_mut() {
            stdout
                .take(max_output as u64 + 1)
                .read_to_end(&mut out)
                .await?;
        }
        Ok::<_, std::io::Error>(out)
    };
    let read_err = async {
        match stderr.take() {
            Some(stderr) => read_stderr(stderr, progress).await,
            None => Vec::new(),
        }
    };
    let ((), out, err) = tokio::join!(write, read, read_err);
    let out = out.map_err(|e| failure(FailureKind::Runtime, format!("reading stdout: {e}")))?;
    let status = child
        .wait()
        .await
        .map_err(|e| failure(FailureKind::Runtime, format!("waiting for {program}: {e}")))?;
    if out.len() > max_output {
        return Err(failure(
            FailureKind::Runtime,
            format!("output over {max_output} bytes"),
        ));
    }
    if !status.success() {
        let stderr: String = String::from_utf8_lossy(&err).chars().take(500).collect();
        return Err(failure(
            FailureKind::Runtime,
            format!("{program} exited with {status}: {}", stderr.trim()),
        ));
    }
    serde_json::from_slice(&out).map_err(|e| {
        failure(
            FailureKind::Runtime,
            format!("{program} printed something that is not JSON: {e}"),
        )
    })
}

/// Reads stderr line by line: progress lines become `Progress` events (dropped
/// when the scheduler is behind: only the latest matters), the rest is kept.
async fn read_stderr(stderr: tokio::process::ChildStderr, progress: Option<&Events>) -> Vec<u8> {
    let mut reader = BufReader::new(stderr);
    let mut kept = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return kept,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        match (progress_line(&text), progress) {
            (Some(event), Some(events)) => {
                let _ = events.try_send(event);
            }
            (Some(_), None) => {}
            (None, _) if kept.len() < STDERR_KEPT => {
                let room = STDERR_KEPT - kept.len();
                kept.extend_from_slice(&line[..line.len().min(room)]);
            }
            (None, _) => {}
        }
    }
}

/// `progress 42.5% loading weights` → 425 permille and the message.
fn progress_line(line: &str) -> Option<JobEvent> {
    let rest = line.trim().strip_prefix("progress ")?;
    let (number, message) = rest.split_once(' ').unwrap_or((rest, ""));
    let percent: f64 = number.trim_end_matches('%').parse().ok()?;
    if !percent.is_finite() {
        return None;
    }
    Some(JobEvent::Progress {
        permille: (percent.clamp(0.0, 100.0) * 10.0).round() as u16,
        message: message.trim().chars().take(200).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn progress_lines_become_events_and_the_rest_explains_failures() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let script = "echo 'progress 25% loading' >&2; echo 'progress 100' >&2; echo '{}'";
        let output = run(&command(script), "s", &json!({}), 1024, Some(&tx))
            .await
            .unwrap();
        assert_eq!(output, json!({}));
        assert_eq!(
            rx.recv().await,
            Some(JobEvent::Progress {
                permille: 250,
                message: "loading".into()
            })
        );
        assert_eq!(
            rx.recv().await,
            Some(JobEvent::Progress {
                permille: 1000,
                message: String::new()
            })
        );
        assert_eq!(progress_line("progress soon"), None);
        assert_eq!(progress_line("progressing 5"), None);
        let script = "echo 'progress 50% half' >&2; echo broken >&2; exit 1";
        let error = run(&command(script), "s", &json!({}), 1024, Some(&tx))
            .await
            .unwrap_err();
        assert!(error.message.contains("broken"), "{}", error.message);
        assert!(!error.message.contains("half"), "{}", error.message);
    }

    fn command(script: &str) -> ServiceConfig {
        toml::from_str(&format!(
            "runtime = \"command\"\ncommand = [\"/bin/sh\", \"-c\", {script:?}]"
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn json_in_json_out() {
        let cfg = command("cat");
        let input = json!({"text": "héllo", "n": [1, 2]});
        assert_eq!(
            run(&cfg, "ocr", &input, 1 << 20, None).await.unwrap(),
            input
        );
        let cfg = command("echo \"{\\\"service\\\": \\\"$GPUBRIDGE_SERVICE\\\"}\"");
        assert_eq!(
            run(&cfg, "ocr", &json!({}), 1 << 20, None).await.unwrap(),
            json!({"service": "ocr"})
        );
    }

    /// The failure of running `script` with a 1024-byte output limit.
    async fn failure(script: &str) -> RuntimeFailure {
        run(&command(script), "s", &json!({}), 1024, None)
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn crashes_garbage_and_missing_programs_are_classified() {
        let crash = failure("echo boom >&2; exit 3").await;
        assert_eq!(crash.kind, FailureKind::Runtime);
        assert!(crash.message.contains("boom"), "{}", crash.message);
        let garbage = failure("echo not-json").await;
        assert!(garbage.message.contains("not JSON"));
        let big = failure("head -c 5000 /dev/zero").await;
        assert!(big.message.contains("over 1024"));
        let mut missing = command("true");
        missing.command = vec!["/nonexistent/program".into()];
        let error = run(&missing, "s", &json!({}), 1024, None)
            .await
            .unwrap_err();
        assert_eq!(error.kind, FailureKind::Unavailable);
    }
}
