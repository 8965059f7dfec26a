//! USDC top-ups for accounts. An account opens a top-up for a package and is
//! told the exact amount to send — the package's price plus the fee plus a few
//! atomic units that make it unique among open top-ups, so a deposit names its
//! top-up. A watcher follows the asset's transfers to `pay_to` from a persisted
//! block cursor and credits each confirmed deposit once: the transaction hash
//! and the deposit's index within it key the deposit record, written with the
//! ledger entry. A
//! deposit that matched no top-up is credited at the base rate when its sender
//! claims it with a signature.

mod claim;
mod credit;
mod records;
mod watcher;

pub use claim::{claim_message, ClaimError};
pub use credit::CreditError;
pub use records::{Credited, DepositRecord, TopupRecord, CURSORS, DEPOSITS, TOPUPS};
pub use watcher::{Poll, WatchError};

use crate::accounts::Accounts;
use crate::chain::Transfer;
use crate::packages::{self, Package};
use crate::x402::{TopupRules, X402};
use alloy::primitives::{B256, U256};
use gpubridge_protocol::{AccountId, Micros};
use gpubridge_scheduler::now_ms;
use gpubridge_store::{Store, StoreError, WriteSet};
use parking_lot::Mutex;
use records::{topup_id, topup_key, topup_key_of};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TopupError {
    #[error("unknown package {0:?}")]
    UnknownPackage(String),
    #[error("too many top-ups of this package are open; retry in a minute")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Open top-ups by the exact amount that pays them.
type OpenIndex = HashMap<U256, (Vec<u8>, TopupRecord)>;

pub struct Deposits {
    x402: Arc<X402>,
    accounts: Arc<Accounts>,
    store: Store,
    rules: TopupRules,
    open: Mutex<OpenIndex>,
}

/// Atomic units under a cent that make an amount unique (USDC: up to 9,999).
fn unique_range(x402: &X402) -> u64 {
    x402.rules().atomic(Micros(9_999)).to::<u64>().max(1)
}

impl Deposits {
    /// Loads the open top-ups; `None` when top-ups are off.
    pub async fn open(
        x402: Arc<X402>,
        accounts: Arc<Accounts>,
        store: Store,
    ) -> Result<Option<Arc<Deposits>>, StoreError> {
        let Some(rules) = x402.rules().topups.clone() else {
            return Ok(None);
        };
        let open = records::load_open(&store, now_ms().saturating_sub(grace_ms(&rules))).await?;
        tracing::info!(open = open.len(), "USDC top-ups loaded");
        Ok(Some(Arc::new(Deposits {
            x402,
            accounts,
            store,
            rules,
            open: Mutex::new(open),
        })))
    }

    pub fn x402(&self) -> &X402 {
        &self.x402
    }

    pub fn rules(&self) -> &TopupRules {
        &self.rules
    }

    /// Opens a top-up of `package` for `account`: the exact amount to send.
    pub async fn open_topup(
        &self,
        account: AccountId,
        package: &str,
    ) -> Result<TopupRecord, TopupError> {
        let package =
            packages::package(package).ok_or_else(|| TopupError::UnknownPackage(package.into()))?;
        let created_ms = now_ms();
        let key = topup_key(account, created_ms, rand::random());
        let record = TopupRecord {
            account,
            id: topup_id(&key),
            package: package.key.into(),
            amount_atomic: String::new(),
            credits: package.credits,
            created_ms,
            expires_ms: created_ms + self.rules.expiry.as_millis() as u64,
            credited: None,
        };
        let (amount, record) = self.reserve_amount(package, key.clone(), record)?;
        let mut writes = WriteSet::new();
        writes.put_record(TOPUPS, key, &record);
        if let Err(e) = self.store.commit(writes).await {
            // Nobody was told the amount: no deposit can be paying it.
            self.open.lock().remove(&amount);
            return Err(e.into());
        }
        Ok(record)
    }

    /// Gives `record` an amount no open top-up uses (price + fee + a unique
    /// tail) and indexes it under that amount.
    fn reserve_amount(
        &self,
        package: Package,
        key: Vec<u8>,
        mut record: TopupRecord,
    ) -> Result<(U256, TopupRecord), TopupError> {
        let price = Micros(package.price.0 + packages::fee(package.price, self.rules.fee_bps).0);
        let base = self.x402.rules().atomic(price);
        let range = unique_range(&self.x402);
        let mut open = self.open.lock();
        self.expire(&mut open);
        let start = rand::random::<u64>() % range;
        let amount = (0..range)
            .map(|i| base + U256::from(1 + (start + i) % range))
            .find(|amount| !open.contains_key(amount))
            .ok_or(TopupError::Busy)?;
        record.amount_atomic = amount.to_string();
        open.insert(amount, (key, record.clone()));
        Ok((amount, record))
    }

    /// Forgets top-ups past their expiry and grace: their amounts are free again.
    fn expire(&self, open: &mut OpenIndex) {
        let cutoff = now_ms().saturating_sub(grace_ms(&self.rules));
        open.retain(|_, (_, record)| record.expires_ms >= cutoff);
    }

    /// `account`'s top-ups, newest first.
    pub async fn topups_of(
        &self,
        account: AccountId,
        limit: usize,
    ) -> Result<Vec<TopupRecord>, StoreError> {
        let page = self
            .store
            .page(TOPUPS, account.0.to_vec(), None, limit)
            .await?;
        page.items
            .iter()
            .map(|(key, value)| self.store.decode(TOPUPS, key, value))
            .collect()
    }

    /// One of `account`'s top-ups by id.
    pub async fn topup(
        &self,
        account: AccountId,
        id: &str,
    ) -> Result<Option<TopupRecord>, StoreError> {
        match topup_key_of(account, id) {
            Some(key) => self.store.get(TOPUPS, key).await,
            None => Ok(None),
        }
    }
}

/// Numbers each transaction's deposits 0, 1, … in log order, in place of the
/// block's log index (which a reorg can change): the deposit's identity.
pub(crate) fn numbered_within_transactions(mut transfers: Vec<Transfer>) -> Vec<Transfer> {
    transfers.sort_by_key(|t| (t.block, t.log_index));
    let mut seen: HashMap<B256, u64> = HashMap::new();
    for transfer in &mut transfers {
        let next = seen.entry(transfer.tx_hash).or_default();
        transfer.log_index = *next;
        *next += 1;
    }
    transfers
}

/// A deposit sent before its top-up expired may be seen a while after.
fn grace_ms(rules: &TopupRules) -> u64 {
    rules.expiry.as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::Address;

    fn transfer(tx: u8, block: u64, log_index: u64) -> Transfer {
        Transfer {
            from: Address::ZERO,
            to: Address::ZERO,
            value: U256::from(1),
            tx_hash: B256::with_last_byte(tx),
            log_index,
            block,
        }
    }

    #[test]
    fn deposits_are_numbered_within_their_transaction_whatever_block_they_land_in() {
        let before = numbered_within_transactions(vec![
            transfer(1, 10, 7),
            transfer(2, 10, 3),
            transfer(1, 10, 9),
        ]);
        // The same transactions after a reorg: other blocks, other log indexes.
        let after = numbered_within_transactions(vec![
            transfer(1, 12, 40),
            transfer(1, 12, 44),
            transfer(2, 11, 0),
        ]);
        let ids = |list: &[Transfer]| {
            let mut ids: Vec<(B256, u64)> = list.iter().map(|t| (t.tx_hash, t.log_index)).collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(&before), ids(&after));
        assert_eq!(ids(&before).len(), 3);
    }
}
