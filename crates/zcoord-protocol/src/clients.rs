//! Clients as peers: `client.hello` (versions, identity, the tools a client runs), presence
//! (`client.list`, `client.joined`/`client.left`, `client.goodbye`), the author of a message, and
//! the calls of a client-run tool (`tool.claim`, `tool.result`, `tool.claimed`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::ids::{InstanceId, SessionId, TurnId};

/// Protocol versions this server speaks, oldest first; `client.hello` picks the highest that the
/// client also lists.
pub const SUPPORTED_VERSIONS: &[u32] = &[super::PROTOCOL_VERSION];

/// Who sent a user message: the client that said `client.hello` on the socket it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Author {
    pub client_id: String,
    pub name: String,
}

/// A tool a client offers to run: an OpenAI-style function, `parameters` a JSON Schema whose
/// top level is `{"type": "object", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClientToolSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub parameters: Value,
}

/// `client.hello` params.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    pub client_id: String,
    pub name: String,
    pub version: Option<String>,
    pub protocol_versions: Vec<u32>,
    pub capabilities: Map<String, Value>,
    pub tools: Vec<ClientToolSpec>,
}

/// `client.hello` result: the version both speak and what this server offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HelloResult {
    pub protocol_version: u32,
    pub server_version: String,
    pub instance_id: InstanceId,
    pub capabilities: ServerCapabilities,
}

/// What this server can do beyond the base protocol, so a client need not probe for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServerCapabilities {
    /// `tool.claim`/`tool.result` for tools declared in `client.hello`.
    pub client_tools: bool,
    /// `hitl.list`/`hitl.respond`.
    pub hitl: bool,
    /// `events.replay`.
    pub replay: bool,
    /// Seconds without a request after which a client is dropped from `client.list`.
    pub client_timeout_secs: u64,
    /// Seconds a client-run tool call waits to be claimed.
    pub tool_claim_timeout_secs: u64,
}

/// One present client, as `client.list`, `state.sync` and `client.joined` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClientInfo {
    pub client_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The version `client.hello` agreed on.
    pub protocol_version: u32,
    #[schemars(with = "crate::schema::Timestamp")]
    #[serde(with = "time::serde::rfc3339")]
    pub connected_at: OffsetDateTime,
    #[schemars(with = "crate::schema::Timestamp")]
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    /// The names of the tools it runs.
    #[serde(default)]
    pub tools: Vec<String>,
}

/// `client.joined`: a client said hello. `rejoined` when it replaced an entry of the same
/// `client_id` (a reconnect, or a second hello): that is one client, never two entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClientJoinedPayload {
    #[serde(flatten)]
    pub client: ClientInfo,
    #[serde(default)]
    pub rejoined: bool,
}

/// Why a client left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// It sent `client.goodbye`.
    Goodbye,
    /// It sent nothing for `client_timeout_secs`.
    Timeout,
    /// Its socket said `client.hello` as another client.
    Replaced,
}

/// `client.left`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClientLeftPayload {
    pub client_id: String,
    pub name: String,
    pub reason: LeaveReason,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClientListResult {
    pub clients: Vec<ClientInfo>,
}

/// Who runs a tool call: the server (its built-in tools) or a client (a tool it declared).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Executor {
    #[default]
    Server,
    Client,
}

impl Executor {
    pub fn is_server(&self) -> bool {
        *self == Executor::Server
    }
}

/// Names a client-run call: `call_id` as in `tool.start`; `turn_id` only when two running turns
/// have a call of that id (the model picks call ids, so they can repeat across turns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRef {
    pub call_id: String,
    pub turn_id: Option<String>,
}

/// `tool.result` params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResultParams {
    pub call: CallRef,
    /// What the model is told: a string as it is, any other JSON as its text.
    pub result: String,
    pub is_error: bool,
}

/// `tool.claim`'s answer to the winner: the call whole (`tool.start` may show its params cut).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolClaimResult {
    pub ok: bool,
    pub session_id: SessionId,
    pub turn_id: TurnId,
    pub call_id: String,
    pub tool_name: String,
    pub params: String,
}

/// `tool.claimed`: `client_id` won the call and runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolClaimedPayload {
    pub session_id: SessionId,
    pub turn_id: TurnId,
    pub call_id: String,
    pub tool_name: String,
    pub client_id: String,
}
