//! Does a payment pay? A transfer proof: a successful transaction holding a
//! transfer of the asset from the payer to us of at least the price, recent
//! enough and confirmed enough. An authorization: signed by its payer over
//! EIP-712, to us, for enough, valid now, its nonce unused and the payer able to
//! pay. Either way the payer must not be sanctioned.

use super::config::X402Rules;
use super::payment::SignedAuthorization;
use crate::chain::{Chain, ChainError, TransferWithAuthorization};
use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::{Eip712Domain, SolStruct};

/// Why a payment does not pay (yet); each says what the client can do.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("transaction {0} is not on chain yet")]
    NotFound(B256),
    #[error("transaction {0} failed on chain")]
    Reverted(B256),
    #[error("transaction {tx} holds no transfer of at least {needed} atomic units of the asset from {from} to {pay_to}")]
    NoTransfer {
        tx: B256,
        from: Address,
        pay_to: Address,
        needed: U256,
    },
    #[error("the transfer is {age} s old; a payment must be at most {max} s old")]
    TooOld { age: u64, max: u64 },
    #[error("the transfer has {has} confirmation(s) and needs {needs}")]
    Unconfirmed { has: u64, needs: u64 },
    #[error("the authorization does not pay for this request: {0}")]
    Authorization(String),
    #[error("the payer {0} is on the sanctions list")]
    Sanctioned(Address),
    #[error("the chain cannot be reached: {0}")]
    Chain(#[from] ChainError),
}

/// A transfer that pays.
#[derive(Clone, Debug)]
pub struct Paid {
    pub payer: Address,
    pub amount: U256,
    pub transaction: B256,
}

fn now_s() -> u64 {
    gpubridge_scheduler::now_ms() / 1000
}

/// Checks the contract's proof: `tx` moved at least `needed` from `from` to us.
pub async fn transfer_proof(
    chain: &Chain,
    rules: &X402Rules,
    tx: B256,
    from: Address,
    needed: U256,
) -> Result<Paid, Refusal> {
    let receipt = chain.receipt(tx).await?.ok_or(Refusal::NotFound(tx))?;
    if !receipt.status() {
        return Err(Refusal::Reverted(tx));
    }
    let paid = chain
        .transfers_in(&receipt, rules.pay_to)
        .iter()
        .filter(|t| t.from == from)
        .map(|t| t.value)
        .max()
        .filter(|value| *value >= needed)
        .ok_or(Refusal::NoTransfer {
            tx,
            from,
            pay_to: rules.pay_to,
            needed,
        })?;
    let block = receipt.block_number.ok_or(Refusal::NotFound(tx))?;
    // The rest is independent: ask the node all at once.
    let (time, latest, sanctioned) = tokio::try_join!(
        chain.block_time(block),
        chain.latest_block(),
        chain.is_sanctioned(from)
    )?;
    let time = time.ok_or(Refusal::NotFound(tx))?;
    let age = now_s().saturating_sub(time);
    if age > rules.max_payment_age.as_secs() {
        return Err(Refusal::TooOld {
            age,
            max: rules.max_payment_age.as_secs(),
        });
    }
    let has = latest.saturating_sub(block) + 1;
    let needs = rules.confirmations_for(paid);
    if has < needs {
        return Err(Refusal::Unconfirmed { has, needs });
    }
    if sanctioned {
        return Err(Refusal::Sanctioned(from));
    }
    Ok(Paid {
        payer: from,
        amount: paid,
        transaction: tx,
    })
}

/// Checks a transaction someone else settled (a facilitator) moved at least
/// `needed` from `from` to us, waiting briefly for it to be readable.
pub async fn settled(
    chain: &Chain,
    rules: &X402Rules,
    tx: B256,
    from: Address,
    needed: U256,
) -> Result<(), Refusal> {
    let receipt = chain
        .wait_receipt(tx, rules.rpc_timeout)
        .await?
        .ok_or(Refusal::NotFound(tx))?;
    let paid = receipt.status()
        && chain
            .transfers_in(&receipt, rules.pay_to)
            .iter()
            .any(|t| t.from == from && t.value >= needed);
    match paid {
        true => Ok(()),
        false => Err(Refusal::NoTransfer {
            tx,
            from,
            pay_to: rules.pay_to,
            needed,
        }),
    }
}

/// Refuses a sanctioned payer.
pub async fn screen(chain: &Chain, payer: Address) -> Result<(), Refusal> {
    match chain.is_sanctioned(payer).await? {
        true => Err(Refusal::Sanctioned(payer)),
        false => Ok(()),
    }
}

/// Seconds an authorization must stay valid after we check it, for settlement.
const SETTLE_MARGIN_S: u64 = 6;

/// Checks what can be checked without the chain: network, recipient, amount,
/// and that the payer signed it.
pub fn authorization_offline(
    rules: &X402Rules,
    signed: &SignedAuthorization,
    needed: U256,
) -> Result<(), Refusal> {
    let refuse = |why: String| Err(Refusal::Authorization(why));
    let a = &signed.authorization;
    if !rules.is_our_network(&signed.network) {
        return refuse(format!("network {:?} is not this chain", signed.network));
    }
    if a.to != rules.pay_to {
        return refuse(format!("it pays {} instead of {}", a.to, rules.pay_to));
    }
    if a.value < needed {
        return refuse(format!(
            "it moves {} and this request costs {needed}",
            a.value
        ));
    }
    let domain = Eip712Domain::new(
        Some(rules.asset_name.clone().into()),
        Some(rules.asset_version.clone().into()),
        Some(U256::from(rules.chain_id)),
        Some(rules.asset),
        None,
    );
    let message = TransferWithAuthorization {
        from: a.from,
        to: a.to,
        value: a.value,
        validAfter: a.valid_after,
        validBefore: a.valid_before,
        nonce: a.nonce,
    };
    let digest = message.eip712_signing_hash(&domain);
    match signed.signature.recover_address_from_prehash(&digest) {
        Ok(signer) if signer == a.from => Ok(()),
        _ => refuse(format!("the signature is not {}'s", a.from)),
    }
}

/// Checks the authorization can still be settled now.
pub fn authorization_window(signed: &SignedAuthorization) -> Result<(), Refusal> {
    let a = &signed.authorization;
    let now = U256::from(now_s());
    if a.valid_after > now {
        return Err(Refusal::Authorization(
            "it is not valid yet (validAfter is in the future)".into(),
        ));
    }
    if a.valid_before <= now + U256::from(SETTLE_MARGIN_S) {
        return Err(Refusal::Authorization(
            "it expires before it could be settled (validBefore)".into(),
        ));
    }
    Ok(())
}

/// Checks on chain that the authorization can settle: funds there, payer not sanctioned.
pub async fn authorization_online(
    chain: &Chain,
    signed: &SignedAuthorization,
) -> Result<(), Refusal> {
    let a = &signed.authorization;
    let (balance, sanctioned) =
        tokio::try_join!(chain.balance_of(a.from), chain.is_sanctioned(a.from))?;
    if balance < a.value {
        return Err(Refusal::Authorization(format!(
            "the payer holds {balance} and it moves {}",
            a.value
        )));
    }
    match sanctioned {
        true => Err(Refusal::Sanctioned(a.from)),
        false => Ok(()),
    }
}
