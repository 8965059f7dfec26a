//! `Accounts`: registration, API-key authentication and rotation, credits,
//! daily limits, and what clients see of an account. Each account's state sits
//! behind its own short lock (no global lock), never held across a write: a
//! change is decided under the lock, handed to the store's writer, and applied
//! to memory once durable. `admission` pays for jobs, `settlement` settles them.

use crate::config::{AccountRules, MAX_DAILY_LIMIT, MIN_DAILY_LIMIT};
use crate::email;
use crate::idempotency::Claims;
use crate::keys::{self, KeyDigest, KeyError, KeyHasher};
use crate::ledger::{utc_day, Balances, EntryKind, LedgerEntry};
use crate::record::{AccountRecord, AutoTopup};
use crate::recovery::{self, RecoveryRequest};
use crate::tables::{ACCOUNTS, API_KEYS, EMAILS, LEDGER};
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use gpubridge_protocol::{AccountId, JobId, Micros};
use gpubridge_scheduler::now_ms;
use gpubridge_store::{ReadMode, Store, StoreError, WriteSet};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
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
    IdempotencyConflict { job_id: JobId },
    #[error("daily limit must be between {MIN_DAILY_LIMIT} and {MAX_DAILY_LIMIT}")]
    LimitOutOfRange,
    #[error("credit amount must be positive")]
    ZeroCredit,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// One account's money and settings as a client sees them.
#[derive(Clone, Debug)]
pub struct AccountView {
    pub id: AccountId,
    pub email: String,
    pub created_ms: u64,
    /// What can be spent (0 while in debt).
    pub balance: Micros,
    /// How far refunds and disputes left the balance below zero: paid jobs are
    /// refused until credits cover it.
    pub debt: Micros,
    /// Taken back from card payments (refunds, disputes).
    pub debits: Micros,
    pub credits: Micros,
    pub charges: Micros,
    pub open_reservations: Micros,
    pub daily_spend: Micros,
    pub daily_limit: Micros,
    pub trailing_30d_spend: Micros,
    pub tier: String,
    pub discount_bps: u32,
    pub auto_topup: Option<AutoTopup>,
}

pub(crate) struct AccountState {
    /// As last made durable: what authentication and views read.
    pub record: AccountRecord,
    /// The newest record handed to the writer; the next change builds on it.
    basis: AccountRecord,
    /// Record changes handed to the writer, and the newest applied here.
    changes: u64,
    applied: u64,
    pub balances: Balances,
    /// Numbers this account's jobs have used: the next job's number.
    pub jobs: u64,
}

impl AccountState {
    pub(crate) fn new(record: AccountRecord, balances: Balances, jobs: u64) -> AccountState {
        AccountState {
            basis: record.clone(),
            record,
            changes: 0,
            applied: 0,
            balances,
            jobs,
        }
    }
}

pub struct Accounts {
    pub(crate) store: Store,
    pub(crate) rules: AccountRules,
    hasher: KeyHasher,
    pub(crate) by_digest: DashMap<KeyDigest, AccountId>,
    pub(crate) by_email: DashMap<String, AccountId>,
    pub(crate) accounts: DashMap<AccountId, Arc<Mutex<AccountState>>>,
    pub(crate) next_seq: AtomicU64,
    pub(crate) claims: Claims,
    /// Told of an account whose settled balance fell below its automatic
    /// top-up threshold (card payments set it).
    low_balance: OnceLock<LowBalance>,
}

/// What is called, without any lock held, when an account needs a top-up.
pub type LowBalance = Box<dyn Fn(AccountId) + Send + Sync>;

impl Accounts {
    /// Loads every account and replays the ledger into balances (see `load`).
    pub async fn open(
        store: Store,
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
            claims: Claims::default(),
            low_balance: OnceLock::new(),
        };
        crate::load::load(&accounts).await?;
        Ok(accounts)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn state(&self, id: AccountId) -> Result<Arc<Mutex<AccountState>>, AccountError> {
        self.accounts
            .get(&id)
            .map(|s| s.clone())
            .ok_or(AccountError::UnknownAccount)
    }

