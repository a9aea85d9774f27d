//! The `tidemark` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Multi-region log pipeline: two Kafka regions in, one deduplicated, event-time-ordered stream
/// out, with late and invalid events in dead-letter topics.
#[derive(Parser)]
#[command(name = "tidemark", version, about)]
struct Cli {
    /// A file whose `[clusters.NAME]` tables (a pipeline or gateway file will do) say how to
    /// connect: each tool's `--bootstrap` may then be a cluster's NAME or one of its addresses,
    /// and its clients take that cluster's security settings.
    #[arg(long, global = true, value_name = "FILE")]
    cluster_config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline file.
    Run {
        /// The pipeline file.
        file: PathBuf,
        /// Worker threads in this process.
        #[arg(short, long, default_value_t = 1)]
        workers: usize,
        /// Processes in the cluster (each runs `--workers` threads).
        #[arg(long, default_value_t = 1)]
        processes: usize,
        /// Index of this process, 0-based.
        #[arg(long, default_value_t = 0)]
        process: usize,
        /// File with one `host:port` per process, for timely's cluster mode.
        #[arg(long)]
        hostfile: Option<String>,
        /// Read up to the end offsets taken at start, flush everything, print a summary, exit.
        #[arg(long)]
        bounded: bool,
        /// Override `metrics.listen`. A process listens on this port plus the number of
        /// processes before it in the hostfile on the same host: ports of their own on one
        /// machine, the same port on hosts of their own.
        #[arg(long)]
        metrics_listen: Option<std::net::SocketAddr>,
        /// With --processes above 1: give up, with an error naming the peers, when they have not
        /// all connected within this long.
        #[arg(long, default_value = "60s", value_parser = tidemark::component::parse_duration_flag)]
        connect_timeout: std::time::Duration,
        /// Exactly-once: start with empty dedup state and the watermark at zero instead of
        /// restoring them from the committed output (when that output cannot be read back).
        #[arg(long)]
        reset_state: bool,
    },
    /// Validate a pipeline file and report every error.
    Check {
        /// The pipeline file.
        file: PathBuf,
        /// Also connect to the clusters: the sinks' topics exist, and what each takes against
        /// `event.max_event_bytes`.
        #[arg(long)]
        connect: bool,
    },
    /// Print a pipeline graph as Graphviz DOT and Mermaid.
    Graph {
        /// The pipeline file.
        file: PathBuf,
        /// Only one format.
        #[arg(long, value_parser = ["dot", "mermaid"])]
        format: Option<String>,
    },
    /// Two in-process Kafka regions, generated traffic, the global pipeline, and a verified
    /// summary. Needs nothing installed.
    Demo(tidemark::tools::demo::DemoOptions),
    /// Engine benchmark: generator -> parse -> watermark -> dedup -> reorder -> null sink.
    Bench(tidemark::tools::bench::BenchOptions),
    /// The physical floor (benchmark S0): copy a topic's bytes to another topic, unparsed,
    /// with the pipeline's client settings, and print the rate.
    BenchFloor(tidemark::tools::bench::floor::FloorOptions),
    /// How long an exactly-once restart takes to restore its state: writes `--ids` events as
    /// the ordered sink would, then times reading them back.
    BenchRestore(tidemark::tools::bench::restore::RestoreOptions),
    /// One clock for the side-by-side benchmarks: the first and last broker append time over a
    /// job's output topics (created with `message.timestamp.type=LogAppendTime`), and the rate
    /// of the records it read over that span.
    BenchSpan(tidemark::tools::bench::span::SpanOptions),
    /// Latency of an ordered topic (benchmark S6): when each event was written, less its event
    /// time and the watermark delay, as percentiles and a CDF.
    Latency(tidemark::tools::bench::latency::LatencyOptions),
    /// The HTTP ingestion gateway: routes producers to their region's Kafka (X-Region, sticky
    /// producers, health fallback) and answers only once Kafka has the write.
    #[command(args_conflicts_with_subcommands = true)]
    Gateway {
        /// The gateway file (`[gateway]` and one `[clusters.REGION]` per region).
        #[arg(long, required = true)]
        config: Option<PathBuf>,
        /// Override `gateway.listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        #[command(subcommand)]
        action: Option<GatewayAction>,
    },
    /// Send log traffic to both regions' Kafka at a rate, with failover copies, retries,
    /// disorder and invalid records; write the acknowledged ids to a file.
    Loadgen(tidemark::tools::loadgen::LoadgenOptions),
    /// Check the ordered, late and invalid topics of one or more clusters against a loadgen
    /// ids file: nothing lost, nothing twice, order holds, late means late.
    Verify(tidemark::tools::verify::VerifyOptions),
    /// Analyse a late topic: lateness by region, service, partition and hour; late bursts
    /// (matched to split-brain episodes); the watermark settings that would have kept them on
    /// time. Incremental with `--follow`.
    LateReport(tidemark::analysis::cli::LateReportOptions),
    /// Write the late events of closed event-time windows, deduplicated against the ordered
    /// topic and earlier runs, to a corrections topic, each with the window it patches.
    Reconcile(tidemark::analysis::reconcile::ReconcileOptions),
}

