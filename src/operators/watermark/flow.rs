//! Flow control: a worker's sources stop reading ahead once the records they emitted and the
//! sinks have not yet passed reach a budget, so the queues between operators and between
//! processes cannot grow without bound when a consumer is slower than its sources.
//!
//! What counts as passed is the worker's flow probe (`WorkerContext::flow_probe`): data emitted
//! at capability `t` is settled once every queue that could still hold some of it is past `t`.
//! Events an operator keeps in its own state do not count: reorder's buffer waits for the
//! watermark, which only more reading moves, so counting it would deadlock (it is bounded by
//! the watermark's disorder bound instead); a Kafka sink's unacknowledged records are bounded
//! by its producer's queue. The sinks' own probe, which offsets wait for, is the wrong one for
//! this reason: reorder holds its capability at the time an event was read.
//!
//! The rule that keeps it from deadlocking: a source only stops once everything it has in
//! flight was emitted *below* its current capability. Stopping with data at the capability it
//! still holds would wait for a frontier that cannot pass that capability until the source
//! moves it, and the source moves it only by reading on (Materialize's flow-control deadlock,
//! MaterializeInc/materialize#16995). Below the capability, the data can drain: the worker
//! with the least capability has nothing in flight that waits on anyone else, so it always
//! gets to read again, and with it the frontier moves. The price: a flood of records that does
//! not move the watermark (one event time, or all late) is read past the budget until the
//! watermark moves.

use crate::runtime::FlowBudget as Budget;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One worker's in-flight accounting for a watermark node.
#[derive(Debug)]
pub struct FlowControl {
    budget: Budget,
    /// (capability, records, bytes) emitted at each capability not yet passed, oldest first.
    emitted: VecDeque<(u64, u64, u64)>,
    records: u64,
    bytes: u64,
    /// Since when reading has been held back, while it is.
    throttled_since: Option<Instant>,
}

impl FlowControl {
    /// Nothing in flight.
    pub fn new(budget: Budget) -> FlowControl {
        FlowControl {
            budget,
            emitted: VecDeque::new(),
            records: 0,
            bytes: 0,
            throttled_since: None,
        }
    }

    /// `records` records of `bytes` bytes were emitted at capability `time`.
    pub fn emitted(&mut self, time: u64, records: u64, bytes: u64) {
        if records == 0 {
            return;
        }
        self.records += records;
        self.bytes += bytes;
        match self.emitted.back_mut() {
            Some((t, r, b)) if *t == time => {
                *r += records;
                *b += bytes;
            }
            _ => self.emitted.push_back((time, records, bytes)),
        }
    }

    /// Forgets what the probe has passed: `frontier` is its least time, `None` once the
    /// dataflow has drained.
    pub fn settle(&mut self, frontier: Option<u64>) {
        while let Some(&(t, r, b)) = self.emitted.front() {
            if frontier.is_some_and(|f| t >= f) {
                break;
            }
            self.records -= r;
            self.bytes -= b;
            self.emitted.pop_front();
        }
    }

    /// Whether the source holding capability `capability` must not read now. Ends or begins a
    /// throttled stretch, whose length is returned when one ends.
    pub fn hold_back(&mut self, capability: u64, now: Instant) -> (bool, Option<Duration>) {
        let full = self.records >= self.budget.records || self.bytes >= self.budget.bytes;
        let below = self.emitted.back().is_none_or(|&(t, _, _)| t < capability);
        let hold = full && below;
        let ended = match (hold, self.throttled_since) {
            (true, None) => {
                self.throttled_since = Some(now);
                None
            }
            (false, Some(since)) => {
                self.throttled_since = None;
                Some(now.saturating_duration_since(since))
            }
            _ => None,
        };
        (hold, ended)
    }

    /// Records and bytes in flight.
    pub fn in_flight(&self) -> (u64, u64) {
        (self.records, self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(records: u64, bytes: u64) -> FlowControl {
        FlowControl::new(Budget { records, bytes })
    }

    #[test]
    fn reads_until_the_budget_then_waits_for_the_probe() {
        let t0 = Instant::now();
        let mut f = flow(100, 1 << 20);
        f.emitted(10, 60, 600);
        assert_eq!(f.hold_back(20, t0), (false, None));
        f.emitted(20, 50, 500);
        assert_eq!(f.in_flight(), (110, 1100));
        // Over budget, everything below the capability: hold back.
        assert!(f.hold_back(30, t0).0);
        // The probe passes 10 only: 50 records remain, under budget again.
        f.settle(Some(15));
        assert_eq!(f.in_flight(), (50, 500));
        let (hold, ended) = f.hold_back(30, t0 + Duration::from_millis(7));
        assert!(!hold);
        assert_eq!(ended, Some(Duration::from_millis(7)));
        f.settle(None);
        assert_eq!(f.in_flight(), (0, 0));
    }

    #[test]
    fn never_holds_back_with_data_at_its_own_capability() {
        let t0 = Instant::now();
        let mut f = flow(10, 1 << 20);
        f.emitted(5, 1_000, 1_000);
        // Everything was emitted at the capability still held: only reading on can move it.
        assert_eq!(f.hold_back(5, t0), (false, None));
        // Once the watermark has moved past it, the data can drain, and reading waits.
        assert!(f.hold_back(6, t0).0);
        // A frontier at 5 has not passed time 5.
        f.settle(Some(5));
        assert!(f.hold_back(6, t0).0);
        f.settle(Some(6));
        assert!(!f.hold_back(6, t0).0);
    }

    #[test]
    fn bytes_count_as_well_as_records() {
        let t0 = Instant::now();
        let mut f = flow(1_000_000, 1_000);
        f.emitted(1, 2, 1_000);
        assert!(f.hold_back(2, t0).0);
    }
}
