//! Per-token quotas: a token bucket in events/s and one in bytes/s, and a share of the events in
//! flight. A token over either gets 429 with `Retry-After`; other tokens are not slowed by it.
//!
//! The buckets hold one second of their rate and may run into debt: a request is admitted
//! whenever the balance is positive, and its whole cost is taken. A single request larger than a
//! second's worth is therefore never refused for ever, and the rate over time still holds, since
//! the debt must be earned back before the next request.

use std::time::{Duration, Instant};

/// One bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    balance: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket of `rate` per second.
    pub fn new(rate: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            balance: rate,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.balance = (self.balance + earned).min(self.rate);
        self.at = now;
    }

    /// How long until the balance is positive again; zero when it is now.
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.balance > 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((-self.balance + f64::EPSILON) / self.rate)
        }
    }

    /// Takes `cost`, which may leave a debt.
    pub fn take(&mut self, cost: f64) {
        self.balance -= cost;
    }
}

/// A token's buckets (each absent when it has no such limit).
#[derive(Debug, Clone)]
pub struct Quota {
    rates: (Option<f64>, Option<f64>),
    events: Option<Bucket>,
    bytes: Option<Bucket>,
}

impl Quota {
    /// Buckets for the given rates.
    pub fn new(events_per_second: Option<f64>, bytes_per_second: Option<f64>) -> Quota {
        let now = Instant::now();
        Quota {
            rates: (events_per_second, bytes_per_second),
            events: events_per_second.map(|r| Bucket::new(r, now)),
            bytes: bytes_per_second.map(|r| Bucket::new(r, now)),
        }
    }

    /// Whether these are the buckets of these rates.
    pub fn is_for(&self, events_per_second: Option<f64>, bytes_per_second: Option<f64>) -> bool {
        self.rates == (events_per_second, bytes_per_second)
    }

    /// Admits a request of `events` and `bytes`, or says how long to wait and which limit.
    pub fn admit(&mut self, events: usize, bytes: usize) -> Result<(), (Duration, &'static str)> {
        let now = Instant::now();
        let wait_events = self.events.as_mut().map_or(Duration::ZERO, |b| b.wait(now));
        let wait_bytes = self.bytes.as_mut().map_or(Duration::ZERO, |b| b.wait(now));
        if wait_events > Duration::ZERO || wait_bytes > Duration::ZERO {
            let why = if wait_events >= wait_bytes {
                "events_per_second"
            } else {
                "bytes_per_second"
            };
            return Err((wait_events.max(wait_bytes), why));
        }
        if let Some(b) = &mut self.events {
            b.take(events as f64);
        }
        if let Some(b) = &mut self.bytes {
            b.take(bytes as f64);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over a run of requests the admitted rate is the bucket's, within one request's cost.
    #[test]
    fn a_bucket_admits_its_rate_and_no_more() {
        let start = Instant::now();
        let mut b = Bucket::new(100.0, start);
        let mut admitted = 0.0;
        // Requests of 30 every 10 ms for 2 s: 3,000/s asked of a 100/s bucket.
        for i in 0..200 {
            let now = start + Duration::from_millis(10 * i);
            if b.wait(now).is_zero() {
                b.take(30.0);
                admitted += 30.0;
            }
        }
        // The first second's 100, then 100/s for the 1.99 s that follow, and one request's debt.
        assert!(admitted <= 100.0 + 199.0 + 30.0, "{admitted}");
        assert!(admitted >= 199.0, "{admitted}");
        // A request larger than the bucket still gets in when the balance is positive.
        let mut b = Bucket::new(10.0, start);
        assert!(b.wait(start).is_zero());
        b.take(50.0);
        let wait = b.wait(start);
        assert!(
            wait > Duration::from_secs(3) && wait < Duration::from_secs(5),
            "{wait:?}"
        );
    }
}
