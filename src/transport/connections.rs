//! How many peers each bound socket holds, and the refusal of those over its limit, so that
//! libzmq never runs out of descriptors: libzmq 4.3.4 aborts the process when an ipc accept
//! fails with `EMFILE`, and spins a core on a tcp listener that does. Read from each socket's
//! monitor ([`super::monitor`]) by the transport thread, which also logs the handshakes libzmq
//! fails on its own.
//!
//! Why refuse after the accept rather than stop accepting: `zmq_unbind` is libzmq's only way to
//! stop a listener, and it ends every connection the listener accepted (they are its children;
//! `tests::unbinding_drops_the_connections_already_accepted`), so a full server would drop all
//! its clients, rebind, and fill up again. Instead each
//! connection accepted over the limit is shut down (`shutdown(2)` on a duplicate of its
//! descriptor, taken with `pidfd_getfd(2)`, and libzmq keeps its own descriptor and closes it as
//! usual when it sees the end of stream; when a flood has left no descriptor for a duplicate, on
//! libzmq's descriptor itself, `shut_in_place`). The peer sees its connection closed
//! before the handshake (it may have read the server's greeting); libzmq clients try again after
//! their reconnect interval. The count of
//! live connections is a set of descriptors, from `ACCEPTED` to `DISCONNECTED`, so a duplicate
//! event cannot make it drift; while full, it is checked against the descriptors themselves
//! (at most once a second), in case an engine ended without saying so.
//!
//! What this leaves: peers over the limit cost an accept and a close each, and while a socket is
//! full a newcomer is refused like anyone else; unauthenticated peers hold their place for at most
//! the handshake interval (`ZMQ_HANDSHAKE_IVL`). No JSON-RPC, no business logic.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::net::Shutdown;
use rustix::process::{PidfdFlags, PidfdGetfdFlags};

use super::auth::RefusalLog;
use super::monitor::{self, Event, HandshakeFailure};
use super::stats::Stats;

/// Monitor messages read from one socket per call, so one flooded socket cannot keep the
/// transport thread from everything else; the rest is read on the next turn of its loop.
const MONITOR_BATCH: usize = 256;
/// A full socket is said to accept again once it is this fraction (1/8) of its limit below it.
const RESUME_BELOW: usize = 8;
/// How often, at most, a full socket's count is checked against its descriptors.
const AUDIT_EVERY: Duration = Duration::from_secs(1);

/// The connections of one bound socket.
pub(super) struct Gate {
    /// `rpc` or `pub`, for the logs.
    name: &'static str,
    /// Where its monitor events are read.
    pub monitor: zmq::Socket,
    limit: usize,
    /// Descriptors of the connections counted against the limit.
    live: HashSet<i32>,
    /// Descriptors this gate shut down, until libzmq reports them gone.
    refused: HashSet<i32>,
    /// A failed handshake waiting for the `DISCONNECTED` that always follows it: if that names a
    /// connection this gate refused, the failure was ours and is not logged.
    failure: Option<HandshakeFailure>,
    /// Whether the socket was found full and has not yet come back well below its limit (for
    /// logging the transitions).
    full: bool,
    last_audit: Option<Instant>,
    /// The endpoint its connections were accepted on, as the monitor names it.
    endpoint: Option<String>,
    /// The gauge in [`Stats`] this gate keeps current.
    gauge: fn(&Stats) -> &AtomicU64,
}

/// Both sockets' gates and what they share.
pub(super) struct Connections {
    pub rpc: Gate,
    pub pub_: Gate,
    /// This process, for `pidfd_getfd`. `None` if the kernel refused (older than 5.6, or a
    /// seccomp filter): connections are then counted but not refused, and a warning says so.
    me: Option<OwnedFd>,
    /// One line a second at most for failed handshakes, and for refusals over the limit.
    handshakes: RefusalLog,
    refusals: RefusalLog,
    stats: Arc<Stats>,
}

