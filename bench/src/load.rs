//! The open-loop engine: requests are sent on a fixed schedule whether or not
//! earlier ones finished, and latency is measured from the scheduled send time,
//! so a stalled server shows up as latency instead of silently lowering load.

use crate::timeline::Timeline;
use hdrhistogram::Histogram;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
pub struct LoadSpec {
    pub rate_per_second: f64,
    pub duration: Duration,
    /// Requests allowed in flight at once; beyond it a scheduled request is dropped.
    pub max_in_flight: u64,
}

pub struct LoadResult {
    pub latency_us: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
    pub dropped: u64,
    pub elapsed: Duration,
    /// Jobs' own execution time, where the scenario reads it from `/status`.
    pub execution_us: Option<Histogram<u64>>,
    /// Open loop: how late each request left behind its scheduled time. The
    /// generator sends on time unless the machine stalls it, so a large value
    /// marks a run whose tail is the machine's, whichever target it was
    /// driving (none is subtracted from the latency).
    pub sent_late_us: Option<Histogram<u64>>,
    /// Open loop: the slowest request answered well, with when it was due,
    /// to line a stall up with a server's own logs.
    pub slowest: Option<Slowest>,
    /// Open loop: the run's latency window by window.
    pub timeline: Option<Timeline>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slowest {
    pub latency_us: u64,
    /// Its scheduled send time, Unix milliseconds.
    pub due_unix_ms: u64,
}

impl LoadResult {
    /// Adds another run's requests to this one's, as if they had been one run.
    pub fn absorb(&mut self, other: &LoadResult) -> anyhow::Result<()> {
        self.latency_us.add(&other.latency_us)?;
        self.ok += other.ok;
        self.errors += other.errors;
        self.dropped += other.dropped;
        self.elapsed += other.elapsed;
        if let (Some(mine), Some(theirs)) = (&mut self.execution_us, &other.execution_us) {
            mine.add(theirs)?;
        }
        if let (Some(mine), Some(theirs)) = (&mut self.sent_late_us, &other.sent_late_us) {
            mine.add(theirs)?;
        }
        if other.slowest.map(|s| s.latency_us) > self.slowest.map(|s| s.latency_us) {
            self.slowest = other.slowest;
        }
        if let (Some(mine), Some(theirs)) = (&mut self.timeline, &other.timeline) {
            mine.absorb(theirs);
        }
        Ok(())
    }
}

/// Runs `request` at the spec's rate; it returns whether the request succeeded.
pub async fn run<F, Fut>(spec: &LoadSpec, request: F) -> anyhow::Result<LoadResult>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let request = Arc::new(request);
    let total = (spec.rate_per_second * spec.duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / spec.rate_per_second.max(0.001));
    let in_flight = Arc::new(AtomicU64::new(0));
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<(bool, u64, u64)>();
    let start = Instant::now();
    let start_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut dropped = 0u64;
    let due_unix_ms = |n: u64| start_unix_ms + interval.mul_f64(n as f64).as_millis() as u64;
    let mut sent_late_us = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let mut timeline = Timeline::default();
    for n in 0..total {
        let scheduled = start + interval.mul_f64(n as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let late = scheduled.elapsed().as_micros() as u64;
        sent_late_us.saturating_record(late.max(1));
        timeline.sent(due_unix_ms(n), late);
        if in_flight.load(Ordering::Acquire) >= spec.max_in_flight {
            dropped += 1;
            continue;
        }
        in_flight.fetch_add(1, Ordering::AcqRel);
        let (request, sender, in_flight) = (request.clone(), sender.clone(), in_flight.clone());
        tokio::spawn(async move {
            let ok = request(n).await;
            let micros = scheduled.elapsed().as_micros() as u64;
            in_flight.fetch_sub(1, Ordering::AcqRel);
            let _ = sender.send((ok, micros, n));
        });
    }
    drop(sender);
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let (mut ok, mut errors) = (0u64, 0u64);
    let mut slowest: Option<Slowest> = None;
    while let Some((success, micros, n)) = receiver.recv().await {
        timeline.answered(due_unix_ms(n), success.then_some(micros));
        if success {
            ok += 1;
            latency_us.saturating_record(micros.max(1));
            if slowest.is_none_or(|s| micros > s.latency_us) {
                slowest = Some(Slowest {
                    latency_us: micros,
                    due_unix_ms: due_unix_ms(n),
                });
            }
        } else {
            errors += 1;
        }
    }
    Ok(LoadResult {
        latency_us,
        ok,
        errors,
        dropped,
        elapsed: start.elapsed(),
        execution_us: None,
        sent_late_us: Some(sent_late_us),
        slowest,
        timeline: Some(timeline),
    })
}

/// Closed loop: `clients` callers, each sending its next request as soon as the
/// last one answered, for `duration`. Latency is each request's own time; the
/// throughput is what the server sustained.
pub async fn run_closed<F, Fut>(
    clients: usize,
    duration: Duration,
    request: F,
) -> anyhow::Result<LoadResult>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let request = Arc::new(request);
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut latency = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
                let (mut ok, mut errors, mut n) = (0u64, 0u64, 0u64);
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    if request(client, n).await {
                        ok += 1;
                        latency.saturating_record((sent.elapsed().as_micros() as u64).max(1));
                    } else {
                        errors += 1;
                    }
                    n += 1;
                }
                anyhow::Ok((latency, ok, errors))
            })
        })
        .collect();
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let (mut ok, mut errors) = (0u64, 0u64);
    for task in tasks {
        let (h, o, e) = task.await??;
        latency_us.add(h)?;
        ok += o;
        errors += e;
    }
    Ok(LoadResult {
        latency_us,
        ok,
        errors,
        dropped: 0,
        elapsed: start.elapsed(),
        execution_us: None,
        sent_late_us: None,
        slowest: None,
        timeline: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(latencies: &[u64], errors: u64) -> LoadResult {
        let mut latency_us = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap();
        latencies
            .iter()
            .for_each(|&l| latency_us.saturating_record(l));
        let mut sent_late_us = Histogram::<u64>::new(3).unwrap();
        latencies
            .iter()
            .for_each(|_| sent_late_us.record(10).unwrap());
        LoadResult {
            latency_us,
            ok: latencies.len() as u64,
            errors,
            dropped: 1,
            elapsed: Duration::from_secs(2),
            execution_us: None,
            sent_late_us: Some(sent_late_us),
            slowest: latencies.iter().max().map(|&latency_us| Slowest {
                latency_us,
                due_unix_ms: latency_us,
            }),
            timeline: None,
        }
    }

    #[test]
    fn slices_taken_in_turn_add_up_to_one_run() {
        let mut sum = result(&[100, 200], 0);
        sum.absorb(&result(&[5_000, 300], 2)).unwrap();
        assert_eq!((sum.ok, sum.errors, sum.dropped), (4, 2, 2));
        assert_eq!(sum.elapsed, Duration::from_secs(4));
        assert_eq!(sum.latency_us.len(), 4);
        // The slow request of the second slice is the merged run's maximum.
        assert!(sum.latency_us.equivalent(sum.latency_us.max(), 5_000));
        assert!(sum.latency_us.equivalent(sum.latency_us.min(), 100));
        assert_eq!(sum.sent_late_us.map(|h| h.len()), Some(4));
        assert_eq!(sum.slowest.map(|s| s.latency_us), Some(5_000));
    }
}
