//! The runs of one rate over time: each target's slowest request per window
//! as a step line, and the generator's own lateness in grey beneath, so a
//! spike on every line at once reads as the machine's and a spike on one
//! target's line alone as that target's.

use super::{escape, Axes, Run, COLOURS, H, PAD, W};
use crate::timeline::WINDOW_MS;
use std::collections::BTreeMap;
use std::fmt::Write;

const LATE_COLOUR: &str = "#aaa";

pub(super) fn time_plot(runs: &[&Run]) -> String {
    let Some(span) = Span::of(runs) else {
        return String::new();
    };
    let axes = Axes::fitting(runs);
    let mut svg = format!(
        "<p>Over time: each target's slowest request per {WINDOW_MS} ms window, by when it was due; grey, how late the generator sent.</p>\
         <svg width=\"{W}\" height=\"{H}\" xmlns=\"http://www.w3.org/2000/svg\">{}{}",
        axes.decades(),
        span.ticks(&axes)
    );
    let mut late: BTreeMap<u64, u64> = BTreeMap::new();
    for (i, run) in runs.iter().enumerate() {
        for point in &run.timeline {
            let slot = late.entry(point.start_unix_ms).or_default();
            *slot = (*slot).max(point.sent_late_max_us);
        }
        let answered = run.timeline.iter().filter(|p| p.ok > 0);
        let steps = answered.map(|p| (p.start_unix_ms, p.max_us));
        svg.push_str(&span.steps(&axes, steps, COLOURS[i % COLOURS.len()], 1.5));
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{}\" font-size=\"12\">{}</text>",
            PAD + 150.0 * i as f64,
            H - 8.0,
            COLOURS[i % COLOURS.len()],
            escape(&run.target)
        );
    }
    svg.push_str(&span.steps(&axes, late.into_iter(), LATE_COLOUR, 1.0));
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{LATE_COLOUR}\" font-size=\"12\">generator late</text></svg>",
        PAD + 150.0 * runs.len() as f64,
        H - 8.0
    );
    svg
}

/// The time the runs covered, Unix ms.
struct Span {
    first: u64,
    end: u64,
}

impl Span {
    fn of(runs: &[&Run]) -> Option<Span> {
        let starts = || {
            runs.iter()
                .flat_map(|r| r.timeline.iter().map(|p| p.start_unix_ms))
        };
        Some(Span {
            first: starts().min()?,
            end: starts().max()? + WINDOW_MS,
        })
    }

    fn x(&self, unix_ms: u64) -> f64 {
        let share = unix_ms.saturating_sub(self.first) as f64 / (self.end - self.first) as f64;
        PAD + share * (W - 2.0 * PAD)
    }

    /// A label every few seconds along the bottom.
    fn ticks(&self, axes: &Axes) -> String {
        let seconds = (self.end - self.first) / 1000;
        let step = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600]
            .into_iter()
            .find(|step| seconds / step <= 12)
            .unwrap_or(1200);
        let bottom = axes.y(10f64.powf(axes.low_decade) as u64);
        let mut ticks = String::new();
        for second in (0..=seconds).step_by(step as usize) {
            let x = self.x(self.first + second * 1000);
            let _ = write!(ticks, "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{second} s</text>", PAD / 2.0, bottom + 14.0);
        }
        ticks
    }

    /// A step line through `(window start, µs)`, broken where windows are
    /// missing (another target's slice), clamped to the plot's decades.
    fn steps(
        &self,
        axes: &Axes,
        points: impl Iterator<Item = (u64, u64)>,
        colour: &str,
        width: f64,
    ) -> String {
        let (low, high) = (
            10f64.powf(axes.low_decade) as u64,
            10f64.powf(axes.high_decade) as u64,
        );
        let mut lines = String::new();
        let mut line: Vec<String> = Vec::new();
        let mut next = None;
        let mut flush = |line: &mut Vec<String>| {
            if !line.is_empty() {
                let _ = write!(lines, "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"{width}\" points=\"{}\"/>", line.join(" "));
                line.clear();
            }
        };
        for (start, us) in points {
            if next != Some(start) {
                flush(&mut line);
            }
            let y = axes.y(us.clamp(low, high));
            line.push(format!("{:.1},{y:.1}", self.x(start)));
            line.push(format!("{:.1},{y:.1}", self.x(start + WINDOW_MS)));
            next = Some(start + WINDOW_MS);
        }
        flush(&mut line);
        lines
    }
}

/// For the page's test: one window per point given.
#[cfg(test)]
pub(super) fn points(windows: &[(u64, u64)]) -> Vec<crate::timeline::Point> {
    windows
        .iter()
        .map(|&(start_unix_ms, max_us)| crate::timeline::Point {
            start_unix_ms,
            ok: 10,
            errors: 0,
            p99_us: max_us,
            max_us,
            sent_late_max_us: 50,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_between_slices_breaks_the_line() {
        let run = |target: &str, windows: &[(u64, u64)]| Run {
            timeline: points(windows),
            ..crate::report::tests::run(target, 1000.0, 500, 0)
        };
        let a = run("a", &[(0, 300), (100, 20_000), (400, 300)]);
        let b = run("b", &[(200, 400), (300, 400)]);
        let svg = time_plot(&[&a, &b]);
        // a: two pieces (0–200, 400–500); b: one; the generator: one, 0–500.
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains(">generator late<") && svg.contains(">b<"));
        assert_eq!(
            time_plot(&[&Run {
                timeline: Vec::new(),
                ..a
            }]),
            ""
        );
    }
}
