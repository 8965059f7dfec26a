//! x402: pay per request with the asset (USDC on Base), no account needed.
//! Either the contract's way — send the asset, then prove it with the
//! transaction's hash — or x402's `exact` scheme, an EIP-3009 authorization we
//! settle on chain before the job runs. Each proof pays for one job, recorded
//! in the same write as the job; a job that fails everywhere frees its proof
//! for one retry of the same service.

mod config;
mod facilitator;
mod payment;
mod proofs;
mod requirements;
mod verify;

pub use config::{
    TopupRules, X402Config, X402ConfigError, X402Rules, BASE_SANCTIONS_ORACLE, BASE_USDC,
};
pub use facilitator::{Facilitator, FacilitatorError};
pub use payment::{
    parse as parse_payment, Authorization, Payment, PaymentError, SignedAuthorization,
    PAYMENT_SIGNATURE, X_PAYMENT,
};
pub(crate) use proofs::transfer_key;
pub use proofs::{ProofRecord, ProofState, PROOFS};
pub use requirements::{network_v1, network_v2, Offer, PaymentRequiredV1};
pub(crate) use verify::screen;
pub use verify::Refusal;

use crate::chain::{Chain, ChainError, ChainSettings};
use crate::idempotency::Claims;
use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use gpubridge_protocol::{JobId, JobStatus, Micros};
use gpubridge_scheduler::{
    now_ms, JobHooks, JobPayment, JobRecord, PreparedJob, Scheduler, SubmitError,
};
use gpubridge_store::{Store, StoreError, WriteSet};
use proofs::{authorization_key, printable, Standing};
use verify::Paid;

#[derive(Debug, thiserror::Error)]
pub enum X402Error {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Which job it paid for is not said: the proof is public on chain, and
    /// an x402 job's id is the key to its output.
    #[error("this payment already paid for a job")]
    Spent,
    #[error("settling the authorization on chain failed: {0}")]
    Settlement(String),
    #[error(
        "EIP-3009 payments are not accepted here: no relayer key or facilitator is configured"
    )]
    CannotSettle,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// What paid for an accepted job, for the answer's headers.
#[derive(Clone, Debug)]
pub struct PaidBy {
    /// The x402 version of a settled authorization (its answer header names it);
    /// `None` for the contract's transfer proof.
    pub settled_version: Option<u8>,
    pub transaction: B256,
    pub payer: Address,
}

/// How far back to look for the transaction that used an authorization
/// (about an hour of Base blocks).
const SETTLED_LOOKBACK_BLOCKS: u64 = 2_000;

pub struct X402 {
    rules: X402Rules,
    chain: Chain,
    /// Settles authorizations when set; else the chain's relayer does.
    facilitator: Option<Facilitator>,
    store: Store,
    claims: Claims,
}

impl X402 {
    /// Connects to the chain (refusing another chain id) with an optional relayer.
    /// Connects to the chain (refusing another chain id); authorizations are
    /// settled by the facilitator when one is given, else by the relayer.
    pub async fn connect(
        rules: X402Rules,
        relayer: Option<PrivateKeySigner>,
        facilitator: Option<Facilitator>,
        store: Store,
    ) -> Result<X402, ChainError> {
        let settings = ChainSettings {
            rpc_url: rules.rpc_url.clone(),
            chain_id: rules.chain_id,
            asset: rules.asset,
            sanctions_oracle: rules.sanctions_oracle,
            rpc_timeout: rules.rpc_timeout,
        };
        let chain = Chain::connect(settings, relayer).await?;
        Ok(X402 {
            rules,
            chain,
            facilitator,
            store,
            claims: Claims::default(),
        })
    }

    pub fn rules(&self) -> &X402Rules {
        &self.rules
    }

    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// Whether EIP-3009 authorizations can be settled here.
    pub fn settles_authorizations(&self) -> bool {
        self.facilitator.is_some() || self.chain.relayer().is_some()
    }

    /// Held by whoever is deciding what a proof pays for: a job here, a
    /// deposit credited to an account in `deposits`.
    pub(crate) fn claims(&self) -> &Claims {
        &self.claims
    }

