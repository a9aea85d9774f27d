//! The restore benchmark: how long an exactly-once pipeline takes at start to read its state
//! back from the committed output, with a given number of live ids. Writes that many events
//! to an output topic as the ordered sink would (key = id, the `tidemark-event-time` header,
//! in one committed transaction per batch), then times the restore that a restart would run.

use crate::kafka::ClusterConfig;
use crate::metrics::Metrics;
use crate::runtime::SplitMix;
use crate::sinks::restore::{restore, RestorePlan};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::time::{Duration, Instant};

/// Options of `tidemark bench-restore`.
#[derive(Debug, Clone, clap::Args)]
pub struct RestoreOptions {
    /// Bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:19092")]
    pub bootstrap: String,
    /// Live ids to write and restore.
    #[arg(long, default_value_t = 1_000_000)]
    pub ids: u64,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// The topic (created when missing; by default named after --ids). Runs against an
    /// existing topic without writing when --no-write is given.
    #[arg(long)]
    pub topic: Option<String>,
    /// Only time the restore of what the topic already holds.
    #[arg(long)]
    pub no_write: bool,
    /// Bytes per event payload.
    #[arg(long, default_value_t = 300)]
    pub payload_bytes: usize,
    /// Also measure the other design: the same ids as a compact state topic (24 bytes an id,
    /// packed 10,000 to a record), written and read back.
    #[arg(long)]
    pub compact: bool,
}

/// Ids per record of the compact state topic.
const PACKED: u64 = 10_000;

/// Writes the ids (unless `--no-write`), restores them, and prints the figures.
pub fn run(o: &RestoreOptions) -> anyhow::Result<()> {
    let cluster = crate::kafka::tool_cluster(&o.bootstrap)?;
    let topic = o
        .topic
        .clone()
        .unwrap_or_else(|| format!("tidemark-bench-restore-{}", o.ids));
    // A horizon that covers every id written: event times span the last minute.
    let horizon_ms = 600_000;
    if !o.no_write {
        create(&cluster, &topic, o.partitions)?;
        let started = Instant::now();
        write(&cluster, &topic, o)?;
        println!(
            "wrote {} events to {topic} in {:.1} s",
            o.ids,
            started.elapsed().as_secs_f64()
        );
    }
    let plan = RestorePlan {
        events: vec![("bench".into(), topic.clone(), &cluster)],
        invalid: Vec::new(),
        horizon_ms,
        future_skew_ms: 600_000,
        group: format!("{topic}-restore"),
    };
    let metrics = Metrics::new();
    let rss_before = crate::runtime::rss_bytes().unwrap_or(0);
    let (restored, stats) = restore(&plan, &metrics)?;
    let secs = stats.elapsed.as_secs_f64();
    let records: u64 = stats.records.iter().map(|(_, n)| n).sum();
    let held = crate::runtime::rss_bytes()
        .unwrap_or(0)
        .saturating_sub(rss_before);
    println!(
        "restored {} ids from {records} records in {secs:.2} s ({:.0} records/s), {:.1} MiB held",
        restored.id_count(),
        records as f64 / secs.max(1e-9),
        held as f64 / f64::from(1 << 20)
    );
    if o.compact {
        // A topic of its own each time, so a run with --no-write does not read an earlier
        // run's ids as well.
        let state = format!("{topic}-compact-{}", crate::runtime::wall_ms());
        compact(&cluster, &state, o)?;
    }
    Ok(())
}

