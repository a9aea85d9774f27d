//! The late-arrival report against a plain reference, its incremental updates, unreadable
//! input, and reconciliation's idempotence.

use std::collections::{BTreeMap, HashMap};
use tidemark::analysis::cli::report_of_chunks;
use tidemark::analysis::report::{advise, bucket, hour, Dim, Report, ReportOptions};
use tidemark::analysis::LateEvent;
use tidemark::runtime::SplitMix;

const T0: u64 = 1_790_000_000_000;

/// Seeded late events: a steady trickle from every region over `span_s` seconds, and one
/// replicated burst (a split) from region-b, with a gap before it.
fn seeded(seed: u64, n: usize, span_s: u64) -> Vec<LateEvent> {
    let mut rng = SplitMix(seed);
    (0..n)
        .map(|i| {
            let replicated = rng.below(4) == 0;
            let (region, arrival, event, lateness) = if replicated {
                let arrival = T0 + (span_s + 30) * 1000 + rng.below(6_000);
                let event = T0 + span_s * 1000 - rng.below(25_000);
                ("region-b", arrival, event, arrival - event - 2_000)
            } else {
                let arrival = T0 + rng.below(span_s * 1000);
                let lateness = 1 + rng.below(1_500) + rng.below(20) * rng.below(2) * 100;
                let region = if rng.below(2) == 0 {
                    "region-a"
                } else {
                    "region-c"
                };
                (region, arrival, arrival - 2_000 - lateness, lateness)
            };
            LateEvent {
                region: region.into(),
                service: format!("svc-{}", rng.below(5)),
                partition: format!(
                    "{region}/{}log-events/{}",
                    if replicated { "region-b." } else { "" },
                    i % 3
                ),
                replicated,
                event_ms: event,
                lateness_ms: lateness.max(1),
                arrival_ms: arrival,
            }
        })
        .collect()
}

/// Nearest rank over a plain sorted vector.
fn rank(sorted: &[u64], per_mille: u64) -> u64 {
    let n = sorted.len() as u64;
    let r = (per_mille * n).div_ceil(1000).clamp(1, n);
    sorted[(r - 1) as usize]
}

/// The report computed the obvious way: group, sort, index.
fn reference(events: &[LateEvent], o: &ReportOptions) -> Report {
    let mut groups: BTreeMap<(Dim, String), Vec<u64>> = BTreeMap::new();
    for e in events {
        for (key, v) in [
            ((Dim::All, String::new()), e.lateness_ms),
            ((Dim::Region, e.region.clone()), e.lateness_ms),
            ((Dim::Service, e.service.clone()), e.lateness_ms),
            ((Dim::Partition, e.partition.clone()), e.lateness_ms),
            ((Dim::Hour, hour(e.arrival_ms)), e.lateness_ms),
        ] {
            groups.entry(key).or_default().push(v);
        }
        if e.replicated {
            groups
                .entry((Dim::ReplicatedDelay, String::new()))
                .or_default()
                .push(e.arrival_ms - e.event_ms);
        } else {
            groups
                .entry((Dim::Direct, String::new()))
                .or_default()
                .push(e.lateness_ms);
        }
    }
    let mut r = Report {
        events: events.len() as u64,
        ..Report::default()
    };
    for ((dim, value), mut v) in groups {
        v.sort_unstable();
        let s = tidemark::analysis::report::Summary {
            count: v.len() as u64,
            p50: rank(&v, 500),
            p90: rank(&v, 900),
            p99: rank(&v, 990),
            p999: rank(&v, 999),
            max: *v.last().unwrap(),
        };
        r.summaries.entry(dim).or_default().insert(value, s);
    }
    // Bursts: arrivals per region in order, cut where the gap exceeds the burst gap.
    let mut by_region: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for e in events {
        by_region
            .entry(&e.region)
            .or_default()
            .push((e.arrival_ms / 1000, e.event_ms / 1000));
    }
    for (region, mut v) in by_region {
        v.sort_unstable();
        let mut runs: Vec<Vec<(u64, u64)>> = Vec::new();
        for p in v {
            match runs.last_mut() {
                Some(run) if p.0 - run.last().unwrap().0 <= o.burst_gap_s => run.push(p),
                _ => runs.push(vec![p]),
            }
        }
        let bursts: Vec<_> = runs
            .into_iter()
            .filter(|run| run.len() as u64 >= o.min_burst)
            .map(|run| tidemark::analysis::report::Burst {
                start_ms: run[0].0 * 1000,
                end_ms: (run.last().unwrap().0 + 1) * 1000,
                count: run.len() as u64,
                event_start_ms: run.iter().map(|p| p.1).min().unwrap() * 1000,
                event_end_ms: (run.iter().map(|p| p.1).max().unwrap() + 1) * 1000,
            })
            .collect();
        if !bursts.is_empty() {
            r.bursts.insert(region.to_string(), bursts);
        }
    }
    for e in events {
        *r.histogram
            .entry(e.region.clone())
            .or_default()
            .entry(bucket(e.lateness_ms))
            .or_default() += 1;
    }
    r
}

