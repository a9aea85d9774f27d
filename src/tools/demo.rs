//! `tidemark demo`: two in-process Kafka regions (librdkafka's mock cluster), generated traffic
//! with failover copies, retries, disorder, a replication split and bad records, the
//! `pipelines/global.toml` wiring in bounded mode, and a verified summary.
//!
//! The mock cluster keeps only about 5 MiB per partition and silently drops older data, so
//! topics get enough partitions to stay well under that; otherwise the verifier would report
//! losses that are the mock's.

use crate::config::PipelineConfig;
use crate::event::sample::generate_event;
use crate::metrics::Metrics;
use crate::runtime::SplitMix;
use crate::tools::verify::{self, Expected};
use anyhow::Context;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `tidemark demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Distinct events to generate (copies and invalid records come on top).
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Seed for ids, times, copies and the split.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Worker threads.
    #[arg(short, long, default_value_t = 2)]
    pub workers: usize,
}

/// Bytes per partition the demo aims for, well under the mock cluster's ~5 MiB.
const PARTITION_BUDGET: u64 = 2 << 20;
const PAYLOAD_BYTES: u64 = 300;

/// The demo's traffic: what each region receives, in order, and what the outputs must hold.
pub struct Traffic {
    /// (key, payload) per record for region-a.
    pub region_a: Vec<(Option<String>, Vec<u8>)>,
    /// Same for region-b.
    pub region_b: Vec<(Option<String>, Vec<u8>)>,
    /// Ground truth.
    pub expected: Expected,
    /// Records of region-b held back by the split.
    pub split_held: u64,
    /// Failover copies and same-region retries.
    pub copies: u64,
}

/// Generates the demo traffic for `events` distinct events.
pub fn traffic(events: u64, seed: u64, max_event_bytes: usize) -> Traffic {
    let mut rng = SplitMix(seed);
    let now = crate::runtime::wall_ms();
    // One event per millisecond, ending a minute ago: nothing is in the future.
    let base = now - events - 60_000;
    let mut t = Traffic {
        region_a: Vec::new(),
        region_b: Vec::new(),
        expected: Expected::default(),
        split_held: 0,
        copies: 0,
    };
    let mut held = Vec::new();
    let split = (events * 2 / 5)..(events * 9 / 20);
    let mut buf = Vec::new();
    for i in 0..events {
        let in_a = rng.next_u64() % 2 == 0;
        let id = rng.next_u128();
        // Disorder below max_out_of_orderness (2 s).
        let time = base + i - rng.below(1_500);
        let region = if in_a { "region-a" } else { "region-b" };
        generate_event(
            &mut buf,
            id,
            time,
            region,
            (i % 20) as u32,
            PAYLOAD_BYTES as usize,
        );
        let key = format!("{id:032x}");
        t.expected.events.insert(key.clone(), (time, buf.clone()));
        let record = (Some(key), buf.clone());
        let roll = rng.next_f64();
        if !in_a && split.contains(&i) && rng.next_f64() < 0.5 {
            // The replication split: these reach region-b's log only after it heals.
            held.push(record.clone());
            t.split_held += 1;
        } else if in_a {
            t.region_a.push(record.clone());
        } else {
            t.region_b.push(record.clone());
        }
        if roll < 0.03 {
            // A producer failed over: the same event also went to the other region.
            if in_a {
                t.region_b.push(record)
            } else {
                t.region_a.push(record)
            }
            t.copies += 1;
        } else if roll < 0.05 {
            // A retry to the same region after a lost acknowledgement.
            if in_a {
                t.region_a.push(record)
            } else {
                t.region_b.push(record)
            }
            t.copies += 1;
        }
    }
    t.region_b.extend(held);
    let future = format!(
        r#"{{"eventId":"future-1","timestamp":{}}}"#,
        now + 3_600_000
    );
    let long_id = format!(r#"{{"eventId":"{}","timestamp":{now}}}"#, "x".repeat(200));
    let too_large = format!(
        r#"{{"eventId":"big","timestamp":{now},"m":"{}"}}"#,
        "y".repeat(max_event_bytes + 1)
    );
    let bad: Vec<Vec<u8>> = vec![
        b"\xff\xfe not utf-8".to_vec(),
        b"{\"eventId\": \"trunc".to_vec(),
        b"[1,2,3]".to_vec(),
        format!(r#"{{"timestamp":{now}}}"#).into_bytes(),
        format!(r#"{{"eventId":"","timestamp":{now}}}"#).into_bytes(),
        format!(r#"{{"eventId":12345,"timestamp":{now}}}"#).into_bytes(),
        long_id.into_bytes(),
        br#"{"eventId":"no-time"}"#.to_vec(),
        br#"{"eventId":"bad-time","timestamp":"last tuesday"}"#.to_vec(),
        br#"{"eventId":"neg-time","timestamp":-1}"#.to_vec(),
        future.into_bytes(),
        too_large.into_bytes(),
        Vec::new(),
    ];
    for (i, b) in bad.into_iter().enumerate() {
        let at = (i + 1) * t.region_a.len() / 15;
        t.region_a.insert(at, (None, b));
        t.expected.invalid += 1;
    }
    t.expected.sent = (t.region_a.len() + t.region_b.len()) as u64;
    t
}

fn partitions_for(records: u64) -> i32 {
    ((records * (PAYLOAD_BYTES + 60)).div_ceil(PARTITION_BUDGET)).max(4) as i32
}

/// Produces records to `bootstrap`/`topic` and waits until every one is acknowledged.
pub fn produce(
    bootstrap: &str,
    topic: &str,
    records: &[(Option<String>, Vec<u8>)],
) -> anyhow::Result<()> {
    let cluster = crate::kafka::ClusterConfig::at(bootstrap);
    let mut config = crate::kafka::producer(&cluster);
    // The demo's too-large record must reach the pipeline to be rejected there.
    config.set("message.max.bytes", "4000000");
    let producer: BaseProducer = config.create().context("creating demo producer")?;
    for (key, payload) in records {
        let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        crate::kafka::send_when_room(&producer, record).context("producing demo traffic")?;
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .context("flushing demo traffic")?;
    Ok(())
}

/// The global pipeline with the demo's bootstrap addresses, enough output partitions for the
/// mock, and no metrics endpoint.
pub fn pipeline(
    bootstrap_a: &str,
    bootstrap_b: &str,
    out_partitions: i32,
) -> anyhow::Result<(PipelineConfig, crate::config::Graph)> {
    let text = pipeline_text(bootstrap_a, bootstrap_b, out_partitions)?;
    crate::config::parse(&text).map_err(|errors| {
        anyhow::anyhow!(
            "demo pipeline: {}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })
}

/// The text of [`pipeline`], for running it as a separate process.
pub fn pipeline_text(
    bootstrap_a: &str,
    bootstrap_b: &str,
    out_partitions: i32,
) -> anyhow::Result<String> {
    let mut table: toml::Table = include_str!("../../pipelines/global.toml")
        .parse()
        .context("embedded global.toml")?;
    let set = |table: &mut toml::Table, path: &[&str], value: toml::Value| {
        let mut t = table;
        for key in &path[..path.len() - 1] {
            t = t
                .get_mut(*key)
                .and_then(|v| v.as_table_mut())
                .expect("global.toml has this table");
        }
        t.insert(path[path.len() - 1].to_string(), value);
    };
    set(
        &mut table,
        &["clusters", "region-a", "bootstrap"],
        bootstrap_a.into(),
    );
    set(
        &mut table,
        &["clusters", "region-b", "bootstrap"],
        bootstrap_b.into(),
    );
    set(
        &mut table,
        &["operators", "order", "partitions"],
        i64::from(out_partitions).into(),
    );
    set(&mut table, &["event", "max_event_bytes"], 65_536.into());
    table.remove("metrics");
    Ok(table.to_string())
}

/// Runs the demo; returns whether every invariant held.
pub fn run(options: &DemoOptions) -> anyhow::Result<bool> {
    let started = Instant::now();
    let t = traffic(options.events, options.seed, 65_536);
    let in_parts = partitions_for(t.region_a.len().max(t.region_b.len()) as u64);
    let out_parts = partitions_for(options.events);
    // The mock clusters are not Send: they stay on this thread, and workers get their addresses.
    let region_a = MockCluster::new(1).context("starting mock region-a")?;
    let region_b = MockCluster::new(1).context("starting mock region-b")?;
    for (cluster, topics) in [
        (
            &region_a,
            vec![
                ("log-events", in_parts),
                ("log-events-ordered", out_parts),
                ("log-events-late", 4),
                ("log-events-invalid", 1),
            ],
        ),
        (&region_b, vec![("log-events", in_parts)]),
    ] {
        for (topic, parts) in topics {
            cluster
                .create_topic(topic, parts, 1)
                .with_context(|| format!("creating {topic}"))?;
        }
    }
    let (a, b) = (region_a.bootstrap_servers(), region_b.bootstrap_servers());
    println!(
        "tidemark demo: 2 in-process regions ({a}, {b}); {} events, {} copies, {} held back by a replication split, {} invalid",
        options.events, t.copies, t.split_held, t.expected.invalid
    );
    produce(&a, "log-events", &t.region_a)?;
    produce(&b, "log-events", &t.region_b)?;

    let (config, graph) = pipeline(&a, &b, out_parts)?;
    let metrics = Metrics::new();
    let done = Arc::new(AtomicBool::new(false));
    let progress = spawn_progress(metrics.clone(), t.expected.sent, Arc::clone(&done));
    let run_started = Instant::now();
    let summary = crate::pipeline::run_bounded(&config, &graph, options.workers, &metrics);
    done.store(true, Ordering::SeqCst);
    let _ = progress.join();
    let summary = summary?;
    let run_secs = run_started.elapsed().as_secs_f64();

    let observed = verify::read_outputs(&a).context("reading back the output topics")?;
    let report = verify::verify(&t.expected, &observed, &config.event);
    println!("{report}");
    println!(
        "pipeline            {:>10.0} records/s  ({} records in {:.2} s on {} workers, client start-up included; demo total {:.1} s)",
        summary.read as f64 / run_secs.max(1e-3),
        summary.read,
        run_secs,
        options.workers,
        started.elapsed().as_secs_f64()
    );
    if report.ok() {
        println!("verified: lost = 0, duplicated = 0, order violations = 0");
    } else {
        println!("FAILED: an invariant does not hold (see above)");
    }
    Ok(report.ok())
}

fn spawn_progress(
    metrics: Metrics,
    total: u64,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let tty = std::io::stderr().is_terminal();
        let mut last_line = Instant::now();
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
            let read: u64 = metrics
                .events_in
                .with_label_values(&["src_a", "region-a"])
                .get()
                + metrics
                    .events_in
                    .with_label_values(&["src_b", "region-b"])
                    .get();
            let frac = (read as f64 / total.max(1) as f64).min(1.0);
            let width = 40;
            let filled = (frac * width as f64) as usize;
            let bar = format!(
                "[{}{}] {:>3.0}% {read}/{total} records",
                "#".repeat(filled),
                " ".repeat(width - filled),
                frac * 100.0
            );
            if tty {
                eprint!("\r{bar}");
                let _ = std::io::stderr().flush();
            } else if last_line.elapsed() > Duration::from_secs(2) {
                eprintln!("{bar}");
                last_line = Instant::now();
            }
        }
        if tty {
            eprintln!();
        }
    })
}
