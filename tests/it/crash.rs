//! Kill the job mid-run with SIGKILL and restart it: nothing is lost, because offsets are only
//! committed behind what the sinks have durably written.

use crate::mock::{loaded_regions, read_outputs};
use crate::support::Scratch;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `tidemark run file` (unbounded) and returns once the ordered topic has output. Fails
/// the test if none comes within 60 s, or if the process has already exited.
fn start_until_output(file: &str, bootstrap: &str) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["run", file, "--workers", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && tidemark::tools::topic::read_topic(bootstrap, "log-events-ordered")
            .unwrap()
            .is_empty()
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        Instant::now() < deadline,
        "no output within 60 s: the fault would hit a run that never started"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the job exited on its own before the fault"
    );
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

    let second = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["run", &file, "--workers", "2", "--bounded"])
        .output()
        .unwrap();
    assert!(
        second.status.success(),
        "restart failed: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    let (config, _) = tidemark::config::parse(&text).unwrap();
    let report = tidemark::tools::verify::verify(&t.expected, &read_outputs(&ba), &config.event);
    eprintln!("killed with {written_before} records written; after restart:\n{report}");
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.foreign, 0, "{report}");
    assert_eq!(report.late_violations, 0, "{report}");
    assert_eq!(report.invalid_expected, t.expected.invalid);
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
