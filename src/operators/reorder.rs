//! Event-time order per output partition.
//!
//! Events are exchanged by output partition, so each partition is owned by exactly one worker
//! (`partition % workers`). An event is released once the input frontier is past its time:
//! nothing earlier can arrive after that, because on-time events are never below the frontier.
//! Released events are sorted by (time, id), so the same input gives the same output.
//!
//! Released events are emitted at a capability no later than the input time of any buffered
//! event. The sinks' probe passing a source's commit point therefore still means that every
//! event read before it is durable.

use super::{BuildContext, OperatorConfig, OperatorError, OperatorNode};
use crate::component::{
    concat_events, AnyStream, CheckContext, Component, Errors, Port, StreamKind,
};
use crate::event::extract_field;
use crate::event::{Event, OutPartition};
use crate::runtime::WorkerContext;
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::num::NonZeroU32;
use timely::dataflow::channels::pact::{ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Exchange, Probe};
use timely::dataflow::Stream;

/// Event-time order per output partition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReorderConfig {
    /// Inputs: on-time event streams.
    pub inputs: Vec<String>,
    /// Field whose value picks the output partition.
    #[serde(default = "crate::event::format::default_id_field")]
    pub partition_by: String,
    /// Output partitions.
    pub partitions: NonZeroU32,
}

impl Component for ReorderConfig {
    fn check(&self, _cx: &CheckContext<'_>, errors: &mut Errors<'_>) {
        if self.partition_by.trim().is_empty() {
            errors.field("partition_by", "must name a field");
        }
    }
}

impl OperatorNode for ReorderConfig {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn ports(&self) -> &'static [Port] {
        &[Port::All]
    }

    fn outputs(&self, input: StreamKind, errors: &mut Errors<'_>) -> Vec<(Port, StreamKind)> {
        if input.late {
            errors.field(
                "inputs",
                "receives late events, which are behind the watermark and cannot be put in order; feed it an on_time output",
            );
        }
        let out = StreamKind {
            on_time: true,
            partitions: Some(self.partitions.get()),
            ..Default::default()
        };
        vec![(Port::All, out)]
    }

    fn build<'s>(
        &self,
        node: &str,
        inputs: Vec<AnyStream<'s>>,
        cx: &mut BuildContext<'_, 's>,
    ) -> Result<Vec<(Port, AnyStream<'s>)>, OperatorError> {
        let partitions = self.partitions.get();
        let partitioner = if self.partition_by == cx.event.id_field {
            Partitioner::Id(partitions)
        } else {
            Partitioner::Field(self.partition_by.clone(), partitions)
        };
        let from_dedup = cx
            .upstream
            .iter()
            .all(|u| matches!(u, Some(OperatorConfig::Dedup(_))));
        let colocated = matches!(partitioner, Partitioner::Id(_))
            && from_dedup
            && partitions as usize % cx.peers == 0;
        let input = concat_events(cx.scope, inputs);
        let out = reorder(input, node, partitioner, colocated, cx.worker);
        Ok(vec![(Port::All, AnyStream::Events(out))])
    }
}

/// Buckets of 16 ms: few enough map nodes to be cheap, small enough that the partial bucket at
/// the frontier is quick to split.
const BUCKET_SHIFT: u32 = 4;

/// How an event picks its output partition.
#[derive(Clone, Debug)]
pub enum Partitioner {
    /// By the event id (its hash is already computed).
    Id(u32),
    /// By the text of another top-level field.
    Field(String, u32),
}

impl Partitioner {
    /// The output partition of `e`.
    pub fn partition(&self, e: &Event) -> u32 {
        match self {
            Partitioner::Id(n) => (e.id_hash.high() % u64::from(*n)) as u32,
            Partitioner::Field(field, n) => {
                let text = extract_field(&e.payload, field).unwrap_or_default();
                (xxhash_rust::xxh3::xxh3_64(text.as_bytes()) % u64::from(*n)) as u32
            }
        }
    }
}

/// A buffered event: the event, the input time it arrived at, and the first eight bytes of its
/// id as a big-endian number, so most ties in time are broken without comparing strings.
struct Held(Event, u64, u64);

fn id_prefix(e: &Event) -> u64 {
    let mut b = [0u8; 8];
    let id = e.id_bytes();
    let n = id.len().min(8);
    b[..n].copy_from_slice(&id[..n]);
    u64::from_be_bytes(b)
}

