//! The gateway over HTTP, with two in-process Kafka regions (librdkafka's mock cluster): every
//! status code, what is written where, fallback when a region stops answering, and the return.

use rdkafka::mocking::MockCluster;
use std::time::{Duration, Instant};
use tidemark::tools::http::{HttpClient, HttpResponse};

type Mock = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

struct Setup {
    a: Mock,
    b: Mock,
    gateway: Option<tidemark::gateway::Gateway>,
    addr: String,
    metrics: tidemark::metrics::Metrics,
}

fn setup(extra: &str) -> Setup {
    setup_with(extra, "")
}

/// [`setup`], with `a_options` as region-a's `[clusters.region-a.options]` lines.
fn setup_with(extra: &str, a_options: &str) -> Setup {
    let a = MockCluster::new(1).unwrap();
    let b = MockCluster::new(1).unwrap();
    for m in [&a, &b] {
        m.create_topic("log-events", 2, 1).unwrap();
    }
    // Settings in `extra` replace the defaults below.
    let defaults = [
        r#"listen = "127.0.0.1:0""#,
        r#"local_region = "region-a""#,
        r#"send_timeout = "700ms""#,
        r#"probe_interval = "200ms""#,
        r#"probe_timeout = "300ms""#,
        r#"return_after = "1s""#,
        "max_body_bytes = 4096",
        r#"shutdown_grace = "1s""#,
        r#"auth = "none""#,
    ];
    let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_string();
    let overridden: Vec<String> = extra.lines().map(key).collect();
    let mut gateway: Vec<&str> = defaults
        .into_iter()
        .filter(|d| !overridden.contains(&key(d)))
        .collect();
    gateway.extend(extra.lines());
    let text = format!(
        "[gateway]\n{}\n\n[clusters.region-a]\nbootstrap = \"{}\"\n\n[clusters.region-a.options]\n{a_options}\n\n[clusters.region-b]\nbootstrap = \"{}\"\n",
        gateway.join("\n"),
        a.bootstrap_servers(),
        b.bootstrap_servers()
    );
    let file = tidemark::config::parse_gateway(&text).unwrap();
    let metrics = tidemark::metrics::Metrics::new();
    let gateway = tidemark::gateway::start(file, metrics.clone()).unwrap();
    let addr = gateway.addr.to_string();
    Setup {
        a,
        b,
        gateway: Some(gateway),
        addr,
        metrics,
    }
}

fn post(s: &Setup, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    let mut c = HttpClient::connect(&s.addr).unwrap();
    let mut h = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    c.request("POST", "/v1/logs", &h, body.as_bytes()).unwrap()
}

