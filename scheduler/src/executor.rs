//! The one trait every backend implements: hosted providers (one file each under
//! `providers/`), the built-in echo, and each fleet of node agents. The runner
//! knows nothing else about a backend.

use crate::backend::Binding;
use crate::catalog::Operation;
use crate::job::Attempt;
use crate::stream::StreamTap;
use gpubridge_protocol::media::MediaError;
use gpubridge_protocol::JobId;
use serde_json::Value;
use std::time::{Duration, Instant};

pub use gpubridge_store::BoxFuture;

/// One attempt of one job on one backend.
pub struct Call<'a> {
    pub job_id: &'a JobId,
    pub service: &'a str,
    /// The model asked for, for backends that pick among workers by model.
    pub model: Option<&'a str>,
    pub input: &'a Value,
    pub binding: &'a Binding,
    /// When this attempt must be over; long-running backends poll until then.
    pub deadline: Instant,
    /// The job's own deadline, for backends that hand it on (Unix ms).
    pub job_deadline_unix_ms: u64,
    /// The service's usual duration, for backends that rank their own workers.
    pub default_ms: f64,
    /// Where a backend that can stream sends chunks as it makes them; one that
    /// cannot just returns its output, which reaches the client whole.
    pub stream: Option<&'a StreamTap>,
    /// Where a backend reports how far the job is (permille, message).
    pub progress: &'a (dyn Fn(u16, String) + Send + Sync),
}

impl Call<'_> {
    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.input.get(name).and_then(Value::as_str)
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// What a backend produced.
pub struct Executed {
    pub output: Value,
    /// Which of its workers did it (a node agent), for the job's history.
    pub worker: Option<String>,
    /// Attempts inside the backend that failed before (agents lost mid-job).
    pub earlier: Vec<Attempt>,
}

impl Executed {
    pub fn output(output: Value) -> Executed {
        Executed {
            output,
            worker: None,
            earlier: Vec::new(),
        }
    }
}

pub trait Executor: Send + Sync + 'static {
    fn execute<'a>(&'a self, call: &'a Call<'a>) -> BoxFuture<'a, Result<Executed, AttemptError>>;
}

/// Why one attempt on one backend failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    /// A provider's call ran past one of its phase limits.
    #[error("timed out: {0}")]
    Stalled(#[from] crate::timeouts::Stalled),
    #[error("upstream answered HTTP {status}: {body}")]
    Upstream { status: u16, body: String },
    #[error("upstream rejected the request (HTTP {status}): {body}")]
    Rejected { status: u16, body: String },
    #[error("upstream answered something unreadable: {0}")]
    BadResponse(String),
    #[error("upstream reported failure: {0}")]
    Failed(String),
    #[error("{0}")]
    Media(#[from] MediaError),
    #[error("backend does not support {0:?}")]
    Unsupported(Operation),
    /// Whoever waited for the output left; nothing more is wanted.
    #[error("stopped: the client disconnected")]
    Cancelled,
    /// The backend failed after part of the output had reached the client: no
    /// other backend may take over.
    #[error("failed mid-stream: {0}")]
    MidStream(Box<AttemptError>),
}

impl AttemptError {
    /// Does this failure say the backend is unhealthy (feeds its circuit breaker)?
    pub fn counts_against_backend(&self) -> bool {
        match self {
            AttemptError::Rejected { .. } | AttemptError::Media(_) | AttemptError::Cancelled => {
                false
            }
            AttemptError::MidStream(inner) => inner.counts_against_backend(),
            _ => true,
        }
    }

    /// Is there no point trying another backend? A user's unreachable media URL
    /// fails the same everywhere.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            AttemptError::Media(_) | AttemptError::Cancelled | AttemptError::MidStream(_)
        )
    }
}
