//! Kafka sink: an idempotent producer with `acks=all`, and a capability held per batch until
//! its delivery reports confirm every write.

use super::transaction;
use super::{SinkContext, SinkError, SinkItem, SinkNode};
use crate::component::{on_either, AnyStream, CheckContext, Component, Errors};
use crate::event::Splits;
use crate::kafka::ClusterConfig;
use crate::runtime::{wall_ms, WorkerContext};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

/// What the delivery callback learns about one write.
struct Report {
    /// Batch time (the opaque).
    time: u64,
    /// The record may be dropped, counted, when Kafka refuses it as too large.
    droppable: bool,
    /// The error, if the write failed, and its code.
    error: Option<(String, Option<RDKafkaErrorCode>)>,
}

/// Delivery reports, collected by librdkafka's callback (run inside `poll`, on our thread) and
/// drained by the operator.
#[derive(Default)]
pub struct Deliveries {
    reports: Mutex<Vec<Report>>,
}

fn too_large(code: Option<RDKafkaErrorCode>) -> bool {
    code == Some(RDKafkaErrorCode::MessageSizeTooLarge)
}

/// Producer context that records delivery reports.
pub struct DeliveryContext {
    deliveries: Arc<Deliveries>,
}

impl DeliveryContext {
    /// A context that files reports into `deliveries`.
    pub fn new(deliveries: Arc<Deliveries>) -> DeliveryContext {
        DeliveryContext { deliveries }
    }
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::kafka::log_client_error(&error, reason);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<(u64, bool)>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Box<(u64, bool)>) {
        let (time, droppable) = *opaque;
        let error = result
            .as_ref()
            .err()
            .map(|(e, _)| (e.to_string(), e.rdkafka_error_code()));
        if let Ok(mut r) = self.deliveries.reports.lock() {
            r.push(Report {
                time,
                droppable,
                error,
            });
        }
    }
}

/// A Kafka topic, written by an idempotent producer with `acks=all`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSink {
    /// Inputs.
    pub inputs: Vec<String>,
    /// A name from `[clusters]`.
    pub cluster: String,
    /// Target topic.
    pub topic: String,
}

impl Component for KafkaSink {
    fn check(&self, cx: &CheckContext<'_>, errors: &mut Errors<'_>) {
        cx.cluster(&self.cluster, errors);
        if self.topic.trim().is_empty() {
            errors.field("topic", "must not be empty");
        }
    }
}

impl SinkNode for KafkaSink {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn preflight(&self, node: &str, cx: &SinkContext<'_>) -> Result<Option<usize>, SinkError> {
        let cluster = &cx.clusters[&self.cluster];
        connect(node, cluster, &self.topic, cx.input.partitions)?;
        // The topic's own limit is read for all Kafka sinks at once (`pipeline::sink_limits`).
        Ok(Some(crate::kafka::producer_record_limit(cluster)))
    }

    fn build<'s>(
        &self,
        node: &str,
        input: AnyStream<'s>,
        cx: &SinkContext<'_>,
        worker: &WorkerContext,
    ) -> Result<Stream<'s, u64, Vec<()>>, SinkError> {
        let cluster = &cx.clusters[&self.cluster];
        let (producer, deliveries, txn) = match cx.producers {
            Some(producers) => {
                let (producer, deliveries) =
                    producers
                        .take(node, cx.worker)
                        .ok_or_else(|| SinkError::Transaction {
                            sink: node.into(),
                            message: format!("no transactional producer for worker {}", cx.worker),
                        })?;
                let id = transaction::transactional_id(cx.pipeline, node, cx.worker);
                let txn = Txn::begin(&producer, id, node, worker)?;
                (producer, deliveries, Some(txn))
            }
            None => {
                let (p, d) = connect(node, cluster, &self.topic, cx.input.partitions)?;
                (p, d, None)
            }
        };
        Ok(on_either!(input, s => {
            kafka_sink(s, node, (producer, deliveries, txn), (&self.cluster, &self.topic), worker)
        }))
    }
}

/// Creates the producer and checks the topic: it must exist and have at least `partitions`
/// partitions when events carry an output partition.
pub fn connect(
    name: &str,
    cluster: &ClusterConfig,
    topic: &str,
    partitions: Option<u32>,
) -> Result<(BaseProducer<DeliveryContext>, Arc<Deliveries>), SinkError> {
    let deliveries = Arc::new(Deliveries::default());
    let producer: BaseProducer<DeliveryContext> = crate::kafka::producer(cluster)
        .create_with_context(DeliveryContext {
            deliveries: Arc::clone(&deliveries),
        })
        .map_err(|source| SinkError::Kafka {
            sink: name.into(),
            what: "create producer".into(),
            source,
        })?;
    let md = producer
        .client()
        // All topics, not just this one: a request naming a missing topic would make a broker
        // with auto.create.topics.enable create it with default settings.
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|source| SinkError::Kafka {
            sink: name.into(),
            what: format!("metadata for {topic}"),
            source,
        })?;
    let have = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len() as u32)
        .unwrap_or(0);
    if have == 0 {
        return Err(SinkError::Topic {
            sink: name.into(),
            message: format!("topic \"{topic}\" does not exist"),
        });
    }
    if let Some(need) = partitions {
        if have < need {
            return Err(SinkError::Topic {
                sink: name.into(),
                message: format!(
                    "topic \"{topic}\" has {have} partitions; the reorder upstream writes {need}"
                ),
            });
        }
    }
    Ok((producer, deliveries))
}