fn read_ids(bootstrap: &str) -> Vec<String> {
    tidemark::tools::topic::read_topic(bootstrap, "log-events")
        .unwrap()
        .into_iter()
        .map(|(_, payload, _)| {
            let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            v["eventId"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn writes_then_answers_with_ids_and_regions() {
    let s = setup("");
    let r = post(
        &s,
        &[],
        r#"[{"eventId":"e1","timestamp":1700000000000,"message":"a"},{"message":"no id"}]"#,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["accepted"], 2);
    let generated = v["results"][1]["eventId"].as_str().unwrap().to_string();
    assert_eq!(&generated[14..15], "7", "a UUIDv7: {generated}");
    assert_eq!(v["results"][0]["region"], "region-a");
    // 200 means Kafka has them: they are already readable in region-a, and only there.
    let mut ids = read_ids(&s.a.bootstrap_servers());
    ids.sort();
    let mut want = vec!["e1".to_string(), generated];
    want.sort();
    assert_eq!(ids, want);
    assert!(read_ids(&s.b.bootstrap_servers()).is_empty());

    // X-Region picks the region; NDJSON works; the region field is filled in.
    let mut c = HttpClient::connect(&s.addr).unwrap();
    let r = c
        .request(
            "POST",
            "/v1/logs",
            &[
                ("Content-Type", "application/x-ndjson"),
                ("X-Region", "region-b"),
            ],
            b"{\"eventId\":\"n1\"}\n{\"eventId\":\"n2\"}\n",
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["results"][1]["region"], "region-b");
    let payloads =
        tidemark::tools::topic::read_topic(&s.b.bootstrap_servers(), "log-events").unwrap();
    assert_eq!(payloads.len(), 2);
    let v: serde_json::Value = serde_json::from_slice(&payloads[0].1).unwrap();
    assert_eq!(v["region"], "region-b");
    assert!(v["timestamp"].as_u64().unwrap() > 1_700_000_000_000);
}

#[test]
fn every_error_status() {
    let s = setup("max_in_flight = 2");
    let status = |r: &HttpResponse| {
        (
            r.status,
            r.json()["field"].as_str().unwrap_or("").to_string(),
        )
    };
    assert_eq!(status(&post(&s, &[], "{not json")), (400, String::new()));
    assert_eq!(status(&post(&s, &[], "[1]")), (400, String::new()));
    assert_eq!(
        status(&post(&s, &[], r#"{"eventId":5}"#)),
        (400, "eventId".into())
    );
    let long = format!(r#"{{"eventId":"{}"}}"#, "x".repeat(129));
    assert_eq!(status(&post(&s, &[], &long)), (400, "eventId".into()));
    assert_eq!(
        status(&post(&s, &[], r#"{"eventId":"t","timestamp":"noon"}"#)),
        (400, "timestamp".into())
    );
    assert_eq!(
        status(&post(&s, &[("X-Region", "region-z")], r#"{"eventId":"r"}"#)),
        (400, "X-Region".into())
    );
    assert_eq!(
        post(&s, &[], &format!(r#"{{"m":"{}"}}"#, "y".repeat(5000))).status,
        413
    );
    let mut c = HttpClient::connect(&s.addr).unwrap();
    let r = c
        .request(
            "POST",
            "/v1/logs",
            &[("Content-Type", "text/plain")],
            b"hello",
        )
        .unwrap();
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (415, Some("Content-Type"))
    );
    // More events than may be in flight: refused whole, with Retry-After.
    let r = post(
        &s,
        &[],
        r#"[{"eventId":"1"},{"eventId":"2"},{"eventId":"3"}]"#,
    );
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    // A batch with one bad event: the others go through and the bad one is named.
    let r = post(&s, &[], r#"[{"eventId":"ok-1"},{"eventId":""}]"#);
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        (v["accepted"].as_u64(), v["invalid"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(v["results"][1]["field"], "eventId");
    assert_eq!(read_ids(&s.a.bootstrap_servers()), vec!["ok-1".to_string()]);

    let get = |path: &str| {
        let mut c = HttpClient::connect(&s.addr).unwrap();
        c.request("GET", path, &[], b"").unwrap()
    };
    assert_eq!(get("/healthz").status, 200);
    assert_eq!(get("/readyz").status, 200);
    assert_eq!(get("/nope").status, 404);
    assert_eq!(get("/v1/logs").status, 405);
    let openapi = get("/openapi.json").json();
    assert_eq!(openapi["openapi"], "3.0.3");
    assert!(openapi["paths"]["/v1/logs"]["post"]["responses"]["503"].is_object());
    let metrics = String::from_utf8(get("/metrics").body).unwrap();
    assert!(
        metrics.contains("tidemark_gateway_requests_total{code=\"415\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("tidemark_gateway_events_total{region=\"region-a\"} 1"));
}

#[test]
fn an_item_too_large_for_kafka_is_the_items_fault_not_the_regions() {
    // The body and the event are within the gateway's limits, but over what region-a's
    // producer sends.
    let s = setup_with("max_body_bytes = 65536", r#""message.max.bytes" = "3000""#);
    let big = format!(r#"{{"eventId":"big","message":"{}"}}"#, "y".repeat(5000));
    let r = post(&s, &[], &format!(r#"[{{"eventId":"small"}},{big}]"#));
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        (v["accepted"].as_u64(), v["tooLarge"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(v["results"][1]["status"], "too_large");
    assert_eq!(v["results"][1]["eventId"], "big");
    let r = post(&s, &[], &big);
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["results"][0]["status"], "too_large");
    // Region-a stays healthy and nothing was re-sent to region-b.
    let m = &s.metrics;
    assert_eq!(
        m.gateway_region_healthy
            .with_label_values(&["region-a"])
            .get(),
        1
    );
    assert_eq!(
        m.gateway_fallbacks
            .with_label_values(&["region-a", "region-b"])
            .get(),
        0
    );
    assert_eq!(
        m.gateway_rejected.with_label_values(&["too_large"]).get(),
        2
    );
    assert_eq!(
        read_ids(&s.a.bootstrap_servers()),
        vec!["small".to_string()]
    );
    assert!(read_ids(&s.b.bootstrap_servers()).is_empty());
}

#[test]
fn sticky_producer_falls_back_and_returns() {
    let mut s = setup("");
    let send = |s: &Setup, id: &str| {
        post(
            s,
            &[("X-Producer-Id", "p1"), ("X-Region", "region-b")],
            &format!(r#"{{"eventId":"{id}"}}"#),
        )
    };
    let r = send(&s, "before");
    assert_eq!(r.json()["results"][0]["region"], "region-b");

    // region-b stops answering: the write times out there and is re-sent to region-a.
    s.b.broker_down(1).unwrap();
    let r = send(&s, "during");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["results"][0]["region"], "region-a");
    let fallbacks = s
        .metrics
        .gateway_fallbacks
        .with_label_values(&["region-b", "region-a"])
        .get();
    assert!(fallbacks >= 1);
    // Sticky: the next one goes straight to region-a.
    let r = send(&s, "during-2");
    assert_eq!(r.json()["results"][0]["region"], "region-a");

    // region-b is back; after return_after of health the producer goes home.
    s.b.broker_up(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    let back = loop {
        n += 1;
        let r = send(&s, &format!("after-{n}"));
        if r.json()["results"][0]["region"] == "region-b" {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(back, "the producer never returned to region-b");
    // Every acknowledged id is in one of the regions (the timed-out write to region-b may also
    // land there later, with the same id, for dedup to drop).
    s.gateway.take().unwrap().stop();
    let mut all = read_ids(&s.a.bootstrap_servers());
    all.extend(read_ids(&s.b.bootstrap_servers()));
    for id in ["before", "during", "during-2", &format!("after-{n}")] {
        assert!(all.iter().any(|x| x == id), "{id} missing");
    }
}

#[test]
fn no_region_means_503_and_not_ready() {
    let s = setup("");
    s.a.broker_down(1).unwrap();
    s.b.broker_down(1).unwrap();
    let r = post(&s, &[], r#"{"eventId":"x"}"#);
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.json()["results"][0]["status"], "unavailable");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ready = 200;
    while Instant::now() < deadline && ready == 200 {
        let mut c = HttpClient::connect(&s.addr).unwrap();
        ready = c.request("GET", "/readyz", &[], b"").unwrap().status;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ready, 503);
}

#[test]
fn loadgen_through_the_gateway_records_what_was_acknowledged() {
    let s = setup("");
    let dir = crate::support::Scratch::new("gateway-loadgen");
    let out = dir.path("ids.tsv");
    let options = tidemark::tools::loadgen::LoadgenOptions {
        retries: 0.1,
        batch: 7,
        connections: 3,
        ..gateway_load(&s.addr, out.clone().into(), 300, 3)
    };
    let summary = tidemark::tools::loadgen::run(&options).unwrap();
    assert_eq!((summary.acked_unique, summary.unacked_unique), (300, 0));
    let expected = tidemark::tools::verify::read_ids(out.as_ref()).unwrap();
    assert_eq!(expected.events.len(), 300);
    // Every acknowledged event is in one region or the other, byte for byte as it was sent
    // (nothing needed filling in, so the gateway passed the bytes through).
    let mut written = std::collections::HashMap::new();
    for bootstrap in [s.a.bootstrap_servers(), s.b.bootstrap_servers()] {
        for (_, payload, _) in tidemark::tools::topic::read_topic(&bootstrap, "log-events").unwrap()
        {
            let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            written.insert(v["eventId"].as_str().unwrap().to_string(), payload);
        }
    }
    for (id, (_, payload)) in &expected.events {
        assert_eq!(written.get(id), Some(payload), "{id}");
    }
    // Producers were homed on both regions.
    assert!(
        s.metrics
            .gateway_events
            .with_label_values(&["region-a"])
            .get()
            > 0
    );
    assert!(
        s.metrics
            .gateway_events
            .with_label_values(&["region-b"])
            .get()
            > 0
    );
}

#[test]
fn shutdown_finishes_requests_in_flight() {
    let mut s = setup("probe_timeout = \"5s\"\nsend_timeout = \"10s\"");
    // Every request to region-a's broker takes 100 ms (well within the probe timeout), so
    // the write is still waiting for its acknowledgement when the gateway is told to stop.
    s.a.broker_round_trip_time(1, Duration::from_millis(100))
        .unwrap();
    let addr = s.addr.clone();
    let request = std::thread::spawn(move || {
        let mut c = HttpClient::connect(&addr).unwrap();
        c.request(
            "POST",
            "/v1/logs",
            &[("Content-Type", "application/json")],
            br#"{"eventId":"in-flight"}"#,
        )
        .unwrap()
    });
    std::thread::sleep(Duration::from_millis(40));
    let stopping = Instant::now();
    s.gateway.take().unwrap().stop();
    assert!(
        stopping.elapsed() >= Duration::from_millis(20),
        "stop did not wait"
    );
    let r = request.join().unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["results"][0]["region"], "region-a");
    // And the listener is closed.
    assert!(HttpClient::connect(&s.addr).is_err());
}

/// Whether the server has closed `stream`, waiting up to `within` for it to say so.
fn closed_within(stream: &mut std::net::TcpStream, within: Duration) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // An answer (a 408, say) before the close: read on.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Connections cut for `reason`. The count follows the close by a moment (the connection's
/// task ends after the client has seen it), so a count still below `at_least` is waited for, 2 s
/// at most.
fn counted(s: &Setup, reason: &str, at_least: u64) -> u64 {
    let get = || {
        s.metrics
            .gateway_connections_cut
            .with_label_values(&[reason])
            .get()
    };
    for _ in 0..20 {
        if get() >= at_least {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    get()
}

/// A slowloris client (its head one byte at a time, steadily) is cut at the header timeout,
/// while another client's requests are served meanwhile.
#[test]
fn a_trickled_head_is_cut_at_the_header_timeout() {
    use std::io::Write;
    let s = setup("header_timeout = \"1s\"\nidle_timeout = \"30s\"");
    let mut attacker = std::net::TcpStream::connect(&s.addr).unwrap();
    let head = b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let started = Instant::now();
    let mut sent = 0;
    let mut cut = false;
    let mut ok = 0;
    // One byte every 100 ms: the whole head would take 12 s; the header timeout is 1 s.
    while sent < head.len() {
        if attacker.write_all(&head[sent..sent + 1]).is_err() {
            cut = true;
            break;
        }
        sent += 1;
        if post(&s, &[], r#"{"message":"meanwhile"}"#).status == 200 {
            ok += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    cut = cut || closed_within(&mut attacker, Duration::from_secs(3));
    assert!(
        cut,
        "the trickling client still holds its connection after {sent} bytes"
    );
    assert!(sent < head.len(), "the whole head got through");
    assert!(ok > 0, "no other request was served meanwhile");
    assert_eq!(counted(&s, "header_timeout", 1), 1);
}

/// Between requests a kept-alive connection may idle longer than a head may take, but not
/// longer than the idle timeout.
#[test]
fn a_kept_alive_connection_idles_up_to_the_idle_timeout() {
    use std::io::{Read, Write};
    let s = setup("header_timeout = \"500ms\"\nidle_timeout = \"3s\"");
    let mut c = std::net::TcpStream::connect(&s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let ask = |c: &mut std::net::TcpStream| {
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = c.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    assert!(ask(&mut c).starts_with("HTTP/1.1 200"));
    // Three header timeouts of idling, within the idle timeout: the connection still serves.
    std::thread::sleep(Duration::from_millis(1500));
    let second = ask(&mut c);
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert_eq!(counted(&s, "idle_timeout", 0), 0);
    // Then it idles past the idle timeout, and is closed.
    assert!(
        closed_within(&mut c, Duration::from_secs(6)),
        "an idle connection was kept"
    );
    assert_eq!(counted(&s, "idle_timeout", 1), 1);
}

/// A body that stops arriving gets 408 at the body timeout, and the connection goes.
#[test]
fn a_stalled_body_gets_408() {
    use std::io::{Read, Write};
    let s = setup("body_timeout = \"1s\"");
    let mut c = std::net::TcpStream::connect(&s.addr).unwrap();
    c.write_all(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"message\":").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 1s"), "{answer}");
    assert_eq!(counted(&s, "body_timeout", 1), 1);
}

/// Beyond `max_connections`, a connection is answered 503 with Retry-After at once; when one
/// closes, a new one is served.
#[test]
fn connections_beyond_the_limit_get_503() {
    let s = setup("max_connections = 2");
    let mut held: Vec<HttpClient> = (0..2)
        .map(|_| {
            let mut c = HttpClient::connect(&s.addr).unwrap();
            assert_eq!(c.request("GET", "/healthz", &[], b"").unwrap().status, 200);
            c
        })
        .collect();
    let mut third = HttpClient::connect(&s.addr).unwrap();
    let r = third.request("GET", "/healthz", &[], b"").unwrap();
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(counted(&s, "over_limit", 1), 1);
    held.pop();
    // The closed connection is let go of promptly; a bounded wait for it.
    let mut served = false;
    for _ in 0..50 {
        let mut c = HttpClient::connect(&s.addr).unwrap();
        if c.request("GET", "/healthz", &[], b"").unwrap().status == 200 {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        served,
        "no connection was served after one of the two closed"
    );
    assert_eq!(held.len(), 1);
}

/// gzip and zstd bodies are written as the events they inflate to; a bomb is 413 after
/// inflating no more than the limit; an unknown encoding 415; a corrupt body 400.
#[test]
fn compressed_bodies() {
    use std::io::Write;
    let s = setup("max_body_bytes = 65536");
    let ndjson = (0..50)
        .map(|i| format!("{{\"eventId\":\"z-{i}\",\"message\":\"compressed\"}}"))
        .collect::<Vec<_>>()
        .join("\n");
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(ndjson.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let zst = ruzstd::encoding::compress_to_vec(
        ndjson.as_bytes(),
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    let send = |encoding: &str, body: &[u8]| {
        let mut c = HttpClient::connect(&s.addr).unwrap();
        let h = [
            ("Content-Type", "application/x-ndjson"),
            ("Content-Encoding", encoding),
            ("X-Region", "region-a"),
        ];
        c.request("POST", "/v1/logs", &h, body).unwrap()
    };
    for (encoding, body) in [("gzip", &gz), ("zstd", &zst)] {
        let r = send(encoding, body);
        assert_eq!(
            r.status,
            200,
            "{encoding}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["accepted"], 50, "{encoding}");
    }
    // Both bodies' events, each written once per body (the ids repeat across the two).
    let ids = read_ids(&s.a.bootstrap_servers());
    for i in 0..50 {
        let n = ids.iter().filter(|id| **id == format!("z-{i}")).count();
        assert_eq!(n, 2, "z-{i}");
    }
    // 16 MiB of zeros, a few KiB compressed, against a 64 KiB limit.
    let bomb = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 16 << 20]).unwrap();
        e.finish().unwrap()
    };
    assert!(bomb.len() < 65536);
    let r = send("gzip", &bomb);
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("inflates to more than 65536"));
    assert_eq!(send("br", &gz).status, 415);
    assert_eq!(send("zstd", &gz).status, 400);
}

/// Certificates made with the openssl command: two CAs, a server certificate for 127.0.0.1 from
/// each, and a client certificate from each.
fn certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for ca in ["ca1", "ca2"] {
        let subject = format!("/CN=tidemark test {ca}");
        let (key, pem) = (format!("{ca}.key"), format!("{ca}.pem"));
        let mut args = vec![
            "req", "-x509", "-days", "2", "-subj", &subject, "-keyout", &key, "-out", &pem,
        ];
        args.extend(ec);
        run(&args);
        for (who, ext, cn) in [
            ("server", "server.ext", "127.0.0.1"),
            ("client", "client.ext", "producer"),
        ] {
            let n = &ca[2..];
            let (k, csr, cert) = (
                format!("{who}{n}.key"),
                format!("{who}{n}.csr"),
                format!("{who}{n}.pem"),
            );
            let subject = format!("/CN={cn}");
            let mut args = vec!["req", "-subj", &subject, "-keyout", &k, "-out", &csr];
            args.extend(ec);
            run(&args);
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &pem,
                "-CAkey",
                &key,
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                ext,
                "-out",
                &cert,
            ]);
        }
    }
}

fn tls_dir(name: &str) -> crate::support::Scratch {
    let dir = crate::support::Scratch::new(&format!("gateway-tls-{name}"));
    certificates(&dir.0);
    dir
}

fn post_tls(addr: &str, tls: &tidemark::tools::http::ClientTls) -> std::io::Result<HttpResponse> {
    let mut c = HttpClient::connect_tls(addr, tls)?;
    c.request(
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/json")],
        br#"{"message":"over tls"}"#,
    )
}

/// HTTPS with the configured pair; a client that does not trust it fails its handshake; a pair
/// renewed on disk is served without a restart.
#[test]
fn tls_is_served_and_a_renewed_certificate_is_picked_up() {
    use tidemark::tools::http::ClientTls;
    let scratch = tls_dir("reload");
    let dir = &scratch.0;
    let live = |from: &str| {
        // Each file replaced whole, as a renewal tool does.
        for ext in ["key", "pem"] {
            std::fs::copy(
                dir.join(format!("{from}.{ext}")),
                dir.join(format!("live.{ext}.new")),
            )
            .unwrap();
            std::fs::rename(
                dir.join(format!("live.{ext}.new")),
                dir.join(format!("live.{ext}")),
            )
            .unwrap();
        }
    };
    live("server1");
    let s = setup(&format!(
        "[gateway.tls]\ncert = \"{}\"\nkey = \"{}\"",
        dir.join("live.pem").display(),
        dir.join("live.key").display()
    ));
    let trusts1 = ClientTls::new(&dir.join("ca1.pem"), None).unwrap();
    let trusts2 = ClientTls::new(&dir.join("ca2.pem"), None).unwrap();
    let r = post_tls(&s.addr, &trusts1).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let e = post_tls(&s.addr, &trusts2).unwrap_err();
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    // Plain HTTP on the TLS port is no way in either.
    assert!(HttpClient::connect(&s.addr)
        .and_then(|mut c| c.request("GET", "/healthz", &[], b""))
        .map_or(true, |r| r.status != 200));
    live("server2");
    let mut renewed = false;
    for _ in 0..50 {
        if post_tls(&s.addr, &trusts2).is_ok_and(|r| r.status == 200) {
            renewed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(renewed, "the renewed certificate was not served within 5 s");
    // A client of its own: one that connected before would resume its TLS session, which
    // skips the certificate.
    let fresh1 = ClientTls::new(&dir.join("ca1.pem"), None).unwrap();
    assert!(
        post_tls(&s.addr, &fresh1).is_err(),
        "the old certificate is still served"
    );
    assert!(s.metrics.gateway_tls_failures.get() >= 2);
}

/// With `client_ca`, only clients with a certificate of that CA get in.
#[test]
fn mutual_tls_refuses_clients_without_a_certificate_of_the_client_ca() {
    use tidemark::tools::http::ClientTls;
    let scratch = tls_dir("mtls");
    let dir = &scratch.0;
    let s = setup(&format!(
        "[gateway.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"",
        dir.join("server1.pem").display(),
        dir.join("server1.key").display(),
        dir.join("ca1.pem").display()
    ));
    let ca = dir.join("ca1.pem");
    let none = ClientTls::new(&ca, None).unwrap();
    let untrusted = ClientTls::new(
        &ca,
        Some((&dir.join("client2.pem"), &dir.join("client2.key"))),
    )
    .unwrap();
    let trusted = ClientTls::new(
        &ca,
        Some((&dir.join("client1.pem"), &dir.join("client1.key"))),
    )
    .unwrap();
    assert!(
        post_tls(&s.addr, &none).is_err(),
        "no client certificate got in"
    );
    assert!(
        post_tls(&s.addr, &untrusted).is_err(),
        "a certificate of another CA got in"
    );
    let r = post_tls(&s.addr, &trusted).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(s.metrics.gateway_tls_failures.get() >= 2);
}

/// A graceful stop finishes a request in flight over TLS too.
#[test]
fn shutdown_finishes_tls_requests_in_flight() {
    use tidemark::tools::http::ClientTls;
    let scratch = tls_dir("drain");
    let dir = &scratch.0;
    let mut s = setup(&format!(
        "probe_timeout = \"5s\"\nsend_timeout = \"10s\"\n[gateway.tls]\ncert = \"{}\"\nkey = \"{}\"",
        dir.join("server1.pem").display(),
        dir.join("server1.key").display()
    ));
    s.a.broker_round_trip_time(1, Duration::from_millis(100))
        .unwrap();
    let tls = ClientTls::new(&dir.join("ca1.pem"), None).unwrap();
    let addr = s.addr.clone();
    let request = std::thread::spawn(move || post_tls(&addr, &tls).unwrap());
    std::thread::sleep(Duration::from_millis(60));
    s.gateway.take().unwrap().stop();
    let r = request.join().unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["results"][0]["region"], "region-a");
}

/// API tokens: no token and an unknown one get 401; a token writes as its own producer and
/// cannot pose as another (403), nor write to a region it is not given (403); what it writes
/// counts under its name.
#[test]
fn tokens_say_who_may_write_where() {
    let dir = crate::support::Scratch::new("gateway-tokens");
    let file = dir.0.join("tokens.toml");
    let add = |name: &str, producer: &str, regions: &[&str]| {
        let regions: Vec<String> = regions.iter().map(|r| r.to_string()).collect();
        tidemark::gateway::auth::add(&file, name, producer, &regions, Default::default()).unwrap()
    };
    let checkout = add("checkout", "checkout-service", &[]);
    let billing = add("billing", "billing-service", &["region-b"]);
    let s = setup(&format!(
        "auth = \"tokens\"\ntoken_file = \"{}\"",
        file.display()
    ));
    let send = |token: Option<&str>, extra: &[(&str, &str)]| {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut h: Vec<(&str, &str)> = extra.to_vec();
        if let Some(b) = &bearer {
            h.push(("Authorization", b));
        }
        post(&s, &h, r#"{"message":"with a token"}"#)
    };
    let r = send(None, &[]);
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"tidemark\"")
    );
    assert_eq!(send(Some("tdm_0000"), &[]).status, 401);
    // The bytes of a real token, one changed, are no token.
    let mut forged = checkout.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
    assert_eq!(
        send(Some(std::str::from_utf8(&forged).unwrap()), &[]).status,
        401
    );
    // Another producer's id, or a region not given: 403.
    let r = send(Some(&checkout), &[("X-Producer-Id", "billing-service")]);
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("writes as producer \"checkout-service\""));
    let r = send(Some(&billing), &[("X-Region", "region-a")]);
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    // Its own producer id is fine; billing, given only region-b, goes there without X-Region.
    let r = send(Some(&checkout), &[("X-Producer-Id", "checkout-service")]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["results"][0]["region"], "region-a");
    let r = send(Some(&billing), &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["results"][0]["region"], "region-b");
    let events = |name: &str| {
        s.metrics
            .gateway_token_events
            .with_label_values(&[name])
            .get()
    };
    assert_eq!((events("checkout"), events("billing")), (1, 1));
    let refused = |reason: &str| {
        s.metrics
            .gateway_auth_refused
            .with_label_values(&[reason])
            .get()
    };
    assert_eq!(
        (
            refused("missing"),
            refused("unknown"),
            refused("producer"),
            refused("region")
        ),
        (1, 2, 1, 1)
    );
    // The metrics name tokens, never carry them.
    let text = s.metrics.render();
    assert!(
        text.contains("tidemark_gateway_token_events_total{token=\"checkout\"} 1"),
        "{text}"
    );
    assert!(!text.contains(&checkout) && !text.contains(&billing));
    // A token removed from the file is refused within a second or so, without a restart.
    std::thread::sleep(Duration::from_millis(1100));
    assert!(tidemark::gateway::auth::remove(&file, "checkout").unwrap());
    let mut gone = false;
    for _ in 0..30 {
        if send(Some(&checkout), &[]).status == 401 {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gone, "a removed token still writes");
}

fn ndjson(n: usize, tag: &str) -> String {
    (0..n)
        .map(|i| format!("{{\"message\":\"{tag} {i}\"}}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A token over its events/s gets 429 with Retry-After while another token still gets 200;
/// so does one over its share of the events in flight.
#[test]
fn a_noisy_token_is_throttled_and_the_others_are_not() {
    let dir = crate::support::Scratch::new("gateway-quota");
    let file = dir.0.join("tokens.toml");
    let limits = tidemark::gateway::auth::Limits {
        events_per_second: Some(1.0),
        bytes_per_second: None,
    };
    let noisy = tidemark::gateway::auth::add(&file, "noisy", "noisy", &[], limits).unwrap();
    let quiet =
        tidemark::gateway::auth::add(&file, "quiet", "quiet", &[], Default::default()).unwrap();
    // Unlimited too; noisy is still in debt when the share in flight is tried.
    let noisy_fresh =
        tidemark::gateway::auth::add(&file, "other", "other", &[], Default::default()).unwrap();
    let mut s = setup(&format!(
        "auth = \"tokens\"\ntoken_file = \"{}\"\ntoken_max_in_flight = 5\nprobe_timeout = \"5s\"\nsend_timeout = \"10s\"",
        file.display()
    ));
    let send = |addr: &str, token: &str, n: usize| {
        let bearer = format!("Bearer {token}");
        let mut c = HttpClient::connect(addr).unwrap();
        let h = [
            ("Content-Type", "application/x-ndjson"),
            ("Authorization", bearer.as_str()),
        ];
        c.request("POST", "/v1/logs", &h, ndjson(n, token).as_bytes())
            .unwrap()
    };
    // 5 events from a bucket of one a second: admitted (the balance was positive), leaving a
    // debt of 4 s; the next request waits it out, whatever the time the first one took.
    assert_eq!(send(&s.addr, &noisy, 5).status, 200);
    let r = send(&s.addr, &noisy, 1);
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((2..=4).contains(&wait), "Retry-After {wait}");
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("events_per_second"));
    assert_eq!(send(&s.addr, &quiet, 5).status, 200);
    let throttled = |token: &str, limit: &str| {
        s.metrics
            .gateway_token_throttled
            .with_label_values(&[token, limit])
            .get()
    };
    assert_eq!(throttled("noisy", "events_per_second"), 1);

    // The share in flight: with every write held 2 s by the broker, quiet's 5 events in
    // flight are all its share, and a sixth waits; another token has a share of its own.
    s.a.broker_round_trip_time(1, Duration::from_secs(2))
        .unwrap();
    s.b.broker_round_trip_time(1, Duration::from_secs(2))
        .unwrap();
    let addr = s.addr.clone();
    let quiet2 = quiet.clone();
    let held = std::thread::spawn(move || send(&addr, &quiet2, 5));
    for _ in 0..300 {
        if s.metrics.gateway_in_flight.get() == 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        s.metrics.gateway_in_flight.get(),
        5,
        "quiet's 5 events never were in flight"
    );
    let r = send(&s.addr, &quiet, 1);
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["error"].as_str().unwrap().contains("in flight"));
    let other = send(&s.addr, &noisy_fresh, 1);
    assert_eq!(
        other.status,
        200,
        "{}",
        String::from_utf8_lossy(&other.body)
    );
    assert_eq!(held.join().unwrap().status, 200);
    assert_eq!(throttled("quiet", "in_flight"), 1);
    // Given back: quiet may send again.
    assert_eq!(send(&s.addr, &quiet, 5).status, 200);
    let _ = s.gateway.take();
}

/// loadgen over HTTPS with a token: every event acknowledged, all written as the token's
/// producer, counted under its name.
#[test]
fn loadgen_over_tls_with_a_token() {
    let scratch = tls_dir("loadgen");
    let dir = &scratch.0;
    let tokens = dir.join("tokens.toml");
    let token =
        tidemark::gateway::auth::add(&tokens, "load", "loadgen", &[], Default::default()).unwrap();
    std::fs::write(dir.join("token"), &token).unwrap();
    let s = setup(&format!(
        "auth = \"tokens\"\ntoken_file = \"{}\"\n[gateway.tls]\ncert = \"{}\"\nkey = \"{}\"",
        tokens.display(),
        dir.join("server1.pem").display(),
        dir.join("server1.key").display()
    ));
    let out = dir.join("ids.tsv");
    let options = tidemark::tools::loadgen::LoadgenOptions {
        batch: 10,
        connections: 2,
        gateway_ca: Some(dir.join("ca1.pem")),
        gateway_token_file: Some(dir.join("token")),
        ..gateway_load(&s.addr, out.clone(), 200, 5)
    };
    let summary = tidemark::tools::loadgen::run(&options).unwrap();
    assert_eq!((summary.acked_unique, summary.unacked_unique), (200, 0));
    let events = s
        .metrics
        .gateway_token_events
        .with_label_values(&["load"])
        .get();
    assert_eq!(events, 200);
    // One producer, the token's: its home is the local region, and nothing moved.
    assert_eq!(read_ids(&s.a.bootstrap_servers()).len(), 200);
}

/// loadgen through the gateway at `addr`: `events` unpaced, recorded in `out`.
fn gateway_load(
    addr: &str,
    out: std::path::PathBuf,
    events: u64,
    seed: u64,
) -> tidemark::tools::loadgen::LoadgenOptions {
    tidemark::tools::loadgen::LoadgenOptions {
        region_a: String::new(),
        region_b: String::new(),
        topic: "log-events".into(),
        events: Some(events),
        rate: None,
        duration: Duration::from_secs(1),
        seed,
        failover: 0.0,
        retries: 0.0,
        jitter: Duration::from_millis(500),
        late: 0.0,
        late_by: Duration::from_secs(30),
        invalid: 0.0,
        payload_bytes: 200,
        oversized: Vec::new(),
        out,
        gateway: Some(addr.to_string()),
        batch: 1,
        connections: 1,
        producers: 4,
        unpaced: true,
        gateway_ca: None,
        gateway_token_file: None,
        gateway_format: tidemark::tools::loadgen::GatewayFormat::Json,
    }
}

/// loadgen's OTLP bodies: every event of a protobuf and an OTLP JSON load is acknowledged and
/// lands once, its id from `log.record.uid` and its time from `timeUnixNano`, as in the ids file.
#[test]
fn loadgen_speaks_otlp() {
    use tidemark::tools::loadgen::GatewayFormat;
    let s = setup("");
    let dir = crate::support::Scratch::new("loadgen-otlp");
    let mut sent = std::collections::HashMap::new();
    for (n, format) in [GatewayFormat::OtlpProtobuf, GatewayFormat::OtlpJson]
        .into_iter()
        .enumerate()
    {
        let out = dir.0.join(format!("ids-{n}.tsv"));
        let options = tidemark::tools::loadgen::LoadgenOptions {
            batch: 5,
            gateway_format: format,
            ..gateway_load(&s.addr, out.clone(), 100, 11 + n as u64)
        };
        let summary = tidemark::tools::loadgen::run(&options).unwrap();
        assert_eq!(
            (summary.acked_unique, summary.unacked_unique),
            (100, 0),
            "{format:?}"
        );
        for line in std::fs::read_to_string(&out).unwrap().lines() {
            if let [id, time, acks, ..] = line.split('\t').collect::<Vec<_>>()[..] {
                if !id.starts_with('#') {
                    assert_eq!(acks, "1");
                    sent.insert(id.to_string(), time.parse::<u64>().unwrap());
                }
            }
        }
    }
    assert_eq!(sent.len(), 200);
    let mut found = 0;
    for bootstrap in [s.a.bootstrap_servers(), s.b.bootstrap_servers()] {
        for (_, payload, _) in tidemark::tools::topic::read_topic(&bootstrap, "log-events").unwrap()
        {
            let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            let id = v["eventId"].as_str().unwrap();
            assert_eq!(v["attributes"]["log.record.uid"], id);
            assert_eq!(v["timestamp"].as_u64(), sent.get(id).copied(), "{v}");
            assert_eq!(v["severity"], "INFO");
            found += 1;
        }
    }
    assert_eq!(found, 200);
}

/// OTLP/HTTP on /v1/logs: protobuf and OTLP JSON records are written as events with their
/// fields mapped; a record the pipelines would refuse is counted in `partialSuccess`;
/// malformed protobuf is 400 with a message, and the gateway goes on serving.
#[test]
fn otlp_logs_in_protobuf_and_json() {
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::{any_value::Value as Any, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;
    let s = setup("");
    let string = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Any::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let record = |uid: &str, body: &str| LogRecord {
        time_unix_nano: 1_764_000_000_000_000_000,
        severity_text: "WARN".into(),
        body: Some(AnyValue {
            value: Some(Any::StringValue(body.into())),
        }),
        attributes: vec![string("log.record.uid", uid)],
        trace_id: vec![0x11; 16],
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![string("service.name", "payments")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    record("otlp-p1", "one"),
                    record("otlp-p2", "two"),
                    // An id longer than the pipelines take: refused, counted.
                    record(&"x".repeat(200), "too long an id"),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let send = |content_type: &str, body: &[u8]| {
        let mut c = HttpClient::connect(&s.addr).unwrap();
        let h = [("Content-Type", content_type), ("X-Region", "region-a")];
        c.request("POST", "/v1/logs", &h, body).unwrap()
    };
    let r = send("application/x-protobuf", &request.encode_to_vec());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    let answer = ExportLogsServiceResponse::decode(&r.body[..]).unwrap();
    let partial = answer.partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("longer than 128"),
        "{}",
        partial.error_message
    );

    // OTLP JSON as the specification writes it, by hand.
    let json = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"payments"}}]},
      "scopeLogs":[{"logRecords":[{"observedTimeUnixNano":"1764000001000000000","severityNumber":13,
      "body":{"stringValue":"three"},"spanId":"0102030405060708",
      "attributes":[{"key":"log.record.uid","value":{"stringValue":"otlp-j1"}}]}]}]}]}"#;
    let r = send("application/json", json.as_bytes());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let answer: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        answer.get("partialSuccess").is_none_or(|p| p.is_null()),
        "{answer}"
    );

    // What Kafka has, read back with serde_json.
    let written: std::collections::HashMap<String, serde_json::Value> =
        tidemark::tools::topic::read_topic(&s.a.bootstrap_servers(), "log-events")
            .unwrap()
            .into_iter()
            .map(|(_, payload, _)| {
                let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                (v["eventId"].as_str().unwrap().to_string(), v)
            })
            .collect();
    assert_eq!(written.len(), 3, "{written:?}");
    let p1 = &written["otlp-p1"];
    assert_eq!(p1["timestamp"], 1_764_000_000_000u64);
    assert_eq!(p1["service"], "payments");
    assert_eq!(p1["message"], "one");
    assert_eq!(p1["severity"], "WARN");
    assert_eq!(p1["traceId"], "11".repeat(16));
    assert_eq!(p1["region"], "region-a");
    let j1 = &written["otlp-j1"];
    assert_eq!(j1["timestamp"], 1_764_000_001_000u64);
    assert_eq!(j1["spanId"], "0102030405060708");
    assert_eq!(j1["severityNumber"], 13);

    // Malformed protobuf: 400 with a message, never a panic; the next request is served.
    let r = send(
        "application/x-protobuf",
        b"\x0a\xff\xff\xff\xff\x0f garbage",
    );
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    // OTLP/HTTP's error body: a protobuf google.rpc.Status, read here from the wire format
    // itself: field 1 (varint) the gRPC code, 3 for INVALID_ARGUMENT; field 2 (bytes) the
    // message.
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(&r.body[..3], &[0x08, 3, 0x12], "{:?}", r.body);
    let (mut len, mut at) = (0usize, 3);
    while r.body[at] & 0x80 != 0 {
        len |= ((r.body[at] & 0x7f) as usize) << (7 * (at - 3));
        at += 1;
    }
    len |= (r.body[at] as usize) << (7 * (at - 3));
    let message = &r.body[at + 1..];
    assert_eq!(message.len(), len, "{:?}", r.body);
    assert!(String::from_utf8_lossy(message).contains("not an OTLP"));
    // The same request as OTLP JSON's answer names the code and message too.
    let r = send("application/json", b"{\"resourceLogs\": 7}");
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["code"], 3);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("not an OTLP"));
    let r = send(
        "application/x-protobuf",
        &ExportLogsServiceRequest::default().encode_to_vec(),
    );
    assert_eq!(r.status, 200);
}
