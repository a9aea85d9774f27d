//! The watermark operator: reads its sources, decodes, assigns event time, and holds the
//! capability that *is* the watermark.
//!
//! Per partition, the watermark is the largest event time seen minus `max_out_of_orderness`. The
//! worker's capability is the minimum over its active partitions; a partition at its end offset
//! with no records for `idle_timeout` leaves the minimum, and when every partition is idle the
//! watermark follows the wall clock so the tail of a stream always flushes. A record below the
//! capability on arrival is late: it is emitted at the capability, tagged with the watermark it
//! missed. Offsets are committed once the sinks' probe shows everything emitted up to the
//! offset's commit point is durable.
//!
//! Replication-aware hold: partitions of an MM2 remote topic belong to a replication link, and
//! the link is down while its newest replicated heartbeat is older than `link_timeout`. While a
//! link is down those partitions never count as idle, so the watermark waits for the events the
//! link has not delivered yet, for up to `max_split_hold` after the newest heartbeat. After that
//! it moves on, and whatever the link delivers behind it is late.
//!
//! A partition's silence means it is idle only while its broker can be reached. While a Kafka
//! partition's leader is unreachable its end is unknown (producers may be queueing events for
//! it), so it does not count as idle, for up to `unreachable_hold`.
//!
//! Back from either (the link up again, the leader reachable again), a partition keeps holding
//! until its first record, within the same hold, since its backlog may come well after the
//! heartbeats or the reconnect; after that record the usual `idle_timeout` applies.

use crate::config::{Millis, WatermarkConfig};
use crate::event::EventFormat;
use crate::event::{decode, IdText};
use crate::event::{Event, EventId, Invalid, Late, Reason, Splits};
use crate::runtime::{wall_ms, WorkerContext};
use crate::sources::heartbeat::LinkSpec;
use crate::sources::{Polled, SplitReader};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::{Scope, Stream};

/// Records read per activation before yielding, so one busy source cannot starve the rest of
/// the dataflow (dedup, reorder and sinks run on the same thread).
const BUDGET: usize = 256;

/// The three outputs of a watermark node.
pub struct WatermarkStreams<'scope> {
    /// Events at or above the watermark on arrival.
    pub on_time: Stream<'scope, u64, Vec<Event>>,
    /// Events below it.
    pub late: Stream<'scope, u64, Vec<Event>>,
    /// Records that are not valid events.
    pub invalid: Stream<'scope, u64, Vec<Invalid>>,
}

#[derive(Debug, Clone)]
struct PartitionState {
    max_time: Option<u64>,
    /// Wall time of the last record, or of the start.
    last_record_ms: u64,
    at_end: bool,
    finished: bool,
    /// The replication link this partition's events cross, if it is an MM2 remote topic.
    link: Option<usize>,
    /// Wall time since which its leader has been unreachable, if it is.
    unreachable_since: Option<u64>,
    /// Cut off (a split, or an unreachable leader), back again, and silent since: it holds the
    /// watermark until its first record or this wall time, the end of the hold it was under.
    awaiting_until: Option<u64>,
}

/// Settings of one watermark node, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct WatermarkPolicy {
    /// Bounded disorder.
    pub max_out_of_orderness: u64,
    /// Idleness.
    pub idle_timeout: u64,
    /// Largest accepted lead over the wall clock.
    pub max_future_skew: u64,
    /// How long a down replication link may hold the watermark (0: not at all).
    pub max_split_hold: u64,
    /// How long an unreachable partition may hold the watermark (0: not at all).
    pub unreachable_hold: u64,
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

/// A replication link's state at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkView {
    /// The newest heartbeat is older than the link timeout.
    pub down: bool,
    /// Down, and still within `max_split_hold`: its partitions hold the watermark.
    pub held: bool,
    /// Milliseconds since the newest heartbeat (or since start, before the first one).
    pub staleness: u64,
}

