//! Whole-graph checks: inputs that exist, no cycles, streams of the right kind, no output left
//! dangling (an unconsumed late or invalid output would lose events silently), and settings that
//! only make sense together.

use super::{Delivery, PipelineConfig};
use crate::component::{CheckContext, ConfigError, Errors, Port, StreamKind};
use crate::operators::OperatorConfig;
use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Which table a node lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// `[sources.*]`.
    Source,
    /// `[operators.*]`.
    Operator,
    /// `[sinks.*]`.
    Sink,
}

/// A resolved input: a node and one of its outputs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeRef {
    /// The upstream node.
    pub node: String,
    /// Which of its outputs.
    pub port: Port,
}

/// A checked pipeline graph.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Operators and sinks, upstream before downstream.
    pub order: Vec<String>,
    /// Resolved inputs of every operator and sink.
    pub inputs: BTreeMap<String, Vec<NodeRef>>,
    /// What each consumed output carries.
    pub kinds: BTreeMap<NodeRef, StreamKind>,
}

impl Graph {
    /// The stream kind arriving at a node (the union of its inputs).
    pub fn input_kind(&self, node: &str) -> StreamKind {
        self.inputs
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|r| self.kinds.get(r).copied())
            .reduce(StreamKind::union)
            .unwrap_or_default()
    }
}

fn kind_of(config: &PipelineConfig, name: &str) -> Option<NodeKind> {
    if config.sources.contains_key(name) {
        Some(NodeKind::Source)
    } else if config.operators.contains_key(name) {
        Some(NodeKind::Operator)
    } else if config.sinks.contains_key(name) {
        Some(NodeKind::Sink)
    } else {
        None
    }
}

fn inputs_of<'a>(config: &'a PipelineConfig, name: &str) -> &'a [String] {
    if let Some(op) = config.operators.get(name) {
        op.node().inputs()
    } else if let Some(sink) = config.sinks.get(name) {
        sink.node().inputs()
    } else {
        &[]
    }
}

fn err(errors: &mut Vec<ConfigError>, node: &str, field: &str, message: String) {
    errors.push(ConfigError {
        node: node.into(),
        field: field.into(),
        message,
    });
}

