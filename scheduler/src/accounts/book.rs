//! `Accounts`: registration, API-key authentication and rotation, credits, and
//! the reservation that pays for a job. Each account's money changes under that
//! account's own lock (no global lock), and every change is a ledger entry in
//! the same RocksDB batch as what it pays for.

use super::config::{discounted, AccountRules, MAX_DAILY_LIMIT, MIN_DAILY_LIMIT};
use super::email;
use super::idempotency::{IdempotencyClaim, IdempotencyRecord};
use super::keys::{self, KeyDigest, KeyError, KeyHasher};
use super::ledger::{utc_day, Balances, EntryKind, LedgerEntry};
use super::record::{decode, encode, AccountId, AccountRecord};
use crate::job::{now_ms, JobBilling, JobRecord, Settlement};
use crate::scheduler::PreparedJob;
use crate::store::{
    Batch, Store, StoreError, CF_ACCOUNTS, CF_ACCOUNT_JOBS, CF_API_KEYS, CF_EMAILS, CF_IDEMPOTENCY,
    CF_LEDGER, CF_RECOVERIES,
};
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use gpubridge_protocol::{JobStatus, Micros};
use parking_lot::Mutex;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("no such account")]
    UnknownAccount,
    #[error("not a valid email address")]
    BadEmail,
    #[error("an account already exists for {0}")]
    EmailTaken(String),
    #[error("insufficient credits: balance {balance}, this job needs {needed}")]
    InsufficientCredits { balance: Micros, needed: Micros },
    #[error(
        "daily spending limit reached: {spent} of {limit} spent today, this job needs {needed}"
    )]
    DailyLimit {
        spent: Micros,
        limit: Micros,
        needed: Micros,
    },
    #[error("Idempotency-Key was already used with a different request (job {job_id})")]
    IdempotencyConflict { job_id: String },
    #[error("daily limit must be between {MIN_DAILY_LIMIT} and {MAX_DAILY_LIMIT}")]
    LimitOutOfRange,
    #[error("credit amount must be positive")]
    ZeroCredit,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Why a reservation did not end in an accepted job.
#[derive(Debug)]
pub enum ReserveError<E> {
    Account(AccountError),
    /// The scheduler refused the job; nothing was reserved.
    Submit(E),
}

impl<E> From<AccountError> for ReserveError<E> {
    fn from(e: AccountError) -> Self {
        ReserveError::Account(e)
    }
}

/// The outcome of an accepted request.
pub enum Admission {
    /// A new job, persisted with its reservation.
    Accepted(Box<JobRecord>),
    /// The same Idempotency-Key and request as an earlier job: that job, charged once.
    Replayed(String),
}

/// One account's money and settings as a client sees them.
#[derive(Clone, Debug, Serialize)]
pub struct AccountView {
    pub id: String,
    pub email: String,
    pub created_ms: u64,
    pub balance: Micros,
    pub credits: Micros,
    pub charges: Micros,
    pub open_reservations: Micros,
    pub daily_spend: Micros,
    pub daily_limit: Micros,
    pub trailing_30d_spend: Micros,
    pub tier: String,
    pub discount_bps: u32,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct RecoveryRequest {
    pub email: String,
    pub account: Option<String>,
    pub at_ms: u64,
}

struct AccountState {
    record: AccountRecord,
    balances: Balances,
}

pub struct Accounts {
    store: Arc<Store>,
    rules: AccountRules,
    hasher: KeyHasher,
    by_digest: DashMap<KeyDigest, AccountId>,
    by_email: DashMap<String, AccountId>,
    accounts: DashMap<AccountId, Arc<Mutex<AccountState>>>,
    next_seq: AtomicU64,
}

impl Accounts {
    /// Loads every account and replays the ledger into balances.
    pub fn open(
        store: Arc<Store>,
        rules: AccountRules,
        key_secret: &[u8],
    ) -> Result<Accounts, AccountError> {
        let accounts = Accounts {
            store,
            rules,
            hasher: KeyHasher::new(key_secret),
            by_digest: DashMap::new(),
            by_email: DashMap::new(),
            accounts: DashMap::new(),
            next_seq: AtomicU64::new(1),
        };
        accounts.load()?;
        Ok(accounts)
    }

