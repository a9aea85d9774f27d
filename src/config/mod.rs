//! Pipeline files: what the user writes, and the checks that turn it into a graph we can run.
//!
//! A file declares clusters once, then named nodes in three tables that follow the data path:
//! `[sources.*]`, `[operators.*]` and `[sinks.*]`. Every node except a source lists its
//! `inputs`, each either a node name or `node.output` for a named output
//! (`wm.late`, `dedup.on_time`, ...). Loading parses each node on its own, so one bad node does
//! not hide the errors of the others, and then checks the graph as a whole. Every error names its
//! node and field.

mod duration;
mod gateway;
mod graph;

pub use duration::{parse_flag as parse_duration_flag, Millis};
pub use gateway::{parse_gateway, GatewayConfig, GatewayFile};
pub use graph::{to_dot, to_mermaid, Graph, NodeKind, NodeRef, Port, StreamKind};

use crate::event::EventFormat;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;

/// A whole pipeline file.
#[derive(Debug, Clone, Default)]
pub struct PipelineConfig {
    /// `[pipeline]`: name and process-wide settings.
    pub pipeline: PipelineSection,
    /// `[event]`: where the id and time live in each JSON event.
    pub event: EventFormat,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[clusters.*]`: Kafka clusters, referenced by name from nodes.
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// `[sources.*]`.
    pub sources: BTreeMap<String, SourceConfig>,
    /// `[operators.*]`.
    pub operators: BTreeMap<String, OperatorConfig>,
    /// `[sinks.*]`.
    pub sinks: BTreeMap<String, SinkConfig>,
}

/// `[pipeline]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// Pipeline name: the default consumer group is `tidemark-<name>`.
    pub name: String,
    /// How often source offsets that are safe are committed.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: Millis,
}

fn default_commit_interval() -> Millis {
    Millis(1_000)
}

impl Default for PipelineSection {
    fn default() -> Self {
        PipelineSection {
            name: "tidemark".into(),
            commit_interval: default_commit_interval(),
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint (`GET /metrics`). Unset: no endpoint.
    /// With several processes, process `i` listens on this port plus `i`.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[clusters.NAME]`: one Kafka cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// Extra librdkafka settings for every client of this cluster (for example security).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl ClusterConfig {
    /// A cluster given only by its bootstrap servers (the command-line tools' `--bootstrap`).
    pub fn at(bootstrap: &str) -> ClusterConfig {
        ClusterConfig {
            bootstrap: bootstrap.into(),
            options: BTreeMap::new(),
        }
    }
}

/// Where a Kafka source starts when its group has no committed offset.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// The oldest retained record.
    #[default]
    Earliest,
    /// Only records written after the start.
    Latest,
}

/// `[sources.NAME]`, chosen by its `type`.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// `type = "kafka"`.
    Kafka(KafkaSource),
    /// `type = "file"`.
    File(FileSource),
    /// `type = "generator"`.
    Generator(GeneratorSource),
}

/// Kafka topics, every partition, assigned to workers deterministically.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSource {
    /// A name from `[clusters]`.
    pub cluster: String,
    /// Topics to read.
    pub topics: Vec<String>,
    /// The region where these events were produced (the `tidemark-region` header). A remote
    /// topic's events come from the region they are replicated from, so with `replicated_from`
    /// this may be left out.
    pub region: Option<String>,
    /// Set when the topics are MirrorMaker 2 remote topics replicated from that region. The
    /// source then follows MM2's replicated heartbeats from it to know whether the link is up.
    pub replicated_from: Option<String>,
    /// The MM2 heartbeats topic that crossed the same link; by default
    /// `<replicated_from>.heartbeats` (MM2's default replication policy).
    pub heartbeats_topic: Option<String>,
    /// The link is down when the newest replicated heartbeat is older than this. It must be
    /// shorter than the watermark's `idle_timeout`, so a split is seen before the remote
    /// partitions could count as idle.
    #[serde(default = "default_link_timeout")]
    pub link_timeout: Millis,
    /// Consumer group used only to store offsets (never to assign partitions).
    pub group_id: Option<String>,
    /// Where to start without a committed offset.
    #[serde(default)]
    pub start_from: StartFrom,
}

/// JSON-lines files; each file is one partition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// Files to read.
    pub paths: Vec<String>,
    /// Origin region reported for these events.
    pub region: String,
}

