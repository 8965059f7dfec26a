//! One process per job: the input as JSON on stdin, the output as JSON on stdout.
//! The process is killed when the job's future is dropped (deadline or cancel).

use super::RuntimeFailure;
use crate::config::ServiceConfig;
use gpubridge_protocol::node::FailureKind;
use serde_json::Value;
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub async fn run(
    cfg: &ServiceConfig,
    service: &str,
    input: &Value,
    max_output: usize,
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
        let mut err = Vec::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.take(4096).read_to_end(&mut err).await;
        }
        err
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        assert_eq!(run(&cfg, "ocr", &input, 1 << 20).await.unwrap(), input);
        let cfg = command("echo \"{\\\"service\\\": \\\"$GPUBRIDGE_SERVICE\\\"}\"");
        assert_eq!(
            run(&cfg, "ocr", &json!({}), 1 << 20).await.unwrap(),
            json!({"service": "ocr"})
        );
    }

    #[tokio::test]
    async fn crashes_garbage_and_missing_programs_are_classified() {
        let crash = run(&command("echo boom >&2; exit 3"), "s", &json!({}), 1024)
            .await
            .unwrap_err();
        assert_eq!(crash.kind, FailureKind::Runtime);
        assert!(crash.message.contains("boom"), "{}", crash.message);
        let garbage = run(&command("echo not-json"), "s", &json!({}), 1024)
            .await
            .unwrap_err();
        assert!(garbage.message.contains("not JSON"));
        let big = run(&command("head -c 5000 /dev/zero"), "s", &json!({}), 1024)
            .await
            .unwrap_err();
        assert!(big.message.contains("over 1024"));
        let mut missing = command("true");
        missing.command = vec!["/nonexistent/program".into()];
        let error = run(&missing, "s", &json!({}), 1024).await.unwrap_err();
        assert_eq!(error.kind, FailureKind::Unavailable);
    }
}
