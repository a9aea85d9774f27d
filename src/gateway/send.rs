//! One producer per region. A send completes when Kafka acknowledges it (idempotent producer,
//! `acks=all`, see `crate::kafka::producer`), never before; librdkafka's delivery report
//! completes the request's oneshot channel.

use super::GatewayError;
use crate::kafka::ClusterConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// What Kafka said about one write.
pub type Acked = Result<(), Failed>;

/// Why a write failed.
#[derive(Debug, Clone)]
pub struct Failed {
    /// What was wrong.
    pub message: String,
    /// Kafka refused the record for its size: a fault of the item, which says nothing of the
    /// region's health and is not re-sent.
    pub too_large: bool,
}

impl Failed {
    /// A failure of the region or of the wait (not of the item).
    pub fn other(message: impl Into<String>) -> Failed {
        Failed {
            message: message.into(),
            too_large: false,
        }
    }

    fn of(e: &KafkaError) -> Failed {
        use rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge;
        Failed {
            message: e.to_string(),
            too_large: e.rdkafka_error_code() == Some(MessageSizeTooLarge),
        }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Completes each write's channel from its delivery report.
pub struct Ack;

impl ClientContext for Ack {
    fn error(&self, error: KafkaError, reason: &str) {
        crate::kafka::log_client_error(&error, reason);
    }
}

impl ProducerContext for Ack {
    type DeliveryOpaque = Box<oneshot::Sender<Acked>>;

    fn delivery(&self, result: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        // The request may have given up waiting (send timeout): nobody to tell, and the copy
        // it wrote meanwhile to the other region carries the same id.
        let _ = tx.send(result.as_ref().map(|_| ()).map_err(|(e, _)| Failed::of(e)));
    }
}

/// The regions' producers.
pub struct Regions {
    /// Region names, in router order.
    pub names: Vec<String>,
    producers: Vec<BaseProducer<Ack>>,
    topic: String,
    stop: Arc<AtomicBool>,
}

impl Regions {
    /// Producers for each `(region, cluster)`, with a thread per producer serving its
    /// delivery reports.
    pub fn open(
        clusters: &[(String, ClusterConfig)],
        topic: &str,
    ) -> Result<Arc<Regions>, GatewayError> {
        let mut producers = Vec::new();
        for (name, cluster) in clusters {
            let mut config = crate::kafka::producer(cluster);
            // The gateway answers within its send timeout; a write still queued after half a
            // minute has been re-sent to the other region long ago and can be given up.
            config.set("message.timeout.ms", "30000");
            // Requests are small and waiting for a batch delays the answer to the producer.
            config.set("linger.ms", "2");
            let p: BaseProducer<Ack> =
                config
                    .create_with_context(Ack)
                    .map_err(|source| GatewayError::Kafka {
                        region: name.clone(),
                        source,
                    })?;
            producers.push(p);
        }
        let regions = Arc::new(Regions {
            names: clusters.iter().map(|(n, _)| n.clone()).collect(),
            producers,
            topic: topic.into(),
            stop: Arc::new(AtomicBool::new(false)),
        });
        for i in 0..regions.producers.len() {
            let r = Arc::clone(&regions);
            std::thread::Builder::new()
                .name(format!("gateway-kafka-{}", regions.names[i]))
                .spawn(move || {
                    while !r.stop.load(Ordering::Relaxed) {
                        r.producers[i].poll(Duration::from_millis(100));
                    }
                })
                .map_err(GatewayError::Io)?;
        }
        Ok(regions)
    }

    /// Queues one write; the receiver completes when Kafka has acknowledged it or given up.
    pub fn send(
        &self,
        region: usize,
        key: &str,
        payload: &[u8],
    ) -> Result<oneshot::Receiver<Acked>, Failed> {
        let (tx, rx) = oneshot::channel();
        let record = BaseRecord::with_opaque_to(&self.topic, Box::new(tx))
            .key(key)
            .payload(payload);
        match self.producers[region].send(record) {
            Ok(()) => Ok(rx),
            Err((e, _)) => Err(Failed::of(&e)),
        }
    }

    /// A metadata request for the topic within `timeout`: the region answers and the topic has
    /// a leader for every partition.
    pub fn probe(&self, region: usize, timeout: Duration) -> bool {
        let Ok(md) = self.producers[region]
            .client()
            .fetch_metadata(Some(&self.topic), timeout)
        else {
            return false;
        };
        md.topics().iter().any(|t| {
            t.name() == self.topic
                && t.error().is_none()
                && !t.partitions().is_empty()
                && t.partitions().iter().all(|p| p.leader() >= 0)
        })
    }

    /// Waits for queued writes, then stops the report threads.
    pub fn close(&self, timeout: Duration) {
        for p in &self.producers {
            let _ = p.flush(timeout);
        }
        self.stop.store(true, Ordering::Relaxed);
    }
}
