//! The ledger audit: recomputes every account's money from the persisted ledger
//! alone, at one consistent snapshot, and checks it against the jobs it paid for.
//! Independent of the in-memory balances, so it can judge them.

use super::ledger::{EntryKind, LedgerEntry, Totals};
use super::record::{decode, AccountRecord};
use crate::job::JobRecord;
use crate::store::{Store, StoreError, CF_ACCOUNTS, CF_JOBS, CF_LEDGER};
use gpubridge_protocol::Micros;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Debug, Default, Serialize)]
pub struct AccountAudit {
    pub id: String,
    pub email: String,
    pub credits_micros: u64,
    pub charges_micros: u64,
    pub open_reservations_micros: u64,
    pub balance_micros: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct AuditReport {
    pub entries: u64,
    pub jobs_billed: u64,
    pub jobs_open: u64,
    pub total_credits_micros: u64,
    pub total_charges_micros: u64,
    pub total_open_reservations_micros: u64,
    pub total_balance_micros: u64,
    pub accounts: Vec<AccountAudit>,
    /// Every broken invariant found; empty means the books balance.
    pub problems: Vec<String>,
}

impl AuditReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Audits the store as it is at one instant.
pub fn audit(store: &Store) -> Result<AuditReport, StoreError> {
    let snapshot = store.db().snapshot();
    let mut report = AuditReport::default();
    let mut accounts: BTreeMap<[u8; 16], (AccountRecord, Totals)> = BTreeMap::new();
    for item in snapshot.iterator_cf(store.cf(CF_ACCOUNTS), rocksdb::IteratorMode::Start) {
        let (_, value) = item?;
        match decode::<AccountRecord>(&value) {
            Some(record) => {
                accounts.insert(record.id.0, (record, Totals::default()));
            }
            None => report
                .problems
                .push("an account record does not decode".into()),
        }
    }
    let mut by_job: HashMap<String, Totals> = HashMap::new();
    for item in snapshot.iterator_cf(store.cf(CF_LEDGER), rocksdb::IteratorMode::Start) {
        let (key, value) = item?;
        report.entries += 1;
        let Some(entry) = decode::<LedgerEntry>(&value) else {
            report
                .problems
                .push(format!("ledger entry {key:?} does not decode"));
            continue;
        };
        if entry.key()[..] != key[..] {
            report.problems.push(format!(
                "ledger entry {} is stored under another key",
                entry.seq
            ));
        }
        match accounts.get_mut(&entry.account.0) {
            Some((_, totals)) => totals.add(entry.kind, entry.amount),
            None => report.problems.push(format!(
                "ledger entry {} names unknown account {}",
                entry.seq, entry.account
            )),
        }
        match (&entry.job, entry.kind) {
            (Some(job), EntryKind::Reserve | EntryKind::Charge | EntryKind::Release) => by_job
                .entry(job.clone())
                .or_default()
                .add(entry.kind, entry.amount),
            (None, EntryKind::Credit) => {}
            _ => report.problems.push(format!(
                "ledger entry {} ({}) has the wrong job link",
                entry.seq,
                entry.kind.as_str()
            )),
        }
    }
    for (record, totals) in accounts.values() {
        let (open, balance) = match (totals.open_reservations(), totals.balance()) {
            (Some(open), Some(balance)) => (open, balance),
            _ => {
                report.problems.push(format!(
                    "account {} is overdrawn or over-settled: {totals:?}",
                    record.id
                ));
                (0, 0)
            }
        };
        report.total_credits_micros += totals.credits;
        report.total_charges_micros += totals.charged;
        report.total_open_reservations_micros += open;
        report.total_balance_micros += balance;
        report.accounts.push(AccountAudit {
            id: record.id.to_string(),
            email: record.email.clone(),
            credits_micros: totals.credits,
            charges_micros: totals.charged,
            open_reservations_micros: open,
            balance_micros: balance,
        });
    }
    // Every billed job: its ledger entries match what the job says it reserved and
    // settled, and a reservation is open exactly while the job is unfinished.
    for item in snapshot.iterator_cf(store.cf(CF_JOBS), rocksdb::IteratorMode::Start) {
        let (_, value) = item?;
        let Ok(job) = JobRecord::decode(&value) else {
            report.problems.push("a job record does not decode".into());
            continue;
        };
        let Some(billing) = &job.billing else {
            continue;
        };
        report.jobs_billed += 1;
        let ledger = by_job.remove(&job.id).unwrap_or_default();
        check_job(&job, billing, &ledger, &mut report);
    }
    for job in by_job.keys() {
        report.problems.push(format!(
            "ledger entries for job {job}, which was never stored"
        ));
    }
    Ok(report)
}

fn check_job(
    job: &JobRecord,
    billing: &crate::job::JobBilling,
    ledger: &Totals,
    report: &mut AuditReport,
) {
    let id = &job.id;
    if ledger.reserved != billing.reserved.0 {
        report.problems.push(format!(
            "job {id}: reserved {} but the ledger holds {}",
            billing.reserved,
            Micros(ledger.reserved)
        ));
    }
    match (job.status.is_terminal(), billing.settled) {
        (true, Some(settled)) => {
            if (ledger.charged, ledger.released) != (settled.charged.0, settled.refunded.0) {
                report.problems.push(format!(
                    "job {id}: settled {}+{} but the ledger holds {}+{}",
                    settled.charged,
                    settled.refunded,
                    Micros(ledger.charged),
                    Micros(ledger.released)
                ));
            }
            if settled.charged.saturating_add(settled.refunded) != billing.reserved {
                report.problems.push(format!(
                    "job {id}: settlement does not close its reservation"
                ));
            }
        }
        (false, None) => {
            report.jobs_open += 1;
            if ledger.charged + ledger.released != 0 {
                report.problems.push(format!(
                    "job {id}: unfinished but already settled in the ledger"
                ));
            }
        }
        (terminal, _) => report.problems.push(format!(
            "job {id}: {} but {}",
            if terminal { "finished" } else { "unfinished" },
            if billing.settled.is_some() {
                "settled"
            } else {
                "unsettled"
            }
        )),
    }
}
