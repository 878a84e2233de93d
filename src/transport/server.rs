//! The transport thread: reads the ROUTER's requests and the PUB's subscriptions, owns the
//! wake-up socket and the connection monitors. Both sockets are shared behind locks
//! (`replier.rs`, `publisher.rs`), so replies and events leave from the thread that releases
//! them, without a hand-off to this one. Turns frames into decoded requests for the core.
//! Answers by itself only what never needs the core: malformed frames, parse errors, oversized
//! messages, `too_many_pending`, `server_busy` and `shutting_down`; and each subscription to
//! `instance.welcome/<token>`, with that welcome.

use std::cell::{Cell, RefCell};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::Sender;

use super::auth::RefusalLog;
use super::connections::Connections;
use super::framing::Route;
use super::outbound::Signals;
use super::pending::{Pending, Refused};
use super::publisher::Publisher;
use super::replier::{Received, Replier};
use super::stats::Stats;
use super::triage::{triage, Triage, OVER_SIZE_LIMIT};
use super::Inbound;
use crate::protocol::errors::RpcError;
use crate::protocol::jsonrpc::Calls;

/// Messages read from the ROUTER before looking at the other sockets again.
const READ_BURST: usize = 256;

/// The transport thread's sockets and state (the server as a whole is `app::Server`).
pub(super) struct TransportThread {
    /// The ROUTER, shared with whoever sends replies; this thread reads its requests.
    pub replier: Arc<Replier>,
    /// The XPUB, shared with whoever sends events; this thread reads its subscriptions.
    pub publisher: Arc<Publisher>,
    pub wake: zmq::Socket,
    pub inbound: Sender<Inbound>,
    pub signals: Arc<Signals>,
    pub stats: Arc<Stats>,
    pub max_message_bytes: usize,
    /// Requests each peer has waiting for the core; beyond the limit that peer gets
    /// `too_many_pending`, so one flooding peer cannot fill the queue everyone shares.
    pub pending: RefCell<Pending>,
    /// Each socket's monitor: live connections against the limit, and failed handshakes. Read
    /// first on every turn: libzmq's I/O thread blocks on a monitor queue nobody empties.
    pub connections: RefCell<Connections>,
    /// Most bytes libzmq may hold for subscribers that have not been sent them; past it the one
    /// furthest behind is disconnected, one a second at most.
    pub pub_held_limit: usize,
    pub last_eviction: Cell<Option<std::time::Instant>>,
    /// Since when model output has waited for subscribers to drain (`pace.rs`), if it does.
    /// With the number of that pause (`Pace::episode`): a pause seen twice with another
    /// number between is two short pauses, not one long one.
    pub paused_since: Cell<Option<(std::time::Instant, u64)>>,
    /// A pause this long disconnects the subscriber furthest behind.
    pub stalled_after: std::time::Duration,
    /// Requests over `max_message_bytes`, logged at warn once a second at most. Those over the
    /// hard limit cannot be: libzmq cuts their peer off and tells the monitor only that it
    /// disconnected, like any peer that hangs up (PROTOCOL §2).
    pub oversize_log: RefCell<RefusalLog>,
}

