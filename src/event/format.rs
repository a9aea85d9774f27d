//! What the pipeline file says of an event's shape (`[event]`): which fields hold the id and
//! the time, and the largest accepted size.

use serde::Deserialize;
use std::num::NonZeroU32;

/// `[event]`: the shape of an event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFormat {
    /// Field holding the event id: a string of 1 to 128 bytes.
    #[serde(default = "default_id_field")]
    pub id_field: String,
    /// Field holding the event time: epoch milliseconds or an RFC 3339 string.
    #[serde(default = "default_time_field")]
    pub time_field: String,
    /// Events larger than this go to the invalid output with `reason=too_large`.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: NonZeroU32,
}

pub(crate) fn default_id_field() -> String {
    "eventId".into()
}
fn default_time_field() -> String {
    "timestamp".into()
}
fn default_max_event_bytes() -> NonZeroU32 {
    NonZeroU32::new(1 << 20).expect("non-zero")
}

impl Default for EventFormat {
    fn default() -> Self {
        EventFormat {
            id_field: default_id_field(),
            time_field: default_time_field(),
            max_event_bytes: default_max_event_bytes(),
        }
    }
}
