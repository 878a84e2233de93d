//! Loading the `Snapshot` (one read transaction, one query per table, each row checked as it is
//! read, live sessions only, no history but what crashed turns left streaming) and reading
//! messages a page at a time.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;

use rusqlite::{Connection, Row, Transaction};

use super::columns::{id, int, opt_id, parse_role, parsed, text, time_at, total};
use super::schema::{sql_error, ACTIVE_SESSION_KEY};
use crate::core::persist::{
    MessageRecord, OpenTurn, SessionRecord, Snapshot, StoredSession, StoredStatus,
};
use crate::core::queue::QueuedMessage;
use crate::core::read::Direction;
use crate::protocol::hitl::HitlRequest;
use crate::protocol::ids::{MessageId, SessionId, TurnId};
use crate::protocol::methods::SendResult;
use crate::protocol::usage::SessionUsage;
use crate::store::StoreError;

/// Reads everything but the history in one transaction; see [`crate::store::Store::load`].
pub(super) fn snapshot(
    conn: &mut Connection,
    path: &Path,
    request_key_capacity: usize,
) -> Result<Snapshot, StoreError> {
    // One read transaction: every query sees the same state.
    let tx = conn
        .transaction()
        .map_err(|e| sql_error(path, "starting to load", e))?;
    let mut sessions = load_sessions(&tx, path)?;
    let live: HashSet<SessionId> = sessions.iter().map(|s| s.record.id).collect();
    let active = load_active(&tx, path)?;
    let mut open_turns = load_open_turns(&tx, path)?;
    let streaming = load_streaming(&tx, path, &live)?;
    let request_keys = load_request_keys(&tx, path, request_key_capacity)?;
    load_grants(&tx, path, &mut sessions)?;
    let pending_hitl = load_pending_hitl(&tx, path, &live)?;
    let queued = load_queued(&tx, path, &live)?;
    tx.finish()
        .map_err(|e| sql_error(path, "finishing the load", e))?;

    sessions.sort_by_key(|s| s.record.id);
    open_turns.sort_by_key(|t| t.id);
    Ok(Snapshot {
        sessions,
        active_session: active.filter(|id| live.contains(id)),
        open_turns,
        streaming,
        request_keys,
        pending_hitl,
        queued,
    })
}

/// Messages queued in live sessions, in the order they were queued. A row whose message is
/// already in the history belongs to a turn that started just before a crash: not queued.
fn load_queued(
    tx: &Transaction<'_>,
    path: &Path,
    live: &HashSet<SessionId>,
) -> Result<Vec<QueuedMessage>, StoreError> {
    let err = |e| sql_error(path, "loading queued messages", e);
    let mut st = tx
        .prepare_cached(
            "SELECT q.message_id, q.session_id, q.turn_id, q.content, q.queued_at, q.author,
                    q.model
             FROM queued_messages q
             WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = q.message_id)
             ORDER BY q.rowid",
        )
        .map_err(err)?;
    let mut rows = st.query([]).map_err(err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        let q = QueuedMessage {
            message_id: id(row, 0, "queued_messages.message_id", MessageId::parse)?,
            session_id: id(row, 1, "queued_messages.session_id", SessionId::parse)?,
            turn_id: id(row, 2, "queued_messages.turn_id", TurnId::parse)?,
            content: text(row, 3, "queued_messages.content")?.to_owned(),
            queued_at: time_at(row, 4, "queued_messages.queued_at")?,
            author: match row
                .get_ref(5)
                .ok()
                .and_then(|v| v.as_str_or_null().ok())
                .flatten()
            {
                None => None,
                Some(json) => Some(serde_json::from_str(json).map_err(|e| {
                    StoreError::Invalid(format!(
                        "queued_messages.author {json:?} is not an author: {e}"
                    ))
                })?),
            },
            model: row
                .get_ref(6)
                .ok()
                .and_then(|v| v.as_str_or_null().ok())
                .flatten()
                .map(str::to_owned),
        };
        if live.contains(&q.session_id) {
            out.push(q);
        }
    }
    Ok(out)
}

/// Each live session's grants, in name order.
fn load_grants(
    tx: &Transaction<'_>,
    path: &Path,
    sessions: &mut [StoredSession],
) -> Result<(), StoreError> {
    let err = |e| sql_error(path, "loading grants", e);
    let index: std::collections::HashMap<SessionId, usize> = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| (s.record.id, i))
        .collect();
    let mut st = tx
        .prepare_cached("SELECT session_id, tool_name FROM grants ORDER BY tool_name")
        .map_err(err)?;
    let mut rows = st.query([]).map_err(err)?;
    while let Some(row) = rows.next().map_err(err)? {
        let session = id(row, 0, "grants.session_id", SessionId::parse)?;
        if let Some(&i) = index.get(&session) {
            sessions[i]
                .grants
                .push(text(row, 1, "grants.tool_name")?.to_owned());
        }
    }
    Ok(())
}

