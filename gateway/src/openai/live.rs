//! A running job's stream as a response body that hyper polls directly: each
//! chunk goes from the job's tap to the client's connection with no task in
//! between, then the ending (usage and `[DONE]`, or an error event) once the
//! job is over. The client leaving drops the body, and with it the tap's
//! receiver, which stops the job.

use super::stream::{error_event, output_of, Completion, DONE};
use crate::app::App;
use bytes::Bytes;
use gpubridge_protocol::{JobId, JobStatus};
use gpubridge_scheduler::{JobRecord, StreamReceiver};
use gpubridge_store::StoreError;
use hyper::body::{Body, Frame};
use serde_json::Value;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

type Lookup = Pin<Box<dyn Future<Output = Result<Option<Arc<JobRecord>>, StoreError>> + Send>>;

pub struct LiveEvents {
    app: Arc<App>,
    id: JobId,
    completion: Completion,
    usage_sent: bool,
    phase: Phase,
}

enum Phase {
    /// Chunks as the backend makes them; the first is already in hand.
    Chunks {
        first: Option<Value>,
        chunks: StreamReceiver,
    },
    /// The job is over: reading how it ended.
    Ending(Lookup),
    /// The last events, then the end of the body.
    Tail(std::vec::IntoIter<Bytes>),
}

impl LiveEvents {
    pub fn new(
        app: Arc<App>,
        id: JobId,
        first: Value,
        chunks: StreamReceiver,
        completion: Completion,
    ) -> LiveEvents {
        LiveEvents {
            app,
            id,
            completion,
            usage_sent: false,
            phase: Phase::Chunks {
                first: Some(first),
                chunks,
            },
        }
    }

    /// The next chunk's event; `None` once the job is over.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            let Phase::Chunks { first, chunks } = &mut self.phase else {
                return Poll::Ready(None);
            };
            let chunk = match first.take() {
                Some(chunk) => chunk,
                None => match ready!(chunks.poll_recv(cx)) {
                    Some(chunk) => chunk,
                    None => return Poll::Ready(None),
                },
            };
            if let Some(event) = self.completion.relabel(chunk, &mut self.usage_sent) {
                return Poll::Ready(Some(Bytes::from(event)));
            }
        }
    }

    /// After the last chunk: usage and `[DONE]` for a completed job, an error
    /// event for any other end.
    fn ending(&self, looked_up: Result<Option<Arc<JobRecord>>, StoreError>) -> Vec<Bytes> {
        let record = match looked_up {
            Ok(Some(record)) => record,
            other => {
                tracing::error!(job_id = %self.id, outcome = ?other.map(|r| r.map(|r| r.status)), "streamed job unreadable at its end");
                return vec![error_event(
                    "The job's end could not be read; poll GET /status/:job_id.",
                )];
            }
        };
        if record.status != JobStatus::Completed {
            let message = record
                .error
                .as_deref()
                .unwrap_or("The backend failed mid-stream");
            return vec![error_event(message)];
        }
        let mut events = Vec::with_capacity(2);
        if !self.usage_sent {
            if let Some(usage) = self.completion.usage_event(&output_of(&record)) {
                events.push(Bytes::from(usage));
            }
        }
        events.push(Bytes::from_static(DONE));
        events
    }
}

impl Body for LiveEvents {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        loop {
            match &mut this.phase {
                Phase::Chunks { .. } => {
                    if let Some(event) = ready!(this.poll_chunk(cx)) {
                        return Poll::Ready(Some(Ok(Frame::data(event))));
                    }
                    let (app, id) = (this.app.clone(), this.id.clone());
                    this.phase =
                        Phase::Ending(Box::pin(async move { app.scheduler.status(&id).await }));
                }
                Phase::Ending(lookup) => {
                    let looked_up = ready!(lookup.as_mut().poll(cx));
                    this.phase = Phase::Tail(this.ending(looked_up).into_iter());
                }
                Phase::Tail(events) => {
                    return Poll::Ready(events.next().map(|e| Ok(Frame::data(e))))
                }
            }
        }
    }
}
