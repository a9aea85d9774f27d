//! Pipeline files: what the user writes, and the checks that turn it into a graph we can run.
//!
//! A file declares clusters once, then named nodes in three tables that follow the data path:
//! `[sources.*]`, `[operators.*]` and `[sinks.*]`. Every node except a source lists its
//! `inputs`, each either a node name or `node.output` for a named output
//! (`wm.late`, `dedup.on_time`, ...). Loading parses each node on its own, so one bad node does
//! not hide the errors of the others, and then checks the graph as a whole. Every error names its
//! node and field.
//!
//! Each node kind's settings, its own checks and its build live with its runtime
//! (`sources/`, `operators/`, `sinks/`); what is here is the file format, the resolution of the
//! graph, and the checks that span nodes.

mod gateway;
mod graph;

pub use gateway::{parse_gateway, Auth, GatewayConfig, GatewayFile, GatewayTls};
pub use graph::{to_dot, to_mermaid, warnings, Graph, NodeKind, NodeRef};

pub use crate::component::ConfigError;
use crate::component::{deserialize, Millis};
use crate::event::EventFormat;
use crate::kafka::ClusterConfig;
use crate::operators::OperatorConfig;
pub use crate::sinks::Delivery;
use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
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
    /// How often a checkpoint is taken: the Kafka sinks' transaction commits (exactly-once),
    /// and the source offsets that are durable are committed.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: Millis,
    /// What a restart may do to the output.
    #[serde(default)]
    pub delivery: Delivery,
    /// Flow control, per worker: records read and not yet passed by the sinks, at most.
    #[serde(default = "default_max_in_flight_records")]
    pub max_in_flight_records: u64,
    /// Flow control, per worker: the bytes of those records, at most.
    #[serde(default = "default_max_in_flight_bytes")]
    pub max_in_flight_bytes: u64,
}

impl PipelineSection {
    fn check(&self, errors: &mut Vec<ConfigError>) {
        let budgets = [
            ("max_in_flight_records", self.max_in_flight_records),
            ("max_in_flight_bytes", self.max_in_flight_bytes),
        ];
        for (field, value) in budgets {
            if value == 0 {
                errors.push(ConfigError {
                    node: "pipeline".into(),
                    field: field.into(),
                    message: "must be above zero".into(),
                });
            }
        }
    }
}

// Enough to keep a worker busy across a round trip of progress messages between processes
// (tens of milliseconds at a million events per second), small enough that the queues of a
// one-worker process stay well inside 256 MiB whatever the input's size.
fn default_max_in_flight_records() -> u64 {
    100_000
}
fn default_max_in_flight_bytes() -> u64 {
    32 << 20
}

fn default_commit_interval() -> Millis {
    Millis(1_000)
}