impl LinkView {
    /// The link's state given its newest heartbeat time, when watching began, and the settings.
    pub fn at(newest: Option<u64>, started: u64, now: u64, timeout: u64, hold: u64) -> LinkView {
        let staleness = now.saturating_sub(newest.unwrap_or(started));
        let down = staleness > timeout;
        LinkView {
            down,
            held: down && staleness <= hold,
            staleness,
        }
    }
}

/// The watermark a worker may hold given its partitions, or `None` when every partition has
/// finished (bounded mode) and the capability can go.
fn worker_watermark(
    parts: &[PartitionState],
    links: &[LinkView],
    policy: &WatermarkPolicy,
    now: u64,
) -> Option<u64> {
    let mut live = false;
    let mut min: Option<u64> = None;
    for p in parts.iter().filter(|p| !p.finished) {
        live = true;
        let held = p.link.is_some_and(|l| links[l].held)
            || p.unreachable_since
                .is_some_and(|t| now.saturating_sub(t) < policy.unreachable_hold)
            || p.awaiting_until.is_some_and(|t| now < t);
        let idle = !held && p.at_end && now.saturating_sub(p.last_record_ms) >= policy.idle_timeout;
        if idle {
            continue;
        }
        // A partition that has shown no event yet holds the watermark at zero: we cannot know
        // how old its first event will be.
        let wm = p
            .max_time
            .map_or(0, |m| m.saturating_sub(policy.max_out_of_orderness));
        min = Some(min.map_or(wm, |x: u64| x.min(wm)));
    }
    if !live {
        return None;
    }
    Some(
        min.unwrap_or_else(|| {
            now.saturating_sub(policy.max_out_of_orderness + policy.idle_timeout)
        }),
    )
}

impl PartitionState {
    /// The partition was cut off from what feeds it and is back; `hold_ends` is when the hold
    /// it was under runs out. Being back says nothing of its backlog: MM2 copies heartbeats and
    /// data partitions separately, and producers that queued while a broker was down deliver
    /// after their own reconnect backoff, often seconds later. So it holds the watermark until
    /// it delivers again, up to the end of its hold, and after its last record it must then be
    /// quiet for a whole `idle_timeout`, as always.
    fn back(&mut self, now: u64, hold_ends: u64) {
        self.last_record_ms = now;
        self.awaiting_until = (hold_ends > now).then_some(hold_ends);
    }
}

/// A replication link is up again after a split that began at `split_began` (its newest
/// heartbeat then).
fn link_returned(
    parts: &mut [PartitionState],
    link: usize,
    split_began: u64,
    policy: &WatermarkPolicy,
    now: u64,
) {
    let hold_ends = split_began.saturating_add(policy.max_split_hold);
    for p in parts.iter_mut().filter(|p| p.link == Some(link)) {
        p.back(now, hold_ends);
    }
}

/// Offsets waiting for the sinks: per split, (commit point, next offset) in emission order.
#[derive(Default)]
pub struct Committer {
    pending: BTreeMap<u32, VecDeque<(u64, i64)>>,
    last_commit_ms: u64,
}

impl Committer {
    fn record(&mut self, split: u32, time: u64, next_offset: i64) {
        let q = self.pending.entry(split).or_default();
        match q.back_mut() {
            // Same commit point: only the newest offset matters.
            Some((t, o)) if *t == time => *o = next_offset,
            _ => q.push_back((time, next_offset)),
        }
    }

