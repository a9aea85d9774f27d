//! The whole path through two in-process Kafka regions (librdkafka's mock cluster).

use rdkafka::mocking::MockCluster;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tidemark::verify::{verify, Observed, Output};

pub fn regions(
    in_parts: i32,
    out_parts: i32,
) -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
) {
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

pub fn read_outputs(bootstrap: &str) -> Vec<Observed> {
    tidemark::verify::read_outputs(bootstrap).unwrap()
}

#[test]
fn two_regions_through_mock_kafka() {
    let t = tidemark::demo::traffic(20_000, 9, 65_536);
    let (a, b) = regions(4, 8);
    let (ba, bb) = (a.bootstrap_servers(), b.bootstrap_servers());
    tidemark::demo::produce(&ba, "log-events", &t.region_a).unwrap();
    tidemark::demo::produce(&bb, "log-events", &t.region_b).unwrap();
    let (config, graph) = tidemark::demo::pipeline(&ba, &bb, 8).unwrap();
    let metrics = tidemark::metrics::Metrics::new();
    let options = tidemark::pipeline::RunOptions {
        workers: 2,
        bounded: true,
        ..Default::default()
    };
    let summary = tidemark::pipeline::run(
        &config,
        &graph,
        &options,
        &metrics,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
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
        tidemark::demo::pipeline(&a.bootstrap_servers(), &b.bootstrap_servers(), 4).unwrap();
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
