//! Latency over time: an open-loop run cut into windows by when each request
//! was due. A stall shows as one window's spike at a moment; the same moment
//! on the generator's own lateness says it was the machine's, and a spike on
//! one target's windows alone says it was that target's.

use serde::Serialize;
use std::collections::BTreeMap;

/// Window length. Long enough for a p99 of its own at a few thousand
/// requests a second, short enough that a 20 ms stall stands out.
pub const WINDOW_MS: u64 = 100;

#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// Keyed by the window's start, Unix ms.
    windows: BTreeMap<u64, Window>,
}

#[derive(Clone, Debug, Default)]
struct Window {
    /// Latencies of requests answered well, µs.
    latencies_us: Vec<u32>,
    errors: u64,
    sent_late_max_us: u64,
}

/// One window as reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Point {
    pub start_unix_ms: u64,
    /// Answered well.
    pub ok: u64,
    pub errors: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// How late the generator sent its latest request of the window.
    pub sent_late_max_us: u64,
}

impl Timeline {
    fn at(&mut self, due_unix_ms: u64) -> &mut Window {
        let start = due_unix_ms - due_unix_ms % WINDOW_MS;
        self.windows.entry(start).or_default()
    }

    /// A request left `late_us` behind its schedule.
    pub fn sent(&mut self, due_unix_ms: u64, late_us: u64) {
        let window = self.at(due_unix_ms);
        window.sent_late_max_us = window.sent_late_max_us.max(late_us);
    }

    /// A request was answered: well, after `latency_us`, or not (`None`).
    pub fn answered(&mut self, due_unix_ms: u64, latency_us: Option<u64>) {
        let window = self.at(due_unix_ms);
        match latency_us {
            Some(us) => window
                .latencies_us
                .push(u32::try_from(us).unwrap_or(u32::MAX)),
            None => window.errors += 1,
        }
    }

    /// Adds another slice's windows (slices of one target never overlap in
    /// time, but a shared window at a slice's edge is merged).
    pub fn absorb(&mut self, other: &Timeline) {
        for (start, theirs) in &other.windows {
            let mine = self.windows.entry(*start).or_default();
            mine.latencies_us.extend_from_slice(&theirs.latencies_us);
            mine.errors += theirs.errors;
            mine.sent_late_max_us = mine.sent_late_max_us.max(theirs.sent_late_max_us);
        }
    }

    /// Every window, oldest first.
    pub fn points(&self) -> Vec<Point> {
        self.windows
            .iter()
            .map(|(&start_unix_ms, window)| {
                let mut sorted = window.latencies_us.clone();
                sorted.sort_unstable();
                // Nearest rank, as HdrHistogram reports a quantile.
                let rank = (sorted.len() as f64 * 0.99).ceil() as usize;
                let p99 = sorted.get(rank.saturating_sub(1)).copied().unwrap_or(0);
                Point {
                    start_unix_ms,
                    ok: sorted.len() as u64,
                    errors: window.errors,
                    p99_us: u64::from(p99),
                    max_us: u64::from(sorted.last().copied().unwrap_or(0)),
                    sent_late_max_us: window.sent_late_max_us,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_fall_in_the_window_they_were_due_in() {
        let mut timeline = Timeline::default();
        for i in 0..100u64 {
            // 1,000 ms to 1,099 ms: one window; the 100th request is the slow one.
            timeline.answered(1_000 + i, Some(if i == 99 { 20_000 } else { 500 + i }));
            timeline.sent(1_000 + i, i);
        }
        timeline.answered(1_100, None);
        timeline.sent(1_150, 7_000);
        let points = timeline.points();
        assert_eq!(points.len(), 2);
        assert_eq!(
            points[0],
            Point {
                start_unix_ms: 1_000,
                ok: 100,
                errors: 0,
                p99_us: 598,
                max_us: 20_000,
                sent_late_max_us: 99,
            }
        );
        assert_eq!(
            (points[1].start_unix_ms, points[1].ok, points[1].errors),
            (1_100, 0, 1)
        );
        assert_eq!((points[1].max_us, points[1].sent_late_max_us), (0, 7_000));
    }

    #[test]
    fn slices_merge_into_one_timeline() {
        let (mut first, mut second) = (Timeline::default(), Timeline::default());
        first.answered(1_050, Some(100));
        second.answered(1_099, Some(300));
        second.answered(5_000, Some(200));
        second.sent(1_099, 40);
        first.absorb(&second);
        let points = first.points();
        assert_eq!(points.len(), 2, "the shared window is one");
        assert_eq!((points[0].ok, points[0].max_us), (2, 300));
        assert_eq!(points[0].sent_late_max_us, 40);
        assert_eq!(points[1].start_unix_ms, 5_000);
    }
}