/// Requests still pending in live sessions, oldest first.
fn load_pending_hitl(
    tx: &Transaction<'_>,
    path: &Path,
    live: &HashSet<SessionId>,
) -> Result<Vec<HitlRequest>, StoreError> {
    let err = |e| sql_error(path, "loading pending requests", e);
    let mut st = tx
        .prepare_cached("SELECT request FROM hitl_requests WHERE status = 'pending' ORDER BY id")
        .map_err(err)?;
    let mut rows = st.query([]).map_err(err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        let json = text(row, 0, "hitl_requests.request")?;
        let r: HitlRequest = serde_json::from_str(json).map_err(|e| {
            StoreError::Invalid(format!("hitl_requests.request is not a request: {e}"))
        })?;
        if live.contains(&r.session_id) {
            out.push(r);
        }
    }
    Ok(out)
}

/// Live sessions with their message counts: one past the highest position, which the
/// `(session_id, position)` index answers without reading a message.
fn load_sessions(tx: &Transaction<'_>, path: &Path) -> Result<Vec<StoredSession>, StoreError> {
    let err = |e| sql_error(path, "loading sessions", e);
    let mut st = tx
        .prepare_cached(
            "SELECT s.id, s.title, s.created_at, s.updated_at,
                    (SELECT MAX(m.position) + 1 FROM messages m WHERE m.session_id = s.id),
                    (SELECT MIN(m.position) FROM messages m WHERE m.session_id = s.id),
                    s.model, s.system_prompt,
                    s.usage_input_tokens, s.usage_output_tokens, s.usage_cached_input_tokens,
                    s.usage_reasoning_tokens, s.usage_turns
             FROM sessions s WHERE s.deleted_at IS NULL",
        )
        .map_err(err)?;
    let mut rows = st.query([]).map_err(err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        let record = SessionRecord {
            id: id(row, 0, "sessions.id", SessionId::parse)?,
            title: text(row, 1, "sessions.title")?.to_owned(),
            created_at: time_at(row, 2, "sessions.created_at")?,
            updated_at: time_at(row, 3, "sessions.updated_at")?,
            model: row.get(6).map_err(err)?,
            system_prompt: row.get(7).map_err(err)?,
            usage: SessionUsage {
                input_tokens: total(row, 8, "sessions.usage_input_tokens")?,
                output_tokens: total(row, 9, "sessions.usage_output_tokens")?,
                cached_input_tokens: total(row, 10, "sessions.usage_cached_input_tokens")?,
                reasoning_tokens: total(row, 11, "sessions.usage_reasoning_tokens")?,
                turns: total(row, 12, "sessions.usage_turns")?,
            },
        };
        let count: Option<i64> = row.get(4).map_err(err)?;
        let lowest: Option<i64> = row.get(5).map_err(err)?;
        if let Some(p) = lowest.filter(|p| *p < 0) {
            return Err(StoreError::Invalid(format!(
                "messages.position {p} is negative (session {})",
                record.id
            )));
        }
        let message_count = count.and_then(|c| u64::try_from(c).ok()).unwrap_or(0);
        out.push(StoredSession {
            record,
            message_count,
            grants: Vec::new(),
        });
    }
    Ok(out)
}

/// Messages still streaming in turns still running: what a crash left of their replies. Found
/// through the turns (the `turns_running` and `messages_by_turn` indexes), not by reading every
/// message: `CROSS JOIN` keeps SQLite from walking all messages instead (1.4 s on a 3 GiB
/// database; with turns first, 0.06 ms).
fn load_streaming(
    tx: &Transaction<'_>,
    path: &Path,
    live: &HashSet<SessionId>,
) -> Result<Vec<MessageRecord>, StoreError> {
    let err = |e| sql_error(path, "loading replies left streaming", e);
    let mut st = tx
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM turns t CROSS JOIN messages m ON m.turn_id = t.id
             WHERE t.status = 'running' AND m.status = 'streaming'"
        ))
        .map_err(err)?;
    let mut rows = st.query([]).map_err(err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        let m = message_row(row)?;
        if live.contains(&m.session_id) {
            out.push(m);
        }
    }
    out.sort_by_key(|m| (m.session_id, m.position));
    Ok(out)
}

/// The columns [`message_row`] reads, in its order, from a table aliased `m`.
const MESSAGE_COLUMNS: &str = "m.id, m.session_id, m.position, m.turn_id, m.role, m.content, \
    m.created_at, m.status, m.tool, m.author";

