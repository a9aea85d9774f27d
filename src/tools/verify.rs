//! Checks the guarantees on what a run wrote: nothing lost, nothing duplicated, every ordered
//! partition in event-time order, every late event really behind its watermark, every payload
//! unchanged, every invalid record accounted for with a reason.
//!
//! Output records are read with serde_json, never with the pipeline's own decoder: a check must
//! not share what it checks. Only the id is taken from a record; its time is what the sender
//! recorded, and its bytes must equal what was sent.

use crate::event::EventFormat;
use crate::tools::topic::read_topic;
use anyhow::Context;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

/// Which output a record was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The ordered topic, with its partition.
    Ordered(i32),
    /// The late dead-letter topic.
    Late,
    /// The invalid dead-letter topic.
    Invalid,
}

/// One record read back from an output.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Where it was read.
    pub output: Output,
    /// The payload.
    pub payload: Vec<u8>,
    /// Its `tidemark-*` headers.
    pub headers: BTreeMap<String, String>,
}

/// What was sent: every valid id once, with its time and payload, and the invalid count.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// id -> (event time, payload).
    pub events: HashMap<String, (u64, Vec<u8>)>,
    /// Records sent that should be invalid.
    pub invalid: u64,
    /// Records sent in total (valid copies, duplicates, invalid).
    pub sent: u64,
    /// Ids sent but never acknowledged (times and payloads too): they may or may not be in the
    /// output, but at most once.
    pub unacknowledged: HashMap<String, (u64, Vec<u8>)>,
    /// The invalid records sent are pairwise distinct, so they are counted by distinct payload:
    /// a replication retry may deliver one twice, and that is no loss and no event duplicate.
    pub invalid_distinct: bool,
}

/// The verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Records sent.
    pub sent: u64,
    /// Unique valid ids sent.
    pub unique: u64,
    /// Records on the ordered topic.
    pub ordered: u64,
    /// Records on the late topic.
    pub late: u64,
    /// Records on the invalid topic.
    pub invalid: u64,
    /// Distinct payloads on the invalid topic (a replication retry may deliver one twice).
    pub invalid_distinct: u64,
    /// Compare `invalid_distinct` rather than `invalid` with what was sent.
    pub count_distinct_invalid: bool,
    /// Invalid records that were sent.
    pub invalid_expected: u64,
    /// Unique ids found on neither the ordered nor the late topic.
    pub lost: u64,
    /// Extra copies of ids on the ordered and late topics together.
    pub duplicated: u64,
    /// Ordered records whose time is below the previous record of their partition.
    pub order_violations: u64,
    /// Late records whose watermark/lateness headers are missing or not behind the watermark.
    pub late_violations: u64,
    /// Output ids that were never sent, or whose payload changed.
    pub foreign: u64,
    /// Ids whose send was never acknowledged but that were written anyway (allowed).
    pub unacknowledged_written: u64,
    /// Sent events too large for the outputs, found as their `too_large_for_output` dead
    /// letters (named by `tidemark-event-id`, their bytes or, truncated, a prefix of them and
    /// their original size): accounted for, not lost.
    pub too_large_for_output: u64,
    /// Invalid records without a reason header.
    pub reasonless: u64,
    /// Late records marked `tidemark-beyond-horizon`: dedup could not check them.
    pub beyond_horizon: u64,
    /// Extra copies that are marked beyond the horizon: flagged, not silent, but still copies.
    /// They fail the check unless `allow_beyond_horizon` is set.
    pub duplicated_beyond_horizon: u64,
    /// Accept extra copies marked beyond the horizon (a run that outlasts the horizon on
    /// purpose); every unmarked extra copy still fails.
    pub allow_beyond_horizon: bool,
}

impl Report {
    /// Everything sent has arrived: no valid id is missing, and the invalid topic holds as many
    /// records as were sent invalid. Invalid records sent last cross replication and the
    /// pipeline's last checkpoint after the last valid events, so the wait covers both.
    pub fn complete(&self) -> bool {
        self.lost == 0 && self.invalid_found() >= self.invalid_expected
    }

    /// Invalid records found, counted the way they are compared with what was sent.
    fn invalid_found(&self) -> u64 {
        if self.count_distinct_invalid {
            self.invalid_distinct
        } else {
            self.invalid
        }
    }

