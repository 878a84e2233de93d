//! Counters of what the transport dropped or refused, shared with the core actor for
//! `instance.info`, and the sockets' connection counts. Atomics, because the transport thread
//! and the actor both touch them.

use std::sync::atomic::{AtomicU64, Ordering};

use super::pace::Pace;
use crate::protocol::methods::{DropCounters, TransportInfo};

#[derive(Debug, Default)]
pub struct Stats {
    pub replies_dropped: AtomicU64,
    pub outbound_dropped: AtomicU64,
    pub requests_refused_busy: AtomicU64,
    pub requests_dropped: AtomicU64,
    /// Live connections on the ROUTER and the PUB (see `connections.rs`).
    pub connections_rpc: AtomicU64,
    pub connections_pub: AtomicU64,
    /// Connections shut down at accept because their socket was at its limit.
    pub connections_refused: AtomicU64,
    /// Bytes of events on their way to subscribers: held by libzmq for subscribers not yet sent
    /// them, with a queue entry per subscriber per frame (a gauge: `held::PubCharge` adds when
    /// an event is released, and takes back when libzmq frees it or it is dropped unsent).
    pub pub_bytes_held: AtomicU64,
    /// Whether model output waits for that gauge to come down.
    pub pace: Pace,
    /// Subscribers disconnected because libzmq held more than allowed for them all.
    pub subscribers_evicted: AtomicU64,
}

impl Stats {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The gauges `instance.info` shows under `transport`.
    pub fn gauges(&self) -> TransportInfo {
        TransportInfo {
            connections_rpc: self.connections_rpc.load(Ordering::Relaxed),
            connections_pub: self.connections_pub.load(Ordering::Relaxed),
            connections_refused: self.connections_refused.load(Ordering::Relaxed),
            pub_bytes_held: self.pub_bytes_held.load(Ordering::Relaxed),
            subscribers_evicted: self.subscribers_evicted.load(Ordering::Relaxed),
        }
    }

    pub fn snapshot(&self) -> DropCounters {
        DropCounters {
            replies_dropped: self.replies_dropped.load(Ordering::Relaxed),
            outbound_dropped: self.outbound_dropped.load(Ordering::Relaxed),
            requests_refused_busy: self.requests_refused_busy.load(Ordering::Relaxed),
            requests_dropped: self.requests_dropped.load(Ordering::Relaxed),
        }
    }
}
