//! The records that flow between operators: valid events and invalid records.
//!
//! Records carry their event time inside them and travel at their source's capability (the
//! watermark when they were read), not at their own time: progress tracking then costs one
//! frontier step per watermark advance instead of one per event millisecond.

use super::Reason;
use serde::{Deserialize, Serialize};

/// A valid event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Event time, epoch milliseconds.
    pub time: u64,
    /// 128-bit hash of the id: the dedup key and the exchange key.
    pub id_hash: IdHash,
    /// Where the event id is.
    pub id: EventId,
    /// The original bytes, unchanged. A boxed slice, not a Vec: events are moved through
    /// several buffers, and every byte of the record is memory traffic.
    #[serde(with = "serde_bytes")]
    pub payload: Box<[u8]>,
    /// Index into the pipeline's [`Splits`](super::Splits).
    pub split: u32,
    /// Offset within the split (Kafka offset, or line number for files).
    pub offset: i64,
    /// Set when the event arrived behind its worker's watermark. Boxed: late events are rare,
    /// and every event pays for the width of this field each time it is moved.
    pub late: Option<Box<Late>>,
    /// Output partition, once a reorder operator has assigned one.
    pub partition: OutPartition,
}

// Every operator moves events by value, several times each; their width is memory traffic on
// the hot path, so growing it should be a decision rather than an accident.
const _: () = assert!(std::mem::size_of::<Event>() == 80);

/// A 128-bit id hash stored as two words, so an [`Event`] is aligned to 8 bytes rather than
/// 16 (an `u128` field would pad every event to a multiple of 16).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdHash {
    hi: u64,
    lo: u64,
}

impl IdHash {
    /// The hash of an id's bytes.
    pub fn of(id: &[u8]) -> IdHash {
        IdHash::from_u128(xxhash_rust::xxh3::xxh3_128(id))
    }

    /// From the whole value.
    pub fn from_u128(h: u128) -> IdHash {
        IdHash {
            hi: (h >> 64) as u64,
            lo: h as u64,
        }
    }

    /// The whole value.
    pub fn get(self) -> u128 {
        (u128::from(self.hi) << 64) | u128::from(self.lo)
    }

    /// The upper half: what exchanges and partitioning route by, independent of the low half
    /// the dedup table indexes by.
    pub fn high(self) -> u64 {
        self.hi
    }
}

/// An output partition, or none yet; four bytes rather than `Option<u32>`'s eight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutPartition(Option<std::num::NonZeroU32>);

impl OutPartition {
    /// Partition `p` (below `u32::MAX`, which partition counts are).
    pub fn new(p: u32) -> OutPartition {
        OutPartition(std::num::NonZeroU32::new(p.wrapping_add(1)))
    }

    /// The partition, if assigned.
    pub fn get(self) -> Option<u32> {
        self.0.map(|p| p.get() - 1)
    }
}

/// What is known about a late event at its arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Late {
    /// The worker's watermark when the event arrived (always above the event time, so never
    /// zero; that lets `Option<Late>` take no extra space).
    pub watermark: std::num::NonZeroU64,
    /// Wall-clock arrival time, epoch milliseconds.
    pub arrival_ms: u64,
    /// Set by dedup when the event was older than its watermark minus the dedup horizon, so
    /// an earlier copy may already have been forgotten: it passed unchecked.
    pub beyond_horizon: bool,
}

/// An event id: a span of the payload (no allocation), or its own string when the JSON
/// string had escapes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventId {
    /// Bytes `start..end` of the payload.
    Span(u32, u32),
    /// The unescaped id.
    Owned(Box<str>),
}

impl Event {
    /// An event as read: its id hash is computed from `id`, and no output partition is
    /// assigned yet.
    pub fn new(
        time: u64,
        id: EventId,
        payload: Box<[u8]>,
        split: u32,
        offset: i64,
        late: Option<Box<Late>>,
    ) -> Event {
        let mut e = Event {
            time,
            id_hash: IdHash::default(),
            id,
            payload,
            split,
            offset,
            late,
            partition: OutPartition::default(),
        };
        e.id_hash = IdHash::of(e.id_bytes());
        e
    }

    /// The id's bytes (UTF-8).
    pub fn id_bytes(&self) -> &[u8] {
        match &self.id {
            EventId::Span(a, b) => &self.payload[*a as usize..*b as usize],
            EventId::Owned(s) => s.as_bytes(),
        }
    }

    /// The id as text.
    pub fn id(&self) -> &str {
        std::str::from_utf8(self.id_bytes()).unwrap_or_default()
    }

    /// How far behind the watermark the event arrived.
    pub fn lateness_ms(&self) -> Option<u64> {
        self.late.as_ref().map(|l| l.watermark.get() - self.time)
    }
}

/// A record that could not be accepted as an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalid {
    /// Why.
    pub reason: Reason,
    /// A human detail (the parser's message, the offending value).
    pub detail: String,
    /// The original bytes, unchanged.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Index into the pipeline's [`Splits`](super::Splits).
    pub split: u32,
    /// Offset within the split.
    pub offset: i64,
    /// The event id, when the record was a valid event refused for another reason (too large
    /// for the outputs), so its identity is never lost.
    pub id: Option<String>,
}
