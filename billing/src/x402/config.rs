//! x402 settings as operators write them, and the checked rules the payment
//! paths apply. Without an RPC URL x402 is off.

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use gpubridge_protocol::Micros;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// USDC on Base.
pub const BASE_USDC: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
/// Chainalysis's sanctions oracle on Base.
pub const BASE_SANCTIONS_ORACLE: &str = "0x3A91A31cB3dC49b4db9Ce721F50a9D076c8D739B";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct X402Config {
    /// Base's JSON-RPC endpoint (`GPUBRIDGE_BASE_RPC_URL`); unset: x402 off.
    pub rpc_url: Option<String>,
    /// The chain the RPC node must serve (`GPUBRIDGE_BASE_CHAIN_ID`).
    pub chain_id: u64,
    /// Who is paid (`GPUBRIDGE_X402_PAY_TO`); required with `rpc_url`.
    pub pay_to: Option<String>,
    /// The asset (`GPUBRIDGE_X402_ASSET`): an ERC-20 with EIP-3009.
    pub asset: String,
    /// Its EIP-712 domain name and version, and its decimals.
    pub asset_name: String,
    pub asset_version: String,
    pub asset_decimals: u8,
    /// `isSanctioned(address)` oracle (`GPUBRIDGE_SANCTIONS_ORACLE`); empty: no screening.
    pub sanctions_oracle: String,
    /// Key (hex) of an account with gas that submits EIP-3009 transfers
    /// (`GPUBRIDGE_X402_RELAYER_KEY`); prefer `relayer_key_file`. Never logged.
    pub relayer_key: Option<String>,
    pub relayer_key_file: Option<PathBuf>,
    /// An x402 facilitator (`/verify`, `/settle`) instead of a relayer key.
    pub facilitator_url: Option<String>,
    /// How old a paying transfer's block may be.
    pub max_payment_age_seconds: u64,
    /// Confirmations required, and above `large_payment_usd` the larger count.
    pub confirmations: u64,
    pub large_payment_usd: f64,
    pub large_payment_confirmations: u64,
    /// How long a proof whose job failed everywhere may pay for one retry.
    pub retry_hours: u64,
    pub rpc_timeout_ms: u64,
    /// USDC top-ups for accounts (`POST /account/topup-crypto`): their fee in
    /// basis points, how long an opened top-up waits for its deposit, and how
    /// often (and in how many blocks at a time) the watcher reads the chain.
    pub topups: bool,
    pub topup_fee_bps: u64,
    pub topup_expiry_minutes: u64,
    pub topup_poll_ms: u64,
    pub topup_log_range_blocks: u64,
}

impl Default for X402Config {
    fn default() -> Self {
        X402Config {
            rpc_url: None,
            chain_id: 8453,
            pay_to: None,
            asset: BASE_USDC.into(),
            asset_name: "USD Coin".into(),
            asset_version: "2".into(),
            asset_decimals: 6,
            sanctions_oracle: BASE_SANCTIONS_ORACLE.into(),
            relayer_key: None,
            relayer_key_file: None,
            facilitator_url: None,
            max_payment_age_seconds: 300,
            confirmations: 1,
            large_payment_usd: 10.0,
            large_payment_confirmations: 5,
            retry_hours: 24,
            rpc_timeout_ms: 10_000,
            topups: true,
            topup_fee_bps: 50,
            topup_expiry_minutes: 60,
            topup_poll_ms: 2_000,
            topup_log_range_blocks: 2_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum X402ConfigError {
    #[error("x402.{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> X402ConfigError {
    X402ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn address(field: &'static str, text: &str) -> Result<Address, X402ConfigError> {
    text.trim()
        .parse()
        .map_err(|_| invalid(field, format!("{text:?} is not an address")))
}

/// The checked form of [`X402Config`].
#[derive(Clone, Debug)]
pub struct X402Rules {
    pub rpc_url: String,
    pub chain_id: u64,
    pub pay_to: Address,
    pub asset: Address,
    pub asset_name: String,
    pub asset_version: String,
    pub asset_decimals: u8,
    pub sanctions_oracle: Option<Address>,
    pub max_payment_age: Duration,
    pub confirmations: u64,
    pub large_payment: Micros,
    pub large_payment_confirmations: u64,
    pub retry: Duration,
    pub rpc_timeout: Duration,
    pub topups: Option<TopupRules>,
}

#[derive(Clone, Debug)]
pub struct TopupRules {
    pub fee_bps: u64,
    pub expiry: Duration,
    pub poll: Duration,
    pub log_range_blocks: u64,
}

impl X402Config {
    /// `None` when x402 is off (no RPC URL).
    pub fn rules(&self) -> Result<Option<X402Rules>, X402ConfigError> {
        let Some(rpc_url) = self
            .rpc_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        else {
            return Ok(None);
        };
        let pay_to = self.pay_to.as_deref().ok_or_else(|| {
            invalid(
                "pay_to",
                "required with rpc_url: the address payments go to",
            )
        })?;
        if self.facilitator_url.is_some()
            && (self.relayer_key.is_some() || self.relayer_key_file.is_some())
        {
            return Err(invalid(
                "facilitator_url",
                "settle through a facilitator or with a relayer key, not both",
            ));
        }
        let oracle = match self.sanctions_oracle.trim() {
            "none" | "off" => "",
            oracle => oracle,
        };
        Ok(Some(X402Rules {
            rpc_url: rpc_url.to_string(),
            chain_id: self.chain_id,
            pay_to: address("pay_to", pay_to)?,
            asset: address("asset", &self.asset)?,
            asset_name: self.asset_name.clone(),
            asset_version: self.asset_version.clone(),
            asset_decimals: self.asset_decimals,
            sanctions_oracle: (!oracle.is_empty())
                .then(|| address("sanctions_oracle", oracle))
                .transpose()?,
            max_payment_age: Duration::from_secs(self.max_payment_age_seconds),
            confirmations: self.confirmations.max(1),
            large_payment: Micros::from_dollars(self.large_payment_usd)
                .map_err(|e| invalid("large_payment_usd", e.to_string()))?,
            large_payment_confirmations: self.large_payment_confirmations.max(1),
            retry: Duration::from_secs(self.retry_hours.saturating_mul(3600)),
            rpc_timeout: Duration::from_millis(self.rpc_timeout_ms.max(100)),
            topups: self.topups.then(|| TopupRules {
                fee_bps: self.topup_fee_bps.min(10_000),
                expiry: Duration::from_secs(self.topup_expiry_minutes.max(1) * 60),
                poll: Duration::from_millis(self.topup_poll_ms.max(50)),
                log_range_blocks: self.topup_log_range_blocks.max(1),
            }),
        }))
    }
}

impl X402Config {
    /// The facilitator that settles authorizations, when one is configured.
    pub fn facilitator(&self) -> Result<Option<super::Facilitator>, X402ConfigError> {
        let Some(url) = self
            .facilitator_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
        else {
            return Ok(None);
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(invalid("facilitator_url", "must be an http(s) URL"));
        }
        let timeout =
            Duration::from_millis(self.rpc_timeout_ms.max(100)).max(Duration::from_secs(30));
        super::Facilitator::new(url, timeout)
            .map(Some)
            .map_err(|e| invalid("facilitator_url", e))
    }

    /// The relayer's signer, from `relayer_key` or the file `relayer_key_file`
    /// names. Errors never quote the key.
    pub fn relayer(&self) -> Result<Option<PrivateKeySigner>, X402ConfigError> {
        let key = match (&self.relayer_key, &self.relayer_key_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "relayer_key",
                    "set relayer_key or relayer_key_file, not both",
                ))
            }
            (Some(key), None) => key.clone(),
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    "relayer_key_file",
                    format!("reading {}: {e}", path.display()),
                )
            })?,
            (None, None) => return Ok(None),
        };
        let bad = || invalid("relayer_key", "not a 32-byte hex private key");
        let key = key.trim();
        let bytes: B256 = format!("0x{}", key.strip_prefix("0x").unwrap_or(key))
            .parse()
            .map_err(|_| bad())?;
        PrivateKeySigner::from_bytes(&bytes)
            .map(Some)
            .map_err(|_| bad())
    }
}

