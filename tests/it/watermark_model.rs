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
//!
//! Replication splits and the holds (`mod splits` below) need a link whose heartbeats stop, so
//! they are checked on the state machine the operator runs, step by step against a model that
//! recomputes the watermark from the whole history, with no hold, a hold shorter than the split
//! and one longer than it.

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

/// The split and hold rules, on the state machine each worker's watermark operator runs, driven
/// the way the operator drives it (link views from heartbeat times, `link_returned` when a link
/// comes back), against a model that recomputes the watermark from the whole history at every
/// step, from the rules as DESIGN.md states them:
///
/// - a partition's watermark is its largest event time minus the bound (0 before its first);
/// - a caught-up partition quiet for `idle_timeout` leaves the minimum, unless its replication
///   link is down and has been for no longer than `max_split_hold` (it waits for the link), or
///   its link is back and it has not delivered since, within the same hold (its backlog may
///   come after the heartbeats); quiet counts from its last record or from the link's return;
/// - with every partition idle, the watermark follows the wall clock;
/// - the capability is the largest watermark so far, and an event below it on arrival is late.
mod splits {
    use std::collections::VecDeque;
    use tidemark::operators::watermark::state::{
        Capability, LinkView, Verdict, WatermarkPolicy, WatermarkState,
    };
    use tidemark::runtime::SplitMix;

    const BOUND: u64 = 2_000;
    const IDLE: u64 = 5_000;
    const LINK_TIMEOUT: u64 = 3_000;
    const TICK: u64 = 100;
    const END: u64 = 120_000;
    /// Partitions 0 and 1 are local (1 runs 3 s ahead), 2 and 3 cross the replication link, 4
    /// never has an event.
    const LINKS: [Option<usize>; 5] = [None, None, Some(0), Some(0), None];

    /// What arrives at each tick: records by partition (written at `wall`, event time), and
    /// the newest heartbeat time the link has delivered.
    struct World {
        arrivals: Vec<Vec<(usize, u64)>>,
        newest_heartbeat: Vec<Option<u64>>,
    }

    /// A seeded run: events every 50–250 ms per partition with up to 1.5 s of disorder and 2 %
    /// far behind; the link carries nothing from `split.0` to `split.1`, after which its
    /// backlog arrives 3–9 s later at 20 records a tick per partition, heartbeats first.
    fn world(seed: u64, split: (u64, u64)) -> World {
        let ticks = (END / TICK) as usize;
        let mut rng = SplitMix(seed);
        let mut arrivals = vec![Vec::new(); ticks];
        // Often later than the idle timeout: the return rule, not idleness, must hold it.
        let backlog_at = split.1 + 3_000 + rng.below(6_000);
        for (p, link) in LINKS.iter().enumerate().take(4) {
            let skew = if p == 1 { 3_000 } else { 0 };
            let mut wall = 1_000 + rng.below(200);
            let mut queue = VecDeque::new();
            while wall < END - 5_000 {
                let mut time = (wall + skew).saturating_sub(rng.below(1_500));
                if rng.next_f64() < 0.02 {
                    time = time.saturating_sub(8_000 + rng.below(10_000));
                }
                let delay = if link.is_some() { 200 } else { 20 };
                queue.push_back((wall + delay, time));
                wall += 50 + rng.below(200);
            }
            let tick_of = |at: u64| ((at / TICK) as usize).min(ticks - 1);
            let mut per_tick = vec![0usize; ticks];
            for (at, time) in queue {
                let cut = link.is_some() && at >= split.0 && at < backlog_at;
                let mut t = tick_of(if cut { backlog_at } else { at });
                // The backlog drains at a bounded rate, in order.
                while per_tick[t] >= 20 && t + 1 < ticks {
                    t += 1;
                }
                per_tick[t] += 1;
                arrivals[t].push((p, time));
            }
        }
        // A heartbeat every second, 200 ms in transit; those due during the cut arrive when
        // it ends.
        let delivered = |h: u64| {
            let at = h + 200;
            if at >= split.0 && at < split.1 {
                split.1
            } else {
                at
            }
        };
        let newest_heartbeat = (0..ticks)
            .map(|t| {
                let now = t as u64 * TICK;
                (0..=now / 1_000)
                    .map(|k| k * 1_000)
                    .filter(|&h| delivered(h) <= now)
                    .max()
            })
            .collect();
        World {
            arrivals,
            newest_heartbeat,
        }
    }

    /// The history one worker has seen, and the model's reading of it.
    #[derive(Default)]
    struct History {
        /// Per partition: (step, wall, event time) of each valid record.
        records: Vec<Vec<(usize, u64, u64)>>,
        /// Per partition: the step of its latest end report.
        ended: Vec<Option<usize>>,
        /// (wall, down, staleness) of every observation of the link.
        link: Vec<(u64, bool, u64)>,
        capability: u64,
    }

    impl History {
        /// The link's latest return (wall) and when the split it ended began, if it has come
        /// back from a split.
        fn returned(&self) -> Option<(u64, u64)> {
            let mut began = None;
            let mut back = None;
            let mut was_down = false;
            for &(wall, down, staleness) in &self.link {
                if down && !was_down {
                    began = Some(wall - staleness);
                }
                if !down && was_down {
                    back = Some((wall, began.expect("down before up")));
                }
                was_down = down;
            }
            back
        }

