//! Each operator on its own against a plain sequential reference, at 1 and 2 workers.

use crate::support::*;
use std::collections::HashMap;
use tidemark::tools::verify::Output;

fn run_file(text: &str, workers: usize) -> tidemark::pipeline::Summary {
    let (config, graph) = tidemark::config::parse(text).expect("valid pipeline");
    let metrics = tidemark::metrics::Metrics::new();
    tidemark::pipeline::run_bounded(&config, &graph, workers, &metrics).expect("run")
}

/// Ids with how often each valid record carries them, in input order.
fn valid_ids(stream: &Stream) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for part in &stream.partitions {
        for line in part {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            let (Some(id), Some(_)) = (v["eventId"].as_str(), v["timestamp"].as_u64()) else {
                continue;
            };
            if !id.is_empty() {
                *counts.entry(id.to_string()).or_default() += 1;
            }
        }
    }
    counts
}

fn ids_of(observed: &[tidemark::tools::verify::Observed]) -> Vec<String> {
    observed
        .iter()
        .filter(|o| o.output != Output::Invalid)
        .map(|o| {
            serde_json::from_slice::<serde_json::Value>(&o.payload).unwrap()["eventId"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn dedup_alone_keeps_exactly_one_copy_of_each_id() {
    for workers in [1, 2] {
        let dir = Scratch::new(&format!("op-dedup-{workers}"));
        let stream = seeded_stream(21, 4, 2_500);
        let inputs = write_partitions(&dir, &stream);
        let middle = "[operators.dedup]\ntype = \"dedup\"\ninputs = [\"wm.on_time\", \"wm.late\"]\nhorizon = \"10m\"\n";
        let summary = run_file(
            &envelope_pipeline(&inputs, &dir, middle, "dedup.on_time", "dedup.late"),
            workers,
        );
        let want = valid_ids(&stream);
        let mut got = ids_of(&read_envelopes(&dir));
        got.sort();
        let mut expected: Vec<String> = want.keys().cloned().collect();
        expected.sort();
        assert_eq!(got, expected, "{workers} workers: every id exactly once");
        let copies: usize = want.values().map(|n| n - 1).sum();
        assert_eq!(
            summary.duplicates as usize, copies,
            "{workers} workers: every extra copy dropped"
        );
    }
}

#[test]
fn reorder_alone_passes_every_on_time_event_in_order() {
    for workers in [1, 2] {
        let dir = Scratch::new(&format!("op-reorder-{workers}"));
        let stream = seeded_stream(22, 4, 2_500);
        let inputs = write_partitions(&dir, &stream);
        let middle =
            "[operators.order]\ntype = \"reorder\"\ninputs = [\"wm.on_time\"]\npartitions = 3\n";
        run_file(
            &envelope_pipeline(&inputs, &dir, middle, "order", "wm.late"),
            workers,
        );
        let observed = read_envelopes(&dir);
        // No dedup here: every valid record, copies included, comes out exactly once.
        let mut got = ids_of(&observed);
        got.sort();
        let mut expected: Vec<String> = valid_ids(&stream)
            .into_iter()
            .flat_map(|(id, n)| std::iter::repeat_n(id, n))
            .collect();
        expected.sort();
        assert_eq!(got, expected, "{workers} workers: nothing lost or added");
        assert_partitions_sorted(&observed, 3);
    }
}

#[test]
fn watermark_alone_never_marks_an_event_late_that_is_not() {
    for workers in [1, 2] {
        let dir = Scratch::new(&format!("op-wm-{workers}"));
        let stream = seeded_stream(23, 4, 2_500);
        let inputs = write_partitions(&dir, &stream);
        let summary = run_file(
            &envelope_pipeline(&inputs, &dir, "", "wm.on_time", "wm.late"),
            workers,
        );
        let observed = read_envelopes(&dir);
        let mut late = 0;
        for o in observed.iter().filter(|o| o.output == Output::Late) {
            let v: serde_json::Value = serde_json::from_slice(&o.payload).unwrap();
            let t = v["timestamp"].as_u64().unwrap();
            let wm: u64 = o.headers["tidemark-watermark"].parse().unwrap();
            let lateness: u64 = o.headers["tidemark-lateness-ms"].parse().unwrap();
            assert!(t < wm && lateness == wm - t && lateness > 0);
            late += 1;
        }
        assert!(late > 0);
        assert_eq!(
            summary.late, late,
            "the counter agrees with the late output"
        );
        let total: usize = valid_ids(&stream).values().sum();
        assert_eq!(
            ids_of(&observed).len(),
            total,
            "{workers} workers: every valid record is on time or late"
        );
    }
}

#[test]
fn a_late_event_older_than_the_horizon_is_marked_and_never_passes_as_a_silent_copy() {
    const T0: u64 = 1_700_000_000_000;
    let line = |id: &str, t: u64| format!(r#"{{"eventId":"{id}","timestamp":{t}}}"#).into_bytes();
    for workers in [1, 2] {
        let dir = Scratch::new(&format!("op-beyond-{workers}"));
        // "a" first; then a minute of events, far more than one read batch, so the watermark
        // and dedup's frontier move past it; then, behind a 10 s horizon: a copy of "a" and a
        // new "b" (both 60 s behind), a new "c" 2 s behind (late, inside the horizon), and a
        // copy of a recent event (inside the horizon: dropped).
        let mut lines = vec![line("a", T0)];
        lines.extend((1..=3_600).map(|i| line(&format!("f{i}"), T0 + (i as u64 * 20).min(60_000))));
        lines.extend([
            line("a", T0),
            line("b", T0),
            line("c", T0 + 58_000),
            line("f2999", T0 + 59_980),
        ]);
        let inputs = write_partitions(
            &dir,
            &Stream {
                partitions: vec![lines],
            },
        );
        let middle = "[operators.dedup]\ntype = \"dedup\"\ninputs = [\"wm.on_time\", \"wm.late\"]\nhorizon = \"10s\"\n";
        let (config, graph) = tidemark::config::parse(&envelope_pipeline(
            &inputs,
            &dir,
            middle,
            "dedup.on_time",
            "dedup.late",
        ))
        .expect("valid pipeline");
        let metrics = tidemark::metrics::Metrics::new();
        let summary =
            tidemark::pipeline::run_bounded(&config, &graph, workers, &metrics).expect("run");
        let observed = read_envelopes(&dir);
        let late: HashMap<String, bool> = observed
            .iter()
            .filter(|o| o.output == Output::Late)
            .map(|o| {
                let v: serde_json::Value = serde_json::from_slice(&o.payload).unwrap();
                let marked = o.headers.get("tidemark-beyond-horizon").map(String::as_str);
                (
                    v["eventId"].as_str().unwrap().to_string(),
                    marked == Some("true"),
                )
            })
            .collect();
        let marked = late.values().filter(|m| **m).count() as u64;
        assert_eq!(
            metrics
                .dedup_beyond_horizon
                .with_label_values(&["region-a"])
                .get(),
            marked,
            "{workers} workers: the counter agrees with the marked records"
        );
        // Every id written more than once has all its extra copies marked.
        let mut copies: HashMap<String, usize> = HashMap::new();
        for id in ids_of(&observed) {
            *copies.entry(id).or_default() += 1;
        }
        for (id, n) in &copies {
            assert!(
                *n == 1 || (*n == 2 && late.get(id) == Some(&true)),
                "{workers} workers: {id} written {n} times without a mark: {late:?}"
            );
        }
        assert_eq!(
            late.get("c"),
            Some(&false),
            "inside the horizon: late, unmarked"
        );
        assert!(!late.contains_key("f2999") || copies["f2999"] == 1);
        if workers == 1 {
            // One worker: the frontier is exact, so both old events are past the horizon.
            assert_eq!(
                (late.get("a"), late.get("b")),
                (Some(&true), Some(&true)),
                "{late:?}"
            );
            assert_eq!(copies["a"], 2);
            assert_eq!(
                summary.duplicates, 1,
                "only the copy inside the horizon is dropped"
            );
        }
    }
}
