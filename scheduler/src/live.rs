//! Jobs in memory: each from acceptance until its terminal state is durable,
//! then for a short while longer (`finished_job_cache_*`) so the `/status`
//! polls that follow completion are answered without touching disk.

use crate::job::{now_ms, JobRecord};
use dashmap::DashMap;
use gpubridge_protocol::JobId;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Notify};

pub(crate) struct LiveJob {
    pub record: Mutex<JobRecord>,
    /// Turns `true` once the job is terminal and persisted.
    pub done: watch::Sender<bool>,
    /// Turns `true` when its owner cancels it.
    cancel: watch::Sender<bool>,
}

impl LiveJob {
    pub fn cancel(&self) {
        self.cancel.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Resolves once the job is cancelled.
    pub async fn cancelled(&self) {
        let mut receiver = self.cancel.subscribe();
        // The sender lives as long as `self`: this only ends by cancelling.
        let _ = receiver.wait_for(|cancelled| *cancelled).await;
    }
}

pub(crate) struct LiveJobs {
    jobs: DashMap<JobId, Arc<LiveJob>>,
    /// Accepted and not yet finished: what `max_live_jobs` bounds and shutdown waits for.
    unfinished: AtomicUsize,
    idle: Notify,
    /// Finished jobs still held, oldest first, with when they finished.
    finished: Mutex<VecDeque<(u64, JobId)>>,
    keep_ms: u64,
    keep_max: usize,
}

impl LiveJobs {
    pub fn new(keep_seconds: u64, keep_max: usize) -> LiveJobs {
        LiveJobs {
            jobs: DashMap::new(),
            unfinished: AtomicUsize::new(0),
            idle: Notify::new(),
            finished: Mutex::new(VecDeque::new()),
            keep_ms: keep_seconds.saturating_mul(1000),
            keep_max,
        }
    }

    /// Counts one more unfinished job unless `max` are already running.
    pub fn try_count(&self, max: usize) -> bool {
        self.unfinished
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Takes back a count whose job was never registered (its write failed).
    pub fn uncount(&self) {
        if self.unfinished.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    pub fn unfinished(&self) -> usize {
        self.unfinished.load(Ordering::Acquire)
    }

    /// Registers a counted, persisted job.
    pub fn insert(&self, record: JobRecord) -> Arc<LiveJob> {
        let live = Arc::new(LiveJob {
            record: Mutex::new(record),
            done: watch::channel(false).0,
            cancel: watch::channel(false).0,
        });
        let id = live.record.lock().id.clone();
        self.jobs.insert(id, live.clone());
        live
    }

    pub fn get(&self, id: &str) -> Option<Arc<LiveJob>> {
        self.jobs.get(id).map(|entry| entry.value().clone())
    }

    /// A job reached its durable terminal state: it stops counting, and is held
    /// a while for status reads.
    pub fn finished(&self, id: &JobId) {
        let now = now_ms();
        {
            let mut finished = self.finished.lock();
            finished.push_back((now, id.clone()));
            self.evict(&mut finished, now);
        }
        self.uncount();
    }

    /// Drops finished jobs past their time or beyond the cap.
    pub fn sweep(&self) {
        self.evict(&mut self.finished.lock(), now_ms());
    }

    fn evict(&self, finished: &mut VecDeque<(u64, JobId)>, now: u64) {
        while let Some((at, id)) = finished.front() {
            if finished.len() <= self.keep_max && now.saturating_sub(*at) < self.keep_ms {
                break;
            }
            self.jobs.remove(id);
            finished.pop_front();
        }
    }

    /// Resolves once no job is unfinished.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.unfinished() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::sample;

    #[test]
    fn finished_jobs_stay_a_while_within_a_cap() {
        let jobs = LiveJobs::new(3600, 2);
        let ids: Vec<JobId> = (0..3)
            .map(|n| {
                assert!(jobs.try_count(10));
                jobs.insert(sample(&format!("j{n}")))
                    .record
                    .lock()
                    .id
                    .clone()
            })
            .collect();
        assert_eq!(jobs.unfinished(), 3);
        for id in &ids {
            jobs.finished(id);
        }
        assert_eq!(jobs.unfinished(), 0);
        assert!(
            jobs.get(ids[0].as_str()).is_none(),
            "over the cap: the oldest left"
        );
        assert!(jobs.get(ids[2].as_str()).is_some());

        let quick = LiveJobs::new(0, 100);
        assert!(quick.try_count(1));
        assert!(!quick.try_count(1), "at the limit");
        let id = quick.insert(sample("y")).record.lock().id.clone();
        quick.finished(&id);
        assert!(quick.get(id.as_str()).is_none(), "kept for no time");
    }
}
