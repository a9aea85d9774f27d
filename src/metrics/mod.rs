//! Every metric tidemark exports, declared in one place, and the `/metrics` endpoint.
//!
//! Names follow `tidemark_<name>_<unit>` with `_total` on counters. Operators add to counters
//! once per batch, not once per event, because an atomic add per event would cost more than the
//! dedup itself on two workers. `docs/METRICS.md` documents each series; a test checks that the
//! document and this module list the same names.

mod server;
pub mod status;

pub use server::{serve, MetricsServer};

use prometheus::{
    CounterVec, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// All tidemark metrics of one process.
#[derive(Clone)]
pub struct Metrics {
    /// The registry the endpoint serves.
    pub registry: Registry,
    /// `tidemark_events_in_total{source,region}`: records read, valid or not.
    pub events_in: IntCounterVec,
    /// `tidemark_bytes_in_total{source,region}`: payload bytes read.
    pub bytes_in: IntCounterVec,
    /// `tidemark_events_out_total{sink}`: records durably written by a sink.
    pub events_out: IntCounterVec,
    /// `tidemark_duplicates_total{region}`: copies dropped by dedup, by the copy's origin region.
    pub duplicates: IntCounterVec,
    /// `tidemark_dedup_conflicts_total`: duplicates whose payload differs from the first copy.
    pub dedup_conflicts: IntCounter,
    /// `tidemark_dedup_unique_total`: events that passed dedup as first copies.
    pub dedup_unique: IntCounter,
    /// `tidemark_late_events_total{region}`: events that arrived behind the watermark.
    pub late_events: IntCounterVec,
    /// `tidemark_invalid_events_total{reason}`.
    pub invalid_events: IntCounterVec,
    /// `tidemark_watermark_timestamp_ms{node,worker}`.
    pub watermark_ms: IntGaugeVec,
    /// `tidemark_watermark_lag_seconds{node,worker}`: wall clock minus watermark.
    pub watermark_lag: GaugeVec,
    /// `tidemark_reorder_buffer_events`: events held for ordering, all workers.
    pub reorder_buffered: IntGauge,
    /// `tidemark_dedup_ids_retained`: ids remembered by dedup, all workers.
    pub dedup_retained: IntGauge,
    /// `tidemark_dedup_state_bytes`: memory of the dedup tables, all workers.
    pub dedup_bytes: IntGauge,
    /// `tidemark_consumer_lag_records{cluster,topic,partition}`.
    pub consumer_lag: IntGaugeVec,
    /// `tidemark_committed_offset{cluster,topic,partition}`: the next offset to read after a restart.
    pub committed_offset: IntGaugeVec,
    /// `tidemark_sink_errors_total{sink}`: failed deliveries (each stops the job).
    pub sink_errors: IntCounterVec,
    /// `tidemark_dead_letters_dropped_total{sink,reason}`: invalid records no topic would take.
    pub dead_letters_dropped: IntCounterVec,
    /// `tidemark_replication_lag_seconds{from,to}`: wall clock minus the newest MM2 heartbeat
    /// replicated from `from` into cluster `to`.
    pub replication_lag: GaugeVec,
    /// `tidemark_split_brain{from,to}`: 1 while that replication link is down.
    pub split_brain: IntGaugeVec,
    /// `tidemark_split_duration_seconds{from,to}`: how long the current split has lasted, 0
    /// when the link is up.
    pub split_duration: GaugeVec,
    /// `tidemark_split_episodes_total{from,to}`: splits seen since start.
    pub split_episodes: IntCounterVec,
    /// `tidemark_split_seconds_total{from,to}`: time spent split since start.
    pub split_seconds: CounterVec,
    /// `tidemark_split_hold_active{from,to}`: 1 while the watermark waits for a down link.
    pub split_hold: IntGaugeVec,
    /// `tidemark_gateway_requests_total{code}`: `POST /v1/logs` requests by status code.
    pub gateway_requests: IntCounterVec,
    /// `tidemark_gateway_request_duration_seconds`: `POST /v1/logs` time, Kafka ack included.
    pub gateway_request_seconds: Histogram,
    /// `tidemark_gateway_events_total{region}`: events acknowledged by a region's Kafka.
    pub gateway_events: IntCounterVec,
    /// `tidemark_gateway_events_refused_total{reason}`: `invalid` or `unavailable`.
    pub gateway_rejected: IntCounterVec,
    /// `tidemark_gateway_region_fallbacks_total{from,to}`: events written to the other region.
    pub gateway_fallbacks: IntCounterVec,
    /// `tidemark_gateway_region_healthy{region}`.
    pub gateway_region_healthy: IntGaugeVec,
    /// `tidemark_gateway_in_flight_events`: events waiting for a Kafka acknowledgement.
    pub gateway_in_flight: IntGauge,
    /// `tidemark_up`: 1 while the pipeline runs.
    pub up: Gauge,
}

/// Every metric name, for the documentation test and dashboards.
pub const NAMES: &[&str] = &[
    "tidemark_events_in_total",
    "tidemark_bytes_in_total",
    "tidemark_events_out_total",
    "tidemark_duplicates_total",
    "tidemark_dedup_conflicts_total",
    "tidemark_dedup_unique_total",
    "tidemark_late_events_total",
    "tidemark_invalid_events_total",
    "tidemark_watermark_timestamp_ms",
    "tidemark_watermark_lag_seconds",
    "tidemark_reorder_buffer_events",
    "tidemark_dedup_ids_retained",
    "tidemark_dedup_state_bytes",
    "tidemark_consumer_lag_records",
    "tidemark_committed_offset",
    "tidemark_sink_errors_total",
    "tidemark_dead_letters_dropped_total",
    "tidemark_replication_lag_seconds",
    "tidemark_split_brain",
    "tidemark_split_duration_seconds",
    "tidemark_split_episodes_total",
    "tidemark_split_seconds_total",
    "tidemark_split_hold_active",
    "tidemark_gateway_requests_total",
    "tidemark_gateway_request_duration_seconds",
    "tidemark_gateway_events_total",
    "tidemark_gateway_events_refused_total",
    "tidemark_gateway_region_fallbacks_total",
    "tidemark_gateway_region_healthy",
    "tidemark_gateway_in_flight_events",
    "tidemark_up",
];

/// Registers `m` and returns it; every name is declared once, so a clash is a bug.
fn registered<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: M) -> M {
    r.register(Box::new(m.clone())).expect("registered once");
    m
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn float_gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    registered(
        r,
        GaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
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
        let dedup_conflicts = registered(
            &r,
            IntCounter::new(
                "tidemark_dedup_conflicts_total",
                "Duplicates with a different payload than the first copy",
            )
            .expect("valid metric"),
        );
        let dedup_unique = registered(
            &r,
            IntCounter::new(
                "tidemark_dedup_unique_total",
                "Events passed by dedup as first copies",
            )
            .expect("valid metric"),
        );
        let reorder_buffered = registered(
            &r,
            IntGauge::new(
                "tidemark_reorder_buffer_events",
                "Events held by reorder until the watermark passes them",
            )
            .expect("valid metric"),
        );
        let dedup_retained = registered(
            &r,
            IntGauge::new(
                "tidemark_dedup_ids_retained",
                "Event ids remembered by dedup",
            )
            .expect("valid metric"),
        );
        let dedup_bytes = registered(
            &r,
            IntGauge::new("tidemark_dedup_state_bytes", "Bytes of dedup tables")
                .expect("valid metric"),
        );
        let watermark_lag = float_gauge_vec(
            &r,
            "tidemark_watermark_lag_seconds",
            "Wall clock minus the watermark",
            &["node", "worker"],
        );
        let gateway_request_seconds = registered(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "tidemark_gateway_request_duration_seconds",
                    "POST /v1/logs time, Kafka acknowledgement included",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )
            .expect("valid metric"),
        );
        let gateway_in_flight = registered(
            &r,
            IntGauge::new(
                "tidemark_gateway_in_flight_events",
                "Events waiting for a Kafka acknowledgement",
            )
            .expect("valid metric"),
        );
        let up = registered(
            &r,
            Gauge::new("tidemark_up", "1 while the pipeline runs").expect("valid metric"),
        );
        let invalid_events = counter_vec(
            &r,
            "tidemark_invalid_events_total",
            "Invalid records by reason",
            &["reason"],
        );
        for reason in crate::event::Reason::ALL {
            invalid_events.with_label_values(&[reason.as_str()]);
        }
        Metrics {
            events_in: counter_vec(
                &r,
                "tidemark_events_in_total",
                "Records read",
                &["source", "region"],
            ),
            bytes_in: counter_vec(
                &r,
                "tidemark_bytes_in_total",
                "Payload bytes read",
                &["source", "region"],
            ),
            events_out: counter_vec(
                &r,
                "tidemark_events_out_total",
                "Records durably written",
                &["sink"],
            ),
            duplicates: counter_vec(
                &r,
                "tidemark_duplicates_total",
                "Copies dropped by dedup",
                &["region"],
            ),
            dedup_conflicts,
            dedup_unique,
            late_events: counter_vec(
                &r,
                "tidemark_late_events_total",
                "Events behind the watermark",
                &["region"],
            ),
            invalid_events,
            watermark_ms: gauge_vec(
                &r,
                "tidemark_watermark_timestamp_ms",
                "Watermark, epoch ms",
                &["node", "worker"],
            ),
            watermark_lag,
            reorder_buffered,
            dedup_retained,
            dedup_bytes,
            consumer_lag: gauge_vec(
                &r,
                "tidemark_consumer_lag_records",
                "High watermark minus next offset",
                &["cluster", "topic", "partition"],
            ),
            committed_offset: gauge_vec(
                &r,
                "tidemark_committed_offset",
                "Committed source offset",
                &["cluster", "topic", "partition"],
            ),
            dead_letters_dropped: counter_vec(
                &r,
                "tidemark_dead_letters_dropped_total",
                "Invalid records too large for their topic",
                &["sink", "reason"],
            ),
            sink_errors: counter_vec(
                &r,
                "tidemark_sink_errors_total",
                "Failed deliveries",
                &["sink"],
            ),
            replication_lag: float_gauge_vec(
                &r,
                "tidemark_replication_lag_seconds",
                "Wall clock minus the newest replicated MM2 heartbeat",
                &["from", "to"],
            ),
            split_brain: gauge_vec(
                &r,
                "tidemark_split_brain",
                "1 while the replication link is down",
                &["from", "to"],
            ),
            split_duration: float_gauge_vec(
                &r,
                "tidemark_split_duration_seconds",
                "Length of the current split, 0 when the link is up",
                &["from", "to"],
            ),
            split_episodes: counter_vec(
                &r,
                "tidemark_split_episodes_total",
                "Replication splits seen",
                &["from", "to"],
            ),
            split_seconds: registered(
                &r,
                CounterVec::new(
                    Opts::new(
                        "tidemark_split_seconds_total",
                        "Seconds the replication link has been down",
                    ),
                    &["from", "to"],
                )
                .expect("valid metric"),
            ),
            split_hold: gauge_vec(
                &r,
                "tidemark_split_hold_active",
                "1 while the watermark waits for a down link",
                &["from", "to"],
            ),
            gateway_requests: counter_vec(
                &r,
                "tidemark_gateway_requests_total",
                "POST /v1/logs requests by status code",
                &["code"],
            ),
            gateway_request_seconds,
            gateway_events: counter_vec(
                &r,
                "tidemark_gateway_events_total",
                "Events acknowledged by a region's Kafka",
                &["region"],
            ),
            gateway_rejected: counter_vec(
                &r,
                "tidemark_gateway_events_refused_total",
                "Events not written: invalid or unavailable",
                &["reason"],
            ),
            gateway_fallbacks: counter_vec(
                &r,
                "tidemark_gateway_region_fallbacks_total",
                "Events written to the other region",
                &["from", "to"],
            ),
            gateway_region_healthy: gauge_vec(
                &r,
                "tidemark_gateway_region_healthy",
                "1 while a region's cluster answers",
                &["region"],
            ),
            gateway_in_flight,
            up,
            registry: r,
        }
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
