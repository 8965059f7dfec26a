//! Stripe's webhooks: the signature checked before anything is read, then each
//! event type that moves money handled exactly once — `checkout.session.*`
//! credits a top-up, `charge.refunded` and `charge.dispute.created` take back
//! their share — and every other type acknowledged and ignored.

use super::records::{CardCustomer, CardPayment, CARD_CUSTOMERS, CARD_INTENTS, CARD_PAYMENTS};
use super::{CardError, Cards};
use crate::packages::package;
use gpubridge_protocol::signature::{verify, VerifyError};
use gpubridge_protocol::{AccountId, Micros};
use gpubridge_scheduler::now_ms;
use gpubridge_store::{ReadMode, WriteSet};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("no Stripe-Signature header")]
    Unsigned,
    #[error("bad Stripe-Signature: {0}")]
    Signature(#[from] VerifyError),
    #[error("the event is not JSON Stripe sends: {0}")]
    Unparsable(String),
    #[error(transparent)]
    Card(#[from] CardError),
}

/// What an event did.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    Credited {
        account: AccountId,
        credits: Micros,
    },
    /// Delivered before: nothing more to do.
    AlreadyDone,
    Debited {
        account: AccountId,
        amount: Micros,
    },
    /// Not an event that moves money (or not yet: an unpaid session).
    Ignored(String),
}

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: Value,
}

#[derive(Deserialize)]
struct Session {
    id: String,
    payment_status: String,
    amount_total: Option<u64>,
    currency: Option<String>,
    client_reference_id: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    payment_intent: Option<String>,
}

#[derive(Default, Deserialize)]
struct Metadata {
    package: Option<String>,
}

/// A PaymentIntent; ours for automatic top-ups say so in their metadata.
#[derive(Deserialize)]
struct Intent {
    id: String,
    amount: u64,
    currency: String,
    #[serde(default)]
    metadata: IntentMetadata,
    last_payment_error: Option<PaymentError>,
}

#[derive(Default, Deserialize)]
struct IntentMetadata {
    account: Option<String>,
    package: Option<String>,
    automatic: Option<String>,
}

#[derive(Deserialize)]
struct PaymentError {
    message: Option<String>,
    decline_code: Option<String>,
}

impl Intent {
    /// The account and package of one of our automatic top-ups; `None` for
    /// any other PaymentIntent (Checkout's are credited by their session).
    fn automatic(&self) -> Option<(AccountId, crate::Package)> {
        if self.metadata.automatic.as_deref() != Some("true") {
            return None;
        }
        let account = self.metadata.account.as_deref()?.parse().ok()?;
        Some((account, package(self.metadata.package.as_deref()?)?))
    }
}

/// A charge (refunds) or a dispute: the PaymentIntent it belongs to, and how
/// much of it is taken back (cumulative).
#[derive(Deserialize)]
struct TakenBack {
    payment_intent: Option<String>,
    amount: Option<u64>,
    amount_refunded: Option<u64>,
}

impl Cards {
    /// Verifies and handles one webhook delivery.
    pub async fn handle_event(
        &self,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<Handled, EventError> {
        let header = signature.ok_or(EventError::Unsigned)?;
        let now = now_ms() / 1000;
        verify(
            self.webhook_secret.as_bytes(),
            header,
            body,
            now,
            self.tolerance_seconds,
        )?;
        let event: Event =
            serde_json::from_slice(body).map_err(|e| EventError::Unparsable(e.to_string()))?;
        let object = event.data.object;
        let handled = match event.kind.as_str() {
            "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
                self.session_paid(parse(object)?).await?
            }
            "payment_intent.succeeded" => self.automatic_paid(parse(object)?).await?,
            "payment_intent.payment_failed" => self.automatic_failed(parse(object)?).await?,
            "charge.refunded" => {
                let charge: TakenBack = parse(object)?;
                let refunded = charge.amount_refunded.unwrap_or(0);
                self.take_back(charge.payment_intent, |p| {
                    p.refunded_cents = p.refunded_cents.max(refunded)
                })
                .await?
            }
            "charge.dispute.created" => {
                let dispute: TakenBack = parse(object)?;
                let disputed = dispute.amount.unwrap_or(0);
                self.take_back(dispute.payment_intent, |p| {
                    p.disputed_cents = p.disputed_cents.max(disputed)
                })
                .await?
            }
            other => Handled::Ignored(format!("event type {other}")),
        };
        tracing::info!(event = %event.id, kind = %event.kind, outcome = ?handled, "stripe event");
        Ok(handled)
    }

    async fn session_paid(&self, session: Session) -> Result<Handled, EventError> {
        if session.payment_status != "paid" {
            return Ok(Handled::Ignored(format!(
                "session {} is {}",
                session.id, session.payment_status
            )));
        }
        let account = session
            .client_reference_id
            .as_deref()
            .and_then(|text| text.parse::<AccountId>().ok());
        let package = session.metadata.package.as_deref().and_then(package);
        let (Some(account), Some(package)) = (account, package) else {
            return Ok(Handled::Ignored(format!(
                "session {} is not a GPU-Bridge top-up",
                session.id
            )));
        };
        let cents = package.price.0 / 10_000;
        let usd = session.currency.as_deref() == Some("usd");
        if session.amount_total != Some(cents) || !usd {
            tracing::error!(session = %session.id, ?session.amount_total, "a paid session does not match its package; not credited");
            return Ok(Handled::Ignored(format!(
                "session {} paid another amount than its package",
                session.id
            )));
        }
        if let Some(intent) = &session.payment_intent {
            self.save_card(account, intent).await;
        }
        let payment = CardPayment::new(account, package, session.payment_intent.clone(), false);
        Ok(self.credit_once(&session.id, payment).await?)
    }

