//! The event format: the ground floor every other layer stands on. Nothing here imports from
//! the rest of the crate.
//!
//! - `format.rs` ([`EventFormat`]): what the pipeline file says of an event's shape (`[event]`).
//! - `decode.rs` ([`decode()`]): bytes in, the id and time out, or the [`Reason`] they are invalid;
//!   `scan.rs` is the one-pass validating scanner behind it, [`mod@reference`] the serde_json
//!   decoder it is tested against and the extraction of any other field, [`time`] the
//!   event-time domain (epoch milliseconds, RFC 3339).
//! - `record.rs`: the records that flow between operators ([`Event`], [`Invalid`]), and
//!   `reason.rs` the closed list of reasons a record is invalid.
//! - `split.rs` ([`Splits`]): the table that says which partition or file each record came from.
//! - [`sample`]: synthetic events in the canonical shape.

mod decode;
pub(crate) mod format;
mod reason;
mod record;
pub mod reference;
pub mod sample;
mod scan;
mod split;
pub mod time;

pub use decode::{decode, Decoded, IdText, Rejected, MAX_ID_BYTES};
pub use format::EventFormat;
pub use reason::Reason;
pub use record::{Event, EventId, IdHash, Invalid, Late, OutPartition};
pub use reference::extract_field;
pub use split::{Split, SplitSource, Splits};
