//! The report as a terminal table, as JSON, and as a chart.

use super::report::{advise, Advice, Dim, Report, ReportOptions, BUCKETS};
use super::AnalysisError;
use serde::Serialize;
use std::fmt::Write;

/// A split-brain episode, from the pipelines' `tidemark_split_brain` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Episode {
    /// First sample with the split on, epoch ms.
    pub start_ms: u64,
    /// Last sample with it on, epoch ms.
    pub end_ms: u64,
}

/// The report with what is derived from it: the advice, and each burst's split episode.
#[derive(Debug, Clone, Serialize)]
pub struct Rendered<'a> {
    /// The settings it was computed with.
    pub options: &'a ReportOptions,
    /// The report.
    #[serde(flatten)]
    pub report: &'a Report,
    /// Advisor rows.
    pub advice: Vec<Advice>,
    /// Split-brain episodes, when they were asked for.
    pub episodes: Option<Vec<Episode>>,
    /// For each region's bursts (same order as `bursts`), the episode it falls in.
    pub burst_episodes: std::collections::BTreeMap<String, Vec<Option<Episode>>>,
}

/// A burst belongs to an episode when the span from its earliest event time to its last
/// arrival overlaps the episode: its events were produced while the link was down, or they
/// arrived as it came back.
pub fn episode_of(
    b: &super::report::Burst,
    episodes: &[Episode],
    slack_ms: u64,
) -> Option<Episode> {
    episodes
        .iter()
        .copied()
        .find(|e| b.event_start_ms <= e.end_ms + slack_ms && e.start_ms <= b.end_ms + slack_ms)
}

