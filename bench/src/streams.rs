//! The `streams` scenario: chat completions streamed through
//! `/v1/chat/completions` against a stand-in that sends 64 chunks 20 ms apart,
//! and the same streams straight from the stand-in: the time to the first token
//! the gateway adds, the gaps between chunks, and how many streams at once one
//! daemon carries with no chunk lost.

use anyhow::Context;
use gpubridge_tests::{EventStream, Standin, StreamPlan};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const CHUNKS: u32 = 64;
const GAP: Duration = Duration::from_millis(20);
/// A model the bench's stand-in serves as Groq.
const MODEL: &str = "Qwen/Qwen3-32B";

#[derive(Default)]
struct Stats {
    ttft_us: Vec<u64>,
    gaps_us: Vec<u64>,
    complete: u64,
    broken: u64,
}

/// One stream read to its end: time to the first content chunk, the gaps
/// between chunks, and whether all of them and `[DONE]` arrived.
async fn one(url: &str, headers: &[(&str, &str)], stats: &mut Stats) {
    let body =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "go"}], "stream": true});
    let started = Instant::now();
    let Ok(mut stream) = EventStream::open(url, headers, &body).await else {
        stats.broken += 1;
        return;
    };
    let (mut last, mut content, mut done) = (None::<Instant>, 0u32, false);
    while let Ok(Some(event)) = stream.next().await {
        if event == "[DONE]" {
            done = true;
            break;
        }
        let chunk: Value = serde_json::from_str(&event).unwrap_or(Value::Null);
        if chunk["choices"][0]["delta"]["content"].is_string() {
            let now = Instant::now();
            match last {
                None => stats
                    .ttft_us
                    .push(now.duration_since(started).as_micros() as u64),
                Some(previous) => stats
                    .gaps_us
                    .push(now.duration_since(previous).as_micros() as u64),
            }
            last = Some(now);
            content += 1;
        }
    }
    match done && content == CHUNKS && stream.status == 200 {
        true => stats.complete += 1,
        false => stats.broken += 1,
    }
}

/// `concurrency` streams at once; every one read to its end.
async fn wave(url: &str, headers: &[(&str, &str)], concurrency: usize) -> Stats {
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let url = url.to_string();
            let headers: Vec<(String, String)> = headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            tokio::spawn(async move {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                let mut stats = Stats::default();
                one(&url, &headers, &mut stats).await;
                stats
            })
        })
        .collect();
    let mut all = Stats::default();
    for task in tasks {
        let Ok(stats) = task.await else {
            all.broken += 1;
            continue;
        };
        all.ttft_us.extend(stats.ttft_us);
        all.gaps_us.extend(stats.gaps_us);
        all.complete += stats.complete;
        all.broken += stats.broken;
    }
    all
}

fn quantiles(values: &[u64]) -> anyhow::Result<(f64, f64)> {
    let mut histogram = Histogram::<u64>::new(3).context("histogram")?;
    for value in values {
        histogram.record(*value).context("recording")?;
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Ok((ms(0.5), ms(0.99)))
}

/// Runs the scenario: `concurrency` streams at a time for latency (the first
/// content chunk comes one gap after the request, as from a model), then waves
/// of growing size until one loses a chunk or `max_streams` is reached.
/// `account_key` is the gateway's API key when it runs with accounts.
pub async fn run(
    gateway: &str,
    standin: &Standin,
    key: &str,
    account_key: Option<&str>,
    concurrency: usize,
    max_streams: usize,
) -> anyhow::Result<()> {
    standin.set_stream_plan(StreamPlan {
        chunks: CHUNKS,
        interval: GAP,
        die_after: None,
    });
    let auth = format!("Bearer {key}");
    let account_auth = account_key.map(|key| format!("Bearer {key}"));
    let gateway_headers: Vec<(&str, &str)> = account_auth
        .iter()
        .map(|auth| ("authorization", auth.as_str()))
        .collect();
    let direct_url = format!("{}/chat/completions", standin.base_url());
    let gateway_url = format!("{gateway}/v1/chat/completions");
    // About 250 streams measured each way (at least 50 one at a time: a
    // minute and more).
    let rounds = (250 / concurrency.max(1)).clamp(5, 50);
    println!(
        "streams: {CHUNKS} chunks {} ms apart, {concurrency} at a time, {rounds} rounds",
        GAP.as_millis()
    );
    let mut ttft = Vec::new();
    for (name, url, headers) in [
        (
            "direct",
            &direct_url,
            vec![("authorization", auth.as_str())],
        ),
        ("gateway", &gateway_url, gateway_headers.clone()),
    ] {
        let mut stats = Stats::default();
        for _ in 0..rounds {
            let round = wave(url, &headers, concurrency).await;
            stats.ttft_us.extend(round.ttft_us);
            stats.gaps_us.extend(round.gaps_us);
            stats.complete += round.complete;
            stats.broken += round.broken;
        }
        let (ttft_p50, ttft_p99) = quantiles(&stats.ttft_us)?;
        let (gap_p50, gap_p99) = quantiles(&stats.gaps_us)?;
        println!(
            "  {name:<8} TTFT p50 {ttft_p50:>7.2} ms  p99 {ttft_p99:>7.2} ms | inter-chunk p50 {gap_p50:>6.2} ms  p99 {gap_p99:>6.2} ms | streams complete {} broken {}",
            stats.complete, stats.broken
        );
        ttft.push((ttft_p50, ttft_p99));
    }
    if let [direct, gateway] = ttft[..] {
        println!(
            "  added TTFT (gateway − direct): p50 {:.2} ms, p99 {:.2} ms",
            gateway.0 - direct.0,
            gateway.1 - direct.1
        );
    }
    let mut size = 250;
    while size <= max_streams {
        let started = Instant::now();
        let stats = wave(&gateway_url, &gateway_headers, size).await;
        let (_, gap_p99) = quantiles(&stats.gaps_us)?;
        println!(
            "  {size:>5} concurrent streams: complete {} broken {} | inter-chunk p99 {gap_p99:.2} ms | {:.1} s",
            stats.complete,
            stats.broken,
            started.elapsed().as_secs_f64()
        );
        if stats.broken > 0 {
            break;
        }
        size *= 2;
    }
    Ok(())
}