    async fn automatic_paid(&self, intent: Intent) -> Result<Handled, EventError> {
        let Some((account, package)) = intent.automatic() else {
            return Ok(Handled::Ignored(format!(
                "{} is no automatic top-up",
                intent.id
            )));
        };
        let cents = package.price.0 / 10_000;
        if intent.amount != cents || intent.currency != "usd" {
            tracing::error!(intent = %intent.id, "an automatic top-up paid another amount; not credited");
            return Ok(Handled::Ignored(format!(
                "{} paid another amount",
                intent.id
            )));
        }
        let payment = CardPayment::new(account, package, Some(intent.id.clone()), true);
        let handled = self.credit_once(&intent.id, payment).await?;
        self.landed(account).await?;
        Ok(handled)
    }

    /// A declined automatic top-up turns them off, with the card's reason.
    async fn automatic_failed(&self, intent: Intent) -> Result<Handled, EventError> {
        let Some((account, _)) = intent.automatic() else {
            return Ok(Handled::Ignored(format!(
                "{} is no automatic top-up",
                intent.id
            )));
        };
        self.landed(account).await?;
        let reason = intent
            .last_payment_error
            .and_then(|e| e.message.or(e.decline_code))
            .unwrap_or_else(|| "the card was declined".into());
        if let Some(settings) = self.accounts.auto_topup(account) {
            self.turn_off(account, settings, reason.clone()).await?;
        }
        Ok(Handled::Ignored(format!(
            "automatic top-up declined: {reason}"
        )))
    }

    /// Credits a payment unless its key was credited before: the record and the
    /// ledger entry are one write, made while holding the key.
    pub(crate) async fn credit_once(
        &self,
        key: &str,
        mut payment: CardPayment,
    ) -> Result<Handled, CardError> {
        let _held = self.claims.hold(key.as_bytes().to_vec()).await;
        let known = self
            .store
            .get::<CardPayment>(CARD_PAYMENTS, key.as_bytes().to_vec())
            .await?;
        if known.is_some() {
            return Ok(Handled::AlreadyDone);
        }
        let note = format!("card payment {key}");
        let entry = self
            .accounts
            .credit_entry(payment.account, payment.credits, &note)?;
        payment.ledger_seq = entry.seq;
        let mut writes = WriteSet::new();
        writes.put_record(CARD_PAYMENTS, key.as_bytes(), &payment);
        if let Some(intent) = &payment.payment_intent {
            writes.put(CARD_INTENTS, intent.as_bytes(), key.as_bytes());
        }
        self.accounts.commit_entry(&entry, writes).await?;
        Ok(Handled::Credited {
            account: payment.account,
            credits: payment.credits,
        })
    }

    /// Takes back what a refund or dispute now covers and was not taken yet.
    async fn take_back(
        &self,
        intent: Option<String>,
        update: impl FnOnce(&mut CardPayment),
    ) -> Result<Handled, CardError> {
        let Some(intent) = intent else {
            return Ok(Handled::Ignored("no payment_intent".into()));
        };
        let name = intent.clone();
        let key = self
            .store
            .read(ReadMode::Latest, move |view| {
                view.get(CARD_INTENTS, name.as_bytes())
            })
            .await?;
        let Some(key) = key else {
            return Ok(Handled::Ignored(format!("{intent} paid no top-up here")));
        };
        let _held = self.claims.hold(key.clone()).await;
        let Some(mut payment) = self
            .store
            .get::<CardPayment>(CARD_PAYMENTS, key.clone())
            .await?
        else {
            return Ok(Handled::Ignored(format!("{intent} has no payment record")));
        };
        update(&mut payment);
        let due = payment.debit_due();
        let Some(amount) = due
            .checked_sub(payment.debited)
            .filter(|a| *a > Micros::ZERO)
        else {
            return Ok(Handled::AlreadyDone);
        };
        payment.debited = due;
        let note = format!("card payment {} taken back", String::from_utf8_lossy(&key));
        let entry = self.accounts.debit_entry(payment.account, amount, &note)?;
        let mut writes = WriteSet::new();
        writes.put_record(CARD_PAYMENTS, key, &payment);
        self.accounts.commit_entry(&entry, writes).await?;
        Ok(Handled::Debited {
            account: payment.account,
            amount,
        })
    }

    /// Keeps the card that paid, for automatic top-ups. Best effort: a top-up
    /// is credited whether or not its card can be saved.
    async fn save_card(&self, account: AccountId, intent: &str) {
        let method = match self.stripe.get(&format!("payment_intents/{intent}")).await {
            Ok(found) => found
                .get("payment_method")
                .and_then(Value::as_str)
                .map(str::to_string),
            Err(e) => {
                tracing::warn!(account = %account, error = %e, "cannot read the payment's card");
                None
            }
        };
        let Some(method) = method else {
            return;
        };
        let key = account.0.to_vec();
        let _held = self.claims.hold(super::customer_claim(&key)).await;
        let known = self
            .store
            .get::<CardCustomer>(CARD_CUSTOMERS, key.clone())
            .await;
        let Ok(Some(mut customer)) = known else {
            return;
        };
        customer.payment_method = Some(method);
        let mut writes = WriteSet::new();
        writes.put_record(CARD_CUSTOMERS, key, &customer);
        if let Err(e) = self.store.commit(writes).await {
            tracing::warn!(account = %account, error = %e, "cannot save the card");
        }
    }
}

fn parse<T: for<'de> Deserialize<'de>>(object: Value) -> Result<T, EventError> {
    serde_json::from_value(object).map_err(|e| EventError::Unparsable(e.to_string()))
}
