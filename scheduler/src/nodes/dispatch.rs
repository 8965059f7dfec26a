//! One job on one agent: a QUIC stream opened by the scheduler, the assignment
//! written and the send side finished, then the agent's events read until a
//! result. Dropping the future (deadline, shutdown) drops the stream, which tells
//! the agent to stop (STOP_SENDING); an explicit cancel says why.

use super::config::NodesConfig;
use super::session::{Session, SlotGuard};
use crate::executor::{AttemptError, Call};
use gpubridge_protocol::node::{close, Assignment, FailureKind, JobEvent};
use gpubridge_protocol::{write_frame, FrameReader, StreamError};
use serde_json::Value;

/// Longer progress messages are cut: they are shown, not stored in full.
const MAX_PROGRESS_MESSAGE: usize = 200;

pub(super) enum Failure {
    /// The agent is gone or could not run it: another agent may.
    Retry(String),
    /// The job's own outcome: no other agent would do better.
    Final(AttemptError),
}

pub(super) async fn run_on(
    session: &Session,
    _slot: SlotGuard<'_>,
    assignment: &Assignment,
    cfg: &NodesConfig,
    call: &Call<'_>,
) -> Result<Value, Failure> {
    let stream = call.stream;
    let lost = |what: &str, e: &dyn std::fmt::Display| Failure::Retry(format!("{what}: {e}"));
    let (mut send, recv) = session
        .connection
        .open_bi()
        .await
        .map_err(|e| lost("cannot open a job stream", &e))?;
    write_frame(&mut send, assignment, cfg.max_frame_bytes)
        .await
        .map_err(|e| lost("sending the assignment", &e))?;
    // Nothing more goes this way; the agent's side carries the result.
    let _ = send.finish();
    let mut events = FrameReader::new(recv, cfg.max_frame_bytes);
    let mut output = String::new();
    loop {
        let event = match events.next::<JobEvent>().await {
            Ok(Some(event)) => event,
            Ok(None) => return Err(Failure::Retry("job stream ended without a result".into())),
            Err(StreamError::Wire(e)) => {
                // A peer that sends garbage is not trusted with more jobs.
                session.connection.close(
                    close::PROTOCOL.into(),
                    format!("bad job frame: {e}").as_bytes(),
                );
                return Err(lost("agent sent a bad frame", &e));
            }
            Err(e) => return Err(lost("connection lost", &e)),
        };
        match event {
            JobEvent::Progress { permille, message } => {
                let message: String = message.chars().take(MAX_PROGRESS_MESSAGE).collect();
                (call.progress)(permille, message);
            }
            JobEvent::Delta(chunk) => {
                let Some(tap) = stream else { continue };
                let chunk = serde_json::from_str(&chunk).map_err(|e| {
                    Failure::Retry(format!("agent sent a chunk that is not JSON: {e}"))
                })?;
                if tap.send(chunk).await.is_err() {
                    let _ = events.get_mut().stop(close::CANCELLED.into());
                    return Err(Failure::Final(AttemptError::Cancelled));
                }
            }
            JobEvent::OutputChunk(chunk) => {
                if output.len() + chunk.len() > cfg.max_output_bytes {
                    let _ = events.get_mut().stop(close::CANCELLED.into());
                    return Err(Failure::Final(AttemptError::BadResponse(format!(
                        "output over the {}-byte limit",
                        cfg.max_output_bytes
                    ))));
                }
                output.push_str(&chunk);
            }
            JobEvent::Completed { .. } => {
                return serde_json::from_str(&output)
                    .map_err(|e| Failure::Retry(format!("agent's output is not JSON: {e}")));
            }
            JobEvent::Failed { kind, message } => {
                return Err(match kind {
                    FailureKind::Rejected => Failure::Final(AttemptError::Rejected {
                        status: 422,
                        body: message,
                    }),
                    FailureKind::Timeout => Failure::Final(AttemptError::Timeout),
                    FailureKind::Runtime | FailureKind::Unavailable => {
                        Failure::Retry(format!("{kind:?}: {message}"))
                    }
                });
            }
        }
    }
}
