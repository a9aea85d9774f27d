//! `tidemark late-report` and `tidemark reconcile`: arguments and the loop around the dataflow.

use super::read::Input;
use super::render::{Episode, Rendered};
use super::report::{self, ChunkFeed, Feed, ReaderFeed, Report, ReportOptions};
use super::AnalysisError;
use crate::component::Millis;
use crate::operators::OperatorConfig;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn millis(s: &str) -> Result<Millis, String> {
    Millis::parse(s)
}

/// Options of `tidemark late-report`.
#[derive(Debug, Clone, clap::Args)]
pub struct LateReportOptions {
    /// Bootstrap servers of the cluster that holds the late topic.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub bootstrap: Option<String>,
    /// The late topic.
    #[arg(long, default_value = "log-events-late")]
    pub topic: String,
    /// Read a JSON-lines file of late records (the file sink's `envelope` format) instead.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Keep reading, and print the updated report every `--interval`.
    #[arg(long)]
    pub follow: bool,
    /// How often `--follow` prints.
    #[arg(long, default_value = "5s", value_parser = millis)]
    pub interval: Millis,
    /// With `--follow`, stop after this long (default: at SIGINT or SIGTERM).
    #[arg(long, value_parser = millis)]
    pub stop_after: Option<Millis>,
    /// `table` or `json` (with `--follow`, one JSON document per line).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Draw the lateness histograms and the bursts to this PNG (or `.svg`) file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Late arrivals further apart than this start a new burst.
    #[arg(long, default_value = "3s", value_parser = millis)]
    pub burst_gap: Millis,
    /// Runs of fewer late events are not reported as bursts.
    #[arg(long, default_value_t = 10)]
    pub min_burst: u64,
    /// Take the current watermark settings from this pipeline file's watermark operator.
    #[arg(long, conflicts_with_all = ["max_out_of_orderness", "max_split_hold"])]
    pub pipeline: Option<PathBuf>,
    /// The pipeline's current `max_out_of_orderness`, for the advisor.
    #[arg(long, default_value = "2s", value_parser = millis)]
    pub max_out_of_orderness: Millis,
    /// The pipeline's current `max_split_hold`, for the advisor.
    #[arg(long, default_value = "0s", value_parser = millis)]
    pub max_split_hold: Millis,
    /// The advisor's margin over what the past would have needed, in percent.
    #[arg(long, default_value_t = 25)]
    pub headroom: u64,
    /// Prometheus (`host:port`) that scraped the pipelines: bursts are matched against the
    /// split-brain episodes of `tidemark_split_brain`.
    #[arg(long)]
    pub prometheus: Option<String>,
}

impl LateReportOptions {
    fn input(&self) -> Input {
        match (&self.file, &self.bootstrap) {
            (Some(f), _) => Input::File(f.clone()),
            (None, b) => Input::Kafka {
                bootstrap: b.clone().unwrap_or_default(),
                topic: self.topic.clone(),
            },
        }
    }

    fn report_options(&self) -> Result<ReportOptions, AnalysisError> {
        let mut o = ReportOptions {
            burst_gap_s: (self.burst_gap.0 / 1000).max(1),
            min_burst: self.min_burst.max(1),
            max_out_of_orderness_ms: self.max_out_of_orderness.0,
            max_split_hold_ms: self.max_split_hold.0,
            headroom_percent: self.headroom,
        };
        if let Some(path) = &self.pipeline {
            let (config, _) =
                crate::config::load(path).map_err(|e| AnalysisError::Usage(e.to_string()))?;
            let wm = config
                .operators
                .values()
                .find_map(|op| match op {
                    OperatorConfig::Watermark(w) => Some(w),
                    _ => None,
                })
                .ok_or_else(|| {
                    AnalysisError::Usage(format!("{} has no watermark operator", path.display()))
                })?;
            o.max_out_of_orderness_ms = wm.max_out_of_orderness.0;
            o.max_split_hold_ms = wm.max_split_hold.map_or(0, |m| m.0);
        }
        Ok(o)
    }
}

