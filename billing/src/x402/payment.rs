//! What a client sends to pay, parsed strictly: the contract's proof of a
//! transfer already made (`X-Payment: base64({"txHash","from"})`), or an x402
//! `exact` EIP-3009 authorization for us to settle — v1 in `X-PAYMENT`, v2 in
//! `PAYMENT-SIGNATURE`. Every refusal names the header and what is wrong.

use alloy::primitives::{Address, Signature, B256, U256};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payment {
    /// The asset was already sent; this transaction proves it.
    Transfer { tx: B256, from: Address },
    /// A signed authorization to move the asset, for us to settle.
    Authorization(Box<SignedAuthorization>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedAuthorization {
    /// 1 (`X-PAYMENT`) or 2 (`PAYMENT-SIGNATURE`): the answer uses the same version.
    pub version: u8,
    /// As the client named it (`base`, `eip155:8453`).
    pub network: String,
    pub authorization: Authorization,
    pub signature: Signature,
}

/// EIP-3009's `TransferWithAuthorization` fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    pub from: Address,
    pub to: Address,
    pub value: U256,
    pub valid_after: U256,
    pub valid_before: U256,
    pub nonce: B256,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Invalid {header} header: {reason}")]
pub struct PaymentError {
    pub header: &'static str,
    pub reason: String,
}

pub const X_PAYMENT: &str = "X-Payment";
pub const PAYMENT_SIGNATURE: &str = "PAYMENT-SIGNATURE";

/// Reads the payment headers' raw values; `None` when neither is present.
pub fn parse(
    x_payment: Option<&[u8]>,
    payment_signature: Option<&[u8]>,
) -> Result<Option<Payment>, PaymentError> {
    if let Some(raw) = payment_signature {
        return parse_v2(raw).map(Some);
    }
    match x_payment {
        None => Ok(None),
        Some(raw) => parse_x_payment(raw).map(Some),
    }
}

fn refuse(header: &'static str, reason: impl Into<String>) -> PaymentError {
    PaymentError {
        header,
        reason: reason.into(),
    }
}

fn decode_json(header: &'static str, raw: &[u8]) -> Result<Value, PaymentError> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| refuse(header, "not ASCII"))?
        .trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(text))
        .map_err(|_| refuse(header, "not base64"))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| refuse(header, format!("the decoded value is not JSON ({e})")))
}

fn field<T: serde::de::DeserializeOwned>(
    header: &'static str,
    value: Value,
) -> Result<T, PaymentError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match path.as_str() {
            "." => refuse(header, inner.to_string()),
            _ => refuse(header, format!("{path}: {inner}")),
        }
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TransferProof {
    tx_hash: String,
    from: String,
}

/// `X-Payment` carries either the contract's tx-hash proof or an x402 v1 payload.
fn parse_x_payment(raw: &[u8]) -> Result<Payment, PaymentError> {
    let value = decode_json(X_PAYMENT, raw)?;
    if value.get("txHash").is_some() {
        let proof: TransferProof = field(X_PAYMENT, value)?;
        return Ok(Payment::Transfer {
            tx: hash(X_PAYMENT, "txHash", &proof.tx_hash)?,
            from: address(X_PAYMENT, "from", &proof.from)?,
        });
    }
    if value.get("x402Version").is_none() {
        return Err(refuse(
            X_PAYMENT,
            "expected {\"txHash\", \"from\"} or an x402 payment payload",
        ));
    }
    let v1: PayloadV1 = field(X_PAYMENT, value)?;
    if v1.x402_version != 1 {
        return Err(refuse(
            X_PAYMENT,
            format!(
                "x402Version {} belongs in PAYMENT-SIGNATURE",
                v1.x402_version
            ),
        ));
    }
    exact(X_PAYMENT, 1, &v1.scheme, v1.network, v1.payload)
}

