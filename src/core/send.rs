//! `message.send`: a user message accepted, its turn started or queued, and the idempotent
//! answer kept for its `request_id`.

use time::OffsetDateTime;

use super::effects::{Effect, TurnEffect};
use super::error::CoreError;
use super::persist::{Change, MessageRecord, StoredStatus};
use super::read::ContextRead;
use super::session::title_from;
use super::state::{record_of, Core, ModelChoice, NewTurn};
use super::turn::Turn;
use crate::protocol::clients::Author;
use crate::protocol::events::{
    DequeueReason, Event, LlmStartPayload, MessageAppendPayload, MessageDequeuedPayload,
};
use crate::protocol::ids::{MessageId, SessionId, TurnId};
use crate::protocol::methods::{MessageSend, SendResult, WhenBusy};
use crate::protocol::types::{MessageStatus, Role};

impl Core {
    pub(super) fn send(
        &mut self,
        send: MessageSend,
        author: Option<Author>,
        now: OffsetDateTime,
    ) -> Result<SendResult, CoreError> {
        // Before the idempotency lookup: a remembered answer may describe a change the failing
        // store has not saved, and must not be acknowledged again until it has.
        self.refuse_if_degraded()?;
        if let Some(done) = send.request_id.as_ref().and_then(|r| self.sent.get(r)) {
            return Ok(done.clone());
        }
        self.refuse_if_shutting_down()?;
        let request_id = send.request_id.clone();
        let existing = match &send.session_id {
            Some(raw) => {
                let s = self.session(raw)?;
                match (s.running, send.when_busy) {
                    (None, _) => Some(s),
                    (Some(_), WhenBusy::Queue) => {
                        let id = s.id;
                        let result = self.enqueue(id, send, author, now)?;
                        self.keep_answer(request_id, &result, now);
                        return Ok(result);
                    }
                    (Some(turn_id), WhenBusy::Reject) => {
                        return Err(CoreError::SessionBusy {
                            session_id: raw.clone(),
                            turn_id,
                        })
                    }
                }
            }
            None => None,
        };
        // Before anything changes: an unknown model refuses the whole call.
        let (model, entry) = self.config.models.pick(
            send.model.as_deref(),
            existing.and_then(|s| s.model.as_deref()),
        )?;
        let model = ModelChoice {
            name: model.to_owned(),
            context_bytes: entry.context_bytes,
        };
        let session_id = match existing.map(|s| s.id) {
            Some(id) => id,
            None => self.create_session(title_from(&send.content), now)?,
        };

        let message_id = MessageId(self.ids.next_id());
        let turn_id = TurnId(self.ids.next_id());
        let message = NewTurn {
            message_id,
            turn_id,
            content: send.content,
            author,
        };
        self.begin_turn(session_id, message, model, false, now);
        let result = SendResult {
            ok: true,
            session_id,
            message_id,
            turn_id,
            queued: false,
            position: None,
        };
        self.keep_answer(request_id, &result, now);
        Ok(result)
    }

    /// Remembers a send's answer under its `request_id`, in memory and in the store.
    pub(super) fn keep_answer(
        &mut self,
        request_id: Option<String>,
        result: &SendResult,
        now: OffsetDateTime,
    ) {
        let Some(request_id) = request_id else {
            return;
        };
        self.persist(Change::RequestKey {
            request_id: request_id.clone(),
            result: result.clone(),
            created_at: now,
        });
        self.remember(request_id, result.clone());
    }

    /// Appends the user message `message_id` to the idle session `session_id` and starts turn
    /// `turn_id` on it: the store changes first, then (for a message that waited in the queue)
    /// its `message.dequeued`, then `message.append`, `llm.start` and `session.update`.
    pub(super) fn begin_turn(
        &mut self,
        session_id: SessionId,
        message: NewTurn,
        model: ModelChoice,
        from_queue: bool,
        now: OffsetDateTime,
    ) {
        let NewTurn {
            message_id,
            turn_id,
            content,
            author,
        } = message;
        let ModelChoice {
            name: model,
            context_bytes,
        } = model;
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return;
        };
        let position = session.message_count;
        session.message_count += 1;
        session.updated_at = now;
        session.running = Some(turn_id);
        let context = ContextRead {
            session_id,
            count: session.message_count,
            max_bytes: context_bytes,
        };
        let system_prompt = session.system_prompt.clone();
        let queue_length = session.queue.len() as u64;
        let session_payload = session.payload();
        let session_record = record_of(session);
        let mut turn = Turn::new(turn_id, session_id, now);
        turn.client_tools = self.peers.offered();
        let client_tools = turn.client_tools.clone();
        self.turns.insert(turn_id, turn);
        self.persist(Change::MessageUpsert(MessageRecord {
            id: message_id,
            session_id,
            position,
            turn_id: Some(turn_id),
            role: Role::User,
            content: content.clone(),
            created_at: now,
            status: StoredStatus::Complete,
            tool: None,
            author: author.clone(),
        }));
        self.persist(Change::TurnStart {
            id: turn_id,
            session_id,
            started_at: now,
        });
        self.persist(Change::SessionUpsert(session_record));
        if from_queue {
            // After the message is stored: a crash in between finds it in the history, and
            // loading skips a queued row whose message is already there.
            self.persist(Change::QueueRemove { message_id });
            self.publish(
                Event::MessageDequeued(MessageDequeuedPayload {
                    session_id,
                    message_id,
                    turn_id,
                    reason: DequeueReason::Started,
                    queue_length,
                }),
                now,
            );
        }

        self.publish(
            Event::MessageAppend(
                MessageAppendPayload {
                    session_id,
                    message_id,
                    role: Role::User,
                    content,
                    turn_id: Some(turn_id),
                    status: MessageStatus::Complete,
                    created_at: now,
                    tool: None,
                    content_bytes: None,
                    content_truncated: false,
                    author,
                }
                .clipped(),
            ),
            now,
        );
        self.publish(
            Event::LlmStart(LlmStartPayload {
                session_id,
                turn_id,
                model: model.clone(),
            }),
            now,
        );
        self.publish(Event::SessionUpdate(session_payload), now);
        self.effects.push(Effect::Turn(TurnEffect::Start {
            turn_id,
            session_id,
            context,
            client_tools,
            model,
            system_prompt,
        }));
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
}
