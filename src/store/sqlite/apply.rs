//! Writing a batch: one `BEGIN IMMEDIATE` transaction per commit, each `Change` mapped onto its
//! rows, and the request keys counted and pruned as they are added.

use std::path::Path;

use rusqlite::{params, Connection, Transaction, TransactionBehavior};

use super::columns::{nanos, role_str, to_i64, total_i64};
use super::schema::{sql_error, ACTIVE_SESSION_KEY};
use crate::core::persist::{Change, TurnStatus};
use crate::store::StoreError;

/// Applies `changes` as one `BEGIN IMMEDIATE` transaction. `key_count` is the store's count of
/// request keys (`None`: not known), kept up to date on success and forgotten on a failed commit;
/// keys are pruned to `key_limit` once they exceed it by a hundredth.
pub(super) fn commit(
    conn: &mut Connection,
    path: &Path,
    changes: &[Change],
    key_count: &mut Option<u64>,
    key_limit: u64,
) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let err = |context| move |e| sql_error(path, context, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err("starting a commit"))?;
    // Foreign keys are checked when the batch commits, not per statement: a batch is valid
    // if its end state is, whatever order the core listed its changes in.
    tx.pragma_update(None, "defer_foreign_keys", "ON")
        .map_err(err("starting a commit"))?;
    let mut keys_added = 0;
    for change in changes {
        keys_added += apply(&tx, change, path)?;
    }
    let mut new_count = *key_count;
    if keys_added > 0 {
        let count = match new_count {
            Some(n) => n + keys_added,
            None => count_request_keys(&tx).map_err(err("counting request keys"))?,
        };
        new_count = Some(if count > key_limit + key_limit / 100 {
            prune_request_keys(&tx, key_limit).map_err(err("pruning request keys"))?;
            key_limit
        } else {
            count
        });
    }
    match tx.commit() {
        Ok(()) => {
            *key_count = new_count;
            Ok(())
        }
        Err(e) => {
            *key_count = None;
            Err(err("committing")(e))
        }
    }
}

