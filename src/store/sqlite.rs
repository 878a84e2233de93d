//! The SQLite store: sessions, messages, turns, tool calls, the active session and `request_id`
//! keys in one WAL-mode database file, migrated forward on open.
//!
//! It owns the schema and how `Change`s map onto rows; it makes no decisions of the core's (what
//! a crashed turn becomes is the core's business) and loads exactly what [`super::memory`] loads
//! for the same changes. Opening refuses, before writing a byte, a file that is not a zcoord
//! database, is newer than this binary, or is locked by another process.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, Row, Transaction, TransactionBehavior};
use time::OffsetDateTime;

use super::{Store, StoreError};
use crate::core::persist::{
    Change, MessageRecord, OpenTurn, SessionRecord, Snapshot, StoredStatus, TurnStatus,
};
use crate::protocol::ids::{MessageId, SessionId, TurnId};
use crate::protocol::methods::SendResult;
use crate::protocol::types::Role;

/// Schema version 1: the schema before message status, turn errors, tool calls and request keys.
/// Frozen: `tests/fixtures/make_v1.py` holds the same text and a test compares them.
const V1: &str = "
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY NOT NULL,
    title      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE TABLE messages (
    id         TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    position   INTEGER NOT NULL,
    turn_id    TEXT,
    role       TEXT NOT NULL,
    content    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (session_id, position)
);
CREATE TABLE turns (
    id         TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    status     TEXT NOT NULL,
    reason     TEXT,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    tokens_in  INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE state (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT
);
";

/// Schema version 2. Tool calls and request keys carry no foreign keys on purpose: they are a
/// record, never loaded as structure, and a dangling one must not roll back a batch that also
/// holds a user's message.
const V2: &str = "
ALTER TABLE messages ADD COLUMN status TEXT NOT NULL DEFAULT 'complete';
ALTER TABLE turns ADD COLUMN error TEXT;
CREATE TABLE tool_calls (
    turn_id    TEXT NOT NULL,
    call_id    TEXT NOT NULL,
    tool_name  TEXT,
    params     TEXT,
    result     TEXT,
    is_error   INTEGER,
    started_at INTEGER,
    ended_at   INTEGER,
    PRIMARY KEY (turn_id, call_id)
);
CREATE TABLE request_keys (
    request_id TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    turn_id    TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX sessions_by_deleted_at ON sessions(deleted_at);
CREATE INDEX turns_running ON turns(session_id) WHERE status = 'running';
CREATE INDEX messages_by_turn ON messages(turn_id) WHERE turn_id IS NOT NULL;
CREATE INDEX request_keys_by_created_at ON request_keys(created_at);
";

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[V1, V2];

/// The schema version this binary writes; it refuses anything newer.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The tables each schema version must have: a database claiming a version without them belongs
/// to someone else.
const TABLES: &[&[&str]] = &[
    &["sessions", "messages", "turns", "state"],
    &["tool_calls", "request_keys"],
];

/// How long to wait on another connection's lock before calling the database locked.
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// Request keys kept; older ones are pruned. Far more than a load asks for, so a client retrying
/// after a long reconnect is still answered from the store.
const MAX_REQUEST_KEYS: u64 = 100_000;

const ACTIVE_SESSION_KEY: &str = "active_session_id";

/// A [`Store`] in one SQLite file. Every commit is one `BEGIN IMMEDIATE` transaction, durable
/// (`synchronous=FULL`) when it returns.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// Rows in `request_keys`, counted on the first commit that adds a key and kept up to date
    /// after, so pruning costs nothing until it is due. `None`: not known.
    key_count: Option<u64>,
    /// Prune down to this many keys once the table holds a hundredth more.
    key_limit: u64,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database at `path`, creating it if there is no file, and migrates it to
    /// [`SCHEMA_VERSION`]. A file that is refused is left exactly as it was.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let created = create_if_missing(path)?;
        let result = Self::open_existing(path);
        if result.is_err() && created {
            // Ours, empty, and about to be useless: leave the directory as we found it.
            let _ = std::fs::remove_file(path);
        }
        result
    }

    fn open_existing(path: &Path) -> Result<SqliteStore, StoreError> {
        // Never CREATE here: a file that vanished since we looked is an error, not a new database.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let opening = |context| move |e| open_error(path, context, e);
        let mut conn =
            Connection::open_with_flags(path, flags).map_err(opening("opening the database"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(opening("setting the busy timeout"))?;

        // SQLite quietly opens a file it may not write read-only, and would fail only at the
        // first write. Asked before the first read, which in WAL mode creates -wal and -shm.
        let read_only = conn
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(opening("checking write access"))?;
        if read_only {
            return Err(StoreError::ReadOnly {
                path: path.to_path_buf(),
            });
        }
        // Everything up to here only read: a refused file is untouched.
        check_schema(&conn, path)?;

        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))
            .map_err(opening("switching to WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Io {
                context: "switching the database to WAL journal mode",
                path: path.to_path_buf(),
                source: io::Error::other(format!("journal mode stayed {mode:?}")),
            });
        }
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(opening("enabling foreign keys"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(opening("setting synchronous=FULL"))?;
        migrate(&mut conn, path)?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(SqliteStore {
            conn,
            path: path.to_path_buf(),
            key_count: None,
            key_limit: MAX_REQUEST_KEYS,
        })
    }
}

/// Creates an empty file at `path` if nothing is there (an empty file is a valid, empty SQLite
/// database). Returns whether it did. Creating it ourselves gives a permission problem its real
/// cause instead of SQLite's "unable to open database file".
fn create_if_missing(path: &Path) -> Result<bool, StoreError> {
    let io_error = |context, source| StoreError::Io {
        context,
        path: path.to_path_buf(),
        source,
    };
    let exists = path
        .try_exists()
        .map_err(|e| io_error("looking for the database file", e))?;
    if exists {
        if path.is_dir() {
            let e = io::Error::other("is a directory, not a database file");
            return Err(io_error("opening the database", e));
        }
        return Ok(false);
    }
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(_) => Ok(true),
        // Someone created it since we looked: open theirs like any existing file.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) if is_permission(&e) => Err(StoreError::ReadOnly {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(io_error("creating the database file", e)),
    }
}

