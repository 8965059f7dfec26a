//! A job's live link to the client waiting for it: the tap a front door attaches
//! so that chunks reach its client as the backend produces them, or — watching
//! only — so that the job stops when the client leaves. Backends that stream
//! send each chunk through it (waiting when the client reads slowly); the runner
//! stops failing over once a chunk has gone out, and stops the job when the
//! client has gone. Dropping the tap (after the job is persisted) ends the stream.

use gpubridge_protocol::openai::ChatAccumulator;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc;

/// The client is gone: stop producing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client disconnected")]
pub struct Disconnected;

pub struct StreamTap {
    tx: mpsc::Sender<Value>,
    /// Chunks are wanted; `false` for a client that waits for the whole answer.
    delivers: bool,
    /// What has gone out, for the job's output if it stops early, and for
    /// whether a failover is still invisible to the client.
    sent: Mutex<ChatAccumulator>,
}

/// The front door's end: chunks in order; `None` once the job is finished.
pub type StreamReceiver = mpsc::Receiver<Value>;

impl StreamTap {
    /// A tap and its receiver, holding at most `capacity` unread chunks.
    pub fn channel(capacity: usize) -> (StreamTap, StreamReceiver) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let tap = StreamTap {
            tx,
            delivers: true,
            sent: Mutex::new(ChatAccumulator::default()),
        };
        (tap, rx)
    }

    /// A tap that carries no chunks, only whether the client is still there:
    /// the job runs as usual (and fails over as usual) but stops when the
    /// receiver is dropped.
    pub fn watch_only() -> (StreamTap, StreamReceiver) {
        let (mut tap, rx) = StreamTap::channel(1);
        tap.delivers = false;
        (tap, rx)
    }

    /// Does the client want chunks as they are made?
    pub fn delivers(&self) -> bool {
        self.delivers
    }

    /// Passes one chunk on, waiting while the client is behind.
    pub async fn send(&self, chunk: Value) -> Result<(), Disconnected> {
        let permit = self.tx.reserve().await.map_err(|_| Disconnected)?;
        self.sent.lock().add(&chunk);
        permit.send(chunk);
        Ok(())
    }

    /// Has any chunk gone out? Then another backend can no longer take over.
    pub fn started(&self) -> bool {
        self.sent.lock().chunks() > 0
    }

    pub fn chunks(&self) -> u32 {
        self.sent.lock().chunks()
    }

    /// The output made of what went out so far.
    pub fn output(&self) -> Value {
        self.sent.lock().output()
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves when the client has gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn chunks_pass_in_order_and_a_gone_client_is_seen() {
        let (tap, mut rx) = StreamTap::channel(1);
        assert!(!tap.started());
        let chunk = json!({"choices": [{"delta": {"content": "a"}}]});
        tap.send(chunk.clone()).await.unwrap();
        assert!(tap.started());
        assert_eq!(rx.recv().await, Some(chunk.clone()));
        drop(rx);
        assert_eq!(tap.send(chunk).await, Err(Disconnected));
        tap.closed().await;
        assert_eq!(tap.output()["text"], "a");
    }
}
