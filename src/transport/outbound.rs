//! The tokio side's handle for sending through the transport thread: a bounded queue plus an
//! `inproc://` wake-up, coalesced so a burst of sends costs one wake-up. Never blocks: when the
//! queue is full the message is dropped and counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use super::framing::Route;
use super::stats::Stats;

/// One thing for the transport thread to send.
#[derive(Debug)]
pub enum Outbound {
    Reply {
        route: Route,
        body: Vec<u8>,
    },
    /// Frames shared with the replay ring: queuing an event copies no bytes.
    Event {
        key: Arc<str>,
        body: Arc<[u8]>,
    },
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
}

pub struct OutboundSender {
    tx: SyncSender<Outbound>,
    /// The connected end of the wake-up PAIR. A libzmq socket may move between threads but not be
    /// used by two at once, hence the mutex; it is only taken for one non-blocking send.
    waker: Mutex<Option<zmq::Socket>>,
    signals: Arc<Signals>,
    stats: Arc<Stats>,
}

impl OutboundSender {
    pub(super) fn new(
        tx: SyncSender<Outbound>,
        waker: zmq::Socket,
        signals: Arc<Signals>,
        stats: Arc<Stats>,
    ) -> Self {
        OutboundSender {
            tx,
            waker: Mutex::new(Some(waker)),
            signals,
            stats,
        }
    }

    /// Queues `msg`; drops and counts it if the queue is full. Returns whether it was queued.
    pub fn send(&self, msg: Outbound) -> bool {
        let queued = match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                Stats::bump(&self.stats.outbound_dropped);
                tracing::warn!("transport queue full: message dropped");
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        };
        self.wake();
        queued
    }

    pub fn drain(&self) {
        self.signals.draining.store(true, Ordering::SeqCst);
        self.force_wake();
    }

    pub fn close(&self) {
        self.signals.closing.store(true, Ordering::SeqCst);
        self.force_wake();
    }

    /// Closes the wake-up socket; the context cannot terminate while it is open.
    pub(super) fn close_waker(&self) {
        if let Ok(mut w) = self.waker.lock() {
            w.take();
        }
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
