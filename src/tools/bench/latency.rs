//! S6 of the side-by-side benchmarks: how long after its watermark allowed it each event was
//! written. An ordered output cannot emit an event before the watermark passes its time, and
//! the watermark trails the newest event time by the out-of-orderness bound; what a system adds
//! beyond that is its overhead. For each record of an ordered topic it is the record's Kafka
//! timestamp (set by the producer when the job wrote it) minus the event time minus the bound.
//!
//! The figures are read from the topic after the run, so any system's output can be measured
//! the same way. The distribution is kept in an HdrHistogram (3 significant digits).
//!
//! A transactional output is not visible when its records are written but when their
//! transaction commits, and a reader sees it only then. `--follow` therefore measures what a
//! `read_committed` consumer sees: it reads the topic while the job writes it and takes each
//! record's arrival at the reader (this machine's clock, as the load generator's) instead of
//! its Kafka timestamp. For an at-least-once output the two differ by the reader's fetch only.

use crate::event::decode;
use crate::event::EventFormat;
use hdrhistogram::Histogram;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Options of `tidemark latency`.
#[derive(Debug, Clone, clap::Args)]
pub struct LatencyOptions {
    /// Bootstrap servers of the cluster holding the ordered topic.
    #[arg(long, default_value = "127.0.0.1:19092")]
    pub bootstrap: String,
    /// The ordered topic to measure.
    #[arg(long, default_value = "log-events-ordered")]
    pub topic: String,
    /// The watermark's delay: the job's `max_out_of_orderness`.
    #[arg(long, default_value = "2s", value_parser = crate::component::parse_duration_flag)]
    pub delay: Duration,
    /// Only events with an event time at or after this (epoch ms): leaves out the warm-up.
    #[arg(long)]
    pub from_ms: Option<u64>,
    /// Only events with an event time before this (epoch ms): leaves out the tail, which idle
    /// partitions release by the wall clock rather than by the watermark.
    #[arg(long)]
    pub to_ms: Option<u64>,
    /// Writes the distribution as TSV (overhead in ms, then the fraction of events at or
    /// below it), one row per percentile step, for a CDF plot.
    #[arg(long)]
    pub cdf: Option<PathBuf>,
    /// Reads the topic while the job writes it, read_committed, and measures each record's
    /// arrival at this reader rather than its Kafka timestamp: the latency a consumer of a
    /// transactional output sees. Start it before the load.
    #[arg(long)]
    pub follow: bool,
    /// With `--follow`: stops once records have arrived and none has for this long.
    #[arg(long, default_value = "15s", value_parser = crate::component::parse_duration_flag)]
    pub idle: Duration,
    /// With `--follow`: stops after this long whatever arrives.
    #[arg(long, default_value = "10m", value_parser = crate::component::parse_duration_flag)]
    pub timeout: Duration,
}

/// The overhead distribution of one topic.
pub struct Latency {
    /// Overheads in milliseconds; records written before their watermark count as 0.
    pub histogram: Histogram<u64>,
    /// Records written earlier than the bound allows (a producer clock or time-source quirk;
    /// an ordered output should have none).
    pub early: u64,
    /// Records skipped: outside the event-time range, without a timestamp, or not an event.
    pub skipped: u64,
}

impl Latency {
    /// An empty distribution.
    pub fn new() -> Self {
        Latency {
            // Up to a day in ms: far beyond any backlog a run can build.
            histogram: Histogram::new_with_bounds(1, 86_400_000, 3).expect("valid bounds"),
            early: 0,
            skipped: 0,
        }
    }

    /// Adds one record written at `written_ms` (its Kafka timestamp) with event time
    /// `event_ms`, for a watermark `delay_ms` behind the newest event time.
    pub fn record(&mut self, written_ms: i64, event_ms: u64, delay_ms: u64) {
        let overhead = written_ms - event_ms as i64 - delay_ms as i64;
        if overhead < 0 {
            self.early += 1;
        }
        self.histogram.saturating_record(overhead.max(0) as u64);
    }

    /// The overhead at quantile `q` (0..=1), in ms.
    pub fn at(&self, q: f64) -> u64 {
        self.histogram.value_at_quantile(q)
    }
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "latency: {} events, overhead beyond the watermark delay: p50 {} ms p90 {} ms p99 {} ms p99.9 {} ms max {} ms ({} written early, {} skipped)",
            self.histogram.len(),
            self.at(0.5),
            self.at(0.9),
            self.at(0.99),
            self.at(0.999),
            self.histogram.max(),
            self.early,
            self.skipped,
        )
    }
}

