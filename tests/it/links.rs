//! Following MM2's replicated heartbeats through a Kafka topic (librdkafka's mock cluster): the
//! newest heartbeat's own timestamp is what the link's lag and split state are computed from.

use crate::support::fixture;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::time::{Duration, Instant};
use tidemark::operators::watermark::state::LinkView;
use tidemark::sources::heartbeat::LinkWatch;

fn heartbeat(producer: &BaseProducer, at: i64) {
    producer
        .send(
            BaseRecord::<[u8], [u8]>::to("region-b.heartbeats")
                .payload(&b"hb"[..])
                .timestamp(at),
        )
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Polls until the watch reports `want`, for 20 s at the most.
fn poll_until(watch: &mut LinkWatch, want: u64) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = None;
    while Instant::now() < deadline {
        seen = watch.poll(tidemark::runtime::wall_ms());
        if seen == Some(want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    seen
}

#[test]
fn the_newest_replicated_heartbeat_decides_the_link() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("region-b.heartbeats", 1, 1).unwrap();
    cluster.create_topic("region-b.log-events", 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let (config, _) = tidemark::config::parse(&format!(
        r#"
[clusters.region-a]
bootstrap = "{bootstrap}"

[sources.remote]
type = "kafka"
cluster = "region-a"
topics = ["region-b.log-events"]
replicated_from = "region-b"
{}{}{}"#,
        fixture::watermark("remote", "2s", r#"max_split_hold = "60s""#),
        fixture::null_sink("events", r#""wm.on_time", "wm.late""#),
        fixture::null_sink("invalid", r#""wm.invalid""#),
    ))
    .unwrap();
    let tidemark::sources::SourceConfig::Kafka(source) = &config.sources["remote"] else {
        panic!("kafka source")
    };
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let now = tidemark::runtime::wall_ms();
    // Two heartbeats already there when the watch starts: it begins at the newest.
    heartbeat(&producer, (now - 40_000) as i64);
    heartbeat(&producer, (now - 30_000) as i64);
    let mut watch = LinkWatch::open("remote", source, &config.clusters["region-a"])
        .unwrap()
        .expect("a replicated source has a link");
    assert_eq!(
        (watch.from.as_str(), watch.to.as_str()),
        ("region-b", "region-a")
    );
    assert_eq!(poll_until(&mut watch, now - 30_000), Some(now - 30_000));
    // 30 s without a heartbeat: split, and held by the 60 s hold.
    let v = LinkView::at(Some(now - 30_000), now - 60_000, now, 3_000, 60_000);
    assert!(v.down && v.held);

    // The link heals: a fresh heartbeat arrives, then an older one replicated late, which
    // must not move the newest back.
    heartbeat(&producer, (now - 500) as i64);
    heartbeat(&producer, (now - 20_000) as i64);
    assert_eq!(poll_until(&mut watch, now - 500), Some(now - 500));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(watch.poll(tidemark::runtime::wall_ms()), Some(now - 500));
    let v = LinkView::at(Some(now - 500), now - 60_000, now, 3_000, 60_000);
    assert!(!v.down && !v.held);
}
