//! Which region an event goes to: the requested region, or the producer's sticky region, or the
//! gateway's local one; the other region while that one is unhealthy; and back once it has been
//! healthy for `return_after`. Pure logic over a clock the caller passes in, so it is tested
//! with fake health and fake time.

use std::collections::HashMap;

/// Where one event should be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The region to write to.
    pub target: usize,
    /// The region the event would have gone to, when `target` is a fallback.
    pub fallback_from: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct RegionHealth {
    healthy: bool,
    /// When `healthy` last changed (ms).
    since: u64,
}

#[derive(Debug, Clone, Copy)]
struct Sticky {
    home: usize,
    current: usize,
}

/// A change of a sticky producer's region, for the `REGION_FALLBACK` log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The producer.
    pub producer: String,
    /// From this region.
    pub from: usize,
    /// To this one.
    pub to: usize,
    /// True when it goes back to its own region.
    pub returned: bool,
}

/// Routing state of one gateway: region health and where each known producer writes.
#[derive(Debug)]
pub struct Router {
    local: usize,
    return_after: u64,
    health: Vec<RegionHealth>,
    sticky: HashMap<String, Sticky>,
    moves: Vec<Moved>,
}

/// Producers remembered at most; beyond this the oldest assignments are forgotten (a forgotten
/// producer is assigned afresh, which is what a new producer gets anyway).
const MAX_PRODUCERS: usize = 100_000;

impl Router {
    /// `regions` regions, all healthy until a probe or a send says otherwise.
    pub fn new(regions: usize, local: usize, return_after_ms: u64, now: u64) -> Router {
        assert!(
            regions == 2 && local < regions,
            "two regions, local among them"
        );
        Router {
            local,
            return_after: return_after_ms,
            health: vec![
                RegionHealth {
                    healthy: true,
                    since: now,
                };
                regions
            ],
            sticky: HashMap::new(),
            moves: Vec::new(),
        }
    }

    /// The other region.
    pub fn other(&self, region: usize) -> usize {
        1 - region
    }

    /// Whether `region` is currently healthy.
    pub fn healthy(&self, region: usize) -> bool {
        self.health[region].healthy
    }

    /// Records a probe result or a send outcome. Returns true when the state changed.
    pub fn set_health(&mut self, region: usize, healthy: bool, now: u64) -> bool {
        let h = &mut self.health[region];
        if h.healthy == healthy {
            return false;
        }
        *h = RegionHealth {
            healthy,
            since: now,
        };
        true
    }

    /// Healthy for at least `return_after`.
    fn settled(&self, region: usize, now: u64) -> bool {
        let h = self.health[region];
        h.healthy && now.saturating_sub(h.since) >= self.return_after
    }

    /// Routes one event. `requested` is the `X-Region` header's region; `producer` is the
    /// `X-Producer-Id` header or the event's `service`. `None` when no region is healthy.
    pub fn route(
        &mut self,
        producer: Option<&str>,
        requested: Option<usize>,
        now: u64,
    ) -> Option<Route> {
        let Some(p) = producer else {
            let home = requested.unwrap_or(self.local);
            return self.pick(home, home);
        };
        if !self.sticky.contains_key(p) && self.sticky.len() >= MAX_PRODUCERS {
            self.sticky.clear();
        }
        let known = self.sticky.get(p).copied();
        // An explicit region re-homes the producer; otherwise it keeps the region it was first
        // given.
        let home = requested.or(known.map(|s| s.home)).unwrap_or(self.local);
        let mut current = match known {
            Some(s) if s.home == home => s.current,
            _ => home,
        };
        if current != home && self.settled(home, now) {
            current = home;
        }
        let route = self.pick(home, current)?;
        if let Some(before) = known.map(|s| s.current) {
            if before != route.target {
                self.moves.push(Moved {
                    producer: p.to_string(),
                    from: before,
                    to: route.target,
                    returned: route.target == home,
                });
            }
        }
        self.sticky.insert(
            p.to_string(),
            Sticky {
                home,
                current: route.target,
            },
        );
        Some(route)
    }

