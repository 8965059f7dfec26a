//! The append-only ledger. Every balance change is one entry, committed in the
//! same write as what it pays for; balances are sums over entries, so replay is
//! order-independent and a crash can never leave half a payment.
//!
//! balance = credits − charges − open reservations
//!         = credits − reserved + released        (open = reserved − charged − released)

use gpubridge_protocol::{AccountId, Micros};
use gpubridge_store::Record;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// Money in: operator grant, signup credits, top-up.
    Credit,
    /// Held for a job before it is accepted.
    Reserve,
    /// Taken from a job's reservation for the work done.
    Charge,
    /// Returned from a job's reservation: the unused part, or all of it on failure.
    Release,
    /// Money taken back: a card payment refunded or disputed after it was
    /// credited. May leave the balance below zero. Last: entries name kinds by
    /// position.
    Debit,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Credit => "credit",
            EntryKind::Reserve => "reserve",
            EntryKind::Charge => "charge",
            EntryKind::Release => "release",
            EntryKind::Debit => "debit",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub account: AccountId,
    pub seq: u64,
    pub at_ms: u64,
    pub kind: EntryKind,
    pub amount: Micros,
    /// The job a reservation, charge or release belongs to.
    pub job: Option<String>,
    /// UTC day (days since the epoch) the job's reservation was made: daily limits
    /// count a job on the day it was accepted.
    pub job_day: u32,
    pub note: Option<String>,
}

impl Record for LedgerEntry {
    const KIND: &'static str = "ledger entry";
    const VERSION: u8 = 1;
}

impl LedgerEntry {
    /// `account ‖ seq`, big-endian: one account's entries are one ordered range.
    pub fn key(&self) -> [u8; 24] {
        let mut key = [0u8; 24];
        key[..16].copy_from_slice(&self.account.0);
        key[16..].copy_from_slice(&self.seq.to_be_bytes());
        key
    }
}

pub fn utc_day(ms: u64) -> u32 {
    (ms / 86_400_000) as u32
}

/// Sums of one account's (or the whole ledger's) entries by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub credits: u64,
    pub reserved: u64,
    pub charged: u64,
    pub released: u64,
    pub debited: u64,
}

impl Totals {
    pub(crate) fn slot(&mut self, kind: EntryKind) -> &mut u64 {
        match kind {
            EntryKind::Credit => &mut self.credits,
            EntryKind::Reserve => &mut self.reserved,
            EntryKind::Charge => &mut self.charged,
            EntryKind::Release => &mut self.released,
            EntryKind::Debit => &mut self.debited,
        }
    }

    pub fn add(&mut self, kind: EntryKind, amount: Micros) {
        let slot = self.slot(kind);
        *slot = slot.saturating_add(amount.0);
    }

    /// Reserved money not yet charged or released; `None` if more left a
    /// reservation than it held (a broken ledger).
    pub fn open_reservations(&self) -> Option<u64> {
        self.reserved
            .checked_sub(self.charged)?
            .checked_sub(self.released)
    }

    /// Credits less debits, charges and open reservations: below zero only
    /// through debits (money taken back after it was spent). `None` if the
    /// ledger is broken: more charged or reserved than was ever credited, or
    /// over-settled reservations.
    pub fn signed_balance(&self) -> Option<i128> {
        let spendable = self
            .credits
            .checked_sub(self.charged)?
            .checked_sub(self.open_reservations()?)?;
        Some(i128::from(spendable) - i128::from(self.debited))
    }

    /// What can be spent: the balance, or nothing while it is below zero;
    /// `None` if the ledger is broken.
    pub fn balance(&self) -> Option<u64> {
        self.signed_balance().map(|b| b.max(0) as u64)
    }

    /// How far below zero debits left the balance (0 when it is not).
    pub fn debt(&self) -> u64 {
        self.signed_balance()
            .map_or(0, |b| (-b).max(0).min(i128::from(u64::MAX)) as u64)
    }
}

/// How many days of charges the volume-discount window keeps.
pub const TRAILING_DAYS: u32 = 30;

/// One account's money in memory. Money leaving (a reservation) is applied
/// before its write and taken back if the write fails; money arriving (credits,
/// releases) only once durable. So memory never promises more than the ledger
/// holds, and racing requests cannot spend one cent twice.
#[derive(Clone, Debug, Default)]
pub struct Balances {
    pub totals: Totals,
    /// The UTC day `day_spend` counts.
    pub day: u32,
    /// Reserved today less what was released of today's reservations.
    pub day_spend: u64,
    /// Charges per UTC day, for the trailing 30-day spend.
    charges_by_day: Vec<(u32, u64)>,
}

impl Balances {
    pub fn available(&self) -> u64 {
        self.totals.balance().unwrap_or(0)
    }

    fn roll(&mut self, today: u32) {
        if self.day != today {
            self.day = today;
            self.day_spend = 0;
        }
        self.charges_by_day
            .retain(|(day, _)| day + TRAILING_DAYS > today);
    }

    pub fn day_spend(&mut self, today: u32) -> u64 {
        self.roll(today);
        self.day_spend
    }

    /// Charges per day within the trailing window.
    pub fn charges_by_day(&mut self, today: u32) -> Vec<(u32, u64)> {
        self.roll(today);
        self.charges_by_day.clone()
    }

    pub fn trailing_spend(&mut self, today: u32) -> Micros {
        self.roll(today);
        Micros(self.charges_by_day.iter().map(|(_, c)| c).sum())
    }