/// Split-brain episodes per origin region (`from`), from Prometheus, between two times.
pub fn episodes(
    prometheus: &str,
    from_ms: u64,
    to_ms: u64,
) -> Result<std::collections::BTreeMap<String, Vec<Episode>>, AnalysisError> {
    let io = |source| AnalysisError::Io {
        path: format!("http://{prometheus}"),
        source,
    };
    let mut client = crate::tools::http::HttpClient::connect(prometheus).map_err(io)?;
    let path = format!(
        "/api/v1/query_range?query=max%20by%20(from)%20(tidemark_split_brain)&start={:.3}&end={:.3}&step=1",
        from_ms as f64 / 1000.0,
        to_ms as f64 / 1000.0
    );
    let response = client.request("GET", &path, &[], b"").map_err(io)?;
    if response.status != 200 {
        return Err(AnalysisError::Usage(format!(
            "prometheus answered {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )));
    }
    let json = response.json();
    let mut out = std::collections::BTreeMap::new();
    for series in json["data"]["result"].as_array().into_iter().flatten() {
        let from = series["metric"]["from"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut list: Vec<Episode> = Vec::new();
        let mut open: Option<Episode> = None;
        for point in series["values"].as_array().into_iter().flatten() {
            let ts = (point[0].as_f64().unwrap_or(0.0) * 1000.0) as u64;
            let on = point[1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                >= 1.0;
            open = match (open, on) {
                (Some(e), true) => Some(Episode { end_ms: ts, ..e }),
                (None, true) => Some(Episode {
                    start_ms: ts,
                    end_ms: ts,
                }),
                (Some(e), false) => {
                    list.push(e);
                    None
                }
                (None, false) => None,
            };
        }
        list.extend(open);
        out.insert(from, list);
    }
    Ok(out)
}

/// Split-brain episodes by origin region around the report's bursts, when Prometheus is given;
/// or why they could not be had.
type Episodes = Option<std::collections::BTreeMap<String, Vec<Episode>>>;

fn episodes_for(o: &LateReportOptions, report: &Report) -> (Episodes, String) {
    let span = report
        .bursts
        .values()
        .flatten()
        .map(|b| (b.event_start_ms, b.end_ms))
        .fold(None, |acc: Option<(u64, u64)>, (a, b)| {
            Some(acc.map_or((a, b), |(x, y)| (x.min(a), y.max(b))))
        });
    match (&o.prometheus, span) {
        (Some(p), Some((a, b))) => match episodes(p, a.saturating_sub(600_000), b + 60_000) {
            Ok(e) => (Some(e), String::new()),
            Err(e) => (None, format!("split-brain episodes unavailable: {e}\n")),
        },
        (Some(_), None) => (Some(Default::default()), String::new()),
        (None, _) => (None, String::new()),
    }
}

/// The report as the user asked for it: table or JSON, with episodes when Prometheus is given.
fn show(
    o: &LateReportOptions,
    options: &ReportOptions,
    report: &Report,
    compact: bool,
    (by_region, warning): &(Episodes, String),
) -> String {
    let all: Option<Vec<Episode>> = by_region
        .as_ref()
        .map(|m| m.values().flatten().copied().collect());
    let mut rendered = Rendered::new(report, options, all);
    // Match each region's bursts against the episodes of its own link.
    if let Some(m) = by_region {
        for (region, bs) in &report.bursts {
            let own = m.get(region).map(Vec::as_slice).unwrap_or(&[]);
            rendered.burst_episodes.insert(
                region.clone(),
                bs.iter()
                    .map(|b| super::render::episode_of(b, own, 5_000))
                    .collect(),
            );
        }
    }
    match (o.format.as_str(), compact) {
        ("json", true) => serde_json::to_string(&rendered).unwrap_or_default(),
        ("json", false) => rendered.json(),
        _ => format!("{warning}{}", rendered.table()),
    }
}

/// Runs `tidemark late-report`.
pub fn late_report(o: &LateReportOptions) -> Result<(), AnalysisError> {
    let options = o.report_options()?;
    let input = o.input();
    let stop = Arc::new(AtomicBool::new(false));
    if o.follow {
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|source| {
                AnalysisError::Io {
                    path: "signal handler".into(),
                    source,
                }
            })?;
        }
    }
    let started = std::time::Instant::now();
    let deadline = o
        .stop_after
        .map(|d| started + std::time::Duration::from_millis(d.0));
    let (follow, flag) = (o.follow, Arc::clone(&stop));
    let feed = move |index: usize, peers: usize| -> Result<Box<dyn Feed>, AnalysisError> {
        let inner = ReaderFeed::open(&input, index, peers, follow)?;
        Ok(Box::new(Stoppable {
            inner,
            stop: Arc::clone(&flag),
            deadline,
        }))
    };
    let printer = {
        let (o, options) = (o.clone(), options);
        let mut last = std::time::Instant::now();
        move |round: u64, report: &Report| {
            if o.follow && last.elapsed().as_millis() as u64 >= o.interval.0 {
                last = std::time::Instant::now();
                if o.format == "table" {
                    println!(
                        "--- after round {round}, {:.0} s ---",
                        started.elapsed().as_secs_f64()
                    );
                }
                let episodes = episodes_for(&o, report);
                println!("{}", show(&o, &options, report, true, &episodes));
            }
        }
    };
    let report = report::execute(o.workers, options, feed, printer)?;
    let episodes = episodes_for(o, &report);
    println!("{}", show(o, &options, &report, false, &episodes));
    if let Some(path) = &o.plot {
        super::render::plot(&report, episodes.0.as_ref(), path)?;
        eprintln!("chart: {}", path.display());
    }
    Ok(())
}

/// A feed that ends at a signal or a deadline.
struct Stoppable {
    inner: ReaderFeed,
    stop: Arc<AtomicBool>,
    deadline: Option<std::time::Instant>,
}

impl Feed for Stoppable {
    fn next(
        &mut self,
        out: &mut Vec<super::LateEvent>,
        unreadable: &mut super::Unreadable,
    ) -> Result<bool, AnalysisError> {
        let more = self.inner.next(out, unreadable)?;
        let stopped = self.stop.load(Ordering::SeqCst)
            || self
                .deadline
                .is_some_and(|d| std::time::Instant::now() >= d);
        Ok(more && !stopped)
    }
}

/// The report over `chunks`, one round each, on `workers` threads: the report after every
/// round, then the final one. For tests and for callers that have the events in hand.
pub fn report_of_chunks(
    chunks: Vec<Vec<super::LateEvent>>,
    workers: usize,
    options: ReportOptions,
) -> Result<(Vec<Report>, Report), AnalysisError> {
    let shared = Arc::new(chunks);
    let rounds = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&rounds);
    let last = report::execute(
        workers,
        options,
        move |index, peers| -> Result<Box<dyn Feed>, AnalysisError> {
            Ok(Box::new(ChunkFeed::new(
                shared.as_ref().clone(),
                index,
                peers,
            )))
        },
        move |_, r: &Report| sink.lock().expect("rounds lock").push(r.clone()),
    )?;
    let rounds = std::mem::take(&mut *rounds.lock().expect("rounds lock"));
    Ok((rounds, last))
}
