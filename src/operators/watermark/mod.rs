//! The watermark operator: reads its sources, decodes, and holds the capability that *is* the
//! event-time watermark.
//!
//! The rules (per-partition maxima, idleness, the split and unreachable holds, what is late)
//! are a plain state machine in [`state`]; this operator is the shell around it: it polls the
//! readers, decodes each record, feeds the state machine, emits what it decides at the
//! capability it holds, follows the replication links' heartbeats, and commits offsets once
//! the sinks' probe shows everything emitted up to them is durable (`committer.rs`).

mod committer;
pub mod flow;
pub mod state;

use super::{BuildContext, OperatorError, OperatorNode};
use crate::component::{AnyStream, CheckContext, Component, Errors, Millis, Port, StreamKind};
use crate::event::{decode, Event, EventFormat, EventId, IdText, Invalid, Late, Reason, Splits};
use crate::runtime::{wall_ms, WorkerContext};
use crate::sources::heartbeat::LinkSpec;
use crate::sources::{self, Polled, SourceError, SplitReader};
use committer::Committer;
use flow::FlowControl;
use serde::Deserialize;
use state::{Capability, LinkView, Verdict, WatermarkPolicy, WatermarkState};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Capability as TimelyCapability;
use timely::dataflow::{Scope, Stream};

/// Watermark settings (the `watermark` operator).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkConfig {
    /// Inputs: sources only.
    pub inputs: Vec<String>,
    /// Bounded disorder: a partition's watermark is its max event time minus this.
    pub max_out_of_orderness: Millis,
    /// A partition at its end offset with no records for this long stops holding the watermark.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Millis,
    /// Events further than this ahead of the wall clock are invalid (`future_timestamp`).
    #[serde(default = "default_future_skew")]
    pub max_future_skew: Millis,
    /// How long a replicated source with a down link may hold the watermark.
    pub max_split_hold: Option<Millis>,
    /// How long a Kafka partition whose leader cannot be reached may hold the watermark. Its
    /// silence then says nothing about its end: producers may be queueing events for it.
    #[serde(default = "default_unreachable_hold")]
    pub unreachable_hold: Millis,
}

fn default_idle_timeout() -> Millis {
    Millis(5_000)
}
fn default_unreachable_hold() -> Millis {
    Millis(30_000)
}
fn default_future_skew() -> Millis {
    Millis(600_000)
}

impl Component for WatermarkConfig {
    fn check(&self, _cx: &CheckContext<'_>, errors: &mut Errors<'_>) {
        if self.idle_timeout.0 == 0 {
            errors.field("idle_timeout", "must be above zero");
        }
        if self.max_future_skew.0 == 0 {
            errors.field(
                "max_future_skew",
                "must be above zero: events stamped a moment ahead of this host's clock would all be invalid",
            );
        }
    }
}

impl OperatorNode for WatermarkConfig {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn reads_sources(&self) -> bool {
        true
    }

    fn ports(&self) -> &'static [Port] {
        &[Port::All, Port::OnTime, Port::Late, Port::Invalid]
    }

    fn outputs(&self, _input: StreamKind, _errors: &mut Errors<'_>) -> Vec<(Port, StreamKind)> {
        let on = StreamKind {
            on_time: true,
            ..Default::default()
        };
        let late = StreamKind {
            late: true,
            ..Default::default()
        };
        let invalid = StreamKind {
            invalid: true,
            ..Default::default()
        };
        vec![
            (Port::All, on.union(late)),
            (Port::OnTime, on),
            (Port::Late, late),
            (Port::Invalid, invalid),
        ]
    }

    fn build<'s>(
        &self,
        node: &str,
        _inputs: Vec<AnyStream<'s>>,
        cx: &mut BuildContext<'_, 's>,
    ) -> Result<Vec<(Port, AnyStream<'s>)>, OperatorError> {
        let splits = &cx.worker.splits;
        let mine: Vec<u32> = (0..splits.splits.len() as u32)
            .filter(|&s| Splits::owner(s, cx.peers) == cx.index)
            .filter(|&s| self.inputs.contains(&splits.get(s).node))
            .collect();
        let readers = sources::open(cx.sources, cx.source_cx, splits, &mine)?;
        let links = sources::open_links(cx.sources, cx.source_cx, splits, &mine)?;
        let owned = Owned {
            readers,
            links,
            mine,
        };
        let policy = WatermarkPolicy::from(self);
        cx.worker
            .metrics
            .watermark_bound
            .with_label_values(&[node])
            .set(policy.max_out_of_orderness as f64 / 1000.0);
        let (out, handle) = watermark(cx.scope, node, policy, cx.event.clone(), owned, cx.worker);
        cx.handles.push(handle);
        Ok(vec![
            (Port::OnTime, AnyStream::Events(out.on_time)),
            (Port::Late, AnyStream::Events(out.late)),
            (Port::Invalid, AnyStream::Invalid(out.invalid)),
        ])
    }
}

