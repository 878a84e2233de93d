//! A closed-loop JSON-RPC client on a raw DEALER: one request at a time, timed from send to
//! receipt. Checks each answer the same way whichever server sent it (JSON, no `error` member),
//! so zcoord and the bare ROUTER are measured by identical clients.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::de::IgnoredAny;
use serde::Deserialize;

/// The longest any one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One answer, as a client saw it.
pub struct Answered {
    pub body: Vec<u8>,
    /// JSON without an `error` member.
    pub ok: bool,
    /// From sending the request to receiving the answer (before checking it).
    pub took: Duration,
}

/// A DEALER sending one request at a time.
pub struct Client {
    sock: zmq::Socket,
    next_id: u64,
}

impl Client {
    pub fn connect(ctx: &zmq::Context, endpoint: &str) -> anyhow::Result<Client> {
        let sock = ctx.socket(zmq::DEALER)?;
        sock.set_linger(0)?;
        sock.connect(endpoint)?;
        Ok(Client { sock, next_id: 1 })
    }

    /// Sends one request and waits for its answer.
    pub fn call(&mut self, method: &str) -> anyhow::Result<Answered> {
        #[derive(Deserialize)]
        struct Reply {
            error: Option<IgnoredAny>,
        }
        let id = self.next_id;
        self.next_id += 1;
        let request = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{}}}}"#);
        let sent = Instant::now();
        self.sock.send(request.as_bytes(), 0)?;
        let mut items = [self.sock.as_poll_item(zmq::POLLIN)];
        if zmq::poll(&mut items, REQUEST_TIMEOUT.as_millis() as i64)? == 0 {
            bail!("no answer to {method} within {REQUEST_TIMEOUT:?}");
        }
        let body = self.sock.recv_multipart(0)?.pop().context("empty answer")?;
        let took = sent.elapsed();
        let ok = serde_json::from_slice::<Reply>(&body).is_ok_and(|r| r.error.is_none());
        Ok(Answered { body, ok, took })
    }
}
