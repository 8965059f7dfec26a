//! x402 against a real local chain (Anvil with the stand-in USDC at USDC's
//! address): the 402 and what it asks for, the contract's tx-hash proof with
//! every rule (amount, payer, age, confirmations, sanctions, one job per
//! proof, a retry after failure), EIP-3009 authorizations settled by the
//! relayer in x402 v1 and v2 form, and who may read an x402 job's output.

use base64::Engine;
use gpubridge_tests::chain::{
    address_of, authorization, payment_signature, x402_config, x402_config_facilitator,
    x402_python_client, x_payment, x_payment_v1, Chain, DEV_KEYS, DOLLAR, PAY_TO, SANCTIONS_ORACLE,
    USDC,
};
use gpubridge_tests::facilitator::FacilitatorStandin;
use gpubridge_tests::{
    providers_config, wait_terminal, Behavior, DaemonOptions, InProcess, JsonClient, Reply, Standin,
};
use serde_json::{json, Value};

struct Setup {
    chain: Chain,
    standin: Standin,
    daemon: InProcess,
    client: JsonClient,
    _dir: tempfile::TempDir,
}

async fn setup_on(chain: Chain, extra: &str) -> Setup {
    let x402 = x402_config(&chain, extra);
    setup_with(chain, &x402).await
}

async fn setup_with(chain: Chain, x402: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let standin = Standin::start("k").await.unwrap();
    let config = providers_config(&standin.base_url(), "k", &["groq", "together"])
        + x402
        + "[http]\npublic_url = \"https://api.example.test/\"\n";
    let mut options = DaemonOptions::new(dir.path().join("data"));
    options.config = Some(&config);
    options.accounts = true;
    let daemon = InProcess::start(options).await;
    for key in &DEV_KEYS[..3] {
        chain.mint(address_of(key), 100 * DOLLAR).await;
    }
    Setup {
        chain,
        standin,
        daemon,
        client: JsonClient::new(),
        _dir: dir,
    }
}

async fn setup() -> Setup {
    setup_on(Chain::start().await, "").await
}

fn llm() -> Value {
    json!({"service": "llm-4090", "input": {"prompt": "hello"}})
}

impl Setup {
    async fn run(&self, body: &Value, headers: &[(&str, &str)]) -> Reply {
        self.client
            .post_json(&self.daemon.url("/run"), body, headers)
            .await
            .unwrap()
    }

