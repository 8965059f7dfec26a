//! Paying for a job: the price after the account's volume discount is reserved
//! from its balance and checked against its daily limit, then the job, the
//! reservation, its history entry and its Idempotency-Key are one write.
//!
//! No lock is held across that write: the reservation is taken from the
//! in-memory balance under the account's lock (so racing requests cannot spend
//! one cent twice), the lock is released, and the write is awaited; if it
//! fails, the reservation is given back.

use crate::accounts::{AccountError, Accounts};
use crate::config::discounted;
use crate::history;
use crate::idempotency::{IdempotencyClaim, IdempotencyRecord};
use crate::ledger::{utc_day, EntryKind, LedgerEntry};
use crate::tables::IDEMPOTENCY;
use gpubridge_protocol::{AccountId, JobId, Micros};
use gpubridge_scheduler::{now_ms, JobBilling, JobRecord, PreparedJob, Scheduler, SubmitError};
use gpubridge_store::WriteSet;

/// The outcome of an accepted request.
pub enum Admission {
    /// A new job, persisted with its reservation.
    Accepted(Box<JobRecord>),
    /// The same Idempotency-Key and request as an earlier job: that job, charged once.
    Replayed(JobId),
}

/// Why a request did not become a job. Nothing was reserved or written.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// What was taken from an account in memory for one job, to give back if its write fails.
struct Taken {
    reserve: Option<LedgerEntry>,
    number: u64,
    day: u32,
}

