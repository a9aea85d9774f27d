//! The records that flow between operators, and the table that says where each came from.
//!
//! Records carry their event time inside them and travel at their source's capability (the
//! watermark when they were read), not at their own time: progress tracking then costs one
//! frontier step per watermark advance instead of one per event millisecond.

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
    /// Index into the pipeline's [`Splits`].
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

/// Why a record is invalid. The names are the `tidemark-reason` header values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// Bytes are not UTF-8.
    NotUtf8,
    /// Not a JSON document.
    NotJson,
    /// JSON, but not an object.
    NotObject,
    /// No id field.
    IdMissing,
    /// The id is an empty string.
    IdEmpty,
    /// The id is not a string.
    IdNotString,
    /// The id is over 128 bytes.
    IdTooLong,
    /// No time field.
    TimeMissing,
    /// The time is neither integer milliseconds nor RFC 3339.
    TimeUnparseable,
    /// The time is before 1970.
    TimeNegative,
    /// The time is more than `max_future_skew` ahead of the wall clock.
    FutureTimestamp,
    /// Over `max_event_bytes`.
    TooLarge,
}

impl Reason {
    /// Every reason, for metrics initialisation and docs.
    pub const ALL: [Reason; 12] = [
        Reason::NotUtf8,
        Reason::NotJson,
        Reason::NotObject,
        Reason::IdMissing,
        Reason::IdEmpty,
        Reason::IdNotString,
        Reason::IdTooLong,
        Reason::TimeMissing,
        Reason::TimeUnparseable,
        Reason::TimeNegative,
        Reason::FutureTimestamp,
        Reason::TooLarge,
    ];

    /// The header and label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotUtf8 => "not_utf8",
            Reason::NotJson => "not_json",
            Reason::NotObject => "not_object",
            Reason::IdMissing => "id_missing",
            Reason::IdEmpty => "id_empty",
            Reason::IdNotString => "id_not_string",
            Reason::IdTooLong => "id_too_long",
            Reason::TimeMissing => "time_missing",
            Reason::TimeUnparseable => "time_unparseable",
            Reason::TimeNegative => "time_negative",
            Reason::FutureTimestamp => "future_timestamp",
            Reason::TooLarge => "too_large",
        }
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
    /// Index into the pipeline's [`Splits`].
    pub split: u32,
    /// Offset within the split.
    pub offset: i64,
}

/// Where a split's records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitSource {
    /// A Kafka partition.
    Kafka {
        /// Cluster name from the pipeline file.
        cluster: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// A JSON-lines file.
    File {
        /// Path.
        path: String,
    },
    /// A generator partition.
    Generator {
        /// Partition index within the generator.
        index: u32,
    },
}

/// One unit of source parallelism: a Kafka partition, a file, a generator partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The source node.
    pub node: String,
    /// Origin region of its events.
    pub region: String,
    /// Index of `region` in [`Splits::regions`].
    pub region_index: usize,
    /// Where its records come from.
    pub source: SplitSource,
    /// For a MirrorMaker 2 remote topic, the region it is replicated from.
    pub replicated_from: Option<String>,
}

impl Split {
    /// `cluster/topic/partition/offset`, or `file:path/line`, for the `tidemark-source` header.
    pub fn describe(&self, offset: i64) -> String {
        match &self.source {
            SplitSource::Kafka {
                cluster,
                topic,
                partition,
            } => {
                format!("{cluster}/{topic}/{partition}/{offset}")
            }
            SplitSource::File { path } => format!("file:{path}/{offset}"),
            SplitSource::Generator { index } => format!("generator:{}/{index}/{offset}", self.node),
        }
    }
}

/// Every split of a pipeline, numbered identically in every process.
#[derive(Debug, Clone, Default)]
pub struct Splits {
    /// All splits, ordered by source node, then topic, then partition.
    pub splits: Vec<Split>,
    /// Distinct origin regions, for per-region counters.
    pub regions: Vec<String>,
}

impl Splits {
    /// The split an event came from.
    pub fn get(&self, index: u32) -> &Split {
        &self.splits[index as usize]
    }

    /// Adds a split, interning its region.
    pub fn push(&mut self, node: &str, region: &str, source: SplitSource) -> u32 {
        let region_index = match self.regions.iter().position(|r| r == region) {
            Some(i) => i,
            None => {
                self.regions.push(region.to_string());
                self.regions.len() - 1
            }
        };
        self.splits.push(Split {
            node: node.to_string(),
            region: region.to_string(),
            region_index,
            source,
            replicated_from: None,
        });
        (self.splits.len() - 1) as u32
    }

    /// The worker that owns split `index`: round-robin, so every process agrees without
    /// talking, and no consumer-group rebalance is involved.
    pub fn owner(index: u32, peers: usize) -> usize {
        index as usize % peers
    }
}
