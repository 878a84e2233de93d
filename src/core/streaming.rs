//! A turn while it runs: applying the model's reports (tokens, tool calls, usage, the end),
//! splitting the assistant text into segments at tool calls, recording tool results as `tool`
//! messages, checkpointing the streaming segment, and closing the turn with exactly one `llm.end`.

use time::OffsetDateTime;

use super::effects::ModelEvent;
use super::effects::{Effect, TurnEffect};
use super::persist::{Change, MessageRecord, StoredStatus, TurnEnd, TurnStatus};
use super::policy::{Policy, ASK_USER};
use super::session::Message;
use super::state::{record_of, Core};
use super::turn::{OpenToolCall, Segment};
use crate::protocol::events::{
    EndReason, Event, LlmEndPayload, LlmTokenPayload, MessageAppendPayload, ToolEndPayload,
    ToolStartPayload,
};
use crate::protocol::ids::{MessageId, SessionId, TurnId};
use crate::protocol::limits::{clip_text, MAX_TOKEN_BYTES, MAX_TURN_TEXT_BYTES};
use crate::protocol::types::{MessageStatus, Role, ToolCallInfo};
use crate::protocol::usage::TurnUsage;

impl Core {
    /// Applies one report from the model running `turn_id`. Reports for a turn that is no longer
    /// running (interrupted, shut down) are ignored: that is what makes `llm.end` exactly-once.
    pub fn model_event(&mut self, turn_id: TurnId, event: ModelEvent, now: OffsetDateTime) {
        let Some(turn) = self.turns.get(&turn_id) else {
            return;
        };
        let session_id = turn.session_id;
        match event {
            ModelEvent::Usage(usage) => {
                if let Some(turn) = self.turns.get_mut(&turn_id) {
                    turn.reported = Some(usage);
                }
            }
            ModelEvent::Token(token) if token.len() > MAX_TOKEN_BYTES => {
                // One event per piece, so no event carries more than the bound.
                let mut rest = token.as_str();
                while let Some(head) = clip_text(rest, MAX_TOKEN_BYTES) {
                    self.token(turn_id, session_id, head.to_owned(), now);
                    rest = &rest[head.len()..];
                }
                self.token(turn_id, session_id, rest.to_owned(), now);
            }
            ModelEvent::Token(token) => self.token(turn_id, session_id, token, now),
            ModelEvent::ToolArgs {
                call_id,
                tool_name,
                delta,
            } => self.tool_args(turn_id, session_id, call_id, tool_name, delta, now),
            ModelEvent::ToolStart {
                call_id,
                tool_name,
                params,
            } => {
                let reused = self
                    .turns
                    .get(&turn_id)
                    .is_some_and(|t| t.open_tools.iter().any(|c| c.call_id == call_id));
                if reused {
                    // Two open calls under one id could not be told apart: not its `tool.end`,
                    // its claim or its approval. A model that does this is broken; its turn
                    // ends here, saying why.
                    self.effects.push(Effect::Turn(TurnEffect::Cancel(turn_id)));
                    let error =
                        format!("the model started tool call {call_id} again before it ended");
                    self.end_turn(turn_id, EndReason::Error, Some(error), now);
                    return;
                }
                self.close_segment(turn_id, MessageStatus::Complete, now);
                self.finish_args(turn_id, session_id, &call_id, &tool_name, &params, now);
                let executor = self.executor_of(turn_id, &tool_name);
                // A client-run call a person must approve first is claimed after the approval.
                let awaiting_approval = !executor.is_server()
                    && tool_name != ASK_USER
                    && self.policy_of(turn_id, session_id, &tool_name) == Policy::Ask;
                if let Some(turn) = self.turns.get_mut(&turn_id) {
                    turn.open_tools.push(OpenToolCall {
                        call_id: call_id.clone(),
                        tool_name: tool_name.clone(),
                        params: params.clone(),
                        executor,
                    });
                }
                self.persist_quietly(Change::ToolCallStart {
                    turn_id,
                    call_id: call_id.clone(),
                    tool_name: tool_name.clone(),
                    params: params.clone(),
                    started_at: now,
                });
                self.publish(
                    Event::ToolStart(
                        ToolStartPayload {
                            session_id,
                            turn_id,
                            tool_name: tool_name.clone(),
                            call_id: call_id.clone(),
                            params: params.clone(),
                            params_truncated: false,
                            executor,
                            awaiting_approval,
                        }
                        .clipped(),
                    ),
                    now,
                );
                // Whether it runs: at once, after a person's answer, or never.
                self.gate_tool(turn_id, session_id, &call_id, &tool_name, &params, now);
            }
            ModelEvent::ToolEnd {
                call_id,
                is_error,
                result,
            } => {
                // An end for a call that never started is dropped: every tool.end pairs a tool.start.
                let Some(turn) = self.turns.get_mut(&turn_id) else {
                    return;
                };
                let Some(pos) = turn.open_tools.iter().position(|c| c.call_id == call_id) else {
                    return;
                };
                let call = turn.open_tools.remove(pos);
                self.close_claim(turn_id, &call_id);
                self.close_segment(turn_id, MessageStatus::Complete, now);
                self.finish_tool_call(turn_id, session_id, call, is_error, result, now);
            }
            ModelEvent::Finished => self.end_turn(turn_id, EndReason::Completed, None, now),
            ModelEvent::Failed(error) => self.end_turn(turn_id, EndReason::Error, Some(error), now),
        }
    }