/// Checks the whole graph, appending every problem to `errors`.
pub(super) fn check(
    config: &PipelineConfig,
    broken: &BTreeSet<String>,
    errors: &mut Vec<ConfigError>,
) -> Graph {
    let mut graph = Graph::default();
    check_names(config, errors);
    check_settings(config, errors);

    // Resolve inputs.
    let consumers: Vec<&String> = config.operators.keys().chain(config.sinks.keys()).collect();
    for name in &consumers {
        let mut resolved = Vec::new();
        let inputs = inputs_of(config, name);
        if inputs.is_empty() {
            err(errors, name, "inputs", "needs at least one input".into());
        }
        for input in inputs {
            if broken.contains(input.split('.').next().unwrap_or_default()) {
                continue;
            }
            if let Some(r) = resolve_input(config, name, input, errors) {
                if resolved.contains(&r) {
                    err(
                        errors,
                        name,
                        "inputs",
                        format!("input \"{input}\" is listed twice"),
                    );
                } else {
                    resolved.push(r);
                }
            }
        }
        graph.inputs.insert((*name).clone(), resolved);
    }

    // Every source is read by exactly one watermark node.
    for source in config.sources.keys() {
        let readers: Vec<&String> = graph
            .inputs
            .iter()
            .filter(|(_, ins)| ins.iter().any(|r| &r.node == source))
            .map(|(n, _)| n)
            .collect();
        match readers.len() {
            0 => err(
                errors,
                source,
                "",
                "is not read by any watermark operator".into(),
            ),
            1 => {}
            _ => err(
                errors,
                source,
                "",
                format!(
                    "is read by {} watermark operators ({}); each source feeds exactly one",
                    readers.len(),
                    readers
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }

    let Some(order) = topological(&graph, errors) else {
        return graph;
    };
    graph.order = order;
    infer_kinds(config, &mut graph, errors);
    check_coverage(config, &graph, errors);
    check_horizons(config, &graph, errors);
    check_delivery(config, &graph, errors);
    graph
}

fn check_names(config: &PipelineConfig, errors: &mut Vec<ConfigError>) {
    let mut seen = BTreeSet::new();
    let all = config
        .sources
        .keys()
        .chain(config.operators.keys())
        .chain(config.sinks.keys());
    for name in all {
        if !seen.insert(name) {
            err(
                errors,
                name,
                "",
                "the name is used by more than one node".into(),
            );
        }
        if name.is_empty() || name.contains('.') {
            err(
                errors,
                name,
                "",
                "node names must be non-empty and contain no '.'".into(),
            );
        }
    }
    if config.sources.is_empty() {
        err(errors, "sources", "", "the pipeline has no source".into());
    }
    if config.sinks.is_empty() {
        err(errors, "sinks", "", "the pipeline has no sink".into());
    }
}

/// Each node's checks of its own settings, then the checks that span nodes.
fn check_settings(config: &PipelineConfig, errors: &mut Vec<ConfigError>) {
    for (name, cluster) in &config.clusters {
        if cluster.bootstrap.trim().is_empty() {
            err(
                errors,
                &format!("clusters.{name}"),
                "bootstrap",
                "must not be empty".into(),
            );
        }
    }
    let cx = CheckContext {
        clusters: &config.clusters,
        event: &config.event,
    };
    for (name, source) in &config.sources {
        source.node().check(&cx, &mut Errors::new(name, errors));
    }
    for (name, op) in &config.operators {
        op.node().check(&cx, &mut Errors::new(name, errors));
    }
    for (name, sink) in &config.sinks {
        sink.node().check(&cx, &mut Errors::new(name, errors));
    }
    check_links(config, errors);
}

/// A watermark and the replicated sources it reads: a split must be seen before their
/// partitions could count as idle, and a split hold needs a replicated source to hold for.
fn check_links(config: &PipelineConfig, errors: &mut Vec<ConfigError>) {
    for (name, op) in &config.operators {
        let OperatorConfig::Watermark(w) = op else {
            continue;
        };
        let replicated = w.inputs.iter().filter_map(|input| {
            match config.sources.get_key_value(input.as_str()) {
                Some((input, SourceConfig::Kafka(k))) if k.replicated_from.is_some() => {
                    Some((input, k))
                }
                _ => None,
            }
        });
        let mut any = false;
        for (input, k) in replicated {
            any = true;
            if k.link_timeout >= w.idle_timeout {
                err(
                    errors,
                    input,
                    "link_timeout",
                    format!(
                        "is {} but watermark \"{name}\" has idle_timeout {}: a split must be seen before the remote partitions count as idle",
                        k.link_timeout, w.idle_timeout
                    ),
                );
            }
        }
        if w.max_split_hold.is_some() && !any {
            err(
                errors,
                name,
                "max_split_hold",
                "has no effect: no input is a Kafka source with replicated_from".into(),
            );
        }
    }
}

fn resolve_input(
    config: &PipelineConfig,
    consumer: &str,
    input: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<NodeRef> {
    let (node, port) = match input.split_once('.') {
        None => (input, Port::All),
        Some((n, p)) => match Port::parse(p) {
            Some(port) => (n, port),
            None => {
                err(
                    errors,
                    consumer,
                    "inputs",
                    format!("input \"{input}\": unknown output \"{p}\" (outputs are on_time, late, invalid)"),
                );
                return None;
            }
        },
    };
    let consumer_is_watermark = config
        .operators
        .get(consumer)
        .is_some_and(|op| op.node().reads_sources());
    match kind_of(config, node) {
        None => {
            err(
                errors,
                consumer,
                "inputs",
                format!("input \"{input}\" matches no node"),
            );
            None
        }
        Some(NodeKind::Sink) => {
            err(
                errors,
                consumer,
                "inputs",
                format!("input \"{input}\" is a sink, which has no output"),
            );
            None
        }
        Some(NodeKind::Source) => {
            if !consumer_is_watermark {
                err(
                    errors,
                    consumer,
                    "inputs",
                    format!("input \"{input}\" is a source; sources feed a watermark operator, which gives their events a time"),
                );
                return None;
            }
            if port != Port::All {
                err(
                    errors,
                    consumer,
                    "inputs",
                    format!("input \"{input}\": a source has one output"),
                );
                return None;
            }
            Some(NodeRef {
                node: node.into(),
                port,
            })
        }
        Some(NodeKind::Operator) => {
            if consumer_is_watermark {
                err(
                    errors,
                    consumer,
                    "inputs",
                    format!(
                        "input \"{input}\" is an operator; a watermark operator reads sources only"
                    ),
                );
                return None;
            }
            if !config.operators[node].node().ports().contains(&port) {
                err(
                    errors,
                    consumer,
                    "inputs",
                    format!(
                        "input \"{input}\": operator \"{node}\" has no output \"{}\"",
                        &port.suffix()[1..]
                    ),
                );
                return None;
            }
            Some(NodeRef {
                node: node.into(),
                port,
            })
        }
    }
}

/// Kahn's algorithm over operators and sinks; reports the nodes on cycles.
fn topological(graph: &Graph, errors: &mut Vec<ConfigError>) -> Option<Vec<String>> {
    let mut indegree: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, inputs) in &graph.inputs {
        let deps = inputs
            .iter()
            .filter(|r| graph.inputs.contains_key(&r.node))
            .count();
        indegree.insert(name, deps);
    }
    let mut ready: Vec<&str> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(n, _)| *n)
        .collect();
    let mut order = Vec::new();
    while let Some(n) = ready.pop() {
        order.push(n.to_string());
        for (name, inputs) in &graph.inputs {
            let hits = inputs.iter().filter(|r| r.node == n).count();
            if hits > 0 {
                let d = indegree
                    .get_mut(name.as_str())
                    .expect("every consumer has a degree");
                *d -= hits;
                if *d == 0 {
                    ready.push(name);
                }
            }
        }
    }
    if order.len() == indegree.len() {
        return Some(order);
    }
    let stuck: Vec<&str> = indegree
        .iter()
        .filter(|(_, d)| **d > 0)
        .map(|(n, _)| *n)
        .collect();
    for n in &stuck {
        err(
            errors,
            n,
            "inputs",
            format!(
                "is part of a cycle (nodes on or behind it: {})",
                stuck.join(", ")
            ),
        );
    }
    None
}

fn infer_kinds(config: &PipelineConfig, graph: &mut Graph, errors: &mut Vec<ConfigError>) {
    for name in graph.order.clone() {
        let input = graph.input_kind(&name);
        let outputs: Vec<(Port, StreamKind)> = if let Some(op) = config.operators.get(&name) {
            let op = op.node();
            if !op.reads_sources() && input.invalid {
                err(
                    errors,
                    &name,
                    "inputs",
                    "receives invalid records; only sinks take a watermark's invalid output".into(),
                );
            }
            op.outputs(input, &mut Errors::new(&name, errors))
        } else {
            if input.invalid && input.events() {
                err(
                    errors,
                    &name,
                    "inputs",
                    "mixes events and invalid records; give invalid records their own sink".into(),
                );
            }
            Vec::new()
        };
        for (port, kind) in outputs {
            graph.kinds.insert(
                NodeRef {
                    node: name.clone(),
                    port,
                },
                kind,
            );
        }
    }
}

/// Every output that carries events must be consumed: dropping late or invalid events needs an
/// explicit null sink, never an omission.
fn check_coverage(config: &PipelineConfig, graph: &Graph, errors: &mut Vec<ConfigError>) {
    let consumed: BTreeSet<&NodeRef> = graph.inputs.values().flatten().collect();
    let used = |node: &str, port: Port| {
        consumed.contains(&NodeRef {
            node: node.into(),
            port,
        })
    };
    for (name, op) in &config.operators {
        let inferred = NodeRef {
            node: name.clone(),
            port: Port::All,
        };
        if !graph.kinds.contains_key(&inferred) {
            continue;
        }
        // An operator with named outputs must have each that carries anything consumed (the
        // bare name covers on_time and late, never invalid); one without, its only output.
        let named: Vec<Port> = op
            .node()
            .ports()
            .iter()
            .copied()
            .filter(|p| *p != Port::All)
            .collect();
        let needs: Vec<(Port, bool)> = if named.is_empty() {
            vec![(Port::All, true)]
        } else {
            named
                .into_iter()
                .map(|port| {
                    let kind = graph.kinds.get(&NodeRef {
                        node: name.clone(),
                        port,
                    });
                    (port, kind.is_some_and(|k| k.events() || k.invalid))
                })
                .collect()
        };
        for (port, carries) in needs {
            let covered = used(name, port) || (port != Port::Invalid && used(name, Port::All));
            if carries && !covered {
                err(
                    errors,
                    name,
                    "",
                    format!(
                        "output \"{name}{}\" is not consumed; its events would be lost (route it to a sink, type = \"null\" if dropping is intended)",
                        port.suffix()
                    ),
                );
            }
        }
    }
}

/// Watermark nodes upstream of `name`.
fn upstream_watermarks<'a>(
    config: &'a PipelineConfig,
    graph: &Graph,
    name: &str,
) -> Vec<&'a String> {
    let mut out = Vec::new();
    let mut stack: Vec<String> = vec![name.to_string()];
    let mut seen = BTreeSet::new();
    while let Some(n) = stack.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        for r in graph.inputs.get(&n).into_iter().flatten() {
            if let Some((key, OperatorConfig::Watermark(_))) =
                config.operators.get_key_value(&r.node)
            {
                out.push(key);
            } else {
                stack.push(r.node.clone());
            }
        }
    }
    out
}

