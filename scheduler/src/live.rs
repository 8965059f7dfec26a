//! Jobs in memory: each from acceptance until its terminal state is durable,
//! then for a short while longer (`finished_job_cache_*`) so the `/status`
//! polls that follow completion are answered without touching disk.

use crate::clock::BackendClock;
use crate::flag::Flag;
use crate::job::{now_ms, JobRecord};
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use gpubridge_protocol::{AccountId, JobId};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

pub(crate) struct LiveJob {
    pub record: Mutex<JobRecord>,
    /// Turns `true` once the job is terminal and persisted.
    pub done: Flag,
    /// Set when its owner cancels it.
    cancel: Flag,
    /// Its submitting request's, which counts time spent on backends.
    pub clock: Option<BackendClock>,
}

impl LiveJob {
    pub fn cancel(&self) {
        self.cancel.set();
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_set()
    }

    /// Resolves once the job is cancelled.
    pub async fn cancelled(&self) {
        self.cancel.wait().await;
    }
}

/// Why a job could not be counted.
#[derive(Debug, PartialEq)]
pub(crate) enum Refused {
    /// `max_live_jobs` are unfinished.
    Full,
    /// Its owner has this many unfinished, its limit.
    Owner(u32),
}

pub(crate) struct LiveJobs {
    jobs: DashMap<JobId, Arc<LiveJob>>,
    /// Accepted and not yet finished: what `max_live_jobs` bounds and shutdown waits for.
    unfinished: AtomicUsize,
    /// The same, per owning account (accounts with none are absent).
    by_owner: DashMap<AccountId, u32>,
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
            by_owner: DashMap::new(),
            idle: Notify::new(),
            finished: Mutex::new(VecDeque::new()),
            keep_ms: keep_seconds.saturating_mul(1000),
            keep_max,
        }
    }

    /// Counts one more unfinished job unless `max` are already unfinished, or
    /// `owner_max` of its owner's.
    pub fn try_count(
        &self,
        max: usize,
        owner: Option<AccountId>,
        owner_max: Option<u32>,
    ) -> Result<(), Refused> {
        if let Some(owner) = owner {
            let mut count = self.by_owner.entry(owner).or_insert(0);
            if owner_max.is_some_and(|limit| *count >= limit) {
                return Err(Refused::Owner(owner_max.unwrap_or_default()));
            }
            *count += 1;
        }
        let counted = self
            .unfinished
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        if counted.is_err() {
            self.uncount_owner(owner);
            return Err(Refused::Full);
        }
        Ok(())
    }

    /// Takes back a count whose job was never registered (its write failed).
    pub fn uncount(&self, owner: Option<AccountId>) {
        self.uncount_owner(owner);
        if self.unfinished.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    fn uncount_owner(&self, owner: Option<AccountId>) {
        let Some(owner) = owner else { return };
        if let Entry::Occupied(mut count) = self.by_owner.entry(owner) {
            *count.get_mut() = count.get().saturating_sub(1);
            if *count.get() == 0 {
                count.remove();
            }
        }
    }

    /// Unfinished jobs of `owner`.
    #[cfg(test)]
    pub fn unfinished_of(&self, owner: AccountId) -> u32 {
        self.by_owner.get(&owner).map_or(0, |n| *n)
    }

    pub fn unfinished(&self) -> usize {
        self.unfinished.load(Ordering::Acquire)
    }

    /// Registers a counted, persisted job.
    pub fn insert(&self, record: JobRecord, clock: Option<BackendClock>) -> Arc<LiveJob> {
        let live = Arc::new(LiveJob {
            record: Mutex::new(record),
            done: Flag::default(),
            cancel: Flag::default(),
            clock,
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
    pub fn finished(&self, id: &JobId, owner: Option<AccountId>) {
        let now = now_ms();
        {
            let mut finished = self.finished.lock();
            finished.push_back((now, id.clone()));
            self.evict(&mut finished, now);
        }
        self.uncount(owner);
    }

    /// Drops a finished job now (its data expired), whatever its time.
    pub fn forget(&self, id: &JobId) {
        self.jobs
            .remove_if(id, |_, live| live.record.lock().status.is_terminal());
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
                assert!(jobs.try_count(10, None, None).is_ok());
                jobs.insert(sample(&format!("j{n}")), None)
                    .record
                    .lock()
                    .id
                    .clone()
            })
            .collect();
        assert_eq!(jobs.unfinished(), 3);
        for id in &ids {
            jobs.finished(id, None);
        }
        assert_eq!(jobs.unfinished(), 0);
        assert!(
            jobs.get(ids[0].as_str()).is_none(),
            "over the cap: the oldest left"
        );
        assert!(jobs.get(ids[2].as_str()).is_some());

        let quick = LiveJobs::new(0, 100);
        assert!(quick.try_count(1, None, None).is_ok());
        assert_eq!(
            quick.try_count(1, None, None),
            Err(Refused::Full),
            "at the limit"
        );
        let id = quick.insert(sample("y"), None).record.lock().id.clone();
        quick.finished(&id, None);
        assert!(quick.get(id.as_str()).is_none(), "kept for no time");
    }

    #[test]
    fn each_owner_has_its_own_count() {
        let jobs = LiveJobs::new(0, 100);
        let (a, b) = (AccountId::random(), AccountId::random());
        assert!(jobs.try_count(10, Some(a), Some(2)).is_ok());
        assert!(jobs.try_count(10, Some(a), Some(2)).is_ok());
        assert_eq!(jobs.try_count(10, Some(a), Some(2)), Err(Refused::Owner(2)));
        assert!(
            jobs.try_count(10, Some(b), Some(2)).is_ok(),
            "another account"
        );
        assert_eq!(jobs.unfinished(), 3, "the refusal counted nothing");
        jobs.uncount(Some(a));
        assert_eq!(jobs.unfinished_of(a), 1);
        assert!(jobs.try_count(10, Some(a), Some(2)).is_ok());
        assert_eq!(jobs.try_count(3, Some(b), None), Err(Refused::Full));
        assert_eq!(
            jobs.unfinished_of(b),
            1,
            "a global refusal gives the owner's count back"
        );
        let id = jobs.insert(sample("z"), None).record.lock().id.clone();
        jobs.finished(&id, Some(b));
        assert_eq!(jobs.unfinished_of(b), 0);
    }
}
