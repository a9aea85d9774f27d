//! The command line: every flag parses, `check` reports every error and exits non-zero.

use std::process::Command;

fn tidemark() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
}

#[test]
fn check_accepts_the_shipped_pipelines() {
    for file in ["pipelines/global.toml", "pipelines/bench.toml"] {
        let out = tidemark().args(["check", file]).output().unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_reports_every_error_and_fails() {
    let dir = crate::support::Scratch::new("cli-check");
    let file = dir.path("bad.toml");
    std::fs::write(
        &file,
        r#"
[sources.s]
type = "file"
paths = ["x"]
region = "r"

[operators.wm]
type = "watermark"
inputs = ["s"]
max_out_of_orderness = "2 parsecs"

[sinks.out]
type = "null"
inputs = ["wm.on_time", "nowhere"]
"#,
    )
    .unwrap();
    let out = tidemark().args(["check", &file]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wm.max_out_of_orderness"), "{err}");
    assert!(err.contains("input \"nowhere\" matches no node"), "{err}");
}

#[test]
fn graph_prints_dot_and_mermaid() {
    let out = tidemark()
        .args(["graph", "pipelines/global.toml"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("digraph tidemark"));
    assert!(text.contains("\"wm\" -> \"dedup\" [label=\"late\"]"));
    assert!(text.contains("flowchart LR"));
    assert!(text.contains("dedup -- late --> late"));
    let dot = tidemark()
        .args(["graph", "pipelines/global.toml", "--format", "dot"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&dot.stdout).contains("flowchart"));
}

#[test]
fn run_flags_parse_and_are_checked() {
    let bad = tidemark()
        .args([
            "run",
            "pipelines/bench.toml",
            "--processes",
            "2",
            "--process",
            "2",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--process must be below --processes"));
    let no_hosts = tidemark()
        .args(["run", "pipelines/bench.toml", "--processes", "2"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&no_hosts.stderr).contains("needs a --hostfile"));
    let help = tidemark().args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--workers",
        "--processes",
        "--process",
        "--hostfile",
        "--bounded",
        "--metrics-listen",
    ] {
        assert!(help.contains(flag), "{flag} missing from help");
    }
    let unknown = tidemark()
        .args(["run", "pipelines/bench.toml", "--nope"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
}
