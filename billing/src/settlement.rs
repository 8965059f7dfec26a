//! Settling a finished job: the work done at its quoted terms — never more than
//! was reserved — is charged and the rest released, in the same write as the
//! job's terminal state (through the job core's [`JobHooks`]), and applied to
//! the balance once durable.

use crate::accounts::Accounts;
use crate::config::discounted;
use crate::ledger::{utc_day, EntryKind, LedgerEntry};
use gpubridge_protocol::{JobStatus, Micros};
use gpubridge_scheduler::{now_ms, JobBilling, JobHooks, JobRecord, Settlement};
use gpubridge_store::WriteSet;

/// A completed job pays `max(from price, price per second × seconds)` after its
/// discount, capped at its reservation. A job stopped by its client after part
/// of its output was delivered, or cancelled by its owner, pays the seconds it
/// ran (no minimum); any other failed one pays nothing.
fn settle(job: &JobRecord, billing: &JobBilling) -> Settlement {
    let by_time = || {
        let seconds = job.execution_seconds().unwrap_or(0.0);
        discounted(
            Micros::per_second_times(billing.price_per_second, seconds),
            billing.discount_bps,
        )
    };
    let delivered = job.stopped.as_ref().is_some_and(|s| s.chunks_delivered > 0);
    let charged = match job.status {
        JobStatus::Completed => by_time().max(billing.from_price).min(billing.reserved),
        JobStatus::Failed if delivered => by_time().min(billing.reserved),
        // Cancelled by its owner: the seconds it ran (none if it never started).
        JobStatus::Cancelled => by_time().min(billing.reserved),
        _ => Micros::ZERO,
    };
    Settlement {
        charged,
        refunded: billing
            .reserved
            .checked_sub(charged)
            .unwrap_or(Micros::ZERO),
    }
}

/// The charge and release of a settled job.
fn parts(job: &JobRecord) -> Option<(&JobBilling, [(EntryKind, Micros); 2])> {
    let billing = job.billing.as_ref()?;
    let settled = billing.settled?;
    Some((
        billing,
        [
            (EntryKind::Charge, settled.charged),
            (EntryKind::Release, settled.refunded),
        ],
    ))
}

impl JobHooks for Accounts {
    fn on_terminal(&self, job: &mut JobRecord, writes: &mut WriteSet) {
        let settlement = match &job.billing {
            Some(billing) if billing.settled.is_none() => settle(job, billing),
            _ => return,
        };
        if let Some(billing) = job.billing.as_mut() {
            billing.settled = Some(settlement);
        }
        let Some((billing, parts)) = parts(job) else {
            return;
        };
        for (kind, amount) in parts.into_iter().filter(|(_, a)| *a > Micros::ZERO) {
            let entry = self.entry(
                billing.account,
                kind,
                amount,
                Some(&job.id),
                billing.job_day,
                None,
            );
            Accounts::put_entry(writes, &entry);
        }
    }

    fn after_persist(&self, job: &JobRecord) {
        let Some((billing, parts)) = parts(job) else {
            return;
        };
        let Ok(state) = self.state(billing.account) else {
            return;
        };
        let now = now_ms();
        let mut state = state.lock();
        for (kind, amount) in parts {
            // Balances are sums: the persisted entries' sequence numbers do not matter here.
            let applied = LedgerEntry {
                account: billing.account,
                seq: 0,
                at_ms: now,
                kind,
                amount,
                job: None,
                job_day: billing.job_day,
                note: None,
            };
            state.balances.apply(&applied, utc_day(now));
        }
        drop(state);
        self.check_low_balance(billing.account);
    }
}
