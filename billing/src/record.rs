//! What is stored per account.

use crate::keys::KeyDigest;
use gpubridge_protocol::{AccountId, Micros};
use gpubridge_store::{payload_of, DecodeError, Record};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub id: AccountId,
    /// Lower-cased.
    pub email: String,
    pub key_digest: KeyDigest,
    pub created_ms: u64,
    pub key_rotated_ms: u64,
    pub daily_limit: Micros,
    /// Rotations of the webhook signing secret (which is derived from it, never
    /// stored). Version-1 records end before it and read as 0.
    pub webhook_generation: u32,
    /// Buying credits by card when the balance falls below a threshold.
    /// Versions 1 and 2 end before it and read as `None`.
    pub auto_topup: Option<AutoTopup>,
}

/// `POST /account/auto-topup`: what to buy, below which balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoTopup {
    pub enabled: bool,
    pub threshold: Micros,
    pub package: String,
    /// Why it was turned off by itself (a declined card), until turned on again.
    pub disabled_reason: Option<String>,
}

impl Record for AccountRecord {
    const KIND: &'static str = "account";
    const VERSION: u8 = 3;

    /// Version 1 ends before `webhook_generation` (a 0), version 2 before
    /// `auto_topup` (a `None`): both are one zero byte.
    fn upgrade(version: u8, payload: &[u8]) -> Result<Self, DecodeError> {
        match version {
            1 | 2 => {
                let mut bytes = payload.to_vec();
                bytes.extend(std::iter::repeat_n(0, usize::from(3 - version)));
                payload_of(Self::KIND, &bytes)
            }
            _ => Err(DecodeError::UnknownVersion {
                kind: Self::KIND,
                version,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpubridge_store::{decode, encode};

    #[test]
    fn records_round_trip() {
        let record = AccountRecord {
            id: AccountId::random(),
            email: "a@b.co".into(),
            key_digest: [7; 32],
            created_ms: 1,
            key_rotated_ms: 2,
            daily_limit: Micros(50_000_000),
            webhook_generation: 0,
            auto_topup: None,
        };
        assert_eq!(decode::<AccountRecord>(&encode(&record)).unwrap(), record);
        // Accounts made before automatic top-ups and webhook secrets read
        // without them.
        let mut v2 = encode(&record);
        v2[0] = 2;
        v2.pop();
        assert_eq!(decode::<AccountRecord>(&v2).unwrap(), record);
        let mut v1 = v2;
        v1[0] = 1;
        v1.pop();
        assert_eq!(decode::<AccountRecord>(&v1).unwrap(), record);
        assert!(decode::<AccountRecord>(b"\x01\x01").is_err());
    }
}
