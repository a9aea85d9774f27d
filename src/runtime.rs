//! What every worker runs on: the wall clock, a seeded random generator, and the context that
//! every operator of one worker shares.

use crate::event::Splits;
use crate::metrics::Metrics;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use timely::dataflow::operators::probe::Handle as ProbeHandle;

/// What every operator of one worker shares.
#[derive(Clone)]
pub struct WorkerContext {
    /// Process metrics.
    pub metrics: Metrics,
    /// Every split of the pipeline.
    pub splits: Arc<Splits>,
    /// Frontier of every sink's acknowledged output: what is durable.
    pub probe: ProbeHandle<u64>,
    /// Frontier of what has left the queues between operators and processes: every
    /// operator's output except a reorder's (whose buffered events wait for the watermark, which
    /// only more reading moves), and each reorder's input once exchanged. Flow control settles
    /// in-flight records by it.
    pub flow_probe: ProbeHandle<u64>,
    /// The first fatal error of this worker; the worker loop stops on it.
    pub failure: Rc<RefCell<Option<String>>>,
    /// Set on SIGINT/SIGTERM: sources stop and everything drains.
    pub shutdown: Arc<AtomicBool>,
    /// Milliseconds between checkpoints.
    pub commit_interval: u64,
    /// What each watermark node of this worker may have in flight.
    pub flow: FlowBudget,
    /// What an exactly-once pipeline read back from its committed output at start.
    pub restored: Arc<Restored>,
    /// The largest record each Kafka sink can write (its topic's and its producer's limits),
    /// by sink, read at start.
    pub sink_limits: Arc<std::collections::BTreeMap<String, usize>>,
    /// The largest event every events sink can take, with room for its key and headers: a
    /// larger valid event is a dead letter (`too_large_for_output`), never a stopped job.
    pub output_limit: Option<usize>,
}

/// How much one worker's sources may have in flight (`[pipeline] max_in_flight_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowBudget {
    /// Records read and not yet out of the queues.
    pub records: u64,
    /// Their bytes, as read.
    pub bytes: u64,
}

/// The state an exactly-once pipeline resumes from, read from its committed output
/// (`sinks::restore`). Empty for a first start, `at_least_once`, or `--reset-state`.
#[derive(Debug, Default)]
pub struct Restored {
    /// No watermark starts below this: the highest event time written to an output partition,
    /// or watermark a written late event was judged against.
    pub floor: u64,
    /// Ids still inside the dedup horizon: the two halves of the id hash, and what dedup
    /// remembers of the event (payload fingerprint and time), in the chunks the restore's
    /// readers filled (joining them would copy every id once more).
    pub ids: Vec<Vec<[u64; 3]>>,
    /// Source positions (`tidemark-source`) of the invalid records already written.
    pub dead_letters: std::collections::HashSet<String>,
}

impl Restored {
    /// How many ids were restored.
    pub fn id_count(&self) -> usize {
        self.ids.iter().map(Vec::len).sum()
    }
}

/// Wall-clock time in epoch milliseconds.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// SplitMix64: a fast, well-mixed generator that needs no dependency.
#[derive(Clone, Debug)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next 128 random bits: an event id.
    pub fn next_u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }

    /// A float in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// A panic's message, when it is text (`panic!` with a format or a literal).
pub fn panic_text<'a>(info: &'a std::panic::PanicHookInfo<'_>) -> Option<&'a str> {
    let payload = info.payload();
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
}

/// Peak resident memory of this process (VmHWM).
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kb("VmHWM:").map(|kb| kb * 1024)
}

/// Resident memory of this process now (VmRSS).
pub fn rss_bytes() -> Option<u64> {
    proc_status_kb("VmRSS:").map(|kb| kb * 1024)
}

fn proc_status_kb(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
