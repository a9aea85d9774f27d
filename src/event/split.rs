//! The split table: every partition, file or generator stream of a pipeline, numbered the same
//! way in every process, so a record's `split` index says where it came from.

/// Where a split's records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitSource {
    /// A Kafka partition.
    Kafka {
        /// Cluster name from the pipeline file.
        cluster: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// A JSON-lines file.
    File {
        /// Path.
        path: String,
    },
    /// A generator partition.
    Generator {
        /// Partition index within the generator.
        index: u32,
    },
}

/// One unit of source parallelism: a Kafka partition, a file, a generator partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The source node.
    pub node: String,
    /// Origin region of its events.
    pub region: String,
    /// Index of `region` in [`Splits::regions`].
    pub region_index: usize,
    /// Where its records come from.
    pub source: SplitSource,
    /// For a MirrorMaker 2 remote topic, the region it is replicated from.
    pub replicated_from: Option<String>,
}

impl Split {
    /// `cluster/topic/partition/offset`, or `file:path/line`, for the `tidemark-source` header.
    pub fn describe(&self, offset: i64) -> String {
        match &self.source {
            SplitSource::Kafka {
                cluster,
                topic,
                partition,
            } => {
                format!("{cluster}/{topic}/{partition}/{offset}")
            }
            SplitSource::File { path } => format!("file:{path}/{offset}"),
            SplitSource::Generator { index } => format!("generator:{}/{index}/{offset}", self.node),
        }
    }
}

/// Every split of a pipeline, numbered identically in every process.
#[derive(Debug, Clone, Default)]
pub struct Splits {
    /// All splits, ordered by source node, then topic, then partition.
    pub splits: Vec<Split>,
    /// Distinct origin regions, for per-region counters.
    pub regions: Vec<String>,
}

impl Splits {
    /// The split an event came from.
    pub fn get(&self, index: u32) -> &Split {
        &self.splits[index as usize]
    }

    /// Adds a split, interning its region.
    pub fn push(&mut self, node: &str, region: &str, source: SplitSource) -> u32 {
        let region_index = match self.regions.iter().position(|r| r == region) {
            Some(i) => i,
            None => {
                self.regions.push(region.to_string());
                self.regions.len() - 1
            }
        };
        self.splits.push(Split {
            node: node.to_string(),
            region: region.to_string(),
            region_index,
            source,
            replicated_from: None,
        });
        (self.splits.len() - 1) as u32
    }

    /// The worker that owns split `index`: round-robin, so every process agrees without
    /// talking, and no consumer-group rebalance is involved.
    pub fn owner(index: u32, peers: usize) -> usize {
        index as usize % peers
    }
}
