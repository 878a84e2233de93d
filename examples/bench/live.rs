//! Knowing a subscription is live before a measured run starts: events published earlier are
//! silently not sent to it (the slow joiner). Also the one receive call every reader uses, for
//! `zcoord::client::Subscriber` and raw SUB sockets alike.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use zcoord::client::Subscriber;

/// Something events arrive on, frame by frame.
pub trait EventSource {
    /// The next message's frames, or `None` when nothing arrives within `timeout`.
    fn next_frames(&self, timeout: Duration) -> anyhow::Result<Option<Vec<Vec<u8>>>>;
    /// Adds a subscription after the ones made so far.
    fn subscribe_more(&self, prefix: &str) -> anyhow::Result<()>;
}

impl EventSource for Subscriber {
    fn next_frames(&self, timeout: Duration) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
        Ok(self.recv_raw(timeout)?)
    }

    fn subscribe_more(&self, prefix: &str) -> anyhow::Result<()> {
        Ok(self.subscribe(prefix)?)
    }
}

impl EventSource for zmq::Socket {
    fn subscribe_more(&self, prefix: &str) -> anyhow::Result<()> {
        Ok(self.set_subscribe(prefix.as_bytes())?)
    }

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
    /// The `instance.welcome` asked for after the prefixes arrived.
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

/// How long to wait for the welcome before any event will do.
const WELCOME_GRACE: Duration = Duration::from_millis(200);

/// Tells the welcome tokens of one bench run apart.
static TOKENS: AtomicUsize = AtomicUsize::new(0);

/// Waits until the subscription to `prefixes` (already made, in this order) is live.
///
/// It asks for a welcome after them (`instance.welcome/<token>`, PROTOCOL §8); the zcoord server
/// answers it, and its arrival proves every earlier prefix live. A server without welcomes (bare
/// libzmq) sends none: after [`WELCOME_GRACE`] any event proves the subscription live, because
/// libzmq sends a socket's subscriptions in order and the server applies them in order, so a
/// socket whose last prefix is `instance.heartbeat` is live once a heartbeat arrives.
pub fn wait_live(
    source: &impl EventSource,
    prefixes: &[&str],
    timeout: Duration,
) -> anyhow::Result<Live> {
    let start = Instant::now();
    let key = format!(
        "instance.welcome/bench-{}-{}",
        std::process::id(),
        TOKENS.fetch_add(1, Ordering::Relaxed)
    );
    source.subscribe_more(&key)?;
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
        match frames.first() {
            Some(k) if *k == key.as_bytes() => {
                BY_WELCOME.fetch_add(1, Ordering::Relaxed);
                return Ok(Live::Welcome);
            }
            // Another reader's welcome proves nothing about this socket.
            Some(k) if is_welcome_key(k) => {}
            _ => seen_any = true,
        }
    }
}

/// Whether a PUB key is an `instance.welcome`'s (any reader's): not an event.
pub fn is_welcome_key(key: &[u8]) -> bool {
    key.starts_with(b"instance.welcome/")
}
