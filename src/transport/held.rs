//! Frames whose bytes libzmq holds until it is done with them, and which say when. A frame sent
//! the usual way is copied into libzmq and forgotten, so a reply waiting in libzmq's queue for a
//! client that does not read would count against nobody. Sent through here, the frame's buffer
//! and whatever is attached to it (a request's [`Slot`], which counts its bytes against its
//! client and the server) go to libzmq without a copy and are dropped only when libzmq frees the
//! message: after it has written the frame to the connection, or dropped it. So a client's bytes
//! in flight include its replies all the way to the wire.
//!
//! Events go the same way: their bytes are shared with the replay ring (no copy), and a gauge
//! ([`PubCharge`]) counts each from the moment it is released for subscribers until libzmq
//! lets go of it.
//!
//! The one place in zcoord that calls libzmq directly (`zmq_msg_init_data`, `zmq_msg_send`):
//! the `zmq` crate copies every frame and has no way to learn when libzmq lets go of it.

use std::os::raw::{c_int, c_void};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::pending::Slot;
use super::stats::Stats;

/// A frame's bytes: a reply's own, or an event's, shared with the replay ring.
enum Body {
    Owned(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl Body {
    fn as_slice(&self) -> &[u8] {
        match self {
            Body::Owned(v) => v,
            Body::Shared(a) => a,
        }
    }
}

/// What an event costs on its way to subscribers (`pace::event_cost`), counted in
/// `Stats::pub_bytes_held` from the moment it is released for subscribers until libzmq
/// frees its body (the last subscriber's copy written, or dropped), or until it is dropped
/// unsent. A release that brings the gauge down to the pace's low mark lets model output go on.
#[derive(Debug)]
pub struct PubCharge {
    stats: Arc<Stats>,
    bytes: u64,
}

impl PubCharge {
    pub fn new(stats: &Arc<Stats>, bytes: u64) -> PubCharge {
        stats.pace.charged();
        stats.pub_bytes_held.fetch_add(bytes, Ordering::SeqCst);
        PubCharge {
            stats: stats.clone(),
            bytes,
        }
    }
}

impl Drop for PubCharge {
    fn drop(&mut self) {
        let before = self
            .stats
            .pub_bytes_held
            .fetch_sub(self.bytes, Ordering::SeqCst);
        self.stats.pace.freed();
        self.stats.pace.released(before - self.bytes);
    }
}

/// What libzmq holds for one frame: its bytes, and what is released with them.
struct Held {
    body: Body,
    _slot: Option<Slot>,
    _charge: Option<PubCharge>,
}

/// Called by libzmq, on whichever of its threads closes the message last, exactly once.
unsafe extern "C" fn release(_data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the `Box<Held>` leaked in `send`, and libzmq calls this once per
    // message, after which it no longer reads `_data` (which points into that box).
    drop(unsafe { Box::from_raw(hint.cast::<Held>()) });
}

/// A socket's raw handle, for [`send`]. Valid while the socket it came from is alive; used
/// only where that socket may be used: under the lock that guards it (`shared.rs`), or on a
/// thread that owns it alone (tests).
#[derive(Clone, Copy)]
pub struct RawSocket(*mut c_void);

// SAFETY: the handle moves together with the socket it names (into the lock that guards it,
// `shared.rs`) and is used only where the socket may be (a libzmq socket may change
// threads behind a memory barrier, never be used by two at once).
unsafe impl Send for RawSocket {}

impl RawSocket {
    pub fn of(sock: &mut zmq::Socket) -> RawSocket {
        RawSocket(sock.as_mut_ptr())
    }
}

/// Sends `body` as one frame with `flags`, keeping `slot` alive until libzmq frees it. On
/// failure libzmq did not take the message, and everything is released at once.
pub fn send(
    sock: RawSocket,
    body: Vec<u8>,
    slot: Option<Slot>,
    flags: i32,
) -> Result<(), zmq::Error> {
    send_held(
        sock,
        Held {
            body: Body::Owned(body),
            _slot: slot,
            _charge: None,
        },
        flags,
    )
}

/// Sends an event's body (shared with the replay ring, so not copied) as one frame, keeping
/// its `charge` in `Stats::pub_bytes_held` until libzmq frees it: after the last subscriber it
/// was queued for has had it written, or has gone. So the server can say how much its
/// subscribers' queues hold, a figure libzmq itself does not keep.
pub fn send_shared(
    sock: RawSocket,
    body: Arc<[u8]>,
    charge: PubCharge,
    flags: i32,
) -> Result<(), zmq::Error> {
    send_held(
        sock,
        Held {
            body: Body::Shared(body),
            _slot: None,
            _charge: Some(charge),
        },
        flags,
    )
}

fn send_held(sock: RawSocket, held: Held, flags: i32) -> Result<(), zmq::Error> {
    let held = Box::new(held);
    let data = held.body.as_slice().as_ptr().cast_mut().cast::<c_void>();
    let len = held.body.as_slice().len();
    let hint = Box::into_raw(held).cast::<c_void>();
    let mut msg = zmq_sys::zmq_msg_t::default();
    // SAFETY: `msg` is a fresh message; `data` and `len` describe the box's buffer, which stays
    // where it is until `release` frees the box; `hint` is that box.
    let rc = unsafe { zmq_sys::zmq_msg_init_data(&mut msg, data, len, Some(release), hint) };
    if rc != 0 {
        let e = zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() });
        // SAFETY: libzmq did not take the box (it allocates before it stores anything).
        drop(unsafe { Box::from_raw(hint.cast::<Held>()) });
        return Err(e);
    }
    // SAFETY: `sock` is a live socket used only on this thread; `msg` is initialised.
    let rc = unsafe { zmq_sys::zmq_msg_send(&mut msg, sock.0, flags as c_int) };
    if rc == -1 {
        let e = zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() });
        // SAFETY: a message that was not sent is still ours to close; closing it calls
        // `release`, which frees the box.
        unsafe { zmq_sys::zmq_msg_close(&mut msg) };
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::pending::{Limits, Pending};
    use super::*;

    /// Two connected PAIR sockets over inproc: the sending one, the reading one.
    fn pair(ctx: &zmq::Context, name: &str) -> (zmq::Socket, zmq::Socket) {
        let push = ctx.socket(zmq::PAIR).unwrap();
        let pull = ctx.socket(zmq::PAIR).unwrap();
        push.bind(&format!("inproc://{name}")).unwrap();
        pull.connect(&format!("inproc://{name}")).unwrap();
        (push, pull)
    }

    /// One request in flight per peer, bytes unbounded.
    fn one_at_a_time() -> Pending {
        Pending::new(Limits {
            requests: 1,
            peer_bytes: 1 << 30,
            total_bytes: 1 << 30,
        })
    }

    #[test]
    fn a_slot_is_released_when_the_peer_has_read_the_frame_not_before() {
        let ctx = zmq::Context::new();
        let (mut push, pull) = pair(&ctx, "held-test");
        let mut p = one_at_a_time();
        let slot = p.take(b"peer", 5).unwrap();
        send(RawSocket::of(&mut push), b"hello".to_vec(), Some(slot), 0).unwrap();
        assert!(p.take(b"peer", 1).is_err(), "the frame is still in libzmq");
        assert_eq!(pull.recv_bytes(0).unwrap(), b"hello");
        // Over inproc the message is freed when the reader has taken it.
        assert!(p.take(b"peer", 1).is_ok(), "released once read");
    }

    #[test]
    fn shared_bytes_are_counted_until_libzmq_lets_go() {
        let ctx = zmq::Context::new();
        let (mut push, pull) = pair(&ctx, "held-shared");
        let stats = Arc::new(Stats::default());
        let body: Arc<[u8]> = Arc::from(&b"an event"[..]);
        let charge = PubCharge::new(&stats, body.len() as u64);
        send_shared(RawSocket::of(&mut push), body.clone(), charge, 0).unwrap();
        assert_eq!(stats.pub_bytes_held.load(Ordering::Relaxed), 8);
        assert_eq!(Arc::strong_count(&body), 2, "shared, not copied");
        assert_eq!(pull.recv_bytes(0).unwrap(), b"an event");
        assert_eq!(stats.pub_bytes_held.load(Ordering::Relaxed), 0);
        assert_eq!(Arc::strong_count(&body), 1);
    }

    #[test]
    fn a_frame_that_cannot_be_sent_releases_everything_at_once() {
        let ctx = zmq::Context::new();
        let mut router = ctx.socket(zmq::ROUTER).unwrap();
        router.set_router_mandatory(true).unwrap();
        let mut p = one_at_a_time();
        let slot = p.take(b"peer", 7).unwrap();
        // No such peer: EHOSTUNREACH, and the slot comes back.
        let e = send(
            RawSocket::of(&mut router),
            b"nobody".to_vec(),
            Some(slot),
            zmq::SNDMORE,
        );
        assert_eq!(e, Err(zmq::Error::EHOSTUNREACH));
        assert!(p.take(b"peer", 7).is_ok());
    }
}
