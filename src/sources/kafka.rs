//! Kafka partitions, read with manual assignment: the group stores offsets and nothing else.

use super::heartbeat::{LinkSpec, LinkWatch};
use super::{Polled, ReadOptions, SourceContext, SourceError, SourceNode, SplitReader};
use crate::component::{CheckContext, Component, Errors, Millis};
use crate::event::{SplitSource, Splits};
use crate::kafka::ClusterConfig;
use crate::metrics::Metrics;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientContext, Message};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries of a start-up lookup that timed out. A group coordinator that is still loading, or a
/// broker busy with a restart or a DeleteRecords, can take longer than one timeout to answer;
/// three tries give it 30 s before the start fails.
const LOOKUP_TRIES: u32 = 3;

/// Runs a start-up lookup, trying again when it timed out (and only then: any other error is
/// the answer).
fn lookup<T>(what: &str, mut ask: impl FnMut() -> Result<T, KafkaError>) -> Result<T, KafkaError> {
    let mut tries = 1;
    loop {
        match ask() {
            Err(e) if tries < LOOKUP_TRIES && timed_out(&e) => {
                tracing::warn!(what, error = %e, tries, "lookup timed out; trying again");
                tries += 1;
            }
            other => return other,
        }
    }
}

fn timed_out(e: &KafkaError) -> bool {
    e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::OperationTimedOut)
}

/// Where a Kafka source starts when its group has no committed offset.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// The oldest retained record.
    #[default]
    Earliest,
    /// Only records written after the start.
    Latest,
}

/// What a Kafka source does when records it was still to read are gone (an offset out of
/// range: retention deleted them while the pipeline was stopped or behind, or the topic was
/// recreated). Either way the gap is logged as an error and counted in
/// `tidemark_source_gap_records_total`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnGap {
    /// Read on from the oldest record still there.
    #[default]
    Continue,
    /// Stop the job with the gap's range.
    Fail,
}

/// Kafka topics, every partition, assigned to workers deterministically.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSource {
    /// A name from `[clusters]`.
    pub cluster: String,
    /// Topics to read.
    pub topics: Vec<String>,
    /// The region where these events were produced (the `tidemark-region` header). A remote
    /// topic's events come from the region they are replicated from, so with `replicated_from`
    /// this may be left out.
    pub region: Option<String>,
    /// Set when the topics are MirrorMaker 2 remote topics replicated from that region. The
    /// source then follows MM2's replicated heartbeats from it to know whether the link is up.
    pub replicated_from: Option<String>,
    /// The MM2 heartbeats topic that crossed the same link; by default
    /// `<replicated_from>.heartbeats` (MM2's default replication policy).
    pub heartbeats_topic: Option<String>,
    /// The link is down when the newest replicated heartbeat is older than this. It must be
    /// shorter than the watermark's `idle_timeout`, so a split is seen before the remote
    /// partitions could count as idle.
    #[serde(default = "default_link_timeout")]
    pub link_timeout: Millis,
    /// Consumer group used only to store offsets (never to assign partitions).
    pub group_id: Option<String>,
    /// Where to start without a committed offset.
    #[serde(default)]
    pub start_from: StartFrom,
    /// What to do when records still to read are gone (see [`OnGap`]).
    #[serde(default)]
    pub on_gap: OnGap,
}

fn default_link_timeout() -> Millis {
    Millis(3_000)
}

impl KafkaSource {
    /// The heartbeats topic to follow, for a replicated source.
    pub fn heartbeats(&self) -> Option<String> {
        let from = self.replicated_from.as_ref()?;
        Some(
            self.heartbeats_topic
                .clone()
                .unwrap_or_else(|| format!("{from}.heartbeats")),
        )
    }
}

