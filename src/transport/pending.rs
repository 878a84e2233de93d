//! Per-peer accounting of requests handed to the core and not yet answered by it, so one peer
//! cannot fill the queue every peer shares. Each request carries a [`Slot`] that gives its place
//! back when dropped, after the core has answered it or wherever else it ends (refused, dropped
//! with a full queue, abandoned at shutdown): the count cannot leak.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// One request's place in its peer's count.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The counts, owned by the transport thread; slots travel with the requests.
#[derive(Debug)]
pub struct Pending {
    limit: usize,
    peers: HashMap<Vec<u8>, Arc<AtomicUsize>>,
    /// Peers tracked before the next sweep; doubles past busy peers, so sweeps stay amortised.
    sweep_at: usize,
}

/// Peers tracked before the idle ones are first forgotten.
const SWEEP_AT: usize = 1_024;

impl Pending {
    pub fn new(limit: usize) -> Self {
        Pending {
            limit: limit.max(1),
            peers: HashMap::new(),
            sweep_at: SWEEP_AT,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A slot for one more request from `peer`, or `None` when it already has `limit` waiting.
    pub fn take(&mut self, peer: &[u8]) -> Option<Slot> {
        if self.peers.len() >= self.sweep_at && !self.peers.contains_key(peer) {
            // Forget peers with nothing waiting; their counters are not shared with any slot.
            self.peers.retain(|_, n| Arc::strong_count(n) > 1);
            self.sweep_at = (self.peers.len() * 2).max(SWEEP_AT);
        }
        // A known peer's key is not copied again: this runs for every request.
        let count = match self.peers.get(peer) {
            Some(count) => count,
            None => self.peers.entry(peer.to_vec()).or_default(),
        };
        if count.load(Ordering::Acquire) >= self.limit {
            return None;
        }
        count.fetch_add(1, Ordering::AcqRel);
        Some(Slot(count.clone()))
    }

    /// Requests `peer` has waiting.
    #[cfg(test)]
    fn waiting(&self, peer: &[u8]) -> usize {
        self.peers
            .get(peer)
            .map_or(0, |n| n.load(Ordering::Acquire))
    }

    /// Peers currently tracked.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_held_to_its_limit_and_slots_come_back_when_dropped() {
        let mut p = Pending::new(2);
        let a = p.take(b"a").expect("first");
        let b = p.take(b"a").expect("second");
        assert!(p.take(b"a").is_none(), "third is over the limit");
        assert!(p.take(b"other").is_some(), "other peers are not affected");
        drop(a);
        assert_eq!(p.waiting(b"a"), 1);
        let c = p.take(b"a").expect("a slot came back");
        drop((b, c));
        assert_eq!(p.waiting(b"a"), 0);
    }

    #[test]
    fn idle_peers_are_forgotten_but_busy_ones_kept() {
        let mut p = Pending::new(4);
        let held = p.take(b"busy").expect("slot");
        // Fill up to the sweep threshold (the busy peer is one of them).
        for i in 1..SWEEP_AT {
            drop(p.take(format!("peer-{i}").as_bytes()));
        }
        assert_eq!(p.tracked(), SWEEP_AT);
        // The next new peer sweeps: only the busy one and the newcomer remain.
        let _new = p.take(b"new").expect("slot");
        assert_eq!(p.tracked(), 2);
        assert_eq!(p.waiting(b"busy"), 1);
        drop(held);
        assert_eq!(p.waiting(b"busy"), 0);
    }
}
