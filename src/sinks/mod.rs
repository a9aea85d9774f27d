//! Sinks: Kafka topics, JSON-lines files, and a null sink.
//!
//! Every sink has an (empty) output whose frontier means "durable": a Kafka sink holds the
//! capability of each batch until its delivery reports arrive. The sources' offset commits
//! follow the probe on these outputs.

pub mod file;
pub mod kafka;
pub mod null;
pub mod restore;
pub mod transaction;

use crate::component::{kinds, AnyStream, Component, StreamKind};
use crate::event::{Event, Invalid, Splits};
use crate::kafka::ClusterConfig;
use crate::runtime::WorkerContext;
use serde::Deserialize;
use std::collections::BTreeMap;
use timely::dataflow::Stream;
use transaction::Producers;

/// Errors that stop a sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A Kafka client could not be created or refused a request.
    #[error("kafka sink {sink}: {what}: {source}")]
    Kafka {
        /// Sink node.
        sink: String,
        /// What was being done.
        what: String,
        /// The client error.
        source: rdkafka::error::KafkaError,
    },
    /// The target topic is missing or has too few partitions.
    #[error("kafka sink {sink}: {message}")]
    Topic {
        /// Sink node.
        sink: String,
        /// What is wrong.
        message: String,
    },
    /// A transaction could not be started or committed.
    #[error("kafka sink {sink}: {message}")]
    Transaction {
        /// Sink node.
        sink: String,
        /// What failed and what it means.
        message: String,
    },
    /// The committed output could not be read back at start.
    #[error("restore from sink {sink}: {message}")]
    Restore {
        /// Sink node.
        sink: String,
        /// What failed.
        message: String,
    },
    /// A file could not be opened.
    #[error("file sink {sink}: {path}: {source}")]
    File {
        /// Sink node.
        sink: String,
        /// Path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// `[pipeline] delivery`: the guarantee across crashes and restarts.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Kafka sinks write in transactions committed at each checkpoint, and a restart restores
    /// the dedup state, the invalid records already written and the order of every output
    /// partition from the committed output: nothing is lost or written twice.
    #[default]
    ExactlyOnce,
    /// Plain idempotent writes: nothing is lost, but a crash replays up to a checkpoint of
    /// output, and a restart starts with empty dedup state.
    AtLeastOnce,
}

/// What checking and building a sink may use besides its own settings.
pub struct SinkContext<'a> {
    /// `[clusters.*]`.
    pub clusters: &'a BTreeMap<String, ClusterConfig>,
    /// What its inputs carry (the output partitions of a reorder upstream, for one).
    pub input: StreamKind,
    /// With exactly-once: the transactional producers of this process, fenced already.
    pub producers: Option<&'a Producers>,
    /// The global index of the worker it is built on (when building).
    pub worker: usize,
    /// The pipeline's name, part of every `transactional.id`.
    pub pipeline: &'a str,
}

/// A sink kind: besides checking itself, it builds the operator that writes its input and
/// whose output frontier means "durable".
pub trait SinkNode: Component {
    /// Its `inputs`.
    fn inputs(&self) -> &[String];

    /// What can be checked once before any worker starts (a Kafka topic exists, with enough
    /// partitions), so a mistake is one clear error rather than a half-built dataflow. Returns
    /// the largest record the sink can write, when it has a limit.
    fn preflight(&self, _node: &str, _cx: &SinkContext<'_>) -> Result<Option<usize>, SinkError> {
        Ok(None)
    }

    /// Builds it on one worker over its (one, already concatenated) input.
    fn build<'s>(
        &self,
        node: &str,
        input: AnyStream<'s>,
        cx: &SinkContext<'_>,
        worker: &WorkerContext,
    ) -> Result<Stream<'s, u64, Vec<()>>, SinkError>;
}

kinds! {
    /// `[sinks.NAME]`, chosen by its `type`.
    pub enum SinkConfig: SinkNode {
        /// A Kafka topic, written by an idempotent producer with `acks=all`.
        Kafka(kafka::KafkaSink) = "kafka",
        /// JSON lines appended to a file, or `-` for stdout.
        File(file::FileSink) = "file",
        /// Counts and discards.
        Null(null::NullSink) = "null",
    }
}

/// The version of what a restart reads back from the output (the `tidemark-*` headers, the
/// key as the id, the payload fingerprint dedup keeps), written on every record as the
/// `tidemark-format` header. A restore refuses a record of a version it does not know rather
/// than misread it; records without the header were written before it existed, in version 1.
pub const FORMAT_VERSION: &str = "1";

/// A record a sink can write: the original bytes plus what tidemark knows as headers.
pub trait SinkItem: timely::ExchangeData + Clone {
    /// The original payload.
    fn payload(&self) -> &[u8];
    /// Message key.
    fn key(&self) -> Option<&str>;
    /// Output partition, if a reorder assigned one.
    fn partition(&self) -> Option<u32>;
    /// `tidemark-*` headers.
    fn headers(&self, splits: &Splits) -> Vec<(&'static str, String)>;
    /// True for dead letters: one too large for any topic is counted and dropped rather than
    /// stopping the job, since it was already rejected.
    fn droppable(&self) -> bool {
        false
    }
}

impl SinkItem for Event {
    fn payload(&self) -> &[u8] {
        &self.payload
    }
    fn key(&self) -> Option<&str> {
        Some(self.id())
    }
    fn partition(&self) -> Option<u32> {
        self.partition.get()
    }
    fn headers(&self, splits: &Splits) -> Vec<(&'static str, String)> {
        let split = splits.get(self.split);
        let mut h = vec![
            ("tidemark-format", FORMAT_VERSION.to_string()),
            ("tidemark-region", split.region.clone()),
            ("tidemark-source", split.describe(self.offset)),
            ("tidemark-event-time", self.time.to_string()),
        ];
        if let Some(late) = &self.late {
            h.push(("tidemark-watermark", late.watermark.to_string()));
            h.push((
                "tidemark-lateness-ms",
                (late.watermark.get() - self.time).to_string(),
            ));
            h.push(("tidemark-arrival-ms", late.arrival_ms.to_string()));
            if late.beyond_horizon {
                // Dedup could not check it: an earlier copy may have been written already.
                h.push(("tidemark-beyond-horizon", "true".into()));
            }
            if let Some(from) = &split.replicated_from {
                // Tells the late-arrival analysis which knob applies: a replicated source's
                // lateness is what `max_split_hold` is for.
                h.push(("tidemark-replicated-from", from.clone()));
            }
        }
        h
    }
}

impl SinkItem for Invalid {
    fn droppable(&self) -> bool {
        true
    }
    fn payload(&self) -> &[u8] {
        &self.payload
    }
    fn key(&self) -> Option<&str> {
        None
    }
    fn partition(&self) -> Option<u32> {
        None
    }
    fn headers(&self, splits: &Splits) -> Vec<(&'static str, String)> {
        let split = splits.get(self.split);
        vec![
            ("tidemark-format", FORMAT_VERSION.to_string()),
            ("tidemark-region", split.region.clone()),
            ("tidemark-source", split.describe(self.offset)),
            ("tidemark-reason", self.reason.as_str().to_string()),
            ("tidemark-detail", self.detail.clone()),
        ]
        .into_iter()
        .chain(self.id.clone().map(|id| ("tidemark-event-id", id)))
        .collect()
    }
}
