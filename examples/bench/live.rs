//! Knowing a subscription is live before a measured run starts: events published earlier are
//! silently not sent to it (the slow joiner). Also the one receive call every reader uses, for
//! `zcoord::client::Subscriber` and raw SUB sockets alike.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Deserialize;
use zcoord::client::Subscriber;

/// Something events arrive on, frame by frame.
pub trait EventSource {
    /// The next message's frames, or `None` when nothing arrives within `timeout`.
    fn next_frames(&self, timeout: Duration) -> anyhow::Result<Option<Vec<Vec<u8>>>>;
}

impl EventSource for Subscriber {
    fn next_frames(&self, timeout: Duration) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
        Ok(self.recv_raw(timeout)?)
    }
}

impl EventSource for zmq::Socket {
    fn next_frames(&self, timeout: Duration) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
        let ms = timeout.as_millis().min(i64::MAX as u128) as i64;
        let mut items = [self.as_poll_item(zmq::POLLIN)];
        if zmq::poll(&mut items, ms)? == 0 {
            return Ok(None);
        }
        Ok(Some(self.recv_multipart(0)?))
    }
}

/// How a subscription was found to be live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    /// An `instance.welcome` arrived for every prefix.
    Welcome,
    /// No welcome in time; another event arrived, so the subscription is live anyway.
    FirstEvent,
}

/// How many subscriptions `wait_live` found live each way, for the report.
static BY_WELCOME: AtomicUsize = AtomicUsize::new(0);
static BY_FIRST_EVENT: AtomicUsize = AtomicUsize::new(0);

/// `(by welcome, by first event)` so far.
pub fn counts() -> (usize, usize) {
    (
        BY_WELCOME.load(Ordering::Relaxed),
        BY_FIRST_EVENT.load(Ordering::Relaxed),
    )
}

/// How long to wait for welcomes before any event will do.
const WELCOME_GRACE: Duration = Duration::from_millis(200);

/// Waits until the subscription to `prefixes` (in the order they were subscribed) is live.
///
/// The server answers each new subscription with an `instance.welcome` whose key is the
/// prefix itself; once every prefix has its welcome, all of them are live. A server without
/// welcomes (or one that only reports a subscription the first time any subscriber makes it)
/// sends none: after [`WELCOME_GRACE`] any event proves the subscription live, because libzmq
/// sends a socket's subscriptions in order and the server applies them in order, so a socket
/// whose last prefix is `instance.heartbeat` is live once a heartbeat arrives.
pub fn wait_live(
    source: &impl EventSource,
    prefixes: &[&str],
    timeout: Duration,
) -> anyhow::Result<Live> {
    let start = Instant::now();
    let mut waiting: Vec<&str> = prefixes.to_vec();
    let mut seen_any = false;
    loop {
        let elapsed = start.elapsed();
        if seen_any && elapsed >= WELCOME_GRACE {
            BY_FIRST_EVENT.fetch_add(1, Ordering::Relaxed);
            return Ok(Live::FirstEvent);
        }
        let left = timeout.saturating_sub(elapsed);
        if left.is_zero() {
            bail!("subscription to {prefixes:?} not live after {timeout:?} (no welcome, no event)");
        }
        let wait = if seen_any {
            left.min(WELCOME_GRACE.saturating_sub(elapsed))
        } else {
            left
        };
        let Some(frames) = source.next_frames(wait)? else {
            continue;
        };
        seen_any = true;
        if let [key, body] = frames.as_slice() {
            if is_welcome(body) {
                waiting.retain(|p| p.as_bytes() != key.as_slice());
                if waiting.is_empty() {
                    BY_WELCOME.fetch_add(1, Ordering::Relaxed);
                    return Ok(Live::Welcome);
                }
            }
        }
    }
}

/// Whether an event's envelope is an `instance.welcome`.
pub fn is_welcome(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Topic<'a> {
        #[serde(borrow)]
        topic: &'a str,
    }
    serde_json::from_slice::<Topic>(body).is_ok_and(|t| t.topic == "instance.welcome")
}
