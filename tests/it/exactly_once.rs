//! Exactly-once across restarts, on librdkafka's mock cluster: what a restarted pipeline reads
//! back from its committed output keeps a replay and late copies from being written twice.
//! The state is redistributed when the restart has other workers or processes. (The mock
//! cluster neither fences nor hides aborted transactions, so crashes mid-transaction and
//! fencing are checked on the real regions: `tests/real/scenarios.sh kill-pipeline`.)

use crate::mock::{loaded_regions, read_outputs};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tidemark::pipeline::{run, RunOptions, Summary};
use tidemark::tools::verify::verify;

/// Runs the pipeline `text` to the end of its input on `workers` workers.
fn run_text(text: &str, workers: usize, reset_state: bool) -> Summary {
    let (config, graph) = tidemark::config::parse(text).unwrap();
    let options = RunOptions {
        workers,
        reset_state,
        ..RunOptions::default()
    };
    let metrics = tidemark::metrics::Metrics::new();
    run(
        &config,
        &graph,
        &options,
        &metrics,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap()
}

/// One of the events the traffic generator says are valid, byte for byte (its id read with
/// serde_json, not with the pipeline's decoder).
fn is_event(expected: &tidemark::tools::verify::Expected, payload: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get("eventId")?.as_str().map(String::from))
        .and_then(|id| expected.events.get(&id))
        .is_some_and(|(_, p)| p == payload)
}

#[test]
fn a_restart_that_replays_everything_writes_nothing_twice() {
    let t = tidemark::tools::demo::traffic(20_000, 21, 65_536);
    let (_a, _b, ba, bb) = loaded_regions(&t, 4, 8);
    let text = tidemark::tools::demo::pipeline_text(&ba, &bb, 8).unwrap();
    assert!(
        !text.contains("at_least_once"),
        "exactly-once is the default"
    );
    let first = run_text(&text, 2, false);
    assert!(first.unique > 0);
    let written: u64 = first.written.values().sum();

    // Copies that arrive after the restart: every valid event of region-a again, same bytes.
    let again: Vec<_> = t
        .region_a
        .iter()
        .filter(|(_, p)| is_event(&t.expected, p))
        .cloned()
        .collect();
    tidemark::tools::demo::produce(&ba, "log-events", &again).unwrap();

    // A new pipeline name is a new consumer group with no committed offsets: the restart
    // replays every record from the start, as a crash before any commit would. It runs as two
    // processes of one worker each (the first run had one process of two), so the state is
    // redistributed across processes.
    let (config, _) = tidemark::config::parse(&text).unwrap();
    let dir = crate::support::Scratch::new("exactly-once-processes");
    let (file, hostfile) = (dir.path("replay.toml"), dir.path("hosts"));
    std::fs::write(
        &file,
        text.replace("name = \"global\"", "name = \"global-2p\""),
    )
    .unwrap();
    tidemark::tools::cluster::loopback_hostfile(hostfile.as_ref(), 2).unwrap();
    for status in crate::support::fixture::run_two_processes(&file, &hostfile) {
        assert!(
            status.is_some_and(|s| s.success()),
            "a process failed: {status:?}"
        );
    }
    let observed = read_outputs(&ba);
    let report = verify(&t.expected, &observed, &config.event);
    assert!(report.ok(), "after the replay on two processes:\n{report}");
    assert_eq!(observed.len() as u64, written, "nothing more was written");

    // Once more on one worker, with its counts.
    let replay = text.replace("name = \"global\"", "name = \"global-replayed\"");
    let second = run_text(&replay, 1, false);
    let observed = read_outputs(&ba);
    let report = verify(&t.expected, &observed, &config.event);
    assert!(report.ok(), "after the replay on one worker:\n{report}");
    assert_eq!(observed.len() as u64, written, "nothing more was written");
    assert_eq!(second.unique, 0, "every id was restored from the output");
    assert!(second.read > first.read, "the replay read everything again");
    assert_eq!(second.invalid, 0, "every dead letter was restored");
    assert_eq!(second.written.values().sum::<u64>(), 0);

    // Without the restored state the same replay writes copies: the restore is what held.
    let reset = text.replace("name = \"global\"", "name = \"global-reset\"");
    let third = run_text(&reset, 2, true);
    assert!(third.unique > 0);
    let report = verify(&t.expected, &read_outputs(&ba), &config.event);
    assert!(report.duplicated > 0, "--reset-state forgets:\n{report}");
}

#[test]
fn an_unreadable_or_unknown_output_record_refuses_the_start_until_reset_state() {
    let t = tidemark::tools::demo::traffic(2_000, 5, 65_536);
    let (_a, _b, ba, bb) = loaded_regions(&t, 2, 4);
    let text = tidemark::tools::demo::pipeline_text(&ba, &bb, 4).unwrap();
    run_text(&text, 2, false);
    // A record no tidemark wrote, at the end of an ordered partition: no event-time header.
    let stray = vec![(
        Some("stray".to_string()),
        b"{\"eventId\":\"stray\"}".to_vec(),
    )];
    tidemark::tools::demo::produce(&ba, "log-events-ordered", &stray).unwrap();

    let (config, graph) = tidemark::config::parse(&text).unwrap();
    let options = RunOptions {
        workers: 1,
        ..RunOptions::default()
    };
    let metrics = tidemark::metrics::Metrics::new();
    let stop = Arc::new(AtomicBool::new(false));
    let err = run(&config, &graph, &options, &metrics, stop).expect_err("refuses to start");
    let message = err.to_string();
    assert!(
        message.contains("log-events-ordered partition") && message.contains("offset"),
        "names the topic, partition and offset: {message}"
    );
    assert!(message.contains("--reset-state"), "{message}");
    // Starting over is explicit, and then it runs.
    run_text(&text, 1, true);
    // It is also durable: the next restart restores what was written since, past the record
    // that made the start refuse.
    run_text(&text, 1, false);

    // A record of an output format this build does not know: refused, not misread.
    let future = future_format_record(&ba);
    let metrics = tidemark::metrics::Metrics::new();
    let stop = Arc::new(AtomicBool::new(false));
    let err = run(&config, &graph, &options, &metrics, stop).expect_err("refuses to start");
    let message = err.to_string();
    assert!(
        message.contains(&format!("offset {future}")) && message.contains("output format \"99\""),
        "names the offset and the version: {message}"
    );
    run_text(&text, 1, true);
}

/// Writes to the end of an ordered partition a record that is whole but declares output format
/// 99; returns its offset.
fn future_format_record(bootstrap: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use std::time::Duration;
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    let producer: BaseProducer = config.create().unwrap();
    let time = tidemark::runtime::wall_ms().to_string();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "tidemark-format",
            value: Some("99"),
        })
        .insert(Header {
            key: "tidemark-event-time",
            value: Some(&time),
        });
    producer
        .send(
            BaseRecord::to("log-events-ordered")
                .key("future")
                .payload("{\"eventId\":\"future\"}")
                .partition(0)
                .headers(headers),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    let consumer: BaseConsumer = config.create().unwrap();
    let (_, high) = consumer
        .fetch_watermarks("log-events-ordered", 0, Duration::from_secs(10))
        .unwrap();
    high - 1
}
