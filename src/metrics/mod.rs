//! Every metric tidemark exports, declared in one place, and the `/metrics` endpoint.
//!
//! Names follow `tidemark_<name>_<unit>` with `_total` on counters. Operators add to counters
//! once per batch, not once per event, because an atomic add per event would cost more than the
//! dedup itself on two workers. `docs/METRICS.md` documents each series; a test checks that the
//! document and this module list the same names.

pub mod server;
mod status;

pub use server::{serve, MetricsServer};

use prometheus::core::Collector;
use prometheus::{
    CounterVec, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};

/// A metric family that can be made from its name, help and labels.
trait Family: Collector + Clone + Sized + 'static {
    fn make(name: &str, help: &str, labels: &[&str]) -> Self;
}

macro_rules! vec_family {
    ($($t:ty),+) => {$(
        impl Family for $t {
            fn make(name: &str, help: &str, labels: &[&str]) -> Self {
                <$t>::new(Opts::new(name, help), labels).expect("valid metric")
            }
        }
    )+};
}
vec_family!(IntCounterVec, CounterVec, IntGaugeVec, GaugeVec);

macro_rules! plain_family {
    ($($t:ty),+) => {$(
        impl Family for $t {
            fn make(name: &str, help: &str, _labels: &[&str]) -> Self {
                <$t>::new(name, help).expect("valid metric")
            }
        }
    )+};
}
plain_family!(IntCounter, IntGauge, Gauge);

/// Request latencies: from a millisecond (a write to a local broker) to ten seconds (a
/// request that waited for a region's broker to come back).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Event time minus the Kafka record's timestamp, in seconds, both signs: a healthy producer
/// sits a little below zero (the event is made, then appended); one whose clock runs ahead sits
/// above it. Fine from zero to tens of seconds, where disorder bounds usually lie, coarse out to
/// ten minutes. With negative observations the `_sum` series can fall, so it is no counter for
/// `rate()`: alerts read medians from the buckets, which only ever grow.
const SKEW_BUCKETS: &[f64] = &[
    -600.0, -120.0, -60.0, -30.0, -15.0, -10.0, -5.0, -3.0, -2.0, -1.0, -0.5, -0.25, -0.1, 0.0,
    0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0, 600.0,
];

/// The labelled histogram is the event-time skew's; request latencies are unlabelled.
impl Family for HistogramVec {
    fn make(name: &str, help: &str, labels: &[&str]) -> Self {
        let opts = HistogramOpts::new(name, help).buckets(SKEW_BUCKETS.to_vec());
        HistogramVec::new(opts, labels).expect("valid metric")
    }
}

impl Family for Histogram {
    fn make(name: &str, help: &str, _labels: &[&str]) -> Self {
        let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
        Histogram::with_opts(opts).expect("valid metric")
    }
}

