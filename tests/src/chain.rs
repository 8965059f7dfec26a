//! A real local chain for the payment tests: Anvil serving chain id 8453 (Base)
//! with the stand-in USDC and sanctions oracle installed at their Base
//! addresses, so the daemon is configured as in production but for the RPC URL.
//! Anvil comes from `tests/chain` (npm), the contracts from its `compile.js`.

use crate::process::ChildProcess;
use crate::JsonClient;
use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use alloy::sol_types::{Eip712Domain, SolCall, SolStruct};
use anyhow::{bail, Context};
use base64::Engine;
use gpubridge_billing::chain::TransferWithAuthorization;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

pub const USDC: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
pub const SANCTIONS_ORACLE: &str = "0x3A91A31cB3dC49b4db9Ce721F50a9D076c8D739B";
pub const BASE: u64 = 8453;

/// Anvil's default dev keys (its well-known test mnemonic): funded with ETH and
/// unlocked on the node.
pub const DEV_KEYS: [&str; 5] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
];

alloy::sol! {
    interface TestUsdc {
        function mint(address to, uint256 value) external;
        function transfer(address to, uint256 value) external returns (bool);
        function balanceOf(address who) external view returns (uint256);
    }
    interface TestOracle {
        function addToSanctionsList(address[] calldata addresses) external;
    }
}

pub struct Chain {
    process: ChildProcess,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    client: JsonClient,
    /// While on, a sent transaction is waited for until its receipt is readable.
    automine: std::sync::atomic::AtomicBool,
}

fn chain_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("chain")
}

/// The stand-in contracts' runtime code, compiled once per test binary.
fn contracts() -> &'static Value {
    static CODE: OnceLock<Value> = OnceLock::new();
    CODE.get_or_init(|| {
        let out = Command::new("node")
            .arg(chain_dir().join("compile.js"))
            .output()
            .expect("node runs tests/chain/compile.js (npm install in tests/chain)");
        assert!(
            out.status.success(),
            "compile.js: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("compile.js prints JSON")
    })
}

pub fn address_of(key: &str) -> Address {
    signer(key).address()
}

fn signer(key: &str) -> PrivateKeySigner {
    let bytes: B256 = key.parse().expect("a dev key");
    PrivateKeySigner::from_bytes(&bytes).expect("a dev key")
}

impl Chain {
    /// Anvil with its clock in step with ours.
    pub async fn start() -> Chain {
        Chain::spawn(None).await
    }

    /// Anvil whose clock runs `seconds` behind ours: its blocks look old.
    pub async fn start_behind(seconds: u64) -> Chain {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Chain::spawn(Some(now - seconds)).await
    }

