//! Where the graph is wired: a checked pipeline file becomes a timely dataflow on every worker,
//! and the worker loop drives it until it drains (bounded mode) or is told to stop. [`cluster`]:
//! what a process of a cluster does when a peer is lost or never comes.

pub mod cluster;

use crate::component::{concat_events, concat_invalid, AnyStream, Port};
use crate::config::Delivery;
use crate::config::{Graph, NodeRef, PipelineConfig};
use crate::kafka::ClusterConfig;
use crate::metrics::Metrics;
use crate::operators::watermark::SourceHandle;
use crate::operators::OperatorConfig;
use crate::operators::{BuildContext, OperatorError};
use crate::runtime::Restored;
use crate::runtime::WorkerContext;
use crate::sinks::kafka::KafkaSink;
use crate::sinks::restore::{self, RestorePlan};
use crate::sinks::transaction::{Producers, FENCED_SLOTS};
use crate::sinks::{SinkConfig, SinkContext, SinkError};
use crate::sources::{self, ReadOptions, SourceConfig, SourceContext, SourceError};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;
use timely::dataflow::Scope;

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A source could not be planned or opened.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// An operator could not be built.
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// A sink could not be opened.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Timely could not start its workers (for example, a peer process is unreachable).
    #[error("could not start workers: {0}")]
    Timely(String),
    /// A worker stopped on a fatal error.
    #[error("worker {worker}: {message}")]
    Worker {
        /// Worker index.
        worker: usize,
        /// The error.
        message: String,
    },
    /// The metrics endpoint could not bind.
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        /// Address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A cluster refuses this pipeline: credentials, TLS, or an ACL.
    #[error(transparent)]
    Refused(#[from] crate::kafka::Refusal),
    /// A hostfile could not be read.
    #[error("hostfile {path}: {message}")]
    Hostfile {
        /// Path.
        path: String,
        /// Why.
        message: String,
    },
}

/// How to run a pipeline.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads per process.
    pub workers: usize,
    /// Processes in the cluster.
    pub processes: usize,
    /// This process's index.
    pub process: usize,
    /// `host:port` per process (required with more than one process).
    pub hosts: Vec<String>,
    /// Read to the end offsets taken at start, drain, and return.
    pub bounded: bool,
    /// Exactly-once: start with empty state instead of restoring it from the committed output.
    pub reset_state: bool,
    /// With more than one process: how long to wait for every peer to connect before giving up.
    pub connect_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            workers: 1,
            processes: 1,
            process: 0,
            hosts: Vec::new(),
            bounded: true,
            reset_state: false,
            connect_timeout: Duration::from_secs(60),
        }
    }
}

/// Runs `config` in bounded mode on `workers` threads of this process, with no signal handling:
/// the common case of tests, the demo and the benchmark.
pub fn run_bounded(
    config: &PipelineConfig,
    graph: &Graph,
    workers: usize,
    metrics: &Metrics,
) -> Result<Summary, RunError> {
    let options = RunOptions {
        workers,
        bounded: true,
        ..RunOptions::default()
    };
    run(
        config,
        graph,
        &options,
        metrics,
        Arc::new(AtomicBool::new(false)),
    )
}

/// Reads a hostfile: one `host:port` per line; blank lines and `#` comments are ignored.
pub fn read_hostfile(path: &str) -> Result<Vec<String>, RunError> {
    let text = std::fs::read_to_string(path).map_err(|e| RunError::Hostfile {
        path: path.into(),
        message: e.to_string(),
    })?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// How far above the configured metrics port process `process` listens: the number of processes
/// before it in `hosts` on the same host (as the hostfile writes it). Processes that share a
/// machine get ports of their own; processes of their own hosts (a StatefulSet's pods, one unit
/// per machine) all listen on the configured port, which their probes and scrapes can then name.
pub fn metrics_port_offset(hosts: &[String], process: usize) -> u16 {
    let host = |line: &str| line.rsplit_once(':').map_or(line, |(h, _)| h).to_string();
    let Some(mine) = hosts.get(process).map(|l| host(l)) else {
        return 0;
    };
    hosts[..process].iter().filter(|l| host(l) == mine).count() as u16
}

/// What one process saw, from its metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records read.
    pub read: u64,
    /// Unique events passed by dedup.
    pub unique: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Conflicting duplicates (also counted in `duplicates`).
    pub conflicts: u64,
    /// Late events (before dedup).
    pub late: u64,
    /// Invalid records.
    pub invalid: u64,
    /// Records written, per sink.
    pub written: BTreeMap<String, u64>,
    /// Wall time of the run, ms.
    pub elapsed_ms: u64,
    /// Of `elapsed_ms`, the time before this process's workers started: planning, restoring
    /// state, and in a cluster, connecting to the other processes.
    pub startup_ms: u64,
    /// Milliseconds the sources were held back by flow control, summed over workers.
    pub throttled_ms: u64,
}

