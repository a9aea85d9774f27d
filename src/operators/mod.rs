//! Dataflow operators, in data-path order: watermark (which is also the source), dedup,
//! filter, reorder. Each is an extension function over timely streams of [`crate::event`]
//! types, in a file of its own.

pub mod dedup;
pub mod filter;
mod idtable;
pub mod reorder;
pub mod watermark;

use crate::component::{kinds, AnyStream, Component, Errors, Port, StreamKind};
use crate::event::EventFormat;
use crate::runtime::WorkerContext;
use crate::sources::{SourceConfig, SourceContext, SourceError};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use timely::dataflow::Scope;
use watermark::SourceHandle;

/// Errors of building an operator.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// A watermark could not open its sources.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// What building an operator on one worker may use besides its own settings.
pub struct BuildContext<'a, 's> {
    /// The dataflow being built.
    pub scope: Scope<'s, u64>,
    /// What every operator of this worker shares.
    pub worker: &'a WorkerContext,
    /// This worker's index, and how many there are in the cluster.
    pub index: usize,
    /// Workers in the cluster.
    pub peers: usize,
    /// `[event]`.
    pub event: &'a EventFormat,
    /// Every source node, for a watermark to open the ones it reads.
    pub sources: &'a BTreeMap<String, SourceConfig>,
    /// What opening a source needs.
    pub source_cx: &'a SourceContext<'a>,
    /// The operators this one reads, in input order (`None` for a source).
    pub upstream: Vec<Option<&'a OperatorConfig>>,
    /// The sources' handles, which the worker loop commits once the dataflow has drained.
    pub handles: &'a mut Vec<Rc<RefCell<SourceHandle>>>,
}

/// An operator kind: besides checking itself, it says what its outputs carry and builds
/// itself on each worker.
pub trait OperatorNode: Component {
    /// Its `inputs`.
    fn inputs(&self) -> &[String];

    /// Whether it reads sources (a watermark) rather than other operators.
    fn reads_sources(&self) -> bool {
        false
    }

    /// The outputs an input may name (`Port::All` is the bare node name).
    fn ports(&self) -> &'static [Port];

    /// What each output carries, given what its inputs carry; an input it cannot take is
    /// reported to `errors`.
    fn outputs(&self, input: StreamKind, errors: &mut Errors<'_>) -> Vec<(Port, StreamKind)>;

    /// Builds it on one worker over its inputs, returning its outputs. An operator with
    /// `on_time` and `late` outputs need not build `All`: it is their union, made only if read.
    fn build<'s>(
        &self,
        node: &str,
        inputs: Vec<AnyStream<'s>>,
        cx: &mut BuildContext<'_, 's>,
    ) -> Result<Vec<(Port, AnyStream<'s>)>, OperatorError>;
}

kinds! {
    /// `[operators.NAME]`, chosen by its `type`.
    pub enum OperatorConfig: OperatorNode {
        /// Event time, watermarks and the late split. Outputs: `on_time`, `late`, `invalid`.
        Watermark(watermark::WatermarkConfig) = "watermark",
        /// Exact dedup by event id. Outputs: `on_time`, `late` (the bare name is both).
        Dedup(dedup::DedupConfig) = "dedup",
        /// Event-time order per output partition.
        Reorder(reorder::ReorderConfig) = "reorder",
        /// Keeps the events whose field equals one of the values.
        Filter(filter::FilterConfig) = "filter",
    }
}

/// What an operator that passes its events through carries: its input, without invalid
/// records (which only a watermark emits and only sinks take).
pub(crate) fn events_of(input: StreamKind) -> StreamKind {
    StreamKind {
        invalid: false,
        ..input
    }
}
