//! The tables billing owns. Names are those of the column families since the
//! first release, so stores carry over.

use gpubridge_store::Table;

/// Account records by account id.
pub const ACCOUNTS: Table = Table("accounts");
/// Account id by lower-cased email.
pub const EMAILS: Table = Table("emails");
/// Account id by keyed API-key digest.
pub const API_KEYS: Table = Table("api_keys");
/// The append-only money ledger: `account ‖ seq` → entry.
pub const LEDGER: Table = Table("ledger");
/// Job history: `account ‖ inverted job number` → job id.
pub const ACCOUNT_JOBS: Table = Table("account_jobs");
/// Idempotency keys: `account ‖ key` → fingerprint and job.
pub const IDEMPOTENCY: Table = Table("idempotency");
/// Support-assisted key recovery requests by time.
pub const RECOVERIES: Table = Table("recoveries");

pub use crate::card::{CARD_AUTO, CARD_CUSTOMERS, CARD_INTENTS, CARD_PAYMENTS};
pub use crate::deposits::{CURSORS, DEPOSITS, TOPUPS};
pub use crate::x402::PROOFS;

pub const TABLES: [Table; 15] = [
    ACCOUNTS,
    EMAILS,
    API_KEYS,
    LEDGER,
    ACCOUNT_JOBS,
    IDEMPOTENCY,
    RECOVERIES,
    PROOFS,
    TOPUPS,
    DEPOSITS,
    CURSORS,
    CARD_PAYMENTS,
    CARD_INTENTS,
    CARD_CUSTOMERS,
    CARD_AUTO,
];
