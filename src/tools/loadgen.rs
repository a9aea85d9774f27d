//! `tidemark loadgen`: log traffic sent straight to both regions' Kafka, the way producers behind
//! a failing-over gateway would send it, and a record of what Kafka acknowledged.
//!
//! Each event has a home region (alternating, so the regions get even shares). A share of them
//! are failover copies, also sent to the other region; a share are retries, sent twice to the
//! home region. Event times trail the wall clock by a random jitter. Invalid records go on top.
//! The ids file lists every unique valid event with at least one acknowledged copy: that is what
//! the pipelines owe, and what `tidemark verify` checks.

use crate::event::sample::generate_event;
use crate::runtime::SplitMix;
use anyhow::Context;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::ClientContext;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `tidemark loadgen`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenOptions {
    /// region-a's bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:19092")]
    pub region_a: String,
    /// region-b's bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:29092")]
    pub region_b: String,
    /// Topic written in both regions.
    #[arg(long, default_value = "log-events")]
    pub topic: String,
    /// Unique events in total; with `--rate`, the rate times the duration.
    #[arg(long, conflicts_with = "rate")]
    pub events: Option<u64>,
    /// Unique events per second, both regions together.
    #[arg(long)]
    pub rate: Option<f64>,
    /// How long to send, e.g. `60s`.
    #[arg(long, default_value = "60s", value_parser = crate::component::parse_duration_flag)]
    pub duration: Duration,
    /// Seed for ids, regions, copies and jitter.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of events also sent to the other region (a producer that failed over).
    #[arg(long, default_value_t = 0.03)]
    pub failover: f64,
    /// Share of events sent twice to their home region (a retry after a lost acknowledgement).
    #[arg(long, default_value_t = 0.02)]
    pub retries: f64,
    /// Event time = send time minus a uniform jitter below this.
    #[arg(long, default_value = "1500ms", value_parser = crate::component::parse_duration_flag)]
    pub jitter: Duration,
    /// Share of events whose event time is set back by `--late-by`: stragglers that arrive
    /// behind any reasonable watermark.
    #[arg(long, default_value_t = 0.0)]
    pub late: f64,
    /// How far back a straggler's event time is set.
    #[arg(long, default_value = "30s", value_parser = crate::component::parse_duration_flag)]
    pub late_by: Duration,
    /// Invalid records per valid event, sent on top.
    #[arg(long, default_value_t = 0.002)]
    pub invalid: f64,
    /// Approximate payload size in bytes.
    #[arg(long, default_value_t = 300)]
    pub payload_bytes: usize,
    /// Also send valid events of exactly these sizes in bytes (comma-separated) to region-a
    /// after the load, listed in the ids file like the others: events too large for the
    /// pipeline's outputs. The producers then take records of up to 2 MB.
    #[arg(long, value_delimiter = ',', conflicts_with = "gateway")]
    pub oversized: Vec<usize>,
    /// Where to write the acknowledged unique ids (for `tidemark verify --ids`).
    #[arg(long)]
    pub out: PathBuf,
    /// Send through the ingestion gateway at this `host:port` instead of to Kafka directly.
    /// Only ids the gateway answered `ok` for count as acknowledged.
    #[arg(long)]
    pub gateway: Option<String>,
    /// With `--gateway`: events per request (a JSON array when above 1).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// With `--gateway`: connections, each on its own thread.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// With `--gateway`: distinct producers (`X-Producer-Id`); producer k is first sent to
    /// region-a when k is even and region-b when odd, then left to sticky routing.
    #[arg(long, default_value_t = 8)]
    pub producers: usize,
    /// With `--gateway`: send as fast as the gateway answers, ignoring the rate.
    #[arg(long)]
    pub unpaced: bool,
    /// With `--gateway`: speak HTTPS, trusting the CA certificates of this PEM file.
    #[arg(long)]
    pub gateway_ca: Option<std::path::PathBuf>,
    /// With `--gateway`: a file holding an API token, sent as `Authorization: Bearer`. The
    /// token is then the one producer (no `X-Producer-Id` or `X-Region` is sent), and a 429 is
    /// waited out as a 503 is.
    #[arg(long)]
    pub gateway_token_file: Option<std::path::PathBuf>,
    /// With `--gateway`: the body's format. `otlp-protobuf` and `otlp-json` carry the same
    /// events as OTLP/HTTP `ExportLogsServiceRequest`s (id in `log.record.uid`, service, region
    /// and message as record fields), for comparing the two with tidemark's own JSON. A request
    /// then counts as acknowledged when OTLP's answer rejected none of it. The gateway's OTLP
    /// mapping writes other payloads than the JSON in the ids file, so `verify` cannot check
    /// such a load's payloads: it is a load for measuring.
    #[arg(long, value_enum, default_value_t = GatewayFormat::Json)]
    pub gateway_format: GatewayFormat,
}

