//! The ledger audit: recomputes every account's money from the persisted ledger
//! alone, at one consistent snapshot, and checks it against the jobs it paid for.
//! Independent of the in-memory balances, so it can judge them.

use crate::card::{CardPayment, CARD_PAYMENTS};
use crate::deposits::{DepositRecord, DEPOSITS};
use crate::ledger::{EntryKind, LedgerEntry, Totals};
use crate::record::AccountRecord;
use crate::tables::{ACCOUNTS, LEDGER};
use gpubridge_protocol::{JobStatus, Micros};
use gpubridge_scheduler::jobs::JOBS;
use gpubridge_scheduler::{JobBilling, JobRecord};
use gpubridge_store::{ReadMode, Store, StoreError, View};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;

#[derive(Clone, Debug, Default, Serialize)]
pub struct AccountAudit {
    pub id: String,
    pub email: String,
    pub credits_micros: u64,
    /// Taken back (card refunds and disputes).
    pub debits_micros: u64,
    /// How far below zero debits left the balance.
    pub debt_micros: u64,
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
    pub total_debits_micros: u64,
    pub total_debt_micros: u64,
    pub total_charges_micros: u64,
    pub total_open_reservations_micros: u64,
    pub total_balance_micros: u64,
    /// USDC deposits credited, and the credits they bought.
    pub crypto_deposits: u64,
    pub crypto_deposit_credits_micros: u64,
    /// Card payments credited, the credits they bought, and what refunds and
    /// disputes took back.
    pub card_payments: u64,
    pub card_credits_micros: u64,
    pub card_debits_micros: u64,
    pub accounts: Vec<AccountAudit>,
    /// Every broken invariant found; empty means the books balance.
    pub problems: Vec<String>,
}

impl AuditReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Audits the store as it is at one instant, off the async workers.
pub async fn audit(store: &Store) -> Result<AuditReport, StoreError> {
    let reader = store.clone();
    store
        .read(ReadMode::Snapshot, move |view| {
            let mut report = AuditReport::default();
            let mut accounts = read_accounts(&reader, view, &mut report)?;
            let mut by_job = read_ledger(&reader, view, &mut accounts, &mut report)?;
            sum_accounts(&accounts, &mut report);
            check_jobs(&reader, view, &mut by_job, &mut report)?;
            check_deposits(&reader, view, &mut report)?;
            check_card_payments(&reader, view, &mut report)?;
            for job in by_job.keys() {
                report.problems.push(format!(
                    "ledger entries for job {job}, which was never stored"
                ));
            }
            Ok(report)
        })
        .await
}

type AccountTotals = BTreeMap<[u8; 16], (AccountRecord, Totals)>;

fn read_accounts(
    store: &Store,
    view: &dyn View,
    report: &mut AuditReport,
) -> Result<AccountTotals, StoreError> {
    let mut accounts = BTreeMap::new();
    view.scan(ACCOUNTS, &[], None, &mut |key, value| {
        match store.decode::<AccountRecord>(ACCOUNTS, key, value) {
            Ok(record) => {
                accounts.insert(record.id.0, (record, Totals::default()));
            }
            Err(e) => report.problems.push(e.to_string()),
        }
        ControlFlow::Continue(())
    })?;
    Ok(accounts)
}

/// Sums the ledger per account and per job, checking each entry's key and links.
fn read_ledger(
    store: &Store,
    view: &dyn View,
    accounts: &mut AccountTotals,
    report: &mut AuditReport,
) -> Result<HashMap<String, Totals>, StoreError> {
    let mut by_job: HashMap<String, Totals> = HashMap::new();
    view.scan(LEDGER, &[], None, &mut |key, value| {
        report.entries += 1;
        let entry = match store.decode::<LedgerEntry>(LEDGER, key, value) {
            Ok(entry) => entry,
            Err(e) => {
                report.problems.push(e.to_string());
                return ControlFlow::Continue(());
            }
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
            (None, EntryKind::Credit | EntryKind::Debit) => {}
            _ => report.problems.push(format!(
                "ledger entry {} ({}) has the wrong job link",
                entry.seq,
                entry.kind.as_str()
            )),
        }
        ControlFlow::Continue(())
    })?;
    Ok(by_job)
}

