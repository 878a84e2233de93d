//! The process's descriptor budget: raising `RLIMIT_NOFILE`'s soft limit to the hard one at start,
//! and fitting the per-socket connection limits into what it allows. libzmq 4.3.4 aborts the
//! whole process when an ipc accept fails with `EMFILE` (`ipc_listener.cpp`'s `errno_assert`),
//! and a tcp listener spins a core while it does; zcoord's answer is never to let the sockets'
//! connections reach the limit (see `super::connections`). Arithmetic and two system calls: no
//! ZeroMQ.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors kept free besides the two sockets' connections, for everything else the process
/// opens: stdio, the store (SQLite database, journal and shared memory), the discovery and lock
/// files, libzmq's and tokio's event and poll descriptors (a few per socket and thread), the
/// monitor and ZAP sockets, the model's HTTP connections, the ipc probe, and the connections a
/// flood gets accepted before the transport thread refuses them (one accept per libzmq I/O
/// loop, each refused within that thread's next poll).
pub const RESERVE: u64 = 128;

/// The fewest connections a socket is allowed, however low the descriptor limit: below this the
/// server is not worth running, and the operator is told so.
pub const MIN_PER_SOCKET: u64 = 16;

/// What [`raise`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    /// The soft limit before (`None`: unlimited).
    pub was: Option<u64>,
    /// The soft limit now.
    pub soft: Option<u64>,
    /// The hard limit (the most an unprivileged process can raise the soft one to).
    pub hard: Option<u64>,
}

/// Raises the soft descriptor limit to the hard one. The usual soft limit, 1,024, is what an
/// unrelated `select()` once needed; zcoord polls with epoll and can use the hard limit. Failure
/// leaves the limit as it was (the result says so).
pub fn raise() -> NoFile {
    let before = getrlimit(Resource::Nofile);
    let mut now = before;
    if before.current != before.maximum {
        let wanted = Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        match setrlimit(Resource::Nofile, wanted) {
            Ok(()) => now = getrlimit(Resource::Nofile),
            Err(e) => {
                tracing::warn!(error = %e, "cannot raise the descriptor limit to the hard limit")
            }
        }
    }
    NoFile {
        was: before.current,
        soft: now.current,
        hard: now.maximum,
    }
}

/// The connection limit each of the two sockets gets: `wanted`, or less when the descriptor
/// limit `soft` cannot hold four sockets' worth plus [`RESERVE`]: `(soft - RESERVE) / 4`, but not
/// below [`MIN_PER_SOCKET`] (unless that much was not wanted). `None` for `soft` is unlimited.
///
/// A quarter each, not a half: the other half of what is left is headroom for the connections
/// a flood gets accepted before the transport thread refuses them. With half each, a flood of
/// 400 reconnecting DEALERs under a 256-descriptor limit (64 places a socket, 128 spare) made
/// libzmq abort on `EMFILE` in 2 of 5 full test runs (`tests/connections.rs`).
pub fn per_socket(wanted: u64, soft: Option<u64>) -> u64 {
    let Some(soft) = soft else {
        return wanted;
    };
    let fits = soft.saturating_sub(RESERVE) / 4;
    wanted.min(fits.max(MIN_PER_SOCKET))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_holds_both_sockets_and_the_reserve() {
        assert_eq!(per_socket(1_024, None), 1_024);
        assert_eq!(per_socket(1_024, Some(1_048_576)), 1_024);
        // The usual 1,024 with no higher hard limit: (1,024 - 128) / 4.
        assert_eq!(per_socket(1_024, Some(1_024)), 224);
        assert_eq!(per_socket(1_024, Some(256)), 32);
        assert_eq!(per_socket(10, Some(256)), 10);
        assert_eq!(per_socket(1_024, Some(100)), MIN_PER_SOCKET);
        assert_eq!(per_socket(1_024, Some(4_224)), 1_024);
    }

    #[test]
    fn raising_ends_at_the_hard_limit() {
        let n = raise();
        assert_eq!(n.soft, n.hard);
        assert_eq!(raise(), NoFile { was: n.soft, ..n });
    }
}
