//! A store that keeps everything in this process: for tests and `--store memory`. It applies
//! changes exactly as a durable store would and rebuilds a snapshot from them, so it is also the
//! reference the SQLite store is tested against. Nothing survives the process.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use super::{Store, StoreError};
use crate::core::persist::{
    Change, MessageRecord, OpenTurn, SessionRecord, Snapshot, StoredSession, StoredStatus,
    TurnStatus,
};
use crate::core::queue::QueuedMessage;
use crate::core::read::Direction;
use crate::protocol::hitl::{HitlRequest, HitlStatus};
use crate::protocol::ids::{HitlId, MessageId, SessionId, TurnId};
use crate::protocol::methods::SendResult;

#[derive(Debug, Default)]
struct Data {
    sessions: BTreeMap<SessionId, SessionRecord>,
    deleted: std::collections::HashSet<SessionId>,
    /// Messages by session and position, as SQLite's `(session_id, position)` index has them.
    messages: BTreeMap<(SessionId, u64), MessageRecord>,
    /// Where each message is in `messages`.
    message_at: HashMap<MessageId, (SessionId, u64)>,
    active: Option<SessionId>,
    /// Turn id -> (session, started, status).
    turns: BTreeMap<TurnId, (OpenTurn, TurnStatus)>,
    keys: VecDeque<(String, SendResult)>,
    hitl: BTreeMap<HitlId, HitlRequest>,
    grants: BTreeMap<SessionId, std::collections::BTreeSet<String>>,
    /// Queued messages, in the order they were queued.
    queued: Vec<QueuedMessage>,
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
        let live = |id: &SessionId| data.sessions.contains_key(id) && !data.deleted.contains(id);
        let sessions = data
            .sessions
            .values()
            .filter(|s| live(&s.id))
            .map(|s| StoredSession {
                grants: data
                    .grants
                    .get(&s.id)
                    .map(|g| g.iter().cloned().collect())
                    .unwrap_or_default(),
                record: s.clone(),
                message_count: data
                    .messages
                    .range((s.id, 0)..=(s.id, u64::MAX))
                    .next_back()
                    .map_or(0, |((_, p), _)| p + 1),
            })
            .collect();
        let open_turns: Vec<OpenTurn> = data
            .turns
            .values()
            .filter(|(t, status)| *status == TurnStatus::Running && live(&t.session_id))
            .map(|(t, _)| t.clone())
            .collect();
        let streaming = data
            .messages
            .values()
            .filter(|m| m.status == StoredStatus::Streaming && live(&m.session_id))
            .filter(|m| open_turns.iter().any(|t| Some(t.id) == m.turn_id))
            .cloned()
            .collect();
        let skip = data.keys.len().saturating_sub(request_key_capacity);
        Ok(Snapshot {
            sessions,
            active_session: data
                .active
                .filter(|a| data.sessions.contains_key(a) && !data.deleted.contains(a)),
            open_turns,
            streaming,
            request_keys: data.keys.iter().skip(skip).cloned().collect(),
            pending_hitl: data
                .hitl
                .values()
                .filter(|r| r.status == HitlStatus::Pending && live(&r.session_id))
                .cloned()
                .collect(),
            queued: data
                .queued
                .iter()
                .filter(|q| live(&q.session_id) && !data.message_at.contains_key(&q.message_id))
                .cloned()
                .collect(),
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
                    let at = (m.session_id, m.position);
                    if let Some(old) = data.message_at.insert(m.id, at) {
                        data.messages.remove(&old);
                    }
                    data.messages.insert(at, m.clone());
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
                Change::HitlUpsert(r) => {
                    data.hitl.insert(r.id, (**r).clone());
                }
                Change::GrantAdd {
                    session_id,
                    tool_name,
                    ..
                } => {
                    data.grants
                        .entry(*session_id)
                        .or_default()
                        .insert(tool_name.clone());
                }
                Change::QueuePush(q) => {
                    if !data.queued.iter().any(|o| o.message_id == q.message_id) {
                        data.queued.push(q.clone());
                    }
                }
                Change::QueueRemove { message_id } => {
                    data.queued.retain(|q| q.message_id != *message_id);
                }
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

    fn message_position(
        &mut self,
        session: SessionId,
        id: MessageId,
    ) -> Result<Option<u64>, StoreError> {
        let data = self
            .data
            .lock()
            .map_err(|_| StoreError::Invalid("memory store poisoned".into()))?;
        Ok(data
            .message_at
            .get(&id)
            .filter(|(s, _)| *s == session)
            .map(|(_, p)| *p))
    }

    fn scan_messages(
        &mut self,
        session: SessionId,
        positions: Range<u64>,
        direction: Direction,
        visit: &mut dyn FnMut(MessageRecord) -> bool,
    ) -> Result<(), StoreError> {
        if positions.is_empty() {
            return Ok(());
        }
        let data = self
            .data
            .lock()
            .map_err(|_| StoreError::Invalid("memory store poisoned".into()))?;
        let range = data
            .messages
            .range((session, positions.start)..(session, positions.end));
        let mut rows: Box<dyn Iterator<Item = (&(SessionId, u64), &MessageRecord)>> =
            match direction {
                Direction::Forward => Box::new(range),
                Direction::Backward => Box::new(range.rev()),
            };
        for (_, m) in &mut rows {
            if !visit(m.clone()) {
                break;
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".into()
    }

    /// Unless a test slowed it down: then it goes through the writer's thread like a disk.
    fn commits_at_once(&self) -> bool {
        self.commit_delay.is_zero()
    }
}