    pub(crate) fn entry(
        &self,
        account: AccountId,
        kind: EntryKind,
        amount: Micros,
        job: Option<&JobId>,
        job_day: u32,
        note: Option<String>,
    ) -> LedgerEntry {
        LedgerEntry {
            account,
            seq: self.next_seq.fetch_add(1, Ordering::AcqRel),
            at_ms: now_ms(),
            kind,
            amount,
            job: job.map(JobId::to_string),
            job_day,
            note,
        }
    }

    pub(crate) fn put_entry(writes: &mut WriteSet, entry: &LedgerEntry) {
        writes.put_record(LEDGER, entry.key(), entry);
    }

    /// Creates an account; returns it with its API key, shown this once.
    pub async fn register(&self, raw_email: &str) -> Result<(AccountView, String), AccountError> {
        let email = email::normalize(raw_email).ok_or(AccountError::BadEmail)?;
        let id = AccountId::random();
        // The address is taken from now on, so two registrations cannot race past each other.
        match self.by_email.entry(email.clone()) {
            Entry::Occupied(_) => return Err(AccountError::EmailTaken(email)),
            Entry::Vacant(slot) => slot.insert(id),
        };
        let created = self.create(id, email.clone()).await;
        if created.is_err() {
            self.by_email.remove(&email);
        }
        let api_key = created?;
        tracing::info!(account = %id, "account registered");
        Ok((self.view(id)?, api_key))
    }

