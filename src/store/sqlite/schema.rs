//! The file's schema and how it is opened: the DDL of each version and the migrations between
//! them, the read-only checks that refuse a file before a byte is written, the pragmas (WAL,
//! foreign keys, `synchronous=FULL`), and how SQLite's errors map onto [`StoreError`].

use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use super::SCHEMA_VERSION;
use crate::store::StoreError;

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
-- On `tool` messages: {call_id, tool_name, params, is_error} as JSON.
ALTER TABLE messages ADD COLUMN tool TEXT;
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
-- Foreign-key checks on sessions look turns up by session; without this they scan the table.
CREATE INDEX turns_by_session ON turns(session_id);
CREATE INDEX messages_by_turn ON messages(turn_id) WHERE turn_id IS NOT NULL;
CREATE INDEX request_keys_by_created_at ON request_keys(created_at);
";

/// Schema version 3: human-in-the-loop requests (each kept whole as JSON, with the columns a
/// query needs beside it) and session grants. No foreign keys, like tool calls: a record.
const V3: &str = "
CREATE TABLE hitl_requests (
    id          TEXT PRIMARY KEY NOT NULL,
    session_id  TEXT NOT NULL,
    turn_id     TEXT NOT NULL,
    status      TEXT NOT NULL,
    request     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    resolved_at INTEGER
);
CREATE INDEX hitl_pending ON hitl_requests(session_id) WHERE status = 'pending';
CREATE TABLE grants (
    session_id TEXT NOT NULL,
    tool_name  TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, tool_name)
);
";

/// Schema version 4 (issue 14: clients as peers). Each part of the issue adds its own lines.
const V4: &str = "
-- Clients as peers: on user messages, {client_id, name} of the client that sent it, as JSON.
ALTER TABLE messages ADD COLUMN author TEXT;
-- Per-session models and settings: `session.configure`; NULL is the server's default.
ALTER TABLE sessions ADD COLUMN model TEXT;
ALTER TABLE sessions ADD COLUMN system_prompt TEXT;
-- queued messages: messages waiting behind a running turn, in rowid order (the order queued).
-- No foreign keys, like tool calls: a session's deletion discards its queue row by row.
CREATE TABLE queued_messages (
    message_id TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL,
    turn_id    TEXT NOT NULL,
    content    TEXT NOT NULL,
    queued_at  INTEGER NOT NULL,
    -- Who sent it (JSON {client_id, name}) and the model it asked for, for when it starts.
    author     TEXT,
    model      TEXT
);
-- queued messages: a queued send's answer repeats its place (NULL: it started a turn at once).
ALTER TABLE request_keys ADD COLUMN queued_position INTEGER;
-- Richer streams: a session's running token totals (SessionPayload.usage).
ALTER TABLE sessions ADD COLUMN usage_input_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN usage_output_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN usage_cached_input_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN usage_reasoning_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN usage_turns INTEGER NOT NULL DEFAULT 0;
";

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

/// The tables each schema version must have: a database claiming a version without them belongs
/// to someone else.
const TABLES: &[&[&str]] = &[
    &["sessions", "messages", "turns", "state"],
    &["tool_calls", "request_keys"],
    &["hitl_requests", "grants"],
    // V4: authors, per-session models and settings add columns only.
    &[],
    &["queued_messages"],
];

/// How long to wait on another connection's lock before calling the database locked.
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// The `state` row holding the active session's id.
pub(super) const ACTIVE_SESSION_KEY: &str = "active_session_id";

/// Opens an existing file, refuses it (untouched) unless it is a zcoord database this binary can
/// use and can write, then sets the pragmas and migrates it.
pub(super) fn open_existing(path: &Path) -> Result<Connection, StoreError> {
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
    Ok(conn)
}

