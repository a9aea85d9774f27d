//! The ingestion gateway: producers POST log events over HTTP, and the gateway writes each one to
//! the Kafka cluster of its region, answering only once Kafka has acknowledged the write.
//!
//! - [`events`]: bodies (JSON, JSON array, NDJSON) to events, with missing ids (UUIDv7), times
//!   and regions filled in and each event checked by the pipelines' own decoder.
//! - [`route`]: `X-Region`, sticky producers (`X-Producer-Id`, else the `service` field), health
//!   fallback and return after recovery, as pure logic.
//! - [`send`]: one idempotent `acks=all` producer per region, delivery reports to requests.
//! - [`conn`]: read deadlines for heads, bodies and idle connections (slow clients).
//! - [`tls`]: HTTPS with rustls, the certificate re-read when renewed ([`watch`]).
//! - [`auth`]: API tokens, their file of hashes, and who each may write as and where.
//! - [`quota`]: per-token token buckets in events/s and bytes/s.
//! - [`encoding`]: gzip and zstd bodies, inflated up to the body limit and no further.
//! - [`otlp`]: OTLP/HTTP logs (protobuf and OTLP JSON) to events, and OTLP's answer.
//! - this module: the HTTP server (hyper on tokio), health probes, back-pressure and metrics.
//!
//! A write that fails or is not acknowledged within `send_timeout` marks its region unhealthy and
//! is written to the other region with the same id and bytes, so when both copies land, the
//! pipelines' dedup keeps one. Nothing is answered 2xx before Kafka has it, and a request that
//! cannot be taken gets 503 with `Retry-After`; nothing is accepted and then dropped.

pub mod auth;
pub mod conn;
pub mod encoding;
pub mod events;
pub mod otlp;
pub mod quota;
pub mod route;
pub mod send;
pub mod tls;
pub mod watch;