/// `tidemark gateway SUBCOMMAND`.
#[derive(Subcommand)]
enum GatewayAction {
    /// API tokens (`auth = "tokens"`): the file keeps only their SHA-256.
    #[command(subcommand)]
    Token(TokenAction),
}

/// `tidemark gateway token ...`.
#[derive(Subcommand)]
enum TokenAction {
    /// Make a token and print it, once: the file keeps only its hash. A running gateway picks
    /// it up within a second.
    Add {
        /// The token file (`[gateway] token_file`); made if missing.
        #[arg(long)]
        file: PathBuf,
        /// Its name, for metrics and logs.
        #[arg(long)]
        name: String,
        /// The producer id it writes as (the sticky key).
        #[arg(long)]
        producer: String,
        /// A region it may write to (repeat it); all by default.
        #[arg(long)]
        region: Vec<String>,
        /// Events a second it may write (429 over it); no limit by default.
        #[arg(long)]
        events_per_second: Option<f64>,
        /// Request bytes a second it may send; no limit by default.
        #[arg(long)]
        bytes_per_second: Option<f64>,
    },
    /// Remove a token by its name.
    Remove {
        /// The token file.
        #[arg(long)]
        file: PathBuf,
        /// Its name.
        #[arg(long)]
        name: String,
    },
    /// The tokens of a file: name, producer, regions.
    List {
        /// The token file.
        #[arg(long)]
        file: PathBuf,
    },
}

/// mimalloc's `purge_delay` option (its index in `mi_option_t`; libmimalloc-sys names only some).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Event containers are allocated by one operator and freed by the next, often on another worker
/// thread. With mimalloc's default 10 ms purge delay the freed pages go back to the kernel and
/// are faulted in again moments later (about 15% of a 2-worker run was page clearing and store
/// misses on fresh pages). Keeping them for a second removes that churn; an idle job still
/// returns its memory.
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; it is
    // thread-safe and valid at any time, and the option is read when pages are freed.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
}