impl Summary {
    fn from_metrics(
        m: &Metrics,
        config: &PipelineConfig,
        elapsed: Duration,
        startup: Duration,
    ) -> Summary {
        let sum = |v: &prometheus::IntCounterVec| -> u64 {
            use prometheus::core::Collector;
            v.collect()
                .iter()
                .flat_map(|mf| {
                    mf.get_metric()
                        .iter()
                        .map(|m| m.get_counter().value() as u64)
                })
                .sum()
        };
        Summary {
            read: sum(&m.events_in),
            unique: m.dedup_unique.get(),
            duplicates: sum(&m.duplicates),
            conflicts: m.dedup_conflicts.get(),
            late: sum(&m.late_events),
            invalid: sum(&m.invalid_events),
            written: config
                .sinks
                .keys()
                .map(|s| (s.clone(), m.events_out.with_label_values(&[s]).get()))
                .collect(),
            elapsed_ms: elapsed.as_millis() as u64,
            startup_ms: startup.as_millis() as u64,
            throttled_ms: {
                use prometheus::core::Collector;
                let seconds: f64 = m
                    .throttled_seconds
                    .collect()
                    .iter()
                    .flat_map(|mf| mf.get_metric().iter().map(|m| m.get_counter().value()))
                    .sum();
                (seconds * 1000.0).round() as u64
            },
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = (self.elapsed_ms as f64 / 1000.0).max(1e-3);
        writeln!(
            f,
            "read        {:>12}  ({:.0} events/s)",
            self.read,
            self.read as f64 / secs
        )?;
        writeln!(f, "unique      {:>12}", self.unique)?;
        writeln!(
            f,
            "duplicates  {:>12}  (conflicting: {})",
            self.duplicates, self.conflicts
        )?;
        writeln!(f, "late        {:>12}", self.late)?;
        writeln!(f, "invalid     {:>12}", self.invalid)?;
        writeln!(
            f,
            "throttled   {:>12.3} s",
            self.throttled_ms as f64 / 1000.0
        )?;
        for (sink, n) in &self.written {
            writeln!(f, "sink {sink:<14} {n:>8} written")?;
        }
        writeln!(f, "start-up    {:>12.3} s", self.startup_ms as f64 / 1000.0)?;
        write!(f, "elapsed     {:>12.3} s", secs)
    }
}

/// Runs the pipeline on this process's workers; returns once every worker has stopped.
pub fn run(
    config: &PipelineConfig,
    graph: &Graph,
    options: &RunOptions,
    metrics: &Metrics,
    shutdown: Arc<AtomicBool>,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    for w in crate::config::warnings(config, graph) {
        tracing::warn!("{w}");
    }
    preflight(config)?;
    let splits = Arc::new(sources::plan(
        &config.sources,
        &source_context(config, bounded_read(options), metrics),
    )?);
    tracing::debug!(splits = splits.splits.len(), "planned");
    let (sink_limits, output_limit) = sink_limits(config, graph)?;
    let sink_limits = Arc::new(sink_limits);
    let (producers, restored) = exactly_once(config, graph, options, metrics)?;
    let producers = Arc::new(producers);
    let restored = Arc::new(restored);
    let shared_config = Arc::new(config.clone());
    let config_for_workers = Arc::clone(&shared_config);
    let graph = Arc::new(graph.clone());
    let bounded = options.bounded;
    let worker_metrics = metrics.clone();
    // Set by the first worker of this process that fails, so its peers stop too instead of
    // waiting forever for progress from a worker that is gone.
    let aborted = Arc::new(AtomicBool::new(false));
    metrics.up.set(1.0);
    let watch = (options.processes > 1).then(|| {
        cluster::ClusterWatch::start(&options.hosts, options.process, options.connect_timeout)
    });
    let startup = Arc::new(std::sync::OnceLock::new());
    let worker_startup = Arc::clone(&startup);
    let (allocators, network) = allocators(options)?;
    if let Some(watch) = &watch {
        watch.formed();
        tracing::info!(
            processes = options.processes,
            process = options.process,
            ms = started.elapsed().as_millis() as u64,
            silence_s = cluster::PEER_SILENCE.as_secs(),
            "cluster formed: every process connected; a peer silent for silence_s is taken as gone"
        );
    }
    let worker_config = timely::WorkerConfig::default();
    let guards = timely::execute::execute_from(allocators, network, worker_config, move |worker| {
        worker_startup.get_or_init(|| started.elapsed());
        let config = &config_for_workers;
        let index = worker.index();
        let peers = worker.peers();
        let ctx = WorkerContext {
            metrics: worker_metrics.clone(),
            splits: Arc::clone(&splits),
            probe: ProbeHandle::new(),
            flow_probe: ProbeHandle::new(),
            failure: Rc::new(RefCell::new(None)),
            shutdown: Arc::clone(&shutdown),
            commit_interval: config.pipeline.commit_interval.0,
            flow: crate::runtime::FlowBudget {
                records: config.pipeline.max_in_flight_records,
                bytes: config.pipeline.max_in_flight_bytes,
            },
            restored: Arc::clone(&restored),
            sink_limits: Arc::clone(&sink_limits),
            output_limit,
        };
        let built = worker.dataflow::<u64, _, _>(|scope| {
            let producers = producers.as_ref().as_ref();
            build(
                scope,
                config,
                &graph,
                &ctx,
                (index, peers),
                bounded,
                producers,
            )
        });
        // On failure the dataflow is dropped: timely would otherwise keep stepping it after the
        // closure returns, and a sink holding an unacknowledged write never completes.
        let abort = |worker: &mut timely::worker::Worker, message: Option<String>| {
            match &message {
                Some(m) => tracing::debug!(worker = index, message = %m, "worker stops"),
                None => tracing::debug!(worker = index, "worker stops: a peer failed"),
            }
            aborted.store(true, Ordering::SeqCst);
            for id in worker.installed_dataflows() {
                worker.drop_dataflow(id);
            }
            Err(message)
        };
        tracing::debug!(worker = index, "dataflow built");
        let handles = match built {
            Ok(h) => h,
            Err(e) => return abort(worker, Some(e.to_string())),
        };
        while !ctx.probe.done() {
            if let Some(message) = ctx.failure.borrow().clone() {
                return abort(worker, Some(message));
            }
            if aborted.load(Ordering::SeqCst) {
                // Another worker failed and reported why.
                return abort(worker, None);
            }
            if let Some(refusal) = crate::kafka::refused() {
                // Credentials or a certificate the cluster no longer takes: librdkafka would
                // retry for ever, and an exactly-once restart resumes from the last checkpoint.
                return abort(worker, Some(refusal.to_string()));
            }
            worker.step_or_park(Some(Duration::from_millis(100)));
        }
        if let Some(message) = ctx.failure.borrow().clone() {
            return abort(worker, Some(message));
        }
        tracing::debug!(worker = index, "dataflow drained");
        // Everything is durable: commit every offset read.
        for h in &handles {
            if let Err(e) = h.borrow_mut().commit(None, true) {
                return abort(worker, Some(e.to_string()));
            }
        }
        tracing::debug!(worker = index, "offsets committed");
        Ok(())
    })
    .map_err(RunError::Timely)?;
    let first_error = first_failure(guards.join(), options);
    metrics.up.set(0.0);
    match first_error {
        Some(e) => Err(e),
        None => Ok(Summary::from_metrics(
            metrics,
            &shared_config,
            started.elapsed(),
            startup.get().copied().unwrap_or_default(),
        )),
    }
}

/// Connects to every cluster the pipeline uses, at once, and asks for its topics: a cluster
/// that refuses the credentials, the TLS handshake or a topic stops the start here, naming the
/// cluster and the cause, instead of leaving librdkafka to retry for ever.
pub fn preflight(config: &PipelineConfig) -> Result<(), RunError> {
    let mut topics: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for source in config.sources.values() {
        if let SourceConfig::Kafka(k) = source {
            let t = topics.entry(k.cluster.as_str()).or_default();
            t.extend(k.topics.iter().cloned());
            t.extend(k.heartbeats());
        }
    }
    for sink in config.sinks.values() {
        if let SinkConfig::Kafka(k) = sink {
            topics
                .entry(k.cluster.as_str())
                .or_default()
                .push(k.topic.clone());
        }
    }
    let clusters: Vec<_> = topics
        .into_iter()
        .filter_map(|(name, topics)| config.clusters.get(name).map(|c| (c, topics)))
        .collect();
    Ok(crate::kafka::preflight_all(&clusters)?)
}

/// timely's channels between this process's workers and, in a cluster, to the other processes
/// over connections made by [`cluster::connect`] (with the guard of timely's network threads).
fn allocators(options: &RunOptions) -> Result<Allocators, RunError> {
    use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
    use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
    if options.processes <= 1 {
        return timely::CommunicationConfig::Process(options.workers)
            .try_build()
            .map_err(RunError::Timely);
    }
    let failed = |e: std::io::Error| RunError::Timely(format!("cluster connections: {e}"));
    let sockets = cluster::connect(&options.hosts, options.process).map_err(failed)?;
    let hooks = timely::communication::Hooks::default();
    let local = ProcessBuilder::new_typed_vector(
        options.workers,
        hooks.refill.clone(),
        hooks.spill.clone(),
    );
    let (builders, guard) =
        initialize_networking_from_sockets(local, sockets, options.process, options.workers, hooks)
            .map_err(failed)?;
    Ok((
        builders.into_iter().map(AllocatorBuilder::Tcp).collect(),
        Box::new(guard),
    ))
}

/// What timely's `execute_from` starts workers from: their channels' builders, and what must
/// live as long as the workers (the network threads' guard).
type Allocators = (
    Vec<timely::communication::allocator::AllocatorBuilder>,
    Box<dyn std::any::Any + Send>,
);

/// The first worker failure of this process, numbered across the cluster. A worker that
/// stopped because a peer failed (`Err(None)`) is not one.
fn first_failure(
    results: Vec<Result<Result<(), Option<String>>, String>>,
    options: &RunOptions,
) -> Option<RunError> {
    results.into_iter().enumerate().find_map(|(i, result)| {
        let message = match result {
            Ok(Ok(())) | Ok(Err(None)) => return None,
            Ok(Err(Some(message))) => message,
            Err(panic) => format!("panicked: {panic}"),
        };
        Some(RunError::Worker {
            worker: options.process * options.workers + i,
            message,
        })
    })
}

fn bounded_read(options: &RunOptions) -> ReadOptions {
    ReadOptions {
        bounded: options.bounded,
    }
}

fn source_context<'a>(
    config: &'a PipelineConfig,
    read: ReadOptions,
    metrics: &'a Metrics,
) -> SourceContext<'a> {
    SourceContext {
        clusters: &config.clusters,
        default_group: format!("tidemark-{}", config.pipeline.name),
        read,
        metrics,
    }
}

