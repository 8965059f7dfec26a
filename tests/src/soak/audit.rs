//! The audit after the soak, from the data directory alone (opened read-only
//! once the daemon has stopped): the ledger audit the operator runs, and per
//! job what the soak promises — every accepted job on disk and terminal, none
//! charged twice, every completed paid job charged, every failed one's
//! reservation released — and balances as the daemon held them equal to the
//! ledger's sums.

use gpubridge_billing::tables::LEDGER;
use gpubridge_billing::{EntryKind, LedgerEntry};
use gpubridge_protocol::{JobStatus, Micros};
use gpubridge_scheduler::jobs::{JOBS, UNFINISHED};
use gpubridge_scheduler::JobRecord;
use gpubridge_store::{decode, ReadMode};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;
use std::path::Path;

#[derive(Clone, Debug, Default, Serialize)]
pub struct DiskAudit {
    pub jobs: u64,
    pub by_status: BTreeMap<String, u64>,
    /// Jobs resumed after a daemon restart.
    pub recovered: u64,
    pub billed: u64,
    pub ledger_entries: u64,
    pub charges: u64,
    pub charged_micros: u64,
    pub released_micros: u64,
    pub accounts: u64,
    pub problems: Vec<String>,
}

/// What the scan of one snapshot found.
#[derive(Default)]
struct Scan {
    audit: DiskAudit,
    ids: HashSet<String>,
    charges: HashMap<String, u32>,
    unfinished: u64,
}

impl DiskAudit {
    pub async fn of(
        data_dir: &Path,
        accepted: &[String],
        balances: &[(String, Option<i64>)],
    ) -> anyhow::Result<DiskAudit> {
        let store = gpubridge_daemon::open_read_only(data_dir).await?;
        let ledger = gpubridge_billing::audit(&store).await?;
        let mut scan = store
            .read(ReadMode::Snapshot, |view| {
                let mut scan = Scan::default();
                view.scan(JOBS, &[], None, &mut |_, bytes| {
                    scan.job(decode::<JobRecord>(bytes));
                    ControlFlow::Continue(())
                })?;
                view.scan(LEDGER, &[], None, &mut |_, bytes| {
                    scan.entry(decode::<LedgerEntry>(bytes));
                    ControlFlow::Continue(())
                })?;
                view.scan(UNFINISHED, &[], None, &mut |_, _| {
                    scan.unfinished += 1;
                    ControlFlow::Continue(())
                })?;
                Ok(scan)
            })
            .await?;
        scan.finish(accepted);
        let mut audit = scan.audit;
        audit.accounts = ledger.accounts.len() as u64;
        audit.problems.extend(ledger.problems.iter().cloned());
        let on_disk: HashMap<&str, u64> = ledger
            .accounts
            .iter()
            .map(|a| (a.id.as_str(), a.balance_micros))
            .collect();
        for (account, held) in balances {
            let disk = on_disk.get(account.as_str()).map(|b| *b as i64);
            if *held != disk {
                audit.problems.push(format!(
                    "account {account}: the daemon held {held:?} µ$, the ledger sums to {disk:?}"
                ));
            }
        }
        Ok(audit)
    }
}

impl Scan {
    fn job(&mut self, job: Result<JobRecord, gpubridge_store::DecodeError>) {
        let job = match job {
            Ok(job) => job,
            Err(e) => return self.audit.problems.push(format!("unreadable job: {e}")),
        };
        self.audit.jobs += 1;
        *self
            .audit
            .by_status
            .entry(job.status.as_str().to_string())
            .or_default() += 1;
        if job.recoveries > 0 {
            self.audit.recovered += 1;
        }
        if !job.status.is_terminal() {
            self.audit
                .problems
                .push(format!("job {} left {}", job.id, job.status.as_str()));
        }
        if let Some(billing) = &job.billing {
            self.audit.billed += 1;
            let charged = billing.settled.map_or(Micros::ZERO, |s| s.charged);
            if job.status == JobStatus::Completed
                && billing.from_price > Micros::ZERO
                && charged == Micros::ZERO
            {
                self.audit
                    .problems
                    .push(format!("job {} completed and was not charged", job.id));
            }
        }
        self.ids.insert(job.id.to_string());
    }

    fn entry(&mut self, entry: Result<LedgerEntry, gpubridge_store::DecodeError>) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                return self
                    .audit
                    .problems
                    .push(format!("unreadable ledger entry: {e}"))
            }
        };
        self.audit.ledger_entries += 1;
        match (entry.kind, entry.job) {
            (EntryKind::Charge, Some(job)) => {
                self.audit.charges += 1;
                self.audit.charged_micros += entry.amount.0;
                *self.charges.entry(job).or_default() += 1;
            }
            (EntryKind::Release, _) => self.audit.released_micros += entry.amount.0,
            _ => {}
        }
    }

    fn finish(&mut self, accepted: &[String]) {
        for id in accepted {
            if !self.ids.contains(id) {
                self.audit
                    .problems
                    .push(format!("accepted job {id} is not on disk"));
            }
        }
        for (job, count) in &self.charges {
            if *count > 1 {
                self.audit
                    .problems
                    .push(format!("job {job} was charged {count} times"));
            }
        }
        if self.unfinished > 0 {
            self.audit.problems.push(format!(
                "{} jobs are still in the unfinished set",
                self.unfinished
            ));
        }
    }
}
