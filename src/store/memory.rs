//! A store that keeps everything in this process: for tests and `--store memory`. It applies
//! changes exactly as a durable store would and rebuilds a snapshot from them, so it is also the
//! reference the SQLite store is tested against. Nothing survives the process.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::{Store, StoreError};
use crate::core::persist::{Change, MessageRecord, OpenTurn, SessionRecord, Snapshot, TurnStatus};
use crate::protocol::ids::{MessageId, SessionId, TurnId};
use crate::protocol::methods::SendResult;

#[derive(Debug, Default)]
struct Data {
    sessions: BTreeMap<SessionId, SessionRecord>,
    deleted: std::collections::HashSet<SessionId>,
    messages: HashMap<MessageId, MessageRecord>,
    active: Option<SessionId>,
    /// Turn id -> (session, started, status).
    turns: BTreeMap<TurnId, (OpenTurn, TurnStatus)>,
    keys: VecDeque<(String, SendResult)>,
}

/// Cloning shares the data: a "restart" in a test is a new server given a clone.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    data: Arc<Mutex<Data>>,
    /// Each commit takes this long: lets tests show that nothing waits on a slow store except
    /// what must.
    commit_delay: std::time::Duration,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose every commit takes `delay` (for tests).
    pub fn with_commit_delay(delay: std::time::Duration) -> Self {
        MemoryStore {
            commit_delay: delay,
            ..Self::default()
        }
    }
}

impl Store for MemoryStore {
    fn load(&mut self, request_key_capacity: usize) -> Result<Snapshot, StoreError> {
        let data = self
            .data
            .lock()
            .map_err(|_| StoreError::Invalid("memory store poisoned".into()))?;
        let mut by_session: HashMap<SessionId, Vec<MessageRecord>> = HashMap::new();
        for m in data.messages.values() {
            by_session.entry(m.session_id).or_default().push(m.clone());
        }
        let sessions = data
            .sessions
            .values()
            .filter(|s| !data.deleted.contains(&s.id))
            .map(|s| {
                let mut msgs = by_session.remove(&s.id).unwrap_or_default();
                msgs.sort_by_key(|m| m.position);
                (s.clone(), msgs)
            })
            .collect();
        let open_turns = data
            .turns
            .values()
            .filter(|(t, status)| {
                *status == TurnStatus::Running && !data.deleted.contains(&t.session_id)
            })
            .map(|(t, _)| t.clone())
            .collect();
        let skip = data.keys.len().saturating_sub(request_key_capacity);
        Ok(Snapshot {
            sessions,
            active_session: data
                .active
                .filter(|a| data.sessions.contains_key(a) && !data.deleted.contains(a)),
            open_turns,
            request_keys: data.keys.iter().skip(skip).cloned().collect(),
        })
    }

    fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        if !self.commit_delay.is_zero() {
            std::thread::sleep(self.commit_delay);
        }
        let mut data = self
            .data
            .lock()
            .map_err(|_| StoreError::Invalid("memory store poisoned".into()))?;
        for change in changes {
            match change {
                Change::SessionUpsert(s) => {
                    data.sessions.insert(s.id, s.clone());
                }
                Change::SessionDelete { id, .. } => {
                    data.deleted.insert(*id);
                }
                Change::ActiveSession(a) => data.active = *a,
                Change::MessageUpsert(m) => {
                    data.messages.insert(m.id, m.clone());
                }
                Change::TurnStart {
                    id,
                    session_id,
                    started_at,
                } => {
                    let open = OpenTurn {
                        id: *id,
                        session_id: *session_id,
                        started_at: *started_at,
                    };
                    data.turns.insert(*id, (open, TurnStatus::Running));
                }
                Change::TurnEnd(end) => {
                    if let Some(t) = data.turns.get_mut(&end.id) {
                        t.1 = end.status;
                    }
                }
                Change::ToolCallStart { .. } | Change::ToolCallEnd { .. } => {}
                // The first answer to a key is the one kept, as in SQLite.
                Change::RequestKey {
                    request_id, result, ..
                } => {
                    if !data.keys.iter().any(|(k, _)| k == request_id) {
                        data.keys.push_back((request_id.clone(), result.clone()));
                    }
                }
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}
