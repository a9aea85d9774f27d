//! Everything around the engine that is not the gateway or the analysis: the embedded demo,
//! the load generator and the checker of the guarantees, the benchmarks, and what they share.
//!
//! - [`demo`]: two in-process Kafka clusters, traffic, the pipeline and verification in one
//!   command (`tidemark demo`).
//! - [`loadgen`]: traffic to real regions, directly or through the gateway, recording what Kafka
//!   acknowledged in an ids file; [`verify`] checks the outputs against it.
//! - [`mod@bench`]: the engine benchmark (`tidemark bench`), the physical floor and the latency
//!   tool of the side-by-side suite; [`chart`] the charts' font setup.
//! - [`topic`]: the Kafka reader they share; [`http`]: a small blocking HTTP client;
//!   [`cluster`]: a local cluster of processes on loopback.

pub mod bench;
pub mod chart;
pub mod cluster;
pub mod demo;
pub mod http;
pub mod loadgen;
pub mod topic;
pub mod verify;
