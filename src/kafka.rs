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
    /// What messages call it: its name in the file (`NAME`), or the address a tool was given.
    #[serde(skip)]
    pub name: String,
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
            .field("name", &self.name)
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

/// The clusters of the tools' `--cluster-config` file, set once by the command line.
static TOOL_CLUSTERS: std::sync::OnceLock<BTreeMap<String, ClusterConfig>> =
    std::sync::OnceLock::new();

/// The clusters a tool's `--bootstrap` may name (`--cluster-config FILE`): the same
/// `[clusters.NAME]` tables as a pipeline file, so a tool connects as the pipeline does.
pub fn use_tool_clusters(clusters: BTreeMap<String, ClusterConfig>) {
    let _ = TOOL_CLUSTERS.set(clusters);
}

/// The clusters [`tool_cluster`] has already connected to.
static CHECKED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The cluster a tool's `--bootstrap ARG` means, checked once with [`preflight`]: a cluster of
/// `--cluster-config` named ARG, or whose bootstrap servers include ARG; otherwise a plaintext
/// cluster at ARG.
pub fn tool_cluster(arg: &str) -> Result<ClusterConfig, Refusal> {
    let cluster = TOOL_CLUSTERS
        .get()
        .and_then(|clusters| {
            clusters.get(arg).or_else(|| {
                clusters
                    .values()
                    .find(|c| c.bootstrap.split(',').any(|a| a.trim() == arg))
            })
        })
        .cloned()
        .unwrap_or_else(|| ClusterConfig::at(arg));
    let mut checked = CHECKED.lock().unwrap_or_else(|e| e.into_inner());
    if !checked.contains(&cluster.name) {
        preflight(&cluster, &[])?;
        checked.push(cluster.name.clone());
    }
    Ok(cluster)
}