/// The body format of `loadgen --gateway`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GatewayFormat {
    /// tidemark's JSON: an object, or an array of them.
    Json,
    /// OTLP/HTTP logs as protobuf (`application/x-protobuf`).
    OtlpProtobuf,
    /// OTLP/HTTP logs as OTLP JSON.
    OtlpJson,
}

/// Counts acknowledged copies per record index.
struct Acks {
    ok: Arc<Vec<AtomicU32>>,
    failed: Arc<AtomicU32>,
    /// The cluster, for a refusal's message.
    cluster: String,
    /// The first ACL denial a delivery met: the load stops on it, rather than count every
    /// record that follows as failed.
    denied: std::sync::Mutex<Option<crate::kafka::Refusal>>,
}

impl Acks {
    /// The refusal that stops the load, if the cluster has denied it.
    fn denied(&self) -> Option<crate::kafka::Refusal> {
        self.denied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ClientContext for Acks {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::kafka::log_client_error(&error, reason);
    }
}

impl ProducerContext for Acks {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        match result {
            Ok(_) => {
                self.ok[index].fetch_add(1, Ordering::Relaxed);
            }
            Err((e, m)) => {
                tracing::warn!(error = %e, "a loadgen record was not acknowledged");
                self.failed.fetch_add(1, Ordering::Relaxed);
                let resource = format!("topic {}", rdkafka::Message::topic(m));
                let code = e.rdkafka_error_code();
                if let Some(r) =
                    crate::kafka::not_authorized(&self.cluster, code, "Write", &resource)
                {
                    let mut denied = self.denied.lock().unwrap_or_else(|e| e.into_inner());
                    denied.get_or_insert(r);
                }
            }
        }
    }
}

/// One planned record: which event (or invalid record) and where it goes.
struct Send {
    index: usize,
    to_b: bool,
}

/// What was sent and acknowledged.
#[derive(Debug, Clone, Default)]
pub struct LoadgenSummary {
    /// Records sent, all copies and invalid ones included.
    pub sent: u64,
    /// Unique valid events with at least one acknowledged copy (what the outputs must hold).
    pub acked_unique: u64,
    /// Unique valid events none of whose copies was acknowledged.
    pub unacked_unique: u64,
    /// Failover copies and retries sent.
    pub copies: u64,
    /// Invalid records acknowledged.
    pub invalid_acked: u64,
    /// Sends that failed.
    pub failed: u64,
    /// With `--gateway`: requests answered, and their latency percentiles (ms).
    pub requests: u64,
    /// p50, p99 and p99.9 request latency in ms (gateway mode).
    pub latency_ms: [f64; 3],
    /// Seconds from the first send to the last acknowledgement.
    pub elapsed_s: f64,
    /// With `--gateway`: request body bytes sent, every attempt counted.
    pub body_bytes: u64,
}

/// `tidemark loadgen`: sends the load, writes the ids file and prints what happened.
pub fn main(o: &LoadgenOptions) -> anyhow::Result<()> {
    let s = run(o)?;
    println!(
        "loadgen: sent {} records ({} copies); {} unique events acknowledged, {} not; {} invalid acknowledged; {} sends failed; ids in {}",
        s.sent,
        s.copies,
        s.acked_unique,
        s.unacked_unique,
        s.invalid_acked,
        s.failed,
        o.out.display()
    );
    if o.gateway.is_some() {
        println!(
            "gateway: {} requests of up to {} events in {:.1} s: {:.0} acknowledged events/s; latency p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms; {:.0} body bytes/event",
            s.requests,
            o.batch,
            s.elapsed_s,
            s.acked_unique as f64 / s.elapsed_s.max(1e-9),
            s.latency_ms[0],
            s.latency_ms[1],
            s.latency_ms[2],
            s.body_bytes as f64 / s.sent.max(1) as f64
        );
    }
    Ok(())
}