/// The position of message `message` in `session`, if it is there.
pub(super) fn message_position(
    conn: &Connection,
    path: &Path,
    session: SessionId,
    message: MessageId,
) -> Result<Option<u64>, StoreError> {
    let err = |e| sql_error(path, "finding a message", e);
    let mut st = conn
        .prepare_cached("SELECT position FROM messages WHERE id = ?1 AND session_id = ?2")
        .map_err(err)?;
    let mut rows = st
        .query([message.to_string(), session.to_string()])
        .map_err(err)?;
    match rows.next().map_err(err)? {
        Some(row) => {
            let p = int(row, 0, "messages.position")?;
            Ok(Some(u64::try_from(p).map_err(|_| {
                StoreError::Invalid(format!("messages.position {p} is negative"))
            })?))
        }
        None => Ok(None),
    }
}

/// Visits the messages of `session` with positions in `positions`, in `direction`, until
/// `visit` says stop; SQLite walks the `(session_id, position)` index and reads no row past it.
pub(super) fn scan_messages(
    conn: &Connection,
    path: &Path,
    session: SessionId,
    positions: Range<u64>,
    direction: Direction,
    visit: &mut dyn FnMut(MessageRecord) -> bool,
) -> Result<(), StoreError> {
    if positions.is_empty() {
        return Ok(());
    }
    let err = |e| sql_error(path, "reading messages", e);
    let sql = match direction {
        Direction::Forward => {
            "SELECT {c} FROM messages m WHERE m.session_id = ?1 AND m.position >= ?2
             AND m.position < ?3 ORDER BY m.position ASC"
        }
        Direction::Backward => {
            "SELECT {c} FROM messages m WHERE m.session_id = ?1 AND m.position >= ?2
             AND m.position < ?3 ORDER BY m.position DESC"
        }
    }
    .replace("{c}", MESSAGE_COLUMNS);
    let mut st = conn.prepare_cached(&sql).map_err(err)?;
    let bound = |p: u64| i64::try_from(p).unwrap_or(i64::MAX);
    let mut rows = st
        .query(rusqlite::params![
            session.to_string(),
            bound(positions.start),
            bound(positions.end)
        ])
        .map_err(err)?;
    while let Some(row) = rows.next().map_err(err)? {
        if !visit(message_row(row)?) {
            break;
        }
    }
    Ok(())
}

fn message_row(row: &Row<'_>) -> Result<MessageRecord, StoreError> {
    let position = int(row, 2, "messages.position")?;
    Ok(MessageRecord {
        id: id(row, 0, "messages.id", MessageId::parse)?,
        session_id: id(row, 1, "messages.session_id", SessionId::parse)?,
        position: u64::try_from(position).map_err(|_| {
            StoreError::Invalid(format!("messages.position {position} is negative"))
        })?,
        turn_id: opt_id(row, 3, "messages.turn_id", TurnId::parse)?,
        role: parsed(
            row,
            4,
            "messages.role",
            "user, assistant or tool",
            parse_role,
        )?,
        content: text(row, 5, "messages.content")?.to_owned(),
        created_at: time_at(row, 6, "messages.created_at")?,
        status: parsed(
            row,
            7,
            "messages.status",
            "complete, interrupted or streaming",
            StoredStatus::parse,
        )?,
        tool: match row
            .get_ref(8)
            .ok()
            .and_then(|v| v.as_str_or_null().ok())
            .flatten()
        {
            None => None,
            Some(json) => Some(serde_json::from_str(json).map_err(|e| {
                StoreError::Invalid(format!("messages.tool {json:?} is not a tool call: {e}"))
            })?),
        },
        author: match row
            .get_ref(9)
            .ok()
            .and_then(|v| v.as_str_or_null().ok())
            .flatten()
        {
            None => None,
            Some(json) => Some(serde_json::from_str(json).map_err(|e| {
                StoreError::Invalid(format!("messages.author {json:?} is not an author: {e}"))
            })?),
        },
    })
}

fn load_active(tx: &Transaction<'_>, path: &Path) -> Result<Option<SessionId>, StoreError> {
    let err = |e| sql_error(path, "loading the active session", e);
    let mut st = tx
        .prepare_cached("SELECT value FROM state WHERE key = ?1")
        .map_err(err)?;
    let mut rows = st.query([ACTIVE_SESSION_KEY]).map_err(err)?;
    match rows.next().map_err(err)? {
        Some(row) => opt_id(row, 0, "state.active_session_id", SessionId::parse),
        None => Ok(None),
    }
}

fn load_open_turns(tx: &Transaction<'_>, path: &Path) -> Result<Vec<OpenTurn>, StoreError> {
    let err = |e| sql_error(path, "loading running turns", e);
    let mut st = tx
        .prepare_cached(
            "SELECT t.id, t.session_id, t.started_at
             FROM turns t JOIN sessions s ON s.id = t.session_id
             WHERE t.status = 'running' AND s.deleted_at IS NULL",
        )
        .map_err(err)?;
    let mut rows = st.query([]).map_err(err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        out.push(OpenTurn {
            id: id(row, 0, "turns.id", TurnId::parse)?,
            session_id: id(row, 1, "turns.session_id", SessionId::parse)?,
            started_at: time_at(row, 2, "turns.started_at")?,
        });
    }
    Ok(out)
}

