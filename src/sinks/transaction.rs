//! Exactly-once Kafka sinks: the transactional producers of one process, made and fenced before
//! any worker starts, and what a failed transaction means.
//!
//! Each Kafka sink on each worker writes through its own producer, whose `transactional.id` is
//! `tidemark-<pipeline>-<sink>-<worker>`: the same after any restart, so `init_transactions`
//! fences a predecessor that may still be alive and aborts whatever transaction it left open.
//! That happens here, before the restore reads the committed output: a transaction left open
//! by a crash would otherwise hold the last stable offset back and hide later commits.

use super::kafka::{Deliveries, DeliveryContext};
use super::SinkError;
use crate::kafka::ClusterConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long `init_transactions` and a commit may take before the job stops: a coordinator
/// that cannot be reached for this long is an error, never a hang.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Worker slots fenced past the ones a run uses, so that a restart with fewer workers than the
/// run before it still aborts the transactions that run's extra workers left open (up to this
/// many workers in all).
pub const FENCED_SLOTS: usize = 8;

/// The `transactional.id` of `sink` on global worker `worker` of `pipeline`.
pub fn transactional_id(pipeline: &str, sink: &str, worker: usize) -> String {
    format!("tidemark-{pipeline}-{sink}-{worker}")
}

/// A transactional producer with its delivery reports.
pub type Transactional = (BaseProducer<DeliveryContext>, Arc<Deliveries>);

/// The transactional producers of this process's workers, by (sink, global worker index),
/// each taken once by the sink that uses it.
#[derive(Default)]
pub struct Producers {
    ready: Mutex<BTreeMap<(String, usize), Transactional>>,
}

impl Producers {
    /// Makes and fences the producers of `sinks` (name, cluster) for global workers `workers`,
    /// then fences the slots in `fence` (other workers' slots) without keeping them.
    pub fn prepare(
        pipeline: &str,
        sinks: &[(&str, &ClusterConfig)],
        workers: std::ops::Range<usize>,
        fence: std::ops::Range<usize>,
    ) -> Result<Producers, SinkError> {
        // Each fence is a round trip to the transaction coordinator, which writes its log;
        // they are independent, so they run at once rather than one after another.
        let slots: Vec<(&str, &ClusterConfig, usize, bool)> = sinks
            .iter()
            .flat_map(|&(sink, cluster)| {
                let keep = workers.clone().map(move |w| (sink, cluster, w, true));
                let fenced = fence.clone().map(move |w| (sink, cluster, w, false));
                keep.chain(fenced)
            })
            .collect();
        type Opened = Result<Option<((String, usize), Transactional)>, SinkError>;
        let opened: Vec<Opened> = std::thread::scope(|s| {
            let handles: Vec<_> = slots
                .iter()
                .map(|&(sink, cluster, worker, keep)| {
                    s.spawn(move || {
                        let made = open(pipeline, sink, cluster, worker)?;
                        Ok(keep.then(|| ((sink.to_string(), worker), made)))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a fencing thread does not panic"))
                .collect()
        });
        let mut ready = BTreeMap::new();
        for o in opened {
            if let Some((key, made)) = o? {
                ready.insert(key, made);
            }
        }
        Ok(Producers {
            ready: Mutex::new(ready),
        })
    }

    /// The producer of `sink` on `worker`, begun on its first transaction.
    pub fn take(&self, sink: &str, worker: usize) -> Option<Transactional> {
        self.ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(sink.to_string(), worker))
    }
}

/// Creates the producer of `sink` on `worker` and fences its predecessors.
fn open(
    pipeline: &str,
    sink: &str,
    cluster: &ClusterConfig,
    worker: usize,
) -> Result<Transactional, SinkError> {
    let id = transactional_id(pipeline, sink, worker);
    let deliveries = Arc::new(Deliveries::default());
    let producer: BaseProducer<DeliveryContext> =
        crate::kafka::transactional_producer(cluster, &id)
            .create_with_context(DeliveryContext::new(Arc::clone(&deliveries)))
            .map_err(|source| SinkError::Kafka {
                sink: sink.into(),
                what: "create transactional producer".into(),
                source,
            })?;
    producer
        .init_transactions(TRANSACTION_TIMEOUT)
        .map_err(|e| SinkError::Transaction {
            sink: sink.into(),
            message: describe(&id, "initialise transactions", &e),
        })?;
    Ok((producer, deliveries))
}

/// One line that says what failed, and what it means for the job.
pub fn describe(transactional_id: &str, what: &str, e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::Fenced) => format!(
            "{what}: fenced: another instance of this pipeline has started with transactional.id \"{transactional_id}\"; this one stops, and only the newer writes ({e})"
        ),
        Some(RDKafkaErrorCode::InvalidProducerEpoch) => format!(
            "{what}: fenced (producer epoch): another instance of this pipeline has started with transactional.id \"{transactional_id}\"; this one stops ({e})"
        ),
        _ => format!(
            "{what} (transactional.id \"{transactional_id}\"): {e}; the job stops, and a restart resumes from the last checkpoint"
        ),
    }
}
