//! Jobs that start while their first write is on its way to disk. A job
//! accepted through [`crate::Scheduler::admit`] (its reservation, payment proof
//! or idempotency record in the same write) calls its backend at once, so the
//! fsync overlaps the backend's work instead of preceding it. Nothing of it is
//! shown or settled before that write is durable: its submitter learns its id
//! only from [`crate::PendingJob::accepted`], and its end (settlement, terminal
//! write, waking waiters) waits for the verdict here. If the write fails, the
//! job is stopped and leaves without an end: nobody learned of it, and nothing
//! was written or charged for it. A crash before the write lands loses a job
//! nobody was told of, as before; only the backend's time is spent.

use crate::flag::Flag;
use std::sync::atomic::{AtomicBool, Ordering};

/// The verdict on a running job's first write.
#[derive(Default)]
pub(crate) struct Acceptance {
    decided: Flag,
    durable: AtomicBool,
}

impl Acceptance {
    /// The first write is durable, or failed.
    pub fn decide(&self, durable: bool) {
        self.durable.store(durable, Ordering::Release);
        self.decided.set();
    }

    /// Waits for the verdict: whether the job was accepted.
    pub async fn durable(&self) -> bool {
        self.decided.wait().await;
        self.durable.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, JobRecord, JobRequest, Origin, Scheduler, SchedulerConfig};
    use gpubridge_protocol::{JobId, JobStatus, Priority};
    use gpubridge_store::{Ack, SlotSink, Store, StoreError, Then, WriteSet, WriteSlot};
    use parking_lot::Mutex;
    use serde_json::json;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn a_verdict_reaches_whoever_waits_before_or_after_it() {
        for durable in [true, false] {
            let acceptance = Arc::new(Acceptance::default());
            let early = tokio::spawn({
                let acceptance = acceptance.clone();
                async move { acceptance.durable().await }
            });
            tokio::task::yield_now().await;
            acceptance.decide(durable);
            assert_eq!(early.await.unwrap(), durable);
            assert_eq!(acceptance.durable().await, durable);
        }
    }

    /// The write a [`Held`] slot took, and how to answer it.
    type Taken = Arc<Mutex<Option<(WriteSet, oneshot::Sender<Result<(), StoreError>>)>>>;

    /// A slot whose write lands (or fails) only when the test says.
    struct Held(Taken);

    impl SlotSink for Held {
        fn submit(self: Box<Self>, writes: WriteSet) -> Ack {
            let (tx, rx) = oneshot::channel();
            *self.0.lock() = Some((writes, tx));
            Ack::waiting(rx)
        }

        fn submit_then(self: Box<Self>, _: WriteSet, _: Then) {
            unreachable!("an accepted job's first write is awaited")
        }
    }

    async fn scheduler(store: &Store) -> Scheduler {
        let mut cfg = SchedulerConfig::default();
        cfg.nodes.enabled = false;
        let registry = prometheus::Registry::new();
        Scheduler::start(
            cfg,
            Catalog::builtin().unwrap(),
            store.clone(),
            &registry,
            None,
        )
        .await
        .unwrap()
    }

    /// An `echo` job admitted through a held slot: its id, its pending
    /// acceptance, and the held write.
    fn admit_held(scheduler: &Scheduler) -> (JobId, crate::PendingJob, Taken) {
        let job = scheduler
            .prepare(JobRequest {
                service: "echo".into(),
                input: json!({"n": 1}),
                priority: Priority::Fast,
                origin: Origin::Run,
                webhook_url: None,
            })
            .unwrap();
        let id = job.id.clone();
        let held = Arc::new(Mutex::new(None));
        let slot = WriteSlot::new(Box::new(Held(held.clone())));
        let pending = scheduler
            .admit(job, None, WriteSet::new(), slot)
            .map_err(|_| "refused")
            .unwrap();
        (id, pending, held)
    }

    /// Waits for the job's backend to have answered (an attempt recorded).
    async fn attempted(scheduler: &Scheduler, id: &JobId) -> Arc<JobRecord> {
        for _ in 0..500 {
            let now = scheduler.status(id).await.unwrap().unwrap();
            if !now.attempts.is_empty() {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the backend was never called")
    }

    #[tokio::test]
    async fn the_backend_runs_while_the_first_write_lands_and_the_end_waits_for_it() {
        let store = Store::memory(&crate::jobs::TABLES);
        let scheduler = scheduler(&store).await;
        let (id, pending, held) = admit_held(&scheduler);
        let running = attempted(&scheduler, &id).await;
        assert!(
            !running.status.is_terminal(),
            "ended before it was accepted"
        );
        let (writes, ack) = held.lock().take().unwrap();
        store.commit(writes).await.unwrap();
        ack.send(Ok(())).unwrap();
        assert_eq!(pending.accepted().await.unwrap().id, id);
        let ended = scheduler
            .wait(&id, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ended.status, JobStatus::Completed);
        let stored = crate::jobs::get(&store, &id).await.unwrap().unwrap();
        assert_eq!(stored.status, JobStatus::Completed);
    }

    #[tokio::test]
    async fn a_job_whose_first_write_fails_leaves_without_an_end() {
        let store = Store::memory(&crate::jobs::TABLES);
        let scheduler = scheduler(&store).await;
        let (id, pending, held) = admit_held(&scheduler);
        attempted(&scheduler, &id).await;
        let (_, ack) = held.lock().take().unwrap();
        ack.send(Err(StoreError::Backend("disk gone".into())))
            .unwrap();
        assert!(pending.accepted().await.is_err());
        let _ = tokio::time::timeout(Duration::from_secs(5), scheduler.idle()).await;
        assert_eq!(scheduler.live_jobs(), 0, "still counted");
        assert!(scheduler.status(&id).await.unwrap().is_none());
        assert!(crate::jobs::get(&store, &id).await.unwrap().is_none());
    }
}
