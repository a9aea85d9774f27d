//! Sources: where records come from, split into partitions that workers own outright.
//!
//! Planning turns the pipeline's source nodes into a numbered list of splits (Kafka partitions,
//! files, generator partitions) that every process computes identically. Each worker opens
//! readers for the splits it owns ([`Splits::owner`]); the watermark operator polls them.

pub mod file;
pub mod generator;
pub mod heartbeat;
pub mod kafka;

use crate::component::{kinds, Component};
use crate::event::Splits;
use crate::kafka::ClusterConfig;
use crate::metrics::Metrics;
use heartbeat::LinkSpec;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Errors from reading sources.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Kafka refused or failed a request.
    #[error("kafka source {node}: {what}: {source}")]
    Kafka {
        /// Source node.
        node: String,
        /// What was being done.
        what: String,
        /// The client error.
        source: rdkafka::error::KafkaError,
    },
    /// Records the source was still to read are gone (retention, a deleted or recreated
    /// topic), and its `on_gap` is `fail`.
    #[error("kafka source {node}: {topic} partition {partition}: offsets {from} to {to} are gone (retention deleted them, or the topic was recreated) before they were read: {} records skipped would be lost; on_gap = \"fail\" stops here (on_gap = \"continue\" reads on from offset {to})", to - from)]
    Gap {
        /// Source node.
        node: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The first offset that was still to read.
        from: i64,
        /// The oldest offset there now.
        to: i64,
    },
    /// A topic named in the pipeline does not exist.
    #[error("kafka source {node}: topic \"{topic}\" does not exist on cluster \"{cluster}\"")]
    MissingTopic {
        /// Source node.
        node: String,
        /// Cluster name.
        cluster: String,
        /// Topic.
        topic: String,
    },
    /// The cluster refuses the source what it must do (an ACL).
    #[error("kafka source {node}: {refusal}")]
    Refused {
        /// Source node.
        node: String,
        /// What was refused.
        refusal: crate::kafka::Refusal,
    },
    /// A file could not be read.
    #[error("file source {node}: {path}: {source}")]
    File {
        /// Source node.
        node: String,
        /// Path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What a reader saw for one of its splits.
pub enum Polled<'a> {
    /// A record.
    Record {
        /// Split index.
        split: u32,
        /// Offset of the record.
        offset: i64,
        /// Its bytes.
        bytes: &'a [u8],
        /// The Kafka record's timestamp (epoch ms: log-append or create time, as the topic
        /// keeps it), for the clock-skew histogram; `None` where there is none.
        timestamp: Option<i64>,
    },
    /// The split is caught up with what exists now.
    End {
        /// Split index.
        split: u32,
    },
    /// The split will produce nothing more in this run (bounded mode, or a finite generator).
    Finished {
        /// Split index.
        split: u32,
    },
    /// Whether the broker leading the split can be reached changed (Kafka only).
    Reachable {
        /// Split index.
        split: u32,
        /// Whether it can be now.
        reachable: bool,
    },
}

/// Reads a set of splits for one worker.
pub trait SplitReader {
    /// Reads up to `budget` records, reporting each through `each`. Returns how many records
    /// were read; fewer than `budget` means the reader has nothing more right now.
    fn poll(
        &mut self,
        budget: usize,
        each: &mut dyn FnMut(Polled<'_>),
    ) -> Result<usize, SourceError>;

    /// Records that `next_offset` of each split is durable downstream.
    fn commit(&mut self, offsets: &[(u32, i64)], sync: bool) -> Result<(), SourceError>;

    /// Arranges for `wake` to be called when new data may be available, so an idle worker
    /// can park instead of spinning. Readers without such a signal return false and are polled
    /// on a timer.
    fn set_waker(&mut self, _wake: Arc<dyn Fn() + Send + Sync>) -> bool {
        false
    }
}

/// Options that apply to every reader of a run.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Read up to the end offsets taken at start, then finish.
    pub bounded: bool,
}

/// What planning and opening a source may use besides its own settings.
pub struct SourceContext<'a> {
    /// `[clusters.*]`.
    pub clusters: &'a BTreeMap<String, ClusterConfig>,
    /// The consumer group of a Kafka source that names none: `tidemark-<pipeline name>`.
    pub default_group: String,
    /// Options of every reader of the run.
    pub read: ReadOptions,
    /// Process metrics.
    pub metrics: &'a Metrics,
}

/// A source kind: besides checking itself, it numbers its splits and opens readers for them.
pub trait SourceNode: Component {
    /// The origin region of the events it reads.
    fn region(&self) -> &str;

    /// Appends its splits to `splits`, in the same order in every process.
    fn plan(
        &self,
        node: &str,
        cx: &SourceContext<'_>,
        splits: &mut Splits,
    ) -> Result<(), SourceError>;

    /// Opens a reader of `owned`, splits of this node that one worker owns.
    fn open(
        &self,
        node: &str,
        cx: &SourceContext<'_>,
        splits: &Splits,
        owned: &[u32],
    ) -> Result<Box<dyn SplitReader>, SourceError>;

    /// The heartbeat watch of the replication link its events cross, if any.
    fn link(&self, _node: &str, _cx: &SourceContext<'_>) -> Result<Option<LinkSpec>, SourceError> {
        Ok(None)
    }

    /// What `tidemark graph` shows under its name.
    fn label(&self) -> String;
}

kinds! {
    /// `[sources.NAME]`, chosen by its `type`.
    pub enum SourceConfig: SourceNode {
        /// `type = "kafka"`.
        Kafka(kafka::KafkaSource) = "kafka",
        /// `type = "file"`.
        File(file::FileSource) = "file",
        /// `type = "generator"`.
        Generator(generator::GeneratorSource) = "generator",
    }
}

/// Numbers every split of every source, identically in every process.
pub fn plan(
    sources: &BTreeMap<String, SourceConfig>,
    cx: &SourceContext<'_>,
) -> Result<Splits, SourceError> {
    let mut splits = Splits::default();
    for (node, source) in sources {
        source.node().plan(node, cx, &mut splits)?;
    }
    Ok(splits)
}

/// Opens readers for the splits in `mine`.
pub fn open(
    sources: &BTreeMap<String, SourceConfig>,
    cx: &SourceContext<'_>,
    splits: &Splits,
    mine: &[u32],
) -> Result<Vec<Box<dyn SplitReader>>, SourceError> {
    let mut readers = Vec::new();
    for (node, source) in sources {
        let owned: Vec<u32> = mine
            .iter()
            .copied()
            .filter(|&s| splits.get(s).node == *node)
            .collect();
        if !owned.is_empty() {
            readers.push(source.node().open(node, cx, splits, &owned)?);
        }
    }
    Ok(readers)
}

/// Opens a heartbeat watch for each replicated source of which this worker owns a split in
/// `mine`.
pub fn open_links(
    sources: &BTreeMap<String, SourceConfig>,
    cx: &SourceContext<'_>,
    splits: &Splits,
    mine: &[u32],
) -> Result<Vec<LinkSpec>, SourceError> {
    let mut links = Vec::new();
    for (node, source) in sources {
        if mine.iter().any(|&s| splits.get(s).node == *node) {
            links.extend(source.node().link(node, cx)?);
        }
    }
    Ok(links)
}
