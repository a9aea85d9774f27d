//! A minimal HTTP/1.1 endpoint for `GET /metrics` and the status page (`GET /`,
//! `GET /status.json`), on a thread of its own so that scrapes never wait on a busy worker.

use super::Metrics;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = conn {
                    let _ = answer(stream, &metrics, &rates);
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
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers; the body of a GET is empty.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
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
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