/// What became of one send.
enum Sent {
    /// Queued: a delivery report will follow.
    Queued,
    /// A dead letter too large for its topic: counted and dropped.
    Dropped,
    /// Refused: the job stops.
    Failed,
}

/// An exactly-once sink's open transaction: everything sent since the last checkpoint, whose
/// capabilities stay held until it commits.
pub struct Txn {
    id: String,
    interval: u64,
    last_commit: u64,
    /// Records queued in the open transaction.
    sent: u64,
    committed: prometheus::IntCounter,
    aborted: prometheus::IntCounter,
    records: prometheus::IntCounter,
    last_ok: prometheus::Gauge,
    seconds: prometheus::Histogram,
}

impl Txn {
    /// Begins the first transaction of `producer` (already fenced by `init_transactions`).
    pub fn begin(
        producer: &BaseProducer<DeliveryContext>,
        id: String,
        sink: &str,
        worker: &WorkerContext,
    ) -> Result<Txn, SinkError> {
        producer
            .begin_transaction()
            .map_err(|e| SinkError::Transaction {
                sink: sink.into(),
                message: transaction::describe(&id, "begin transaction", &e),
            })?;
        let m = &worker.metrics;
        let now = wall_ms();
        let last_ok = m.checkpoint_last.with_label_values(&[sink]);
        last_ok.set(now as f64 / 1000.0);
        Ok(Txn {
            id,
            interval: worker.commit_interval,
            last_commit: now,
            sent: 0,
            committed: m.transactions.with_label_values(&[sink, "committed"]),
            aborted: m.transactions.with_label_values(&[sink, "aborted"]),
            records: m.checkpoint_records.with_label_values(&[sink]),
            last_ok,
            seconds: m.checkpoint_seconds.clone(),
        })
    }

    /// Whether the open transaction, which holds records, should commit now: a checkpoint
    /// interval has passed or the input has ended.
    fn due(&self, now: u64, drained: bool) -> bool {
        drained || now.saturating_sub(self.last_commit) >= self.interval
    }
}

/// One worker's Kafka sink between activations.
struct Writer {
    producer: BaseProducer<DeliveryContext>,
    deliveries: Arc<Deliveries>,
    topic: String,
    cluster: String,
    sink: String,
    splits: Arc<Splits>,
    written: prometheus::IntCounter,
    errors: prometheus::IntCounter,
    dropped: prometheus::IntCounter,
    failure: Rc<RefCell<Option<String>>>,
    /// Batch time -> (capability, writes not yet acknowledged). With a transaction, the
    /// capabilities are held until it commits.
    pending: BTreeMap<u64, (Capability<u64>, usize)>,
    failed: bool,
    txn: Option<Txn>,
    /// The largest record the topic takes, read at start; a larger dead letter is truncated.
    limit: Option<usize>,
    truncated: prometheus::IntCounter,
}