/// Records read per partition reader per activation before yielding, so one busy source cannot
/// starve the rest of the dataflow (dedup, reorder and sinks run on the same thread).
///
/// Every activation that reads costs a step of the whole worker: a capability move that timely
/// tells every other worker, and a flush of each exchange. Between processes each of those wakes
/// a network thread and, through it, the peer. At 256 those per-step costs were a sixth of the
/// CPU of two processes: 1,024 took 15% off their CPU per event (median of 8 runs each) and
/// sped one worker up too, while 4,096 gained nothing more. At a million events a second a
/// worker of four partitions still yields every few milliseconds.
const BUDGET: usize = 1024;

/// The three outputs of a watermark node.
pub struct WatermarkStreams<'scope> {
    /// Events at or above the watermark on arrival.
    pub on_time: Stream<'scope, u64, Vec<Event>>,
    /// Events below it.
    pub late: Stream<'scope, u64, Vec<Event>>,
    /// Records that are not valid events.
    pub invalid: Stream<'scope, u64, Vec<Invalid>>,
}

impl From<&WatermarkConfig> for WatermarkPolicy {
    fn from(c: &WatermarkConfig) -> Self {
        let Millis(max_out_of_orderness) = c.max_out_of_orderness;
        WatermarkPolicy {
            max_out_of_orderness,
            idle_timeout: c.idle_timeout.0,
            max_future_skew: c.max_future_skew.0,
            max_split_hold: c.max_split_hold.map_or(0, |m| m.0),
            unreachable_hold: c.unreachable_hold.0,
        }
    }
}

/// Shared between the operator and the worker loop, which commits the final offsets after the
/// dataflow has drained (when the operator itself is no longer scheduled).
pub struct SourceHandle {
    readers: Vec<Box<dyn SplitReader>>,
    committer: Committer,
}

impl SourceHandle {
    /// Commits every offset the probe allows.
    pub fn commit(&mut self, frontier: Option<u64>, sync: bool) -> Result<(), SourceError> {
        let ready = self.committer.ready(frontier);
        if ready.is_empty() {
            return Ok(());
        }
        for r in &mut self.readers {
            r.commit(&ready, sync)?;
        }
        Ok(())
    }
}

/// What one worker reads for a watermark node.
pub struct Owned {
    /// Readers of the splits it owns.
    pub readers: Vec<Box<dyn SplitReader>>,
    /// Heartbeat watches of the replicated sources among them.
    pub links: Vec<LinkSpec>,
    /// The splits, by index.
    pub mine: Vec<u32>,
}

/// One link inside the operator: its heartbeats, and its metrics when this worker reports them.
struct Link {
    spec: LinkSpec,
    was_down: bool,
    /// While down: when the split began (the newest heartbeat then).
    split_began: u64,
    /// When the link was last observed, for the split-seconds counter.
    observed_at: Option<u64>,
    gauges: Option<LinkGauges>,
}

struct LinkGauges {
    lag: prometheus::Gauge,
    split: prometheus::IntGauge,
    duration: prometheus::Gauge,
    episodes: prometheus::IntCounter,
    seconds: prometheus::Counter,
    hold: prometheus::IntGauge,
}