    /// Applies one entry, live or on replay.
    pub fn apply(&mut self, entry: &LedgerEntry, today: u32) {
        self.count(entry, today, true);
    }

    /// Takes back an entry applied here whose write then failed.
    pub fn revert(&mut self, entry: &LedgerEntry, today: u32) {
        self.count(entry, today, false);
    }

    fn count(&mut self, entry: &LedgerEntry, today: u32, forward: bool) {
        self.roll(today);
        let amount = entry.amount.0;
        let step = |value: &mut u64, up: bool| {
            *value = if up == forward {
                value.saturating_add(amount)
            } else {
                value.saturating_sub(amount)
            };
        };
        step(self.totals.slot(entry.kind), true);
        match entry.kind {
            EntryKind::Reserve if entry.job_day == today => step(&mut self.day_spend, true),
            EntryKind::Release if entry.job_day == today => step(&mut self.day_spend, false),
            EntryKind::Charge => {
                let day = utc_day(entry.at_ms);
                if day + TRAILING_DAYS <= today {
                    return;
                }
                match self.charges_by_day.iter_mut().find(|(d, _)| *d == day) {
                    Some((_, total)) => step(total, true),
                    None if forward => self.charges_by_day.push((day, amount)),
                    None => {}
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: EntryKind, amount: u64, at_ms: u64, job_day: u32) -> LedgerEntry {
        LedgerEntry {
            account: AccountId([1; 16]),
            seq: 0,
            at_ms,
            kind,
            amount: Micros(amount),
            job: Some("j".into()),
            job_day,
            note: None,
        }
    }

    #[test]
    fn balance_is_credits_less_charges_less_open_reservations() {
        let mut t = Totals::default();
        t.add(EntryKind::Credit, Micros(1_000));
        t.add(EntryKind::Reserve, Micros(300));
        assert_eq!((t.balance(), t.open_reservations()), (Some(700), Some(300)));
        t.add(EntryKind::Charge, Micros(120));
        t.add(EntryKind::Release, Micros(180));
        assert_eq!((t.balance(), t.open_reservations()), (Some(880), Some(0)));
        t.add(EntryKind::Release, Micros(1));
        assert_eq!(t.open_reservations(), None, "over-released is broken");
        let mut overdrawn = Totals::default();
        overdrawn.add(EntryKind::Reserve, Micros(1));
        assert_eq!(overdrawn.balance(), None);
    }

    #[test]
    fn debits_can_leave_a_debt_that_blocks_spending() {
        let mut t = Totals::default();
        t.add(EntryKind::Credit, Micros(1_000));
        t.add(EntryKind::Reserve, Micros(900));
        t.add(EntryKind::Charge, Micros(900));
        // The card that paid is refunded after the credits were spent.
        t.add(EntryKind::Debit, Micros(1_000));
        assert_eq!(t.signed_balance(), Some(-900));
        assert_eq!((t.balance(), t.debt()), (Some(0), 900));
        t.add(EntryKind::Credit, Micros(1_000));
        assert_eq!((t.balance(), t.debt()), (Some(100), 0));
    }

    #[test]
    fn day_spend_counts_todays_reservations_net_of_their_releases() {
        let day = 20_000u32;
        let ms = u64::from(day) * 86_400_000;
        let mut b = Balances::default();
        b.apply(&entry(EntryKind::Credit, 10_000, ms, 0), day);
        b.apply(&entry(EntryKind::Reserve, 500, ms - 10, day - 1), day);
        b.apply(&entry(EntryKind::Reserve, 400, ms + 10, day), day);
        assert_eq!(
            b.day_spend(day),
            400,
            "yesterday's reservation is not today's spend"
        );
        b.apply(&entry(EntryKind::Charge, 100, ms + 20, day), day);
        b.apply(&entry(EntryKind::Release, 300, ms + 20, day), day);
        b.apply(&entry(EntryKind::Release, 500, ms + 30, day - 1), day);
        assert_eq!(b.day_spend(day), 100);
        assert_eq!(b.available(), 10_000 - 100);
        assert_eq!(b.day_spend(day + 1), 0, "a new UTC day starts at zero");
    }

    #[test]
    fn revert_undoes_apply() {
        let day = 20_000u32;
        let ms = u64::from(day) * 86_400_000;
        let mut b = Balances::default();
        b.apply(&entry(EntryKind::Credit, 1_000, ms, 0), day);
        let before = b.clone();
        let entries: Vec<_> = [EntryKind::Reserve, EntryKind::Charge, EntryKind::Release]
            .into_iter()
            .map(|kind| entry(kind, 300, ms + 1, day))
            .collect();
        for e in &entries {
            b.apply(e, day);
        }
        for e in entries.iter().rev() {
            b.revert(e, day);
        }
        assert_eq!(b.totals, before.totals);
        assert_eq!((b.day_spend(day), b.trailing_spend(day)), (0, Micros::ZERO));
    }

    #[test]
    fn trailing_spend_forgets_charges_older_than_thirty_days() {
        let today = 20_000u32;
        let at = |day: u32| u64::from(day) * 86_400_000 + 5;
        let mut b = Balances::default();
        b.apply(&entry(EntryKind::Charge, 7, at(today - 30), 0), today);
        b.apply(&entry(EntryKind::Charge, 5, at(today - 29), 0), today);
        b.apply(&entry(EntryKind::Charge, 3, at(today), 0), today);
        assert_eq!(b.trailing_spend(today), Micros(8));
        assert_eq!(b.trailing_spend(today + 1), Micros(3));
    }
}
