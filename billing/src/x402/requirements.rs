//! What a 402 asks for: the contract's v1 body (`accepts[0]` with the price in
//! atomic units) and the x402 v2 `PAYMENT-REQUIRED` header, from one offer.

use super::config::X402Rules;
use alloy::primitives::{Address, B256, U256};
use base64::Engine;
use serde::Serialize;

/// One request's price and what it buys.
#[derive(Clone, Debug)]
pub struct Offer {
    pub amount: U256,
    /// The URL paid for.
    pub resource: String,
    pub description: String,
}

pub const MIME_TYPE: &str = "application/json";

#[derive(Serialize)]
pub struct Extra {
    pub name: String,
    pub version: String,
}

/// `accepts[0]` of the v1 body.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequirementsV1 {
    pub scheme: &'static str,
    pub network: String,
    pub max_amount_required: String,
    pub resource: String,
    pub description: String,
    pub mime_type: &'static str,
    pub pay_to: String,
    pub asset: String,
    pub max_timeout_seconds: u64,
    pub extra: Extra,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequiredV1 {
    pub x402_version: u8,
    pub accepts: Vec<RequirementsV1>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceV2<'a> {
    url: &'a str,
    description: &'a str,
    mime_type: &'static str,
}

/// x402 v2's `PaymentRequirements` (also what facilitators are sent).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequirementsV2 {
    scheme: &'static str,
    network: String,
    amount: String,
    asset: String,
    pay_to: String,
    max_timeout_seconds: u64,
    extra: Extra,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PaymentRequiredV2<'a> {
    x402_version: u8,
    error: &'a str,
    resource: ResourceV2<'a>,
    accepts: [RequirementsV2; 1],
}

/// x402's `SettlementResponse`, in `PAYMENT-RESPONSE` (v2) or `X-PAYMENT-RESPONSE` (v1).
#[derive(Serialize)]
struct SettlementResponse {
    success: bool,
    transaction: String,
    network: String,
    payer: String,
}

fn base64_json<T: Serialize>(value: &T) -> String {
    // Serialising plain strings and numbers cannot fail.
    let json = serde_json::to_vec(value).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(json)
}

/// x402 v1's network name for a chain.
pub fn network_v1(chain_id: u64) -> String {
    match chain_id {
        8453 => "base".into(),
        84532 => "base-sepolia".into(),
        other => format!("eip155:{other}"),
    }
}

/// CAIP-2 (x402 v2).
pub fn network_v2(chain_id: u64) -> String {
    format!("eip155:{chain_id}")
}

impl X402Rules {
    fn extra(&self) -> Extra {
        Extra {
            name: self.asset_name.clone(),
            version: self.asset_version.clone(),
        }
    }

    /// The contract's 402 body.
    pub fn required_v1(&self, offer: &Offer) -> PaymentRequiredV1 {
        PaymentRequiredV1 {
            x402_version: 1,
            accepts: vec![RequirementsV1 {
                scheme: "exact",
                network: network_v1(self.chain_id),
                max_amount_required: offer.amount.to_string(),
                resource: offer.resource.clone(),
                description: offer.description.clone(),
                mime_type: MIME_TYPE,
                pay_to: self.pay_to.to_string(),
                asset: self.asset.to_string(),
                max_timeout_seconds: self.max_payment_age.as_secs(),
                extra: self.extra(),
            }],
        }
    }

    /// The v2 `PAYMENT-REQUIRED` header value (base64 JSON).
    /// What paying `amount` means in x402 v2.
    pub fn requirements_v2(&self, amount: U256) -> RequirementsV2 {
        RequirementsV2 {
            scheme: "exact",
            network: network_v2(self.chain_id),
            amount: amount.to_string(),
            asset: self.asset.to_string(),
            pay_to: self.pay_to.to_string(),
            max_timeout_seconds: self.max_payment_age.as_secs(),
            extra: self.extra(),
        }
    }

    pub fn required_v2_header(&self, offer: &Offer, error: &str) -> String {
        let body = PaymentRequiredV2 {
            x402_version: 2,
            error,
            resource: ResourceV2 {
                url: &offer.resource,
                description: &offer.description,
                mime_type: MIME_TYPE,
            },
            accepts: [self.requirements_v2(offer.amount)],
        };
        base64_json(&body)
    }

    /// The settlement answer header's value for a settled authorization.
    pub fn settled_header(&self, version: u8, transaction: B256, payer: Address) -> String {
        base64_json(&SettlementResponse {
            success: true,
            transaction: transaction.to_string(),
            network: match version {
                1 => network_v1(self.chain_id),
                _ => network_v2(self.chain_id),
            },
            payer: payer.to_string(),
        })
    }

    /// Is `network` (as a client named it) this chain?
    pub fn is_our_network(&self, network: &str) -> bool {
        network == network_v1(self.chain_id) || network == network_v2(self.chain_id)
    }
}
