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
//! broken. So every connection to a peer gets keepalive probes and a user timeout
//! ([`PEER_SILENCE`]): a peer that acknowledges nothing for that long is gone, its connection
//! fails, and the line above follows.
//!
//! The connections themselves are made here ([`connect`]) rather than by timely, whose start-up
//! polls once a second: a cluster took a second to form, and every restart paid it again.

use std::net::{TcpListener, TcpStream};
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

    /// Every peer connected: the deadline no longer applies.
    pub fn formed(&self) {
        self.formed.store(true, Ordering::SeqCst);
    }
}

/// How long a peer may acknowledge nothing, and answer no keepalive probe, before it is gone.
/// Well inside the 10 s in which the rest of the cluster must stop.
pub const PEER_SILENCE: Duration = Duration::from_secs(6);

/// How long to wait before dialling a peer again, or polling for one to dial in. timely's own
/// start-up waits a whole second each time, so a cluster took a second to form, which every
/// restart paid again.
const RETRY: Duration = Duration::from_millis(10);

/// Connects this process to every other one the way timely's start-up does, so timely's
/// network threads can take the sockets over: it dials the processes before it and sends its
/// index (a big-endian u64), and accepts the ones after it, which say theirs. Returns one
/// socket per process, `None` at its own index, each with keepalive probes and a user timeout
/// of [`PEER_SILENCE`], so a peer that goes silent later fails its connection.
///
/// It returns once every peer is connected; the [`ClusterWatch`] deadline ends the process if
/// that takes too long. A connection that does not say a valid index within a second (a port
/// scanner, a health check at the wrong port) is closed and ignored.
pub fn connect(hosts: &[String], process: usize) -> std::io::Result<Vec<Option<TcpStream>>> {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let n = hosts.len();
    let listeners = hosts[process]
        .split_whitespace()
        .map(|a| {
            let l = TcpListener::bind(a)?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut sockets: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    let ready = |s: &TcpStream| -> std::io::Result<()> {
        s.set_nodelay(true)?;
        keep_alive(s.as_raw_fd())
    };
    let mut waiting = n - 1;
    while waiting > 0 {
        let mut progressed = false;
        for (peer, host) in hosts.iter().enumerate().take(process) {
            if sockets[peer].is_some() {
                continue;
            }
            let Some(mut stream) = dial(host) else {
                continue;
            };
            ready(&stream)?;
            stream.write_all(&(process as u64).to_be_bytes())?;
            tracing::debug!(peer, %host, "connected to a cluster peer");
            sockets[peer] = Some(stream);
            waiting -= 1;
            progressed = true;
        }
        for listener in &listeners {
            let mut stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            progressed = true;
            stream.set_nonblocking(false)?;
            stream.set_read_timeout(Some(Duration::from_secs(1)))?;
            let mut index = [0u8; 8];
            let peer = match stream.read_exact(&mut index) {
                Ok(()) => u64::from_be_bytes(index) as usize,
                Err(e) => {
                    tracing::warn!(error = %e, "a connection to the cluster port said no process index; closed");
                    continue;
                }
            };
            if peer <= process || peer >= n || sockets[peer].is_some() {
                tracing::warn!(peer, "a connection to the cluster port gave an index no peer of this process has; closed");
                continue;
            }
            stream.set_read_timeout(None)?;
            ready(&stream)?;
            tracing::debug!(peer, "a cluster peer connected");
            sockets[peer] = Some(stream);
            waiting -= 1;
        }
        if !progressed {
            std::thread::sleep(RETRY);
        }
    }
    Ok(sockets)
}

/// A connection to `host`, or None if it does not resolve or answer yet.
fn dial(host: &str) -> Option<TcpStream> {
    use std::net::ToSocketAddrs;
    // Resolved each time: a peer's name may only appear once it is up (a StatefulSet's pods).
    let addrs = host.to_socket_addrs().ok()?;
    addrs
        .into_iter()
        .find_map(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).ok())
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
