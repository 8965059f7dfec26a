//! Everything the gateway parses from a request, fed arbitrary input: every
//! body type, as raw bytes and as arbitrary JSON text; every header it reads;
//! paths; forwarded-for chains. The property: a value or an error envelope
//! with a 4xx status, never a panic.

use crate::body::{self, kind};
use crate::openai::{ChatRequest, EmbeddingsRequest};
use crate::requests::{
    AutoTopupBody, Body, ClaimBody, EmailBody, GrantBody, RunBody, SpendingLimitBody, TopupBody,
};
use hyper::header::{HeaderName, HeaderValue};
use hyper::HeaderMap;
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{Map, Value};

fn refused_with_4xx<T: Body>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Err(e) = body::parse::<T>(bytes) {
        prop_assert!(e.status.is_client_error(), "{} for {:?}", e.status, e.error);
        prop_assert!(!e.hint.is_empty());
    }
    Ok(())
}

fn every_body(bytes: &[u8]) -> Result<(), TestCaseError> {
    refused_with_4xx::<RunBody>(bytes)?;
    refused_with_4xx::<EmailBody>(bytes)?;
    refused_with_4xx::<SpendingLimitBody>(bytes)?;
    refused_with_4xx::<GrantBody>(bytes)?;
    refused_with_4xx::<TopupBody>(bytes)?;
    refused_with_4xx::<AutoTopupBody>(bytes)?;
    refused_with_4xx::<ClaimBody>(bytes)?;
    refused_with_4xx::<Map<String, Value>>(bytes)?;
    refused_with_4xx::<ChatRequest>(bytes)?;
    refused_with_4xx::<EmbeddingsRequest>(bytes)
}

/// Arbitrary JSON values, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            vec((any::<String>(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// Objects with the field names the bodies use, so parsing gets past "unknown field".
fn shaped_object() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "service",
        "input",
        "webhook_url",
        "email",
        "daily_limit",
        "account_id",
        "amount_usd",
        "note",
        "enabled",
        "threshold_usd",
        "model",
        "messages",
        "stream",
        "prompt",
        "tx_hash",
    ]);
    vec((names, json_value()), 0..6).prop_map(|pairs| {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    })
}

proptest! {
    #[test]
    fn bodies_of_any_bytes(bytes in vec(any::<u8>(), 0..512)) {
        every_body(&bytes)?;
    }

    #[test]
    fn bodies_of_any_json(value in prop_oneof![json_value(), shaped_object()]) {
        prop_assert!(!kind(&value).is_empty());
        every_body(value.to_string().as_bytes())?;
    }

    #[test]
    fn headers_of_any_bytes(name in prop::sample::select(vec![
        "x-priority", "prefer", "idempotency-key", "authorization", "x-forwarded-for",
        "x-payment", "payment-signature", "stripe-signature",
    ]), value in vec(any::<u8>(), 0..128)) {
        let Ok(value) = HeaderValue::from_bytes(&value) else { return Ok(()) };
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static(name), value);
        for result in [
            body::priority(&headers).map(|_| ()),
            body::prefer_wait(&headers).map(|_| ()),
            body::idempotency_key(&headers).map(|_| ()),
            crate::access::bearer(&headers).map(|_| ()),
        ] {
            if let Err(e) = result {
                prop_assert!(e.status.is_client_error());
            }
        }
        let _ = crate::limits::client_ip([127, 0, 0, 1].into(), &headers, &[[127, 0, 0, 1].into()]);
    }

    #[test]
    fn paths_of_any_text(path in any::<String>()) {
        let _ = crate::router::route(&path);
    }
}