/// Synthetic log events, for benchmarks and demos.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSource {
    /// Events in total across partitions; unset means unbounded.
    pub count: Option<u64>,
    /// Independent partitions (each generated by the worker that owns it).
    #[serde(default = "default_generator_partitions")]
    pub partitions: NonZeroU32,
    /// Origin region reported for these events.
    pub region: String,
    /// Seed for the event ids, times and payloads.
    #[serde(default)]
    pub seed: u64,
    /// Share of events emitted twice (same id, same payload), 0..1.
    #[serde(default)]
    pub duplicate_rate: f64,
    /// Event-time disorder inside a partition.
    #[serde(default)]
    pub jitter: Millis,
    /// Approximate payload size in bytes.
    #[serde(default = "default_payload_bytes")]
    pub payload_bytes: u32,
}

fn default_link_timeout() -> Millis {
    Millis(3_000)
}

impl KafkaSource {
    /// The heartbeats topic to follow, for a replicated source.
    pub fn heartbeats(&self) -> Option<String> {
        let from = self.replicated_from.as_ref()?;
        Some(
            self.heartbeats_topic
                .clone()
                .unwrap_or_else(|| format!("{from}.heartbeats")),
        )
    }
}

fn default_generator_partitions() -> NonZeroU32 {
    NonZeroU32::new(4).expect("non-zero")
}
fn default_payload_bytes() -> u32 {
    300
}

impl SourceConfig {
    /// The origin region of the events this source reads.
    pub fn region(&self) -> &str {
        match self {
            SourceConfig::Kafka(k) => k
                .region
                .as_deref()
                .or(k.replicated_from.as_deref())
                .unwrap_or_default(),
            SourceConfig::File(f) => &f.region,
            SourceConfig::Generator(g) => &g.region,
        }
    }
}

/// Watermark settings (the `watermark` operator).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkConfig {
    /// Inputs: sources only.
    pub inputs: Vec<String>,
    /// Bounded disorder: a partition's watermark is its max event time minus this.
    pub max_out_of_orderness: Millis,
    /// A partition at its end offset with no records for this long stops holding the watermark.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Millis,
    /// Events further than this ahead of the wall clock are invalid (`future_timestamp`).
    #[serde(default = "default_future_skew")]
    pub max_future_skew: Millis,
    /// How long a replicated source with a down link may hold the watermark.
    pub max_split_hold: Option<Millis>,
    /// How long a Kafka partition whose leader cannot be reached may hold the watermark. Its
    /// silence then says nothing about its end: producers may be queueing events for it.
    #[serde(default = "default_unreachable_hold")]
    pub unreachable_hold: Millis,
}

fn default_idle_timeout() -> Millis {
    Millis(5_000)
}
fn default_unreachable_hold() -> Millis {
    Millis(30_000)
}
fn default_future_skew() -> Millis {
    Millis(600_000)
}

/// `[operators.NAME]`, chosen by its `type`.
#[derive(Debug, Clone)]
pub enum OperatorConfig {
    /// Event time, watermarks and the late split. Outputs: `on_time`, `late`, `invalid`.
    Watermark(WatermarkConfig),
    /// Exact dedup by event id. Outputs: `on_time`, `late` (the bare name is both).
    Dedup(DedupConfig),
    /// Event-time order per output partition.
    Reorder(ReorderConfig),
    /// Keeps the events whose field equals one of the values.
    Filter(FilterConfig),
}

/// Exact dedup by event id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// Inputs: event streams.
    pub inputs: Vec<String>,
    /// Ids are remembered for this long in event time behind the watermark.
    pub horizon: Millis,
}

/// Event-time order per output partition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReorderConfig {
    /// Inputs: on-time event streams.
    pub inputs: Vec<String>,
    /// Field whose value picks the output partition.
    #[serde(default = "crate::event::format::default_id_field")]
    pub partition_by: String,
    /// Output partitions.
    pub partitions: NonZeroU32,
}

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

/// How a file sink writes a record.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// The payload bytes, one per line.
    #[default]
    Payload,
    /// A JSON object with the metadata and the payload.
    Envelope,
}

/// `[sinks.NAME]`, chosen by its `type`.
#[derive(Debug, Clone)]
pub enum SinkConfig {
    /// A Kafka topic, written by an idempotent producer with `acks=all`.
    Kafka(KafkaSink),
    /// JSON lines appended to a file, or `-` for stdout.
    File(FileSink),
    /// Counts and discards.
    Null(NullSink),
}

/// A Kafka topic, written by an idempotent producer with `acks=all`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSink {
    /// Inputs.
    pub inputs: Vec<String>,
    /// A name from `[clusters]`.
    pub cluster: String,
    /// Target topic.
    pub topic: String,
}