impl Connections {
    /// Watches `router` and `publisher` (in `ctx`; call it before they bind), each allowed
    /// `limit` connections.
    pub fn watch(
        ctx: &zmq::Context,
        router: &zmq::Socket,
        publisher: &zmq::Socket,
        limit: usize,
        stats: Arc<Stats>,
    ) -> Result<Connections, zmq::Error> {
        let me = rustix::process::pidfd_open(rustix::process::getpid(), PidfdFlags::empty())
            .inspect_err(|e| {
                tracing::warn!(error = %e, "cannot open a pidfd: connections over the limit will be counted but not refused")
            })
            .ok();
        let gate = |name, sock, gauge| -> Result<Gate, zmq::Error> {
            Ok(Gate {
                name,
                monitor: monitor::watch(ctx, sock)?,
                limit,
                live: HashSet::new(),
                refused: HashSet::new(),
                failure: None,
                full: false,
                last_audit: None,
                endpoint: None,
                gauge,
            })
        };
        Ok(Connections {
            rpc: gate("rpc", router, |s: &Stats| &s.connections_rpc)?,
            pub_: gate("pub", publisher, |s: &Stats| &s.connections_pub)?,
            me,
            handshakes: RefusalLog::default(),
            refusals: RefusalLog::default(),
            stats,
        })
    }

    /// Reads what the monitors that polled readable (`[rpc, pub]`) have to say.
    pub fn read(&mut self, ready: [bool; 2]) {
        if ready[0] {
            self.read_gate(true);
        }
        if ready[1] {
            self.read_gate(false);
        }
    }

    fn read_gate(&mut self, rpc: bool) {
        for _ in 0..MONITOR_BATCH {
            let gate = if rpc { &self.rpc } else { &self.pub_ };
            let Ok(frames) = gate.monitor.recv_multipart(zmq::DONTWAIT) else {
                return;
            };
            let Some(event) = monitor::decode(&frames) else {
                continue;
            };
            let now = Instant::now();
            let Connections {
                rpc: rpc_gate,
                pub_,
                me,
                handshakes,
                refusals,
                stats,
            } = self;
            let gate = if rpc { rpc_gate } else { pub_ };
            match event {
                Event::Accepted { fd, endpoint } => {
                    gate.accepted(fd, &endpoint, me.as_ref(), refusals, stats, now)
                }
                Event::Disconnected { fd } => gate.disconnected(fd, handshakes, stats, now),
                Event::Failed(f) => {
                    // A second failure before a DISCONNECTED cannot come from one engine: log
                    // the first rather than lose it.
                    if let Some(earlier) = gate.failure.replace(f) {
                        log_failure(&earlier, handshakes, now);
                    }
                }
            }
        }
    }
}

impl Connections {
    /// Shuts down the PUB connection with the most bytes its subscriber has not read (its
    /// socket's send queue: full for a subscriber that stopped reading, near empty for one that
    /// keeps up), which frees what libzmq holds for it alone. Returns those bytes, or `None` when
    /// no connection could be looked at. Called when libzmq holds more for subscribers than the
    /// server allows (`Server::bound_pub_queues`).
    pub fn evict_furthest_behind(&mut self) -> Option<usize> {
        let me = self.me.as_ref()?;
        let gate = &mut self.pub_;
        let endpoint = gate.endpoint.clone()?;
        let (fd, unread) = gate
            .live
            .iter()
            .filter_map(|&fd| {
                let dup = rustix::process::pidfd_getfd(me, fd, PidfdGetfdFlags::empty()).ok()?;
                Some((fd, unsent_bytes(&dup).ok()?))
            })
            .max_by_key(|&(_, unread)| unread)?;
        match shut(me, fd, &endpoint) {
            Ok(true) => {
                gate.refused.insert(fd);
                Stats::bump(&self.stats.subscribers_evicted);
                Some(unread)
            }
            _ => None,
        }
    }
}

