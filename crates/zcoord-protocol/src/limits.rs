//! Input limits: the bound on everything one request may carry or make the server hold, and the
//! walk that measures a `params` value's depth and size without recursion. Each bound has its own
//! `data.kind` when it refuses (proto-docs/PROTOCOL.md §3 lists them).
//!
//! Bounds that are configured rather than fixed live with their configuration:
//! the request frame size in `TransportConfig::max_message_bytes` (`message_too_large`), the
//! requests one peer may have pending in `TransportConfig::per_peer_pending`
//! (`too_many_pending`), and the number of sessions in `CoreConfig::max_sessions`
//! (`too_many_sessions`, default [`DEFAULT_MAX_SESSIONS`]). The batch length is
//! [`super::jsonrpc::MAX_BATCH_LEN`] (`batch_too_large`), next to the decoder that applies it.

use std::io;

use serde::Serialize;
use serde_json::Value;

use super::errors::RpcError;

/// Deepest nesting of `params`, counting `params` itself as 1: `{"a":[1]}` is 2 deep. No method
/// needs more than 2; the slack is for members a newer client may add.
pub const MAX_PARAMS_DEPTH: usize = 32;
/// Largest `params`, measured as compact JSON. Holds the longest `content` with room to spare,
/// and stays under the default 1 MiB frame.
pub const MAX_PARAMS_BYTES: usize = 512 << 10;
/// Longest `message.send` `content`, in UTF-8 bytes: a long pasted document, not a data dump.
pub const MAX_CONTENT_BYTES: usize = 256 << 10;
/// Longest `message.send` `request_id`, in UTF-8 bytes. The server remembers 10,000 of them, so
/// their length is part of its memory bound; a UUID or a hash fits many times over.
pub const MAX_REQUEST_ID_BYTES: usize = 256;
/// Longest `hitl.respond` `reason` and `client_id`, in UTF-8 bytes (an `answer` is bounded like
/// a message's content, [`MAX_CONTENT_BYTES`]).
pub const MAX_REASON_BYTES: usize = 4 << 10;
pub const MAX_CLIENT_ID_BYTES: usize = 256;
/// Longest model name `session.configure` and `message.send` take, in UTF-8 bytes
/// (`model_too_long`); the names themselves come from the server's configuration.
pub const MAX_MODEL_NAME_BYTES: usize = 128;
/// Longest `session.configure` `system_prompt`, in UTF-8 bytes (`system_prompt_too_long`): the
/// core holds it with the session and every `SessionPayload` carries it, so it is bounded like
/// an event's text. A longer prompt belongs in the model's configuration (`system_prompt`).
pub const MAX_SYSTEM_PROMPT_BYTES: usize = MAX_EVENT_TEXT_BYTES;
/// A human-in-the-loop request unanswered this long becomes `expired` (`--hitl-timeout-secs`).
pub const DEFAULT_HITL_TIMEOUT_SECS: i64 = 600;
/// A client that said `client.hello` and then sent nothing for this long leaves.
pub const DEFAULT_CLIENT_TIMEOUT_SECS: i64 = 15;
/// A client-run tool call nobody claims for this long ends as an error.
pub const DEFAULT_TOOL_CLAIM_TIMEOUT_SECS: i64 = 30;
/// Clients present at once (each holds at most `tool_schema::MAX_CLIENT_TOOLS_BYTES` of tools).
pub const MAX_CLIENTS: usize = 64;
/// `message.list`: messages in a page when `limit` is absent, and at most (larger values are
/// lowered). A page also stops before the message that would take its encoded messages past
/// [`MAX_PAGE_BYTES`] (the first message is always included), and says so with `has_more`.
pub const DEFAULT_PAGE_ITEMS: usize = 100;
pub const MAX_PAGE_ITEMS: usize = 1_000;
pub const MAX_PAGE_BYTES: usize = 1 << 20;
/// Longest text an event carries in one field (`message.append` `content`, `tool.start`
/// `params`, `tool.end` `result`), in UTF-8 bytes: longer text is cut on a character boundary
/// and the event says so (`content_truncated`, `content_bytes`, …); the whole text is in the
/// store (`message.get`, `message.list`). Bounds what one event pins in every subscriber's queue.
pub const MAX_EVENT_TEXT_BYTES: usize = 8 << 10;
/// Longest `llm.token`, in UTF-8 bytes: a longer piece of model output is published as several
/// tokens (their concatenation is unchanged).
pub const MAX_TOKEN_BYTES: usize = 4 << 10;
/// Longest `tool.args` `delta`, in UTF-8 bytes: a longer piece of a call's arguments is
/// published as several deltas (their concatenation is unchanged). A call's deltas stop where its
/// `tool.start` `params` are cut, at [`MAX_EVENT_TEXT_BYTES`].
pub const MAX_ARGS_DELTA_BYTES: usize = 4 << 10;
/// Tool calls of one turn whose arguments may stream at once (started by a `tool.args`, not yet
/// by their `tool.start`), and the longest `call_id` or `tool_name` such a call may have: a
/// call past either bound streams nothing until its `tool.start`, whose `tool.args` then carry
/// its arguments at once. Bounds what a model that never starts its calls makes a turn hold.
pub const MAX_ARGS_STREAMS: usize = 64;
pub const MAX_ARGS_NAME_BYTES: usize = 256;
/// Most text one turn may stream, in UTF-8 bytes, over all its assistant messages: a model that
/// goes past it has its turn ended with `llm.end {reason: "error"}` (its text so far is kept).
/// Far above any model's output limit (128k tokens are about 0.5 MiB), and above the benchmark's
/// 200,000-token turns (7 MB); bounds what a running turn holds in memory.
pub const MAX_TURN_TEXT_BYTES: usize = 16 << 20;