impl Default for PipelineSection {
    fn default() -> Self {
        PipelineSection {
            name: "tidemark".into(),
            commit_interval: default_commit_interval(),
            delivery: Delivery::default(),
            max_in_flight_records: default_max_in_flight_records(),
            max_in_flight_bytes: default_max_in_flight_bytes(),
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

/// Reads the `[clusters.*]` tables of a file: a pipeline file, a gateway file, or one of
/// clusters alone. The tools' `--cluster-config`, so a tool connects as the pipeline does.
pub fn load_clusters(path: &Path) -> Result<BTreeMap<String, ClusterConfig>, LoadError> {
    read_with(path, |text| {
        let mut root = toml_root(text)?;
        let mut errors = Vec::new();
        let clusters = match root.remove("clusters") {
            Some(v) => named("clusters", v, &mut errors, cluster_node),
            None => {
                errors.push(ConfigError {
                    node: "clusters".into(),
                    field: String::new(),
                    message: "the file has no [clusters.NAME] table".into(),
                });
                BTreeMap::new()
            }
        };
        if errors.is_empty() {
            Ok(clusters)
        } else {
            Err(errors)
        }
    })
}

fn read_with<T>(
    path: &Path,
    parse: impl Fn(&str) -> Result<T, Vec<ConfigError>>,
) -> Result<T, LoadError> {
    let text = read_including(path, 0)?;
    parse(&text).map_err(|errors| LoadError::Invalid {
        path: path.display().to_string(),
        errors,
    })
}

/// How deep `include`s may nest: enough for a variant of a variant, and a loop stops here.
const MAX_INCLUDE_DEPTH: usize = 4;

/// The text of `path` with its `include = "FILE"` resolved: FILE (relative to `path`'s folder)
/// is read first and this file's tables are laid over it key by key, so a variant (the secure
/// regions' pipeline, say) states only what differs from its base.
fn read_including(path: &Path, depth: usize) -> Result<String, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let invalid = |message: String| LoadError::Invalid {
        path: path.display().to_string(),
        errors: vec![ConfigError {
            node: "include".into(),
            field: String::new(),
            message,
        }],
    };
    // A file that is not TOML is reported by the parser, with its position.
    let Ok(mut root) = text.parse::<toml::Table>() else {
        return Ok(text);
    };
    let Some(include) = root.remove("include") else {
        return Ok(text);
    };
    let toml::Value::String(name) = include else {
        return Err(invalid("must be a file name".into()));
    };
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(invalid(format!(
            "includes nest more than {MAX_INCLUDE_DEPTH} deep (a loop?)"
        )));
    }
    let base_path = path.parent().unwrap_or(Path::new(".")).join(&name);
    let mut base: toml::Table =
        read_including(&base_path, depth + 1)?
            .parse()
            .map_err(|e: toml::de::Error| {
                invalid(format!(
                    "{}: not valid TOML: {}",
                    base_path.display(),
                    e.message().trim()
                ))
            })?;
    lay_over(&mut base, root);
    Ok(base.to_string())
}

/// Lays `over` on `base`: tables merge key by key, anything else replaces.
fn lay_over(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => lay_over(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
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
                if let Some(v) = deserialize::<PipelineSection>("pipeline", value, &mut errors) {
                    v.check(&mut errors);
                    config.pipeline = v;
                }
            }
            "event" => {
                if let Some(v) = deserialize::<EventFormat>("event", value, &mut errors) {
                    config.event = v;
                }
            }
            "metrics" => {
                if let Some(v) = deserialize::<MetricsConfig>("metrics", value, &mut errors) {
                    config.metrics = v;
                }
            }
            "clusters" => config.clusters = named("clusters", value, &mut errors, cluster_node),
            "sources" => {
                config.sources = named("sources", value, &mut errors, typed(SourceConfig::parse))
            }
            "operators" => {
                config.operators =
                    named("operators", value, &mut errors, typed(OperatorConfig::parse))
            }
            "sinks" => config.sinks = named("sinks", value, &mut errors, typed(SinkConfig::parse)),
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

/// Parses the entries of a named table. `typed` picks the variant from the entry's `type`.
pub(crate) fn named<T>(
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

/// Parses one node of a `[sources]`, `[operators]` or `[sinks]` table by its `type`.
fn typed<T>(
    parse: impl Fn(&str, &str, toml::Value, &mut Vec<ConfigError>) -> Option<T>,
) -> impl Fn(&str, &str, toml::Value, &mut Vec<ConfigError>) -> Option<T> {
    move |name, _table, mut value, errors| {
        let tag = node_type(name, &mut value, errors)?;
        parse(name, &tag, value, errors)
    }
}

/// A `[clusters.NAME]` entry, with its `${env:...}` and `${file:...}` references replaced; one
/// that cannot be is an error of its option.
pub(crate) fn cluster_node(
    name: &str,
    table: &str,
    value: toml::Value,
    errors: &mut Vec<ConfigError>,
) -> Option<ClusterConfig> {
    let node = format!("{table}.{name}");
    let mut cluster: ClusterConfig = deserialize(&node, value, errors)?;
    cluster.name = name.into();
    let failed = cluster.resolve();
    let ok = failed.is_empty();
    for (key, e) in failed {
        errors.push(ConfigError {
            node: node.clone(),
            field: format!("options.{key}"),
            message: e.to_string(),
        });
    }
    ok.then_some(cluster)
}
