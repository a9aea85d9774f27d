//! Exact dedup by event id: the first copy wins, later copies (late ones too) are dropped and
//! counted, and a copy whose payload differs from the first is counted as a conflict.
//!
//! Records are exchanged by id hash, so every copy of an id meets the same worker. Ids are
//! remembered until the input frontier (the watermark) is `horizon` past their event time. A
//! late event older than that can no longer be checked: it goes to the late output marked
//! `beyond_horizon` and counted, never silently passed as unique.
//! Membership is exact over 128-bit id hashes (xxh3-128); two different ids collide with
//! probability about n²/2¹²⁹, which at a billion live ids is 10⁻²¹.

use super::idtable::IdTable;
use super::{events_of, BuildContext, OperatorError, OperatorNode};
use crate::component::{
    concat_events, AnyStream, CheckContext, Component, Errors, Millis, Port, StreamKind,
};
use crate::event::Event;
use crate::runtime::WorkerContext;
use serde::Deserialize;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

/// Exact dedup by event id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// Inputs: event streams.
    pub inputs: Vec<String>,
    /// Ids are remembered for this long in event time behind the watermark.
    pub horizon: Millis,
}

impl Component for DedupConfig {
    fn check(&self, _cx: &CheckContext<'_>, errors: &mut Errors<'_>) {
        if self.horizon.0 == 0 {
            errors.field("horizon", "must be above zero");
        }
    }
}

impl OperatorNode for DedupConfig {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn ports(&self) -> &'static [Port] {
        &[Port::All, Port::OnTime, Port::Late]
    }

    fn outputs(&self, input: StreamKind, _errors: &mut Errors<'_>) -> Vec<(Port, StreamKind)> {
        let on = StreamKind {
            on_time: input.on_time,
            ..Default::default()
        };
        let late = StreamKind {
            late: input.late,
            ..Default::default()
        };
        vec![
            (Port::All, events_of(input)),
            (Port::OnTime, on),
            (Port::Late, late),
        ]
    }

    fn build<'s>(
        &self,
        node: &str,
        inputs: Vec<AnyStream<'s>>,
        cx: &mut BuildContext<'_, 's>,
    ) -> Result<Vec<(Port, AnyStream<'s>)>, OperatorError> {
        let input = concat_events(cx.scope, inputs);
        let (on, late) = dedup(input, node, self.horizon.0, cx.worker);
        Ok(vec![
            (Port::OnTime, AnyStream::Events(on)),
            (Port::Late, AnyStream::Events(late)),
        ])
    }
}

/// The remembered ids of one worker.
pub struct DedupState {
    /// id hash -> payload fingerprint (high 32 bits) and event time in seconds (low 32 bits).
    table: IdTable,
    horizon_ms: u64,
    /// Ids with a time in seconds below this may be forgotten.
    keep_from: u64,
    /// `keep_from` at the last full sweep.
    swept_at: u64,
}

/// What dedup decided for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The first copy: pass it on.
    First,
    /// A later copy with the same payload.
    Duplicate,
    /// A later copy with a different payload.
    Conflict,
}

impl DedupState {
    /// Empty state with the given horizon.
    pub fn new(horizon_ms: u64) -> DedupState {
        DedupState {
            table: IdTable::new(),
            horizon_ms,
            keep_from: 0,
            swept_at: 0,
        }
    }

    /// Decides one record, remembering it if it is the first copy.
    pub fn offer(&mut self, e: &Event) -> Verdict {
        let value = remembered(&e.payload, e.time);
        match self.remember(e.id_hash.get(), value) {
            None => Verdict::First,
            Some(v) if v >> 32 == value >> 32 => Verdict::Duplicate,
            Some(_) => Verdict::Conflict,
        }
    }

    /// Remembers `hash` with `value` (from [`remembered`]) unless it is known; returns what
    /// was known.
    pub fn remember(&mut self, hash: u128, value: u64) -> Option<u64> {
        let keep_from = self.keep_from;
        let expired = |v: u64| (v & 0xFFFF_FFFF) < keep_from;
        self.table.insert(hash, value, expired)
    }

    /// Decides a batch in order, as [`DedupState::offer`] on each would. The table slots of
    /// the next few ids are prefetched while the current one is decided, so the cache misses
    /// of a batch overlap instead of queueing.
    pub fn offer_all(&mut self, events: &[Event], verdicts: &mut Vec<Verdict>) {
        const AHEAD: usize = 8;
        verdicts.clear();
        for e in events.iter().take(AHEAD) {
            self.table.prefetch(e.id_hash.get());
        }
        for (i, e) in events.iter().enumerate() {
            if let Some(next) = events.get(i + AHEAD) {
                self.table.prefetch(next.id_hash.get());
            }
            verdicts.push(self.offer(e));
        }
    }

