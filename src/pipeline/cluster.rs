//! A cluster of processes fails as one, and does not wait for ever to form.
//!
//! timely's network threads panic when a peer's connection ends without the peer's shutdown
//! ("timely communication error: ...", a message timely keeps stable for crates that look for
//! it), which takes this process down with a backtrace that names no peer. At start, timely
//! waits for every peer for as long as it takes. Here the first becomes one line naming the peer
//! and its address, then an exit, and the second a deadline with the same kind of line. A
//! supervisor (systemd's `Restart=`, a StatefulSet) then restarts the processes, and
//! exactly-once resumes from what the outputs committed.
//!
//! A peer can also go silent without closing anything: its host loses power, a link or a
//! firewall drops every packet. TCP would then wait for minutes before it calls the connection
//! broken. So once the cluster has formed, every connection to a peer gets keepalive probes
//! and a user timeout ([`PEER_SILENCE`]): a peer that acknowledges nothing for that long is
//! gone, its connection fails, and the line above follows.

use std::net::SocketAddr;
use std::os::fd::RawFd;
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

    /// Every peer connected: the deadline no longer applies, and a silent peer is now one that
    /// says nothing for [`PEER_SILENCE`]. Returns how many peer connections are watched.
    pub fn formed(&self) -> usize {
        self.formed.store(true, Ordering::SeqCst);
        MEMBERS
            .get()
            .map_or(0, |m| watch_connections(&m.hosts, m.process))
    }
}

/// How long a peer may acknowledge nothing, and answer no keepalive probe, before it is gone.
/// Well inside the 10 s in which the rest of the cluster must stop.
pub const PEER_SILENCE: Duration = Duration::from_secs(6);

/// Sets keepalive probes and a user timeout on this process's TCP connections to its peers,
/// found among its open sockets: those to another process's address (the ones this process
/// opened), and those accepted on its own cluster port.
fn watch_connections(hosts: &[String], process: usize) -> usize {
    use std::net::ToSocketAddrs;
    let resolve = |h: &String| {
        h.to_socket_addrs()
            .map(Iterator::collect::<Vec<_>>)
            .unwrap_or_default()
    };
    let own_ports: Vec<u16> = hosts
        .get(process)
        .map(resolve)
        .unwrap_or_default()
        .iter()
        .map(SocketAddr::port)
        .collect();
    let peers: Vec<SocketAddr> = hosts
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != process)
        .flat_map(|(_, h)| resolve(h))
        .collect();
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut watched = 0;
    for entry in fds.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
        let Some((local, peer)) = is_socket.then(|| tcp_ends(fd)).flatten() else {
            continue;
        };
        if peers.contains(&peer) || own_ports.contains(&local.port()) {
            if let Err(e) = keep_alive(fd) {
                tracing::warn!(error = %e, %peer, "cannot watch a peer connection for silence");
                continue;
            }
            watched += 1;
        }
    }
    watched
}

/// The local and remote address of a connected TCP socket, or None for anything else.
#[allow(unsafe_code)]
fn tcp_ends(fd: RawFd) -> Option<(SocketAddr, SocketAddr)> {
    use std::os::fd::FromRawFd;
    // A duplicate, so that dropping the stream closes only it; the socket is shared.
    // SAFETY: dup only reads the descriptor table; a stale number fails with EBADF.
    let dup = unsafe { libc::dup(fd) };
    if dup < 0 {
        return None;
    }
    // SAFETY: `dup` is a descriptor this function owns; a socket that is not TCP makes the
    // address calls below fail, and the stream only closes the duplicate when dropped.
    let stream = unsafe { std::net::TcpStream::from_raw_fd(dup) };
    Some((stream.local_addr().ok()?, stream.peer_addr().ok()?))
}

/// Keepalive probes after 2 s of quiet, every second, and a user timeout of [`PEER_SILENCE`]:
/// whichever comes first, a peer that stays silent fails the connection.
#[allow(unsafe_code)]
fn keep_alive(fd: RawFd) -> std::io::Result<()> {
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
        // SAFETY: a plain integer option on a descriptor this process holds open.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    let silence_s = PEER_SILENCE.as_secs() as libc::c_int;
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 2)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 1)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, silence_s - 2)?;
    set(
        libc::IPPROTO_TCP,
        libc::TCP_USER_TIMEOUT,
        PEER_SILENCE.as_millis() as libc::c_int,
    )
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