    /// What a request priced at `price` asks for.
    pub fn offer(&self, price: Micros, resource: String, description: String) -> Offer {
        Offer {
            amount: self.rules.atomic(price),
            resource,
            description,
        }
    }

    /// Checks `payment` pays for `job` and accepts the job with the proof
    /// recorded in the same write. Nothing is consumed when it is refused.
    pub async fn admit(
        &self,
        scheduler: &Scheduler,
        mut job: PreparedJob,
        payment: &Payment,
    ) -> Result<(JobRecord, PaidBy), X402Error> {
        let needed = self.rules.atomic(job.estimated_cost);
        let key = match payment {
            Payment::Transfer { tx, .. } => transfer_key(*tx),
            Payment::Authorization(s) => {
                authorization_key(s.authorization.from, s.authorization.nonce)
            }
        };
        // Requests with one proof take turns, so exactly one of them uses it.
        let _held = self.claims.hold(key.clone()).await;
        let earlier = self.store.get::<ProofRecord>(PROOFS, key.clone()).await?;
        let standing = ProofRecord::standing(earlier.as_ref(), &job.service, now_ms());
        let paid = match (&standing, payment, &earlier) {
            (Standing::Spent { .. }, _, _) => return Err(X402Error::Spent),
            // Verified when first used; the retry of a failed job pays nothing more.
            (Standing::Retry | Standing::Settled { .. }, _, Some(earlier)) => {
                self.paid_before(payment, earlier, needed)
            }
            (_, Payment::Transfer { tx, from }, _) => {
                verify::transfer_proof(&self.chain, &self.rules, *tx, *from, needed).await?
            }
            (_, Payment::Authorization(signed), _) => {
                self.settle(signed, needed, &key, &job.service).await?
            }
        };
        job.id = JobId::bearer();
        job.payment = Some(JobPayment {
            proof: printable(&key),
            scheme: match payment {
                Payment::Transfer { .. } => "tx-hash".into(),
                Payment::Authorization(_) => "eip3009".into(),
            },
            payer: paid.payer.to_string(),
            amount_atomic: paid.amount.to_string(),
            transaction: paid.transaction.to_string(),
            retry: standing == Standing::Retry,
            retry_until_ms: None,
        });
        let used = ProofRecord {
            state: ProofState::Used,
            job: Some(job.id.clone()),
            service: job.service.clone(),
            transaction: paid.transaction.to_string(),
            retried: standing == Standing::Retry,
            at_ms: now_ms(),
        };
        let mut writes = WriteSet::new();
        writes.put_record(PROOFS, key, &used);
        let record = scheduler.submit(job, None, writes).await?;
        let settled_version = match payment {
            Payment::Transfer { .. } => None,
            Payment::Authorization(s) => Some(s.version),
        };
        Ok((
            record,
            PaidBy {
                settled_version,
                transaction: paid.transaction,
                payer: paid.payer,
            },
        ))
    }

    fn paid_before(
        &self,
        payment: &Payment,
        earlier: &ProofRecord,
        needed: alloy::primitives::U256,
    ) -> Paid {
        let payer = match payment {
            Payment::Transfer { from, .. } => *from,
            Payment::Authorization(s) => s.authorization.from,
        };
        Paid {
            payer,
            amount: needed,
            transaction: earlier.transaction.parse().unwrap_or_default(),
        }
    }

    /// Verifies an authorization and settles it from the relayer; remembers it
    /// is settled before the job exists, so a crash in between costs the payer nothing.
    async fn settle(
        &self,
        signed: &SignedAuthorization,
        needed: alloy::primitives::U256,
        key: &[u8],
        service: &str,
    ) -> Result<Paid, X402Error> {
        if !self.settles_authorizations() {
            return Err(X402Error::CannotSettle);
        }
        verify::authorization_offline(&self.rules, signed, needed)?;
        let a = &signed.authorization;
        let transaction = match self.settled_before(signed, needed).await? {
            Some(transaction) => transaction,
            None => self.settle_now(signed, needed).await?,
        };
        let settled = ProofRecord {
            state: ProofState::Settled,
            job: None,
            service: service.to_string(),
            transaction: transaction.to_string(),
            retried: false,
            at_ms: now_ms(),
        };
        let mut writes = WriteSet::new();
        writes.put_record(PROOFS, key.to_vec(), &settled);
        self.store.commit(writes).await?;
        Ok(Paid {
            payer: a.from,
            amount: a.value,
            transaction,
        })
    }

