//! The sessions the core holds, with a generation that changes on every change to any of them,
//! and the session list encoded once per generation: `state.sync` and `session.list` answer
//! with those bytes instead of encoding every session on every call (issue 16). Reads go through
//! `Deref` to the map; every write goes through a method here, so none can forget the
//! generation (there is no `DerefMut`).

use std::collections::BTreeMap;
use std::ops::Deref;

use serde_json::value::RawValue;

use super::session::Session;
use crate::protocol::ids::SessionId;

#[derive(Debug, Default)]
pub struct Sessions {
    map: BTreeMap<SessionId, Session>,
    generation: u64,
    /// The JSON array of every session's payload, most recently updated first, and the
    /// generation it was encoded at.
    encoded: Option<(u64, Box<RawValue>)>,
}

impl Deref for Sessions {
    type Target = BTreeMap<SessionId, Session>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl Sessions {
    pub fn get_mut(&mut self, id: &SessionId) -> Option<&mut Session> {
        let session = self.map.get_mut(id)?;
        self.generation += 1;
        Some(session)
    }

    pub fn insert(&mut self, id: SessionId, session: Session) -> Option<Session> {
        self.generation += 1;
        self.map.insert(id, session)
    }

    pub fn remove(&mut self, id: &SessionId) -> Option<Session> {
        let removed = self.map.remove(id)?;
        self.generation += 1;
        Some(removed)
    }

    /// Every session, most recently updated first (ties: the newer id first).
    pub fn sorted(&self) -> Vec<&Session> {
        sorted(&self.map)
    }

    /// The session list as a JSON array, encoded only when a session changed since the last
    /// time it was asked for.
    pub fn encoded(&mut self) -> &RawValue {
        if self
            .encoded
            .as_ref()
            .is_some_and(|(at, _)| *at != self.generation)
        {
            self.encoded = None;
        }
        let generation = self.generation;
        let map = &self.map;
        let (_, raw) = self.encoded.get_or_insert_with(|| {
            let payloads: Vec<_> = sorted(map).into_iter().map(Session::payload).collect();
            // Serialising these types cannot fail: every map key is a string.
            (
                generation,
                serde_json::value::to_raw_value(&payloads).unwrap_or_default(),
            )
        });
        raw
    }
}

fn sorted(map: &BTreeMap<SessionId, Session>) -> Vec<&Session> {
    let mut list: Vec<&Session> = map.values().collect();
    list.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
    list
}