/// Least time between two subscribers disconnected for holding too much.
const EVICT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl TransportThread {
    pub fn run(self) {
        loop {
            // About to sleep: from here on a sender must wake us. Look at both sockets after
            // clearing the flag: a send elsewhere may have taken their descriptors' notice of
            // something waiting, and found us awake, so it did not wake us.
            self.signals.wake_pending.store(false, Ordering::SeqCst);
            if self.signals.closing.load(Ordering::SeqCst) {
                break;
            }
            let requests = self.replier.has_requests();
            let subscriptions = self.publisher.has_subscriptions();
            let (router_ready, wake_ready, pub_ready, monitors_ready) = {
                let connections = self.connections.borrow();
                let mut items = [
                    zmq::PollItem::from_fd(self.replier.fd(), zmq::POLLIN),
                    self.wake.as_poll_item(zmq::POLLIN),
                    zmq::PollItem::from_fd(self.publisher.fd(), zmq::POLLIN),
                    connections.rpc.monitor.as_poll_item(zmq::POLLIN),
                    connections.pub_.monitor.as_poll_item(zmq::POLLIN),
                ];
                // Over the bound, or model output paused for subscribers, look again soon even
                // if nothing else happens.
                let timeout = if requests || subscriptions {
                    0
                } else if self.pub_over_limit() || self.stats.pace.is_paused() {
                    (self.stalled_after.as_millis() / 4).clamp(1, 250) as i64
                } else {
                    -1
                };
                match zmq::poll(&mut items, timeout) {
                    Ok(_) => (
                        items[0].is_readable(),
                        items[1].is_readable(),
                        items[2].is_readable(),
                        [items[3].is_readable(), items[4].is_readable()],
                    ),
                    Err(zmq::Error::EINTR) => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "transport poll failed; closing");
                        break;
                    }
                }
            };
            // Awake: until we clear the flag again, senders need not wake us.
            self.signals.wake_pending.store(true, Ordering::SeqCst);
            self.connections.borrow_mut().read(monitors_ready);
            if wake_ready {
                while self.wake.recv_bytes(zmq::DONTWAIT).is_ok() {}
            }
            if self.signals.closing.load(Ordering::SeqCst) {
                break;
            }
            if requests || router_ready {
                self.read_requests();
            }
            if subscriptions || pub_ready {
                self.publisher.read_subscriptions();
            }
            self.bound_pub_queues();
        }
        // Replies and events sent after this are dropped and counted; the context can now
        // terminate.
        self.replier.close();
        self.publisher.close();
        tracing::debug!("transport thread closing sockets");
    }

    fn pub_over_limit(&self) -> bool {
        self.stats.pub_bytes_held.load(Ordering::Relaxed) as usize > self.pub_held_limit
    }

    /// Whether model output has waited for subscribers to drain for `stalled_after`: some
    /// subscriber is not reading, and holds everyone up.
    fn pub_stalled(&self, now: Instant) -> bool {
        if !self.stats.pace.is_paused() {
            self.paused_since.set(None);
            return false;
        }
        let episode = self.stats.pace.episode();
        let since = match self.paused_since.get() {
            Some((since, seen)) if seen == episode => since,
            _ => now,
        };
        self.paused_since.set(Some((since, episode)));
        now.duration_since(since) >= self.stalled_after
    }

    /// libzmq has no byte high-water mark: a subscriber that stops reading pins up to
    /// `--pub-hwm` events, and several that stall at different times each pin their own. When
    /// what libzmq holds for subscribers passes its bound, or has kept model output waiting
    /// for `stalled_after`, the subscriber furthest behind is disconnected (its libzmq
    /// reconnects it, and it repairs its gap with `events.replay`).
    fn bound_pub_queues(&self) {
        let now = Instant::now();
        let stalled = self.pub_stalled(now);
        if !stalled && !self.pub_over_limit() {
            return;
        }
        if self
            .last_eviction
            .get()
            .is_some_and(|t| now.duration_since(t) < EVICT_EVERY)
        {
            return;
        }
        self.last_eviction.set(Some(now));
        if stalled {
            // The next one only after another full pause.
            self.paused_since
                .set(Some((now, self.stats.pace.episode())));
        }
        let held = self.stats.pub_bytes_held.load(Ordering::Relaxed);
        let why = if stalled {
            "model output waited too long for them"
        } else {
            "over --pub-held-bytes"
        };
        match self.connections.borrow_mut().evict_furthest_behind() {
            Some(unread) => tracing::warn!(
                held_mib = held >> 20,
                limit_mib = self.pub_held_limit >> 20,
                unread,
                why,
                "subscribers hold too much: disconnected the one furthest behind"
            ),
            None => {
                tracing::warn!(
                    held_mib = held >> 20,
                    why,
                    "subscribers hold too much, and none could be disconnected"
                );
                // Nobody to disconnect: waiting longer would stall the stream for nothing.
                // The hard bound still disconnects once one can be.
                self.stats.pace.resume();
            }
        }
    }

    /// Answers a request here (it never reached the core).
    fn reply(&self, route: &Route, body: Vec<u8>) {
        self.replier.reply(route, body, None);
    }

    /// Reads a burst of requests.
    fn read_requests(&self) {
        for _ in 0..READ_BURST {
            let Some(Received { frames, total }) = self.replier.recv() else {
                break;
            };
            self.handle_message(&frames, total);
        }
    }

    /// Answers or passes on one request.
    fn handle_message(&self, frames: &[Vec<u8>], total: usize) {
        let (route, calls) = match triage(frames, total, self.max_message_bytes) {
            Triage::Calls { route, calls } => (route, calls),
            Triage::Answer { route, body, why } => {
                if why == OVER_SIZE_LIMIT {
                    let admitted = self.oversize_log.borrow_mut().admit(Instant::now());
                    if let Some(suppressed) = admitted {
                        tracing::warn!(
                            limit = self.max_message_bytes,
                            suppressed,
                            "a request frame over --max-message-bytes was answered with message_too_large (one over twice that cuts its peer off unlogged)"
                        );
                    }
                }
                tracing::debug!(why, "request answered by the transport");
                self.reply(&route, body);
                return;
            }
            Triage::Drop => {
                Stats::bump(&self.stats.requests_dropped);
                return;
            }
        };
        if self.signals.draining.load(Ordering::SeqCst) {
            self.refuse(&route, calls, RpcError::shutting_down());
            return;
        }
        let slot = if calls.expects_reply() {
            let bytes = calls.held_bytes();
            let taken = self.pending.borrow_mut().take(&route.identity, bytes);
            match taken {
                Ok(slot) => Some(slot),
                Err(why) => {
                    Stats::bump(&self.stats.requests_refused_busy);
                    let error = match why {
                        Refused::Peer => {
                            let limits = self.pending.borrow().limits();
                            RpcError::too_many_pending(limits.requests, limits.peer_bytes)
                        }
                        Refused::Server => RpcError::server_busy(),
                    };
                    self.refuse(&route, calls, error);
                    return;
                }
            }
        } else {
            None
        };
        match self.inbound.try_send(Inbound { route, calls, slot }) {
            Ok(()) => {}
            Err(TrySendError::Full(inb)) => {
                Stats::bump(&self.stats.requests_refused_busy);
                self.refuse(&inb.route, inb.calls, RpcError::server_busy());
            }
            Err(TrySendError::Closed(inb)) => {
                self.refuse(&inb.route, inb.calls, RpcError::shutting_down());
            }
        }
    }

    /// Answers every call in `calls` with `error` (notifications get nothing, per JSON-RPC).
    fn refuse(&self, route: &Route, calls: Calls, error: RpcError) {
        if let Some(body) = calls.refusal().and_then(|r| r.encode(&error)) {
            self.reply(route, body);
        }
    }
}