/// Room an event's record needs beyond its payload: the key (an id of at most 128 bytes), the
/// `tidemark-*` headers with their names, and the record's framing in its batch.
pub const EVENT_ROOM: usize = 2048;

/// Checks every sink before a worker starts (`tidemark run`, and `tidemark check --connect`)
/// and returns the largest record of each sink that has a limit, and the largest event every
/// events sink takes ([`WorkerContext::output_limit`]).
pub fn sink_limits(
    config: &PipelineConfig,
    graph: &Graph,
) -> Result<(BTreeMap<String, usize>, Option<usize>), RunError> {
    let mut limits = BTreeMap::new();
    for (name, sink) in &config.sinks {
        let cx = sink_context(config, graph, name, None, 0);
        if let Some(limit) = sink.node().preflight(name, &cx)? {
            limits.insert(name.clone(), limit);
        }
    }
    // The Kafka sinks' topics, one DescribeConfigs request per cluster.
    let mut by_cluster: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (name, sink) in &config.sinks {
        if let SinkConfig::Kafka(k) = sink {
            by_cluster
                .entry(k.cluster.as_str())
                .or_default()
                .push((name.as_str(), k.topic.as_str()));
        }
    }
    for (cluster, sinks) in by_cluster {
        let topics: Vec<&str> = sinks.iter().map(|&(_, t)| t).collect();
        let found = crate::kafka::topic_record_limits(&config.clusters[cluster], &topics).map_err(
            |source| SinkError::Kafka {
                sink: sinks[0].0.into(),
                what: format!("the largest records of {topics:?}"),
                source,
            },
        )?;
        for (sink, topic) in sinks {
            if let (Some(limit), Some(&t)) = (limits.get_mut(sink), found.get(topic)) {
                *limit = (*limit).min(t);
            }
        }
    }
    let mut events: Option<usize> = None;
    for (name, &limit) in &limits {
        let kind = graph.input_kind(name);
        if kind.on_time || kind.late {
            let room = limit.saturating_sub(EVENT_ROOM);
            events = Some(events.map_or(room, |e| e.min(room)));
        }
    }
    if let Some(limit) = events.filter(|&l| l < config.event.max_event_bytes.get() as usize) {
        tracing::info!(
            limit,
            max_event_bytes = config.event.max_event_bytes.get(),
            "valid events larger than the event outputs take go to the invalid output (too_large_for_output)"
        );
    }
    Ok((limits, events))
}

