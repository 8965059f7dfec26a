//! Stored values are read back after crashes, disk faults and downgrades:
//! arbitrary or damaged bytes must decode to a record or an error, never a
//! panic or an allocation the size of a corrupt length prefix.

use crate::codec::{decode, encode, Record};
use proptest::collection::vec;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Sample {
    name: String,
    blob: Vec<u8>,
    items: Vec<(u64, Option<String>)>,
}

impl Record for Sample {
    const KIND: &'static str = "sample";
    const VERSION: u8 = 1;
}

/// `bytes` with each `(index, xor)` applied (indices wrap) and cut to `keep`.
pub(crate) fn damaged(mut bytes: Vec<u8>, flips: &[(usize, u8)], keep: usize) -> Vec<u8> {
    if !bytes.is_empty() {
        let len = bytes.len();
        for (index, xor) in flips {
            bytes[index % len] ^= xor;
        }
    }
    bytes.truncate(keep);
    bytes
}

proptest! {
    #[test]
    fn any_bytes_decode_or_are_refused(bytes in vec(any::<u8>(), 0..1024)) {
        let _ = decode::<Sample>(&bytes);
    }

    #[test]
    fn damaged_records_decode_or_are_refused(
        name in any::<String>(),
        blob in vec(any::<u8>(), 0..256),
        flips in vec((any::<usize>(), any::<u8>()), 0..8),
        keep in any::<usize>(),
    ) {
        let record = Sample { name, blob, items: vec![(7, Some("x".into())), (u64::MAX, None)] };
        let bytes = encode(&record);
        prop_assert_eq!(decode::<Sample>(&bytes).ok(), Some(record));
        let _ = decode::<Sample>(&damaged(bytes, &flips, keep));
    }
}

#[test]
fn a_huge_length_prefix_is_refused_not_allocated() {
    // Version, then a varint length of 2^62 for `name`.
    let bytes = [1u8, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x40];
    assert!(decode::<Sample>(&bytes).is_err());
}
