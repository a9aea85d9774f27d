//! The event format: the ground floor every other layer stands on. Nothing here imports from
//! the rest of the crate.
//!
//! - [`format`]: what the pipeline file says of an event's shape (`[event]`).
//! - [`decode`](mod@decode): bytes in, the id and time out, or the [`Reason`] they are invalid;
//!   [`scan`] is the one-pass validating scanner behind it, [`reference`] the serde_json
//!   decoder it is tested against and the extraction of any other field, [`time`] the
//!   event-time domain (epoch milliseconds, RFC 3339).
//! - [`record`]: the records that flow between operators ([`Event`], [`Invalid`]), and
//!   [`reason`] the closed list of reasons a record is invalid.
//! - [`split`]: the table that says which partition or file each record came from.
//! - [`sample`]: synthetic events in the canonical shape.

pub mod decode;
pub mod format;
pub mod reason;
pub mod record;
pub mod reference;
pub mod sample;
mod scan;
pub mod split;
pub mod time;

pub use decode::{decode, Decoded, IdText, Rejected, MAX_ID_BYTES};
pub use format::EventFormat;
pub use reason::Reason;
pub use record::{Event, EventId, IdHash, Invalid, Late, OutPartition};
pub use reference::extract_field;
pub use split::{Split, SplitSource, Splits};