    /// Offsets whose commit point the probe has passed (`frontier` is its least time; `None`
    /// means the dataflow is drained).
    fn ready(&mut self, frontier: Option<u64>) -> Vec<(u32, i64)> {
        let mut out = Vec::new();
        for (&split, q) in &mut self.pending {
            let mut best = None;
            while let Some(&(t, o)) = q.front() {
                if frontier.is_some_and(|f| t >= f) {
                    break;
                }
                best = Some(o);
                q.pop_front();
            }
            if let Some(o) = best {
                out.push((split, o));
            }
        }
        out
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
    pub fn commit(
        &mut self,
        frontier: Option<u64>,
        sync: bool,
    ) -> Result<(), crate::sources::SourceError> {
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

/// Builds the watermark operator over `readers` (the splits this worker owns).
pub fn watermark<'scope>(
    scope: Scope<'scope, u64>,
    name: &str,
    policy: WatermarkPolicy,
    format: EventFormat,
    owned: Owned,
    ctx: &WorkerContext,
) -> (WatermarkStreams<'scope>, Rc<RefCell<SourceHandle>>) {
    let Owned {
        readers,
        links,
        mine,
    } = owned;
    let mut builder = OperatorBuilder::new(format!("Watermark({name})"), scope);
    let info = builder.operator_info();
    let (on_time_out, on_time) = builder.new_output::<Vec<Event>>();
    let (late_out, late) = builder.new_output::<Vec<Event>>();
    let (invalid_out, invalid) = builder.new_output::<Vec<Invalid>>();
    let mut on_time_out = OutputBuilder::<
        u64,
        timely::container::CapacityContainerBuilder<Vec<Event>>,
    >::from(on_time_out);
    let mut late_out =
        OutputBuilder::<u64, timely::container::CapacityContainerBuilder<Vec<Event>>>::from(
            late_out,
        );
    let mut invalid_out = OutputBuilder::<
        u64,
        timely::container::CapacityContainerBuilder<Vec<Invalid>>,
    >::from(invalid_out);

    let handle = Rc::new(RefCell::new(SourceHandle {
        readers,
        committer: Committer::default(),
    }));
    let shared = Rc::clone(&handle);
    let activator = scope.activator_for(Rc::clone(&info.address));
    let sync_activator = Arc::new(scope.worker().sync_activator_for(info.address.to_vec()));
    let woken = {
        let sa = Arc::clone(&sync_activator);
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            let _ = sa.activate();
        });
        let mut all = true;
        for r in &mut handle.borrow_mut().readers {
            all &= r.set_waker(Arc::clone(&wake));
        }
        all
    };

    let splits: Arc<Splits> = Arc::clone(&ctx.splits);
    let metrics = ctx.metrics.clone();
    let probe = ctx.probe.clone();
    let shutdown = Arc::clone(&ctx.shutdown);
    let failure = Rc::clone(&ctx.failure);
    let commit_interval = ctx.commit_interval;
    let worker = scope.index().to_string();
    let node = name.to_string();
    let start = wall_ms();
    let mut parts: Vec<PartitionState> = mine
        .iter()
        .map(|&s| PartitionState {
            max_time: None,
            last_record_ms: start,
            at_end: false,
            finished: false,
            link: links.iter().position(|l| l.node == splits.get(s).node),
            unreachable_since: None,
            awaiting_until: None,
        })
        .collect();
    let mut links: Vec<Link> = links
        .into_iter()
        .map(|spec| Link::new(spec, &splits, &mine, &metrics))
        .collect();
    let mut views: Vec<LinkView> = Vec::with_capacity(links.len());
    // Split index -> position in `parts`, as a vector: this lookup runs for every record.
    let mut slot = vec![usize::MAX; splits.splits.len()];
    for (i, &s) in mine.iter().enumerate() {
        slot[s as usize] = i;
    }
    // Counters are kept per batch and added once, see `metrics`.
    let in_counters: Vec<_> = mine
        .iter()
        .map(|&s| {
            let sp = splits.get(s);
            let labels = [sp.node.as_str(), sp.region.as_str()];
            (
                metrics.events_in.with_label_values(&labels),
                metrics.bytes_in.with_label_values(&labels),
            )
        })
        .collect();
    let late_counters: Vec<_> = splits
        .regions
        .iter()
        .map(|r| metrics.late_events.with_label_values(&[r]))
        .collect();
    let invalid_counters: Vec<_> = Reason::ALL
        .iter()
        .map(|r| metrics.invalid_events.with_label_values(&[r.as_str()]))
        .collect();
    let wm_gauge = metrics.watermark_ms.with_label_values(&[&node, &worker]);
    let lag_gauge = metrics.watermark_lag.with_label_values(&[&node, &worker]);