/// JSON lines appended to a file, or `-` for stdout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSink {
    /// Inputs.
    pub inputs: Vec<String>,
    /// Path, or `-`.
    pub path: String,
    /// What each line holds.
    #[serde(default)]
    pub format: FileFormat,
}

/// Counts and discards.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NullSink {
    /// Inputs.
    pub inputs: Vec<String>,
}

impl SinkConfig {
    /// The inputs of this sink.
    pub fn inputs(&self) -> &[String] {
        match self {
            SinkConfig::Kafka(k) => &k.inputs,
            SinkConfig::File(f) => &f.inputs,
            SinkConfig::Null(n) => &n.inputs,
        }
    }
}

impl OperatorConfig {
    /// The inputs of this operator.
    pub fn inputs(&self) -> &[String] {
        match self {
            OperatorConfig::Watermark(w) => &w.inputs,
            OperatorConfig::Dedup(d) => &d.inputs,
            OperatorConfig::Reorder(r) => &r.inputs,
            OperatorConfig::Filter(f) => &f.inputs,
        }
    }
}

/// One problem in a pipeline file, located by node and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The node (or section, such as `clusters.region-a`) the error is in.
    pub node: String,
    /// The field, or empty when the node as a whole is wrong.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.node, self.message)
        } else {
            write!(f, "{}.{}: {}", self.node, self.field, self.message)
        }
    }
}

/// Every problem found in a pipeline file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read, and is wrong in the listed ways.
    #[error("{path}: {} error(s)\n{}", errors.len(), errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        path: String,
        /// All errors, in file order of their nodes.
        errors: Vec<ConfigError>,
    },
}

impl LoadError {
    /// The individual errors (empty for I/O failures).
    pub fn errors(&self) -> &[ConfigError] {
        match self {
            LoadError::Io { .. } => &[],
            LoadError::Invalid { errors, .. } => errors,
        }
    }
}

/// Reads and checks a pipeline file.
pub fn load(path: &Path) -> Result<(PipelineConfig, Graph), LoadError> {
    read_with(path, parse)
}

/// Reads and checks a gateway file.
pub fn load_gateway(path: &Path) -> Result<GatewayFile, LoadError> {
    read_with(path, parse_gateway)
}

fn read_with<T>(
    path: &Path,
    parse: impl Fn(&str) -> Result<T, Vec<ConfigError>>,
) -> Result<T, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text).map_err(|errors| LoadError::Invalid {
        path: path.display().to_string(),
        errors,
    })
}

/// The top-level table of a TOML text, or the one error that it is not TOML.
fn toml_root(text: &str) -> Result<toml::Table, Vec<ConfigError>> {
    text.parse().map_err(|e: toml::de::Error| {
        vec![ConfigError {
            node: "file".into(),
            field: String::new(),
            message: format!("not valid TOML: {}", e.message().trim()),
        }]
    })
}

/// Parses and checks pipeline text, returning every error found.
pub fn parse(text: &str) -> Result<(PipelineConfig, Graph), Vec<ConfigError>> {
    let mut errors = Vec::new();
    let root = toml_root(text)?;
    let mut config = PipelineConfig::default();
    for (key, value) in root {
        match key.as_str() {
            "pipeline" => {
                if let Some(v) = section::<PipelineSection>("pipeline", value, &mut errors) {
                    config.pipeline = v;
                }
            }
            "event" => {
                if let Some(v) = section::<EventFormat>("event", value, &mut errors) {
                    config.event = v;
                }
            }
            "metrics" => {
                if let Some(v) = section::<MetricsConfig>("metrics", value, &mut errors) {
                    config.metrics = v;
                }
            }
            "clusters" => config.clusters = named("clusters", value, &mut errors, cluster_node),
            "sources" => config.sources = named("sources", value, &mut errors, source_node),
            "operators" => {
                config.operators = named("operators", value, &mut errors, operator_node)
            }
            "sinks" => config.sinks = named("sinks", value, &mut errors, sink_node),
            other => errors.push(ConfigError {
                node: other.into(),
                field: String::new(),
                message: "unknown section (expected pipeline, event, metrics, clusters, sources, operators, sinks)".into(),
            }),
        }
    }
    // Nodes that failed to parse are reported once; their consumers should not also report
    // "matches no node" for them.
    let broken: std::collections::BTreeSet<String> =
        errors.iter().map(|e| e.node.clone()).collect();
    let graph = graph::check(&config, &broken, &mut errors);
    if errors.is_empty() {
        Ok((config, graph))
    } else {
        Err(errors)
    }
}

