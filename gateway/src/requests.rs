//! Request bodies as types. Each is parsed in one pass with
//! `serde_path_to_error`, so a wrong or unknown field is reported by name in
//! the error envelope; unknown fields are refused, never ignored. Service inputs
//! themselves are JSON objects checked against the catalog's schemas (422 with
//! each problem's path), since each service has its own.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a request body type tells a client who got it wrong.
pub trait Body: serde::de::DeserializeOwned {
    const HINT: &'static str;
}

/// `POST /run`. Serialized (fields in name order) for its idempotency fingerprint.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    pub input: Map<String, Value>,
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

impl Body for RunBody {
    const HINT: &'static str =
        "A /run body is {\"service\": \"llm-4090\", \"input\": {...}, \"webhook_url\": \"https://...\" (optional)}; GET /catalog lists services and their input schemas.";
}

/// `POST /account/register` and `POST /account/recover`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailBody {
    pub email: String,
}

impl Body for EmailBody {
    const HINT: &'static str = "Send {\"email\": \"you@example.com\"}.";
}

/// `POST /account/spending-limit`, in dollars per UTC day.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendingLimitBody {
    pub daily_limit: f64,
}

impl Body for SpendingLimitBody {
    const HINT: &'static str = "Send {\"daily_limit\": 100}: dollars per UTC day, from 1 to 10000.";
}

/// `POST /admin/credits`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// Account id (`acct_…`) or email.
    pub account: String,
    pub amount_usd: f64,
    #[serde(default)]
    pub note: Option<String>,
}

impl Body for GrantBody {
    const HINT: &'static str =
        "Send {\"account\": \"acct_… or email\", \"amount_usd\": 25, \"note\": \"why\"}.";
}

/// A service input: any JSON object (its schema is the catalog's).
impl Body for Map<String, Value> {
    const HINT: &'static str =
        "Send a JSON object; GET /catalog shows each service's input schema.";
}

/// `POST /account/topup-crypto`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopupBody {
    pub package: String,
}

impl Body for TopupBody {
    const HINT: &'static str =
        "Send {\"package\": \"credits_25\"} (credits_10, credits_25, credits_50 or credits_100).";
}

/// `POST /account/auto-topup`; turning it off needs only `enabled`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoTopupBody {
    pub enabled: bool,
    /// Dollars: top up when the balance falls below this.
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(default)]
    pub package: Option<String>,
}

impl Body for AutoTopupBody {
    const HINT: &'static str = "Send {\"enabled\": true, \"threshold\": 1.00, \"package\": \"credits_10\"}, or {\"enabled\": false}.";
}

/// `POST /account/topup-crypto/claim`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    pub tx_hash: String,
    /// EIP-191 signature of the claim message by the deposit's sender.
    #[serde(default)]
    pub signature: Option<String>,
}

impl Body for ClaimBody {
    const HINT: &'static str = "Send {\"tx_hash\": \"0x…\", \"signature\": \"0x…\"}; without a signature the answer says what to sign.";
}
