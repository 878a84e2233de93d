//! The tokio side's handle for sending: events straight to the shared PUB socket (`publisher`),
//! replies through a bounded queue to the transport thread plus an `inproc://` wake-up, coalesced
//! so a burst of replies costs one wake-up. Never blocks: when the queue is full, `try_send` gives
//! the reply back (the actor holds it) and `send` drops and counts it (only at shutdown). Tells
//! its owner when the queue is filling ([`OutboundSender::congested`]) and when it has room
//! again, so work can wait upstream instead of being dropped here.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use super::framing::Route;
use super::held::PubCharge;
use super::pace::event_cost;
use super::pending::Slot;
use super::publisher::Publisher;
use super::stats::Stats;

/// One thing to send.
#[derive(Debug)]
pub enum Outbound {
    /// `slot` is the request's place in its peer's pending count: it travels with the reply
    /// until the transport thread has handed it to the socket, so replies waiting for the store
    /// or for room count against the peer that asked.
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

/// Bytes the queue to the transport thread may hold; a reply that would take it past this
/// waits with its sender (unless the queue is empty: one reply of any size always fits).
pub const MAX_QUEUED_BYTES: usize = 32 << 20;

impl Outbound {
    /// The bytes this message holds.
    pub fn size(&self) -> usize {
        match self {
            Outbound::Reply { body, route, .. } => body.len() + route.identity.len(),
            Outbound::Event { key, body, .. } => key.len() + body.len(),
        }
    }
}

/// A reply on its way to the transport thread (see [`Outbound::Reply`]).
#[derive(Debug)]
pub struct QueuedReply {
    pub route: Route,
    pub body: Vec<u8>,
    pub slot: Option<Slot>,
}

impl QueuedReply {
    fn size(&self) -> usize {
        self.body.len() + self.route.identity.len()
    }
}

/// Shared between the sender side and the transport thread.
#[derive(Debug, Default)]
pub struct Signals {
    /// The transport thread is awake (it clears this, then looks at the queue once more, before
    /// it sleeps) or a wake-up is already in flight: either way a send need not wake it.
    pub wake_pending: AtomicBool,
    /// Stop taking requests: answer new ones with `shutting_down`.
    pub draining: AtomicBool,
    /// Send what is queued, then close the sockets and exit.
    pub closing: AtomicBool,
    /// Replies in the queue (sent and not yet taken by the transport thread).
    pub queued: AtomicUsize,
    /// Their bytes: the queue is bounded by [`MAX_QUEUED_BYTES`] as well as by count.
    pub queued_bytes: AtomicUsize,
    /// The sender is waiting for room; the transport thread notifies `room` when it has drained.
    pub needs_room: AtomicBool,
    pub room: tokio::sync::Notify,
}

impl Signals {
    /// The transport thread took `reply` off the queue.
    pub fn taken(&self, reply: &QueuedReply) {
        self.queued.fetch_sub(1, Ordering::SeqCst);
        self.queued_bytes.fetch_sub(reply.size(), Ordering::SeqCst);
    }

    /// The transport thread emptied the queue: release a sender waiting for room.
    pub fn drained(&self) {
        if self.needs_room.swap(false, Ordering::SeqCst) {
            self.room.notify_one();
        }
    }
}

pub struct OutboundSender {
    tx: SyncSender<QueuedReply>,
    /// Where events go, without the transport thread.
    publisher: Arc<Publisher>,
    /// Bytes libzmq may hold for subscribers (`TransportConfig::pub_held_bytes`): past it the
    /// transport thread is woken to disconnect the subscriber furthest behind.
    pub_held_limit: u64,
    /// Queue length above which the queue counts as congested.
    high_water: usize,
    /// The connected end of the wake-up PAIR. A libzmq socket may move between threads but not be
    /// used by two at once, hence the mutex; it is only taken for one non-blocking send.
    waker: Mutex<Option<zmq::Socket>>,
    signals: Arc<Signals>,
    stats: Arc<Stats>,
}

impl OutboundSender {
    pub(super) fn new(
        tx: SyncSender<QueuedReply>,
        capacity: usize,
        publisher: Arc<Publisher>,
        pub_held_limit: u64,
        waker: zmq::Socket,
        signals: Arc<Signals>,
        stats: Arc<Stats>,
    ) -> Self {
        OutboundSender {
            tx,
            publisher,
            pub_held_limit,
            high_water: capacity / 2,
            waker: Mutex::new(Some(waker)),
            signals,
            stats,
        }
    }