/// Sends the load and writes the ids file.
pub fn run(o: &LoadgenOptions) -> anyhow::Result<LoadgenSummary> {
    if let Some(addr) = &o.gateway {
        return run_gateway(o, addr);
    }
    let secs = o.duration.as_secs_f64();
    let events = total_events(o)?;
    for (name, share) in [
        ("failover", o.failover),
        ("retries", o.retries),
        ("invalid", o.invalid),
    ] {
        anyhow::ensure!((0.0..1.0).contains(&share), "--{name} must be in [0, 1)");
    }
    let invalid = (events as f64 * o.invalid).round() as usize;
    // Record indices: the events, then the oversized events, then the invalid records.
    let first_invalid = events as usize + o.oversized.len();
    let total = first_invalid + invalid;
    let ok: Arc<Vec<AtomicU32>> = Arc::new((0..total).map(|_| AtomicU32::new(0)).collect());
    let failed = Arc::new(AtomicU32::new(0));
    let producer = |bootstrap: &str| -> anyhow::Result<BaseProducer<Acks>> {
        let cluster = crate::kafka::tool_cluster(bootstrap)?;
        let mut config = crate::kafka::producer(&cluster);
        if !o.oversized.is_empty() {
            // The test producer must get them to the broker: it is the pipeline's limits that
            // are under test.
            config.set("message.max.bytes", "2000000");
        }
        config
            .create_with_context(Acks {
                ok: Arc::clone(&ok),
                failed: Arc::clone(&failed),
                cluster: cluster.name.clone(),
                denied: std::sync::Mutex::new(None),
            })
            .with_context(|| format!("creating a producer for {bootstrap}"))
    };
    let a = producer(&o.region_a)?;
    let b = producer(&o.region_b)?;

    let mut rng = SplitMix(o.seed);
    let mut ids: Vec<(String, u64, Vec<u8>)> = Vec::with_capacity(events as usize);
    let mut summary = LoadgenSummary::default();
    let started = Instant::now();
    let interval = secs / events as f64;
    let mut buf = Vec::new();
    let mut sent_events = 0u64;
    let mut next_invalid = 0usize;
    let mut progress_at = Instant::now();
    while sent_events < events {
        // Send everything due by now, then sleep a little: the rate holds without busy-waiting.
        let due = ((started.elapsed().as_secs_f64() / interval) as u64 + 1).min(events);
        while sent_events < due {
            let i = sent_events as usize;
            let id = rng.next_u128();
            let home_b = i % 2 == 1;
            let time = event_time(o, &mut rng);
            let region = if home_b { "region-b" } else { "region-a" };
            generate_event(&mut buf, id, time, region, (i % 20) as u32, o.payload_bytes);
            let mut plan = vec![Send {
                index: i,
                to_b: home_b,
            }];
            let roll = rng.next_f64();
            if roll < o.failover {
                plan.push(Send {
                    index: i,
                    to_b: !home_b,
                });
            } else if roll < o.failover + o.retries {
                plan.push(Send {
                    index: i,
                    to_b: home_b,
                });
            }
            summary.copies += plan.len() as u64 - 1;
            let key = format!("{id:032x}");
            for s in &plan {
                send(
                    if s.to_b { &b } else { &a },
                    &o.topic,
                    Some(&key),
                    &buf,
                    s.index,
                )?;
                summary.sent += 1;
            }
            ids.push((key, time, buf.clone()));
            sent_events += 1;
            // Invalid records are spread evenly through the run.
            while next_invalid < invalid
                && (next_invalid as u64 + 1) * events <= sent_events * invalid as u64
            {
                let payload = invalid_record(next_invalid, o.seed, time);
                let p = if next_invalid % 2 == 0 { &a } else { &b };
                send(p, &o.topic, None, &payload, first_invalid + next_invalid)?;
                summary.sent += 1;
                next_invalid += 1;
            }
        }
        a.poll(Duration::ZERO);
        b.poll(Duration::ZERO);
        if progress_at.elapsed() >= Duration::from_secs(5) {
            progress_at = Instant::now();
            eprintln!(
                "loadgen: {sent_events}/{events} events after {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for (k, &size) in o.oversized.iter().enumerate() {
        let id = rng.next_u128();
        let time = event_time(o, &mut rng);
        generate_event(&mut buf, id, time, "region-a", 0, size);
        let key = format!("{id:032x}");
        send(&a, &o.topic, Some(&key), &buf, events as usize + k)?;
        summary.sent += 1;
        ids.push((key, time, buf.clone()));
    }
    summary.elapsed_s = started.elapsed().as_secs_f64();
    a.flush(Duration::from_secs(120))
        .context("flushing region-a")?;
    b.flush(Duration::from_secs(120))
        .context("flushing region-b")?;
    if let Some(r) = a.context().denied().or_else(|| b.context().denied()) {
        return Err(r.into());
    }

    summary.invalid_acked = ok[first_invalid..]
        .iter()
        .filter(|n| n.load(Ordering::Relaxed) > 0)
        .count() as u64;
    summary.failed = u64::from(failed.load(Ordering::Relaxed));
    write_ids(o, events, &ids, &ok, &mut summary)?;
    Ok(summary)
}

/// An event as sent: id, time, payload.
type SentEvent = (String, u64, Vec<u8>);

/// Unique events to send: `--events`, or the rate times the duration.
fn total_events(o: &LoadgenOptions) -> anyhow::Result<u64> {
    let events = match (o.events, o.rate) {
        (Some(n), _) => n,
        (None, Some(r)) => (r * o.duration.as_secs_f64()).round() as u64,
        (None, None) => anyhow::bail!("give --events or --rate"),
    };
    anyhow::ensure!(events > 0, "nothing to send");
    Ok(events)
}

/// Gateway mode: requests of `batch` events over `connections` threads, paced to the rate
/// (unless `--unpaced`), retried on 503 and connection errors for up to a minute, as a
/// producer would.
/// The load of `--gateway`, shared by its connection threads.
struct GatewayLoad {
    o: LoadgenOptions,
    addr: String,
    /// Events in total, and requests of up to `--batch` of them.
    events: usize,
    requests: usize,
    /// Seconds between request starts, when paced.
    per_request: f64,
    /// Per event: acknowledged copies, and what was sent.
    ok: Vec<AtomicU32>,
    slots: Vec<std::sync::OnceLock<SentEvent>>,
    /// The next request to send.
    next: std::sync::atomic::AtomicU64,
    /// Per producer: whether it has named its home region yet.
    homed: Vec<std::sync::atomic::AtomicBool>,
    /// Events sent, and their body bytes, every attempt counted.
    sent: std::sync::atomic::AtomicU64,
    body_bytes: std::sync::atomic::AtomicU64,
    started: Instant,
    /// `--gateway-ca`.
    tls: Option<crate::tools::http::ClientTls>,
    /// `Authorization: Bearer ...`, from `--gateway-token-file`.
    authorization: Option<String>,
}

impl GatewayLoad {
    /// One connection's share of the requests; returns their latencies in microseconds.
    fn connection(&self, t: usize) -> anyhow::Result<Vec<u32>> {
        let mut rng = SplitMix(self.o.seed ^ ((t as u64 + 1) << 40));
        let mut latencies = Vec::new();
        let mut client: Option<crate::tools::http::HttpClient> = None;
        loop {
            let j = self.next.fetch_add(1, Ordering::Relaxed) as usize;
            if j >= self.requests {
                return Ok(latencies);
            }
            if !self.o.unpaced {
                let due = Duration::from_secs_f64(j as f64 * self.per_request);
                if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            let range = j * self.o.batch..((j + 1) * self.o.batch).min(self.events);
            let producer = j % self.o.producers;
            let home = if producer % 2 == 1 {
                "region-b"
            } else {
                "region-a"
            };
            let body = self.body(range.clone(), home, &mut rng);
            let pid = format!("producer-{producer}");
            let content_type = match self.o.gateway_format {
                GatewayFormat::OtlpProtobuf => "application/x-protobuf",
                GatewayFormat::Json | GatewayFormat::OtlpJson => "application/json",
            };
            let mut headers = vec![("Content-Type", content_type)];
            match &self.authorization {
                // The token says who the producer is, and where it may write.
                Some(a) => headers.push(("Authorization", a.as_str())),
                None => {
                    headers.push(("X-Producer-Id", pid.as_str()));
                    if !self.homed[producer].swap(true, Ordering::Relaxed) {
                        headers.push(("X-Region", home));
                    }
                }
            }
            // A retry after a lost answer re-sends the same events; dedup keeps one copy.
            let copies = if rng.next_f64() < self.o.retries {
                2
            } else {
                1
            };
            for _ in 0..copies {
                if let Some(us) = self.post(&mut client, &headers, &body, range.clone())? {
                    latencies.push(us);
                }
            }
        }
    }

    /// The request body of events `range`, produced in `region`; each event is recorded.
    fn body(&self, range: std::ops::Range<usize>, region: &str, rng: &mut SplitMix) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut body = Vec::new();
        let array = range.len() > 1;
        if array {
            body.push(b'[');
        }
        let mut records = Vec::new();
        for i in range.clone() {
            let id = rng.next_u128();
            let time = event_time(&self.o, rng);
            let service = (i % 20) as u32;
            generate_event(&mut buf, id, time, region, service, self.o.payload_bytes);
            let id = format!("{id:032x}");
            if self.o.gateway_format == GatewayFormat::Json {
                if i > range.start {
                    body.push(b',');
                }
                body.extend_from_slice(&buf);
            } else {
                records.push(otlp::record(&id, time, region, service, &buf));
            }
            let _ = self.slots[i].set((id, time, buf.clone()));
        }
        match self.o.gateway_format {
            GatewayFormat::Json => {
                if array {
                    body.push(b']');
                }
                body
            }
            GatewayFormat::OtlpProtobuf => otlp::protobuf(records),
            GatewayFormat::OtlpJson => otlp::json(records),
        }
    }

    /// Posts `body` until the gateway answers 200 or a minute has passed, waiting out 503s and
    /// reconnecting after errors; returns the latency of the answered attempt.
    fn post(
        &self,
        client: &mut Option<crate::tools::http::HttpClient>,
        headers: &[(&str, &str)],
        body: &[u8],
        range: std::ops::Range<usize>,
    ) -> anyhow::Result<Option<u32>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let attempt = Instant::now();
            let result = match client.as_mut() {
                Some(c) => c.request("POST", "/v1/logs", headers, body),
                None => match &self.tls {
                    Some(tls) => crate::tools::http::HttpClient::connect_tls(&self.addr, tls),
                    None => crate::tools::http::HttpClient::connect(&self.addr),
                }
                .and_then(|c| client.insert(c).request("POST", "/v1/logs", headers, body)),
            };
            self.sent.fetch_add(range.len() as u64, Ordering::Relaxed);
            self.body_bytes
                .fetch_add(body.len() as u64, Ordering::Relaxed);
            match result {
                Ok(r) if r.status == 200 => {
                    if self.o.gateway_format == GatewayFormat::Json {
                        for item in r.json()["results"].as_array().into_iter().flatten() {
                            if let (true, Some(k)) =
                                (item["status"] == "ok", item["index"].as_u64())
                            {
                                self.ok[range.start + k as usize].fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    } else if otlp::rejected(self.o.gateway_format, &r.body) == Some(0) {
                        // OTLP does not say which records it rejected: all or none count.
                        for k in range.clone() {
                            self.ok[k].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let us = attempt.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                    return Ok(Some(us));
                }
                Ok(r) if r.status == 503 || r.status == 429 => {
                    let wait = r
                        .header("retry-after")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1);
                    std::thread::sleep(Duration::from_secs(wait).min(Duration::from_secs(2)));
                }
                Ok(r) => anyhow::bail!(
                    "gateway answered {}: {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ),
                Err(_) => {
                    *client = None;
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
        }
    }
}

/// The `q` quantile of sorted microsecond latencies, in milliseconds.
fn quantile_ms(sorted: &[u32], q: f64) -> f64 {
    let at = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(at).map_or(0.0, |&us| f64::from(us) / 1000.0)
}

fn run_gateway(o: &LoadgenOptions, addr: &str) -> anyhow::Result<LoadgenSummary> {
    let events = total_events(o)?;
    anyhow::ensure!(
        o.batch >= 1 && o.connections >= 1 && o.producers >= 1,
        "--batch, --connections and --producers must be at least 1"
    );
    let n = events as usize;
    let requests = n.div_ceil(o.batch);
    let tls = o
        .gateway_ca
        .as_deref()
        .map(|ca| crate::tools::http::ClientTls::new(ca, None))
        .transpose()
        .context("--gateway-ca")?;
    let authorization = o
        .gateway_token_file
        .as_deref()
        .map(|path| {
            std::fs::read_to_string(path)
                .with_context(|| format!("--gateway-token-file {}", path.display()))
                .map(|t| format!("Bearer {}", t.trim()))
        })
        .transpose()?;
    let load = Arc::new(GatewayLoad {
        o: o.clone(),
        addr: addr.to_string(),
        events: n,
        requests,
        per_request: o.duration.as_secs_f64() / requests as f64,
        ok: (0..n).map(|_| AtomicU32::new(0)).collect(),
        slots: (0..n).map(|_| std::sync::OnceLock::new()).collect(),
        next: Default::default(),
        homed: (0..o.producers).map(|_| Default::default()).collect(),
        sent: Default::default(),
        body_bytes: Default::default(),
        started: Instant::now(),
        tls,
        authorization,
    });
    let threads: Vec<_> = (0..o.connections)
        .map(|t| {
            let load = Arc::clone(&load);
            std::thread::spawn(move || load.connection(t))
        })
        .collect();
    let mut latencies = Vec::new();
    for t in threads {
        latencies.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))??,
        );
    }
    latencies.sort_unstable();
    let mut summary = LoadgenSummary {
        sent: load.sent.load(Ordering::Relaxed),
        body_bytes: load.body_bytes.load(Ordering::Relaxed),
        requests: latencies.len() as u64,
        elapsed_s: load.started.elapsed().as_secs_f64(),
        latency_ms: [0.5, 0.99, 0.999].map(|q| quantile_ms(&latencies, q)),
        ..Default::default()
    };
    let ids: Vec<SentEvent> = load
        .slots
        .iter()
        .map(|s| s.get().cloned().unwrap_or_default())
        .collect();
    write_ids(o, events, &ids, &load.ok, &mut summary)?;
    Ok(summary)
}

/// Writes the ids file: every unique valid event with at least one acknowledged copy.
fn write_ids(
    o: &LoadgenOptions,
    events: u64,
    ids: &[SentEvent],
    ok: &[AtomicU32],
    summary: &mut LoadgenSummary,
) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&o.out).with_context(|| format!("creating {}", o.out.display()))?,
    );
    writeln!(
        out,
        "# tidemark loadgen: seed {} events {events}\n# sent {}\n# invalid {}",
        o.seed, summary.sent, summary.invalid_acked
    )?;
    for (i, (id, time, payload)) in ids.iter().enumerate() {
        if id.is_empty() {
            // Never sent (a gateway run that gave up before this request).
            continue;
        }
        // Unacknowledged events are listed too, with 0 acks: a write can land after its
        // answer was lost, and then it is no stranger in the output.
        let acks = ok[i].load(Ordering::Relaxed);
        if acks == 0 {
            summary.unacked_unique += 1;
        } else {
            summary.acked_unique += 1;
        }
        out.write_all(format!("{id}\t{time}\t{acks}\t").as_bytes())?;
        out.write_all(payload)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn send(
    p: &BaseProducer<Acks>,
    topic: &str,
    key: Option<&str>,
    payload: &[u8],
    index: usize,
) -> anyhow::Result<()> {
    let mut record: BaseRecord<'_, str, [u8], usize> =
        BaseRecord::with_opaque_to(topic, index).payload(payload);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(r) = p.context().denied() {
        return Err(r.into());
    }
    loop {
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((e, r))
                if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
            {
                p.poll(Duration::from_millis(20));
                record = r;
            }
            Err((e, _)) => {
                // An idempotent producer that may not write at all fails for good, and says
                // why only in its fatal error.
                let cluster = &p.context().cluster;
                let fatal = p.client().fatal_error().map(|(code, _)| code);
                if let Some(r) =
                    crate::kafka::not_authorized(cluster, fatal, "IdempotentWrite", "the cluster")
                {
                    return Err(r.into());
                }
                return Err(e).context("sending a loadgen record");
            }
        }
    }
}

/// An event time: the wall clock less the jitter, and for the `--late` share less `--late-by`
/// too. The extra draw is made only when stragglers are asked for, so a seed without them
/// gives the same events as before.
fn event_time(o: &LoadgenOptions, rng: &mut SplitMix) -> u64 {
    let mut time = crate::runtime::wall_ms().saturating_sub(rng.below(o.jitter.as_millis() as u64));
    if o.late > 0.0 && rng.next_f64() < o.late {
        time = time.saturating_sub(o.late_by.as_millis() as u64);
    }
    time
}

/// The n-th invalid record of the load with `seed`: every kind of bad input a producer can send,
/// each one distinct, within a load and across loads of different seeds, so a verifier can
/// count them even when MM2 delivers one twice or several loads are checked together.
fn invalid_record(n: usize, seed: u64, now: u64) -> Vec<u8> {
    match n % 6 {
        0 => format!("not json at all #{seed}-{n}").into_bytes(),
        1 => format!(r#"{{"timestamp":{now},"n":"{seed}-{n}"}}"#).into_bytes(),
        2 => format!(r#"{{"eventId":"bad-time-{seed}-{n}","timestamp":"yesterday"}}"#).into_bytes(),
        3 => format!(r#"{{"eventId":"trunc-{seed}-{n}","timestamp":{now}"#).into_bytes(),
        4 => format!(r#"{{"eventId":"","timestamp":{now},"n":"{seed}-{n}"}}"#).into_bytes(),
        _ => {
            let mut b = format!(r#"{{"eventId":"latin1-{seed}-{n}","m":""#).into_bytes();
            b.extend_from_slice(b"\xff\xfe\"}");
            b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_invalid_record_is_rejected_with_a_reason_and_distinct() {
        let format = crate::event::EventFormat::default();
        let now = 1_700_000_000_000;
        // Two loads of different seeds, sent at the same moment.
        let records: Vec<Vec<u8>> = (0..24)
            .map(|n| invalid_record(n % 12, 7 + (n / 12) as u64, now))
            .collect();
        for r in &records {
            assert!(
                crate::event::decode(r, &format).is_err(),
                "{:?} was accepted",
                String::from_utf8_lossy(r)
            );
        }
        let distinct: std::collections::HashSet<_> = records.iter().collect();
        assert_eq!(distinct.len(), records.len());
    }
}

/// The OTLP/HTTP bodies of `--gateway-format otlp-*`.
mod otlp {
    use super::GatewayFormat;
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use prost::Message;

    fn string(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    /// The LogRecord of one generated event: its id, time, region, service and message (taken
    /// from `event`, the JSON that `generate_event` wrote), so both formats carry the same.
    pub(super) fn record(
        id: &str,
        time: u64,
        region: &str,
        service: u32,
        event: &[u8],
    ) -> LogRecord {
        // generate_event writes the message last, as `"message":"..."}`, with no escapes: a
        // slice of it, not a second parse of every event on the load's own cores.
        let key = b"\"message\":\"";
        let message = event
            .windows(key.len())
            .position(|w| w == key)
            .and_then(|at| event.get(at + key.len()..event.len().checked_sub(2)?))
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .unwrap_or_default();
        LogRecord {
            time_unix_nano: time * 1_000_000,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(message)),
            }),
            attributes: vec![
                string("log.record.uid", id),
                string("region", region),
                string("service", &format!("svc-{service:02}")),
            ],
            ..Default::default()
        }
    }

    fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: None,
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    pub(super) fn protobuf(records: Vec<LogRecord>) -> Vec<u8> {
        request(records).encode_to_vec()
    }

    pub(super) fn json(records: Vec<LogRecord>) -> Vec<u8> {
        serde_json::to_vec(&request(records)).unwrap_or_default()
    }

    /// The records an OTLP answer says were rejected (0 without a `partialSuccess`), or None when
    /// it cannot be read.
    pub(super) fn rejected(format: GatewayFormat, body: &[u8]) -> Option<i64> {
        let answer = match format {
            GatewayFormat::OtlpProtobuf => ExportLogsServiceResponse::decode(body).ok()?,
            _ => serde_json::from_slice(body).ok()?,
        };
        Some(answer.partial_success.map_or(0, |p| p.rejected_log_records))
    }
}
