//! The XPUB socket, shared behind a lock (`shared.rs`): whoever decides that an event may leave
//! (the actor, or the store's thread after a commit) hands it to libzmq itself, instead of
//! queuing it for the transport thread and waking that thread for it. That wake-up was a thread
//! hand-off per burst of events, most of the token latency zcoord added to bare libzmq's on a
//! VM. The transport thread still owns everything else about the socket: it reads the
//! subscriptions, answers `instance.welcome/<token>` ones, and closes it.

use std::collections::HashSet;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use time::OffsetDateTime;

use super::held::{self, PubCharge};
use super::pace::event_cost;
use super::shared::{Locked, SharedSocket};
use super::stats::Stats;
use crate::protocol::ids::InstanceId;
use crate::protocol::welcome::{requested_token, Welcome};

/// Subscription messages read in one go before the transport thread looks at its other work.
const READ_BURST: usize = 256;

pub struct Publisher {
    /// Under the socket's lock: the number of the last event handed to it. A subscription read
    /// after it is covered from the next one on (what a welcome reports).
    socket: SharedSocket<u64>,
    stats: Arc<Stats>,
    /// Stamps the welcomes.
    instance_id: InstanceId,
}

impl Publisher {
    pub fn new(
        socket: zmq::Socket,
        stats: Arc<Stats>,
        instance_id: InstanceId,
    ) -> Result<Publisher, zmq::Error> {
        Ok(Publisher {
            socket: SharedSocket::new(socket, 0)?,
            stats,
            instance_id,
        })
    }

    /// The descriptor that becomes readable when the socket may have a subscription.
    pub fn fd(&self) -> RawFd {
        self.socket.fd()
    }

    /// Hands event `seq` to libzmq without waiting: a subscriber at its high-water mark simply
    /// misses it (PROTOCOL §9). The body goes without a copy, its charge kept while libzmq
    /// holds it.
    pub fn publish(&self, seq: u64, key: &[u8], body: Arc<[u8]>, charge: PubCharge) {
        let mut locked = self.socket.lock();
        locked.state = seq;
        self.send(&locked, key, body, charge);
    }

    fn send(&self, locked: &Locked<u64>, key: &[u8], body: Arc<[u8]>, charge: PubCharge) {
        let Some(socket) = &locked.socket else {
            Stats::bump(&self.stats.outbound_dropped);
            tracing::debug!("event dropped: the publisher is closed");
            return;
        };
        self.socket.touched();
        let sent = socket
            .send(key, zmq::SNDMORE | zmq::DONTWAIT)
            .and_then(|_| held::send_shared(locked.raw, body, charge, zmq::DONTWAIT));
        if let Err(e) = sent {
            Stats::bump(&self.stats.outbound_dropped);
            tracing::warn!(error = %e, "publish failed");
        }
    }

    /// After sends: whether a subscription waits that the descriptor may no longer announce.
    pub fn settle(&self) -> bool {
        self.socket.settle()
    }

    /// Whether the socket has subscription messages to read.
    pub fn has_subscriptions(&self) -> bool {
        self.socket.readable()
    }

    /// Reads what subscribers sent: `\x01prefix` subscribes, `\x00prefix` unsubscribes. A
    /// subscription to `instance.welcome/<token>` asks for a welcome: the socket's earlier
    /// subscriptions came through the same pipe, so they are live by the time this one is read,
    /// and every event sent from here on reaches them. It is answered at once with the welcome
    /// keyed by that subscription, carrying the number of the last event sent, read under the
    /// same lock as the events are sent. Answered here rather than by the core, because only
    /// here is that point known exactly, and because a queue to the core would let a flood of
    /// subscriptions crowd out a newcomer's welcome. Every other subscription, and every
    /// unsubscription, is only read.
    pub fn read_subscriptions(&self) {
        let locked = self.socket.lock();
        let Some(socket) = &locked.socket else { return };
        // A token repeated within a burst (a client that subscribed twice) is answered once: the
        // one welcome reaches every subscriber of its key.
        let mut burst: HashSet<String> = HashSet::new();
        for _ in 0..READ_BURST {
            let msg = match socket.recv_bytes(zmq::DONTWAIT) {
                Ok(m) => m,
                Err(zmq::Error::EAGAIN) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "subscription receive failed");
                    break;
                }
            };
            let Some((&1, subscription)) = msg.split_first() else {
                continue;
            };
            if let Some(token) = requested_token(subscription) {
                if !burst.contains(token) {
                    burst.insert(token.to_owned());
                }
            }
        }
        let now = OffsetDateTime::now_utc();
        for token in &burst {
            let welcome = Welcome::encode(token, locked.state, now, self.instance_id);
            let subscribers = self.stats.connections_pub.load(Ordering::Relaxed);
            let cost = event_cost(welcome.key.len(), welcome.body.len(), subscribers);
            let charge = PubCharge::new(&self.stats, cost);
            self.send(
                &locked,
                welcome.key.as_bytes(),
                Arc::from(welcome.body),
                charge,
            );
        }
    }

    /// Closes the socket. Idempotent; later events are dropped and counted.
    pub fn close(&self) {
        self.socket.close();
    }
}
