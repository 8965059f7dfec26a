//! Accounts and the credit ledger: API keys stored as keyed digests, credits in
//! integer micro-dollars, reservations written atomically with the jobs they pay
//! for, volume discounts, idempotency keys, and an independent ledger audit.

pub mod audit;
mod book;
mod config;
mod email;
mod idempotency;
mod keys;
mod ledger;
mod record;

pub use audit::{audit, AccountAudit, AuditReport};
pub use book::{AccountError, AccountView, Accounts, Admission, RecoveryRequest, ReserveError};
pub use config::{
    discounted, AccountRules, AccountsConfig, DiscountTier, DiscountTierConfig, RulesError,
    MAX_DAILY_LIMIT, MIN_DAILY_LIMIT,
};
pub use idempotency::IdempotencyClaim;
pub use keys::{check_secret, load_or_create_secret, KeyError, KEY_PREFIX};
pub use ledger::{EntryKind, LedgerEntry, Totals};
pub use record::AccountId;