/// Most bytes of message content a turn's model is given when the model names no context size
/// of its own (the echo model): the newest messages of the session, the newest always (about
/// 64k tokens). The history lives in the store; this is what one running turn reads of it into
/// memory, and what it reserves of the room all running turns share (`model::context`).
pub const DEFAULT_CONTEXT_BYTES: usize = 256 << 10;
/// `session.list` events carry at most this many sessions (the most recently updated), with
/// `session_count` and `truncated`; the `session.list` method returns them all.
pub const SESSION_LIST_EVENT_MAX: usize = 16;
/// Largest message the PUB accepts from a subscriber, in bytes: a subscription (its prefix plus
/// at most 10 bytes of command name, plus about 40 of encryption under CURVE) or a handshake
/// command (CURVE's INITIATE takes 300 to 600). A larger one disconnects its subscriber. The
/// longest key is a topic, `/` and a session id (about 60 bytes), so a prefix of up to about
/// 950 bytes is accepted and anything longer is of no use to anyone.
pub const MAX_SUBSCRIPTION_MESSAGE_BYTES: usize = 1024;
/// Longest title a client may give, in characters (Unicode scalar values), before trimming.
/// Titles are then stored clipped to `core::session::TITLE_MAX_CHARS`.
pub const MAX_TITLE_CHARS: usize = 256;
/// Sessions held at once (deleted ones do not count) unless `serve --max-sessions` says otherwise.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;
/// Messages one session may hold queued behind its running turn (`message.send` with
/// `when_busy: "queue"`); one more is refused with `queue_full`.
pub const DEFAULT_MAX_QUEUED_MESSAGES: usize = 16;
/// Bytes of content one session may hold queued; past it, `queue_full`. Four maximal messages.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 1 << 20;
/// Bytes of content all sessions together may hold queued (it is kept in memory as well as in
/// the store, so the queued turns can start without a read); past it, `queue_full`.
pub const DEFAULT_MAX_QUEUED_BYTES_TOTAL: usize = 64 << 20;

// The longest content fits in params with room for the other members, and params in the default
// 1 MiB frame with room for the envelope: each limit is reachable before the one around it.
const _: () = assert!(MAX_CONTENT_BYTES + 1024 < MAX_PARAMS_BYTES);
const _: () = assert!(MAX_PARAMS_BYTES + 1024 < 1 << 20);

/// How deep and how large a JSON value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    /// Containers inside containers: a scalar is 0, `[]` and `{}` are 1.
    pub depth: usize,
    /// Bytes of the value encoded as compact JSON (as `serde_json::to_vec` writes it).
    pub bytes: usize,
    /// Values in it, containers and scalars alike: each costs a decoded tree about
    /// [`DECODED_VALUE_BYTES`] on top of its text.
    pub values: usize,
}

