//! A minimal HTTP/1.1 endpoint for `GET /metrics` and the status page (`GET /`,
//! `GET /status.json`), on threads of its own so that scrapes never wait on a busy worker.
//!
//! It has no authentication: it binds loopback by default, and warns when it does not. Each
//! connection is served on its own thread, up to [`MAX_CONNECTIONS`] at once, and a request
//! must arrive whole, within [`MAX_REQUEST_BYTES`] and [`REQUEST_DEADLINE`], so one slow or
//! oversized client cannot hold the endpoint from Prometheus.

use super::Metrics;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections served at once; one more is answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 16;
/// The most a request line and its headers may take (a GET has no body).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// How long a client may take to send its request.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// What to warn of an endpoint bound to `addr`: anyone who can reach a non-loopback address
/// can read the metrics and the status page.
pub fn exposure_warning(addr: SocketAddr) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!("metrics endpoint {addr} is not on loopback, and it has no authentication: anyone who can reach it can read the metrics and the status page (bind 127.0.0.1, or put it behind a proxy that authenticates)")
    })
}

/// A running endpoint; stops when dropped.
pub struct MetricsServer {
    /// The bound address (useful when port 0 was asked for).
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `metrics` on `addr` until the returned handle is dropped.
pub fn serve(addr: SocketAddr, metrics: Metrics) -> std::io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    if let Some(warning) = exposure_warning(addr) {
        tracing::warn!("{warning}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let rates = Arc::new(std::sync::Mutex::new(super::status::Rates::default()));
    {
        let (rates, metrics, flag) = (Arc::clone(&rates), metrics.clone(), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("metrics-rates".into())
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    if let Ok(mut r) = rates.lock() {
                        r.sample(&metrics);
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            })?;
    }
    let thread = std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            let active = Arc::new(AtomicUsize::new(0));
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = conn else { continue };
                if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                    let _ = respond(
                        &mut stream,
                        "503 Service Unavailable",
                        "text/plain",
                        "busy\n",
                    );
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let (metrics, rates, mine) =
                    (metrics.clone(), Arc::clone(&rates), Arc::clone(&active));
                let spawned = std::thread::Builder::new()
                    .name("metrics-conn".into())
                    .spawn(move || {
                        let _ = answer(stream, &metrics, &rates);
                        mine.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
        })?;
    Ok(MetricsServer {
        addr,
        stop,
        thread: Some(thread),
    })
}

fn answer(
    stream: TcpStream,
    metrics: &Metrics,
    rates: &std::sync::Mutex<super::status::Rates>,
) -> std::io::Result<()> {
    let mut stream = stream;
    stream.set_write_timeout(Some(REQUEST_DEADLINE))?;
    let head = match read_head(&mut stream)? {
        Head::Whole(head) => head,
        Head::TooLarge => {
            respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request too large\n",
            )?;
            // Closing with the rest unread would reset the connection, and the client might
            // lose the answer: take a little more first, briefly.
            stream.shutdown(std::net::Shutdown::Write)?;
            stream.set_read_timeout(Some(Duration::from_millis(200)))?;
            let _ = std::io::copy(&mut (&mut stream).take(64 * 1024), &mut std::io::sink());
            return Ok(());
        }
        Head::TooSlow => {
            return respond(
                &mut stream,
                "408 Request Timeout",
                "text/plain",
                "too slow\n",
            )
        }
    };
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/") => (
            "200 OK",
            "text/html; charset=utf-8",
            super::status::PAGE.to_string(),
        ),
        ("GET", "/status.json") => (
            "200 OK",
            "application/json",
            super::status::snapshot(metrics, &rates.lock().unwrap_or_else(|e| e.into_inner()))
                .to_string(),
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "try / (status page), /status.json or /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    respond(&mut stream, status, content_type, &body)
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// A request's line and headers, as they arrived.
enum Head {
    /// Up to the blank line.
    Whole(String),
    /// Past [`MAX_REQUEST_BYTES`] without one.
    TooLarge,
    /// Not whole within [`REQUEST_DEADLINE`] (a client trickling bytes, or silent).
    TooSlow,
}

fn read_head(stream: &mut TcpStream) -> std::io::Result<Head> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        // Each read may wait only for what is left of the deadline, however the bytes trickle.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Head::TooSlow);
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(Head::TooSlow),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Head::TooSlow)
            }
            Err(e) => return Err(e),
        };
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            return Ok(Head::Whole(String::from_utf8_lossy(&head).into_owned()));
        }
        if head.len() > MAX_REQUEST_BYTES {
            return Ok(Head::TooLarge);
        }
    }
}