    async fn create(&self, id: AccountId, email: String) -> Result<String, AccountError> {
        let api_key = keys::generate()?;
        let now = now_ms();
        let record = AccountRecord {
            id,
            email,
            key_digest: self.hasher.digest(&api_key),
            created_ms: now,
            key_rotated_ms: now,
            daily_limit: self.rules.default_daily_limit,
            webhook_generation: 0,
            auto_topup: None,
        };
        let mut writes = WriteSet::new();
        writes.put_record(ACCOUNTS, id.0, &record);
        writes.put(EMAILS, record.email.as_bytes(), id.0);
        writes.put(API_KEYS, record.key_digest, id.0);
        let signup = (self.rules.signup_credits > Micros::ZERO).then(|| {
            let note = Some("signup credits".to_string());
            self.entry(
                id,
                EntryKind::Credit,
                self.rules.signup_credits,
                None,
                0,
                note,
            )
        });
        if let Some(entry) = &signup {
            Accounts::put_entry(&mut writes, entry);
        }
        self.store.commit(writes).await?;
        let mut balances = Balances::default();
        if let Some(entry) = &signup {
            balances.apply(entry, utc_day(now));
        }
        self.by_digest.insert(record.key_digest, id);
        self.accounts.insert(
            id,
            Arc::new(Mutex::new(AccountState::new(record, balances, 0))),
        );
        Ok(api_key)
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
    pub async fn rotate_key(&self, id: AccountId) -> Result<String, AccountError> {
        let api_key = keys::generate()?;
        let digest = self.hasher.digest(&api_key);
        self.change_record(id, |record, writes| {
            writes.delete(API_KEYS, record.key_digest);
            writes.put(API_KEYS, digest, id.0);
            record.key_digest = digest;
            record.key_rotated_ms = now_ms();
        })
        .await?;
        tracing::info!(account = %id, "API key rotated");
        Ok(api_key)
    }

    /// When the account's API key was last set (sessions opened with an
    /// older key are over); `None` for unknown accounts.
    pub fn key_rotated_ms(&self, id: AccountId) -> Option<u64> {
        let state = self.state(id).ok()?;
        let at = state.lock().record.key_rotated_ms;
        Some(at)
    }

    /// The account's latest `n` credits and debits (money in and taken back),
    /// newest first. Reads the account's whole ledger range, off the workers.
    pub async fn money_lines(
        &self,
        id: AccountId,
        n: usize,
    ) -> Result<Vec<LedgerEntry>, AccountError> {
        let store = self.store.clone();
        let lines = self
            .store
            .read(ReadMode::Latest, move |view| {
                let mut lines = std::collections::VecDeque::with_capacity(n + 1);
                view.scan(LEDGER, &id.0, None, &mut |key, value| {
                    if let Ok(entry) = store.decode::<LedgerEntry>(LEDGER, key, value) {
                        if matches!(entry.kind, EntryKind::Credit | EntryKind::Debit) {
                            lines.push_front(entry);
                            lines.truncate(n);
                        }
                    }
                    std::ops::ControlFlow::Continue(())
                })?;
                Ok(lines.into_iter().collect())
            })
            .await?;
        Ok(lines)
    }

    /// Charges per UTC day over the last 30 days, oldest first.
    pub fn daily_charges(&self, id: AccountId) -> Vec<(u32, Micros)> {
        let Ok(state) = self.state(id) else {
            return Vec::new();
        };
        let mut state = state.lock();
        let mut days = state.balances.charges_by_day(utc_day(now_ms()));
        days.sort_unstable();
        days.into_iter().map(|(day, m)| (day, Micros(m))).collect()
    }

    /// Sets who is told when an account needs an automatic top-up (once).
    pub fn on_low_balance(&self, hook: LowBalance) {
        let _ = self.low_balance.set(hook);
    }

    /// Tells the low-balance hook if the account's balance is below its
    /// enabled automatic top-up threshold.
    pub(crate) fn check_low_balance(&self, id: AccountId) {
        let low = self.state(id).is_ok_and(|state| {
            let state = state.lock();
            state.record.auto_topup.as_ref().is_some_and(|auto| {
                let balance = i128::from(state.balances.available())
                    - i128::from(state.balances.totals.debt());
                auto.enabled && balance < i128::from(auto.threshold.0)
            })
        });
        if let (true, Some(hook)) = (low, self.low_balance.get()) {
            hook(id);
        }
    }

    pub fn auto_topup(&self, id: AccountId) -> Option<AutoTopup> {
        let state = self.state(id).ok()?;
        let auto = state.lock().record.auto_topup.clone();
        auto
    }

    /// Replaces the account's automatic top-up settings, then checks them
    /// against its balance at once.
    pub async fn set_auto_topup(
        &self,
        id: AccountId,
        settings: Option<AutoTopup>,
    ) -> Result<(), AccountError> {
        self.change_record(id, |record, _| record.auto_topup = settings)
            .await?;
        self.check_low_balance(id);
        Ok(())
    }

    /// How many times the account's webhook secret was rotated (0 for unknown accounts).
    pub fn webhook_generation(&self, id: AccountId) -> u32 {
        self.state(id)
            .map(|state| state.lock().record.webhook_generation)
            .unwrap_or(0)
    }

    /// Moves the account to a new webhook secret; deliveries from now on are
    /// signed with it. Returns the new generation.
    pub async fn rotate_webhook_secret(&self, id: AccountId) -> Result<u32, AccountError> {
        let mut generation = 0;
        self.change_record(id, |record, _| {
            record.webhook_generation = record.webhook_generation.wrapping_add(1);
            generation = record.webhook_generation;
        })
        .await?;
        tracing::info!(account = %id, "webhook secret rotated");
        Ok(generation)
    }

    pub async fn set_daily_limit(
        &self,
        id: AccountId,
        limit: Micros,
    ) -> Result<AccountView, AccountError> {
        if !(MIN_DAILY_LIMIT..=MAX_DAILY_LIMIT).contains(&limit) {
            return Err(AccountError::LimitOutOfRange);
        }
        self.change_record(id, |record, _| record.daily_limit = limit)
            .await?;
        self.view(id)
    }

    /// Changes an account's record: decided on the newest record handed to the
    /// writer and queued in the same critical section (so the store applies
    /// changes in the order they were decided), then applied here once durable
    /// unless a later change already was.
    async fn change_record(
        &self,
        id: AccountId,
        change: impl FnOnce(&mut AccountRecord, &mut WriteSet),
    ) -> Result<(), AccountError> {
        let state = self.state(id)?;
        let slot = self.store.slot().await?;
        let (ack, number, record) = {
            let mut s = state.lock();
            let mut record = s.basis.clone();
            let mut writes = WriteSet::new();
            change(&mut record, &mut writes);
            writes.put_record(ACCOUNTS, id.0, &record);
            s.changes += 1;
            s.basis = record.clone();
            (slot.submit(writes), s.changes, record)
        };
        ack.await?;
        let mut s = state.lock();
        if number > s.applied {
            s.applied = number;
            if record.key_digest != s.record.key_digest {
                // The new digest first, so the account is never keyless.
                self.by_digest.insert(record.key_digest, id);
                self.by_digest.remove(&s.record.key_digest);
            }
            s.record = record;
        }
        Ok(())
    }

    /// Records a support-assisted recovery request. Says nothing of whether the
    /// address has an account: callers answer the same either way.
    pub async fn request_recovery(&self, raw_email: &str) -> Result<(), AccountError> {
        let email = email::normalize(raw_email).ok_or(AccountError::BadEmail)?;
        let account = self.by_email.get(&email).map(|id| id.to_string());
        let request = RecoveryRequest {
            email,
            account,
            at_ms: now_ms(),
        };
        let mut writes = WriteSet::new();
        recovery::write(
            &mut writes,
            &request,
            self.next_seq.fetch_add(1, Ordering::AcqRel),
        );
        Ok(self.store.commit(writes).await?)
    }

    /// Recovery requests, newest first.
    pub async fn recovery_requests(
        &self,
        limit: usize,
    ) -> Result<Vec<RecoveryRequest>, AccountError> {
        Ok(recovery::newest(&self.store, limit).await?)
    }

    /// Adds credits (operator grant, top-up) as one ledger entry.
    pub async fn credit(
        &self,
        id: AccountId,
        amount: Micros,
        note: &str,
    ) -> Result<AccountView, AccountError> {
        if amount == Micros::ZERO {
            return Err(AccountError::ZeroCredit);
        }
        self.credit_with(id, amount, note, WriteSet::new()).await?;
        self.view(id)
    }

    /// Adds credits in the same atomic write as `writes` (what paid for them);
    /// returns the ledger entry.
    pub async fn credit_with(
        &self,
        id: AccountId,
        amount: Micros,
        note: &str,
        writes: WriteSet,
    ) -> Result<LedgerEntry, AccountError> {
        let entry = self.credit_entry(id, amount, note)?;
        self.commit_entry(&entry, writes).await?;
        Ok(entry)
    }

    /// A credit's ledger entry, numbered but not yet written, for records that
    /// name it.
    pub(crate) fn credit_entry(
        &self,
        id: AccountId,
        amount: Micros,
        note: &str,
    ) -> Result<LedgerEntry, AccountError> {
        if amount == Micros::ZERO {
            return Err(AccountError::ZeroCredit);
        }
        self.state(id)?;
        Ok(self.entry(id, EntryKind::Credit, amount, None, 0, Some(note.into())))
    }

    /// A debit's ledger entry (money taken back), numbered but not yet written.
    pub(crate) fn debit_entry(
        &self,
        id: AccountId,
        amount: Micros,
        note: &str,
    ) -> Result<LedgerEntry, AccountError> {
        self.state(id)?;
        Ok(self.entry(id, EntryKind::Debit, amount, None, 0, Some(note.into())))
    }

    /// Writes a credit's or debit's entry with `writes`, then counts it.
    pub(crate) async fn commit_entry(
        &self,
        entry: &LedgerEntry,
        mut writes: WriteSet,
    ) -> Result<(), AccountError> {
        let state = self.state(entry.account)?;
        Accounts::put_entry(&mut writes, entry);
        self.store.commit(writes).await?;
        // Counted once durable: a credit is never promised before it is kept.
        state.lock().balances.apply(entry, utc_day(entry.at_ms));
        tracing::info!(account = %entry.account, kind = entry.kind.as_str(), amount = %entry.amount, note = entry.note.as_deref().unwrap_or_default(), "ledger entry");
        Ok(())
    }

    pub fn view(&self, id: AccountId) -> Result<AccountView, AccountError> {
        let state = self.state(id)?;
        let mut state = state.lock();
        let today = utc_day(now_ms());
        let trailing = state.balances.trailing_spend(today);
        let tier = self.rules.tier(trailing).clone();
        let totals = state.balances.totals;
        Ok(AccountView {
            id,
            email: state.record.email.clone(),
            created_ms: state.record.created_ms,
            balance: Micros(state.balances.available()),
            debt: Micros(totals.debt()),
            debits: Micros(totals.debited),
            credits: Micros(totals.credits),
            charges: Micros(totals.charged),
            open_reservations: Micros(totals.open_reservations().unwrap_or(0)),
            daily_spend: Micros(state.balances.day_spend(today)),
            daily_limit: state.record.daily_limit,
            trailing_30d_spend: trailing,
            tier: tier.name,
            discount_bps: tier.discount_bps,
            auto_topup: state.record.auto_topup.clone(),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, funded, priced};
    use crate::{AccountsConfig, Admission, AdmitError};

    #[tokio::test]
    async fn rotation_retires_the_old_key_and_limits_hold() {
        let bench = testing::open().await;
        let accounts = &bench.accounts;
        let (view, old) = accounts.register("keys@example.com").await.unwrap();
        let id = view.id;
        assert_eq!(accounts.authenticate(&old), Some(id));
        assert!(matches!(
            accounts.register("KEYS@example.com").await,
            Err(AccountError::EmailTaken(_))
        ));
        let new = accounts.rotate_key(id).await.unwrap();
        assert_eq!(accounts.authenticate(&old), None);
        assert_eq!(accounts.authenticate(&new), Some(id));
        assert_eq!(
            accounts.authenticate("gpub_notakeyatall_0000000000000000000000"),
            None
        );

        accounts
            .credit(id, Micros(5_000_000), "test")
            .await
            .unwrap();
        accounts
            .set_daily_limit(id, Micros(1_000_000))
            .await
            .unwrap();
        assert!(matches!(
            accounts.set_daily_limit(id, Micros(999_999)).await,
            Err(AccountError::LimitOutOfRange)
        ));
        assert!(matches!(
            accounts
                .admit(&bench.scheduler, id, priced(600_000), None)
                .await,
            Ok(Admission::Accepted(_))
        ));
        assert!(matches!(
            accounts
                .admit(&bench.scheduler, id, priced(600_000), None)
                .await,
            Err(AdmitError::Account(AccountError::DailyLimit { .. }))
        ));
        let reopened = testing::open_on(bench.store.clone(), AccountsConfig::default()).await;
        assert_eq!(
            reopened.accounts.authenticate(&old),
            None,
            "rotation persisted"
        );
        assert_eq!(reopened.accounts.authenticate(&new), Some(id));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_rotations_leave_exactly_one_key() {
        let bench = testing::open().await;
        let id = funded(&bench, "spin@example.com", 1).await;
        let accounts = bench.accounts.clone();
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let accounts = accounts.clone();
                tokio::spawn(async move { accounts.rotate_key(id).await.unwrap() })
            })
            .collect();
        let mut keys = Vec::new();
        for task in tasks {
            keys.push(task.await.unwrap());
        }
        let valid: Vec<&String> = keys
            .iter()
            .filter(|k| accounts.authenticate(k) == Some(id))
            .collect();
        assert_eq!(valid.len(), 1, "one key wins");
        let reopened = testing::open_on(bench.store.clone(), AccountsConfig::default()).await;
        assert_eq!(
            reopened.accounts.authenticate(valid[0]),
            Some(id),
            "and it is the one on disk"
        );
    }

    #[tokio::test]
    async fn signup_credits_are_a_ledger_entry() {
        let config = AccountsConfig {
            signup_credits_usd: 2.0,
            ..Default::default()
        };
        let bench =
            testing::open_on(gpubridge_store::Store::memory(&testing::tables()), config).await;
        let (view, _) = bench.accounts.register("new@example.com").await.unwrap();
        assert_eq!(
            (view.balance, view.credits),
            (Micros(2_000_000), Micros(2_000_000))
        );
        let report = crate::audit(&bench.store).await.unwrap();
        assert_eq!(
            (report.entries, report.total_credits_micros),
            (1, 2_000_000)
        );
    }
}
