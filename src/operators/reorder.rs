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

use super::WorkerContext;
use crate::record::Event;
use crate::sources::decode::extract_field;
use std::collections::BTreeMap;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

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
            Partitioner::Id(n) => ((e.id_hash >> 64) as u64 % u64::from(*n)) as u32,
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

/// Release order: event time, then id (its prefix first, the whole id on a tie).
fn by_time_then_id(a: &Held, b: &Held) -> std::cmp::Ordering {
    (a.0.time, a.2)
        .cmp(&(b.0.time, b.2))
        .then_with(|| a.0.id_bytes().cmp(b.0.id_bytes()))
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
        let route = partitioner.clone();
        let pact = Exchange::new(move |e: &Event| u64::from(route.partition(e)));
        reorder_with(input, name, partitioner, pact, ctx)
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
        let mut buckets: BTreeMap<u64, Bucket> = BTreeMap::new();
        let mut held: Option<Capability<u64>> = None;
        let mut ready: Vec<Held> = Vec::new();
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
                    e.partition = Some(partitioner.partition(&e));
                    let prefix = id_prefix(&e);
                    let bucket = buckets
                        .entry(e.time >> BUCKET_SHIFT)
                        .or_insert_with(|| Bucket {
                            events: spare.pop().unwrap_or_default(),
                            least_input: t,
                        });
                    bucket.least_input = bucket.least_input.min(t);
                    bucket.events.push(Held(e, t, prefix));
                }
            });
            let limit = frontier.frontier().iter().next().copied();
            // Everything strictly below `limit` is complete (all of it when the input ended).
            // Buckets cover disjoint, increasing time ranges, so sorting each as it is
            // released gives the same order as one big sort, in smaller, cache-warm pieces.
            while let Some(mut entry) = buckets.first_entry() {
                let bucket = *entry.key();
                let start = ready.len();
                match limit {
                    Some(l) if (bucket << BUCKET_SHIFT) >= l => break,
                    Some(l) if ((bucket + 1) << BUCKET_SHIFT) > l => {
                        let b = entry.get_mut();
                        let mut i = 0;
                        b.least_input = u64::MAX;
                        while i < b.events.len() {
                            if b.events[i].0.time < l {
                                ready.push(b.events.swap_remove(i));
                            } else {
                                b.least_input = b.least_input.min(b.events[i].1);
                                i += 1;
                            }
                        }
                        if b.events.is_empty() {
                            recycle(&mut spare, entry.remove().events);
                        }
                        ready[start..].sort_unstable_by(by_time_then_id);
                        break;
                    }
                    _ => {
                        let mut v = entry.remove().events;
                        ready.append(&mut v);
                        recycle(&mut spare, v);
                        ready[start..].sort_unstable_by(by_time_then_id);
                    }
                }
            }
            if ready.is_empty() {
                return;
            }
            let cap = held
                .as_ref()
                .expect("buffered events imply a held capability");
            {
                let mut session = output.session(cap);
                let released = ready.len() as i64;
                buffered -= released;
                gauge.sub(released);
                for Held(e, _, _) in ready.drain(..) {
                    session.give(e);
                }
            }
            match buckets.values().map(|b| b.least_input).min() {
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