fn is_permission(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    )
}

/// Checks, reading only, that the file is a zcoord database this binary can use: no version and
/// no tables (new), or a known version with its tables.
fn check_schema(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let context = "reading the schema version";
    let version = user_version(conn).map_err(|e| open_error(path, context, e))?;
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .map_err(|e| open_error(path, context, e))?;
    let tables = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| open_error(path, context, e))?;
    let not_ours = || StoreError::NotADatabase {
        path: path.to_path_buf(),
    };
    let version = u32::try_from(version).map_err(|_| not_ours())?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    let missing = TABLES
        .iter()
        .take(version as usize)
        .flat_map(|t| t.iter())
        .any(|t| !tables.iter().any(|have| have == t));
    if missing || (version == 0 && !tables.is_empty()) {
        return Err(not_ours());
    }
    Ok(())
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Applies the missing migrations, each in its own `BEGIN IMMEDIATE` transaction that re-reads the
/// version (another process may have migrated meanwhile). With nothing to migrate it still takes
/// the write lock once, so a database another process is writing is refused now, not at the first
/// commit.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let err = |context| move |e| open_error(path, context, e);
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err("locking the database for writing"))?;
        let version = user_version(&tx).map_err(err("reading the schema version"))?;
        let version = u32::try_from(version).map_err(|_| StoreError::NotADatabase {
            path: path.to_path_buf(),
        })?;
        let Some(script) = MIGRATIONS.get(version as usize) else {
            if version > SCHEMA_VERSION {
                return Err(StoreError::TooNew {
                    path: path.to_path_buf(),
                    found: version,
                    supported: SCHEMA_VERSION,
                });
            }
            return tx.commit().map_err(err("locking the database for writing"));
        };
        tx.execute_batch(script)
            .map_err(err("migrating the schema"))?;
        tx.pragma_update(None, "user_version", version + 1)
            .map_err(err("migrating the schema"))?;
        tx.commit().map_err(err("migrating the schema"))?;
        tracing::info!(path = %path.display(), from = version, to = version + 1, "migrated database schema");
    }
}

/// Maps an error while opening: as [`sql_error`], plus the cases that only mean something there.
fn open_error(path: &Path, context: &'static str, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        // The file exists (we checked or made it): failing to open it or its -wal/-shm companions
        // is a permission problem.
        Some(ErrorCode::CannotOpen) => StoreError::ReadOnly {
            path: path.to_path_buf(),
        },
        Some(ErrorCode::DatabaseCorrupt) => StoreError::NotADatabase {
            path: path.to_path_buf(),
        },
        _ => sql_error(path, context, e),
    }
}

