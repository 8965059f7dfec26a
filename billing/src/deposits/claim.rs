//! Claiming a deposit that paid no top-up (a wrong amount, an expired top-up,
//! a plain transfer): credited at the base rate, less the fee, to the account
//! its sender names. The sender proves the deposit is theirs by signing
//! [`claim_message`] (EIP-191) with the sending address — anyone can see a
//! deposit on chain, only its sender can claim it.

use super::credit::{CreditError, Outcome, Target};
use super::Deposits;
use crate::chain::Transfer;
use crate::x402::Refusal;
use alloy::primitives::{Signature, B256};
use gpubridge_protocol::{AccountId, Micros};

/// What the sender signs to claim `tx` for `account`.
pub fn claim_message(account: AccountId, tx: B256) -> String {
    format!("GPU-Bridge: credit my USDC deposit {tx} to account {account}")
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("transaction {0} is not on chain yet")]
    NotFound(B256),
    #[error("transaction {0} holds no successful transfer of the asset to the deposit address")]
    NoDeposit(B256),
    #[error("the signature is not from the address that sent this deposit")]
    NotSender,
    #[error("the deposit has {has} confirmation(s) and needs {needs}")]
    Unconfirmed { has: u64, needs: u64 },
    #[error("this deposit pays open top-up {0}; it is credited automatically with the package's credits")]
    PaysTopup(String),
    #[error("this deposit was already credited")]
    AlreadyCredited,
    #[error("this transaction paid for an x402 job")]
    PaidForJob,
    #[error(transparent)]
    Credit(#[from] CreditError),
}

impl From<Refusal> for ClaimError {
    fn from(refusal: Refusal) -> Self {
        ClaimError::Credit(CreditError::Refused(refusal))
    }
}

impl Deposits {
    /// Credits `account` with the deposits of `tx` whose sender signed the claim;
    /// returns what was credited.
    pub async fn claim(
        &self,
        account: AccountId,
        tx: B256,
        signature: &Signature,
    ) -> Result<Micros, ClaimError> {
        let sender = signature
            .recover_address_from_msg(claim_message(account, tx))
            .map_err(|_| ClaimError::NotSender)?;
        let deposits = self.deposits_in(tx).await?;
        let mine: Vec<Transfer> = deposits.into_iter().filter(|t| t.from == sender).collect();
        if mine.is_empty() {
            return Err(ClaimError::NotSender);
        }
        let latest = self
            .x402
            .chain()
            .latest_block()
            .await
            .map_err(Refusal::from)?;
        let mut credited = Micros::ZERO;
        for deposit in &mine {
            self.claimable(deposit, latest)?;
            match self
                .credit_transfer(deposit, Target::Claim(account))
                .await?
            {
                Outcome::Credited { credits, .. } => credited = Micros(credited.0 + credits.0),
                Outcome::AlreadyCredited { .. } => {}
                Outcome::PaidForJob => return Err(ClaimError::PaidForJob),
            }
        }
        match credited {
            Micros::ZERO => Err(ClaimError::AlreadyCredited),
            credited => Ok(credited),
        }
    }

    /// The asset's transfers to the deposit address in a successful `tx`.
    async fn deposits_in(&self, tx: B256) -> Result<Vec<Transfer>, ClaimError> {
        let chain = self.x402.chain();
        let receipt = chain
            .receipt(tx)
            .await
            .map_err(Refusal::from)?
            .ok_or(ClaimError::NotFound(tx))?;
        let found = chain.transfers_in(&receipt, self.x402.rules().pay_to);
        match receipt.status() && !found.is_empty() {
            true => Ok(super::numbered_within_transactions(found)),
            false => Err(ClaimError::NoDeposit(tx)),
        }
    }

    /// Confirmed enough, and not an open top-up's payment.
    fn claimable(&self, deposit: &Transfer, latest: u64) -> Result<(), ClaimError> {
        let has = (latest + 1).saturating_sub(deposit.block);
        let needs = self.x402.rules().confirmations_for(deposit.value);
        if has < needs {
            return Err(ClaimError::Unconfirmed { has, needs });
        }
        match self.open.lock().get(&deposit.value) {
            Some((_, topup)) => Err(ClaimError::PaysTopup(topup.id.clone())),
            _ => Ok(()),
        }
    }
}