/// Creates an empty file at `path` if nothing is there (an empty file is a valid, empty SQLite
/// database). Returns whether it did. Creating it ourselves gives a permission problem its real
/// cause instead of SQLite's "unable to open database file".
pub(super) fn create_if_missing(path: &Path) -> Result<bool, StoreError> {
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

pub(super) fn sql_error(path: &Path, context: &'static str, e: rusqlite::Error) -> StoreError {
    let path = path.to_path_buf();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::NotADatabase { path },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked { path },
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => StoreError::ReadOnly { path },
        _ => StoreError::Sqlite { context, source: e },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{tests::new_store, SqliteStore};

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
        assert_eq!(pragma::<i64>(&store.conn, "user_version"), 4);
        assert_eq!(pragma::<String>(&store.conn, "journal_mode"), "wal");
        assert_eq!(pragma::<i64>(&store.conn, "foreign_keys"), 1);
        assert_eq!(pragma::<i64>(&store.conn, "synchronous"), 2, "FULL");
        let names: Vec<String> = schema(&store.conn).into_iter().map(|(_, n, _)| n).collect();
        for want in [
            "request_keys",
            "tool_calls",
            "sessions_by_deleted_at",
            "turns_running",
            "turns_by_session",
            "request_keys_by_created_at",
            "hitl_requests",
            "hitl_pending",
            "grants",
            "queued_messages",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
    }

    /// A version-3 file (every migration before V4, one session in it) migrates with zero
    /// usage totals, and the totals it then stores survive a reopen.
    #[test]
    fn a_version_3_database_migrates_with_zero_usage_totals() {
        use crate::core::persist::{Change, SessionRecord};
        use crate::protocol::usage::SessionUsage;
        use crate::store::Store;

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("v3.db");
        let old = Connection::open(&path).expect("create");
        for script in &MIGRATIONS[..3] {
            old.execute_batch(script).expect("v1..v3");
        }
        old.pragma_update(None, "user_version", 3).expect("version");
        old.execute(
            "INSERT INTO sessions (id, title, created_at, updated_at)
             VALUES ('00000000-0000-0000-0000-00000000000a', 'old', 0, 1)",
            [],
        )
        .expect("a session");
        drop(old);

        let mut store = SqliteStore::open(&path).expect("open and migrate");
        assert_eq!(pragma::<i64>(&store.conn, "user_version"), 4);
        let snap = store.load(10).expect("load");
        assert_eq!(snap.sessions.len(), 1);
        let mut record: SessionRecord = snap.sessions[0].record.clone();
        assert_eq!(record.usage, SessionUsage::default());

        record.usage = SessionUsage {
            input_tokens: 30,
            output_tokens: 9,
            cached_input_tokens: 6,
            reasoning_tokens: 2,
            turns: 2,
        };
        store
            .commit(&[Change::SessionUpsert(record.clone())])
            .expect("commit");
        drop(store);
        let mut store = SqliteStore::open(&path).expect("reopen");
        let snap = store.load(10).expect("load");
        assert_eq!(snap.sessions[0].record, record);
    }

    #[test]
    fn reopening_a_current_database_changes_nothing() {
        let (dir, store) = new_store();
        let before = schema(&store.conn);
        drop(store);
        let store = SqliteStore::open(&dir.path().join("zcoord.db")).expect("reopen");
        assert_eq!(schema(&store.conn), before);
        assert_eq!(pragma::<i64>(&store.conn, "user_version"), 4);
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
        // Start-up finds crashed turns' replies through the running turns, never by walking
        // every message (load.rs, `load_streaming`).
        let streaming = plan(
            "SELECT m.id FROM turns t CROSS JOIN messages m ON m.turn_id = t.id
             WHERE t.status = 'running' AND m.status = 'streaming'",
        );
        assert!(streaming.contains("turns_running"), "{streaming}");
        assert!(!streaming.contains("SCAN m"), "{streaming}");
        let pending = plan("SELECT request FROM hitl_requests WHERE status = 'pending'");
        assert!(pending.contains("hitl_pending"), "{pending}");
    }
}