    fn load(&self) -> Result<(), AccountError> {
        let store = &*self.store;
        for item in store.scan(CF_ACCOUNTS, &[]) {
            let (_, value) = item?;
            let Some(record) = decode::<AccountRecord>(&value) else {
                tracing::error!("undecodable account record skipped");
                continue;
            };
            self.by_digest.insert(record.key_digest, record.id);
            self.by_email.insert(record.email.clone(), record.id);
            self.accounts.insert(
                record.id,
                Arc::new(Mutex::new(AccountState {
                    record,
                    balances: Balances::default(),
                })),
            );
        }
        let today = utc_day(now_ms());
        let mut max_seq = 0;
        let mut entries = 0u64;
        for item in store.scan(CF_LEDGER, &[]) {
            let (_, value) = item?;
            let Some(entry) = decode::<LedgerEntry>(&value) else {
                tracing::error!("undecodable ledger entry skipped");
                continue;
            };
            max_seq = max_seq.max(entry.seq);
            entries += 1;
            match self.accounts.get(&entry.account) {
                Some(state) => state.lock().balances.apply(&entry, today),
                None => {
                    tracing::error!(account = %entry.account, "ledger entry of an unknown account")
                }
            }
        }
        self.next_seq.store(max_seq + 1, Ordering::Release);
        tracing::info!(accounts = self.accounts.len(), entries, "ledger replayed");
        Ok(())
    }

    fn state(&self, id: AccountId) -> Result<Arc<Mutex<AccountState>>, AccountError> {
        self.accounts
            .get(&id)
            .map(|s| s.clone())
            .ok_or(AccountError::UnknownAccount)
    }

    fn entry(
        &self,
        account: AccountId,
        kind: EntryKind,
        amount: Micros,
        job: Option<&str>,
        job_day: u32,
        note: Option<String>,
    ) -> LedgerEntry {
        LedgerEntry {
            account,
            seq: self.next_seq.fetch_add(1, Ordering::AcqRel),
            at_ms: now_ms(),
            kind,
            amount,
            job: job.map(str::to_string),
            job_day,
            note,
        }
    }

    fn put_entry(&self, batch: &mut Batch, entry: &LedgerEntry) {
        batch.put_cf(self.store.cf(CF_LEDGER), entry.key(), encode(entry));
    }

    /// Creates an account; returns it with its API key, shown this once.
    pub fn register(&self, raw_email: &str) -> Result<(AccountView, String), AccountError> {
        let email = email::normalize(raw_email).ok_or(AccountError::BadEmail)?;
        let slot = match self.by_email.entry(email.clone()) {
            Entry::Occupied(_) => return Err(AccountError::EmailTaken(email)),
            Entry::Vacant(slot) => slot,
        };
        let api_key = keys::generate()?;
        let now = now_ms();
        let record = AccountRecord {
            id: AccountId::random(),
            email,
            key_digest: self.hasher.digest(&api_key),
            created_ms: now,
            key_rotated_ms: now,
            daily_limit: self.rules.default_daily_limit,
        };
        let mut batch = Batch::default();
        batch.put_cf(self.store.cf(CF_ACCOUNTS), record.id.0, encode(&record));
        batch.put_cf(
            self.store.cf(CF_EMAILS),
            record.email.as_bytes(),
            record.id.0,
        );
        batch.put_cf(self.store.cf(CF_API_KEYS), record.key_digest, record.id.0);
        let mut balances = Balances::default();
        let signup = (self.rules.signup_credits > Micros::ZERO).then(|| {
            self.entry(
                record.id,
                EntryKind::Credit,
                self.rules.signup_credits,
                None,
                0,
                Some("signup credits".into()),
            )
        });
        if let Some(entry) = &signup {
            self.put_entry(&mut batch, entry);
        }
        self.store.write(batch)?;
        if let Some(entry) = &signup {
            balances.apply(entry, utc_day(now));
        }
        let id = record.id;
        self.by_digest.insert(record.key_digest, id);
        self.accounts
            .insert(id, Arc::new(Mutex::new(AccountState { record, balances })));
        slot.insert(id);
        tracing::info!(account = %id, "account registered");
        Ok((self.view(id)?, api_key))
    }

