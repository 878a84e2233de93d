//! PUB events: topics, payloads and the envelope. One enum whose variant decides both the topic and
//! the payload, so the two cannot disagree.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::clients::{
    Author, ClientJoinedPayload, ClientLeftPayload, Executor, ToolClaimedPayload,
};
use super::hitl::HitlRequest;
use super::ids::{CallId, InstanceId, MessageId, SessionId, TurnId};
use super::limits::clip_field;
use super::token_encoder::TokenEncoder;
use super::types::{MessageStatus, Role, SessionPayload, ToolCallInfo};
use super::usage::TurnUsage;

pub mod topic {
    pub const SESSION_LIST: &str = "session.list";
    pub const SESSION_UPDATE: &str = "session.update";
    pub const SESSION_ACTIVATED: &str = "session.activated";
    pub const SESSION_DELETED: &str = "session.deleted";
    pub const MESSAGE_APPEND: &str = "message.append";
    pub const LLM_START: &str = "llm.start";
    pub const LLM_TOKEN: &str = "llm.token";
    pub const LLM_END: &str = "llm.end";
    pub const TOOL_ARGS: &str = "tool.args";
    pub const TOOL_START: &str = "tool.start";
    pub const TOOL_END: &str = "tool.end";
    pub const INSTANCE_HEARTBEAT: &str = "instance.heartbeat";
    pub const INSTANCE_SHUTDOWN: &str = "instance.shutdown";
    pub const INSTANCE_PROMOTED: &str = "instance.promoted";
    pub const INSTANCE_WELCOME: &str = "instance.welcome";
    pub const INSTANCE_STATUS: &str = "instance.status";
    pub const HITL_PENDING: &str = "hitl.pending";
    pub const HITL_RESOLVED: &str = "hitl.resolved";
    pub const CLIENT_JOINED: &str = "client.joined";
    pub const CLIENT_LEFT: &str = "client.left";
    pub const TOOL_CLAIMED: &str = "tool.claimed";
    pub const MESSAGE_QUEUED: &str = "message.queued";
    pub const MESSAGE_DEQUEUED: &str = "message.dequeued";
}

/// Whether the instance can save changes: `ok`, or `degraded` while its store cannot commit
/// (calls that change state are then refused with `store_unavailable`; reads still answer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    #[default]
    Ok,
    Degraded,
}

/// `instance.status`: published when the health changes, so clients hear of a failing store
/// at once rather than at the next heartbeat. `reason` and `since` are set while degraded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusPayload {
    pub instance_id: InstanceId,
    pub status: Health,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[schemars(with = "Option<crate::schema::Timestamp>")]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub since: Option<OffsetDateTime>,
}

/// The set of sessions changed (one was created or deleted). `sessions` holds the most recently
/// updated ones, at most `limits::SESSION_LIST_EVENT_MAX`, so the event stays small however many
/// sessions there are; `truncated` says some were left out (the `session.list` method has them
/// all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionListPayload {
    pub sessions: Vec<SessionPayload>,
    #[serde(default)]
    pub session_count: u64,
    #[serde(default)]
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MessageAppendPayload {
    pub session_id: SessionId,
    pub message_id: MessageId,
    pub role: Role,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<TurnId>,
    pub status: MessageStatus,
    #[schemars(with = "crate::schema::Timestamp")]
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Set on `tool` messages only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<ToolCallInfo>,
    /// Set when `content` is only the first `limits::MAX_EVENT_TEXT_BYTES` of the message:
    /// its full length in bytes (`message.get` returns it whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub content_truncated: bool,
    /// On a user message sent by a client that said `client.hello`: who sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<Author>,
}

impl MessageAppendPayload {
    /// Cuts `content` to [`MAX_EVENT_TEXT_BYTES`](crate::limits::MAX_EVENT_TEXT_BYTES), recording its full length when it is cut.
    pub fn clipped(mut self) -> Self {
        self.content_bytes = clip_field(&mut self.content);
        self.content_truncated = self.content_bytes.is_some();
        self
    }
}

