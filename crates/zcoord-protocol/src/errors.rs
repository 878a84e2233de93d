//! JSON-RPC error objects and every error code zcoord uses, standard and application, in one
//! table. A code is never reused for another meaning; `data.kind` is the stable machine-readable name.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The numeric codes. Application codes live in -32000..-32099 (proto-docs/PROTOCOL.md lists them).
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;

    pub const SESSION_NOT_FOUND: i64 = -32001;
    pub const SESSION_BUSY: i64 = -32002;
    pub const MESSAGE_TOO_LARGE: i64 = -32003;
    pub const SERVER_BUSY: i64 = -32004;
    pub const SHUTTING_DOWN: i64 = -32005;
    pub const INVALID_FRAMES: i64 = -32006;
    pub const MESSAGE_NOT_FOUND: i64 = -32007;
    pub const REPLAY_UNAVAILABLE: i64 = -32008;
    pub const TOO_MANY_PENDING: i64 = -32009;
    pub const TOO_MANY_SESSIONS: i64 = -32010;
    pub const STORE_UNAVAILABLE: i64 = -32011;
    pub const HITL_NOT_FOUND: i64 = -32012;
    pub const HITL_RESOLVED: i64 = -32013;
    pub const VERSION_MISMATCH: i64 = -32014;
    pub const TOOL_CLAIMED: i64 = -32015;
    pub const TOOL_CALL_NOT_FOUND: i64 = -32016;
    pub const NOT_CLAIMANT: i64 = -32017;
    pub const TOO_MANY_CLIENTS: i64 = -32020;
    pub const MODEL_NOT_FOUND: i64 = -32018;
    pub const QUEUE_FULL: i64 = -32019;
}

