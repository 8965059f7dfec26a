//! Stored jobs are read back after crashes and upgrades, and catalogs come
//! from operators' files: damaged or arbitrary input is an error, never a panic.

use crate::job::{sample, JobRecord};
use gpubridge_store::{decode, encode};
use proptest::collection::vec;
use proptest::prelude::*;

proptest! {
    #[test]
    fn damaged_job_records_decode_or_are_refused(
        flips in vec((any::<usize>(), any::<u8>()), 0..8),
        keep in any::<usize>(),
        raw in vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = encode(&sample("fuzz"));
        let len = bytes.len();
        for (index, xor) in &flips {
            bytes[index % len] ^= xor;
        }
        bytes.truncate(keep);
        let _ = decode::<JobRecord>(&bytes);
        let _ = decode::<JobRecord>(&raw);
    }

    #[test]
    fn catalogs_of_any_text_load_or_are_refused(text in any::<String>()) {
        let _ = crate::Catalog::from_json(&text);
    }
}
