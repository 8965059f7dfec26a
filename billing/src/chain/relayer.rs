//! The relayer: an account with gas that submits transactions (EIP-3009
//! settlements). alloy counts its nonces locally so concurrent settlements do
//! not collide; a submission that fails after taking a nonce leaves that count
//! ahead of the node, and every later transaction would wait behind the gap.
//! So after a failed submission the provider is rebuilt and the next one asks
//! the node for the nonce again.

use super::transport::RpcTransport;
use alloy::network::EthereumWallet;
use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::RpcClient;
use alloy::signers::local::PrivateKeySigner;
use parking_lot::RwLock;

pub struct Relayer {
    signer: PrivateKeySigner,
    transport: RpcTransport,
    provider: RwLock<DynProvider>,
}

impl Relayer {
    pub fn new(signer: PrivateKeySigner, transport: RpcTransport) -> Relayer {
        let provider = RwLock::new(build(&signer, &transport));
        Relayer {
            signer,
            transport,
            provider,
        }
    }

    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The provider that signs and sends as the relayer.
    pub fn provider(&self) -> DynProvider {
        self.provider.read().clone()
    }

    /// Forgets the locally counted nonce: the next transaction asks the node.
    pub fn resync(&self) {
        *self.provider.write() = build(&self.signer, &self.transport);
        tracing::warn!(relayer = %self.address(), "relayer nonce re-read from the node after a failed submission");
    }
}

fn build(signer: &PrivateKeySigner, transport: &RpcTransport) -> DynProvider {
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer.clone()))
        .connect_client(RpcClient::new(transport.clone(), false))
        .erased()
}
