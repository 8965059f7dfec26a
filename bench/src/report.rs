//! What a `--target` sweep measured, as JSON for automation and as one
//! self-contained HTML page (inline SVG, no scripts) with each run's latency by
//! percentile, HdrHistogram style: the tail stretched out to the right.

use crate::failures::Failure;
use crate::load::{LoadResult, Pacing};
use crate::targets::{Shape, Sweep, Target};
use crate::timeline::{Point, Timeline};
use serde::Serialize;
use std::fmt::Write;
use timeplot::time_plot;

mod timeplot;

/// Percentiles kept per run: the plot's points and the table's columns.
const QUANTILES: [f64; 13] = [
    0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999, 1.0,
];

#[derive(Serialize)]
pub struct Report {
    pub machine: Machine,
    pub seconds: u64,
    /// Slices each run's seconds were taken in, in turn with the other targets'.
    pub rounds: u32,
    /// Each target driven this long before the runs, unrecorded.
    pub warmup_seconds: f64,
    /// How the open-loop schedule was kept.
    pub pacing: Pacing,
    pub model: String,
    pub baselines: Vec<String>,
    pub targets: Vec<TargetView>,
    pub runs: Vec<Run>,
    pub frontiers: Vec<Frontier>,
}

#[derive(Serialize)]
pub struct Machine {
    pub cores: usize,
}

#[derive(Serialize)]
pub struct TargetView {
    pub name: String,
    pub shape: Shape,
    pub url: String,
}

#[derive(Serialize)]
pub struct Run {
    pub target: String,
    pub rate: f64,
    pub ok: u64,
    pub errors: u64,
    pub dropped: u64,
    pub achieved_per_second: f64,
    /// `(quantile, µs)`, from the scheduled send time.
    pub percentiles: Vec<(f64, u64)>,
    /// Answers that were not the shape's success, by status.
    pub failures: Vec<Failure>,
    /// How late the generator sent, behind its schedule (p99.9 and max, µs):
    /// large values say the machine stalled during the run.
    pub sent_late_p999_us: Option<u64>,
    pub sent_late_max_us: Option<u64>,
    /// The slowest request answered well and when it was due (Unix ms), to
    /// find the moment in the target's own logs.
    pub slowest_us: Option<u64>,
    pub slowest_due_unix_ms: Option<u64>,
    /// The run window by window ([`crate::timeline::WINDOW_MS`]), by when
    /// requests were due: where in time its tail fell.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<Point>,
}

/// The highest rate at which a target's p99 stayed under each bound, with
/// nothing failed or dropped; `None` where no rate did.
#[derive(Serialize)]
pub struct Frontier {
    pub target: String,
    pub p99_bound_ms: Vec<(f64, Option<f64>)>,
}

impl Report {
    pub fn new(sweep: &Sweep) -> Report {
        Report {
            machine: Machine {
                cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            },
            seconds: sweep.seconds,
            rounds: sweep.rounds,
            warmup_seconds: sweep.warmup.as_secs_f64(),
            pacing: sweep.pacing,
            model: sweep.model.clone(),
            baselines: sweep.baselines.clone(),
            targets: sweep.targets.iter().map(TargetView::of).collect(),
            runs: Vec::new(),
            frontiers: Vec::new(),
        }
    }

    /// The run `run` is compared with: a baseline's at the same rate, the
    /// first that streams as `run`'s target does (else the first); never itself.
    pub fn baseline_for(&self, run: &Run) -> Option<&Run> {
        let streams = |name: &str| {
            self.targets
                .iter()
                .find(|t| t.name == name)
                .is_some_and(|t| t.shape.streams())
        };
        let alike = self
            .baselines
            .iter()
            .find(|b| streams(b) == streams(&run.target));
        let baseline = alike.or(self.baselines.first())?;
        self.runs
            .iter()
            .find(|r| &r.target == baseline && r.rate == run.rate && r.target != run.target)
    }
}

impl TargetView {
    fn of(target: &Target) -> TargetView {
        TargetView {
            name: target.name.clone(),
            shape: target.shape,
            url: target.url.clone(),
        }
    }
}

