//! Offsets waiting for the sinks: an offset may be committed once the sinks' probe has passed
//! the time its record was emitted at, since only then is everything read before it durable
//! (or dropped as a duplicate).

use std::collections::{BTreeMap, VecDeque};

/// Offsets waiting for the sinks: per split, (commit point, next offset) in emission order.
#[derive(Default)]
pub struct Committer {
    pending: BTreeMap<u32, VecDeque<(u64, i64)>>,
    /// When offsets were last committed.
    pub last_commit_ms: u64,
}

impl Committer {
    /// Offsets up to `next_offset` of `split` were emitted at `time`.
    pub fn record(&mut self, split: u32, time: u64, next_offset: i64) {
        let q = self.pending.entry(split).or_default();
        match q.back_mut() {
            // Same commit point: only the newest offset matters.
            Some((t, o)) if *t == time => *o = next_offset,
            _ => q.push_back((time, next_offset)),
        }
    }

    /// Offsets whose commit point the probe has passed (`frontier` is its least time; `None`
    /// means the dataflow is drained).
    pub fn ready(&mut self, frontier: Option<u64>) -> Vec<(u32, i64)> {
        let mut out = Vec::new();
        for (&split, q) in &mut self.pending {
            let mut best = None;
            while let Some(&(t, o)) = q.front() {
                if frontier.is_some_and(|f| t >= f) {
                    break;
                }
                best = Some(o);
                q.pop_front();
            }
            if let Some(o) = best {
                out.push((split, o));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committer_waits_for_the_probe() {
        let mut c = Committer::default();
        c.record(1, 100, 10);
        c.record(1, 100, 12);
        c.record(1, 200, 20);
        c.record(2, 150, 7);
        assert_eq!(c.ready(Some(100)), vec![]);
        assert_eq!(c.ready(Some(160)), vec![(1, 12), (2, 7)]);
        assert_eq!(c.ready(Some(200)), vec![]);
        assert_eq!(c.ready(None), vec![(1, 20)]);
    }
}