/// The state-topic design: every id as (hash high, hash low, remembered value), 24 bytes,
/// packed into records of [`PACKED`]; written in one transaction per 100 records, then read
/// back and decoded, timed.
fn compact(cluster: &ClusterConfig, topic: &str, o: &RestoreOptions) -> anyhow::Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    use rdkafka::Message;
    create(cluster, topic, o.partitions)?;
    let producer: BaseProducer =
        crate::kafka::transactional_producer(cluster, &format!("tidemark-bench-state-{topic}"))
            .create()?;
    producer.init_transactions(Duration::from_secs(30))?;
    producer.begin_transaction()?;
    let mut rng = SplitMix(o.ids);
    let started = Instant::now();
    let mut buf = Vec::with_capacity(PACKED as usize * 24);
    let mut records = 0u64;
    for i in 0..o.ids {
        let h = rng.next_u128();
        for word in [(h >> 64) as u64, h as u64, i] {
            buf.extend_from_slice(&word.to_le_bytes());
        }
        if (i + 1) % PACKED == 0 || i + 1 == o.ids {
            let record = BaseRecord::<str, [u8]>::to(topic)
                .payload(&buf)
                .partition((records % o.partitions.max(1) as u64) as i32);
            crate::kafka::send_when_room(&producer, record)?;
            buf.clear();
            records += 1;
            if records % 100 == 0 {
                producer.commit_transaction(Duration::from_secs(60))?;
                producer.begin_transaction()?;
            }
        }
    }
    producer.commit_transaction(Duration::from_secs(60))?;
    let wrote = started.elapsed().as_secs_f64();
    let consumer: BaseConsumer = crate::kafka::consumer(cluster, "tidemark-bench-state")
        .set("fetch.max.bytes", "104857600")
        .set("max.partition.fetch.bytes", "26214400")
        .create()?;
    let started = Instant::now();
    let mut tpl = TopicPartitionList::new();
    for p in 0..o.partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut ids: Vec<[u64; 3]> = Vec::with_capacity(o.ids as usize);
    let mut open = o.partitions;
    let deadline = Instant::now() + Duration::from_secs(300);
    while open > 0 && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                for c in m.payload().unwrap_or(&[]).chunks_exact(24) {
                    let w = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().expect("8"));
                    ids.push([w(0), w(8), w(16)]);
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => open -= 1,
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "state topic: wrote {} ids ({:.0} MiB) in {wrote:.1} s; restored {} ids in {secs:.2} s ({:.0} ids/s)",
        o.ids,
        (o.ids * 24) as f64 / f64::from(1 << 20),
        ids.len(),
        ids.len() as f64 / secs.max(1e-9)
    );
    Ok(())
}

fn create(cluster: &ClusterConfig, topic: &str, partitions: i32) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = crate::kafka::admin(cluster).create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let wait = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in rt.block_on(admin.create_topics([&new], &wait))? {
        if let Err((t, code)) = r {
            anyhow::ensure!(
                code == rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                "create {t}: {code}"
            );
        }
    }
    Ok(())
}

/// Writes `o.ids` events in transactions of 100,000, as the ordered sink would.
fn write(cluster: &ClusterConfig, topic: &str, o: &RestoreOptions) -> anyhow::Result<()> {
    let producer: BaseProducer =
        crate::kafka::transactional_producer(cluster, &format!("tidemark-bench-restore-{topic}"))
            .create()?;
    producer.init_transactions(Duration::from_secs(30))?;
    let mut rng = SplitMix(o.ids);
    let now = crate::runtime::wall_ms();
    let mut buf = Vec::new();
    producer.begin_transaction()?;
    for i in 0..o.ids {
        let id = rng.next_u128();
        let time = now - 60_000 + i * 60_000 / o.ids.max(1);
        crate::event::sample::generate_event(&mut buf, id, time, "region-a", 1, o.payload_bytes);
        let key = format!("{id:032x}");
        let time_text = time.to_string();
        let headers = OwnedHeaders::new().insert(Header {
            key: "tidemark-event-time",
            value: Some(time_text.as_bytes()),
        });
        let record = BaseRecord::<str, [u8]>::to(topic)
            .key(&key)
            .payload(&buf)
            .headers(headers)
            .partition((i % o.partitions.max(1) as u64) as i32);
        crate::kafka::send_when_room(&producer, record)?;
        if (i + 1) % 100_000 == 0 {
            producer.commit_transaction(Duration::from_secs(60))?;
            producer.begin_transaction()?;
        }
    }
    producer.commit_transaction(Duration::from_secs(60))?;
    Ok(())
}
