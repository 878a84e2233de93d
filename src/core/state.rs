//! The core state machine: owns sessions, messages, turns and the event sequence, and decides every
//! event. Synchronous, no I/O, no clock reads (time comes in as an argument), no randomness but
//! the injected id source. Inputs are method calls, model events, heartbeat ticks and shutdown;
//! outputs are a reply and the effects drained by `take_effects`, in the order they were decided.

use std::collections::{BTreeMap, HashMap, VecDeque};

use time::OffsetDateTime;

use super::effects::{Effect, HistoryEntry, ModelEvent, TurnStart};
use super::error::CoreError;
use super::ids::IdGen;
use super::paging;
use super::persist::{Change, MessageRecord, SessionRecord, StoredStatus, TurnEnd, TurnStatus};
use super::session::{clip_title, title_from, Message, Session};
use super::turn::{OpenToolCall, Turn};
use crate::protocol::duration::go_duration;
use crate::protocol::events::{
    EndReason, Event, HeartbeatPayload, LlmEndPayload, LlmStartPayload, LlmTokenPayload,
    MessageAppendPayload, Published, SessionListPayload, ShutdownPayload, ToolEndPayload,
    ToolStartPayload,
};
use crate::protocol::ids::{InstanceId, MessageId, SessionId, TurnId};
use crate::protocol::methods::{
    Call, DropCounters, Endpoints, InfoResult, InterruptResult, MessageListResult, MessageSend,
    OkResult, PingResult, Reply, SendResult, SessionListResult, StateSyncResult,
};
use crate::protocol::types::{MessageStatus, Role, SessionPayload};
use crate::protocol::PROTOCOL_VERSION;

/// Facts about this instance that never change while it runs.
#[derive(Debug, Clone)]
pub struct InstanceMeta {
    pub instance_id: InstanceId,
    pub started_at: OffsetDateTime,
    pub version: String,
    pub pid: u32,
    pub endpoints: Endpoints,
    pub model: String,
    /// Where state is kept, e.g. `sqlite:/path/zcoord.db` or `memory`.
    pub store: String,
}

#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// How many `message.send` `request_id`s are remembered (oldest forgotten first).
    pub idempotency_capacity: usize,
    /// A streaming reply is checkpointed to the store at most this often.
    pub checkpoint_interval: time::Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            idempotency_capacity: 10_000,
            checkpoint_interval: time::Duration::seconds(1),
        }
    }
}

/// What a call sees of the world beyond the core: the time and the transport's counters.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub now: OffsetDateTime,
    pub drops: DropCounters,
}

pub struct Core {
    meta: InstanceMeta,
    config: CoreConfig,
    ids: Box<dyn IdGen>,
    /// `seq` of the last event decided; the first event is 1.
    seq: u64,
    /// Keyed by id; v7 ids make this creation order.
    sessions: BTreeMap<SessionId, Session>,
    active: Option<SessionId>,
    turns: HashMap<TurnId, Turn>,
    /// `request_id` -> the answer it got, for idempotent `message.send`.
    sent: HashMap<String, SendResult>,
    sent_order: VecDeque<String>,
    shutting_down: bool,
    /// Turns found running at start-up (left by a crash) and closed as aborted.
    pub(super) recovered_turns: u64,
    effects: Vec<Effect>,
}

impl Core {
    pub fn new(meta: InstanceMeta, config: CoreConfig, ids: Box<dyn IdGen>) -> Self {
        Core {
            meta,
            config,
            ids,
            seq: 0,
            sessions: BTreeMap::new(),
            active: None,
            turns: HashMap::new(),
            sent: HashMap::new(),
            sent_order: VecDeque::new(),
            shutting_down: false,
            recovered_turns: 0,
            effects: Vec::new(),
        }
    }

    pub fn instance_id(&self) -> InstanceId {
        self.meta.instance_id
    }