impl ClusterConfig {
    /// A plaintext cluster given only by its bootstrap servers.
    pub fn at(bootstrap: &str) -> ClusterConfig {
        ClusterConfig {
            name: bootstrap.into(),
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

/// A cluster that will not serve tidemark as configured. librdkafka retries these for ever, as
/// if the cluster were down; tidemark stops instead, naming the cluster and the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// SASL authentication failed: a wrong user, password or mechanism.
    #[error("cluster {cluster}: authentication failed: {detail} (check sasl.mechanism, sasl.username and sasl.password)")]
    Authentication {
        /// The cluster.
        cluster: String,
        /// What librdkafka said.
        detail: String,
    },
    /// The TLS handshake failed: a broker certificate that does not verify, or a client
    /// certificate the broker refuses.
    #[error("cluster {cluster}: TLS failed: {detail} (check ssl.ca.location, and ssl.certificate.location and ssl.key.location for mutual TLS)")]
    Tls {
        /// The cluster.
        cluster: String,
        /// What librdkafka said.
        detail: String,
    },
    /// TLS was expected and the broker answered in plaintext, throughout a start.
    #[error("cluster {cluster}: TLS was expected, and the broker does not speak it: {detail} (a plaintext listener; use the cluster's TLS listener, or set security.protocol to match)")]
    Plaintext {
        /// The cluster.
        cluster: String,
        /// What librdkafka said.
        detail: String,
    },
    /// An ACL denies what tidemark must do.
    #[error("cluster {cluster}: not authorized to {operation} {resource} (an ACL of the cluster denies it to this principal)")]
    NotAuthorized {
        /// The cluster.
        cluster: String,
        /// The operation (Read, Write, Describe, ...).
        operation: String,
        /// The resource, for example `topic log-events`.
        resource: String,
    },
}

/// What a client-level error says of the cluster's will to serve us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Nothing: an ordinary error, retried inside librdkafka.
    None,
    /// Authentication failed: never transient.
    Authentication,
    /// TLS failed (a certificate, a protocol): never transient.
    Tls,
    /// A TLS handshake cut off at once, as a plaintext listener does. A broker restarting in
    /// the middle of a handshake looks the same, so this counts only when nothing else was heard
    /// during a whole start ([`preflight`]).
    Plaintext,
}

fn verdict(error: &KafkaError, reason: &str) -> Verdict {
    use rdkafka::types::RDKafkaErrorCode as C;
    match error.rdkafka_error_code() {
        Some(C::Authentication | C::SaslAuthenticationFailed) => Verdict::Authentication,
        Some(C::SSL) => Verdict::Tls,
        // A transport failure is a refusal only by what it says.
        Some(C::BrokerTransportFailure) => said(reason),
        _ => Verdict::None,
    }
}

/// What a broker failure's text says, the one table for error events and for librdkafka's
/// FAIL log lines alike.
fn said(message: &str) -> Verdict {
    if is_authentication_refused(message) {
        Verdict::Authentication
    } else if message.contains("certificate verify failed")
        || message.contains("Failed to verify broker certificate")
        // An alert the broker sent: it refused the handshake, most often this client's
        // certificate under mutual TLS ("bad certificate", "certificate required"). A
        // plaintext listener or a restarting broker sends none.
        || message.contains("SSL alert number")
    {
        Verdict::Tls
    } else if message.contains("SSL handshake failed") || message.contains("SSL_HANDSHAKE") {
        // "SSL handshake failed: Disconnected", or "Disconnected ... in state SSL_HANDSHAKE":
        // the broker closed the connection on the client's hello.
        Verdict::Plaintext
    } else {
        Verdict::None
    }
}

/// The clusters this process has made clients for, by each of their bootstrap addresses: a
/// client's error names a broker, and a refusal must name the cluster.
static NAMES: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

fn remember(cluster: &ClusterConfig) {
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    for address in cluster.bootstrap.split(',').map(str::trim) {
        if !names.iter().any(|(a, _)| a == address) {
            names.push((address.to_string(), cluster.name.clone()));
        }
    }
}

/// The cluster a client error is about: the one whose bootstrap address the error names.
fn cluster_named_in(reason: &str) -> String {
    let names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    names
        .iter()
        .find(|(address, _)| reason.contains(address.as_str()))
        .map(|(address, name)| {
            if name.is_empty() {
                address.clone()
            } else {
                name.clone()
            }
        })
        .unwrap_or_else(|| "(unknown)".into())
}

fn refusal(verdict: Verdict, cluster: String, reason: &str) -> Option<Refusal> {
    let detail = reason.to_string();
    match verdict {
        Verdict::None => None,
        Verdict::Authentication => Some(Refusal::Authentication { cluster, detail }),
        Verdict::Tls => Some(Refusal::Tls { cluster, detail }),
        Verdict::Plaintext => Some(Refusal::Plaintext { cluster, detail }),
    }
}

/// The first authentication or TLS failure any client of this process met: a running job
/// stops on it rather than retry for ever against a cluster that will not let it in.
static REFUSED: std::sync::Mutex<Option<Refusal>> = std::sync::Mutex::new(None);
/// Whether [`REFUSED`] holds one: workers ask between steps, and mostly the answer is no.
static ANY_REFUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The refusal that stops this process, if a client has met one.
pub fn refused() -> Option<Refusal> {
    if !ANY_REFUSED.load(std::sync::atomic::Ordering::Acquire) {
        return None;
    }
    REFUSED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// How client-level errors are logged. librdkafka retries transport and leadership errors
/// itself, so they are warnings; end-of-partition is not an error at all. ERROR is kept for
/// data at risk, which the sinks report themselves, and for a cluster's refusal, which is
/// also kept for [`refused`].
pub fn log_client_error(error: &KafkaError, reason: &str) {
    if matches!(
        error,
        KafkaError::PartitionEOF(_)
            | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
    ) {
        return;
    }
    let v = verdict(error, reason);
    if matches!(v, Verdict::Authentication | Verdict::Tls) {
        if let Some(r) = refusal(v, cluster_named_in(reason), reason) {
            tracing::error!(refusal = %r, "kafka client refused");
            REFUSED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(r);
            ANY_REFUSED.store(true, std::sync::atomic::Ordering::Release);
            return;
        }
    }
    tracing::warn!(%error, reason, "kafka client");
}

/// For the tools whose errors are the client's: the refusal's whole message is kept.
impl From<Refusal> for KafkaError {
    fn from(refusal: Refusal) -> KafkaError {
        KafkaError::ClientCreation(refusal.to_string())
    }
}

/// What a refused request of `cluster` was not authorized to do, when `code` is an
/// authorization error.
pub fn not_authorized(
    cluster: &str,
    code: Option<rdkafka::types::RDKafkaErrorCode>,
    operation: &str,
    resource: &str,
) -> Option<Refusal> {
    use rdkafka::types::RDKafkaErrorCode as C;
    let (operation, resource) = match code? {
        C::TopicAuthorizationFailed => (operation.to_string(), resource.to_string()),
        C::GroupAuthorizationFailed => (operation.to_string(), "its consumer group".to_string()),
        C::TransactionalIdAuthorizationFailed => {
            ("Write".to_string(), "its transactional.id".to_string())
        }
        C::ClusterAuthorizationFailed => (operation.to_string(), "the cluster".to_string()),
        _ => return None,
    };
    Some(Refusal::NotAuthorized {
        cluster: cluster.to_string(),
        operation,
        resource,
    })
}

/// `error`, or the refusal it is when an ACL of `cluster` denies `operation` on `topic`: a tool's
/// error names what it may not do, not just "Topic authorization failed".
pub fn named_denial(error: KafkaError, cluster: &str, operation: &str, topic: &str) -> KafkaError {
    let resource = format!("topic {topic}");
    match not_authorized(cluster, error.rdkafka_error_code(), operation, &resource) {
        Some(refusal) => refusal.into(),
        None => error,
    }
}

/// [`preflight`] of each cluster with its topics, all at once: a start waits for the slowest
/// cluster, not for their sum. A cluster that does not answer is a warning.
pub fn preflight_all(clusters: &[(&ClusterConfig, Vec<String>)]) -> Result<(), Refusal> {
    let results: Vec<Result<bool, Refusal>> = std::thread::scope(|scope| {
        let running: Vec<_> = clusters
            .iter()
            .map(|(cluster, topics)| scope.spawn(move || preflight(cluster, topics)))
            .collect();
        running
            .into_iter()
            .map(|h| h.join().unwrap_or(Ok(false)))
            .collect()
    });
    for (result, (cluster, _)) in results.into_iter().zip(clusters) {
        if !result? {
            tracing::warn!(cluster = %cluster.name, "no broker answered within {:?}; starting without it", PREFLIGHT_WAIT);
        }
    }
    Ok(())
}

/// Whether a broker failure logged by librdkafka is the broker refusing the credentials or the
/// mechanism. "SASL authentication error: SaslAuthenticateRequest failed: Local: ..." is not:
/// it is the connection failing under the request, which librdkafka also logs at times for a
/// connection it is closing anyway.
fn is_authentication_refused(message: &str) -> bool {
    (message.contains("SASL authentication error")
        && !message.contains("SaslAuthenticateRequest failed")
        && !message.contains("SaslAuthenticateResponse parsing failed"))
        || message.contains("mechanism handshake failed")
}

/// A context that keeps what the cluster said during [`preflight`].
#[derive(Default)]
struct Heard {
    verdicts: std::sync::Mutex<Vec<(Verdict, String)>>,
}

impl Heard {
    fn hear(&self, v: Verdict, reason: &str) {
        if v != Verdict::None {
            self.verdicts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((v, reason.to_string()));
        }
    }
}

impl ClientContext for Heard {
    fn error(&self, error: KafkaError, reason: &str) {
        self.hear(verdict(&error, reason), reason);
    }

    /// A broker's failure is logged by librdkafka's own thread as it happens, while its error
    /// event waits in a queue (and, repeated, is held back for 30 s): the log is what a start
    /// can wait on.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        if fac == "FAIL" {
            // librdkafka's "[thrd:NAME]: " prefix repeats the broker the message names.
            let message = match message.strip_prefix("[thrd:") {
                Some(rest) => rest.split_once("]: ").map_or(message, |(_, m)| m),
                None => message,
            };
            self.hear(said(message), message);
        }
        tracing::debug!(?level, fac, message, "preflight");
    }
}

