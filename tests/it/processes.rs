//! Two timely processes on loopback: data crosses processes through bincode and the result is
//! the same as on one worker.

use crate::support::*;

#[test]
fn two_processes_match_the_reference() {
    let dir = Scratch::new("procs");
    let stream = seeded_stream(11, 5, 2_000);
    let inputs = write_partitions(&dir, &stream);
    let pipeline = dir.path("pipeline.toml");
    std::fs::write(&pipeline, file_pipeline(&inputs, &dir, 4)).unwrap();
    let hostfile = dir.path("hosts");
    tidemark::tools::cluster::loopback_hostfile(hostfile.as_ref(), 2).unwrap();
    let statuses = fixture::run_two_processes(&pipeline, &hostfile);
    for (i, s) in statuses.iter().enumerate() {
        assert!(
            s.is_some_and(|s| s.success()),
            "process {i} did not finish cleanly: {s:?}"
        );
    }
    let (config, _) =
        tidemark::config::parse(&std::fs::read_to_string(&pipeline).unwrap()).unwrap();
    let expected = canonical(&reference(&stream));
    let observed = read_envelopes(&dir);
    let report = tidemark::tools::verify::verify(&expected, &observed, &config.event);
    assert!(report.ok(), "{report}");
    assert_partitions_sorted(&observed, 4);
}

/// With an in-flight budget far below what the sources could read ahead, both processes are
/// held back again and again, and still deliver everything once, in order: flow control
/// neither deadlocks nor drops. The budget is what makes them wait, so the time held back must
/// show. With 4 output partitions reorder shares dedup's exchange; with 3 it has its own.
#[test]
fn a_tight_in_flight_budget_holds_sources_back_and_loses_nothing() {
    for partitions in [4, 3] {
        let dir = Scratch::new(&format!("flow{partitions}"));
        let stream = seeded_stream(12, 4, 3_000);
        let inputs = write_partitions(&dir, &stream);
        let pipeline = dir.path("pipeline.toml");
        let text = file_pipeline(&inputs, &dir, partitions).replace(
            "[pipeline]\n",
            "[pipeline]\nmax_in_flight_records = 64\nmax_in_flight_bytes = 65536\n",
        );
        assert!(text.contains("max_in_flight_records = 64"));
        std::fs::write(&pipeline, text).unwrap();
        let hostfile = dir.path("hosts");
        tidemark::tools::cluster::loopback_hostfile(hostfile.as_ref(), 2).unwrap();
        let mut throttled = 0.0;
        for (i, (status, out)) in fixture::run_two_processes_printing(&pipeline, &hostfile)
            .into_iter()
            .enumerate()
        {
            assert!(
                status.is_some_and(|s| s.success()),
                "{partitions} partitions: process {i} did not finish cleanly: {status:?}\n{out}"
            );
            let line = out
                .lines()
                .find(|l| l.starts_with("throttled"))
                .unwrap_or_else(|| panic!("process {i} printed no throttled line:\n{out}"));
            throttled += line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("unreadable: {line}"));
        }
        assert!(
            throttled > 0.0,
            "{partitions} partitions: the sources were never held back"
        );
        let (config, _) =
            tidemark::config::parse(&std::fs::read_to_string(&pipeline).unwrap()).unwrap();
        let expected = canonical(&reference(&stream));
        let observed = read_envelopes(&dir);
        let report = tidemark::tools::verify::verify(&expected, &observed, &config.event);
        assert!(report.ok(), "{partitions} partitions: {report}");
        assert_partitions_sorted(&observed, partitions);
    }
}

/// Starts process `i` of a 2-process cluster on `hostfile`, running `pipeline` unbounded, with
/// its standard error collected line by line.
fn start_process(
    pipeline: &str,
    hostfile: &str,
    i: usize,
    extra: &[&str],
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
    std::sync::Arc<std::sync::Mutex<String>>,
) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args([
            "run",
            pipeline,
            "--processes",
            "2",
            "--process",
            &i.to_string(),
        ])
        .args(["--hostfile", hostfile])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let all = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let kept = std::sync::Arc::clone(&all);
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            kept.lock().unwrap().push_str(&(line.clone() + "\n"));
            let _ = tx.send(line);
        }
    });
    (child, rx, all)
}

/// Waits up to `within` for `child` to exit; kills it and returns None if it does not.
fn exited_within(
    child: &mut std::process::Child,
    within: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A scratch folder with a generator pipeline that runs far longer than the test and a loopback
/// hostfile of 2 processes; returns them and process 1's address.
fn endless_cluster(tag: &str) -> (Scratch, String, String, String) {
    let dir = Scratch::new(tag);
    let text = std::fs::read_to_string("pipelines/bench.toml")
        .unwrap()
        .replace("count = 4000000", "count = 4000000000");
    assert!(text.contains("count = 4000000000"));
    let pipeline = dir.path("endless.toml");
    std::fs::write(&pipeline, text).unwrap();
    let hostfile = dir.path("hosts");
    tidemark::tools::cluster::loopback_hostfile(hostfile.as_ref(), 2).unwrap();
    let hosts = std::fs::read_to_string(&hostfile).unwrap();
    let peer = hosts.lines().nth(1).unwrap().to_string();
    (dir, pipeline, hostfile, peer)
}

/// When one process of a running cluster is SIGKILLed, the other stops within 10 s, non-zero,
/// with one line naming the lost peer and its address, and no panic or backtrace.
#[test]
fn a_cluster_fails_as_one_when_a_process_dies() {
    let (_dir, pipeline, hostfile, peer) = endless_cluster("procs-death");
    let (mut p0, lines, err0) = start_process(&pipeline, &hostfile, 0, &[]);
    let (mut p1, _, _) = start_process(&pipeline, &hostfile, 1, &[]);
    // The kill must hit a formed cluster, not one still connecting.
    let formed = lines
        .iter()
        .take_while(|_| p0.try_wait().unwrap().is_none())
        .any(|l| l.contains("cluster formed"));
    assert!(
        formed,
        "process 0 never formed the cluster:\n{}",
        err0.lock().unwrap()
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    p1.kill().unwrap();
    p1.wait().unwrap();
    let status = exited_within(&mut p0, std::time::Duration::from_secs(10));
    let err = err0.lock().unwrap().clone();
    let status =
        status.unwrap_or_else(|| panic!("process 0 still ran 10 s after its peer died:\n{err}"));
    assert!(!status.success(), "{err}");
    assert!(
        err.contains(&format!("error: cluster process 1 ({peer}) is gone")),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

/// A process whose peer never starts gives up after --connect-timeout, naming the peer.
#[test]
fn a_cluster_that_does_not_form_gives_up() {
    let (_dir, pipeline, hostfile, peer) = endless_cluster("procs-alone");
    let (mut p0, _, err0) = start_process(&pipeline, &hostfile, 0, &["--connect-timeout", "2s"]);
    let status = exited_within(&mut p0, std::time::Duration::from_secs(30));
    let err = err0.lock().unwrap().clone();
    let status = status.unwrap_or_else(|| panic!("process 0 still waited after 30 s:\n{err}"));
    assert!(!status.success());
    assert!(
        err.contains("error: the cluster did not form within 2s: process 0 (")
            && err.contains(&format!("its peers 1 ({peer})")),
        "{err}"
    );
}
