//! Automatic top-ups: when a settlement leaves an account below its threshold,
//! one off-session PaymentIntent charges its saved card for the package —
//! never two in flight for an account, at most `auto_topups_per_day` a day —
//! and the `payment_intent.succeeded` webhook credits it. A declined card turns
//! automatic top-ups off, with Stripe's reason.

use super::records::{CardCustomer, CARD_CUSTOMERS};
use super::{CardError, Cards};
use crate::ledger::utc_day;
use crate::packages::package;
use crate::AutoTopup;
use gpubridge_protocol::AccountId;
use gpubridge_scheduler::now_ms;
use gpubridge_store::{Record, Table, WriteSet};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Account id → its automatic top-ups today and the one in flight.
pub const CARD_AUTO: Table = Table("card_auto");

/// A payment in flight longer than this is presumed lost (its webhook never
/// came), and another may start.
const IN_FLIGHT_MS: u64 = 3_600_000;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoState {
    /// UTC day `count` is of.
    pub day: u32,
    pub count: u32,
    /// The PaymentIntent being paid (`creating` before Stripe named it).
    pub in_flight: Option<String>,
    pub since_ms: u64,
}

impl Record for AutoState {
    const KIND: &'static str = "automatic top-up state";
    const VERSION: u8 = 1;
}

impl Cards {
    /// The account's balance is below its threshold: top it up, in the
    /// background, if nothing stops it.
    pub fn wake(self: &Arc<Self>, account: AccountId) {
        let cards = self.clone();
        tokio::spawn(async move {
            if let Err(e) = cards.auto_topup(account).await {
                tracing::warn!(account = %account, error = %e, "automatic top-up not made");
            }
        });
    }

    async fn auto_topup(&self, account: AccountId) -> Result<(), CardError> {
        let Some(settings) = self.accounts.auto_topup(account).filter(|a| a.enabled) else {
            return Ok(());
        };
        let key = account.0.to_vec();
        let _held = self.claims.hold(auto_claim(&key)).await;
        let now = now_ms();
        let mut state = self
            .store
            .get::<AutoState>(CARD_AUTO, key.clone())
            .await?
            .unwrap_or_default();
        if state.day != utc_day(now) {
            state = AutoState {
                day: utc_day(now),
                ..AutoState::default()
            };
        }
        if state.in_flight.is_some() && now.saturating_sub(state.since_ms) < IN_FLIGHT_MS {
            return Ok(());
        }
        if state.count >= self.auto_per_day {
            tracing::warn!(account = %account, count = state.count, "daily automatic top-up cap reached");
            return Ok(());
        }
        let customer = self
            .store
            .get::<CardCustomer>(CARD_CUSTOMERS, key.clone())
            .await?;
        let Some((customer, method)) =
            customer.and_then(|c| c.payment_method.clone().map(|m| (c.customer, m)))
        else {
            return self
                .turn_off(account, settings, "no saved card".into())
                .await;
        };
        // Counted before Stripe is asked, so no crash can exceed the cap.
        state.count += 1;
        state.in_flight = Some("creating".into());
        state.since_ms = now;
        self.save_state(&key, &state).await?;
        let charged = self
            .charge(account, &settings, &customer, &method, &state)
            .await;
        match charged {
            Ok(intent) => state.in_flight = Some(intent),
            Err(e) => {
                state.in_flight = None;
                self.save_state(&key, &state).await?;
                return match e.stripe_message() {
                    Some(reason) => self.turn_off(account, settings, reason).await,
                    None => Err(e.into()),
                };
            }
        }
        self.save_state(&key, &state).await
    }

    /// One off-session PaymentIntent for the package; its id.
    async fn charge(
        &self,
        account: AccountId,
        settings: &AutoTopup,
        customer: &str,
        method: &str,
        state: &AutoState,
    ) -> Result<String, super::StripeError> {
        let cents = package(&settings.package).map_or(0, |p| p.price.0 / 10_000);
        let form = [
            ("amount", cents.to_string()),
            ("currency", "usd".into()),
            ("customer", customer.to_string()),
            ("payment_method", method.to_string()),
            ("off_session", "true".into()),
            ("confirm", "true".into()),
            ("description", "GPU-Bridge automatic top-up".into()),
            ("metadata[account]", account.to_string()),
            ("metadata[package]", settings.package.clone()),
            ("metadata[automatic]", "true".into()),
        ];
        // The day and count name this attempt: a retried call is the same one.
        let key = format!("auto-{account}-{}-{}", state.day, state.count);
        let intent = self.stripe.post("payment_intents", &form, &key).await?;
        Ok(intent
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or("unknown")
            .to_string())
    }

    /// The payment in flight for the account ended (credited or failed).
    pub(crate) async fn landed(&self, account: AccountId) -> Result<(), CardError> {
        let key = account.0.to_vec();
        let _held = self.claims.hold(auto_claim(&key)).await;
        let Some(mut state) = self.store.get::<AutoState>(CARD_AUTO, key.clone()).await? else {
            return Ok(());
        };
        state.in_flight = None;
        self.save_state(&key, &state).await
    }

    /// Turns automatic top-ups off for `reason` (shown to the account).
    pub(crate) async fn turn_off(
        &self,
        account: AccountId,
        settings: AutoTopup,
        reason: String,
    ) -> Result<(), CardError> {
        tracing::warn!(account = %account, reason = %reason, "automatic top-ups turned off");
        let off = AutoTopup {
            enabled: false,
            disabled_reason: Some(reason),
            ..settings
        };
        self.accounts.set_auto_topup(account, Some(off)).await?;
        Ok(())
    }

    async fn save_state(&self, key: &[u8], state: &AutoState) -> Result<(), CardError> {
        let mut writes = WriteSet::new();
        writes.put_record(CARD_AUTO, key.to_vec(), state);
        Ok(self.store.commit(writes).await?)
    }

    /// Whether the account has a card saved for automatic top-ups.
    pub async fn has_saved_card(&self, account: AccountId) -> Result<bool, CardError> {
        let customer = self
            .store
            .get::<CardCustomer>(CARD_CUSTOMERS, account.0.to_vec())
            .await?;
        Ok(customer.is_some_and(|c| c.payment_method.is_some()))
    }
}

fn auto_claim(account: &[u8]) -> Vec<u8> {
    let mut key = b"auto:".to_vec();
    key.extend_from_slice(account);
    key
}