    /// The account an API key belongs to. The key is hashed before any lookup and
    /// digests are compared in constant time.
    pub fn authenticate(&self, api_key: &str) -> Option<AccountId> {
        if !keys::looks_like_key(api_key) {
            return None;
        }
        let digest = self.hasher.digest(api_key);
        let id = *self.by_digest.get(&digest)?;
        let state = self.accounts.get(&id)?.clone();
        let current = state.lock().record.key_digest;
        bool::from(current[..].ct_eq(&digest[..])).then_some(id)
    }

    /// Replaces the account's key; the old one stops working at once.
    pub fn rotate_key(&self, id: AccountId) -> Result<String, AccountError> {
        let state = self.state(id)?;
        let mut state = state.lock();
        let api_key = keys::generate()?;
        let mut record = state.record.clone();
        let old = record.key_digest;
        record.key_digest = self.hasher.digest(&api_key);
        record.key_rotated_ms = now_ms();
        let mut batch = Batch::default();
        batch.delete_cf(self.store.cf(CF_API_KEYS), old);
        batch.put_cf(self.store.cf(CF_API_KEYS), record.key_digest, id.0);
        batch.put_cf(self.store.cf(CF_ACCOUNTS), id.0, encode(&record));
        self.store.write(batch)?;
        // Memory follows disk: the new digest first, so the account is never keyless.
        self.by_digest.insert(record.key_digest, id);
        self.by_digest.remove(&old);
        state.record = record;
        tracing::info!(account = %id, "API key rotated");
        Ok(api_key)
    }

    /// Records a support-assisted recovery request. Says nothing of whether the
    /// address has an account: callers answer the same either way.
    pub fn request_recovery(&self, raw_email: &str) -> Result<(), AccountError> {
        let email = email::normalize(raw_email).ok_or(AccountError::BadEmail)?;
        let account = self.by_email.get(&email).map(|id| id.to_string());
        let at_ms = now_ms();
        let request = RecoveryRequest {
            email,
            account,
            at_ms,
        };
        let mut key = Vec::with_capacity(16);
        key.extend_from_slice(&at_ms.to_be_bytes());
        // A sequence, not randomness, so requests in one millisecond keep their order.
        key.extend_from_slice(&self.next_seq.fetch_add(1, Ordering::AcqRel).to_be_bytes());
        let mut batch = Batch::default();
        batch.put_cf(self.store.cf(CF_RECOVERIES), key, encode(&request));
        self.store.write(batch)?;
        Ok(())
    }

