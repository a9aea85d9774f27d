//! The late-arrival report as a differential dataflow.
//!
//! Late events enter one input collection, in rounds: a round is one poll of a reader, and is
//! the dataflow's (coarse) time, so progress tracking costs one step per poll and not one per
//! event. Three computations are maintained from it:
//!
//! - summaries (count and lateness percentiles) for every value of every dimension, keyed by
//!   `(dimension, value)` and reduced over the sorted lateness values with their counts;
//! - bursts: per region, the arrival seconds (with each event's second of event time), cut
//!   into runs wherever arrivals pause for more than the burst gap;
//! - a lateness histogram per region.
//!
//! Each is updated incrementally when a round adds events: only the keys that changed are
//! reduced again. Their output updates are gathered, with their times, into a [`Board`], from
//! which a consistent [`Report`] is read whenever the dataflow's frontier passes a round.

use super::read::{Input, Reader};
use super::{AnalysisError, LateEvent, Unreadable};
use differential_dataflow::input::InputSession;
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What a summary is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    /// Every late event.
    All,
    /// By origin region.
    Region,
    /// By the payload's `service` field.
    Service,
    /// By source `cluster/topic/partition`.
    Partition,
    /// By hour of arrival (UTC).
    Hour,
    /// Lateness of events read directly (not from a replicated topic): what
    /// `max_out_of_orderness` is for.
    Direct,
    /// Arrival minus event time of events read from a replicated topic: what `max_split_hold`
    /// is for.
    ReplicatedDelay,
}

impl Dim {
    /// Every dimension, in report order.
    pub const ALL: [Dim; 7] = [
        Dim::All,
        Dim::Region,
        Dim::Service,
        Dim::Partition,
        Dim::Hour,
        Dim::Direct,
        Dim::ReplicatedDelay,
    ];

    /// The heading of its table.
    pub fn title(self) -> &'static str {
        match self {
            Dim::All => "lateness, all late events (ms)",
            Dim::Region => "lateness by origin region (ms)",
            Dim::Service => "lateness by service (ms)",
            Dim::Partition => "lateness by source partition (ms)",
            Dim::Hour => "lateness by arrival hour, UTC (ms)",
            Dim::Direct => "lateness of directly read events (ms)",
            Dim::ReplicatedDelay => "arrival delay of replicated events (ms)",
        }
    }

    /// The name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Dim::All => "all",
            Dim::Region => "region",
            Dim::Service => "service",
            Dim::Partition => "partition",
            Dim::Hour => "arrival_hour",
            Dim::Direct => "direct_lateness",
            Dim::ReplicatedDelay => "replicated_delay",
        }
    }
}

/// Count and nearest-rank percentiles of a set of milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Summary {
    /// Events.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

/// The nearest-rank quantile of sorted `(value, count)` pairs, `per_mille` thousandths: the
/// least value with at least `ceil(per_mille * total / 1000)` values at or below it. Integer
/// arithmetic, so that 90% of 10 is rank 9 and not the 10 that `0.9 * 10.0` rounds up to.
pub fn quantile(sorted: &[(u64, u64)], total: u64, per_mille: u64) -> u64 {
    let rank = (per_mille * total).div_ceil(1000).clamp(1, total.max(1));
    let mut seen = 0;
    for (v, c) in sorted {
        seen += c;
        if seen >= rank {
            return *v;
        }
    }
    sorted.last().map_or(0, |(v, _)| *v)
}

impl Summary {
    /// The summary of sorted `(value, count)` pairs.
    pub fn of(sorted: &[(u64, u64)]) -> Summary {
        let count = sorted.iter().map(|(_, c)| c).sum();
        Summary {
            count,
            p50: quantile(sorted, count, 500),
            p90: quantile(sorted, count, 900),
            p99: quantile(sorted, count, 990),
            p999: quantile(sorted, count, 999),
            max: sorted.last().map_or(0, |(v, _)| *v),
        }
    }
}

