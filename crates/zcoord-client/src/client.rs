//! A small blocking client: a DEALER for calls and a SUB for events, each with timeouts so nothing
//! ever hangs. Used by the CLI subcommands and the integration tests; a reference for client authors.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::plain::present_plain;
use zcoord_protocol::errors::RpcError;
use zcoord_protocol::events::ReceivedEnvelope;
use zcoord_protocol::welcome::{is_welcome_key, Welcome, WELCOME_PREFIX};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no reply within {0:?} (is the server running?)")]
    Timeout(Duration),
    #[error("error reply {}: {}", .0.code, .0.message)]
    Rpc(RpcError),
    #[error("subscription not live within {0:?}: no instance.welcome (is the server running?)")]
    NoWelcome(Duration),
    #[error("malformed reply: {0}")]
    BadReply(String),
    #[error("zmq: {0}")]
    Zmq(#[from] zmq::Error),
}

/// A DEALER connected to the ROUTER. Calls are sequential; a reply whose id does not match (a late
/// answer to a call that timed out) is skipped.
pub struct RpcClient {
    sock: zmq::Socket,
    next_id: u64,
    timeout: Duration,
}

impl RpcClient {
    pub fn connect(
        ctx: &zmq::Context,
        endpoint: &str,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        Self::connect_with(ctx, endpoint, timeout, None)
    }

    /// As `connect`, presenting the instance's secret (PLAIN) when given: needed over tcp.
    pub fn connect_with(
        ctx: &zmq::Context,
        endpoint: &str,
        timeout: Duration,
        secret: Option<&str>,
    ) -> Result<Self, ClientError> {
        let sock = ctx.socket(zmq::DEALER)?;
        sock.set_linger(0)?;
        if let Some(secret) = secret {
            present_plain(&sock, secret)?;
        }
        sock.connect(endpoint)?;
        Ok(RpcClient {
            sock,
            next_id: 1,
            timeout,
        })
    }

    /// Calls `method`; `Ok(result)` or the error reply as `ClientError::Rpc`.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.sock
            .send(serde_json::to_vec(&req).unwrap_or_default(), 0)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let frames = self.recv_until(deadline)?;
            let Some(body) = frames.last() else { continue };
            let reply: Value =
                serde_json::from_slice(body).map_err(|e| ClientError::BadReply(e.to_string()))?;
            if reply.get("id") != Some(&json!(id)) {
                continue;
            }
            if let Some(err) = reply.get("error") {
                let err: RpcError = serde_json::from_value(err.clone())
                    .map_err(|e| ClientError::BadReply(e.to_string()))?;
                return Err(ClientError::Rpc(err));
            }
            return reply
                .get("result")
                .cloned()
                .ok_or_else(|| ClientError::BadReply("no result member".into()));
        }
    }

    /// Sends raw frames as they are (for probes and tests of odd framing).
    pub fn send_frames(&self, frames: &[&[u8]]) -> Result<(), ClientError> {
        self.sock.send_multipart(frames.iter().copied(), 0)?;
        Ok(())
    }

    /// Receives one raw multipart reply.
    pub fn recv_frames(&self, timeout: Duration) -> Result<Vec<Vec<u8>>, ClientError> {
        self.recv_until(Instant::now() + timeout)
    }

    fn recv_until(&self, deadline: Instant) -> Result<Vec<Vec<u8>>, ClientError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if !poll_in(&self.sock, left)? {
            return Err(ClientError::Timeout(self.timeout));
        }
        Ok(self.sock.recv_multipart(0)?)
    }
}

/// How long one connection attempt of `connect_live` waits for its welcome.
const WELCOME_ATTEMPT: Duration = Duration::from_secs(1);

/// A SUB connected to the PUB.
pub struct Subscriber {
    sock: zmq::Socket,
    /// Events that arrived while `connect_live` waited for its welcome, handed out first.
    pending: RefCell<VecDeque<Vec<Vec<u8>>>>,
}

/// One received event: its key (frame 1) and envelope (frame 2).
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    pub key: String,
    pub envelope: ReceivedEnvelope,
    /// Frame 2 exactly as it arrived.
    pub raw: Vec<u8>,
}

impl Subscriber {
    /// Connects and subscribes to each prefix (`""` means everything).
    pub fn connect(
        ctx: &zmq::Context,
        endpoint: &str,
        prefixes: &[&str],
    ) -> Result<Self, ClientError> {
        Self::connect_with(ctx, endpoint, prefixes, None)
    }

    /// As `connect`, presenting the instance's secret (PLAIN) when given: needed over tcp.
    pub fn connect_with(
        ctx: &zmq::Context,
        endpoint: &str,
        prefixes: &[&str],
        secret: Option<&str>,
    ) -> Result<Self, ClientError> {
        let sock = ctx.socket(zmq::SUB)?;
        sock.set_linger(0)?;
        sock.set_rcvhwm(100_000)?;
        if let Some(secret) = secret {
            present_plain(&sock, secret)?;
        }
        for p in prefixes {
            sock.set_subscribe(p.as_bytes())?;
        }
        sock.connect(endpoint)?;
        Ok(Subscriber {
            sock,
            pending: RefCell::new(VecDeque::new()),
        })
    }

