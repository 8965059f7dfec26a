//! What card payments leave on disk: each payment credited (by the Stripe
//! object that paid: a Checkout Session or a PaymentIntent), the index from
//! PaymentIntent to payment that refunds and disputes arrive by, and each
//! account's Stripe customer and saved card.

use gpubridge_protocol::{AccountId, Micros};
use gpubridge_store::{Record, Table};
use serde::{Deserialize, Serialize};

/// Card payments credited, by the id of the Stripe object that paid.
pub const CARD_PAYMENTS: Table = Table("card_payments");
/// PaymentIntent id → the `CARD_PAYMENTS` key it paid.
pub const CARD_INTENTS: Table = Table("card_intents");
/// Account id → its Stripe customer and saved card.
pub const CARD_CUSTOMERS: Table = Table("card_customers");

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardPayment {
    pub account: AccountId,
    pub package: String,
    /// What was paid, in cents.
    pub amount_cents: u64,
    pub credits: Micros,
    /// The ledger entry of the credit.
    pub ledger_seq: u64,
    pub payment_intent: Option<String>,
    /// Cents refunded and disputed so far, as Stripe last said.
    pub refunded_cents: u64,
    pub disputed_cents: u64,
    /// Credits taken back so far.
    pub debited: Micros,
    pub automatic: bool,
    pub at_ms: u64,
}

impl Record for CardPayment {
    const KIND: &'static str = "card payment";
    const VERSION: u8 = 1;
}

impl CardPayment {
    /// A payment of `package`, not yet credited (its ledger entry numbers it).
    pub fn new(
        account: AccountId,
        package: crate::Package,
        payment_intent: Option<String>,
        automatic: bool,
    ) -> CardPayment {
        CardPayment {
            account,
            package: package.key.to_string(),
            amount_cents: package.price.0 / 10_000,
            credits: package.credits,
            ledger_seq: 0,
            payment_intent,
            refunded_cents: 0,
            disputed_cents: 0,
            debited: Micros::ZERO,
            automatic,
            at_ms: gpubridge_scheduler::now_ms(),
        }
    }

    /// The credits refunds and disputes take back: their share of what was
    /// paid, never more than was credited.
    pub fn debit_due(&self) -> Micros {
        let taken = self
            .refunded_cents
            .saturating_add(self.disputed_cents)
            .min(self.amount_cents);
        if self.amount_cents == 0 {
            return Micros::ZERO;
        }
        let share = u128::from(self.credits.0) * u128::from(taken) / u128::from(self.amount_cents);
        Micros(share as u64)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardCustomer {
    pub customer: String,
    /// The card saved at a Checkout, for off-session (automatic) payments.
    pub payment_method: Option<String>,
}

impl Record for CardCustomer {
    const KIND: &'static str = "card customer";
    const VERSION: u8 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refunds_and_disputes_take_back_their_share_once() {
        let mut paid = CardPayment {
            account: AccountId([1; 16]),
            package: "credits_25".into(),
            amount_cents: 2_500,
            credits: Micros(26_250_000),
            ledger_seq: 1,
            payment_intent: None,
            refunded_cents: 0,
            disputed_cents: 0,
            debited: Micros::ZERO,
            automatic: false,
            at_ms: 0,
        };
        assert_eq!(paid.debit_due(), Micros::ZERO);
        paid.refunded_cents = 1_250;
        assert_eq!(paid.debit_due(), Micros(13_125_000));
        paid.disputed_cents = 2_500;
        assert_eq!(paid.debit_due(), paid.credits, "never more than credited");
    }
}