impl Link {
    fn new(spec: LinkSpec, splits: &Splits, mine: &[u32], m: &crate::metrics::Metrics) -> Link {
        // Every worker with a partition of the source follows the link, but only the owner of
        // its first split reports it, so each link is counted once across the cluster.
        let first = splits
            .splits
            .iter()
            .position(|s| s.node == spec.node)
            .map(|i| i as u32);
        let gauges = first.filter(|f| mine.contains(f)).map(|_| {
            let l = [spec.watch.from.as_str(), spec.watch.to.as_str()];
            LinkGauges {
                lag: m.replication_lag.with_label_values(&l),
                split: m.split_brain.with_label_values(&l),
                duration: m.split_duration.with_label_values(&l),
                episodes: m.split_episodes.with_label_values(&l),
                seconds: m.split_seconds.with_label_values(&l),
                hold: m.split_hold.with_label_values(&l),
            }
        });
        Link {
            spec,
            was_down: false,
            split_began: 0,
            observed_at: None,
            gauges,
        }
    }

    fn observe(&mut self, now: u64, started: u64, hold: u64) -> LinkView {
        let newest = self.spec.watch.poll(now);
        let view = LinkView::at(newest, started, now, self.spec.timeout, hold);
        if view.down != self.was_down {
            let (from, to) = (&self.spec.watch.from, &self.spec.watch.to);
            if view.down {
                self.split_began = now.saturating_sub(view.staleness);
                tracing::warn!(%from, %to, stale_ms = view.staleness, "replication link down: split brain");
            } else {
                tracing::info!(%from, %to, "replication link up again");
            }
        }
        if let Some(g) = &self.gauges {
            g.lag.set(view.staleness as f64 / 1000.0);
            g.split.set(i64::from(view.down));
            g.duration.set(if view.down {
                view.staleness as f64 / 1000.0
            } else {
                0.0
            });
            g.hold.set(i64::from(view.held));
            if view.down && !self.was_down {
                g.episodes.inc();
            }
            if view.down && self.was_down {
                let since = self.observed_at.unwrap_or(now);
                g.seconds.inc_by(now.saturating_sub(since) as f64 / 1000.0);
            }
        }
        self.was_down = view.down;
        self.observed_at = Some(now);
        view
    }
}

/// Where one record goes.
enum Routed {
    OnTime(Event),
    Late(Event),
    Invalid(Invalid),
    /// An invalid record whose dead letter was written before the restart.
    Written,
}

/// Everything of one worker's watermark node that is not timely: the rules, the decoder, the
/// offsets read since the last activation and the counters, added once per activation.
struct Intake {
    state: WatermarkState,
    format: EventFormat,
    /// The largest event the pipeline's event outputs take (see [`WorkerContext`]).
    output_limit: Option<usize>,
    splits: Arc<Splits>,
    /// Split index -> partition position, as a vector: this lookup runs for every record.
    slot: Vec<usize>,
    /// (split, next offset) read in this activation, in order.
    touched: Vec<(u32, i64)>,
    counts: Counts,
    /// The invalid records already written before a restart, which a replay does not write
    /// again.
    restored: Arc<crate::runtime::Restored>,
    skipped: prometheus::IntCounter,
}