    /// `seq` of the last event decided.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn running_turns(&self) -> usize {
        self.turns.len()
    }

    /// The effects decided since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Answers one call. Events it causes are queued as effects before this returns, so a reply
    /// sent after them never overtakes them.
    pub fn call(&mut self, call: Call, ctx: &CallContext) -> Result<Reply, CoreError> {
        let now = ctx.now;
        match call {
            Call::InstancePing => Ok(Reply::Ping(PingResult {
                status: "ok".into(),
                instance_id: self.meta.instance_id,
                uptime: self.uptime(now),
            })),
            Call::InstanceInfo => Ok(Reply::Info(Box::new(self.info(ctx)))),
            Call::StateSync { project_id: _ } => Ok(Reply::StateSync(StateSyncResult {
                sessions: self.session_list(),
                active_session_id: self.active,
                instance_id: self.meta.instance_id,
                seq: self.seq,
            })),
            Call::SessionList => Ok(Reply::SessionList(SessionListResult {
                sessions: self.session_list(),
            })),
            Call::SessionGet { session_id } => {
                Ok(Reply::Session(self.session(&session_id)?.payload()))
            }
            Call::SessionCreate { title } => {
                self.refuse_if_shutting_down()?;
                let title = clip_title(title.as_deref().unwrap_or(""));
                let id = self.create_session(title, now);
                Ok(Reply::Session(self.sessions[&id].payload()))
            }
            Call::SessionDelete { session_id } => {
                self.refuse_if_shutting_down()?;
                let id = self.session(&session_id)?.id;
                self.delete_session(id, now);
                Ok(Reply::Ok(OkResult { ok: true }))
            }
            Call::SessionActivate { session_id } => {
                self.refuse_if_shutting_down()?;
                let id = self.session(&session_id)?.id;
                self.activate(id, now);
                Ok(Reply::Ok(OkResult { ok: true }))
            }
            Call::SessionInterrupt { session_id } => {
                let running = self.session(&session_id)?.running;
                if let Some(turn_id) = running {
                    self.effects.push(Effect::CancelTurn(turn_id));
                    self.end_turn(turn_id, EndReason::Interrupted, None, now);
                }
                Ok(Reply::Interrupt(InterruptResult {
                    ok: true,
                    interrupted: running.is_some(),
                }))
            }
            Call::MessageSend(send) => self.send(send, now).map(Reply::Send),
            Call::MessageList { session_id, page } => {
                let s = self.session(&session_id)?;
                let (range, has_more) = paging::page(&s.messages, &page)?;
                Ok(Reply::MessageList(MessageListResult {
                    messages: s.messages[range]
                        .iter()
                        .map(|m| s.message_payload(m))
                        .collect(),
                    has_more,
                }))
            }
        }
    }

    /// Applies one report from the model running `turn_id`. Reports for a turn that is no longer
    /// running (interrupted, shut down) are ignored: that is what makes `llm.end` exactly-once.
    pub fn model_event(&mut self, turn_id: TurnId, event: ModelEvent, now: OffsetDateTime) {
        let Some(turn) = self.turns.get_mut(&turn_id) else {
            return;
        };
        let session_id = turn.session_id;
        match event {
            ModelEvent::Usage {
                tokens_in,
                tokens_out,
            } => {
                turn.tokens_in = tokens_in;
                turn.reported_tokens_out = Some(tokens_out);
            }
            ModelEvent::Token(token) => {
                if token.is_empty() {
                    return;
                }
                let index = turn.next_index;
                turn.next_index += 1;
                turn.text.push_str(&token);
                if now - turn.checkpointed_at >= self.config.checkpoint_interval {
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
            ModelEvent::ToolStart {
                call_id,
                tool_name,
                params,
            } => {
                turn.open_tools.push(OpenToolCall {
                    call_id: call_id.clone(),
                    tool_name: tool_name.clone(),
                });
                self.persist_quietly(Change::ToolCallStart {
                    turn_id,
                    call_id: call_id.clone(),
                    tool_name: tool_name.clone(),
                    params: params.clone(),
                    started_at: now,
                });
                self.publish(
                    Event::ToolStart(ToolStartPayload {
                        session_id,
                        turn_id,
                        tool_name,
                        call_id,
                        params,
                    }),
                    now,
                );
            }
            ModelEvent::ToolEnd {
                call_id,
                is_error,
                result,
            } => {
                // An end for a call that never started is dropped: every tool.end pairs a tool.start.
                let Some(pos) = turn.open_tools.iter().position(|c| c.call_id == call_id) else {
                    return;
                };
                let call = turn.open_tools.remove(pos);
                self.persist_quietly(Change::ToolCallEnd {
                    turn_id,
                    call_id: call_id.clone(),
                    is_error,
                    result: result.clone(),
                    ended_at: now,
                });
                self.publish(
                    Event::ToolEnd(ToolEndPayload {
                        session_id,
                        turn_id,
                        tool_name: call.tool_name,
                        call_id,
                        is_error,
                        result,
                    }),
                    now,
                );
            }
            ModelEvent::Finished => self.end_turn(turn_id, EndReason::Completed, None, now),
            ModelEvent::Failed(error) => self.end_turn(turn_id, EndReason::Error, Some(error), now),
        }
    }

    /// Publishes `instance.heartbeat`.
    pub fn heartbeat(&mut self, now: OffsetDateTime) {
        let payload = HeartbeatPayload {
            instance_id: self.meta.instance_id,
            active_session_id: self.active,
            session_count: self.sessions.len() as u64,
            uptime: self.uptime(now),
            started_at: self.meta.started_at,
        };
        self.publish(Event::InstanceHeartbeat(payload), now);
    }

    /// Ends every running turn with `reason: "shutdown"`, then publishes `instance.shutdown`.
    /// After this every call that would change state is refused, so `instance.shutdown` is the
    /// last event; reads still answer.
    pub fn shutdown(&mut self, reason: &str, now: OffsetDateTime) {
        self.shutting_down = true;
        let mut running: Vec<TurnId> = self.turns.keys().copied().collect();
        running.sort();
        for turn_id in running {
            self.effects.push(Effect::CancelTurn(turn_id));
            self.end_turn(turn_id, EndReason::Shutdown, None, now);
        }
        self.publish(
            Event::InstanceShutdown(ShutdownPayload {
                instance_id: self.meta.instance_id,
                reason: reason.to_owned(),
            }),
            now,
        );
    }

    fn send(&mut self, send: MessageSend, now: OffsetDateTime) -> Result<SendResult, CoreError> {
        if let Some(done) = send.request_id.as_ref().and_then(|r| self.sent.get(r)) {
            return Ok(done.clone());
        }
        self.refuse_if_shutting_down()?;
        let session_id = match &send.session_id {
            Some(raw) => {
                let s = self.session(raw)?;
                if let Some(turn_id) = s.running {
                    return Err(CoreError::SessionBusy {
                        session_id: raw.clone(),
                        turn_id,
                    });
                }
                s.id
            }
            None => self.create_session(title_from(&send.content), now),
        };

        let message_id = MessageId(self.ids.next_id());
        let turn_id = TurnId(self.ids.next_id());
        let reply_id = MessageId(self.ids.next_id());
        let session = self.sessions.get_mut(&session_id).expect("resolved above");
        let position = session.messages.len() as u64;
        session.messages.push(Message {
            id: message_id,
            turn_id: Some(turn_id),
            role: Role::User,
            content: send.content.clone(),
            created_at: now,
            status: MessageStatus::Complete,
        });
        session.updated_at = now;
        session.running = Some(turn_id);
        let history = session
            .messages
            .iter()
            .map(|m| HistoryEntry {
                role: m.role,
                content: m.content.clone(),
            })
            .collect();
        let session_payload = session.payload();
        let session_record = record_of(session);
        self.turns.insert(
            turn_id,
            Turn::new(turn_id, session_id, reply_id, position + 1, now),
        );
        self.persist(Change::MessageUpsert(MessageRecord {
            id: message_id,
            session_id,
            position,
            turn_id: Some(turn_id),
            role: Role::User,
            content: send.content.clone(),
            created_at: now,
            status: StoredStatus::Complete,
        }));
        self.persist(Change::TurnStart {
            id: turn_id,
            session_id,
            started_at: now,
        });
        self.persist(Change::SessionUpsert(session_record));

        self.publish(
            Event::MessageAppend(MessageAppendPayload {
                session_id,
                message_id,
                role: Role::User,
                content: send.content,
                turn_id: Some(turn_id),
                status: MessageStatus::Complete,
                created_at: now,
            }),
            now,
        );
        self.publish(
            Event::LlmStart(LlmStartPayload {
                session_id,
                turn_id,
            }),
            now,
        );
        self.publish(Event::SessionUpdate(session_payload), now);
        self.effects.push(Effect::StartTurn(TurnStart {
            turn_id,
            session_id,
            history,
        }));

        let result = SendResult {
            ok: true,
            session_id,
            message_id,
            turn_id,
        };
        if let Some(request_id) = send.request_id {
            self.persist(Change::RequestKey {
                request_id: request_id.clone(),
                result: result.clone(),
                created_at: now,
            });
            self.remember(request_id, result.clone());
        }
        Ok(result)
    }

    pub(super) fn remember(&mut self, request_id: String, result: SendResult) {
        if self.config.idempotency_capacity == 0 {
            return;
        }
        while self.sent_order.len() >= self.config.idempotency_capacity {
            if let Some(old) = self.sent_order.pop_front() {
                self.sent.remove(&old);
            }
        }
        self.sent_order.push_back(request_id.clone());
        self.sent.insert(request_id, result);
    }

    /// Closes a running turn: open tool calls end as errors, then `llm.end`, the assistant
    /// message (when any text streamed) and `session.update`, in that order.
    fn end_turn(
        &mut self,
        turn_id: TurnId,
        reason: EndReason,
        error: Option<String>,
        now: OffsetDateTime,
    ) {
        let Some(turn) = self.turns.remove(&turn_id) else {
            return;
        };
        let session_id = turn.session_id;
        for call in &turn.open_tools {
            self.persist_quietly(Change::ToolCallEnd {
                turn_id,
                call_id: call.call_id.clone(),
                is_error: true,
                result: format!("tool call cut short: turn ended ({})", reason_str(reason)),
                ended_at: now,
            });
            self.publish(
                Event::ToolEnd(ToolEndPayload {
                    session_id,
                    turn_id,
                    tool_name: call.tool_name.clone(),
                    call_id: call.call_id.clone(),
                    is_error: true,
                    result: format!("tool call cut short: turn ended ({})", reason_str(reason)),
                }),
                now,
            );
        }
        self.persist(Change::TurnEnd(TurnEnd {
            id: turn_id,
            status: TurnStatus::from_reason(reason),
            reason: reason_str(reason).to_owned(),
            error: error.clone(),
            ended_at: now,
            tokens_in: turn.tokens_in,
            tokens_out: turn.tokens_out(),
        }));
        // Published only after the reply and session are queued for the store, so `llm.end` (which
        // waits for them) never announces a turn whose complete reply a crash could take back.
        let end = Event::LlmEnd(LlmEndPayload {
            session_id,
            turn_id,
            tokens_in: turn.tokens_in,
            tokens_out: turn.tokens_out(),
            reason,
            error,
        });
        let Some(session) = self.sessions.get_mut(&session_id) else {
            self.publish(end, now);
            return;
        };
        session.running = None;
        session.updated_at = now;
        let appended = if turn.text.is_empty() {
            None
        } else {
            let status = if reason == EndReason::Completed {
                MessageStatus::Complete
            } else {
                MessageStatus::Interrupted
            };
            let message_id = turn.reply_id;
            session.messages.push(Message {
                id: message_id,
                turn_id: Some(turn_id),
                role: Role::Assistant,
                content: turn.text.clone(),
                created_at: now,
                status,
            });
            Some(MessageAppendPayload {
                session_id,
                message_id,
                role: Role::Assistant,
                content: turn.text,
                turn_id: Some(turn_id),
                status,
                created_at: now,
            })
        };
        let payload = session.payload();
        let session_record = record_of(session);
        if let Some(append) = &appended {
            self.persist(Change::MessageUpsert(MessageRecord {
                id: append.message_id,
                session_id,
                position: turn.reply_position,
                turn_id: Some(turn_id),
                role: Role::Assistant,
                content: append.content.clone(),
                created_at: now,
                status: match append.status {
                    MessageStatus::Complete => StoredStatus::Complete,
                    MessageStatus::Interrupted => StoredStatus::Interrupted,
                },
            }));
        }
        self.persist(Change::SessionUpsert(session_record));
        self.publish(end, now);
        if let Some(append) = appended {
            self.publish(Event::MessageAppend(append), now);
        }
        self.publish(Event::SessionUpdate(payload), now);
    }

    fn create_session(&mut self, title: String, now: OffsetDateTime) -> SessionId {
        let id = SessionId(self.ids.next_id());
        let session = Session::new(id, title, now);
        let payload = session.payload();
        self.persist(Change::SessionUpsert(record_of(&session)));
        self.sessions.insert(id, session);
        self.publish(Event::SessionUpdate(payload), now);
        self.publish_session_list(now);
        // The first session becomes the active one; later ones wait for `session.activate`.
        if self.active.is_none() {
            self.activate(id, now);
        }
        id
    }

    fn delete_session(&mut self, id: SessionId, now: OffsetDateTime) {
        if let Some(turn_id) = self.sessions.get(&id).and_then(|s| s.running) {
            self.effects.push(Effect::CancelTurn(turn_id));
            self.end_turn(turn_id, EndReason::Interrupted, None, now);
        }
        let Some(session) = self.sessions.remove(&id) else {
            return;
        };
        self.persist(Change::SessionDelete {
            id,
            deleted_at: now,
        });
        if self.active == Some(id) {
            self.active = None;
            self.persist(Change::ActiveSession(None));
        }
        self.publish(Event::SessionDeleted(session.payload()), now);
        self.publish_session_list(now);
    }

    /// Makes `id` the active session; publishes `session.activated` only when it changes.
    /// Activation changes no session data, so the session's `updated_at` stays as it was.
    fn activate(&mut self, id: SessionId, now: OffsetDateTime) {
        if self.active == Some(id) {
            return;
        }
        self.active = Some(id);
        self.persist(Change::ActiveSession(Some(id)));
        let payload = self.sessions[&id].payload();
        self.publish(Event::SessionActivated(payload), now);
    }

    /// Adds a session as loaded from a store (no events: nobody is subscribed yet).
    pub(super) fn insert_session(&mut self, session: Session) {
        self.sessions.insert(session.id, session);
    }

    pub(super) fn set_active_restored(&mut self, active: Option<SessionId>) {
        self.active = active.filter(|id| self.sessions.contains_key(id));
    }

    /// The assistant text kept for `turn_id`, if any.
    pub(super) fn messages_of_turn(&self, session: SessionId, turn_id: TurnId) -> Option<&str> {
        self.sessions
            .get(&session)?
            .messages
            .iter()
            .find(|m| m.turn_id == Some(turn_id) && m.role == Role::Assistant)
            .map(|m| m.content.as_str())
    }

    fn publish_session_list(&mut self, now: OffsetDateTime) {
        let sessions = self.session_list();
        self.publish(Event::SessionList(SessionListPayload { sessions }), now);
    }

    /// Queues a change that what follows depends on (a reply or event after it waits for it).
    pub(super) fn persist(&mut self, change: Change) {
        self.effects.push(Effect::Persist {
            change,
            gating: true,
        });
    }

    /// Queues a change nothing shown to clients depends on: checkpoints, tool-call records.
    pub(super) fn persist_quietly(&mut self, change: Change) {
        self.effects.push(Effect::Persist {
            change,
            gating: false,
        });
    }

    /// Checkpoints every streaming reply with text not yet saved and whose last checkpoint is at
    /// least `checkpoint_interval` old, so a crash loses at most that much of a stream.
    pub fn checkpoint(&mut self, now: OffsetDateTime) {
        let due: Vec<TurnId> = self
            .turns
            .values()
            .filter(|t| {
                t.text.len() > t.checkpointed_len
                    && now - t.checkpointed_at >= self.config.checkpoint_interval
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
        turn.checkpointed_len = turn.text.len();
        turn.checkpointed_at = now;
        let record = MessageRecord {
            id: turn.reply_id,
            session_id: turn.session_id,
            position: turn.reply_position,
            turn_id: Some(turn_id),
            role: Role::Assistant,
            content: turn.text.clone(),
            created_at: turn.started_at,
            status: StoredStatus::Streaming,
        };
        self.persist_quietly(Change::MessageUpsert(record));
    }

    fn publish(&mut self, event: Event, now: OffsetDateTime) {
        self.seq += 1;
        self.effects.push(Effect::Publish(Published {
            seq: self.seq,
            timestamp: now,
            event,
        }));
    }

    /// Sessions, most recently updated first.
    fn session_list(&self) -> Vec<SessionPayload> {
        let mut list: Vec<&Session> = self.sessions.values().collect();
        list.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
        list.into_iter().map(Session::payload).collect()
    }

    fn session(&self, raw: &str) -> Result<&Session, CoreError> {
        SessionId::parse(raw)
            .and_then(|id| self.sessions.get(&id))
            .ok_or_else(|| CoreError::SessionNotFound(raw.to_owned()))
    }

    fn refuse_if_shutting_down(&self) -> Result<(), CoreError> {
        if self.shutting_down {
            Err(CoreError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    fn uptime(&self, now: OffsetDateTime) -> String {
        let elapsed = (now - self.meta.started_at).max(time::Duration::ZERO);
        go_duration(elapsed.unsigned_abs())
    }

    fn info(&self, ctx: &CallContext) -> InfoResult {
        InfoResult {
            instance_id: self.meta.instance_id,
            version: self.meta.version.clone(),
            protocol_version: PROTOCOL_VERSION,
            pid: self.meta.pid,
            started_at: self.meta.started_at,
            uptime: self.uptime(ctx.now),
            endpoints: self.meta.endpoints.clone(),
            session_count: self.sessions.len() as u64,
            active_session_id: self.active,
            model: self.meta.model.clone(),
            seq: self.seq,
            running_turns: self.turns.len() as u64,
            drops: ctx.drops.clone(),
            store: self.meta.store.clone(),
            recovered_turns: self.recovered_turns,
        }
    }
}

fn reason_str(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Completed => "completed",
        EndReason::Interrupted => "interrupted",
        EndReason::Error => "error",
        EndReason::Shutdown => "shutdown",
    }
}

/// A session's stored row.
pub(super) fn record_of(s: &Session) -> SessionRecord {
    SessionRecord {
        id: s.id,
        title: s.title.clone(),
        created_at: s.created_at,
        updated_at: s.updated_at,
    }
}
