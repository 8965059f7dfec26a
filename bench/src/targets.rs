//! `--target`: the same open-loop load against any HTTP endpoint on loopback —
//! GPU-Bridge, another gateway, or the upstream itself — in one of four request
//! shapes. With several targets each rate is run on every target in turn, so
//! they are measured under the same conditions, and each is reported against
//! a baseline target (the upstream, called the same way: streamed or not) as
//! added latency. Rates step up until a
//! target's p99 passes the largest bound: its rate frontier.

use crate::failures::{print_failure, Failures};
use crate::load::{self, LoadResult, LoadSpec, Pacing};
use crate::report::{Frontier, Report, Run};
use anyhow::Context;
use bytes::Bytes;
use gpubridge_tests::loopback::require_loopback_http;
use gpubridge_tests::JsonClient;
use hyper::Method;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// What is sent, and what answer counts as success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// GPU-Bridge's `/inference` body; 200.
    Inference,
    /// GPU-Bridge's `/run` for `llm-4090`; 202 (accepted).
    Run,
    /// An OpenAI chat completion; 200 with the whole answer.
    OpenaiChat,
    /// The same with `"stream": true`; 200, read to the end of the stream.
    OpenaiChatStream,
}

impl std::str::FromStr for Shape {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Shape> {
        Ok(match text {
            "inference" => Shape::Inference,
            "run" => Shape::Run,
            "openai-chat" => Shape::OpenaiChat,
            "openai-chat-stream" => Shape::OpenaiChatStream,
            other => anyhow::bail!(
                "unknown shape {other:?}: inference, run, openai-chat or openai-chat-stream"
            ),
        })
    }
}

impl Shape {
    fn body(self, model: &str) -> serde_json::Value {
        let prompt = "Summarize this changelog";
        let messages = json!([{"role": "user", "content": prompt}]);
        match self {
            Shape::Inference => json!({"model": model, "prompt": prompt, "max_tokens": 64}),
            Shape::Run => {
                json!({"service": "llm-4090", "input": {"model": model, "prompt": prompt}})
            }
            Shape::OpenaiChat => json!({"model": model, "messages": messages, "max_tokens": 64}),
            Shape::OpenaiChatStream => {
                json!({"model": model, "messages": messages, "max_tokens": 64, "stream": true})
            }
        }
    }

    pub fn streams(self) -> bool {
        self == Shape::OpenaiChatStream
    }

    fn success(self) -> u16 {
        match self {
            Shape::Run => 202,
            _ => 200,
        }
    }
}

/// One system under test: `NAME=[SHAPE@]URL`.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub shape: Shape,
    pub url: String,
}

impl Target {
    /// Parses `NAME=[SHAPE@]URL`; `shape` applies when the target names none.
    pub fn parse(text: &str, shape: Shape) -> anyhow::Result<Target> {
        let (name, rest) = text
            .split_once('=')
            .with_context(|| format!("--target {text:?}: write NAME=[SHAPE@]URL"))?;
        let (shape, url) = match rest.split_once('@') {
            Some((shape, url)) if !shape.contains('/') => (shape.parse()?, url),
            _ => (shape, rest),
        };
        require_loopback_http("--target", url)?;
        Ok(Target {
            name: name.to_string(),
            shape,
            url: url.to_string(),
        })
    }
}

pub struct Sweep {
    pub targets: Vec<Target>,
    /// The targets others are compared with: each target with the first one
    /// that streams as it does (else the first). Empty: no added latency.
    pub baselines: Vec<String>,
    pub model: String,
    pub bearer: Option<String>,
    /// Rates to run; empty steps up until every target passes the last bound.
    pub rates: Vec<f64>,
    pub seconds: u64,
    /// Slices of `seconds` per target, taken in turn with the other targets'.
    pub rounds: u32,
    /// Each target driven this long at the first rate before anything is
    /// measured (zero: none).
    pub warmup: Duration,
    pub max_in_flight: u64,
    pub pacing: Pacing,
    /// p99 bounds of the frontier, in milliseconds.
    pub bounds_ms: Vec<f64>,
}

/// Runs the sweep, printing as it goes; returns everything measured.
pub async fn run(sweep: &Sweep) -> anyhow::Result<Report> {
    let client = match &sweep.bearer {
        Some(key) => JsonClient::new().with_bearer(key),
        None => JsonClient::new(),
    };
    let mut report = Report::new(sweep);
    let largest = sweep.bounds_ms.iter().copied().fold(0.0, f64::max);
    // The baseline first at each rate, so the others' added latency prints as they finish.
    let mut live: Vec<&Target> = sweep.targets.iter().collect();
    live.sort_by_key(|t| !sweep.baselines.contains(&t.name));
    warm_up(&client, &live, sweep).await?;
    for rate in rates(&sweep.rates) {
        if live.is_empty() {
            break;
        }
        println!("rate {rate} req/s, {} s per target", sweep.seconds);
        let spec = LoadSpec {
            rate_per_second: rate,
            duration: Duration::from_secs_f64(sweep.seconds as f64 / f64::from(sweep.rounds)),
            max_in_flight: sweep.max_in_flight,
            pacing: sweep.pacing,
        };
        let mut taken: Vec<(Option<LoadResult>, Failures)> =
            live.iter().map(|_| Default::default()).collect();
        for _ in 0..sweep.rounds {
            for (target, (sum, failures)) in live.iter().zip(taken.iter_mut()) {
                let result = drive(&client, target, &sweep.model, &spec, failures).await?;
                match sum {
                    Some(sum) => sum.absorb(&result)?,
                    None => *sum = Some(result),
                }
            }
        }
        for (target, (result, failures)) in live.clone().into_iter().zip(taken) {
            // Always there: every target ran at least one round.
            let Some(result) = result else { continue };
            let run = Run::of(target, rate, &result, failures.take());
            print_run(&run, report.baseline_for(&run));
            if sweep.rates.is_empty() && !run.within(largest) {
                live.retain(|t| t.name != target.name);
            }
            report.runs.push(run);
        }
    }
    report.frontiers = sweep
        .targets
        .iter()
        .map(|t| Frontier::of(&t.name, &report.runs, &sweep.bounds_ms))
        .collect();
    Ok(report)
}

