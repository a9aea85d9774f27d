//! Counts and discards: for benchmarks, and for outputs a pipeline drops on purpose.

use super::SinkItem;
use crate::runtime::WorkerContext;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

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
