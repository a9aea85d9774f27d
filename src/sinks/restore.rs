//! What an exactly-once pipeline knows at start, read back from its own committed output.
//!
//! Every first copy of an event is on an events sink's topic (`ordered` or `late`), every
//! invalid record on an invalid sink's topic, and only committed transactions are visible to
//! a `read_committed` reader. So the committed output *is* the state:
//!
//! - the **floor** of the watermark: the highest event time on any output partition, and the
//!   highest watermark a late record was judged against. The restarted watermark starts there,
//!   so nothing below what was written goes to an ordered partition;
//! - the **ids** within the dedup horizon of that floor, with their payload fingerprints: a
//!   replayed record, or a copy that arrives after the restart, is a duplicate of them;
//! - the **source positions** of the invalid records written, so a replay does not write a
//!   dead letter twice.
//!
//! Records are found by their Kafka timestamp (the time they were written). An event of time
//! `t` cannot have been written before `t - max_future_skew` (it would have been invalid), so
//! reading from `floor - horizon - max_future_skew` sees every id the horizon still covers.

use super::SinkError;
use crate::event::IdHash;
use crate::kafka::{ClusterConfig, Quiet};
use crate::metrics::Metrics;
use crate::runtime::Restored;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;
use std::time::{Duration, Instant};

/// How long the restore may take in all before the job stops: a cluster that cannot be read
/// is an error, not a hang.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(300);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a long restore says how far it is.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Threads reading a topic's partitions at once (each with its own consumer).
const READERS: usize = 2;
/// Records read between looks at the clock (for progress and the deadline).
const CLOCK_EVERY: u32 = 4096;

/// A Kafka sink's topic: (sink, topic, its cluster).
pub type SinkTopic<'a> = (String, String, &'a ClusterConfig);

/// The topics to restore from and the windows that matter.
pub struct RestorePlan<'a> {
    /// Each Kafka sink of events.
    pub events: Vec<SinkTopic<'a>>,
    /// Each Kafka sink of invalid records.
    pub invalid: Vec<SinkTopic<'a>>,
    /// The longest dedup horizon.
    pub horizon_ms: u64,
    /// The largest `max_future_skew` of the watermarks.
    pub future_skew_ms: u64,
    /// The consumer group, in each output cluster, whose offsets on the output topics mark
    /// where the last `--reset-state` started over: nothing before them is restored.
    pub group: String,
}

/// What was read, for the log and the metrics.
#[derive(Debug, Default, Clone)]
pub struct RestoreStats {
    /// Records read per topic.
    pub records: Vec<(String, u64)>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Reads the committed output and returns what the restarted pipeline needs, counting the
/// records read in `metrics` as it goes (the status page shows the progress).
pub fn restore(
    plan: &RestorePlan<'_>,
    metrics: &Metrics,
) -> Result<(Restored, RestoreStats), SinkError> {
    let started = Instant::now();
    let mut restored = Restored::default();
    let mut stats = RestoreStats::default();
    let mut readers = Vec::new();
    for (sink, topic, cluster) in plan.events.iter().chain(&plan.invalid) {
        let r = TopicTail::open(sink, topic, cluster, &plan.group, metrics)?;
        for p in &r.partitions {
            restored.floor = restored.floor.max(r.last_floor(p)?);
        }
        readers.push(r);
    }
    let from_ms = restored
        .floor
        .saturating_sub(plan.horizon_ms)
        .saturating_sub(plan.future_skew_ms);
    let keep_from = restored.floor.saturating_sub(plan.horizon_ms);
    let events = plan.events.len();
    for (i, r) in readers.iter().enumerate() {
        let starts = r.starts(from_ms)?;
        let n = if i < events {
            let topic = r.topic.as_str();
            let (n, parts) = r.read_parallel(&starts, &|m| {
                let marks = Marks::of(m);
                marks.known_format(topic, m)?;
                let time = marks.event_time(topic, m)?;
                if time < keep_from {
                    return Ok(None);
                }
                let value = crate::operators::dedup::remembered(m.payload().unwrap_or(&[]), time);
                let h = IdHash::of(m.key().unwrap_or_default());
                Ok(Some([h.high(), h.get() as u64, value]))
            })?;
            restored.ids.extend(parts);
            n
        } else {
            let topic = r.topic.as_str();
            let (n, parts) = r.read_parallel(&starts, &|m| {
                let marks = Marks::of(m);
                marks.known_format(topic, m)?;
                Ok(marks.source.map(String::from))
            })?;
            restored.dead_letters.extend(parts.into_iter().flatten());
            n
        };
        stats.records.push((r.topic.clone(), n));
    }
    stats.elapsed = started.elapsed();
    Ok((restored, stats))
}

/// The committed partitions of one output topic.
struct TopicTail {
    sink: String,
    topic: String,
    cluster: ClusterConfig,
    consumer: BaseConsumer<Quiet>,
    /// (partition, low, high) of the partitions holding records.
    partitions: Vec<(i32, i64, i64)>,
    /// The newest Kafka timestamp seen at the end of each of them, by [`Self::last_floor`].
    newest: std::sync::Mutex<std::collections::BTreeMap<i32, i64>>,
    /// Records read so far.
    progress: prometheus::IntCounter,
}

impl TopicTail {
    fn open(
        sink: &str,
        topic: &str,
        cluster: &ClusterConfig,
        group: &str,
        metrics: &Metrics,
    ) -> Result<TopicTail, SinkError> {
        let kafka = |what: String| {
            let sink = sink.to_string();
            move |source| SinkError::Kafka { sink, what, source }
        };
        let consumer =
            restore_consumer(cluster, group).map_err(kafka("create restore consumer".into()))?;
        let offsets = crate::kafka::partition_offsets(&consumer, topic)
            .map_err(kafka(format!("offsets of {topic}")))?;
        // Where the last --reset-state started over, per partition (nothing when it never did).
        let mut tpl = TopicPartitionList::new();
        for &(p, _, _) in &offsets {
            tpl.add_partition(topic, p);
        }
        let reset = consumer
            .committed_offsets(tpl, REQUEST_TIMEOUT)
            .map_err(kafka(format!("the reset point of {topic} (group {group})")))?;
        let mut partitions = Vec::new();
        for (p, low, high) in offsets {
            let low = match reset.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => low.max(o),
                _ => low,
            };
            if high > low {
                partitions.push((p, low, high));
            }
        }
        Ok(TopicTail {
            sink: sink.into(),
            topic: topic.into(),
            cluster: cluster.clone(),
            consumer,
            partitions,
            newest: Default::default(),
            progress: metrics.restore_records.with_label_values(&[topic]),
        })
    }

