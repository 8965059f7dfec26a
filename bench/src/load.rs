//! The open-loop engine: requests are sent on a fixed schedule whether or not
//! earlier ones finished, and latency is measured from the scheduled send time,
//! so a stalled server shows up as latency instead of silently lowering load.

use crate::ticker::Ticker;
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
    pub pacing: Pacing,
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
    let total = (spec.rate_per_second * spec.duration.as_secs_f64()).round() as u64;
    let (answers, mut receiver) = tokio::sync::mpsc::unbounded_channel::<(bool, u64, u64)>();
    let mut pacer = Pacer::new(spec, Arc::new(request), answers)?;
    let schedule = pacer.schedule;
    let ticker = match spec.pacing {
        Pacing::Precise => Some(Ticker::new()?),
        Pacing::Timer => None,
    };
    for n in 0..total {
        match &ticker {
            Some(ticker) => ticker.until(schedule.due(n)).await?,
            None => tokio::time::sleep_until(schedule.due(n).into()).await,
        }
        pacer.send(n);
    }
    let Pacer {
        dropped,
        sent_late_us,
        mut timeline,
        answers,
        ..
    } = pacer;
    // The channel ends with the last answer once the pacer's sender is gone.
    drop(answers);
    let due_unix_ms = |n| schedule.due_unix_ms(n);
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
        elapsed: schedule.start.elapsed(),
        execution_us: None,
        sent_late_us: Some(sent_late_us),
        slowest,
        timeline: Some(timeline),
    })
}

/// How an open-loop run keeps its schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pacing {
    /// A timerfd wakes the runtime at each send time (late by the kernel's
    /// timer slack and a wake-up, tens of µs).
    #[default]
    Precise,
    /// Tokio's timer, which fires on whole milliseconds: the requests due
    /// within one leave together, up to a millisecond late, in bursts.
    Timer,
}

impl Pacing {
    pub fn name(self) -> &'static str {
        match self {
            Pacing::Precise => "precise",
            Pacing::Timer => "timer",
        }
    }
}

/// When each request of an open-loop run is due: evenly spaced from its start.
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    start_unix_ms: u64,
    interval: Duration,
}

impl Schedule {
    fn starting_now(rate_per_second: f64) -> Schedule {
        Schedule {
            start: Instant::now(),
            start_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            interval: Duration::from_secs_f64(1.0 / rate_per_second.max(0.001)),
        }
    }

    fn due(&self, n: u64) -> Instant {
        self.start + self.interval.mul_f64(n as f64)
    }

    fn due_unix_ms(&self, n: u64) -> u64 {
        self.start_unix_ms + self.interval.mul_f64(n as f64).as_millis() as u64
    }
}

/// The send side of an open-loop run: when each request is due, and how late
/// each was sent.
struct Pacer<F> {
    request: Arc<F>,
    answers: tokio::sync::mpsc::UnboundedSender<(bool, u64, u64)>,
    in_flight: Arc<AtomicU64>,
    max_in_flight: u64,
    schedule: Schedule,
    dropped: u64,
    sent_late_us: Histogram<u64>,
    timeline: Timeline,
}

impl<F, Fut> Pacer<F>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    fn new(
        spec: &LoadSpec,
        request: Arc<F>,
        answers: tokio::sync::mpsc::UnboundedSender<(bool, u64, u64)>,
    ) -> anyhow::Result<Pacer<F>> {
        Ok(Pacer {
            request,
            answers,
            in_flight: Arc::new(AtomicU64::new(0)),
            max_in_flight: spec.max_in_flight,
            schedule: Schedule::starting_now(spec.rate_per_second),
            dropped: 0,
            sent_late_us: Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?,
            timeline: Timeline::default(),
        })
    }

    /// Sends request `n` now, unless too many are in flight (dropped).
    fn send(&mut self, n: u64) {
        let scheduled = self.schedule.due(n);
        let late = scheduled.elapsed().as_micros() as u64;
        self.sent_late_us.saturating_record(late.max(1));
        self.timeline.sent(self.schedule.due_unix_ms(n), late);
        if self.in_flight.load(Ordering::Acquire) >= self.max_in_flight {
            self.dropped += 1;
            return;
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let (request, answers) = (self.request.clone(), self.answers.clone());
        let in_flight = self.in_flight.clone();
        tokio::spawn(async move {
            let ok = request(n).await;
            let micros = scheduled.elapsed().as_micros() as u64;
            in_flight.fetch_sub(1, Ordering::AcqRel);
            let _ = answers.send((ok, micros, n));
        });
    }
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

    /// Either way of pacing sends every request once, on its own schedule.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_pacing_sends_every_request() {
        for pacing in [Pacing::Precise, Pacing::Timer] {
            let spec = LoadSpec {
                rate_per_second: 1000.0,
                duration: Duration::from_millis(200),
                max_in_flight: 1000,
                pacing,
            };
            let seen = Arc::new(AtomicU64::new(0));
            let counted = seen.clone();
            let result = run(&spec, move |n| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::Relaxed);
                    n % 50 != 0
                }
            })
            .await
            .unwrap();
            assert_eq!(seen.load(Ordering::Relaxed), 200, "{pacing:?}");
            assert_eq!((result.ok, result.errors, result.dropped), (196, 4, 0));
            assert_eq!(result.sent_late_us.map(|h| h.len()), Some(200));
            let windows = result.timeline.map(|t| t.points()).unwrap_or_default();
            assert_eq!(windows.iter().map(|w| w.ok + w.errors).sum::<u64>(), 200);
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