impl Intake {
    /// One record: decoded, judged by the rules, and routed.
    #[inline]
    fn record(
        &mut self,
        split: u32,
        offset: i64,
        bytes: &[u8],
        timestamp: Option<i64>,
        now: u64,
    ) -> Routed {
        let i = self.slot[split as usize];
        self.state.record(i, now);
        self.counts.read(i, bytes.len());
        match self.touched.last_mut() {
            Some((s, o)) if *s == split => *o = offset + 1,
            _ => self.touched.push((split, offset + 1)),
        }
        let d = match decode(bytes, &self.format) {
            Ok(d) => d,
            Err(r) => return self.invalid(r.reason, r.detail, None, bytes, split, offset),
        };
        // Before the watermark sees it: an event that cannot be written takes no part in time,
        // and the same record is refused the same way on every replay.
        if let Some(limit) = self.output_limit.filter(|&l| bytes.len() > l) {
            let detail = format!(
                "{} bytes; the event outputs take at most {limit}",
                bytes.len()
            );
            let id = Some(d.id.as_str(bytes).to_string());
            return self.invalid(Reason::TooLargeForOutput, detail, id, bytes, split, offset);
        }
        if let Some(ts) = timestamp {
            self.counts.skew(i, d.time as i64 - ts);
        }
        let late = match self.state.event(i, d.time, now) {
            Verdict::OnTime => None,
            Verdict::Late { watermark } => Some(Box::new(Late {
                watermark,
                arrival_ms: now,
                beyond_horizon: false,
            })),
            Verdict::Future { ahead_ms } => {
                let detail = format!("{ahead_ms} ms ahead of the wall clock");
                return self.invalid(Reason::FutureTimestamp, detail, None, bytes, split, offset);
            }
        };
        let id = match d.id {
            IdText::Span(a, z) => EventId::Span(a as u32, z as u32),
            IdText::Owned(s) => EventId::Owned(s.into_boxed_str()),
        };
        let event = Event::new(d.time, id, bytes.into(), split, offset, late);
        if event.late.is_some() {
            self.counts.late[self.splits.get(split).region_index] += 1;
            Routed::Late(event)
        } else {
            Routed::OnTime(event)
        }
    }

    fn invalid(
        &mut self,
        reason: Reason,
        detail: String,
        id: Option<String>,
        bytes: &[u8],
        split: u32,
        offset: i64,
    ) -> Routed {
        if !self.restored.dead_letters.is_empty()
            && self
                .restored
                .dead_letters
                .contains(&self.splits.get(split).describe(offset))
        {
            self.skipped.inc();
            return Routed::Written;
        }
        self.counts.invalid[reason as usize] += 1;
        Routed::Invalid(Invalid {
            reason,
            detail,
            payload: bytes.to_vec(),
            split,
            offset,
            id,
        })
    }

    /// What a reader says of a split other than a record.
    fn progress(&mut self, polled: Polled<'_>, now: u64) {
        match polled {
            Polled::Record { .. } => {}
            Polled::End { split } => self.state.end(self.slot[split as usize]),
            Polled::Finished { split } => self.state.finished(self.slot[split as usize]),
            Polled::Reachable { split, reachable } => {
                self.state
                    .reachable(self.slot[split as usize], reachable, now)
            }
        }
    }
}

/// Counts of one activation, per partition, region and reason, added to the Prometheus
/// counters once per activation rather than once per record.
struct Counts {
    events: Vec<u64>,
    bytes: Vec<u64>,
    late: Vec<u64>,
    invalid: [u64; Reason::ALL.len()],
    events_in: Vec<(prometheus::IntCounter, prometheus::IntCounter)>,
    late_in: Vec<prometheus::IntCounter>,
    invalid_in: Vec<prometheus::IntCounter>,
    /// Per partition: event time minus record timestamp, added up locally between flushes.
    skew: Vec<prometheus::local::LocalHistogram>,
}

impl Counts {
    fn new(mine: &[u32], splits: &Splits, m: &crate::metrics::Metrics) -> Counts {
        let events_in: Vec<_> = mine
            .iter()
            .map(|&s| {
                let sp = splits.get(s);
                let labels = [sp.node.as_str(), sp.region.as_str()];
                (
                    m.events_in.with_label_values(&labels),
                    m.bytes_in.with_label_values(&labels),
                )
            })
            .collect();
        let late_in: Vec<_> = splits
            .regions
            .iter()
            .map(|r| m.late_events.with_label_values(&[r]))
            .collect();
        let invalid_in = Reason::ALL
            .iter()
            .map(|r| m.invalid_events.with_label_values(&[r.as_str()]))
            .collect();
        let skew = mine
            .iter()
            .map(|&s| {
                let sp = splits.get(s);
                m.event_time_skew
                    .with_label_values(&[sp.node.as_str(), sp.region.as_str()])
                    .local()
            })
            .collect();
        Counts {
            skew,
            events: vec![0; mine.len()],
            bytes: vec![0; mine.len()],
            late: vec![0; late_in.len()],
            invalid: [0; Reason::ALL.len()],
            events_in,
            late_in,
            invalid_in,
        }
    }

