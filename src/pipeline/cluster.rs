//! A cluster of processes fails as one, and does not wait for ever to form.
//!
//! timely's network threads panic when a peer's connection ends without the peer's shutdown
//! ("timely communication error: ...", a message timely keeps stable for crates that look for
//! it), which takes this process down with a backtrace that names no peer. At start, timely
//! waits for every peer for as long as it takes. Here the first becomes one line naming the peer
//! and its address, then an exit, and the second a deadline with the same kind of line. A
//! supervisor (systemd's `Restart=`, a StatefulSet) then restarts the processes, and
//! exactly-once resumes from what the outputs committed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The cluster as this process knows it: its hosts and its own index.
struct Members {
    hosts: Vec<String>,
    process: usize,
}

static MEMBERS: OnceLock<Members> = OnceLock::new();

/// A started watch; [`ClusterWatch::formed`] ends its start-up deadline.
pub struct ClusterWatch {
    formed: Arc<AtomicBool>,
}

impl ClusterWatch {
    /// Installs the peer-loss hook (once per process) and starts the deadline for every peer to
    /// connect.
    pub fn start(hosts: &[String], process: usize, connect_timeout: Duration) -> ClusterWatch {
        let first = MEMBERS
            .set(Members {
                hosts: hosts.to_vec(),
                process,
            })
            .is_ok();
        if first {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if let Some(line) = peer_lost(info) {
                    eprintln!("error: {line}");
                    std::process::exit(1);
                }
                previous(info);
            }));
        }
        let formed = Arc::new(AtomicBool::new(false));
        let waiting = Arc::clone(&formed);
        let peers = describe(hosts, |i| i != process);
        let me = describe(hosts, |i| i == process);
        let deadline = Instant::now() + connect_timeout;
        let _ = std::thread::Builder::new()
            .name("tidemark:cluster-start".into())
            .spawn(move || {
                while !waiting.load(Ordering::SeqCst) {
                    if Instant::now() >= deadline {
                        eprintln!(
                            "error: the cluster did not form within {}: process {me} is still waiting for its peers {peers}; start every process with the same --processes and hostfile",
                            crate::component::Millis(connect_timeout.as_millis() as u64)
                        );
                        std::process::exit(1);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        ClusterWatch { formed }
    }

    /// Every peer connected: the deadline no longer applies.
    pub fn formed(&self) {
        self.formed.store(true, Ordering::SeqCst);
    }
}

/// The error line for a panic of timely's network thread for a peer, or None for any other.
fn peer_lost(info: &std::panic::PanicHookInfo<'_>) -> Option<String> {
    let thread = std::thread::current();
    let name = thread.name()?;
    let peer: usize = name
        .strip_prefix("timely:recv-")
        .or_else(|| name.strip_prefix("timely:send-"))?
        .parse()
        .ok()?;
    let message = crate::runtime::panic_text(info)?;
    let cause = message.strip_prefix("timely communication error: ")?;
    let members = MEMBERS.get()?;
    let host = members.hosts.get(peer).map_or("?", String::as_str);
    Some(format!(
        "cluster process {peer} ({host}) is gone ({cause}); process {} stops too",
        members.process
    ))
}

/// "0 (host:port), 2 (host:port)" for the processes `which` picks.
fn describe(hosts: &[String], which: impl Fn(usize) -> bool) -> String {
    hosts
        .iter()
        .enumerate()
        .filter(|(i, _)| which(*i))
        .map(|(i, h)| format!("{i} ({h})"))
        .collect::<Vec<_>>()
        .join(", ")
}