fn options() -> ReportOptions {
    ReportOptions {
        burst_gap_s: 2,
        min_burst: 5,
        max_out_of_orderness_ms: 2_000,
        max_split_hold_ms: 0,
        headroom_percent: 25,
    }
}

#[test]
fn the_report_matches_a_plain_reference_at_one_and_two_workers() {
    let o = options();
    for seed in [1, 2, 3] {
        let events = seeded(seed, 3_000, 120);
        let expected = reference(&events, &o);
        for workers in [1, 2] {
            let chunks = events.chunks(700).map(<[_]>::to_vec).collect();
            let (_, got) = report_of_chunks(chunks, workers, o).unwrap();
            assert_eq!(got, expected, "seed {seed}, {workers} worker(s)");
        }
        // The split shows up as region-b's burst, covering the event times it hid.
        let b = &expected.bursts["region-b"];
        assert_eq!(b.len(), 1, "one split, one burst: {b:?}");
        let n_b = events.iter().filter(|e| e.region == "region-b").count() as u64;
        assert_eq!(b[0].count, n_b);
        assert!(b[0].event_start_ms <= T0 + 120_000 - 24_000 && b[0].event_end_ms > T0 + 119_000);
    }
}

#[test]
fn the_advisor_picks_the_percentiles_of_what_each_knob_controls() {
    let o = options();
    let events = seeded(9, 4_000, 300);
    let (_, report) = report_of_chunks(vec![events.clone()], 2, o).unwrap();
    let advice = advise(&report, &o);
    let mut direct: Vec<u64> = events
        .iter()
        .filter(|e| !e.replicated)
        .map(|e| e.lateness_ms)
        .collect();
    let mut delay: Vec<u64> = events
        .iter()
        .filter(|e| e.replicated)
        .map(|e| e.arrival_ms - e.event_ms)
        .collect();
    direct.sort_unstable();
    delay.sort_unstable();
    for (a, per_mille) in advice.iter().zip([900, 990, 999]) {
        // The percentile with a quarter on top, rounded up to 100 ms (to 1 s for the hold).
        let x = rank(&direct, per_mille) * 5 / 4;
        let bound = a.max_out_of_orderness_ms.unwrap();
        assert!(
            bound >= 2_000 + x && bound < 2_000 + x + 100,
            "{a:?} for {x}"
        );
        let kept = direct.iter().filter(|l| **l <= bound - 2_000).count() as u64;
        // Without the headroom it would still keep the share it names.
        assert!(rank(&direct, per_mille) <= bound - 2_000);
        assert!(
            kept * 1000 >= per_mille * direct.len() as u64,
            "{a:?} keeps {kept}"
        );
        let hold = a.max_split_hold_ms.unwrap();
        let d = rank(&delay, per_mille) * 5 / 4;
        assert!(hold >= d && hold < d + 1_000, "{a:?} for delay {d}");
        assert_eq!(a.split_hold_latency_ms, hold);
        assert_eq!(a.out_of_orderness_latency_ms, bound - 2_000);
    }
}

#[test]
fn an_update_equals_the_report_from_scratch() {
    let o = options();
    let events = seeded(4, 5_000, 200);
    let (n, m) = events.split_at(3_100);
    for workers in [1, 2] {
        let (rounds, last) = report_of_chunks(vec![n.to_vec(), m.to_vec()], workers, o).unwrap();
        let (_, scratch_n) = report_of_chunks(vec![n.to_vec()], workers, o).unwrap();
        let (_, scratch_all) = report_of_chunks(vec![events.clone()], workers, o).unwrap();
        assert_eq!(rounds[0], scratch_n, "after N, {workers} worker(s)");
        assert_eq!(rounds[1], scratch_all, "after N+M, {workers} worker(s)");
        assert_eq!(last, scratch_all);
        assert_ne!(rounds[0], rounds[1], "the update must change the report");
    }
}

/// One late record in the file sink's envelope format.
fn late_line(i: u64) -> String {
    serde_json::json!({
        "headers": {
            "tidemark-region": "region-a",
            "tidemark-source": format!("a/log-events/0/{i}"),
            "tidemark-event-time": (T0 + i).to_string(),
            "tidemark-watermark": (T0 + i + 500).to_string(),
            "tidemark-lateness-ms": "500",
            "tidemark-arrival-ms": (T0 + i + 2_600).to_string(),
        },
        "payload": {"eventId": format!("e{i}"), "timestamp": T0 + i},
    })
    .to_string()
}

/// `late-report --follow` on a growing file prints a report that catches up with each append.
#[test]
fn follow_mode_reports_what_is_appended() {
    use std::io::{BufRead, Write};
    let dir = crate::support::Scratch::new("late-follow");
    let path = dir.path("late.jsonl");
    let append = |from: u64, to: u64| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        for i in from..to {
            writeln!(f, "{}", late_line(i)).unwrap();
        }
    };
    append(0, 50);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args([
            "late-report",
            "--file",
            &path,
            "--follow",
            "--interval",
            "100ms",
        ])
        .args(["--stop-after", "60s", "--format", "json", "--workers", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            // Follow mode prints one report per line.
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = tx.send(v["events"].as_u64().unwrap_or(0));
            }
        }
    });
    let wait_for = |n: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(seen) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
                assert!(seen <= n, "reported {seen} events, only {n} written");
                if seen == n {
                    return true;
                }
            }
        }
        false
    };
    let first = wait_for(50);
    append(50, 80);
    let second = first && wait_for(80);
    let _ = child.kill();
    let _ = child.wait();
    assert!(first, "the first 50 events never appeared in a report");
    assert!(second, "the 30 appended events never appeared in a report");
}

