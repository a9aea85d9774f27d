//! Helpers shared by the integration tests: scratch directories, seeded streams, a reference
//! classifier written independently of the pipeline's decoder, and output readers.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use tidemark::runtime::SplitMix;
use tidemark::tools::verify::{Expected, Observed, Output};

/// A scratch directory removed on drop, with a random suffix so runs never collide.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!("tidemark-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A seeded multi-partition stream: duplicates across and within partitions, disorder inside
/// the bound, events far behind (late), an empty (idle) partition, and invalid records.
pub struct Stream {
    pub partitions: Vec<Vec<Vec<u8>>>,
}

pub fn seeded_stream(seed: u64, partitions: usize, per_partition: usize) -> Stream {
    let mut rng = SplitMix(seed);
    let base = 1_700_000_000_000u64;
    let mut out: Vec<Vec<Vec<u8>>> = vec![Vec::new(); partitions];
    let mut emitted: Vec<Vec<u8>> = Vec::new();
    // The last partition stays empty: an idle partition must not hold anything back.
    for (p, part) in out.iter_mut().enumerate().take(partitions - 1) {
        for i in 0..per_partition {
            let roll = rng.next_f64();
            if roll < 0.08 && !emitted.is_empty() {
                // A copy of an earlier event, possibly from another partition.
                let k = rng.below(emitted.len() as u64) as usize;
                part.push(emitted[k].clone());
                continue;
            }
            if roll < 0.10 {
                part.push(invalid_record(&mut rng));
                continue;
            }
            let mut time = base + (i as u64) * 10 - rng.below(150);
            if roll > 0.985 {
                // Far behind this partition's progress: late once the watermark has moved.
                time = time.saturating_sub(5_000 + rng.below(5_000));
            }
            let id = format!("p{p}-{i}-{:x}", rng.next_u64());
            let line = format!(
                r#"{{"eventId":"{id}","timestamp":{time},"service":"svc-{}","level":"info"}}"#,
                rng.below(5)
            );
            emitted.push(line.clone().into_bytes());
            part.push(line.into_bytes());
        }
    }
    Stream { partitions: out }
}

fn invalid_record(rng: &mut SplitMix) -> Vec<u8> {
    match rng.below(7) {
        0 => b"not json at all".to_vec(),
        1 => b"[\"an\",\"array\"]".to_vec(),
        2 => br#"{"timestamp":1700000000000}"#.to_vec(),
        3 => br#"{"eventId":7,"timestamp":1700000000000}"#.to_vec(),
        4 => br#"{"eventId":"no-time"}"#.to_vec(),
        5 => br#"{"eventId":"neg","timestamp":-3}"#.to_vec(),
        _ => b"{\"eventId\":\"\xff\xfe\",\"timestamp\":1}".to_vec(),
    }
}

/// The reference: a plain sequential pass with serde_json::Value, independent of the decoder.
pub fn reference(stream: &Stream) -> Expected {
    let mut e = Expected::default();
    for part in &stream.partitions {
        for line in part {
            e.sent += 1;
            let v: Option<serde_json::Value> = std::str::from_utf8(line)
                .ok()
                .and_then(|s| serde_json::from_str(s).ok());
            let valid = v.as_ref().and_then(|v| {
                let id = v
                    .get("eventId")?
                    .as_str()
                    .filter(|s| !s.is_empty() && s.len() <= 128)?;
                let t = v.get("timestamp")?.as_u64()?;
                Some((id.to_string(), t))
            });
            match valid {
                Some((id, t)) => {
                    e.events.entry(id).or_insert((t, line.clone()));
                }
                None => e.invalid += 1,
            }
        }
    }
    e
}

