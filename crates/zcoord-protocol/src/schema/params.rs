//! The `params` each method accepts, as schemas. `methods::Call::parse` reads params field by
//! field (so that an error names its field); these structs describe the same object for the
//! schema and are never decoded into. The tests in `schema::conformance` hold the two together.
//!
//! Conventions, from `Call::parse`: an optional member may also be `null` (the same as absent,
//! except for `session.configure`, where `null` resets); unknown members are ignored, so no
//! `additionalProperties: false`. Byte bounds are given as `maxLength` in characters, which a
//! string within the byte bound always meets (a character is at least one byte); the exact bound
//! is in the description.

use schemars::JsonSchema;
use serde_json::{Map, Value};

use crate::hitl::Decision;
use crate::limits::{
    MAX_CLIENT_ID_BYTES, MAX_CONTENT_BYTES, MAX_MODEL_NAME_BYTES, MAX_REASON_BYTES,
    MAX_REQUEST_ID_BYTES, MAX_SYSTEM_PROMPT_BYTES, MAX_TITLE_CHARS,
};
use crate::methods::{
    MAX_CLIENT_NAME_BYTES, MAX_PROTOCOL_VERSIONS, MAX_REPLAY_PREFIXES, MAX_REPLAY_PREFIX_BYTES,
};
use crate::tool_schema::{MAX_CLIENT_TOOLS, MAX_TOOL_DESCRIPTION_BYTES, MAX_TOOL_NAME_BYTES};

/// No params: `{}`, `null` or absent. Unknown members are ignored.
#[derive(JsonSchema)]
pub struct NoParams {}

/// `state.sync`.
#[derive(JsonSchema)]
pub struct StateSyncParams {
    /// Accepted and ignored: one project per instance.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
}

/// `session.get`, `session.delete`, `session.activate`: one session. Any string is accepted; one
/// that names no live session is `session_not_found`.
#[derive(JsonSchema)]
pub struct SessionRefParams {
    pub session_id: String,
}

/// `session.create`.
#[derive(JsonSchema)]
pub struct SessionCreateParams {
    /// At most 256 characters (Unicode scalar values) as sent: `title_too_long` beyond. Stored
    /// trimmed and clipped to 60.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_TITLE_CHARS))]
    pub title: Option<String>,
}

/// `session.interrupt`.
#[derive(JsonSchema)]
pub struct SessionInterruptParams {
    pub session_id: String,
    /// Also discard the messages queued behind the turn (`cleared` says how many).
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    pub clear_queue: Option<bool>,
}

/// What `message.send` does when the session's turn is still running.
#[derive(JsonSchema)]
#[schemars(rename_all = "lowercase")]
pub enum WhenBusy {
    /// Refuse the send with `session_busy` (the default).
    Reject,
    /// Queue it to run as the session's next turn.
    Queue,
}

/// `message.send`.
#[derive(JsonSchema)]
pub struct MessageSendParams {
    /// Absent: a new session, titled from the content.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Not blank; at most 262144 bytes of UTF-8 (`content_too_long`).
    #[schemars(length(min = 1, max = MAX_CONTENT_BYTES))]
    pub content: String,
    /// Idempotency key, global to the instance; at most 256 bytes (`request_id_too_long`).
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_REQUEST_ID_BYTES))]
    pub request_id: Option<String>,
    /// A name from `model.list` for this turn alone; at most 128 bytes (`model_too_long`).
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_MODEL_NAME_BYTES))]
    pub model: Option<String>,
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    pub when_busy: Option<WhenBusy>,
}

/// `message.list`. `before` and `after` together are refused.
#[derive(JsonSchema)]
pub struct MessageListParams {
    pub session_id: String,
    /// Messages per page: default 100, lowered to 1000.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub limit: Option<u64>,
    /// A message id: the page just before it (oldest first).
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// A message id: the page just after it.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// `message.get`.
#[derive(JsonSchema)]
pub struct MessageGetParams {
    pub session_id: String,
    pub message_id: String,
}

/// `events.replay`.
#[derive(JsonSchema)]
pub struct EventsReplayParams {
    /// The events numbered above this one.
    pub after_seq: u64,
    /// Key prefixes, as a SUB subscription matches them; absent or empty: all. At most 32 of at
    /// most 256 bytes.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_REPLAY_PREFIXES), inner(length(max = MAX_REPLAY_PREFIX_BYTES)))]
    pub prefixes: Option<Vec<String>>,
    /// Events per answer: default 1000, lowered to 10000.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub limit: Option<u64>,
    /// The instance `after_seq` came from; another instance's is `replay_unavailable`.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
}

/// `hitl.list`.
#[derive(JsonSchema)]
pub struct HitlListParams {
    /// Only this session's requests; absent: all.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

/// `hitl.respond`: exactly one of `decision` (a tool approval) and `answer` (a question).
#[derive(JsonSchema)]
#[schemars(extend("oneOf" = [
    {"required": ["decision"],
     "properties": {"decision": {"not": {"type": "null"}}, "answer": {"type": "null"}}},
    {"required": ["answer"],
     "properties": {"answer": {"not": {"type": "null"}}, "decision": {"type": "null"}}}
]))]
pub struct HitlRespondParams {
    /// The request's id.
    pub id: String,
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The answer to a question; at most 262144 bytes.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_CONTENT_BYTES))]
    pub answer: Option<String>,
    /// Why; at most 4096 bytes.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_REASON_BYTES))]
    pub reason: Option<String>,
    /// Who answered (ignored for a client that said `client.hello`); at most 256 bytes.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_CLIENT_ID_BYTES))]
    pub client_id: Option<String>,
}

