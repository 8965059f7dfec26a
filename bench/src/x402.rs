//! The x402 scenarios' payments, made before the load starts, one per request:
//! USDC transfers mined on the local chain (the contract's tx-hash proof) or
//! signed EIP-3009 authorizations the daemon settles inside each request.

use gpubridge_tests::chain::{
    address_of, authorization, x_payment, x_payment_v1, Chain, DEV_KEYS, PAY_TO,
};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Payers: Anvil dev accounts the bench funds (the daemon's relayer is key 3).
const PAYERS: [usize; 3] = [0, 1, 2];

/// One payment header per request, handed out in order.
pub struct Payments {
    headers: Vec<String>,
    next: AtomicUsize,
}

impl Payments {
    /// The next unused payment; `None` once all are used.
    pub fn take(&self) -> Option<&str> {
        self.headers
            .get(self.next.fetch_add(1, Ordering::Relaxed))
            .map(String::as_str)
    }
}

async fn fund(chain: &Chain, count: usize, price: u64) {
    for payer in PAYERS {
        chain
            .mint(address_of(DEV_KEYS[payer]), (count as u64 + 1) * price)
            .await;
    }
}

/// `count` transfers of `price` to the recipient, mined a few hundred to a
/// block; their `X-Payment` proofs.
pub async fn transfers(chain: &Chain, count: usize, price: u64) -> Payments {
    fund(chain, count, price).await;
    let pay_to = PAY_TO.parse().expect("address");
    chain.set_automine(false).await;
    let mut headers = Vec::with_capacity(count);
    for n in 0..count {
        let from = address_of(DEV_KEYS[PAYERS[n % PAYERS.len()]]);
        let tx = chain.pay(from, pay_to, price).await;
        headers.push(x_payment(tx, from));
    }
    chain.mine_pending().await;
    chain.set_automine(true).await;
    Payments {
        headers,
        next: AtomicUsize::new(0),
    }
}

/// `count` signed authorizations of `price` (x402 v1 `X-PAYMENT`), each with its own nonce.
pub async fn authorizations(chain: &Chain, count: usize, price: u64) -> Payments {
    fund(chain, count, price).await;
    let pay_to = PAY_TO.parse().expect("address");
    let headers = (0..count)
        .map(|n| {
            let key = DEV_KEYS[PAYERS[n % PAYERS.len()]];
            let nonce = gpubridge_tests::chain::nonce(n as u64);
            x_payment_v1(authorization(key, pay_to, price, 3_600, nonce))
        })
        .collect();
    Payments {
        headers,
        next: AtomicUsize::new(0),
    }
}
