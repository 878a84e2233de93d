//! The ROUTER, shared behind a lock (`shared.rs`): whoever decides that a reply may leave (the
//! actor for a read or a ping, the store's thread for a change it has just committed) hands it
//! to libzmq itself, instead of queuing it for the transport thread and waking that thread for
//! it. The transport thread still owns everything else about the socket: it reads the requests,
//! answers what never needs the core, and closes it.

use std::sync::Arc;

use super::framing::Route;
use super::held;
use super::pending::Slot;
use super::shared::SharedSocket;
use super::stats::Stats;
use super::triage::MAX_FRAMES_KEPT;

pub struct Replier {
    socket: SharedSocket<()>,
    stats: Arc<Stats>,
}

/// One multipart message as read: its first frames, and how many it had in all.
pub struct Received {
    pub frames: Vec<Vec<u8>>,
    pub total: usize,
}

impl Replier {
    pub fn new(socket: zmq::Socket, stats: Arc<Stats>) -> Result<Replier, zmq::Error> {
        Ok(Replier {
            socket: SharedSocket::new(socket, ())?,
            stats,
        })
    }

    /// The descriptor that becomes readable when the socket may have a request.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.socket.fd()
    }

    /// Sends a reply without waiting: a gone peer (EHOSTUNREACH, thanks to ROUTER_MANDATORY) or
    /// a full one (EAGAIN) costs a counted drop, never a stall for everyone else. The body goes
    /// to libzmq without a copy and `slot` (the request's count against its client) is
    /// released only when libzmq frees it: a client that does not read its replies has them
    /// count against it until it does, however many libzmq queues.
    pub fn reply(&self, route: &Route, body: Vec<u8>, slot: Option<Slot>) {
        let locked = self.socket.lock();
        let Some(socket) = &locked.socket else {
            Stats::bump(&self.stats.replies_dropped);
            tracing::debug!("reply dropped: the socket is closed");
            return;
        };
        self.socket.touched();
        let flags = zmq::SNDMORE | zmq::DONTWAIT;
        let mut result = socket.send(&route.identity[..], flags);
        if result.is_ok() && route.delimiter {
            result = socket.send(&[][..], flags);
        }
        if result.is_ok() {
            result = held::send(locked.raw, body, slot, zmq::DONTWAIT);
        }
        if let Err(e) = result {
            Stats::bump(&self.stats.replies_dropped);
            tracing::debug!(error = %e, "reply dropped");
        }
    }

    /// Reads one whole multipart message without blocking, keeping at most `MAX_FRAMES_KEPT`
    /// frames; `None` when nothing waits (or the socket is closed). The lock is held for one
    /// message, so a reply never waits behind a burst of requests.
    pub fn recv(&self) -> Option<Received> {
        let locked = self.socket.lock();
        let socket = locked.socket.as_ref()?;
        let mut frames = Vec::new();
        let mut total = 0;
        loop {
            // A message's frames arrive together: once the first is in, the rest are too.
            let flags = if total == 0 { zmq::DONTWAIT } else { 0 };
            let frame = match socket.recv_bytes(flags) {
                Ok(f) => f,
                Err(zmq::Error::EAGAIN) if total == 0 => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "router receive failed");
                    return (total > 0).then_some(Received { frames, total });
                }
            };
            total += 1;
            if frames.len() < MAX_FRAMES_KEPT {
                frames.push(frame);
            }
            if !socket.get_rcvmore().unwrap_or(false) {
                return Some(Received { frames, total });
            }
        }
    }

    /// After replies: whether a request waits that the descriptor may no longer announce.
    pub fn settle(&self) -> bool {
        self.socket.settle()
    }

    /// Whether the socket has a request to read.
    pub fn has_requests(&self) -> bool {
        self.socket.readable()
    }

    /// Closes the socket. Idempotent; later replies are dropped and counted.
    pub fn close(&self) {
        self.socket.close();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use super::*;

    fn replier(ctx: &zmq::Context) -> (Replier, zmq::Socket) {
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.set_router_mandatory(true).unwrap();
        router.set_linger(0).unwrap();
        router.bind("tcp://127.0.0.1:0").unwrap();
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        let dealer = ctx.socket(zmq::DEALER).unwrap();
        dealer.set_linger(0).unwrap();
        dealer.set_rcvtimeo(10_000).unwrap();
        dealer.connect(&endpoint).unwrap();
        (Replier::new(router, Arc::default()).unwrap(), dealer)
    }

    /// Waits (bounded) until the socket says a request waits, as the transport thread would.
    fn until_requests(r: &Replier) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !r.has_requests() {
            assert!(Instant::now() < deadline, "the request never arrived");
            let mut items = [zmq::PollItem::from_fd(r.fd(), zmq::POLLIN)];
            zmq::poll(&mut items, 10).unwrap();
        }
    }

    #[test]
    fn a_request_read_here_is_answered_from_another_thread() {
        let ctx = zmq::Context::new();
        let (r, dealer) = replier(&ctx);
        let r = Arc::new(r);
        dealer.send_multipart([&b"one"[..], b"two"], 0).unwrap();
        until_requests(&r);
        let got = r.recv().expect("a request");
        assert_eq!(got.total, 3, "identity and both frames");
        assert_eq!(&got.frames[1..], [b"one".to_vec(), b"two".to_vec()]);
        assert!(r.recv().is_none(), "nothing else waits");
        assert!(!r.settle(), "nothing sent since: nothing to look at");
        let route = Route {
            identity: got.frames[0].clone(),
            delimiter: false,
        };
        let sender = r.clone();
        std::thread::spawn(move || sender.reply(&route, b"answer".to_vec(), None))
            .join()
            .unwrap();
        assert_eq!(dealer.recv_bytes(0).unwrap(), b"answer");
        // A request that arrived around the reply: whatever the reply's call did to the
        // descriptor, settle reports it.
        dealer.send(&b"again"[..], 0).unwrap();
        until_requests(&r);
        assert!(r.settle(), "a reply was sent and a request waits");
        assert!(r.recv().is_some());
        assert_eq!(r.stats.replies_dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn replies_to_a_gone_peer_or_after_close_are_dropped_and_counted() {
        let ctx = zmq::Context::new();
        let (r, _dealer) = replier(&ctx);
        let nobody = Route {
            identity: b"nobody".to_vec(),
            delimiter: true,
        };
        r.reply(&nobody, b"lost".to_vec(), None);
        assert_eq!(r.stats.replies_dropped.load(Ordering::Relaxed), 1);
        r.close();
        r.close();
        r.reply(&nobody, b"lost".to_vec(), None);
        assert_eq!(r.stats.replies_dropped.load(Ordering::Relaxed), 2);
        assert!(r.recv().is_none());
        assert!(!r.has_requests());
    }
}