    /// Lets ids whose time is more than the horizon behind `frontier` be forgotten. The table
    /// drops them when it needs room; a sweep also runs once the frontier has moved a whole
    /// horizon since the last, so a quiet table gives its memory back. An id is therefore kept
    /// for at least the horizon and at most about twice it.
    pub fn evict(&mut self, frontier: u64) {
        // Whole seconds strictly below the cutoff second may go; the cutoff second stays.
        self.keep_from = self
            .keep_from
            .max(frontier.saturating_sub(self.horizon_ms) / 1000);
        if self.keep_from >= self.swept_at + (self.horizon_ms / 1000).max(1) {
            let keep_from = self.keep_from;
            self.table.retain(|v| (v & 0xFFFF_FFFF) >= keep_from);
            self.swept_at = keep_from;
        }
    }

    /// True when an event of this time may have outlived its id: an earlier copy could already
    /// be forgotten, so a first-seen verdict proves nothing.
    pub fn beyond_horizon(&self, time_ms: u64) -> bool {
        time_ms / 1000 < self.keep_from
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Bytes held by the table.
    pub fn bytes(&self) -> usize {
        self.table.bytes()
    }
}

/// What dedup remembers of an event beside its id hash: a payload fingerprint (high 32 bits),
/// to tell a conflicting copy, and its event time in seconds (low 32 bits), to forget it.
pub fn remembered(payload: &[u8], time_ms: u64) -> u64 {
    let fp = xxhash_rust::xxh3::xxh3_64(payload) as u32;
    let secs = (time_ms / 1000).min(u64::from(u32::MAX));
    (u64::from(fp) << 32) | secs
}

/// A worker's state with the share of the retained-ids and table-bytes gauges it has reported,
/// which it takes back when the operator is dropped: the gauges then say what is still held.
struct Reported {
    state: DedupState,
    retained: prometheus::IntGauge,
    bytes: prometheus::IntGauge,
    reported: (i64, i64),
}

impl Reported {
    fn report(&mut self) {
        let (len, bytes) = (self.state.len() as i64, self.state.bytes() as i64);
        self.retained.add(len - self.reported.0);
        self.bytes.add(bytes - self.reported.1);
        self.reported = (len, bytes);
    }
}

impl Drop for Reported {
    fn drop(&mut self) {
        self.retained.sub(self.reported.0);
        self.bytes.sub(self.reported.1);
    }
}

/// Dedups `input`, returning (on-time, late) streams with their tags unchanged.
pub fn dedup<'scope>(
    input: Stream<'scope, u64, Vec<Event>>,
    name: &str,
    horizon_ms: u64,
    ctx: &WorkerContext,
) -> (
    Stream<'scope, u64, Vec<Event>>,
    Stream<'scope, u64, Vec<Event>>,
) {
    let input_scope = input.scope();
    let mut builder = OperatorBuilder::new(format!("Dedup({name})"), input.scope());
    let mut input = builder.new_input(input, Exchange::new(|e: &Event| e.id_hash.high()));
    let (on_out, on_time) = builder.new_output::<Vec<Event>>();
    let (late_out, late) = builder.new_output::<Vec<Event>>();
    let mut on_out = OutputBuilder::<u64, CapacityContainerBuilder<Vec<Event>>>::from(on_out);
    let mut late_out = OutputBuilder::<u64, CapacityContainerBuilder<Vec<Event>>>::from(late_out);

    let splits = std::sync::Arc::clone(&ctx.splits);
    let restored = std::sync::Arc::clone(&ctx.restored);
    let (scope_index, scope_peers) = (input_scope.index(), input_scope.peers());
    let m = ctx.metrics.clone();
    let dup_counters: Vec<_> = splits
        .regions
        .iter()
        .map(|r| m.duplicates.with_label_values(&[r]))
        .collect();
    let beyond_counters: Vec<_> = splits
        .regions
        .iter()
        .map(|r| m.dedup_beyond_horizon.with_label_values(&[r]))
        .collect();

    builder.build(move |caps: Vec<Capability<u64>>| {
        drop(caps);
        let mut state = DedupState::new(horizon_ms);
        // This worker's share of the restored ids: those the exchange above sends it.
        let (index, peers) = (scope_index, scope_peers);
        for &[high, low, value] in restored.ids.iter().flatten() {
            if high % peers as u64 == index as u64 {
                state.remember((u128::from(high) << 64) | u128::from(low), value);
            }
        }
        let mut held = Reported {
            state,
            retained: m.dedup_retained.clone(),
            bytes: m.dedup_bytes.clone(),
            reported: (0, 0),
        };
        let mut dups = vec![0u64; dup_counters.len()];
        let mut beyond = vec![0u64; beyond_counters.len()];
        let (mut conflicts, mut unique) = (0u64, 0u64);
        let mut verdicts = Vec::new();
        move |frontiers| {
            let mut on_handle = on_out.activate();
            let mut late_handle = late_out.activate();
            // Evict first: every record still to come has a time at or past the frontier, so the
            // cutoff it gives already holds for this batch, and an event behind it is told so.
            // An empty frontier means the input has ended: the table goes with the operator, so
            // a last sweep would read it all for nothing.
            if let Some(frontier) = frontiers[0].frontier().iter().next() {
                held.state.evict(*frontier);
            }
            input.for_each(|cap, data| {
                let on_cap = cap.retain_least(0).expect("a message has a time");
                let late_cap = cap.retain_least(1).expect("a message has a time");
                let mut on_time = on_handle.session(&on_cap);
                let mut late = late_handle.session(&late_cap);
                held.state.offer_all(data, &mut verdicts);
                for (mut e, verdict) in data.drain(..).zip(verdicts.iter()) {
                    match *verdict {
                        Verdict::First => {
                            unique += 1;
                            if let Some(l) = &mut e.late {
                                // Only a late event can be this old: an on-time one is at or
                                // past the frontier.
                                if held.state.beyond_horizon(e.time) {
                                    l.beyond_horizon = true;
                                    beyond[splits.get(e.split).region_index] += 1;
                                }
                                late.give(e);
                            } else {
                                on_time.give(e);
                            }
                        }
                        v => {
                            dups[splits.get(e.split).region_index] += 1;
                            conflicts += u64::from(v == Verdict::Conflict);
                        }
                    }
                }
            });
            for (c, n) in dup_counters
                .iter()
                .zip(dups.iter_mut())
                .chain(beyond_counters.iter().zip(beyond.iter_mut()))
            {
                if *n > 0 {
                    c.inc_by(std::mem::take(n));
                }
            }
            m.dedup_conflicts.inc_by(std::mem::take(&mut conflicts));
            m.dedup_unique.inc_by(std::mem::take(&mut unique));
            held.report();
        }
    });
    (on_time, late)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, time: u64, payload: &str) -> Event {
        let id = crate::event::EventId::Owned(id.into());
        Event::new(time, id, payload.as_bytes().into(), 0, 0, None)
    }

    #[test]
    fn first_copy_wins_and_conflicts_are_told_apart() {
        let mut s = DedupState::new(60_000);
        assert_eq!(s.offer(&ev("a", 1_000, "x")), Verdict::First);
        assert_eq!(s.offer(&ev("a", 1_000, "x")), Verdict::Duplicate);
        assert_eq!(s.offer(&ev("a", 1_000, "y")), Verdict::Conflict);
        assert_eq!(s.offer(&ev("b", 1_000, "x")), Verdict::First);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn ids_are_kept_for_the_horizon_then_forgotten() {
        let mut s = DedupState::new(10_000);
        s.offer(&ev("old", 5_000, "x"));
        s.offer(&ev("new", 16_000, "x"));
        // Frontier 15s: cutoff 5s, the 5s id is still inside the horizon.
        s.evict(15_000);
        assert_eq!(s.offer(&ev("old", 5_000, "x")), Verdict::Duplicate);
        assert_eq!(s.len(), 2);
        // Frontier 25s: cutoff 15s, a horizon past the last sweep, so the table is swept.
        s.evict(25_000);
        assert_eq!(s.len(), 1);
        assert_eq!(s.offer(&ev("new", 16_000, "x")), Verdict::Duplicate);
        assert_eq!(s.offer(&ev("old", 5_000, "x")), Verdict::First);
    }

    #[test]
    fn an_event_is_beyond_the_horizon_exactly_when_its_id_may_be_forgotten() {
        let mut s = DedupState::new(10_000);
        assert!(
            !s.beyond_horizon(0),
            "nothing is forgotten before a frontier"
        );
        s.evict(25_400);
        // Cutoff 15.4 s: the whole second 15 is still kept, second 14 may be gone.
        assert!(s.beyond_horizon(14_999));
        assert!(!s.beyond_horizon(15_000));
        // The frontier never moves back, and neither does the cutoff.
        s.evict(20_000);
        assert!(s.beyond_horizon(14_999));
    }
}
