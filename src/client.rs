//! A small blocking client: a DEALER for calls and a SUB for events, each with timeouts so nothing
//! ever hangs. Used by the CLI subcommands and the integration tests; a reference for client authors.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::protocol::errors::RpcError;
use crate::protocol::events::ReceivedEnvelope;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no reply within {0:?} (is the server running?)")]
    Timeout(Duration),
    #[error("error reply {}: {}", .0.code, .0.message)]
    Rpc(RpcError),
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
        let sock = ctx.socket(zmq::DEALER)?;
        sock.set_linger(0)?;
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

/// A SUB connected to the PUB.
pub struct Subscriber {
    sock: zmq::Socket,
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
        let sock = ctx.socket(zmq::SUB)?;
        sock.set_linger(0)?;
        sock.set_rcvhwm(100_000)?;
        for p in prefixes {
            sock.set_subscribe(p.as_bytes())?;
        }
        sock.connect(endpoint)?;
        Ok(Subscriber { sock })
    }

    pub fn subscribe(&self, prefix: &str) -> Result<(), ClientError> {
        Ok(self.sock.set_subscribe(prefix.as_bytes())?)
    }

    /// The next message's frames as they arrived (key, envelope), without decoding: for readers
    /// that must keep up with a fast stream.
    pub fn recv_raw(&self, timeout: Duration) -> Result<Option<Vec<Vec<u8>>>, ClientError> {
        if !poll_in(&self.sock, timeout)? {
            return Ok(None);
        }
        Ok(Some(self.sock.recv_multipart(0)?))
    }

    /// The next event, or `Ok(None)` when none arrives within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Result<Option<ReceivedEvent>, ClientError> {
        let Some(frames) = self.recv_raw(timeout)? else {
            return Ok(None);
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
