//! Kill the job mid-run with SIGKILL and restart it: nothing is lost, because offsets are only
//! committed behind what the sinks have durably written.

use crate::mock::{loaded_regions, read_outputs};
use crate::support::Scratch;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `tidemark run file ARGS` (unbounded), its output discarded.
fn spawn(file: &str, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["run", file])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Returns once the ordered topic holds more than `after` records. Fails the test if that does
/// not happen within 60 s, or if one of `running` has already exited.
fn wait_for_output(bootstrap: &str, after: usize, running: &mut [std::process::Child]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && tidemark::tools::topic::read_topic(bootstrap, "log-events-ordered")
            .unwrap()
            .len()
            <= after
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        Instant::now() < deadline,
        "no new output within 60 s: the fault would hit a run that never started"
    );
    for child in running {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job exited on its own before the fault"
        );
    }
}

/// Starts `tidemark run file` (unbounded) and returns once the ordered topic has output.
fn start_until_output(file: &str, bootstrap: &str) -> std::process::Child {
    let mut child = spawn(file, &["--workers", "2"]);
    wait_for_output(bootstrap, 0, std::slice::from_mut(&mut child));
    child
}

#[test]
fn kill_and_restart_loses_nothing() {
    let t = tidemark::tools::demo::traffic(60_000, 5, 65_536);
    let (_region_a, _region_b, ba, bb) = loaded_regions(&t, 4, 8);
    let dir = Scratch::new("crash");
    let file = dir.path("pipeline.toml");
    let text = tidemark::tools::demo::pipeline_text(&ba, &bb, 8)
        .unwrap()
        .replace("commit_interval = \"1s\"", "commit_interval = \"50ms\"");
    std::fs::write(&file, &text).unwrap();

    // Kill as soon as the ordered topic has some output: the run is then mid-way through.
    let mut first = start_until_output(&file, &ba);
    first.kill().unwrap();
    let status = first.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "the job died of the SIGKILL: {status:?}"
    );
    let written_before = read_outputs(&ba).len();
    // Mid-run: something was written and something was still to write.
    let total = t.expected.events.len() + t.expected.invalid as usize;
    assert!(
        written_before > 0 && written_before < total,
        "killed with {written_before} of at least {total} records written: not mid-run"
    );

    let report = finish_and_verify(&file, &text, &t.expected, &ba);
    eprintln!("killed with {written_before} records written; after restart:\n{report}");
    assert!(report.ok(), "{report}");
    assert_eq!(report.invalid_expected, t.expected.invalid);
}

/// Runs the job in `file` (whose text is `text`) to the end on 1 process of 2 workers, then
/// verifies the outputs on `bootstrap` against what was sent.
fn finish_and_verify(
    file: &str,
    text: &str,
    expected: &tidemark::tools::verify::Expected,
    bootstrap: &str,
) -> tidemark::tools::verify::Report {
    let last = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["run", file, "--workers", "2", "--bounded"])
        .output()
        .unwrap();
    assert!(
        last.status.success(),
        "the run to the end failed: {}",
        String::from_utf8_lossy(&last.stderr)
    );
    let (config, _) = tidemark::config::parse(text).unwrap();
    tidemark::tools::verify::verify(expected, &read_outputs(bootstrap), &config.event)
}

#[test]
fn sigterm_drains_and_commits() {
    let t = tidemark::tools::demo::traffic(40_000, 8, 65_536);
    let (_region_a, _region_b, ba, bb) = loaded_regions(&t, 4, 8);
    let dir = Scratch::new("sigterm");
    let file = dir.path("pipeline.toml");
    let text = tidemark::tools::demo::pipeline_text(&ba, &bb, 8).unwrap();
    std::fs::write(&file, &text).unwrap();
    let mut run = start_until_output(&file, &ba);
    let term = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    // A drain is bounded by in-flight work; give it a generous limit, then fail rather than hang.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = run.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = run.kill();
            let _ = run.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM must drain and exit 0, got {status:?}"
    );
    // Whatever the first run read is committed; the rest is read by a bounded run.
    let second = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["run", &file, "--workers", "2", "--bounded"])
        .output()
        .unwrap();
    assert!(second.status.success());
    let (config, _) = tidemark::config::parse(&text).unwrap();
    let report = tidemark::tools::verify::verify(&t.expected, &read_outputs(&ba), &config.event);
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.foreign, 0, "{report}");
    assert_eq!(
        report.invalid, report.invalid_expected,
        "a drained run re-reads nothing: {report}"
    );
}

/// Rescaling keeps every guarantee: a run on 1 process of 2 workers is SIGKILLed mid-way, the job
/// resumes on 2 processes of 1 worker each, one of which is SIGKILLed (the other must then stop
/// on its own), and it finishes on 1 process of 2 workers. Strict verify: nothing lost, nothing
/// duplicated, every partition in order, late means late.
#[test]
fn rescaling_between_processes_keeps_every_guarantee() {
    let t = tidemark::tools::demo::traffic(60_000, 5, 65_536);
    let (_region_a, _region_b, ba, bb) = loaded_regions(&t, 4, 8);
    let dir = Scratch::new("rescale");
    let file = dir.path("pipeline.toml");
    let text = tidemark::tools::demo::pipeline_text(&ba, &bb, 8)
        .unwrap()
        .replace("commit_interval = \"1s\"", "commit_interval = \"50ms\"");
    std::fs::write(&file, &text).unwrap();
    let written = || read_outputs(&ba).len();

    let mut one = start_until_output(&file, &ba);
    one.kill().unwrap();
    one.wait().unwrap();
    let after_one = written();

    let hostfile = dir.path("hosts");
    tidemark::tools::cluster::loopback_hostfile(hostfile.as_ref(), 2).unwrap();
    let mut two: Vec<_> = (0..2)
        .map(|i| {
            let i = i.to_string();
            let args = ["--processes", "2", "--process", &i, "--hostfile", &hostfile];
            spawn(&file, &args)
        })
        .collect();
    wait_for_output(&ba, after_one, &mut two);
    two[1].kill().unwrap();
    two[1].wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let survivor = loop {
        if let Some(status) = two[0].try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "process 0 still ran 10 s after process 1 was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!survivor.success(), "process 0 lost its peer and exited 0");
    let after_two = written();
    let total = t.expected.events.len() + t.expected.invalid as usize;
    assert!(
        after_one < after_two && after_two < total,
        "{after_one} records after 1x2, {after_two} after 2x1, of at least {total}: each run must have written, and not finished"
    );

    let report = finish_and_verify(&file, &text, &t.expected, &ba);
    eprintln!("{after_one} records after 1x2, {after_two} after 2x1; at the end:\n{report}");
    assert!(report.ok(), "{report}");
}