/// Bytes written to a socket that its peer has not read yet (`SIOCOUTQ`; for a unix socket,
/// what waits in the peer's receive queue).
fn unsent_bytes(fd: impl AsFd) -> io::Result<usize> {
    /// `SIOCOUTQ`, alias `TIOCOUTQ`, on Linux.
    const SIOCOUTQ: rustix::ioctl::Opcode = 0x5411;
    // SAFETY: SIOCOUTQ writes one `c_int` through the pointer `Getter` passes, and reads
    // nothing else.
    let n = unsafe {
        rustix::ioctl::ioctl(
            fd,
            rustix::ioctl::Getter::<SIOCOUTQ, std::os::raw::c_int>::new(),
        )
    }?;
    Ok(usize::try_from(n).unwrap_or(0))
}

impl Gate {
    fn accepted(
        &mut self,
        fd: i32,
        endpoint: &str,
        me: Option<&OwnedFd>,
        log: &mut RefusalLog,
        stats: &Stats,
        now: Instant,
    ) {
        if self.endpoint.is_none() {
            self.endpoint = Some(endpoint.to_owned());
        }
        if self.live.len() >= self.limit {
            self.audit(me, endpoint, now);
        }
        if self.live.contains(&fd) || self.live.len() < self.limit {
            // Room for it; or already counted (its earlier engine ended without a DISCONNECTED
            // and this is the descriptor reused), and the set keeps the count right.
            self.live.insert(fd);
            self.refused.remove(&fd);
            (self.gauge)(stats).store(self.live.len() as u64, Ordering::Relaxed);
            return;
        }
        let first = !std::mem::replace(&mut self.full, true);
        match me.map(|me| shut(me, fd, endpoint)) {
            Some(Ok(true)) => {
                Stats::bump(&stats.connections_refused);
                self.refused.insert(fd);
            }
            // Not the connection the event named any more (it ended and the descriptor was
            // reused): nothing to refuse.
            Some(Ok(false)) => return,
            // Still open, so still counted: the count must never say fewer than there are.
            Some(Err(e)) => {
                tracing::warn!(socket = self.name, error = %e, "cannot refuse a connection over the limit");
                self.live.insert(fd);
            }
            None => {
                self.live.insert(fd);
            }
        }
        (self.gauge)(stats).store(self.live.len() as u64, Ordering::Relaxed);
        if let Some(suppressed) = log.admit(now) {
            tracing::warn!(
                socket = self.name,
                limit = self.limit,
                first,
                suppressed,
                "connection limit reached: refusing new connections (libzmq clients retry)"
            );
        }
    }

    fn disconnected(&mut self, fd: i32, log: &mut RefusalLog, stats: &Stats, now: Instant) {
        let ours = self.refused.remove(&fd);
        if let Some(f) = self.failure.take() {
            if !ours {
                log_failure(&f, log, now);
            }
        }
        if self.live.remove(&fd) {
            (self.gauge)(stats).store(self.live.len() as u64, Ordering::Relaxed);
        }
        // Said once the socket has room to spare, so a flood hovering at the limit does not
        // log every connection that comes and goes.
        if self.full && self.live.len() <= self.limit - self.limit / RESUME_BELOW {
            self.full = false;
            tracing::info!(
                socket = self.name,
                connections = self.live.len(),
                limit = self.limit,
                "below the connection limit again: accepting"
            );
        }
    }

    /// Drops from the count the descriptors that no longer hold a connection on this socket's
    /// `endpoint` (ended without a `DISCONNECTED`): at most once per [`AUDIT_EVERY`].
    fn audit(&mut self, me: Option<&OwnedFd>, endpoint: &str, now: Instant) {
        let Some(me) = me else { return };
        if self
            .last_audit
            .is_some_and(|t| now.duration_since(t) < AUDIT_EVERY)
        {
            return;
        }
        self.last_audit = Some(now);
        let before = self.live.len();
        // Kept when the check itself fails (out of descriptors, say): only what is known gone
        // leaves the count.
        self.live
            .retain(|&fd| !matches!(endpoint_of(me, fd), Ok(e) if e.as_deref() != Some(endpoint)));
        if self.live.len() < before {
            tracing::debug!(
                socket = self.name,
                stale = before - self.live.len(),
                "connections gone without a disconnect event"
            );
        }
    }
}

