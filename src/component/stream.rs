//! What flows between nodes: the named outputs an input can pick, what each stream carries
//! (checked before anything runs), and the streams themselves once built.

use crate::event::{Event, Invalid};
use timely::dataflow::operators::Concatenate;
use timely::dataflow::{Scope, Stream};

/// The output of a node that an input names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Port {
    /// The bare node name: everything valid it emits.
    All,
    /// `.on_time`.
    OnTime,
    /// `.late`.
    Late,
    /// `.invalid` (watermark nodes only).
    Invalid,
}

impl Port {
    /// A named output, from the text after the dot.
    pub fn parse(s: &str) -> Option<Port> {
        match s {
            "on_time" => Some(Port::OnTime),
            "late" => Some(Port::Late),
            "invalid" => Some(Port::Invalid),
            _ => None,
        }
    }

    /// The suffix used in input names.
    pub fn suffix(self) -> &'static str {
        match self {
            Port::All => "",
            Port::OnTime => ".on_time",
            Port::Late => ".late",
            Port::Invalid => ".invalid",
        }
    }
}

/// What flows on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamKind {
    /// Carries on-time events.
    pub on_time: bool,
    /// Carries late events.
    pub late: bool,
    /// Carries invalid records.
    pub invalid: bool,
    /// Events carry an output partition of this many partitions (set by `reorder`).
    pub partitions: Option<u32>,
}

impl StreamKind {
    /// What either stream carries.
    pub fn union(self, other: StreamKind) -> StreamKind {
        StreamKind {
            on_time: self.on_time || other.on_time,
            late: self.late || other.late,
            invalid: self.invalid || other.invalid,
            partitions: if self.partitions == other.partitions {
                self.partitions
            } else {
                None
            },
        }
    }

    /// Carries events (on time or late).
    pub fn events(self) -> bool {
        self.on_time || self.late
    }
}

/// Applies code generic over the record type to whichever stream an [`AnyStream`] holds: a
/// sink writes events and invalid records alike.
macro_rules! on_either {
    ($input:expr, $stream:ident => $body:expr) => {
        match $input {
            $crate::component::AnyStream::Events($stream) => $body,
            $crate::component::AnyStream::Invalid($stream) => $body,
        }
    };
}
pub(crate) use on_either;

/// A stream of either events or invalid records, as wired between nodes.
#[derive(Clone)]
pub enum AnyStream<'s> {
    /// Valid events, on time or late.
    Events(Stream<'s, u64, Vec<Event>>),
    /// Records that are not valid events.
    Invalid(Stream<'s, u64, Vec<Invalid>>),
}

impl<'s> AnyStream<'s> {
    /// The same stream, watched by `probe` too.
    pub fn probed(self, probe: &timely::dataflow::operators::probe::Handle<u64>) -> AnyStream<'s> {
        use timely::dataflow::operators::Probe;
        match self {
            AnyStream::Events(s) => AnyStream::Events(s.probe_with(probe)),
            AnyStream::Invalid(s) => AnyStream::Invalid(s.probe_with(probe)),
        }
    }
}

/// The events of `streams` as one stream.
pub fn concat_events<'s>(
    scope: Scope<'s, u64>,
    streams: Vec<AnyStream<'s>>,
) -> Stream<'s, u64, Vec<Event>> {
    let events = streams.into_iter().filter_map(|s| match s {
        AnyStream::Events(e) => Some(e),
        AnyStream::Invalid(_) => None,
    });
    one(scope, events.collect())
}

/// The invalid records of `streams` as one stream.
pub fn concat_invalid<'s>(
    scope: Scope<'s, u64>,
    streams: Vec<AnyStream<'s>>,
) -> Stream<'s, u64, Vec<Invalid>> {
    let invalid = streams.into_iter().filter_map(|s| match s {
        AnyStream::Invalid(i) => Some(i),
        AnyStream::Events(_) => None,
    });
    one(scope, invalid.collect())
}

/// The stream itself when there is one (a concatenation would copy every batch for nothing),
/// or their concatenation.
fn one<'s, T: Clone + 'static>(
    scope: Scope<'s, u64>,
    mut streams: Vec<Stream<'s, u64, Vec<T>>>,
) -> Stream<'s, u64, Vec<T>> {
    if streams.len() == 1 {
        streams.pop().expect("one stream")
    } else {
        scope.concatenate(streams)
    }
}
