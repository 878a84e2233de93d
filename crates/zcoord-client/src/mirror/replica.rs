//! The replica a secondary keeps of the primary: sessions, the active session, messages and the
//! requests waiting for a person, built
//! from a `state.sync` snapshot and advanced by events in `seq` order (the ZeroMQ guide's Clone
//! pattern). Pure: no sockets, so every rule is unit-tested.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use zcoord_protocol::events::{topic, MessageAppendPayload, ReceivedEnvelope, SessionListPayload};
use zcoord_protocol::hitl::HitlRequest;
use zcoord_protocol::ids::{HitlId, InstanceId, MessageId, SessionId};
use zcoord_protocol::methods::StateSyncResult;
use zcoord_protocol::types::{MessagePayload, SessionPayload};

/// One change to the replica, for whoever watches it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The replica was (re)built from a snapshot.
    Synced {
        instance_id: InstanceId,
        seq: u64,
    },
    SessionUpserted(SessionPayload),
    SessionRemoved(SessionId),
    ActiveChanged(Option<SessionId>),
    MessageAppended(MessagePayload),
    /// A request now waits for a person.
    HitlPending(HitlRequest),
    /// A request was resolved (answered, rejected, expired or cancelled).
    HitlResolved(HitlRequest),
    /// The primary synced from is gone (said once per primary; the mirror keeps waiting and
    /// resynchronises from whichever primary comes next, announcing it with `Synced`).
    PrimaryGone {
        instance_id: Option<InstanceId>,
        why: crate::liveness::Gone,
    },
    /// Any other event in order (tokens, tool events, heartbeats…), for live displays.
    Event {
        topic: String,
        payload: Value,
    },
}

