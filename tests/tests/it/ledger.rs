//! The ledger invariant under stress: for every account and in total,
//! balance = credits − charges − open reservations, never negative, through
//! requests racing for the last cent, one Idempotency-Key from many tasks at
//! once, key rotation mid-load, and kill -9 followed by a restart. The books are
//! checked from disk alone (`gpubridge audit`) and against what clients saw.

use gpubridge_tests::accounts::{audit_offline, grant, micros, register};
use gpubridge_tests::{
    providers_config, wait_terminal, Behavior, Daemon, DaemonOptions, JsonClient, Reply, Standin,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

fn llm(prompt: &str) -> Value {
    json!({"service": "llm-4090", "input": {"prompt": prompt}})
}

fn start(data: &std::path::Path, config: &str) -> Daemon {
    let mut options = DaemonOptions::new(data);
    options.config = Some(config);
    options.accounts = true;
    Daemon::start(options)
}

/// Sends `count` requests at once and returns every reply.
async fn burst(
    client: &JsonClient,
    url: &str,
    count: usize,
    body: impl Fn(usize) -> Value,
    headers: &'static [(&'static str, &'static str)],
) -> Vec<Reply> {
    let mut tasks = Vec::new();
    for n in 0..count {
        let (client, url, body) = (client.clone(), url.to_string(), body(n));
        tasks.push(tokio::spawn(async move {
            client.post_json(&url, &body, headers).await.unwrap()
        }));
    }
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

fn job_ids(replies: &[Reply]) -> BTreeSet<String> {
    replies
        .iter()
        .filter(|r| r.status == 202)
        .map(|r| r.body["job_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_books_balance_through_races_rotation_and_kill_9() {
    let standin = Standin::start("k").await.unwrap();
    // Jobs stay in flight long enough for every race and for the kill to catch them.
    standin.set_behavior(Behavior::Slow(Duration::from_millis(1500)));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = providers_config(&standin.base_url(), "k", &["groq"]);
    let mut daemon = start(&data, &config);
    let anonymous = JsonClient::new();
    let run = daemon.url("/run");
    let estimate = anonymous
        .get(&daemon.url("/catalog/estimate?service=llm-4090"))
        .await
        .unwrap();
    let price = micros(&estimate.body["estimated_cost_usd"]);
    assert!(price > 0);
    let mut granted = Vec::new();

    // 1. Forty requests race for ten and a half jobs' worth of credits.
    let racer = register(&anonymous, &daemon.base, "racer@example.com")
        .await
        .unwrap();
    let racer_grant = 10 * price + price / 2;
    grant(
        &anonymous,
        &daemon.base,
        &racer.id,
        racer_grant as f64 / 1e6,
    )
    .await
    .unwrap();
    let racer_client = anonymous.with_bearer(&racer.key);
    let replies = burst(&racer_client, &run, 40, |n| llm(&format!("race {n}")), &[]).await;
    let accepted = replies.iter().filter(|r| r.status == 202).count();
    let refused = replies.iter().filter(|r| r.status == 402).count();
    assert_eq!(
        (accepted, refused),
        (10, 30),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let balance = racer_client
        .get(&daemon.url("/account/balance"))
        .await
        .unwrap();
    assert_eq!(
        micros(&balance.body["balance"]),
        price / 2,
        "{}",
        balance.body
    );
    assert_eq!(micros(&balance.body["open_reservations"]), 10 * price);
    let racer_jobs = job_ids(&replies);
    granted.push((racer.key.clone(), racer_grant, racer_jobs));

    // 2. One Idempotency-Key from 32 tasks at once: one job, one reservation.
    let storm = register(&anonymous, &daemon.base, "storm@example.com")
        .await
        .unwrap();
    grant(&anonymous, &daemon.base, &storm.id, 1.0)
        .await
        .unwrap();
    let storm_client = anonymous.with_bearer(&storm.key);
    let replies = burst(
        &storm_client,
        &run,
        32,
        |_| llm("the same request"),
        &[("idempotency-key", "storm-1")],
    )
    .await;
    assert!(
        replies.iter().all(|r| r.status == 202),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let storm_jobs = job_ids(&replies);
    assert_eq!(storm_jobs.len(), 1, "{storm_jobs:?}");
    let balance = storm_client
        .get(&daemon.url("/account/balance"))
        .await
        .unwrap();
    assert_eq!(
        micros(&balance.body["open_reservations"]),
        price,
        "reserved once"
    );
    granted.push((storm.key.clone(), 1_000_000, storm_jobs));

    // 3. Key rotation while eight workers submit with the old key.
    let rotor = register(&anonymous, &daemon.base, "rotor@example.com")
        .await
        .unwrap();
    grant(&anonymous, &daemon.base, &rotor.id, 5.0)
        .await
        .unwrap();
    let old_client = anonymous.with_bearer(&rotor.key);
    let rotor_accepted = Arc::new(parking_lot::Mutex::new(BTreeSet::new()));
    let mut workers = Vec::new();
    for worker in 0..8 {
        let (client, url, accepted) = (old_client.clone(), run.clone(), rotor_accepted.clone());
        workers.push(tokio::spawn(async move {
            for n in 0..300 {
                let reply = client
                    .post_json(&url, &llm(&format!("rotor {worker}-{n}")), &[])
                    .await
                    .unwrap();
                match reply.status.as_u16() {
                    202 => {
                        accepted
                            .lock()
                            .insert(reply.body["job_id"].as_str().unwrap().to_string());
                    }
                    401 => return true,
                    other => panic!("unexpected {other}: {}", reply.body),
                }
            }
            false
        }));
    }
    while rotor_accepted.lock().len() < 40 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rotated = old_client
        .post_json(&daemon.url("/account/regenerate-key"), &json!({}), &[])
        .await
        .unwrap();
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new_key = rotated.body["api_key"].as_str().unwrap().to_string();
    assert_eq!(
        old_client
            .post_json(&run, &llm("too late"), &[])
            .await
            .unwrap()
            .status,
        401
    );
    for worker in workers {
        assert!(
            worker.await.unwrap(),
            "every worker was turned away once the key rotated"
        );
    }
    let rotor_jobs = rotor_accepted.lock().clone();
    granted.push((new_key, 5_000_000, rotor_jobs));

    // 4. kill -9 with most of those jobs still running; the books on disk balance.
    daemon.kill9();
    let (clean, report) = audit_offline(&data).await;
    assert!(clean, "{report}");
    let total_granted: i64 = granted.iter().map(|(_, g, _)| g).sum();
    assert_eq!(report["total_credits_micros"].as_i64(), Some(total_granted));
    assert!(
        report["jobs_open"].as_u64().unwrap() > 0,
        "the kill caught jobs in flight: {report}"
    );
    assert_eq!(
        report["total_charges_micros"].as_i64().unwrap()
            + report["total_open_reservations_micros"].as_i64().unwrap()
            + report["total_balance_micros"].as_i64().unwrap(),
        total_granted
    );

    // Restart: unfinished jobs resume and settle; every accepted job is accounted for.
    standin.set_behavior(Behavior::Ok);
    let daemon = start(&data, &config);
    let mut total_charged = 0;
    for (key, grant_micros, jobs) in &granted {
        let client = anonymous.with_bearer(key);
        for id in jobs {
            let done = wait_terminal(&client, &daemon.base, id, 60).await.unwrap();
            assert_eq!(done["status"], "completed", "{done}");
        }
        let history = client
            .get(&daemon.url("/account/jobs?limit=200"))
            .await
            .unwrap();
        let rows = history.body["jobs"].as_array().unwrap();
        let listed: BTreeSet<String> = rows
            .iter()
            .map(|r| r["job_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(&listed, jobs, "the history is exactly the accepted jobs");
        let charged: i64 = rows.iter().map(|r| micros(&r["charged_usd"])).sum();
        for row in rows {
            assert_eq!(
                micros(&row["charged_usd"]) + micros(&row["refunded_usd"]),
                micros(&row["estimated_cost_usd"]),
                "{row}"
            );
        }
        let balance = client.get(&daemon.url("/account/balance")).await.unwrap();
        assert_eq!(
            micros(&balance.body["open_reservations"]),
            0,
            "{}",
            balance.body
        );
        assert_eq!(
            micros(&balance.body["balance"]),
            grant_micros - charged,
            "{}",
            balance.body
        );
        total_charged += charged;
    }
    let auth = format!("Bearer {}", gpubridge_tests::ADMIN_TOKEN);
    let live = anonymous
        .send(
            hyper::Method::GET,
            &daemon.url("/admin/ledger/audit"),
            &[("authorization", &auth)],
            "",
        )
        .await
        .unwrap();
    assert_eq!(live.body["problems"], json!([]), "{}", live.body);
    assert_eq!(
        live.body["total_charges_micros"].as_i64(),
        Some(total_charged)
    );
    assert_eq!(live.body["total_open_reservations_micros"], 0);
    assert_eq!(
        live.body["total_balance_micros"].as_i64(),
        Some(total_granted - total_charged)
    );
}
