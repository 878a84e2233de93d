//! A running turn: what has streamed so far and which tool calls are open.

use time::OffsetDateTime;

use crate::protocol::ids::{MessageId, SessionId, TurnId};

#[derive(Debug, Clone)]
pub struct OpenToolCall {
    pub call_id: String,
    pub tool_name: String,
}

#[derive(Debug, Clone)]
pub struct Turn {
    pub id: TurnId,
    pub session_id: SessionId,
    pub started_at: OffsetDateTime,
    /// Index of the next `llm.token`.
    pub next_index: u64,
    /// The assistant text streamed so far.
    pub text: String,
    pub tokens_in: u64,
    /// Last count the model reported; `None` until it reports one.
    pub reported_tokens_out: Option<u64>,
    /// Tool calls started and not yet ended, in start order.
    pub open_tools: Vec<OpenToolCall>,
    /// The assistant reply's id and position, fixed at turn start so checkpoints and the final
    /// message are the same stored row.
    pub reply_id: MessageId,
    pub reply_position: u64,
    /// Length of `text` at the last checkpoint, and when that was.
    pub checkpointed_len: usize,
    pub checkpointed_at: OffsetDateTime,
}

impl Turn {
    pub fn new(
        id: TurnId,
        session_id: SessionId,
        reply_id: MessageId,
        reply_position: u64,
        now: OffsetDateTime,
    ) -> Self {
        Turn {
            reply_id,
            reply_position,
            checkpointed_len: 0,
            checkpointed_at: now,
            id,
            session_id,
            started_at: now,
            next_index: 0,
            text: String::new(),
            tokens_in: 0,
            reported_tokens_out: None,
            open_tools: Vec::new(),
        }
    }

    /// Tokens out: the model's last count, but never fewer than the tokens streamed (a report
    /// made early in the turn is stale by the time an interrupt ends it).
    pub fn tokens_out(&self) -> u64 {
        self.reported_tokens_out.unwrap_or(0).max(self.next_index)
    }
}