impl<'a> Rendered<'a> {
    /// Derives the advice and matches bursts to `episodes`.
    pub fn new(
        report: &'a Report,
        options: &'a ReportOptions,
        episodes: Option<Vec<Episode>>,
    ) -> Rendered<'a> {
        let burst_episodes = report
            .bursts
            .iter()
            .map(|(region, bs)| {
                let matched = bs
                    .iter()
                    .map(|b| episode_of(b, episodes.as_deref().unwrap_or(&[]), 5_000))
                    .collect();
                (region.clone(), matched)
            })
            .collect();
        Rendered {
            options,
            report,
            advice: advise(report, options),
            episodes,
            burst_episodes,
        }
    }

    /// The JSON document.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The terminal table.
    pub fn table(&self) -> String {
        let r = self.report;
        let mut s = String::new();
        let unreadable: u64 = r.unreadable.values().sum();
        let _ = writeln!(
            s,
            "late events: {}   unreadable records: {}",
            r.events, unreadable
        );
        for (reason, n) in &r.unreadable {
            let _ = writeln!(s, "  unreadable: {reason}: {n}");
        }
        for dim in Dim::ALL {
            let Some(rows) = r.summaries.get(&dim) else {
                continue;
            };
            let _ = writeln!(
                s,
                "\n{:<44} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                dim.title(),
                "events",
                "p50",
                "p90",
                "p99",
                "p99.9",
                "max"
            );
            for (value, x) in rows {
                let label = if value.is_empty() { "-" } else { value };
                let _ = writeln!(
                    s,
                    "{:<44} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    label, x.count, x.p50, x.p90, x.p99, x.p999, x.max
                );
            }
        }
        let _ = writeln!(
            s,
            "\nlate bursts (arrivals with no pause over {} s, at least {} events)",
            self.options.burst_gap_s, self.options.min_burst
        );
        let _ = writeln!(
            s,
            "{:<12} {:<24} {:>7} {:>8}  {:<24} {:>6}  split brain",
            "region", "arrived from", "for s", "events", "event times from", "for s"
        );
        for (region, bs) in &r.bursts {
            for (i, b) in bs.iter().enumerate() {
                let episode = self
                    .burst_episodes
                    .get(region)
                    .and_then(|e| e.get(i).copied().flatten());
                let split = match (&self.episodes, episode) {
                    (None, _) => "(no metrics given)".to_string(),
                    (Some(_), None) => "none".to_string(),
                    (Some(_), Some(e)) => format!(
                        "{} for {} s",
                        clock(e.start_ms),
                        (e.end_ms - e.start_ms).div_ceil(1000)
                    ),
                };
                let _ = writeln!(
                    s,
                    "{:<12} {:<24} {:>7} {:>8}  {:<24} {:>6}  {}",
                    region,
                    clock(b.start_ms),
                    (b.end_ms - b.start_ms) / 1000,
                    b.count,
                    clock(b.event_start_ms),
                    (b.event_end_ms - b.event_start_ms) / 1000,
                    split
                );
            }
        }
        let _ = writeln!(
            s,
            "\nwatermark advisor (now: max_out_of_orderness {} ms, max_split_hold {} ms; {}% headroom)",
            self.options.max_out_of_orderness_ms,
            self.options.max_split_hold_ms,
            self.options.headroom_percent
        );
        let _ = writeln!(
            s,
            "{:<8} {:>22} {:>16} {:>18} {:>22}",
            "on time",
            "max_out_of_orderness",
            "extra latency",
            "max_split_hold",
            "extra during a split"
        );
        let ms = |v: Option<u64>| v.map_or("no change".to_string(), |v| format!("{v} ms"));
        for a in &self.advice {
            let _ = writeln!(
                s,
                "{:<8} {:>22} {:>16} {:>18} {:>22}",
                a.keep,
                ms(a.max_out_of_orderness_ms),
                format!("+{} ms", a.out_of_orderness_latency_ms),
                ms(a.max_split_hold_ms),
                format!("up to {} ms", a.split_hold_latency_ms)
            );
        }
        s
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn clock(ms: u64) -> String {
    let hour = super::report::hour(ms);
    let secs = ms / 1000;
    format!("{}:{:02}:{:02}", &hour[..13], secs / 60 % 60, secs % 60)
}

/// Split-brain episodes by the region whose link was down.
pub type EpisodesByRegion = std::collections::BTreeMap<String, Vec<Episode>>;

/// Draws the lateness histogram per region (top) and the bursts on a timeline (bottom), with
/// the split-brain episodes behind them when they are known.
pub fn plot(
    report: &Report,
    episodes: Option<&EpisodesByRegion>,
    path: &std::path::Path,
) -> Result<(), AnalysisError> {
    use plotters::prelude::*;
    let chart_err = |e: &dyn std::fmt::Display| AnalysisError::Chart(e.to_string());
    crate::tools::chart::register_font().map_err(|e| chart_err(&e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| AnalysisError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let svg = path.extension().is_some_and(|e| e == "svg");
    let size = (1100, 760);
    if svg {
        let root = SVGBackend::new(path, size).into_drawing_area();
        draw(&root, report, episodes).map_err(|e| chart_err(&e))?;
        root.present().map_err(|e| chart_err(&e))
    } else {
        let root = BitMapBackend::new(path, size).into_drawing_area();
        draw(&root, report, episodes).map_err(|e| chart_err(&e))?;
        root.present().map_err(|e| chart_err(&e))
    }
}

type DrawResult<DB> = Result<
    (),
    plotters::drawing::DrawingAreaErrorKind<<DB as plotters::prelude::DrawingBackend>::ErrorType>,
>;

/// Region colours, in the order regions are listed.
const PALETTE: [plotters::style::RGBColor; 4] = [
    plotters::style::RGBColor(31, 119, 180),
    plotters::style::RGBColor(255, 127, 14),
    plotters::style::RGBColor(44, 160, 44),
    plotters::style::RGBColor(214, 39, 40),
];

fn draw<DB: plotters::prelude::DrawingBackend>(
    root: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    report: &Report,
    episodes: Option<&EpisodesByRegion>,
) -> DrawResult<DB> {
    use plotters::prelude::*;
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(430);
    let regions: Vec<&String> = report
        .histogram
        .keys()
        .chain(report.bursts.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    draw_histogram(&top, report, &regions)?;
    draw_timeline(&bottom, report, episodes, &regions)
}

/// The colour of `region` among `regions`.
fn color(regions: &[&String], region: &String) -> plotters::style::RGBColor {
    PALETTE[regions.iter().position(|x| *x == region).unwrap_or(0) % PALETTE.len()]
}

/// One group of bars per lateness bucket, one bar per region.
fn draw_histogram<DB: plotters::prelude::DrawingBackend>(
    top: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    report: &Report,
    regions: &[&String],
) -> DrawResult<DB> {
    use plotters::prelude::*;
    let most = report
        .histogram
        .values()
        .flat_map(|h| h.values())
        .copied()
        .max()
        .unwrap_or(1);
    let mut chart = ChartBuilder::on(top)
        .caption(
            format!("late events by lateness ({} late in all)", report.events),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0f64..BUCKETS.len() as f64,
            0f64..(most as f64 * 1.15).max(1.0),
        )?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        // Labels every half unit, and only the ones in the middle of a bucket are written.
        .x_labels(BUCKETS.len() * 2 + 1)
        .x_label_formatter(&|x| {
            if (x.fract() - 0.5).abs() > 0.01 {
                return String::new();
            }
            BUCKETS
                .get(x.floor() as usize)
                .map(|b| {
                    if *b >= 1000 {
                        format!("≤{}s", b / 1000)
                    } else {
                        format!("≤{b}ms")
                    }
                })
                .unwrap_or_default()
        })
        .y_desc("events")
        .draw()?;
    let width = 0.8 / regions.len().max(1) as f64;
    for (k, region) in regions.iter().enumerate() {
        let Some(h) = report.histogram.get(*region) else {
            continue;
        };
        let c = color(regions, region);
        chart
            .draw_series(h.iter().filter_map(|(b, n)| {
                let i = BUCKETS.iter().position(|x| x == b)? as f64;
                let x0 = i + 0.1 + k as f64 * width;
                Some(Rectangle::new(
                    [(x0, 0.0), (x0 + width, *n as f64)],
                    c.filled(),
                ))
            }))?
            .label(region.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    Ok(())
}

/// Each burst as a bar from its first to its last arrival, one row per region, over the
/// episodes when its replication link was down.
fn draw_timeline<DB: plotters::prelude::DrawingBackend>(
    bottom: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    report: &Report,
    episodes: Option<&EpisodesByRegion>,
    regions: &[&String],
) -> DrawResult<DB> {
    use plotters::prelude::*;
    let all: Vec<_> = report
        .bursts
        .iter()
        .flat_map(|(r, bs)| bs.iter().map(move |b| (r, b)))
        .collect();
    let t0 = all
        .iter()
        .map(|(_, b)| b.event_start_ms.min(b.start_ms))
        .min()
        .unwrap_or(0);
    let t1 = all
        .iter()
        .map(|(_, b)| b.end_ms)
        .max()
        .unwrap_or(t0 + 1000)
        .max(t0 + 1000);
    let span = (t1 - t0) as f64 / 1000.0;
    let mut chart = ChartBuilder::on(bottom)
        .caption(
            format!(
                "late bursts since {} UTC: arrivals (solid), event times (pale), link down (grey)",
                clock(t0)
            ),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(110)
        .build_cartesian_2d(0f64..span * 1.05, 0f64..regions.len().max(1) as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(regions.len().max(1) * 2 + 1)
        .y_label_formatter(&|y| {
            if (y.fract() - 0.5).abs() > 0.01 {
                return String::new();
            }
            regions
                .get(y.floor() as usize)
                .map(|r| r.to_string())
                .unwrap_or_default()
        })
        .x_desc("seconds")
        .draw()?;
    let secs = |ms: u64| ms.saturating_sub(t0) as f64 / 1000.0;
    for (region, list) in episodes.into_iter().flatten() {
        let Some(row) = regions.iter().position(|x| *x == region) else {
            continue;
        };
        let row = row as f64;
        chart.draw_series(list.iter().filter(|e| e.end_ms >= t0).map(|e| {
            Rectangle::new(
                [
                    (secs(e.start_ms), row + 0.02),
                    (secs(e.end_ms.min(t1)), row + 0.98),
                ],
                RGBColor(200, 200, 200).mix(0.5).filled(),
            )
        }))?;
    }
    for (region, b) in &all {
        let row = regions.iter().position(|x| x == region).unwrap_or(0) as f64;
        let c = color(regions, region);
        chart.draw_series([
            Rectangle::new(
                [
                    (secs(b.event_start_ms), row + 0.55),
                    (secs(b.event_end_ms), row + 0.85),
                ],
                c.mix(0.3).filled(),
            ),
            Rectangle::new(
                [(secs(b.start_ms), row + 0.15), (secs(b.end_ms), row + 0.5)],
                c.filled(),
            ),
        ])?;
        chart.draw_series([Text::new(
            format!("{} events", b.count),
            (secs(b.event_start_ms.min(b.start_ms)), row + 0.97),
            ("sans-serif", 14),
        )])?;
    }
    Ok(())
}