/// The newest `capacity` keys, oldest first.
fn load_request_keys(
    tx: &Transaction<'_>,
    path: &Path,
    capacity: usize,
) -> Result<Vec<(String, SendResult)>, StoreError> {
    let err = |e| sql_error(path, "loading request keys", e);
    let limit = i64::try_from(capacity).unwrap_or(i64::MAX);
    let mut st = tx
        .prepare_cached(
            "SELECT request_id, session_id, message_id, turn_id, queued_position FROM request_keys
             ORDER BY created_at DESC, rowid DESC LIMIT ?1",
        )
        .map_err(err)?;
    let mut rows = st.query([limit]).map_err(err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        let position: Option<i64> = row.get(4).map_err(err)?;
        let position = match position {
            Some(p) => Some(u64::try_from(p).map_err(|_| {
                StoreError::Invalid(format!("request_keys.queued_position {p} is negative"))
            })?),
            None => None,
        };
        let result = SendResult {
            ok: true,
            session_id: id(row, 1, "request_keys.session_id", SessionId::parse)?,
            message_id: id(row, 2, "request_keys.message_id", MessageId::parse)?,
            turn_id: id(row, 3, "request_keys.turn_id", TurnId::parse)?,
            queued: position.is_some(),
            position,
        };
        out.push((text(row, 0, "request_keys.request_id")?.to_owned(), result));
    }
    out.reverse();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use crate::core::persist::{Change, MessageRecord, StoredStatus};
    use crate::core::read::Direction;
    use crate::protocol::ids::MessageId;
    use crate::protocol::types::Role;
    use crate::store::sqlite::tests::{at, key, new_store, session, sid, tid};
    use crate::store::{Store, StoreError};

    #[test]
    fn invalid_stored_data_is_named() {
        let cases = [
            (
                "UPDATE sessions SET id = 'nope'",
                "sessions.id \"nope\" is not a UUID",
            ),
            (
                "UPDATE sessions SET created_at = 'noon'",
                "sessions.created_at is text",
            ),
            (
                "UPDATE messages SET content = x'00ff'",
                "messages.content is a blob",
            ),
            ("UPDATE turns SET id = 42", "turns.id \"42\" is not a UUID"),
            (
                "UPDATE messages SET role = 'robot'",
                "messages.role \"robot\"",
            ),
            (
                "UPDATE messages SET status = 'odd'",
                "messages.status \"odd\"",
            ),
            (
                "UPDATE messages SET position = -1",
                "messages.position -1 is negative",
            ),
            (
                "UPDATE messages SET turn_id = 'x'",
                "messages.turn_id \"x\" is not a UUID",
            ),
            (
                "UPDATE state SET value = 'x'",
                "state.active_session_id \"x\" is not a UUID",
            ),
            (
                "UPDATE request_keys SET turn_id = 'x'",
                "request_keys.turn_id \"x\" is not a UUID",
            ),
            (
                "UPDATE turns SET started_at = 1.5",
                "turns.started_at is a real number",
            ),
        ];
        for (sql, want) in cases {
            let (_dir, mut store) = new_store();
            store
                .commit(&[
                    session(1),
                    Change::ActiveSession(Some(sid(1))),
                    Change::MessageUpsert(MessageRecord {
                        id: MessageId(Uuid::from_u128(0x100)),
                        session_id: sid(1),
                        position: 0,
                        turn_id: None,
                        role: Role::User,
                        content: "hi".into(),
                        created_at: at(0),
                        status: StoredStatus::Complete,
                        tool: None,
                        author: None,
                    }),
                    Change::TurnStart {
                        id: tid(1),
                        session_id: sid(1),
                        started_at: at(1),
                    },
                    key(1, 1),
                ])
                .expect("commit");
            store
                .conn
                .execute_batch(&format!(
                    "PRAGMA foreign_keys = OFF; PRAGMA ignore_check_constraints = ON; {sql};"
                ))
                .expect(sql);
            // Messages are checked when they are read, the rest when they are loaded.
            let read = store.load(10).and_then(|snap| {
                store.scan_messages(
                    sid(1),
                    0..snap.sessions[0].message_count,
                    Direction::Forward,
                    &mut |_| true,
                )
            });
            match read {
                Err(StoreError::Invalid(what)) => assert!(what.contains(want), "{sql}: {what}"),
                other => panic!("{sql}: expected Invalid, got {other:?}"),
            }
        }
    }
}
