//! The soak's load: open loop at a fixed rate (a request is sent at its time
//! whatever happened to earlier ones), keyed, across five kinds of request.
//! Every answer carrying a job id is an accepted job the audit must find.

use super::{Fleet, SoakReport, SoakSpec};
use crate::{EventStream, JsonClient, Reply};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Longest wait for one answer; a stream may take seconds under a slow plan.
const ANSWER_LIMIT: Duration = Duration::from_secs(60);
/// Longest wait, after the load, for every accepted job to finish.
const SETTLE_LIMIT: Duration = Duration::from_secs(240);

#[derive(Default)]
pub struct Sent {
    sent: AtomicU64,
    unanswered: AtomicU64,
    dropped: AtomicU64,
    /// Job id → the account that owns it.
    accepted: Mutex<HashMap<String, usize>>,
    refused: Mutex<BTreeMap<u16, u64>>,
    problems: Mutex<Vec<String>>,
}

pub async fn run(fleet: &Arc<Fleet>, spec: &SoakSpec) -> Arc<Sent> {
    let sent = Arc::new(Sent::default());
    let gap = Duration::from_secs_f64(1.0 / spec.rate.max(0.1));
    let total = (spec.rate * spec.seconds as f64) as u32;
    let start = tokio::time::Instant::now();
    let room = Arc::new(Semaphore::new(4096));
    let mut tasks = JoinSet::new();
    for n in 0..total {
        tokio::time::sleep_until(start + gap * n).await;
        let Ok(permit) = room.clone().try_acquire_owned() else {
            sent.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (fleet, sent) = (fleet.clone(), sent.clone());
        tasks.spawn(async move {
            send(&fleet, &sent, u64::from(n)).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    sent
}

fn prompt(n: u64) -> String {
    format!("soak request {n}")
}

async fn send(fleet: &Fleet, sent: &Sent, n: u64) {
    let account = (n / 5) as usize % fleet.accounts.len();
    let client = &fleet.accounts[account].1;
    let (path, body) = match n % 5 {
        0 if n.is_multiple_of(10) => return idempotent_pair(fleet, sent, account, n).await,
        0 => (
            "/run",
            json!({"service": "llm-4090", "input": {"prompt": prompt(n)}}),
        ),
        1 => ("/inference", json!({"prompt": prompt(n)})),
        2 => (
            "/run",
            json!({"service": "embedding-l4", "input": {"text": prompt(n)}}),
        ),
        3 => ("/run", json!({"service": "echo", "input": {"n": n}})),
        _ => return sent.record_stream(account, stream(fleet, account, n).await),
    };
    let url = format!("{}{path}", fleet.base);
    sent.record(account, answer(client.post_json(&url, &body, &[])).await);
}

async fn answer(
    reply: impl std::future::Future<Output = anyhow::Result<Reply>>,
) -> Option<(u16, Value)> {
    match tokio::time::timeout(ANSWER_LIMIT, reply).await {
        Ok(Ok(reply)) => Some((reply.status.as_u16(), reply.body)),
        _ => None,
    }
}

/// The same `/run` twice under one Idempotency-Key: one job, whatever
/// happened between the two (a kill -9 included).
async fn idempotent_pair(fleet: &Fleet, sent: &Sent, account: usize, n: u64) {
    let client = &fleet.accounts[account].1;
    let key = format!("soak-{n}");
    let body = json!({"service": "llm-4090", "input": {"prompt": prompt(n)}});
    let url = format!("{}/run", fleet.base);
    let headers = [("idempotency-key", key.as_str())];
    let first = answer(client.post_json(&url, &body, &headers)).await;
    let second = answer(client.post_json(&url, &body, &headers)).await;
    let ids: Vec<String> = [&first, &second]
        .into_iter()
        .filter_map(|a| job_id(a.as_ref()?.1.clone()))
        .collect();
    if ids.len() == 2 && ids[0] != ids[1] {
        sent.problems.lock().push(format!(
            "Idempotency-Key {key} made two jobs: {} and {}",
            ids[0], ids[1]
        ));
    }
    sent.record(account, first);
    sent.record(account, second);
}

/// A streamed chat completion read to its end; its job id is in a header.
async fn stream(fleet: &Fleet, account: usize, n: u64) -> Option<(u16, Option<String>)> {
    let url = format!("{}/v1/chat/completions", fleet.base);
    let auth = format!("Bearer {}", fleet.accounts[account].0.key);
    let body = json!({"model": "meta-llama/Llama-3.3-70B-Instruct", "stream": true,
        "messages": [{"role": "user", "content": prompt(n)}]});
    let read = async {
        let mut events = EventStream::open(&url, &[("authorization", &auth)], &body).await?;
        let id = events
            .headers
            .get("x-gpubridge-job-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Read to the end: a client that stays is charged for what it got.
        while let Ok(Some(_)) = events.next().await {}
        anyhow::Ok((events.status.as_u16(), id))
    };
    match tokio::time::timeout(ANSWER_LIMIT, read).await {
        Ok(Ok(found)) => Some(found),
        _ => None,
    }
}

fn job_id(body: Value) -> Option<String> {
    body["job_id"].as_str().map(str::to_string)
}

impl Sent {
    fn record(&self, account: usize, answer: Option<(u16, Value)>) {
        self.record_stream(account, answer.map(|(status, body)| (status, job_id(body))));
    }

    fn record_stream(&self, account: usize, answer: Option<(u16, Option<String>)>) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        match answer {
            Some((_, Some(id))) => {
                self.accepted.lock().insert(id, account);
            }
            Some((status, None)) => *self.refused.lock().entry(status).or_default() += 1,
            None => {
                self.unanswered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn summarize(&self, report: &mut SoakReport) {
        report.sent = self.sent.load(Ordering::Relaxed);
        report.accepted = self.accepted.lock().len() as u64;
        report.refused = self.refused.lock().clone();
        report.unanswered = self.unanswered.load(Ordering::Relaxed);
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            *report.refused.entry(0).or_default() += dropped;
        }
    }

    pub fn discrepancies(&self) -> Vec<String> {
        self.problems.lock().clone()
    }

    pub fn accepted_ids(&self) -> Vec<String> {
        self.accepted.lock().keys().cloned().collect()
    }

    /// Polls every accepted job until it is terminal; names those that never were.
    pub async fn wait_all_terminal(&self, fleet: &Fleet) -> Vec<String> {
        let jobs: Vec<(String, usize)> = self
            .accepted
            .lock()
            .iter()
            .map(|(id, account)| (id.clone(), *account))
            .collect();
        let deadline = Instant::now() + SETTLE_LIMIT;
        let mut problems = Vec::new();
        for (id, account) in jobs {
            let client = &fleet.accounts[account].1;
            if let Some(problem) = wait_terminal(client, &fleet.base, &id, deadline).await {
                problems.push(problem);
            }
        }
        problems
    }
}

async fn wait_terminal(
    client: &JsonClient,
    base: &str,
    id: &str,
    deadline: Instant,
) -> Option<String> {
    let url = format!("{base}/status/{id}");
    loop {
        let reply = client.get(&url).await;
        let status = match &reply {
            Ok(r) => r.body["status"].as_str().unwrap_or_default().to_string(),
            Err(e) => e.to_string(),
        };
        if matches!(status.as_str(), "completed" | "failed" | "cancelled") {
            return None;
        }
        if Instant::now() > deadline {
            return Some(format!("accepted job {id} still {status:?} after the load"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