impl rdkafka::consumer::ConsumerContext for Heard {}

/// How long a start waits for a cluster's first answer. A cluster that is down is not a
/// refusal: the job starts and its sources report the partitions unreachable.
pub const PREFLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects to `cluster` once, as every client of it will, and asks for the metadata of
/// `topics`: a cluster that refuses the credentials or the TLS handshake, or does not speak TLS
/// when it was asked to, or does not let this principal see a topic, is an error that names
/// the cluster and the cause, within [`PREFLIGHT_WAIT`]. Returns whether the cluster answered.
pub fn preflight(cluster: &ClusterConfig, topics: &[String]) -> Result<bool, Refusal> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use std::time::{Duration, Instant};
    let mut config = consumer(cluster, "tidemark-preflight");
    // Only errors on the queue, so draining it reaches every one.
    config.set("statistics.interval.ms", "0");
    let client: BaseConsumer<Heard> = match config.create_with_context(Heard::default()) {
        Ok(c) => c,
        // A setting librdkafka rejects is reported where the client is made for real.
        Err(_) => return Ok(false),
    };
    let deadline = Instant::now() + PREFLIGHT_WAIT;
    let mut plaintext = None;
    loop {
        // librdkafka can answer from no broker at all (an empty cache): that is not an answer.
        let answered = client
            .fetch_metadata(None, Duration::from_millis(500))
            .is_ok_and(|md| !md.brokers().is_empty());
        // Serves the error events that arrived meanwhile (each poll serves one).
        for _ in 0..1000 {
            if client.poll(Duration::ZERO).is_none() {
                break;
            }
        }
        let heard = std::mem::take(
            &mut *client
                .context()
                .verdicts
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for (v, reason) in heard {
            match v {
                Verdict::Plaintext => plaintext = Some(reason),
                _ => {
                    if let Some(r) = refusal(v, cluster.name.clone(), &reason) {
                        return Err(r);
                    }
                }
            }
        }
        if answered {
            break;
        }
        if Instant::now() >= deadline {
            return match plaintext {
                Some(reason) => Err(Refusal::Plaintext {
                    cluster: cluster.name.clone(),
                    detail: reason,
                }),
                None => Ok(false),
            };
        }
    }
    for topic in topics {
        let Ok(md) = client.fetch_metadata(Some(topic.as_str()), Duration::from_secs(5)) else {
            continue;
        };
        for t in md.topics().iter().filter(|t| t.name() == *topic) {
            let code = t.error().map(rdkafka::types::RDKafkaErrorCode::from);
            if let Some(r) =
                not_authorized(&cluster.name, code, "Describe", &format!("topic {topic}"))
            {
                return Err(r);
            }
        }
    }
    Ok(true)
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
    remember(cluster);
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
    for t in md.topics().iter().filter(|t| t.name() == topic) {
        let code = t.error().map(rdkafka::types::RDKafkaErrorCode::from);
        match code {
            None => {}
            // Not there, as a reader of a missing topic expects.
            Some(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition) => continue,
            // Anything else (an ACL) must not pass for an empty topic.
            Some(code) => return Err(KafkaError::MetadataFetch(code)),
        }
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

    /// Authentication and TLS failures are refusals at once; a handshake cut off is one only
    /// when it lasts a whole start; anything else is retried.
    #[test]
    fn refusals_are_told_from_outages() {
        use rdkafka::types::RDKafkaErrorCode as C;
        let global = |code| KafkaError::Global(code);
        let auth = "sasl_ssl://127.0.0.1:19092/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512";
        assert_eq!(
            verdict(&global(C::Authentication), auth),
            Verdict::Authentication
        );
        let tls = "ssl://127.0.0.1:19092/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed";
        assert_eq!(verdict(&global(C::SSL), tls), Verdict::Tls);
        let plain = "sasl_ssl://127.0.0.1:19093/bootstrap: SSL handshake failed: Disconnected: SSL connection closed by peer: connecting to a PLAINTEXT broker listener?";
        assert_eq!(
            verdict(&global(C::BrokerTransportFailure), plain),
            Verdict::Plaintext
        );
        // Mutual TLS without a certificate: TLS 1.3 finishes the handshake, then the broker's
        // alert arrives on the first read.
        let no_certificate = "ssl://127.0.0.1:19094/bootstrap: Receive failed: error:0A000412:SSL routines::sslv3 alert bad certificate: SSL alert number 42 (after 0ms in state APIVERSION_QUERY)";
        assert_eq!(
            verdict(&global(C::BrokerTransportFailure), no_certificate),
            Verdict::Tls
        );
        assert_eq!(said(tls), Verdict::Tls);
        assert_eq!(said(plain), Verdict::Plaintext);
        let refused =
            "127.0.0.1:19092/bootstrap: Connect to ipv4#127.0.0.1:19092 failed: Connection refused";
        assert_eq!(
            verdict(&global(C::BrokerTransportFailure), refused),
            Verdict::None
        );
        assert_eq!(
            verdict(&global(C::AllBrokersDown), "1/1 brokers are down"),
            Verdict::None
        );
        // What librdkafka logs: the broker's refusal, and a connection failing under the request.
        assert!(is_authentication_refused(auth));
        assert!(is_authentication_refused("sasl_ssl://b:9092/bootstrap: SASL SCRAM-SHA-512 mechanism handshake failed: Broker: Unsupported SASL mechanism"));
        assert!(!is_authentication_refused("GroupCoordinator: SASL authentication error: SaslAuthenticateRequest failed: Local: Broker transport failure (after 0ms in state DOWN)"));
        let denied = not_authorized(
            "region-a",
            Some(C::TopicAuthorizationFailed),
            "Write",
            "topic out",
        )
        .unwrap()
        .to_string();
        assert!(
            denied.contains("cluster region-a") && denied.contains("Write topic out"),
            "{denied}"
        );
        assert_eq!(
            not_authorized("a", Some(C::RequestTimedOut), "Write", "topic out"),
            None
        );
    }

    /// A start against a cluster that answers goes on; one that answers in plaintext where TLS
    /// was asked for is refused within the wait, naming the cluster.
    #[test]
    fn a_start_is_refused_by_a_plaintext_broker() {
        let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
        let mut cluster = ClusterConfig::at(&mock.bootstrap_servers());
        cluster.name = "mock".into();
        assert_eq!(preflight(&cluster, &[]), Ok(true));
        cluster
            .options
            .insert("security.protocol".into(), "SSL".into());
        match preflight(&cluster, &[]) {
            Err(Refusal::Plaintext { cluster, .. }) => assert_eq!(cluster, "mock"),
            other => panic!("expected a plaintext refusal, got {other:?}"),
        }
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