/// A maximal run of late arrivals from one region with no pause longer than the burst gap.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Burst {
    /// First arrival second, epoch ms.
    pub start_ms: u64,
    /// Last arrival second's end, epoch ms.
    pub end_ms: u64,
    /// Late events in it.
    pub count: u64,
    /// Earliest event time in it (to the second), epoch ms.
    pub event_start_ms: u64,
    /// Latest event time in it (to the second's end), epoch ms.
    pub event_end_ms: u64,
}

/// Cuts sorted `((arrival second, event second), count)` pairs into bursts.
pub fn bursts(sorted: &[((u64, u64), u64)], gap_s: u64, min_count: u64) -> Vec<Burst> {
    let mut out = Vec::new();
    let mut run: Option<(u64, u64, u64, u64, u64)> = None; // start, last, count, emin, emax
    for &((a, e), c) in sorted {
        run = match run {
            Some((s, last, n, lo, hi)) if a <= last + gap_s => {
                Some((s, a, n + c, lo.min(e), hi.max(e)))
            }
            previous => {
                out.extend(previous.map(burst));
                Some((a, a, c, e, e))
            }
        };
    }
    out.extend(run.map(burst));
    out.retain(|b| b.count >= min_count);
    out
}

fn burst((s, last, count, lo, hi): (u64, u64, u64, u64, u64)) -> Burst {
    Burst {
        start_ms: s * 1000,
        end_ms: (last + 1) * 1000,
        count,
        event_start_ms: lo * 1000,
        event_end_ms: (hi + 1) * 1000,
    }
}

/// Upper bounds (ms) of the lateness histogram's buckets: 1-2-5 steps from 10 ms to 1000 s.
pub const BUCKETS: [u64; 16] = [
    10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000,
    500_000, 1_000_000,
];

/// The histogram bucket of a lateness: the least bound at or above it (the last one catches
/// everything beyond).
pub fn bucket(lateness_ms: u64) -> u64 {
    BUCKETS
        .iter()
        .copied()
        .find(|b| lateness_ms <= *b)
        .unwrap_or(BUCKETS[BUCKETS.len() - 1])
}

/// `YYYY-MM-DD HH:00` (UTC) of an epoch-ms time.
pub fn hour(ms: u64) -> String {
    let hours = ms / 3_600_000;
    let (days, h) = (hours / 24, hours % 24);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {h:02}:00")
}

/// The summary keys of one event, with the value each summarises.
pub fn dims(e: &LateEvent) -> Vec<((Dim, String), u64)> {
    let mut out = vec![
        ((Dim::All, String::new()), e.lateness_ms),
        ((Dim::Region, e.region.clone()), e.lateness_ms),
        ((Dim::Service, e.service.clone()), e.lateness_ms),
        ((Dim::Partition, e.partition.clone()), e.lateness_ms),
        ((Dim::Hour, hour(e.arrival_ms)), e.lateness_ms),
    ];
    if e.replicated {
        out.push((
            (Dim::ReplicatedDelay, String::new()),
            e.arrival_ms.saturating_sub(e.event_ms),
        ));
    } else {
        out.push(((Dim::Direct, String::new()), e.lateness_ms));
    }
    out
}

/// Settings of the report.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ReportOptions {
    /// Arrivals further apart than this start a new burst (seconds).
    pub burst_gap_s: u64,
    /// Runs with fewer events are not reported as bursts.
    pub min_burst: u64,
    /// The pipeline's current `max_out_of_orderness`, for the advisor.
    pub max_out_of_orderness_ms: u64,
    /// The pipeline's current `max_split_hold`, for the advisor.
    pub max_split_hold_ms: u64,
    /// The advisor adds this share (percent) to what the past would have needed, since the
    /// next split or burst of disorder is rarely the same length as the last.
    pub headroom_percent: u64,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            burst_gap_s: 3,
            min_burst: 10,
            max_out_of_orderness_ms: 2_000,
            max_split_hold_ms: 0,
            headroom_percent: 25,
        }
    }
}

