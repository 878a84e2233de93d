//! Shared wire shapes: sessions, messages, roles and statuses as clients see them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::ids::{MessageId, SessionId, TurnId};
use super::usage::SessionUsage;

/// Whether a session has a turn running. Extends the spec's `SessionPayload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Idle,
    Running,
}

/// The spec's `SessionPayload` (`id`, `title`, `updated_at`, `message_count`) plus `created_at`
/// and `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionPayload {
    pub id: SessionId,
    pub title: String,
    #[schemars(with = "crate::schema::Timestamp")]
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[schemars(with = "crate::schema::Timestamp")]
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub message_count: u64,
    pub status: SessionStatus,
    /// Tools approved for every call in this session (`hitl.respond` `approve_session`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<String>,
    /// The model its turns run (`session.configure`); absent: the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Its system prompt (`session.configure`); absent: the model's configured one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Messages queued behind the running turn (`message.send` `when_busy: "queue"`); absent
    /// when none are.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub queue_length: u64,
    /// Running token totals over the session's ended turns (richer streams, issue 14); absent
    /// while no turn has ended (all zero), so a snapshot of many idle sessions stays small.
    #[serde(default, skip_serializing_if = "SessionUsage::is_zero")]
    pub usage: SessionUsage,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    /// The result of a tool call made during a turn; the message's `tool` says which call.
    Tool,
}

/// Which tool call a `tool` message answers. Extends the spec's `MessagePayload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ToolCallInfo {
    pub call_id: String,
    pub tool_name: String,
    /// The call's JSON arguments, as text.
    pub params: String,
    pub is_error: bool,
}

/// How a message came to be: `complete`, or `interrupted` for an assistant reply cut short
/// (interrupt, model error, shutdown). Extends the spec's `MessagePayload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Complete,
    Interrupted,
}

/// The spec's `MessagePayload` (`id`, `role`, `content`, `created_at`) plus `session_id`,
/// `turn_id` and `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MessagePayload {
    pub id: MessageId,
    pub session_id: SessionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<TurnId>,
    pub role: Role,
    pub content: String,
    #[schemars(with = "crate::schema::Timestamp")]
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub status: MessageStatus,
    /// Set on `tool` messages only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolCallInfo>,
    /// On a user message sent by a client that said `client.hello`: who sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<super::clients::Author>,
}