fn sink_context<'a>(
    config: &'a PipelineConfig,
    graph: &Graph,
    name: &str,
    producers: Option<&'a Producers>,
    worker: usize,
) -> SinkContext<'a> {
    SinkContext {
        clusters: &config.clusters,
        input: graph.input_kind(name),
        producers,
        worker,
        pipeline: &config.pipeline.name,
    }
}

/// With exactly-once and Kafka sinks: this process's transactional producers, made and fenced
/// first, then the state read back from the committed output (unless `--reset-state`).
fn exactly_once(
    config: &PipelineConfig,
    graph: &Graph,
    options: &RunOptions,
    metrics: &Metrics,
) -> Result<(Option<Producers>, Restored), RunError> {
    let kafka: Vec<(&str, &KafkaSink)> = config
        .sinks
        .iter()
        .filter_map(|(name, s)| match s {
            SinkConfig::Kafka(k) => Some((name.as_str(), k)),
            _ => None,
        })
        .collect();
    if config.pipeline.delivery != Delivery::ExactlyOnce || kafka.is_empty() {
        return Ok((None, Restored::default()));
    }
    let total = options.workers * options.processes;
    let mine = options.process * options.workers..(options.process + 1) * options.workers;
    // Process 0 also fences the slots of workers a run with more of them may have left.
    let fence = if options.process == 0 {
        total..total.max(FENCED_SLOTS)
    } else {
        0..0
    };
    let sinks: Vec<(&str, &ClusterConfig)> = kafka
        .iter()
        .map(|(name, k)| (*name, &config.clusters[&k.cluster]))
        .collect();
    let started = Instant::now();
    let producers = Producers::prepare(&config.pipeline.name, &sinks, mine, fence)?;
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        "transactional producers ready; earlier instances fenced"
    );
    let plan = restore_plan(config, graph, &kafka);
    if options.reset_state {
        // Starting over is durable: later restarts restore only what is written from here on,
        // so a record that made the restore refuse does not make every restart refuse.
        if options.process == 0 {
            restore::mark_reset(&plan)?;
        }
        tracing::warn!(
            "--reset-state: starting with empty dedup state and the watermark at zero; later restarts restore only what is written from now on"
        );
        return Ok((Some(producers), Restored::default()));
    }
    tracing::info!(
        horizon_ms = plan.horizon_ms,
        "restoring state from the committed output"
    );
    let (restored, stats) = restore::restore(&plan, metrics)?;
    metrics.restore_ids.set(restored.id_count() as i64);
    metrics.restore_seconds.set(stats.elapsed.as_secs_f64());
    tracing::info!(
        ms = stats.elapsed.as_millis() as u64,
        floor = restored.floor,
        ids = restored.id_count(),
        dead_letters = restored.dead_letters.len(),
        records = ?stats.records,
        "state restored"
    );
    Ok((Some(producers), restored))
}