impl Writer {
    /// Sends `item` of the batch at time `t`, waiting for room when the queue is full.
    fn send<T: SinkItem>(&mut self, item: &T, t: u64) -> Sent {
        let droppable = item.droppable();
        let mut fields = item.headers(&self.splits);
        let mut payload = item.payload();
        if droppable {
            if let Some(cut) = self.truncation(item, &fields) {
                // A dead letter keeps its reason, source position and id, and as much of the
                // record as fits, rather than being dropped.
                fields.push(("tidemark-truncated", "true".into()));
                fields.push(("tidemark-original-bytes", payload.len().to_string()));
                payload = &payload[..cut];
                self.truncated.inc();
                tracing::warn!(sink = %self.sink, topic = %self.topic, bytes = item.payload().len(), kept = cut, "dead letter larger than its topic takes; written truncated");
            }
        }
        let mut headers = OwnedHeaders::new();
        for (k, v) in &fields {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut record: BaseRecord<'_, str, [u8], Box<(u64, bool)>> =
            BaseRecord::with_opaque_to(&self.topic, Box::new((t, droppable)))
                .payload(payload)
                .headers(headers);
        if let Some(k) = item.key() {
            record = record.key(k);
        }
        if let Some(p) = item.partition() {
            record = record.partition(p as i32);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Sent::Queued,
                Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    // Back-pressure: wait for deliveries to make room.
                    self.producer.poll(Duration::from_millis(50));
                    record = r;
                }
                Err((e, _)) if droppable && too_large(e.rdkafka_error_code()) => {
                    // A dead letter too large even for its topic: counted and logged, and its
                    // offset still advances.
                    self.dropped.inc();
                    tracing::error!(sink = %self.sink, topic = %self.topic, bytes = item.payload().len(), "dead letter too large for its topic; dropped");
                    return Sent::Dropped;
                }
                Err((e, _)) => {
                    self.errors.inc();
                    *self.failure.borrow_mut() = Some(format!(
                        "kafka sink {}: send to {}: {e}",
                        self.sink, self.topic
                    ));
                    self.failed = true;
                    return Sent::Failed;
                }
            }
        }
    }

    /// How many payload bytes of `item` fit the topic's limit with its headers, when not all
    /// of them do.
    fn truncation<T: SinkItem>(&self, item: &T, fields: &[(&str, String)]) -> Option<usize> {
        let limit = self.limit?;
        // The two headers a truncated record adds, at their largest.
        let added = "tidemark-truncated".len() + 4 + "tidemark-original-bytes".len() + 20;
        let around = RECORD_FRAMING
            + item.key().map_or(0, str::len)
            + fields
                .iter()
                .map(|(k, v)| k.len() + v.len() + HEADER_FRAMING)
                .sum::<usize>()
            + added
            + 2 * HEADER_FRAMING;
        let payload = item.payload().len();
        (payload + around > limit).then(|| limit.saturating_sub(around).min(payload))
    }

    /// Takes the delivery reports: a batch whose writes are all acknowledged gives up its
    /// capability; a failed write stops the job and keeps its capability held.
    fn settle(&mut self) {
        self.producer.poll(Duration::ZERO);
        let reports: Vec<Report> = self
            .deliveries
            .reports
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        let mut ok = 0;
        for Report {
            time: t,
            droppable,
            error,
        } in reports
        {
            let error = match error {
                Some((_, code)) if droppable && too_large(code) => {
                    self.dropped.inc();
                    tracing::error!(sink = %self.sink, topic = %self.topic, "dead letter refused by the broker as too large; dropped");
                    None
                }
                Some((e, code)) => Some(
                    match crate::kafka::not_authorized(
                        &self.cluster,
                        code,
                        "Write",
                        &format!("topic {}", self.topic),
                    ) {
                        Some(refusal) => format!("{refusal} ({e})"),
                        None => e,
                    },
                ),
                None => {
                    ok += 1;
                    None
                }
            };
            if let Some(e) = error {
                // librdkafka already retried up to message.timeout.ms; the capability stays
                // held so no offset behind this write is ever committed.
                self.errors.inc();
                if !self.failed {
                    tracing::error!(sink = %self.sink, topic = %self.topic, error = %e, "delivery failed; stopping without committing past it");
                    *self.failure.borrow_mut() = Some(format!(
                        "kafka sink {}: delivery to {} failed: {e}",
                        self.sink, self.topic
                    ));
                }
                self.failed = true;
                continue;
            }
            if let Some(entry) = self.pending.get_mut(&t) {
                entry.1 -= 1;
                if entry.1 == 0 && !self.failed && self.txn.is_none() {
                    self.pending.remove(&t);
                }
            }
        }
        self.written.inc_by(ok);
    }

    /// Commits the open transaction when it is due, then gives up every capability it held
    /// and begins the next. The commit blocks this worker until the broker has it, for up to
    /// [`COMMIT_DEADLINE`], long enough to ride out a broker restart: librdkafka retries the
    /// coordinator meanwhile. A failure stops the job with the capabilities still held, so no
    /// offset behind the transaction is committed; the restart aborts it and resumes.
    fn checkpoint(&mut self, drained: bool) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        if self.failed {
            return;
        }
        if txn.sent == 0 {
            // Nothing of these batches is in the transaction (dead letters dropped as too large),
            // and with nothing to write the sink is as checkpointed as it can be.
            self.pending.retain(|_, (_, n)| *n > 0);
            txn.last_ok.set(wall_ms() as f64 / 1000.0);
            return;
        }
        if !txn.due(wall_ms(), drained) {
            return;
        }
        let started = Instant::now();
        // Checkpoints start every interval, not an interval after the last one ended: a record
        // then waits at most the interval for its commit to start, whatever commits take.
        let started_ms = wall_ms();
        let result = self
            .producer
            .commit_transaction(COMMIT_DEADLINE)
            .map_err(|e| ("commit transaction", e))
            .and_then(|()| {
                self.producer
                    .begin_transaction()
                    .map_err(|e| ("begin transaction", e))
            });
        if started.elapsed() >= SLOW_COMMIT {
            tracing::warn!(sink = %self.sink, seconds = started.elapsed().as_secs_f64(), "slow checkpoint commit");
        }
        match result {
            Ok(()) => {
                // The commit flushed every write: take their reports before the batches go.
                self.settle();
                let Some(txn) = self.txn.as_mut() else {
                    return;
                };
                txn.seconds.observe(started.elapsed().as_secs_f64());
                txn.committed.inc();
                txn.records.inc_by(txn.sent);
                txn.last_ok.set(wall_ms() as f64 / 1000.0);
                txn.last_commit = started_ms;
                txn.sent = 0;
                self.pending.clear();
            }
            Err((what, e)) => {
                let Some(txn) = self.txn.as_mut() else {
                    return;
                };
                txn.aborted.inc();
                let mut message = transaction::describe(&txn.id, what, &e);
                let topic = format!("topic {}", self.topic);
                if let Some(refusal) = crate::kafka::not_authorized(
                    &self.cluster,
                    e.rdkafka_error_code(),
                    "Write",
                    &topic,
                ) {
                    message = format!("{refusal}: {message}");
                }
                tracing::error!(sink = %self.sink, %message, "checkpoint failed");
                *self.failure.borrow_mut() = Some(format!("kafka sink {}: {message}", self.sink));
                self.failed = true;
            }
        }
    }
}

