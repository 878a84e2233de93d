//! A running turn: its token count, its open tool calls, and the assistant text segment it is
//! streaming now.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::protocol::clients::{ClientToolSpec, Executor};
use crate::protocol::ids::{MessageId, SessionId, TurnId};

#[derive(Debug, Clone)]
pub struct OpenToolCall {
    pub call_id: String,
    pub tool_name: String,
    pub params: String,
    pub executor: Executor,
}

/// The assistant text streaming now. A tool event closes it as a message of its own, so a turn
/// reads user -> assistant text -> tool results -> assistant text, as the model saw it. Its id
/// and position are fixed when it opens (nothing else is appended to the session while it is
/// open), so its checkpoints and its final message are one stored row.
#[derive(Debug, Clone)]
pub struct Segment {
    pub id: MessageId,
    pub position: u64,
    pub text: String,
    pub started_at: OffsetDateTime,
    /// Length of `text` at the last checkpoint, and when that was.
    pub checkpointed_len: usize,
    pub checkpointed_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct Turn {
    pub id: TurnId,
    pub session_id: SessionId,
    pub started_at: OffsetDateTime,
    /// Index of the next `llm.token`.
    pub next_index: u64,
    /// Bytes of text the turn has streamed, over all its segments: bounded by
    /// `limits::MAX_TURN_TEXT_BYTES`.
    pub streamed_bytes: usize,
    pub tokens_in: u64,
    /// Last count the model reported; `None` until it reports one.
    pub reported_tokens_out: Option<u64>,
    /// Tool calls started and not yet ended, in start order.
    pub open_tools: Vec<OpenToolCall>,
    pub segment: Option<Segment>,
    /// The client-run tools the model was offered this turn: a call of one is run by a client.
    pub client_tools: Arc<[ClientToolSpec]>,
}

impl Turn {
    pub fn new(id: TurnId, session_id: SessionId, now: OffsetDateTime) -> Self {
        Turn {
            id,
            session_id,
            started_at: now,
            next_index: 0,
            streamed_bytes: 0,
            tokens_in: 0,
            reported_tokens_out: None,
            open_tools: Vec::new(),
            segment: None,
            client_tools: Arc::from([]),
        }
    }

    /// Tokens out: the model's last count, but never fewer than the tokens streamed (a report
    /// made early in the turn is stale by the time an interrupt ends it).
    pub fn tokens_out(&self) -> u64 {
        self.reported_tokens_out.unwrap_or(0).max(self.next_index)
    }
}