    fn token(
        &mut self,
        turn_id: TurnId,
        session_id: SessionId,
        token: String,
        now: OffsetDateTime,
    ) {
        if token.is_empty() {
            return;
        }
        let streamed = self.turns.get(&turn_id).map_or(0, |t| t.streamed_bytes);
        if streamed + token.len() > MAX_TURN_TEXT_BYTES {
            // A model that will not stop cannot fill the server: the turn ends here, keeping
            // what streamed so far (the token that crossed the bound is not published).
            self.effects.push(Effect::Turn(TurnEffect::Cancel(turn_id)));
            let error = format!("the reply passed {} bytes: cut short", MAX_TURN_TEXT_BYTES);
            self.end_turn(turn_id, EndReason::Error, Some(error), now);
            return;
        }
        let opening = self
            .turns
            .get(&turn_id)
            .is_some_and(|t| t.segment.is_none());
        let fresh = opening.then(|| {
            let position = self
                .sessions
                .get(&session_id)
                .map_or(0, |s| s.message_count);
            Segment {
                id: MessageId(self.ids.next_id()),
                position,
                text: String::new(),
                started_at: now,
                checkpointed_len: 0,
                checkpointed_at: now,
            }
        });
        let interval = self.config.checkpoint_interval;
        let Some(turn) = self.turns.get_mut(&turn_id) else {
            return;
        };
        if let Some(fresh) = fresh {
            turn.segment = Some(fresh);
        }
        let Some(segment) = turn.segment.as_mut() else {
            return;
        };
        segment.text.push_str(&token);
        turn.streamed_bytes += token.len();
        let due = now - segment.checkpointed_at >= interval;
        let index = turn.next_index;
        turn.next_index += 1;
        if due {
            self.checkpoint_turn(turn_id, now);
        }
        self.publish(
            Event::LlmToken(LlmTokenPayload {
                session_id,
                turn_id,
                index,
                token,
            }),
            now,
        );
    }

