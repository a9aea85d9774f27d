//! Following MirrorMaker 2's replicated heartbeats, to know whether a replication link is up.
//!
//! MM2 writes a heartbeat every second into the `heartbeats` topic of each cluster it writes to,
//! and the reverse flow replicates that topic across as `<region>.heartbeats`. A record there
//! has crossed the same link as the remote events, and keeps the timestamp it was given in the
//! region it came from. So the newest one says how far behind the link is, and when none has
//! arrived for a while the link is down: a split brain.

use super::kafka::KafkaSource;
use super::SourceError;
use crate::kafka::ClusterConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;
use std::time::Duration;

/// How often to look again for a heartbeats topic that does not exist yet (MM2 creates it when
/// it first replicates).
const RETRY_MS: u64 = 5_000;

/// The heartbeats of one replication link, read without blocking.
pub struct LinkWatch {
    /// The region the link replicates from.
    pub from: String,
    /// The cluster the remote topic lives in.
    pub to: String,
    topic: String,
    consumer: BaseConsumer<crate::kafka::Quiet>,
    assigned: bool,
    next_try_ms: u64,
    newest: Option<u64>,
}

impl LinkWatch {
    /// A watch for the link `source` (a replicated Kafka source) reads across.
    pub fn open(
        node: &str,
        source: &KafkaSource,
        cluster: &ClusterConfig,
    ) -> Result<Option<LinkWatch>, SourceError> {
        let (Some(from), Some(topic)) = (source.replicated_from.clone(), source.heartbeats())
        else {
            return Ok(None);
        };
        let mut config = crate::kafka::consumer(cluster, "tidemark-heartbeats");
        // Heartbeats are read from the newest on and never committed: only the freshest matters.
        config.set("auto.offset.reset", "latest");
        let consumer = config
            .create_with_context(crate::kafka::Quiet)
            .map_err(|e| SourceError::Kafka {
                node: node.into(),
                what: format!("create heartbeat consumer for {topic}"),
                source: e,
            })?;
        Ok(Some(LinkWatch {
            from,
            to: source.cluster.clone(),
            topic,
            consumer,
            assigned: false,
            next_try_ms: 0,
            newest: None,
        }))
    }

    /// Reads the heartbeats that have arrived and returns the newest heartbeat's timestamp (ms,
    /// stamped in the region it came from), if one was ever seen.
    pub fn poll(&mut self, now: u64) -> Option<u64> {
        if !self.assigned && now >= self.next_try_ms {
            self.next_try_ms = now + RETRY_MS;
            self.assign();
        }
        if self.assigned {
            // Bounded: heartbeats come once a second, so this drains in one or two rounds.
            for _ in 0..1_000 {
                match self.consumer.poll(Duration::ZERO) {
                    Some(Ok(m)) => {
                        if let Some(t) = m
                            .timestamp()
                            .to_millis()
                            .and_then(|t| u64::try_from(t).ok())
                        {
                            self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
                        }
                    }
                    Some(Err(_)) => {}
                    None => break,
                }
            }
        }
        self.newest
    }

    /// Assigns every partition of the heartbeats topic from its last record, once it exists.
    fn assign(&mut self) {
        // Short: this runs on a worker thread, and only until the topic appears.
        let Ok(md) = self
            .consumer
            .fetch_metadata(Some(&self.topic), Duration::from_millis(500))
        else {
            return;
        };
        let Some(t) = md
            .topics()
            .iter()
            .find(|t| t.name() == self.topic && t.error().is_none())
        else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for p in t.partitions() {
            // The last heartbeat already there tells how old the link's state is at start.
            if tpl
                .add_partition_offset(&self.topic, p.id(), Offset::OffsetTail(1))
                .is_err()
            {
                return;
            }
        }
        if tpl.count() > 0 && self.consumer.assign(&tpl).is_ok() {
            self.assigned = true;
            tracing::info!(topic = %self.topic, from = %self.from, to = %self.to, "following replicated heartbeats");
        }
    }
}

/// A replicated source whose partitions follow a link's heartbeats.
pub struct LinkSpec {
    /// The source node.
    pub node: String,
    /// Its heartbeats.
    pub watch: LinkWatch,
    /// The source's `link_timeout`, ms.
    pub timeout: u64,
}
