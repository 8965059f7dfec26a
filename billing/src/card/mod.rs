//! Card payments through Stripe: a top-up opens a Checkout Session for one of
//! the packages (saving the card for automatic top-ups), and Stripe's signed
//! webhooks credit it — once per payment, in the same write as its ledger
//! entry, however often Stripe delivers — or take credits back for refunds and
//! disputes. `events` reads the webhooks; `stripe` speaks Stripe's API.

mod auto;
mod config;
mod events;
mod records;
mod stripe;

pub use auto::{AutoState, CARD_AUTO};
pub use config::{StripeConfig, StripeConfigError};
pub use events::{EventError, Handled};
pub use records::{CardCustomer, CardPayment, CARD_CUSTOMERS, CARD_INTENTS, CARD_PAYMENTS};
pub use stripe::{StripeClient, StripeError};

use crate::idempotency::Claims;
use crate::packages::{package, Package};
use crate::{AccountError, Accounts};
use gpubridge_protocol::AccountId;
use gpubridge_store::{Store, StoreError, WriteSet};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("unknown package {0:?}")]
    UnknownPackage(String),
    #[error(transparent)]
    Stripe(#[from] StripeError),
    #[error("Stripe answered without {0}")]
    Missing(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Account(#[from] AccountError),
}

/// A Checkout Session to send the payer to.
pub struct Checkout {
    pub session_id: String,
    pub checkout_url: String,
    pub package: Package,
}

pub struct Cards {
    store: Store,
    accounts: Arc<Accounts>,
    stripe: StripeClient,
    webhook_secret: String,
    tolerance_seconds: u64,
    success_url: Option<String>,
    cancel_url: Option<String>,
    /// One event at a time per payment, so racing deliveries credit once.
    claims: Claims,
    /// Automatic top-ups an account may make per UTC day.
    auto_per_day: u32,
}

impl Cards {
    /// Card payments as configured; `None` when they are off.
    pub fn open(
        cfg: &StripeConfig,
        store: Store,
        accounts: Arc<Accounts>,
    ) -> Result<Option<Cards>, StripeConfigError> {
        if !cfg.enabled()? {
            return Ok(None);
        }
        let secret_key = cfg.secret_key.clone().unwrap_or_default();
        Ok(Some(Cards {
            stripe: StripeClient::new(
                &cfg.base_url,
                &secret_key,
                Duration::from_secs_f64(cfg.timeout_seconds),
            ),
            webhook_secret: cfg.webhook_secret.clone().unwrap_or_default(),
            tolerance_seconds: cfg.signature_tolerance_seconds,
            success_url: cfg.success_url.clone(),
            cancel_url: cfg.cancel_url.clone(),
            store,
            accounts,
            claims: Claims::default(),
            auto_per_day: cfg.auto_topups_per_day,
        }))
    }

    /// Opens a Checkout Session paying `package_key` for `account`. `base` is
    /// where this deployment is reached (`https://api.example.com`): Checkout
    /// returns there, to the dashboard, unless configured otherwise.
    pub async fn checkout(
        &self,
        account: AccountId,
        package_key: &str,
        base: &str,
    ) -> Result<Checkout, CardError> {
        let package =
            package(package_key).ok_or_else(|| CardError::UnknownPackage(package_key.into()))?;
        let customer = self.customer(account).await?;
        let cents = package.price.0 / 10_000;
        let dashboard = format!("{}/account/dashboard", base.trim_end_matches('/'));
        let success = self
            .success_url
            .clone()
            .unwrap_or_else(|| format!("{dashboard}?topup=success"));
        let cancel = self
            .cancel_url
            .clone()
            .unwrap_or_else(|| format!("{dashboard}?topup=cancelled"));
        let name = format!("GPU-Bridge credits: ${:.2}", package.credits.as_dollars());
        let form = [
            ("mode", "payment".to_string()),
            ("customer", customer.customer.clone()),
            ("client_reference_id", account.to_string()),
            ("success_url", success),
            ("cancel_url", cancel),
            ("line_items[0][quantity]", "1".into()),
            ("line_items[0][price_data][currency]", "usd".into()),
            ("line_items[0][price_data][unit_amount]", cents.to_string()),
            ("line_items[0][price_data][product_data][name]", name),
            ("metadata[account]", account.to_string()),
            ("metadata[package]", package.key.to_string()),
            // The card is kept for automatic top-ups, charged off-session.
            (
                "payment_intent_data[setup_future_usage]",
                "off_session".into(),
            ),
            (
                "payment_intent_data[metadata][account]",
                account.to_string(),
            ),
            (
                "payment_intent_data[metadata][package]",
                package.key.to_string(),
            ),
        ];
        let key = format!("checkout-{}", uuid::Uuid::new_v4());
        let session = self.stripe.post("checkout/sessions", &form, &key).await?;
        let text = |field: &'static str| {
            session
                .get(field)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or(CardError::Missing(field))
        };
        Ok(Checkout {
            session_id: text("id")?,
            checkout_url: text("url")?,
            package,
        })
    }

    /// The account's Stripe customer, made on its first top-up. The
    /// idempotency key is the account's, so racing top-ups make one customer.
    async fn customer(&self, account: AccountId) -> Result<CardCustomer, CardError> {
        let key = account.0.to_vec();
        let _held = self.claims.hold(customer_claim(&key)).await;
        if let Some(known) = self
            .store
            .get::<CardCustomer>(CARD_CUSTOMERS, key.clone())
            .await?
        {
            return Ok(known);
        }
        let email = self.accounts.view(account)?.email;
        let form = [("email", email), ("metadata[account]", account.to_string())];
        let created = self
            .stripe
            .post("customers", &form, &format!("customer-{account}"))
            .await?;
        let customer = CardCustomer {
            customer: created
                .get("id")
                .and_then(|v| v.as_str())
                .ok_or(CardError::Missing("id"))?
                .to_string(),
            payment_method: None,
        };
        let mut writes = WriteSet::new();
        writes.put_record(CARD_CUSTOMERS, key, &customer);
        self.store.commit(writes).await?;
        Ok(customer)
    }
}

/// Customers and payments are claimed in one map: keep their keys apart.
fn customer_claim(account: &[u8]) -> Vec<u8> {
    let mut key = b"customer:".to_vec();
    key.extend_from_slice(account);
    key
}
