//! What USDC top-ups store: each top-up an account opened (by account, newest
//! first), each deposit credited (by transaction and log index: the key that
//! makes crediting happen once), and how far the watcher has read the chain.

use alloy::primitives::{B256, U256};
use gpubridge_protocol::{AccountId, Micros};
use gpubridge_store::{Record, Store, StoreError, Table};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// `account ‖ inverted created_ms ‖ 8 random bytes` → [`TopupRecord`].
pub const TOPUPS: Table = Table("crypto_topups");
/// `tx hash ‖ index among the transaction's deposits` → [`DepositRecord`].
pub const DEPOSITS: Table = Table("crypto_deposits");
/// Watcher name → [`Cursor`].
pub const CURSORS: Table = Table("chain_cursors");

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopupRecord {
    pub account: AccountId,
    /// The key's last 16 bytes, hex: the top-up's id.
    pub id: String,
    pub package: String,
    /// Exactly what to send, in atomic units; unique among open top-ups.
    pub amount_atomic: String,
    pub credits: Micros,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub credited: Option<Credited>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credited {
    pub transaction: String,
    pub log_index: u64,
    pub at_ms: u64,
}

impl Record for TopupRecord {
    const KIND: &'static str = "crypto top-up";
    const VERSION: u8 = 1;
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositRecord {
    pub account: AccountId,
    pub from: String,
    pub amount_atomic: String,
    pub credits: Micros,
    /// The top-up it paid, or `None` for a claimed deposit (base rate).
    pub topup: Option<String>,
    /// Its ledger entry (the audit checks they agree).
    pub ledger_seq: u64,
    pub block: u64,
    pub at_ms: u64,
}

impl Record for DepositRecord {
    const KIND: &'static str = "crypto deposit";
    const VERSION: u8 = 1;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Every transfer up to this block has been looked at.
    pub block: u64,
}

impl Record for Cursor {
    const KIND: &'static str = "chain cursor";
    const VERSION: u8 = 1;
}

/// The key of a transaction's `index`th deposit. Not the block's log index: a
/// reorg that moves the transaction to another block changes that, and must
/// not make the deposit look new.
pub fn deposit_key(tx: B256, log_index: u64) -> Vec<u8> {
    let mut key = tx.to_vec();
    key.extend_from_slice(&log_index.to_be_bytes());
    key
}

/// A new top-up's key: newest first within the account.
pub fn topup_key(account: AccountId, created_ms: u64, random: [u8; 8]) -> Vec<u8> {
    let mut key = account.0.to_vec();
    key.extend_from_slice(&(u64::MAX - created_ms).to_be_bytes());
    key.extend_from_slice(&random);
    key
}

/// The key of `account`'s top-up `id` (hex of the key's last 16 bytes).
pub fn topup_key_of(account: AccountId, id: &str) -> Option<Vec<u8>> {
    let tail = alloy::primitives::hex::decode(id)
        .ok()
        .filter(|t| t.len() == 16)?;
    let mut key = account.0.to_vec();
    key.extend(tail);
    Some(key)
}

pub fn topup_id(key: &[u8]) -> String {
    alloy::primitives::hex::encode(&key[key.len().saturating_sub(16)..])
}

/// Top-ups not yet credited that expired after `cutoff_ms`, by amount.
pub async fn load_open(
    store: &Store,
    cutoff_ms: u64,
) -> Result<HashMap<U256, (Vec<u8>, TopupRecord)>, StoreError> {
    let mut open = HashMap::new();
    let mut start = None;
    loop {
        let page = store.page(TOPUPS, Vec::new(), start.take(), 1024).await?;
        for (key, value) in &page.items {
            let record: TopupRecord = store.decode(TOPUPS, key, value)?;
            if record.credited.is_some() || record.expires_ms < cutoff_ms {
                continue;
            }
            if let Ok(amount) = record.amount_atomic.parse() {
                open.insert(amount, (key.clone(), record));
            }
        }
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(open),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_newest_first_and_ids_round_trip() {
        let account = AccountId::random();
        let older = topup_key(account, 1_000, [1; 8]);
        let newer = topup_key(account, 2_000, [0; 8]);
        assert!(newer < older);
        assert_eq!(topup_key_of(account, &topup_id(&newer)), Some(newer));
        assert_eq!(topup_key_of(account, "zz"), None);
        assert_eq!(deposit_key(B256::ZERO, 3).len(), 40);
    }
}
