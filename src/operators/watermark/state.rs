//! The watermark rules as a plain state machine: fed what happens to each partition (a record
//! and its event time, its end, its broker's reachability, its replication link's state) with
//! the wall clock of each step, it says what is late and where the capability may stand. No
//! timely and no Kafka, so every rule is tested directly on sequences of steps.
//!
//! Per partition, the watermark is the largest event time seen minus `max_out_of_orderness`.
//! The worker's watermark is the minimum over its active partitions; a partition at its end
//! offset with no records for `idle_timeout` leaves the minimum, and when every partition is
//! idle the watermark follows the wall clock so the tail of a stream always flushes. The
//! capability only moves forward. An event below it on arrival is late.
//!
//! A partition whose replication link is down (its MM2 heartbeats are stale) is not idle while
//! the link is held (for up to `max_split_hold`), and neither is one whose broker cannot be
//! reached (for up to `unreachable_hold`). Back from either, it holds until its first record,
//! within the same hold: its backlog may come well after the heartbeats or the reconnect.

use std::num::NonZeroU64;

/// Settings of one watermark node, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct WatermarkPolicy {
    /// Bounded disorder.
    pub max_out_of_orderness: u64,
    /// Idleness.
    pub idle_timeout: u64,
    /// Largest accepted lead over the wall clock.
    pub max_future_skew: u64,
    /// How long a down replication link may hold the watermark (0: not at all).
    pub max_split_hold: u64,
    /// How long an unreachable partition may hold the watermark (0: not at all).
    pub unreachable_hold: u64,
}

/// A replication link's state at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkView {
    /// The newest heartbeat is older than the link timeout.
    pub down: bool,
    /// Down, and still within `max_split_hold`: its partitions hold the watermark.
    pub held: bool,
    /// Milliseconds since the newest heartbeat (or since start, before the first one).
    pub staleness: u64,
}

impl LinkView {
    /// The link's state given its newest heartbeat time, when watching began, and the settings.
    pub fn at(newest: Option<u64>, started: u64, now: u64, timeout: u64, hold: u64) -> LinkView {
        let staleness = now.saturating_sub(newest.unwrap_or(started));
        let down = staleness > timeout;
        LinkView {
            down,
            held: down && staleness <= hold,
            staleness,
        }
    }
}

/// What to do with a valid event that has just been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// At or above the capability: on time.
    OnTime,
    /// Below the capability, which is `watermark`: late.
    Late {
        /// The capability it missed.
        watermark: NonZeroU64,
    },
    /// Further ahead of the wall clock than `max_future_skew`: invalid, and it moves nothing.
    Future {
        /// How far ahead.
        ahead_ms: u64,
    },
}

/// Where the capability stands after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Held at this time.
    Hold(u64),
    /// Every partition has finished (or there are none): the capability is released.
    Released,
}

#[derive(Debug, Clone)]
struct Partition {
    max_time: Option<u64>,
    /// Wall time of the last record, or of the start.
    last_record_ms: u64,
    at_end: bool,
    finished: bool,
    /// The replication link this partition's events cross, if it is an MM2 remote topic.
    link: Option<usize>,
    /// Wall time since which its leader has been unreachable, if it is.
    unreachable_since: Option<u64>,
    /// Cut off (a split, or an unreachable leader), back again, and silent since: it holds the
    /// watermark until its first record or this wall time, the end of the hold it was under.
    awaiting_until: Option<u64>,
}

impl Partition {
    fn new(link: Option<usize>, now: u64) -> Partition {
        Partition {
            max_time: None,
            last_record_ms: now,
            at_end: false,
            finished: false,
            link,
            unreachable_since: None,
            awaiting_until: None,
        }
    }

    /// The partition was cut off from what feeds it and is back; `hold_ends` is when the hold
    /// it was under runs out. Being back says nothing of its backlog: MM2 copies heartbeats and
    /// data partitions separately, and producers that queued while a broker was down deliver
    /// after their own reconnect backoff, often seconds later. So it holds the watermark until
    /// it delivers again, up to the end of its hold, and after its last record it must then be
    /// quiet for a whole `idle_timeout`, as always.
    fn back(&mut self, now: u64, hold_ends: u64) {
        self.last_record_ms = now;
        self.awaiting_until = (hold_ends > now).then_some(hold_ends);
    }

