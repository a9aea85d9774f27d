//! Why a record is not a valid event: the closed list of reasons, as counted in
//! `tidemark_invalid_events_total` and written in the `tidemark-reason` header.

use serde::{Deserialize, Serialize};

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
    /// A valid event larger than the pipeline's event outputs can take (their topics'
    /// `max.message.bytes` or the producer's `message.max.bytes`, read at start).
    TooLargeForOutput,
}

impl Reason {
    /// Every reason, for metrics initialisation and docs.
    pub const ALL: [Reason; 13] = [
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
        Reason::TooLargeForOutput,
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
            Reason::TooLargeForOutput => "too_large_for_output",
        }
    }
}