/// Gives `events` in release order (event time, then id: its prefix first, the whole id on a
/// tie), leaving `events` empty with its capacity. The order is found by sorting 24-byte keys
/// rather than the ~100-byte events, so each event is moved once instead of about log n times.
/// Time and prefix are one 128-bit number, so most comparisons are a single integer compare;
/// runs that tie on it are then put in whole-id order.
#[allow(unsafe_code)]
fn give_sorted(events: &mut Vec<Held>, keys: &mut Vec<(u128, u32)>, mut give: impl FnMut(Event)) {
    keys.clear();
    keys.extend(
        events
            .iter()
            .enumerate()
            .map(|(i, h)| ((u128::from(h.0.time) << 64) | u128::from(h.2), i as u32)),
    );
    keys.sort_unstable_by_key(|k| k.0);
    let id = |k: &(u128, u32)| events[k.1 as usize].0.id_bytes();
    let mut from = 0;
    while from < keys.len() {
        let run = 1 + keys[from + 1..]
            .iter()
            .take_while(|k| k.0 == keys[from].0)
            .count();
        if run > 1 {
            keys[from..from + run].sort_unstable_by(|a, b| id(a).cmp(id(b)));
        }
        from += run;
    }
    let base = events.as_ptr();
    // SAFETY: the length is zeroed before any element is read, so if `give` panics the
    // unread rest leaks rather than being dropped twice; `keys` was built above from
    // `0..len` and only reordered, so every index below the old length is read exactly once.
    unsafe {
        events.set_len(0);
        for &(_, i) in keys.iter() {
            give(std::ptr::read(base.add(i as usize)).0);
        }
    }
}

/// The buckets by slice of event time: a hash map for the lookup every event makes, and the
/// ordered set of their keys, changed only when a bucket is opened or released, for releasing
/// them in time order. (A `BTreeMap` alone made every event pay for an ordered search.)
#[derive(Default)]
struct Buckets {
    by_key: HashMap<u64, Bucket, BuildHasherDefault<KeyHasher>>,
    keys: BTreeSet<u64>,
}

impl Buckets {
    /// Takes the bucket at `key` out of both the map and the key set.
    fn remove(&mut self, key: u64) -> Bucket {
        self.keys.remove(&key);
        self.by_key.remove(&key).expect("keys match buckets")
    }
}

/// Bucket keys are consecutive integers; multiplying by an odd constant spreads them over the
/// hash's high bits and keeps the low ones distinct, at the cost of one multiply.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, k: u64) {
        self.0 = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The buffered events of one slice of event time, and the least input time among them.
struct Bucket {
    events: Vec<Held>,
    least_input: u64,
}

/// Keeps a few emptied bucket vectors of moderate size for reuse; the rest are freed so a
/// burst (or the final flush) does not pin its memory.
fn recycle(spare: &mut Vec<Vec<Held>>, v: Vec<Held>) {
    if spare.len() < 64 && v.capacity() <= 4096 {
        spare.push(v);
    }
}

/// Orders `input` by event time within each output partition.
///
/// `colocated` says the input is already on the worker that owns each event's partition: it
/// comes straight from a dedup (exchanged by the same id hash) and the partition count is a
/// multiple of the worker count, so `hash % partitions % workers == hash % workers`. The
/// exchange is then skipped.
pub fn reorder<'scope>(
    input: Stream<'scope, u64, Vec<Event>>,
    name: &str,
    partitioner: Partitioner,
    colocated: bool,
    ctx: &WorkerContext,
) -> Stream<'scope, u64, Vec<Event>> {
    if colocated {
        reorder_with(input, name, partitioner, Pipeline, ctx)
    } else {
        // The exchange as an operator of its own, so that flow control can watch its output:
        // what has crossed it is no longer in flight, although reorder holds it.
        let route = partitioner.clone();
        let exchanged = input
            .exchange(move |e: &Event| u64::from(route.partition(e)))
            .probe_with(&ctx.flow_probe);
        reorder_with(exchanged, name, partitioner, Pipeline, ctx)
    }
}