/// A message was queued behind its session's running turn (`message.send` `when_busy:
/// "queue"`). `message_id` and `turn_id` are the ones its turn will have; `position` is its place
/// in the queue (1: next to run), which is also the queue's length now. `content` is cut like a
/// `message.append`'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MessageQueuedPayload {
    pub session_id: SessionId,
    pub message_id: MessageId,
    pub turn_id: TurnId,
    pub content: String,
    pub position: u64,
    #[schemars(with = "crate::schema::Timestamp")]
    #[serde(with = "time::serde::rfc3339")]
    pub queued_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub content_truncated: bool,
}

impl MessageQueuedPayload {
    /// Cuts `content` to [`MAX_EVENT_TEXT_BYTES`](crate::limits::MAX_EVENT_TEXT_BYTES), recording its full length when it is cut.
    pub fn clipped(mut self) -> Self {
        self.content_bytes = clip_field(&mut self.content);
        self.content_truncated = self.content_bytes.is_some();
        self
    }
}

/// Why a queued message left its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DequeueReason {
    /// Its turn starts: its `message.append` and `llm.start` follow at once.
    Started,
    /// `session.interrupt` with `clear_queue: true` discarded it; it never runs.
    Cleared,
    /// Its session was deleted; it never runs.
    Deleted,
}