/// Applies one change; returns how many request keys it added (0 or 1).
fn apply(tx: &Transaction<'_>, change: &Change, path: &Path) -> Result<u64, StoreError> {
    let err = |context| move |e| sql_error(path, context, e);
    match change {
        Change::SessionUpsert(s) => {
            tx.prepare_cached(
                "INSERT INTO sessions (id, title, created_at, updated_at, model, system_prompt,
                     usage_input_tokens, usage_output_tokens, usage_cached_input_tokens,
                     usage_reasoning_tokens, usage_turns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT(id) DO UPDATE SET title = excluded.title,
                     created_at = excluded.created_at, updated_at = excluded.updated_at,
                     model = excluded.model, system_prompt = excluded.system_prompt,
                     usage_input_tokens = excluded.usage_input_tokens,
                     usage_output_tokens = excluded.usage_output_tokens,
                     usage_cached_input_tokens = excluded.usage_cached_input_tokens,
                     usage_reasoning_tokens = excluded.usage_reasoning_tokens,
                     usage_turns = excluded.usage_turns",
            )
            .and_then(|mut st| {
                st.execute(params![
                    s.id.to_string(),
                    s.title,
                    nanos(s.created_at),
                    nanos(s.updated_at),
                    s.model,
                    s.system_prompt,
                    total_i64(s.usage.input_tokens),
                    total_i64(s.usage.output_tokens),
                    total_i64(s.usage.cached_input_tokens),
                    total_i64(s.usage.reasoning_tokens),
                    total_i64(s.usage.turns),
                ])
            })
            .map_err(err("saving a session"))?;
        }
        Change::HitlUpsert(r) => {
            let json = serde_json::to_string(r)
                .map_err(|e| StoreError::Invalid(format!("request {}: {e}", r.id)))?;
            tx.prepare_cached(
                "INSERT INTO hitl_requests
                     (id, session_id, turn_id, status, request, created_at, resolved_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(id) DO UPDATE SET status = excluded.status,
                     request = excluded.request, resolved_at = excluded.resolved_at",
            )
            .and_then(|mut st| {
                st.execute(params![
                    r.id.to_string(),
                    r.session_id.to_string(),
                    r.turn_id.to_string(),
                    r.status.as_str(),
                    json,
                    nanos(r.created_at),
                    r.resolved_at.map(nanos),
                ])
            })
            .map_err(err("saving a human-in-the-loop request"))?;
        }
        Change::GrantAdd {
            session_id,
            tool_name,
            granted_at,
        } => {
            tx.prepare_cached(
                "INSERT INTO grants (session_id, tool_name, granted_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(session_id, tool_name) DO NOTHING",
            )
            .and_then(|mut st| {
                st.execute(params![
                    session_id.to_string(),
                    tool_name,
                    nanos(*granted_at)
                ])
            })
            .map_err(err("saving a grant"))?;
        }
        Change::SessionDelete { id, deleted_at } => {
            tx.prepare_cached(
                "UPDATE sessions SET deleted_at = coalesce(deleted_at, ?2) WHERE id = ?1",
            )
            .and_then(|mut st| st.execute(params![id.to_string(), nanos(*deleted_at)]))
            .map_err(err("deleting a session"))?;
        }
        Change::ActiveSession(Some(id)) => {
            tx.prepare_cached(
                "INSERT INTO state (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut st| st.execute(params![ACTIVE_SESSION_KEY, id.to_string()]))
            .map_err(err("saving the active session"))?;
        }
        Change::ActiveSession(None) => {
            tx.prepare_cached("DELETE FROM state WHERE key = ?1")
                .and_then(|mut st| st.execute([ACTIVE_SESSION_KEY]))
                .map_err(err("clearing the active session"))?;
        }
        Change::MessageUpsert(m) => {
            let position = to_i64(m.position, "message position")?;
            let tool = match &m.tool {
                Some(t) => Some(serde_json::to_string(t).map_err(|e| {
                    StoreError::Invalid(format!("tool call of message {}: {e}", m.id))
                })?),
                None => None,
            };
            let author = match &m.author {
                Some(a) => Some(serde_json::to_string(a).map_err(|e| {
                    StoreError::Invalid(format!("author of message {}: {e}", m.id))
                })?),
                None => None,
            };
            tx.prepare_cached(
                "INSERT INTO messages
                     (id, session_id, position, turn_id, role, content, created_at, status, tool,
                      author)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT(id) DO UPDATE SET session_id = excluded.session_id,
                     position = excluded.position, turn_id = excluded.turn_id,
                     role = excluded.role, content = excluded.content,
                     created_at = excluded.created_at, status = excluded.status,
                     tool = excluded.tool, author = excluded.author",
            )
            .and_then(|mut st| {
                st.execute(params![
                    m.id.to_string(),
                    m.session_id.to_string(),
                    position,
                    m.turn_id.map(|t| t.to_string()),
                    role_str(m.role),
                    m.content,
                    nanos(m.created_at),
                    m.status.as_str(),
                    tool,
                    author,
                ])
            })
            .map_err(err("saving a message"))?;
        }
        Change::TurnStart {
            id,
            session_id,
            started_at,
        } => {
            tx.prepare_cached(
                "INSERT INTO turns (id, session_id, status, started_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET session_id = excluded.session_id,
                     status = excluded.status, reason = NULL, error = NULL,
                     started_at = excluded.started_at, ended_at = NULL,
                     tokens_in = 0, tokens_out = 0",
            )
            .and_then(|mut st| {
                st.execute(params![
                    id.to_string(),
                    session_id.to_string(),
                    TurnStatus::Running.as_str(),
                    nanos(*started_at)
                ])
            })
            .map_err(err("saving a turn start"))?;
        }
        Change::TurnEnd(end) => {
            let tokens_in = to_i64(end.tokens_in, "turn tokens_in")?;
            let tokens_out = to_i64(end.tokens_out, "turn tokens_out")?;
            tx.prepare_cached(
                "UPDATE turns SET status = ?2, reason = ?3, error = ?4, ended_at = ?5,
                     tokens_in = ?6, tokens_out = ?7
                 WHERE id = ?1",
            )
            .and_then(|mut st| {
                st.execute(params![
                    end.id.to_string(),
                    end.status.as_str(),
                    end.reason,
                    end.error,
                    nanos(end.ended_at),
                    tokens_in,
                    tokens_out
                ])
            })
            .map_err(err("saving a turn end"))?;
        }
        Change::ToolCallStart {
            turn_id,
            call_id,
            tool_name,
            params,
            started_at,
        } => {
            tx.prepare_cached(
                "INSERT INTO tool_calls (turn_id, call_id, tool_name, params, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(turn_id, call_id) DO UPDATE SET tool_name = excluded.tool_name,
                     params = excluded.params, started_at = excluded.started_at",
            )
            .and_then(|mut st| {
                st.execute(params![
                    turn_id.to_string(),
                    call_id.as_str(),
                    tool_name,
                    params,
                    nanos(*started_at)
                ])
            })
            .map_err(err("saving a tool call start"))?;
        }
        Change::ToolCallEnd {
            turn_id,
            call_id,
            is_error,
            result,
            ended_at,
        } => {
            tx.prepare_cached(
                "INSERT INTO tool_calls (turn_id, call_id, is_error, result, ended_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(turn_id, call_id) DO UPDATE SET is_error = excluded.is_error,
                     result = excluded.result, ended_at = excluded.ended_at",
            )
            .and_then(|mut st| {
                st.execute(params![
                    turn_id.to_string(),
                    call_id.as_str(),
                    is_error,
                    result,
                    nanos(*ended_at)
                ])
            })
            .map_err(err("saving a tool call end"))?;
        }
        Change::RequestKey {
            request_id,
            result,
            created_at,
        } => {
            // The first answer stands: a key is never rebound to another send.
            let queued_position = match result.position.filter(|_| result.queued) {
                Some(p) => Some(to_i64(p, "queued position")?),
                None => None,
            };
            let added = tx
                .prepare_cached(
                    "INSERT INTO request_keys
                         (request_id, session_id, message_id, turn_id, created_at,
                          queued_position)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(request_id) DO NOTHING",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        request_id,
                        result.session_id.to_string(),
                        result.message_id.to_string(),
                        result.turn_id.to_string(),
                        nanos(*created_at),
                        queued_position,
                    ])
                })
                .map_err(err("saving a request key"))?;
            return Ok(added as u64);
        }
        Change::QueuePush(q) => {
            let author = match &q.author {
                Some(a) => Some(serde_json::to_string(a).map_err(|e| {
                    StoreError::Invalid(format!("author of queued message {}: {e}", q.message_id))
                })?),
                None => None,
            };
            tx.prepare_cached(
                "INSERT INTO queued_messages
                     (message_id, session_id, turn_id, content, queued_at, author, model)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(message_id) DO NOTHING",
            )
            .and_then(|mut st| {
                st.execute(params![
                    q.message_id.to_string(),
                    q.session_id.to_string(),
                    q.turn_id.to_string(),
                    q.content,
                    nanos(q.queued_at),
                    author,
                    q.model,
                ])
            })
            .map_err(err("saving a queued message"))?;
        }
        Change::QueueRemove { message_id } => {
            tx.prepare_cached("DELETE FROM queued_messages WHERE message_id = ?1")
                .and_then(|mut st| st.execute([message_id.to_string()]))
                .map_err(err("removing a queued message"))?;
        }
    }
    Ok(0)
}