    /// Publishes `tool.end` and records the result as a `tool` message.
    fn finish_tool_call(
        &mut self,
        turn_id: TurnId,
        session_id: SessionId,
        call: OpenToolCall,
        is_error: bool,
        result: String,
        now: OffsetDateTime,
    ) {
        self.persist_quietly(Change::ToolCallEnd {
            turn_id,
            call_id: call.call_id.clone(),
            is_error,
            result: result.clone(),
            ended_at: now,
        });
        self.publish(
            Event::ToolEnd(
                ToolEndPayload {
                    session_id,
                    turn_id,
                    tool_name: call.tool_name.clone(),
                    call_id: call.call_id.clone(),
                    is_error,
                    result: result.clone(),
                    result_truncated: false,
                }
                .clipped(),
            ),
            now,
        );
        let id = MessageId(self.ids.next_id());
        let tool = ToolCallInfo {
            call_id: call.call_id,
            tool_name: call.tool_name,
            params: call.params,
            is_error,
        };
        let message = Message {
            id,
            turn_id: Some(turn_id),
            role: Role::Tool,
            content: result,
            created_at: now,
            status: MessageStatus::Complete,
            tool: Some(tool),
        };
        if let Some(append) = self.append_message(session_id, None, message) {
            self.publish(Event::MessageAppend(append), now);
        }
    }

    /// Adds `message` to the session (at `position`, or at the end) and queues its store change;
    /// returns the `message.append` payload to publish.
    fn append_message(
        &mut self,
        session_id: SessionId,
        position: Option<u64>,
        message: Message,
    ) -> Option<MessageAppendPayload> {
        let session = self.sessions.get_mut(&session_id)?;
        let position = position.unwrap_or(session.message_count);
        let record = MessageRecord {
            id: message.id,
            session_id,
            position,
            turn_id: message.turn_id,
            role: message.role,
            content: message.content.clone(),
            created_at: message.created_at,
            status: match message.status {
                MessageStatus::Complete => StoredStatus::Complete,
                MessageStatus::Interrupted => StoredStatus::Interrupted,
            },
            tool: message.tool.clone(),
            author: None,
        };
        let append = MessageAppendPayload {
            session_id,
            message_id: message.id,
            role: message.role,
            content: message.content.clone(),
            turn_id: message.turn_id,
            status: message.status,
            created_at: message.created_at,
            tool: message.tool.clone(),
            content_bytes: None,
            content_truncated: false,
            author: None,
        }
        .clipped();
        session.message_count = session.message_count.max(position + 1);
        self.persist(Change::MessageUpsert(record));
        Some(append)
    }

    /// Ends the streaming text segment, if any, as an assistant message of its own and publishes
    /// its `message.append`.
    pub(super) fn close_segment(
        &mut self,
        turn_id: TurnId,
        status: MessageStatus,
        now: OffsetDateTime,
    ) {
        if let Some(append) = self.take_segment(turn_id, status, now) {
            self.publish(Event::MessageAppend(append), now);
        }
    }

    fn take_segment(
        &mut self,
        turn_id: TurnId,
        status: MessageStatus,
        now: OffsetDateTime,
    ) -> Option<MessageAppendPayload> {
        let turn = self.turns.get_mut(&turn_id)?;
        let segment = turn.segment.take()?;
        let session_id = turn.session_id;
        let message = Message {
            id: segment.id,
            turn_id: Some(turn_id),
            role: Role::Assistant,
            content: segment.text,
            created_at: now,
            status,
            tool: None,
        };
        self.append_message(session_id, Some(segment.position), message)
    }

    /// Checkpoints every streaming segment with text not yet saved whose last checkpoint is at
    /// least `checkpoint_interval` old, so a crash loses at most that much of a stream.
    pub fn checkpoint(&mut self, now: OffsetDateTime) {
        let interval = self.config.checkpoint_interval;
        let due: Vec<TurnId> = self
            .turns
            .values()
            .filter(|t| {
                t.segment.as_ref().is_some_and(|s| {
                    s.text.len() > s.checkpointed_len && now - s.checkpointed_at >= interval
                })
            })
            .map(|t| t.id)
            .collect();
        for turn_id in due {
            self.checkpoint_turn(turn_id, now);
        }
    }

