//! Webhooks: when a job with a `webhook_url` ends, its status document is
//! POSTed there, signed with its account's secret, and retried with doubling
//! waits for up to a day; every attempt is persisted, so a restart resumes.
//!
//! Where to add what: how secrets and signatures work is `signature`; the
//! persisted delivery and its retry schedule `delivery`; one HTTP attempt (and
//! what counts as delivered) `sender`; the queue, the worker and the hook on
//! finished jobs `outbox`.

mod config;
mod delivery;
mod metrics;
mod outbox;
mod sender;
mod signature;

pub use config::WebhookConfig;
pub use delivery::{Delivery, DeliveryState, TABLES, WEBHOOKS, WEBHOOKS_DUE};
pub use outbox::{Generations, Render, Webhooks};
pub use signature::{
    sign, verify, Signer, VerifyError, WebhookSecret, SECRET_PREFIX, SIGNATURE_HEADER,
};
