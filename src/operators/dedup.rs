//! Exact dedup by event id: the first copy wins, later copies (late ones too) are dropped and
//! counted, and a copy whose payload differs from the first is counted as a conflict.
//!
//! Records are exchanged by id hash, so every copy of an id meets the same worker. Ids are
//! remembered until the input frontier (the watermark) is `horizon` past their event time.
//! Membership is exact over 128-bit id hashes (xxh3-128); two different ids collide with
//! probability about n²/2¹²⁹, which at a billion live ids is 10⁻²¹.

use super::WorkerContext;
use crate::record::Event;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

/// Keys are already uniform 128-bit hashes; hashing them again would only cost time.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A 128-bit id hash as two words: 8-byte alignment keeps a table entry at 24 bytes, where a
/// `u128` key (16-byte aligned) would pad it to 32.
#[derive(Clone, Copy, PartialEq, Eq)]
struct IdKey(u64, u64);

impl std::hash::Hash for IdKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0 ^ self.1);
    }
}

/// The remembered ids of one worker.
pub struct DedupState {
    /// id hash -> payload fingerprint (high 32 bits) and event time in seconds (low 32 bits).
    table: HashMap<IdKey, u64, BuildHasherDefault<IdHasher>>,
    horizon_ms: u64,
    /// Ids below this time (ms) have been evicted.
    evicted_below: u64,
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
            table: HashMap::default(),
            horizon_ms,
            evicted_below: 0,
        }
    }

    /// Decides one record, remembering it if it is the first copy.
    pub fn offer(&mut self, e: &Event) -> Verdict {
        let fp = xxhash_rust::xxh3::xxh3_64(&e.payload) as u32;
        let secs = (e.time / 1000).min(u64::from(u32::MAX));
        match self
            .table
            .entry(IdKey((e.id_hash >> 64) as u64, e.id_hash as u64))
        {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((u64::from(fp) << 32) | secs);
                Verdict::First
            }
            std::collections::hash_map::Entry::Occupied(o) => {
                if (*o.get() >> 32) as u32 == fp {
                    Verdict::Duplicate
                } else {
                    Verdict::Conflict
                }
            }
        }
    }

    /// Forgets ids whose time is more than the horizon behind `frontier`. Sweeps only when the
    /// frontier has moved an eighth of the horizon, so the cost per event stays constant.
    pub fn evict(&mut self, frontier: u64) -> bool {
        let cutoff = frontier.saturating_sub(self.horizon_ms);
        if cutoff < self.evicted_below + self.horizon_ms / 8 + 1 {
            return false;
        }
        // Whole seconds strictly below the cutoff second are gone; the cutoff second stays.
        let keep_from = cutoff / 1000;
        self.table.retain(|_, v| (*v & 0xFFFF_FFFF) >= keep_from);
        self.evicted_below = keep_from * 1000;
        if self.table.capacity() > 4 * self.table.len().max(1024) {
            self.table.shrink_to_fit();
        }
        true
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Bytes held by the table: buckets of (key, value) plus one control byte each.
    pub fn bytes(&self) -> usize {
        let buckets = if self.table.capacity() == 0 {
            0
        } else {
            (self.table.capacity() * 8 / 7).next_power_of_two()
        };
        buckets * (std::mem::size_of::<(IdKey, u64)>() + 1)
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
    let mut builder = OperatorBuilder::new(format!("Dedup({name})"), input.scope());
    let mut input = builder.new_input(input, Exchange::new(|e: &Event| (e.id_hash >> 64) as u64));
    let (on_out, on_time) = builder.new_output::<Vec<Event>>();
    let (late_out, late) = builder.new_output::<Vec<Event>>();
    let mut on_out = OutputBuilder::<u64, CapacityContainerBuilder<Vec<Event>>>::from(on_out);
    let mut late_out = OutputBuilder::<u64, CapacityContainerBuilder<Vec<Event>>>::from(late_out);

    let splits = std::sync::Arc::clone(&ctx.splits);
    let m = ctx.metrics.clone();
    let dup_counters: Vec<_> = splits
        .regions
        .iter()
        .map(|r| m.duplicates.with_label_values(&[r]))
        .collect();

    builder.build(move |caps: Vec<Capability<u64>>| {
        drop(caps);
        let mut state = DedupState::new(horizon_ms);
        let mut dups = vec![0u64; dup_counters.len()];
        let (mut conflicts, mut unique) = (0u64, 0u64);
        let (mut reported_len, mut reported_bytes) = (0i64, 0i64);
        move |frontiers| {
            let mut on_handle = on_out.activate();
            let mut late_handle = late_out.activate();
            input.for_each(|cap, data| {
                let on_cap = cap.retain_least(0).expect("a message has a time");
                let late_cap = cap.retain_least(1).expect("a message has a time");
                let mut on_time = on_handle.session(&on_cap);
                let mut late = late_handle.session(&late_cap);
                for e in data.drain(..) {
                    match state.offer(&e) {
                        Verdict::First => {
                            unique += 1;
                            if e.late.is_some() {
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
            let frontier = frontiers[0].frontier().iter().next().copied();
            state.evict(frontier.unwrap_or(u64::MAX));
            for (c, n) in dup_counters.iter().zip(dups.iter_mut()) {
                if *n > 0 {
                    c.inc_by(std::mem::take(n));
                }
            }
            m.dedup_conflicts.inc_by(std::mem::take(&mut conflicts));
            m.dedup_unique.inc_by(std::mem::take(&mut unique));
            let (len, bytes) = (state.len() as i64, state.bytes() as i64);
            m.dedup_retained.add(len - reported_len);
            m.dedup_bytes.add(bytes - reported_bytes);
            (reported_len, reported_bytes) = (len, bytes);
        }
    });
    (on_time, late)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, time: u64, payload: &str) -> Event {
        Event {
            time,
            id_hash: xxhash_rust::xxh3::xxh3_128(id.as_bytes()),
            id: crate::record::EventId::Owned(id.into()),
            payload: payload.as_bytes().into(),
            split: 0,
            offset: 0,
            late: None,
            partition: None,
        }
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
        s.offer(&ev("new", 14_000, "x"));
        // Frontier 15s: cutoff 5s, the 5s id is still inside the horizon.
        s.evict(15_000);
        assert_eq!(s.offer(&ev("old", 5_000, "x")), Verdict::Duplicate);
        s.evict(16_500);
        assert_eq!(s.len(), 1);
        assert_eq!(s.offer(&ev("new", 14_000, "x")), Verdict::Duplicate);
    }
}
