//! After the pipeline: what the late dead-letter topic says.
//!
//! Every late record carries, in `tidemark-*` headers, the watermark it missed, by how much,
//! when it arrived, its origin region and its source (and, for a MirrorMaker 2 remote topic,
//! the region it is replicated from). [`read`] turns those records back into [`LateEvent`]s, or
//! into a count of unreadable ones by reason. [`report`] is the differential dataflow over them
//! behind `tidemark late-report`; [`render`] draws it as a table, JSON or a chart;
//! [`reconcile`] writes the late events of closed windows to a corrections topic.

pub mod cli;
pub mod read;
pub mod reconcile;
pub mod render;
pub mod report;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Errors of the analysis tools.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// A Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The cluster refuses the tool (credentials, TLS).
    #[error(transparent)]
    Refused(#[from] crate::kafka::Refusal),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The chart could not be drawn.
    #[error("chart: {0}")]
    Chart(String),
    /// The topic does not exist.
    #[error("topic {0} not found")]
    NoTopic(String),
    /// Timely could not start its workers.
    #[error("workers: {0}")]
    Workers(String),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
}

/// One late event, as the analysis sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LateEvent {
    /// Origin region (`tidemark-region`).
    pub region: String,
    /// The payload's `service` field, `-` when it has none.
    pub service: String,
    /// `cluster/topic/partition` it was read from (`tidemark-source` without the offset).
    pub partition: String,
    /// Read from a MirrorMaker 2 remote topic (`tidemark-replicated-from` present).
    pub replicated: bool,
    /// Event time, epoch ms (`tidemark-event-time`).
    pub event_ms: u64,
    /// How far below the watermark it arrived (`tidemark-lateness-ms`).
    pub lateness_ms: u64,
    /// Wall-clock arrival at the pipeline, epoch ms (`tidemark-arrival-ms`).
    pub arrival_ms: u64,
}

/// Counts of records that could not be read as late events, by reason.
pub type Unreadable = BTreeMap<String, u64>;

/// The headers a late record must have.
pub const REQUIRED: [&str; 5] = [
    "tidemark-region",
    "tidemark-source",
    "tidemark-event-time",
    "tidemark-lateness-ms",
    "tidemark-arrival-ms",
];

/// Reads a late record from its headers and payload, or says why it cannot.
pub fn parse(headers: &BTreeMap<String, String>, payload: &[u8]) -> Result<LateEvent, String> {
    for h in REQUIRED {
        if !headers.contains_key(h) {
            return Err(format!("missing header {h}"));
        }
    }
    let number = |h: &str| -> Result<u64, String> {
        headers[h]
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("bad header {h}"))
    };
    let (event_ms, lateness_ms, arrival_ms) = (
        number("tidemark-event-time")?,
        number("tidemark-lateness-ms")?,
        number("tidemark-arrival-ms")?,
    );
    if lateness_ms == 0 {
        return Err("bad header tidemark-lateness-ms".into());
    }
    // The payload must be the JSON object the pipeline accepted; anything else was not written
    // by tidemark's late output.
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|_| "bad payload".to_string())?;
    let Some(object) = value.as_object() else {
        return Err("bad payload".into());
    };
    let service = object
        .get("service")
        .and_then(|s| s.as_str())
        .unwrap_or("-")
        .to_string();
    let source = &headers["tidemark-source"];
    // `cluster/topic/partition/offset`: drop the offset.
    let partition = match source.rsplit_once('/') {
        Some((p, offset)) if offset.parse::<i64>().is_ok() => p.to_string(),
        _ => return Err("bad header tidemark-source".into()),
    };
    Ok(LateEvent {
        region: headers["tidemark-region"].clone(),
        service,
        partition,
        replicated: headers.contains_key("tidemark-replicated-from"),
        event_ms,
        lateness_ms,
        arrival_ms,
    })
}