use crate::config::GatewayFile;
use crate::event::EventFormat;
use crate::metrics::Metrics;
use bytes::Bytes;
use events::{Framing, ItemError};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use route::Router;
use send::Regions;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Gateway errors (start-up only: requests never fail the gateway).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A Kafka client could not be created.
    #[error("region {region}: {source}")]
    Kafka {
        /// Region.
        region: String,
        /// Client error.
        source: rdkafka::error::KafkaError,
    },
    /// A region's cluster refuses the gateway (credentials, TLS, an ACL).
    #[error(transparent)]
    Refused(#[from] crate::kafka::Refusal),
    /// The token file cannot be used.
    #[error("gateway.token_file: {0}")]
    Tokens(#[from] auth::TokenError),
    /// `[gateway.tls]` cannot be served.
    #[error("gateway.tls: {0}")]
    Tls(#[from] tls::TlsError),
    /// Binding the listener, or starting a thread or the runtime.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The OpenAPI document of the API.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

struct State {
    file: GatewayFile,
    format: EventFormat,
    regions: Arc<Regions>,
    router: Mutex<Router>,
    metrics: Metrics,
    in_flight: AtomicUsize,
    /// With `auth = "tokens"`.
    tokens: Option<auth::Tokens>,
    /// Each token's buckets, by name.
    quotas: Mutex<HashMap<String, quota::Quota>>,
    /// Each token's events in flight, by name.
    token_in_flight: Mutex<HashMap<String, usize>>,
}

/// A running gateway.
pub struct Gateway {
    /// The bound address.
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    regions: Arc<Regions>,
    probes: Arc<std::sync::atomic::AtomicBool>,
    grace: Duration,
}

impl Gateway {
    /// Stops accepting, lets requests in flight finish (up to `shutdown_grace`), flushes.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.probes.store(true, Ordering::Relaxed);
        // Writes still queued were answered 503 or re-sent elsewhere; a copy that lands now is
        // one dedup drops, so waiting the grace period is enough.
        self.regions.close(self.grace);
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts the gateway: binds, starts the health probes and the HTTP server.
pub fn start(file: GatewayFile, metrics: Metrics) -> Result<Gateway, GatewayError> {
    let names: Vec<String> = file.clusters.keys().cloned().collect();
    let clusters: Vec<_> = file
        .clusters
        .iter()
        .map(|(n, c)| (n.clone(), c.clone()))
        .collect();
    let checks: Vec<_> = file
        .clusters
        .values()
        .map(|c| (c, vec![file.gateway.topic.clone()]))
        .collect();
    // TLS and tokens first: a file that does not load is found before any cluster is asked.
    let acceptor = file.gateway.tls.as_ref().map(tls::acceptor).transpose()?;
    let tokens = match (file.gateway.auth, &file.gateway.token_file) {
        (crate::config::Auth::Tokens, Some(path)) => Some(auth::Tokens::open(path)?),
        _ => None,
    };
    if tokens.is_none() && !file.gateway.listen.ip().is_loopback() {
        tracing::warn!(listen = %file.gateway.listen, "auth = \"none\" on an address that is not loopback: anyone who reaches it may write events");
    }
    crate::kafka::preflight_all(&checks)?;
    let regions = Regions::open(&clusters, &file.gateway.topic)?;
    let local = names
        .iter()
        .position(|n| *n == file.gateway.local_region)
        .unwrap_or(0);
    let now = crate::runtime::wall_ms();
    for n in &names {
        metrics
            .gateway_region_healthy
            .with_label_values(&[n])
            .set(1);
        metrics.gateway_events.with_label_values(&[n]);
        // Fallback series exist from the start, at zero, so a rate over them is 0, not empty.
        for to in names.iter().filter(|t| *t != n) {
            metrics.gateway_fallbacks.with_label_values(&[n, to]);
        }
    }
    for reason in ["invalid", "too_large", "unavailable"] {
        metrics.gateway_rejected.with_label_values(&[reason]);
    }
    for reason in [
        "header_timeout",
        "body_timeout",
        "idle_timeout",
        "over_limit",
    ] {
        metrics.gateway_connections_cut.with_label_values(&[reason]);
    }
    for reason in ["missing", "unknown", "region", "producer"] {
        metrics.gateway_auth_refused.with_label_values(&[reason]);
    }
    for name in tokens.iter().flat_map(auth::Tokens::names) {
        metrics.gateway_token_events.with_label_values(&[&name]);
    }
    let state = Arc::new(State {
        router: Mutex::new(Router::new(
            names.len(),
            local,
            file.gateway.return_after.0,
            now,
        )),
        format: file.event.clone(),
        regions: Arc::clone(&regions),
        metrics,
        in_flight: AtomicUsize::new(0),
        tokens,
        quotas: Mutex::new(HashMap::new()),
        token_in_flight: Mutex::new(HashMap::new()),
        file,
    });
    let probes = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for (i, name) in names.iter().enumerate() {
        let (st, stop) = (Arc::clone(&state), Arc::clone(&probes));
        std::thread::Builder::new()
            .name(format!("gateway-probe-{name}"))
            .spawn(move || {
                let g = &st.file.gateway;
                while !stop.load(Ordering::Relaxed) {
                    let ok = st.regions.probe(i, g.probe_timeout.as_duration());
                    set_health(&st, i, ok, if ok { "probe" } else { "probe failed" });
                    // Sleep in slices so a stop is seen promptly.
                    let mut left = g.probe_interval.0;
                    while left > 0 && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(left.min(100)));
                        left = left.saturating_sub(100);
                    }
                }
            })?;
    }

    let std_listener = std::net::TcpListener::bind(state.file.gateway.listen)?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("gateway-http")
        .enable_all()
        .build()?;
    let grace = state.file.gateway.shutdown_grace.as_duration();
    let thread = std::thread::Builder::new()
        .name("gateway".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(listener) => serve(listener, acceptor, state, stop_rx, grace).await,
                    Err(e) => tracing::error!(error = %e, "gateway listener"),
                }
            });
        })?;
    tracing::info!(%addr, "gateway listening");
    Ok(Gateway {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
        regions,
        probes,
        grace,
    })
}