/// Declares every family once, as data: the field, its type, its name, help and labels. The
/// struct, its constructor and [`NAMES`] all come from this one table.
macro_rules! families {
    ($( $(#[$doc:meta])* $field:ident: $ty:ty = $name:literal, $help:literal, [$($label:literal),*]; )+) => {
        /// All tidemark metrics of one process.
        #[derive(Clone)]
        pub struct Metrics {
            /// The registry the endpoint serves.
            pub registry: Registry,
            $( $(#[$doc])* pub $field: $ty, )+
        }

        /// Every metric name, for the documentation test and dashboards.
        pub const NAMES: &[&str] = &[$($name),+];

        impl Metrics {
            fn register(r: &Registry) -> Metrics {
                Metrics {
                    $( $field: registered(r, <$ty>::make($name, $help, &[$($label),*])), )+
                    registry: r.clone(),
                }
            }
        }
    };
}

families! {
    /// `tidemark_events_in_total{source,region}`: records read, valid or not.
    events_in: IntCounterVec = "tidemark_events_in_total", "Records read", ["source", "region"];
    /// `tidemark_bytes_in_total{source,region}`: payload bytes read.
    bytes_in: IntCounterVec = "tidemark_bytes_in_total", "Payload bytes read", ["source", "region"];
    /// `tidemark_events_out_total{sink}`: records durably written by a sink.
    events_out: IntCounterVec = "tidemark_events_out_total", "Records durably written", ["sink"];
    /// `tidemark_duplicates_total{region}`: copies dropped by dedup, by the copy's origin region.
    duplicates: IntCounterVec = "tidemark_duplicates_total", "Copies dropped by dedup", ["region"];
    /// `tidemark_dedup_conflicts_total`: duplicates whose payload differs from the first copy.
    dedup_conflicts: IntCounter = "tidemark_dedup_conflicts_total",
        "Duplicates with a different payload than the first copy", [];
    /// `tidemark_dedup_beyond_horizon_total{region}`: late events older than the watermark minus
    /// the dedup horizon, passed to the late output unchecked, by origin region.
    dedup_beyond_horizon: IntCounterVec = "tidemark_dedup_beyond_horizon_total",
        "Late events too old for dedup to check, passed unchecked", ["region"];
    /// `tidemark_event_time_skew_seconds{source,region}`: event time minus the Kafka record's
    /// timestamp, by source and origin region.
    event_time_skew: HistogramVec = "tidemark_event_time_skew_seconds",
        "Event time minus the Kafka record timestamp", ["source", "region"];
    /// `tidemark_watermark_max_out_of_orderness_seconds{node}`: the disorder bound, so alerts
    /// can compare skew with it.
    watermark_bound: GaugeVec = "tidemark_watermark_max_out_of_orderness_seconds",
        "The watermark node's max_out_of_orderness", ["node"];
    /// `tidemark_dedup_unique_total`: events that passed dedup as first copies.
    dedup_unique: IntCounter = "tidemark_dedup_unique_total",
        "Events passed by dedup as first copies", [];
    /// `tidemark_late_events_total{region}`: events that arrived behind the watermark.
    late_events: IntCounterVec = "tidemark_late_events_total", "Events behind the watermark",
        ["region"];
    /// `tidemark_invalid_events_total{reason}`.
    invalid_events: IntCounterVec = "tidemark_invalid_events_total", "Invalid records by reason",
        ["reason"];
    /// `tidemark_watermark_timestamp_ms{node,worker}`.
    watermark_ms: IntGaugeVec = "tidemark_watermark_timestamp_ms", "Watermark, epoch ms",
        ["node", "worker"];
    /// `tidemark_watermark_lag_seconds{node,worker}`: wall clock minus watermark.
    watermark_lag: GaugeVec = "tidemark_watermark_lag_seconds", "Wall clock minus the watermark",
        ["node", "worker"];
    /// `tidemark_source_throttled_seconds_total{node,worker}`: time a watermark node's reading
    /// was held back by flow control.
    throttled_seconds: CounterVec = "tidemark_source_throttled_seconds_total",
        "Time reading was held back because the records in flight reached the budget",
        ["node", "worker"];
    /// `tidemark_in_flight_records{node,worker}`: records read and not yet passed by the sinks.
    in_flight_records: IntGaugeVec = "tidemark_in_flight_records",
        "Records read and not yet passed by the sinks", ["node", "worker"];
    /// `tidemark_in_flight_bytes{node,worker}`: their bytes.
    in_flight_bytes: IntGaugeVec = "tidemark_in_flight_bytes",
        "Bytes of the records read and not yet passed by the sinks", ["node", "worker"];
    /// `tidemark_reorder_buffer_events`: events held for ordering, all workers.
    reorder_buffered: IntGauge = "tidemark_reorder_buffer_events",
        "Events held by reorder until the watermark passes them", [];
    /// `tidemark_dedup_ids_retained`: ids remembered by dedup, all workers.
    dedup_retained: IntGauge = "tidemark_dedup_ids_retained", "Event ids remembered by dedup", [];
    /// `tidemark_dedup_state_bytes`: memory of the dedup tables, all workers.
    dedup_bytes: IntGauge = "tidemark_dedup_state_bytes", "Bytes of dedup tables", [];
    /// `tidemark_consumer_lag_records{cluster,topic,partition}`.
    consumer_lag: IntGaugeVec = "tidemark_consumer_lag_records",
        "High watermark minus next offset", ["cluster", "topic", "partition"];
    /// `tidemark_committed_offset{cluster,topic,partition}`: the next offset to read after a
    /// restart.
    committed_offset: IntGaugeVec = "tidemark_committed_offset", "Committed source offset",
        ["cluster", "topic", "partition"];
    /// `tidemark_sink_errors_total{sink}`: failed deliveries (each stops the job).
    sink_errors: IntCounterVec = "tidemark_sink_errors_total", "Failed deliveries", ["sink"];
    /// `tidemark_dead_letters_dropped_total{sink,reason}`: invalid records no topic would take.
    dead_letters_dropped: IntCounterVec = "tidemark_dead_letters_dropped_total",
        "Invalid records too large for their topic", ["sink", "reason"];
    /// `tidemark_source_gap_records_total{source,topic,partition}`: records a source was
    /// still to read that were gone (offset out of range), by their offsets.
    source_gap: IntCounterVec = "tidemark_source_gap_records_total",
        "Records skipped because they were gone before they were read", ["source", "topic", "partition"];
    /// `tidemark_dead_letters_truncated_total{sink}`: dead letters larger than their topic
    /// takes, written with their first bytes and their original size.
    dead_letters_truncated: IntCounterVec = "tidemark_dead_letters_truncated_total",
        "Dead letters written truncated to fit their topic", ["sink"];
    /// `tidemark_replication_lag_seconds{from,to}`: wall clock minus the newest MM2 heartbeat
    /// replicated from `from` into cluster `to`.
    replication_lag: GaugeVec = "tidemark_replication_lag_seconds",
        "Wall clock minus the newest replicated MM2 heartbeat", ["from", "to"];
    /// `tidemark_split_brain{from,to}`: 1 while that replication link is down.
    split_brain: IntGaugeVec = "tidemark_split_brain", "1 while the replication link is down",
        ["from", "to"];
    /// `tidemark_split_duration_seconds{from,to}`: how long the current split has lasted, 0
    /// when the link is up.
    split_duration: GaugeVec = "tidemark_split_duration_seconds",
        "Length of the current split, 0 when the link is up", ["from", "to"];
    /// `tidemark_split_episodes_total{from,to}`: splits seen since start.
    split_episodes: IntCounterVec = "tidemark_split_episodes_total", "Replication splits seen",
        ["from", "to"];
    /// `tidemark_split_seconds_total{from,to}`: time spent split since start.
    split_seconds: CounterVec = "tidemark_split_seconds_total",
        "Seconds the replication link has been down", ["from", "to"];
    /// `tidemark_split_hold_active{from,to}`: 1 while the watermark waits for a down link.
    split_hold: IntGaugeVec = "tidemark_split_hold_active",
        "1 while the watermark waits for a down link", ["from", "to"];
    /// `tidemark_gateway_requests_total{code}`: `POST /v1/logs` requests by status code.
    gateway_requests: IntCounterVec = "tidemark_gateway_requests_total",
        "POST /v1/logs requests by status code", ["code"];
    /// `tidemark_gateway_request_duration_seconds`: `POST /v1/logs` time, Kafka ack included.
    gateway_request_seconds: Histogram = "tidemark_gateway_request_duration_seconds",
        "POST /v1/logs time, Kafka acknowledgement included", [];
    /// `tidemark_gateway_events_total{region}`: events acknowledged by a region's Kafka.
    gateway_events: IntCounterVec = "tidemark_gateway_events_total",
        "Events acknowledged by a region's Kafka", ["region"];
    /// `tidemark_gateway_events_refused_total{reason}`: `invalid`, `too_large` or
    /// `unavailable`.
    gateway_rejected: IntCounterVec = "tidemark_gateway_events_refused_total",
        "Events not written: invalid, too_large or unavailable", ["reason"];
    /// `tidemark_gateway_region_fallbacks_total{from,to}`: events written to the other region.
    gateway_fallbacks: IntCounterVec = "tidemark_gateway_region_fallbacks_total",
        "Events written to the other region", ["from", "to"];
    /// `tidemark_gateway_region_healthy{region}`.
    gateway_region_healthy: IntGaugeVec = "tidemark_gateway_region_healthy",
        "1 while a region's cluster answers", ["region"];
    /// `tidemark_gateway_in_flight_events`: events waiting for a Kafka acknowledgement.
    gateway_in_flight: IntGauge = "tidemark_gateway_in_flight_events",
        "Events waiting for a Kafka acknowledgement", [];
    /// `tidemark_gateway_connections_open`: HTTP connections the gateway holds.
    gateway_connections: IntGauge = "tidemark_gateway_connections_open",
        "HTTP connections the gateway holds", [];
    /// `tidemark_gateway_connections_closed_total{reason}`: connections the gateway cut:
    /// `header_timeout`, `body_timeout`, `idle_timeout`, or `over_limit` (refused at once,
    /// `max_connections` being open).
    gateway_connections_cut: IntCounterVec = "tidemark_gateway_connections_closed_total",
        "Connections the gateway cut: header_timeout, body_timeout, idle_timeout, over_limit",
        ["reason"];
    /// `tidemark_gateway_token_events_total{token}`: events acknowledged, by the name of the
    /// API token that sent them (never the token).
    gateway_token_events: IntCounterVec = "tidemark_gateway_token_events_total",
        "Events acknowledged, by API token name", ["token"];
    /// `tidemark_gateway_auth_refused_total{reason}`: requests refused: `missing` or `unknown`
    /// token (401), `region` or `producer` the token may not use (403).
    gateway_auth_refused: IntCounterVec = "tidemark_gateway_auth_refused_total",
        "Requests refused for their token: missing, unknown, region, producer", ["reason"];
    /// `tidemark_gateway_token_throttled_total{token,limit}`: requests answered 429, by token
    /// name and the limit they hit: `events_per_second`, `bytes_per_second`, `in_flight`.
    gateway_token_throttled: IntCounterVec = "tidemark_gateway_token_throttled_total",
        "Requests answered 429, by API token name and the limit hit", ["token", "limit"];
    /// `tidemark_gateway_tls_handshake_failures_total`: TLS handshakes that failed (a client
    /// that does not trust the certificate, or whose own is refused under mutual TLS).
    gateway_tls_failures: IntCounter = "tidemark_gateway_tls_handshake_failures_total",
        "TLS handshakes with the gateway that failed", [];
    /// `tidemark_transactions_total{sink,outcome}`: checkpoint transactions, `committed` or
    /// `aborted` (an aborted one stops the job).
    transactions: IntCounterVec = "tidemark_transactions_total",
        "Checkpoint transactions of exactly-once Kafka sinks, by outcome", ["sink", "outcome"];
    /// `tidemark_checkpoint_duration_seconds`: time to commit one sink's transaction.
    checkpoint_seconds: Histogram = "tidemark_checkpoint_duration_seconds",
        "Time to commit one exactly-once sink's checkpoint transaction", [];
    /// `tidemark_checkpoint_records_total{sink}`: records written in committed transactions;
    /// divided by the committed transactions, the size of a checkpoint.
    checkpoint_records: IntCounterVec = "tidemark_checkpoint_records_total",
        "Records in committed checkpoint transactions", ["sink"];
    /// `tidemark_checkpoint_last_success_timestamp_seconds{sink}`: when a transaction of the
    /// sink last committed (or, before its first, when the sink started).
    checkpoint_last: GaugeVec = "tidemark_checkpoint_last_success_timestamp_seconds",
        "When an exactly-once sink last committed a checkpoint", ["sink"];
    /// `tidemark_dead_letters_replayed_total`: invalid records read again after a restart
    /// whose dead letters were already written, and so not written twice.
    dead_letters_replayed: IntCounter = "tidemark_dead_letters_replayed_total",
        "Invalid records replayed after a restart whose dead letters were already written", [];
    /// `tidemark_restore_duration_seconds`: time taken to restore state from the committed
    /// output at start.
    restore_seconds: Gauge = "tidemark_restore_duration_seconds",
        "Time taken to restore state from the committed output at start", [];
    /// `tidemark_restore_ids`: ids restored into dedup at start.
    restore_ids: IntGauge = "tidemark_restore_ids", "Event ids restored into dedup at start", [];
    /// `tidemark_restore_records_total{topic}`: committed output records read by the restore.
    restore_records: IntCounterVec = "tidemark_restore_records_total",
        "Committed output records read by the restore", ["topic"];
    /// `tidemark_up`: 1 while the pipeline runs.
    up: Gauge = "tidemark_up", "1 while the pipeline runs", [];
}

/// Registers `m` and returns it; every name is declared once, so a clash is a bug.
fn registered<M: Collector + Clone + 'static>(r: &Registry, m: M) -> M {
    r.register(Box::new(m.clone())).expect("registered once");
    m
}

impl Metrics {
    /// Creates and registers every metric, plus the process collector.
    pub fn new() -> Metrics {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            r.register(Box::new(pc)).expect("registered once");
        }
        let metrics = Metrics::register(&r);
        // Every reason is exported from the start, at zero, so a dashboard and an alert see
        // the series before the first invalid record.
        for reason in crate::event::Reason::ALL {
            metrics.invalid_events.with_label_values(&[reason.as_str()]);
        }
        metrics
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        // Encoding to a Vec cannot fail for well-formed metrics.
        let _ = prometheus::Encoder::encode(&encoder, &self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