#[test]
fn unreadable_records_are_counted_by_reason_and_never_stop_the_report() {
    let dir = crate::support::Scratch::new("late-bad");
    let path = dir.path("late.jsonl");
    let good = late_line;
    let mut lines: Vec<String> = (0..20).map(good).collect();
    let mut bad = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&good(99)).unwrap();
        edit(&mut v);
        lines.push(v.to_string());
    };
    bad(&|v| {
        v["headers"]
            .as_object_mut()
            .unwrap()
            .remove("tidemark-lateness-ms");
    });
    bad(&|v| v["headers"]["tidemark-arrival-ms"] = "soon".into());
    bad(&|v| v["headers"]["tidemark-source"] = "nowhere".into());
    bad(&|v| v["payload"] = "not json {".into());
    bad(&|v| v["payload"] = serde_json::json!([1, 2]));
    lines.push("{not a line".into());
    lines.push("\u{1}\u{2}".into());
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();

    let input = tidemark::analysis::read::Input::File(path.into());
    let report = tidemark::analysis::report::execute(
        2,
        options(),
        move |i, p| -> Result<Box<dyn tidemark::analysis::report::Feed>, _> {
            Ok(Box::new(tidemark::analysis::report::ReaderFeed::open(
                &input, i, p, false,
            )?))
        },
        |_, _| {},
    )
    .unwrap();
    assert_eq!(report.events, 20);
    let expected: BTreeMap<String, u64> = [
        ("missing header tidemark-lateness-ms", 1),
        ("bad header tidemark-arrival-ms", 1),
        ("bad header tidemark-source", 1),
        ("bad payload", 2),
        ("bad line", 2),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(report.unreadable, expected);
}

/// The mock two-region run leaves late events; reconciling writes each once, with its window,
/// and a second run writes nothing.
#[test]
fn reconciling_twice_writes_nothing_new() {
    use tidemark::analysis::reconcile::{reconcile, ReconcileOptions};
    let t = tidemark::tools::demo::traffic(20_000, 9, 65_536);
    let (a, _b, ba, bb) = crate::mock::loaded_regions(&t, 4, 8);
    // The mock cluster does not serve CreateTopics; on real Kafka reconcile creates it.
    a.create_topic("log-events-corrections", 2, 1).unwrap();
    let (config, graph) = tidemark::tools::demo::pipeline(&ba, &bb, 8).unwrap();
    let metrics = tidemark::metrics::Metrics::new();
    tidemark::pipeline::run_bounded(&config, &graph, 2, &metrics).unwrap();
    let late = tidemark::tools::topic::read_topic(&ba, "log-events-late").unwrap();
    assert!(!late.is_empty(), "the demo traffic must leave late events");

    let o = ReconcileOptions {
        bootstrap: ba.clone(),
        late_topic: "log-events-late".into(),
        ordered_topic: "log-events-ordered".into(),
        corrections_topic: "log-events-corrections".into(),
        replication_factor: 1,
        window: tidemark::component::Millis(1_000),
        id_field: "eventId".into(),
        time_field: "timestamp".into(),
    };
    let first = reconcile(&o).unwrap();
    assert_eq!(first.late, late.len() as u64);
    assert_eq!(
        first.on_ordered, 0,
        "dedup never lets an id be both ordered and late"
    );
    assert!(first.written > 0, "{first}");
    assert_eq!(
        first.written + first.window_open + first.already_corrected,
        first.late,
        "{first}"
    );
    let corrections = tidemark::tools::topic::read_topic(&ba, "log-events-corrections").unwrap();
    assert_eq!(corrections.len() as u64, first.written);
    let mut ids = HashMap::new();
    for (_, payload, headers) in &corrections {
        // serde_json, not the pipeline's decoder: the check must not share what it checks.
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
        let time = v["timestamp"].as_u64().unwrap();
        let start: u64 = headers["tidemark-window-start"].parse().unwrap();
        let end: u64 = headers["tidemark-window-end"].parse().unwrap();
        assert!(start <= time && time < end && end - start == 1_000);
        assert!(headers.contains_key("tidemark-lateness-ms"));
        *ids.entry(v["eventId"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert!(ids.values().all(|n| *n == 1), "a correction written twice");

    let second = reconcile(&o).unwrap();
    assert_eq!(second.written, 0, "{second}");
    assert_eq!(second.already_corrected, first.written);
    let again = tidemark::tools::topic::read_topic(&ba, "log-events-corrections").unwrap();
    assert_eq!(again.len(), corrections.len());
}
