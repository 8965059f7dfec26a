//! The chain: Base (or any EVM chain with an EIP-3009 asset such as USDC),
//! reached through alloy over GPU-Bridge's own rustls HTTP client.

mod client;
mod contracts;
mod relayer;
mod transport;

pub use client::{transfer, Chain, ChainError, ChainSettings, Transfer};
pub use contracts::{SanctionsOracle, Token, TransferWithAuthorization};
