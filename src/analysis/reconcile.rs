//! `tidemark reconcile`: late events whose event-time window has closed, written once to a
//! corrections topic so that downstream indexes can patch those windows.
//!
//! A window `[start, start + window)` is closed once the pipeline's output has moved past its
//! end: the greatest event time on the ordered topic, or the watermark a late event itself
//! missed, is at or beyond it. A late event is written unless its id is already on the ordered
//! topic (dedup keeps that from happening, but a restart without dedup state can) or already
//! on the corrections topic. The corrections topic is read before anything is written, so a
//! second run writes nothing new. Runs must not overlap: two at once could both write an id.

use super::AnalysisError;
use crate::component::Millis;
use crate::event::decode;
use crate::event::EventFormat;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

fn millis(s: &str) -> Result<Millis, String> {
    Millis::parse(s)
}

/// Options of `tidemark reconcile`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReconcileOptions {
    /// Bootstrap servers of the cluster with the pipeline's output topics.
    #[arg(long)]
    pub bootstrap: String,
    /// The late topic.
    #[arg(long, default_value = "log-events-late")]
    pub late_topic: String,
    /// The ordered topic.
    #[arg(long, default_value = "log-events-ordered")]
    pub ordered_topic: String,
    /// Where corrections go (created with the late topic's partition count if missing).
    #[arg(long, default_value = "log-events-corrections")]
    pub corrections_topic: String,
    /// Replication factor of the corrections topic when it has to be created.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,
    /// Event-time windows, aligned to the epoch: a correction names the window it patches.
    #[arg(long, default_value = "1m", value_parser = millis)]
    pub window: Millis,
    /// The payload field holding the event id.
    #[arg(long, default_value = "eventId")]
    pub id_field: String,
    /// The payload field holding the event time.
    #[arg(long, default_value = "timestamp")]
    pub time_field: String,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reconciled {
    /// Late records read.
    pub late: u64,
    /// Skipped: the id is on the ordered topic.
    pub on_ordered: u64,
    /// Skipped: the id is already on the corrections topic (or twice on the late topic).
    pub already_corrected: u64,
    /// Skipped for now: the window is still open.
    pub window_open: u64,
    /// Skipped: no readable id and time, by reason.
    pub unreadable: BTreeMap<String, u64>,
    /// Written to the corrections topic.
    pub written: u64,
    /// Windows that received corrections.
    pub windows: u64,
}

impl std::fmt::Display for Reconciled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "late records read      {:>10}", self.late)?;
        writeln!(f, "already on ordered     {:>10}", self.on_ordered)?;
        writeln!(f, "already corrected      {:>10}", self.already_corrected)?;
        writeln!(f, "window still open      {:>10}", self.window_open)?;
        for (reason, n) in &self.unreadable {
            writeln!(f, "unreadable: {reason:<18} {n:>6}")?;
        }
        writeln!(f, "written                {:>10}", self.written)?;
        write!(f, "windows patched        {:>10}", self.windows)
    }
}

/// Runs `tidemark reconcile`.
pub fn reconcile(o: &ReconcileOptions) -> Result<Reconciled, AnalysisError> {
    if o.window.0 == 0 {
        return Err(AnalysisError::Usage("--window must be above zero".into()));
    }
    let format = EventFormat {
        id_field: o.id_field.clone(),
        time_field: o.time_field.clone(),
        ..EventFormat::default()
    };
    let read = |topic: &str| -> Result<Vec<crate::tools::topic::ReadRecord>, AnalysisError> {
        Ok(crate::tools::topic::read_topic(&o.bootstrap, topic)?)
    };

    // What the ordered topic holds, and how far its event time has got.
    let mut done: HashSet<String> = HashSet::new();
    let mut frontier = 0u64;
    for (_, payload, _) in read(&o.ordered_topic)? {
        if let Ok(d) = decode(&payload, &format) {
            frontier = frontier.max(d.time);
            done.insert(d.id.as_str(&payload).to_string());
        }
    }
    let mut corrected: HashSet<String> = HashSet::new();
    for (_, payload, _) in read(&o.corrections_topic)? {
        if let Ok(d) = decode(&payload, &format) {
            corrected.insert(d.id.as_str(&payload).to_string());
        }
    }

    let late = read(&o.late_topic)?;
    let mut r = Reconciled {
        late: late.len() as u64,
        ..Reconciled::default()
    };
    let mut out = Vec::new();
    let mut windows = HashSet::new();
    for (_, payload, headers) in late {
        let d = match decode(&payload, &format) {
            Ok(d) => d,
            Err(e) => {
                *r.unreadable
                    .entry(e.reason.as_str().to_string())
                    .or_default() += 1;
                continue;
            }
        };
        let id = d.id.as_str(&payload).to_string();
        let start = d.time - d.time % o.window.0;
        let end = start + o.window.0;
        let missed = headers
            .get("tidemark-watermark")
            .and_then(|w| w.parse::<u64>().ok())
            .unwrap_or(0);
        if done.contains(&id) {
            r.on_ordered += 1;
        } else if end > frontier.max(missed) {
            r.window_open += 1;
        } else if !corrected.insert(id.clone()) {
            r.already_corrected += 1;
        } else {
            windows.insert(start);
            out.push((id, payload, headers, start, end));
        }
    }
    if out.is_empty() {
        return Ok(r);
    }

    let cluster = crate::kafka::tool_cluster(&o.bootstrap)?;
    crate::kafka::ensure_topic(
        &cluster,
        &o.late_topic,
        &o.corrections_topic,
        o.replication_factor,
    )?;
    let producer: BaseProducer<crate::kafka::DeliveryCount> = crate::kafka::producer(&cluster)
        .create_with_context(crate::kafka::DeliveryCount::default())?;
    for (id, payload, headers, start, end) in &out {
        let (start, end) = (start.to_string(), end.to_string());
        let mut h = OwnedHeaders::new();
        for (k, v) in headers.iter().filter(|(k, _)| k.starts_with("tidemark-")) {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        h = h
            .insert(Header {
                key: "tidemark-window-start",
                value: Some(start.as_bytes()),
            })
            .insert(Header {
                key: "tidemark-window-end",
                value: Some(end.as_bytes()),
            });
        let record = BaseRecord::to(&o.corrections_topic)
            .key(id.as_str())
            .payload(payload.as_slice())
            .headers(h);
        crate::kafka::send_when_room(&producer, record)?;
        producer.poll(Duration::ZERO);
    }
    // message.timeout.ms bounds every record, so flush ends with each one reported.
    producer.flush(Duration::from_secs(150))?;
    let ctx = producer.context();
    let failed = ctx.failed.load(Ordering::SeqCst);
    r.written = ctx.delivered.load(Ordering::SeqCst);
    if failed > 0 || r.written != out.len() as u64 {
        return Err(AnalysisError::Usage(format!(
            "{failed} of {} corrections failed to deliver ({} delivered); run again to write the rest",
            out.len(),
            r.written
        )));
    }
    r.windows = windows.len() as u64;
    Ok(r)
}