    /// Sends an event at once (PUB never waits: a subscriber at its high-water mark misses it),
    /// or queues a reply, giving it back if the queue is full (nothing is counted: the caller
    /// keeps it and tries again after [`OutboundSender::room`]).
    pub fn try_send(&self, msg: Outbound) -> Result<(), Outbound> {
        match msg {
            Outbound::Event {
                seq,
                key,
                body,
                charge,
            } => {
                self.publish(seq, &key, body, charge);
                Ok(())
            }
            Outbound::Reply { route, body, slot } => self
                .try_queue(QueuedReply { route, body, slot })
                .map_err(|QueuedReply { route, body, slot }| Outbound::Reply { route, body, slot }),
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

    fn try_queue(&self, reply: QueuedReply) -> Result<(), QueuedReply> {
        let size = reply.size();
        let before = self.signals.queued_bytes.fetch_add(size, Ordering::SeqCst);
        if before > 0 && before + size > MAX_QUEUED_BYTES {
            self.signals.queued_bytes.fetch_sub(size, Ordering::SeqCst);
            self.signals.needs_room.store(true, Ordering::SeqCst);
            self.wake();
            return Err(reply);
        }
        self.signals.queued.fetch_add(1, Ordering::SeqCst);
        let result = match self.tx.try_send(reply) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(reply)) => {
                self.signals.queued.fetch_sub(1, Ordering::SeqCst);
                self.signals.queued_bytes.fetch_sub(size, Ordering::SeqCst);
                // The caller will wait for room: make sure the drain is announced.
                self.signals.needs_room.store(true, Ordering::SeqCst);
                Err(reply)
            }
            // The transport thread is gone: nothing will ever send it.
            Err(TrySendError::Disconnected(_)) => {
                self.signals.queued.fetch_sub(1, Ordering::SeqCst);
                self.signals.queued_bytes.fetch_sub(size, Ordering::SeqCst);
                Ok(())
            }
        };
        self.wake();
        result
    }

    /// After a round of sends: wakes the transport thread when a subscription waits that the
    /// socket's descriptor may no longer announce (`publisher.rs`), or when model output has
    /// started waiting for subscribers (the thread then times the pause, `pace.rs`).
    pub fn settle(&self) {
        if self.publisher.settle() || self.stats.pace.is_paused() {
            self.wake();
        }
    }

    /// Queues `msg`; drops and counts it if the queue is full (only the end of shutdown does).
    pub fn send(&self, msg: Outbound) {
        if self.try_send(msg).is_err() {
            Stats::bump(&self.stats.outbound_dropped);
            tracing::warn!("transport queue full: message dropped");
        }
    }

    /// Whether the queue is more than half full, in messages or in bytes. When it is, this also
    /// asks the transport thread to signal [`OutboundSender::room`] once it has emptied the queue: a caller that
    /// sees `true` may wait for that instead of adding more.
    pub fn congested(&self) -> bool {
        let over = || {
            self.signals.queued.load(Ordering::SeqCst) > self.high_water
                || self.signals.queued_bytes.load(Ordering::SeqCst) > MAX_QUEUED_BYTES / 2
        };
        if !over() {
            return false;
        }
        // Ask first, then look again: a drain finishing between the two cannot be missed.
        self.signals.needs_room.store(true, Ordering::SeqCst);
        over()
    }

    /// Resolves after the transport thread has emptied the queue (or at once if it did since
    /// the last [`OutboundSender::congested`] that returned `true`).
    pub async fn room(&self) {
        self.signals.room.notified().await;
    }

    pub fn drain(&self) {
        self.signals.draining.store(true, Ordering::SeqCst);
        self.force_wake();
    }

    pub fn close(&self) {
        self.signals.closing.store(true, Ordering::SeqCst);
        self.force_wake();
    }

    /// Closes the wake-up socket and the publisher; the context cannot terminate while either
    /// is open.
    pub(super) fn close_sockets(&self) {
        if let Ok(mut w) = self.waker.lock() {
            w.take();
        }
        self.publisher.close();
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc::sync_channel;

    use super::*;
    use crate::protocol::ids::InstanceId;

    fn reply(bytes: usize) -> Outbound {
        Outbound::Reply {
            route: Route {
                identity: Vec::new(),
                delimiter: false,
            },
            body: vec![0; bytes],
            slot: None,
        }
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_but_always_takes_one_message() {
        let ctx = zmq::Context::new();
        let waker = ctx.socket(zmq::PAIR).unwrap();
        waker.set_linger(0).unwrap();
        let xpub = ctx.socket(zmq::XPUB).unwrap();
        xpub.set_linger(0).unwrap();
        let stats = Arc::<Stats>::default();
        let publisher = Publisher::new(xpub, stats.clone(), InstanceId(uuid::Uuid::nil())).unwrap();
        let (tx, rx) = sync_channel(1_000);
        let signals = Arc::new(Signals::default());
        let sender = OutboundSender::new(
            tx,
            1_000,
            Arc::new(publisher),
            u64::MAX,
            waker,
            signals.clone(),
            stats,
        );
        // One message larger than the bound goes in: it must be able to leave at all.
        sender.try_send(reply(MAX_QUEUED_BYTES + 1)).expect("alone");
        assert!(sender.congested());
        assert!(sender.try_send(reply(1)).is_err(), "nothing more fits");
        let taken = rx.try_recv().unwrap();
        signals.taken(&taken);
        assert!(!sender.congested());
        for _ in 0..3 {
            sender.try_send(reply(MAX_QUEUED_BYTES / 4)).expect("fits");
        }
        assert!(sender.congested(), "over half full in bytes");
        sender
            .try_send(reply(MAX_QUEUED_BYTES / 4))
            .expect("up to the bound");
        assert!(sender.try_send(reply(1)).is_err(), "past the bound");
        sender.close_sockets();
    }
}