fn set_health(st: &State, region: usize, healthy: bool, why: &str) {
    let changed = st
        .router
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .set_health(region, healthy, crate::runtime::wall_ms());
    let name = &st.regions.names[region];
    st.metrics
        .gateway_region_healthy
        .with_label_values(&[name])
        .set(i64::from(healthy));
    if changed {
        if healthy {
            tracing::info!(region = %name, why, "region healthy");
        } else {
            tracing::warn!(region = %name, why, "region unhealthy");
        }
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    grace: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let g = &state.file.gateway;
    let deadlines = conn::Deadlines {
        header: g.header_timeout.as_duration(),
        idle: g.idle_timeout.as_duration(),
    };
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                if open.load(Ordering::Relaxed) >= g.max_connections as usize {
                    over_limit(&state, stream, acceptor.is_some());
                    continue;
                }
                let held = Held::new(&state, &open);
                let (st, watcher, acceptor) = (Arc::clone(&state), graceful.watcher(), acceptor.clone());
                tokio::spawn(async move {
                    let cycle = conn::Cycle::new();
                    match acceptor {
                        None => {
                            let io = conn::Guarded::new(stream, Arc::clone(&cycle), deadlines);
                            let _ = watcher.watch(connection(&st, io, &cycle)).await;
                        }
                        Some(acceptor) => {
                            // The handshake is part of the head: it gets the header timeout.
                            match tokio::time::timeout(deadlines.header, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => {
                                    let io = conn::Guarded::new(tls, Arc::clone(&cycle), deadlines);
                                    let _ = watcher.watch(connection(&st, io, &cycle)).await;
                                }
                                Ok(Err(e)) => {
                                    st.metrics.gateway_tls_failures.inc();
                                    tracing::debug!(error = %e, "gateway TLS handshake failed");
                                }
                                Err(_) => cycle.timed_out(conn::Cut::Header),
                            }
                        }
                    }
                    if let Some(cut) = cycle.cut() {
                        st.metrics
                            .gateway_connections_cut
                            .with_label_values(&[cut.label()])
                            .inc();
                    }
                    drop(held);
                });
            }
            _ = &mut stop => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!("gateway shutdown: requests still open after the grace period");
        }
    }
}

/// One open connection, counted while it lives.
struct Held {
    state: Arc<State>,
    open: Arc<AtomicUsize>,
}

impl Held {
    fn new(state: &Arc<State>, open: &Arc<AtomicUsize>) -> Held {
        let n = open.fetch_add(1, Ordering::Relaxed) + 1;
        state.metrics.gateway_connections.set(n as i64);
        Held {
            state: Arc::clone(state),
            open: Arc::clone(open),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let n = self.open.fetch_sub(1, Ordering::Relaxed) - 1;
        self.state.metrics.gateway_connections.set(n as i64);
    }
}

/// A connection beyond `max_connections`: answered 503 at once and closed, without waiting for
/// its request. What it sends meanwhile is read and dropped for a moment, so that the close
/// does not reset the connection before the client has read the answer.
fn over_limit(state: &Arc<State>, mut stream: tokio::net::TcpStream, tls: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    state
        .metrics
        .gateway_connections_cut
        .with_label_values(&["over_limit"])
        .inc();
    if tls {
        // An answer would cost a handshake, which is what the limit is there to spare.
        return;
    }
    let secs = state.file.gateway.retry_after.0.div_ceil(1000).max(1);
    let body = r#"{"error":"too many connections; retry later","field":""}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: {secs}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::spawn(async move {
        let linger = async {
            stream.write_all(answer.as_bytes()).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, std::io::Error>(())
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), linger).await;
    });
}

/// One connection served over `io`, its reads timed by `cycle`.
fn connection<S>(
    st: &Arc<State>,
    io: conn::Guarded<S>,
    cycle: &Arc<conn::Cycle>,
) -> impl hyper_util::server::graceful::GracefulConnection + Send
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (st, c) = (Arc::clone(st), Arc::clone(cycle));
    let service = hyper::service::service_fn(move |req| {
        let (st, c) = (Arc::clone(&st), Arc::clone(&c));
        async move {
            c.busy();
            let r = handle(&st, req).await;
            c.idle();
            Ok::<_, std::convert::Infallible>(r)
        }
    });
    hyper::server::conn::http1::Builder::new()
        // The deadlines are Guarded's: hyper's own header timer would also run through the
        // idle wait between requests.
        .header_read_timeout(None)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: Value) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// An error answer. `code` and `message` make the body OTLP JSON's `google.rpc.Status` as well;
/// the message is also kept as an extension, for an OTLP protobuf request's answer.
fn error(status: StatusCode, field: &str, message: impl Into<String>) -> Reply {
    let message = message.into();
    let code = otlp::grpc_code(status.as_u16());
    let mut r = reply(
        status,
        json!({"error": message, "field": field, "code": code, "message": message}),
    );
    r.extensions_mut().insert(Problem(message));
    r
}

/// The text of an error answer.
#[derive(Clone)]
struct Problem(String);

