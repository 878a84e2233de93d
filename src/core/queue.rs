//! Messages queued behind a session's running turn (`message.send` with `when_busy: "queue"`):
//! taking one in within its bounds, starting the next when a turn ends however it ends, and
//! discarding a queue (cleared by `session.interrupt`, or its session deleted). A queued message
//! is stored when it is queued and becomes a history message only when its turn starts.

use time::OffsetDateTime;

use super::error::CoreError;
use super::persist::Change;
use super::state::{Core, ModelChoice, NewTurn};
use crate::protocol::clients::Author;
use crate::protocol::events::{DequeueReason, Event, MessageDequeuedPayload, MessageQueuedPayload};
use crate::protocol::ids::{MessageId, SessionId, TurnId};
use crate::protocol::methods::{MessageSend, SendResult};

/// One message waiting for its turn. Its ids are fixed when it is queued (the reply names them),
/// so a client can match the `llm.start` it will get. A struct, not a tuple: what a turn is
/// started with (who sent it, which model) travels with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub session_id: SessionId,
    pub message_id: MessageId,
    pub turn_id: TurnId,
    pub content: String,
    pub queued_at: OffsetDateTime,
    /// The client that sent it (`client.hello`), shown on its `message.append` when it starts.
    pub author: Option<Author>,
    /// The model its `message.send` asked for, for its turn alone (else the session's).
    pub model: Option<String>,
}

/// How much may wait, per session and over the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Messages one session may hold queued.
    pub max_messages: usize,
    /// Bytes of content one session may hold queued.
    pub max_bytes: usize,
    /// Bytes of content all sessions together may hold queued (it is held in memory).
    pub max_total_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        use crate::protocol::limits::{
            DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_QUEUED_BYTES_TOTAL, DEFAULT_MAX_QUEUED_MESSAGES,
        };
        QueueLimits {
            max_messages: DEFAULT_MAX_QUEUED_MESSAGES,
            max_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_total_bytes: DEFAULT_MAX_QUEUED_BYTES_TOTAL,
        }
    }
}

impl Core {
    /// Queues `send` behind the turn running in `session_id`: refused with `queue_full` past a
    /// bound (nothing changes), else stored, published (`message.queued`, then `session.update`
    /// with the new `queue_length`) and answered with its place.
    pub(super) fn enqueue(
        &mut self,
        session_id: SessionId,
        send: MessageSend,
        author: Option<Author>,
        now: OffsetDateTime,
    ) -> Result<SendResult, CoreError> {
        let limits = self.config.queue;
        let session = self
            .sessions
            .get(&session_id)
            .ok_or_else(|| CoreError::SessionNotFound(session_id.to_string()))?;
        // An unknown model is refused now, not when the message's turn comes.
        self.config
            .models
            .pick(send.model.as_deref(), session.model.as_deref())?;
        let count = session.queue.len();
        let bytes = session.queued_bytes();
        let size = send.content.len();
        if count + 1 > limits.max_messages || bytes + size > limits.max_bytes {
            return Err(CoreError::QueueFull {
                session_id,
                scope: QueueScope::Session,
                queued: (count as u64, bytes as u64),
                limit: Some(limits.max_messages as u64),
                limit_bytes: limits.max_bytes as u64,
            });
        }
        if self.queued_bytes + size > limits.max_total_bytes {
            return Err(CoreError::QueueFull {
                session_id,
                scope: QueueScope::Instance,
                queued: (self.queued_count() as u64, self.queued_bytes as u64),
                limit: None,
                limit_bytes: limits.max_total_bytes as u64,
            });
        }
        let queued = QueuedMessage {
            session_id,
            message_id: MessageId(self.ids.next_id()),
            turn_id: TurnId(self.ids.next_id()),
            content: send.content,
            queued_at: now,
            author,
            model: send.model,
        };
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return Err(CoreError::SessionNotFound(session_id.to_string()));
        };
        session.queue.push_back(queued.clone());
        let position = session.queue.len() as u64;
        let payload = session.payload();
        self.queued_bytes += size;
        self.persist(Change::QueuePush(queued.clone()));
        let result = SendResult {
            ok: true,
            session_id,
            message_id: queued.message_id,
            turn_id: queued.turn_id,
            queued: true,
            position: Some(position),
        };
        self.publish(
            Event::MessageQueued(
                MessageQueuedPayload {
                    session_id,
                    message_id: queued.message_id,
                    turn_id: queued.turn_id,
                    content: queued.content,
                    position,
                    queued_at: now,
                    content_bytes: None,
                    content_truncated: false,
                }
                .clipped(),
            ),
            now,
        );
        self.publish(Event::SessionUpdate(payload), now);
        Ok(result)
    }

    /// Starts the next queued message of `session_id` as its turn, if the session is idle and
    /// has one, and the server is not shutting down (the queue is then kept for the restart).
    pub(super) fn start_next(&mut self, session_id: SessionId, now: OffsetDateTime) {
        if self.shutting_down {
            return;
        }
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return;
        };
        if session.running.is_some() {
            return;
        }
        let Some(next) = session.queue.pop_front() else {
            return;
        };
        self.queued_bytes = self.queued_bytes.saturating_sub(next.content.len());
        // Checked when it was queued; a model gone since (a restart without it) gives way to
        // the default rather than leave an accepted message unrun.
        let catalog = &self.config.models;
        let (model, entry) = catalog
            .pick(next.model.as_deref(), session.model.as_deref())
            .unwrap_or_else(|_| catalog.default_entry());
        let model = ModelChoice {
            name: model.to_owned(),
            context_bytes: entry.context_bytes,
        };
        let message = NewTurn {
            message_id: next.message_id,
            turn_id: next.turn_id,
            content: next.content,
            author: next.author,
        };
        self.begin_turn(session_id, message, model, true, now);
    }

    /// Discards every message queued in `session_id`, oldest first, each with its
    /// `message.dequeued`; returns how many there were.
    pub(super) fn discard_queue(
        &mut self,
        session_id: SessionId,
        reason: DequeueReason,
        now: OffsetDateTime,
    ) -> u64 {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return 0;
        };
        let queue = std::mem::take(&mut session.queue);
        let discarded = queue.len() as u64;
        let mut left = discarded;
        for gone in queue {
            left -= 1;
            self.queued_bytes = self.queued_bytes.saturating_sub(gone.content.len());
            self.persist(Change::QueueRemove {
                message_id: gone.message_id,
            });
            self.publish(
                Event::MessageDequeued(MessageDequeuedPayload {
                    session_id,
                    message_id: gone.message_id,
                    turn_id: gone.turn_id,
                    reason,
                    queue_length: left,
                }),
                now,
            );
        }
        discarded
    }

    /// Messages queued over all sessions.
    fn queued_count(&self) -> usize {
        self.sessions.values().map(|s| s.queue.len()).sum()
    }
}

/// Which bound a refused queueing would have passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueScope {
    Session,
    Instance,
}

impl QueueScope {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueScope::Session => "session",
            QueueScope::Instance => "instance",
        }
    }
}