    /// Connects, subscribes and waits until every subscription is live: after the prefixes it
    /// subscribes to `instance.welcome/<token>` with a fresh token, and the server's answer to
    /// that (PROTOCOL §8) says the earlier ones are live. Returns the subscriber and the `seq` of
    /// the last event before the welcome: every later event matching a prefix will arrive.
    /// Events that arrive while waiting are kept for `recv`. Fails with `NoWelcome` if the
    /// welcome does not come within `timeout`.
    pub fn connect_live(
        ctx: &zmq::Context,
        endpoint: &str,
        prefixes: &[&str],
        timeout: Duration,
    ) -> Result<(Self, u64), ClientError> {
        Self::connect_live_with(ctx, endpoint, prefixes, timeout, None)
    }

    /// As `connect_live`, presenting the instance's secret (PLAIN) when given. A peer refused at
    /// the handshake never gets a welcome: that, too, ends in `NoWelcome`.
    pub fn connect_live_with(
        ctx: &zmq::Context,
        endpoint: &str,
        prefixes: &[&str],
        timeout: Duration,
        secret: Option<&str>,
    ) -> Result<(Self, u64), ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::NoWelcome(timeout));
            }
            // The libzmq 4.3.4 that zmq-sys bundles now and then leaves a new SUB without its
            // stream (about 1 connect in 300 in a tight loop; not seen with libzmq 4.3.5): a
            // late welcome means a fresh socket, not a longer wait.
            let attempt = left.min(WELCOME_ATTEMPT);
            let token = uuid::Uuid::new_v4().simple().to_string();
            let welcome_key = format!("{WELCOME_PREFIX}{token}");
            let mut all: Vec<&str> = prefixes.to_vec();
            // Last: the server reads a socket's subscriptions in order.
            all.push(&welcome_key);
            let sub = Subscriber::connect_with(ctx, endpoint, &all, secret)?;
            if let Some(last_seq) = sub.await_welcome(&token, attempt)? {
                // Asked once: a reconnect must not bring a welcome nobody waits for.
                sub.sock.set_unsubscribe(welcome_key.as_bytes())?;
                return Ok((sub, last_seq));
            }
        }
    }

    /// Waits for the welcome for `token`; `None` if it does not come within `timeout`.
    fn await_welcome(&self, token: &str, timeout: Duration) -> Result<Option<u64>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // From the socket itself: what is kept in `pending` is not a welcome, and reading it
            // back would spin on it until the deadline. A busy stream must not keep us waiting
            // past the deadline either.
            let frames = match self.recv_socket(left)? {
                Some(frames) if !left.is_zero() => frames,
                _ => return Ok(None),
            };
            if let Some(welcome) = Welcome::parse(&frames, token) {
                return Ok(Some(welcome.payload.last_seq));
            }
            if !frames.first().is_some_and(|key| is_welcome_key(key)) {
                self.pending.borrow_mut().push_back(frames);
            }
        }
    }

    pub fn subscribe(&self, prefix: &str) -> Result<(), ClientError> {
        Ok(self.sock.set_subscribe(prefix.as_bytes())?)
    }

    /// The next message's frames as they arrived (key, envelope), without decoding: for readers
    /// that must keep up with a fast stream.
    pub fn recv_raw(&self, timeout: Duration) -> Result<Option<Vec<Vec<u8>>>, ClientError> {
        if let Some(frames) = self.pending.borrow_mut().pop_front() {
            return Ok(Some(frames));
        }
        self.recv_socket(timeout)
    }

    /// The next message from the socket, ignoring what is kept in `pending`.
    fn recv_socket(&self, timeout: Duration) -> Result<Option<Vec<Vec<u8>>>, ClientError> {
        if !poll_in(&self.sock, timeout)? {
            return Ok(None);
        }
        Ok(Some(self.sock.recv_multipart(0)?))
    }

    /// The next event, or `Ok(None)` when none arrives within `timeout`. Other clients'
    /// welcomes (which a subscription to `""` or `instance.` also gets) are not events: skipped.
    pub fn recv(&self, timeout: Duration) -> Result<Option<ReceivedEvent>, ClientError> {
        let deadline = Instant::now() + timeout;
        let frames = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(frames) = self.recv_raw(left)? else {
                return Ok(None);
            };
            if !frames.first().is_some_and(|key| is_welcome_key(key)) {
                break frames;
            }
        };
        let [key, body] = frames.as_slice() else {
            return Err(ClientError::BadReply(format!(
                "event with {} frames",
                frames.len()
            )));
        };
        let envelope: ReceivedEnvelope =
            serde_json::from_slice(body).map_err(|e| ClientError::BadReply(e.to_string()))?;
        Ok(Some(ReceivedEvent {
            key: String::from_utf8_lossy(key).into_owned(),
            envelope,
            raw: body.clone(),
        }))
    }
}

fn poll_in(sock: &zmq::Socket, timeout: Duration) -> Result<bool, ClientError> {
    let ms = timeout.as_millis().min(i64::MAX as u128) as i64;
    let mut items = [sock.as_poll_item(zmq::POLLIN)];
    loop {
        match zmq::poll(&mut items, ms) {
            Ok(n) => return Ok(n > 0 && items[0].is_readable()),
            Err(zmq::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