    fn held(&self, links: &[LinkView], policy: &WatermarkPolicy, now: u64) -> bool {
        self.link.is_some_and(|l| links[l].held)
            || self
                .unreachable_since
                .is_some_and(|t| now.saturating_sub(t) < policy.unreachable_hold)
            || self.awaiting_until.is_some_and(|t| now < t)
    }
}

/// The watermark of the partitions one worker reads, by their position in the list it was
/// made with.
#[derive(Debug, Clone)]
pub struct WatermarkState {
    policy: WatermarkPolicy,
    parts: Vec<Partition>,
    capability: Capability,
}

impl WatermarkState {
    /// Partitions given by the replication link each one crosses (`None` for a local topic),
    /// all starting at `now`, with the capability at zero: nothing is known of their events.
    /// With no partitions the capability is released at once.
    pub fn new(policy: WatermarkPolicy, links: &[Option<usize>], now: u64) -> WatermarkState {
        WatermarkState {
            policy,
            parts: links.iter().map(|&l| Partition::new(l, now)).collect(),
            capability: if links.is_empty() {
                Capability::Released
            } else {
                Capability::Hold(0)
            },
        }
    }

    /// Starts the capability at `floor` rather than zero: a restarted pipeline's watermark
    /// never goes back below what it already wrote, so an event below it is late.
    pub fn with_floor(mut self, floor: u64) -> WatermarkState {
        if let Capability::Hold(cap) = self.capability {
            self.capability = Capability::Hold(cap.max(floor));
        }
        self
    }

    /// The settings.
    pub fn policy(&self) -> &WatermarkPolicy {
        &self.policy
    }

    /// Where the capability stands.
    pub fn capability(&self) -> Capability {
        self.capability
    }

    /// A record of partition `p` was read at `now`, valid or not: the partition is active and
    /// no longer at its end, and a partition back from a cut-off has delivered.
    #[inline]
    pub fn record(&mut self, p: usize, now: u64) {
        let part = &mut self.parts[p];
        part.at_end = false;
        part.last_record_ms = now;
        part.awaiting_until = None;
    }

    /// A valid event of partition `p` with event time `time`, read at `now` (after
    /// [`Self::record`]): on time, late, or too far in the future to count.
    #[inline]
    pub fn event(&mut self, p: usize, time: u64, now: u64) -> Verdict {
        if time > now.saturating_add(self.policy.max_future_skew) {
            return Verdict::Future {
                ahead_ms: time - now,
            };
        }
        let part = &mut self.parts[p];
        part.max_time = Some(part.max_time.map_or(time, |m| m.max(time)));
        match self.capability {
            // Below the capability means the capability is above zero.
            Capability::Hold(cap) if time < cap => Verdict::Late {
                watermark: NonZeroU64::new(cap).expect("above an event time"),
            },
            _ => Verdict::OnTime,
        }
    }

    /// Partition `p` is caught up with what exists now.
    pub fn end(&mut self, p: usize) {
        self.parts[p].at_end = true;
    }

    /// Partition `p` will deliver nothing more in this run.
    pub fn finished(&mut self, p: usize) {
        self.parts[p].finished = true;
    }

    /// Whether partition `p`'s broker can be reached changed at `now`.
    pub fn reachable(&mut self, p: usize, reachable: bool, now: u64) {
        let hold = self.policy.unreachable_hold;
        let part = &mut self.parts[p];
        if !reachable {
            part.unreachable_since.get_or_insert(now);
        } else if let Some(since) = part.unreachable_since.take() {
            part.back(now, since.saturating_add(hold));
        }
    }

    /// Replication link `link` is up again at `now` after a split that began at `split_began`
    /// (its newest heartbeat then).
    pub fn link_returned(&mut self, link: usize, split_began: u64, now: u64) {
        let hold_ends = split_began.saturating_add(self.policy.max_split_hold);
        for p in self.parts.iter_mut().filter(|p| p.link == Some(link)) {
            p.back(now, hold_ends);
        }
    }

    /// Moves the capability as far as the partitions allow at `now`, given the state of each
    /// replication link, and returns it. It never moves back.
    pub fn advance(&mut self, links: &[LinkView], now: u64) -> Capability {
        if let Capability::Hold(cap) = self.capability {
            self.capability = match self.watermark(links, now) {
                None => Capability::Released,
                Some(wm) => Capability::Hold(wm.max(cap)),
            };
        }
        self.capability
    }