impl Run {
    pub fn of(target: &Target, rate: f64, result: &LoadResult, failures: Vec<Failure>) -> Run {
        let h = &result.latency_us;
        Run {
            target: target.name.clone(),
            rate,
            ok: result.ok,
            errors: result.errors,
            dropped: result.dropped,
            achieved_per_second: result.ok as f64 / result.elapsed.as_secs_f64().max(1e-9),
            percentiles: QUANTILES
                .iter()
                .map(|&q| {
                    (
                        q,
                        if h.is_empty() {
                            0
                        } else {
                            h.value_at_quantile(q)
                        },
                    )
                })
                .collect(),
            failures,
            sent_late_p999_us: result
                .sent_late_us
                .as_ref()
                .map(|h| h.value_at_quantile(0.999)),
            sent_late_max_us: result.sent_late_us.as_ref().map(|h| h.max()),
            slowest_us: result.slowest.map(|s| s.latency_us),
            slowest_due_unix_ms: result.slowest.map(|s| s.due_unix_ms),
            timeline: result
                .timeline
                .as_ref()
                .map_or_else(Vec::new, Timeline::points),
        }
    }

    /// Latency at quantile `q` (one of [`QUANTILES`]), µs.
    pub fn at(&self, q: f64) -> u64 {
        self.percentiles
            .iter()
            .find(|(k, _)| *k == q)
            .map_or(0, |(_, us)| *us)
    }

    /// ok, errors, dropped, p50, p99, p99.9, and p50 and p99 added over `base`.
    pub fn columns(&self, base: Option<&Run>) -> [String; 8] {
        // Percentiles of nothing answered well would read as zeros.
        let measured = |q: f64| match self.ok {
            0 => "—".to_string(),
            _ => self.at(q).to_string(),
        };
        let added = |q: f64| match (base, self.ok) {
            (Some(b), 1..) if b.ok > 0 => format!("{:+}", self.at(q) as i64 - b.at(q) as i64),
            _ => "—".into(),
        };
        [
            self.ok.to_string(),
            self.errors.to_string(),
            self.dropped.to_string(),
            measured(0.5),
            measured(0.99),
            measured(0.999),
            added(0.5),
            added(0.99),
        ]
    }

    /// p99 within `bound_ms` with every request answered well.
    pub fn within(&self, bound_ms: f64) -> bool {
        self.ok > 0
            && self.errors == 0
            && self.dropped == 0
            && (self.at(0.99) as f64) <= bound_ms * 1000.0
    }
}

impl Frontier {
    pub fn of(target: &str, runs: &[Run], bounds_ms: &[f64]) -> Frontier {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.target == target).collect();
        let best = |bound: f64| {
            mine.iter()
                .filter(|r| r.within(bound))
                .map(|r| r.rate)
                .fold(None, |best: Option<f64>, rate| {
                    Some(best.map_or(rate, |b| b.max(rate)))
                })
        };
        Frontier {
            target: target.to_string(),
            p99_bound_ms: bounds_ms.iter().map(|&b| (b, best(b))).collect(),
        }
    }
}

/// The page: the frontier table, every run's percentiles, and one plot per rate.
pub fn html(report: &Report) -> String {
    let mut page = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>gpubridge-bench</title>\
         <style>body{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}\
         table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
         th:first-child,td:first-child{text-align:left}svg{background:#fff;border:1px solid #ddd}</style></head><body>",
    );
    let _ = write!(
        page,
        "<h1>Latency by percentile</h1><p>Open loop, {} s per run in {} slice(s) taken in turn with the other targets, after {} s of unrecorded warm-up per target, {} cores, latency from the scheduled send time ({} pacing).</p>",
        report.seconds, report.rounds, report.warmup_seconds, report.machine.cores, report.pacing.name()
    );
    page.push_str(&frontier_table(report));
    page.push_str(&runs_table(report));
    let mut rates: Vec<f64> = report.runs.iter().map(|r| r.rate).collect();
    rates.dedup();
    for rate in rates {
        let runs: Vec<&Run> = report.runs.iter().filter(|r| r.rate == rate).collect();
        let _ = write!(
            page,
            "<h2>{rate} req/s</h2>{}{}",
            plot(&runs),
            time_plot(&runs)
        );
    }
    page.push_str("</body></html>\n");
    page
}

fn frontier_table(report: &Report) -> String {
    let mut table = String::from("<h2>Rate frontier</h2><table><tr><th>target</th>");
    let bounds = report
        .frontiers
        .first()
        .map_or(&[][..], |f| &f.p99_bound_ms[..]);
    for (bound, _) in bounds {
        let _ = write!(table, "<th>p99 ≤ {bound} ms</th>");
    }
    table.push_str("</tr>");
    for frontier in &report.frontiers {
        let _ = write!(table, "<tr><td>{}</td>", escape(&frontier.target));
        for (_, rate) in &frontier.p99_bound_ms {
            let cell = rate.map_or("—".into(), |r| format!("{r} req/s"));
            let _ = write!(table, "<td>{cell}</td>");
        }
        table.push_str("</tr>");
    }
    table.push_str("</table>");
    table
}