/// Drives each target at the first rate for the warm-up, and forgets it.
async fn warm_up(client: &JsonClient, targets: &[&Target], sweep: &Sweep) -> anyhow::Result<()> {
    let Some(&rate) = rates(&sweep.rates).first() else {
        return Ok(());
    };
    if sweep.warmup.is_zero() {
        return Ok(());
    }
    let spec = LoadSpec {
        rate_per_second: rate,
        duration: sweep.warmup,
        max_in_flight: sweep.max_in_flight,
        pacing: sweep.pacing,
    };
    for target in targets {
        let result = drive(client, target, &sweep.model, &spec, &Failures::default()).await?;
        println!(
            "warm-up {:<20} {:.1} s at {rate} req/s, unrecorded ({} answered well of {})",
            target.name,
            sweep.warmup.as_secs_f64(),
            result.ok,
            result.ok + result.errors + result.dropped
        );
    }
    Ok(())
}

/// The given rates, or 500, 1000, 2000, 4000 … 10,000, then 15,000 … 60,000 req/s.
fn rates(given: &[f64]) -> Vec<f64> {
    if !given.is_empty() {
        return given.to_vec();
    }
    let mut steps = vec![500.0, 1000.0];
    let mut rate: f64 = 2000.0;
    while rate <= 60_000.0 {
        steps.push(rate);
        rate += if rate < 10_000.0 { 2000.0 } else { 5000.0 };
    }
    steps
}

async fn drive(
    client: &JsonClient,
    target: &Target,
    model: &str,
    spec: &LoadSpec,
    failures: &Failures,
) -> anyhow::Result<LoadResult> {
    let body = Bytes::from(target.shape.body(model).to_string());
    let (client, url) = (client.clone(), Arc::<str>::from(target.url.as_str()));
    let success = target.shape.success();
    let failures = failures.clone();
    load::run(spec, move |_| {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        let failures = failures.clone();
        async move {
            let headers = [("content-type", "application/json")];
            match client.exchange(Method::POST, &url, &headers, body).await {
                Ok((reply, _)) if reply.status.as_u16() == success => true,
                Ok((reply, raw)) => {
                    failures.record(reply.status.as_u16(), &String::from_utf8_lossy(&raw))
                }
                Err(e) => failures.record(0, &e.to_string()),
            }
        }
    })
    .await
}

fn print_run(run: &Run, baseline: Option<&Run>) {
    let [ok, errors, dropped, p50, p99, p999, added50, added99] = run.columns(baseline);
    let late = match (run.sent_late_p999_us, run.sent_late_max_us) {
        (Some(p999), Some(max)) => format!("  sent late p99.9 {p999} max {max} µs"),
        _ => String::new(),
    };
    println!(
        "  {:<20} ok {ok:>7} errors {errors:>6} dropped {dropped:>6}  p50 {p50:>8} p99 {p99:>8} p99.9 {p999:>8} µs  added p50 {added50:>7} p99 {added99:>7} µs{late}",
        run.target
    );
    run.failures.iter().for_each(print_failure);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_their_shape_or_take_the_default() {
        let t = Target::parse("gw=run@http://127.0.0.1:8080/run", Shape::Inference).unwrap();
        assert_eq!((t.name.as_str(), t.shape), ("gw", Shape::Run));
        assert_eq!(t.url, "http://127.0.0.1:8080/run");
        let t = Target::parse(
            "up=http://[::1]:9100/v1/chat/completions",
            Shape::OpenaiChat,
        );
        assert_eq!(t.unwrap().shape, Shape::OpenaiChat);
        assert!(Target::parse("nameless", Shape::Run).is_err());
        assert!(Target::parse("x=bogus@http://127.0.0.1:1/", Shape::Run).is_err());
    }

    #[test]
    fn rates_step_up_to_the_ceiling() {
        let steps = rates(&[]);
        assert_eq!(&steps[..4], &[500.0, 1000.0, 2000.0, 4000.0]);
        assert!(steps.contains(&10_000.0) && steps.contains(&15_000.0));
        assert_eq!(steps.last(), Some(&60_000.0));
        assert_eq!(rates(&[3000.0]), vec![3000.0]);
    }
}