    /// Recovery requests, newest first.
    pub fn recovery_requests(&self, limit: usize) -> Result<Vec<RecoveryRequest>, AccountError> {
        let mut out = Vec::new();
        for item in self.store.scan_reverse(CF_RECOVERIES) {
            let (_, value) = item?;
            if let Some(request) = decode(&value) {
                out.push(request);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Adds credits (operator grant, top-up) as one ledger entry.
    pub fn credit(
        &self,
        id: AccountId,
        amount: Micros,
        note: &str,
    ) -> Result<AccountView, AccountError> {
        if amount == Micros::ZERO {
            return Err(AccountError::ZeroCredit);
        }
        let state = self.state(id)?;
        {
            let mut state = state.lock();
            let entry = self.entry(id, EntryKind::Credit, amount, None, 0, Some(note.into()));
            let mut batch = Batch::default();
            self.put_entry(&mut batch, &entry);
            self.store.write(batch)?;
            state.balances.apply(&entry, utc_day(entry.at_ms));
        }
        tracing::info!(account = %id, amount = %amount, note, "credits added");
        self.view(id)
    }

    pub fn set_daily_limit(
        &self,
        id: AccountId,
        limit: Micros,
    ) -> Result<AccountView, AccountError> {
        if !(MIN_DAILY_LIMIT..=MAX_DAILY_LIMIT).contains(&limit) {
            return Err(AccountError::LimitOutOfRange);
        }
        let state = self.state(id)?;
        {
            let mut state = state.lock();
            let mut record = state.record.clone();
            record.daily_limit = limit;
            let mut batch = Batch::default();
            batch.put_cf(self.store.cf(CF_ACCOUNTS), id.0, encode(&record));
            self.store.write(batch)?;
            state.record = record;
        }
        self.view(id)
    }

    pub fn view(&self, id: AccountId) -> Result<AccountView, AccountError> {
        let state = self.state(id)?;
        let mut state = state.lock();
        let today = utc_day(now_ms());
        let trailing = state.balances.trailing_spend(today);
        let tier = self.rules.tier(trailing).clone();
        let totals = state.balances.totals;
        Ok(AccountView {
            id: id.to_string(),
            email: state.record.email.clone(),
            created_ms: state.record.created_ms,
            balance: Micros(state.balances.available()),
            credits: Micros(totals.credits),
            charges: Micros(totals.charged),
            open_reservations: Micros(totals.open_reservations().unwrap_or(0)),
            daily_spend: Micros(state.balances.day_spend(today)),
            daily_limit: state.record.daily_limit,
            trailing_30d_spend: trailing,
            tier: tier.name,
            discount_bps: tier.discount_bps,
        })
    }

    /// An account by id (`acct_…`) or email, for operators.
    pub fn find(&self, query: &str) -> Option<AccountId> {
        if let Ok(id) = query.parse::<AccountId>() {
            return self.accounts.contains_key(&id).then_some(id);
        }
        let email = email::normalize(query)?;
        self.by_email.get(&email).map(|id| *id)
    }

    /// Reserves the job's price (after the account's volume discount) and accepts it
    /// through `submit`, which persists the job with the reservation in one batch.
    /// The account stays locked from the balance check to the write, so racing
    /// requests cannot spend the same cent twice or create two jobs for one
    /// Idempotency-Key.
    pub fn reserve_and_submit<E>(
        &self,
        id: AccountId,
        mut job: PreparedJob,
        idempotency: Option<&IdempotencyClaim>,
        submit: impl FnOnce(PreparedJob, Batch) -> Result<JobRecord, E>,
    ) -> Result<Admission, ReserveError<E>> {
        let state = self.state(id)?;
        let mut state = state.lock();
        let now = now_ms();
        let today = utc_day(now);
        let mut batch = Batch::default();
        if let Some(claim) = idempotency {
            let key = claim.storage_key(id);
            let cf = self.store.cf(CF_IDEMPOTENCY);
            let earlier = self
                .store
                .get(CF_IDEMPOTENCY, &key)
                .map_err(AccountError::from)?
                .and_then(|bytes| decode::<IdempotencyRecord>(&bytes))
                .filter(|r| now.saturating_sub(r.created_ms) < self.rules.idempotency_ms);
            if let Some(earlier) = earlier {
                return if earlier.fingerprint == claim.fingerprint {
                    Ok(Admission::Replayed(earlier.job_id))
                } else {
                    Err(AccountError::IdempotencyConflict {
                        job_id: earlier.job_id,
                    }
                    .into())
                };
            }
            let record = IdempotencyRecord {
                fingerprint: claim.fingerprint,
                job_id: job.id.clone(),
                created_ms: now,
            };
            batch.put_cf(cf, key, encode(&record));
        }
        let trailing = state.balances.trailing_spend(today);
        let discount_bps = self.rules.tier(trailing).discount_bps;
        let cost = discounted(job.estimated_cost, discount_bps);
        let balance = Micros(state.balances.available());
        if balance < cost {
            return Err(AccountError::InsufficientCredits {
                balance,
                needed: cost,
            }
            .into());
        }
        let spent = Micros(state.balances.day_spend(today));
        if spent.saturating_add(cost) > state.record.daily_limit {
            return Err(AccountError::DailyLimit {
                spent,
                limit: state.record.daily_limit,
                needed: cost,
            }
            .into());
        }
        job.estimated_cost = cost;
        job.billing = Some(JobBilling {
            account: id,
            reserved: cost,
            from_price: discounted(job.from_price, discount_bps),
            price_per_second: job.price_per_second,
            discount_bps,
            job_day: today,
            settled: None,
        });
        let reserve = (cost > Micros::ZERO)
            .then(|| self.entry(id, EntryKind::Reserve, cost, Some(&job.id), today, None));
        if let Some(entry) = &reserve {
            self.put_entry(&mut batch, entry);
        }
        batch.put_cf(
            self.store.cf(CF_ACCOUNT_JOBS),
            history_key(id, now, &job.id),
            b"",
        );
        let record = submit(job, batch).map_err(ReserveError::Submit)?;
        if let Some(entry) = &reserve {
            state.balances.apply(entry, today);
        }
        Ok(Admission::Accepted(Box::new(record)))
    }

    /// Ids of an account's jobs, newest first.
    pub fn job_ids(
        &self,
        id: AccountId,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<String>, AccountError> {
        let mut ids = Vec::with_capacity(limit);
        for item in self
            .store
            .scan(CF_ACCOUNT_JOBS, &id.0)
            .skip(offset)
            .take(limit)
        {
            let (key, _) = item?;
            if let Some(job_id) = key
                .get(HISTORY_PREFIX..)
                .and_then(|b| std::str::from_utf8(b).ok())
            {
                ids.push(job_id.to_string());
            }
        }
        Ok(ids)
    }

    /// Forgets Idempotency-Keys older than the configured window; returns how many.
    pub fn sweep_idempotency(&self) -> Result<usize, AccountError> {
        let now = now_ms();
        let mut batch = Batch::default();
        let mut removed = 0;
        for item in self.store.scan(CF_IDEMPOTENCY, &[]) {
            let (key, value) = item?;
            let expired = decode::<IdempotencyRecord>(&value)
                .is_none_or(|r| now.saturating_sub(r.created_ms) >= self.rules.idempotency_ms);
            if expired {
                batch.delete_cf(self.store.cf(CF_IDEMPOTENCY), key);
                removed += 1;
            }
        }
        if removed > 0 {
            self.store.write(batch)?;
        }
        Ok(removed)
    }

    /// The charge and release that settle a finished job's reservation: the work
    /// done at the quoted terms, never more than was reserved.
    fn settle(status: JobStatus, seconds: Option<f64>, billing: &JobBilling) -> Settlement {
        let charged = match status {
            JobStatus::Completed => {
                let seconds = seconds.unwrap_or(0.0);
                let by_time = discounted(
                    Micros::per_second_times(billing.price_per_second, seconds),
                    billing.discount_bps,
                );
                by_time.max(billing.from_price).min(billing.reserved)
            }
            _ => Micros::ZERO,
        };
        Settlement {
            charged,
            refunded: billing
                .reserved
                .checked_sub(charged)
                .unwrap_or(Micros::ZERO),
        }
    }

    /// The charge and release of a settled job, as (kind, amount) with nothing empty.
    fn settlement_parts(job: &JobRecord) -> Option<(&JobBilling, [(EntryKind, Micros); 2])> {
        let billing = job.billing.as_ref()?;
        let settled = billing.settled?;
        Some((
            billing,
            [
                (EntryKind::Charge, settled.charged),
                (EntryKind::Release, settled.refunded),
            ],
        ))
    }
}

impl crate::hooks::JobHooks for Accounts {
    fn on_terminal(&self, job: &mut JobRecord, batch: &mut Batch) {
        let (status, seconds) = (job.status, job.execution_seconds());
        let Some(billing) = job.billing.as_mut() else {
            return;
        };
        if billing.settled.is_some() {
            return;
        }
        let settlement = Accounts::settle(status, seconds, billing);
        billing.settled = Some(settlement);
        let Some((billing, parts)) = Accounts::settlement_parts(job) else {
            return;
        };
        for (kind, amount) in parts.into_iter().filter(|(_, a)| *a > Micros::ZERO) {
            let entry = self.entry(
                billing.account,
                kind,
                amount,
                Some(&job.id),
                billing.job_day,
                None,
            );
            self.put_entry(batch, &entry);
        }
    }

    fn after_persist(&self, job: &JobRecord) {
        let Some((billing, parts)) = Accounts::settlement_parts(job) else {
            return;
        };
        let Ok(state) = self.state(billing.account) else {
            return;
        };
        let now = now_ms();
        let mut state = state.lock();
        for (kind, amount) in parts {
            // The persisted entries' sequence numbers do not matter to balances.
            let applied = LedgerEntry {
                account: billing.account,
                seq: 0,
                at_ms: now,
                kind,
                amount,
                job: None,
                job_day: billing.job_day,
                note: None,
            };
            state.balances.apply(&applied, utc_day(now));
        }
    }
}

/// Bytes before the job id in a history key: account id and inverted time.
const HISTORY_PREFIX: usize = 16 + 8;

/// `account ‖ (u64::MAX − ms) ‖ job id`: an account's jobs, newest first.
fn history_key(id: AccountId, ms: u64, job_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(HISTORY_PREFIX + job_id.len());
    key.extend_from_slice(&id.0);
    key.extend_from_slice(&(u64::MAX - ms).to_be_bytes());
    key.extend_from_slice(job_id.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::config::AccountsConfig;
    use crate::hooks::JobHooks;
    use crate::job::{sample, Origin};
    use gpubridge_protocol::Priority;

    fn open(dir: &std::path::Path) -> (Arc<Store>, Accounts) {
        let store = Arc::new(Store::open(dir, false).unwrap());
        let rules = AccountsConfig::default().rules().unwrap();
        let accounts = Accounts::open(store.clone(), rules, &[42; 32]).unwrap();
        (store, accounts)
    }

    fn prepared(cost: u64) -> PreparedJob {
        PreparedJob {
            id: uuid::Uuid::new_v4().to_string(),
            service: "echo".into(),
            model: None,
            input: serde_json::json!({}),
            priority: Priority::Fast,
            origin: Origin::Run,
            webhook_url: None,
            estimated_cost: Micros(cost),
            estimated_seconds: 1.0,
            from_price: Micros(cost),
            price_per_second: Micros(0),
            billing: None,
        }
    }

    /// Persists the job with the reservation batch, as the scheduler does.
    fn submit(
        store: &Store,
    ) -> impl FnOnce(PreparedJob, Batch) -> Result<JobRecord, StoreError> + '_ {
        move |job, batch| {
            let mut record = sample(&job.id);
            record.estimated_cost = job.estimated_cost;
            record.billing = job.billing;
            store.insert_job(&record, batch)?;
            Ok(record)
        }
    }

    fn finish(store: &Store, accounts: &Accounts, mut job: JobRecord, status: JobStatus) {
        job.status = status;
        job.execution_us = Some(1_000_000);
        let mut batch = Batch::default();
        accounts.on_terminal(&mut job, &mut batch);
        store.update_job(&job, batch).unwrap();
        accounts.after_persist(&job);
    }

    #[test]
    fn racing_threads_cannot_spend_the_same_cent_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (store, accounts) = open(dir.path());
        let (view, _) = accounts.register("race@example.com").unwrap();
        let id: AccountId = view.id.parse().unwrap();
        accounts.credit(id, Micros(100_500), "test").unwrap();
        let accepted = std::sync::atomic::AtomicUsize::new(0);
        let refused = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..50 {
                        match accounts.reserve_and_submit(id, prepared(1_000), None, submit(&store))
                        {
                            Ok(Admission::Accepted(_)) => accepted.fetch_add(1, Ordering::Relaxed),
                            Err(ReserveError::Account(AccountError::InsufficientCredits {
                                ..
                            })) => refused.fetch_add(1, Ordering::Relaxed),
                            _ => panic!("unexpected outcome"),
                        };
                    }
                });
            }
        });
        assert_eq!(
            accepted.load(Ordering::Relaxed),
            100,
            "exactly what $0.1005 buys"
        );
        assert_eq!(refused.load(Ordering::Relaxed), 300);
        let view = accounts.view(id).unwrap();
        assert_eq!(
            (view.balance, view.open_reservations),
            (Micros(500), Micros(100_000))
        );
        let report = crate::accounts::audit(&store).unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
        assert_eq!(report.jobs_open, 100);
    }

    #[test]
    fn settlement_charges_at_most_the_reservation_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let id;
        {
            let (store, accounts) = open(dir.path());
            let (view, _) = accounts.register("settle@example.com").unwrap();
            id = view.id.parse::<AccountId>().unwrap();
            accounts.credit(id, Micros(10_000), "test").unwrap();
            let mut job = prepared(3_000);
            job.from_price = Micros(1_000);
            job.price_per_second = Micros(1_000_000_000); // a huge rate: capped at the reservation
            let Ok(Admission::Accepted(done)) =
                accounts.reserve_and_submit(id, job, None, submit(&store))
            else {
                panic!("accepted")
            };
            finish(&store, &accounts, *done, JobStatus::Completed);
            let Ok(Admission::Accepted(failed)) =
                accounts.reserve_and_submit(id, prepared(2_000), None, submit(&store))
            else {
                panic!("accepted")
            };
            finish(&store, &accounts, *failed, JobStatus::Failed);
            let view = accounts.view(id).unwrap();
            assert_eq!(
                view.charges,
                Micros(3_000),
                "capped, and nothing for the failure"
            );
            assert_eq!(view.balance, Micros(7_000));
            assert_eq!(view.open_reservations, Micros::ZERO);
            assert_eq!(
                view.daily_spend,
                Micros(3_000),
                "the refund comes off today's spend"
            );
        }
        let (store, accounts) = open(dir.path());
        let view = accounts.view(id).unwrap();
        assert_eq!(
            (view.balance, view.charges),
            (Micros(7_000), Micros(3_000)),
            "replayed"
        );
        assert!(crate::accounts::audit(&store).unwrap().is_clean());
    }

    #[test]
    fn one_idempotency_key_makes_one_job_however_many_race() {
        let dir = tempfile::tempdir().unwrap();
        let (store, accounts) = open(dir.path());
        let (view, _) = accounts.register("idem@example.com").unwrap();
        let id: AccountId = view.id.parse().unwrap();
        accounts.credit(id, Micros(1_000_000), "test").unwrap();
        let claim = IdempotencyClaim::new("req_001".into(), "/run", &serde_json::json!({"a": 1}));
        let ids = parking_lot::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    let id = match accounts.reserve_and_submit(
                        id,
                        prepared(1_000),
                        Some(&claim),
                        submit(&store),
                    ) {
                        Ok(Admission::Accepted(record)) => record.id,
                        Ok(Admission::Replayed(job)) => job,
                        Err(_) => panic!("refused"),
                    };
                    ids.lock().push(id);
                });
            }
        });
        let ids = ids.into_inner();
        assert!(ids.iter().all(|j| *j == ids[0]), "{ids:?}");
        assert_eq!(
            accounts.view(id).unwrap().open_reservations,
            Micros(1_000),
            "reserved once"
        );
        let other = IdempotencyClaim::new("req_001".into(), "/run", &serde_json::json!({"a": 2}));
        assert!(matches!(
            accounts.reserve_and_submit(id, prepared(1_000), Some(&other), submit(&store)),
            Err(ReserveError::Account(
                AccountError::IdempotencyConflict { .. }
            ))
        ));
    }

    #[test]
    fn rotation_retires_the_old_key_and_limits_hold() {
        let dir = tempfile::tempdir().unwrap();
        let (store, accounts) = open(dir.path());
        let (view, old) = accounts.register("keys@example.com").unwrap();
        let id: AccountId = view.id.parse().unwrap();
        assert_eq!(accounts.authenticate(&old), Some(id));
        assert!(matches!(
            accounts.register("KEYS@example.com"),
            Err(AccountError::EmailTaken(_))
        ));
        let new = accounts.rotate_key(id).unwrap();
        assert_eq!(accounts.authenticate(&old), None);
        assert_eq!(accounts.authenticate(&new), Some(id));
        assert_eq!(
            accounts.authenticate("gpub_notakeyatall_0000000000000000000000"),
            None
        );

        accounts.credit(id, Micros(5_000_000), "test").unwrap();
        accounts.set_daily_limit(id, Micros(1_000_000)).unwrap();
        assert!(matches!(
            accounts.set_daily_limit(id, Micros(999_999)),
            Err(AccountError::LimitOutOfRange)
        ));
        assert!(accounts
            .reserve_and_submit(id, prepared(600_000), None, submit(&store))
            .is_ok());
        assert!(matches!(
            accounts.reserve_and_submit(id, prepared(600_000), None, submit(&store)),
            Err(ReserveError::Account(AccountError::DailyLimit { .. }))
        ));
        drop((accounts, store));
        let (_, accounts) = open(dir.path());
        assert_eq!(accounts.authenticate(&old), None, "rotation persisted");
        assert_eq!(accounts.authenticate(&new), Some(id));
    }

    #[test]
    fn signup_credits_are_a_ledger_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), false).unwrap());
        let config = AccountsConfig {
            signup_credits_usd: 2.0,
            ..Default::default()
        };
        let accounts = Accounts::open(store.clone(), config.rules().unwrap(), &[1; 32]).unwrap();
        let (view, _) = accounts.register("new@example.com").unwrap();
        assert_eq!(
            (view.balance, view.credits),
            (Micros(2_000_000), Micros(2_000_000))
        );
        let report = crate::accounts::audit(&store).unwrap();
        assert_eq!(
            (report.entries, report.total_credits_micros),
            (1, 2_000_000)
        );
    }

    #[test]
    fn the_audit_catches_a_forged_entry() {
        let dir = tempfile::tempdir().unwrap();
        let (store, accounts) = open(dir.path());
        let (view, _) = accounts.register("audit@example.com").unwrap();
        let id: AccountId = view.id.parse().unwrap();
        accounts.credit(id, Micros(1_000), "test").unwrap();
        let Ok(Admission::Accepted(job)) =
            accounts.reserve_and_submit(id, prepared(400), None, submit(&store))
        else {
            panic!("accepted")
        };
        assert!(crate::accounts::audit(&store).unwrap().is_clean());
        // A release nobody settled: money appears from nowhere.
        let forged = accounts.entry(id, EntryKind::Release, Micros(400), Some(&job.id), 0, None);
        let mut batch = Batch::default();
        accounts.put_entry(&mut batch, &forged);
        store.write(batch).unwrap();
        let report = crate::accounts::audit(&store).unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("unfinished but already settled")),
            "{:?}",
            report.problems
        );
    }
}