impl Accounts {
    /// Reserves the job's price from `account` and accepts the job with it.
    pub async fn admit(
        &self,
        scheduler: &Scheduler,
        account: AccountId,
        mut job: PreparedJob,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Admission, AdmitError> {
        let state = self.state(account)?;
        // Requests with one key take turns, so the second sees the first's job.
        let _held = match claim {
            Some(claim) => Some(self.claims.hold(claim.storage_key(account)).await),
            None => None,
        };
        let mut writes = WriteSet::new();
        if let Some(claim) = claim {
            if let Some(earlier) = self.earlier(account, claim).await? {
                return Ok(Admission::Replayed(earlier));
            }
            let record = IdempotencyRecord {
                fingerprint: claim.fingerprint,
                job_id: job.id.clone(),
                created_ms: now_ms(),
            };
            writes.put_record(IDEMPOTENCY, claim.storage_key(account), &record);
        }
        let slot = self.store.slot().await.map_err(AccountError::from)?;
        let taken = self.take(account, &state, &mut job, &mut writes)?;
        let accepted = match scheduler.admit(job, Some(account), writes, slot) {
            Ok(pending) => pending.accepted().await,
            Err(refused) => Err(refused),
        };
        match accepted {
            Ok(record) => Ok(Admission::Accepted(Box::new(record))),
            Err(e) => {
                let mut s = state.lock();
                if let Some(entry) = &taken.reserve {
                    s.balances.revert(entry, taken.day);
                }
                if s.jobs == taken.number + 1 {
                    s.jobs = taken.number;
                }
                Err(e.into())
            }
        }
    }

    /// The job an earlier request with this key made, if the key is still remembered;
    /// a conflict if that request was another.
    async fn earlier(
        &self,
        account: AccountId,
        claim: &IdempotencyClaim,
    ) -> Result<Option<JobId>, AccountError> {
        let key = claim.storage_key(account);
        let earlier = self
            .store
            .get::<IdempotencyRecord>(IDEMPOTENCY, key)
            .await?
            .filter(|r| now_ms().saturating_sub(r.created_ms) < self.rules.idempotency_ms);
        match earlier {
            None => Ok(None),
            Some(r) if r.fingerprint == claim.fingerprint => Ok(Some(r.job_id)),
            Some(r) => Err(AccountError::IdempotencyConflict { job_id: r.job_id }),
        }
    }

    /// Under the account's lock: checks balance and daily limit, takes the
    /// reservation from memory, numbers the job, and adds both to `writes`.
    fn take(
        &self,
        account: AccountId,
        state: &parking_lot::Mutex<crate::accounts::AccountState>,
        job: &mut PreparedJob,
        writes: &mut WriteSet,
    ) -> Result<Taken, AccountError> {
        let day = utc_day(now_ms());
        let mut s = state.lock();
        let discount_bps = self.rules.tier(s.balances.trailing_spend(day)).discount_bps;
        let cost = discounted(job.estimated_cost, discount_bps);
        let balance = Micros(s.balances.available());
        if balance < cost {
            return Err(AccountError::InsufficientCredits {
                balance,
                needed: cost,
            });
        }
        let spent = Micros(s.balances.day_spend(day));
        if spent.saturating_add(cost) > s.record.daily_limit {
            return Err(AccountError::DailyLimit {
                spent,
                limit: s.record.daily_limit,
                needed: cost,
            });
        }
        job.estimated_cost = cost;
        job.billing = Some(JobBilling {
            account,
            reserved: cost,
            from_price: discounted(job.from_price, discount_bps),
            price_per_second: job.price_per_second,
            discount_bps,
            job_day: day,
            settled: None,
        });
        let reserve = (cost > Micros::ZERO)
            .then(|| self.entry(account, EntryKind::Reserve, cost, Some(&job.id), day, None));
        if let Some(entry) = &reserve {
            s.balances.apply(entry, day);
            Accounts::put_entry(writes, entry);
        }
        let number = s.jobs;
        s.jobs += 1;
        history::write(writes, account, number, &job.id);
        Ok(Taken {
            reserve,
            number,
            day,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, doomed, funded, priced, settle};
    use gpubridge_protocol::JobStatus;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_requests_cannot_spend_the_same_cent_twice() {
        let bench = Arc::new(testing::open().await);
        let id = funded(&bench, "race@example.com", 100_500).await;
        let (accepted, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let jobs = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (bench, accepted, refused, jobs) = (
                    bench.clone(),
                    accepted.clone(),
                    refused.clone(),
                    jobs.clone(),
                );
                tokio::spawn(async move {
                    for _ in 0..50 {
                        match bench
                            .accounts
                            .admit(&bench.scheduler, id, priced(1_000), None)
                            .await
                        {
                            Ok(Admission::Accepted(job)) => {
                                accepted.fetch_add(1, Ordering::Relaxed);
                                jobs.lock().push(job.id);
                            }
                            Err(AdmitError::Account(AccountError::InsufficientCredits {
                                ..
                            })) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => panic!("unexpected outcome"),
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            accepted.load(Ordering::Relaxed),
            100,
            "exactly what $0.1005 buys"
        );
        assert_eq!(refused.load(Ordering::Relaxed), 300);
        let ids = jobs.lock().clone();
        settle(&bench, &ids).await;
        let view = bench.accounts.view(id).unwrap();
        assert_eq!(
            (view.balance, view.charges, view.open_reservations),
            (Micros(500), Micros(100_000), Micros::ZERO)
        );
        let report = crate::audit(&bench.store).await.unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
        assert_eq!(report.jobs_billed, 100);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_idempotency_key_makes_one_job_however_many_race() {
        let bench = Arc::new(testing::open().await);
        let id = funded(&bench, "idem@example.com", 1_000_000).await;
        let claim = IdempotencyClaim::new("req_001".into(), "/run", &serde_json::json!({"a": 1}));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (bench, claim) = (bench.clone(), claim.clone());
                tokio::spawn(async move {
                    match bench
                        .accounts
                        .admit(&bench.scheduler, id, doomed(1_000), Some(&claim))
                        .await
                    {
                        Ok(Admission::Accepted(record)) => record.id,
                        Ok(Admission::Replayed(job)) => job,
                        Err(e) => panic!("refused: {e}"),
                    }
                })
            })
            .collect();
        let mut ids = Vec::new();
        for task in tasks {
            ids.push(task.await.unwrap());
        }
        assert!(ids.iter().all(|j| *j == ids[0]), "{ids:?}");
        settle(&bench, &ids[..1]).await;
        let view = bench.accounts.view(id).unwrap();
        assert_eq!(
            view.balance,
            Micros(1_000_000),
            "reserved once, refunded once"
        );
        let other = IdempotencyClaim::new("req_001".into(), "/run", &serde_json::json!({"a": 2}));
        assert!(matches!(
            bench
                .accounts
                .admit(&bench.scheduler, id, priced(1_000), Some(&other))
                .await,
            Err(AdmitError::Account(
                AccountError::IdempotencyConflict { .. }
            ))
        ));
        let report = crate::audit(&bench.store).await.unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
    }

    #[tokio::test]
    async fn settlement_charges_the_quote_refunds_failures_and_survives_reopen() {
        let bench = testing::open().await;
        let id = funded(&bench, "settle@example.com", 10_000).await;
        let Ok(Admission::Accepted(done)) = bench
            .accounts
            .admit(&bench.scheduler, id, priced(3_000), None)
            .await
        else {
            panic!("accepted")
        };
        let Ok(Admission::Accepted(failed)) = bench
            .accounts
            .admit(&bench.scheduler, id, doomed(2_000), None)
            .await
        else {
            panic!("accepted")
        };
        settle(&bench, &[done.id.clone(), failed.id.clone()]).await;
        let failed = bench.scheduler.status(&failed.id).await.unwrap().unwrap();
        assert_eq!(failed.status, JobStatus::Failed);
        let view = bench.accounts.view(id).unwrap();
        assert_eq!(
            view.charges,
            Micros(3_000),
            "the quote, and nothing for the failure"
        );
        assert_eq!(
            (view.balance, view.open_reservations),
            (Micros(7_000), Micros::ZERO)
        );
        assert_eq!(
            view.daily_spend,
            Micros(3_000),
            "the refund comes off today's spend"
        );

        let reopened = testing::open_on(bench.store.clone(), Default::default()).await;
        let view = reopened.accounts.view(id).unwrap();
        assert_eq!(
            (view.balance, view.charges),
            (Micros(7_000), Micros(3_000)),
            "replayed"
        );
        let history = reopened
            .accounts
            .history(id, crate::PageStart::Offset(0), 10)
            .await
            .unwrap();
        assert_eq!(history.job_ids.len(), 2);
        assert!(crate::audit(&bench.store).await.unwrap().is_clean());
    }

    #[tokio::test]
    async fn a_failed_write_takes_nothing() {
        // No table for job history: every admission's write fails as a whole.
        let mut tables = testing::tables();
        tables.retain(|t| *t != crate::tables::ACCOUNT_JOBS);
        let bench =
            testing::open_on(gpubridge_store::Store::memory(&tables), Default::default()).await;
        let id = funded(&bench, "broken@example.com", 5_000).await;
        let before = bench.accounts.view(id).unwrap();
        let job = priced(1_000);
        let job_id = job.id.clone();
        let refused = bench.accounts.admit(&bench.scheduler, id, job, None).await;
        assert!(
            matches!(refused, Err(AdmitError::Submit(SubmitError::Store(_)))),
            "{:?}",
            refused.err()
        );
        // The job ran while its write was on its way; it leaves unsettled.
        let leaves = bench.scheduler.idle();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), leaves).await;
        assert_eq!(bench.scheduler.live_jobs(), 0, "the job never left");
        assert!(bench.scheduler.status(&job_id).await.unwrap().is_none());
        let after = bench.accounts.view(id).unwrap();
        assert_eq!(
            (after.balance, after.open_reservations, after.daily_spend),
            (before.balance, before.open_reservations, before.daily_spend)
        );
        assert_eq!(
            bench.accounts.state(id).unwrap().lock().jobs,
            0,
            "its number is used again"
        );
    }
}
