//! `tidemark bench`: the engine-only chain (generator -> parse -> watermark -> dedup ->
//! reorder -> null sink) at 1 and 2 workers and on 2 processes, reported as figures, never
//! asserted.

use crate::metrics::Metrics;
use anyhow::Context;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `tidemark bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Events per configuration.
    #[arg(long, default_value_t = 4_000_000)]
    pub events: u64,
    /// Skip the two-process configuration.
    #[arg(long)]
    pub no_processes: bool,
}

/// One configuration's figures.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Label.
    pub config: String,
    /// Records read.
    pub events: u64,
    /// Wall seconds.
    pub seconds: f64,
    /// Peak ids retained by dedup.
    pub peak_ids: i64,
    /// Dedup table bytes at that peak.
    pub peak_bytes: i64,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

fn bench_pipeline(events: u64) -> anyhow::Result<String> {
    let mut table: toml::Table = include_str!("../pipelines/bench.toml")
        .parse()
        .context("embedded bench.toml")?;
    table
        .get_mut("sources")
        .and_then(|s| s.get_mut("gen"))
        .and_then(|g| g.as_table_mut())
        .context("bench.toml has sources.gen")?
        .insert("count".into(), (events as i64).into());
    Ok(table.to_string())
}

fn in_process(events: u64, workers: usize) -> anyhow::Result<Figures> {
    let text = bench_pipeline(events)?;
    let (config, graph) =
        crate::config::parse(&text).map_err(|e| anyhow::anyhow!("bench pipeline: {e:?}"))?;
    let metrics = Metrics::new();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (m, d) = (metrics.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut peak = (0i64, 0i64);
            while !d.load(Ordering::SeqCst) {
                let ids = m.dedup_retained.get();
                if ids > peak.0 {
                    peak = (ids, m.dedup_bytes.get());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let options = crate::pipeline::RunOptions {
        workers,
        bounded: true,
        ..Default::default()
    };
    let started = Instant::now();
    let summary = crate::pipeline::run(
        &config,
        &graph,
        &options,
        &metrics,
        Arc::new(AtomicBool::new(false)),
    )?;
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::SeqCst);
    let (peak_ids, peak_bytes) = sampler.join().unwrap_or_default();
    Ok(Figures {
        config: format!("1 process x {workers} worker(s)"),
        events: summary.read,
        seconds,
        peak_ids,
        peak_bytes,
    })
}

fn two_processes(events: u64) -> anyhow::Result<Figures> {
    let dir = std::env::temp_dir().join(format!("tidemark-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let pipeline = dir.join("bench.toml");
    std::fs::write(&pipeline, bench_pipeline(events)?)?;
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
        })
        .collect::<Result<_, _>>()?;
    let hostfile = dir.join("hosts");
    std::fs::write(
        &hostfile,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1]),
    )?;
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let children: Vec<_> = (0..2)
        .map(|i| {
            std::process::Command::new(&exe)
                .arg("run")
                .arg(&pipeline)
                .args([
                    "--bounded",
                    "--workers",
                    "1",
                    "--processes",
                    "2",
                    "--process",
                    &i.to_string(),
                    "--hostfile",
                ])
                .arg(&hostfile)
                .stdout(std::process::Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut read = 0;
    for child in children {
        let out = child.wait_with_output()?;
        anyhow::ensure!(out.status.success(), "a bench process failed");
        let text = String::from_utf8_lossy(&out.stdout);
        read += text
            .lines()
            .find_map(|l| {
                l.strip_prefix("read")
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .unwrap_or(0);
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Figures {
        config: "2 processes x 1 worker".into(),
        events: read,
        seconds,
        peak_ids: 0,
        peak_bytes: 0,
    })
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs the benchmark and prints its figures.
pub fn run(options: &BenchOptions) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("tidemark bench: {} events per configuration, ~300-byte JSON events, 5% duplicates, {cores} cores", options.events);
    let mut all = Vec::new();
    for workers in [1, 2] {
        let f = in_process(options.events, workers)?;
        print_row(&f, workers);
        all.push((f, workers));
    }
    if !options.no_processes {
        let f = two_processes(options.events)?;
        print_row(&f, 2);
        all.push((f, 2));
    }
    if let Some(rss) = peak_rss_bytes() {
        println!(
            "peak RSS of the bench process: {:.1} MiB",
            rss as f64 / (1 << 20) as f64
        );
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

fn print_row(f: &Figures, cores_used: usize) {
    let bytes_per_id = if f.peak_ids > 0 {
        f.peak_bytes as f64 / f.peak_ids as f64
    } else {
        f64::NAN
    };
    println!(
        "{:<26} {:>11.0} events/s  {:>7.1} ns/event  {:>11.0} events/s/core  peak ids {:>9}  {:>5.1} bytes/id",
        f.config,
        f.rate(),
        1e9 / f.rate(),
        f.rate() / cores_used as f64,
        f.peak_ids,
        bytes_per_id
    );
}