/// The `error` member of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Adds (or replaces) `data.kind`.
    pub fn with_kind(self, kind: &str) -> Self {
        self.with_data("kind", json!(kind))
    }

    /// Adds one member to `data`, making it an object if needed.
    pub fn with_data(mut self, key: &str, value: Value) -> Self {
        let mut data = match self.data.take() {
            Some(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        data.insert(key.to_owned(), value);
        self.data = Some(Value::Object(data));
        self
    }

    pub fn parse_error(detail: &str) -> Self {
        RpcError::new(code::PARSE_ERROR, "parse error").with_data("detail", json!(detail))
    }

    pub fn invalid_request(detail: &str) -> Self {
        RpcError::new(code::INVALID_REQUEST, format!("invalid request: {detail}"))
    }

    pub fn method_not_found(method: &str) -> Self {
        RpcError::new(
            code::METHOD_NOT_FOUND,
            format!("method not found: {method}"),
        )
    }

    /// -32602 with `data.field` naming the offending parameter.
    pub fn invalid_params(field: &str, detail: &str) -> Self {
        RpcError::new(
            code::INVALID_PARAMS,
            format!("invalid params: {field}: {detail}"),
        )
        .with_data("field", json!(field))
    }

    /// -32602 for a param over one of the bounds in `protocol::limits`: `data.kind` names the
    /// bound, `data.limit` and `data.actual` give it and what came (in the bound's unit).
    fn over_limit(field: &str, kind: &str, what: String, actual: usize, limit: usize) -> Self {
        RpcError::invalid_params(field, &format!("{what}, over the limit of {limit}"))
            .with_kind(kind)
            .with_data("limit", json!(limit))
            .with_data("actual", json!(actual))
    }

    pub fn params_too_deep(depth: usize, limit: usize) -> Self {
        let what = format!("nested {depth} deep");
        Self::over_limit("params", "params_too_deep", what, depth, limit)
    }

    pub fn params_too_large(bytes: usize, limit: usize) -> Self {
        let what = format!("{bytes} bytes");
        Self::over_limit("params", "params_too_large", what, bytes, limit)
    }

    pub fn title_too_long(chars: usize, limit: usize) -> Self {
        let what = format!("{chars} characters");
        Self::over_limit("title", "title_too_long", what, chars, limit)
    }

    pub fn content_too_long(bytes: usize, limit: usize) -> Self {
        let what = format!("{bytes} bytes");
        Self::over_limit("content", "content_too_long", what, bytes, limit)
    }

    /// A text field over its bound: `data.kind` is `<field>_too_long`.
    pub fn too_long(field: &'static str, bytes: usize, limit: usize) -> Self {
        let kind = format!("{field}_too_long");
        let what = format!("{bytes} bytes");
        Self::over_limit(field, &kind, what, bytes, limit)
    }

    /// `client.hello` listed no protocol version this server speaks.
    pub fn version_mismatch(offered: &[u32], supported: &[u32]) -> Self {
        RpcError::new(
            code::VERSION_MISMATCH,
            format!("no common protocol version: the client speaks {offered:?}, this server {supported:?}"),
        )
        .with_kind("version_mismatch")
        .with_data("supported", json!(supported))
        .with_data("offered", json!(offered))
    }

    /// `tool.claim` lost: another client claimed the call first.
    pub fn tool_claimed(call_id: &str, client_id: &str) -> Self {
        RpcError::new(
            code::TOOL_CLAIMED,
            format!("tool call {call_id} is already claimed by {client_id}"),
        )
        .with_kind("tool_claimed")
        .with_data("call_id", json!(call_id))
        .with_data("client_id", json!(client_id))
    }

    /// `tool.claim`/`tool.result` named no client-run call that is open: unknown, or ended.
    pub fn tool_call_not_found(call_id: &str, detail: &str) -> Self {
        RpcError::new(
            code::TOOL_CALL_NOT_FOUND,
            format!("tool call {call_id}: {detail}"),
        )
        .with_kind("tool_call_not_found")
        .with_data("call_id", json!(call_id))
    }

    /// `tool.claim`/`tool.result` from a client that may not: it did not say hello declaring
    /// the tool, or (for a result) it is not the claimant.
    pub fn not_claimant(call_id: &str, detail: &str, claimant: Option<&str>) -> Self {
        let e = RpcError::new(code::NOT_CLAIMANT, format!("tool call {call_id}: {detail}"))
            .with_kind("not_claimant")
            .with_data("call_id", json!(call_id));
        match claimant {
            Some(c) => e.with_data("claimant", json!(c)),
            None => e,
        }
    }

    /// `client.hello` from one client more than the server keeps.
    pub fn too_many_clients(limit: usize) -> Self {
        RpcError::new(
            code::TOO_MANY_CLIENTS,
            format!("{limit} clients are present, the limit; say goodbye with another first"),
        )
        .with_kind("too_many_clients")
        .with_data("limit", json!(limit))
    }

    /// `hitl.respond` named a request this server never had (or no longer remembers).
    pub fn hitl_not_found(id: &str) -> Self {
        RpcError::new(code::HITL_NOT_FOUND, format!("no such request: {id}"))
            .with_kind("hitl_not_found")
            .with_data("id", json!(id))
    }

    /// The request was resolved already: `data.request` is how, and by whom.
    pub fn hitl_resolved(request: &crate::hitl::HitlRequest) -> Self {
        RpcError::new(
            code::HITL_RESOLVED,
            format!(
                "request {} is already {} (by {})",
                request.id,
                request.status.as_str(),
                request.resolved_by.as_deref().unwrap_or("?")
            ),
        )
        .with_kind("hitl_resolved")
        .with_data("request", json!(request))
    }

    /// `model` names no model this server has: `data.available` lists the names it has.
    pub fn model_not_found(model: &str, available: &[String]) -> Self {
        RpcError::new(
            code::MODEL_NOT_FOUND,
            format!("no model named {model:?}; model.list gives the names"),
        )
        .with_kind("model_not_found")
        .with_data("model", json!(model))
        .with_data("available", json!(available))
    }

    /// `message.send` with `when_busy: "queue"` would take a queue past its bound: the session's
    /// (`scope: "session"`: `limit` messages or `limit_bytes` of content) or the instance's
    /// (`scope: "instance"`: `limit_bytes` of content over all sessions). `queued` and
    /// `queued_bytes` are what that queue holds now. Nothing changed.
    pub fn queue_full(
        session_id: &str,
        scope: &str,
        queued: (u64, u64),
        limit: Option<u64>,
        limit_bytes: u64,
    ) -> Self {
        let (count, bytes) = queued;
        let e = RpcError::new(
            code::QUEUE_FULL,
            format!(
                "queue full ({scope}): {count} messages, {bytes} bytes queued; wait for a turn to end or clear the queue"
            ),
        )
        .with_kind("queue_full")
        .with_data("session_id", json!(session_id))
        .with_data("scope", json!(scope))
        .with_data("queued", json!(count))
        .with_data("queued_bytes", json!(bytes))
        .with_data("limit_bytes", json!(limit_bytes));
        match limit {
            Some(limit) => e.with_data("limit", json!(limit)),
            None => e,
        }
    }

    pub fn request_id_too_long(bytes: usize, limit: usize) -> Self {
        let what = format!("{bytes} bytes");
        Self::over_limit("request_id", "request_id_too_long", what, bytes, limit)
    }

    pub fn internal(detail: &str) -> Self {
        RpcError::new(code::INTERNAL_ERROR, format!("internal error: {detail}"))
    }

    pub fn session_not_found(session_id: &str) -> Self {
        RpcError::new(
            code::SESSION_NOT_FOUND,
            format!("session not found: {session_id}"),
        )
        .with_kind("session_not_found")
        .with_data("session_id", json!(session_id))
    }

    pub fn session_busy(session_id: &str, turn_id: &str) -> Self {
        RpcError::new(
            code::SESSION_BUSY,
            "session is busy: a turn is running; interrupt it or wait for llm.end",
        )
        .with_kind("session_busy")
        .with_data("session_id", json!(session_id))
        .with_data("turn_id", json!(turn_id))
    }

    pub fn message_too_large(size: usize, limit: usize) -> Self {
        RpcError::new(
            code::MESSAGE_TOO_LARGE,
            format!("message of {size} bytes is over the limit of {limit} bytes"),
        )
        .with_kind("message_too_large")
        .with_data("limit", json!(limit))
    }

    pub fn server_busy() -> Self {
        RpcError::new(
            code::SERVER_BUSY,
            "server busy: request queue full, retry shortly",
        )
        .with_kind("server_busy")
    }

    /// This peer already has `limit` requests, or `limit_bytes` of requests and unsent
    /// replies, in flight: read the replies before sending more.
    pub fn too_many_pending(limit: usize, limit_bytes: usize) -> Self {
        RpcError::new(
            code::TOO_MANY_PENDING,
            format!(
                "too many requests pending for this client (limit {limit} requests or {} MiB of requests and unread replies); read replies before sending more",
                limit_bytes >> 20
            ),
        )
        .with_kind("too_many_pending")
        .with_data("limit", json!(limit))
        .with_data("limit_bytes", json!(limit_bytes))
    }

    /// The server already holds `limit` sessions: delete one before creating another.
    pub fn too_many_sessions(count: usize, limit: usize) -> Self {
        RpcError::new(
            code::TOO_MANY_SESSIONS,
            format!("too many sessions ({count}, limit {limit}); delete one first"),
        )
        .with_kind("too_many_sessions")
        .with_data("limit", json!(limit))
        .with_data("actual", json!(count))
    }

    /// The store cannot commit (disk full, I/O error, the database file deleted or replaced):
    /// calls that change state are refused until it recovers. `saved: false` says the call was
    /// decided just before the failure was known and its change is not saved: it is kept and
    /// saved if the store recovers before the server stops (PROTOCOL.md §12).
    pub fn store_unavailable(reason: &str, saved: Option<bool>) -> Self {
        let e = RpcError::new(
            code::STORE_UNAVAILABLE,
            format!("store unavailable: {reason}; reads still work, retry changes later"),
        )
        .with_kind("store_unavailable")
        .with_data("reason", json!(reason));
        match saved {
            Some(saved) => e.with_data("saved", json!(saved)),
            None => e,
        }
    }

    pub fn shutting_down() -> Self {
        RpcError::new(code::SHUTTING_DOWN, "server is shutting down").with_kind("shutting_down")
    }

    pub fn message_not_found(field: &str, message_id: &str) -> Self {
        RpcError::new(
            code::MESSAGE_NOT_FOUND,
            format!("message not found in this session: {message_id}"),
        )
        .with_kind("message_not_found")
        .with_data("field", json!(field))
        .with_data("message_id", json!(message_id))
    }

    /// The events asked for are no longer held (or were numbered by another instance): the
    /// client must resynchronise with `state.sync`.
    pub fn replay_unavailable(reason: &str, oldest_seq: u64, latest_seq: u64) -> Self {
        RpcError::new(
            code::REPLAY_UNAVAILABLE,
            format!("replay unavailable ({reason}); resynchronise with state.sync"),
        )
        .with_kind("replay_unavailable")
        .with_data("reason", json!(reason))
        .with_data("oldest_seq", json!(oldest_seq))
        .with_data("latest_seq", json!(latest_seq))
    }

    pub fn invalid_frames(frames: usize) -> Self {
        RpcError::new(
            code::INVALID_FRAMES,
            format!(
                "expected one JSON frame (optionally after an empty delimiter), got {frames} frames"
            ),
        )
        .with_kind("invalid_frames")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_errors_golden_json() {
        assert_eq!(
            serde_json::to_value(RpcError::session_busy("s1", "t1")).unwrap(),
            json!({"code":-32002,
                   "message":"session is busy: a turn is running; interrupt it or wait for llm.end",
                   "data":{"kind":"session_busy","session_id":"s1","turn_id":"t1"}})
        );
        assert_eq!(
            serde_json::to_value(RpcError::invalid_params("session_id", "expected a string"))
                .unwrap(),
            json!({"code":-32602,"message":"invalid params: session_id: expected a string",
                   "data":{"field":"session_id"}})
        );
    }

    #[test]
    fn model_not_found_golden_json() {
        assert_eq!(
            serde_json::to_value(RpcError::model_not_found(
                "big",
                &["echo".into(), "fast".into()]
            ))
            .unwrap(),
            json!({"code":-32018,
                   "message":"no model named \"big\"; model.list gives the names",
                   "data":{"kind":"model_not_found","model":"big","available":["echo","fast"]}})
        );
    }

    #[test]
    fn too_many_sessions_golden_json() {
        assert_eq!(
            serde_json::to_value(RpcError::too_many_sessions(3, 3)).unwrap(),
            json!({"code":-32010,
                   "message":"too many sessions (3, limit 3); delete one first",
                   "data":{"kind":"too_many_sessions","limit":3,"actual":3}})
        );
    }

    #[test]
    fn queue_full_golden_json() {
        assert_eq!(
            serde_json::to_value(RpcError::queue_full(
                "s1",
                "session",
                (16, 64),
                Some(16),
                1 << 20
            ))
            .unwrap(),
            json!({"code":-32019,
                   "message":"queue full (session): 16 messages, 64 bytes queued; wait for a turn to end or clear the queue",
                   "data":{"kind":"queue_full","session_id":"s1","scope":"session","queued":16,
                           "queued_bytes":64,"limit":16,"limit_bytes":1048576}})
        );
    }

    #[test]
    fn codes_are_distinct() {
        let mut all = vec![
            code::PARSE_ERROR,
            code::INVALID_REQUEST,
            code::METHOD_NOT_FOUND,
            code::INVALID_PARAMS,
            code::INTERNAL_ERROR,
            code::SESSION_NOT_FOUND,
            code::SESSION_BUSY,
            code::MESSAGE_TOO_LARGE,
            code::SERVER_BUSY,
            code::SHUTTING_DOWN,
            code::INVALID_FRAMES,
            code::MESSAGE_NOT_FOUND,
            code::REPLAY_UNAVAILABLE,
            code::TOO_MANY_PENDING,
            code::TOO_MANY_SESSIONS,
            code::STORE_UNAVAILABLE,
            code::HITL_NOT_FOUND,
            code::HITL_RESOLVED,
            code::MODEL_NOT_FOUND,
            code::QUEUE_FULL,
        ];
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