fn log_failure(f: &HandshakeFailure, log: &mut RefusalLog, now: Instant) {
    if let Some(suppressed) = log.admit(now) {
        tracing::warn!(peer = "unknown", endpoint = %f.endpoint, reason = %f.why, suppressed, "connection refused at the handshake (libzmq does not report this peer's address)");
    }
}

/// Shuts down the connection on descriptor `fd` of this process if it is still one accepted on
/// `endpoint`; false if the descriptor now holds something else.
fn shut(me: &OwnedFd, fd: i32, endpoint: &str) -> io::Result<bool> {
    let dup = match rustix::process::pidfd_getfd(me, fd, PidfdGetfdFlags::empty()) {
        Ok(dup) => dup,
        Err(rustix::io::Errno::MFILE) => return shut_in_place(fd, endpoint),
        Err(e) => return Err(e.into()),
    };
    if local_endpoint(&dup)?.as_deref() != Some(endpoint) {
        return Ok(false);
    }
    rustix::net::shutdown(&dup, Shutdown::Both)?;
    Ok(true)
}

/// [`shut`] when the process has no descriptor left for a duplicate: exactly when a flood has
/// filled the table faster than refusals free it, so failing here would leave every descriptor
/// held and the server refusing nobody, for good (seen once in CI: libzmq's I/O thread
/// spinning on its failing accepts, a client's `connect` waiting on the full backlog). The
/// connection is checked and shut down through libzmq's own descriptor instead.
fn shut_in_place(fd: i32, endpoint: &str) -> io::Result<bool> {
    // SAFETY: a descriptor libzmq owns and may close at any moment, used for three system calls
    // that touch no memory of ours: closed, they fail with `EBADF`; reused for another socket
    // in between, they find another endpoint, or no peer (a listener), and do nothing; the one
    // change made, `shutdown`, applies to a connection on this endpoint only, which is over
    // the limit while the socket is full.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    if local_endpoint(fd)?.as_deref() != Some(endpoint) {
        return Ok(false);
    }
    // A connection, not the listener (which has no peer and is never shut).
    rustix::net::getpeername(fd)?;
    rustix::net::shutdown(fd, Shutdown::Both)?;
    Ok(true)
}

