//! Failed answers by status (0: no answer at all), each with the first body
//! seen, so a run that failed says why.

use parking_lot::Mutex;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Default)]
pub struct Failures(Arc<Mutex<BTreeMap<u16, (u64, String)>>>);

#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub status: u16,
    pub count: u64,
    pub first: String,
}

impl Failures {
    /// Counts one failure; `false`, for the request's outcome.
    pub fn record(&self, status: u16, body: &str) -> bool {
        let mut failures = self.0.lock();
        let entry = failures
            .entry(status)
            .or_insert_with(|| (0, body.chars().take(200).collect()));
        entry.0 += 1;
        false
    }

    /// What failed so far, by status; forgets it.
    pub fn take(&self) -> Vec<Failure> {
        std::mem::take(&mut *self.0.lock())
            .into_iter()
            .map(|(status, (count, first))| Failure {
                status,
                count,
                first,
            })
            .collect()
    }

    /// Prints what failed, once per status; forgets it.
    pub fn report(&self) {
        for f in self.take() {
            print_failure(&f);
        }
    }
}

pub fn print_failure(f: &Failure) {
    println!(
        "{:<28} {} answered {}: {}",
        "  failures", f.count, f.status, f.first
    );
}