    fn checkpoint_turn(&mut self, turn_id: TurnId, now: OffsetDateTime) {
        let Some(turn) = self.turns.get_mut(&turn_id) else {
            return;
        };
        let session_id = turn.session_id;
        let Some(segment) = turn.segment.as_mut() else {
            return;
        };
        segment.checkpointed_len = segment.text.len();
        segment.checkpointed_at = now;
        let record = MessageRecord {
            id: segment.id,
            session_id,
            position: segment.position,
            turn_id: Some(turn_id),
            role: Role::Assistant,
            content: segment.text.clone(),
            created_at: segment.started_at,
            status: StoredStatus::Streaming,
            tool: None,
            author: None,
        };
        self.persist_quietly(Change::MessageUpsert(record));
    }

    /// Closes a running turn: open tool calls end as errors (text streamed since they started
    /// is appended just before them), the last text segment becomes the assistant message (when
    /// any text streamed), and then `llm.end`, that message's `message.append` and
    /// `session.update` are published, in that order — after every store change of the turn, so
    /// `llm.end` never announces what a crash could take back.
    pub(super) fn end_turn(
        &mut self,
        turn_id: TurnId,
        reason: EndReason,
        error: Option<String>,
        now: OffsetDateTime,
    ) {
        if !self.turns.contains_key(&turn_id) {
            return;
        }
        // What waits for a person is answered first: every `hitl.pending` gets its
        // `hitl.resolved` before the turn's `llm.end`.
        self.cancel_requests(turn_id, now);
        self.drop_claims(turn_id);
        let Some(turn) = self.turns.get_mut(&turn_id) else {
            return;
        };
        let session_id = turn.session_id;
        let open = std::mem::take(&mut turn.open_tools);
        let status = if reason == EndReason::Completed {
            MessageStatus::Complete
        } else {
            MessageStatus::Interrupted
        };
        // Text streamed while a tool call was open is closed first, as a `tool.end` would close
        // it: its stored position was fixed when it opened, and the cut-short results appended
        // before it would take that same position.
        if !open.is_empty() {
            self.close_segment(turn_id, status, now);
        }
        for call in open {
            let result = format!("tool call cut short: turn ended ({})", reason_str(reason));
            self.finish_tool_call(turn_id, session_id, call, true, result, now);
        }
        let reply = self.take_segment(turn_id, status, now);
        let Some(turn) = self.turns.remove(&turn_id) else {
            return;
        };
        let usage = turn.usage();
        self.persist(Change::TurnEnd(TurnEnd {
            id: turn_id,
            status: TurnStatus::from_reason(reason),
            reason: reason_str(reason).to_owned(),
            error: error.clone(),
            ended_at: now,
            tokens_in: usage.input_tokens,
            tokens_out: usage.output_tokens,
        }));
        let Some(session) = self.sessions.get_mut(&session_id) else {
            self.publish(end_event(session_id, turn_id, reason, error, usage), now);
            return;
        };
        session.usage.add(&usage);
        let end = end_event(session_id, turn_id, reason, error, usage);
        session.running = None;
        session.updated_at = now;
        let payload = session.payload();
        let record = record_of(session);
        self.persist(Change::SessionUpsert(record));
        self.publish(end, now);
        if let Some(append) = reply {
            self.publish(Event::MessageAppend(append), now);
        }
        self.publish(Event::SessionUpdate(payload), now);
        // However the turn ended, the next queued message runs now (not at shutdown).
        self.start_next(session_id, now);
    }
}

fn end_event(
    session_id: SessionId,
    turn_id: TurnId,
    reason: EndReason,
    error: Option<String>,
    usage: TurnUsage,
) -> Event {
    Event::LlmEnd(LlmEndPayload {
        session_id,
        turn_id,
        tokens_in: usage.input_tokens,
        tokens_out: usage.output_tokens,
        reason,
        error,
        usage,
    })
}

pub(super) fn reason_str(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Completed => "completed",
        EndReason::Interrupted => "interrupted",
        EndReason::Error => "error",
        EndReason::Shutdown => "shutdown",
    }
}