    /// The price the 402 asks for this body, in atomic units.
    async fn price(&self, body: &Value) -> u64 {
        let reply = self.run(body, &[]).await;
        assert_eq!(reply.status, 402, "{}", reply.body);
        reply.body["accepts"][0]["maxAmountRequired"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    async fn pay(&self, payer: usize, amount: u64) -> String {
        let from = address_of(DEV_KEYS[payer]);
        let tx = self.chain.pay(from, PAY_TO.parse().unwrap(), amount).await;
        x_payment(tx, from)
    }
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).and_then(|v| v.to_str().ok())
}

fn decoded(reply: &Reply, name: &str) -> Value {
    let raw = header(reply, name).unwrap_or_else(|| panic!("no {name} header"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn without_a_key_the_price_is_asked_for_after_the_request_is_validated() {
    let s = setup().await;
    let reply = s.run(&llm(), &[]).await;
    assert_eq!(reply.status, 402, "{}", reply.body);
    assert_eq!(header(&reply, "x-payment-version"), Some("1"));
    let body = &reply.body;
    assert_eq!(body["x402Version"], 1);
    assert!(body["error"].is_string() && body["hint"].is_string());
    let accepts = &body["accepts"][0];
    assert_eq!(accepts["scheme"], "exact");
    assert_eq!(accepts["network"], "base");
    assert_eq!(accepts["payTo"], PAY_TO);
    assert_eq!(accepts["asset"], USDC);
    assert_eq!(accepts["maxTimeoutSeconds"], 300);
    assert_eq!(accepts["mimeType"], "application/json");
    assert_eq!(
        accepts["extra"],
        json!({"name": "USD Coin", "version": "2"})
    );
    assert_eq!(accepts["resource"], "https://api.example.test/run");
    assert!(accepts["description"]
        .as_str()
        .unwrap()
        .contains("llm-4090"));
    // The same estimate as the catalog's, in atomic units (6 decimals), rounded up.
    let estimate = s
        .client
        .get(&s.daemon.url("/catalog/estimate?service=llm-4090"))
        .await
        .unwrap();
    let dollars = estimate.body["estimated_cost_usd"].as_f64().unwrap();
    let atomic: u64 = accepts["maxAmountRequired"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(atomic, (dollars * 1e6).ceil() as u64);
    assert_eq!(
        estimate.body["x402_amount_atomic"],
        accepts["maxAmountRequired"]
    );
    let catalog = s.client.get(&s.daemon.url("/catalog")).await.unwrap().body;
    let terms = &catalog["payment"]["x402"];
    assert_eq!(terms["enabled"], true, "{terms}");
    assert_eq!(terms["pay_to"], PAY_TO);
    assert_eq!(terms["schemes"], json!(["tx-hash", "exact"]));
    let llm_service = catalog["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "llm-4090")
        .unwrap();
    assert_eq!(
        llm_service["pricing"]["x402_amount_atomic"],
        accepts["maxAmountRequired"]
    );

    let v2 = decoded(&reply, "payment-required");
    assert_eq!(v2["x402Version"], 2);
    assert_eq!(v2["accepts"][0]["network"], "eip155:8453");
    assert_eq!(v2["accepts"][0]["amount"], accepts["maxAmountRequired"]);

    let inference = s
        .client
        .post_json(&s.daemon.url("/inference"), &json!({"prompt": "hi"}), &[])
        .await
        .unwrap();
    assert_eq!(inference.status, 402);
    assert_eq!(inference.body["accepts"][0]["scheme"], "exact");

    // Invalid targets are the usual 4xx, never 402.
    let unknown = s.run(&json!({"service": "nope", "input": {}}), &[]).await;
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    let bad_input = s
        .run(&json!({"service": "llm-4090", "input": {"prompt": 7}}), &[])
        .await;
    assert_eq!(bad_input.status, 422, "{}", bad_input.body);
    assert_eq!(header(&bad_input, "x-payment-version"), Some("1"));
}

#[tokio::test]
async fn a_transfer_pays_for_one_job_whose_id_reads_its_output() {
    let s = setup().await;
    let price = s.price(&llm()).await;
    let proof = s.pay(0, price).await;
    // A refused request consumes nothing: the same proof pays once the request is fixed.
    let wrong = s
        .run(
            &json!({"service": "llm-4090", "input": {}}),
            &[("x-payment", &proof)],
        )
        .await;
    assert_eq!(wrong.status, 422, "{}", wrong.body);
    let reply = s.run(&llm(), &[("x-payment", &proof)]).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(header(&reply, "x-payment-version"), Some("1"));
    let id = reply.body["job_id"].as_str().unwrap().to_string();
    assert!(id.len() >= 32, "an unguessable id: {id}");

    let done = wait_terminal(&s.client, &s.daemon.base, &id, 10)
        .await
        .unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert!(done["output"].is_object(), "no key needed: {done}");
    assert_eq!(done["payment"]["scheme"], "tx-hash");
    assert_eq!(done["payment"]["amount_atomic"], price.to_string());
    let as_bearer = s
        .client
        .with_bearer(&id)
        .get(&s.daemon.url(&format!("/status/{id}")))
        .await
        .unwrap();
    assert_eq!(as_bearer.status, 200);
    assert!(as_bearer.body["output"].is_object(), "{}", as_bearer.body);

    let again = s.run(&llm(), &[("x-payment", &proof)]).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(
        !again.raw.windows(id.len()).any(|w| w == id.as_bytes()),
        "the 409 must not reveal the job id"
    );
    assert_eq!(s.standin.requests(), 1);
}

#[tokio::test]
async fn a_keyed_jobs_id_is_not_a_read_token() {
    let s = setup().await;
    let account = gpubridge_tests::accounts::register(&s.client, &s.daemon.base, "k@example.com")
        .await
        .unwrap();
    gpubridge_tests::accounts::grant(&s.client, &s.daemon.base, &account.id, 1.0)
        .await
        .unwrap();
    let keyed = s.client.with_bearer(&account.key);
    let reply = keyed
        .post_json(&s.daemon.url("/run"), &llm(), &[])
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.body["job_id"].as_str().unwrap().to_string();
    wait_terminal(&keyed, &s.daemon.base, &id, 10)
        .await
        .unwrap();
    for reader in [s.client.clone(), s.client.with_bearer(&id)] {
        let status = reader
            .get(&s.daemon.url(&format!("/status/{id}")))
            .await
            .unwrap();
        assert_eq!(status.status, 200);
        assert!(status.body.get("output").is_none(), "{}", status.body);
    }
    // A key and a payment together are refused, the payment untouched.
    let proof = s.pay(0, DOLLAR).await;
    let both = keyed
        .post_json(&s.daemon.url("/run"), &llm(), &[("x-payment", &proof)])
        .await
        .unwrap();
    assert_eq!(both.status, 400, "{}", both.body);
    let paid = s.run(&llm(), &[("x-payment", &proof)]).await;
    assert_eq!(paid.status, 202, "{}", paid.body);
}

#[tokio::test]
async fn transfers_that_do_not_pay_are_refused_and_not_consumed() {
    let s = setup().await;
    let price = s.price(&llm()).await;
    let short = s.pay(0, price - 1).await;
    let reply = s.run(&llm(), &[("x-payment", &short)]).await;
    assert_eq!(reply.status, 402, "{}", reply.body);
    assert!(
        reply.body["accepts"][0]["payTo"].is_string(),
        "a 402 says again what to pay"
    );

    // Someone else's transfer, claimed as one's own.
    let from_other = address_of(DEV_KEYS[1]);
    let tx = s
        .chain
        .pay(address_of(DEV_KEYS[0]), PAY_TO.parse().unwrap(), price)
        .await;
    let claimed = s
        .run(&llm(), &[("x-payment", &x_payment(tx, from_other))])
        .await;
    assert_eq!(claimed.status, 402, "{}", claimed.body);
    // The real payer can still use it.
    let real = s
        .run(
            &llm(),
            &[("x-payment", &x_payment(tx, address_of(DEV_KEYS[0])))],
        )
        .await;
    assert_eq!(real.status, 202, "{}", real.body);

    // Not mined yet: 402, then it pays once mined.
    s.chain.set_automine(false).await;
    let pending = s.pay(1, price).await;
    let early = s.run(&llm(), &[("x-payment", &pending)]).await;
    assert_eq!(early.status, 402, "{}", early.body);
    assert!(
        early.body["error"]
            .as_str()
            .unwrap()
            .contains("not on chain"),
        "{}",
        early.body
    );
    s.chain.mine(1).await;
    assert_eq!(s.run(&llm(), &[("x-payment", &pending)]).await.status, 202);
}

#[tokio::test]
async fn large_payments_wait_for_five_confirmations() {
    let s = setup().await;
    let at_limit = s.pay(0, 10 * DOLLAR).await;
    assert_eq!(
        s.run(&llm(), &[("x-payment", &at_limit)]).await.status,
        202,
        "$10 needs one"
    );
    let above = s.pay(1, 10 * DOLLAR + 1).await;
    let reply = s.run(&llm(), &[("x-payment", &above)]).await;
    assert_eq!(reply.status, 402, "{}", reply.body);
    assert_eq!(
        reply.body["details"],
        json!({"confirmations": 1, "required_confirmations": 5}),
        "{}",
        reply.body
    );
    s.chain.mine(3).await;
    let still = s.run(&llm(), &[("x-payment", &above)]).await;
    assert_eq!(still.body["details"]["confirmations"], 4, "{}", still.body);
    s.chain.mine(1).await;
    assert_eq!(s.run(&llm(), &[("x-payment", &above)]).await.status, 202);
}

#[tokio::test]
async fn payments_older_than_the_window_are_refused() {
    // The chain's clock an hour behind: its blocks are too old to pay with.
    let s = setup_on(Chain::start_behind(3_600).await, "").await;
    let price = s.price(&llm()).await;
    let old = s.pay(0, price).await;
    let reply = s.run(&llm(), &[("x-payment", &old)]).await;
    assert_eq!(reply.status, 402, "{}", reply.body);
    assert!(
        reply.body["error"].as_str().unwrap().contains("old"),
        "{}",
        reply.body
    );
    s.chain.increase_time(3_600).await;
    let fresh = s.pay(0, price).await;
    assert_eq!(s.run(&llm(), &[("x-payment", &fresh)]).await.status, 202);
}

#[tokio::test]
async fn sanctioned_payers_are_refused_and_nothing_runs() {
    let s = setup().await;
    let payer = address_of(DEV_KEYS[2]);
    s.chain.sanction(payer).await;
    let proof = s.pay(2, DOLLAR).await;
    let reply = s.run(&llm(), &[("x-payment", &proof)]).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(s.standin.requests(), 0);
    let nonce = alloy_nonce(7);
    let signed = authorization(DEV_KEYS[2], PAY_TO.parse().unwrap(), DOLLAR, 600, nonce);
    let reply = s.run(&llm(), &[("x-payment", &x_payment_v1(signed))]).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(
        s.chain.balance(payer).await,
        99 * DOLLAR,
        "the authorization was not settled"
    );
    assert!(SANCTIONS_ORACLE.starts_with("0x"));
}

#[tokio::test]
async fn fifty_concurrent_uses_of_one_proof_make_one_job() {
    let s = setup().await;
    let proof = s.pay(0, DOLLAR).await;
    let url = s.daemon.url("/run");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let client = s.client.clone();
            let (url, proof) = (url.clone(), proof.clone());
            tokio::spawn(async move {
                client
                    .post_json(&url, &llm(), &[("x-payment", &proof)])
                    .await
                    .unwrap()
                    .status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        49,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_job_that_fails_everywhere_frees_its_proof_for_one_retry() {
    let s = setup().await;
    s.standin.set_behavior(Behavior::ServerError);
    let proof = s.pay(0, DOLLAR).await;
    let first = s.run(&llm(), &[("x-payment", &proof)]).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let id = first.body["job_id"].as_str().unwrap().to_string();
    let failed = wait_terminal(&s.client, &s.daemon.base, &id, 10)
        .await
        .unwrap();
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["payment"]["retry_until_ms"].as_u64().is_some(),
        "{failed}"
    );

    let other_service = s
        .run(
            &json!({"service": "embedding-l4", "input": {"text": "a"}}),
            &[("x-payment", &proof)],
        )
        .await;
    assert_eq!(
        other_service.status, 409,
        "the retry is for the same service: {}",
        other_service.body
    );
    s.standin.set_behavior(Behavior::Ok);
    let retry = s.run(&llm(), &[("x-payment", &proof)]).await;
    assert_eq!(retry.status, 202, "{}", retry.body);
    let retry_id = retry.body["job_id"].as_str().unwrap().to_string();
    let done = wait_terminal(&s.client, &s.daemon.base, &retry_id, 10)
        .await
        .unwrap();
    assert_eq!(done["status"], "completed");
    assert_eq!(done["payment"]["is_retry"], true);
    assert_eq!(
        s.run(&llm(), &[("x-payment", &proof)]).await.status,
        409,
        "one retry only"
    );
}

#[tokio::test]
async fn malformed_payments_are_400s_naming_what_is_wrong() {
    let s = setup().await;
    let b64 = |v: Value| base64::engine::general_purpose::STANDARD.encode(v.to_string());
    let hash = format!("0x{}", "ab".repeat(32));
    let from = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
    let cases = [
        ("%%% not base64".to_string(), "base64"),
        (
            base64::engine::general_purpose::STANDARD.encode("not json"),
            "JSON",
        ),
        (b64(json!({"txHash": hash})), "from"),
        (b64(json!({"txHash": 5, "from": from})), "txHash"),
        (b64(json!({"txHash": "0xabcd", "from": from})), "txHash"),
        (b64(json!({"txHash": hash, "from": "0x12"})), "from"),
    ];
    for (value, names) in cases {
        let reply = s.run(&llm(), &[("x-payment", &value)]).await;
        assert_eq!(reply.status, 400, "{value}: {}", reply.body);
        let error = reply.body["error"].as_str().unwrap();
        assert!(
            error.contains("X-Payment") && error.contains(names),
            "{names}: {error}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_chain_is_a_503_and_consumes_nothing() {
    let s = setup().await;
    let proof = s.pay(0, DOLLAR).await;
    s.chain.pause().await;
    let reply = s.run(&llm(), &[("x-payment", &proof)]).await;
    s.chain.resume();
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(header(&reply, "retry-after").is_some());
    assert_eq!(s.run(&llm(), &[("x-payment", &proof)]).await.status, 202);
}

fn alloy_nonce(n: u8) -> alloy::primitives::B256 {
    alloy::primitives::B256::with_last_byte(n)
}

#[tokio::test]
async fn eip3009_authorizations_settle_then_run_in_v1_and_v2() {
    let s = setup().await;
    let pay_to = PAY_TO.parse().unwrap();
    let payer = address_of(DEV_KEYS[0]);
    let unpaid = s.run(&llm(), &[]).await;
    let price: u64 = unpaid.body["accepts"][0]["maxAmountRequired"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let v1 = x_payment_v1(authorization(
        DEV_KEYS[0],
        pay_to,
        price,
        600,
        alloy_nonce(1),
    ));
    let reply = s.run(&llm(), &[("x-payment", &v1)]).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let settled = decoded(&reply, "x-payment-response");
    assert_eq!(settled["success"], true);
    assert_eq!(settled["network"], "base");
    assert_eq!(s.chain.balance(payer).await, 100 * DOLLAR - price);
    assert_eq!(s.run(&llm(), &[("x-payment", &v1)]).await.status, 409);

    let accepted = decoded(&unpaid, "payment-required")["accepts"][0].clone();
    let v2 = payment_signature(
        &accepted,
        authorization(DEV_KEYS[0], pay_to, price, 600, alloy_nonce(2)),
    );
    let reply = s.run(&llm(), &[("payment-signature", &v2)]).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(header(&reply, "x-payment-version"), Some("2"));
    assert_eq!(
        decoded(&reply, "payment-response")["network"],
        "eip155:8453"
    );
    assert_eq!(s.chain.balance(payer).await, 100 * DOLLAR - 2 * price);

    // Too little, to someone else, or signed by another key: 402, nothing moves.
    let short = x_payment_v1(authorization(
        DEV_KEYS[0],
        pay_to,
        price - 1,
        600,
        alloy_nonce(3),
    ));
    assert_eq!(s.run(&llm(), &[("x-payment", &short)]).await.status, 402);
    let elsewhere = x_payment_v1(authorization(
        DEV_KEYS[0],
        payer,
        price,
        600,
        alloy_nonce(4),
    ));
    assert_eq!(
        s.run(&llm(), &[("x-payment", &elsewhere)]).await.status,
        402
    );
    let mut forged = authorization(DEV_KEYS[1], pay_to, price, 600, alloy_nonce(5));
    forged["authorization"]["from"] = json!(payer.to_string());
    let reply = s.run(&llm(), &[("x-payment", &x_payment_v1(forged))]).await;
    assert_eq!(reply.status, 402, "{}", reply.body);
    // About to expire, or from a payer without the funds: 402 too.
    let expiring = x_payment_v1(authorization(DEV_KEYS[0], pay_to, price, 2, alloy_nonce(6)));
    let reply = s.run(&llm(), &[("x-payment", &expiring)]).await;
    assert_eq!(reply.status, 402, "{}", reply.body);
    assert!(
        reply.body["error"]
            .as_str()
            .unwrap()
            .contains("validBefore"),
        "{}",
        reply.body
    );
    let penniless = x_payment_v1(authorization(
        DEV_KEYS[4],
        pay_to,
        price,
        600,
        alloy_nonce(7),
    ));
    let reply = s.run(&llm(), &[("x-payment", &penniless)]).await;
    assert_eq!(reply.status, 402, "{}", reply.body);
    assert!(
        reply.body["error"].as_str().unwrap().contains("holds 0"),
        "{}",
        reply.body
    );
    assert_eq!(s.chain.balance(payer).await, 100 * DOLLAR - 2 * price);
}

#[tokio::test]
async fn the_daemon_refuses_a_node_serving_another_chain() {
    let chain = Chain::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[x402]\nrpc_url = \"{}\"\npay_to = \"{PAY_TO}\"\nchain_id = 1\n",
        chain.url
    );
    let path = dir.path().join("gpubridge.toml");
    std::fs::write(&path, config).unwrap();
    let overrides = gpubridge_daemon::Overrides {
        http_addr: Some(([127, 0, 0, 1], 0).into()),
        data_dir: Some(dir.path().join("data")),
        ..Default::default()
    };
    let config = gpubridge_daemon::Config::load(Some(&path), |_| None, &overrides).unwrap();
    let error = gpubridge_daemon::Daemon::start(config)
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("chain 8453, not 1"), "{error}");
}

#[tokio::test]
async fn x402s_own_python_client_pays_unchanged() {
    let s = setup().await;
    let price = s.price(&llm()).await;
    let payer = address_of(DEV_KEYS[1]);
    let (python, script) = x402_python_client();
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(s.daemon.url("/run"))
        .arg(DEV_KEYS[1])
        .arg(llm().to_string())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{} (bash .ci/setup-deps makes it): {e}", python.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["status"], 202, "{result} {stderr}");
    assert_eq!(result["payment_response"]["success"], true, "{result}");
    assert_eq!(result["payment_response"]["payer"], payer.to_string());
    assert_eq!(s.chain.balance(payer).await, 100 * DOLLAR - price);
    let id = result["body"]["job_id"].as_str().unwrap();
    let done = wait_terminal(&s.client, &s.daemon.base, id, 10)
        .await
        .unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["payment"]["scheme"], "eip3009");
}

#[tokio::test]
async fn authorizations_settle_through_a_facilitator_when_configured() {
    let chain = Chain::start().await;
    let facilitator = FacilitatorStandin::start(&chain).await;
    let x402 = x402_config_facilitator(&chain, &facilitator.url(), "");
    let s = setup_with(chain, &x402).await;
    let pay_to = PAY_TO.parse().unwrap();
    let payer = address_of(DEV_KEYS[0]);
    let price = s.price(&llm()).await;
    let v1 = x_payment_v1(authorization(
        DEV_KEYS[0],
        pay_to,
        price,
        600,
        alloy_nonce(9),
    ));
    let reply = s.run(&llm(), &[("x-payment", &v1)]).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(facilitator.calls(), (1, 1));
    let sent = facilitator.last_request();
    assert_eq!(sent["x402Version"], 2);
    assert_eq!(sent["paymentRequirements"]["network"], "eip155:8453");
    assert_eq!(sent["paymentRequirements"]["payTo"], PAY_TO);
    assert_eq!(
        sent["paymentPayload"]["payload"]["authorization"]["from"],
        payer.to_string()
    );
    assert_eq!(
        decoded(&reply, "x-payment-response")["transaction"]
            .as_str()
            .map(str::len),
        Some(66)
    );
    assert_eq!(s.chain.balance(payer).await, 100 * DOLLAR - price);

    facilitator.refuse();
    let refused = x_payment_v1(authorization(
        DEV_KEYS[0],
        pay_to,
        price,
        600,
        alloy_nonce(10),
    ));
    let reply = s.run(&llm(), &[("x-payment", &refused)]).await;
    assert_eq!(reply.status, 402, "{}", reply.body);
    assert!(
        reply.body["error"]
            .as_str()
            .unwrap()
            .contains("insufficient_funds"),
        "{}",
        reply.body
    );
    assert_eq!(
        facilitator.calls(),
        (2, 1),
        "no settlement after a failed verify"
    );
    assert_eq!(s.chain.balance(payer).await, 100 * DOLLAR - price);
}

#[tokio::test]
async fn an_authorization_already_settled_on_chain_pays_without_settling_again() {
    // Someone (a lost facilitator answer, a relayer that timed out) settled it
    // before GPU-Bridge could: the transaction that used it pays, once.
    let s = setup().await;
    let elsewhere = FacilitatorStandin::start(&s.chain).await;
    let pay_to = PAY_TO.parse().unwrap();
    let payer = address_of(DEV_KEYS[0]);
    let price = s.price(&llm()).await;
    let payload = authorization(DEV_KEYS[0], pay_to, price, 600, alloy_nonce(11));
    let settle = json!({
        "x402Version": 2,
        "paymentPayload": {"x402Version": 2, "payload": payload},
        "paymentRequirements": {"scheme": "exact", "network": "eip155:8453"},
    });
    let settled = s
        .client
        .post_json(&format!("{}/settle", elsewhere.url()), &settle, &[])
        .await
        .unwrap();
    assert_eq!(settled.body["success"], true, "{}", settled.body);
    assert_eq!(s.chain.balance(payer).await, 100 * DOLLAR - price);

    let reply = s
        .run(&llm(), &[("x-payment", &x_payment_v1(payload))])
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(
        decoded(&reply, "x-payment-response")["transaction"],
        settled.body["transaction"]
    );
    assert_eq!(
        s.chain.balance(payer).await,
        100 * DOLLAR - price,
        "charged once"
    );
    let again = s
        .run(
            &llm(),
            &[(
                "x-payment",
                &x_payment_v1(authorization(
                    DEV_KEYS[0],
                    pay_to,
                    price,
                    600,
                    alloy_nonce(11),
                )),
            )],
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
}

#[tokio::test]
async fn the_relayer_recovers_when_its_nonce_moved_elsewhere() {
    // Someone used the relayer's account outside GPU-Bridge (or a submission
    // failed after taking a nonce): the locally counted nonce is stale.
    let s = setup().await;
    let pay_to = PAY_TO.parse().unwrap();
    let price = s.price(&llm()).await;
    let first = x_payment_v1(authorization(
        DEV_KEYS[0],
        pay_to,
        price,
        600,
        alloy_nonce(21),
    ));
    assert_eq!(s.run(&llm(), &[("x-payment", &first)]).await.status, 202);
    let relayer = address_of(DEV_KEYS[3]);
    s.chain.mint(relayer, 1).await;
    s.chain.mint(relayer, 1).await;
    let second = x_payment_v1(authorization(
        DEV_KEYS[0],
        pay_to,
        price,
        600,
        alloy_nonce(22),
    ));
    let reply = s.run(&llm(), &[("x-payment", &second)]).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(
        s.chain.balance(address_of(DEV_KEYS[0])).await,
        100 * DOLLAR - 2 * price
    );
}

#[tokio::test]
async fn an_x402_job_is_cancelled_with_its_id_and_keeps_its_payment_once_it_ran() {
    let s = setup().await;
    s.standin
        .set_behavior(Behavior::Slow(std::time::Duration::from_secs(30)));
    let proof = s.pay(0, DOLLAR).await;
    let first = s.run(&llm(), &[("x-payment", &proof)]).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let id = first.body["job_id"].as_str().unwrap().to_string();
    for _ in 0..500 {
        let now = s
            .client
            .get(&s.daemon.url(&format!("/status/{id}")))
            .await
            .unwrap();
        if now.body["status"] == "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // No key: the job's id, in the path, is its token.
    let cancelled = s
        .client
        .post_json(&s.daemon.url(&format!("/cancel/{id}")), &json!({}), &[])
        .await
        .unwrap();
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert!(
        cancelled.body["payment"].get("retry_until_ms").is_none(),
        "it ran: its payment is used: {}",
        cancelled.body
    );
    assert_eq!(s.run(&llm(), &[("x-payment", &proof)]).await.status, 409);
}