/// An OTLP protobuf request's error answer as OTLP/HTTP says it must be: a protobuf
/// `google.rpc.Status`, with the same status and headers.
fn as_otlp_status(mut r: Reply) -> Reply {
    let message = match r.extensions().get::<Problem>() {
        Some(Problem(m)) => m.clone(),
        None => r
            .status()
            .canonical_reason()
            .unwrap_or_default()
            .to_string(),
    };
    let status = otlp::Status {
        code: otlp::grpc_code(r.status().as_u16()),
        message,
    };
    *r.body_mut() = Full::new(Bytes::from(prost::Message::encode_to_vec(&status)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(otlp::Encoding::Protobuf.content_type()),
    );
    r
}

fn unavailable(st: &State, message: &str) -> Reply {
    with_retry_after(st, error(StatusCode::SERVICE_UNAVAILABLE, "", message))
}

/// Every 503 tells the client when to try again.
fn with_retry_after(st: &State, mut r: Reply) -> Reply {
    let secs = st.file.gateway.retry_after.0.div_ceil(1000).max(1);
    r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    r
}

async fn handle(st: &State, req: Request<Incoming>) -> Reply {
    let started = std::time::Instant::now();
    let path = req.uri().path().to_string();
    let protobuf = path == "/v1/logs"
        && otlp::is_protobuf(
            req.headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        );
    let mut r = match (req.method(), path.as_str()) {
        (&Method::POST, "/v1/logs") => logs(st, req).await,
        (&Method::GET, "/healthz") => reply(StatusCode::OK, json!({"status": "up"})),
        (&Method::GET, "/readyz") => {
            let router = st.router.lock().unwrap_or_else(|e| e.into_inner());
            let regions: serde_json::Map<String, Value> = st
                .regions
                .names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), Value::Bool(router.healthy(i))))
                .collect();
            let ready = regions.values().any(|v| v == &Value::Bool(true));
            reply(
                if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                json!({"ready": ready, "regions": regions}),
            )
        }
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(Full::new(Bytes::from(st.metrics.render())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (&Method::GET, "/openapi.json") => {
            let mut r = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        (_, "/v1/logs" | "/healthz" | "/readyz" | "/metrics" | "/openapi.json") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "", "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, "", format!("no such path: {path}")),
    };
    if protobuf && (r.status().is_client_error() || r.status().is_server_error()) {
        r = as_otlp_status(r);
    }
    if path == "/v1/logs" {
        st.metrics
            .gateway_requests
            .with_label_values(&[r.status().as_str()])
            .inc();
        st.metrics
            .gateway_request_seconds
            .observe(started.elapsed().as_secs_f64());
    }
    r
}

/// What happened to one item of a request.
enum Outcome {
    Written {
        id: String,
        region: usize,
    },
    Refused(ItemError),
    /// Kafka refused the item for its size: the item's fault, not the region's.
    TooLarge {
        id: String,
        error: String,
    },
    Unwritten {
        id: String,
        error: String,
    },
}

/// A token's events in flight, given back when the request ends.
struct Share<'a> {
    st: &'a State,
    name: String,
    events: usize,
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        let mut map = self
            .st
            .token_in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.name) {
            *n = n.saturating_sub(self.events);
        }
    }
}

/// Admits a request of `events` and `bytes` for token `t` (its rates, then its share of the
/// events in flight), or answers 429 with `Retry-After`.
fn admit<'a>(
    st: &'a State,
    t: &auth::Token,
    events: usize,
    bytes: usize,
) -> Result<Share<'a>, Reply> {
    let throttled = |limit: &str, wait: Duration, message: String| {
        st.metrics
            .gateway_token_throttled
            .with_label_values(&[&t.name, limit])
            .inc();
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "", message);
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        r
    };
    let rates = (t.events_per_second, t.bytes_per_second);
    if rates != (None, None) {
        let mut quotas = st.quotas.lock().unwrap_or_else(|e| e.into_inner());
        let q = quotas
            .entry(t.name.clone())
            .or_insert_with(|| quota::Quota::new(rates.0, rates.1));
        // Rates changed in the token file: buckets of the new rates.
        if !q.is_for(rates.0, rates.1) {
            *q = quota::Quota::new(rates.0, rates.1);
        }
        if let Err((wait, limit)) = q.admit(events, bytes) {
            let message = format!("token \"{}\" is over its {limit}; retry later", t.name);
            return Err(throttled(limit, wait, message));
        }
    }
    let cap = st.file.gateway.token_in_flight_cap();
    let mut map = st.token_in_flight.lock().unwrap_or_else(|e| e.into_inner());
    let n = map.entry(t.name.clone()).or_default();
    if events > 0 && *n + events > cap {
        let message = format!(
            "token \"{}\" has {n} events in flight, and {cap} at most; retry later",
            t.name
        );
        let wait = st.file.gateway.retry_after.as_duration();
        return Err(throttled("in_flight", wait, message));
    }
    *n += events;
    Ok(Share {
        st,
        name: t.name.clone(),
        events,
    })
}