fn sql_error(path: &Path, context: &'static str, e: rusqlite::Error) -> StoreError {
    let path = path.to_path_buf();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::NotADatabase { path },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked { path },
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => StoreError::ReadOnly { path },
        _ => StoreError::Sqlite { context, source: e },
    }
}

impl Store for SqliteStore {
    fn load(&mut self, request_key_capacity: usize) -> Result<Snapshot, StoreError> {
        let path = &self.path;
        // One read transaction: every query sees the same state.
        let tx = self
            .conn
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

    fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        let err = |context| move |e| sql_error(path, context, e);
        let tx = self
            .conn
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
        let mut key_count = self.key_count;
        if keys_added > 0 {
            let count = match key_count {
                Some(n) => n + keys_added,
                None => count_request_keys(&tx).map_err(err("counting request keys"))?,
            };
            key_count = Some(if count > self.key_limit + self.key_limit / 100 {
                prune_request_keys(&tx, self.key_limit).map_err(err("pruning request keys"))?;
                self.key_limit
            } else {
                count
            });
        }
        match tx.commit() {
            Ok(()) => {
                self.key_count = key_count;
                Ok(())
            }
            Err(e) => {
                self.key_count = None;
                Err(err("committing")(e))
            }
        }
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}

/// Applies one change; returns how many request keys it added (0 or 1).
fn apply(tx: &Transaction<'_>, change: &Change, path: &Path) -> Result<u64, StoreError> {
    let err = |context| move |e| sql_error(path, context, e);
    match change {
        Change::SessionUpsert(s) => {
            tx.prepare_cached(
                "INSERT INTO sessions (id, title, created_at, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET title = excluded.title,
                     created_at = excluded.created_at, updated_at = excluded.updated_at",
            )
            .and_then(|mut st| {
                st.execute(params![
                    s.id.to_string(),
                    s.title,
                    nanos(s.created_at),
                    nanos(s.updated_at)
                ])
            })
            .map_err(err("saving a session"))?;
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
            tx.prepare_cached(
                "INSERT INTO messages
                     (id, session_id, position, turn_id, role, content, created_at, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(id) DO UPDATE SET session_id = excluded.session_id,
                     position = excluded.position, turn_id = excluded.turn_id,
                     role = excluded.role, content = excluded.content,
                     created_at = excluded.created_at, status = excluded.status",
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
                    call_id,
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
                    call_id,
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
            let added = tx
                .prepare_cached(
                    "INSERT INTO request_keys
                         (request_id, session_id, message_id, turn_id, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(request_id) DO NOTHING",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        request_id,
                        result.session_id.to_string(),
                        result.message_id.to_string(),
                        result.turn_id.to_string(),
                        nanos(*created_at)
                    ])
                })
                .map_err(err("saving a request key"))?;
            return Ok(added as u64);
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

// Loading: one query per table, each row checked as it is read.

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
                    m.status
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
        role: parsed(row, 4, "messages.role", "user or assistant", parse_role)?,
        content: text(row, 5, "messages.content")?.to_owned(),
        created_at: time_at(row, 6, "messages.created_at")?,
        status: parsed(
            row,
            7,
            "messages.status",
            "complete, interrupted or streaming",
            StoredStatus::parse,
        )?,
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

// Column readers: anything read from the file is checked, and a bad value is named.

fn value<'r>(row: &'r Row<'_>, i: usize, what: &str) -> Result<ValueRef<'r>, StoreError> {
    row.get_ref(i)
        .map_err(|e| StoreError::Invalid(format!("{what}: {e}")))
}

fn wrong_type(what: &str, v: ValueRef<'_>, wanted: &str) -> StoreError {
    let found = match v {
        ValueRef::Null => "null",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real number",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    };
    StoreError::Invalid(format!("{what} is {found}, not {wanted}"))
}

fn text<'r>(row: &'r Row<'_>, i: usize, what: &str) -> Result<&'r str, StoreError> {
    let v = value(row, i, what)?;
    v.as_str().map_err(|_| wrong_type(what, v, "text"))
}

fn opt_text<'r>(row: &'r Row<'_>, i: usize, what: &str) -> Result<Option<&'r str>, StoreError> {
    let v = value(row, i, what)?;
    v.as_str_or_null().map_err(|_| wrong_type(what, v, "text"))
}

fn int(row: &Row<'_>, i: usize, what: &str) -> Result<i64, StoreError> {
    let v = value(row, i, what)?;
    v.as_i64().map_err(|_| wrong_type(what, v, "an integer"))
}

fn invalid_value(what: &str, found: &str, expected: &str) -> StoreError {
    StoreError::Invalid(format!("{what} {found:?} is not {expected}"))
}

fn parsed<T>(
    row: &Row<'_>,
    i: usize,
    what: &str,
    expected: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let s = text(row, i, what)?;
    parse(s).ok_or_else(|| invalid_value(what, s, expected))
}

fn id<T>(
    row: &Row<'_>,
    i: usize,
    what: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    parsed(row, i, what, "a UUID", parse)
}

fn opt_id<T>(
    row: &Row<'_>,
    i: usize,
    what: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, StoreError> {
    opt_text(row, i, what)?
        .map(|s| parse(s).ok_or_else(|| invalid_value(what, s, "a UUID")))
        .transpose()
}

fn time_at(row: &Row<'_>, i: usize, what: &str) -> Result<OffsetDateTime, StoreError> {
    let n = int(row, i, what)?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(n))
        .map_err(|_| StoreError::Invalid(format!("{what} {n} is not a time")))
}

/// Unix nanoseconds, as stored. i64 holds 1677..2262; a time outside that is clamped rather than
/// failing a commit that also carries a user's message.
fn nanos(t: OffsetDateTime) -> i64 {
    let n = t.unix_timestamp_nanos();
    i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
}

fn to_i64(n: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Invalid(format!("{what} {n} is too large to store")))
}

fn role_str(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

fn parse_role(s: &str) -> Option<Role> {
    match s {
        "user" => Some(Role::User),
        "assistant" => Some(Role::Assistant),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_000_000_000 + i128::from(secs))
            .expect("test time")
    }

    fn sid(n: u128) -> SessionId {
        SessionId(Uuid::from_u128(n))
    }

    fn tid(n: u128) -> TurnId {
        TurnId(Uuid::from_u128(0xd0 + n))
    }

    fn new_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("zcoord.db")).expect("open");
        (dir, store)
    }

    fn session(n: u128) -> Change {
        Change::SessionUpsert(SessionRecord {
            id: sid(n),
            title: format!("s{n}"),
            created_at: at(0),
            updated_at: at(1),
        })
    }

    fn key(n: u64, session: u128) -> Change {
        Change::RequestKey {
            request_id: format!("k{n}"),
            result: SendResult {
                ok: true,
                session_id: sid(session),
                message_id: MessageId(Uuid::from_u128(0x100)),
                turn_id: tid(1),
            },
            created_at: at(n as i64),
        }
    }

    /// Type, name and SQL of everything in the schema, in a stable order.
    fn schema(conn: &Connection) -> Vec<(String, String, Option<String>)> {
        let mut st = conn
            .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
            .expect("prepare");
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    }

    fn pragma<T: rusqlite::types::FromSql>(conn: &Connection, name: &str) -> T {
        conn.pragma_query_value(None, name, |r| r.get(0))
            .expect("pragma")
    }

    #[test]
    fn the_fixture_has_exactly_the_version_1_schema() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1.db");
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let fixture = Connection::open_with_flags(fixture, flags).expect("open fixture");
        let fresh = Connection::open_in_memory().expect("memory db");
        fresh.execute_batch(V1).expect("v1");
        assert_eq!(schema(&fixture), schema(&fresh));
        assert_eq!(pragma::<i64>(&fixture, "user_version"), 1);
    }

    #[test]
    fn a_new_database_is_current_in_wal_mode_with_foreign_keys() {
        let (_dir, store) = new_store();
        assert_eq!(pragma::<i64>(&store.conn, "user_version"), 2);
        assert_eq!(pragma::<String>(&store.conn, "journal_mode"), "wal");
        assert_eq!(pragma::<i64>(&store.conn, "foreign_keys"), 1);
        assert_eq!(pragma::<i64>(&store.conn, "synchronous"), 2, "FULL");
        let names: Vec<String> = schema(&store.conn).into_iter().map(|(_, n, _)| n).collect();
        for want in [
            "request_keys",
            "tool_calls",
            "sessions_by_deleted_at",
            "turns_running",
            "request_keys_by_created_at",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
    }

    #[test]
    fn reopening_a_current_database_changes_nothing() {
        let (dir, store) = new_store();
        let before = schema(&store.conn);
        drop(store);
        let store = SqliteStore::open(&dir.path().join("zcoord.db")).expect("reopen");
        assert_eq!(schema(&store.conn), before);
        assert_eq!(pragma::<i64>(&store.conn, "user_version"), 2);
    }

    #[test]
    fn the_hot_queries_use_their_indexes() {
        let (_dir, store) = new_store();
        let plan = |sql: &str| -> String {
            let mut st = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("explain");
            let rows = st.query_map([], |r| r.get::<_, String>(3)).expect("plan");
            rows.collect::<Result<Vec<_>, _>>()
                .expect("rows")
                .join("; ")
        };
        let turns = plan(
            "SELECT t.id FROM turns t JOIN sessions s ON s.id = t.session_id
             WHERE t.status = 'running' AND s.deleted_at IS NULL",
        );
        assert!(turns.contains("turns_running"), "{turns}");
        let keys = plan("SELECT request_id FROM request_keys ORDER BY created_at DESC LIMIT 5");
        assert!(keys.contains("request_keys_by_created_at"), "{keys}");
        let messages = plan("SELECT id FROM messages WHERE session_id = 'x' ORDER BY position");
        assert!(messages.contains("USING INDEX"), "{messages}");
    }

    #[test]
    fn request_keys_are_pruned_to_the_newest() {
        let (_dir, mut store) = new_store();
        store.key_limit = 10;
        store.commit(&[session(1)]).expect("session");
        for n in 0..25 {
            store.commit(&[key(n, 1)]).expect("key");
        }
        let rows: i64 = store
            .conn
            .query_row("SELECT count(*) FROM request_keys", [], |r| r.get(0))
            .expect("count");
        assert!(rows <= 10, "{rows} rows kept");
        let snap = store.load(100).expect("load");
        let ids: Vec<&str> = snap.request_keys.iter().map(|(k, _)| k.as_str()).collect();
        let newest: Vec<String> = (25 - ids.len()..25).map(|n| format!("k{n}")).collect();
        assert_eq!(ids, newest);
        assert_eq!(store.key_count, Some(rows as u64));
    }

    #[test]
    fn a_repeated_request_key_keeps_its_first_answer() {
        let (_dir, mut store) = new_store();
        store
            .commit(&[session(1), session(2), key(1, 1), key(1, 2)])
            .expect("commit");
        let snap = store.load(10).expect("load");
        assert_eq!(snap.request_keys.len(), 1);
        assert_eq!(snap.request_keys[0].1.session_id, sid(1));
        assert_eq!(store.key_count, Some(1));
    }

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

    #[test]
    fn a_failed_commit_leaves_nothing_behind() {
        let (_dir, mut store) = new_store();
        let orphan = Change::MessageUpsert(MessageRecord {
            id: MessageId(Uuid::from_u128(0x100)),
            session_id: sid(9),
            position: 0,
            turn_id: None,
            role: Role::User,
            content: "no such session".into(),
            created_at: at(0),
            status: StoredStatus::Complete,
        });
        let err = store
            .commit(&[session(1), key(1, 1), orphan])
            .expect_err("foreign key");
        assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
        assert_eq!(store.load(10).expect("load"), Snapshot::default());
        assert_eq!(store.key_count, None, "a rolled-back key is not counted");
        store.commit(&[session(1)]).expect("the next commit works");
    }

    #[test]
    fn order_within_a_batch_does_not_matter_to_foreign_keys() {
        let (_dir, mut store) = new_store();
        let message = Change::MessageUpsert(MessageRecord {
            id: MessageId(Uuid::from_u128(0x100)),
            session_id: sid(1),
            position: 0,
            turn_id: None,
            role: Role::User,
            content: "before its session".into(),
            created_at: at(0),
            status: StoredStatus::Complete,
        });
        store.commit(&[message, session(1)]).expect("commit");
        assert_eq!(store.load(10).expect("load").sessions[0].1.len(), 1);
    }

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