/// Reads the whole topic and measures it.
pub fn measure(o: &LatencyOptions) -> Result<Latency, rdkafka::error::KafkaError> {
    use rdkafka::Message;
    let format = EventFormat::default();
    let delay = o.delay.as_millis() as u64;
    let mut latency = Latency::new();
    let samples = crate::tools::topic::read_topic_with(&o.bootstrap, &o.topic, |m| {
        let event = decode(m.payload().unwrap_or(&[]), &format).ok();
        (m.timestamp().to_millis(), event.map(|d| d.time))
    })?;
    for (written, time) in samples {
        match (written, time) {
            (Some(w), Some(t))
                if o.from_ms.is_none_or(|from| t >= from) && o.to_ms.is_none_or(|to| t < to) =>
            {
                latency.record(w, t, delay)
            }
            _ => latency.skipped += 1,
        }
    }
    Ok(latency)
}

/// Reads the topic as the job writes it (see the module's notes on `--follow`).
pub fn follow(o: &LatencyOptions) -> Result<Latency, rdkafka::error::KafkaError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    use std::time::Instant;
    let format = EventFormat::default();
    let delay = o.delay.as_millis() as u64;
    let cluster = crate::kafka::tool_cluster(&o.bootstrap)?;
    let mut config = crate::kafka::consumer(&cluster, "tidemark-latency");
    // The fetch wait would be counted in every record's latency: a fetch returns at once.
    config.set("fetch.wait.max.ms", "5");
    let consumer: BaseConsumer<crate::kafka::Quiet> =
        config.create_with_context(crate::kafka::Quiet)?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for (p, _, _) in crate::kafka::partition_offsets(&consumer, &o.topic)? {
        tpl.add_partition_offset(&o.topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut latency = Latency::new();
    let started = Instant::now();
    let mut last: Option<Instant> = None;
    while started.elapsed() < o.timeout && last.is_none_or(|l| l.elapsed() < o.idle) {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                let arrived = crate::runtime::wall_ms() as i64;
                last = Some(Instant::now());
                match decode(m.payload().unwrap_or(&[]), &format) {
                    Ok(d)
                        if o.from_ms.is_none_or(|from| d.time >= from)
                            && o.to_ms.is_none_or(|to| d.time < to) =>
                    {
                        latency.record(arrived, d.time, delay)
                    }
                    _ => latency.skipped += 1,
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => return Err(e),
        }
    }
    Ok(latency)
}

/// `tidemark latency`: prints the percentiles and writes the CDF if asked.
pub fn run(o: &LatencyOptions) -> anyhow::Result<()> {
    use anyhow::Context;
    let latency = if o.follow { follow(o) } else { measure(o) }
        .with_context(|| format!("reading {}", o.topic))?;
    // A misspelt or empty topic must not pass for a measurement.
    anyhow::ensure!(
        !latency.histogram.is_empty(),
        "no events to measure in {} ({} records skipped)",
        o.topic,
        latency.skipped
    );
    println!("{latency}");
    if let Some(path) = &o.cdf {
        let mut out = String::from("overhead_ms\tfraction\n");
        for v in latency.histogram.iter_quantiles(4) {
            out.push_str(&format!(
                "{}\t{:.6}\n",
                v.value_iterated_to(),
                v.quantile_iterated_to()
            ));
        }
        std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The percentiles against a sort of the same overheads, with the early ones at zero.
    #[test]
    fn percentiles_match_a_sorted_reference() {
        let mut l = Latency::new();
        let mut reference = Vec::new();
        let mut x = 12345u64;
        for i in 0..20_000u64 {
            // xorshift: overheads from -50 to ~2000 ms, heavier near the bottom.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let overhead = (x % 2050) as i64 * (x % 3) as i64 / 2 - 50;
            let event = 1_800_000_000_000 + i;
            l.record(event as i64 + 2000 + overhead, event, 2000);
            reference.push(overhead.max(0) as u64);
        }
        reference.sort_unstable();
        let early = reference.iter().take_while(|&&v| v == 0).count() as u64;
        assert!(l.early > 0 && l.early <= early);
        for q in [0.5, 0.9, 0.99, 0.999] {
            let want = reference[((q * reference.len() as f64).ceil() as usize).max(1) - 1];
            let got = l.at(q);
            // Three significant digits: within 0.1% (and 1 ms) of the exact value.
            let slack = (want / 1000).max(1);
            assert!(
                got.abs_diff(want) <= slack,
                "q {q}: histogram {got} ms, sorted {want} ms"
            );
        }
        assert_eq!(l.histogram.len(), 20_000);
    }
}
