//! Loading the `Snapshot`: one read transaction, one query per table, each row checked as it is
//! read, live sessions only.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, Row, Transaction};

use super::columns::{id, int, opt_id, parse_role, parsed, text, time_at};
use super::schema::{sql_error, ACTIVE_SESSION_KEY};
use crate::core::persist::{MessageRecord, OpenTurn, SessionRecord, Snapshot, StoredStatus};
use crate::protocol::ids::{MessageId, SessionId, TurnId};
use crate::protocol::methods::SendResult;
use crate::store::StoreError;

/// Reads everything in one transaction; see [`crate::store::Store::load`].
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
    let index: HashMap<SessionId, usize> = sessions
        .iter()
        .enumerate()
        .map(|(i, (s, _))| (s.id, i))
        .collect();
    load_messages(&tx, path, &index, &mut sessions)?;
    let active = load_active(&tx, path)?;
    let mut open_turns = load_open_turns(&tx, path)?;
    let request_keys = load_request_keys(&tx, path, request_key_capacity)?;
    tx.finish()
        .map_err(|e| sql_error(path, "finishing the load", e))?;

    for (_, messages) in &mut sessions {
        // Already in order when SQLite walks the (session_id, position) index; cheap if so.
        messages.sort_by_key(|m| m.position);
    }
    sessions.sort_by_key(|(s, _)| s.id);
    open_turns.sort_by_key(|t| t.id);
    Ok(Snapshot {
        sessions,
        active_session: active.filter(|id| index.contains_key(id)),
        open_turns,
        request_keys,
    })
}

fn load_sessions(
    tx: &Transaction<'_>,
    path: &Path,
) -> Result<Vec<(SessionRecord, Vec<MessageRecord>)>, StoreError> {
    let err = |e| sql_error(path, "loading sessions", e);
    let mut st = tx
        .prepare_cached(
            "SELECT id, title, created_at, updated_at FROM sessions WHERE deleted_at IS NULL",
        )
        .map_err(err)?;
    let mut rows = st.query([]).map_err(err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        let session = SessionRecord {
            id: id(row, 0, "sessions.id", SessionId::parse)?,
            title: text(row, 1, "sessions.title")?.to_owned(),
            created_at: time_at(row, 2, "sessions.created_at")?,
            updated_at: time_at(row, 3, "sessions.updated_at")?,
        };
        out.push((session, Vec::new()));
    }
    Ok(out)
}

/// All messages of live sessions in one query, each pushed to its session's list.
fn load_messages(
    tx: &Transaction<'_>,
    path: &Path,
    index: &HashMap<SessionId, usize>,
    sessions: &mut [(SessionRecord, Vec<MessageRecord>)],
) -> Result<(), StoreError> {
    let err = |e| sql_error(path, "loading messages", e);
    let mut st = tx
        .prepare_cached(
            "SELECT m.id, m.session_id, m.position, m.turn_id, m.role, m.content, m.created_at,
                    m.status, m.tool
             FROM sessions s JOIN messages m ON m.session_id = s.id
             WHERE s.deleted_at IS NULL",
        )
        .map_err(err)?;
    let mut rows = st.query([]).map_err(err)?;
    while let Some(row) = rows.next().map_err(err)? {
        let message = message_row(row)?;
        // The join matched the session's id text, so it parsed to a loaded session's id unless
        // the two spell the same UUID differently.
        let slot = index.get(&message.session_id).copied();
        let Some((_, messages)) = slot.and_then(|i| sessions.get_mut(i)) else {
            return Err(StoreError::Invalid(format!(
                "messages.session_id of message {} is spelled differently from its session's id",
                message.id
            )));
        };
        messages.push(message);
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
            "SELECT request_id, session_id, message_id, turn_id FROM request_keys
             ORDER BY created_at DESC, rowid DESC LIMIT ?1",
        )
        .map_err(err)?;
    let mut rows = st.query([limit]).map_err(err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        let result = SendResult {
            ok: true,
            session_id: id(row, 1, "request_keys.session_id", SessionId::parse)?,
            message_id: id(row, 2, "request_keys.message_id", MessageId::parse)?,
            turn_id: id(row, 3, "request_keys.turn_id", TurnId::parse)?,
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
            match store.load(10) {
                Err(StoreError::Invalid(what)) => assert!(what.contains(want), "{sql}: {what}"),
                other => panic!("{sql}: expected Invalid, got {other:?}"),
            }
        }
    }
}