/// 401 or 403 for a request its token does not allow, counted by `reason`.
fn refused(st: &State, status: StatusCode, reason: &str, message: String) -> Reply {
    st.metrics
        .gateway_auth_refused
        .with_label_values(&[reason])
        .inc();
    let mut r = error(status, "Authorization", message);
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tidemark\""),
        );
    }
    r
}

async fn logs(st: &State, req: Request<Incoming>) -> Reply {
    let g = &st.file.gateway;
    let headers = req.headers();
    let token = match &st.tokens {
        None => None,
        Some(tokens) => {
            let header = headers
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match tokens.check(header) {
                Ok(t) => Some(t),
                Err(auth::Denied::Missing) => {
                    let why = "send Authorization: Bearer TOKEN".to_string();
                    return refused(st, StatusCode::UNAUTHORIZED, "missing", why);
                }
                Err(auth::Denied::Unknown) => {
                    let why = "unknown token".to_string();
                    return refused(st, StatusCode::UNAUTHORIZED, "unknown", why);
                }
            }
        }
    };
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let protobuf = otlp::is_protobuf(content_type);
    let framing = match Framing::from_content_type(content_type) {
        Some(f) => f,
        // Protobuf is OTLP's; its body is read whole, not framed.
        None if protobuf => Framing::Json,
        None => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type",
                "send application/json (an event, an array of events, or OTLP JSON), application/x-ndjson, or application/x-protobuf (OTLP)",
            )
        }
    };
    let requested = match headers.get("x-region").map(|v| v.to_str()) {
        None => None,
        Some(Ok(name)) => match st.regions.names.iter().position(|n| n == name.trim()) {
            Some(i) => Some(i),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "X-Region",
                    format!(
                        "unknown region \"{}\" (known: {})",
                        name.trim(),
                        st.regions.names.join(", ")
                    ),
                )
            }
        },
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "X-Region", "not text"),
    };
    let encoding = match encoding::Encoding::from_header(
        headers
            .get(hyper::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    ) {
        Ok(e) => e,
        Err(message) => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Encoding",
                message,
            )
        }
    };
    let mut producer = headers
        .get("x-producer-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // The regions the token may write to, by index; None for all.
    let mut allowed: Option<Vec<usize>> = None;
    let mut requested = requested;
    if let Some(t) = &token {
        // The token is the producer: its id is the sticky key, and no header can change it.
        if producer.as_deref().is_some_and(|p| p != t.producer) {
            let why = format!(
                "token \"{}\" writes as producer \"{}\", not \"{}\"",
                t.name,
                t.producer,
                producer.unwrap_or_default()
            );
            return refused(st, StatusCode::FORBIDDEN, "producer", why);
        }
        producer = Some(t.producer.clone());
        if !t.regions.is_empty() {
            let ok: Vec<usize> = (0..st.regions.names.len())
                .filter(|i| t.regions.contains(&st.regions.names[*i]))
                .collect();
            if let Some(r) = requested.filter(|r| !ok.contains(r)) {
                let why = format!(
                    "token \"{}\" may not write to region {} (only {})",
                    t.name,
                    st.regions.names[r],
                    t.regions.join(", ")
                );
                return refused(st, StatusCode::FORBIDDEN, "region", why);
            }
            // Without X-Region, its producer's home is a region it may write to.
            requested = requested.or(ok.first().copied());
            allowed = Some(ok);
        }
    }
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
            format!("body over {} bytes", g.max_body_bytes),
        )
    };
    if headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > g.max_body_bytes)
    {
        return too_large();
    }
    let collect = Limited::new(req.into_body(), g.max_body_bytes as usize).collect();
    let body = match tokio::time::timeout(g.body_timeout.as_duration(), collect).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Ok(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "",
                format!("reading the body: {e}"),
            )
        }
        Err(_) => {
            st.metrics
                .gateway_connections_cut
                .with_label_values(&["body_timeout"])
                .inc();
            let mut r = error(
                StatusCode::REQUEST_TIMEOUT,
                "",
                format!("the body did not arrive within {}", g.body_timeout),
            );
            // The rest of the body is not waited for: the connection goes.
            r.headers_mut()
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
    };
    let body = if encoding == encoding::Encoding::Identity {
        body
    } else {
        // Inflating is CPU work of up to the body limit: off the runtime's two threads.
        let limit = g.max_body_bytes as usize;
        let inflated =
            tokio::task::spawn_blocking(move || encoding::inflate(encoding, &body, limit)).await;
        match inflated {
            Ok(Ok(b)) => Bytes::from(b),
            Ok(Err(e @ encoding::InflateError::TooLarge { .. })) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Content-Encoding",
                    e.to_string(),
                )
            }
            Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, "Content-Encoding", e.to_string()),
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "",
                    format!("inflating the body: {e}"),
                )
            }
        }
    };
    let body_bytes = body.len();
    let otlp = if protobuf {
        Some(otlp::Encoding::Protobuf)
    } else if framing == Framing::Json && otlp::is_otlp_json(&body) {
        Some(otlp::Encoding::Json)
    } else {
        None
    };
    let items = match otlp {
        Some(encoding) => match otlp::decode(&body, encoding) {
            Ok(request) => otlp::events(&request, &st.format, &g.otlp_id_attribute)
                .into_iter()
                .map(|e| Ok(events::Item::from_object(e)))
                .collect(),
            Err(message) => return error(StatusCode::BAD_REQUEST, "", message),
        },
        None => match events::items(&body, framing) {
            Ok(items) => items,
            Err(e) => return error(StatusCode::BAD_REQUEST, "", e.0),
        },
    };
    if items.is_empty() {
        // An OTLP export with no records is a valid, empty one.
        if let Some(encoding) = otlp {
            return respond_otlp(st, encoding, &[]);
        }
        return error(StatusCode::BAD_REQUEST, "", "no events in the body");
    }
    let now = crate::runtime::wall_ms();
    let prepared: Vec<_> = items
        .into_iter()
        .map(|i| i.and_then(|v| events::prepare(v, &st.format, now)))
        .collect();
    let valid = prepared.iter().filter(|p| p.is_ok()).count();
    let _share = match &token {
        Some(t) => match admit(st, t, valid, body_bytes) {
            Ok(share) => Some(share),
            Err(r) => return r,
        },
        None => None,
    };

    // Back-pressure: take the whole request or none of it.
    let before = st.in_flight.fetch_add(valid, Ordering::SeqCst);
    if valid > 0 && before + valid > g.max_in_flight as usize {
        st.in_flight.fetch_sub(valid, Ordering::SeqCst);
        return unavailable(st, "too many events in flight; retry later");
    }
    st.metrics.gateway_in_flight.set((before + valid) as i64);

    let outcomes = write_all(
        st,
        prepared,
        producer.as_deref(),
        requested,
        allowed.as_deref(),
    )
    .await;
    if let Some(t) = &token {
        let written = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Written { .. }))
            .count();
        st.metrics
            .gateway_token_events
            .with_label_values(&[&t.name])
            .inc_by(written as u64);
    }
    let left = st.in_flight.fetch_sub(valid, Ordering::SeqCst) - valid;
    st.metrics.gateway_in_flight.set(left as i64);
    match otlp {
        Some(encoding) => respond_otlp(st, encoding, &outcomes),
        None => respond(st, outcomes),
    }
}

