//! The whole chain against a plain sequential reference, on seeded streams with duplicates,
//! disorder, idle partitions, late and invalid records, at 1 and 2 workers.

use crate::support::*;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tidemark::pipeline::{run, RunOptions};

fn check_chain(seed: u64, workers: usize) {
    let dir = Scratch::new(&format!("model-{seed}-{workers}"));
    let stream = seeded_stream(seed, 5, 3_000);
    let inputs = write_partitions(&dir, &stream);
    let (config, graph) =
        tidemark::config::parse(&file_pipeline(&inputs, &dir, 4)).expect("valid pipeline");
    let metrics = tidemark::metrics::Metrics::new();
    let summary = tidemark::pipeline::run_bounded(&config, &graph, workers, &metrics).expect("run");
    let expected = canonical(&reference(&stream));
    let observed = read_envelopes(&dir);
    let report = tidemark::tools::verify::verify(&expected, &observed, &config.event);
    assert!(report.ok(), "seed {seed}, {workers} workers:\n{report}");
    assert!(
        report.late > 0,
        "the stream has events far behind; some must be late:\n{report}"
    );
    assert_eq!(
        summary.unique,
        expected.events.len() as u64,
        "dedup passed exactly the unique ids"
    );
    assert_eq!(summary.invalid, expected.invalid);
    assert_eq!(summary.read, expected.sent);
    assert_partitions_sorted(&observed, 4);
}

#[test]
fn chain_matches_reference_on_one_worker() {
    for seed in [1, 2, 3] {
        check_chain(seed, 1);
    }
}

#[test]
fn chain_matches_reference_on_two_workers() {
    for seed in [1, 4] {
        check_chain(seed, 2);
    }
}

#[test]
fn invalid_records_carry_their_reason() {
    let dir = Scratch::new("reasons");
    let lines = [
        "not json",
        "[1]",
        r#"{"timestamp":1700000000000}"#,
        r#"{"eventId":"","timestamp":1700000000000}"#,
        r#"{"eventId":true,"timestamp":1700000000000}"#,
        r#"{"eventId":"a"}"#,
        r#"{"eventId":"b","timestamp":"soon"}"#,
        r#"{"eventId":"c","timestamp":-1}"#,
        r#"{"eventId":"d","timestamp":99999999999999}"#,
        r#"{"eventId":"ok","timestamp":1700000000000}"#,
    ];
    let input = dir.path("in.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let (config, graph) = tidemark::config::parse(&file_pipeline(&[input], &dir, 1)).unwrap();
    let metrics = tidemark::metrics::Metrics::new();
    run(
        &config,
        &graph,
        &RunOptions::default(),
        &metrics,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let observed = read_envelopes(&dir);
    let mut reasons: Vec<String> = observed
        .iter()
        .filter(|o| o.output == tidemark::tools::verify::Output::Invalid)
        .map(|o| o.headers["tidemark-reason"].clone())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "future_timestamp",
            "id_empty",
            "id_missing",
            "id_not_string",
            "not_json",
            "not_object",
            "time_missing",
            "time_negative",
            "time_unparseable"
        ]
    );
    let ordered = observed
        .iter()
        .filter(|o| matches!(o.output, tidemark::tools::verify::Output::Ordered(_)))
        .count();
    assert_eq!(
        ordered, 1,
        "the one valid event passes; bad records never block it"
    );
}
