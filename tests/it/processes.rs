//! Two timely processes on loopback: data crosses processes through bincode and the result is
//! the same as on one worker.

use crate::support::*;
use std::process::{Command, Stdio};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn two_processes_match_the_reference() {
    let dir = Scratch::new("procs");
    let stream = seeded_stream(11, 5, 2_000);
    let inputs = write_partitions(&dir, &stream);
    let pipeline = dir.path("pipeline.toml");
    std::fs::write(&pipeline, file_pipeline(&inputs, &dir, 4)).unwrap();
    let hostfile = dir.path("hosts");
    std::fs::write(
        &hostfile,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();
    let mut children: Vec<_> = (0..2)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_tidemark"))
                .args([
                    "run",
                    &pipeline,
                    "--bounded",
                    "--workers",
                    "1",
                    "--processes",
                    "2",
                    "--process",
                    &i.to_string(),
                    "--hostfile",
                    &hostfile,
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Bounded wait: a hung cluster fails the test instead of hanging it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut statuses = [None, None];
    while statuses.iter().any(|s| s.is_none()) && std::time::Instant::now() < deadline {
        for (i, c) in children.iter_mut().enumerate() {
            if statuses[i].is_none() {
                statuses[i] = c.try_wait().unwrap();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
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
