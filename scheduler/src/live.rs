//! Jobs in memory: each from acceptance until its terminal state is durable,
//! then for a short while longer (`finished_job_cache_*`) so the `/status`
//! polls that follow completion are answered without touching disk. A job
//! whose submitter waited for it inline leaves at once: its result went back
//! in that answer, so nobody polls for it.

use crate::clock::BackendClock;
use crate::deferred::Unwritten;
use crate::flag::Flag;
use crate::job::{now_ms, JobRecord};
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use gpubridge_protocol::{AccountId, JobId};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

pub(crate) struct LiveJob {
    /// Shared, so a finished record is handed to its waiter and its writer
    /// without copies; changed through [`LiveJob::update`].
    pub record: Mutex<Arc<JobRecord>>,
    /// Turns `true` once the job is terminal and persisted.
    pub done: Flag,
    /// Set when its owner cancels it.
    cancel: Flag,
    /// Its submitting request's, which counts time spent on backends.
    pub clock: Option<BackendClock>,
    /// Requests waiting for its end right now (see [`LiveJob::wait`]).
    waiters: AtomicU32,
    /// Set for a job started before it was written (`deferred`).
    pub unwritten: Option<Box<Unwritten>>,
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

    /// Waits up to `wait` for the job to end; its record either way. While
    /// someone waits, an end hands the result to them instead of the cache.
    pub async fn wait(&self, wait: std::time::Duration) -> Arc<JobRecord> {
        let waiting = Waiting::on(&self.waiters);
        let _ = tokio::time::timeout(wait, self.done.wait()).await;
        drop(waiting);
        self.record.lock().clone()
    }

    /// Changes the record in place (a copy first only if a reader still holds it).
    pub fn update<R>(&self, change: impl FnOnce(&mut JobRecord) -> R) -> R {
        change(Arc::make_mut(&mut self.record.lock()))
    }

    /// The record as it is now, owned.
    pub fn snapshot(&self) -> JobRecord {
        JobRecord::clone(&self.record.lock())
    }

    /// Counts one more waiter for as long as the guard lives.
    pub fn waiting(&self) -> impl Drop + '_ {
        Waiting::on(&self.waiters)
    }

    /// Is a request waiting for its end right now?
    pub fn has_waiters(&self) -> bool {
        self.waiters.load(Ordering::Acquire) > 0
    }

    /// Memory its record holds, roughly: what the finished-job cache budgets.
    fn held_bytes(&self) -> usize {
        let record = self.record.lock();
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        std::mem::size_of::<LiveJob>()
            + record.input.len()
            + text(&record.output)
            + text(&record.error)
            + text(&record.webhook_url)
            + record.attempts.len() * std::mem::size_of::<crate::job::Attempt>()
    }
}

/// One waiter counted, for as long as it waits (its request may be dropped).
struct Waiting<'a>(&'a AtomicU32);

