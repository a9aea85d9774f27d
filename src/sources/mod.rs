//! Sources: where records come from, split into partitions that workers own outright.
//!
//! Planning turns the pipeline's source nodes into a numbered list of splits (Kafka partitions,
//! files, generator partitions) that every process computes identically. Each worker opens
//! readers for the splits it owns ([`Splits::owner`]); the watermark operator polls them.

mod file;
pub mod generator;
pub mod heartbeat;
mod kafka;

use crate::config::{PipelineConfig, SourceConfig};
use crate::event::{SplitSource, Splits};
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

/// Numbers every split of every source, identically in every process.
pub fn plan(config: &PipelineConfig) -> Result<Splits, SourceError> {
    let mut splits = Splits::default();
    for (node, source) in &config.sources {
        match source {
            SourceConfig::Kafka(k) => {
                let cluster = &config.clusters[&k.cluster];
                for topic in &k.topics {
                    let partitions = kafka::partitions(node, &k.cluster, cluster, topic)?;
                    for partition in partitions {
                        let i = splits.push(
                            node,
                            source.region(),
                            SplitSource::Kafka {
                                cluster: k.cluster.clone(),
                                topic: topic.clone(),
                                partition,
                            },
                        );
                        splits.splits[i as usize].replicated_from = k.replicated_from.clone();
                    }
                }
            }
            SourceConfig::File(f) => {
                for path in &f.paths {
                    splits.push(node, &f.region, SplitSource::File { path: path.clone() });
                }
            }
            SourceConfig::Generator(g) => {
                for index in 0..g.partitions.get() {
                    splits.push(node, &g.region, SplitSource::Generator { index });
                }
            }
        }
    }
    Ok(splits)
}

/// Opens readers for the splits in `mine` (all of which belong to `nodes`).
pub fn open(
    config: &PipelineConfig,
    splits: &Splits,
    mine: &[u32],
    options: &ReadOptions,
    metrics: &crate::metrics::Metrics,
) -> Result<Vec<Box<dyn SplitReader>>, SourceError> {
    let mut readers: Vec<Box<dyn SplitReader>> = Vec::new();
    for (node, source) in &config.sources {
        let owned: Vec<u32> = mine
            .iter()
            .copied()
            .filter(|&s| splits.get(s).node == *node)
            .collect();
        if owned.is_empty() {
            continue;
        }
        match source {
            SourceConfig::Kafka(k) => {
                let group = k
                    .group_id
                    .clone()
                    .unwrap_or_else(|| format!("tidemark-{}", config.pipeline.name));
                readers.push(Box::new(kafka::KafkaReader::open(
                    node, k, config, &group, splits, &owned, options, metrics,
                )?));
            }
            SourceConfig::File(_) => {
                readers.push(Box::new(file::FileReader::open(
                    node, splits, &owned, options,
                )?));
            }
            SourceConfig::Generator(g) => {
                readers.push(Box::new(generator::GeneratorReader::new(g, splits, &owned)));
            }
        }
    }
    Ok(readers)
}

/// Opens a heartbeat watch for each replicated Kafka source among `nodes` of which this worker
/// owns a split in `mine`.
pub fn open_links(
    config: &PipelineConfig,
    splits: &Splits,
    mine: &[u32],
) -> Result<Vec<heartbeat::LinkSpec>, SourceError> {
    let mut links = Vec::new();
    for (node, source) in &config.sources {
        let SourceConfig::Kafka(k) = source else {
            continue;
        };
        if !mine.iter().any(|&s| splits.get(s).node == *node) {
            continue;
        }
        if let Some(watch) = heartbeat::LinkWatch::open(node, k, &config.clusters[&k.cluster])? {
            links.push(heartbeat::LinkSpec {
                node: node.clone(),
                watch,
                timeout: k.link_timeout.0,
            });
        }
    }
    Ok(links)
}
