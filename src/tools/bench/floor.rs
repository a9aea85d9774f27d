//! S0 of the side-by-side benchmarks: the physical floor of this machine's Kafka path. Every
//! record of a topic is consumed and its bytes produced, unparsed, to another topic (same key,
//! partition `p % partitions`), with the same client settings the pipeline uses. Nothing a
//! stream processor does can be faster than this on the same brokers.

use crate::kafka::ClusterConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Options of `tidemark bench-floor`.
#[derive(Debug, Clone, clap::Args)]
pub struct FloorOptions {
    /// Bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:19092")]
    pub bootstrap: String,
    /// The topic to read, from its start to the end offsets seen at start.
    #[arg(long, default_value = "log-events")]
    pub from: String,
    /// The topic to write (created like `--from` when missing).
    #[arg(long, default_value = "log-events-floor")]
    pub to: String,
    /// Copier threads, each with its own consumer and producer (tidemark's S2 runs 2 workers).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// What a floor run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Floor {
    /// Records copied.
    pub records: u64,
    /// Payload and key bytes copied.
    pub bytes: u64,
    /// From the first record read to the last delivery report.
    pub seconds: f64,
}

/// Copies `from` to `to` once, on `--threads` threads (each with its own consumer and producer
/// and a share of the partitions, as tidemark's workers have), and reports the rate.
pub fn floor(o: &FloorOptions) -> Result<Floor, KafkaError> {
    let cluster = crate::kafka::tool_cluster(&o.bootstrap)?;
    crate::kafka::ensure_topic(&cluster, &o.from, &o.to, 1)?;
    let threads = o.threads.max(1);
    type Share = Result<(Floor, Option<(Instant, Instant)>), KafkaError>;
    let results: Vec<Share> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let cluster = &cluster;
                scope.spawn(move || copy_share(o, cluster, i, threads))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(KafkaError::ClientCreation("a copier panicked".into())))
            })
            .collect()
    });
    let mut f = Floor::default();
    let mut span: Option<(Instant, Instant)> = None;
    for r in results {
        let (share, s) = r?;
        f.records += share.records;
        f.bytes += share.bytes;
        if let Some((a, b)) = s {
            span = Some(span.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
        }
    }
    // From the first record read by any thread to the last delivery report of any thread.
    f.seconds = span.map_or(0.0, |(a, b)| (b - a).as_secs_f64());
    Ok(f)
}

/// One thread's share: partitions `p % threads == index`. Returns its counts and, if it copied
/// anything, when it read its first record and when its last delivery report came.
fn copy_share(
    o: &FloorOptions,
    cluster: &ClusterConfig,
    index: usize,
    threads: usize,
) -> Result<(Floor, Option<(Instant, Instant)>), KafkaError> {
    let consumer: BaseConsumer<crate::kafka::Quiet> =
        crate::kafka::consumer(cluster, "tidemark-floor")
            .create_with_context(crate::kafka::Quiet)?;
    let out_parts = {
        let md = consumer.fetch_metadata(Some(&o.to), Duration::from_secs(10))?;
        md.topics()
            .first()
            .map_or(1, |t| t.partitions().len().max(1)) as i32
    };
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut pending = BTreeMap::new();
    for (p, low, high) in crate::kafka::partition_offsets(&consumer, &o.from)? {
        if p as usize % threads != index {
            continue;
        }
        tpl.add_partition_offset(&o.from, p, rdkafka::Offset::Offset(low))?;
        if high > low {
            pending.insert(p, high);
        }
    }
    let mut f = Floor::default();
    let mut started = Instant::now();
    if pending.is_empty() {
        return Ok((f, None));
    }
    consumer.assign(&tpl)?;
    let producer: BaseProducer<crate::kafka::DeliveryCount> = crate::kafka::producer(cluster)
        .create_with_context(crate::kafka::DeliveryCount::default())?;
    let mut first = true;
    let deadline = Instant::now() + Duration::from_secs(1800);
    while !pending.is_empty() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if first {
                    started = Instant::now();
                    first = false;
                }
                let payload = m.payload().unwrap_or_default();
                let key = m.key().unwrap_or_default();
                f.records += 1;
                f.bytes += (payload.len() + key.len()) as u64;
                let record = BaseRecord::to(&o.to)
                    .partition(m.partition() % out_parts)
                    .key(key)
                    .payload(payload);
                crate::kafka::send_when_room(&producer, record)?;
                // Serve delivery reports now and then, not per record.
                if f.records % 1024 == 0 {
                    producer.poll(Duration::ZERO);
                }
                if pending
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() + 1 >= *end)
                {
                    pending.remove(&m.partition());
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    producer.flush(Duration::from_secs(150))?;
    let done = Instant::now();
    let acks = producer.context();
    let failed = acks.failed.load(Ordering::Relaxed);
    if failed > 0 || acks.delivered.load(Ordering::Relaxed) != f.records {
        return Err(KafkaError::ClientCreation(format!(
            "{failed} of {} copies failed to deliver",
            f.records
        )));
    }
    Ok((f, (f.records > 0).then_some((started, done))))
}

/// Runs `tidemark bench-floor` and prints one line of figures.
pub fn run(o: &FloorOptions) -> Result<(), KafkaError> {
    let f = floor(o)?;
    println!(
        "floor: {} records, {:.1} MB in {:.2} s: {:.0} records/s, {:.1} MB/s",
        f.records,
        f.bytes as f64 / 1e6,
        f.seconds,
        f.records as f64 / f.seconds.max(1e-9),
        f.bytes as f64 / 1e6 / f.seconds.max(1e-9)
    );
    Ok(())
}
