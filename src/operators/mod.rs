//! Dataflow operators, in data-path order: watermark (which is also the source), dedup,
//! filter, reorder. Each is an extension function over timely streams of [`crate::record`]
//! types, in a file of its own.

pub mod dedup;
pub mod filter;
pub mod idtable;
pub mod reorder;
pub mod watermark;
