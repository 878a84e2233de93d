//! The transport's first look at one ROUTER message, as a pure function: what it answers by
//! itself (a wrong frame count, a body over the size limit, JSON that is not JSON-RPC), what it
//! drops (nothing to route a reply by), and what goes on towards the core. The transport thread
//! and the fuzz harness (`crate::harness`) both call it, so the fuzzer covers the real path.

use super::framing::{classify, Framed, Route};
use crate::protocol::errors::RpcError;
use crate::protocol::jsonrpc::{decode, Calls, Id, Incoming, Response};

/// Frames the transport keeps of one message; the rest are read and discarded (only their
/// count is known).
pub const MAX_FRAMES_KEPT: usize = 4;

/// The `why` of a body over the size limit (answered with `message_too_large`).
pub const OVER_SIZE_LIMIT: &str = "over the size limit";

/// What to do with one message.
#[derive(Debug)]
pub enum Triage {
    /// No routing id: nothing can be answered.
    Drop,
    /// Answered at once with `body`; `why` is for the log.
    Answer {
        route: Route,
        body: Vec<u8>,
        why: &'static str,
    },
    /// Well-formed calls (a batch may hold invalid elements with their answers): for the core,
    /// if the transport admits them.
    Calls { route: Route, calls: Calls },
}

/// Triage of a message whose first frames are `frames` (at most [`MAX_FRAMES_KEPT`] are looked
/// at) and which had `total` frames, against the request size limit `max_message_bytes`.
pub fn triage(frames: &[Vec<u8>], total: usize, max_message_bytes: usize) -> Triage {
    let kept = &frames[..frames.len().min(MAX_FRAMES_KEPT)];
    let (route, body) = match classify(kept, total) {
        Framed::Request { route, body } => (route, body),
        Framed::BadShape { route, frames } => {
            return answer(route, RpcError::invalid_frames(frames), "wrong frame count")
        }
        Framed::Unroutable => return Triage::Drop,
    };
    if body.len() > max_message_bytes {
        let error = RpcError::message_too_large(body.len(), max_message_bytes);
        return answer(route, error, OVER_SIZE_LIMIT);
    }
    match decode(body) {
        Incoming::Invalid(resp) | Incoming::Single(Err(resp)) => Triage::Answer {
            route,
            body: resp.to_bytes(),
            why: "not a JSON-RPC request",
        },
        Incoming::Single(Ok(req)) => Triage::Calls {
            route,
            calls: Calls::Single(req),
        },
        Incoming::Batch(items) => Triage::Calls {
            route,
            calls: Calls::Batch(items),
        },
    }
}

fn answer(route: Route, error: RpcError, why: &'static str) -> Triage {
    Triage::Answer {
        route,
        body: Response::err(Id::Null, error).to_bytes(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn frames(parts: &[&[u8]]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.to_vec()).collect()
    }

    fn answered(t: Triage) -> Value {
        match t {
            Triage::Answer { body, .. } => serde_json::from_slice(&body).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_kind_of_message_is_sorted() {
        assert!(matches!(triage(&[], 0, 100), Triage::Drop));
        let five = frames(&[b"id", b"a", b"b", b"c", b"d"]);
        let e = answered(triage(&five, 9, 100));
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.ends_with("got 8 frames"), "counted, not kept: {e}");
        let big = frames(&[b"id", &[b' '; 101]]);
        assert_eq!(answered(triage(&big, 2, 100))["error"]["code"], -32003);
        let junk = frames(&[b"id", b"{"]);
        assert_eq!(answered(triage(&junk, 2, 100))["error"]["code"], -32700);
        let ping = frames(&[
            b"id",
            br#"{"jsonrpc":"2.0","id":1,"method":"instance.ping"}"#,
        ]);
        match triage(&ping, 2, 100) {
            Triage::Calls { route, calls } => {
                assert_eq!(route.identity, b"id");
                assert!(calls.expects_reply());
            }
            other => panic!("{other:?}"),
        }
    }
}
