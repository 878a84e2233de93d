//! Resuming from a store's snapshot: rebuilds sessions (with their message counts; the
//! messages stay in the store), the active session and the idempotency keys, and closes the
//! turns a crash left running as `aborted` (reason `crashed`), keeping their checkpointed
//! partial replies, marked interrupted. Messages left queued are put back in their queues and
//! each session's first starts at once, as the next turn.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::persist::{Change, MessageRecord, Snapshot, StoredStatus, TurnEnd, TurnStatus};
use super::session::Session;
use super::state::Core;
use crate::protocol::ids::TurnId;

impl Core {
    /// Loads `snapshot` into an empty core. Returns how many crashed turns were recovered; the
    /// store changes that record the recovery are queued as effects.
    pub fn restore(&mut self, snapshot: Snapshot, now: OffsetDateTime) -> u64 {
        for stored in snapshot.sessions {
            let record = stored.record;
            let mut session = Session::new(record.id, record.title, record.created_at);
            session.updated_at = record.updated_at;
            session.message_count = stored.message_count;
            session.grants = stored.grants.into_iter().collect();
            session.model = record.model;
            session.system_prompt = record.system_prompt;
            session.usage = record.usage;
            self.insert_session(session);
        }
        // A reply still streaming when the process died is what survived of it.
        let mut words: HashMap<TurnId, u64> = HashMap::new();
        for m in snapshot.streaming {
            if let Some(turn) = m.turn_id {
                *words.entry(turn).or_default() += m.content.split_whitespace().count() as u64;
            }
            if let Some(s) = self.sessions.get_mut(&m.session_id) {
                s.message_count = s.message_count.max(m.position + 1);
            }
            self.persist(Change::MessageUpsert(MessageRecord {
                status: StoredStatus::Interrupted,
                ..m
            }));
        }
        self.set_active_restored(snapshot.active_session);
        for (request_id, result) in snapshot.request_keys {
            self.remember(request_id, result);
        }
        for turn in &snapshot.open_turns {
            self.persist(Change::TurnEnd(TurnEnd {
                id: turn.id,
                status: TurnStatus::Aborted,
                reason: "crashed".into(),
                error: Some("the server stopped while this turn ran".into()),
                ended_at: now,
                tokens_in: 0,
                tokens_out: words.get(&turn.id).copied().unwrap_or(0),
            }));
        }
        // Their turns are gone with the crash: resolved as cancelled, published once serving.
        self.cancel_restored(snapshot.pending_hitl, now);
        self.recovered_turns = snapshot.open_turns.len() as u64;
        self.restore_queues(snapshot.queued, now);
        self.recovered_turns
    }

    /// Puts queued messages back in order and starts each session's first (its events are
    /// published once serving). A lowered bound keeps what was queued.
    fn restore_queues(&mut self, queued: Vec<super::queue::QueuedMessage>, now: OffsetDateTime) {
        let mut waiting = Vec::new();
        for q in queued {
            let Some(s) = self.sessions.get_mut(&q.session_id) else {
                continue;
            };
            if s.queue.is_empty() {
                waiting.push(q.session_id);
            }
            self.queued_bytes += q.content.len();
            s.queue.push_back(q);
        }
        for session_id in waiting {
            self.start_next(session_id, now);
        }
    }
}