fn reorder_with<'scope, P: ParallelizationContract<u64, Vec<Event>>>(
    input: Stream<'scope, u64, Vec<Event>>,
    name: &str,
    partitioner: Partitioner,
    pact: P,
    ctx: &WorkerContext,
) -> Stream<'scope, u64, Vec<Event>> {
    let gauge = ctx.metrics.reorder_buffered.clone();
    input.unary_frontier(pact, &format!("Reorder({name})"), move |_cap, _info| {
        // The least input time over the buckets is what we hold.
        let mut buckets = Buckets::default();
        let mut held: Option<Capability<u64>> = None;
        // Bucket vectors released by this activation, emitted once the loop is done with the
        // map; and the sort keys, reused.
        let mut released: Vec<Vec<Held>> = Vec::new();
        let mut keys = Vec::new();
        // Emptied bucket vectors, reused so a steady stream does not allocate per bucket.
        let mut spare: Vec<Vec<Held>> = Vec::new();
        let mut buffered = 0i64;
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                let t = *cap.least().expect("a message has a time");
                if held.as_ref().is_none_or(|h| t < *h.time()) {
                    held = cap.retain_least(0);
                }
                buffered += data.len() as i64;
                gauge.add(data.len() as i64);
                for mut e in data.drain(..) {
                    e.partition = OutPartition::new(partitioner.partition(&e));
                    let prefix = id_prefix(&e);
                    let key = e.time >> BUCKET_SHIFT;
                    let bucket = buckets.by_key.entry(key).or_insert_with(|| {
                        buckets.keys.insert(key);
                        Bucket {
                            events: spare.pop().unwrap_or_default(),
                            least_input: t,
                        }
                    });
                    bucket.least_input = bucket.least_input.min(t);
                    bucket.events.push(Held(e, t, prefix));
                }
            });
            let limit = frontier.frontier().iter().next().copied();
            // Everything strictly below `limit` is complete (all of it when the input ended).
            // Buckets cover disjoint, increasing time ranges, so sorting each as it is
            // released gives the same order as one big sort, in smaller, cache-warm pieces.
            while let Some(&key) = buckets.keys.first() {
                match limit {
                    Some(l) if (key << BUCKET_SHIFT) >= l => break,
                    Some(l) if ((key + 1) << BUCKET_SHIFT) > l => {
                        let b = buckets.by_key.get_mut(&key).expect("keys match buckets");
                        let mut out = spare.pop().unwrap_or_default();
                        let mut i = 0;
                        b.least_input = u64::MAX;
                        while i < b.events.len() {
                            if b.events[i].0.time < l {
                                out.push(b.events.swap_remove(i));
                            } else {
                                b.least_input = b.least_input.min(b.events[i].1);
                                i += 1;
                            }
                        }
                        if b.events.is_empty() {
                            recycle(&mut spare, buckets.remove(key).events);
                        }
                        released.push(out);
                        break;
                    }
                    _ => released.push(buckets.remove(key).events),
                }
            }
            if released.is_empty() {
                return;
            }
            let cap = held
                .as_ref()
                .expect("buffered events imply a held capability");
            {
                let mut session = output.session(cap);
                for mut v in released.drain(..) {
                    let n = v.len() as i64;
                    buffered -= n;
                    gauge.sub(n);
                    give_sorted(&mut v, &mut keys, |e| session.give(e));
                    recycle(&mut spare, v);
                }
            }
            match buckets.by_key.values().map(|b| b.least_input).min() {
                Some(t) => {
                    if let Some(h) = held.as_mut() {
                        h.downgrade(&t);
                    }
                }
                None => held = None,
            }
            debug_assert!(buffered >= 0);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventId;
    use crate::runtime::SplitMix;

    fn held(id: &str, time: u64) -> Held {
        let e = Event::new(
            time,
            EventId::Owned(id.into()),
            id.as_bytes().into(),
            0,
            0,
            None,
        );
        let prefix = id_prefix(&e);
        Held(e, 0, prefix)
    }

    #[test]
    fn released_events_come_out_by_time_then_whole_id() {
        let mut rng = SplitMix(3);
        // Ids that share their first eight bytes or more, ids that are prefixes of others
        // (including one ending in NUL, which pads like a shorter id), and repeated times.
        let stems = ["order-0000", "order-00", "a", "a\0", "zz", ""];
        for round in 0..50 {
            let n = 1 + rng.below(300) as usize;
            let mut events: Vec<Held> = (0..n)
                .map(|i| {
                    let stem = stems[rng.below(stems.len() as u64) as usize];
                    let id = format!("{stem}{}", rng.below(40 + i as u64));
                    held(&id, 1_000 + rng.below(8))
                })
                .collect();
            let mut expected: Vec<(u64, String)> = events
                .iter()
                .map(|h| (h.0.time, h.0.id().to_owned()))
                .collect();
            expected.sort_by(|a, b| (a.0, a.1.as_bytes()).cmp(&(b.0, b.1.as_bytes())));
            let capacity = events.capacity();
            let mut got = Vec::new();
            give_sorted(&mut events, &mut Vec::new(), |e| {
                got.push((e.time, e.id().to_owned()))
            });
            assert_eq!(got, expected, "round {round}");
            assert!(events.is_empty() && events.capacity() == capacity);
        }
    }
}