fn sum_accounts(accounts: &AccountTotals, report: &mut AuditReport) {
    for (record, totals) in accounts.values() {
        let (open, balance) = match (totals.open_reservations(), totals.balance()) {
            (Some(open), Some(balance)) => (open, balance),
            // Debits (refunds, disputes) may leave a debt: owed, not broken.
            _ => {
                report.problems.push(format!(
                    "account {} is overdrawn or over-settled: {totals:?}",
                    record.id
                ));
                (0, 0)
            }
        };
        report.total_credits_micros += totals.credits;
        report.total_debits_micros += totals.debited;
        report.total_debt_micros += totals.debt();
        report.total_charges_micros += totals.charged;
        report.total_open_reservations_micros += open;
        report.total_balance_micros += balance;
        report.accounts.push(AccountAudit {
            id: record.id.to_string(),
            email: record.email.clone(),
            credits_micros: totals.credits,
            debits_micros: totals.debited,
            debt_micros: totals.debt(),
            charges_micros: totals.charged,
            open_reservations_micros: open,
            balance_micros: balance,
        });
    }
}

/// Every billed job: its ledger entries match what the job says it reserved and
/// settled, and a reservation is open exactly while the job is unfinished.
fn check_jobs(
    store: &Store,
    view: &dyn View,
    by_job: &mut HashMap<String, Totals>,
    report: &mut AuditReport,
) -> Result<(), StoreError> {
    view.scan(JOBS, &[], None, &mut |key, value| {
        let job = match store.decode::<JobRecord>(JOBS, key, value) {
            Ok(job) => job,
            Err(e) => {
                report.problems.push(e.to_string());
                return ControlFlow::Continue(());
            }
        };
        if let Some(billing) = &job.billing {
            report.jobs_billed += 1;
            let ledger = by_job.remove(job.id.as_str()).unwrap_or_default();
            check_job(&job, billing, &ledger, report);
        }
        ControlFlow::Continue(())
    })
}

/// A job that failed before any of its output reached anyone pays nothing.
fn charges_nothing(job: &JobRecord) -> bool {
    job.status == JobStatus::Failed && job.stopped.as_ref().is_none_or(|s| s.chunks_delivered == 0)
}

