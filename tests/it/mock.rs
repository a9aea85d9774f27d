//! The whole path through two in-process Kafka regions (librdkafka's mock cluster).

use rdkafka::mocking::MockCluster;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tidemark::tools::verify::{verify, Observed, Output};

pub fn regions(in_parts: i32, out_parts: i32) -> (Mock, Mock) {
    let a = MockCluster::new(1).unwrap();
    let b = MockCluster::new(1).unwrap();
    for (topic, parts) in [
        ("log-events", in_parts),
        ("log-events-ordered", out_parts),
        ("log-events-late", 2),
        ("log-events-invalid", 1),
    ] {
        a.create_topic(topic, parts, 1).unwrap();
    }
    b.create_topic("log-events", in_parts, 1).unwrap();
    (a, b)
}

type Mock = MockCluster<'static, rdkafka::producer::DefaultProducerContext>;

/// Two regions with `t` produced into their `log-events`, and their bootstrap addresses.
pub fn loaded_regions(
    t: &tidemark::tools::demo::Traffic,
    in_parts: i32,
    out_parts: i32,
) -> (Mock, Mock, String, String) {
    let (a, b) = regions(in_parts, out_parts);
    let (ba, bb) = (a.bootstrap_servers(), b.bootstrap_servers());
    tidemark::tools::demo::produce(&ba, "log-events", &t.region_a).unwrap();
    tidemark::tools::demo::produce(&bb, "log-events", &t.region_b).unwrap();
    (a, b, ba, bb)
}

pub fn read_outputs(bootstrap: &str) -> Vec<Observed> {
    tidemark::tools::verify::read_outputs(bootstrap).unwrap()
}

#[test]
fn two_regions_through_mock_kafka() {
    let t = tidemark::tools::demo::traffic(20_000, 9, 65_536);
    let (_region_a, _region_b, ba, bb) = loaded_regions(&t, 4, 8);
    let (config, graph) = tidemark::tools::demo::pipeline(&ba, &bb, 8).unwrap();
    let metrics = tidemark::metrics::Metrics::new();
    let summary = tidemark::pipeline::run_bounded(&config, &graph, 2, &metrics).unwrap();
    let observed = read_outputs(&ba);
    let report = verify(&t.expected, &observed, &config.event);
    assert!(report.ok(), "{report}");
    assert_eq!(
        summary.duplicates, t.copies,
        "every failover copy and retry is dropped, nothing else"
    );
    assert!(
        report.late > 0,
        "the replication split must produce late events:\n{report}"
    );
    // Late events carry where they came from and when they arrived.
    for o in observed.iter().filter(|o| o.output == Output::Late) {
        for h in [
            "tidemark-format",
            "tidemark-region",
            "tidemark-source",
            "tidemark-watermark",
            "tidemark-lateness-ms",
            "tidemark-arrival-ms",
        ] {
            assert!(o.headers.contains_key(h), "late record without {h}");
        }
        assert_eq!(
            o.headers["tidemark-region"], "region-b",
            "only region-b had a split"
        );
    }
    // Offsets were committed for the whole input.
    let committed = metrics.render();
    assert!(committed.contains("tidemark_events_in_total"));
}