    #[inline]
    fn read(&mut self, partition: usize, bytes: usize) {
        self.events[partition] += 1;
        self.bytes[partition] += bytes as u64;
    }

    #[inline]
    fn skew(&mut self, partition: usize, skew_ms: i64) {
        self.skew[partition].observe(skew_ms as f64 / 1000.0);
    }

    fn flush(&mut self) {
        for h in &self.skew {
            h.flush();
        }
        for (((events, bytes), n), b) in self
            .events_in
            .iter()
            .zip(self.events.iter_mut())
            .zip(self.bytes.iter_mut())
        {
            events.inc_by(std::mem::take(n));
            bytes.inc_by(std::mem::take(b));
        }
        for (c, n) in self.late_in.iter().zip(self.late.iter_mut()) {
            c.inc_by(std::mem::take(n));
        }
        for (c, n) in self.invalid_in.iter().zip(self.invalid.iter_mut()) {
            c.inc_by(std::mem::take(n));
        }
    }
}

type Out<C> = OutputBuilder<u64, timely::container::CapacityContainerBuilder<C>>;

/// The operator's three outputs.
struct Outputs {
    on_time: Out<Vec<Event>>,
    late: Out<Vec<Event>>,
    invalid: Out<Vec<Invalid>>,
}

/// When the operator wants to run again.
enum Next {
    /// At once: a reader had more than one activation's budget.
    Now,
    /// Very soon: reading is held back until the sinks pass what is in flight, which only
    /// other operators and peers can do; a worker spinning on it would take their core.
    Soon,
    /// After a tick: without new data the watermark can still move (idleness, the wall clock),
    /// and offsets still need committing.
    Later,
    /// Never: the capability is gone.
    Done,
}

/// One worker's watermark node between activations.
struct Shell {
    intake: Intake,
    source: Rc<RefCell<SourceHandle>>,
    links: Vec<Link>,
    views: Vec<LinkView>,
    probe: ProbeHandle<u64>,
    flow_probe: ProbeHandle<u64>,
    shutdown: Arc<AtomicBool>,
    failure: Rc<RefCell<Option<String>>>,
    commit_interval: u64,
    start: u64,
    wm_gauge: prometheus::IntGauge,
    lag_gauge: prometheus::Gauge,
    flow: FlowControl,
    flow_gauges: FlowGauges,
}

struct FlowGauges {
    throttled: prometheus::Counter,
    records: prometheus::IntGauge,
    bytes: prometheus::IntGauge,
}

impl Shell {
    fn new(
        name: &str,
        policy: WatermarkPolicy,
        format: EventFormat,
        owned: Owned,
        ctx: &WorkerContext,
        worker: usize,
    ) -> (Shell, Rc<RefCell<SourceHandle>>) {
        let Owned {
            readers,
            links,
            mine,
        } = owned;
        let splits = &ctx.splits;
        let start = wall_ms();
        let part_links: Vec<Option<usize>> = mine
            .iter()
            .map(|&s| links.iter().position(|l| l.node == splits.get(s).node))
            .collect();
        let mut slot = vec![usize::MAX; splits.splits.len()];
        for (i, &s) in mine.iter().enumerate() {
            slot[s as usize] = i;
        }
        let intake = Intake {
            state: WatermarkState::new(policy, &part_links, start).with_floor(ctx.restored.floor),
            restored: Arc::clone(&ctx.restored),
            skipped: ctx.metrics.dead_letters_replayed.clone(),
            format,
            output_limit: ctx.output_limit,
            counts: Counts::new(&mine, splits, &ctx.metrics),
            splits: Arc::clone(splits),
            slot,
            touched: Vec::new(),
        };
        let links: Vec<Link> = links
            .into_iter()
            .map(|spec| Link::new(spec, splits, &mine, &ctx.metrics))
            .collect();
        let source = Rc::new(RefCell::new(SourceHandle {
            readers,
            committer: Committer::default(),
        }));
        let worker = worker.to_string();
        let shell = Shell {
            intake,
            source: Rc::clone(&source),
            views: Vec::with_capacity(links.len()),
            links,
            probe: ctx.probe.clone(),
            flow_probe: ctx.flow_probe.clone(),
            shutdown: Arc::clone(&ctx.shutdown),
            failure: Rc::clone(&ctx.failure),
            commit_interval: ctx.commit_interval,
            start,
            wm_gauge: ctx.metrics.watermark_ms.with_label_values(&[name, &worker]),
            lag_gauge: ctx
                .metrics
                .watermark_lag
                .with_label_values(&[name, &worker]),
            flow: FlowControl::new(ctx.flow),
            flow_gauges: FlowGauges {
                throttled: ctx
                    .metrics
                    .throttled_seconds
                    .with_label_values(&[name, &worker]),
                records: ctx
                    .metrics
                    .in_flight_records
                    .with_label_values(&[name, &worker]),
                bytes: ctx
                    .metrics
                    .in_flight_bytes
                    .with_label_values(&[name, &worker]),
            },
        };
        (shell, source)
    }