/// The topics and windows the restore reads, from the sinks and operators of `config`.
fn restore_plan<'a>(
    config: &'a PipelineConfig,
    graph: &Graph,
    kafka: &[(&str, &KafkaSink)],
) -> RestorePlan<'a> {
    let (mut horizon_ms, mut future_skew_ms) = (0, 0);
    for op in config.operators.values() {
        match op {
            OperatorConfig::Dedup(d) => horizon_ms = horizon_ms.max(d.horizon.0),
            OperatorConfig::Watermark(w) => {
                future_skew_ms = future_skew_ms.max(w.max_future_skew.0)
            }
            _ => {}
        }
    }
    let (mut events, mut invalid) = (Vec::new(), Vec::new());
    for (name, k) in kafka {
        let entry = (
            name.to_string(),
            k.topic.clone(),
            &config.clusters[&k.cluster],
        );
        if graph.input_kind(name).invalid {
            invalid.push(entry);
        } else {
            events.push(entry);
        }
    }
    RestorePlan {
        events,
        invalid,
        horizon_ms,
        future_skew_ms,
        group: format!("tidemark-{}-restore", config.pipeline.name),
    }
}

/// Builds every node of `graph`, in topological order, on one worker, and returns the handles
/// of its sources.
fn build<'s>(
    scope: Scope<'s, u64>,
    config: &PipelineConfig,
    graph: &Graph,
    ctx: &WorkerContext,
    (index, peers): (usize, usize),
    bounded: bool,
    producers: Option<&Producers>,
) -> Result<Vec<Rc<RefCell<SourceHandle>>>, RunError> {
    let mut streams: BTreeMap<NodeRef, AnyStream<'s>> = BTreeMap::new();
    let mut handles = Vec::new();
    let source_cx = source_context(config, ReadOptions { bounded }, &ctx.metrics);
    for name in &graph.order {
        // A watermark's inputs are sources, which it reads itself: they have no stream.
        let inputs: Vec<AnyStream<'s>> = graph.inputs[name]
            .iter()
            .filter_map(|r| streams.get(r).cloned())
            .collect();
        if let Some(op) = config.operators.get(name) {
            let mut cx = BuildContext {
                scope,
                worker: ctx,
                index,
                peers,
                event: &config.event,
                sources: &config.sources,
                source_cx: &source_cx,
                upstream: graph.inputs[name]
                    .iter()
                    .map(|r| config.operators.get(&r.node))
                    .collect(),
                handles: &mut handles,
            };
            let mut outputs = op.node().build(name, inputs, &mut cx)?;
            if !matches!(op, OperatorConfig::Reorder(_)) {
                outputs = outputs
                    .into_iter()
                    .map(|(port, s)| (port, s.probed(&ctx.flow_probe)))
                    .collect();
            }
            put_outputs(scope, graph, name, outputs, &mut streams);
        } else if let Some(sink) = config.sinks.get(name) {
            let input = if matches!(inputs.first(), Some(AnyStream::Invalid(_))) {
                AnyStream::Invalid(concat_invalid(scope, inputs))
            } else {
                AnyStream::Events(concat_events(scope, inputs))
            };
            let cx = sink_context(config, graph, name, producers, index);
            let done = sink.node().build(name, input, &cx, ctx)?;
            done.probe_with(&ctx.probe);
        }
    }
    Ok(handles)
}

