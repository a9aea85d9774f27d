//! Dataflow operators, in data-path order: watermark (which is also the source), dedup,
//! filter, reorder. Each is an extension function over timely streams of [`crate::record`]
//! types, in a file of its own.

pub mod dedup;
pub mod filter;
pub mod idtable;
pub mod reorder;
pub mod watermark;

use crate::metrics::Metrics;
use crate::record::Splits;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use timely::dataflow::operators::probe::Handle as ProbeHandle;

/// What every operator of one worker shares.
#[derive(Clone)]
pub struct WorkerContext {
    /// Process metrics.
    pub metrics: Metrics,
    /// Every split of the pipeline.
    pub splits: Arc<Splits>,
    /// Frontier of every sink's acknowledged output: what is durable.
    pub probe: ProbeHandle<u64>,
    /// The first fatal error of this worker; the worker loop stops on it.
    pub failure: Rc<RefCell<Option<String>>>,
    /// Set on SIGINT/SIGTERM: sources stop and everything drains.
    pub shutdown: Arc<AtomicBool>,
    /// Milliseconds between offset commits.
    pub commit_interval: u64,
}

/// Wall-clock time in epoch milliseconds.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