/// A tool a client declares in `client.hello`: an OpenAI-style function.
#[derive(JsonSchema)]
pub struct ClientTool {
    /// 1-64 of `A-Z a-z 0-9 _ -`, unique in the hello, not a built-in tool's.
    #[schemars(regex(pattern = tool_name_pattern()))]
    pub name: String,
    /// At most 4096 bytes.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_TOOL_DESCRIPTION_BYTES))]
    pub description: Option<String>,
    /// A JSON Schema whose top level is `{"type": "object", ...}`; at most 16 KiB as compact JSON.
    #[schemars(extend("required" = ["type"], "properties" = {"type": {"const": "object"}}))]
    pub parameters: Map<String, Value>,
}

fn tool_name_pattern() -> String {
    format!("^[A-Za-z0-9_-]{{1,{MAX_TOOL_NAME_BYTES}}}$")
}

/// `client.hello`.
#[derive(JsonSchema)]
pub struct ClientHelloParams {
    /// The client's own stable id, kept across reconnects; not blank, at most 256 bytes.
    #[schemars(length(min = 1, max = MAX_CLIENT_ID_BYTES))]
    pub client_id: String,
    /// Shown to people; at most 256 bytes.
    #[schemars(length(max = MAX_CLIENT_NAME_BYTES))]
    pub name: String,
    /// At most 256 bytes.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_CLIENT_NAME_BYTES))]
    pub version: Option<String>,
    /// The versions the client speaks: 1 to 16 positive integers.
    #[schemars(length(min = 1, max = MAX_PROTOCOL_VERSIONS), inner(range(min = 1)))]
    pub protocol_versions: Vec<u32>,
    /// Accepted (at most 4096 bytes as compact JSON) and ignored for now.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    #[schemars(description = "Accepted and ignored for now; at most 4096 bytes as compact JSON.")]
    pub capabilities: Option<Map<String, Value>>,
    /// The tools this client runs, offered to the model while it is present; at most 32.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_CLIENT_TOOLS))]
    pub tools: Option<Vec<ClientTool>>,
}

/// `tool.claim`.
#[derive(JsonSchema)]
pub struct ToolClaimParams {
    /// As in `tool.start`; at most 256 bytes.
    #[schemars(length(max = MAX_CLIENT_ID_BYTES))]
    pub call_id: String,
    /// Needed only when two running turns have a call of that id; at most 256 bytes.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_CLIENT_ID_BYTES))]
    pub turn_id: Option<String>,
}

/// `tool.result`.
#[derive(JsonSchema)]
pub struct ToolResultParams {
    /// As in `tool.start`; at most 256 bytes.
    #[schemars(length(max = MAX_CLIENT_ID_BYTES))]
    pub call_id: String,
    /// Needed only when two running turns have a call of that id; at most 256 bytes.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_CLIENT_ID_BYTES))]
    pub turn_id: Option<String>,
    /// What the model is told: text, or any other JSON (not null), sent as its JSON text; at
    /// most 262144 bytes.
    #[schemars(with = "ToolResultValue")]
    pub result: Value,
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
}

/// Any JSON but `null`.
pub struct ToolResultValue;

impl JsonSchema for ToolResultValue {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ToolResultValue".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"not": {"type": "null"}})
    }
}

/// `session.configure`: each setting is left as it is when absent, reset when `null`, set when
/// a string.
#[derive(JsonSchema)]
pub struct SessionConfigureParams {
    pub session_id: String,
    /// A name from `model.list`, or `null` for the default model; at most 128 bytes.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_MODEL_NAME_BYTES))]
    pub model: Option<String>,
    /// Sent in place of the model's configured prompt; `""` sends none, `null` returns to the
    /// model's; at most 8192 bytes.
    #[schemars(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_SYSTEM_PROMPT_BYTES))]
    pub system_prompt: Option<String>,
}
