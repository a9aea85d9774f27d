//! The live status page: `GET /` serves one self-contained HTML page (no CDN, no external
//! script), which polls `GET /status.json` every second and draws from it. The JSON is computed
//! from the same registry `/metrics` serves, so the page can never show a number Prometheus
//! would not see.

use super::Metrics;
use prometheus::proto::MetricFamily;
use serde_json::{json, Value};

/// The page.
pub const PAGE: &str = include_str!("status.html");

fn value(m: &prometheus::proto::Metric) -> f64 {
    if let Some(c) = m.counter.as_ref() {
        c.value()
    } else if let Some(g) = m.gauge.as_ref() {
        g.value()
    } else {
        0.0
    }
}

fn label<'a>(m: &'a prometheus::proto::Metric, name: &str) -> &'a str {
    m.label
        .iter()
        .find(|l| l.name() == name)
        .map_or("", |l| l.value())
}

fn family<'a>(families: &'a [MetricFamily], name: &str) -> &'a [prometheus::proto::Metric] {
    families
        .iter()
        .find(|f| f.name() == name)
        .map_or(&[], |f| &f.metric)
}

fn sum(families: &[MetricFamily], name: &str) -> f64 {
    family(families, name).iter().map(value).sum()
}

/// Totals sampled once a second by the endpoint's own thread, so rates on the page do not
/// depend on when, or how often, a browser asks.
#[derive(Default)]
pub struct Rates {
    /// (when, events in, events out). A monotonic clock: a rate must not jump when the wall
    /// clock is set.
    samples: std::collections::VecDeque<(std::time::Instant, f64, f64)>,
}

impl Rates {
    /// Records the current totals (called once a second).
    pub fn sample(&mut self, metrics: &Metrics) {
        let f = metrics.registry.gather();
        self.samples.push_back((
            std::time::Instant::now(),
            sum(&f, "tidemark_events_in_total"),
            sum(&f, "tidemark_events_out_total"),
        ));
        while self.samples.len() > 6 {
            self.samples.pop_front();
        }
    }

    /// Events in and out per second over the last few seconds, once two samples exist.
    fn per_second(&self) -> (Option<f64>, Option<f64>) {
        match (self.samples.front(), self.samples.back()) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                let dt = (b.0 - a.0).as_secs_f64();
                (Some((b.1 - a.1) / dt), Some((b.2 - a.2) / dt))
            }
            _ => (None, None),
        }
    }
}

/// A snapshot of what the page shows.
pub fn snapshot(metrics: &Metrics, rates: &Rates) -> Value {
    let (in_rate, out_rate) = rates.per_second();
    let f = metrics.registry.gather();
    let watermarks: Vec<f64> = family(&f, "tidemark_watermark_timestamp_ms")
        .iter()
        .map(value)
        .filter(|v| *v > 0.0)
        .collect();
    let lags: Vec<f64> = family(&f, "tidemark_watermark_lag_seconds")
        .iter()
        .map(value)
        .collect();
    let links: Vec<Value> = family(&f, "tidemark_replication_lag_seconds")
        .iter()
        .map(|m| {
            let (from, to) = (label(m, "from"), label(m, "to"));
            let of = |name: &str| {
                family(&f, name)
                    .iter()
                    .find(|x| label(x, "from") == from && label(x, "to") == to)
                    .map_or(0.0, value)
            };
            json!({
                "from": from,
                "to": to,
                "lag_seconds": value(m),
                "split": of("tidemark_split_brain") > 0.0,
                "split_seconds": of("tidemark_split_duration_seconds"),
                "episodes": of("tidemark_split_episodes_total"),
                "held": of("tidemark_split_hold_active") > 0.0,
            })
        })
        .collect();
    let invalid: serde_json::Map<String, Value> = family(&f, "tidemark_invalid_events_total")
        .iter()
        .map(|m| (label(m, "reason").to_string(), json!(value(m))))
        .collect();
    let gap_partitions: Vec<Value> = family(&f, "tidemark_source_gap_records_total")
        .iter()
        .filter(|m| value(m) > 0.0)
        .map(|m| {
            json!({
                "source": label(m, "source"),
                "topic": label(m, "topic"),
                "partition": label(m, "partition"),
                "records": value(m),
            })
        })
        .collect();
    json!({
        "watermark_ms": watermarks.iter().copied().reduce(f64::min),
        "gaps": {
            "total": sum(&f, "tidemark_source_gap_records_total"),
            "partitions": gap_partitions,
        },
        "watermark_lag_seconds": lags.iter().copied().reduce(f64::max),
        "events_in": sum(&f, "tidemark_events_in_total"),
        "events_in_per_second": in_rate,
        "events_out_per_second": out_rate,
        "events_out": sum(&f, "tidemark_events_out_total"),
        "duplicates": sum(&f, "tidemark_duplicates_total"),
        "unique": sum(&f, "tidemark_dedup_unique_total"),
        "conflicts": sum(&f, "tidemark_dedup_conflicts_total"),
        "late": sum(&f, "tidemark_late_events_total"),
        "invalid": sum(&f, "tidemark_invalid_events_total"),
        "invalid_by_reason": invalid,
        "links": links,
        "checkpoint": {
            // The sink that committed least recently speaks for the pipeline.
            "last_success": family(&f, "tidemark_checkpoint_last_success_timestamp_seconds")
                .iter()
                .map(value)
                .reduce(f64::min),
            "committed": family(&f, "tidemark_transactions_total")
                .iter()
                .filter(|m| label(m, "outcome") == "committed")
                .map(value)
                .sum::<f64>(),
            "restore_records": sum(&f, "tidemark_restore_records_total"),
            "restore_ids": sum(&f, "tidemark_restore_ids"),
            "restore_seconds": sum(&f, "tidemark_restore_duration_seconds"),
        },
    })
}