type DedupConfig = crate::operators::dedup::DedupConfig;
type WatermarkConfig = crate::operators::watermark::WatermarkConfig;

/// Every dedup with each watermark upstream of it: the pairs whose settings must agree.
fn dedup_watermarks<'a>(
    config: &'a PipelineConfig,
    graph: &Graph,
) -> Vec<(&'a str, &'a DedupConfig, &'a str, &'a WatermarkConfig)> {
    let mut out = Vec::new();
    for (name, op) in &config.operators {
        let OperatorConfig::Dedup(d) = op else {
            continue;
        };
        for wm in upstream_watermarks(config, graph, name) {
            if let Some(OperatorConfig::Watermark(w)) = config.operators.get(wm) {
                out.push((name.as_str(), d, wm.as_str(), w));
            }
        }
    }
    out
}

fn check_horizons(config: &PipelineConfig, graph: &Graph, errors: &mut Vec<ConfigError>) {
    for (name, d, wm, w) in dedup_watermarks(config, graph) {
        if d.horizon < w.max_out_of_orderness {
            err(
                errors,
                name,
                "horizon",
                format!(
                    "{} is shorter than max_out_of_orderness of \"{wm}\" ({}): copies inside the disorder bound would be forgotten before the watermark passes them",
                    d.horizon, w.max_out_of_orderness
                ),
            );
        }
    }
}