fn main() -> ExitCode {
    tune_allocator();
    // A closed stdout (`tidemark graph x | head`) is the reader's choice, not a failure: exit
    // quietly with success instead of printing a panic.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = tidemark::runtime::panic_text(info).unwrap_or_default();
        if message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
    tracing_subscriber::fmt()
        .with_env_filter(
            // rdkafka's default context logs every client's statistics (every 5 s, see
            // kafka.rs) at info; librdkafka's warnings and errors still come through.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rdkafka::client=warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn shutdown_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&flag))
            .context("installing signal handler")?;
    }
    Ok(flag)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(path) = &cli.cluster_config {
        tidemark::kafka::use_tool_clusters(tidemark::config::load_clusters(path)?);
    }
    let success = |ok: bool| {
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    };
    match cli.command {
        Command::Check { file, connect } => Ok(success(check(&file, connect))),
        Command::Graph { file, format } => {
            graph(&file, format.as_deref()).map(|_| ExitCode::SUCCESS)
        }
        Command::Run {
            file,
            workers,
            processes,
            process,
            hostfile,
            bounded,
            metrics_listen,
            connect_timeout,
            reset_state,
        } => {
            let options = tidemark::pipeline::RunOptions {
                workers,
                processes,
                process,
                hosts: Vec::new(),
                bounded,
                reset_state,
                connect_timeout,
            };
            run_pipeline(&file, options, hostfile.as_deref(), metrics_listen)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(options) => Ok(success(tidemark::tools::demo::run(&options)?)),
        Command::BenchRestore(options) => {
            tidemark::tools::bench::restore::run(&options)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchFloor(options) => {
            tidemark::tools::bench::floor::run(&options)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchSpan(options) => {
            tidemark::tools::bench::span::run(&options)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Latency(options) => {
            tidemark::tools::bench::latency::run(&options).map(|_| ExitCode::SUCCESS)
        }
        Command::Bench(options) => tidemark::tools::bench::run(&options).map(|_| ExitCode::SUCCESS),
        Command::Gateway {
            action: Some(GatewayAction::Token(action)),
            ..
        } => token(action),
        Command::Gateway { config, listen, .. } => {
            let config = config.context("--config FILE is required")?;
            gateway(&config, listen)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Loadgen(options) => {
            tidemark::tools::loadgen::main(&options).map(|_| ExitCode::SUCCESS)
        }
        Command::Verify(options) => Ok(success(tidemark::tools::verify::run(&options)?)),
        Command::Reconcile(options) => {
            println!("{}", tidemark::analysis::reconcile::reconcile(&options)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::LateReport(options) => {
            tidemark::analysis::cli::late_report(&options)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `tidemark check`: every error of the file, or a one-line summary; with `connect`, what the
/// clusters say of the sinks too.
fn check(file: &Path, connect: bool) -> bool {
    let (config, graph) = match tidemark::config::load(file) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return false;
        }
    };
    for w in tidemark::config::warnings(&config, &graph) {
        println!("warning: {w}");
    }
    if connect {
        if let Err(e) = tidemark::pipeline::preflight(&config) {
            eprintln!("{}: {e}", file.display());
            return false;
        }
        let limits = match tidemark::pipeline::sink_limits(&config, &graph) {
            Ok((limits, _)) => limits,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                return false;
            }
        };
        let max = config.event.max_event_bytes.get() as usize;
        for (sink, limit) in &limits {
            let kind = graph.input_kind(sink);
            let room = limit.saturating_sub(tidemark::pipeline::EVENT_ROOM);
            if (kind.on_time || kind.late) && room < max {
                println!(
                    "warning: sinks.{sink}: takes records of at most {limit} bytes, so valid events of {room} to {max} bytes (event.max_event_bytes) go to the invalid output as too_large_for_output; lower max_event_bytes, or raise the topic's max.message.bytes and the cluster's message.max.bytes"
                );
            }
            if kind.invalid && *limit < max {
                println!(
                    "warning: sinks.{sink}: takes records of at most {limit} bytes; larger dead letters are written truncated"
                );
            }
        }
    }
    println!(
        "{}: ok ({} sources, {} operators, {} sinks)",
        file.display(),
        config.sources.len(),
        config.operators.len(),
        config.sinks.len()
    );
    true
}

/// `tidemark graph`: Graphviz, Mermaid, or both.
fn graph(file: &Path, format: Option<&str>) -> anyhow::Result<()> {
    let (config, graph) = tidemark::config::load(file)?;
    if format != Some("mermaid") {
        print!("{}", tidemark::config::to_dot(&config, &graph));
    }
    if format.is_none() {
        println!();
    }
    if format != Some("dot") {
        print!("{}", tidemark::config::to_mermaid(&config, &graph));
    }
    Ok(())
}

/// `tidemark run`: the pipeline on this process's workers, with its metrics endpoint.
fn run_pipeline(
    file: &Path,
    mut options: tidemark::pipeline::RunOptions,
    hostfile: Option<&str>,
    metrics_listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let (config, graph) = tidemark::config::load(file)?;
    let (workers, processes, process) = (options.workers, options.processes, options.process);
    anyhow::ensure!(workers >= 1, "--workers must be at least 1");
    anyhow::ensure!(process < processes, "--process must be below --processes");
    if let Some(path) = hostfile {
        options.hosts = tidemark::pipeline::read_hostfile(path)?;
    }
    anyhow::ensure!(
        processes == 1 || options.hosts.len() == processes,
        "--processes {processes} needs a --hostfile with {processes} lines (found {})",
        options.hosts.len()
    );
    let metrics = tidemark::metrics::Metrics::new();
    let _server = match metrics_listen.or(config.metrics.listen) {
        Some(mut addr) => {
            let offset = tidemark::pipeline::metrics_port_offset(&options.hosts, process);
            addr.set_port(addr.port() + offset);
            Some(
                tidemark::metrics::serve(addr, metrics.clone())
                    .with_context(|| format!("metrics endpoint {addr}"))?,
            )
        }
        None => None,
    };
    let summary = tidemark::pipeline::run(&config, &graph, &options, &metrics, shutdown_flag()?)?;
    if options.bounded {
        println!("{summary}");
        if let Some(bytes) = tidemark::runtime::peak_rss_bytes() {
            println!(
                "peak RSS    {:>12.1} MiB",
                bytes as f64 / f64::from(1 << 20)
            );
        }
    }
    Ok(())
}

/// `tidemark gateway token ...`: the gateway's API tokens.
fn token(action: TokenAction) -> anyhow::Result<ExitCode> {
    use tidemark::gateway::auth;
    match action {
        TokenAction::Add {
            file,
            name,
            producer,
            region,
            events_per_second,
            bytes_per_second,
        } => {
            let limits = auth::Limits {
                events_per_second,
                bytes_per_second,
            };
            let token = auth::add(&file, &name, &producer, &region, limits)?;
            eprintln!(
                "token \"{name}\" (producer {producer}) added to {}; it is shown once, here:",
                file.display()
            );
            println!("{token}");
        }
        TokenAction::Remove { file, name } => {
            anyhow::ensure!(
                auth::remove(&file, &name)?,
                "{}: no token named \"{name}\"",
                file.display()
            );
            eprintln!("token \"{name}\" removed from {}", file.display());
        }
        TokenAction::List { file } => {
            for t in auth::read(&file)? {
                let regions = if t.regions.is_empty() {
                    "all regions".to_string()
                } else {
                    t.regions.join(", ")
                };
                println!("{}\tproducer {}\t{regions}", t.name, t.producer);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tidemark gateway`: serves until SIGINT or SIGTERM, then finishes the requests in flight.
fn gateway(config: &Path, listen: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    let mut file = tidemark::config::load_gateway(config)?;
    if let Some(l) = listen {
        file.gateway.listen = l;
    }
    let stop = shutdown_flag()?;
    let gateway = tidemark::gateway::start(file, tidemark::metrics::Metrics::new())?;
    println!("gateway listening on http://{}", gateway.addr);
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    tracing::info!("stopping: finishing requests in flight");
    gateway.stop();
    Ok(())
}
