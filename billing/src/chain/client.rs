//! The chain as GPU-Bridge uses it: transactions and their receipts, block
//! times and confirmations, the asset's balances, transfers and EIP-3009
//! authorizations, the sanctions oracle, and (with a relayer key) submitting
//! `transferWithAuthorization`. Every call goes to the configured RPC node.

use super::contracts::{SanctionsOracle, Token};
use super::relayer::Relayer;
use super::transport::RpcTransport;
use alloy::primitives::{Address, FixedBytes, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::{BlockNumberOrTag, Filter, Log, TransactionReceipt};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("the chain's RPC node failed: {0}")]
    Rpc(String),
    #[error("the RPC node serves chain {found}, not {expected}")]
    WrongChain { found: u64, expected: u64 },
    #[error("bad RPC URL {0:?}")]
    Url(String),
    #[error("the relayer's transaction failed: {0}")]
    Settlement(String),
    #[error("no relayer key is configured")]
    NoRelayer,
}

fn rpc(error: impl std::fmt::Display) -> ChainError {
    ChainError::Rpc(error.to_string())
}

/// Where the chain is and what on it matters.
#[derive(Clone, Debug)]
pub struct ChainSettings {
    pub rpc_url: String,
    pub chain_id: u64,
    pub asset: Address,
    pub sanctions_oracle: Option<Address>,
    pub rpc_timeout: Duration,
}

/// An asset transfer as a log shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub from: Address,
    pub to: Address,
    pub value: U256,
    pub tx_hash: B256,
    pub log_index: u64,
    pub block: u64,
}

pub struct Chain {
    provider: DynProvider,
    relayer: Option<Relayer>,
    settings: ChainSettings,
}

impl Chain {
    /// Connects and checks the node serves the expected chain.
    pub async fn connect(
        settings: ChainSettings,
        relayer: Option<PrivateKeySigner>,
    ) -> Result<Chain, ChainError> {
        let url = settings
            .rpc_url
            .parse()
            .map_err(|_| ChainError::Url(settings.rpc_url.clone()))?;
        let transport = RpcTransport::new(url, settings.rpc_timeout);
        let provider = ProviderBuilder::new()
            .connect_client(RpcClient::new(transport.clone(), false))
            .erased();
        let relayer = relayer.map(|signer| Relayer::new(signer, transport));
        let found = provider.get_chain_id().await.map_err(rpc)?;
        if found != settings.chain_id {
            return Err(ChainError::WrongChain {
                found,
                expected: settings.chain_id,
            });
        }
        Ok(Chain {
            provider,
            relayer,
            settings,
        })
    }

    pub fn settings(&self) -> &ChainSettings {
        &self.settings
    }

    pub fn relayer(&self) -> Option<Address> {
        self.relayer.as_ref().map(Relayer::address)
    }

    pub async fn latest_block(&self) -> Result<u64, ChainError> {
        self.provider.get_block_number().await.map_err(rpc)
    }

    pub async fn receipt(&self, tx: B256) -> Result<Option<TransactionReceipt>, ChainError> {
        self.provider.get_transaction_receipt(tx).await.map_err(rpc)
    }

    /// The timestamp of block `number`, Unix seconds.
    pub async fn block_time(&self, number: u64) -> Result<Option<u64>, ChainError> {
        let block = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .await
            .map_err(rpc)?;
        Ok(block.map(|b| b.header.timestamp))
    }

    /// Whether the oracle lists `address`; `false` when no oracle is configured.
    pub async fn is_sanctioned(&self, address: Address) -> Result<bool, ChainError> {
        let Some(oracle) = self.settings.sanctions_oracle else {
            return Ok(false);
        };
        SanctionsOracle::new(oracle, &self.provider)
            .isSanctioned(address)
            .call()
            .await
            .map_err(rpc)
    }

    pub async fn balance_of(&self, address: Address) -> Result<U256, ChainError> {
        self.token().balanceOf(address).call().await.map_err(rpc)
    }

    /// Has this EIP-3009 nonce of `from` been used (or cancelled) on chain?
    pub async fn authorization_used(&self, from: Address, nonce: B256) -> Result<bool, ChainError> {
        self.token()
            .authorizationState(from, nonce)
            .call()
            .await
            .map_err(rpc)
    }

    fn token(&self) -> Token::TokenInstance<&DynProvider> {
        Token::new(self.settings.asset, &self.provider)
    }

