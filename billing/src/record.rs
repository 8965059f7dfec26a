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
    /// stored). Last, so version-1 records (which end before it) read as 0.
    pub webhook_generation: u32,
}

impl Record for AccountRecord {
    const KIND: &'static str = "account";
    const VERSION: u8 = 2;

    fn upgrade(version: u8, payload: &[u8]) -> Result<Self, DecodeError> {
        match version {
            1 => {
                let mut bytes = payload.to_vec();
                bytes.push(0);
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
        };
        assert_eq!(decode::<AccountRecord>(&encode(&record)).unwrap(), record);
        // Accounts made before webhook secrets read with generation 0.
        let mut v1 = encode(&record);
        v1[0] = 1;
        v1.pop();
        assert_eq!(decode::<AccountRecord>(&v1).unwrap(), record);
        assert!(decode::<AccountRecord>(b"\x01\x01").is_err());
    }
}
