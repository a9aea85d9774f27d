//! The one place Kafka clients are configured, so every consumer and producer of a cluster is
//! set up the same way and each setting says why it is there.

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[clusters.NAME]`: one Kafka cluster.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// Extra librdkafka settings for every client of this cluster (for example security). A
    /// value may be a reference, `${env:NAME}` or `${file:PATH}`, replaced by
    /// [`ClusterConfig::resolve`] when the file is loaded.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// A cluster as it may be printed: every secret option's value is hidden.
impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options: BTreeMap<&str, &str> = self
            .options
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret(k) { REDACTED } else { v.as_str() }))
            .collect();
        f.debug_struct("ClusterConfig")
            .field("bootstrap", &self.bootstrap)
            .field("options", &options)
            .finish()
    }
}

/// What a secret's value is printed as.
pub const REDACTED: &str = "[redacted]";

/// Whether a librdkafka setting holds a secret (a password, a private key or what unlocks
/// one, an OAuth client secret). Such values never reach a log, an error or an output.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key == "ssl.key.pem"
        || key == "sasl.oauthbearer.config"
}

/// Why a `${...}` reference in a cluster's options cannot be replaced.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// `${env:NAME}` of a variable that is not set.
    #[error("environment variable {0} is not set")]
    UnsetVariable(String),
    /// `${file:PATH}` of a file that cannot be read.
    #[error("cannot read {path}: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// `${KIND:...}` of another kind (only the kind is kept: the rest may be a secret).
    #[error("unknown reference kind `{0}` (expected ${{env:NAME}} or ${{file:PATH}})")]
    Unknown(String),
}

/// The value a setting stands for: a `${env:NAME}` or `${file:PATH}` reference (the whole
/// value) is replaced by the variable or the file's contents less a trailing newline; any
/// other value is itself. References keep secrets out of the files a team commits.
pub fn resolve_value(value: &str) -> Result<String, ReferenceError> {
    let Some(inner) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) else {
        return Ok(value.to_string());
    };
    if let Some(name) = inner.strip_prefix("env:") {
        return std::env::var(name).map_err(|_| ReferenceError::UnsetVariable(name.into()));
    }
    if let Some(path) = inner.strip_prefix("file:") {
        return std::fs::read_to_string(path)
            .map(|text| text.strip_suffix('\n').unwrap_or(&text).to_string())
            .map_err(|e| ReferenceError::Unreadable {
                path: path.into(),
                reason: e.to_string(),
            });
    }
    let kind = inner.split(':').next().unwrap_or_default();
    Err(ReferenceError::Unknown(kind.chars().take(16).collect()))
}

impl ClusterConfig {
    /// A cluster given only by its bootstrap servers (the command-line tools' `--bootstrap`).
    pub fn at(bootstrap: &str) -> ClusterConfig {
        ClusterConfig {
            bootstrap: bootstrap.into(),
            options: BTreeMap::new(),
        }
    }

    /// Replaces every reference among the options by what it stands for, and returns the
    /// options that could not be resolved, each with why.
    pub fn resolve(&mut self) -> Vec<(String, ReferenceError)> {
        let mut failed = Vec::new();
        for (key, value) in self.options.iter_mut() {
            match resolve_value(value) {
                Ok(v) => *value = v,
                Err(e) => failed.push((key.clone(), e)),
            }
        }
        failed
    }
}

/// How client-level errors are logged. librdkafka retries transport and leadership errors
/// itself, so they are warnings; end-of-partition is not an error at all. ERROR is kept for
/// data at risk, which the sinks report themselves.
pub fn log_client_error(error: &KafkaError, reason: &str) {
    if matches!(
        error,
        KafkaError::PartitionEOF(_)
            | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
    ) {
        return;
    }
    tracing::warn!(%error, reason, "kafka client");
}

/// A context that only changes how errors are logged.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(&error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for Quiet {}

/// Settings shared by every client of `cluster` (before the cluster's own `options`).
fn base(cluster: &ClusterConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cluster.bootstrap);
    // Stats feed the per-partition consumer-lag and producer-queue gauges.
    c.set("statistics.interval.ms", "5000");
    c
}

/// The cluster's own `options` go on last, so a user's setting always wins over ours.
fn with_options(mut c: ClientConfig, cluster: &ClusterConfig) -> ClientConfig {
    for (k, v) in &cluster.options {
        c.set(k, v);
    }
    c
}

/// A consumer that never joins a group rebalance: partitions are assigned by tidemark and the
/// group id is used only to store offsets.
pub fn consumer(cluster: &ClusterConfig, group_id: &str) -> ClientConfig {
    let mut c = base(cluster);
    // Offsets are stored under this group, but `assign` (not `subscribe`) is used, so the group
    // coordinator never moves partitions between workers.
    c.set("group.id", group_id);
    // A missing topic must surface as an error, not be created empty with broker defaults.
    c.set("allow.auto.create.topics", "false");
    // We commit behind the sink frontier; an automatic commit could run ahead of durability.
    c.set("enable.auto.commit", "false");
    // Likewise, offsets are only stored by explicit commits.
    c.set("enable.auto.offset.store", "false");
    // End-of-partition events tell the watermark that a partition is caught up (and may go idle).
    c.set("enable.partition.eof", "true");
    // Committed offsets of a restarted job must reflect only durable work.
    c.set("isolation.level", "read_committed");
    // Enough prefetch to keep a worker busy between polls without hoarding memory per partition.
    c.set("queued.max.messages.kbytes", "16384");
    // A partition fetch returns as soon as any data is there; latency matters more than batching
    // at the source because the watermark waits for the slowest partition.
    c.set("fetch.wait.max.ms", "50");
    with_options(c, cluster)
}

/// A pipeline source's consumer: [`consumer`], and an offset out of range is an error the
/// source handles (it logs and counts the gap, see `sources::kafka::OnGap`), never a silent
/// jump.
pub fn source_consumer(cluster: &ClusterConfig, group_id: &str) -> ClientConfig {
    let mut c = consumer(cluster, group_id);
    // librdkafka's default ("latest") would skip to the end of a partition without a trace.
    c.set("auto.offset.reset", "error");
    with_options(c, cluster)
}

/// An admin client, for the one topic tidemark creates itself (`tidemark reconcile`'s
/// corrections topic); the pipeline's own topics are the operator's to create.
pub fn admin(cluster: &ClusterConfig) -> ClientConfig {
    with_options(base(cluster), cluster)
}

/// An idempotent producer with `acks=all`: a write is acknowledged only once every in-sync
/// replica has it, and retries never duplicate or reorder within a partition.
pub fn producer(cluster: &ClusterConfig) -> ClientConfig {
    let mut c = base(cluster);
    // Exactly one copy per send even when librdkafka retries, and order kept per partition.
    c.set("enable.idempotence", "true");
    // Durable means every in-sync replica has it, not just the leader.
    c.set("acks", "all");
    // Batch for throughput; the reorder operator already releases events in bursts per watermark
    // step, so a few ms of linger adds little latency.
    c.set("linger.ms", "5");
    // Large batches amortise per-request cost; the Kafka client is most of the per-event CPU.
    c.set("batch.size", "1000000");
    // Room for a burst released by a watermark step without blocking the worker.
    c.set("queue.buffering.max.messages", "1000000");
    // Bounded retry time: after this the delivery report fails and the job stops with an error
    // instead of waiting forever.
    c.set("message.timeout.ms", "120000");
    // lz4 is cheap to compress and log lines compress well.
    c.set("compression.type", "lz4");
    with_options(c, cluster)
}

/// The producer of one exactly-once Kafka sink on one worker: [`producer`] writing in
/// transactions under a `transactional.id` that stays the same across restarts, so a restarted
/// pipeline fences its predecessor and aborts whatever it left open.
pub fn transactional_producer(cluster: &ClusterConfig, transactional_id: &str) -> ClientConfig {
    let mut c = producer(cluster);
    c.set("transactional.id", transactional_id);
    // How long a transaction may stay open before the broker aborts it. It must outlast a
    // broker restart (a JVM start on a busy machine takes most of a minute), since a commit
    // cannot finish while the coordinator is down and a transaction that times out stops the
    // job. A crashed pipeline that is not restarted holds every read_committed reader of the
    // output (the last stable offset) back for this long; its restart aborts at once. Far
    // below the broker's transaction.max.timeout.ms (15 minutes by default).
    c.set("transaction.timeout.ms", "120000");
    // librdkafka requires a message to time out within its transaction; a delivery that fails
    // fails the commit, and the job stops and resumes from the last checkpoint.
    c.set("message.timeout.ms", "110000");
    with_options(c, cluster)
}

/// Sends `record`, serving delivery reports while the producer's queue is full: a full queue
/// means wait, not fail.
pub fn send_when_room<'a, C, K, P>(
    producer: &rdkafka::producer::BaseProducer<C>,
    mut record: rdkafka::producer::BaseRecord<'a, K, P, C::DeliveryOpaque>,
) -> Result<(), KafkaError>
where
    C: rdkafka::producer::ProducerContext,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((e, back))
                if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
            {
                producer.poll(std::time::Duration::from_millis(20));
                record = back;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Creates `topic` with as many partitions as `like` when it does not exist yet (for the topics
/// tidemark's own tools write: corrections, benchmark outputs).
pub fn ensure_topic(
    cluster: &ClusterConfig,
    like: &str,
    topic: &str,
    replication: i32,
) -> Result<(), KafkaError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer<Quiet> = consumer(cluster, "tidemark-admin").create_with_context(Quiet)?;
    let count = |t: &str| -> Result<usize, KafkaError> {
        let md = c.fetch_metadata(Some(t), std::time::Duration::from_secs(10))?;
        Ok(md
            .topics()
            .iter()
            .find(|x| x.name() == t && x.error().is_none())
            .map_or(0, |x| x.partitions().len()))
    };
    if count(topic)? > 0 {
        return Ok(());
    }
    let parts = count(like)?.max(1) as i32;
    let admin: AdminClient<_> = admin(cluster).create()?;
    let new = NewTopic::new(topic, parts, TopicReplication::Fixed(replication));
    let wait = AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(30)));
    // The admin client answers through a future; a small runtime of our own waits for it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| KafkaError::AdminOpCreation(e.to_string()))?;
    for result in rt.block_on(admin.create_topics([&new], &wait))? {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    Ok(())
}

/// A producer context that counts delivery reports, for tools that send a known number of
/// records and then check that every one was acknowledged.
#[derive(Default)]
pub struct DeliveryCount {
    /// Records acknowledged.
    pub delivered: std::sync::atomic::AtomicU64,
    /// Records that failed for good.
    pub failed: std::sync::atomic::AtomicU64,
}

impl ClientContext for DeliveryCount {}

impl rdkafka::producer::ProducerContext for DeliveryCount {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        use std::sync::atomic::Ordering;
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::SeqCst),
            Err((e, _)) => {
                tracing::error!(error = %e, "record not delivered");
                self.failed.fetch_add(1, Ordering::SeqCst)
            }
        };
    }
}

/// A record's headers as text (values lossily decoded as UTF-8), for the tools that read
/// tidemark's outputs back.
pub fn headers_of<M: rdkafka::Message>(m: &M) -> std::collections::BTreeMap<String, String> {
    use rdkafka::message::Headers;
    let mut out = std::collections::BTreeMap::new();
    if let Some(h) = m.headers() {
        for header in h.iter() {
            let v = header
                .value
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            out.insert(header.key.to_string(), v.into_owned());
        }
    }
    out
}

/// Every partition of `topic` with its low and high offsets; empty when the topic does not
/// exist.
pub fn partition_offsets<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
) -> Result<Vec<(i32, i64, i64)>, KafkaError> {
    use rdkafka::consumer::Consumer;
    let wait = std::time::Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(topic), wait)?;
    let mut out = Vec::new();
    for t in md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
    {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), wait)?;
            out.push((p.id(), low, high));
        }
    }
    Ok(out)
}

/// librdkafka's `message.max.bytes` when a cluster's options do not set it.
const PRODUCER_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// The largest record (payload, key and headers) tidemark's producers send to `cluster`: their
/// `message.max.bytes` (a larger record fails at `send`).
pub fn producer_record_limit(cluster: &ClusterConfig) -> usize {
    cluster
        .options
        .get("message.max.bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(PRODUCER_MESSAGE_MAX_BYTES)
}

/// How long the one DescribeConfigs request of a start may take. A broker answers it in
/// milliseconds; one that does not (librdkafka's mock cluster never does) must not hold the
/// start for long, since the producer's limit is the one that binds with Kafka's defaults.
const DESCRIBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The `max.message.bytes` of each of `topics` on `cluster` (a larger record the broker
/// refuses), in one DescribeConfigs request. A topic whose setting cannot be read (a cluster
/// that does not answer in time, or an ACL that forbids it) is left out with a warning, and
/// the producer's limit stands alone for it.
pub fn topic_record_limits(
    cluster: &ClusterConfig,
    topics: &[&str],
) -> Result<BTreeMap<String, usize>, KafkaError> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let mut limits = BTreeMap::new();
    if topics.is_empty() {
        return Ok(limits);
    }
    let admin: AdminClient<_> = admin(cluster).create()?;
    let wait = AdminOptions::new().request_timeout(Some(DESCRIBE_TIMEOUT));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| KafkaError::AdminOpCreation(e.to_string()))?;
    let specs: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    match rt.block_on(admin.describe_configs(&specs, &wait)) {
        Ok(results) => {
            for (topic, result) in topics.iter().zip(results) {
                let limit = match &result {
                    Ok(resource) => resource
                        .get("max.message.bytes")
                        .and_then(|e| e.value.as_deref())
                        .and_then(|v| v.parse::<usize>().ok()),
                    Err(_) => None,
                };
                match limit {
                    Some(l) => {
                        limits.insert((*topic).to_string(), l);
                    }
                    None => {
                        tracing::warn!(topic, result = ?result.err(), "cannot read the topic's max.message.bytes; the producer's limit stands alone")
                    }
                }
            }
        }
        Err(e) => {
            tracing::warn!(?topics, error = %e, "cannot read the topics' max.message.bytes; the producer's limit stands alone")
        }
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_replaced_and_plain_values_kept() {
        std::env::set_var("TIDEMARK_TEST_SECRET_REF", "s3cret");
        assert_eq!(
            resolve_value("${env:TIDEMARK_TEST_SECRET_REF}").unwrap(),
            "s3cret"
        );
        assert_eq!(resolve_value("SASL_SSL").unwrap(), "SASL_SSL");
        assert_eq!(resolve_value("${env:").unwrap(), "${env:");
        let dir = std::env::temp_dir().join(format!("tidemark-ref-{}", std::process::id()));
        std::fs::write(&dir, "from-a-file\n").unwrap();
        let reference = format!("${{file:{}}}", dir.display());
        assert_eq!(resolve_value(&reference).unwrap(), "from-a-file");
        std::fs::remove_file(&dir).unwrap();
        assert!(matches!(
            resolve_value(&reference),
            Err(ReferenceError::Unreadable { .. })
        ));
        assert_eq!(
            resolve_value("${env:TIDEMARK_TEST_UNSET_VARIABLE}"),
            Err(ReferenceError::UnsetVariable(
                "TIDEMARK_TEST_UNSET_VARIABLE".into()
            ))
        );
        // Only the kind of an unknown reference is repeated, never the rest of the value.
        let e = resolve_value("${vault:hunter2}").unwrap_err().to_string();
        assert!(e.contains("`vault`") && !e.contains("hunter2"), "{e}");
    }

    /// librdkafka refuses a security protocol or mechanism it was built without when a client
    /// is created, before any connection: each one a secured cluster needs is accepted.
    #[test]
    fn tls_and_sasl_are_built_in() {
        use rdkafka::producer::BaseProducer;
        let secured = |protocol: &str, mechanism: Option<&str>| {
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", "127.0.0.1:9")
                .set("security.protocol", protocol);
            if let Some(m) = mechanism {
                c.set("sasl.mechanism", m)
                    .set("sasl.username", "u")
                    .set("sasl.password", "p");
            }
            c.create::<BaseProducer>().map(drop)
        };
        for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] {
            let made = secured("SASL_SSL", Some(mechanism));
            assert!(made.is_ok(), "SASL_SSL with {mechanism}: {made:?}");
        }
        assert!(secured("SSL", None).is_ok(), "TLS");
        // The check is real: a mechanism that is not built in is refused.
        assert!(secured("SASL_SSL", Some("GSSAPI")).is_err());
    }

    #[test]
    fn a_cluster_prints_without_its_secrets() {
        let mut c = ClusterConfig::at("127.0.0.1:9092");
        for (k, v) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.username", "tidemark"),
            ("sasl.password", "hunter2"),
            ("ssl.key.password", "keypass"),
            ("ssl.key.pem", "-----BEGIN PRIVATE KEY-----"),
            ("sasl.oauthbearer.client.secret", "oauth-secret"),
        ] {
            c.options.insert(k.into(), v.into());
        }
        let printed = format!("{c:?}");
        for secret in ["hunter2", "keypass", "PRIVATE KEY", "oauth-secret"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("SASL_SSL") && printed.contains("tidemark"));
        assert_eq!(printed.matches(REDACTED).count(), 4);
    }
}