#[test]
fn a_missing_sink_topic_is_a_clear_error() {
    let a = MockCluster::new(1).unwrap();
    let b = MockCluster::new(1).unwrap();
    a.create_topic("log-events", 2, 1).unwrap();
    b.create_topic("log-events", 2, 1).unwrap();
    let (config, graph) =
        tidemark::tools::demo::pipeline(&a.bootstrap_servers(), &b.bootstrap_servers(), 4).unwrap();
    let metrics = tidemark::metrics::Metrics::new();
    let err = tidemark::pipeline::run(
        &config,
        &graph,
        &Default::default(),
        &metrics,
        Arc::new(AtomicBool::new(false)),
    )
    .expect_err("no output topics exist");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

fn pipeline_with_region_a_options(
    ba: &str,
    bb: &str,
    options: &[(&str, &str)],
) -> (tidemark::config::PipelineConfig, tidemark::config::Graph) {
    let mut table: toml::Table = tidemark::tools::demo::pipeline_text(ba, bb, 8)
        .unwrap()
        .parse()
        .unwrap();
    let mut opts = toml::Table::new();
    for (k, v) in options {
        opts.insert((*k).into(), (*v).into());
    }
    table["clusters"]["region-a"]
        .as_table_mut()
        .unwrap()
        .insert("options".into(), opts.into());
    tidemark::config::parse(&table.to_string()).unwrap()
}

#[test]
fn records_too_large_for_the_outputs_are_written_truncated_and_their_offsets_advance() {
    let (a, b) = regions(2, 8);
    let (ba, bb) = (a.bootstrap_servers(), b.bootstrap_servers());
    let good = tidemark::tools::demo::traffic(500, 3, 65_536);
    let mut records = good.region_a.clone();
    // Not JSON, so invalid; and larger than the region-a producer accepts.
    records.push((None, vec![b'x'; 30_000]));
    // A valid event under max_event_bytes (64 KiB) but over what the outputs take (20,000).
    let time = good
        .expected
        .events
        .values()
        .map(|(t, _)| *t)
        .max()
        .unwrap();
    let big = format!(
        r#"{{"eventId":"too-big-1","timestamp":{time},"message":"{}"}}"#,
        "y".repeat(30_000)
    )
    .into_bytes();
    records.push((None, big.clone()));
    tidemark::tools::demo::produce(&ba, "log-events", &records).unwrap();
    tidemark::tools::demo::produce(&bb, "log-events", &good.region_b).unwrap();
    let (config, graph) =
        pipeline_with_region_a_options(&ba, &bb, &[("message.max.bytes", "20000")]);
    let metrics = tidemark::metrics::Metrics::new();
    tidemark::pipeline::run_bounded(&config, &graph, 2, &metrics).expect("the job does not stop");
    // Ours, the big event's, and the demo traffic's own 64 KiB too_large record.
    let count = |c: &prometheus::IntCounterVec, labels: &[&str]| c.with_label_values(labels).get();
    assert_eq!(count(&metrics.dead_letters_truncated, &["invalid"]), 3);
    assert_eq!(
        count(&metrics.dead_letters_dropped, &["invalid", "too_large"]),
        0
    );
    let mut expected = good.expected.clone();
    expected.sent += 2;
    expected
        .events
        .insert("too-big-1".into(), (time, big.clone()));
    let observed = read_outputs(&ba);
    let report = verify(&expected, &observed, &config.event);
    assert_eq!(
        (
            report.lost,
            report.duplicated,
            report.order_violations,
            report.foreign
        ),
        (0, 0, 0, 0),
        "{report}"
    );
    assert_eq!(report.too_large_for_output, 1, "{report}");
    assert_eq!(report.invalid, good.expected.invalid + 1, "{report}");
    // The big event's dead letter names it, says why, and keeps what fits of its bytes.
    let letter = observed
        .iter()
        .find(|o| o.headers.get("tidemark-event-id").map(String::as_str) == Some("too-big-1"))
        .expect("the big event has a dead letter");
    assert_eq!(letter.output, Output::Invalid);
    assert_eq!(letter.headers["tidemark-reason"], "too_large_for_output");
    assert_eq!(letter.headers["tidemark-truncated"], "true");
    assert_eq!(
        letter.headers["tidemark-original-bytes"],
        big.len().to_string()
    );
    assert!(big.starts_with(&letter.payload) && letter.payload.len() < 20_000);
    assert!(letter.payload.len() > 15_000, "as much as fits is kept");
    // Every offset advanced: a second run reads nothing.
    let again = tidemark::metrics::Metrics::new();
    let summary = tidemark::pipeline::run_bounded(&config, &graph, 2, &again).unwrap();
    assert_eq!(
        summary.read, 0,
        "everything, the oversized records included, was committed"
    );
}

#[test]
fn a_failed_delivery_stops_the_job_and_commits_nothing() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let (a, b) = regions(2, 8);
    let (ba, bb) = (a.bootstrap_servers(), b.bootstrap_servers());
    let t = tidemark::tools::demo::traffic(2_000, 4, 65_536);
    tidemark::tools::demo::produce(&ba, "log-events", &t.region_a).unwrap();
    tidemark::tools::demo::produce(&bb, "log-events", &t.region_b).unwrap();
    // From now on region-a refuses every write: the sinks cannot make anything durable.
    a.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 5000],
    );
    // Writes are retried until message.timeout.ms; a short one makes the failure come soon.
    let (config, graph) =
        pipeline_with_region_a_options(&ba, &bb, &[("message.timeout.ms", "3000")]);
    let metrics = tidemark::metrics::Metrics::new();
    let err = tidemark::pipeline::run_bounded(&config, &graph, 2, &metrics)
        .expect_err("a refused write must stop the job");
    assert!(err.to_string().contains("kafka sink"), "{err}");
    a.clear_request_errors(RDKafkaApiKey::Produce);
    // Nothing was committed, so a clean rerun reads (and delivers) everything.
    let again = tidemark::metrics::Metrics::new();
    let summary = tidemark::pipeline::run_bounded(&config, &graph, 2, &again).unwrap();
    assert_eq!(
        summary.read, t.expected.sent,
        "no offset was committed past an unwritten event"
    );
}