    /// `current` if healthy, else the other region if that is; `home` decides whether it is a
    /// fallback.
    fn pick(&self, home: usize, current: usize) -> Option<Route> {
        let target = if self.healthy(current) {
            current
        } else if self.healthy(self.other(current)) {
            self.other(current)
        } else {
            return None;
        };
        Some(Route {
            target,
            fallback_from: (target != home).then_some(home),
        })
    }

    /// Sticky producers that changed region since the last call.
    pub fn take_moves(&mut self) -> Vec<Moved> {
        std::mem::take(&mut self.moves)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: usize = 0;
    const B: usize = 1;

    fn route(
        r: &mut Router,
        p: Option<&str>,
        req: Option<usize>,
        now: u64,
    ) -> (usize, Option<usize>) {
        let x = r.route(p, req, now).expect("a healthy region");
        (x.target, x.fallback_from)
    }

    #[test]
    fn header_then_local_region() {
        let mut r = Router::new(2, A, 10_000, 0);
        assert_eq!(route(&mut r, None, None, 0), (A, None));
        assert_eq!(route(&mut r, None, Some(B), 0), (B, None));
    }

    #[test]
    fn a_producer_stays_on_its_first_region() {
        let mut r = Router::new(2, A, 10_000, 0);
        assert_eq!(route(&mut r, Some("p"), Some(B), 0), (B, None));
        // No header now: still region-b, not the local region.
        assert_eq!(route(&mut r, Some("p"), None, 1), (B, None));
        assert_eq!(route(&mut r, Some("q"), None, 1), (A, None));
    }

    #[test]
    fn falls_back_while_unhealthy_and_returns_after_settling() {
        let mut r = Router::new(2, A, 10_000, 0);
        assert_eq!(route(&mut r, Some("p"), Some(B), 0), (B, None));
        r.set_health(B, false, 100);
        assert_eq!(route(&mut r, Some("p"), None, 200), (A, Some(B)));
        // Healthy again, but not for long enough: stays on the fallback.
        r.set_health(B, true, 1_000);
        assert_eq!(route(&mut r, Some("p"), None, 5_000), (A, Some(B)));
        // Settled: back home.
        assert_eq!(route(&mut r, Some("p"), None, 11_000), (B, None));
        let moves = r.take_moves();
        assert_eq!(
            moves,
            vec![
                Moved {
                    producer: "p".into(),
                    from: B,
                    to: A,
                    returned: false
                },
                Moved {
                    producer: "p".into(),
                    from: A,
                    to: B,
                    returned: true
                },
            ]
        );
        assert!(r.take_moves().is_empty());
    }

    #[test]
    fn a_producer_without_identity_goes_home_as_soon_as_it_is_healthy() {
        let mut r = Router::new(2, A, 10_000, 0);
        r.set_health(A, false, 0);
        assert_eq!(route(&mut r, None, None, 1), (B, Some(A)));
        r.set_health(A, true, 2);
        assert_eq!(route(&mut r, None, None, 3), (A, None));
    }

    #[test]
    fn fallback_region_failing_too_means_no_route() {
        let mut r = Router::new(2, A, 10_000, 0);
        r.set_health(A, false, 0);
        r.set_health(B, false, 0);
        assert_eq!(r.route(Some("p"), None, 1), None);
        // The producer was never assigned, so a recovery of B takes it to B as a fallback.
        r.set_health(B, true, 2);
        assert_eq!(route(&mut r, Some("p"), None, 3), (B, Some(A)));
    }

    #[test]
    fn home_failing_while_on_fallback_keeps_the_fallback() {
        let mut r = Router::new(2, A, 1_000, 0);
        r.set_health(A, false, 0);
        assert_eq!(route(&mut r, Some("p"), None, 1), (B, Some(A)));
        // The fallback fails and home is back but not settled: home is the only healthy one.
        r.set_health(A, true, 10);
        r.set_health(B, false, 11);
        assert_eq!(route(&mut r, Some("p"), None, 12), (A, None));
    }
}
