//! `tidemark bench`: the engine-only chain (generator -> parse -> watermark -> dedup ->
//! reorder -> null sink) at 1 and 2 workers and on 2 processes, plus the memory of the dedup
//! state per id. It reports figures and draws them; it asserts nothing.
//!
//! `tidemark bench --state N,..` is the dedup-state scenario instead (S5 of the side-by-side
//! suite): generator -> parse -> watermark -> dedup -> null sink with N unique events, once with
//! a horizon that keeps every id live and once with a 2 s horizon as the baseline. The
//! difference in memory is the state, and the difference in rate is what the state costs.
//!
//! Each configuration runs in a child process of its own, so its peak memory is its own.

pub mod floor;
pub mod latency;
pub mod restore;
pub mod span;

use crate::metrics::Metrics;
use crate::runtime::{peak_rss_bytes, rss_bytes};
use anyhow::Context;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `tidemark bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Events per configuration; several (comma-separated) run every configuration at each.
    #[arg(long, default_value = "4000000", value_delimiter = ',')]
    pub events: Vec<u64>,
    /// Runs per configuration; the median is reported, with the slowest and fastest.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Skip the two-process configuration.
    #[arg(long)]
    pub no_processes: bool,
    /// Also run the two processes as two hosts: each in a network namespace of its own, made
    /// for the run and joined by a veth pair (needs root and `ip`).
    #[arg(long)]
    pub netns: bool,
    /// Live ids for the dedup memory measurement (comma-separated).
    #[arg(long, default_value = "1000000,10000000", value_delimiter = ',')]
    pub ids: Vec<u64>,
    /// Where to draw the events/s chart (PNG).
    #[arg(long, default_value = "docs/bench.png")]
    pub plot: String,
    /// Run the dedup-state scenario at these numbers of live ids (comma-separated) instead:
    /// each with every id live and with a 2 s horizon, 2 workers, `--runs` times.
    #[arg(long, value_delimiter = ',')]
    pub state: Vec<u64>,
    /// Internal: run one in-process configuration with this many workers and print its line.
    #[arg(long, hide = true)]
    pub only_workers: Option<usize>,
    /// Internal: with --only-workers, the dedup-state chain with this horizon.
    #[arg(long, hide = true)]
    pub only_horizon: Option<String>,
}

/// The dedup horizon that keeps every id of a state run live: the generator spreads its events
/// one millisecond apart per partition, so even 50M events span under two hours.
const LIVE_HORIZON: &str = "1d";
/// The baseline's horizon: the least the watermark's 2 s bound allows.
const BASELINE_HORIZON: &str = "2s";

/// One configuration's figures.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Label.
    pub config: String,
    /// Cores the configuration uses.
    pub cores: usize,
    /// Records read.
    pub events: u64,
    /// Wall seconds from the workers' start to the end of the run.
    pub seconds: f64,
    /// Seconds before the workers started (planning; with processes, connecting them), not in
    /// `seconds`.
    pub startup: f64,
    /// Peak ids retained by dedup.
    pub peak_ids: i64,
    /// Dedup table bytes at that peak.
    pub peak_bytes: i64,
    /// Peak resident memory of the process (the largest one, with several).
    pub peak_rss: u64,
    /// Resident memory when the dedup held its peak of ids.
    pub rss_at_peak_ids: u64,
    /// Events dedup let through as first copies.
    pub unique: u64,
    /// Bytes that crossed between processes (both ways, with TCP/IP headers).
    pub exchanged: u64,
    /// Time the sources were held back by flow control, summed over workers, ms.
    pub throttled_ms: u64,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    fn line(&self) -> String {
        format!(
            "RESULT\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.config,
            self.cores,
            self.events,
            self.seconds,
            self.peak_ids,
            self.peak_bytes,
            self.peak_rss,
            self.rss_at_peak_ids,
            self.unique,
            self.exchanged,
            self.throttled_ms,
            self.startup
        )
    }

    fn parse(line: &str) -> Option<Figures> {
        let f: Vec<&str> = line.strip_prefix("RESULT\t")?.split('\t').collect();
        Some(Figures {
            config: f.first()?.to_string(),
            cores: f.get(1)?.parse().ok()?,
            events: f.get(2)?.parse().ok()?,
            seconds: f.get(3)?.parse().ok()?,
            peak_ids: f.get(4)?.parse().ok()?,
            peak_bytes: f.get(5)?.parse().ok()?,
            peak_rss: f.get(6)?.parse().ok()?,
            rss_at_peak_ids: f.get(7)?.parse().ok()?,
            unique: f.get(8)?.parse().ok()?,
            exchanged: f.get(9)?.parse().ok()?,
            throttled_ms: f.get(10)?.parse().ok()?,
            startup: f.get(11)?.parse().ok()?,
        })
    }
}

/// `pipelines/bench.toml` with `events` events; with a horizon, the dedup-state chain: every
/// event unique, no reorder, and the dedup's horizon set.
fn bench_pipeline(events: u64, horizon: Option<&str>) -> anyhow::Result<String> {
    let mut table: toml::Table = include_str!("../../../pipelines/bench.toml")
        .parse()
        .context("embedded bench.toml")?;
    set(&mut table, "sources.gen", "count", events as i64)?;
    if let Some(h) = horizon {
        set(&mut table, "sources.gen", "duplicate_rate", 0.0)?;
        set(&mut table, "operators.dedup", "horizon", h)?;
        set(&mut table, "sinks.ordered", "inputs", vec!["dedup.on_time"])?;
        table
            .get_mut("operators")
            .and_then(|t| t.as_table_mut())
            .context("bench.toml has operators")?
            .remove("order");
    }
    Ok(table.to_string())
}

/// Sets `key` of the node at `path` ("sources.gen") of a pipeline file.
fn set(
    table: &mut toml::Table,
    path: &str,
    key: &str,
    value: impl Into<toml::Value>,
) -> anyhow::Result<()> {
    let (kind, name) = path.split_once('.').context("a node path is kind.name")?;
    table
        .get_mut(kind)
        .and_then(|s| s.get_mut(name))
        .and_then(|g| g.as_table_mut())
        .with_context(|| format!("bench.toml has {path}"))?
        .insert(key.into(), value.into());
    Ok(())
}

fn in_process(events: u64, workers: usize, horizon: Option<&str>) -> anyhow::Result<Figures> {
    let text = bench_pipeline(events, horizon)?;
    let (config, graph) =
        crate::config::parse(&text).map_err(|e| anyhow::anyhow!("bench pipeline: {e:?}"))?;
    let metrics = Metrics::new();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (m, d) = (metrics.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut peak = (0i64, 0i64, 0u64);
            while !d.load(Ordering::SeqCst) {
                let ids = m.dedup_retained.get();
                if ids > peak.0 {
                    peak = (ids, m.dedup_bytes.get(), rss_bytes().unwrap_or(0));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let started = Instant::now();
    let summary = crate::pipeline::run_bounded(&config, &graph, workers, &metrics)?;
    let startup = summary.startup_ms as f64 / 1000.0;
    let seconds = started.elapsed().as_secs_f64() - startup;
    done.store(true, Ordering::SeqCst);
    // Taken while the tables existed: the dedup takes its gauges back as it is dropped.
    let (peak_ids, peak_bytes, rss_at_peak_ids) = sampler.join().unwrap_or_default();
    Ok(Figures {
        config: format!("1 process x {workers} worker(s)"),
        cores: workers,
        events: summary.read,
        seconds,
        startup,
        peak_ids,
        peak_bytes,
        peak_rss: peak_rss_bytes().unwrap_or(0),
        rss_at_peak_ids,
        unique: summary.unique,
        exchanged: 0,
        throttled_ms: summary.throttled_ms,
    })
}

fn child(events: u64, workers: usize, horizon: Option<&str>) -> anyhow::Result<Figures> {
    let mut command = Command::new(std::env::current_exe()?);
    command.args([
        "bench",
        "--events",
        &events.to_string(),
        "--only-workers",
        &workers.to_string(),
    ]);
    if let Some(h) = horizon {
        command.args(["--only-horizon", h]);
    }
    let out = command.stderr(Stdio::inherit()).output()?;
    anyhow::ensure!(
        out.status.success(),
        "bench child with {workers} worker(s) failed"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(Figures::parse)
        .context("bench child printed no result")
}

/// The two network namespaces of `--netns`, removed when dropped.
struct Hosts;

const HOSTS: [(&str, &str, &str); 2] = [
    ("tm-bench0", "tm-bx0", "10.79.1.1"),
    ("tm-bench1", "tm-bx1", "10.79.1.2"),
];

impl Hosts {
    fn up() -> anyhow::Result<Hosts> {
        let hosts = Hosts;
        let ip = |args: &[&str]| -> anyhow::Result<()> {
            let status = Command::new("ip")
                .args(args)
                .status()
                .context("running ip")?;
            anyhow::ensure!(status.success(), "ip {} failed", args.join(" "));
            Ok(())
        };
        let [(ns0, if0, _), (ns1, if1, _)] = HOSTS;
        ip(&["netns", "add", ns0])?;
        ip(&["netns", "add", ns1])?;
        ip(&[
            "link", "add", if0, "netns", ns0, "type", "veth", "peer", "name", if1, "netns", ns1,
        ])?;
        for (ns, dev, addr) in HOSTS {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }

    /// Bytes host 0 sent and received over the pair.
    fn bytes(&self) -> anyhow::Result<u64> {
        let (ns, dev, _) = HOSTS[0];
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "cat"])
            .arg(format!("/sys/class/net/{dev}/statistics/tx_bytes"))
            .arg(format!("/sys/class/net/{dev}/statistics/rx_bytes"))
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|n| n.parse::<u64>().ok())
            .sum())
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for (ns, _, _) in HOSTS {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Bytes through the loopback interface so far (both directions count once each way).
fn loopback_bytes() -> u64 {
    std::fs::read_to_string("/proc/net/dev")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.trim_start().strip_prefix("lo:").map(str::to_string))
        })
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn two_processes(events: u64, hosts: Option<&Hosts>) -> anyhow::Result<Figures> {
    let dir = std::env::temp_dir().join(format!("tidemark-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let pipeline = dir.join("bench.toml");
    std::fs::write(&pipeline, bench_pipeline(events, None)?)?;
    let hostfile = dir.join("hosts");
    match hosts {
        None => super::cluster::loopback_hostfile(&hostfile, 2)?,
        Some(_) => std::fs::write(
            &hostfile,
            HOSTS.map(|(_, _, addr)| format!("{addr}:2101\n")).concat(),
        )?,
    }
    let exe = std::env::current_exe()?;
    let bytes = || match hosts {
        None => Ok(loopback_bytes()),
        Some(h) => h.bytes(),
    };
    let bytes_before = bytes()?;
    let started = Instant::now();
    let children: Vec<_> = super::cluster::commands(&exe, &pipeline, &hostfile, 2)
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let mut c = match hosts {
                None => c,
                Some(_) => {
                    let mut wrapped = Command::new("ip");
                    wrapped
                        .args(["netns", "exec", HOSTS[i].0])
                        .arg(c.get_program())
                        .args(c.get_args());
                    wrapped
                }
            };
            c.stdout(Stdio::piped()).spawn()
        })
        .collect::<Result<_, _>>()?;
    let (mut read, mut rss, mut throttled) = (0, 0, 0.0);
    let mut startup = f64::INFINITY;
    for child in children {
        let out = child.wait_with_output()?;
        anyhow::ensure!(out.status.success(), "a bench process failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            text.lines()
                .find_map(|l| {
                    l.strip_prefix(name)
                        .and_then(|r| r.split_whitespace().next())
                        .and_then(|n| n.parse::<f64>().ok())
                })
                .unwrap_or(0.0)
        };
        read += field("read") as u64;
        rss = rss.max((field("peak RSS") * (1 << 20) as f64) as u64);
        throttled += field("throttled");
        startup = startup.min(field("start-up"));
    }
    // Timed like the configurations in one process, from the workers' start: the least start-up
    // of the two, as the other's workers may already have been reading while it connected.
    let seconds = started.elapsed().as_secs_f64() - startup;
    let exchanged = bytes()?.saturating_sub(bytes_before);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Figures {
        config: match hosts {
            None => "2 processes x 1 worker".into(),
            Some(_) => "2 x 1, namespace hosts".into(),
        },
        cores: 2,
        events: read,
        seconds,
        startup,
        peak_rss: rss,
        exchanged,
        throttled_ms: (throttled * 1000.0).round() as u64,
        ..Figures::default()
    })
}

/// Bytes per live id of the dedup state, by resident-memory delta, and the insert rate.
fn dedup_memory(ids: u64) -> (f64, f64, f64) {
    use crate::event::{Event, EventId};
    let mut state = crate::operators::dedup::DedupState::new(u64::MAX / 2);
    let before = rss_bytes().unwrap_or(0);
    let mut rng = crate::runtime::SplitMix(ids);
    let e = Event::new(
        1_700_000_000_000,
        EventId::Span(0, 0),
        b"{}".as_slice().into(),
        0,
        0,
        None,
    );
    // In batches, as the operator offers them, so the table's prefetching counts.
    let mut batch = vec![e; 256];
    let mut verdicts = Vec::with_capacity(batch.len());
    let started = Instant::now();
    let mut left = ids;
    while left > 0 {
        let n = left.min(batch.len() as u64) as usize;
        for e in &mut batch[..n] {
            e.id_hash = crate::event::IdHash::from_u128(rng.next_u128());
        }
        state.offer_all(&batch[..n], &mut verdicts);
        left -= n as u64;
    }
    let ns = started.elapsed().as_nanos() as f64 / ids as f64;
    let after = rss_bytes().unwrap_or(0);
    let rss_per_id = after.saturating_sub(before) as f64 / ids as f64;
    let table_per_id = state.bytes() as f64 / state.len().max(1) as f64;
    drop(state);
    (rss_per_id, table_per_id, ns)
}

/// Runs the benchmark and prints its figures.
pub fn run(options: &BenchOptions) -> anyhow::Result<()> {
    if let Some(workers) = options.only_workers {
        let horizon = options.only_horizon.as_deref();
        let events = options.events.first().copied().unwrap_or(4_000_000);
        println!("{}", in_process(events, workers, horizon)?.line());
        return Ok(());
    }
    if !options.state.is_empty() {
        return state(&options.state, options.runs);
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let hosts = if options.netns {
        Some(Hosts::up().context("making the namespace hosts (--netns needs root)")?)
    } else {
        None
    };
    let mut first = Vec::new();
    for &events in &options.events {
        println!(
            "tidemark bench: {events} events per configuration, ~300-byte JSON events, 5% duplicates, 500 ms disorder; {cores} cores; median of {} runs, the configurations taking turns; events/s timed from the workers' start, the start-up before it shown apart",
            options.runs.max(1)
        );
        println!(
            "{:<26} {:>12} {:>10} {:>15} {:>10} {:>10} {:>9} {:>10} {:>10} {:>9}",
            "configuration",
            "events/s",
            "ns/event",
            "events/s/core",
            "peak ids",
            "table B/id",
            "peak RSS",
            "exch B/ev",
            "throttled",
            "start-up"
        );
        type Once<'h> = Box<dyn Fn() -> anyhow::Result<Figures> + 'h>;
        let mut configurations: Vec<Once<'_>> = vec![
            Box::new(|| child(events, 1, None)),
            Box::new(|| child(events, 2, None)),
        ];
        if !options.no_processes {
            configurations.push(Box::new(|| two_processes(events, None)));
        }
        if let Some(h) = &hosts {
            configurations.push(Box::new(move || two_processes(events, Some(h))));
        }
        // The configurations take turns within each run, so that a slow spell of the machine
        // (its second core in particular) falls on all of them, not on the ratios between them.
        let mut runs: Vec<Vec<Figures>> = configurations.iter().map(|_| Vec::new()).collect();
        for _ in 0..options.runs.max(1) {
            for (once, figures) in configurations.iter().zip(&mut runs) {
                figures.push(once()?);
            }
        }
        let all: Vec<Figures> = runs.into_iter().map(median).collect();
        if let [one, two, pair, ..] = all.as_slice() {
            println!(
                "2 processes x 1 worker at {:.0}% of 1 process x 2 workers (1 worker: {:.0}%)",
                100.0 * pair.rate() / two.rate(),
                100.0 * one.rate() / two.rate()
            );
        }
        println!();
        if first.is_empty() {
            first = all;
        }
    }
    let all = first;
    println!();
    println!(
        "{:<14} {:>14} {:>16} {:>14}",
        "dedup live ids", "RSS bytes/id", "table bytes/id", "ns/insert"
    );
    for &n in &options.ids {
        let (rss, table, ns) = dedup_memory(n);
        println!("{n:<14} {rss:>14.1} {table:>16.1} {ns:>14.1}");
    }
    match plot(&all, &options.plot) {
        Ok(()) => println!("\nchart: {}", options.plot),
        Err(e) => println!("\nchart not drawn: {e}"),
    }
    Ok(())
}

/// The dedup-state scenario: per number of ids and run, the baseline and then the live run, each
/// in its own process with 2 workers. Prints a line per run for the side-by-side report:
/// `S5 tidemark KIND EVENTS SECONDS IDS STATE_BYTES RSS_BYTES PEAK_RSS_BYTES`: the most ids the
/// dedup tables held at once (sampled every 5 ms), their bytes and the resident memory then, and
/// the process's peak resident memory.
fn state(sizes: &[u64], runs: usize) -> anyhow::Result<()> {
    println!("tidemark bench --state: generator -> parse -> watermark -> dedup -> null sink, 2 workers, all events unique; live: horizon {LIVE_HORIZON}, baseline: horizon {BASELINE_HORIZON}");
    for &n in sizes {
        for _ in 0..runs.max(1) {
            for (kind, horizon) in [("baseline", BASELINE_HORIZON), ("live", LIVE_HORIZON)] {
                let f = child(n, 2, Some(horizon))?;
                anyhow::ensure!(
                    f.events == n && f.unique == n,
                    "{kind} run: {} of {n} events read, {} passed as unique",
                    f.events,
                    f.unique
                );
                // A live run whose table did not hold (nearly) every id measured something else;
                // the sampler may miss the last few milliseconds of inserts.
                anyhow::ensure!(
                    kind == "baseline" || f.peak_ids as f64 >= 0.8 * n as f64,
                    "the live run held at most {} of its {n} ids",
                    f.peak_ids
                );
                println!(
                    "S5\ttidemark\t{kind}\t{}\t{:.3}\t{}\t{}\t{}\t{}",
                    f.events, f.seconds, f.peak_ids, f.peak_bytes, f.rss_at_peak_ids, f.peak_rss
                );
                println!(
                    "# {kind} {n}: {:.0} events/s, {} ids at most, {:.1} table bytes/id, RSS {} MiB then, peak {} MiB",
                    f.rate(),
                    f.peak_ids,
                    f.peak_bytes as f64 / f.peak_ids.max(1) as f64,
                    f.rss_at_peak_ids >> 20,
                    f.peak_rss >> 20
                );
            }
        }
    }
    Ok(())
}

/// Prints the run with the median rate, with the range over all, and returns it.
fn median(mut all: Vec<Figures>) -> Figures {
    let runs = all.len();
    all.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    let (min, max) = (all[0].rate(), all[all.len() - 1].rate());
    let mid = all.swap_remove(all.len() / 2);
    print_row(&mid);
    println!(
        "{:<26} {:>12}",
        "",
        format!("({:.2}M-{:.2}M over {} runs)", min / 1e6, max / 1e6, runs)
    );
    mid
}

fn print_row(f: &Figures) {
    let table = if f.peak_ids > 0 {
        format!("{:.1}", f.peak_bytes as f64 / f.peak_ids as f64)
    } else {
        "-".into()
    };
    println!(
        "{:<26} {:>12.0} {:>10.1} {:>15.0} {:>10} {:>10} {:>6.0} MiB {:>10} {:>9.1}s {:>8.2}s",
        f.config,
        f.rate(),
        1e9 / f.rate(),
        f.rate() / f.cores as f64,
        f.peak_ids,
        table,
        f.peak_rss as f64 / (1 << 20) as f64,
        if f.exchanged > 0 {
            format!("{:.0}", f.exchanged as f64 / f.events.max(1) as f64)
        } else {
            "-".into()
        },
        f.throttled_ms as f64 / 1000.0,
        f.startup
    );
}

/// A bar chart of events/s per configuration.
fn plot(all: &[Figures], path: &str) -> anyhow::Result<()> {
    use plotters::prelude::*;
    crate::tools::chart::register_font()?;
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = all.iter().map(Figures::rate).fold(0.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "tidemark engine: events/s (generator -> parse -> watermark -> dedup -> reorder)",
            ("sans-serif", 18),
        )
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..all.len() as f64, 0f64..max.max(1.0))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("events/s")
        .y_label_formatter(&|y| format!("{:.1}M", y / 1e6))
        .draw()?;
    chart.draw_series(all.iter().enumerate().map(|(i, f)| {
        Rectangle::new(
            [(i as f64 + 0.2, 0.0), (i as f64 + 0.8, f.rate())],
            BLUE.mix(0.6).filled(),
        )
    }))?;
    chart.draw_series(all.iter().enumerate().map(|(i, f)| {
        Text::new(
            format!("{:.2}M", f.rate() / 1e6),
            (i as f64 + 0.4, f.rate() + max * 0.06),
            ("sans-serif", 16),
        )
    }))?;
    chart.draw_series(all.iter().enumerate().map(|(i, f)| {
        Text::new(
            f.config.clone(),
            (i as f64 + 0.2, max * 0.04),
            ("sans-serif", 14).into_font().color(&WHITE),
        )
    }))?;
    root.present()?;
    Ok(())
}