    /// One activation: read, commit what the sinks allow, then move the watermark.
    fn activate(&mut self, caps: &mut Vec<TimelyCapability<u64>>, out: &mut Outputs) -> Next {
        if caps.is_empty() {
            return Next::Done;
        }
        if self.shutdown.load(Ordering::SeqCst) {
            caps.clear();
            return Next::Done;
        }
        let now = wall_ms();
        let cap_time = *caps[0].time();
        let frontier = self.flow_probe.with_frontier(|f| f.iter().next().copied());
        self.flow.settle(frontier);
        let (hold, ended) = self.flow.hold_back(cap_time, Instant::now());
        if let Some(d) = ended {
            self.flow_gauges.throttled.inc_by(d.as_secs_f64());
        }
        if hold {
            // Nothing is read, so the watermark stays: moving it now could only come from a
            // partition turning idle, and whether one is idle is not known while it is not read.
            // Links and offsets are still followed.
            self.commit(cap_time, now);
            self.observe_links(now);
            self.show_flow();
            return Next::Soon;
        }
        let (read, bytes, more) = match self.read(caps, out, now) {
            Ok(r) => r,
            Err(e) => {
                *self.failure.borrow_mut() = Some(e.to_string());
                caps.clear();
                return Next::Done;
            }
        };
        self.flow.emitted(cap_time, read as u64, bytes);
        self.show_flow();
        self.commit(cap_time, now);
        if read > 0 {
            self.intake.counts.flush();
        }
        self.observe_links(now);
        match self.intake.state.advance(&self.views, now) {
            Capability::Released => {
                caps.clear();
                return Next::Done;
            }
            Capability::Hold(wm) => {
                if wm > cap_time {
                    for c in caps.iter_mut() {
                        c.downgrade(&wm);
                    }
                }
                self.wm_gauge.set(wm as i64);
                self.lag_gauge.set(now.saturating_sub(wm) as f64 / 1000.0);
            }
        }
        if more {
            Next::Now
        } else {
            Next::Later
        }
    }

    fn show_flow(&self) {
        let (records, bytes) = self.flow.in_flight();
        self.flow_gauges.records.set(records as i64);
        self.flow_gauges.bytes.set(bytes as i64);
    }

    /// Polls every reader once, with records going straight into timely's output buffers at
    /// the capability held while reading: that is the commit point of every offset read now.
    /// Returns how many records and bytes were read, and whether a reader had more.
    fn read(
        &mut self,
        caps: &[TimelyCapability<u64>],
        out: &mut Outputs,
        now: u64,
    ) -> Result<(usize, u64, bool), SourceError> {
        let mut on_handle = out.on_time.activate();
        let mut late_handle = out.late.activate();
        let mut invalid_handle = out.invalid.activate();
        let mut on_time = on_handle.session(&caps[0]);
        let mut late = late_handle.session(&caps[1]);
        let mut invalid = invalid_handle.session(&caps[2]);
        let intake = &mut self.intake;
        let (mut read, mut read_bytes, mut more) = (0, 0u64, false);
        for reader in self.source.borrow_mut().readers.iter_mut() {
            let n = reader.poll(BUDGET, &mut |polled| match polled {
                Polled::Record {
                    split,
                    offset,
                    bytes,
                    timestamp,
                } => {
                    read_bytes += bytes.len() as u64;
                    match intake.record(split, offset, bytes, timestamp, now) {
                        Routed::OnTime(e) => on_time.give(e),
                        Routed::Late(e) => late.give(e),
                        Routed::Invalid(r) => invalid.give(r),
                        Routed::Written => {}
                    }
                }
                other => intake.progress(other, now),
            })?;
            read += n;
            more |= n >= BUDGET;
        }
        Ok((read, read_bytes, more))
    }

