//! The Kafka reader the tools share: `verify`, `late-report`, `reconcile`, the benchmarks and
//! the tests read a topic from its first record to the end it had when they started.

use std::collections::BTreeMap;
use std::time::Duration;

/// A record read back: partition, payload, headers.
pub type ReadRecord = (i32, Vec<u8>, BTreeMap<String, String>);

/// Reads every record of `topic` up to its current end.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
) -> Result<Vec<ReadRecord>, rdkafka::error::KafkaError> {
    use rdkafka::Message;
    read_topic_with(bootstrap, topic, |m| {
        let headers = crate::kafka::headers_of(m);
        (m.partition(), m.payload().unwrap_or(&[]).to_vec(), headers)
    })
}

/// Reads every record of `topic` up to its current end, keeping what `keep` takes of each.
pub fn read_topic_with<T>(
    bootstrap: &str,
    topic: &str,
    mut keep: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> T,
) -> Result<Vec<T>, rdkafka::error::KafkaError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let cluster = crate::kafka::tool_cluster(bootstrap)?;
    let consumer: BaseConsumer<crate::kafka::Quiet> =
        crate::kafka::consumer(&cluster, "tidemark-read")
            .create_with_context(crate::kafka::Quiet)?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut remaining = 0usize;
    let denied = |e, operation| crate::kafka::named_denial(e, &cluster.name, operation, topic);
    let offsets =
        crate::kafka::partition_offsets(&consumer, topic).map_err(|e| denied(e, "Describe"))?;
    for (p, low, high) in offsets {
        if high > low {
            tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(low))?;
            remaining += 1;
        }
    }
    let mut out = Vec::new();
    if remaining == 0 {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while remaining > 0 && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(keep(&m)),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => remaining -= 1,
            Some(Err(e)) => return Err(denied(e, "Read")),
            None => {}
        }
    }
    Ok(out)
}