/// Why the replica cannot go on from the events alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resync {
    /// An event was lost between `after` and `got`.
    Gap { after: u64, got: u64 },
    /// The primary restarted or a standby took over.
    NewInstance(InstanceId),
    /// An event did not decode.
    BadEvent(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replica {
    pub instance_id: Option<InstanceId>,
    /// The `seq` of the last event applied (or of the snapshot).
    pub seq: u64,
    pub sessions: BTreeMap<SessionId, SessionPayload>,
    pub active: Option<SessionId>,
    pub messages: HashMap<SessionId, Vec<MessagePayload>>,
    /// Messages whose `message.append` carried only the first part of their content (events
    /// are bounded in size): the mirror fetches them whole with `message.get`.
    pub incomplete: Vec<(SessionId, MessageId)>,
    /// Requests waiting for a person, oldest first.
    pub hitl: BTreeMap<HitlId, HitlRequest>,
}

impl Replica {
    /// A replica from a snapshot and each session's messages (fetched after the snapshot, so they
    /// may already hold messages whose events follow; those are de-duplicated by id).
    pub fn from_snapshot(
        sync: StateSyncResult,
        messages: HashMap<SessionId, Vec<MessagePayload>>,
    ) -> (Replica, Change) {
        let replica = Replica {
            instance_id: Some(sync.instance_id),
            seq: sync.seq,
            sessions: sync.sessions.into_iter().map(|s| (s.id, s)).collect(),
            active: sync.active_session_id,
            messages,
            incomplete: Vec::new(),
            hitl: sync.hitl.into_iter().map(|r| (r.id, r)).collect(),
        };
        let change = Change::Synced {
            instance_id: sync.instance_id,
            seq: sync.seq,
        };
        (replica, change)
    }

    /// Replaces a message held in part with the whole of it (from `message.get`).
    pub fn complete(&mut self, whole: MessagePayload) {
        if let Some(m) = self
            .messages
            .get_mut(&whole.session_id)
            .and_then(|list| list.iter_mut().find(|m| m.id == whole.id))
        {
            *m = whole;
        }
    }

    /// Applies one event. Events at or below the replica's `seq` are already reflected and
    /// ignored; the next one must be exactly `seq + 1` from the same instance.
    pub fn apply(&mut self, env: &ReceivedEnvelope) -> Result<Vec<Change>, Resync> {
        if Some(env.instance_id) != self.instance_id {
            return Err(Resync::NewInstance(env.instance_id));
        }
        if env.seq <= self.seq {
            return Ok(Vec::new());
        }
        if env.seq != self.seq + 1 {
            return Err(Resync::Gap {
                after: self.seq,
                got: env.seq,
            });
        }
        let changes = self.apply_payload(&env.topic, &env.payload)?;
        self.seq = env.seq;
        Ok(changes)
    }

    fn apply_payload(&mut self, topic_name: &str, payload: &Value) -> Result<Vec<Change>, Resync> {
        fn decode<T: serde::de::DeserializeOwned>(topic: &str, v: &Value) -> Result<T, Resync> {
            serde_json::from_value(v.clone()).map_err(|e| Resync::BadEvent(format!("{topic}: {e}")))
        }
        let mut out = Vec::new();
        match topic_name {
            topic::SESSION_UPDATE => {
                let s: SessionPayload = decode(topic_name, payload)?;
                self.sessions.insert(s.id, s.clone());
                out.push(Change::SessionUpserted(s));
            }
            topic::SESSION_LIST => {
                let list: SessionListPayload = decode(topic_name, payload)?;
                let listed: std::collections::HashSet<SessionId> =
                    list.sessions.iter().map(|s| s.id).collect();
                // A truncated list names only the newest sessions: the others are not gone
                // (deletions come as `session.deleted` anyway).
                let gone: Vec<SessionId> = self
                    .sessions
                    .keys()
                    .filter(|id| !list.truncated && !listed.contains(id))
                    .copied()
                    .collect();
                for id in gone {
                    self.sessions.remove(&id);
                    self.messages.remove(&id);
                    out.push(Change::SessionRemoved(id));
                }
                for s in list.sessions {
                    if self.sessions.get(&s.id) != Some(&s) {
                        self.sessions.insert(s.id, s.clone());
                        out.push(Change::SessionUpserted(s));
                    }
                }
            }
            topic::HITL_PENDING => {
                let r: HitlRequest = decode(topic_name, payload)?;
                self.hitl.insert(r.id, r.clone());
                out.push(Change::HitlPending(r));
            }
            topic::HITL_RESOLVED => {
                let r: HitlRequest = decode(topic_name, payload)?;
                self.hitl.remove(&r.id);
                out.push(Change::HitlResolved(r));
            }
            topic::SESSION_DELETED => {
                let s: SessionPayload = decode(topic_name, payload)?;
                self.sessions.remove(&s.id);
                self.messages.remove(&s.id);
                if self.active == Some(s.id) {
                    self.active = None;
                    out.push(Change::ActiveChanged(None));
                }
                out.push(Change::SessionRemoved(s.id));
            }
            topic::SESSION_ACTIVATED => {
                let s: SessionPayload = decode(topic_name, payload)?;
                if self.active != Some(s.id) {
                    self.active = Some(s.id);
                    out.push(Change::ActiveChanged(Some(s.id)));
                }
            }
            topic::MESSAGE_APPEND => {
                let m: MessageAppendPayload = decode(topic_name, payload)?;
                let list = self.messages.entry(m.session_id).or_default();
                if !list.iter().any(|x| x.id == m.message_id) {
                    if m.content_truncated {
                        self.incomplete.push((m.session_id, m.message_id));
                    }
                    let message = MessagePayload {
                        id: m.message_id,
                        session_id: m.session_id,
                        turn_id: m.turn_id,
                        role: m.role,
                        content: m.content,
                        created_at: m.created_at,
                        status: m.status,
                        tool: m.tool,
                        author: m.author,
                    };
                    list.push(message.clone());
                    out.push(Change::MessageAppended(message));
                }
            }
            topic::INSTANCE_HEARTBEAT => {
                let active = payload
                    .get("active_session_id")
                    .and_then(Value::as_str)
                    .and_then(SessionId::parse);
                if active != self.active {
                    self.active = active;
                    out.push(Change::ActiveChanged(active));
                }
                out.push(Change::Event {
                    topic: topic_name.to_owned(),
                    payload: payload.clone(),
                });
            }
            other => out.push(Change::Event {
                topic: other.to_owned(),
                payload: payload.clone(),
            }),
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    const I: &str = "00000000-0000-0000-0000-0000000000aa";
    const S1: &str = "00000000-0000-0000-0000-000000000001";
    const T: &str = "2026-01-01T00:00:00Z";

    fn session(id: &str, count: u64) -> Value {
        json!({"id": id, "title": "t", "created_at": T, "updated_at": T,
               "message_count": count, "status": "idle"})
    }

    fn env(seq: u64, topic: &str, payload: Value) -> ReceivedEnvelope {
        serde_json::from_value(json!({"seq": seq, "instance_id": I, "topic": topic,
                                      "timestamp": T, "payload": payload}))
        .unwrap()
    }

    fn replica(seq: u64) -> Replica {
        let sync: StateSyncResult = serde_json::from_value(json!({
            "sessions": [session(S1, 0)], "instance_id": I, "seq": seq}))
        .unwrap();
        Replica::from_snapshot(sync, HashMap::new()).0
    }

    #[test]
    fn events_at_or_below_the_snapshot_are_dropped_and_the_next_must_follow() {
        let mut r = replica(10);
        assert_eq!(
            r.apply(&env(9, "session.update", session(S1, 5))),
            Ok(vec![])
        );
        assert_eq!(
            r.apply(&env(10, "session.update", session(S1, 5))),
            Ok(vec![])
        );
        assert_eq!(r.sessions.values().next().unwrap().message_count, 0);
        assert_eq!(
            r.apply(&env(12, "session.update", session(S1, 5))),
            Err(Resync::Gap { after: 10, got: 12 })
        );
        let changes = r.apply(&env(11, "session.update", session(S1, 5))).unwrap();
        assert!(matches!(&changes[0], Change::SessionUpserted(s) if s.message_count == 5));
        assert_eq!(r.seq, 11);
    }

    #[test]
    fn pending_requests_come_with_the_snapshot_and_leave_when_resolved() {
        let request = |id: u128, status: &str| {
            json!({"id": Uuid::from_u128(id).to_string(), "session_id": S1,
                   "turn_id": Uuid::from_u128(9).to_string(), "type": "question",
                   "status": status, "payload": {"call_id": "c", "question": "q?"},
                   "created_at": T})
        };
        let sync: StateSyncResult = serde_json::from_value(json!({
            "sessions": [session(S1, 0)], "instance_id": I, "seq": 3,
            "hitl": [request(0x71, "pending")]}))
        .unwrap();
        let mut r = Replica::from_snapshot(sync, HashMap::new()).0;
        assert_eq!(r.hitl.len(), 1);
        let changes = r
            .apply(&env(4, "hitl.pending", request(0x72, "pending")))
            .unwrap();
        assert!(matches!(&changes[0], Change::HitlPending(_)));
        assert_eq!(r.hitl.len(), 2);
        r.apply(&env(5, "hitl.resolved", request(0x71, "cancelled")))
            .unwrap();
        let left: Vec<u128> = r.hitl.keys().map(|k| k.0.as_u128()).collect();
        assert_eq!(left, [0x72]);
    }

    #[test]
    fn another_instance_means_resync() {
        let mut r = replica(1);
        let mut e = env(2, "instance.heartbeat", json!({}));
        e.instance_id = InstanceId(Uuid::from_u128(7));
        assert_eq!(r.apply(&e), Err(Resync::NewInstance(e.instance_id)));
        assert_eq!(r.instance_id, InstanceId::parse(I));
    }

    #[test]
    fn messages_are_deduplicated_and_deletion_and_lists_remove() {
        let mut r = replica(0);
        let m = json!({"session_id": S1, "message_id": "00000000-0000-0000-0000-0000000000m1".replace('m', "0"),
                       "role": "user", "content": "hi", "status": "complete", "created_at": T});
        assert_eq!(
            r.apply(&env(1, "message.append", m.clone())).unwrap().len(),
            1
        );
        // The same message again (e.g. the list fetched after the snapshot had it): no change.
        r.seq = 1;
        assert!(r.apply(&env(2, "message.append", m)).unwrap().is_empty());
        assert_eq!(r.messages[&SessionId::parse(S1).unwrap()].len(), 1);
        r.apply(&env(3, "session.activated", session(S1, 1)))
            .unwrap();
        assert_eq!(r.active, SessionId::parse(S1));
        let changes = r.apply(&env(4, "session.deleted", session(S1, 1))).unwrap();
        assert_eq!(
            changes,
            [
                Change::ActiveChanged(None),
                Change::SessionRemoved(SessionId::parse(S1).unwrap())
            ]
        );
        assert!(r.sessions.is_empty() && r.messages.is_empty());
        let s2 = "00000000-0000-0000-0000-000000000002";
        r.apply(&env(
            5,
            "session.list",
            json!({"sessions": [session(s2, 0)]}),
        ))
        .unwrap();
        assert_eq!(r.sessions.len(), 1);
    }

    #[test]
    fn undecodable_events_ask_for_a_resync() {
        let mut r = replica(0);
        assert!(matches!(
            r.apply(&env(1, "session.update", json!({"nope": 1}))),
            Err(Resync::BadEvent(_))
        ));
        assert_eq!(r.seq, 0, "nothing applied");
    }
}