/// The report at one consistent point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Late events read.
    pub events: u64,
    /// Records that were not readable late events, by reason.
    pub unreadable: Unreadable,
    /// Summaries per dimension, by value.
    pub summaries: BTreeMap<Dim, BTreeMap<String, Summary>>,
    /// Bursts per region, in time order.
    pub bursts: BTreeMap<String, Vec<Burst>>,
    /// Lateness histogram per region: bucket upper bound (ms) -> events.
    pub histogram: BTreeMap<String, BTreeMap<u64, u64>>,
}

impl Report {
    /// The summary of one dimension value (`""` for the dimensions without values).
    pub fn summary(&self, dim: Dim, value: &str) -> Option<&Summary> {
        self.summaries.get(&dim)?.get(value)
    }
}

/// Output updates of the three computations.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    Summary(Dim, String, Summary),
    Burst(String, Burst),
    Bin(String, u64, u64),
}

/// Gathers output updates from every worker, with their times, and folds those a frontier has
/// passed into a consistent state.
#[derive(Default)]
struct Board {
    settled: BTreeMap<Item, i64>,
    pending: Vec<(Item, u64, i64)>,
    unreadable: Unreadable,
}

impl Board {
    fn settle(&mut self, before: u64) -> Report {
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].1 < before {
                let (item, _, diff) = self.pending.swap_remove(i);
                let n = self.settled.entry(item.clone()).or_default();
                *n += diff;
                if *n == 0 {
                    self.settled.remove(&item);
                }
            } else {
                i += 1;
            }
        }
        let mut r = Report {
            unreadable: self.unreadable.clone(),
            ..Report::default()
        };
        for (item, n) in &self.settled {
            debug_assert!(*n > 0, "an output update retracted what was never there");
            match item {
                Item::Summary(dim, value, s) => {
                    r.summaries
                        .entry(*dim)
                        .or_default()
                        .insert(value.clone(), *s);
                }
                Item::Burst(region, b) => {
                    r.bursts.entry(region.clone()).or_default().push(b.clone())
                }
                Item::Bin(region, bucket, count) => {
                    r.histogram
                        .entry(region.clone())
                        .or_default()
                        .insert(*bucket, *count);
                }
            }
        }
        r.events = r.summary(Dim::All, "").map_or(0, |s| s.count);
        r
    }
}

/// Where one worker's late events come from.
pub trait Feed {
    /// Adds the next events (and unreadable counts) of this worker's share. Returns false when
    /// the share is exhausted.
    fn next(
        &mut self,
        out: &mut Vec<LateEvent>,
        unreadable: &mut Unreadable,
    ) -> Result<bool, AnalysisError>;
}

/// A reader as a feed: each record parsed, or counted as unreadable.
pub struct ReaderFeed {
    reader: Reader,
    buf: Vec<super::read::Record>,
}

impl ReaderFeed {
    /// Worker `index` of `peers`' share of `input`.
    pub fn open(
        input: &Input,
        index: usize,
        peers: usize,
        follow: bool,
    ) -> Result<Self, AnalysisError> {
        Ok(ReaderFeed {
            reader: Reader::open(input, index, peers, follow)?,
            buf: Vec::new(),
        })
    }
}

impl Feed for ReaderFeed {
    fn next(
        &mut self,
        out: &mut Vec<LateEvent>,
        unreadable: &mut Unreadable,
    ) -> Result<bool, AnalysisError> {
        let more = self.reader.poll(10_000, &mut self.buf)?;
        for record in self.buf.drain(..) {
            match record.and_then(|(h, p)| super::parse(&h, &p)) {
                Ok(e) => out.push(e),
                Err(reason) => *unreadable.entry(reason).or_default() += 1,
            }
        }
        Ok(more)
    }
}