/// What one decoded JSON value costs in memory besides its text, about: the `Value` itself, a
/// number's own allocation (numbers keep their digits: `arbitrary_precision`) or a container's
/// slot. `[0,0,…]` takes some 40 times its encoded size once decoded, so a request's bytes are
/// counted decoded, not as they came.
pub const DECODED_VALUE_BYTES: usize = 80;

/// Refuses `params` deeper than [`MAX_PARAMS_DEPTH`] (`params_too_deep`) or larger than
/// [`MAX_PARAMS_BYTES`] (`params_too_large`); depth is checked first.
pub fn check_params(params: &Value) -> Result<(), RpcError> {
    let m = measure(params);
    if m.depth > MAX_PARAMS_DEPTH {
        return Err(RpcError::params_too_deep(m.depth, MAX_PARAMS_DEPTH));
    }
    if m.bytes > MAX_PARAMS_BYTES {
        return Err(RpcError::params_too_large(m.bytes, MAX_PARAMS_BYTES));
    }
    Ok(())
}

/// Refuses a caller-supplied title over [`MAX_TITLE_CHARS`] (`title_too_long`).
pub fn check_title(title: &str) -> Result<(), RpcError> {
    let chars = title.chars().count();
    if chars > MAX_TITLE_CHARS {
        return Err(RpcError::title_too_long(chars, MAX_TITLE_CHARS));
    }
    Ok(())
}

/// Refuses a `request_id` over [`MAX_REQUEST_ID_BYTES`] (`request_id_too_long`).
pub fn check_request_id(request_id: &str) -> Result<(), RpcError> {
    if request_id.len() > MAX_REQUEST_ID_BYTES {
        return Err(RpcError::request_id_too_long(
            request_id.len(),
            MAX_REQUEST_ID_BYTES,
        ));
    }
    Ok(())
}