/// The local address of descriptor `fd` of this process, as libzmq names an endpoint; `None`
/// when `fd` is closed or not a socket.
fn endpoint_of(me: &OwnedFd, fd: i32) -> io::Result<Option<String>> {
    match rustix::process::pidfd_getfd(me, fd, PidfdGetfdFlags::empty()) {
        Ok(dup) => local_endpoint(&dup),
        Err(rustix::io::Errno::BADF) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `tcp://127.0.0.1:5555`, `tcp://[::1]:5555`, `ipc:///path`; `None` for anything else
/// (including what is not a socket).
fn local_endpoint(fd: impl AsFd) -> io::Result<Option<String>> {
    let addr = match rustix::net::getsockname(fd) {
        Ok(a) => a,
        Err(rustix::io::Errno::NOTSOCK) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if let Ok(ip) = std::net::SocketAddr::try_from(addr.clone()) {
        return Ok(Some(format!("tcp://{ip}")));
    }
    Ok(rustix::net::SocketAddrUnix::try_from(addr)
        .ok()
        .and_then(|u| {
            u.path_bytes()
                .map(|p| String::from_utf8_lossy(p).into_owned())
        })
        .map(|p| format!("ipc://{p}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn me() -> OwnedFd {
        rustix::process::pidfd_open(rustix::process::getpid(), PidfdFlags::empty()).unwrap()
    }

    /// The refusal of a connection over the limit when the descriptor table is full, as a flood
    /// leaves it: in a child process, since it lowers the process's descriptor limit.
    #[test]
    fn a_connection_is_shut_with_no_descriptor_to_spare() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "transport::connections::tests::shut_with_no_descriptor_to_spare_child",
                "--ignored",
                "--nocapture",
            ])
            .env("ZCOORD_TEST_CHILD", "1")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.contains("1 passed"),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Run by [`a_connection_is_shut_with_no_descriptor_to_spare`] only.
    #[test]
    #[ignore = "lowers the process's descriptor limit: run in a child by the test above"]
    fn shut_with_no_descriptor_to_spare_child() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        use std::os::unix::net::{UnixListener, UnixStream};
        assert!(
            std::env::var_os("ZCOORD_TEST_CHILD").is_some(),
            "run by a_connection_is_shut_with_no_descriptor_to_spare"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rpc");
        let endpoint = format!("ipc://{}", path.display());
        let listener = UnixListener::bind(&path).unwrap();
        let mut client = UnixStream::connect(&path).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let me = me();
        // Fill the table: lower the limit to what is open now, plus a few, and take those.
        let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        let limit = rustix::process::Rlimit {
            current: Some(open + 4),
            maximum: rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum,
        };
        rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).unwrap();
        let mut held = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            held.push(f);
        }
        assert!(
            matches!(
                rustix::process::pidfd_getfd(&me, accepted.as_raw_fd(), PidfdGetfdFlags::empty()),
                Err(rustix::io::Errno::MFILE)
            ),
            "the table is full"
        );
        assert!(shut(&me, accepted.as_raw_fd(), &endpoint).unwrap());
        // The peer sees the end of the stream; the descriptor is still the owner's to close.
        let mut buf = [0u8; 8];
        assert_eq!(client.read(&mut buf).unwrap(), 0);
        // The listener, which has no peer, is never shut.
        assert!(shut(&me, listener.as_raw_fd(), &endpoint).is_err());
        drop(held);
    }

    /// Why full sockets are not unbound: libzmq 4.3.4 ends every connection the unbound
    /// listener had accepted (its sessions are the listener's children, `own.cpp`).
    #[test]
    fn unbinding_drops_the_connections_already_accepted() {
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.set_linger(0).unwrap();
        router.bind("tcp://127.0.0.1:0").unwrap();
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        let dealer = ctx.socket(zmq::DEALER).unwrap();
        dealer.set_linger(0).unwrap();
        dealer
            .monitor(
                "inproc://unbind-test",
                zmq::SocketEvent::DISCONNECTED as i32,
            )
            .unwrap();
        let events = ctx.socket(zmq::PAIR).unwrap();
        events.connect("inproc://unbind-test").unwrap();
        dealer.connect(&endpoint).unwrap();
        dealer.send("hello", 0).unwrap();
        router.set_rcvtimeo(10_000).unwrap();
        assert_eq!(router.recv_multipart(0).unwrap()[1], b"hello");

        router.unbind(&endpoint).unwrap();
        // The ROUTER finishes ending its pipes only when called into, as the transport
        // thread's poll does all the time.
        let deadline = Instant::now() + Duration::from_secs(10);
        let head = loop {
            assert!(
                Instant::now() < deadline,
                "the dealer was never disconnected"
            );
            let _ = router.poll(zmq::POLLIN, 10);
            if let Ok(head) = events.recv_bytes(zmq::DONTWAIT) {
                break head;
            }
        };
        let event = u16::from_ne_bytes([head[0], head[1]]);
        assert_eq!(event, zmq::SocketEvent::DISCONNECTED as u16);
    }

    #[test]
    fn a_connection_is_named_as_libzmq_names_its_endpoint() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (conn, _) = listener.accept().unwrap();
        let want = format!("tcp://{}", listener.local_addr().unwrap());
        assert_eq!(local_endpoint(&conn).unwrap(), Some(want));
        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(local_endpoint(&file).unwrap(), None, "not a socket");
    }

    #[test]
    fn shutting_a_duplicate_ends_the_connection_for_its_owner() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (conn, _) = listener.accept().unwrap();
        let me = me();
        assert!(!shut(&me, conn.as_raw_fd(), "tcp://127.0.0.1:1").unwrap());
        assert!(shut(&me, conn.as_raw_fd(), &endpoint).unwrap());
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(client.read(&mut [0; 8]).unwrap(), 0, "end of stream");
        drop(conn);
    }
}
