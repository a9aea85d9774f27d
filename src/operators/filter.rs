//! Keeps the events whose top-level field equals one of a set of values (or, negated, none).

use crate::config::FilterConfig;
use crate::event::extract_field;
use crate::event::Event;
use timely::dataflow::operators::core::Filter;
use timely::dataflow::Stream;

/// Filters `input` by `config`.
pub fn filter<'scope>(
    input: Stream<'scope, u64, Vec<Event>>,
    config: &FilterConfig,
) -> Stream<'scope, u64, Vec<Event>> {
    let field = config.field.clone();
    let values = config.values.clone();
    let negate = config.negate;
    input.filter(move |e: &Event| {
        let hit = extract_field(&e.payload, &field).is_some_and(|v| values.contains(&v));
        hit != negate
    })
}