fn runs_table(report: &Report) -> String {
    let mut table = String::from(
        "<h2>Runs</h2><table><tr><th>target</th><th>rate</th><th>ok</th><th>errors</th>\
         <th>dropped</th><th>p50 µs</th><th>p99 µs</th><th>p99.9 µs</th><th>added p50</th><th>added p99</th>\
         <th>sent late, max µs</th></tr>",
    );
    for run in &report.runs {
        let _ = write!(
            table,
            "<tr><td>{}</td><td>{}</td>",
            escape(&run.target),
            run.rate
        );
        for cell in run.columns(report.baseline_for(run)) {
            let _ = write!(table, "<td>{cell}</td>");
        }
        let late = run.sent_late_max_us.map_or("—".into(), |us| us.to_string());
        let _ = write!(table, "<td>{late}</td></tr>");
    }
    table.push_str("</table>");
    table
}

/// Latency (log scale) against percentile, where x is 1/(1−q) on a log
/// scale: 90%, 99%, 99.9%… are evenly spaced, as in HdrHistogram's plots.
fn plot(runs: &[&Run]) -> String {
    let axes = Axes::fitting(runs);
    let mut svg = format!(
        "<svg width=\"{W}\" height=\"{H}\" xmlns=\"http://www.w3.org/2000/svg\">{}",
        axes.grid()
    );
    for (i, run) in runs.iter().enumerate() {
        svg.push_str(&axes.curve(run, i));
    }
    svg.push_str("</svg>");
    svg
}

const W: f64 = 900.0;
const H: f64 = 380.0;
const PAD: f64 = 50.0;
/// Room under the plot for the percentile labels and the legend.
const FOOT: f64 = 40.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// The plot's scales: whole decades of latency around what was measured.
struct Axes {
    low_decade: f64,
    high_decade: f64,
}

impl Axes {
    fn fitting(runs: &[&Run]) -> Axes {
        let all = || {
            runs.iter()
                .flat_map(|r| r.percentiles.iter().map(|(_, us)| *us))
        };
        let low = all().min().unwrap_or(1).max(1) as f64;
        let high = all().max().unwrap_or(10).max(10) as f64;
        let low_decade = low.log10().floor();
        Axes {
            low_decade,
            high_decade: high.log10().ceil().max(low_decade + 1.0),
        }
    }

    fn x(&self, q: f64) -> f64 {
        PAD + (1.0 / (1.0 - q.min(0.99999))).log10() / 5.0 * (W - 2.0 * PAD)
    }

    fn y(&self, us: u64) -> f64 {
        let share =
            ((us.max(1) as f64).log10() - self.low_decade) / (self.high_decade - self.low_decade);
        H - PAD - FOOT + PAD / 2.0 - share * (H - 1.5 * PAD - FOOT)
    }

    fn grid(&self) -> String {
        let mut grid = String::new();
        let bottom = self.y(10f64.powf(self.low_decade) as u64);
        for (label, q) in [
            ("0%", 0.0),
            ("90%", 0.9),
            ("99%", 0.99),
            ("99.9%", 0.999),
            ("99.99%", 0.9999),
            ("99.999%", 0.99999),
        ] {
            let x = self.x(q);
            let _ = write!(grid, "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" stroke=\"#eee\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{label}</text>", PAD / 2.0, bottom + 14.0);
        }
        grid.push_str(&self.decades());
        grid
    }

    /// A line and a label at each decade of latency.
    fn decades(&self) -> String {
        let mut grid = String::new();
        let mut decade = self.low_decade;
        while decade <= self.high_decade {
            let us = 10f64.powf(decade) as u64;
            let y = self.y(us);
            let _ = write!(grid, "<line x1=\"{PAD}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{:.1}\" y=\"{y:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>", W - PAD, PAD - 4.0, us_label(us));
            decade += 1.0;
        }
        grid
    }

    /// One run's line, and its name in the legend under the plot.
    fn curve(&self, run: &Run, index: usize) -> String {
        let colour = COLOURS[index % COLOURS.len()];
        let points: Vec<String> = run
            .percentiles
            .iter()
            .filter(|(q, _)| *q < 1.0)
            .map(|&(q, us)| format!("{:.1},{:.1}", self.x(q), self.y(us)))
            .collect();
        format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\" font-size=\"12\">{}</text>",
            points.join(" "),
            PAD + 150.0 * index as f64,
            H - 8.0,
            escape(&run.target)
        )
    }
}