fn section<T: for<'de> Deserialize<'de>>(
    name: &str,
    value: toml::Value,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let field = e.path().to_string();
            let message = e.into_inner().message().trim().to_string();
            // serde reports unknown and missing fields at the parent; name the field itself.
            let field = backticked(&message, "unknown field `")
                .or_else(|| backticked(&message, "missing field `"))
                .map(|f| {
                    if field == "." || field == f || field.ends_with(&format!(".{f}")) {
                        f
                    } else {
                        format!("{field}.{f}")
                    }
                })
                .unwrap_or(if field == "." { String::new() } else { field });
            errors.push(ConfigError {
                node: name.into(),
                field,
                message,
            });
            None
        }
    }
}

/// Parses the entries of a named table. `typed` picks the variant from the entry's `type`.
fn named<T>(
    table: &str,
    value: toml::Value,
    errors: &mut Vec<ConfigError>,
    typed: impl Fn(&str, &str, toml::Value, &mut Vec<ConfigError>) -> Option<T>,
) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    let toml::Value::Table(entries) = value else {
        errors.push(ConfigError {
            node: table.into(),
            field: String::new(),
            message: format!("expected a table of named entries, like [{table}.NAME]"),
        });
        return out;
    };
    for (name, v) in entries {
        if let Some(parsed) = typed(&name, table, v, errors) {
            out.insert(name, parsed);
        }
    }
    out
}

/// Removes and returns the `type` of a node, reporting its absence.
fn node_type(name: &str, value: &mut toml::Value, errors: &mut Vec<ConfigError>) -> Option<String> {
    let err = |message: &str| ConfigError {
        node: name.into(),
        field: "type".into(),
        message: message.into(),
    };
    let Some(table) = value.as_table_mut() else {
        errors.push(ConfigError {
            node: name.into(),
            field: String::new(),
            message: "expected a table".into(),
        });
        return None;
    };
    match table.remove("type") {
        Some(toml::Value::String(t)) => Some(t),
        Some(_) => {
            errors.push(err("must be a string"));
            None
        }
        None => {
            errors.push(err("missing field `type`"));
            None
        }
    }
}

fn unknown_type(name: &str, got: &str, expected: &str, errors: &mut Vec<ConfigError>) {
    errors.push(ConfigError {
        node: name.into(),
        field: "type".into(),
        message: format!("unknown type \"{got}\" (expected one of: {expected})"),
    });
}

fn source_node(
    name: &str,
    _table: &str,
    mut value: toml::Value,
    errors: &mut Vec<ConfigError>,
) -> Option<SourceConfig> {
    match node_type(name, &mut value, errors)?.as_str() {
        "kafka" => section(name, value, errors).map(SourceConfig::Kafka),
        "file" => section(name, value, errors).map(SourceConfig::File),
        "generator" => section(name, value, errors).map(SourceConfig::Generator),
        other => {
            unknown_type(name, other, "kafka, file, generator", errors);
            None
        }
    }
}

fn operator_node(
    name: &str,
    _table: &str,
    mut value: toml::Value,
    errors: &mut Vec<ConfigError>,
) -> Option<OperatorConfig> {
    match node_type(name, &mut value, errors)?.as_str() {
        "watermark" => section(name, value, errors).map(OperatorConfig::Watermark),
        "dedup" => section(name, value, errors).map(OperatorConfig::Dedup),
        "reorder" => section(name, value, errors).map(OperatorConfig::Reorder),
        "filter" => section(name, value, errors).map(OperatorConfig::Filter),
        other => {
            unknown_type(name, other, "watermark, dedup, reorder, filter", errors);
            None
        }
    }
}

fn sink_node(
    name: &str,
    _table: &str,
    mut value: toml::Value,
    errors: &mut Vec<ConfigError>,
) -> Option<SinkConfig> {
    match node_type(name, &mut value, errors)?.as_str() {
        "kafka" => section(name, value, errors).map(SinkConfig::Kafka),
        "file" => section(name, value, errors).map(SinkConfig::File),
        "null" => section(name, value, errors).map(SinkConfig::Null),
        other => {
            unknown_type(name, other, "kafka, file, null", errors);
            None
        }
    }
}

fn cluster_node(
    name: &str,
    table: &str,
    value: toml::Value,
    errors: &mut Vec<ConfigError>,
) -> Option<ClusterConfig> {
    section(&format!("{table}.{name}"), value, errors)
}

fn backticked(message: &str, prefix: &str) -> Option<String> {
    let start = message.find(prefix)? + prefix.len();
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}
