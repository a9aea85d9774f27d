//! S0 of the side-by-side benchmarks: the physical floor of this machine's Kafka path. Every
//! record of a topic is consumed and its bytes produced, unparsed, to another topic (same key,
//! partition `p % partitions`), with the same client settings the pipeline uses. Nothing a
//! stream processor does can be faster than this on the same brokers.

use crate::config::ClusterConfig;
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

/// Copies `from` to `to` once and reports the rate.
pub fn floor(o: &FloorOptions) -> Result<Floor, KafkaError> {
    let cluster = ClusterConfig::at(&o.bootstrap);
    crate::kafka::ensure_topic(&cluster, &o.from, &o.to, 1)?;
    let consumer: BaseConsumer<crate::kafka::Quiet> =
        crate::kafka::consumer(&cluster, "tidemark-floor")
            .create_with_context(crate::kafka::Quiet)?;
    let out_parts = {
        let md = consumer.fetch_metadata(Some(&o.to), Duration::from_secs(10))?;
        md.topics()
            .first()
            .map_or(1, |t| t.partitions().len().max(1)) as i32
    };
    let md = consumer.fetch_metadata(Some(&o.from), Duration::from_secs(10))?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut pending = BTreeMap::new();
    for t in md.topics().iter().filter(|t| t.name() == o.from) {
        for p in t.partitions() {
            let (low, high) =
                consumer.fetch_watermarks(&o.from, p.id(), Duration::from_secs(10))?;
            tpl.add_partition_offset(&o.from, p.id(), rdkafka::Offset::Offset(low))?;
            if high > low {
                pending.insert(p.id(), high);
            }
        }
    }
    consumer.assign(&tpl)?;
    let producer: BaseProducer<crate::kafka::DeliveryCount> = crate::kafka::producer(&cluster)
        .create_with_context(crate::kafka::DeliveryCount::default())?;
    let mut f = Floor::default();
    let mut started = None;
    let deadline = Instant::now() + Duration::from_secs(1800);
    while !pending.is_empty() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                started.get_or_insert_with(Instant::now);
                let payload = m.payload().unwrap_or_default();
                let key = m.key().unwrap_or_default();
                f.records += 1;
                f.bytes += (payload.len() + key.len()) as u64;
                let record = BaseRecord::to(&o.to)
                    .partition(m.partition() % out_parts)
                    .key(key)
                    .payload(payload);
                crate::kafka::send_when_room(&producer, record)?;
                producer.poll(Duration::ZERO);
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
    f.seconds = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    let acks = producer.context();
    let failed = acks.failed.load(Ordering::Relaxed);
    if failed > 0 || acks.delivered.load(Ordering::Relaxed) != f.records {
        return Err(KafkaError::ClientCreation(format!(
            "{failed} of {} copies failed to deliver",
            f.records
        )));
    }
    Ok(f)
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
