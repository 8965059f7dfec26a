//! GPU-Bridge billing: accounts and their API keys, the append-only credit
//! ledger, reserving a job's price when it is accepted and settling it when it
//! ends, Idempotency-Keys, job history, and the ledger audit. It sits above the
//! job core: it accepts jobs through `Scheduler::admit` and settles them as
//! `JobHooks`; every balance change is a ledger entry in the same write as what
//! it pays for. Money is integer micro-dollars throughout.
//!
//! Where to add what: a way to pay that credits an account (card, USDC) writes
//! a `Credit` entry with what paid for it through `Accounts::credit_with` (see
//! `deposits` for USDC top-ups, `card` for Stripe, whose refunds and disputes
//! write `Debit` entries; the packages are in `packages`); a way to pay per
//! request without an account gets its own module like `x402`; chain access
//! (alloy) goes in `chain`; a new kind of ledger entry extends `EntryKind`,
//! `Balances` and the audit together.

mod accounts;
mod admission;
pub mod audit;
pub mod card;
pub mod chain;
mod config;
pub mod deposits;
mod email;
mod history;
mod idempotency;
mod keys;
mod ledger;
mod load;
mod packages;
mod poster;
mod record;
mod recovery;
mod settlement;
pub mod tables;
#[cfg(test)]
mod testing;
pub mod x402;

#[cfg(test)]
mod fuzz;

pub use accounts::{AccountError, AccountView, Accounts, LowBalance};
pub use admission::{Admission, AdmitError};
pub use audit::{audit, AccountAudit, AuditReport};
pub use config::{
    discounted, AccountRules, AccountsConfig, DiscountTier, DiscountTierConfig, RulesError,
    MAX_DAILY_LIMIT, MIN_DAILY_LIMIT,
};
pub use history::{upgrade_layout_1 as upgrade_history_layout_1, HistoryPage, PageStart};
pub use idempotency::IdempotencyClaim;
pub use keys::{check_secret, load_or_create_secret, KeyError, KEY_PREFIX};
pub use ledger::{EntryKind, LedgerEntry, Totals};
pub use packages::{package, package_keys, Package, PACKAGES};
pub use record::AutoTopup;
pub use recovery::RecoveryRequest;
pub use tables::TABLES;

use gpubridge_scheduler::now_ms;