/// Chunks given in advance, one per round, each dealt over the workers by position.
pub struct ChunkFeed {
    chunks: std::vec::IntoIter<Vec<LateEvent>>,
    index: usize,
    peers: usize,
}

impl ChunkFeed {
    /// Worker `index` of `peers`' share of `chunks`.
    pub fn new(chunks: Vec<Vec<LateEvent>>, index: usize, peers: usize) -> ChunkFeed {
        ChunkFeed {
            chunks: chunks.into_iter(),
            index,
            peers,
        }
    }
}

impl Feed for ChunkFeed {
    fn next(
        &mut self,
        out: &mut Vec<LateEvent>,
        _: &mut Unreadable,
    ) -> Result<bool, AnalysisError> {
        match self.chunks.next() {
            Some(chunk) => {
                out.extend(
                    chunk
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| i % self.peers == self.index)
                        .map(|(_, e)| e),
                );
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Runs the report on `workers` threads. Every worker feeds one round per call of its feed;
/// after each round, once every worker has finished it, `on_round` gets the report as of that
/// round (on worker 0). Returns the final report.
pub fn execute<F, R>(
    workers: usize,
    options: ReportOptions,
    feed: F,
    on_round: R,
) -> Result<Report, AnalysisError>
where
    F: Fn(usize, usize) -> Result<Box<dyn Feed>, AnalysisError> + Send + Sync + 'static,
    R: FnMut(u64, &Report) + Send + 'static,
{
    let board = Arc::new(Mutex::new(Board::default()));
    let on_round = Arc::new(Mutex::new(on_round));
    let shared = Arc::clone(&board);
    let config = timely::Config::process(workers.max(1));
    let guards = timely::execute(config, move |worker| -> Result<(), AnalysisError> {
        let (index, peers) = (worker.index(), worker.peers());
        let mut input: InputSession<u64, LateEvent, isize> = InputSession::new();
        let b = Arc::clone(&shared);
        let probe = worker.dataflow::<u64, _, _>(|scope| {
            let late = input.to_collection(scope);
            build(late, options, b)
        });
        let mut feed = feed(index, peers)?;
        let mut events = Vec::new();
        let mut unreadable = Unreadable::new();
        let mut round = 0u64;
        loop {
            let more = feed.next(&mut events, &mut unreadable)?;
            for e in events.drain(..) {
                input.insert(e);
            }
            {
                let mut board = shared.lock().expect("board lock");
                for (reason, n) in std::mem::take(&mut unreadable) {
                    *board.unreadable.entry(reason).or_default() += n;
                }
            }
            round += 1;
            input.advance_to(round);
            input.flush();
            while probe.less_than(&round) {
                worker.step();
            }
            if index == 0 {
                let report = shared.lock().expect("board lock").settle(round);
                (on_round.lock().expect("callback lock"))(round, &report);
            }
            // A worker whose share is done keeps stepping with the others until all are.
            if !more {
                break;
            }
        }
        drop(input);
        while !probe.done() {
            worker.step();
        }
        Ok(())
    })
    .map_err(AnalysisError::Workers)?;
    for result in guards.join() {
        result.map_err(AnalysisError::Workers)??;
    }
    let report = board.lock().expect("board lock").settle(u64::MAX);
    Ok(report)
}

/// The three computations over `late`, with their updates gathered into `board`.
fn build<'scope>(
    late: VecCollection<'scope, u64, LateEvent, isize>,
    options: ReportOptions,
    board: Arc<Mutex<Board>>,
) -> timely::dataflow::operators::probe::Handle<u64> {
    let post = move |item: Item, time: u64, diff: isize| {
        board
            .lock()
            .expect("board lock")
            .pending
            .push((item, time, diff as i64));
    };
    let post_s = post.clone();
    let post_b = post.clone();

    let summaries = late
        .clone()
        .flat_map(|e| dims(&e))
        .reduce(
            |_key, values: &[(&u64, isize)], out: &mut Vec<(Summary, isize)>| {
                let sorted: Vec<(u64, u64)> =
                    values.iter().map(|(v, c)| (**v, *c as u64)).collect();
                out.push((Summary::of(&sorted), 1));
            },
        )
        .inspect(move |(((dim, value), s), t, diff)| {
            post_s(Item::Summary(*dim, value.clone(), *s), *t, *diff)
        });

    let (gap, min) = (options.burst_gap_s, options.min_burst);
    let bursts = late
        .clone()
        .map(|e| (e.region, (e.arrival_ms / 1000, e.event_ms / 1000)))
        .reduce(move |_region, values: &[(&(u64, u64), isize)], out| {
            let sorted: Vec<((u64, u64), u64)> =
                values.iter().map(|(v, c)| (**v, *c as u64)).collect();
            out.extend(bursts(&sorted, gap, min).into_iter().map(|b| (b, 1isize)));
        })
        .inspect(move |((region, b), t, diff)| {
            post_b(Item::Burst(region.clone(), b.clone()), *t, *diff)
        });

    let bins = late
        .map(|e| (e.region, bucket(e.lateness_ms)))
        .count()
        .inspect(move |(((region, bucket), n), t, diff)| {
            post(Item::Bin(region.clone(), *bucket, *n as u64), *t, *diff)
        });

    // One probe over all three: a round is settled once every computation has passed it.
    let probe = timely::dataflow::operators::probe::Handle::new();
    summaries.probe_with(&probe);
    bursts.probe_with(&probe);
    bins.probe_with(&probe);
    probe
}

/// What the advisor suggests for keeping a share of these events on time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Advice {
    /// The share of these late events that would have been on time, e.g. "99%".
    pub keep: String,
    /// `max_out_of_orderness` for the directly read events (None: none of them were late).
    pub max_out_of_orderness_ms: Option<u64>,
    /// What that costs: output waits this much longer, always.
    pub out_of_orderness_latency_ms: u64,
    /// `max_split_hold` for the replicated events (None: none of them were late).
    pub max_split_hold_ms: Option<u64>,
    /// What that costs: output waits up to this much longer, only while a link is down.
    pub split_hold_latency_ms: u64,
}

/// The advisor's rows for 90, 99 and 99.9 %.
///
/// A directly read event late by `L` would have been on time had `max_out_of_orderness` been
/// `L` larger: the watermark is the greatest event time seen minus that bound. A replicated
/// event arrives late because its link was down; a hold covering its delay (arrival minus event
/// time) would have kept the watermark for it. Both get the headroom on top, then are rounded
/// up (to 100 ms and to whole seconds).
pub fn advise(report: &Report, options: &ReportOptions) -> Vec<Advice> {
    let round_up = |ms: u64, step: u64| ms.div_ceil(step) * step;
    let direct = report.summary(Dim::Direct, "");
    let replicated = report.summary(Dim::ReplicatedDelay, "");
    type Pick = fn(&Summary) -> u64;
    let rows: [(&str, Pick); 3] = [
        ("90%", |s| s.p90),
        ("99%", |s| s.p99),
        ("99.9%", |s| s.p999),
    ];
    rows.into_iter()
        .map(|(keep, pick)| {
            let more = |ms: u64| ms + ms * options.headroom_percent / 100;
            let bound =
                direct.map(|s| options.max_out_of_orderness_ms + round_up(more(pick(s)), 100));
            let hold =
                replicated.map(|s| round_up(more(pick(s)), 1000).max(options.max_split_hold_ms));
            Advice {
                keep: keep.into(),
                max_out_of_orderness_ms: bound,
                out_of_orderness_latency_ms: bound
                    .map_or(0, |b| b - options.max_out_of_orderness_ms),
                max_split_hold_ms: hold,
                split_hold_latency_ms: hold.unwrap_or(0),
            }
        })
        .collect()
}