fn us_label(us: u64) -> String {
    match us {
        u if u >= 1_000_000 => format!("{} s", u / 1_000_000),
        u if u >= 1_000 => format!("{} ms", u / 1_000),
        u => format!("{u} µs"),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::report) fn run(target: &str, rate: f64, p99_us: u64, errors: u64) -> Run {
        Run {
            target: target.into(),
            rate,
            ok: 100,
            errors,
            dropped: 0,
            achieved_per_second: rate,
            percentiles: QUANTILES
                .iter()
                .map(|&q| (q, if q >= 0.99 { p99_us } else { 100 }))
                .collect(),
            failures: Vec::new(),
            sent_late_p999_us: Some(40),
            sent_late_max_us: Some(900),
            slowest_us: None,
            slowest_due_unix_ms: None,
            timeline: Vec::new(),
        }
    }

    #[test]
    fn the_frontier_is_the_highest_rate_within_each_bound() {
        let runs = vec![
            run("gw", 1000.0, 400, 0),
            run("gw", 2000.0, 900, 0),
            run("gw", 4000.0, 3000, 0),
            run("gw", 8000.0, 4000, 3),
            run("up", 1000.0, 200, 0),
        ];
        let frontier = Frontier::of("gw", &runs, &[1.0, 5.0, 10.0]);
        assert_eq!(
            frontier.p99_bound_ms,
            vec![
                (1.0, Some(2000.0)),
                (5.0, Some(4000.0)),
                (10.0, Some(4000.0))
            ],
            "a run with errors is past the frontier whatever its p99"
        );
        assert_eq!(
            Frontier::of("none", &runs, &[1.0]).p99_bound_ms,
            vec![(1.0, None)]
        );
    }

    #[test]
    fn a_streamed_target_is_compared_with_the_streamed_baseline() {
        let view = |name: &str, shape| TargetView {
            name: name.into(),
            shape,
            url: String::new(),
        };
        let report = Report {
            machine: Machine { cores: 2 },
            seconds: 1,
            rounds: 1,
            warmup_seconds: 0.0,
            pacing: Pacing::Precise,
            model: "m".into(),
            baselines: vec!["direct".into(), "direct-stream".into()],
            targets: vec![
                view("direct", Shape::OpenaiChat),
                view("direct-stream", Shape::OpenaiChatStream),
                view("gw", Shape::Inference),
                view("gw-stream", Shape::OpenaiChatStream),
            ],
            runs: vec![
                run("direct", 1000.0, 200, 0),
                run("direct-stream", 1000.0, 300, 0),
                run("direct", 2000.0, 250, 0),
            ],
            frontiers: Vec::new(),
        };
        let of = |target: &str, rate| {
            report
                .baseline_for(&run(target, rate, 1, 0))
                .map(|r| r.target.clone())
        };
        assert_eq!(of("gw", 1000.0).as_deref(), Some("direct"));
        assert_eq!(of("gw-stream", 1000.0).as_deref(), Some("direct-stream"));
        assert_eq!(of("gw", 4000.0), None, "no baseline run at that rate");
        assert_eq!(of("direct", 1000.0), None, "never against itself");
    }

    #[test]
    fn the_page_is_self_contained_and_escapes_names() {
        let report = Report {
            machine: Machine { cores: 2 },
            seconds: 1,
            rounds: 1,
            warmup_seconds: 0.0,
            pacing: Pacing::Precise,
            model: "m".into(),
            baselines: vec!["up".into()],
            targets: Vec::new(),
            runs: vec![
                run("up", 1000.0, 200, 0),
                Run {
                    timeline: timeplot::points(&[(1_000, 300), (1_100, 9_000)]),
                    ..run("<gw>", 1000.0, 500, 0)
                },
            ],
            frontiers: vec![Frontier::of("<gw>", &[], &[1.0])],
        };
        let page = html(&report);
        assert!(page.contains("<svg") && page.contains("<polyline"));
        assert!(
            !page.contains("<script") && !page.contains("src="),
            "no outside resources"
        );
        assert!(page.contains("&lt;gw&gt;") && !page.contains("<gw>"));
        assert!(page.contains("+300"), "added p99 against the baseline");
        assert!(page.contains("<td>900</td>"), "how late the generator sent");
        assert!(page.contains("Over time") && page.contains(">generator late<"));
    }
}
