//! How long a request waited on backends: queued for a slot or running an
//! attempt. A front door hands a [`BackendClock`] to the job it submits and
//! subtracts what the clock read from its own time, which leaves the
//! gateway's overhead (`gpubridge_overhead_seconds`).

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Shared between the request that submitted a job and the job's runner.
#[derive(Clone, Debug, Default)]
pub struct BackendClock(Arc<Mutex<Reading>>);

#[derive(Debug, Default)]
struct Reading {
    spent: Duration,
    /// When the span running now began.
    since: Option<Instant>,
}

impl BackendClock {
    /// Time on backends so far, the span running now included.
    pub fn spent(&self) -> Duration {
        let reading = self.0.lock();
        reading.spent
            + reading
                .since
                .map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Counts from now until the returned guard is dropped: around an
    /// attempt, or around a request's wait on a job another request started
    /// and clocks (an idempotent replay), which is time on backends too, not
    /// the gateway's. A guard held across the wait, rather than a wrapper
    /// future: an async wrapper keeps its inner future twice (as argument and
    /// as awaited), and every request's future grows and is copied by that.
    pub fn span(&self) -> Span<'_> {
        self.0.lock().since = Some(Instant::now());
        Span(self)
    }
}

/// Time on backends (an attempt, or a replay's wait); stops counting when dropped.
pub struct Span<'a>(&'a BackendClock);

impl Drop for Span<'_> {
    fn drop(&mut self) {
        let mut reading = self.0 .0.lock();
        if let Some(since) = reading.since.take() {
            reading.spent += since.elapsed();
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // plain test threads, no runtime to block
mod tests {
    use super::*;

    #[test]
    fn counts_only_inside_spans() {
        let clock = BackendClock::default();
        assert_eq!(clock.spent(), Duration::ZERO);
        {
            let _span = clock.span();
            std::thread::sleep(Duration::from_millis(5));
            assert!(
                clock.spent() >= Duration::from_millis(5),
                "a running span counts"
            );
        }
        let after_first = clock.spent();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.spent(), after_first, "nothing counts between spans");
        {
            let _span = clock.span();
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(clock.spent() >= after_first + Duration::from_millis(2));
    }

    #[test]
    fn clones_share_one_reading() {
        let clock = BackendClock::default();
        let runner_side = clock.clone();
        drop(runner_side.span());
        let _span = runner_side.span();
        std::thread::sleep(Duration::from_millis(1));
        assert!(clock.spent() > Duration::ZERO);
    }
}