/// OTLP's answer: 200 with `partialSuccess` counting what was not written and why; 503 (which
/// an exporter retries) only when nothing was written and nothing was the records' fault.
fn respond_otlp(st: &State, encoding: otlp::Encoding, outcomes: &[Outcome]) -> Reply {
    let c = count(st, outcomes);
    let why = outcomes.iter().find_map(|o| match o {
        Outcome::Written { .. } => None,
        Outcome::Refused(e) if e.field.is_empty() => Some(e.message.clone()),
        Outcome::Refused(e) => Some(format!("{}: {}", e.field, e.message)),
        Outcome::TooLarge { error, .. } | Outcome::Unwritten { error, .. } => Some(error.clone()),
    });
    let rejected = c.refused + c.too_large + c.unwritten;
    let message = match why {
        Some(first) => format!(
            "{rejected} of {} log records not written ({} invalid, {} too large, {} unavailable); the first: {first}",
            outcomes.len(),
            c.refused,
            c.too_large,
            c.unwritten
        ),
        None => String::new(),
    };
    if c.written == 0 && c.unwritten > 0 && c.refused + c.too_large == 0 {
        // Nothing written, through no fault of the records: an error OTLP's exporters retry.
        return unavailable(st, &message);
    }
    let mut r = Response::new(Full::new(Bytes::from(otlp::answer(
        encoding, rejected, message,
    ))));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    r
}

