//! A running turn: its token usage, its open tool calls, the calls whose arguments are
//! streaming, and the assistant text segment it is streaming now.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::protocol::clients::{ClientToolSpec, Executor};
use crate::protocol::ids::{CallId, MessageId, SessionId, TurnId};
use crate::protocol::usage::{TurnUsage, UsageFigure};

#[derive(Debug, Clone)]
pub struct OpenToolCall {
    pub call_id: CallId,
    pub tool_name: String,
    pub params: String,
    pub executor: Executor,
}

/// A call whose arguments stream as `tool.args` and that has not started yet. Holds counts, not
/// the text: what was published is the first `bytes` of the call's `params`.
#[derive(Debug, Clone)]
pub struct ArgsStream {
    pub call_id: CallId,
    pub tool_name: String,
    /// Index of the call's next `tool.args`.
    pub next_index: u64,
    /// Bytes of arguments published so far: at most `limits::MAX_EVENT_TEXT_BYTES`.
    pub bytes: usize,
    /// A delta was cut at that bound: nothing more of this call streams.
    pub cut: bool,
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
    /// The model's last usage report; `None` until it makes one.
    pub reported: Option<TurnUsage>,
    /// Tool calls started and not yet ended, in start order.
    pub open_tools: Vec<OpenToolCall>,
    /// Calls whose arguments stream and that have not started: at most
    /// `limits::MAX_ARGS_STREAMS`, dropped with the turn.
    pub args: Vec<ArgsStream>,
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
            reported: None,
            open_tools: Vec::new(),
            args: Vec::new(),
            segment: None,
            client_tools: Arc::from([]),
        }
    }

    /// Tokens out: the model's last count, but never fewer than the tokens streamed (a report
    /// made early in the turn is stale by the time an interrupt ends it).
    pub fn tokens_out(&self) -> u64 {
        self.reported
            .as_ref()
            .map_or(0, |u| u.output_tokens)
            .max(self.next_index)
    }

    /// The usage `llm.end` reports: the model's last report, its output raised to the tokens
    /// streamed when it is behind (and then marked estimated, with the context that holds it);
    /// a model that reported nothing gets the tokens streamed, every figure estimated.
    pub fn usage(&self) -> TurnUsage {
        let streamed = self.next_index;
        let mut usage = self.reported.clone().unwrap_or_else(|| {
            let mut none = TurnUsage::default();
            none.mark_estimated(UsageFigure::InputTokens);
            none
        });
        if self.reported.is_none() || streamed > usage.output_tokens {
            let more = streamed.saturating_sub(usage.output_tokens);
            usage.output_tokens = self.tokens_out();
            usage.context_tokens = usage.context_tokens.saturating_add(more);
            usage.mark_estimated(UsageFigure::OutputTokens);
            usage.mark_estimated(UsageFigure::ContextTokens);
        }
        usage
    }
}