    async fn spawn(genesis_time: Option<u64>) -> Chain {
        let anvil = std::env::var_os("ANVIL")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                chain_dir().join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
            });
        let log = std::env::temp_dir().join(format!(
            "anvil-{}-{}.log",
            std::process::id(),
            rand_suffix()
        ));
        let mut command = Command::new(&anvil);
        command
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--chain-id",
                &BASE.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(time) = genesis_time {
            command.args(["--timestamp", &time.to_string()]);
        }
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "starting {} (npm install in tests/chain): {e}",
                anvil.display()
            )
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("Listening on ") {
                    let _ = sender.send(addr.trim().to_string());
                }
            }
        });
        let addr = receiver
            .recv_timeout(Duration::from_secs(30))
            .expect("anvil listens within 30 s");
        let chain = Chain {
            process: ChildProcess::new(child, log),
            url: format!("http://{addr}"),
            client: JsonClient::new(),
            automine: true.into(),
        };
        let code = contracts();
        chain
            .rpc("anvil_setCode", json!([USDC, code["TestUSDC"]]))
            .await
            .expect("installing USDC");
        chain
            .rpc(
                "anvil_setCode",
                json!([SANCTIONS_ORACLE, code["TestSanctionsOracle"]]),
            )
            .await
            .expect("installing the oracle");
        chain
    }

    /// One JSON-RPC call; an RPC error is an `Err`.
    pub async fn rpc(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let reply = self.client.post_json(&self.url, &body, &[]).await?;
        if let Some(error) = reply.body.get("error") {
            bail!("{method}: {error}");
        }
        Ok(reply.body["result"].clone())
    }

    /// Sends a transaction from an unlocked dev account; its hash.
    async fn send(&self, from: Address, to: &str, data: Vec<u8>) -> anyhow::Result<B256> {
        let data = format!("0x{}", alloy::primitives::hex::encode(data));
        let hash = self
            .rpc(
                "eth_sendTransaction",
                json!([{"from": from.to_string(), "to": to, "data": data}]),
            )
            .await
            .with_context(|| format!("from {from}"))?;
        let hash: B256 = hash
            .as_str()
            .context("a transaction hash")?
            .parse()
            .context("a transaction hash")?;
        if self.automine.load(std::sync::atomic::Ordering::Relaxed) {
            self.wait_receipt(hash).await?;
        }
        Ok(hash)
    }

    /// Anvil answers `eth_sendTransaction` a moment before the receipt is readable.
    async fn wait_receipt(&self, hash: B256) -> anyhow::Result<()> {
        for _ in 0..500 {
            let receipt = self
                .rpc("eth_getTransactionReceipt", json!([hash.to_string()]))
                .await?;
            if !receipt.is_null() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bail!("no receipt for {hash} after 5 s")
    }

    pub async fn mint(&self, to: Address, amount: u64) {
        let call = TestUsdc::mintCall {
            to,
            value: U256::from(amount),
        }
        .abi_encode();
        self.send(to, USDC, call).await.expect("mint");
    }

    /// A USDC transfer from a dev account: the transaction an `X-Payment` proves.
    pub async fn pay(&self, from: Address, to: Address, amount: u64) -> B256 {
        let call = TestUsdc::transferCall {
            to,
            value: U256::from(amount),
        }
        .abi_encode();
        self.send(from, USDC, call).await.expect("transfer")
    }

    pub async fn balance(&self, who: Address) -> u64 {
        let data = format!(
            "0x{}",
            alloy::primitives::hex::encode(TestUsdc::balanceOfCall { who }.abi_encode())
        );
        let result = self
            .rpc("eth_call", json!([{"to": USDC, "data": data}, "latest"]))
            .await
            .expect("balanceOf");
        let value: U256 = result.as_str().expect("hex").parse().expect("a uint256");
        value.to::<u64>()
    }

    pub async fn sanction(&self, who: Address) {
        let call = TestOracle::addToSanctionsListCall {
            addresses: vec![who],
        }
        .abi_encode();
        self.send(who, SANCTIONS_ORACLE, call)
            .await
            .expect("listing");
    }

    pub async fn mine(&self, blocks: u64) {
        let target = self.block_number().await + blocks;
        self.rpc("anvil_mine", json!([format!("0x{blocks:x}")]))
            .await
            .expect("mining");
        while self.block_number().await < target {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Mines until the node holds no pending transaction.
    pub async fn mine_pending(&self) {
        loop {
            let status = self
                .rpc("txpool_status", json!([]))
                .await
                .expect("txpool_status");
            let count = |field: &str| {
                let hex = status[field]
                    .as_str()
                    .unwrap_or("0x0")
                    .trim_start_matches("0x");
                u64::from_str_radix(hex, 16).unwrap_or(0)
            };
            if count("pending") + count("queued") == 0 {
                return;
            }
            self.mine(count("pending") / 300 + 1).await;
        }
    }

    pub async fn block_number(&self) -> u64 {
        let hex = self
            .rpc("eth_blockNumber", json!([]))
            .await
            .expect("block number");
        u64::from_str_radix(hex.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16)
            .expect("a block number")
    }

    pub async fn set_automine(&self, on: bool) {
        self.automine
            .store(on, std::sync::atomic::Ordering::Relaxed);
        self.rpc("evm_setAutomine", json!([on]))
            .await
            .expect("automine");
    }

    pub async fn increase_time(&self, seconds: u64) {
        self.rpc("evm_increaseTime", json!([seconds]))
            .await
            .expect("time travel");
    }

    /// Freezes the node (SIGSTOP) until [`Chain::resume`], and returns once its
    /// RPC has stopped answering: in a gVisor sandbox a stop can take effect
    /// after `kill` returns, while the node still answers a request or two.
    pub async fn pause(&self) {
        for _ in 0..20 {
            self.signal("-STOP");
            let probe = self.rpc("eth_blockNumber", json!([]));
            if tokio::time::timeout(std::time::Duration::from_millis(300), probe)
                .await
                .is_err()
            {
                return;
            }
        }
        panic!("anvil still answers after SIGSTOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.process.id().expect("anvil runs").to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The contract's proof header: `base64({"txHash","from"})`.
pub fn x_payment(tx: B256, from: Address) -> String {
    base64_json(&json!({"txHash": tx.to_string(), "from": from.to_string()}))
}

pub fn base64_json(value: &Value) -> String {
    base64::engine::general_purpose::STANDARD.encode(value.to_string())
}

/// An EIP-3009 authorization signed by `key` over USDC's EIP-712 domain on
/// this chain, as x402's `exact` payload: `{signature, authorization}`.
pub fn authorization(key: &str, to: Address, value: u64, valid_for: u64, nonce: B256) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let signer = signer(key);
    let message = TransferWithAuthorization {
        from: signer.address(),
        to,
        value: U256::from(value),
        validAfter: U256::from(now - 60),
        validBefore: U256::from(now + valid_for),
        nonce,
    };
    let domain = Eip712Domain::new(
        Some("USD Coin".into()),
        Some("2".into()),
        Some(U256::from(BASE)),
        Some(USDC.parse().expect("address")),
        None,
    );
    let signature = signer
        .sign_hash_sync(&message.eip712_signing_hash(&domain))
        .expect("signing");
    json!({
        "signature": format!("0x{}", alloy::primitives::hex::encode(signature.as_bytes())),
        "authorization": {
            "from": message.from.to_string(),
            "to": to.to_string(),
            "value": value.to_string(),
            "validAfter": message.validAfter.to_string(),
            "validBefore": message.validBefore.to_string(),
            "nonce": nonce.to_string(),
        }
    })
}

/// The x402 v1 `X-PAYMENT` header carrying an `exact` payload.
pub fn x_payment_v1(payload: Value) -> String {
    base64_json(
        &json!({"x402Version": 1, "scheme": "exact", "network": "base", "payload": payload}),
    )
}

/// The x402 v2 `PAYMENT-SIGNATURE` header: the requirements accepted (from
/// `PAYMENT-REQUIRED`) and the `exact` payload.
pub fn payment_signature(accepted: &Value, payload: Value) -> String {
    base64_json(&json!({"x402Version": 2, "accepted": accepted, "payload": payload}))
}

/// x402's Python client in `tests/clients/.venv` (made by `.ci/setup-deps`)
/// and the script that pays through it.
pub fn x402_python_client() -> (PathBuf, PathBuf) {
    crate::python_client("x402_pay.py")
}

/// An EIP-191 `personal_sign` of `message` by `key`, as wallets make it.
pub fn personal_sign(key: &str, message: &str) -> String {
    let signature = signer(key)
        .sign_message_sync(message.as_bytes())
        .expect("signing");
    format!("0x{}", alloy::primitives::hex::encode(signature.as_bytes()))
}

/// Where test payments go.
pub const PAY_TO: &str = "0xB0FdC6030B9f30652e8B221B8090d443Dd3C6381";
/// $1 in USDC's atomic units.
pub const DOLLAR: u64 = 1_000_000;

/// The daemon's `[x402]` section for `chain`: paid to [`PAY_TO`], settled by
/// the relayer `DEV_KEYS[3]`, quick RPC timeouts and a quick deposit watcher.
pub fn x402_config(chain: &Chain, extra: &str) -> String {
    let relayer = format!("relayer_key = \"{}\"\n", DEV_KEYS[3]);
    x402_section(chain, &relayer, extra)
}

/// [`x402_config`] settling through the facilitator at `url` instead.
pub fn x402_config_facilitator(chain: &Chain, url: &str, extra: &str) -> String {
    x402_section(chain, &format!("facilitator_url = \"{url}\"\n"), extra)
}

fn x402_section(chain: &Chain, settler: &str, extra: &str) -> String {
    format!(
        "[x402]\nrpc_url = \"{}\"\npay_to = \"{PAY_TO}\"\n{settler}rpc_timeout_ms = 1000\ntopup_poll_ms = 100\n{extra}",
        chain.url
    )
}

/// An EIP-3009 nonce.
pub type Nonce = B256;

/// The EIP-3009 nonce numbered `n` (big-endian in the last bytes).
pub fn nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; 32];
    bytes[24..].copy_from_slice(&n.to_be_bytes());
    B256::from(bytes)
}