impl Component for KafkaSource {
    fn check(&self, cx: &CheckContext<'_>, errors: &mut Errors<'_>) {
        if (self.region.is_some() || self.replicated_from.is_some())
            && self.region().trim().is_empty()
        {
            errors.field("region", "must not be empty");
        }
        cx.cluster(&self.cluster, errors);
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            errors.field("topics", "needs at least one non-empty topic");
        }
        match (&self.region, &self.replicated_from) {
            (None, None) => errors.field(
                "region",
                "missing: set the region the events were produced in (or replicated_from for a remote topic)",
            ),
            (Some(r), Some(from)) if r != from => errors.field(
                "replicated_from",
                format!("is \"{from}\" but region is \"{r}\": a remote topic's events were produced in the region they are replicated from"),
            ),
            _ => {}
        }
        if self.replicated_from.is_none() {
            if self.heartbeats_topic.is_some() {
                errors.field("heartbeats_topic", "needs replicated_from");
            }
            if self.link_timeout != default_link_timeout() {
                errors.field("link_timeout", "needs replicated_from");
            }
        } else if self.link_timeout.0 == 0 {
            errors.field("link_timeout", "must be above zero");
        }
    }
}

impl SourceNode for KafkaSource {
    fn region(&self) -> &str {
        self.region
            .as_deref()
            .or(self.replicated_from.as_deref())
            .unwrap_or_default()
    }

    fn plan(
        &self,
        node: &str,
        cx: &SourceContext<'_>,
        splits: &mut Splits,
    ) -> Result<(), SourceError> {
        let cluster = &cx.clusters[&self.cluster];
        for topic in &self.topics {
            for partition in partitions(node, &self.cluster, cluster, topic)? {
                let i = splits.push(
                    node,
                    self.region(),
                    SplitSource::Kafka {
                        cluster: self.cluster.clone(),
                        topic: topic.clone(),
                        partition,
                    },
                );
                splits.splits[i as usize].replicated_from = self.replicated_from.clone();
            }
        }
        Ok(())
    }

    fn open(
        &self,
        node: &str,
        cx: &SourceContext<'_>,
        splits: &Splits,
        owned: &[u32],
    ) -> Result<Box<dyn SplitReader>, SourceError> {
        let group = self
            .group_id
            .clone()
            .unwrap_or_else(|| cx.default_group.clone());
        Ok(Box::new(KafkaReader::open(
            node,
            self,
            &cx.clusters[&self.cluster],
            &group,
            splits,
            owned,
            &cx.read,
            cx.metrics,
        )?))
    }

    fn link(&self, node: &str, cx: &SourceContext<'_>) -> Result<Option<LinkSpec>, SourceError> {
        let watch = LinkWatch::open(node, self, &cx.clusters[&self.cluster])?;
        Ok(watch.map(|watch| LinkSpec {
            node: node.into(),
            watch,
            timeout: self.link_timeout.0,
        }))
    }

    fn label(&self) -> String {
        format!("kafka {}:{}", self.cluster, self.topics.join(","))
    }
}

/// Partition ids of `topic`, sorted.
fn partitions(
    node: &str,
    cluster_name: &str,
    cluster: &ClusterConfig,
    topic: &str,
) -> Result<Vec<i32>, SourceError> {
    let err = |what: &str| {
        let what = what.to_string();
        move |source| SourceError::Kafka {
            node: node.into(),
            what,
            source,
        }
    };
    let consumer: BaseConsumer<crate::kafka::Quiet> =
        crate::kafka::consumer(cluster, "tidemark-metadata")
            .create_with_context(crate::kafka::Quiet)
            .map_err(err("create client"))?;
    let md = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(err(&format!("metadata for {topic}")))?;
    let t = md.topics().iter().find(|t| t.name() == topic);
    let mut ids: Vec<i32> = match t {
        Some(t) if t.error().is_none() => t.partitions().iter().map(|p| p.id()).collect(),
        _ => Vec::new(),
    };
    if ids.is_empty() {
        return Err(SourceError::MissingTopic {
            node: node.into(),
            cluster: cluster_name.into(),
            topic: topic.into(),
        });
    }
    ids.sort_unstable();
    Ok(ids)
}

