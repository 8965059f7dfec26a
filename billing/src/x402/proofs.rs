//! Which payments have paid for what. A proof (a transaction hash, or an
//! EIP-3009 payer and nonce) is recorded in the same write as the job it
//! creates, so it pays for exactly one job; a job that fails everywhere frees
//! its proof for one retry of the same service.

use alloy::primitives::{Address, B256};
use gpubridge_protocol::JobId;
use gpubridge_store::{Record, Table};
use serde::{Deserialize, Serialize};

/// Proofs by key.
pub const PROOFS: Table = Table("x402_proofs");

pub fn transfer_key(tx: B256) -> Vec<u8> {
    let mut key = b"tx:".to_vec();
    key.extend_from_slice(tx.as_slice());
    key
}

pub fn authorization_key(from: Address, nonce: B256) -> Vec<u8> {
    let mut key = b"auth:".to_vec();
    key.extend_from_slice(from.as_slice());
    key.extend_from_slice(nonce.as_slice());
    key
}

/// The key as text, for job records and logs.
pub fn printable(key: &[u8]) -> String {
    let split = key.iter().position(|&b| b == b':').map_or(0, |i| i + 1);
    let (kind, bytes) = key.split_at(split);
    format!(
        "{}0x{}",
        String::from_utf8_lossy(kind),
        alloy::primitives::hex::encode(bytes)
    )
}

/// A key back from its printable form.
pub fn key_of(printable: &str) -> Option<Vec<u8>> {
    let (kind, hex) = printable.split_once(":0x")?;
    let mut key = format!("{kind}:").into_bytes();
    key.extend(alloy::primitives::hex::decode(hex).ok()?);
    Some(key)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProofState {
    /// Settled on chain (EIP-3009), its job not yet written: the same payload
    /// may create the job without paying again.
    Settled,
    /// Paid for `job`.
    Used,
    /// Its job failed: it pays for one retry of the same service until then.
    Freed { until_ms: u64 },
    /// The transfer was credited to an account as a top-up deposit.
    Deposit,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofRecord {
    pub state: ProofState,
    pub job: Option<JobId>,
    pub service: String,
    /// The transaction that moved the money.
    pub transaction: String,
    /// This proof already paid for its retry.
    pub retried: bool,
    pub at_ms: u64,
}

impl Record for ProofRecord {
    const KIND: &'static str = "x402 proof";
    const VERSION: u8 = 1;
}

/// What an earlier use of a proof allows now.
#[derive(Debug, PartialEq, Eq)]
pub enum Standing {
    /// Never used: pays for a new job.
    Fresh,
    /// Settled but not yet used: pays for a new job without settling again.
    Settled { transaction: String },
    /// Its job failed and the retry window is open (same service).
    Retry,
    /// Used up, by this job.
    Spent { job: Option<JobId> },
}

impl ProofRecord {
    pub fn standing(record: Option<&ProofRecord>, service: &str, now_ms: u64) -> Standing {
        let Some(record) = record else {
            return Standing::Fresh;
        };
        match &record.state {
            ProofState::Settled => Standing::Settled {
                transaction: record.transaction.clone(),
            },
            ProofState::Freed { until_ms }
                if now_ms < *until_ms && !record.retried && record.service == service =>
            {
                Standing::Retry
            }
            _ => Standing::Spent {
                job: record.job.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: ProofState, retried: bool) -> ProofRecord {
        ProofRecord {
            state,
            job: Some(JobId::random()),
            service: "ocr".into(),
            transaction: "0x1".into(),
            retried,
            at_ms: 0,
        }
    }

    #[test]
    fn a_freed_proof_pays_one_retry_of_the_same_service_in_time() {
        assert_eq!(ProofRecord::standing(None, "ocr", 5), Standing::Fresh);
        let freed = record(ProofState::Freed { until_ms: 100 }, false);
        assert_eq!(
            ProofRecord::standing(Some(&freed), "ocr", 50),
            Standing::Retry
        );
        assert!(
            matches!(
                ProofRecord::standing(Some(&freed), "llm-4090", 50),
                Standing::Spent { .. }
            ),
            "another service"
        );
        assert!(
            matches!(
                ProofRecord::standing(Some(&freed), "ocr", 100),
                Standing::Spent { .. }
            ),
            "too late"
        );
        let retried = record(ProofState::Freed { until_ms: 100 }, true);
        assert!(
            matches!(
                ProofRecord::standing(Some(&retried), "ocr", 50),
                Standing::Spent { .. }
            ),
            "once"
        );
        assert!(matches!(
            ProofRecord::standing(Some(&record(ProofState::Used, false)), "ocr", 1),
            Standing::Spent { .. }
        ));
        let key = transfer_key(B256::repeat_byte(0xab));
        assert!(printable(&key).starts_with("tx:0xabab"));
        assert_eq!(key_of(&printable(&key)), Some(key));
        let auth = authorization_key(Address::repeat_byte(1), B256::repeat_byte(2));
        assert_eq!(key_of(&printable(&auth)), Some(auth));
    }
}