/// `text` cut to at most `max` bytes on a character boundary; `None` when it fits as it is.
pub fn clip_text(text: &str, max: usize) -> Option<&str> {
    if text.len() <= max {
        return None;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(&text[..end])
}

/// Refuses message content over [`MAX_CONTENT_BYTES`] (`content_too_long`).
/// Cuts `text` to [`MAX_EVENT_TEXT_BYTES`] on a character boundary; returns its full length in
/// bytes when it was cut. The one rule for every text an event carries.
pub fn clip_field(text: &mut String) -> Option<u64> {
    let full = text.len();
    let cut = clip_text(text, MAX_EVENT_TEXT_BYTES)?.len();
    text.truncate(cut);
    Some(full as u64)
}

/// Refuses a text field over `limit` bytes (`<field>_too_long`).
pub fn check_len(field: &'static str, text: &str, limit: usize) -> Result<(), RpcError> {
    if text.len() > limit {
        return Err(RpcError::too_long(field, text.len(), limit));
    }
    Ok(())
}

pub fn check_content(content: &str) -> Result<(), RpcError> {
    if content.len() > MAX_CONTENT_BYTES {
        return Err(RpcError::content_too_long(content.len(), MAX_CONTENT_BYTES));
    }
    Ok(())
}

/// The members still to visit of one open container.
enum Open<'a> {
    Array(std::slice::Iter<'a, Value>),
    Object(serde_json::map::Iter<'a>),
}

/// Depth and encoded size in one walk. The stack holds one iterator per open container, so it
/// grows with the depth, never with the width, and no call recurses whatever the input.
pub fn measure(value: &Value) -> Measure {
    let mut m = Measure {
        depth: 0,
        bytes: 0,
        values: 0,
    };
    let mut open: Vec<Open<'_>> = Vec::new();
    let mut next = Some(value);
    loop {
        if let Some(v) = next.take() {
            m.values += 1;
            match v {
                Value::Array(items) => {
                    m.bytes += brackets_and_commas(items.len());
                    open.push(Open::Array(items.iter()));
                }
                Value::Object(members) => {
                    // Each member adds a colon on top of its key and value.
                    m.bytes += brackets_and_commas(members.len()) + members.len();
                    open.push(Open::Object(members.iter()));
                }
                scalar => m.bytes += encoded_len(scalar),
            }
            m.depth = m.depth.max(open.len());
        }
        let Some(top) = open.last_mut() else {
            return m;
        };
        next = match top {
            Open::Array(items) => items.next(),
            Open::Object(members) => members.next().map(|(key, v)| {
                m.bytes += encoded_len(key);
                v
            }),
        };
        if next.is_none() {
            open.pop();
        }
    }
}

/// `[` `]` and the commas between `n` members (the same for `{` `}`).
fn brackets_and_commas(n: usize) -> usize {
    2 + n.saturating_sub(1)
}

/// The compact JSON length of a scalar or a key, escapes included, written nowhere.
pub fn encoded_len<T: Serialize + ?Sized>(v: &T) -> usize {
    let mut count = Count(0);
    // Writing to `Count` cannot fail, and a scalar has no map key that could.
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

/// A writer that only counts.
struct Count(usize);

impl io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `depth` levels of arrays around a zero: `[[0]]` for 2.
    fn nested(depth: usize) -> Value {
        (0..depth).fold(json!(0), |inner, _| Value::Array(vec![inner]))
    }

    #[test]
    fn measure_matches_the_encoder_and_counts_containers() {
        let cases = [
            (json!(null), 0),
            (json!("tab\there \"quoted\" \u{1} é"), 0),
            (json!(-1.5e300), 0),
            (json!([]), 1),
            (json!({}), 1),
            (json!({"content": "hi", "n": [1, 2.5, true, null]}), 2),
            (json!({"a": {"b": {"c": []}}, "d\n": [{}, [[]]]}), 4),
            (nested(100), 100),
        ];
        for (value, depth) in cases {
            let m = measure(&value);
            assert_eq!(m.depth, depth, "{value}");
            assert_eq!(
                m.bytes,
                serde_json::to_vec(&value).unwrap().len(),
                "{value}"
            );
        }
    }

    #[test]
    fn params_at_the_bounds_pass_and_past_them_are_refused_with_their_kind() {
        // `{"a":[[...0...]]}`: the object is one level.
        let deep = |depth: usize| json!({ "a": nested(depth - 1) });
        assert_eq!(check_params(&deep(MAX_PARAMS_DEPTH)), Ok(()));
        assert_eq!(
            serde_json::to_value(check_params(&deep(MAX_PARAMS_DEPTH + 1)).unwrap_err()).unwrap(),
            json!({"code": -32602,
                   "message": "invalid params: params: nested 33 deep, over the limit of 32",
                   "data": {"field": "params", "kind": "params_too_deep",
                            "limit": 32, "actual": 33}})
        );

        // `{"x":"…"}` is 8 bytes around the string.
        let sized = |bytes: usize| json!({ "x": "y".repeat(bytes - 8) });
        assert_eq!(check_params(&sized(MAX_PARAMS_BYTES)), Ok(()));
        assert_eq!(
            serde_json::to_value(check_params(&sized(MAX_PARAMS_BYTES + 1)).unwrap_err()).unwrap(),
            json!({"code": -32602,
                   "message": "invalid params: params: 524289 bytes, over the limit of 524288",
                   "data": {"field": "params", "kind": "params_too_large",
                            "limit": 524_288, "actual": 524_289}})
        );
    }

    #[test]
    fn titles_count_characters_and_content_counts_bytes() {
        assert_eq!(check_title(&"é".repeat(MAX_TITLE_CHARS)), Ok(()));
        assert_eq!(
            serde_json::to_value(check_title(&"é".repeat(MAX_TITLE_CHARS + 1)).unwrap_err())
                .unwrap(),
            json!({"code": -32602,
                   "message": "invalid params: title: 257 characters, over the limit of 256",
                   "data": {"field": "title", "kind": "title_too_long",
                            "limit": 256, "actual": 257}})
        );

        assert_eq!(check_content(&"x".repeat(MAX_CONTENT_BYTES)), Ok(()));
        // Two bytes a character: half as many characters reach the limit.
        let content = "é".repeat(MAX_CONTENT_BYTES / 2 + 1);
        assert_eq!(
            serde_json::to_value(check_content(&content).unwrap_err()).unwrap(),
            json!({"code": -32602,
                   "message": "invalid params: content: 262146 bytes, over the limit of 262144",
                   "data": {"field": "content", "kind": "content_too_long",
                            "limit": 262_144, "actual": 262_146}})
        );
    }

    #[test]
    fn the_longest_content_with_its_ids_fits_in_params() {
        let worst_plain = json!({"content": "x".repeat(MAX_CONTENT_BYTES),
                                 "session_id": "01a1ffe3-a7e6-76ef-991c-36cda94c2b5a",
                                 "request_id": "r".repeat(200)});
        assert!(check_params(&worst_plain).is_ok());
    }
}