/// What is allowed but likely a mistake, by node and field: `tidemark check` prints these and
/// a run logs them.
pub fn warnings(config: &PipelineConfig, graph: &Graph) -> Vec<ConfigError> {
    let mut out = Vec::new();
    for (name, d, wm, w) in dedup_watermarks(config, graph) {
        let Some(hold) = w.max_split_hold else {
            continue;
        };
        // A copy that waited out a whole split arrives about the hold plus the disorder bound
        // behind the watermark. With less than a quarter of a horizon to spare, a split a
        // little longer than the hold puts copies past the horizon, where dedup can no longer
        // check them.
        let reach = hold.0.saturating_add(w.max_out_of_orderness.0);
        if reach.saturating_mul(4) > d.horizon.0.saturating_mul(3) {
            err(
                &mut out,
                name,
                "horizon",
                format!(
                    "{} leaves little room over max_split_hold ({}) plus max_out_of_orderness ({}) of \"{wm}\": copies delayed by a split a little longer than the hold would be past the horizon and pass unchecked (marked tidemark-beyond-horizon in the late output); keep the horizon above 4/3 of their sum",
                    d.horizon, hold, w.max_out_of_orderness
                ),
            );
        }
    }
    out
}

/// Exactly-once needs a dedup between each watermark and each Kafka sink of events: a restart
/// replays the records read since the last committed offsets, and only a dedup restored from
/// the committed output can drop the ones already written.
fn check_delivery(config: &PipelineConfig, graph: &Graph, errors: &mut Vec<ConfigError>) {
    if config.pipeline.delivery != Delivery::ExactlyOnce {
        return;
    }
    let kafka = config.sinks.iter().filter_map(|(name, s)| match s {
        SinkConfig::Kafka(_) => Some(name),
        _ => None,
    });
    for name in kafka {
        if graph.input_kind(name).invalid {
            continue;
        }
        if let Some(wm) = undeduplicated_watermark(config, graph, name) {
            err(
                errors,
                name,
                "inputs",
                format!(
                    "events reach this Kafka sink from \"{wm}\" without a dedup: with delivery = \"exactly_once\" a restart replays the records read since the last checkpoint, and only a dedup can drop the ones already written (add one, or set [pipeline] delivery = \"at_least_once\")"
                ),
            );
        }
    }
}

