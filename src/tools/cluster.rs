//! A local cluster of tidemark processes on loopback: what the two-process benchmark and the
//! multi-process tests start.

use std::io;
use std::path::Path;
use std::process::Command;

/// Writes a hostfile of `processes` free loopback ports.
pub fn loopback_hostfile(path: &Path, processes: usize) -> io::Result<()> {
    let mut text = String::new();
    for _ in 0..processes {
        // Bound and released at once: the port is free when the process binds it moments
        // later, barring a race with another program on this host.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        text.push_str(&format!("127.0.0.1:{port}\n"));
    }
    std::fs::write(path, text)
}

/// The command lines of `processes` processes of `exe run PIPELINE --bounded`, one worker
/// each, as one timely cluster over `hostfile`; the caller picks their output and starts them.
pub fn commands(exe: &Path, pipeline: &Path, hostfile: &Path, processes: usize) -> Vec<Command> {
    (0..processes)
        .map(|i| {
            let mut command = Command::new(exe);
            command
                .arg("run")
                .arg(pipeline)
                .args(["--bounded", "--workers", "1", "--processes"])
                .arg(processes.to_string())
                .arg("--process")
                .arg(i.to_string())
                .arg("--hostfile")
                .arg(hostfile);
            command
        })
        .collect()
}
