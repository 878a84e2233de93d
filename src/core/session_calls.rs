//! The calls that make and unmake sessions (`session.create`, `session.delete`,
//! `session.activate`) and the `session.list` event and answer.

use time::OffsetDateTime;

use super::effects::{Effect, TurnEffect};
use super::error::CoreError;
use super::persist::Change;
use super::session::Session;
use super::state::{record_of, Core};
use crate::protocol::events::{DequeueReason, EndReason, Event, SessionListPayload};
use crate::protocol::ids::SessionId;
use crate::protocol::limits::SESSION_LIST_EVENT_MAX;
use crate::protocol::types::SessionPayload;

impl Core {
    /// Every new session comes through here, so the session limit holds however it was asked for.
    pub(super) fn create_session(
        &mut self,
        title: String,
        now: OffsetDateTime,
    ) -> Result<SessionId, CoreError> {
        if self.sessions.len() >= self.config.max_sessions {
            return Err(CoreError::TooManySessions {
                count: self.sessions.len(),
                limit: self.config.max_sessions,
            });
        }
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
        Ok(id)
    }

    pub(super) fn delete_session(&mut self, id: SessionId, now: OffsetDateTime) {
        // Discarded first, so the end of its turn starts nothing.
        self.discard_queue(id, DequeueReason::Deleted, now);
        if let Some(turn_id) = self.sessions.get(&id).and_then(|s| s.running) {
            self.effects.push(Effect::Turn(TurnEffect::Cancel(turn_id)));
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
    pub(super) fn activate(&mut self, id: SessionId, now: OffsetDateTime) {
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

    /// `session.list`: the newest sessions only, so the event stays small (see its payload).
    pub(super) fn publish_session_list(&mut self, now: OffsetDateTime) {
        let mut sessions = self.session_list();
        let session_count = sessions.len() as u64;
        let truncated = sessions.len() > SESSION_LIST_EVENT_MAX;
        sessions.truncate(SESSION_LIST_EVENT_MAX);
        let payload = SessionListPayload {
            sessions,
            session_count,
            truncated,
        };
        self.publish(Event::SessionList(payload), now);
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

    pub(super) fn publish(&mut self, event: Event, now: OffsetDateTime) {
        self.seq += 1;
        let p = self
            .encoder
            .encode(self.seq, now, event, self.meta.instance_id);
        self.ring.push(p.seq, p.key.clone(), p.body.clone());
        self.effects.push(Effect::Publish(p));
    }

    /// Sessions, most recently updated first.
    pub(super) fn session_list(&self) -> Vec<SessionPayload> {
        self.sessions
            .sorted()
            .into_iter()
            .map(Session::payload)
            .collect()
    }

    pub(super) fn session(&self, raw: &str) -> Result<&Session, CoreError> {
        SessionId::parse(raw)
            .and_then(|id| self.sessions.get(&id))
            .ok_or_else(|| CoreError::SessionNotFound(raw.to_owned()))
    }
}