fn count_request_keys(tx: &Transaction<'_>) -> rusqlite::Result<u64> {
    let n: i64 = tx
        .prepare_cached("SELECT count(*) FROM request_keys")?
        .query_row([], |r| r.get(0))?;
    Ok(n.unsigned_abs())
}

/// Keeps the newest `keep` request keys: by `created_at`, then by insertion.
fn prune_request_keys(tx: &Transaction<'_>, keep: u64) -> rusqlite::Result<()> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    tx.prepare_cached(
        "DELETE FROM request_keys WHERE rowid IN (
             SELECT rowid FROM request_keys ORDER BY created_at DESC, rowid DESC
             LIMIT -1 OFFSET ?1)",
    )?
    .execute([keep])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::tests::{at, new_store, session, sid, tid};
    use crate::store::Store;

    #[test]
    fn turn_ends_and_tool_calls_keep_every_field() {
        let (_dir, mut store) = new_store();
        let start = |call: &str| Change::ToolCallStart {
            turn_id: tid(1),
            call_id: call.into(),
            tool_name: "clock".into(),
            params: "{}".into(),
            started_at: at(5),
        };
        let end = |call: &str| Change::ToolCallEnd {
            turn_id: tid(1),
            call_id: call.into(),
            is_error: true,
            result: "no clock".into(),
            ended_at: at(6),
        };
        store
            .commit(&[
                session(1),
                Change::TurnStart {
                    id: tid(1),
                    session_id: sid(1),
                    started_at: at(4),
                },
                start("a"),
                end("a"),
                end("orphan-end"),
                Change::TurnEnd(crate::core::persist::TurnEnd {
                    id: tid(1),
                    status: TurnStatus::Error,
                    reason: "error".into(),
                    error: Some("model exploded".into()),
                    ended_at: at(7),
                    tokens_in: 3,
                    tokens_out: 4,
                }),
            ])
            .expect("commit");
        let turn: (String, String, String, i64, i64, i64) = store
            .conn
            .query_row(
                "SELECT status, reason, error, ended_at, tokens_in, tokens_out FROM turns",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .expect("turn row");
        assert_eq!(
            turn,
            (
                "error".into(),
                "error".into(),
                "model exploded".into(),
                nanos(at(7)),
                3,
                4
            )
        );
        type CallRow = (
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<bool>,
        );
        let mut st = store
            .conn
            .prepare(
                "SELECT call_id, tool_name, params, result, is_error FROM tool_calls
                 ORDER BY call_id",
            )
            .expect("prepare");
        let calls: Vec<CallRow> = st
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        let full = Some("clock".to_string());
        assert_eq!(
            calls,
            vec![
                (
                    "a".into(),
                    full,
                    Some("{}".into()),
                    Some("no clock".into()),
                    Some(true)
                ),
                (
                    "orphan-end".into(),
                    None,
                    None,
                    Some("no clock".into()),
                    Some(true)
                ),
            ]
        );
    }
}