    /// Every guarantee holds.
    pub fn ok(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && (self.allow_beyond_horizon || self.duplicated_beyond_horizon == 0)
            && self.order_violations == 0
            && self.late_violations == 0
            && self.foreign == 0
            && self.reasonless == 0
            && self.invalid_found() == self.invalid_expected
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "sent                {:>10}", self.sent)?;
        writeln!(f, "unique              {:>10}", self.unique)?;
        writeln!(f, "ordered             {:>10}", self.ordered)?;
        writeln!(f, "late                {:>10}", self.late)?;
        writeln!(
            f,
            "duplicates dropped  {:>10}",
            self.sent
                .saturating_sub(self.invalid_expected + self.unique)
        )?;
        writeln!(
            f,
            "invalid             {:>10}  (distinct {}, sent {})",
            self.invalid, self.invalid_distinct, self.invalid_expected
        )?;
        if self.too_large_for_output > 0 {
            writeln!(f, "too large for output{:>10}", self.too_large_for_output)?;
        }
        writeln!(f, "lost                {:>10}", self.lost)?;
        writeln!(f, "duplicated          {:>10}", self.duplicated)?;
        if self.beyond_horizon > 0 {
            writeln!(
                f,
                "beyond horizon      {:>10}  (of them copies: {})",
                self.beyond_horizon, self.duplicated_beyond_horizon
            )?;
        }
        writeln!(f, "order violations    {:>10}", self.order_violations)?;
        writeln!(f, "late violations     {:>10}", self.late_violations)?;
        write!(f, "changed or unknown  {:>10}", self.foreign)
    }
}

/// Checks `observed` against `expected`.
pub fn verify(expected: &Expected, observed: &[Observed], format: &EventFormat) -> Report {
    let mut r = Report {
        sent: expected.sent,
        unique: expected.events.len() as u64,
        invalid_expected: expected.invalid,
        count_distinct_invalid: expected.invalid_distinct,
        ..Report::default()
    };
    // id -> (copies written, copies marked beyond the dedup horizon).
    let mut seen: HashMap<&str, (u32, u32)> = HashMap::new();
    let mut last_time: HashMap<i32, u64> = HashMap::new();
    let mut invalid_payloads: std::collections::HashSet<&[u8]> = Default::default();
    for o in observed {
        if o.output == Output::Invalid {
            if let Some(id) = refused_event(o, expected) {
                r.too_large_for_output += 1;
                seen.entry(id).or_default().0 += 1;
                continue;
            }
            r.invalid += 1;
            r.invalid_distinct += u64::from(invalid_payloads.insert(&o.payload));
            r.reasonless += u64::from(!o.headers.contains_key("tidemark-reason"));
            continue;
        }
        let Some(id) = json_id(&o.payload, format) else {
            r.foreign += 1;
            continue;
        };
        let marked = o.output == Output::Late
            && o.headers.get("tidemark-beyond-horizon").map(String::as_str) == Some("true");
        r.beyond_horizon += u64::from(marked);
        let time = match expected.events.get_key_value(id.as_str()) {
            Some((id, (time, payload))) if *payload == o.payload => {
                let n = seen.entry(id.as_str()).or_default();
                n.0 += 1;
                n.1 += u32::from(marked);
                *time
            }
            None => match expected.unacknowledged.get_key_value(id.as_str()) {
                Some((id, (time, payload))) if *payload == o.payload => {
                    let n = seen.entry(id.as_str()).or_default();
                    n.0 += 1;
                    n.1 += u32::from(marked);
                    r.unacknowledged_written += u64::from(n.0 == 1);
                    *time
                }
                _ => {
                    r.foreign += 1;
                    continue;
                }
            },
            Some(_) => {
                r.foreign += 1;
                continue;
            }
        };
        match o.output {
            Output::Ordered(p) => {
                r.ordered += 1;
                let last = last_time.entry(p).or_insert(0);
                if time < *last {
                    r.order_violations += 1;
                }
                *last = (*last).max(time);
            }
            Output::Late => {
                r.late += 1;
                let wm = o
                    .headers
                    .get("tidemark-watermark")
                    .and_then(|v| v.parse::<u64>().ok());
                let lateness = o
                    .headers
                    .get("tidemark-lateness-ms")
                    .and_then(|v| v.parse::<u64>().ok());
                let good = matches!((wm, lateness), (Some(w), Some(l)) if w > time && l == w - time && l > 0);
                r.late_violations += u64::from(!good);
            }
            Output::Invalid => unreachable!("handled above"),
        }
    }
    r.lost = expected
        .events
        .keys()
        .filter(|id| !seen.contains_key(id.as_str()))
        .count() as u64;
    for &(copies, marked) in seen.values() {
        // A marked copy passed dedup unchecked and says so; any other extra copy is silent.
        let extra = copies - 1;
        let flagged = extra.min(marked);
        r.duplicated += u64::from(extra - flagged);
        r.duplicated_beyond_horizon += u64::from(flagged);
    }
    r
}