/// A watermark from which events reach `name` without crossing a dedup.
fn undeduplicated_watermark<'a>(
    config: &'a PipelineConfig,
    graph: &'a Graph,
    name: &str,
) -> Option<&'a str> {
    let mut stack = vec![name];
    let mut seen = BTreeSet::new();
    while let Some(n) = stack.pop() {
        if !seen.insert(n) {
            continue;
        }
        for r in graph.inputs.get(n).into_iter().flatten() {
            match config.operators.get(&r.node) {
                Some(OperatorConfig::Dedup(_)) => {}
                Some(OperatorConfig::Watermark(_)) => return Some(&r.node),
                _ => stack.push(&r.node),
            }
        }
    }
    None
}

/// Renders the graph as Graphviz DOT.
pub fn to_dot(config: &PipelineConfig, graph: &Graph) -> String {
    let mut out = String::from("digraph tidemark {\n  rankdir=LR;\n");
    for (name, s) in &config.sources {
        let label = format!("{name}\\n{}", s.node().label());
        let _ = writeln!(out, "  \"{name}\" [shape=cds, label=\"{label}\"];");
    }
    for (name, op) in &config.operators {
        let _ = writeln!(
            out,
            "  \"{name}\" [shape=box, label=\"{name}\\n{}\"];",
            op.type_name()
        );
    }
    for (name, s) in &config.sinks {
        let _ = writeln!(
            out,
            "  \"{name}\" [shape=folder, label=\"{name}\\n{}\"];",
            s.type_name()
        );
    }
    for (name, inputs) in &graph.inputs {
        for r in inputs {
            let label = r.port.suffix().trim_start_matches('.');
            if label.is_empty() {
                let _ = writeln!(out, "  \"{}\" -> \"{name}\";", r.node);
            } else {
                let _ = writeln!(out, "  \"{}\" -> \"{name}\" [label=\"{label}\"];", r.node);
            }
        }
    }
    out.push_str("}\n");
    out
}

/// Renders the graph as a Mermaid flowchart.
pub fn to_mermaid(config: &PipelineConfig, graph: &Graph) -> String {
    let id = |n: &str| n.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let mut out = String::from("flowchart LR\n");
    for name in config.sources.keys() {
        let _ = writeln!(out, "  {}[/\"{name}\"/]", id(name));
    }
    for (name, op) in &config.operators {
        let _ = writeln!(out, "  {}[\"{name} ({})\"]", id(name), op.type_name());
    }
    for (name, s) in &config.sinks {
        let _ = writeln!(out, "  {}[(\"{name} ({})\")]", id(name), s.type_name());
    }
    for (name, inputs) in &graph.inputs {
        for r in inputs {
            let label = r.port.suffix().trim_start_matches('.');
            if label.is_empty() {
                let _ = writeln!(out, "  {} --> {}", id(&r.node), id(name));
            } else {
                let _ = writeln!(out, "  {} -- {label} --> {}", id(&r.node), id(name));
            }
        }
    }
    out
}