/// What the client's callbacks saw of the brokers since the reader last looked. Each callback
/// replaces what an earlier one said, so the newest word stands.
struct Seen {
    /// A transport error: any partition of the consumer may be cut off.
    lost: bool,
    /// From the newest statistics: each partition, and whether its leader is up and it is
    /// being fetched.
    partitions: Vec<(i32, bool)>,
}

/// Publishes per-partition consumer lag from librdkafka's statistics, and notes which
/// partitions' brokers can be reached (a consumer reads one topic).
pub(crate) struct LagContext {
    cluster: String,
    metrics: Metrics,
    seen: std::sync::Mutex<Option<Seen>>,
}

impl LagContext {
    fn note(&self, seen: Seen) {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(seen);
    }

    fn take(&self) -> Option<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl ClientContext for LagContext {
    fn error(&self, error: KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode::{AllBrokersDown, BrokerTransportFailure};
        if matches!(
            error.rdkafka_error_code(),
            Some(AllBrokersDown | BrokerTransportFailure)
        ) {
            self.note(Seen {
                lost: true,
                partitions: Vec::new(),
            });
        }
        crate::kafka::log_client_error(&error, reason);
    }

    fn stats(&self, stats: Statistics) {
        let up: Vec<i32> = stats
            .brokers
            .values()
            .filter(|b| b.state == "UP")
            .map(|b| b.nodeid)
            .collect();
        let mut partitions = Vec::new();
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                // -1 is the internal UA partition.
                if *partition < 0 || !p.desired {
                    continue;
                }
                let reachable = p.fetch_state == "active" && up.contains(&p.leader);
                partitions.push((*partition, reachable));
                // A negative lag means "not known yet".
                if p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[&self.cluster, topic, &partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
        self.note(Seen {
            lost: false,
            partitions,
        });
    }
}

impl ConsumerContext for LagContext {}

struct Owned {
    split: u32,
    partition: i32,
    /// Bounded mode: the high watermark taken at start.
    end: Option<i64>,
    finished: bool,
    /// Its leader could be reached when the client last said.
    reachable: bool,
    /// The next offset to read: where a gap begins if the broker says it is out of range.
    next: i64,
}

/// The partitions of one topic that one worker owns.
struct TopicReader {
    topic: String,
    consumer: BaseConsumer<LagContext>,
    /// Indexed by partition id.
    by_partition: Vec<Option<usize>>,
    owned: Vec<Owned>,
    /// Finished splits not yet reported.
    report: Vec<u32>,
}

/// Reads the owned partitions of one Kafka source node.
pub(super) struct KafkaReader {
    node: String,
    cluster: String,
    topics: Vec<TopicReader>,
    metrics: Metrics,
    on_gap: OnGap,
}

impl KafkaReader {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn open(
        node: &str,
        source: &KafkaSource,
        cluster: &ClusterConfig,
        group: &str,
        splits: &Splits,
        owned: &[u32],
        options: &ReadOptions,
        metrics: &Metrics,
    ) -> Result<KafkaReader, SourceError> {
        let mut topics = Vec::new();
        for topic in &source.topics {
            let mine: Vec<(u32, i32)> = owned
                .iter()
                .filter_map(|&s| match &splits.get(s).source {
                    SplitSource::Kafka {
                        topic: t,
                        partition,
                        ..
                    } if t == topic => Some((s, *partition)),
                    _ => None,
                })
                .collect();
            if mine.is_empty() {
                continue;
            }
            topics.push(open_topic(
                node,
                &source.cluster,
                cluster,
                group,
                topic,
                (source.start_from, source.on_gap),
                &mine,
                options,
                metrics,
            )?);
        }
        Ok(KafkaReader {
            node: node.into(),
            cluster: source.cluster.clone(),
            topics,
            metrics: metrics.clone(),
            on_gap: source.on_gap,
        })
    }
}

/// Records a source was still to read that are gone: offsets `from` (inclusive) to `to`, the
/// oldest there now.
struct Gap<'a> {
    node: &'a str,
    topic: &'a str,
    partition: i32,
    from: i64,
    to: i64,
}

impl Gap<'_> {
    /// Logs and counts the gap; an error when the source's `on_gap` is `fail`.
    fn report(&self, on_gap: OnGap, metrics: &Metrics) -> Result<(), SourceError> {
        let skipped = (self.to - self.from).max(0);
        metrics
            .source_gap
            .with_label_values(&[self.node, self.topic, &self.partition.to_string()])
            .inc_by(skipped as u64);
        tracing::error!(
            source = self.node,
            topic = self.topic,
            partition = self.partition,
            from = self.from,
            to = self.to,
            skipped,
            ?on_gap,
            "records still to read are gone (retention deleted them, or the topic was recreated)"
        );
        match on_gap {
            OnGap::Continue => Ok(()),
            OnGap::Fail => Err(SourceError::Gap {
                node: self.node.into(),
                topic: self.topic.into(),
                partition: self.partition,
                from: self.from,
                to: self.to,
            }),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn open_topic(
    node: &str,
    cluster_name: &str,
    cluster: &ClusterConfig,
    group: &str,
    topic: &str,
    (start_from, on_gap): (StartFrom, OnGap),
    mine: &[(u32, i32)],
    options: &ReadOptions,
    metrics: &Metrics,
) -> Result<TopicReader, SourceError> {
    let err = |what: String| {
        move |source| SourceError::Kafka {
            node: node.into(),
            what,
            source,
        }
    };
    let context = LagContext {
        cluster: cluster_name.into(),
        metrics: metrics.clone(),
        seen: std::sync::Mutex::new(None),
    };
    let consumer: BaseConsumer<LagContext> = crate::kafka::source_consumer(cluster, group)
        .create_with_context(context)
        .map_err(err("create consumer".into()))?;
    let mut query = TopicPartitionList::new();
    for &(_, p) in mine {
        query.add_partition(topic, p);
    }
    let what = format!("committed offsets of {topic}");
    let committed = lookup(&what, || {
        consumer.committed_offsets(query.clone(), METADATA_TIMEOUT)
    })
    .map_err(err(what))?;
    let mut assignment = TopicPartitionList::new();
    let mut owned = Vec::new();
    let mut by_partition = Vec::new();
    let mut report = Vec::new();
    for &(split, partition) in mine {
        let stored = committed
            .find_partition(topic, partition)
            .map(|e| e.offset())
            .unwrap_or(Offset::Invalid);
        let what = format!("end offsets of {topic}/{partition}");
        let (low, high) = lookup(&what, || {
            consumer.fetch_watermarks(topic, partition, METADATA_TIMEOUT)
        })
        .map_err(err(what))?;
        let start = match stored {
            Offset::Offset(n) if n >= low => n,
            // The committed offset is gone: retention deleted what was still to read.
            Offset::Offset(n) => {
                let gap = Gap {
                    node,
                    topic,
                    partition,
                    from: n,
                    to: low,
                };
                gap.report(on_gap, metrics)?;
                low
            }
            _ => match start_from {
                StartFrom::Earliest => low,
                StartFrom::Latest => high,
            },
        };
        let end = options.bounded.then_some(high);
        let finished = end.is_some_and(|e| start >= e);
        if finished {
            report.push(split);
        } else {
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(start))
                .map_err(err("assignment".into()))?;
        }
        let idx = owned.len();
        if by_partition.len() <= partition as usize {
            by_partition.resize(partition as usize + 1, None);
        }
        by_partition[partition as usize] = Some(idx);
        owned.push(Owned {
            split,
            partition,
            end,
            finished,
            reachable: true,
            next: start,
        });
        tracing::debug!(node, topic, partition, start, ?end, "assigned");
    }
    consumer
        .assign(&assignment)
        .map_err(err(format!("assign {topic}")))?;
    Ok(TopicReader {
        topic: topic.into(),
        consumer,
        by_partition,
        owned,
        report,
    })
}

impl TopicReader {
    /// Finds the partitions whose next offset is below their log start, reports each gap,
    /// and (with `on_gap = "continue"`) reads on from the log start. librdkafka stops fetching
    /// a partition whose offset was out of range and refuses to seek it, so the partitions are
    /// assigned again, each at its next offset (what was fetched and not yet read is fetched
    /// again: nothing is skipped or read twice).
    fn skip_gaps(
        &mut self,
        node: &str,
        on_gap: OnGap,
        metrics: &Metrics,
    ) -> Result<(), SourceError> {
        let err = |what: String| {
            move |source| SourceError::Kafka {
                node: node.into(),
                what,
                source,
            }
        };
        let mut gaps = false;
        for o in self.owned.iter_mut().filter(|o| !o.finished) {
            let (low, _) = self
                .consumer
                .fetch_watermarks(&self.topic, o.partition, METADATA_TIMEOUT)
                .map_err(err(format!(
                    "start offset of {}/{}",
                    self.topic, o.partition
                )))?;
            if o.next >= low {
                continue;
            }
            let gap = Gap {
                node,
                topic: &self.topic,
                partition: o.partition,
                from: o.next,
                to: low,
            };
            gap.report(on_gap, metrics)?;
            o.next = low;
            gaps = true;
        }
        if !gaps {
            // Another partition's report of a gap already handled.
            return Ok(());
        }
        let mut assignment = TopicPartitionList::new();
        for o in self.owned.iter().filter(|o| !o.finished) {
            assignment
                .add_partition_offset(&self.topic, o.partition, Offset::Offset(o.next))
                .map_err(err("assignment".into()))?;
        }
        self.consumer
            .assign(&assignment)
            .map_err(err(format!("assign {} past the gap", self.topic)))
    }

    /// Reports the partitions whose reachability changed since the client last said.
    fn reachability(&mut self, each: &mut dyn FnMut(Polled<'_>)) {
        let Some(seen) = self.consumer.context().take() else {
            return;
        };
        for o in self.owned.iter_mut().filter(|o| !o.finished) {
            let reachable = !seen.lost
                && seen
                    .partitions
                    .iter()
                    .find(|(p, _)| *p == o.partition)
                    .is_none_or(|(_, r)| *r);
            if reachable != o.reachable {
                o.reachable = reachable;
                tracing::info!(topic = %self.topic, partition = o.partition, reachable, "partition leader reachability");
                each(Polled::Reachable {
                    split: o.split,
                    reachable,
                });
            }
        }
    }

    fn finish(&mut self, idx: usize, each: &mut dyn FnMut(Polled<'_>)) {
        let o = &mut self.owned[idx];
        if o.finished {
            return;
        }
        o.finished = true;
        each(Polled::Finished { split: o.split });
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, o.partition);
        // Stop fetching what this bounded run will not read.
        let _ = self.consumer.pause(&tpl);
    }
}

impl SplitReader for KafkaReader {
    fn poll(
        &mut self,
        budget: usize,
        each: &mut dyn FnMut(Polled<'_>),
    ) -> Result<usize, SourceError> {
        let mut n = 0;
        for t in &mut self.topics {
            for split in t.report.drain(..) {
                each(Polled::Finished { split });
            }
            while n < budget {
                let Some(result) = t.consumer.poll(Duration::ZERO) else {
                    break;
                };
                match result {
                    Ok(msg) => {
                        let Some(idx) = t
                            .by_partition
                            .get(msg.partition() as usize)
                            .copied()
                            .flatten()
                        else {
                            continue;
                        };
                        let o = &mut t.owned[idx];
                        if o.finished {
                            continue;
                        }
                        let offset = msg.offset();
                        o.next = offset + 1;
                        each(Polled::Record {
                            split: o.split,
                            offset,
                            bytes: msg.payload().unwrap_or(&[]),
                            timestamp: msg.timestamp().to_millis(),
                        });
                        n += 1;
                        if o.end.is_some_and(|e| offset + 1 >= e) {
                            drop(msg);
                            t.finish(idx, each);
                        }
                    }
                    Err(KafkaError::PartitionEOF(p)) => {
                        let Some(idx) = t.by_partition.get(p as usize).copied().flatten() else {
                            continue;
                        };
                        let o = &t.owned[idx];
                        each(Polled::End { split: o.split });
                        // At EOF the position is the high watermark, which is at or past the end
                        // taken at start (control records can make offsets skip it).
                        if o.end.is_some() {
                            t.finish(idx, each);
                        }
                    }
                    Err(KafkaError::MessageConsumption(
                        rdkafka::types::RDKafkaErrorCode::AutoOffsetReset,
                    )) => {
                        // `auto.offset.reset = error`: a fetch was out of range. The error does
                        // not say which partition, so each is compared with its log start.
                        t.skip_gaps(&self.node, self.on_gap, &self.metrics)?;
                    }
                    Err(e) => {
                        let resource = format!("topic {}", t.topic);
                        let code = e.rdkafka_error_code();
                        if let Some(refusal) =
                            crate::kafka::not_authorized(&self.cluster, code, "Read", &resource)
                        {
                            // An ACL is not retried away: the job stops, saying which.
                            return Err(SourceError::Refused {
                                node: self.node.clone(),
                                refusal,
                            });
                        }
                        // Transport and leadership errors are retried inside librdkafka; they are
                        // reported, and the partitions simply deliver nothing meanwhile.
                        tracing::warn!(node = %self.node, topic = %t.topic, error = %e, "consumer error");
                        break;
                    }
                }
            }
            t.reachability(each);
        }
        Ok(n)
    }

    fn commit(&mut self, offsets: &[(u32, i64)], sync: bool) -> Result<(), SourceError> {
        for t in &self.topics {
            let mut tpl = TopicPartitionList::new();
            for &(split, next) in offsets {
                if let Some(o) = t.owned.iter().find(|o| o.split == split) {
                    tpl.add_partition_offset(&t.topic, o.partition, Offset::Offset(next))
                        .map_err(|source| SourceError::Kafka {
                            node: self.node.clone(),
                            what: "commit list".into(),
                            source,
                        })?;
                    self.metrics
                        .committed_offset
                        .with_label_values(&[&self.cluster, &t.topic, &o.partition.to_string()])
                        .set(next);
                }
            }
            if tpl.count() == 0 {
                continue;
            }
            let mode = if sync {
                CommitMode::Sync
            } else {
                CommitMode::Async
            };
            t.consumer
                .commit(&tpl, mode)
                .map_err(|source| SourceError::Kafka {
                    node: self.node.clone(),
                    what: format!("commit offsets of {}", t.topic),
                    source,
                })?;
        }
        Ok(())
    }

    fn set_waker(&mut self, wake: Arc<dyn Fn() + Send + Sync>) -> bool {
        for t in &mut self.topics {
            let w = Arc::clone(&wake);
            t.consumer.set_nonempty_callback(move || w());
        }
        true
    }
}

impl Drop for KafkaReader {
    fn drop(&mut self) {
        // Per-partition gauges go away with the partition, so dashboards never show a stale lag.
        for t in &self.topics {
            for o in &t.owned {
                let labels = [
                    self.cluster.as_str(),
                    t.topic.as_str(),
                    &o.partition.to_string(),
                ];
                let _ = self.metrics.consumer_lag.remove_label_values(&labels);
                let _ = self.metrics.committed_offset.remove_label_values(&labels);
            }
        }
    }
}