    fn new_consumer(&self) -> Result<BaseConsumer<Quiet>, SinkError> {
        restore_consumer(&self.cluster, "tidemark-restore")
            .map_err(|e| self.error(format!("create consumer: {e}")))
    }

    fn error(&self, message: String) -> SinkError {
        SinkError::Restore {
            sink: self.sink.clone(),
            message,
        }
    }

    /// The floor one partition sets: the event time of its last committed event, or the
    /// highest watermark among its last late records. Reads back from the end in growing
    /// steps, since the last offsets may be transaction markers or aborted records.
    fn last_floor(&self, &(p, low, high): &(i32, i64, i64)) -> Result<u64, SinkError> {
        let mut back = 64;
        loop {
            let from = (high - back).max(low);
            let mut floor = None;
            let mut newest = None;
            self.read_partitions(&[(p, from)], &mut |m| {
                let marks = Marks::of(m);
                marks.known_format(&self.topic, m)?;
                if let Some(ts) = m.timestamp().to_millis() {
                    newest = Some(newest.map_or(ts, |n: i64| n.max(ts)));
                }
                let t = match marks.watermark {
                    Some(w) => parse_ms(&self.topic, m, "tidemark-watermark", w)?,
                    None => match marks.event_time {
                        Some(t) => parse_ms(&self.topic, m, "tidemark-event-time", t)?,
                        // An invalid record: it has no time.
                        None => return Ok(()),
                    },
                };
                floor = Some(floor.map_or(t, |f: u64| f.max(t)));
                Ok(())
            })?;
            if let Some(n) = newest {
                self.newest
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(p, n);
            }
            if let Some(f) = floor {
                return Ok(f);
            }
            if from == low {
                return Ok(0);
            }
            back *= 16;
        }
    }