impl<'a> Waiting<'a> {
    fn on(waiters: &'a AtomicU32) -> Waiting<'a> {
        waiters.fetch_add(1, Ordering::AcqRel);
        Waiting(waiters)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long finished jobs are held for status reads, and how many at most.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Keep {
    pub ms: u64,
    pub entries: usize,
    pub bytes: usize,
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
    /// Finished jobs still held, oldest first, with when they finished and
    /// their size.
    finished: Mutex<Held>,
    keep: Keep,
}

#[derive(Default)]
struct Held {
    jobs: VecDeque<(u64, JobId, usize)>,
    bytes: usize,
}

impl LiveJobs {
    pub fn new(keep: Keep) -> LiveJobs {
        LiveJobs {
            jobs: DashMap::new(),
            unfinished: AtomicUsize::new(0),
            by_owner: DashMap::new(),
            idle: Notify::new(),
            finished: Mutex::default(),
            keep,
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

    /// Registers a counted job: persisted, or `unwritten` yet.
    pub fn insert(
        &self,
        record: JobRecord,
        clock: Option<BackendClock>,
        unwritten: Option<Unwritten>,
    ) -> Arc<LiveJob> {
        let live = Arc::new(LiveJob {
            record: Mutex::new(Arc::new(record)),
            done: Flag::default(),
            cancel: Flag::default(),
            clock,
            waiters: AtomicU32::new(0),
            unwritten: unwritten.map(Box::new),
        });
        let id = live.record.lock().id.clone();
        self.jobs.insert(id, live.clone());
        live
    }

    pub fn get(&self, id: &str) -> Option<Arc<LiveJob>> {
        self.jobs.get(id).map(|entry| entry.value().clone())
    }

    /// A job's terminal write is over (and `done` is set): it stops counting,
    /// and is held a while for status reads unless it was `handed` to a
    /// request waiting for it when it ended.
    pub fn finished(&self, live: &LiveJob, handed: bool) {
        let (id, owner) = {
            let record = live.record.lock();
            (record.id.clone(), record.owner)
        };
        if handed {
            self.jobs.remove(&id);
        } else {
            let now = now_ms();
            let bytes = live.held_bytes();
            let mut held = self.finished.lock();
            held.jobs.push_back((now, id, bytes));
            held.bytes += bytes;
            self.evict(&mut held, now);
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

    fn evict(&self, held: &mut Held, now: u64) {
        while let Some((at, id, bytes)) = held.jobs.front() {
            let within = held.jobs.len() <= self.keep.entries
                && held.bytes <= self.keep.bytes
                && now.saturating_sub(*at) < self.keep.ms;
            if within {
                break;
            }
            self.jobs.remove(id);
            held.bytes -= bytes;
            held.jobs.pop_front();
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

    fn keep(seconds: u64, entries: usize, bytes: usize) -> Keep {
        Keep {
            ms: seconds * 1000,
            entries,
            bytes,
        }
    }

    /// Registers and finishes a job; its id.
    fn run_one(jobs: &LiveJobs, name: &str) -> JobId {
        assert!(jobs.try_count(10, None, None).is_ok());
        let live = jobs.insert(sample(name), None, None);
        let id = live.record.lock().id.clone();
        live.done.set();
        jobs.finished(&live, false);
        id
    }

    #[test]
    fn finished_jobs_stay_a_while_within_a_cap() {
        let jobs = LiveJobs::new(keep(3600, 2, usize::MAX));
        let ids: Vec<JobId> = (0..3).map(|n| run_one(&jobs, &format!("j{n}"))).collect();
        assert_eq!(jobs.unfinished(), 0);
        assert!(
            jobs.get(ids[0].as_str()).is_none(),
            "over the cap: the oldest left"
        );
        assert!(jobs.get(ids[2].as_str()).is_some());

        let quick = LiveJobs::new(keep(0, 100, usize::MAX));
        assert!(quick.try_count(1, None, None).is_ok());
        assert_eq!(
            quick.try_count(1, None, None),
            Err(Refused::Full),
            "at the limit"
        );
        quick.uncount(None);
        let id = run_one(&quick, "y");
        assert!(quick.get(id.as_str()).is_none(), "kept for no time");
    }

    #[test]
    fn finished_jobs_held_fit_the_byte_budget() {
        let one = LiveJob {
            record: Mutex::new(Arc::new(sample("size"))),
            done: Flag::default(),
            cancel: Flag::default(),
            clock: None,
            waiters: AtomicU32::new(0),
            unwritten: None,
        }
        .held_bytes();
        let jobs = LiveJobs::new(keep(3600, 100, 2 * one));
        let ids: Vec<JobId> = (0..3).map(|n| run_one(&jobs, &format!("b{n}"))).collect();
        assert!(
            jobs.get(ids[0].as_str()).is_none(),
            "over budget: the oldest left"
        );
        assert!(jobs.get(ids[1].as_str()).is_some());
        assert!(jobs.get(ids[2].as_str()).is_some());
        assert_eq!(
            jobs.finished.lock().bytes,
            2 * one,
            "what left was taken off"
        );
    }

    #[tokio::test]
    async fn a_result_taken_by_its_waiter_is_not_held() {
        let jobs = Arc::new(LiveJobs::new(keep(3600, 100, usize::MAX)));
        assert!(jobs.try_count(10, None, None).is_ok());
        let live = jobs.insert(sample("w"), None, None);
        let id = live.record.lock().id.clone();
        let waiter = tokio::spawn({
            let live = live.clone();
            async move { live.wait(std::time::Duration::from_secs(30)).await }
        });
        while live.waiters.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        live.update(|record| record.status = gpubridge_protocol::JobStatus::Completed);
        let handed = live.has_waiters();
        assert!(handed);
        live.done.set();
        jobs.finished(&live, handed);
        let record = waiter.await.unwrap();
        assert_eq!(record.status, gpubridge_protocol::JobStatus::Completed);
        assert!(jobs.get(id.as_str()).is_none(), "handed over, not cached");
        assert_eq!(jobs.unfinished(), 0);

        let unwatched = run_one(&jobs, "nobody waits");
        assert!(jobs.get(unwatched.as_str()).is_some(), "kept for polls");
    }

    #[test]
    fn each_owner_has_its_own_count() {
        let jobs = LiveJobs::new(keep(0, 100, usize::MAX));
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
        let mut owned = sample("z");
        owned.owner = Some(b);
        jobs.finished(&jobs.insert(owned, None, None), false);
        assert_eq!(jobs.unfinished_of(b), 0);
    }
}