fn parse_v2(raw: &[u8]) -> Result<Payment, PaymentError> {
    let v2: PayloadV2 = field(PAYMENT_SIGNATURE, decode_json(PAYMENT_SIGNATURE, raw)?)?;
    if v2.x402_version != 2 {
        return Err(refuse(
            PAYMENT_SIGNATURE,
            format!("x402Version must be 2, not {}", v2.x402_version),
        ));
    }
    exact(
        PAYMENT_SIGNATURE,
        2,
        &v2.accepted.scheme,
        v2.accepted.network,
        v2.payload,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PayloadV1 {
    x402_version: u8,
    scheme: String,
    network: String,
    payload: ExactPayload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PayloadV2 {
    x402_version: u8,
    accepted: Accepted,
    payload: ExactPayload,
}

#[derive(Deserialize)]
struct Accepted {
    scheme: String,
    network: String,
}

/// x402's `exact` payload as it travels (from clients, to facilitators).
#[derive(Deserialize, Serialize)]
pub(super) struct ExactPayload {
    signature: String,
    authorization: WireAuthorization,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireAuthorization {
    from: String,
    to: String,
    value: String,
    valid_after: String,
    valid_before: String,
    nonce: String,
}

impl ExactPayload {
    pub(super) fn of(signed: &SignedAuthorization) -> ExactPayload {
        let a = &signed.authorization;
        ExactPayload {
            signature: format!(
                "0x{}",
                alloy::primitives::hex::encode(signed.signature.as_bytes())
            ),
            authorization: WireAuthorization {
                from: a.from.to_string(),
                to: a.to.to_string(),
                value: a.value.to_string(),
                valid_after: a.valid_after.to_string(),
                valid_before: a.valid_before.to_string(),
                nonce: a.nonce.to_string(),
            },
        }
    }
}

fn exact(
    header: &'static str,
    version: u8,
    scheme: &str,
    network: String,
    payload: ExactPayload,
) -> Result<Payment, PaymentError> {
    if scheme != "exact" {
        return Err(refuse(
            header,
            format!("scheme {scheme:?} is not offered; use \"exact\""),
        ));
    }
    let a = payload.authorization;
    let bytes = hex(header, "payload.signature", &payload.signature)?;
    let signature = Signature::from_raw(&bytes).map_err(|_| {
        refuse(
            header,
            "payload.signature must be a 65-byte ECDSA signature",
        )
    })?;
    Ok(Payment::Authorization(Box::new(SignedAuthorization {
        version,
        network,
        authorization: Authorization {
            from: address(header, "authorization.from", &a.from)?,
            to: address(header, "authorization.to", &a.to)?,
            value: number(header, "authorization.value", &a.value)?,
            valid_after: number(header, "authorization.validAfter", &a.valid_after)?,
            valid_before: number(header, "authorization.validBefore", &a.valid_before)?,
            nonce: hash(header, "authorization.nonce", &a.nonce)?,
        },
        signature,
    })))
}

fn hex(header: &'static str, name: &str, text: &str) -> Result<Vec<u8>, PaymentError> {
    let digits = text
        .strip_prefix("0x")
        .ok_or_else(|| refuse(header, format!("{name} must start with 0x")))?;
    alloy::primitives::hex::decode(digits)
        .map_err(|_| refuse(header, format!("{name} is not hexadecimal")))
}

fn hash(header: &'static str, name: &str, text: &str) -> Result<B256, PaymentError> {
    let bytes = hex(header, name, text)?;
    B256::try_from(bytes.as_slice()).map_err(|_| {
        refuse(
            header,
            format!("{name} must be 32 bytes (0x and 64 hex digits)"),
        )
    })
}

fn address(header: &'static str, name: &str, text: &str) -> Result<Address, PaymentError> {
    let bytes = hex(header, name, text)?;
    Address::try_from(bytes.as_slice()).map_err(|_| {
        refuse(
            header,
            format!("{name} must be an address (0x and 40 hex digits)"),
        )
    })
}

fn number(header: &'static str, name: &str, text: &str) -> Result<U256, PaymentError> {
    U256::from_str(text).map_err(|_| refuse(header, format!("{name} must be a whole number")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(value: Value) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .encode(value.to_string())
            .into_bytes()
    }

    #[test]
    fn the_contracts_proof_parses_and_bad_ones_are_named() {
        let tx = format!("0x{}", "ab".repeat(32));
        let from = format!("0x{}", "11".repeat(20));
        let good = b64(json!({"txHash": tx, "from": from}));
        assert!(matches!(
            parse(Some(&good), None),
            Ok(Some(Payment::Transfer { .. }))
        ));
        assert_eq!(parse(None, None), Ok(None));
        for (raw, says) in [
            (b"%%%".to_vec(), "not base64"),
            (
                base64::engine::general_purpose::STANDARD
                    .encode("nope")
                    .into_bytes(),
                "not JSON",
            ),
            (b64(json!({"txHash": "0x12", "from": from})), "32 bytes"),
            (b64(json!({"txHash": tx})), "from"),
            (b64(json!({"txHash": 5, "from": from})), "txHash"),
            (b64(json!({"txHash": tx, "from": "0xzz"})), "hexadecimal"),
            (b64(json!({"hello": 1})), "expected"),
        ] {
            let error = parse(Some(&raw), None).unwrap_err();
            assert!(error.to_string().contains(says), "{error} / {says}");
            assert_eq!(error.header, X_PAYMENT);
        }
    }

    #[test]
    fn authorizations_parse_in_both_versions() {
        let authorization = json!({
            "from": format!("0x{}", "11".repeat(20)),
            "to": format!("0x{}", "22".repeat(20)),
            "value": "3000",
            "validAfter": "0",
            "validBefore": "99999999999",
            "nonce": format!("0x{}", "33".repeat(32)),
        });
        let signature = format!("0x{}1b", "44".repeat(64));
        let payload = json!({"signature": signature, "authorization": authorization});
        let v1 = b64(
            json!({"x402Version": 1, "scheme": "exact", "network": "base", "payload": payload}),
        );
        let Ok(Some(Payment::Authorization(one))) = parse(Some(&v1), None) else {
            panic!("v1")
        };
        assert_eq!(
            (one.version, one.authorization.value),
            (1, U256::from(3000))
        );
        let v2 = b64(
            json!({"x402Version": 2, "accepted": {"scheme": "exact", "network": "eip155:8453"}, "payload": payload}),
        );
        let Ok(Some(Payment::Authorization(two))) = parse(None, Some(&v2)) else {
            panic!("v2")
        };
        assert_eq!(two.network, "eip155:8453");
        let upto =
            b64(json!({"x402Version": 1, "scheme": "upto", "network": "base", "payload": payload}));
        assert!(parse(Some(&upto), None)
            .unwrap_err()
            .reason
            .contains("scheme"));
    }
}