/// The id of the sent event that the dead letter `o` stands for, when it is one refused as too
/// large for the outputs: the id it names, with the sent bytes (or, truncated, a prefix of them
/// and their original size).
fn refused_event<'e>(o: &Observed, expected: &'e Expected) -> Option<&'e str> {
    if o.headers.get("tidemark-reason").map(String::as_str) != Some("too_large_for_output") {
        return None;
    }
    let (id, (_, payload)) = expected
        .events
        .get_key_value(o.headers.get("tidemark-event-id")?.as_str())?;
    let same = match o.headers.get("tidemark-original-bytes") {
        Some(n) => {
            n.parse::<usize>().ok() == Some(payload.len()) && payload.starts_with(&o.payload)
        }
        None => *payload == o.payload,
    };
    same.then_some(id.as_str())
}

/// Reads the ordered, late and invalid topics (`log-events-*`) of one cluster.
pub fn read_outputs(bootstrap: &str) -> Result<Vec<Observed>, rdkafka::error::KafkaError> {
    read_outputs_named(bootstrap, "log-events")
}

/// Reads `PREFIX-ordered`, `PREFIX-late` and `PREFIX-invalid` of one cluster.
pub fn read_outputs_named(
    bootstrap: &str,
    prefix: &str,
) -> Result<Vec<Observed>, rdkafka::error::KafkaError> {
    let mut observed = Vec::new();
    for (suffix, kind) in [
        ("ordered", None),
        ("late", Some(Output::Late)),
        ("invalid", Some(Output::Invalid)),
    ] {
        let topic = format!("{prefix}-{suffix}");
        for (partition, payload, headers) in read_topic(bootstrap, &topic)? {
            let output = kind.unwrap_or(Output::Ordered(partition));
            observed.push(Observed {
                output,
                payload,
                headers,
            });
        }
    }
    Ok(observed)
}

/// The ids on the ordered and late outputs.
pub fn output_ids(
    observed: &[Observed],
    format: &EventFormat,
) -> std::collections::BTreeSet<String> {
    observed
        .iter()
        .filter(|o| o.output != Output::Invalid)
        .filter_map(|o| json_id(&o.payload, format))
        .collect()
}

/// The id of an output record, read with serde_json: a top-level string field.
fn json_id(payload: &[u8], format: &EventFormat) -> Option<String> {
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(payload).ok()?;
    match v.remove(&format.id_field)? {
        serde_json::Value::String(id) => Some(id),
        _ => None,
    }
}

/// Options of `tidemark verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyOptions {
    /// A cluster whose `log-events-ordered`, `-late` and `-invalid` topics to check; repeat it
    /// for each region. Every cluster must hold every acknowledged id, and the same id set.
    #[arg(long = "bootstrap", required = true)]
    pub bootstraps: Vec<String>,
    /// The ids file written by `tidemark loadgen --out`; repeat it when several loads ran at
    /// once, and the outputs must hold all of them.
    #[arg(long, required = true)]
    pub ids: Vec<std::path::PathBuf>,
    /// While ids are missing, read again for up to this long (outputs may still be draining).
    #[arg(long, default_value = "0s", value_parser = crate::component::parse_duration_flag)]
    pub wait: Duration,
    /// Only the no-loss guarantees, for a pipeline configured `delivery = "at_least_once"`:
    /// after its restart, events written but not yet committed are written again (and out of
    /// order), which this tolerates and reports. Never for an exactly-once pipeline.
    #[arg(long)]
    pub at_least_once: bool,
    /// The output topics are `PREFIX-ordered`, `PREFIX-late` and `PREFIX-invalid` (another
    /// job's outputs, in the side-by-side benchmarks).
    #[arg(long, default_value = "log-events")]
    pub outputs: String,
    /// Accept extra copies on the late topic marked `tidemark-beyond-horizon` (a run that
    /// outlasts the dedup horizon on purpose, where such copies are the documented outcome);
    /// every unmarked extra copy still fails.
    #[arg(long)]
    pub allow_beyond_horizon: bool,
}

