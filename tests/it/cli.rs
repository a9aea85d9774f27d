//! The command line: every flag parses, `check` reports every error and exits non-zero.

use crate::support::fixture;
use std::process::Command;

fn tidemark() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
}

#[test]
fn check_accepts_the_shipped_pipelines() {
    for file in ["pipelines/global.toml", "pipelines/bench.toml"] {
        let out = tidemark().args(["check", file]).output().unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_reports_every_error_and_fails() {
    let dir = crate::support::Scratch::new("cli-check");
    let file = dir.path("bad.toml");
    let text = format!(
        "[sources.s]\ntype = \"file\"\npaths = [\"x\"]\nregion = \"r\"\n{}{}",
        fixture::watermark("s", "2 parsecs", ""),
        fixture::null_sink("out", r#""wm.on_time", "nowhere""#)
    );
    std::fs::write(&file, text).unwrap();
    let out = tidemark().args(["check", &file]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wm.max_out_of_orderness"), "{err}");
    assert!(err.contains("input \"nowhere\" matches no node"), "{err}");
}

#[test]
fn graph_prints_dot_and_mermaid() {
    let out = tidemark()
        .args(["graph", "pipelines/global.toml"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("digraph tidemark"));
    assert!(text.contains("\"wm\" -> \"dedup\" [label=\"late\"]"));
    assert!(text.contains("flowchart LR"));
    assert!(text.contains("dedup -- late --> late"));
    let dot = tidemark()
        .args(["graph", "pipelines/global.toml", "--format", "dot"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&dot.stdout).contains("flowchart"));
}

#[test]
fn run_flags_parse_and_are_checked() {
    let bad = tidemark()
        .args([
            "run",
            "pipelines/bench.toml",
            "--processes",
            "2",
            "--process",
            "2",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--process must be below --processes"));
    let no_hosts = tidemark()
        .args(["run", "pipelines/bench.toml", "--processes", "2"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&no_hosts.stderr).contains("needs a --hostfile"));
    let help = tidemark().args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--workers",
        "--processes",
        "--process",
        "--hostfile",
        "--bounded",
        "--metrics-listen",
    ] {
        assert!(help.contains(flag), "{flag} missing from help");
    }
    let unknown = tidemark()
        .args(["run", "pipelines/bench.toml", "--nope"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
}

#[test]
fn metrics_doc_lists_exactly_the_declared_series() {
    let doc = std::fs::read_to_string("docs/METRICS.md").unwrap();
    let documented: std::collections::BTreeSet<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        // The JMX exporter's series are documented too, but not declared by tidemark.
        .filter(|n| n.starts_with("tidemark_"))
        .collect();
    let declared: std::collections::BTreeSet<&str> =
        tidemark::metrics::NAMES.iter().copied().collect();
    assert_eq!(documented, declared);
    // And every declared name is really registered and exported.
    let m = tidemark::metrics::Metrics::new();
    m.events_in.with_label_values(&["s", "r"]).inc();
    m.events_out.with_label_values(&["s"]).inc();
    m.duplicates.with_label_values(&["r"]).inc();
    m.late_events.with_label_values(&["r"]).inc();
    m.watermark_ms.with_label_values(&["n", "0"]).set(1);
    m.watermark_lag.with_label_values(&["n", "0"]).set(1.0);
    m.throttled_seconds
        .with_label_values(&["n", "0"])
        .inc_by(0.5);
    m.in_flight_records.with_label_values(&["n", "0"]).set(1);
    m.in_flight_bytes.with_label_values(&["n", "0"]).set(1);
    m.consumer_lag.with_label_values(&["c", "t", "0"]).set(1);
    m.committed_offset
        .with_label_values(&["c", "t", "0"])
        .set(1);
    m.sink_errors.with_label_values(&["s"]).inc();
    m.dead_letters_dropped
        .with_label_values(&["s", "too_large"])
        .inc();
    m.dead_letters_truncated.with_label_values(&["s"]).inc();
    m.source_gap.with_label_values(&["s", "t", "0"]).inc();
    m.dedup_beyond_horizon.with_label_values(&["r"]).inc();
    m.event_time_skew
        .with_label_values(&["s", "r"])
        .observe(-0.1);
    m.watermark_bound.with_label_values(&["wm"]).set(2.0);
    let link = ["region-b", "region-a"];
    m.replication_lag.with_label_values(&link).set(1.0);
    m.split_brain.with_label_values(&link).set(1);
    m.split_duration.with_label_values(&link).set(1.0);
    m.split_episodes.with_label_values(&link).inc();
    m.split_hold.with_label_values(&link).set(1);
    m.split_seconds.with_label_values(&link).inc_by(1.0);
    m.bytes_in.with_label_values(&["s", "r"]).inc();
    m.gateway_requests.with_label_values(&["200"]).inc();
    m.gateway_events.with_label_values(&["region-a"]).inc();
    m.gateway_rejected.with_label_values(&["invalid"]).inc();
    m.gateway_fallbacks.with_label_values(&link).inc();
    m.gateway_connections_cut
        .with_label_values(&["header_timeout"])
        .inc();
    m.gateway_token_events.with_label_values(&["t"]).inc();
    m.gateway_auth_refused.with_label_values(&["missing"]).inc();
    m.gateway_token_throttled
        .with_label_values(&["t", "in_flight"])
        .inc();
    m.gateway_region_healthy
        .with_label_values(&["region-a"])
        .set(1);
    m.transactions.with_label_values(&["s", "committed"]).inc();
    m.checkpoint_records.with_label_values(&["s"]).inc();
    m.checkpoint_last.with_label_values(&["s"]).set(1.0);
    m.restore_records.with_label_values(&["t"]).inc();
    let text = m.render();
    for name in tidemark::metrics::NAMES {
        assert!(
            text.contains(&format!("\n{name}")) || text.starts_with(name),
            "{name} not exported"
        );
    }
}

#[test]
fn metrics_endpoint_serves_the_registry() {
    use std::io::{Read, Write};
    let m = tidemark::metrics::Metrics::new();
    m.dedup_unique.inc_by(7);
    let server = tidemark::metrics::serve("127.0.0.1:0".parse().unwrap(), m).unwrap();
    let mut conn = std::net::TcpStream::connect(server.addr).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"));
    assert!(body.contains("tidemark_dedup_unique_total 7"));
}

#[test]
fn status_page_and_its_json() {
    let m = tidemark::metrics::Metrics::new();
    m.dedup_unique.inc_by(90);
    m.duplicates.with_label_values(&["region-b"]).inc_by(10);
    m.events_in
        .with_label_values(&["remote", "region-b"])
        .inc_by(120);
    m.watermark_ms
        .with_label_values(&["wm", "0"])
        .set(1_700_000_000_000);
    m.watermark_ms
        .with_label_values(&["wm", "1"])
        .set(1_700_000_000_500);
    let link = ["region-b", "region-a"];
    m.replication_lag.with_label_values(&link).set(12.5);
    m.split_brain.with_label_values(&link).set(1);
    m.split_duration.with_label_values(&link).set(12.5);
    let server = tidemark::metrics::serve("127.0.0.1:0".parse().unwrap(), m).unwrap();
    let get = |path: &str| {
        let mut c = tidemark::tools::http::HttpClient::connect(&server.addr.to_string()).unwrap();
        c.request("GET", path, &[], b"").unwrap()
    };
    let page = get("/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let html = String::from_utf8(page.body).unwrap();
    assert!(html.contains("status.json"));
    // Self-contained: nothing is loaded from anywhere else.
    for outside in ["src=\"http", "href=\"http", "@import", "//cdn"] {
        assert!(!html.contains(outside), "the page loads {outside}");
    }
    let s = get("/status.json").json();
    assert_eq!(s["unique"], 90.0);
    assert_eq!(s["duplicates"], 10.0);
    assert_eq!(s["events_in"], 120.0);
    // The slowest worker's watermark is the pipeline's.
    assert_eq!(s["watermark_ms"], 1_700_000_000_000.0);
    assert_eq!(s["links"][0]["from"], "region-b");
    assert_eq!(s["links"][0]["split"], true);
    assert_eq!(s["links"][0]["lag_seconds"], 12.5);
}

/// Every `tidemark_*` name in `text`.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    text.match_indices("tidemark_")
        .map(|(i, _)| {
            text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// Fails unless each name (or the histogram it is a series of) is declared in the metrics module.
fn assert_declared(names: &std::collections::BTreeSet<String>, whose: &str) {
    let declared: std::collections::BTreeSet<&str> =
        tidemark::metrics::NAMES.iter().copied().collect();
    for name in names {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| declared.contains(b))
            .unwrap_or(name);
        assert!(
            declared.contains(base),
            "{name} is used by {whose} but never declared"
        );
    }
}

#[test]
fn alert_rules_use_only_declared_metrics() {
    let used = metric_names(&std::fs::read_to_string("infra/prometheus/alerts.yml").unwrap());
    assert!(used.len() >= 8, "{used:?}");
    assert_declared(&used, "an alert");
}

#[test]
fn dashboard_uses_only_declared_metrics_and_every_panel_has_a_query() {
    let text = std::fs::read_to_string("grafana/dashboards/tidemark.json").unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels: Vec<&serde_json::Value> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
        .collect();
    assert!(panels.len() >= 12);
    let mut used = std::collections::BTreeSet::new();
    for p in &panels {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", p["title"]);
        for t in targets {
            used.extend(metric_names(t["expr"].as_str().unwrap()));
        }
    }
    assert_declared(&used, "the dashboard");
    // The four signals of the brief are all there.
    for signal in [
        "tidemark_replication_lag_seconds",
        "tidemark_bytes_in_total",
        "tidemark_split_duration_seconds",
        "tidemark_duplicates_total",
    ] {
        assert!(used.contains(signal), "{signal} missing from the dashboard");
    }
}

/// A client that trickles its request, or never finishes it, holds one connection and no
/// more: a scrape beside it is answered, and the trickler is cut off at the deadline. A
/// request larger than the endpoint takes is refused without reading it all.
#[test]
fn metrics_endpoint_serves_beside_slow_and_oversized_clients() {
    use std::io::{Read, Write};
    use tidemark::metrics::server::{MAX_REQUEST_BYTES, REQUEST_DEADLINE};
    let m = tidemark::metrics::Metrics::new();
    m.dedup_unique.inc_by(3);
    let server = tidemark::metrics::serve("127.0.0.1:0".parse().unwrap(), m).unwrap();
    let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"GET /metr").unwrap();
    let mut scrape = std::net::TcpStream::connect(server.addr).unwrap();
    scrape
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    scrape.read_to_string(&mut body).unwrap();
    assert!(body.contains("tidemark_dedup_unique_total 3"), "{body}");
    // Served while the trickler still holds its connection, unanswered.
    slow.set_nonblocking(true).unwrap();
    let pending = slow.read(&mut [0u8; 16]).unwrap_err();
    assert_eq!(pending.kind(), std::io::ErrorKind::WouldBlock);
    slow.set_nonblocking(false).unwrap();
    // The trickler is answered 408 once the deadline has passed, never served.
    slow.set_read_timeout(Some(REQUEST_DEADLINE * 3)).unwrap();
    let mut cut = String::new();
    slow.read_to_string(&mut cut).unwrap();
    assert!(cut.starts_with("HTTP/1.1 408"), "{cut}");
    let mut big = std::net::TcpStream::connect(server.addr).unwrap();
    let header = format!(
        "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n",
        "a".repeat(MAX_REQUEST_BYTES)
    );
    // The server may close before all of it is written; its answer is what counts.
    let _ = big.write_all(header.as_bytes());
    let mut refused = String::new();
    let _ = big.read_to_string(&mut refused);
    assert!(refused.starts_with("HTTP/1.1 431"), "{refused}");
}

#[test]
fn a_metrics_endpoint_off_loopback_is_warned_of() {
    use tidemark::metrics::server::exposure_warning;
    assert_eq!(exposure_warning("127.0.0.1:9464".parse().unwrap()), None);
    assert_eq!(exposure_warning("[::1]:9464".parse().unwrap()), None);
    let w = exposure_warning("0.0.0.0:9464".parse().unwrap()).unwrap();
    assert!(w.contains("no authentication"), "{w}");
}
