//! The watcher: reads the asset's transfers to `pay_to` block range by block
//! range from a persisted cursor, credits each deposit that pays an open
//! top-up once it has its confirmations, and moves the cursor only past blocks
//! whose deposits are all settled — so a restart or kill -9 re-reads at most a
//! range, and crediting (keyed by transaction and log index) never repeats.

use super::credit::{CreditError, Outcome, Target};
use super::records::{Cursor, CURSORS};
use super::Deposits;
use crate::chain::{ChainError, Transfer};
use crate::x402::Refusal;
use gpubridge_scheduler::now_ms;
use gpubridge_store::{StoreError, WriteSet};
use std::sync::Arc;
use tokio::task::JoinHandle;

const CURSOR: &[u8] = b"usdc-deposits";

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Credit(#[from] CreditError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one poll did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Poll {
    pub credited: usize,
    /// The cursor after it.
    pub cursor: u64,
    /// More blocks are waiting beyond this poll's range.
    pub behind: bool,
}

impl Deposits {
    /// Reads the next range of blocks and credits what it can.
    pub async fn poll_once(&self) -> Result<Poll, WatchError> {
        let chain = self.x402.chain();
        let latest = chain.latest_block().await?;
        let cursor = self.cursor(latest).await?;
        let to = latest.min(cursor + self.rules.log_range_blocks);
        if to <= cursor {
            return Ok(Poll {
                cursor,
                ..Poll::default()
            });
        }
        let pay_to = self.x402.rules().pay_to;
        let mut unconfirmed: Option<u64> = None;
        let mut credited = 0;
        let found = chain.transfers_to(pay_to, cursor + 1, to).await?;
        for transfer in super::numbered_within_transactions(found) {
            let needs = self.x402.rules().confirmations_for(transfer.value);
            if latest + 1 - transfer.block < needs {
                unconfirmed = Some(unconfirmed.map_or(transfer.block, |b| b.min(transfer.block)));
                continue;
            }
            credited += usize::from(self.credit_if_matching(&transfer).await?);
        }
        let next = unconfirmed.map_or(to, |block| block - 1).max(cursor);
        if next > cursor {
            let mut writes = WriteSet::new();
            writes.put_record(CURSORS, CURSOR.to_vec(), &Cursor { block: next });
            self.store.commit(writes).await?;
        }
        Ok(Poll {
            credited,
            cursor: next,
            behind: to < latest && unconfirmed.is_none(),
        })
    }

    /// The persisted cursor; on the very first start, a few blocks back from now.
    async fn cursor(&self, latest: u64) -> Result<u64, StoreError> {
        if let Some(cursor) = self.store.get::<Cursor>(CURSORS, CURSOR.to_vec()).await? {
            return Ok(cursor.block);
        }
        let start = latest.saturating_sub(self.x402.rules().large_payment_confirmations);
        let mut writes = WriteSet::new();
        writes.put_record(CURSORS, CURSOR.to_vec(), &Cursor { block: start });
        self.store.commit(writes).await?;
        Ok(start)
    }

    /// Credits `transfer` when it pays an open top-up; whether it did.
    async fn credit_if_matching(&self, transfer: &Transfer) -> Result<bool, WatchError> {
        let Some((key, record)) = self.open.lock().get(&transfer.value).cloned() else {
            return Ok(false);
        };
        if !self.sent_in_time(transfer, record.expires_ms).await? {
            return Ok(false);
        }
        let topup = record.id.clone();
        match self
            .credit_transfer(transfer, Target::Topup { key, record })
            .await
        {
            Ok(Outcome::Credited { account, credits }) => {
                tracing::info!(%account, %credits, topup, tx = %transfer.tx_hash, "USDC top-up credited");
                Ok(true)
            }
            Ok(outcome) => {
                tracing::warn!(?outcome, topup, tx = %transfer.tx_hash, "deposit not credited");
                Ok(false)
            }
            Err(CreditError::Refused(Refusal::Sanctioned(from))) => {
                tracing::warn!(%from, topup, tx = %transfer.tx_hash, "deposit from a sanctioned address not credited");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Was the deposit's block before the top-up expired?
    async fn sent_in_time(&self, transfer: &Transfer, expires_ms: u64) -> Result<bool, ChainError> {
        if now_ms() <= expires_ms {
            return Ok(true);
        }
        let time = self.x402.chain().block_time(transfer.block).await?;
        Ok(time.is_some_and(|seconds| seconds * 1000 <= expires_ms))
    }

    /// Polls until the last handle to `self` is gone (or the task is aborted).
    pub fn spawn_watcher(self: &Arc<Self>) -> JoinHandle<()> {
        let deposits = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(this) = deposits.upgrade() else {
                    return;
                };
                let pause = match this.poll_once().await {
                    Ok(poll) if poll.behind => std::time::Duration::ZERO,
                    Ok(_) => this.rules.poll,
                    Err(e) => {
                        tracing::warn!(error = %e, "USDC deposit watcher: will retry");
                        this.rules.poll * 4
                    }
                };
                drop(this);
                tokio::time::sleep(pause).await;
            }
        })
    }
}
