//! A libzmq socket shared behind a lock: the one rule that lets the ROUTER (`replier.rs`) and
//! the PUB (`publisher.rs`) be sent on by whichever thread releases a reply or an event while the
//! transport thread reads them. libzmq allows a socket to change threads behind a full memory
//! barrier, which the lock is, and never to be used by two at once, which the lock also ensures.
//!
//! The transport thread waits on the socket's `ZMQ_FD`, a plain descriptor, so waiting touches
//! no socket state. The descriptor is edge-like: any call on the socket may take the notice that
//! something arrived, and then the descriptor stays quiet although a message waits. So whoever
//! sent looks at `ZMQ_EVENTS` afterwards ([`SharedSocket::settle`]) and wakes the transport
//! thread when a message waits, and the transport thread looks before it sleeps
//! ([`SharedSocket::readable`]).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::held::RawSocket;

/// The socket and what must change with it under the same lock (`T`).
pub struct Locked<T> {
    /// `None` once closed: what is sent after that is dropped and counted by the caller.
    pub socket: Option<zmq::Socket>,
    /// The same socket, for bodies sent without a copy (`held`).
    pub raw: RawSocket,
    pub state: T,
}

pub struct SharedSocket<T> {
    locked: Mutex<Locked<T>>,
    /// The socket's `ZMQ_FD`, for the transport thread's poll.
    fd: RawFd,
    /// A send happened since the last [`SharedSocket::settle`]: it may have taken the
    /// descriptor's notice of a message to read.
    touched: AtomicBool,
}

impl<T> SharedSocket<T> {
    pub fn new(mut socket: zmq::Socket, state: T) -> Result<Self, zmq::Error> {
        let fd = socket.get_fd()?;
        let raw = RawSocket::of(&mut socket);
        Ok(SharedSocket {
            locked: Mutex::new(Locked {
                socket: Some(socket),
                raw,
                state,
            }),
            fd,
            touched: AtomicBool::new(false),
        })
    }

    /// The descriptor that becomes readable when the socket may have something to read.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// The socket, for one round of calls. Call [`SharedSocket::touched`] before sending.
    pub fn lock(&self) -> MutexGuard<'_, Locked<T>> {
        // A panic while holding the lock leaves nothing half-done that matters here: a message
        // is queued whole or not at all, and the socket is still a socket.
        self.locked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A send is about to happen: the next [`SharedSocket::settle`] must look.
    pub fn touched(&self) {
        self.touched.store(true, Ordering::SeqCst);
    }

    /// After sends: whether a message waits that the descriptor may no longer announce (the
    /// sender then wakes the transport thread). Cheap when nothing was sent.
    pub fn settle(&self) -> bool {
        self.touched.swap(false, Ordering::SeqCst) && self.readable()
    }

    /// Whether the socket has a message to read.
    pub fn readable(&self) -> bool {
        let locked = self.lock();
        locked.socket.as_ref().is_some_and(|s| {
            s.get_events()
                .is_ok_and(|events| events.contains(zmq::POLLIN))
        })
    }

    /// Closes the socket (the context cannot terminate while it is open). Idempotent.
    pub fn close(&self) {
        let socket = self.lock().socket.take();
        drop(socket);
    }
}