/// A queued message left the queue: exactly one per `message.queued` (within an instance).
/// `queue_length` is how many are still queued after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MessageDequeuedPayload {
    pub session_id: SessionId,
    pub message_id: MessageId,
    pub turn_id: TurnId,
    pub reason: DequeueReason,
    pub queue_length: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LlmStartPayload {
    pub session_id: SessionId,
    pub turn_id: TurnId,
    /// The name of the model that runs the turn (`model.list`).
    #[serde(default)]
    pub model: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LlmTokenPayload {
    pub session_id: SessionId,
    pub turn_id: TurnId,
    pub index: u64,
    pub token: String,
}

/// Why a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndReason {
    Completed,
    Interrupted,
    Error,
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LlmEndPayload {
    pub session_id: SessionId,
    pub turn_id: TurnId,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub reason: EndReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The turn's figures in detail; `input_tokens`/`output_tokens` equal `tokens_in`/`tokens_out`.
    #[serde(default)]
    pub usage: TurnUsage,
}

/// A piece of a tool call's JSON arguments as the model writes them, before the call's
/// `tool.start`. `index` counts 0, 1, 2… per call; the deltas of a call concatenated equal its
/// `tool.start` `params` (both stop at `limits::MAX_EVENT_TEXT_BYTES`, on the same character).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolArgsPayload {
    pub session_id: SessionId,
    pub turn_id: TurnId,
    pub call_id: CallId,
    pub tool_name: String,
    pub index: u64,
    pub delta: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolStartPayload {
    pub session_id: SessionId,
    pub turn_id: TurnId,
    pub tool_name: String,
    pub call_id: CallId,
    /// The call's JSON arguments, as a string (as the spec has it); cut like a message's
    /// content when longer than `limits::MAX_EVENT_TEXT_BYTES` (`params_truncated`).
    pub params: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub params_truncated: bool,
    /// Who runs it: `server` (a built-in tool) or `client` (a tool a client declared; it waits
    /// for a `tool.claim`).
    #[serde(default)]
    pub executor: Executor,
    /// On a client-run call only: a person must approve it first (`hitl.pending` follows), so
    /// claim it once its `hitl.resolved` approves it; `false`: claim it now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub awaiting_approval: bool,
}

impl ToolStartPayload {
    /// Cuts `params` to [`MAX_EVENT_TEXT_BYTES`](crate::limits::MAX_EVENT_TEXT_BYTES).
    pub fn clipped(mut self) -> Self {
        self.params_truncated = clip_field(&mut self.params).is_some();
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolEndPayload {
    pub session_id: SessionId,
    pub turn_id: TurnId,
    pub tool_name: String,
    pub call_id: CallId,
    pub is_error: bool,
    /// Cut like a message's content when longer than `limits::MAX_EVENT_TEXT_BYTES`
    /// (`result_truncated`); the `tool` message that follows holds it whole in the store.
    pub result: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub result_truncated: bool,
}

impl ToolEndPayload {
    /// Cuts `result` to [`MAX_EVENT_TEXT_BYTES`](crate::limits::MAX_EVENT_TEXT_BYTES).
    pub fn clipped(mut self) -> Self {
        self.result_truncated = clip_field(&mut self.result).is_some();
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HeartbeatPayload {
    pub instance_id: InstanceId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_session_id: Option<SessionId>,
    pub session_count: u64,
    #[schemars(with = "crate::schema::GoDuration")]
    pub uptime: String,
    #[schemars(with = "crate::schema::Timestamp")]
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// On a standby that took over: the primary it replaced. Subscribers that reconnect after a
    /// failover miss the one-time `instance.promoted`; every heartbeat tells them again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<InstanceId>,
    /// `degraded` while the store cannot commit, with the reason.
    #[serde(default)]
    pub status: Health,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Milliseconds between heartbeats: a client that hears nothing for three of them treats
    /// the instance as gone (§10). 0 (absent) from servers older than this field.
    #[serde(default)]
    pub heartbeat_interval_ms: u64,
}

/// A standby became the primary. `previous_instance_id` is the primary it replaced, when known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PromotedPayload {
    pub instance_id: InstanceId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_instance_id: Option<InstanceId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShutdownPayload {
    pub instance_id: InstanceId,
    pub reason: String,
}

/// Every event the primary publishes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Event {
    SessionList(SessionListPayload),
    SessionUpdate(SessionPayload),
    SessionActivated(SessionPayload),
    SessionDeleted(SessionPayload),
    MessageAppend(MessageAppendPayload),
    LlmStart(LlmStartPayload),
    LlmToken(LlmTokenPayload),
    LlmEnd(LlmEndPayload),
    ToolArgs(ToolArgsPayload),
    ToolStart(ToolStartPayload),
    ToolEnd(ToolEndPayload),
    InstanceHeartbeat(HeartbeatPayload),
    InstanceShutdown(ShutdownPayload),
    InstancePromoted(PromotedPayload),
    InstanceStatus(StatusPayload),
    /// A request waits for a person: `status: "pending"`.
    HitlPending(HitlRequest),
    /// The same request in its final state; exactly one per `hitl.pending`, before its turn's
    /// `llm.end`.
    HitlResolved(HitlRequest),
    ClientJoined(ClientJoinedPayload),
    ClientLeft(ClientLeftPayload),
    ToolClaimed(ToolClaimedPayload),
    MessageQueued(MessageQueuedPayload),
    MessageDequeued(MessageDequeuedPayload),
}

impl Event {
    pub fn topic(&self) -> &'static str {
        match self {
            Event::SessionList(_) => topic::SESSION_LIST,
            Event::SessionUpdate(_) => topic::SESSION_UPDATE,
            Event::SessionActivated(_) => topic::SESSION_ACTIVATED,
            Event::SessionDeleted(_) => topic::SESSION_DELETED,
            Event::MessageAppend(_) => topic::MESSAGE_APPEND,
            Event::LlmStart(_) => topic::LLM_START,
            Event::LlmToken(_) => topic::LLM_TOKEN,
            Event::LlmEnd(_) => topic::LLM_END,
            Event::ToolArgs(_) => topic::TOOL_ARGS,
            Event::ToolStart(_) => topic::TOOL_START,
            Event::ToolEnd(_) => topic::TOOL_END,
            Event::InstanceHeartbeat(_) => topic::INSTANCE_HEARTBEAT,
            Event::InstanceShutdown(_) => topic::INSTANCE_SHUTDOWN,
            Event::InstancePromoted(_) => topic::INSTANCE_PROMOTED,
            Event::InstanceStatus(_) => topic::INSTANCE_STATUS,
            Event::HitlPending(_) => topic::HITL_PENDING,
            Event::HitlResolved(_) => topic::HITL_RESOLVED,
            Event::ClientJoined(_) => topic::CLIENT_JOINED,
            Event::ClientLeft(_) => topic::CLIENT_LEFT,
            Event::ToolClaimed(_) => topic::TOOL_CLAIMED,
            Event::MessageQueued(_) => topic::MESSAGE_QUEUED,
            Event::MessageDequeued(_) => topic::MESSAGE_DEQUEUED,
        }
    }

    /// The session an event is about, if it is about one.
    pub fn session_id(&self) -> Option<SessionId> {
        match self {
            Event::SessionUpdate(s) | Event::SessionActivated(s) | Event::SessionDeleted(s) => {
                Some(s.id)
            }
            Event::MessageAppend(p) => Some(p.session_id),
            Event::LlmStart(p) => Some(p.session_id),
            Event::LlmToken(p) => Some(p.session_id),
            Event::LlmEnd(p) => Some(p.session_id),
            Event::ToolArgs(p) => Some(p.session_id),
            Event::ToolStart(p) => Some(p.session_id),
            Event::ToolEnd(p) => Some(p.session_id),
            Event::HitlPending(r) | Event::HitlResolved(r) => Some(r.session_id),
            Event::ToolClaimed(p) => Some(p.session_id),
            Event::MessageQueued(p) => Some(p.session_id),
            Event::MessageDequeued(p) => Some(p.session_id),
            Event::SessionList(_)
            | Event::ClientJoined(_)
            | Event::ClientLeft(_)
            | Event::InstanceHeartbeat(_)
            | Event::InstanceShutdown(_)
            | Event::InstancePromoted(_)
            | Event::InstanceStatus(_) => None,
        }
    }

    /// Appends the subscription key (frame 1) to `out`: the topic, or `topic/session_id` for a
    /// session's event. Allocates nothing when `out` has room.
    pub fn write_key(&self, out: &mut String) {
        use std::fmt::Write;
        out.push_str(self.topic());
        if let Some(id) = self.session_id() {
            // Writing to a String cannot fail.
            let _ = write!(out, "/{id}");
        }
    }

    /// Decodes a payload given its topic: the inverse of serialising an event.
    pub fn decode(topic: &str, payload: Value) -> Result<Event, DecodeError> {
        use serde_json::from_value as v;
        let ev = match topic {
            topic::SESSION_LIST => Event::SessionList(v(payload)?),
            topic::SESSION_UPDATE => Event::SessionUpdate(v(payload)?),
            topic::SESSION_ACTIVATED => Event::SessionActivated(v(payload)?),
            topic::SESSION_DELETED => Event::SessionDeleted(v(payload)?),
            topic::MESSAGE_APPEND => Event::MessageAppend(v(payload)?),
            topic::LLM_START => Event::LlmStart(v(payload)?),
            topic::LLM_TOKEN => Event::LlmToken(v(payload)?),
            topic::LLM_END => Event::LlmEnd(v(payload)?),
            topic::TOOL_ARGS => Event::ToolArgs(v(payload)?),
            topic::TOOL_START => Event::ToolStart(v(payload)?),
            topic::TOOL_END => Event::ToolEnd(v(payload)?),
            topic::HITL_PENDING => Event::HitlPending(v(payload)?),
            topic::HITL_RESOLVED => Event::HitlResolved(v(payload)?),
            topic::CLIENT_JOINED => Event::ClientJoined(v(payload)?),
            topic::CLIENT_LEFT => Event::ClientLeft(v(payload)?),
            topic::TOOL_CLAIMED => Event::ToolClaimed(v(payload)?),
            topic::MESSAGE_QUEUED => Event::MessageQueued(v(payload)?),
            topic::MESSAGE_DEQUEUED => Event::MessageDequeued(v(payload)?),
            topic::INSTANCE_HEARTBEAT => Event::InstanceHeartbeat(v(payload)?),
            topic::INSTANCE_SHUTDOWN => Event::InstanceShutdown(v(payload)?),
            topic::INSTANCE_PROMOTED => Event::InstancePromoted(v(payload)?),
            topic::INSTANCE_STATUS => Event::InstanceStatus(v(payload)?),
            other => return Err(DecodeError::UnknownTopic(other.to_owned())),
        };
        Ok(ev)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("bad payload: {0}")]
    Payload(#[from] serde_json::Error),
}

/// An event as the core decided it: numbered, stamped and encoded once, so the PUB and the
/// replay ring share the same bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub seq: u64,
    pub timestamp: OffsetDateTime,
    pub event: Event,
    /// Frame 1: the subscription key.
    pub key: Arc<str>,
    /// Frame 2: the JSON envelope.
    pub body: Arc<[u8]>,
}

/// Frame 2 of a PUB message, as it goes out.
#[derive(Debug, Serialize)]
pub struct Envelope<'a> {
    pub seq: u64,
    pub instance_id: InstanceId,
    pub topic: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub payload: &'a Event,
}

/// Frame 2 of a PUB message, as a client reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedEnvelope {
    pub seq: u64,
    pub instance_id: InstanceId,
    pub topic: String,
    #[serde(default)]
    pub session_id: Option<SessionId>,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub payload: Value,
}

/// Scratch capacity kept between events.
const KEEP_SCRATCH: usize = 64 << 10;

/// Encodes events into [`Published`] frames with reusable scratch buffers: once warm, an event
/// costs one allocation for its body and none for a key equal to the previous event's (a token
/// stream repeats its key), instead of a growing buffer copied once more into the shared frame.
/// `llm.token` events, the bulk of the traffic, take a hand-written path that writes the same
/// bytes without formatting their ids and time again for every token (`token_encoder`).
#[derive(Debug, Default)]
pub struct EventEncoder {
    body: Vec<u8>,
    key: String,
    last_key: Option<Arc<str>>,
    token: TokenEncoder,
}

impl EventEncoder {
    /// Numbers, stamps and encodes `event` into its two frames.
    pub fn encode(
        &mut self,
        seq: u64,
        timestamp: OffsetDateTime,
        event: Event,
        instance_id: InstanceId,
    ) -> Published {
        self.body.clear();
        let (written, key) = match &event {
            Event::LlmToken(p) => {
                let written = self
                    .token
                    .write_body(&mut self.body, seq, timestamp, instance_id, p)
                    .is_ok();
                (written, self.token.key(p.session_id))
            }
            _ => self.write_generic(seq, timestamp, &event, instance_id),
        };
        self.finish(seq, timestamp, event, written, key)
    }

    /// `encode` through serde for every event, `llm.token` too: the reference the fast path is
    /// held to.
    #[cfg(test)]
    pub(crate) fn encode_generic(
        &mut self,
        seq: u64,
        timestamp: OffsetDateTime,
        event: Event,
        instance_id: InstanceId,
    ) -> Published {
        self.body.clear();
        let (written, key) = self.write_generic(seq, timestamp, &event, instance_id);
        self.finish(seq, timestamp, event, written, key)
    }

    /// Serialises the envelope into `self.body` and builds the key; whether the body was written.
    fn write_generic(
        &mut self,
        seq: u64,
        timestamp: OffsetDateTime,
        event: &Event,
        instance_id: InstanceId,
    ) -> (bool, Arc<str>) {
        let env = Envelope {
            seq,
            instance_id,
            topic: event.topic(),
            session_id: event.session_id(),
            timestamp,
            payload: event,
        };
        // Serialising these types fails only on a timestamp RFC 3339 cannot write (a year
        // outside 0..=9999, an offset with seconds), which `time` refuses; every map key is a
        // string.
        let written = serde_json::to_writer(&mut self.body, &env).is_ok();
        self.key.clear();
        event.write_key(&mut self.key);
        let key = match &self.last_key {
            Some(last) if **last == *self.key => last.clone(),
            _ => {
                let key: Arc<str> = Arc::from(self.key.as_str());
                self.last_key = Some(key.clone());
                key
            }
        };
        (written, key)
    }

    /// The frames from `self.body` (empty if it could not be written) and `key`.
    fn finish(
        &mut self,
        seq: u64,
        timestamp: OffsetDateTime,
        event: Event,
        written: bool,
        key: Arc<str>,
    ) -> Published {
        let body: Arc<[u8]> = if written {
            Arc::from(&self.body[..])
        } else {
            Arc::from(&b""[..])
        };
        // One unusually large event must not pin its size for the life of the process.
        if self.body.capacity() > KEEP_SCRATCH {
            self.body = Vec::new();
        }
        Published {
            seq,
            timestamp,
            event,
            key,
            body,
        }
    }
}
