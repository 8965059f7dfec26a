//! Accounts against the real daemon: registration, keys, credits through the
//! operator's `gpubridge admin` command, charges and refunds that add up, limits,
//! idempotency, recovery, and who may read a job's output.

use gpubridge_tests::accounts::{admin_cli, grant, micros, register};
use gpubridge_tests::{
    providers_config, wait_terminal, Behavior, DaemonOptions, InProcess, JsonClient, Standin,
    ADMIN_TOKEN,
};
use serde_json::{json, Value};

async fn daemon_with_llm(dir: &std::path::Path, extra_config: &str) -> (Standin, InProcess) {
    let standin = Standin::start("k").await.unwrap();
    let config = providers_config(&standin.base_url(), "k", &["groq"]) + extra_config;
    let mut options = DaemonOptions::new(dir.join("data"));
    options.config = Some(&config);
    options.accounts = true;
    let daemon = InProcess::start(options).await;
    (standin, daemon)
}

fn llm(prompt: &str) -> Value {
    json!({"service": "llm-4090", "input": {"prompt": prompt}})
}

#[tokio::test]
async fn credits_pay_for_jobs_and_charges_and_refunds_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let (standin, daemon) = daemon_with_llm(dir.path(), "").await;
    let anonymous = JsonClient::new();
    let run = daemon.url("/run");

    let bad_email = anonymous
        .post_json(
            &daemon.url("/account/register"),
            &json!({"email": "not-an-email"}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(bad_email.status, 400, "{}", bad_email.body);
    let me = register(&anonymous, &daemon.base, "Dev@Example.com")
        .await
        .unwrap();
    assert!(
        me.key.starts_with("gpub_") && me.key.len() >= 48,
        "{}",
        me.key
    );
    let again = anonymous
        .post_json(
            &daemon.url("/account/register"),
            &json!({"email": "dev@example.COM"}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body["hint"]
        .as_str()
        .unwrap()
        .contains("/account/recover"));

    // No key, a bad key, then a good key without credits: nothing is queued.
    let no_key = anonymous.post_json(&run, &llm("hi"), &[]).await.unwrap();
    assert_eq!(no_key.status, 401, "{}", no_key.body);
    assert_eq!(no_key.headers["www-authenticate"], "Bearer");
    let bad_key = anonymous.with_bearer("gpub_wrongwrongwrongwrongwrongwrongwrong");
    assert_eq!(
        bad_key
            .post_json(&run, &llm("hi"), &[])
            .await
            .unwrap()
            .status,
        401
    );
    let client = anonymous.with_bearer(&me.key);
    let broke = client.post_json(&run, &llm("hi"), &[]).await.unwrap();
    assert_eq!(broke.status, 402, "{}", broke.body);
    assert!(broke.body["hint"].as_str().is_some());
    let jobs = client.get(&daemon.url("/account/jobs")).await.unwrap();
    assert_eq!(
        jobs.body["jobs"],
        json!([]),
        "a refused job leaves no trace"
    );
    // A free service needs a key but no credits.
    let echo = client
        .post_json(&run, &json!({"service": "echo", "input": {"x": 1}}), &[])
        .await
        .unwrap();
    assert_eq!(echo.status, 202, "{}", echo.body);

    // The operator grants $1 with the admin command.
    let (ok, granted) = admin_cli(
        &daemon.base,
        &["grant", "--account", "dev@example.com", "--amount", "1"],
    )
    .await;
    assert!(ok, "{granted}");
    assert_eq!(granted["balance"], 1.0);
    let (ok, looked_up) = admin_cli(&daemon.base, &["account", &me.id]).await;
    assert!(ok && looked_up["email"] == "dev@example.com", "{looked_up}");

    let mut ids = Vec::new();
    for n in 0..3 {
        let reply = client
            .post_json(&run, &llm(&format!("job {n}")), &[])
            .await
            .unwrap();
        assert_eq!(reply.status, 202, "{}", reply.body);
        assert!(reply.body["estimated_cost_usd"].as_f64().unwrap() > 0.0);
        ids.push(reply.body["job_id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let done = wait_terminal(&client, &daemon.base, id, 20).await.unwrap();
        assert_eq!(done["status"], "completed", "{done}");
    }
    // A job every backend rejects fails and is refunded in full.
    standin.set_behavior(Behavior::Reject);
    let doomed = client.post_json(&run, &llm("doomed"), &[]).await.unwrap();
    let doomed_id = doomed.body["job_id"].as_str().unwrap().to_string();
    let failed = wait_terminal(&client, &daemon.base, &doomed_id, 20)
        .await
        .unwrap();
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["charged_usd"], 0.0);
    assert_eq!(
        micros(&failed["refunded_usd"]),
        micros(&doomed.body["estimated_cost_usd"])
    );

    let history = client
        .get(&daemon.url("/account/jobs?limit=10"))
        .await
        .unwrap();
    let rows = history.body["jobs"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 5, "three llm jobs, one failure, one echo");
    assert_eq!(rows[0]["job_id"], doomed_id.as_str(), "newest first");
    let mut charged = 0;
    for row in &rows {
        let (c, r, e) = (
            micros(&row["charged_usd"]),
            micros(&row["refunded_usd"]),
            micros(&row["estimated_cost_usd"]),
        );
        assert_eq!(c + r, e, "charge and refund close the reservation: {row}");
        assert!(c <= e);
        charged += c;
    }
    let page = client
        .get(&daemon.url("/account/jobs?limit=2&offset=4"))
        .await
        .unwrap();
    assert_eq!(page.body["jobs"].as_array().unwrap().len(), 1);
    let balance = client.get(&daemon.url("/account/balance")).await.unwrap();
    assert_eq!(balance.status, 200);
    assert_eq!(micros(&balance.body["balance"]), 1_000_000 - charged);
    assert_eq!(balance.body["email"], "dev@example.com");
    assert_eq!(balance.body["daily_limit"], 50.0);
    assert_eq!(micros(&balance.body["daily_spend"]), charged);
    assert_eq!(
        balance.body["volume_discount"],
        json!({"tier": "Standard", "discount_percent": 0.0})
    );

    // Output belongs to its owner; others see status and timing only.
    let mine = client
        .get(&daemon.url(&format!("/status/{}", ids[0])))
        .await
        .unwrap();
    assert_eq!(mine.body["output"]["text"], "stand-in reply to: job 0");
    let stranger = register(&anonymous, &daemon.base, "other@example.com")
        .await
        .unwrap();
    for viewer in [anonymous.clone(), anonymous.with_bearer(&stranger.key)] {
        let seen = viewer
            .get(&daemon.url(&format!("/status/{}", ids[0])))
            .await
            .unwrap();
        assert_eq!(seen.body["status"], "completed");
        assert!(
            seen.body.get("output").is_none() && seen.body["hint"].is_string(),
            "{}",
            seen.body
        );
    }
    let (ok, audit) = admin_cli(&daemon.base, &["audit"]).await;
    assert!(ok && audit["problems"] == json!([]), "{audit}");
}

#[tokio::test]
async fn keys_rotate_limits_hold_and_recovery_says_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_standin, daemon) = daemon_with_llm(dir.path(), "").await;
    let anonymous = JsonClient::new();
    let me = register(&anonymous, &daemon.base, "rotate@example.com")
        .await
        .unwrap();
    grant(&anonymous, &daemon.base, &me.id, 5.0).await.unwrap();
    let old = anonymous.with_bearer(&me.key);
    let first = old
        .post_json(&daemon.url("/run"), &llm("before"), &[])
        .await
        .unwrap();
    let job = first.body["job_id"].as_str().unwrap().to_string();

    let rotated = old
        .post_json(&daemon.url("/account/regenerate-key"), &json!({}), &[])
        .await
        .unwrap();
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new_key = rotated.body["api_key"].as_str().unwrap().to_string();
    assert_ne!(new_key, me.key);
    assert_eq!(
        old.post_json(&daemon.url("/run"), &llm("after"), &[])
            .await
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        old.get(&daemon.url("/account/balance"))
            .await
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        old.get(&daemon.url(&format!("/status/{job}")))
            .await
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        old.post_json(&daemon.url("/account/regenerate-key"), &json!({}), &[])
            .await
            .unwrap()
            .status,
        401
    );
    let new = anonymous.with_bearer(&new_key);
    let done = wait_terminal(&new, &daemon.base, &job, 20).await.unwrap();
    assert!(
        done["output"].is_object(),
        "the new key reads the old key's jobs: {done}"
    );

    // Spending limit: bounds, then enforcement.
    for bad in [
        json!({"daily_limit": 0.5}),
        json!({"daily_limit": 10_001}),
        json!({"daily_limit": "100"}),
        json!({}),
    ] {
        let reply = new
            .post_json(&daemon.url("/account/spending-limit"), &bad, &[])
            .await
            .unwrap();
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
    }
    let set = new
        .post_json(
            &daemon.url("/account/spending-limit"),
            &json!({"daily_limit": 1}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(set.body["daily_limit"], 1.0, "{}", set.body);
    // A visual Q&A job reserves $0.05 and is charged its "from" price in full:
    // the 21st of the day crosses the $1 limit.
    let mut limited = None;
    for n in 0..60 {
        let input =
            json!({"image_url": "https://example.com/cat.png", "prompt": format!("what is {n}?")});
        let reply = new
            .post_json(
                &daemon.url("/run"),
                &json!({"service": "llava-4090", "input": input}),
                &[],
            )
            .await
            .unwrap();
        if reply.status != 202 {
            limited = Some(reply);
            break;
        }
    }
    let limited = limited.expect("the daily limit stops spending");
    assert_eq!(limited.status, 402, "{}", limited.body);
    assert!(
        limited.body["error"]
            .as_str()
            .unwrap()
            .contains("Daily spending limit"),
        "{}",
        limited.body
    );
    let balance = new.get(&daemon.url("/account/balance")).await.unwrap();
    assert!(
        micros(&balance.body["daily_spend"]) <= 1_000_000,
        "{}",
        balance.body
    );

    // Recovery answers the same whether or not the address exists, and is recorded.
    let known = anonymous
        .post_json(
            &daemon.url("/account/recover"),
            &json!({"email": "rotate@example.com"}),
            &[],
        )
        .await
        .unwrap();
    let unknown = anonymous
        .post_json(
            &daemon.url("/account/recover"),
            &json!({"email": "ghost@example.com"}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!((known.status, &known.raw), (unknown.status, &unknown.raw));
    assert_eq!(known.status, 202);
    let (ok, listed) = admin_cli(&daemon.base, &["recoveries"]).await;
    assert!(ok, "{listed}");
    let requests = listed["recovery_requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["email"], "ghost@example.com", "newest first");
    assert_eq!(requests[0]["account"], Value::Null);
    assert_eq!(requests[1]["account"], me.id.as_str());

    // The admin API wants the operator token.
    let wrong = anonymous
        .post_json(
            &daemon.url("/admin/credits"),
            &json!({"account": me.id, "amount_usd": 1000}),
            &[("authorization", "Bearer nope")],
        )
        .await
        .unwrap();
    assert_eq!(wrong.status, 401);
    let as_user = new.get(&daemon.url("/admin/recoveries")).await.unwrap();
    assert_eq!(as_user.status, 401);
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let unknown_account = anonymous
        .post_json(
            &daemon.url("/admin/credits"),
            &json!({"account": "nobody@example.com", "amount_usd": 1}),
            &[("authorization", &auth)],
        )
        .await
        .unwrap();
    assert_eq!(unknown_account.status, 404);
}

#[tokio::test]
async fn idempotency_keys_make_one_job_and_refuse_a_changed_body() {
    let dir = tempfile::tempdir().unwrap();
    let (_standin, daemon) = daemon_with_llm(dir.path(), "").await;
    let anonymous = JsonClient::new();
    let me = register(&anonymous, &daemon.base, "idem@example.com")
        .await
        .unwrap();
    grant(&anonymous, &daemon.base, &me.id, 1.0).await.unwrap();
    let client = anonymous.with_bearer(&me.key);
    let url = daemon.url("/run");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            client
                .post_json(&url, &llm("once"), &[("idempotency-key", "req_001")])
                .await
                .unwrap()
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 202, "{}", reply.body);
        ids.push(reply.body["job_id"].as_str().unwrap().to_string());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let inference = client
        .post_json(
            &daemon.url("/inference"),
            &json!({"prompt": "once"}),
            &[("idempotency-key", "req_001")],
        )
        .await
        .unwrap();
    assert_eq!(
        inference.status, 422,
        "another route is another request: {}",
        inference.body
    );
    let changed = client
        .post_json(&url, &llm("twice"), &[("idempotency-key", "req_001")])
        .await
        .unwrap();
    assert_eq!(changed.status, 422, "{}", changed.body);
    assert_eq!(changed.body["details"]["job_id"], ids[0].as_str());
    wait_terminal(&client, &daemon.base, &ids[0], 20)
        .await
        .unwrap();
    let history = client.get(&daemon.url("/account/jobs")).await.unwrap();
    assert_eq!(
        history.body["jobs"].as_array().unwrap().len(),
        1,
        "one job, charged once"
    );
    let charged = micros(&history.body["jobs"][0]["charged_usd"]);
    let balance = client.get(&daemon.url("/account/balance")).await.unwrap();
    assert_eq!(micros(&balance.body["balance"]), 1_000_000 - charged);
    // Another account may use the same key for its own request.
    let other = register(&anonymous, &daemon.base, "other@example.com")
        .await
        .unwrap();
    grant(&anonymous, &daemon.base, &other.id, 1.0)
        .await
        .unwrap();
    let theirs = anonymous
        .with_bearer(&other.key)
        .post_json(&url, &llm("once"), &[("idempotency-key", "req_001")])
        .await
        .unwrap();
    assert_eq!(theirs.status, 202);
    assert_ne!(theirs.body["job_id"], ids[0].as_str());
}

#[tokio::test]
async fn volume_discounts_lower_the_reserved_price() {
    let dir = tempfile::tempdir().unwrap();
    let tiers = "[accounts]\n[[accounts.discount_tiers]]\nname = \"Standard\"\nmin_30d_spend_usd = 0\ndiscount_percent = 0\n[[accounts.discount_tiers]]\nname = \"Bulk\"\nmin_30d_spend_usd = 0.001\ndiscount_percent = 50\n";
    let (_standin, daemon) = daemon_with_llm(dir.path(), tiers).await;
    let anonymous = JsonClient::new();
    let me = register(&anonymous, &daemon.base, "bulk@example.com")
        .await
        .unwrap();
    grant(&anonymous, &daemon.base, &me.id, 1.0).await.unwrap();
    let client = anonymous.with_bearer(&me.key);
    let first = client
        .post_json(&daemon.url("/run"), &llm("a"), &[])
        .await
        .unwrap();
    let id = first.body["job_id"].as_str().unwrap().to_string();
    wait_terminal(&client, &daemon.base, &id, 20).await.unwrap();
    let balance = client.get(&daemon.url("/account/balance")).await.unwrap();
    assert_eq!(
        balance.body["volume_discount"],
        json!({"tier": "Bulk", "discount_percent": 50.0})
    );
    let list_price = client
        .get(&daemon.url("/catalog/estimate?service=llm-4090"))
        .await
        .unwrap();
    let second = client
        .post_json(&daemon.url("/run"), &llm("b"), &[])
        .await
        .unwrap();
    assert_eq!(
        micros(&second.body["estimated_cost_usd"]),
        micros(&list_price.body["estimated_cost_usd"]) / 2,
        "{} vs {}",
        second.body,
        list_price.body
    );
}