impl X402Rules {
    /// A price in the asset's smallest unit, rounded up: never less than the price.
    pub fn atomic(&self, price: Micros) -> U256 {
        let micros = U256::from(price.0);
        match self.asset_decimals {
            d if d >= 6 => micros * U256::from(10u64).pow(U256::from(d - 6)),
            d => {
                let unit = U256::from(10u64).pow(U256::from(6 - d));
                micros.div_ceil(unit)
            }
        }
    }

    /// Atomic units as micro-dollars, rounded down: never more than was paid.
    pub fn micros(&self, atomic: U256) -> Micros {
        let micros = match self.asset_decimals {
            d if d >= 6 => atomic / U256::from(10u64).pow(U256::from(d - 6)),
            d => atomic * U256::from(10u64).pow(U256::from(6 - d)),
        };
        Micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// Confirmations a payment of this size needs.
    pub fn confirmations_for(&self, amount: U256) -> u64 {
        match self.micros(amount) > self.large_payment {
            true => self.large_payment_confirmations,
            false => self.confirmations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(decimals: u8) -> X402Rules {
        let config = X402Config {
            rpc_url: Some("http://127.0.0.1:8545".into()),
            pay_to: Some("0x00000000000000000000000000000000000000aa".into()),
            asset_decimals: decimals,
            ..Default::default()
        };
        config.rules().unwrap().unwrap()
    }

    #[test]
    fn prices_round_up_to_atomic_units_and_confirmations_follow_size() {
        assert_eq!(rules(6).atomic(Micros(3_000)), U256::from(3_000));
        assert_eq!(rules(18).atomic(Micros(1)), U256::from(10u64.pow(12)));
        assert_eq!(
            rules(2).atomic(Micros(10_001)),
            U256::from(2),
            "a cent and a bit is two cents"
        );
        let usdc = rules(6);
        assert_eq!(
            usdc.confirmations_for(U256::from(10_000_000)),
            1,
            "$10 is small"
        );
        assert_eq!(usdc.confirmations_for(U256::from(10_000_001)), 5);
        assert_eq!(usdc.micros(U256::from(123)), Micros(123));
    }

    #[test]
    fn off_without_rpc_and_pay_to_is_required() {
        assert!(X402Config::default().rules().unwrap().is_none());
        let missing = X402Config {
            rpc_url: Some("http://127.0.0.1:8545".into()),
            ..Default::default()
        };
        assert!(missing.rules().unwrap_err().to_string().contains("pay_to"));
        let bad = X402Config {
            rpc_url: Some("http://127.0.0.1:8545".into()),
            pay_to: Some("nope".into()),
            ..Default::default()
        };
        assert!(bad.rules().is_err());
    }

    #[test]
    fn relayer_keys_parse_and_errors_never_quote_them() {
        let key = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
        let config = X402Config {
            relayer_key: Some(key.into()),
            ..Default::default()
        };
        let signer = config.relayer().unwrap().unwrap();
        assert_eq!(
            signer.address().to_string(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
        let bad = X402Config {
            relayer_key: Some("0xnot-a-key-but-secret".into()),
            ..Default::default()
        };
        let error = bad.relayer().unwrap_err().to_string();
        assert!(!error.contains("secret"), "{error}");
        assert!(X402Config::default().relayer().unwrap().is_none());
    }
}
