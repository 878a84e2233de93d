//! The core's persistence vocabulary: the changes it asks a store to make durable, and the
//! snapshot a store hands back at start-up. Plain data; the store decides how to keep it.

use time::OffsetDateTime;

use super::queue::QueuedMessage;
use crate::protocol::clients::Author;
use crate::protocol::events::EndReason;
use crate::protocol::hitl::HitlRequest;
use crate::protocol::ids::{CallId, MessageId, SessionId, TurnId};
use crate::protocol::methods::SendResult;
use crate::protocol::types::{Role, ToolCallInfo};
use crate::protocol::usage::SessionUsage;

/// How a stored message stands. `Streaming` exists only in the store: an assistant reply
/// checkpointed while its turn runs. Recovery turns it into `Interrupted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredStatus {
    Complete,
    Interrupted,
    Streaming,
}

impl StoredStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StoredStatus::Complete => "complete",
            StoredStatus::Interrupted => "interrupted",
            StoredStatus::Streaming => "streaming",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "complete" => StoredStatus::Complete,
            "interrupted" => StoredStatus::Interrupted,
            "streaming" => StoredStatus::Streaming,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub title: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// `session.configure`'s settings; `None`: the server's.
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    /// Running token totals (`SessionPayload.usage`).
    pub usage: SessionUsage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: MessageId,
    pub session_id: SessionId,
    /// 0, 1, 2… within the session: the order `message.list` returns.
    pub position: u64,
    pub turn_id: Option<TurnId>,
    pub role: Role,
    pub content: String,
    pub created_at: OffsetDateTime,
    pub status: StoredStatus,
    /// Set on `tool` messages.
    pub tool: Option<ToolCallInfo>,
    /// Set on user messages from a client that said hello.
    pub author: Option<Author>,
}

/// How a turn ended, as stored. `reason` is the `llm.end` reason, or `crashed` for a turn found
/// still running at start-up (its status is then `aborted`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnEnd {
    pub id: TurnId,
    pub status: TurnStatus,
    pub reason: String,
    pub error: Option<String>,
    pub ended_at: OffsetDateTime,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnStatus {
    Running,
    Completed,
    Interrupted,
    Error,
    Aborted,
}

impl TurnStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TurnStatus::Running => "running",
            TurnStatus::Completed => "completed",
            TurnStatus::Interrupted => "interrupted",
            TurnStatus::Error => "error",
            TurnStatus::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => TurnStatus::Running,
            "completed" => TurnStatus::Completed,
            "interrupted" => TurnStatus::Interrupted,
            "error" => TurnStatus::Error,
            "aborted" => TurnStatus::Aborted,
            _ => return None,
        })
    }

    /// The stored status of a turn that ended for `reason`.
    pub fn from_reason(reason: EndReason) -> Self {
        match reason {
            EndReason::Completed => TurnStatus::Completed,
            EndReason::Interrupted => TurnStatus::Interrupted,
            EndReason::Error => TurnStatus::Error,
            EndReason::Shutdown => TurnStatus::Aborted,
        }
    }
}

/// One change to make durable. Applied in order; a batch of them is one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Insert or update a session's row.
    SessionUpsert(SessionRecord),
    /// Mark a session deleted (its rows stay; it no longer loads).
    SessionDelete {
        id: SessionId,
        deleted_at: OffsetDateTime,
    },
    /// The active session (`None`: no active session).
    ActiveSession(Option<SessionId>),
    /// Insert or update a message (a checkpoint rewrites the same row with more content).
    MessageUpsert(MessageRecord),
    TurnStart {
        id: TurnId,
        session_id: SessionId,
        started_at: OffsetDateTime,
    },
    TurnEnd(TurnEnd),
    ToolCallStart {
        turn_id: TurnId,
        call_id: CallId,
        tool_name: String,
        params: String,
        started_at: OffsetDateTime,
    },
    ToolCallEnd {
        turn_id: TurnId,
        call_id: CallId,
        is_error: bool,
        result: String,
        ended_at: OffsetDateTime,
    },
    /// Insert or update a human-in-the-loop request (pending, then resolved).
    HitlUpsert(Box<HitlRequest>),
    /// Every later call of `tool_name` in the session runs without asking.
    GrantAdd {
        session_id: SessionId,
        tool_name: String,
        granted_at: OffsetDateTime,
    },
    /// A `message.send` `request_id` and the answer it got.
    RequestKey {
        request_id: String,
        result: SendResult,
        created_at: OffsetDateTime,
    },
    /// A message queued behind its session's running turn, at the end of the queue.
    QueuePush(QueuedMessage),
    /// A queued message left the queue: its turn started (its `MessageUpsert` comes before this),
    /// or it was discarded.
    QueueRemove {
        message_id: MessageId,
    },
}

impl Change {
    /// About how many bytes this change holds while it waits to be saved: its texts plus a
    /// fixed part for ids, times and the enum itself.
    pub fn approx_bytes(&self) -> usize {
        const FIXED: usize = 160;
        FIXED
            + match self {
                Change::SessionUpsert(s) => {
                    s.title.len()
                        + s.model.as_ref().map_or(0, String::len)
                        + s.system_prompt.as_ref().map_or(0, String::len)
                }
                Change::MessageUpsert(m) => {
                    m.content.len()
                        + m.tool
                            .as_ref()
                            .map_or(0, |t| t.params.len() + t.call_id.len() + t.tool_name.len())
                }
                Change::ToolCallStart {
                    call_id,
                    tool_name,
                    params,
                    ..
                } => call_id.len() + tool_name.len() + params.len(),
                Change::ToolCallEnd {
                    call_id, result, ..
                } => call_id.len() + result.len(),
                Change::TurnEnd(end) => {
                    end.reason.len() + end.error.as_ref().map_or(0, String::len)
                }
                Change::RequestKey { request_id, .. } => request_id.len(),
                Change::HitlUpsert(r) => r.text_bytes(),
                Change::GrantAdd { tool_name, .. } => tool_name.len(),
                Change::QueuePush(q) => q.content.len(),
                Change::QueueRemove { .. }
                | Change::SessionDelete { .. }
                | Change::ActiveSession(_)
                | Change::TurnStart { .. } => 0,
            }
    }
}

/// A turn the store still has as running: left behind by a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTurn {
    pub id: TurnId,
    pub session_id: SessionId,
    pub started_at: OffsetDateTime,
}

/// A live session as loaded: its row and how many messages it holds (positions `0..count`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub record: SessionRecord,
    /// One past the highest stored position: a reply checkpointed while its turn ran counts, as
    /// start-up keeps it (marked interrupted).
    pub message_count: u64,
    /// Tools approved for the whole session (`approve_session`).
    pub grants: Vec<String>,
}

/// Everything the core needs to resume, as a store loads it. The messages themselves stay in
/// the store: the core holds counts, and reads go to the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Live (not deleted) sessions, in id order.
    pub sessions: Vec<StoredSession>,
    pub active_session: Option<SessionId>,
    /// Turns still marked running.
    pub open_turns: Vec<OpenTurn>,
    /// Messages still marked streaming in live sessions: what was checkpointed of replies a
    /// crash cut short. Start-up marks them interrupted.
    pub streaming: Vec<MessageRecord>,
    /// The newest `request_id`s, oldest first.
    pub request_keys: Vec<(String, SendResult)>,
    /// Human-in-the-loop requests still pending in live sessions (a crash left them).
    pub pending_hitl: Vec<HitlRequest>,
    /// Messages queued in live sessions, in the order they were queued; none whose message is
    /// already in the history (its turn started just before a crash).
    pub queued: Vec<QueuedMessage>,
}