/// Produces `n` events into `log-events` with record timestamps `lead_ms` behind their event
/// times: a producer whose event clock runs `lead_ms` ahead of the broker's.
fn produce_with_lead(bootstrap: &str, prefix: &str, n: u64, time: u64, lead_ms: i64) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for i in 0..n {
        let t = time + i;
        let payload = format!(r#"{{"eventId":"{prefix}-{i}","timestamp":{t}}}"#);
        producer
            .send(
                BaseRecord::<(), _>::to("log-events")
                    .payload(&payload)
                    .timestamp(t as i64 - lead_ms),
            )
            .unwrap();
    }
    producer.flush(std::time::Duration::from_secs(30)).unwrap();
}

#[test]
fn event_time_skew_is_measured_per_source_against_the_record_timestamp() {
    let (a, b) = regions(2, 8);
    let (ba, bb) = (a.bootstrap_servers(), b.bootstrap_servers());
    let now = tidemark::runtime::wall_ms() - 60_000;
    // region-a's producers are in step with their broker; region-b's run 4 s ahead.
    produce_with_lead(&ba, "a", 300, now, 100);
    produce_with_lead(&bb, "b", 200, now, 4_000);
    let (config, graph) = tidemark::tools::demo::pipeline(&ba, &bb, 8).unwrap();
    let metrics = tidemark::metrics::Metrics::new();
    tidemark::pipeline::run_bounded(&config, &graph, 2, &metrics).unwrap();
    let skew = |source: &str, region: &str| {
        let h = metrics.event_time_skew.with_label_values(&[source, region]);
        (h.get_sample_count(), h.get_sample_sum())
    };
    let (count_a, sum_a) = skew("src_a", "region-a");
    let (count_b, sum_b) = skew("src_b", "region-b");
    assert_eq!((count_a, count_b), (300, 200), "one sample per event read");
    assert!(
        (sum_a / 300.0 - 0.1).abs() < 1e-9,
        "region-a mean {}",
        sum_a / 300.0
    );
    assert!(
        (sum_b / 200.0 - 4.0).abs() < 1e-9,
        "region-b mean {}",
        sum_b / 200.0
    );
    let bound = metrics.watermark_bound.with_label_values(&["wm"]).get();
    assert_eq!(
        bound, 2.0,
        "the disorder bound alerts compare the skew with"
    );
}

/// The benchmarks' clock takes only the broker's append times: records stamped by their
/// producer (the mock broker has no `LogAppendTime`) are refused, not measured by the job's
/// own clock; an empty output is an error, not a zero.
#[test]
fn bench_span_takes_only_append_times() {
    use tidemark::tools::bench::span::{span, SpanError};
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("out", 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let topics = vec!["out".to_string()];
    assert!(matches!(span(&bootstrap, &topics), Err(SpanError::Empty)));
    let t = tidemark::tools::demo::traffic(200, 1, 65_536);
    tidemark::tools::demo::produce(&bootstrap, "out", &t.region_a).unwrap();
    match span(&bootstrap, &topics) {
        Err(SpanError::NotAppendTime { topic }) => assert_eq!(topic, "out"),
        other => panic!("producer timestamps must be refused, got {other:?}"),
    }
}
