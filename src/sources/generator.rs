//! Synthetic log events: deterministic for a seed, cheap enough that a benchmark measures the
//! engine and not the generator (a template is patched in place instead of formatted).

use super::{Polled, SourceError, SplitReader};
use crate::config::GeneratorSource;
use crate::event::sample::{generate_event, HEX};
use crate::event::{SplitSource, Splits};
use crate::runtime::{wall_ms, SplitMix};

/// [`generate_event`] precomputed for one region and size: each event copies the template and
/// patches the id, the time and the service in place.
struct Template {
    bytes: Vec<u8>,
    time_at: usize,
    time_len: usize,
    service_at: usize,
}

/// Where the id starts: right after `{"eventId":"`.
const ID_AT: usize = 12;

impl Template {
    fn new(region: &str, payload_bytes: usize, time_len: usize) -> Template {
        let mut bytes = Vec::new();
        let sample_time = 10u64.pow(time_len.saturating_sub(1) as u32);
        generate_event(&mut bytes, 0, sample_time, region, 0, payload_bytes);
        let time_at = ID_AT + 32 + b"\",\"timestamp\":".len();
        let service_at = time_at
            + time_len
            + b",\"region\":\"".len()
            + region.len()
            + b"\",\"service\":\"svc-".len();
        Template {
            bytes,
            time_at,
            time_len,
            service_at,
        }
    }

    fn write(&self, out: &mut Vec<u8>, id: u128, time: u64, service: u32) {
        out.clear();
        out.extend_from_slice(&self.bytes);
        // Two digits per byte of the id, most significant first.
        for (pair, byte) in out[ID_AT..ID_AT + 32]
            .chunks_exact_mut(2)
            .zip(id.to_be_bytes())
        {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xf)];
        }
        let mut n = time;
        for b in out[self.time_at..self.time_at + self.time_len]
            .iter_mut()
            .rev()
        {
            *b = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out[self.service_at] = b'0' + (service / 10 % 10) as u8;
        out[self.service_at + 1] = b'0' + (service % 10) as u8;
    }
}

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

struct Part {
    split: u32,
    rng: SplitMix,
    next: u64,
    count: Option<u64>,
    base: u64,
    /// The previous event, re-emitted as a duplicate.
    last: Vec<u8>,
    finished: bool,
}

/// Generates the partitions one worker owns.
pub(super) struct GeneratorReader {
    parts: Vec<Part>,
    region: String,
    duplicate_rate: f64,
    jitter: u64,
    payload_bytes: usize,
    buf: Vec<u8>,
    template: Option<Template>,
}

impl GeneratorReader {
    pub(super) fn new(g: &GeneratorSource, splits: &Splits, owned: &[u32]) -> GeneratorReader {
        let total_parts = u64::from(g.partitions.get());
        let now = wall_ms();
        let parts = owned
            .iter()
            .filter_map(|&split| {
                let SplitSource::Generator { index } = splits.get(split).source else {
                    return None;
                };
                let count = g
                    .count
                    .map(|c| c / total_parts + u64::from(u64::from(index) < c % total_parts));
                // Bounded: one event per ms ending a minute ago, so no time is in the future.
                let span = count.unwrap_or(0);
                let base = now.saturating_sub(span + g.jitter.0 + 60_000);
                Some(Part {
                    split,
                    rng: SplitMix(g.seed ^ (u64::from(index) << 32) ^ 0x5EED),
                    next: 0,
                    count,
                    base,
                    last: Vec::new(),
                    finished: false,
                })
            })
            .collect();
        GeneratorReader {
            parts,
            region: g.region.clone(),
            duplicate_rate: g.duplicate_rate,
            jitter: g.jitter.0,
            payload_bytes: g.payload_bytes as usize,
            buf: Vec::new(),
            template: None,
        }
    }
}

impl SplitReader for GeneratorReader {
    fn poll(
        &mut self,
        budget: usize,
        each: &mut dyn FnMut(Polled<'_>),
    ) -> Result<usize, SourceError> {
        let mut n = 0;
        let per_part = (budget / self.parts.len().max(1)).max(1);
        for p in &mut self.parts {
            let mut emitted = 0;
            while emitted < per_part && n < budget && !p.finished {
                if p.count.is_some_and(|c| p.next >= c) {
                    p.finished = true;
                    each(Polled::End { split: p.split });
                    each(Polled::Finished { split: p.split });
                    break;
                }
                let offset = p.next as i64;
                p.next += 1;
                if !p.last.is_empty() && p.rng.next_f64() < self.duplicate_rate {
                    each(Polled::Record {
                        split: p.split,
                        offset,
                        bytes: &p.last,
                    });
                } else {
                    let id = (u128::from(p.rng.next_u64()) << 64) | u128::from(p.rng.next_u64());
                    let jitter = p.rng.below(self.jitter);
                    let time = if p.count.is_some() {
                        (p.base + p.next).saturating_sub(jitter)
                    } else {
                        wall_ms().saturating_sub(jitter)
                    };
                    let service = (id % 20) as u32;
                    let width = digits(time);
                    if self.template.as_ref().is_none_or(|t| t.time_len != width) {
                        self.template =
                            Some(Template::new(&self.region, self.payload_bytes, width));
                    }
                    if let Some(t) = &self.template {
                        t.write(&mut self.buf, id, time, service);
                    }
                    each(Polled::Record {
                        split: p.split,
                        offset,
                        bytes: &self.buf,
                    });
                    std::mem::swap(&mut p.last, &mut self.buf);
                }
                emitted += 1;
                n += 1;
            }
        }
        Ok(n)
    }

    fn commit(&mut self, _offsets: &[(u32, i64)], _sync: bool) -> Result<(), SourceError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_writes_what_generate_event_writes() {
        let mut rng = SplitMix(5);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for region in ["region-a", "r"] {
            for size in [128, 300, 1000] {
                for time in [0, 7, 1_700_000_000_000, u64::MAX] {
                    let t = Template::new(region, size, digits(time));
                    let id = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
                    let service = (rng.below(100)) as u32;
                    generate_event(&mut a, id, time, region, service, size);
                    t.write(&mut b, id, time, service);
                    assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
                }
            }
        }
    }
}
