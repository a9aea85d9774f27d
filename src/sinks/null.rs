//! Counts and discards: for benchmarks, and for outputs a pipeline drops on purpose.

use super::{SinkContext, SinkError, SinkItem, SinkNode};
use crate::component::{on_either, AnyStream, CheckContext, Component, Errors};
use crate::runtime::WorkerContext;
use serde::Deserialize;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

/// Counts and discards.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NullSink {
    /// Inputs.
    pub inputs: Vec<String>,
}

impl Component for NullSink {
    fn check(&self, _cx: &CheckContext<'_>, _errors: &mut Errors<'_>) {}
}

impl SinkNode for NullSink {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn build<'s>(
        &self,
        node: &str,
        input: AnyStream<'s>,
        _cx: &SinkContext<'_>,
        worker: &WorkerContext,
    ) -> Result<Stream<'s, u64, Vec<()>>, SinkError> {
        Ok(on_either!(input, s => null_sink(s, node, worker)))
    }
}

/// Discards `input`, counting it as written.
pub fn null_sink<'scope, T: SinkItem>(
    input: Stream<'scope, u64, Vec<T>>,
    name: &str,
    ctx: &WorkerContext,
) -> Stream<'scope, u64, Vec<()>> {
    let counter = ctx.metrics.events_out.with_label_values(&[name]);
    input.unary::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(
        Pipeline,
        &format!("Null({name})"),
        move |_cap, _info| {
            move |input, _output| {
                let mut n = 0;
                input.for_each(|_cap, data| {
                    n += data.len() as u64;
                    data.clear();
                });
                counter.inc_by(n);
            }
        },
    )
}