/// Bytes of a record's framing in its batch besides key, value and headers: the batch header
/// (61) for a record alone in its batch, and the record's own varints, with room to spare.
const RECORD_FRAMING: usize = 128;
/// Bytes of a header's framing besides its key and value (two varint lengths).
const HEADER_FRAMING: usize = 10;

/// A commit taking longer than this is logged as a warning.
const SLOW_COMMIT: Duration = Duration::from_secs(5);

/// How long a commit may take before the job stops: below `transaction.timeout.ms` (120 s),
/// after which the broker aborts the transaction anyway.
const COMMIT_DEADLINE: Duration = Duration::from_secs(110);

/// Writes `input` to `topic`, in transactions when given one.
pub fn kafka_sink<'scope, T: SinkItem>(
    input: Stream<'scope, u64, Vec<T>>,
    name: &str,
    (producer, deliveries, txn): (BaseProducer<DeliveryContext>, Arc<Deliveries>, Option<Txn>),
    (cluster, topic): (&str, &str),
    ctx: &WorkerContext,
) -> Stream<'scope, u64, Vec<()>> {
    let scope = input.scope();
    let mut builder = OperatorBuilder::new(format!("Kafka({name})"), scope);
    let info = builder.operator_info();
    let mut input = builder.new_input(input, Pipeline);
    let (_output, stream) = builder.new_output::<Vec<()>>();
    let activator = scope.activator_for(info.address);
    let mut writer = Writer {
        producer,
        deliveries,
        topic: topic.to_string(),
        cluster: cluster.to_string(),
        sink: name.to_string(),
        splits: Arc::clone(&ctx.splits),
        written: ctx.metrics.events_out.with_label_values(&[name]),
        errors: ctx.metrics.sink_errors.with_label_values(&[name]),
        dropped: ctx
            .metrics
            .dead_letters_dropped
            .with_label_values(&[name, "too_large"]),
        failure: Rc::clone(&ctx.failure),
        pending: BTreeMap::new(),
        failed: false,
        txn,
        limit: ctx.sink_limits.get(name).copied(),
        truncated: ctx
            .metrics
            .dead_letters_truncated
            .with_label_values(&[name]),
    };

    builder.build_reschedule(move |caps: Vec<Capability<u64>>| {
        drop(caps);
        move |frontiers| {
            input.for_each(|cap, data| {
                let t = *cap.least().expect("a message has a time");
                writer
                    .pending
                    .entry(t)
                    .or_insert_with(|| (cap.retain_least(0).expect("a message has a time"), 0));
                for item in data.drain(..) {
                    match writer.send(&item, t) {
                        Sent::Queued => {
                            writer.pending.get_mut(&t).expect("held").1 += 1;
                            if let Some(txn) = writer.txn.as_mut() {
                                txn.sent += 1;
                            }
                        }
                        Sent::Dropped => {}
                        // The batch's capability stays held: nothing behind it is committed.
                        Sent::Failed => return,
                    }
                }
                if writer.txn.is_none() && writer.pending.get(&t).is_some_and(|(_, n)| *n == 0) {
                    writer.pending.remove(&t);
                }
            });
            writer.settle();
            writer.checkpoint(frontiers[0].frontier().is_empty());
            let waiting = !writer.pending.is_empty();
            if waiting {
                // Delivery reports only arrive through poll; come back soon to collect them.
                activator.activate_after(Duration::from_millis(2));
            }
            waiting
        }
    });
    stream
}