/// Files an operator's outputs under their ports. The bare name of one with `on_time` and
/// `late` outputs is their union, built only when a node reads it: a stream with several
/// consumers has every batch cloned for each.
fn put_outputs<'s>(
    scope: Scope<'s, u64>,
    graph: &Graph,
    name: &str,
    outputs: Vec<(Port, AnyStream<'s>)>,
    streams: &mut BTreeMap<NodeRef, AnyStream<'s>>,
) {
    let at = |port| NodeRef {
        node: name.into(),
        port,
    };
    let consumed = graph.inputs.values().flatten().any(|r| *r == at(Port::All));
    let has_all = outputs.iter().any(|(p, _)| *p == Port::All);
    if consumed && !has_all {
        let union = outputs
            .iter()
            .filter(|(p, _)| matches!(p, Port::OnTime | Port::Late))
            .map(|(_, s)| s.clone())
            .collect();
        streams.insert(
            at(Port::All),
            AnyStream::Events(concat_events(scope, union)),
        );
    }
    for (port, stream) in outputs {
        streams.insert(at(port), stream);
    }
}

#[cfg(test)]
mod tests {
    use super::metrics_port_offset;

    #[test]
    fn metrics_ports_are_offset_only_among_processes_of_one_host() {
        let hosts = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let loopback = hosts(&["127.0.0.1:2101", "127.0.0.1:2102", "127.0.0.1:2103"]);
        assert_eq!(
            (0..3)
                .map(|p| metrics_port_offset(&loopback, p))
                .collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let pods = hosts(&["t-0.t.ns.svc:2101", "t-1.t.ns.svc:2101"]);
        assert_eq!(metrics_port_offset(&pods, 1), 0);
        let mixed = hosts(&["10.0.0.1:2101", "10.0.0.2:2101", "10.0.0.1:2102"]);
        assert_eq!(metrics_port_offset(&mixed, 2), 1);
        assert_eq!(metrics_port_offset(&[], 0), 0);
    }
}