/// What happened to a request's items, each counted in the metrics.
struct Counts {
    written: usize,
    refused: usize,
    too_large: usize,
    unwritten: usize,
}

fn count(st: &State, outcomes: &[Outcome]) -> Counts {
    let mut c = Counts {
        written: 0,
        refused: 0,
        too_large: 0,
        unwritten: 0,
    };
    for o in outcomes {
        let rejected = match o {
            Outcome::Written { region, .. } => {
                c.written += 1;
                let name = &st.regions.names[*region];
                st.metrics.gateway_events.with_label_values(&[name]).inc();
                continue;
            }
            Outcome::Refused(_) => {
                c.refused += 1;
                "invalid"
            }
            Outcome::TooLarge { .. } => {
                c.too_large += 1;
                "too_large"
            }
            Outcome::Unwritten { .. } => {
                c.unwritten += 1;
                "unavailable"
            }
        };
        st.metrics
            .gateway_rejected
            .with_label_values(&[rejected])
            .inc();
    }
    c
}

/// Routes and writes every prepared item: all sends are queued first, then awaited, so a
/// batch costs one round trip, not one per event.
async fn write_all(
    st: &State,
    prepared: Vec<Result<events::Prepared, ItemError>>,
    producer: Option<&str>,
    requested: Option<usize>,
    allowed: Option<&[usize]>,
) -> Vec<Outcome> {
    let g = &st.file.gateway;
    let mut outcomes = Vec::with_capacity(prepared.len());
    let mut pending = Vec::new();
    for (index, item) in prepared.into_iter().enumerate() {
        let p = match item {
            Ok(p) => p,
            Err(e) => {
                outcomes.push(Outcome::Refused(e));
                continue;
            }
        };
        let who = producer.or(p.service.as_deref());
        let route = {
            let mut router = st.router.lock().unwrap_or_else(|e| e.into_inner());
            let route = router.route(who, requested, crate::runtime::wall_ms());
            for m in router.take_moves() {
                let (from, to) = (&st.regions.names[m.from], &st.regions.names[m.to]);
                if m.returned {
                    tracing::info!(event = "REGION_RETURN", producer = %m.producer, %from, %to, "producer back in its region");
                } else {
                    tracing::warn!(event = "REGION_FALLBACK", producer = %m.producer, %from, %to, reason = "region unhealthy", "producer moved to the other region");
                }
            }
            route
        };
        let Some(route) = route else {
            outcomes.push(Outcome::Unwritten {
                id: p.id,
                error: "no region is healthy".into(),
            });
            continue;
        };
        if allowed.is_some_and(|ok| !ok.contains(&route.target)) {
            // Its own region is down, and the token may not fall back to the other.
            outcomes.push(Outcome::Unwritten {
                id: p.id,
                error: format!(
                    "the token's region is unhealthy, and it may not write to {}",
                    st.regions.names[route.target]
                ),
            });
            continue;
        }
        let bytes = match events::finish(&p, &st.regions.names[route.target], &st.format) {
            Ok(b) => b,
            Err(e) => {
                outcomes.push(Outcome::Refused(e));
                continue;
            }
        };
        if let Some(home) = route.fallback_from {
            count_fallback(st, home, route.target);
        }
        let rx = st.regions.send(route.target, &p.id, &bytes);
        outcomes.push(Outcome::Unwritten {
            id: p.id.clone(),
            error: String::new(),
        });
        pending.push((index, p.id, bytes, route.target, rx));
    }
    // One deadline for the whole request: every write was queued at once, so every write has
    // had the full send timeout when it passes.
    let deadline = tokio::time::Instant::now() + g.send_timeout.as_duration();
    let mut retry = Vec::new();
    for (index, id, bytes, target, rx) in pending {
        match acked(rx, deadline, g.send_timeout).await {
            Ok(()) => outcomes[index] = Outcome::Written { id, region: target },
            Err(why) if why.too_large => {
                outcomes[index] = Outcome::TooLarge {
                    id,
                    error: why.message,
                }
            }
            Err(why) => {
                // The same bytes, same id, to the other region: if the first write lands after
                // all, the pipelines' dedup keeps one copy.
                set_health(st, target, false, &why.message);
                let other = 1 - target;
                tracing::warn!(event = "REGION_FALLBACK", id = %id, from = %st.regions.names[target], to = %st.regions.names[other], reason = %why, "write re-sent to the other region");
                count_fallback(st, target, other);
                let rx = st.regions.send(other, &id, &bytes);
                retry.push((index, id, target, other, why, rx));
            }
        }
    }
    let deadline = tokio::time::Instant::now() + g.send_timeout.as_duration();
    for (index, id, target, other, why, rx) in retry {
        outcomes[index] = match acked(rx, deadline, g.send_timeout).await {
            Ok(()) => Outcome::Written { id, region: other },
            // The other region takes less: still the item's fault.
            Err(e) if e.too_large => Outcome::TooLarge {
                id,
                error: e.message,
            },
            Err(e) => {
                set_health(st, other, false, &e.message);
                Outcome::Unwritten {
                    id,
                    error: format!(
                        "{}: {why}; {}: {e}",
                        st.regions.names[target], st.regions.names[other]
                    ),
                }
            }
        };
    }
    outcomes
}