    builder.build(move |mut caps: Vec<Capability<u64>>| {
        if parts.is_empty() {
            // Nothing to read on this worker: let the frontier move on without us.
            caps.clear();
        }
        let mut touched: Vec<(u32, i64)> = Vec::new();
        let mut in_counts = vec![0u64; parts.len()];
        let mut in_bytes = vec![0u64; parts.len()];
        let mut late_counts = vec![0u64; late_counters.len()];
        let mut invalid_counts = [0u64; Reason::ALL.len()];

        move |_frontiers| {
            if caps.is_empty() {
                return;
            }
            if shutdown.load(std::sync::atomic::Ordering::SeqCst) {
                caps.clear();
                return;
            }
            let now = wall_ms();
            let cap_time = *caps[0].time();
            let mut read = 0;
            let mut more = false;
            let mut read_error = None;
            {
                // Records go straight into timely's output buffers, at the capability held
                // while reading: that is the commit point of every offset read now.
                let mut on_handle = on_time_out.activate();
                let mut late_handle = late_out.activate();
                let mut invalid_handle = invalid_out.activate();
                let mut on_time = on_handle.session(&caps[0]);
                let mut late_out = late_handle.session(&caps[1]);
                let mut invalid_out = invalid_handle.session(&caps[2]);
                let mut h = shared.borrow_mut();
                let SourceHandle { readers, .. } = &mut *h;
                for reader in readers.iter_mut() {
                    let result = reader.poll(BUDGET, &mut |polled| match polled {
                        Polled::Record {
                            split,
                            offset,
                            bytes,
                        } => {
                            let i = slot[split as usize];
                            let p = &mut parts[i];
                            p.at_end = false;
                            p.last_record_ms = now;
                            p.awaiting_until = None;
                            in_counts[i] += 1;
                            in_bytes[i] += bytes.len() as u64;
                            match touched.last_mut() {
                                Some((s, o)) if *s == split => *o = offset + 1,
                                _ => touched.push((split, offset + 1)),
                            }
                            match decode(bytes, &format) {
                                Ok(d) if d.time > now + policy.max_future_skew => {
                                    invalid_counts[Reason::FutureTimestamp as usize] += 1;
                                    invalid_out.give(Invalid {
                                        reason: Reason::FutureTimestamp,
                                        detail: format!(
                                            "{} ms ahead of the wall clock",
                                            d.time - now
                                        ),
                                        payload: bytes.to_vec(),
                                        split,
                                        offset,
                                    });
                                }
                                Ok(d) => {
                                    // Below the capability means the capability is above zero.
                                    let late = std::num::NonZeroU64::new(cap_time)
                                        .filter(|_| d.time < cap_time)
                                        .map(|watermark| {
                                            Box::new(Late {
                                                watermark,
                                                arrival_ms: now,
                                            })
                                        });
                                    p.max_time = Some(p.max_time.map_or(d.time, |m| m.max(d.time)));
                                    let id = match d.id {
                                        IdText::Span(a, z) => EventId::Span(a as u32, z as u32),
                                        IdText::Owned(s) => EventId::Owned(s.into_boxed_str()),
                                    };
                                    let event =
                                        Event::new(d.time, id, bytes.into(), split, offset, late);
                                    if event.late.is_some() {
                                        late_counts[splits.get(split).region_index] += 1;
                                        late_out.give(event);
                                    } else {
                                        on_time.give(event);
                                    }
                                }
                                Err(r) => {
                                    invalid_counts[r.reason as usize] += 1;
                                    invalid_out.give(Invalid {
                                        reason: r.reason,
                                        detail: r.detail,
                                        payload: bytes.to_vec(),
                                        split,
                                        offset,
                                    });
                                }
                            }
                        }
                        Polled::End { split } => parts[slot[split as usize]].at_end = true,
                        Polled::Finished { split } => parts[slot[split as usize]].finished = true,
                        Polled::Reachable { split, reachable } => {
                            let p = &mut parts[slot[split as usize]];
                            if !reachable {
                                p.unreachable_since.get_or_insert(now);
                            } else if let Some(since) = p.unreachable_since.take() {
                                p.back(now, since.saturating_add(policy.unreachable_hold));
                            }
                        }
                    });
                    match result {
                        Ok(n) => {
                            read += n;
                            more |= n >= BUDGET;
                        }
                        Err(e) => {
                            read_error = Some(e);
                            break;
                        }
                    }
                }
            }
            if let Some(e) = read_error {
                *failure.borrow_mut() = Some(e.to_string());
                caps.clear();
                return;
            }
            {
                let mut h = shared.borrow_mut();
                for (split, next) in touched.drain(..) {
                    h.committer.record(split, cap_time, next);
                }
                if now.saturating_sub(h.committer.last_commit_ms) >= commit_interval {
                    h.committer.last_commit_ms = now;
                    let frontier = probe.with_frontier(|f| f.iter().next().copied());
                    if let Err(e) = h.commit(frontier, false) {
                        tracing::warn!(error = %e, "offset commit failed; will retry");
                    }
                }
            }
            if read > 0 {
                for (((events, bytes), n), b) in in_counters
                    .iter()
                    .zip(in_counts.iter_mut())
                    .zip(in_bytes.iter_mut())
                {
                    events.inc_by(std::mem::take(n));
                    bytes.inc_by(std::mem::take(b));
                }
                for (c, n) in late_counters.iter().zip(late_counts.iter_mut()) {
                    c.inc_by(std::mem::take(n));
                }
                for (c, n) in invalid_counters.iter().zip(invalid_counts.iter_mut()) {
                    c.inc_by(std::mem::take(n));
                }
            }

            views.clear();
            for (l, link) in links.iter_mut().enumerate() {
                let was_down = link.was_down;
                let view = link.observe(now, start, policy.max_split_hold);
                if was_down && !view.down {
                    link_returned(&mut parts, l, link.split_began, &policy, now);
                }
                views.push(view);
            }
            match worker_watermark(&parts, &views, &policy, now) {
                None => caps.clear(),
                Some(wm) if wm > cap_time => {
                    for c in caps.iter_mut() {
                        c.downgrade(&wm);
                    }
                }
                Some(_) => {}
            }
            if let Some(c) = caps.first() {
                let wm = *c.time();
                wm_gauge.set(wm as i64);
                lag_gauge.set(now.saturating_sub(wm) as f64 / 1000.0);
            }
            if caps.is_empty() {
                return;
            }
            if more {
                activator.activate();
            } else {
                // Without new data the watermark can still move (idleness, the wall clock), and
                // offsets still need committing; a reader with a waker brings us back sooner.
                let tick = if woken { 100 } else { 10 };
                activator
                    .activate_after(Duration::from_millis(tick.min(policy.idle_timeout.max(1))));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn part(max: Option<u64>, last: u64, at_end: bool, finished: bool) -> PartitionState {
        PartitionState {
            max_time: max,
            last_record_ms: last,
            at_end,
            finished,
            link: None,
            unreachable_since: None,
            awaiting_until: None,
        }
    }

    const POLICY: WatermarkPolicy = WatermarkPolicy {
        max_out_of_orderness: 2_000,
        idle_timeout: 5_000,
        max_future_skew: 600_000,
        max_split_hold: 0,
        unreachable_hold: 30_000,
    };

    /// A caught-up, quiet partition whose broker is down holds the watermark for up to the
    /// hold; after that it is idle again, and the wall clock moves the watermark on.
    #[test]
    fn an_unreachable_partition_is_not_idle_until_the_hold_passes() {
        let mut cut = part(Some(40_000), 10_000, true, false);
        cut.unreachable_since = Some(12_000);
        let parts = [part(Some(100_000), 100_000, false, false), cut];
        // Quiet for 30 s and at its end, but cut off for only 28 s: it holds.
        assert_eq!(worker_watermark(&parts, &[], &POLICY, 40_000), Some(38_000));
        // Cut off for 30 s: idle; the other partition leads.
        assert_eq!(worker_watermark(&parts, &[], &POLICY, 42_000), Some(98_000));
        // Reachable partitions that are caught up and quiet are idle as before.
        let mut reachable = parts.clone();
        reachable[1].unreachable_since = None;
        assert_eq!(
            worker_watermark(&reachable, &[], &POLICY, 40_000),
            Some(98_000)
        );
    }

    #[test]
    fn minimum_over_active_partitions() {
        let parts = [
            part(Some(10_000), 0, false, false),
            part(Some(50_000), 0, false, false),
        ];
        assert_eq!(worker_watermark(&parts, &[], &POLICY, 1_000), Some(8_000));
    }

    #[test]
    fn idle_partition_leaves_the_minimum_only_at_its_end() {
        // Caught up and quiet for longer than idle_timeout: excluded.
        let parts = [
            part(Some(10_000), 0, true, false),
            part(Some(50_000), 9_000, false, false),
        ];
        assert_eq!(worker_watermark(&parts, &[], &POLICY, 9_000), Some(48_000));
        // Quiet but not at its end (a slow fetch): still holds.
        let parts = [
            part(Some(10_000), 0, false, false),
            part(Some(50_000), 9_000, false, false),
        ];
        assert_eq!(worker_watermark(&parts, &[], &POLICY, 9_000), Some(8_000));
    }

    #[test]
    fn all_idle_follows_the_wall_clock() {
        let parts = [part(Some(10_000), 0, true, false)];
        assert_eq!(
            worker_watermark(&parts, &[], &POLICY, 100_000),
            Some(93_000)
        );
    }

    #[test]
    fn an_empty_partition_holds_until_idle() {
        let parts = [
            part(None, 0, false, false),
            part(Some(50_000), 0, false, false),
        ];
        assert_eq!(worker_watermark(&parts, &[], &POLICY, 1_000), Some(0));
    }

    #[test]
    fn finished_partitions_release_the_capability() {
        let parts = [part(Some(10_000), 0, true, true)];
        assert_eq!(worker_watermark(&parts, &[], &POLICY, 1_000), None);
        let parts = [
            part(Some(10_000), 0, true, true),
            part(Some(20_000), 900, false, false),
        ];
        assert_eq!(worker_watermark(&parts, &[], &POLICY, 1_000), Some(18_000));
    }

    #[test]
    fn link_is_down_after_its_timeout_and_held_within_the_hold() {
        // Heartbeat 1 s old: up.
        let v = LinkView::at(Some(99_000), 0, 100_000, 3_000, 60_000);
        assert_eq!((v.down, v.held, v.staleness), (false, false, 1_000));
        // 10 s old: down, and held by a 60 s hold.
        let v = LinkView::at(Some(90_000), 0, 100_000, 3_000, 60_000);
        assert_eq!((v.down, v.held), (true, true));
        // No hold configured: down but never held.
        let v = LinkView::at(Some(90_000), 0, 100_000, 3_000, 0);
        assert_eq!((v.down, v.held), (true, false));
        // The hold has run out.
        let v = LinkView::at(Some(30_000), 0, 100_000, 3_000, 60_000);
        assert_eq!((v.down, v.held), (true, false));
        // Never a heartbeat: down since the watch started.
        let v = LinkView::at(None, 95_000, 100_000, 3_000, 60_000);
        assert_eq!((v.down, v.held, v.staleness), (true, true, 5_000));
    }

    #[test]
    fn a_held_link_keeps_its_quiet_partitions_in_the_minimum() {
        let mut remote = part(Some(20_000), 0, true, false);
        remote.link = Some(0);
        let local = part(Some(50_000), 9_000, false, false);
        let parts = [remote, local];
        let up = LinkView::at(Some(8_500), 0, 9_000, 3_000, 60_000);
        let held = LinkView::at(Some(1_000), 0, 9_000, 3_000, 60_000);
        let expired = LinkView::at(Some(1_000), 0, 9_000, 3_000, 5_000);
        // Link up: the caught-up remote partition is idle and the local one leads.
        assert_eq!(
            worker_watermark(&parts, &[up], &POLICY, 9_000),
            Some(48_000)
        );
        // Split within the hold: the remote partition holds the watermark at its own.
        assert_eq!(
            worker_watermark(&parts, &[held], &POLICY, 9_000),
            Some(18_000)
        );
        // Hold over: it is idle again and the watermark moves on.
        assert_eq!(
            worker_watermark(&parts, &[expired], &POLICY, 9_000),
            Some(48_000)
        );
    }

    /// After a split, the link's partitions hold the watermark until they deliver again (the
    /// heartbeats may arrive before the backlog), for up to the rest of the hold; after their
    /// first record the usual idle timeout applies.
    #[test]
    fn a_returned_link_holds_until_its_partitions_deliver() {
        let policy = WatermarkPolicy {
            max_split_hold: 60_000,
            ..POLICY
        };
        let mut remote = part(Some(20_000), 1_000, true, false);
        remote.link = Some(0);
        let mut other = remote.clone();
        other.link = Some(1);
        let local = part(Some(200_000), 199_000, false, false);
        let mut parts = [remote, other, local];
        let up = |now| LinkView::at(Some(now - 500), 0, now, 3_000, 60_000);
        // Without the rule, the long-quiet remote partition is idle the moment the link is up.
        assert_eq!(
            worker_watermark(&parts, &[up(90_000), up(90_000)], &policy, 90_000),
            Some(198_000)
        );
        // The split began at 80 s and the link is back at 90 s: the hold runs to 140 s.
        link_returned(&mut parts, 0, 80_000, &policy, 90_000);
        for now in [90_000, 95_000, 139_999] {
            // Link 0's partition holds, silent and at its end; link 1's did not return.
            assert_eq!(
                worker_watermark(&parts, &[up(now), up(now)], &policy, now),
                Some(18_000),
                "at {now}"
            );
        }
        assert_eq!(
            worker_watermark(&parts, &[up(140_000), up(140_000)], &policy, 140_000),
            Some(198_000)
        );

        // Its backlog arrives at 100 s: from then on only the idle timeout keeps it.
        link_returned(&mut parts, 0, 80_000, &policy, 90_000);
        let p = &mut parts[0];
        (p.last_record_ms, p.awaiting_until, p.max_time) = (100_000, None, Some(30_000));
        assert_eq!(
            worker_watermark(&parts, &[up(104_999), up(104_999)], &policy, 104_999),
            Some(28_000)
        );
        assert_eq!(
            worker_watermark(&parts, &[up(105_000), up(105_000)], &policy, 105_000),
            Some(198_000)
        );

        // A hold that has already run out when the link returns waits only the idle timeout.
        link_returned(&mut parts, 0, 10_000, &policy, 90_000);
        assert_eq!(parts[0].awaiting_until, None);
        assert_eq!(
            worker_watermark(&parts, &[up(95_000), up(95_000)], &policy, 95_000),
            Some(198_000)
        );
    }

    /// The same for a partition whose broker was unreachable: back, it holds until its first
    /// record, up to the end of `unreachable_hold` counted from when it was cut off.
    #[test]
    fn a_reachable_again_partition_holds_until_it_delivers() {
        let mut cut = part(Some(40_000), 10_000, true, false);
        // Cut off at 12 s, reachable again at 20 s.
        cut.back(20_000, 12_000 + POLICY.unreachable_hold);
        let parts = [part(Some(100_000), 100_000, false, false), cut];
        for now in [20_000, 25_000, 41_999] {
            assert_eq!(worker_watermark(&parts, &[], &POLICY, now), Some(38_000));
        }
        assert_eq!(worker_watermark(&parts, &[], &POLICY, 42_000), Some(98_000));
    }

    #[test]
    fn committer_waits_for_the_probe() {
        let mut c = Committer::default();
        c.record(1, 100, 10);
        c.record(1, 100, 12);
        c.record(1, 200, 20);
        c.record(2, 150, 7);
        assert_eq!(c.ready(Some(100)), vec![]);
        assert_eq!(c.ready(Some(160)), vec![(1, 12), (2, 7)]);
        assert_eq!(c.ready(Some(200)), vec![]);
        assert_eq!(c.ready(None), vec![(1, 20)]);
    }
}