fn check_job(job: &JobRecord, billing: &JobBilling, ledger: &Totals, report: &mut AuditReport) {
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
            if charges_nothing(job) && settled.charged > Micros::ZERO {
                report.problems.push(format!(
                    "job {id}: failed without delivering anything, yet charged {}",
                    settled.charged
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

/// Each credited deposit has its own credit entry in the ledger, for the
/// credits it bought, naming its transaction and log index.
fn check_deposits(
    store: &Store,
    view: &dyn View,
    report: &mut AuditReport,
) -> Result<(), StoreError> {
    let mut problems = Vec::new();
    let mut found = Vec::new();
    view.scan(DEPOSITS, &[], None, &mut |key, value| {
        match store.decode::<DepositRecord>(DEPOSITS, key, value) {
            Ok(deposit) => found.push((key.to_vec(), deposit)),
            Err(e) => problems.push(e.to_string()),
        }
        ControlFlow::Continue(())
    })?;
    for (key, deposit) in found {
        let (tx, log_index) = key.split_at(32.min(key.len()));
        let name = format!(
            "0x{}:{}",
            alloy::primitives::hex::encode(tx),
            u64::from_be_bytes(log_index.try_into().unwrap_or_default())
        );
        let mut entry_key = deposit.account.0.to_vec();
        entry_key.extend_from_slice(&deposit.ledger_seq.to_be_bytes());
        let entry = view
            .get(LEDGER, &entry_key)?
            .map(|bytes| store.decode::<LedgerEntry>(LEDGER, &entry_key, &bytes))
            .transpose()?;
        let matches = entry.as_ref().is_some_and(|e| {
            e.kind == EntryKind::Credit
                && e.amount == deposit.credits
                && e.note.as_deref().is_some_and(|n| n.ends_with(&name))
        });
        if !matches {
            problems.push(format!(
                "deposit {name} has no matching credit entry in the ledger"
            ));
        }
        report.crypto_deposits += 1;
        report.crypto_deposit_credits_micros += deposit.credits.0;
    }
    report.problems.extend(problems);
    Ok(())
}

/// Every card payment has its credit entry, and its debits add up to what it
/// says was taken back.
fn check_card_payments(
    store: &Store,
    view: &dyn View,
    report: &mut AuditReport,
) -> Result<(), StoreError> {
    let mut payments = Vec::new();
    view.scan(CARD_PAYMENTS, &[], None, &mut |key, value| {
        match store.decode::<CardPayment>(CARD_PAYMENTS, key, value) {
            Ok(payment) => payments.push((String::from_utf8_lossy(key).into_owned(), payment)),
            Err(e) => report.problems.push(e.to_string()),
        }
        ControlFlow::Continue(())
    })?;
    if payments.is_empty() {
        return Ok(());
    }
    // One pass over the ledger: the entries card payments wrote, by note.
    let mut credits: HashMap<String, LedgerEntry> = HashMap::new();
    let mut debits: HashMap<String, u64> = HashMap::new();
    view.scan(LEDGER, &[], None, &mut |entry_key, value| {
        if let Ok(entry) = store.decode::<LedgerEntry>(LEDGER, entry_key, value) {
            let note = entry.note.clone().unwrap_or_default();
            match entry.kind {
                EntryKind::Credit if note.starts_with("card payment ") => {
                    credits.insert(note, entry);
                }
                EntryKind::Debit => *debits.entry(note).or_default() += entry.amount.0,
                _ => {}
            }
        }
        ControlFlow::Continue(())
    })?;
    for (key, payment) in payments {
        let credit = credits.get(&format!("card payment {key}"));
        let debited = debits
            .get(&format!("card payment {key} taken back"))
            .copied()
            .unwrap_or(0);
        let credited = credit.is_some_and(|e| {
            e.account == payment.account
                && e.amount == payment.credits
                && e.seq == payment.ledger_seq
        });
        if !credited {
            report
                .problems
                .push(format!("card payment {key} has no matching credit entry"));
        }
        if debited != payment.debited.0 {
            report.problems.push(format!(
                "card payment {key} says {} was taken back, the ledger {debited}",
                payment.debited
            ));
        }
        report.card_payments += 1;
        report.card_credits_micros += payment.credits.0;
        report.card_debits_micros += debited;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, doomed, funded};
    use crate::{Accounts, Admission};
    use gpubridge_store::WriteSet;

    #[tokio::test]
    async fn the_audit_catches_a_forged_entry() {
        let bench = testing::open().await;
        let id = funded(&bench, "audit@example.com", 1_000).await;
        // Hold the job in place: a job with no backend fails, so forge before it does.
        let Ok(Admission::Accepted(job)) = bench
            .accounts
            .admit(&bench.scheduler, id, doomed(400), None)
            .await
        else {
            panic!("accepted")
        };
        testing::settle(&bench, std::slice::from_ref(&job.id)).await;
        assert!(audit(&bench.store).await.unwrap().is_clean());
        // A second release nobody settled: money appears from nowhere.
        let forged =
            bench
                .accounts
                .entry(id, EntryKind::Release, Micros(400), Some(&job.id), 0, None);
        let mut writes = WriteSet::new();
        Accounts::put_entry(&mut writes, &forged);
        bench.store.commit(writes).await.unwrap();
        let report = audit(&bench.store).await.unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("but the ledger holds $0.000000+$0.000800")),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn a_failed_job_that_was_charged_is_a_problem() {
        let mut job = gpubridge_scheduler::sample("failed");
        job.status = JobStatus::Failed;
        let billing = JobBilling {
            account: gpubridge_protocol::AccountId([1; 16]),
            reserved: Micros(500),
            from_price: Micros(100),
            price_per_second: Micros(10),
            discount_bps: 0,
            job_day: 0,
            settled: Some(gpubridge_scheduler::Settlement {
                charged: Micros(100),
                refunded: Micros(400),
            }),
        };
        let mut ledger = Totals::default();
        ledger.add(EntryKind::Reserve, Micros(500));
        ledger.add(EntryKind::Charge, Micros(100));
        ledger.add(EntryKind::Release, Micros(400));
        let mut report = AuditReport::default();
        check_job(&job, &billing, &ledger, &mut report);
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(report.problems[0].contains("failed without delivering"));
        // One whose client got part of its output pays for the time it ran.
        job.stopped = Some(gpubridge_scheduler::Stopped {
            reason: "client left".into(),
            chunks_delivered: 3,
        });
        let mut report = AuditReport::default();
        check_job(&job, &billing, &ledger, &mut report);
        assert!(report.is_clean(), "{:?}", report.problems);
    }
}
