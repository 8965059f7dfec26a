//! What billing reads from outside: stored records (after crashes and
//! upgrades), x402's payment headers, and Stripe's signed events. Arbitrary
//! or damaged input is a refusal, never a panic.

use crate::card::{AutoState, CardCustomer, CardPayment};
use crate::deposits::{DepositRecord, TopupRecord};
use crate::idempotency::IdempotencyRecord;
use crate::ledger::LedgerEntry;
use crate::record::AccountRecord;
use crate::recovery::RecoveryRequest;
use crate::x402::{parse_payment, ProofRecord};
use gpubridge_store::decode;
use proptest::collection::vec;
use proptest::prelude::*;

proptest! {
    #[test]
    fn stored_records_decode_or_are_refused(raw in vec(any::<u8>(), 0..512)) {
        let _ = decode::<AccountRecord>(&raw);
        let _ = decode::<LedgerEntry>(&raw);
        let _ = decode::<IdempotencyRecord>(&raw);
        let _ = decode::<RecoveryRequest>(&raw);
        let _ = decode::<ProofRecord>(&raw);
        let _ = decode::<CardPayment>(&raw);
        let _ = decode::<CardCustomer>(&raw);
        let _ = decode::<AutoState>(&raw);
        let _ = decode::<TopupRecord>(&raw);
        let _ = decode::<DepositRecord>(&raw);
    }

    #[test]
    fn payment_headers_of_any_bytes(x_payment in proptest::option::of(vec(any::<u8>(), 0..512)), v2 in proptest::option::of(vec(any::<u8>(), 0..512))) {
        let _ = parse_payment(x_payment.as_deref(), v2.as_deref());
    }

    #[test]
    fn payment_headers_of_base64_json(json in any::<String>()) {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(json.as_bytes());
        let _ = parse_payment(Some(encoded.as_bytes()), None);
        let _ = parse_payment(None, Some(encoded.as_bytes()));
    }
}