/// Runs `tidemark verify`: prints a table, one column per cluster, and returns whether every
/// guarantee holds in every cluster.
pub fn run(o: &VerifyOptions) -> anyhow::Result<bool> {
    let mut expected = Expected::default();
    for path in &o.ids {
        let e = read_ids(path)?;
        expected.events.extend(e.events);
        expected.unacknowledged.extend(e.unacknowledged);
        expected.invalid += e.invalid;
        expected.sent += e.sent;
        expected.invalid_distinct = e.invalid_distinct;
    }
    let format = EventFormat::default();
    let deadline = std::time::Instant::now() + o.wait;
    let mut results = Vec::new();
    for bootstrap in &o.bootstraps {
        loop {
            let observed = read_outputs_named(bootstrap, &o.outputs)
                .map_err(|e| anyhow::anyhow!("reading the outputs of {bootstrap}: {e}"))?;
            let report = Report {
                allow_beyond_horizon: o.allow_beyond_horizon,
                ..verify(&expected, &observed, &format)
            };
            if report.complete() || std::time::Instant::now() >= deadline {
                results.push((bootstrap.clone(), report, output_ids(&observed, &format)));
                break;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    let same = results.windows(2).all(|w| w[0].2 == w[1].2);
    println!("{}", table(&results, same));
    let ok = same
        && results.iter().all(|(_, r, _)| {
            if o.at_least_once {
                Report {
                    duplicated: 0,
                    duplicated_beyond_horizon: 0,
                    order_violations: 0,
                    ..r.clone()
                }
                .ok()
            } else {
                r.ok()
            }
        });
    if o.at_least_once {
        println!("(--at-least-once: duplicates and order violations are reported, not failures)");
    }
    let marked: u64 = results
        .iter()
        .map(|(_, r, _)| r.duplicated_beyond_horizon)
        .sum();
    if o.allow_beyond_horizon && marked > 0 {
        println!(
            "(--allow-beyond-horizon: {marked} extra copies marked tidemark-beyond-horizon are accepted; every other copy fails)"
        );
    }
    println!(
        "{}",
        if ok {
            "verified: every acknowledged event exactly once, in order, late means late"
        } else {
            "FAILED: a guarantee does not hold (see the table)"
        }
    );
    Ok(ok)
}

type Checked = (String, Report, std::collections::BTreeSet<String>);

fn table(results: &[Checked], same: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = write!(out, "{:<28}", "");
    for (b, _, _) in results {
        let _ = write!(out, "{b:>18}");
    }
    out.push('\n');
    type Row = (&'static str, fn(&Report) -> String, bool);
    let rows: &[Row] = &[
        ("acknowledged unique ids", |r| r.unique.to_string(), false),
        ("records sent", |r| r.sent.to_string(), false),
        ("ordered", |r| r.ordered.to_string(), false),
        ("late", |r| r.late.to_string(), false),
        ("lost", |r| r.lost.to_string(), true),
        ("duplicated", |r| r.duplicated.to_string(), true),
        (
            "beyond horizon (copies)",
            |r| format!("{} ({})", r.beyond_horizon, r.duplicated_beyond_horizon),
            false,
        ),
        ("order violations", |r| r.order_violations.to_string(), true),
        ("late violations", |r| r.late_violations.to_string(), true),
        ("changed or unknown", |r| r.foreign.to_string(), true),
        (
            "unacknowledged but written",
            |r| r.unacknowledged_written.to_string(),
            false,
        ),
        (
            "invalid (distinct/sent)",
            |r| format!("{}/{}", r.invalid_distinct, r.invalid_expected),
            false,
        ),
        ("invalid without reason", |r| r.reasonless.to_string(), true),
        (
            "too large for output",
            |r| r.too_large_for_output.to_string(),
            false,
        ),
    ];
    for (name, value, must_be_zero) in rows {
        let _ = write!(out, "{name:<28}");
        for (_, r, _) in results {
            let v = value(r);
            let flag = if *must_be_zero && v != "0" {
                " !"
            } else {
                "  "
            };
            let _ = write!(out, "{:>16}{flag}", v);
        }
        out.push('\n');
    }
    let _ = write!(
        out,
        "{:<28}{:>16}",
        "same id set in every cluster",
        if same { "yes" } else { "NO !" }
    );
    out
}

/// Reads an ids file written by `tidemark loadgen` into what verification expects: events with at least
/// one acknowledged copy must be in the output, the others may be.
pub fn read_ids(path: &std::path::Path) -> anyhow::Result<Expected> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut expected = Expected {
        // Every invalid record loadgen sends is different from the others.
        invalid_distinct: true,
        ..Default::default()
    };
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let bad = || anyhow::anyhow!("{}:{}: not a loadgen ids line", path.display(), n + 1);
        if let Some(rest) = line.strip_prefix(b"# ") {
            let rest = String::from_utf8_lossy(rest);
            let mut words = rest.split_whitespace();
            match (
                words.next(),
                words.next().and_then(|w| w.parse::<u64>().ok()),
            ) {
                (Some("sent"), Some(v)) => expected.sent = v,
                (Some("invalid"), Some(v)) => expected.invalid = v,
                _ => {}
            }
            continue;
        }
        let mut fields = line.splitn(4, |&b| b == b'\t');
        let (Some(id), Some(time), Some(acks), Some(payload)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad());
        };
        let id = std::str::from_utf8(id).map_err(|_| bad())?.to_string();
        let time = std::str::from_utf8(time)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(bad)?;
        if acks == b"0" {
            expected.unacknowledged.insert(id, (time, payload.to_vec()));
        } else {
            expected.events.insert(id, (time, payload.to_vec()));
        }
    }
    Ok(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_file_round_trip() {
        let dir = std::env::temp_dir().join(format!("tidemark-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ids.tsv");
        std::fs::write(
            &path,
            "# tidemark loadgen: seed 1 events 2\n# sent 5\n# invalid 1\n\
             aa\t1000\t1\t{\"eventId\":\"aa\",\"timestamp\":1000}\n\
             bb\t2000\t2\t{\"eventId\":\"bb\",\"timestamp\":2000,\"m\":\"x\\ty\"}\n\
             cc\t3000\t0\t{\"eventId\":\"cc\",\"timestamp\":3000}\n",
        )
        .unwrap();
        let e = read_ids(&path).unwrap();
        assert_eq!((e.sent, e.invalid, e.events.len()), (5, 1, 2));
        // Never acknowledged: allowed in the output once, not required.
        let cc = br#"{"eventId":"cc","timestamp":3000}"#.to_vec();
        assert_eq!(e.unacknowledged.get("cc"), Some(&(3000, cc.clone())));
        let out = |payload: &[u8]| Observed {
            output: Output::Ordered(0),
            payload: payload.to_vec(),
            headers: Default::default(),
        };
        let format = crate::event::EventFormat::default();
        let mut observed: Vec<_> = e.events.values().map(|(_, p)| out(p)).collect();
        let r = verify(&e, &observed, &format);
        assert_eq!((r.lost, r.foreign, r.unacknowledged_written), (0, 0, 0));
        // Every valid id is there but the invalid record sent is not yet: verify waits on.
        assert!(!r.complete());
        let mut with_invalid = observed.clone();
        with_invalid.push(Observed {
            output: Output::Invalid,
            payload: b"{not json".to_vec(),
            headers: Default::default(),
        });
        assert!(verify(&e, &with_invalid, &format).complete());
        observed.push(out(&cc));
        let r = verify(&e, &observed, &format);
        assert_eq!(
            (r.foreign, r.unacknowledged_written, r.duplicated),
            (0, 1, 0)
        );
        observed.push(out(&cc));
        let r = verify(&e, &observed, &format);
        assert_eq!(r.duplicated, 1);
        assert_eq!(e.events["aa"].0, 1000);
        assert_eq!(
            e.events["bb"].1,
            br#"{"eventId":"bb","timestamp":2000,"m":"x\ty"}"#.to_vec()
        );
        std::fs::write(&path, "aa\tnot-a-time\t1\t{}\n").unwrap();
        assert!(read_ids(&path).unwrap_err().to_string().contains(":1:"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_copy_marked_beyond_the_horizon_is_flagged_and_fails_unless_allowed() {
        let payload = br#"{"eventId":"a","timestamp":1000}"#.to_vec();
        let mut expected = Expected {
            sent: 2,
            ..Default::default()
        };
        expected.events.insert("a".into(), (1000, payload.clone()));
        let late = |marked: bool| Observed {
            output: Output::Late,
            payload: payload.clone(),
            headers: [
                ("tidemark-watermark", "5000"),
                ("tidemark-lateness-ms", "4000"),
            ]
            .into_iter()
            .chain(marked.then_some(("tidemark-beyond-horizon", "true")))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        };
        let ordered = Observed {
            output: Output::Ordered(0),
            payload: payload.clone(),
            headers: Default::default(),
        };
        let format = EventFormat::default();
        let r = verify(&expected, &[ordered.clone(), late(true)], &format);
        assert_eq!(
            (r.duplicated, r.duplicated_beyond_horizon, r.beyond_horizon),
            (0, 1, 1)
        );
        assert!(!r.ok(), "a copy is a copy, marked or not");
        assert!(Report {
            allow_beyond_horizon: true,
            ..r
        }
        .ok());
        // Unmarked, the same copy is a silent duplicate whatever is allowed.
        let r = verify(&expected, &[ordered, late(false)], &format);
        assert_eq!((r.duplicated, r.duplicated_beyond_horizon), (1, 0));
        assert!(!Report {
            allow_beyond_horizon: true,
            ..r
        }
        .ok());
    }
}
