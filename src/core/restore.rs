//! Resuming from a store's snapshot: rebuilds sessions, messages, the active session and the
//! idempotency keys, and closes the turns a crash left running as `aborted` (reason `crashed`),
//! keeping their checkpointed partial replies, marked interrupted.

use time::OffsetDateTime;

use super::persist::{Change, MessageRecord, Snapshot, StoredStatus, TurnEnd, TurnStatus};
use super::session::{Message, Session};
use super::state::Core;
use crate::protocol::types::MessageStatus;

impl Core {
    /// Loads `snapshot` into an empty core. Returns how many crashed turns were recovered; the
    /// store changes that record the recovery are queued as effects.
    pub fn restore(&mut self, snapshot: Snapshot, now: OffsetDateTime) -> u64 {
        let open: std::collections::HashSet<_> = snapshot.open_turns.iter().map(|t| t.id).collect();
        for (record, messages) in snapshot.sessions {
            let mut session = Session::new(record.id, record.title, record.created_at);
            session.updated_at = record.updated_at;
            for m in messages {
                // A reply still streaming when the process died is what survived of it.
                let status = match m.status {
                    StoredStatus::Complete => MessageStatus::Complete,
                    StoredStatus::Interrupted => MessageStatus::Interrupted,
                    StoredStatus::Streaming => {
                        self.persist(Change::MessageUpsert(MessageRecord {
                            status: StoredStatus::Interrupted,
                            ..m.clone()
                        }));
                        MessageStatus::Interrupted
                    }
                };
                session.messages.push(Message {
                    id: m.id,
                    turn_id: m.turn_id,
                    role: m.role,
                    content: m.content,
                    created_at: m.created_at,
                    status,
                    tool: m.tool,
                });
            }
            self.insert_session(session);
        }
        self.set_active_restored(snapshot.active_session);
        for (request_id, result) in snapshot.request_keys {
            self.remember(request_id, result);
        }
        for turn in &snapshot.open_turns {
            let tokens_out = self
                .messages_of_turn(turn.session_id, turn.id)
                .map(|content| content.split_whitespace().count() as u64)
                .unwrap_or(0);
            self.persist(Change::TurnEnd(TurnEnd {
                id: turn.id,
                status: TurnStatus::Aborted,
                reason: "crashed".into(),
                error: Some("the server stopped while this turn ran".into()),
                ended_at: now,
                tokens_in: 0,
                tokens_out,
            }));
        }
        self.recovered_turns = open.len() as u64;
        self.recovered_turns
    }
}
