//! USDC top-ups against a real local chain: a package's exact amount credited
//! once it is confirmed, deposits that matched nothing claimed by their sender,
//! and kill -9 of the daemon while it credits a burst of deposits.

use gpubridge_tests::accounts::{audit_offline, balance, micros, register, TestAccount};
use gpubridge_tests::chain::{
    address_of, personal_sign, x402_config, x_payment, Chain, DEV_KEYS, DOLLAR, PAY_TO,
};
use gpubridge_tests::{Daemon, DaemonOptions, InProcess, JsonClient};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn daemon(chain: &Chain, dir: &std::path::Path) -> InProcess {
    let config = x402_config(chain, "");
    let mut options = DaemonOptions::new(dir.join("data"));
    options.config = Some(&config);
    options.accounts = true;
    InProcess::start(options).await
}

async fn open_topup(client: &JsonClient, base: &str, package: &str) -> Value {
    let reply = client
        .post_json(
            &format!("{base}/account/topup-crypto"),
            &json!({"package": package}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body
}

/// Waits until the account's balance is `micros`; panics after `seconds`.
async fn wait_balance(client: &JsonClient, base: &str, expected: i64, seconds: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let body = balance(client, base).await;
        if micros(&body["balance"]) == expected {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "balance never reached {expected}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn amount(topup: &Value) -> u64 {
    topup["amount_atomic"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_packages_exact_amount_is_credited_once_confirmed() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(&chain, dir.path()).await;
    let anonymous = JsonClient::new();
    let TestAccount { key, .. } = register(&anonymous, &daemon.base, "usdc@example.com")
        .await
        .unwrap();
    let client = anonymous.with_bearer(&key);

    let topup = open_topup(&client, &daemon.base, "credits_25").await;
    assert_eq!(topup["pay_to"], PAY_TO);
    assert_eq!(topup["network"], "base");
    assert_eq!(topup["chain_id"], 8453);
    assert_eq!(topup["credits_usd"], 26.25);
    assert_eq!(topup["status"], "awaiting_deposit");
    assert!(topup["expires_at"].as_str().unwrap().ends_with('Z'));
    // $25 plus the 0.5% fee, plus under a cent that makes it unique.
    let sent = amount(&topup);
    assert!((25_125_001..25_135_000).contains(&sent), "{sent}");
    let other = open_topup(&client, &daemon.base, "credits_25").await;
    assert_ne!(amount(&other), sent, "open top-ups have distinct amounts");
    let unknown = client
        .post_json(
            &daemon.url("/account/topup-crypto"),
            &json!({"package": "credits_7"}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(unknown.status, 400, "{}", unknown.body);

    let payer = address_of(DEV_KEYS[0]);
    chain.mint(payer, 100 * DOLLAR).await;
    let tx = chain.pay(payer, PAY_TO.parse().unwrap(), sent).await;
    // Above $10: five confirmations first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(micros(&balance(&client, &daemon.base).await["balance"]), 0);
    chain.mine(4).await;
    let body = wait_balance(&client, &daemon.base, 26_250_000, 10).await;
    let listed = &body["crypto_topups"];
    let credited = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topup_id"] == topup["topup_id"])
        .unwrap();
    assert_eq!(credited["status"], "credited", "{listed}");
    assert_eq!(credited["transaction"], tx.to_string());
    let jobs = client.get(&daemon.url("/account/jobs")).await.unwrap();
    assert_eq!(jobs.body["crypto_topups"].as_array().unwrap().len(), 2);

    // The deposit cannot also pay for an x402 job.
    let reply = anonymous
        .post_json(
            &daemon.url("/run"),
            &json!({"service": "echo", "input": {}}),
            &[("x-payment", &x_payment(tx, payer))],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 409, "{}", reply.body);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        micros(&balance(&client, &daemon.base).await["balance"]),
        26_250_000,
        "credited once"
    );
    daemon.stop().await;
    let (clean, report) = audit_offline(&dir.path().join("data")).await;
    assert!(clean, "{report}");
    assert_eq!(report["crypto_deposits"], 1, "{report}");
}

#[tokio::test]
async fn deposits_that_matched_nothing_are_claimed_by_their_sender() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(&chain, dir.path()).await;
    let anonymous = JsonClient::new();
    let account = register(&anonymous, &daemon.base, "claim@example.com")
        .await
        .unwrap();
    let client = anonymous.with_bearer(&account.key);
    let sender = address_of(DEV_KEYS[1]);
    chain.mint(sender, 100 * DOLLAR).await;
    let tx = chain.pay(sender, PAY_TO.parse().unwrap(), 7 * DOLLAR).await;
    let url = daemon.url("/account/topup-crypto/claim");

    let unsigned = client
        .post_json(&url, &json!({"tx_hash": tx.to_string()}), &[])
        .await
        .unwrap();
    assert_eq!(unsigned.status, 400, "{}", unsigned.body);
    let message = unsigned.body["details"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains(&account.id) && message.contains(&tx.to_string()),
        "{message}"
    );

    let someone_else = personal_sign(DEV_KEYS[2], &message);
    let stolen = client
        .post_json(
            &url,
            &json!({"tx_hash": tx.to_string(), "signature": someone_else}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(stolen.status, 403, "{}", stolen.body);

    let signature = personal_sign(DEV_KEYS[1], &message);
    let body = json!({"tx_hash": tx.to_string(), "signature": signature});
    let claimed = client.post_json(&url, &body, &[]).await.unwrap();
    assert_eq!(claimed.status, 200, "{}", claimed.body);
    // $7 less the 0.5% fee.
    assert_eq!(micros(&claimed.body["credited_usd"]), 6_965_000);
    assert_eq!(micros(&claimed.body["balance"]), 6_965_000);
    let again = client.post_json(&url, &body, &[]).await.unwrap();
    assert_eq!(again.status, 409, "{}", again.body);

    let nothing = chain.pay(sender, address_of(DEV_KEYS[2]), DOLLAR).await;
    let not_ours = client
        .post_json(
            &url,
            &json!({"tx_hash": nothing.to_string(), "signature": signature}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(not_ours.status, 400, "{}", not_ours.body);
    daemon.stop().await;
    let (clean, report) = audit_offline(&dir.path().join("data")).await;
    assert!(clean, "{report}");
    assert_eq!(report["crypto_deposits"], 1);
}

#[tokio::test]
async fn kill9_while_crediting_loses_nothing_and_credits_nothing_twice() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = x402_config(&chain, "");
    let start = |port| {
        let mut options = DaemonOptions::new(&data);
        options.config = Some(&config);
        options.accounts = true;
        options.port = port;
        Daemon::start(options)
    };
    let mut daemon = start(None);
    let anonymous = JsonClient::new();
    let payer = address_of(DEV_KEYS[0]);
    chain.mint(payer, 1_000 * DOLLAR).await;
    let (mut keys, mut amounts) = (Vec::new(), Vec::new());
    for i in 0..20 {
        let account = register(&anonymous, &daemon.base, &format!("burst{i}@example.com"))
            .await
            .unwrap();
        let client = anonymous.with_bearer(&account.key);
        amounts.push(amount(
            &open_topup(&client, &daemon.base, "credits_10").await,
        ));
        keys.push(account.key);
    }
    let first = anonymous.with_bearer(&keys[0]);
    for sent in &amounts {
        chain.pay(payer, PAY_TO.parse().unwrap(), *sent).await;
    }
    // $10.05 and a bit is above $10: five confirmations for the last ones too.
    chain.mine(4).await;
    // Kill it as soon as the first credit shows: the rest are mid-flight.
    let deadline = Instant::now() + Duration::from_secs(20);
    while micros(&balance(&first, &daemon.base).await["balance"]) == 0 && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let port = daemon.port();
    daemon.kill9();
    let daemon = start(Some(port));
    // A new connection pool: the old one's connections died with the daemon.
    let fresh = JsonClient::new();
    let clients: Vec<JsonClient> = keys.iter().map(|key| fresh.with_bearer(key)).collect();
    for client in &clients {
        wait_balance(client, &daemon.base, 10_000_000, 20).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for client in &clients {
        assert_eq!(
            micros(&balance(client, &daemon.base).await["balance"]),
            10_000_000,
            "once each"
        );
    }
    let mut daemon = daemon;
    daemon.kill9();
    let (clean, report) = audit_offline(&data).await;
    assert!(clean, "{report}");
    assert_eq!(report["crypto_deposits"], 20, "{report}");
}

#[tokio::test]
async fn the_dashboard_opens_a_usdc_top_up_with_address_amount_and_expiry() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(&chain, dir.path()).await;
    let anonymous = JsonClient::new();
    let TestAccount { key, .. } = register(&anonymous, &daemon.base, "usdc-web@example.com")
        .await
        .unwrap();
    let session = gpubridge_tests::dashboard::DashboardSession::sign_in(
        &daemon.base,
        "usdc-web@example.com",
        &key,
    )
    .await;
    assert!(session.page("").await.contains("Pay with USDC on Base"));
    let opened = session.post("topup-crypto", "package=credits_10").await;
    assert_eq!(opened.status, 200);
    let page = String::from_utf8_lossy(&opened.raw).to_string();
    let listed = balance(&anonymous.with_bearer(&key), &daemon.base).await;
    let topup = &listed["crypto_topups"][0];
    let atomic: u64 = topup["amount_atomic"].as_str().unwrap().parse().unwrap();
    let usdc = format!("{}.{:06}", atomic / 1_000_000, atomic % 1_000_000);
    assert!(
        page.contains(&format!("Send exactly {usdc} USDC")),
        "{page}"
    );
    assert!(page.contains(PAY_TO), "the address: {page}");
    assert!(
        page.contains(topup["expires_at"].as_str().unwrap()),
        "the expiry: {page}"
    );
    daemon.stop().await;
}