/// Waits for Kafka's answer to a queued write, until `deadline` at most.
async fn acked(
    queued: Result<tokio::sync::oneshot::Receiver<send::Acked>, send::Failed>,
    deadline: tokio::time::Instant,
    timeout: crate::component::Millis,
) -> send::Acked {
    match tokio::time::timeout_at(deadline, queued?).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(send::Failed::other("delivery report lost")),
        Err(_) => Err(send::Failed::other(format!(
            "not acknowledged within {timeout}"
        ))),
    }
}

fn count_fallback(st: &State, from: usize, to: usize) {
    st.metrics
        .gateway_fallbacks
        .with_label_values(&[&st.regions.names[from], &st.regions.names[to]])
        .inc();
}

fn respond(st: &State, outcomes: Vec<Outcome>) -> Reply {
    let Counts {
        written,
        refused,
        too_large,
        unwritten,
    } = count(st, &outcomes);
    let results: Vec<Value> = outcomes
        .iter()
        .enumerate()
        .map(|(index, o)| match o {
            Outcome::Written { id, region } => {
                let name = &st.regions.names[*region];
                json!({"index": index, "status": "ok", "eventId": id, "region": name})
            }
            Outcome::Refused(e) => {
                json!({"index": index, "status": "invalid", "field": e.field, "error": e.message})
            }
            Outcome::TooLarge { id, error } => {
                json!({"index": index, "status": "too_large", "eventId": id, "error": error})
            }
            Outcome::Unwritten { id, error } => {
                json!({"index": index, "status": "unavailable", "eventId": id, "error": error})
            }
        })
        .collect();
    let body = json!({"accepted": written, "invalid": refused, "tooLarge": too_large, "unavailable": unwritten, "results": results});
    if written > 0 {
        return reply(StatusCode::OK, body);
    }
    if unwritten > 0 {
        return with_retry_after(st, reply(StatusCode::SERVICE_UNAVAILABLE, body));
    }
    // Nothing written and nothing unavailable: every item was bad input.
    let mut body = body;
    if refused == 0 {
        // Every item was refused by Kafka for its size.
        if let Some(Outcome::TooLarge { error, .. }) = outcomes.first() {
            body["error"] = Value::String(error.clone());
        }
        return reply(StatusCode::PAYLOAD_TOO_LARGE, body);
    }
    let first = outcomes.iter().find_map(|o| match o {
        Outcome::Refused(e) => Some(e.clone()),
        _ => None,
    });
    if let Some(e) = first {
        body["error"] = Value::String(e.message);
        body["field"] = Value::String(e.field);
    }
    reply(StatusCode::BAD_REQUEST, body)
}
