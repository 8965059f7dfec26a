//! Crediting one deposit, exactly once: the watcher (a deposit that pays an
//! open top-up) and claims (one that paid none) both come here. The deposit
//! record (keyed by transaction and log index), the ledger entry, the top-up's
//! new state and a mark that the transaction is no x402 proof any more are one
//! atomic write, decided while holding the transaction's proof claim.

use super::records::{deposit_key, Credited, DepositRecord, TopupRecord, DEPOSITS, TOPUPS};
use super::Deposits;
use crate::chain::Transfer;
use crate::packages::less_fee;
use crate::x402::{screen, transfer_key, ProofRecord, ProofState, Refusal, PROOFS};
use crate::AccountError;
use gpubridge_protocol::{AccountId, Micros};
use gpubridge_scheduler::now_ms;
use gpubridge_store::{StoreError, WriteSet};

/// Who a deposit is credited to, and at what rate.
pub enum Target {
    /// An open top-up it pays exactly: the package's credits.
    Topup { key: Vec<u8>, record: TopupRecord },
    /// A claim by its sender's account: the amount less the fee.
    Claim(AccountId),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Credited {
        account: AccountId,
        credits: Micros,
    },
    /// Credited before (the same transaction and log index).
    AlreadyCredited {
        account: AccountId,
    },
    /// The transaction paid for an x402 job instead.
    PaidForJob,
}

#[derive(Debug, thiserror::Error)]
pub enum CreditError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Account(#[from] AccountError),
}

impl Deposits {
    pub(crate) async fn credit_transfer(
        &self,
        transfer: &Transfer,
        target: Target,
    ) -> Result<Outcome, CreditError> {
        let proof_key = transfer_key(transfer.tx_hash);
        let _held = self.x402.claims().hold(proof_key.clone()).await;
        let key = deposit_key(transfer.tx_hash, transfer.log_index);
        if let Some(earlier) = self
            .store
            .get::<DepositRecord>(DEPOSITS, key.clone())
            .await?
        {
            return Ok(Outcome::AlreadyCredited {
                account: earlier.account,
            });
        }
        let proof = self
            .store
            .get::<ProofRecord>(PROOFS, proof_key.clone())
            .await?;
        if proof.is_some_and(|p| p.state != ProofState::Deposit) {
            return Ok(Outcome::PaidForJob);
        }
        screen(self.x402.chain(), transfer.from).await?;
        let (account, credits, topup) = match &target {
            Target::Topup { record, .. } => {
                (record.account, record.credits, Some(record.id.clone()))
            }
            Target::Claim(account) => {
                let paid = self.x402.rules().micros(transfer.value);
                (*account, less_fee(paid, self.rules.fee_bps), None)
            }
        };
        let note = format!("USDC deposit {}:{}", transfer.tx_hash, transfer.log_index);
        let entry = self.accounts.credit_entry(account, credits, &note)?;
        let mut writes = WriteSet::new();
        let deposit = DepositRecord {
            account,
            from: transfer.from.to_string(),
            amount_atomic: transfer.value.to_string(),
            credits,
            topup,
            ledger_seq: entry.seq,
            block: transfer.block,
            at_ms: now_ms(),
        };
        writes.put_record(DEPOSITS, key, &deposit);
        writes.put_record(PROOFS, proof_key, &deposit_mark(transfer));
        if let Target::Topup { key, record } = &target {
            writes.put_record(TOPUPS, key.clone(), &credited(record, transfer));
        }
        self.accounts.commit_entry(&entry, writes).await?;
        if let Target::Topup { record, .. } = &target {
            self.open.lock().retain(|_, (_, open)| open.id != record.id);
        }
        Ok(Outcome::Credited { account, credits })
    }
}

/// Marks the transaction as credited, so it cannot also pay for an x402 job.
fn deposit_mark(transfer: &Transfer) -> ProofRecord {
    ProofRecord {
        state: ProofState::Deposit,
        job: None,
        service: String::new(),
        transaction: transfer.tx_hash.to_string(),
        retried: false,
        at_ms: now_ms(),
    }
}

fn credited(record: &TopupRecord, transfer: &Transfer) -> TopupRecord {
    TopupRecord {
        credited: Some(Credited {
            transaction: transfer.tx_hash.to_string(),
            log_index: transfer.log_index,
            at_ms: now_ms(),
        }),
        ..record.clone()
    }
}
