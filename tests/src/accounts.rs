//! Account helpers for tests: register, grant credits through the admin API or
//! the `gpubridge admin` command, and run the offline ledger audit.

use crate::{binary, JsonClient, ADMIN_TOKEN};
use serde_json::{json, Value};
use std::path::Path;
use tokio::process::Command;

/// A registered account: its id, API key and webhook signing secret.
pub struct TestAccount {
    pub id: String,
    pub key: String,
    pub webhook_secret: String,
}

pub async fn register(client: &JsonClient, base: &str, email: &str) -> anyhow::Result<TestAccount> {
    let reply = client
        .post_json(
            &format!("{base}/account/register"),
            &json!({"email": email}),
            &[],
        )
        .await?;
    anyhow::ensure!(
        reply.status == 201,
        "register {email}: {} {}",
        reply.status,
        reply.body
    );
    Ok(TestAccount {
        id: reply.body["account_id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        key: reply.body["api_key"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        webhook_secret: reply.body["webhook_secret"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    })
}

/// `GET /account/balance` as the client's key sees it.
pub async fn balance(client: &JsonClient, base: &str) -> Value {
    client
        .get(&format!("{base}/account/balance"))
        .await
        .expect("balance request")
        .body
}

/// `GET /admin/ledger/audit` of a daemon started with accounts.
pub async fn audit_live(base: &str) -> Value {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    JsonClient::new()
        .send(
            hyper::Method::GET,
            &format!("{base}/admin/ledger/audit"),
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await
        .expect("audit request")
        .body
}

/// A registered account holding `dollars` of credits.
pub async fn funded(base: &str, email: &str, dollars: f64) -> anyhow::Result<TestAccount> {
    let client = JsonClient::new();
    let account = register(&client, base, email).await?;
    grant(&client, base, &account.id, dollars).await?;
    Ok(account)
}

/// Adds credits through `POST /admin/credits`.
pub async fn grant(
    client: &JsonClient,
    base: &str,
    account: &str,
    dollars: f64,
) -> anyhow::Result<Value> {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let reply = client
        .post_json(
            &format!("{base}/admin/credits"),
            &json!({"account": account, "amount_usd": dollars, "note": "test grant"}),
            &[("authorization", &auth)],
        )
        .await?;
    anyhow::ensure!(
        reply.status == 200,
        "grant: {} {}",
        reply.status,
        reply.body
    );
    Ok(reply.body)
}

/// Runs `gpubridge admin --url BASE ARGS…` as an operator would; returns whether it
/// succeeded and what it printed. Awaited, so an in-process daemon keeps serving.
pub async fn admin_cli(base: &str, args: &[&str]) -> (bool, Value) {
    let output = Command::new(binary("gpubridge"))
        .arg("admin")
        .arg("--url")
        .arg(base)
        .args(args)
        .env("GPUBRIDGE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env_remove("GPUBRIDGE_CONFIG")
        .output()
        .await
        .expect("running gpubridge admin");
    (
        output.status.success(),
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null),
    )
}

/// Runs `gpubridge audit --data-dir DIR`: the ledger recomputed from disk alone.
pub async fn audit_offline(data_dir: &Path) -> (bool, Value) {
    let output = Command::new(binary("gpubridge"))
        .arg("audit")
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("GPUBRIDGE_CONFIG")
        .output()
        .await
        .expect("running gpubridge audit");
    (
        output.status.success(),
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null),
    )
}

/// Dollars in a JSON reply as exact micro-dollars.
pub fn micros(value: &Value) -> i64 {
    (value.as_f64().unwrap_or(f64::NAN) * 1e6).round() as i64
}

/// A registered account holding `dollars` of credits, with a daily spending
/// limit that load will not reach; returns a client using its key.
pub async fn unlimited(
    base: &str,
    email: &str,
    dollars: f64,
) -> anyhow::Result<(TestAccount, JsonClient)> {
    let client = JsonClient::new();
    let account = register(&client, base, email).await?;
    grant(&client, base, &account.id, dollars).await?;
    let keyed = client.with_bearer(&account.key);
    let limit = keyed
        .post_json(
            &format!("{base}/account/spending-limit"),
            &json!({"daily_limit": 10_000}),
            &[],
        )
        .await?;
    anyhow::ensure!(
        limit.status == 200,
        "setting the daily limit: {}",
        limit.body
    );
    Ok((account, keyed))
}