    /// The watermark the partitions allow, or `None` when every partition has finished.
    fn watermark(&self, links: &[LinkView], now: u64) -> Option<u64> {
        let policy = &self.policy;
        let mut live = false;
        let mut min: Option<u64> = None;
        for p in self.parts.iter().filter(|p| !p.finished) {
            live = true;
            let idle = !p.held(links, policy, now)
                && p.at_end
                && now.saturating_sub(p.last_record_ms) >= policy.idle_timeout;
            if idle {
                continue;
            }
            // A partition that has shown no event yet holds the watermark at zero: we cannot
            // know how old its first event will be.
            let wm = p
                .max_time
                .map_or(0, |m| m.saturating_sub(policy.max_out_of_orderness));
            min = Some(min.map_or(wm, |x: u64| x.min(wm)));
        }
        if !live {
            return None;
        }
        Some(min.unwrap_or_else(|| {
            now.saturating_sub(policy.max_out_of_orderness + policy.idle_timeout)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: WatermarkPolicy = WatermarkPolicy {
        max_out_of_orderness: 2_000,
        idle_timeout: 5_000,
        max_future_skew: 600_000,
        max_split_hold: 0,
        unreachable_hold: 30_000,
    };

    /// Partitions without links, all started at `now`.
    fn local(n: usize, now: u64) -> WatermarkState {
        WatermarkState::new(POLICY, &vec![None; n], now)
    }

    /// A record of `p` at `now` with event time `time`.
    fn read(s: &mut WatermarkState, p: usize, time: u64, now: u64) -> Verdict {
        s.record(p, now);
        s.event(p, time, now)
    }

    /// One step of a sequence.
    #[derive(Clone, Copy)]
    enum Step {
        /// A record of a partition, with its event time, at a wall time.
        Read(usize, u64, u64),
        /// A partition is caught up.
        End(usize),
        /// A partition will deliver nothing more.
        Finished(usize),
        /// A partition's broker can or cannot be reached, from a wall time on.
        Reachable(usize, bool, u64),
    }

    /// Plays `steps` on `n` local partitions started at 0.
    fn play(n: usize, steps: &[Step]) -> WatermarkState {
        let mut s = local(n, 0);
        for step in steps {
            match *step {
                Step::Read(p, time, now) => {
                    read(&mut s, p, time, now);
                }
                Step::End(p) => s.end(p),
                Step::Finished(p) => s.finished(p),
                Step::Reachable(p, reachable, now) => s.reachable(p, reachable, now),
            }
        }
        s
    }

    fn hold(s: &mut WatermarkState, links: &[LinkView], now: u64) -> u64 {
        match s.advance(links, now) {
            Capability::Hold(t) => t,
            Capability::Released => panic!("released at {now}"),
        }
    }

    fn up(now: u64) -> LinkView {
        LinkView::at(Some(now - 500), 0, now, 3_000, 60_000)
    }

    #[test]
    fn minimum_over_active_partitions() {
        let mut s = play(2, &[Step::Read(0, 10_000, 500), Step::Read(1, 50_000, 600)]);
        assert_eq!(hold(&mut s, &[], 1_000), 8_000);
    }

    #[test]
    fn an_empty_partition_holds_at_zero_until_idle() {
        let mut s = play(2, &[Step::Read(1, 50_000, 100)]);
        assert_eq!(hold(&mut s, &[], 1_000), 0);
        // Not at its end: a slow first fetch, not silence; it still holds.
        assert_eq!(hold(&mut s, &[], 60_000), 0);
        s.end(0);
        assert_eq!(hold(&mut s, &[], 60_000), 48_000);
    }

    #[test]
    fn an_idle_partition_leaves_the_minimum_only_at_its_end() {
        use Step::*;
        // Quiet for 9 s but not at its end (a slow fetch): still holds.
        let quiet = [Read(0, 10_000, 0), Read(1, 50_000, 9_000)];
        assert_eq!(hold(&mut play(2, &quiet), &[], 9_000), 8_000);
        // At its end and quiet for longer than idle_timeout: left out.
        let idle = [quiet[0], quiet[1], End(0)];
        assert_eq!(hold(&mut play(2, &idle), &[], 9_000), 48_000);
        // At its end but quiet for 4.999 s: not idle yet.
        let almost = [Read(0, 10_000, 0), Read(1, 50_000, 4_999), End(0)];
        assert_eq!(hold(&mut play(2, &almost), &[], 4_999), 8_000);
    }

    #[test]
    fn all_idle_follows_the_wall_clock() {
        let mut s = play(1, &[Step::Read(0, 10_000, 0), Step::End(0)]);
        assert_eq!(hold(&mut s, &[], 100_000), 93_000);
        assert_eq!(hold(&mut s, &[], 101_000), 94_000);
    }

    /// An event that arrives behind the capability is late, tagged with the capability; the
    /// capability never moves back, even when the minimum does.
    #[test]
    fn a_restored_floor_makes_older_events_late_and_is_never_undercut() {
        let mut s = local(1, 0).with_floor(50_000);
        assert_eq!(s.capability(), Capability::Hold(50_000));
        assert_eq!(
            read(&mut s, 0, 49_999, 1),
            Verdict::Late {
                watermark: NonZeroU64::new(50_000).unwrap()
            }
        );
        assert_eq!(read(&mut s, 0, 50_000, 1), Verdict::OnTime);
        // The partition alone would allow 48 s; the floor stands.
        assert_eq!(s.advance(&[], 2), Capability::Hold(50_000));
        assert_eq!(read(&mut s, 0, 60_000, 3), Verdict::OnTime);
        assert_eq!(s.advance(&[], 4), Capability::Hold(58_000));
        // A worker with nothing to read stays released whatever the floor.
        let none = WatermarkState::new(POLICY, &[], 0).with_floor(50_000);
        assert_eq!(none.capability(), Capability::Released);
    }

    #[test]
    fn late_means_below_the_capability_and_the_capability_never_moves_back() {
        let mut s = play(2, &[Step::Read(0, 30_000, 0), Step::Read(1, 40_000, 0)]);
        assert_eq!(hold(&mut s, &[], 100), 28_000);
        assert_eq!(read(&mut s, 0, 28_000, 200), Verdict::OnTime);
        assert_eq!(
            read(&mut s, 1, 27_999, 200),
            Verdict::Late {
                watermark: NonZeroU64::new(28_000).unwrap()
            }
        );
        // A late event does not pull the watermark back.
        assert_eq!(hold(&mut s, &[], 300), 28_000);
        // Partition 0 goes idle and comes back with an old event: the minimum would be lower,
        // the capability is not.
        s.end(0);
        assert_eq!(hold(&mut s, &[], 6_000), 38_000);
        assert!(matches!(
            read(&mut s, 0, 31_000, 6_100),
            Verdict::Late { .. }
        ));
        assert_eq!(hold(&mut s, &[], 6_200), 38_000);
    }

    /// Before any watermark, nothing is late, however old.
    #[test]
    fn nothing_is_late_at_capability_zero() {
        let mut s = local(1, 0);
        assert_eq!(read(&mut s, 0, 0, 10), Verdict::OnTime);
        assert_eq!(read(&mut s, 0, 1, 10), Verdict::OnTime);
    }

    /// One far-future timestamp moves nothing: it is invalid, and later events are on time.
    #[test]
    fn a_future_event_moves_nothing() {
        let mut s = play(1, &[Step::Read(0, 100_000, 100_000)]);
        assert_eq!(
            read(&mut s, 0, 100_000 + 600_001, 100_000),
            Verdict::Future { ahead_ms: 600_001 }
        );
        assert_eq!(hold(&mut s, &[], 100_000), 98_000);
        assert_eq!(read(&mut s, 0, 99_000, 100_001), Verdict::OnTime);
        // Exactly the allowed skew is accepted.
        assert_eq!(read(&mut s, 0, 700_001, 100_001), Verdict::OnTime);
    }

    #[test]
    fn finished_partitions_release_the_capability() {
        use Step::*;
        let mut s = play(2, &[Read(0, 10_000, 0), Read(1, 20_000, 900), Finished(0)]);
        assert_eq!(hold(&mut s, &[], 1_000), 18_000);
        s.finished(1);
        assert_eq!(s.advance(&[], 1_000), Capability::Released);
        // Released for good.
        assert_eq!(s.advance(&[], 2_000), Capability::Released);
        assert_eq!(local(0, 0).capability(), Capability::Released);
    }

    /// A caught-up, quiet partition whose broker is down holds the watermark for up to the
    /// hold; after that it is idle again, and the wall clock moves the watermark on.
    #[test]
    fn an_unreachable_partition_is_not_idle_until_the_hold_passes() {
        use Step::*;
        let mut s = play(
            2,
            &[
                Read(1, 40_000, 10_000),
                End(1),
                Reachable(1, false, 12_000),
                // A second report of the same cut-off does not restart it.
                Reachable(1, false, 20_000),
                Read(0, 100_000, 40_000),
            ],
        );
        // Quiet for 30 s and at its end, but cut off for only 28 s: it holds.
        assert_eq!(hold(&mut s, &[], 40_000), 38_000);
        // Cut off for 30 s: idle; the other partition leads.
        assert_eq!(hold(&mut s, &[], 42_000), 98_000);
    }

    /// Back from an unreachable broker, a partition holds until its first record, up to the
    /// end of `unreachable_hold` counted from when it was cut off.
    #[test]
    fn a_reachable_again_partition_holds_until_it_delivers() {
        use Step::*;
        let cut_off_and_back = [
            Read(1, 40_000, 10_000),
            End(1),
            Reachable(1, false, 12_000),
            Reachable(1, true, 20_000),
            Read(0, 100_000, 20_000),
        ];
        let mut s = play(2, &cut_off_and_back);
        for now in [20_000, 25_000, 41_999] {
            assert_eq!(hold(&mut s, &[], now), 38_000, "at {now}");
        }
        assert_eq!(hold(&mut s, &[], 42_000), 98_000);

        // Delivering ends the wait; then only the idle timeout keeps it.
        let mut delivered = cut_off_and_back.to_vec();
        delivered.extend([Read(1, 41_000, 21_000), End(1)]);
        let mut s = play(2, &delivered);
        assert_eq!(hold(&mut s, &[], 25_999), 39_000);
        assert_eq!(hold(&mut s, &[], 26_000), 98_000);
    }

    #[test]
    fn link_is_down_after_its_timeout_and_held_within_the_hold() {
        // Heartbeat 1 s old: up.
        let v = LinkView::at(Some(99_000), 0, 100_000, 3_000, 60_000);
        assert_eq!((v.down, v.held, v.staleness), (false, false, 1_000));
        // 10 s old: down, and held by a 60 s hold.
        let v = LinkView::at(Some(90_000), 0, 100_000, 3_000, 60_000);
        assert_eq!((v.down, v.held), (true, true));
        // No hold configured: down but never held.
        let v = LinkView::at(Some(90_000), 0, 100_000, 3_000, 0);
        assert_eq!((v.down, v.held), (true, false));
        // The hold has run out.
        let v = LinkView::at(Some(30_000), 0, 100_000, 3_000, 60_000);
        assert_eq!((v.down, v.held), (true, false));
        // Never a heartbeat: down since the watch started.
        let v = LinkView::at(None, 95_000, 100_000, 3_000, 60_000);
        assert_eq!((v.down, v.held, v.staleness), (true, true, 5_000));
    }

    #[test]
    fn a_held_link_keeps_its_quiet_partitions_in_the_minimum() {
        let policy = WatermarkPolicy {
            max_split_hold: 60_000,
            ..POLICY
        };
        let up = LinkView::at(Some(8_500), 0, 9_000, 3_000, 60_000);
        let held = LinkView::at(Some(1_000), 0, 9_000, 3_000, 60_000);
        let expired = LinkView::at(Some(1_000), 0, 9_000, 3_000, 5_000);
        let start = || {
            let mut s = WatermarkState::new(policy, &[Some(0), None], 0);
            read(&mut s, 0, 20_000, 0);
            s.end(0);
            read(&mut s, 1, 50_000, 9_000);
            s
        };
        // Link up: the caught-up remote partition is idle and the local one leads.
        assert_eq!(hold(&mut start(), &[up], 9_000), 48_000);
        // Split within the hold: the remote partition holds the watermark at its own.
        assert_eq!(hold(&mut start(), &[held], 9_000), 18_000);
        // Hold over: it is idle again and the watermark moves on.
        assert_eq!(hold(&mut start(), &[expired], 9_000), 48_000);
    }

    /// After a split, the link's partitions hold the watermark until they deliver again (the
    /// heartbeats may arrive before the backlog), for up to the rest of the hold; after their
    /// first record the usual idle timeout applies.
    #[test]
    fn a_returned_link_holds_until_its_partitions_deliver() {
        let policy = WatermarkPolicy {
            max_split_hold: 60_000,
            ..POLICY
        };
        let start = || {
            let mut s = WatermarkState::new(policy, &[Some(0), Some(1), None], 0);
            read(&mut s, 0, 20_000, 1_000);
            read(&mut s, 1, 20_000, 1_000);
            s.end(0);
            s.end(1);
            read(&mut s, 2, 200_000, 89_000);
            s
        };
        let links = |now| [up(now), up(now)];
        // Without the rule, the long-quiet remote partitions are idle the moment the link is up.
        assert_eq!(hold(&mut start(), &links(90_000), 90_000), 198_000);
        // The split began at 80 s and link 0 is back at 90 s: the hold runs to 140 s.
        let mut s = start();
        s.link_returned(0, 80_000, 90_000);
        for now in [90_000, 95_000, 139_999] {
            // Link 0's partition holds, silent and at its end; link 1's did not return.
            let mut probe = s.clone();
            assert_eq!(hold(&mut probe, &links(now), now), 18_000, "at {now}");
        }
        assert_eq!(hold(&mut s, &links(140_000), 140_000), 198_000);

        // Its backlog arrives at 100 s: from then on only the idle timeout keeps it.
        let mut s = start();
        s.link_returned(0, 80_000, 90_000);
        read(&mut s, 0, 30_000, 100_000);
        s.end(0);
        assert_eq!(hold(&mut s, &links(104_999), 104_999), 28_000);
        assert_eq!(hold(&mut s, &links(105_000), 105_000), 198_000);

        // A hold that has already run out when the link returns waits only the idle timeout.
        let mut s = start();
        s.link_returned(0, 10_000, 90_000);
        assert_eq!(hold(&mut s, &links(95_000), 95_000), 198_000);
    }

    /// Random sequences of steps against the rules stated independently of the implementation:
    /// the capability never moves back, an event is late exactly when it is below the
    /// capability it arrived at, and the capability never passes a partition that must hold
    /// it (one with no time yet, or not at its end, and not finished).
    #[test]
    fn random_sequences_keep_the_invariants() {
        let mut rng = crate::runtime::SplitMix(17);
        for _ in 0..300 {
            let n = 1 + rng.below(4) as usize;
            let mut s = local(n, 0);
            let mut now = 0u64;
            let mut last = 0u64;
            // Per partition: the largest accepted time, and whether it must hold the minimum.
            let mut max = vec![None::<u64>; n];
            let mut caught_up = vec![false; n];
            let mut done = vec![false; n];
            for _ in 0..200 {
                now += rng.below(3_000);
                let p = rng.below(n as u64) as usize;
                match rng.below(10) {
                    0 => {
                        s.end(p);
                        caught_up[p] = true;
                    }
                    1 if rng.below(20) == 0 => {
                        s.finished(p);
                        done[p] = true;
                    }
                    _ => {
                        let time = now.saturating_sub(rng.below(20_000)) + rng.below(3_000);
                        let cap = match s.capability() {
                            Capability::Hold(t) => t,
                            Capability::Released => break,
                        };
                        s.record(p, now);
                        caught_up[p] = false;
                        match s.event(p, time, now) {
                            Verdict::OnTime => assert!(time >= cap),
                            Verdict::Late { watermark } => {
                                assert!(time < cap);
                                assert_eq!(watermark.get(), cap);
                            }
                            Verdict::Future { .. } => unreachable!("times stay near the clock"),
                        }
                        max[p] = Some(max[p].map_or(time, |m| m.max(time)));
                    }
                }
                match s.advance(&[], now) {
                    Capability::Hold(t) => {
                        assert!(t >= last, "moved back from {last} to {t}");
                        for q in 0..n {
                            if !done[q] && !caught_up[q] {
                                let own = max[q].map_or(0, |m| m.saturating_sub(2_000));
                                // It may stand higher only where it already stood before.
                                assert!(t <= own.max(last), "passed partition {q}");
                            }
                        }
                        last = t;
                    }
                    Capability::Released => assert!(done.iter().all(|d| *d)),
                }
            }
        }
    }
}
