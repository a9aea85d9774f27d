//! # tidemark
//!
//! A multi-region log pipeline on timely dataflow. Events produced in two regions, each with
//! its own Kafka cluster replicated active-active by MirrorMaker 2, are read from both regions,
//! deduplicated by event id, put in event-time order, and written to one ordered topic, with
//! late and invalid events routed to dead-letter topics. Nothing is lost and nothing is
//! duplicated: offsets are committed only behind what the sinks have durably written.
//!
//! The modules are floors, each importing only from the floors below it (`tests/it/layers.rs`
//! checks this), and above the ground floor they follow the data path:
//!
//! - The ground floor. [`event`]: the event format: the validating scanner and its serde
//!   reference, time parsing, the records that flow between operators, the reasons a record is
//!   invalid, and the split table. [`metrics`]: every Prometheus series, declared once, and the
//!   `/metrics` endpoint with the status page. [`runtime`]: the wall clock, the seeded RNG and
//!   the [`runtime::WorkerContext`] every operator of a worker shares.
//! - [`kafka`]: the one constructor of Kafka clients, with the reason for every setting, and
//!   the `[clusters.*]` settings they are made from. [`component`]: what every node kind of a
//!   pipeline file is: its settings, deserialized with errors by field, its own checks, and its
//!   role's trait that builds it ([`sources::SourceNode`], [`operators::OperatorNode`],
//!   [`sinks::SinkNode`]); each role lists its kinds in one `kinds!` table.
//! - [`sources`]: Kafka partitions, files and a generator, split deterministically over
//!   workers, and the MM2 heartbeats that say whether a replication link is up.
//! - [`operators`]: the timely operators. [`operators::watermark`] reads the sources and holds
//!   the capability that *is* the event-time watermark; [`operators::dedup`] drops copies by
//!   id; [`operators::reorder`] releases events in time order per output partition;
//!   [`operators::filter`] selects by field.
//! - [`sinks`]: Kafka (idempotent, `acks=all`, capability held until delivery), files, null.
//! - [`config`]: pipeline files (`pipelines/*.toml`): the file format, the resolution of the
//!   graph, and the checks that span nodes, every error with its node and field.
//! - [`pipeline`]: where a checked graph is wired into a dataflow and run on every worker.
//!
//! Outside the engine:
//!
//! - [`gateway`]: the HTTP ingestion gateway: routes producers to their region's Kafka and
//!   answers only once Kafka has the write; TLS, API tokens, per-token quotas and slow-client
//!   deadlines in front of it.
//! - [`analysis`]: what happens after the pipeline: `tidemark late-report` (a differential
//!   dataflow over the late topic: distributions, bursts, a watermark advisor) and
//!   `tidemark reconcile` (late events of closed windows into a corrections topic).
//! - [`tools`]: [`tools::demo`], the embedded two-region demo; [`tools::loadgen`], which sends
//!   traffic to real regions and records what Kafka acknowledged, and [`tools::verify`], the
//!   checker of the guarantees; [`tools::bench`], the engine benchmark behind `tidemark bench`
//!   (and its dedup-state scenario, `--state`) and three tools of the side-by-side suite run
//!   by `bench/run-all`: the physical floor (`tidemark bench-floor`), the one clock every
//!   system is timed by (`tidemark bench-span`, the broker's append times of its outputs) and
//!   the latency of any system's ordered output (`tidemark latency`); and what they share:
//!   [`tools::topic`], the Kafka reader, [`tools::cluster`], [`tools::http`] and
//!   [`tools::chart`].
//!
//! ```no_run
//! let (config, graph) = tidemark::config::load("pipelines/bench.toml".as_ref()).unwrap();
//! let metrics = tidemark::metrics::Metrics::new();
//! let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
//! let options = tidemark::pipeline::RunOptions { workers: 2, ..Default::default() };
//! let summary = tidemark::pipeline::run(&config, &graph, &options, &metrics, stop).unwrap();
//! println!("{summary}");
//! ```

#[cfg(feature = "analysis")]
pub mod analysis;
pub mod component;
pub mod config;
pub mod event;
#[cfg(feature = "gateway")]
pub mod gateway;
pub mod kafka;
pub mod metrics;
pub mod operators;
pub mod pipeline;
pub mod runtime;
pub mod sinks;
pub mod sources;
#[cfg(feature = "tools")]
pub mod tools;