    /// Settles an authorization not yet used on chain, from the relayer or
    /// through the facilitator.
    async fn settle_now(
        &self,
        signed: &SignedAuthorization,
        needed: alloy::primitives::U256,
    ) -> Result<B256, X402Error> {
        verify::authorization_window(signed)?;
        verify::authorization_online(&self.chain, signed).await?;
        let a = &signed.authorization;
        Ok(match &self.facilitator {
            Some(facilitator) => self.settle_through(facilitator, signed, needed).await?,
            None => {
                self.chain
                    .transfer_with_authorization(
                        a.from,
                        a.to,
                        a.value,
                        a.valid_after,
                        a.valid_before,
                        a.nonce,
                        &signed.signature,
                    )
                    .await
                    .map_err(|e| X402Error::Settlement(e.to_string()))?
                    .transaction_hash
            }
        })
    }

    /// The transaction that already used this authorization and paid us — our
    /// relayer's whose receipt we never saw, a facilitator's whose answer was
    /// lost, or anyone's who submitted it — so a payer is never charged twice
    /// or for nothing.
    async fn settled_before(
        &self,
        signed: &SignedAuthorization,
        needed: alloy::primitives::U256,
    ) -> Result<Option<B256>, X402Error> {
        let a = &signed.authorization;
        if !self
            .chain
            .authorization_used(a.from, a.nonce)
            .await
            .map_err(Refusal::from)?
        {
            return Ok(None);
        }
        let found = self
            .chain
            .authorization_transaction(a.from, a.nonce, SETTLED_LOOKBACK_BLOCKS)
            .await
            .map_err(Refusal::from)?;
        let Some(transaction) = found else {
            let why = "its nonce was already used on chain, long ago or by a transfer elsewhere";
            return Err(Refusal::Authorization(why.into()).into());
        };
        verify::settled(&self.chain, &self.rules, transaction, a.from, needed).await?;
        verify::screen(&self.chain, a.from).await?;
        Ok(Some(transaction))
    }

    /// `/verify` and `/settle` at the facilitator, then a look at the chain:
    /// the transaction it names must have paid us.
    async fn settle_through(
        &self,
        facilitator: &Facilitator,
        signed: &SignedAuthorization,
        needed: alloy::primitives::U256,
    ) -> Result<B256, X402Error> {
        let a = &signed.authorization;
        let transaction = facilitator
            .settle(&self.rules, signed, a.value)
            .await
            .map_err(|e| match e {
                FacilitatorError::Invalid(reason) => X402Error::Refused(Refusal::Authorization(
                    format!("the facilitator says {reason}"),
                )),
                FacilitatorError::Failed(reason) => X402Error::Settlement(reason),
            })?;
        verify::settled(&self.chain, &self.rules, transaction, a.from, needed).await?;
        Ok(transaction)
    }
}

/// Frees the proof of an x402 job that failed everywhere, or was cancelled
/// before it ran, in the same write: it pays for one retry. A job cancelled
/// while running used what was paid.
impl JobHooks for X402 {
    fn on_terminal(&self, job: &mut JobRecord, writes: &mut WriteSet) {
        let never_ran = job.execution_us.unwrap_or(0) == 0;
        let Some(payment) = job.payment.as_mut() else {
            return;
        };
        let unserved = match job.status {
            JobStatus::Failed => true,
            JobStatus::Cancelled => never_ran,
            _ => false,
        };
        if !unserved || payment.retry {
            return;
        }
        let Some(key) = proofs::key_of(&payment.proof) else {
            tracing::error!(proof = %payment.proof, "unreadable proof key on a job");
            return;
        };
        let until_ms = now_ms() + self.rules.retry.as_millis() as u64;
        payment.retry_until_ms = Some(until_ms);
        let freed = ProofRecord {
            state: ProofState::Freed { until_ms },
            job: Some(job.id.clone()),
            service: job.service.clone(),
            transaction: payment.transaction.clone(),
            retried: false,
            at_ms: now_ms(),
        };
        writes.put_record(PROOFS, key, &freed);
    }
}
