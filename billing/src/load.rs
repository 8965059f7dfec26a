//! Start-up: every account, its balances replayed from the whole ledger, and
//! how many jobs it has numbered — read from one snapshot, off the async workers.

use crate::accounts::{AccountError, AccountState, Accounts};
use crate::history;
use crate::ledger::{utc_day, Balances, LedgerEntry};
use crate::record::AccountRecord;
use crate::tables::{ACCOUNTS, LEDGER};
use gpubridge_protocol::AccountId;
use gpubridge_scheduler::now_ms;
use gpubridge_store::{ReadMode, Store, StoreError, View};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

struct Loaded {
    accounts: Vec<(AccountRecord, Balances, u64)>,
    max_seq: u64,
    entries: u64,
}

pub(crate) async fn load(accounts: &Accounts) -> Result<(), AccountError> {
    let store = accounts.store.clone();
    let loaded = accounts
        .store
        .read(ReadMode::Snapshot, move |view| {
            let records = read_accounts(&store, view)?;
            let (mut balances, max_seq, entries) = replay_ledger(&store, view)?;
            let mut accounts = Vec::with_capacity(records.len());
            for record in records {
                let jobs = history::next_number(view, record.id)?;
                let money = balances.remove(&record.id).unwrap_or_default();
                accounts.push((record, money, jobs));
            }
            for orphan in balances.keys() {
                tracing::error!(account = %orphan, "ledger entries of an unknown account");
            }
            Ok(Loaded {
                accounts,
                max_seq,
                entries,
            })
        })
        .await?;
    for (record, balances, jobs) in loaded.accounts {
        let id = record.id;
        accounts.by_digest.insert(record.key_digest, id);
        accounts.by_email.insert(record.email.clone(), id);
        let state = AccountState::new(record, balances, jobs);
        accounts.accounts.insert(id, Arc::new(Mutex::new(state)));
    }
    accounts
        .next_seq
        .store(loaded.max_seq + 1, Ordering::Release);
    tracing::info!(
        accounts = accounts.accounts.len(),
        entries = loaded.entries,
        "ledger replayed"
    );
    Ok(())
}

/// Every account record. One that cannot be read would lose its money: refuse to start.
fn read_accounts(store: &Store, view: &dyn View) -> Result<Vec<AccountRecord>, StoreError> {
    let mut records = Vec::new();
    let mut failure = None;
    view.scan(ACCOUNTS, &[], None, &mut |key, value| {
        match store.decode::<AccountRecord>(ACCOUNTS, key, value) {
            Ok(record) => records.push(record),
            Err(e) => failure = Some(e),
        }
        ControlFlow::Continue(())
    })?;
    failure.map_or(Ok(records), Err)
}

/// Balances per account from the whole ledger, the highest sequence number, and
/// how many entries there were.
fn replay_ledger(
    store: &Store,
    view: &dyn View,
) -> Result<(HashMap<AccountId, Balances>, u64, u64), StoreError> {
    let today = utc_day(now_ms());
    let (mut balances, mut max_seq, mut entries) = (HashMap::<AccountId, Balances>::new(), 0, 0u64);
    let mut failure = None;
    view.scan(LEDGER, &[], None, &mut |key, value| {
        match store.decode::<LedgerEntry>(LEDGER, key, value) {
            Ok(entry) => {
                max_seq = max_seq.max(entry.seq);
                entries += 1;
                balances
                    .entry(entry.account)
                    .or_default()
                    .apply(&entry, today);
            }
            Err(e) => failure = Some(e),
        }
        ControlFlow::Continue(())
    })?;
    failure.map_or(Ok((balances, max_seq, entries)), Err)
}
