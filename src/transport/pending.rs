//! Per-peer and server-wide accounting of requests handed to the core and not yet answered, in
//! requests and in bytes, so one peer cannot fill the queues every peer shares and all of them
//! together cannot fill the server's memory. Each request carries a [`Slot`] holding its place
//! and its bytes: the decoded request while it waits for the core, then its reply while that
//! waits for the store (`Slot::resize`) and then in libzmq's queue, until libzmq has written it
//! to the connection (`held.rs`). Dropping the slot gives both back, wherever the request ends
//! (answered, refused, dropped with a full queue, abandoned at shutdown): the counts cannot
//! leak.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// One peer's requests and bytes in flight.
#[derive(Debug, Default)]
struct PeerCount {
    requests: AtomicUsize,
    bytes: AtomicUsize,
}

/// One request's place in its peer's count and its bytes in both counts.
#[derive(Debug)]
pub struct Slot {
    peer: Arc<PeerCount>,
    total: Arc<AtomicUsize>,
    bytes: usize,
}

impl Slot {
    /// What this request holds now: the decoded request at first, its reply once answered.
    pub fn resize(&mut self, bytes: usize) {
        if bytes >= self.bytes {
            let more = bytes - self.bytes;
            self.peer.bytes.fetch_add(more, Ordering::AcqRel);
            self.total.fetch_add(more, Ordering::AcqRel);
        } else {
            let less = self.bytes - bytes;
            self.peer.bytes.fetch_sub(less, Ordering::AcqRel);
            self.total.fetch_sub(less, Ordering::AcqRel);
        }
        self.bytes = bytes;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.peer.requests.fetch_sub(1, Ordering::AcqRel);
        self.peer.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        self.total.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Why a request got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// This peer has its limit of requests, or of bytes, in flight: `too_many_pending`.
    Peer,
    /// The server holds its limit of bytes for all peers together: `server_busy`.
    Server,
}

/// The bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests one peer may have in flight.
    pub requests: usize,
    /// Bytes one peer's requests and replies may hold in flight.
    pub peer_bytes: usize,
    /// Bytes all peers' requests and replies may hold in flight together.
    pub total_bytes: usize,
}

/// The counts, owned by the transport thread; slots travel with the requests.
#[derive(Debug)]
pub struct Pending {
    limits: Limits,
    peers: HashMap<Vec<u8>, Arc<PeerCount>>,
    total: Arc<AtomicUsize>,
    /// Peers tracked before the next sweep; doubles past busy peers, so sweeps stay amortised.
    sweep_at: usize,
}

/// Peers tracked before the idle ones are first forgotten.
const SWEEP_AT: usize = 1_024;

impl Pending {
    pub fn new(limits: Limits) -> Self {
        Pending {
            limits: Limits {
                requests: limits.requests.max(1),
                ..limits
            },
            peers: HashMap::new(),
            total: Arc::default(),
            sweep_at: SWEEP_AT,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A slot for one more request of `bytes` from `peer`. A peer with nothing in flight always
    /// gets one if the server has room, however large: its request must be answerable.
    pub fn take(&mut self, peer: &[u8], bytes: usize) -> Result<Slot, Refused> {
        if self.peers.len() >= self.sweep_at && !self.peers.contains_key(peer) {
            // Forget peers with nothing in flight; their counters are not shared with any slot.
            self.peers.retain(|_, n| Arc::strong_count(n) > 1);
            self.sweep_at = (self.peers.len() * 2).max(SWEEP_AT);
        }
        // A known peer's key is not copied again: this runs for every request.
        let count = match self.peers.get(peer) {
            Some(count) => count,
            None => self.peers.entry(peer.to_vec()).or_default(),
        };
        let requests = count.requests.load(Ordering::Acquire);
        let peer_bytes = count.bytes.load(Ordering::Acquire);
        if requests >= self.limits.requests
            || (requests > 0 && peer_bytes + bytes > self.limits.peer_bytes)
        {
            return Err(Refused::Peer);
        }
        let total = self.total.load(Ordering::Acquire);
        if total > 0 && total + bytes > self.limits.total_bytes {
            return Err(Refused::Server);
        }
        count.requests.fetch_add(1, Ordering::AcqRel);
        count.bytes.fetch_add(bytes, Ordering::AcqRel);
        self.total.fetch_add(bytes, Ordering::AcqRel);
        Ok(Slot {
            peer: count.clone(),
            total: self.total.clone(),
            bytes,
        })
    }

    /// Requests `peer` has in flight.
    #[cfg(test)]
    fn waiting(&self, peer: &[u8]) -> usize {
        self.peers
            .get(peer)
            .map_or(0, |n| n.requests.load(Ordering::Acquire))
    }

    /// Peers currently tracked.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.peers.len()
    }

    /// Bytes in flight, all peers together.
    #[cfg(test)]
    fn total_bytes(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(requests: usize) -> Pending {
        Pending::new(Limits {
            requests,
            peer_bytes: 1_000,
            total_bytes: 3_000,
        })
    }

    #[test]
    fn a_peer_is_held_to_its_limit_and_slots_come_back_when_dropped() {
        let mut p = pending(2);
        let a = p.take(b"a", 1).expect("first");
        let b = p.take(b"a", 1).expect("second");
        assert_eq!(p.take(b"a", 1).unwrap_err(), Refused::Peer, "third");
        assert!(p.take(b"other", 1).is_ok(), "other peers are not affected");
        drop(a);
        assert_eq!(p.waiting(b"a"), 1);
        let c = p.take(b"a", 1).expect("a slot came back");
        drop((b, c));
        assert_eq!(p.waiting(b"a"), 0);
    }

    #[test]
    fn bytes_in_flight_are_bounded_per_peer_and_for_the_server() {
        let mut p = pending(64);
        let mut a = p.take(b"a", 600).expect("fits");
        assert_eq!(p.take(b"a", 600).unwrap_err(), Refused::Peer, "peer bytes");
        // The answer replaces the request in the count.
        a.resize(100);
        let a2 = p.take(b"a", 600).expect("fits again");
        assert_eq!(p.total_bytes(), 700);
        // A peer with nothing in flight gets a slot however large, while the server has room.
        let big = p.take(b"b", 2_100).expect("alone");
        assert_eq!(
            p.take(b"c", 300).unwrap_err(),
            Refused::Server,
            "server bytes"
        );
        drop(big);
        let c = p.take(b"c", 300).expect("room again");
        drop((a, a2, c));
        assert_eq!(p.total_bytes(), 0);
    }

    #[test]
    fn idle_peers_are_forgotten_but_busy_ones_kept() {
        let mut p = pending(4);
        let held = p.take(b"busy", 1).expect("slot");
        // Fill up to the sweep threshold (the busy peer is one of them).
        for i in 1..SWEEP_AT {
            drop(p.take(format!("peer-{i}").as_bytes(), 1));
        }
        assert_eq!(p.tracked(), SWEEP_AT);
        // The next new peer sweeps: only the busy one and the newcomer remain.
        let _new = p.take(b"new", 1).expect("slot");
        assert_eq!(p.tracked(), 2);
        assert_eq!(p.waiting(b"busy"), 1);
        drop(held);
        assert_eq!(p.waiting(b"busy"), 0);
    }
}
