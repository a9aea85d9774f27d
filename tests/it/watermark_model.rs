//! Late classification against a sequential model written from the watermark's specification,
//! not from its code: a partition's watermark is the largest event time it has shown minus
//! `max_out_of_orderness`; a worker's is the minimum over its partitions still delivering (an
//! empty, finished partition holds nothing back), and it never moves back. So, for an event at
//! position i of partition p:
//!
//! - the watermark it can have missed is at most `max(p before i) - bound`, whatever the other
//!   partitions did (the minimum includes p), so a late event must be below a watermark that is
//!   itself no higher than that: late means late;
//! - when p is its worker's only partition, the watermark follows p's maximum within a read
//!   batch, so an event below `max(p before i - LAG) - bound` must be late.
//!
//! Streams are seeded, with disorder, events far behind, a partition whose clock runs ahead and
//! an idle (empty) partition, at 1 and 2 workers. Outputs are read with serde_json.

use crate::support::*;
use std::collections::HashMap;
use tidemark::runtime::SplitMix;
use tidemark::tools::verify::Output;

const BOUND_MS: u64 = 200;
/// Records a worker may read past an event before its watermark reflects them: several read
/// batches, so the check does not depend on the batch size.
const LAG: usize = 1_024;

/// Partition `p`'s events: 10 ms apart, up to 150 ms of disorder, 2 % of them 15 to 25 s
/// behind, all `skew_ms` ahead; `n` of them (0: an idle partition).
fn partition(rng: &mut SplitMix, p: usize, n: usize, skew_ms: u64) -> Vec<(String, u64)> {
    let base = 1_700_000_000_000u64 + skew_ms;
    (0..n)
        .map(|i| {
            let mut t = base + i as u64 * 10 - rng.below(150);
            if rng.next_f64() < 0.02 {
                t -= 15_000 + rng.below(10_000);
            }
            (format!("p{p}-{i}"), t)
        })
        .collect()
}

struct Case {
    workers: usize,
    /// (events, clock skew) per partition, in split order.
    partitions: Vec<(usize, u64)>,
}

fn check(seed: u64, case: &Case) {
    let mut rng = SplitMix(seed);
    let parts: Vec<Vec<(String, u64)>> = case
        .partitions
        .iter()
        .enumerate()
        .map(|(p, &(n, skew))| partition(&mut rng, p, n, skew))
        .collect();
    let dir = Scratch::new(&format!("wm-model-{seed}-{}", case.workers));
    let stream = Stream {
        partitions: parts
            .iter()
            .map(|events| {
                events
                    .iter()
                    .map(|(id, t)| format!(r#"{{"eventId":"{id}","timestamp":{t}}}"#).into_bytes())
                    .collect()
            })
            .collect(),
    };
    let inputs = write_partitions(&dir, &stream);
    let text = envelope_pipeline(&inputs, &dir, "", "wm.on_time", "wm.late");
    assert!(text.contains(&format!("max_out_of_orderness = \"{BOUND_MS}ms\"")));
    let (config, graph) = tidemark::config::parse(&text).expect("valid pipeline");
    let metrics = tidemark::metrics::Metrics::new();
    tidemark::pipeline::run_bounded(&config, &graph, case.workers, &metrics).expect("run");

    // What the pipeline wrote, by id: late or not, and the watermark a late one missed.
    let mut seen: HashMap<String, Option<u64>> = HashMap::new();
    for o in read_envelopes(&dir) {
        let v: serde_json::Value = serde_json::from_slice(&o.payload).unwrap();
        let id = v["eventId"].as_str().unwrap().to_string();
        let missed = match o.output {
            Output::Late => Some(o.headers["tidemark-watermark"].parse::<u64>().unwrap()),
            Output::Ordered(_) => None,
            Output::Invalid => panic!("{id}: a valid event went to the invalid output"),
        };
        assert!(
            seen.insert(id.clone(), missed).is_none(),
            "{id} written twice"
        );
    }

    let mut owners = vec![0usize; case.workers];
    for p in 0..parts.len() {
        owners[p % case.workers] += 1;
    }
    let (mut late, mut required) = (0, 0);
    for (p, events) in parts.iter().enumerate() {
        let alone = owners[p % case.workers] == 1;
        // prefix[i]: the largest time before position i.
        let mut prefix = Vec::with_capacity(events.len());
        let mut max = None::<u64>;
        for (_, t) in events {
            prefix.push(max);
            max = max.max(Some(*t));
        }
        for (i, (id, t)) in events.iter().enumerate() {
            let what = seen
                .get(id)
                .unwrap_or_else(|| panic!("{id} was never written"));
            let upper = prefix[i].map_or(0, |m| m.saturating_sub(BOUND_MS));
            if let Some(w) = *what {
                late += 1;
                assert!(
                    *t < w && w <= upper,
                    "{id} (time {t}) late behind {w}, but the model's watermark is at most {upper}"
                );
            }
            if alone && i >= LAG {
                if let Some(m) = prefix[i - LAG] {
                    if *t < m.saturating_sub(BOUND_MS) {
                        required += 1;
                        assert!(
                            what.is_some(),
                            "{id} (time {t}) is {LAG} records behind a watermark of at least {} but was on time",
                            m - BOUND_MS
                        );
                    }
                }
            }
        }
    }
    let total: usize = parts.iter().map(Vec::len).sum();
    assert_eq!(seen.len(), total, "every event written once");
    assert!(late > 0, "seed {seed}: the stream has events far behind");
    if owners.contains(&1) {
        assert!(required > 0, "seed {seed}: the lower bound was exercised");
    }
}

#[test]
fn late_classification_matches_the_model_on_one_worker() {
    for seed in [11, 12] {
        // One partition: both bounds apply.
        check(
            seed,
            &Case {
                workers: 1,
                partitions: vec![(3_000, 0)],
            },
        );
        // Three, one running 3 s ahead and one idle: only the upper bound is exact.
        check(
            seed,
            &Case {
                workers: 1,
                partitions: vec![(3_000, 0), (3_000, 3_000), (0, 0)],
            },
        );
    }
}

#[test]
fn late_classification_matches_the_model_on_two_workers() {
    for seed in [13, 14] {
        // One partition each, the second worker's 3 s ahead: each worker has its own watermark.
        check(
            seed,
            &Case {
                workers: 2,
                partitions: vec![(3_000, 0), (3_000, 3_000)],
            },
        );
        // Two each, one skewed and one idle.
        check(
            seed,
            &Case {
                workers: 2,
                partitions: vec![(3_000, 0), (3_000, 3_000), (2_000, 0), (0, 0)],
            },
        );
    }
}
