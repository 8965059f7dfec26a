//! Settling through an x402 facilitator instead of a relayer key: `POST
//! /verify`, then `POST /settle`, with the payment as x402 v2 specifies it
//! (`{x402Version, paymentPayload, paymentRequirements}`), whichever version
//! the client spoke — the EIP-3009 signature is the same.

use super::config::X402Rules;
use super::payment::{ExactPayload, SignedAuthorization};
use super::requirements::RequirementsV2;
use crate::poster::JsonPoster;
use alloy::primitives::{B256, U256};
use bytes::Bytes;
use hyper::Uri;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum FacilitatorError {
    #[error("the facilitator refused the payment: {0}")]
    Invalid(String),
    #[error("the facilitator failed: {0}")]
    Failed(String),
}

pub struct Facilitator {
    verify: Uri,
    settle: Uri,
    poster: JsonPoster,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FacilitatorRequest {
    x402_version: u8,
    payment_payload: PaymentPayload,
    payment_requirements: RequirementsV2,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PaymentPayload {
    x402_version: u8,
    accepted: RequirementsV2,
    payload: ExactPayload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerifyResponse {
    is_valid: bool,
    #[serde(default)]
    invalid_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SettleResponse {
    success: bool,
    #[serde(default)]
    error_reason: Option<String>,
    #[serde(default)]
    transaction: String,
}

/// Largest facilitator answer read.
const MAX_ANSWER: usize = 64 * 1024;

impl Facilitator {
    pub fn new(url: &str, timeout: Duration) -> Result<Facilitator, String> {
        let base = url.trim().trim_end_matches('/');
        let parse = |path: &str| {
            format!("{base}{path}")
                .parse::<Uri>()
                .map_err(|e| format!("{url:?}: {e}"))
        };
        Ok(Facilitator {
            verify: parse("/verify")?,
            settle: parse("/settle")?,
            poster: JsonPoster::new(timeout, MAX_ANSWER),
        })
    }

    /// Verifies, then settles; the settling transaction.
    pub async fn settle(
        &self,
        rules: &X402Rules,
        signed: &SignedAuthorization,
        amount: U256,
    ) -> Result<B256, FacilitatorError> {
        let body = serde_json::to_vec(&request(rules, signed, amount))
            .map_err(|e| FacilitatorError::Failed(e.to_string()))?;
        let body = Bytes::from(body);
        let verified: VerifyResponse = self.call(&self.verify, body.clone()).await?;
        if !verified.is_valid {
            let reason = verified
                .invalid_reason
                .unwrap_or_else(|| "no reason given".into());
            return Err(FacilitatorError::Invalid(reason));
        }
        let settled: SettleResponse = self.call(&self.settle, body).await?;
        if !settled.success {
            let reason = settled
                .error_reason
                .unwrap_or_else(|| "no reason given".into());
            return Err(FacilitatorError::Failed(reason));
        }
        settled.transaction.parse().map_err(|_| {
            FacilitatorError::Failed(format!(
                "it named no transaction ({:?})",
                settled.transaction
            ))
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        url: &Uri,
        body: Bytes,
    ) -> Result<T, FacilitatorError> {
        let answer = self
            .poster
            .post(url, body)
            .await
            .map_err(|e| FacilitatorError::Failed(format!("{url}: {e}")))?;
        serde_json::from_slice(&answer)
            .map_err(|e| FacilitatorError::Failed(format!("{url} answered {e}")))
    }
}

fn request(rules: &X402Rules, signed: &SignedAuthorization, amount: U256) -> FacilitatorRequest {
    FacilitatorRequest {
        x402_version: 2,
        payment_payload: PaymentPayload {
            x402_version: 2,
            accepted: rules.requirements_v2(amount),
            payload: ExactPayload::of(signed),
        },
        payment_requirements: rules.requirements_v2(amount),
    }
}
