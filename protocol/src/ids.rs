//! Identifiers that cross crate boundaries: accounts and jobs. Newtypes, so an
//! account id is never compared with its printed form or a job id mistaken for
//! any other string.

use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

/// 16 random bytes, printed `acct_` + 32 hex digits. Per-account storage keys begin with the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountId(pub [u8; 16]);

const ACCOUNT_PREFIX: &str = "acct_";

impl AccountId {
    pub fn random() -> AccountId {
        AccountId(*uuid::Uuid::new_v4().as_bytes())
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ACCOUNT_PREFIX)?;
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
        let hex = s.strip_prefix(ACCOUNT_PREFIX).ok_or_else(bad)?;
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

/// A job's id: a UUID as text, assigned when the request is priced so that a
/// reservation and its job are written under one id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

/// Longest id accepted from a client; ours are 36 characters.
const MAX_JOB_ID: usize = 64;

impl JobId {
    /// A UUIDv7: the millisecond it was made, then 74 random bits from the
    /// thread's CSPRNG (`Uuid::now_v7` would ask the kernel for every id).
    /// Time first, so the jobs table is written in key order: RocksDB appends
    /// to its memtable and moves flushed files down without rewriting them,
    /// where random keys cost a skiplist walk per insert and compactions that
    /// rewrite whole levels (BENCHMARKS.md). 74 bits still cannot be guessed.
    pub fn random() -> JobId {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &rand::random()).into_uuid();
        JobId(uuid.to_string())
    }

    /// An id that is also the bearer token of its job (x402 jobs): 192 random
    /// bits in hex, where a UUIDv7's 74 random bits do for a mere name.
    pub fn bearer() -> JobId {
        let bytes: [u8; 24] = rand::random();
        JobId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// An id as a client sent it; `None` when it cannot be one of ours.
    pub fn parse(text: &str) -> Option<JobId> {
        let ok = !text.is_empty()
            && text.len() <= MAX_JOB_ID
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        ok.then(|| JobId(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for JobId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_print_and_parse() {
        let id = AccountId::random();
        let text = id.to_string();
        assert!(text.starts_with("acct_") && text.len() == 37);
        assert_eq!(text.parse::<AccountId>().unwrap(), id);
        for bad in [
            "acct_xyz",
            "acct_zz000000000000000000000000000000",
            "user_00000000000000000000000000000000",
        ] {
            assert!(bad.parse::<AccountId>().is_err(), "{bad}");
        }
    }

    fn millis_now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64
    }

    #[test]
    fn job_ids_begin_with_the_millisecond_they_were_made() {
        let before = millis_now();
        let ids: Vec<JobId> = (0..1000).map(|_| JobId::random()).collect();
        let after = millis_now();
        let mut made = Vec::new();
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id.as_str()).expect("a UUID");
            let (secs, nanos) = uuid.get_timestamp().expect("a v7 timestamp").to_unix();
            made.push((secs * 1000 + u64::from(nanos) / 1_000_000, id));
        }
        assert!(made.iter().all(|(ms, _)| (before..=after).contains(ms)));
        // Text order is time order: ids of later milliseconds sort after.
        for pair in made.windows(2) {
            if pair[0].0 < pair[1].0 {
                assert!(
                    pair[0].1 < pair[1].1,
                    "{} made before {}",
                    pair[0].1,
                    pair[1].1
                );
            }
        }
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn job_ids_are_checked() {
        let id = JobId::random();
        assert_eq!(JobId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(id.as_str().len(), 36);
        let uuid = uuid::Uuid::parse_str(id.as_str()).expect("a UUID");
        assert_eq!(uuid.get_version(), Some(uuid::Version::SortRand));
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(JobId::random(), id);
        assert_eq!(JobId::parse(""), None);
        assert_eq!(JobId::parse("../etc"), None);
        assert_eq!(JobId::parse(&"a".repeat(65)), None);
        let bearer = JobId::bearer();
        assert_eq!(bearer.as_str().len(), 48);
        assert_eq!(JobId::parse(bearer.as_str()), Some(bearer.clone()));
        assert_ne!(bearer, JobId::bearer());
    }
}