    /// Queues the offsets read at `cap_time`, and commits what the probe allows once per
    /// `commit_interval`.
    fn commit(&mut self, cap_time: u64, now: u64) {
        let mut h = self.source.borrow_mut();
        for (split, next) in self.intake.touched.drain(..) {
            h.committer.record(split, cap_time, next);
        }
        if now.saturating_sub(h.committer.last_commit_ms) >= self.commit_interval {
            h.committer.last_commit_ms = now;
            let frontier = self.probe.with_frontier(|f| f.iter().next().copied());
            if let Err(e) = h.commit(frontier, false) {
                tracing::warn!(error = %e, "offset commit failed; will retry");
            }
        }
    }

    /// Each replication link's state now; a link that is up again after a split tells the
    /// state machine, whose partitions then hold until they deliver.
    fn observe_links(&mut self, now: u64) {
        let hold = self.intake.state.policy().max_split_hold;
        self.views.clear();
        for (l, link) in self.links.iter_mut().enumerate() {
            let was_down = link.was_down;
            let view = link.observe(now, self.start, hold);
            if was_down && !view.down {
                self.intake.state.link_returned(l, link.split_began, now);
            }
            self.views.push(view);
        }
    }
}

/// Builds the watermark operator over the splits this worker owns.
pub fn watermark<'scope>(
    scope: Scope<'scope, u64>,
    name: &str,
    policy: WatermarkPolicy,
    format: EventFormat,
    owned: Owned,
    ctx: &WorkerContext,
) -> (WatermarkStreams<'scope>, Rc<RefCell<SourceHandle>>) {
    let mut builder = OperatorBuilder::new(format!("Watermark({name})"), scope);
    let info = builder.operator_info();
    let (on_time_out, on_time) = builder.new_output::<Vec<Event>>();
    let (late_out, late) = builder.new_output::<Vec<Event>>();
    let (invalid_out, invalid) = builder.new_output::<Vec<Invalid>>();
    let mut outputs = Outputs {
        on_time: Out::from(on_time_out),
        late: Out::from(late_out),
        invalid: Out::from(invalid_out),
    };
    let (mut shell, handle) = Shell::new(name, policy, format, owned, ctx, scope.index());
    let activator = scope.activator_for(Rc::clone(&info.address));
    // A reader that can signal new data wakes the operator; the others are polled on a timer.
    let sync_activator = scope.worker().sync_activator_for(info.address.to_vec());
    let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let _ = sync_activator.activate();
    });
    let woken = handle
        .borrow_mut()
        .readers
        .iter_mut()
        .fold(true, |all, r| r.set_waker(Arc::clone(&wake)) & all);
    let tick = Duration::from_millis(if woken { 100 } else { 10 }.min(policy.idle_timeout.max(1)));

    builder.build(move |mut caps| {
        match shell.intake.state.capability() {
            // Nothing to read on this worker: let the frontier move on without us.
            Capability::Released => caps.clear(),
            // A restarted pipeline's watermark starts where its output left off.
            Capability::Hold(floor) => caps.iter_mut().for_each(|c| c.downgrade(&floor)),
        }
        move |_frontiers| match shell.activate(&mut caps, &mut outputs) {
            Next::Now => activator.activate(),
            Next::Soon => activator.activate_after(Duration::from_millis(1)),
            Next::Later => activator.activate_after(tick),
            Next::Done => {}
        }
    });

    (
        WatermarkStreams {
            on_time,
            late,
            invalid,
        },
        handle,
    )
}
