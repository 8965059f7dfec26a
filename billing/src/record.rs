//! What is stored per account.

use crate::keys::KeyDigest;
use gpubridge_protocol::{AccountId, Micros};
use gpubridge_store::Record;
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
}

impl Record for AccountRecord {
    const KIND: &'static str = "account";
    const VERSION: u8 = 1;
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
        };
        assert_eq!(decode::<AccountRecord>(&encode(&record)).unwrap(), record);
        assert!(decode::<AccountRecord>(b"\x01\x01").is_err());
    }
}