pub fn write_partitions(dir: &Scratch, stream: &Stream) -> Vec<String> {
    stream
        .partitions
        .iter()
        .enumerate()
        .map(|(i, lines)| {
            let path = dir.path(&format!("in-{i}.jsonl"));
            let mut text = Vec::new();
            for l in lines {
                text.extend_from_slice(l);
                text.push(b'\n');
            }
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

/// The chain under test, reading files and writing envelope files.
pub fn file_pipeline(inputs: &[String], dir: &Scratch, partitions: u32) -> String {
    let operators = fixture::dedup_and_order(partitions);
    envelope_pipeline(inputs, dir, &operators, "order", "dedup.late")
}

/// Files -> watermark -> `operators` -> envelope files: `ordered_from` to ordered.jsonl,
/// `late_from` to late.jsonl, the watermark's invalid output to invalid.jsonl.
pub fn envelope_pipeline(
    inputs: &[String],
    dir: &Scratch,
    operators: &str,
    ordered_from: &str,
    late_from: &str,
) -> String {
    let paths = inputs
        .iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let watermark = fixture::watermark(
        "files",
        "200ms",
        "idle_timeout = \"1s\"\nmax_future_skew = \"10m\"",
    );
    format!(
        r#"
[pipeline]
name = "model"

[sources.files]
type = "file"
paths = [{paths}]
region = "region-a"
{watermark}{operators}
[sinks.ordered]
type = "file"
inputs = ["{ordered_from}"]
path = {ordered:?}
format = "envelope"

[sinks.late]
type = "file"
inputs = ["{late_from}"]
path = {late:?}
format = "envelope"

[sinks.invalid]
type = "file"
inputs = ["wm.invalid"]
path = {invalid:?}
format = "envelope"
"#,
        ordered = dir.path("ordered.jsonl"),
        late = dir.path("late.jsonl"),
        invalid = dir.path("invalid.jsonl"),
    )
}

/// Reads the three envelope files back.
pub fn read_envelopes(dir: &Scratch) -> Vec<Observed> {
    let mut out = Vec::new();
    for (file, kind) in [
        ("ordered.jsonl", None),
        ("late.jsonl", Some(Output::Late)),
        ("invalid.jsonl", Some(Output::Invalid)),
    ] {
        let Ok(text) = std::fs::read_to_string(dir.path(file)) else {
            continue;
        };
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("envelope is JSON");
            let headers: BTreeMap<String, String> = v["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let payload = match &v["payload"] {
                serde_json::Value::String(s) if kind == Some(Output::Invalid) => {
                    s.clone().into_bytes()
                }
                other => serde_json::to_vec(other).unwrap(),
            };
            let output = kind
                .unwrap_or_else(|| Output::Ordered(v["partition"].as_i64().unwrap_or(-1) as i32));
            out.push(Observed {
                output,
                payload,
                headers,
            });
        }
    }
    out
}

/// Normalises payloads to their JSON value so envelope re-serialisation does not count as a
/// changed payload.
pub fn canonical(expected: &Expected) -> Expected {
    let mut e = expected.clone();
    for (_, payload) in e.events.values_mut() {
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
        *payload = serde_json::to_vec(&v).unwrap();
    }
    e
}

/// Asserts each ordered partition holds exactly its ids, sorted by (time, id), and that every
/// id is in the partition its hash names.
pub fn assert_partitions_sorted(observed: &[Observed], partitions: u32) {
    let mut by_part: HashMap<i32, Vec<(u64, String)>> = HashMap::new();
    for o in observed {
        if let Output::Ordered(p) = o.output {
            let v: serde_json::Value = serde_json::from_slice(&o.payload).unwrap();
            let id = v["eventId"].as_str().unwrap().to_string();
            let want = ((xxhash_rust::xxh3::xxh3_128(id.as_bytes()) >> 64) as u64
                % u64::from(partitions)) as i32;
            assert_eq!(
                p, want,
                "event {id} written to partition {p}, its hash names {want}"
            );
            by_part
                .entry(p)
                .or_default()
                .push((v["timestamp"].as_u64().unwrap(), id));
        }
    }
    for (p, seq) in by_part {
        let mut sorted = seq.clone();
        sorted.sort();
        assert_eq!(seq, sorted, "partition {p} is not in (time, id) order");
    }
}

/// The parts test pipelines are made of, each written once: a test states only what it is
/// about.
pub mod fixture {
    /// `[operators.wm]`: a watermark over the source `input`, with any extra settings.
    pub fn watermark(input: &str, max_out_of_orderness: &str, extra: &str) -> String {
        format!(
            "\n[operators.wm]\ntype = \"watermark\"\ninputs = [\"{input}\"]\nmax_out_of_orderness = \"{max_out_of_orderness}\"\n{extra}\n"
        )
    }

    /// `[operators.dedup]` over both outputs of `wm`, and `[operators.order]` over its
    /// on-time output.
    pub fn dedup_and_order(partitions: u32) -> String {
        format!(
            r#"
[operators.dedup]
type = "dedup"
inputs = ["wm.on_time", "wm.late"]
horizon = "10m"

[operators.order]
type = "reorder"
inputs = ["dedup.on_time"]
partitions = {partitions}
"#
        )
    }

    /// A null sink named `name` over `inputs` (written as a TOML list's contents).
    pub fn null_sink(name: &str, inputs: &str) -> String {
        format!("\n[sinks.{name}]\ntype = \"null\"\ninputs = [{inputs}]\n")
    }

    /// Runs `pipeline` bounded on a local cluster of two processes of one worker, on free
    /// loopback ports, and waits for both within two minutes; every process is stopped.
    pub fn run_two_processes(
        pipeline: &str,
        hostfile: &str,
    ) -> Vec<Option<std::process::ExitStatus>> {
        run_two_processes_printing(pipeline, hostfile)
            .into_iter()
            .map(|(status, _)| status)
            .collect()
    }

    /// [`run_two_processes`], keeping what each process printed on its standard output (the
    /// run's summary).
    pub fn run_two_processes_printing(
        pipeline: &str,
        hostfile: &str,
    ) -> Vec<(Option<std::process::ExitStatus>, String)> {
        let exe = std::path::Path::new(env!("CARGO_BIN_EXE_tidemark"));
        let children: Vec<_> =
            tidemark::tools::cluster::commands(exe, pipeline.as_ref(), hostfile.as_ref(), 2)
                .into_iter()
                .map(|mut c| {
                    c.stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::null())
                        .spawn()
                        .expect("starting a process")
                })
                .collect();
        let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
        // Bounded: a hung cluster is killed by pid after two minutes, which ends the waits.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if rx
                .recv_timeout(std::time::Duration::from_secs(120))
                .is_err()
            {
                for pid in pids {
                    let _ = std::process::Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .status();
                }
            }
        });
        let outputs: Vec<_> = children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().expect("waiting for a process");
                (
                    Some(out.status),
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                )
            })
            .collect();
        let _ = tx.send(());
        watchdog.join().unwrap();
        outputs
    }
}