    /// The asset's transfers to `to` in blocks `from..=to_block`.
    pub async fn transfers_to(
        &self,
        to: Address,
        from: u64,
        to_block: u64,
    ) -> Result<Vec<Transfer>, ChainError> {
        let filter = Filter::new()
            .address(self.settings.asset)
            .event_signature(Token::Transfer::SIGNATURE_HASH)
            .topic2(to.into_word())
            .from_block(from)
            .to_block(to_block);
        let logs = self.provider.get_logs(&filter).await.map_err(rpc)?;
        Ok(logs.iter().filter_map(transfer).collect())
    }

    /// The transaction that used `from`'s EIP-3009 `nonce`, if one did in the
    /// last `within` blocks.
    pub async fn authorization_transaction(
        &self,
        from: Address,
        nonce: B256,
        within: u64,
    ) -> Result<Option<B256>, ChainError> {
        let latest = self.latest_block().await?;
        let filter = Filter::new()
            .address(self.settings.asset)
            .event_signature(Token::AuthorizationUsed::SIGNATURE_HASH)
            .topic1(from.into_word())
            .topic2(nonce)
            .from_block(latest.saturating_sub(within))
            .to_block(latest);
        let logs = self.provider.get_logs(&filter).await.map_err(rpc)?;
        Ok(logs.iter().find_map(|log| log.transaction_hash))
    }

    /// Submits `transferWithAuthorization` from the relayer and waits for it to be mined.
    #[allow(clippy::too_many_arguments)]
    pub async fn transfer_with_authorization(
        &self,
        from: Address,
        to: Address,
        value: U256,
        valid_after: U256,
        valid_before: U256,
        nonce: B256,
        signature: &alloy::primitives::Signature,
    ) -> Result<TransactionReceipt, ChainError> {
        let relayer = self.relayer.as_ref().ok_or(ChainError::NoRelayer)?;
        let v = 27 + u8::from(signature.v());
        let r: FixedBytes<32> = signature.r().into();
        let s: FixedBytes<32> = signature.s().into();
        // A second try after re-reading the nonce: the first may have failed
        // only because the relayer's local count was off.
        let mut tries = 0;
        let pending = loop {
            let provider = relayer.provider();
            let token = Token::new(self.settings.asset, &provider);
            let sent = token
                .transferWithAuthorization(
                    from,
                    to,
                    value,
                    valid_after,
                    valid_before,
                    nonce,
                    v,
                    r,
                    s,
                )
                .send()
                .await;
            match sent {
                Ok(pending) => break pending,
                Err(e) => {
                    relayer.resync();
                    tries += 1;
                    if tries == 2 {
                        return Err(ChainError::Settlement(e.to_string()));
                    }
                }
            }
        };
        let tx = *pending.tx_hash();
        let receipt = self
            .wait_receipt(tx, MINING_DEADLINE)
            .await?
            .ok_or_else(|| {
                ChainError::Settlement(format!(
                    "transaction {tx} was not mined within {MINING_DEADLINE:?}"
                ))
            })?;
        if !receipt.status() {
            return Err(ChainError::Settlement(format!(
                "transaction {} reverted",
                receipt.transaction_hash
            )));
        }
        Ok(receipt)
    }
}

impl Chain {
    /// Waits up to `within` for `tx`'s receipt, asking often at first: a Base
    /// block is 2 s, and alloy's own watcher would look only every 7. `None`
    /// if it is not mined by then.
    pub async fn wait_receipt(
        &self,
        tx: B256,
        within: Duration,
    ) -> Result<Option<TransactionReceipt>, ChainError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(receipt) = self.receipt(tx).await? {
                return Ok(Some(receipt));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// The asset's transfers to `to` that a receipt holds.
    pub fn transfers_in(&self, receipt: &TransactionReceipt, to: Address) -> Vec<Transfer> {
        receipt
            .inner
            .logs()
            .iter()
            .filter(|log| log.address() == self.settings.asset)
            .filter_map(transfer)
            .filter(|t| t.to == to)
            .collect()
    }
}

/// How long a settlement may take to be mined before the request gives up
/// (the payer is not charged twice: a retry finds the transaction on chain).
const MINING_DEADLINE: Duration = Duration::from_secs(120);

/// A log as an asset transfer, if it is one.
pub fn transfer(log: &Log) -> Option<Transfer> {
    let event = Token::Transfer::decode_log(&log.inner).ok()?;
    Some(Transfer {
        from: event.from,
        to: event.to,
        value: event.value,
        tx_hash: log.transaction_hash?,
        log_index: log.log_index?,
        block: log.block_number?,
    })
}
