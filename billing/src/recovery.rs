//! Support-assisted key recovery: requests are recorded for an operator, and the
//! answer never says whether an address has an account.

use crate::tables::RECOVERIES;
use gpubridge_store::{ReadMode, Record, Store, StoreError, WriteSet};
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecoveryRequest {
    pub email: String,
    pub account: Option<String>,
    pub at_ms: u64,
}

impl Record for RecoveryRequest {
    const KIND: &'static str = "recovery request";
    const VERSION: u8 = 1;
}

/// `time ‖ sequence`: requests in one millisecond keep their order.
pub(crate) fn write(writes: &mut WriteSet, request: &RecoveryRequest, sequence: u64) {
    let mut key = Vec::with_capacity(16);
    key.extend_from_slice(&request.at_ms.to_be_bytes());
    key.extend_from_slice(&sequence.to_be_bytes());
    writes.put_record(RECOVERIES, key, request);
}

/// The newest `limit` requests, newest first.
pub(crate) async fn newest(
    store: &Store,
    limit: usize,
) -> Result<Vec<RecoveryRequest>, StoreError> {
    let reader = store.clone();
    store
        .read(ReadMode::Latest, move |view| {
            if limit == 0 {
                return Ok(Vec::new());
            }
            // Requests are few (support load); keep the newest while scanning.
            let mut all = std::collections::VecDeque::with_capacity(limit);
            let mut result = Ok(());
            view.scan(RECOVERIES, &[], None, &mut |key, value| {
                match reader.decode::<RecoveryRequest>(RECOVERIES, key, value) {
                    Ok(request) => {
                        if all.len() == limit {
                            all.pop_front();
                        }
                        all.push_back(request);
                    }
                    Err(e) => result = Err(e),
                }
                ControlFlow::Continue(())
            })?;
            result?;
            Ok(all.into_iter().rev().collect())
        })
        .await
}