    /// Where each partition's records written at or after `from_ms` begin.
    fn starts(&self, from_ms: u64) -> Result<Vec<(i32, i64)>, SinkError> {
        if self.partitions.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = TopicPartitionList::new();
        for &(p, _, _) in &self.partitions {
            query
                .add_partition_offset(&self.topic, p, Offset::Offset(from_ms as i64))
                .map_err(|e| self.error(e.to_string()))?;
        }
        let found = self
            .consumer
            .offsets_for_times(query, REQUEST_TIMEOUT)
            .map_err(|e| self.error(format!("offsets for time {from_ms}: {e}")))?;
        let mut starts = Vec::new();
        for &(p, low, _) in &self.partitions {
            match found.find_partition(&self.topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => starts.push((p, o.max(low))),
                // No record written that late, unless the partition's end says otherwise (a
                // cluster that cannot look offsets up by time answers this too): then all of it.
                Some(Offset::End) => {
                    let newest = self
                        .newest
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&p)
                        .copied();
                    if newest.is_some_and(|n| n >= from_ms as i64) {
                        starts.push((p, low));
                    }
                }
                _ => starts.push((p, low)),
            }
        }
        Ok(starts)
    }

    /// Reads `starts` to their ends on up to [`READERS`] threads, each with its own consumer
    /// and a share of the partitions, keeping what `pick` returns; returns the records read
    /// and what each thread kept.
    fn read_parallel<T: Send>(
        &self,
        starts: &[(i32, i64)],
        pick: &(dyn Fn(&BorrowedMessage<'_>) -> Result<Option<T>, SinkError> + Sync),
    ) -> Result<(u64, Vec<Vec<T>>), SinkError> {
        let threads = starts.len().clamp(1, READERS);
        let shares: Vec<Vec<(i32, i64)>> = (0..threads)
            .map(|t| starts.iter().copied().skip(t).step_by(threads).collect())
            .collect();
        let results: Vec<Result<(u64, Vec<T>), SinkError>> = std::thread::scope(|s| {
            let handles: Vec<_> = shares
                .iter()
                .map(|share| {
                    s.spawn(move || {
                        let consumer = self.new_consumer()?;
                        // At most one kept per record: room for that many up front, since
                        // growing by doubling copies the ids again and again.
                        let mut kept = Vec::with_capacity(self.records_from(share));
                        let n = self.read_partitions_with(&consumer, share, &mut |m| {
                            kept.extend(pick(m)?);
                            Ok(())
                        })?;
                        Ok((n, kept))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a restore reader does not panic"))
                .collect()
        });
        let (mut n, mut all) = (0, Vec::new());
        for r in results {
            let (k, kept) = r?;
            n += k;
            all.push(kept);
        }
        Ok((n, all))
    }

    /// How many offsets lie between `starts` and the ends of their partitions (markers and
    /// aborted records included, so at least the records there are to read).
    fn records_from(&self, starts: &[(i32, i64)]) -> usize {
        starts
            .iter()
            .filter_map(|&(p, from)| {
                let &(_, _, high) = self.partitions.iter().find(|&&(q, _, _)| q == p)?;
                usize::try_from(high - from).ok()
            })
            .sum()
    }

    /// [`Self::read_partitions_with`] on the tail's own consumer.
    fn read_partitions(
        &self,
        starts: &[(i32, i64)],
        each: &mut dyn FnMut(&BorrowedMessage<'_>) -> Result<(), SinkError>,
    ) -> Result<u64, SinkError> {
        self.read_partitions_with(&self.consumer, starts, each)
    }

    /// Reads each (partition, offset) to its end (the last stable offset) with `consumer` and
    /// returns how many committed records were read.
    fn read_partitions_with(
        &self,
        consumer: &BaseConsumer<Quiet>,
        starts: &[(i32, i64)],
        each: &mut dyn FnMut(&BorrowedMessage<'_>) -> Result<(), SinkError>,
    ) -> Result<u64, SinkError> {
        let mut tpl = TopicPartitionList::new();
        for &(p, o) in starts {
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(o))
                .map_err(|e| self.error(e.to_string()))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| self.error(format!("assign: {e}")))?;
        let deadline = Instant::now() + RESTORE_TIMEOUT;
        let mut open = starts.len();
        let (mut n, mut counted) = (0, 0);
        let mut told = Instant::now();
        // The clock is read after an empty poll and every CLOCK_EVERY records, not per
        // record: per record it was a tenth of the restore's time.
        let mut since_clock = 0u32;
        while open > 0 {
            if since_clock >= CLOCK_EVERY {
                since_clock = 0;
                if told.elapsed() >= PROGRESS_EVERY {
                    told = Instant::now();
                    self.progress.inc_by(n - counted);
                    counted = n;
                    tracing::info!(topic = %self.topic, records = n, "restoring");
                }
                if Instant::now() > deadline {
                    return Err(self.error(format!(
                        "reading {} took longer than {} s",
                        self.topic,
                        RESTORE_TIMEOUT.as_secs()
                    )));
                }
            }
            match consumer.poll(Duration::from_millis(100)) {
                None => since_clock = CLOCK_EVERY,
                Some(Ok(m)) => {
                    n += 1;
                    since_clock += 1;
                    each(&m)?;
                }
                Some(Err(KafkaError::PartitionEOF(_))) => open -= 1,
                Some(Err(e)) => {
                    return Err(self.error(format!("reading {}: {e}", self.topic)));
                }
            }
        }
        let _ = consumer.unassign();
        self.progress.inc_by(n - counted);
        Ok(n)
    }
}

/// Marks the end of every output partition of `plan` as where restores begin from now on: the
/// offsets of `plan.group`. Run by `--reset-state` after the fencing, so no earlier instance
/// writes behind the mark.
pub fn mark_reset(plan: &RestorePlan<'_>) -> Result<(), SinkError> {
    use rdkafka::consumer::CommitMode;
    for (sink, topic, cluster) in plan.events.iter().chain(&plan.invalid) {
        let kafka = |what: String| {
            let sink = sink.to_string();
            move |source| SinkError::Kafka { sink, what, source }
        };
        let consumer = restore_consumer(cluster, &plan.group)
            .map_err(kafka("create restore consumer".into()))?;
        let mut tpl = TopicPartitionList::new();
        for (p, _, high) in crate::kafka::partition_offsets(&consumer, topic)
            .map_err(kafka(format!("offsets of {topic}")))?
        {
            tpl.add_partition_offset(topic, p, Offset::Offset(high))
                .map_err(kafka(format!("offsets of {topic}/{p}")))?;
        }
        consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(kafka(format!("mark the reset point of {topic}")))?;
        tracing::info!(topic = %topic, group = %plan.group, "reset point marked: later restores begin here");
    }
    Ok(())
}

/// A consumer for reading whole partitions from a point to their end as fast as it can: large
/// fetches and a deep prefetch queue, unlike a source's small low-latency ones.
fn restore_consumer(
    cluster: &ClusterConfig,
    group: &str,
) -> Result<BaseConsumer<Quiet>, KafkaError> {
    let mut config = crate::kafka::consumer(cluster, group);
    // Whole batches of many records per request: the restore is throughput-bound.
    config.set("fetch.max.bytes", "104857600");
    config.set("max.partition.fetch.bytes", "26214400");
    // A deep queue keeps the reading thread fed while the next fetch is in flight.
    config.set("queued.max.messages.kbytes", "65536");
    // The user's settings for the cluster still win (security, for one).
    for (k, v) in &cluster.options {
        config.set(k, v);
    }
    config.create_with_context(Quiet)
}

/// The headers a restore reads, found in one pass over a record's headers.
#[derive(Default)]
struct Marks<'m> {
    format: Option<&'m str>,
    event_time: Option<&'m str>,
    watermark: Option<&'m str>,
    source: Option<&'m str>,
}

impl<'m> Marks<'m> {
    fn of(m: &'m BorrowedMessage<'_>) -> Marks<'m> {
        let mut marks = Marks::default();
        let Some(headers) = m.headers() else {
            return marks;
        };
        for h in headers.iter() {
            let slot = match h.key {
                "tidemark-format" => &mut marks.format,
                "tidemark-event-time" => &mut marks.event_time,
                "tidemark-watermark" => &mut marks.watermark,
                "tidemark-source" => &mut marks.source,
                _ => continue,
            };
            *slot = h.value.and_then(|v| std::str::from_utf8(v).ok());
        }
        marks
    }

    /// Refuses a record written in a format this version does not read (see
    /// [`super::FORMAT_VERSION`]).
    fn known_format(&self, topic: &str, m: &BorrowedMessage<'_>) -> Result<(), SinkError> {
        match self.format {
            None => Ok(()),
            Some(v) if v == super::FORMAT_VERSION => Ok(()),
            Some(v) => Err(unreadable(
                topic,
                m,
                &format!(
                    "it is in output format \"{v}\", and this tidemark reads format {}",
                    super::FORMAT_VERSION
                ),
            )),
        }
    }

    fn event_time(&self, topic: &str, m: &BorrowedMessage<'_>) -> Result<u64, SinkError> {
        match self.event_time {
            Some(v) => parse_ms(topic, m, "tidemark-event-time", v),
            None => Err(unreadable(topic, m, "it has no tidemark-event-time header")),
        }
    }
}

fn parse_ms(topic: &str, m: &BorrowedMessage<'_>, key: &str, v: &str) -> Result<u64, SinkError> {
    v.parse()
        .map_err(|_| unreadable(topic, m, &format!("its {key} header \"{v}\" is not a time")))
}

/// A record the restore cannot use: the job refuses to start rather than guess.
fn unreadable(topic: &str, m: &BorrowedMessage<'_>, why: &str) -> SinkError {
    SinkError::Restore {
        sink: topic.into(),
        message: format!(
            "cannot restore from {topic} partition {} offset {}: {why}; only tidemark should write this topic. Start over with empty state with --reset-state",
            m.partition(),
            m.offset()
        ),
    }
}
