//! The sending side's handle: events straight to the shared PUB socket (`publisher.rs`), replies
//! straight to the shared ROUTER (`replier.rs`), from whichever thread releases them. Never
//! blocks and never refuses: a subscriber or a client at its high-water mark misses what does
//! not fit, counted. Wakes the transport thread only for what it alone does: reading what the
//! sockets' descriptors may no longer announce, disconnecting subscribers that hold too much,
//! and draining and closing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::framing::Route;
use super::held::PubCharge;
use super::pace::event_cost;
use super::pending::Slot;
use super::publisher::Publisher;
use super::replier::Replier;
use super::stats::Stats;

/// One thing to send.
#[derive(Debug)]
pub enum Outbound {
    /// `slot` is the request's place in its peer's pending count: it travels with the reply
    /// until libzmq has written it (or dropped it), so replies waiting for the store or in
    /// libzmq's queue count against the peer that asked.
    Reply {
        route: Route,
        body: Vec<u8>,
        slot: Option<Slot>,
    },
    /// Frames shared with the replay ring: sending an event copies no bytes. `seq` is the
    /// event's number, which welcomes report as the point their subscription is covered from.
    /// `charge` (set when it is sent) counts it on its way to subscribers.
    Event {
        seq: u64,
        key: Arc<str>,
        body: Arc<[u8]>,
        charge: Option<PubCharge>,
    },
}

impl Outbound {
    /// The bytes this message holds.
    pub fn size(&self) -> usize {
        match self {
            Outbound::Reply { body, route, .. } => body.len() + route.identity.len(),
            Outbound::Event { key, body, .. } => key.len() + body.len(),
        }
    }
}

/// Shared between the sender side and the transport thread.
#[derive(Debug, Default)]
pub struct Signals {
    /// The transport thread is awake (it clears this, then looks at its sockets once more,
    /// before it sleeps) or a wake-up is already in flight: either way a sender need not wake
    /// it.
    pub wake_pending: AtomicBool,
    /// Stop taking requests: answer new ones with `shutting_down`.
    pub draining: AtomicBool,
    /// Close the sockets and exit.
    pub closing: AtomicBool,
}

pub struct OutboundSender {
    /// Where events go, without the transport thread.
    publisher: Arc<Publisher>,
    /// Where replies go, without the transport thread.
    replier: Arc<Replier>,
    /// Bytes libzmq may hold for subscribers (`TransportConfig::pub_held_bytes`): past it the
    /// transport thread is woken to disconnect the subscriber furthest behind.
    pub_held_limit: u64,
    /// The connected end of the wake-up PAIR. A libzmq socket may move between threads but not be
    /// used by two at once, hence the mutex; it is only taken for one non-blocking send.
    waker: Mutex<Option<zmq::Socket>>,
    signals: Arc<Signals>,
    stats: Arc<Stats>,
}

impl OutboundSender {
    pub(super) fn new(
        publisher: Arc<Publisher>,
        replier: Arc<Replier>,
        pub_held_limit: u64,
        waker: zmq::Socket,
        signals: Arc<Signals>,
        stats: Arc<Stats>,
    ) -> Self {
        OutboundSender {
            publisher,
            replier,
            pub_held_limit,
            waker: Mutex::new(Some(waker)),
            signals,
            stats,
        }
    }

    /// Hands `msg` to libzmq at once. Neither socket waits: a subscriber at its high-water mark
    /// misses an event (PROTOCOL §9), and a reply to a client that is gone or does not read is
    /// dropped and counted. Call [`OutboundSender::settle`] after a round of sends.
    pub fn send(&self, msg: Outbound) {
        match msg {
            Outbound::Event {
                seq,
                key,
                body,
                charge,
            } => self.publish(seq, &key, body, charge),
            Outbound::Reply { route, body, slot } => self.replier.reply(&route, body, slot),
        }
    }

    fn publish(&self, seq: u64, key: &str, body: Arc<[u8]>, charge: Option<PubCharge>) {
        // From here on the event counts as on its way to subscribers (`pace.rs`).
        let charge = charge.unwrap_or_else(|| {
            let subscribers = self.stats.connections_pub.load(Ordering::Relaxed);
            PubCharge::new(&self.stats, event_cost(key.len(), body.len(), subscribers))
        });
        self.publisher.publish(seq, key.as_bytes(), body, charge);
        if self.stats.pub_bytes_held.load(Ordering::Relaxed) > self.pub_held_limit {
            // Over the bound: the transport thread disconnects the one furthest behind.
            self.wake();
        }
    }

    /// After a round of sends: wakes the transport thread when a request or a subscription
    /// waits that its socket's descriptor may no longer announce (`replier.rs`,
    /// `publisher.rs`), or when model output has started waiting for subscribers (the thread
    /// then times the pause, `pace.rs`).
    pub fn settle(&self) {
        let subscriptions = self.publisher.settle();
        let requests = self.replier.settle();
        if subscriptions || requests || self.stats.pace.is_paused() {
            self.wake();
        }
    }

    pub fn drain(&self) {
        self.signals.draining.store(true, Ordering::SeqCst);
        self.force_wake();
    }

    pub fn close(&self) {
        self.signals.closing.store(true, Ordering::SeqCst);
        self.force_wake();
    }

    /// Closes the wake-up socket and both shared sockets; the context cannot terminate while
    /// any is open.
    pub(super) fn close_sockets(&self) {
        if let Ok(mut w) = self.waker.lock() {
            w.take();
        }
        self.publisher.close();
        self.replier.close();
    }

    fn wake(&self) {
        if !self.signals.wake_pending.swap(true, Ordering::SeqCst) {
            self.force_wake();
        }
    }

    fn force_wake(&self) {
        if let Ok(guard) = self.waker.lock() {
            if let Some(sock) = guard.as_ref() {
                // EAGAIN means wake-ups are already queued: the thread will look anyway.
                let _ = sock.send(&[][..], zmq::DONTWAIT);
            }
        }
    }
}
