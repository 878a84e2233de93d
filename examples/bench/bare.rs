//! The bare libzmq counterparts zcoord is measured against: a PUB sending two-frame messages of the
//! sizes zcoord's token events have, as fast as it can or paced, and a ROUTER that answers every
//! request at once (echoing it, or with a fixed body of the size of zcoord's answer). Each runs
//! with a libzmq context of its own, as a separate server process would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use crate::model::stamped_token;

/// The key of the messages that make a bare subscriber live; readers ignore it.
pub const PROBE_KEY: &[u8] = b"probe";

/// A token event's stand-in: `len` bytes (or more, if `len` is too small for the fields) ending
/// like zcoord's envelope, with the index and a freshly stamped token, so a reader finds and
/// decodes the same fields in it.
pub fn token_body(len: usize, index: u64, pad: &str) -> Vec<u8> {
    let tail = format!(r#"","index":{index},"token":"{}"}}}}"#, stamped_token(pad));
    let head = br#"{"f":""#;
    let fill = len.saturating_sub(head.len() + tail.len());
    let mut body = Vec::with_capacity(head.len() + fill + tail.len());
    body.extend_from_slice(head);
    body.resize(head.len() + fill, b'b');
    body.extend_from_slice(tail.as_bytes());
    body
}

/// A key of `len` bytes starting like a token event's key.
pub fn token_key(len: usize) -> Vec<u8> {
    let mut key = b"llm.token/".to_vec();
    key.resize(len.max(key.len()), b'k');
    key
}

pub struct BarePub {
    sock: zmq::Socket,
    pub endpoint: String,
    _ctx: zmq::Context,
}

impl BarePub {
    pub fn bind(sndhwm: i32) -> anyhow::Result<BarePub> {
        let ctx = zmq::Context::new();
        let sock = ctx.socket(zmq::PUB)?;
        sock.set_sndhwm(sndhwm)?;
        sock.set_linger(0)?;
        sock.bind("tcp://127.0.0.1:0")?;
        let endpoint = sock
            .get_last_endpoint()?
            .map_err(|_| anyhow!("bare PUB endpoint is not UTF-8"))?;
        Ok(BarePub {
            sock,
            endpoint,
            _ctx: ctx,
        })
    }

    /// One message subscribers take as proof they are live.
    pub fn probe(&self) -> anyhow::Result<()> {
        self.sock
            .send_multipart([PROBE_KEY, b"{}"], zmq::DONTWAIT)
            .context("bare PUB probe")
    }

    pub fn send(&self, key: &[u8], body: &[u8]) -> anyhow::Result<()> {
        self.sock.send(key, zmq::SNDMORE)?;
        self.sock.send(body, 0)?;
        Ok(())
    }

    /// `count` token stand-ins as fast as they go.
    pub fn flood(&self, count: u64, key: &[u8], body_len: usize, pad: &str) -> anyhow::Result<()> {
        for i in 0..count {
            self.send(key, &token_body(body_len, i, pad))?;
        }
        Ok(())
    }

    /// `streams` × `per_stream_rate` token stand-ins a second for `duration`: every period, one
    /// per stream, as `streams` paced models each emitting in its turn would.
    pub fn paced(
        &self,
        streams: u64,
        per_stream_rate: f64,
        duration: Duration,
        key: &[u8],
        body_len: usize,
        pad: &str,
    ) -> anyhow::Result<u64> {
        let ticks = (duration.as_secs_f64() * per_stream_rate).round() as u64;
        let start = Instant::now();
        let mut index = 0;
        for tick in 0..ticks {
            let due = start + Duration::from_secs_f64(tick as f64 / per_stream_rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            for _ in 0..streams {
                self.send(key, &token_body(body_len, index, pad))?;
                index += 1;
            }
        }
        Ok(index)
    }
}

/// How the bare ROUTER answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// With the request itself.
    Echo,
    /// With this body, whatever the request.
    Fixed(Vec<u8>),
}

pub struct BareRouter {
    pub endpoint: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl BareRouter {
    pub fn start(answer: Answer) -> anyhow::Result<BareRouter> {
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER)?;
        router.set_linger(0)?;
        router.bind("tcp://127.0.0.1:0")?;
        let endpoint = router
            .get_last_endpoint()?
            .map_err(|_| anyhow!("bare ROUTER endpoint is not UTF-8"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let _ctx = ctx;
            while !stopping.load(Ordering::Relaxed) {
                let mut items = [router.as_poll_item(zmq::POLLIN)];
                if zmq::poll(&mut items, 50)? == 0 {
                    continue;
                }
                while let Ok(frames) = router.recv_multipart(zmq::DONTWAIT) {
                    match &answer {
                        Answer::Echo => router.send_multipart(frames, 0)?,
                        Answer::Fixed(body) => {
                            router.send(&frames[0], zmq::SNDMORE)?;
                            router.send(&body[..], 0)?;
                        }
                    }
                }
            }
            Ok(())
        });
        Ok(BareRouter {
            endpoint,
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(anyhow!("bare ROUTER thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for BareRouter {
    /// A router left behind by an early return stops too (within one poll).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{Seen, TokenReader};

    #[test]
    fn stand_ins_have_the_sizes_asked_for_and_read_like_tokens() {
        let key = token_key(46);
        let body = token_body(358, 7, "xxxx");
        assert_eq!((key.len(), body.len()), (46, 358));
        let mut reader = TokenReader::new(true);
        assert_eq!(reader.take(&[key, body]), Seen::Token);
        let t = reader.finish();
        assert_eq!((t.tokens, t.gaps, t.latencies_ns.len()), (1, 7, 1));
    }
}
