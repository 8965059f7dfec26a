//! What is stored per account, and how account ids print and parse.

use super::keys::KeyDigest;
use gpubridge_protocol::Micros;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// 16 random bytes; every per-account RocksDB key starts with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountId(pub [u8; 16]);

const ID_PREFIX: &str = "acct_";

impl AccountId {
    pub fn random() -> AccountId {
        AccountId(*uuid::Uuid::new_v4().as_bytes())
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ID_PREFIX)?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not an account id: {0:?}")]
pub struct BadAccountId(pub String);

impl FromStr for AccountId {
    type Err = BadAccountId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadAccountId(s.to_string());
        let hex = s.strip_prefix(ID_PREFIX).ok_or_else(bad)?;
        if hex.len() != 32 {
            return Err(bad());
        }
        let mut id = [0u8; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
                .map_err(|_| bad())?;
        }
        Ok(AccountId(id))
    }
}

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

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain owned data into a Vec cannot fail.
    bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap_or_default()
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .ok()
        .map(|(value, _)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse() {
        let id = AccountId::random();
        let text = id.to_string();
        assert!(text.starts_with("acct_") && text.len() == 37);
        assert_eq!(text.parse::<AccountId>().unwrap(), id);
        assert!("acct_xyz".parse::<AccountId>().is_err());
        assert!("acct_zz000000000000000000000000000000"
            .parse::<AccountId>()
            .is_err());
        assert!("user_00000000000000000000000000000000"
            .parse::<AccountId>()
            .is_err());
    }

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
        assert_eq!(decode::<AccountRecord>(&encode(&record)), Some(record));
        assert_eq!(decode::<AccountRecord>(b"\x01"), None);
    }
}
