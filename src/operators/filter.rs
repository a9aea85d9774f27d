//! Keeps the events whose top-level field equals one of a set of values (or, negated, none).

use super::{events_of, BuildContext, OperatorError, OperatorNode};
use crate::component::{
    concat_events, AnyStream, CheckContext, Component, Errors, Port, StreamKind,
};
use crate::event::extract_field;
use crate::event::Event;
use serde::Deserialize;
use timely::dataflow::operators::core::Filter;
use timely::dataflow::Stream;

/// Keeps the events whose field equals one of the values.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Inputs: event streams.
    pub inputs: Vec<String>,
    /// Top-level field to test.
    pub field: String,
    /// Accepted values (compared as strings; numbers by their JSON text).
    pub values: Vec<String>,
    /// Inverts the test.
    #[serde(default)]
    pub negate: bool,
}

impl Component for FilterConfig {
    fn check(&self, _cx: &CheckContext<'_>, errors: &mut Errors<'_>) {
        if self.field.trim().is_empty() {
            errors.field("field", "must name a field");
        }
        if self.values.is_empty() {
            errors.field("values", "needs at least one value");
        }
    }
}

impl OperatorNode for FilterConfig {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn ports(&self) -> &'static [Port] {
        &[Port::All]
    }

    fn outputs(&self, input: StreamKind, _errors: &mut Errors<'_>) -> Vec<(Port, StreamKind)> {
        vec![(Port::All, events_of(input))]
    }

    fn build<'s>(
        &self,
        _node: &str,
        inputs: Vec<AnyStream<'s>>,
        cx: &mut BuildContext<'_, 's>,
    ) -> Result<Vec<(Port, AnyStream<'s>)>, OperatorError> {
        let out = filter(concat_events(cx.scope, inputs), self);
        Ok(vec![(Port::All, AnyStream::Events(out))])
    }
}

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
