//! What the core asks the world to do, and what the model tells the core: the core's only
//! boundary besides its method calls.

use std::sync::Arc;

use super::persist::Change;
use super::read::ContextRead;
use crate::protocol::clients::ClientToolSpec;
use crate::protocol::events::Published;
use crate::protocol::ids::{CallId, SessionId, TurnId};
use crate::protocol::types::Role;
use crate::protocol::usage::TurnUsage;

/// One past message given to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub role: Role,
    pub content: String,
}

/// Everything a model needs to run one turn.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnStart {
    pub turn_id: TurnId,
    pub session_id: SessionId,
    /// The session's newest messages in order (as many as the model's context takes), ending
    /// with the user message that started the turn.
    pub history: Vec<HistoryEntry>,
    /// Tools present clients run, offered to the model beside the built-in ones.
    pub client_tools: Arc<[ClientToolSpec]>,
    /// The session's system prompt (`session.configure`): in place of the model's configured
    /// one when set, and `""` for none at all; `None` leaves the model's own.
    pub system_prompt: Option<String>,
}

/// An effect for the actor to carry out, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Publish this event (already numbered).
    Publish(Published),
    /// Make this change durable. When `gating`, nothing decided after it (reply or event) may be
    /// shown before it is committed; checkpoints and tool-call records do not gate.
    Persist { change: Change, gating: bool },
    /// Something for the tasks that run the turns' models. Nothing they do reaches the core
    /// before it takes their next event, so the actor may carry these out after the reply of
    /// the call that decided them.
    Turn(TurnEffect),
}

/// What the core asks of the task running a turn's model.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEffect {
    /// Start the model on this turn, with the history `context` reads from the store.
    Start {
        turn_id: TurnId,
        session_id: SessionId,
        context: ContextRead,
        /// Tools present clients run, offered to the model this turn.
        client_tools: Arc<[ClientToolSpec]>,
        /// The name of the model that runs it (`CoreConfig::models`).
        model: String,
        /// For [`TurnStart::system_prompt`].
        system_prompt: Option<String>,
    },
    /// Stop the model running this turn; its later output is ignored by the core anyway.
    Cancel(TurnId),
    /// Tell the model running `turn_id` what to do with its call `call_id`: run it, or not (and
    /// the result to give instead).
    Verdict {
        turn_id: TurnId,
        call_id: CallId,
        verdict: Verdict,
    },
}

/// What becomes of a tool call the model started (`ModelEvent::ToolStart`); the model then ends
/// it with `ModelEvent::ToolEnd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Run the tool.
    Run,
    /// Do not run it; end the call as an error with this result.
    Refuse(String),
    /// Do not run it; end the call with this result (a person's answer to `ask_user`).
    Answer(String),
    /// Do not run it here: a client ran it (or could not), and this is its result.
    Result { is_error: bool, result: String },
}

/// What a running model reports about its turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelEvent {
    /// The turn's usage so far; the last report wins.
    Usage(TurnUsage),
    Token(String),
    /// A piece of the JSON arguments of the call `call_id`, before its `ToolStart` (whose
    /// `params` are these pieces concatenated).
    ToolArgs {
        call_id: CallId,
        tool_name: String,
        delta: String,
    },
    ToolStart {
        call_id: CallId,
        tool_name: String,
        params: String,
    },
    ToolEnd {
        call_id: CallId,
        is_error: bool,
        result: String,
    },
    /// The model finished normally.
    Finished,
    /// The model failed; the text streamed so far is kept.
    Failed(String),
}