        fn watermark(&self, mine: &[usize], hold: u64, now: u64) -> u64 {
            let &(_, down, staleness) = self.link.last().expect("observed");
            let returned = self.returned();
            let mut min = None::<u64>;
            for &p in mine {
                let recs = &self.records[p];
                let last = recs.last();
                let caught_up = match (self.ended[p], last) {
                    (Some(e), Some(&(step, _, _))) => e > step,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                let remote = LINKS[p].is_some();
                let held = remote && down && staleness <= hold;
                let mut quiet_since = last.map_or(0, |r| r.1);
                let mut awaiting = false;
                if let (true, Some((back, began))) = (remote, returned) {
                    quiet_since = quiet_since.max(back);
                    let delivered = recs.iter().any(|r| r.1 >= back);
                    awaiting = !delivered && now < began + hold;
                }
                let idle = caught_up && !held && !awaiting && now - quiet_since >= IDLE;
                if !idle {
                    let own = recs
                        .iter()
                        .map(|r| r.2)
                        .max()
                        .map_or(0, |m| m.saturating_sub(BOUND));
                    min = Some(min.map_or(own, |x| x.min(own)));
                }
            }
            min.unwrap_or(now.saturating_sub(BOUND + IDLE))
        }
    }

    /// Runs one worker owning `mine` and checks every verdict and every capability against the
    /// model; returns (late events, late events of the link's backlog that were not far
    /// behind their own partition).
    fn run(world: &World, mine: &[usize], hold: u64, split: (u64, u64)) -> (usize, usize) {
        let policy = WatermarkPolicy {
            max_out_of_orderness: BOUND,
            idle_timeout: IDLE,
            max_future_skew: 600_000,
            max_split_hold: hold,
            unreachable_hold: 30_000,
        };
        let links: Vec<Option<usize>> = mine.iter().map(|&p| LINKS[p]).collect();
        let mut state = WatermarkState::new(policy, &links, 0);
        let mut h = History {
            records: vec![Vec::new(); LINKS.len()],
            ended: vec![None; LINKS.len()],
            ..History::default()
        };
        let (mut was_down, mut split_began) = (false, 0);
        let (mut late, mut backlog_late) = (0, 0);
        let mut step = 0;
        for (t, arriving) in world.arrivals.iter().enumerate() {
            let now = t as u64 * TICK;
            // The operator's glue: a view of the link, and its return.
            let view = LinkView::at(world.newest_heartbeat[t], 0, now, LINK_TIMEOUT, hold);
            if view.down && !was_down {
                split_began = now - view.staleness;
            }
            if was_down && !view.down {
                state.link_returned(0, split_began, now);
            }
            was_down = view.down;
            h.link.push((now, view.down, view.staleness));
            for &(p, time) in arriving.iter().filter(|(p, _)| mine.contains(p)) {
                let i = mine.iter().position(|&q| q == p).unwrap();
                step += 1;
                state.record(i, now);
                let verdict = state.event(i, time, now);
                let model_late = time < h.capability;
                match verdict {
                    Verdict::OnTime => assert!(
                        !model_late,
                        "p{p} {time} at {now}: on time, model says late behind {}",
                        h.capability
                    ),
                    Verdict::Late { watermark } => {
                        assert!(
                            model_late,
                            "p{p} {time} at {now}: late behind {watermark}, model's capability {}",
                            h.capability
                        );
                        assert_eq!(watermark.get(), h.capability);
                        late += 1;
                        let own = h.records[p].iter().map(|r| r.2).max().unwrap_or(0);
                        let in_backlog = LINKS[p].is_some() && now >= split.1;
                        if in_backlog && time + BOUND >= own {
                            backlog_late += 1;
                        }
                    }
                    Verdict::Future { .. } => panic!("no event is ahead of the clock"),
                }
                h.records[p].push((step, now, time));
            }
            step += 1;
            for (i, &p) in mine.iter().enumerate() {
                let pending = world.arrivals[t + 1..]
                    .first()
                    .is_some_and(|next| next.iter().any(|&(q, _)| q == p));
                if !pending {
                    state.end(i);
                    h.ended[p] = Some(step);
                }
            }
            let model = h.watermark(mine, hold, now).max(h.capability);
            match state.advance(&[view], now) {
                Capability::Hold(c) => assert_eq!(c, model, "capability at {now} (hold {hold})"),
                Capability::Released => panic!("released at {now}"),
            }
            h.capability = model;
        }
        (late, backlog_late)
    }

    fn check(workers: usize, seeds: &[u64]) {
        for &seed in seeds {
            let split = (30_000 + seed % 7 * 1_000, 50_000 + seed % 5 * 1_000);
            let w = world(seed, split);
            let owned = |k: usize| -> Vec<usize> {
                (0..LINKS.len()).filter(|p| p % workers == k).collect()
            };
            let (mut without, mut with) = ((0, 0), (0, 0));
            for k in 0..workers {
                let a = run(&w, &owned(k), 0, split);
                // Shorter than the split: held, then let go while the link is still down.
                run(&w, &owned(k), 10_000, split);
                let b = run(&w, &owned(k), 60_000, split);
                without = (without.0 + a.0, without.1 + a.1);
                with = (with.0 + b.0, with.1 + b.1);
            }
            // Without a hold, the link's backlog falls behind the local partitions; with a hold
            // longer than the split, only events already far behind their own partition are.
            assert!(
                without.1 > 100,
                "seed {seed}: {} backlog events late without a hold",
                without.1
            );
            assert_eq!(
                with.1, 0,
                "seed {seed}: backlog events late despite a hold longer than the split"
            );
            assert!(with.0 > 0, "seed {seed}: the far-behind events are late");
        }
    }

    #[test]
    fn split_and_hold_rules_match_the_model_on_one_worker() {
        check(1, &[21, 22, 23]);
    }

    #[test]
    fn split_and_hold_rules_match_the_model_on_two_workers() {
        check(2, &[24, 25, 26]);
    }
}
