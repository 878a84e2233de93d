//! The SQLite store through the library API: it loads what the memory store loads for the same
//! changes, before and after a reopen; it migrates the version-1 fixture; and it refuses, leaving
//! every byte as it was, a file that is not its own, is too new, is locked, or cannot be written.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use uuid::Uuid;

use zcoord::core::persist::{
    Change, MessageRecord, OpenTurn, SessionRecord, Snapshot, StoredSession, StoredStatus, TurnEnd,
    TurnStatus,
};
use zcoord::core::read::Direction;
use zcoord::protocol::hitl::{HitlPayload, HitlRequest, HitlStatus, HitlType};
use zcoord::protocol::ids::{HitlId, MessageId, SessionId, TurnId};
use zcoord::protocol::methods::SendResult;
use zcoord::protocol::types::Role;
use zcoord::store::memory::MemoryStore;
use zcoord::store::sqlite::{SqliteStore, SCHEMA_VERSION};
use zcoord::store::{Store, StoreError};

/// Request keys a load asks for in these tests; the scenario commits more.
const KEY_CAPACITY: usize = 10;

/// 2024-07-01T10:00:00Z plus `secs` seconds and a few nanoseconds, so lost precision shows.
fn at(secs: i64) -> OffsetDateTime {
    let nanos = 1_719_828_000_000_000_000 + i128::from(secs) * 1_000_000_000 + 7;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).expect("test time in range")
}

fn sid(n: u128) -> SessionId {
    SessionId(Uuid::from_u128(0x0190a000_0000_7000_8000_000000000000 + n))
}

fn mid(n: u128) -> MessageId {
    MessageId(Uuid::from_u128(0x0190a000_0000_7000_8000_000000000100 + n))
}

fn tid(n: u128) -> TurnId {
    TurnId(Uuid::from_u128(0x0190a000_0000_7000_8000_0000000000d0 + n))
}

fn session(n: u128, title: &str, updated: i64) -> Change {
    Change::SessionUpsert(SessionRecord {
        id: sid(n),
        title: title.into(),
        created_at: at(n as i64),
        updated_at: at(updated),
        model: None,
        system_prompt: None,
        usage: Default::default(),
    })
}

fn message(
    n: u128,
    session: u128,
    position: u64,
    turn: Option<u128>,
    role: Role,
    content: &str,
    status: StoredStatus,
) -> Change {
    Change::MessageUpsert(MessageRecord {
        id: mid(n),
        session_id: sid(session),
        position,
        turn_id: turn.map(tid),
        role,
        content: content.into(),
        created_at: at(100 + n as i64),
        status,
        tool: None,
        author: None,
    })
}

fn turn_start(n: u128, session: u128) -> Change {
    Change::TurnStart {
        id: tid(n),
        session_id: sid(session),
        started_at: at(200 + n as i64),
    }
}

fn turn_end(n: u128, status: TurnStatus, reason: &str, error: Option<&str>) -> Change {
    Change::TurnEnd(TurnEnd {
        id: tid(n),
        status,
        reason: reason.into(),
        error: error.map(Into::into),
        ended_at: at(300 + n as i64),
        tokens_in: 11,
        tokens_out: 22,
    })
}

fn request_key(n: u128, session: u128, message: u128, turn: u128) -> Change {
    Change::RequestKey {
        request_id: format!("req-{n}"),
        result: SendResult {
            ok: true,
            session_id: sid(session),
            message_id: mid(message),
            turn_id: tid(turn),
            queued: false,
            position: None,
        },
        created_at: at(400 + n as i64),
    }
}

/// Batches that together use every `Change` variant: upserts that grow a streaming message,
/// deletes, the active session set, moved to a deleted session and cleared, turns left running
/// and ended, tool calls, and more request keys than a load asks for.
fn scenario() -> Vec<Vec<Change>> {
    use Role::{Assistant, User};
    use StoredStatus::{Complete, Interrupted, Streaming};
    let mut batches = vec![
        vec![
            session(1, "first", 1),
            session(2, "second", 2),
            session(3, "third", 3),
            Change::ActiveSession(Some(sid(1))),
            message(1, 1, 0, None, User, "Hello", Complete),
            turn_start(1, 1),
            message(2, 1, 1, Some(1), Assistant, "Hi", Streaming),
            request_key(1, 1, 1, 1),
        ],
        vec![
            // A checkpoint rewrites the same row with more content, then the end completes it.
            message(2, 1, 1, Some(1), Assistant, "Hi the", Streaming),
            message(2, 1, 1, Some(1), Assistant, "Hi there!", Complete),
            Change::ToolCallStart {
                turn_id: tid(1),
                call_id: "call-1".into(),
                tool_name: "clock".into(),
                params: r#"{"tz":"UTC"}"#.into(),
                started_at: at(250),
            },
            Change::ToolCallEnd {
                turn_id: tid(1),
                call_id: "call-1".into(),
                is_error: false,
                result: r#"{"now":"10:00"}"#.into(),
                ended_at: at(251),
            },
            turn_end(1, TurnStatus::Completed, "completed", None),
            session(1, "first, renamed", 50),
        ],
        vec![
            message(3, 2, 0, None, User, "Count to three", Complete),
            turn_start(2, 2),
            message(4, 2, 1, Some(2), Assistant, "One, two", Streaming),
            request_key(2, 2, 3, 2),
            message(5, 3, 0, None, User, "Doomed", Complete),
            turn_start(3, 3),
            Change::SessionDelete {
                id: sid(3),
                deleted_at: at(60),
            },
            // Active but deleted: loads as no active session.
            Change::ActiveSession(Some(sid(3))),
        ],
        vec![
            Change::ActiveSession(None),
            message(6, 1, 2, None, User, "Again", Complete),
            turn_start(4, 1),
            message(7, 1, 3, Some(4), Assistant, "Sorry", Interrupted),
            turn_end(4, TurnStatus::Error, "error", Some("model exploded")),
            turn_start(5, 1),
            turn_end(5, TurnStatus::Interrupted, "interrupted", None),
            // An end for a turn never started changes nothing.
            turn_end(99, TurnStatus::Aborted, "crashed", None),
        ],
        vec![Change::ActiveSession(Some(sid(2)))],
        // A request pending, one resolved, one in a deleted session; grants, one repeated.
        vec![
            hitl(0x501, 1, HitlStatus::Pending),
            hitl(0x502, 1, HitlStatus::Answered),
            hitl(0x503, 3, HitlStatus::Pending),
            grant(1, "write_file"),
            grant(1, "run_command"),
            grant(1, "write_file"),
            grant(3, "write_file"),
        ],
    ];
    // More keys than a load returns, several per batch.
    for chunk in 0..3u128 {
        batches.push(
            (0..5u128)
                .map(|i| request_key(10 + chunk * 5 + i, 1, 6, 4))
                .collect(),
        );
    }
    batches
}

/// Every message of every session in `snap`, read from `store` in position order.
fn history(store: &mut dyn Store, snap: &Snapshot) -> Vec<Vec<MessageRecord>> {
    snap.sessions
        .iter()
        .map(|s| {
            let mut out = Vec::new();
            store
                .scan_messages(
                    s.record.id,
                    0..s.message_count,
                    Direction::Forward,
                    &mut |m| {
                        out.push(m);
                        true
                    },
                )
                .expect("scan");
            assert_eq!(out.len() as u64, s.message_count, "positions are dense");
            out
        })
        .collect()
}

fn hitl(id: u128, session: u128, status: HitlStatus) -> Change {
    Change::HitlUpsert(Box::new(HitlRequest {
        id: HitlId(Uuid::from_u128(id)),
        session_id: sid(session),
        turn_id: TurnId(Uuid::from_u128(id + 1)),
        kind: HitlType::ToolApproval,
        status,
        payload: HitlPayload::ToolApproval {
            tool_name: "write_file".into(),
            call_id: "call_1".into(),
            params: "{}".into(),
            params_truncated: false,
        },
        response: None,
        resolved_by: None,
        created_at: at(70),
        resolved_at: None,
        expires_at: Some(at(670)),
    }))
}

fn grant(session: u128, tool: &str) -> Change {
    Change::GrantAdd {
        session_id: sid(session),
        tool_name: tool.into(),
        granted_at: at(71),
    }
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[test]
fn loads_what_the_memory_store_loads() {
    let dir = temp_dir();
    let path = dir.path().join("zcoord.db");
    let mut memory = MemoryStore::new();
    let mut sqlite = SqliteStore::open(&path).expect("open new database");
    assert_eq!(
        sqlite.load(KEY_CAPACITY).expect("load"),
        Snapshot::default()
    );

    for (i, batch) in scenario().iter().enumerate() {
        memory.commit(batch).expect("memory commit");
        sqlite.commit(batch).expect("sqlite commit");
        let expected = memory.load(KEY_CAPACITY).expect("memory load");
        assert_eq!(
            sqlite.load(KEY_CAPACITY).expect("load"),
            expected,
            "after batch {i}"
        );
        assert_eq!(
            history(&mut sqlite, &expected),
            history(&mut memory, &expected),
            "after batch {i}"
        );
    }

    let expected = memory.load(KEY_CAPACITY).expect("memory load");
    // The scenario reaches every part of a snapshot.
    assert_eq!(expected.sessions.len(), 2);
    assert_eq!(expected.sessions[0].message_count, 4);
    assert_eq!(history(&mut memory, &expected)[0][1].content, "Hi there!");
    assert_eq!(expected.active_session, Some(sid(2)));
    assert_eq!(expected.open_turns.len(), 1, "turn 3's session is deleted");
    assert_eq!(expected.request_keys.len(), KEY_CAPACITY);
    assert_eq!(expected.request_keys[0].0, "req-15");
    assert_eq!(
        expected.pending_hitl.len(),
        1,
        "one pending in a live session"
    );
    assert_eq!(expected.sessions[0].grants, ["run_command", "write_file"]);

    drop(sqlite);
    let mut reopened = SqliteStore::open(&path).expect("reopen");
    assert_eq!(reopened.load(KEY_CAPACITY).expect("load"), expected);
    assert_eq!(
        reopened.load(100).expect("load"),
        memory.load(100).expect("memory load"),
        "every key when the capacity allows"
    );
    assert_eq!(reopened.describe(), format!("sqlite:{}", path.display()));
}

#[test]
fn an_empty_commit_is_fine() {
    let dir = temp_dir();
    let mut store = SqliteStore::open(&dir.path().join("zcoord.db")).expect("open");
    store.commit(&[]).expect("empty commit");
    assert_eq!(store.load(1).expect("load"), Snapshot::default());
}

// The fixture: tests/fixtures/make_v1.py writes it; these ids and times mirror that script.
fn fixture_id(n: u128) -> Uuid {
    Uuid::from_u128(0x0190a000_0000_7000_8000_000000000000 + n)
}

fn fixture_time(secs: i64) -> OffsetDateTime {
    at(secs)
}

fn copy_fixture(dir: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1.db");
    let path = dir.join("zcoord.db");
    fs::copy(&fixture, &path).expect("copy fixture");
    path
}

fn user_version(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).expect("open with rusqlite");
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("user_version")
}

#[test]
fn migrates_a_version_1_database() {
    let dir = temp_dir();
    let path = copy_fixture(dir.path());
    assert_eq!(user_version(&path), 1);

    let mut store = SqliteStore::open(&path).expect("open and migrate");
    let snap = store.load(100).expect("load");

    let live = SessionId(fixture_id(0xa));
    let done = TurnId(fixture_id(0xd1));
    let running = TurnId(fixture_id(0xd2));
    let msg =
        |n: u128, position: u64, turn: Option<TurnId>, role, content: &str, secs| MessageRecord {
            id: MessageId(fixture_id(0x100 + n)),
            session_id: live,
            position,
            turn_id: turn,
            role,
            content: content.into(),
            created_at: fixture_time(secs),
            status: StoredStatus::Complete,
            tool: None,
            author: None,
        };
    let expected = Snapshot {
        sessions: vec![StoredSession {
            record: SessionRecord {
                id: live,
                title: "Live session".into(),
                created_at: fixture_time(0),
                updated_at: fixture_time(40),
                model: None,
                system_prompt: None,
                // Totals begin at zero for sessions older than them.
                usage: Default::default(),
            },
            message_count: 4,
            grants: vec![],
        }],
        active_session: Some(live),
        open_turns: vec![OpenTurn {
            id: running,
            session_id: live,
            started_at: fixture_time(30),
        }],
        // Version 1 had no message status: every message migrates as complete.
        streaming: vec![],
        request_keys: vec![],
        pending_hitl: vec![],
        queued: vec![],
    };
    assert_eq!(snap, expected);
    let messages = vec![
        msg(1, 0, None, Role::User, "Hello", 10),
        msg(2, 1, Some(done), Role::Assistant, "Hi there!", 11),
        msg(3, 2, None, Role::User, "Tell me a story", 30),
        msg(4, 3, Some(running), Role::Assistant, "Once upon a", 31),
    ];
    assert_eq!(history(&mut store, &snap), vec![messages.clone()]);

    // The new columns and tables take writes: recover the crashed turn and record a key.
    let mut partial = messages[3].clone();
    partial.status = StoredStatus::Interrupted;
    let key = SendResult {
        ok: true,
        session_id: live,
        message_id: partial.id,
        turn_id: running,
        queued: false,
        position: None,
    };
    store
        .commit(&[
            Change::MessageUpsert(partial.clone()),
            Change::TurnEnd(TurnEnd {
                id: running,
                status: TurnStatus::Aborted,
                reason: "crashed".into(),
                error: None,
                ended_at: fixture_time(90),
                tokens_in: 0,
                tokens_out: 0,
            }),
            Change::RequestKey {
                request_id: "r1".into(),
                result: key.clone(),
                created_at: fixture_time(91),
            },
        ])
        .expect("commit after migrating");
    drop(store);

    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
    assert_eq!(SCHEMA_VERSION, 4);
    let mut store = SqliteStore::open(&path).expect("reopen");
    let snap = store.load(100).expect("load");
    assert!(snap.open_turns.is_empty());
    assert_eq!(history(&mut store, &snap)[0][3], partial);
    assert_eq!(snap.request_keys, vec![("r1".to_string(), key)]);
}

/// tests/fixtures/v2.db was written by zcoord at schema version 2 (make_v2.py): it migrates,
/// loads as it was, and takes the new records.
#[test]
fn migrates_a_version_2_database() {
    let dir = temp_dir();
    let path = dir.path().join("zcoord.db");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2.db"),
        &path,
    )
    .expect("copy fixture");
    assert_eq!(user_version(&path), 2);
    let mut store = SqliteStore::open(&path).expect("open and migrate");
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
    let snap = store.load(10).expect("load");
    assert_eq!(snap.sessions.len(), 1);
    let session = &snap.sessions[0];
    assert_eq!(session.record.title, "fixture v2");
    assert_eq!(session.message_count, 2);
    assert!(session.grants.is_empty());
    // Usage totals (version 4) start at zero.
    assert_eq!(session.record.usage, Default::default());
    assert_eq!(snap.active_session, Some(session.record.id));
    assert_eq!(snap.request_keys[0].0, "v2-key");
    assert!(snap.pending_hitl.is_empty() && snap.open_turns.is_empty());
    assert!(snap.queued.is_empty());
    let contents: Vec<String> = history(&mut store, &snap)[0]
        .iter()
        .map(|m| m.content.clone())
        .collect();
    assert_eq!(contents, ["hello v2", "echo: hello v2"]);

    // The new tables take writes, and load them back.
    let sid = session.record.id;
    let turn = snap.request_keys[0].1.turn_id;
    let request = zcoord::protocol::hitl::HitlRequest {
        id: zcoord::protocol::ids::HitlId(Uuid::from_u128(0x4171)),
        session_id: sid,
        turn_id: turn,
        kind: zcoord::protocol::hitl::HitlType::Question,
        status: zcoord::protocol::hitl::HitlStatus::Pending,
        payload: zcoord::protocol::hitl::HitlPayload::Question {
            call_id: "call_1".into(),
            question: "still?".into(),
            options: None,
            question_truncated: false,
        },
        response: None,
        resolved_by: None,
        created_at: at(5),
        resolved_at: None,
        expires_at: None,
    };
    store
        .commit(&[
            Change::HitlUpsert(Box::new(request.clone())),
            Change::GrantAdd {
                session_id: sid,
                tool_name: "write_file".into(),
                granted_at: at(6),
            },
        ])
        .expect("commit");
    drop(store);
    let snap = SqliteStore::open(&path).unwrap().load(10).unwrap();
    assert_eq!(snap.pending_hitl, vec![request]);
    assert_eq!(snap.sessions[0].grants, ["write_file"]);
}

// Refusals. Each leaves the file's bytes, and the directory's list of files, as they were.

/// The file's bytes and the directory's entries, to compare before and after.
fn fingerprint(path: &Path) -> (Vec<u8>, Vec<String>) {
    let bytes = fs::read(path).expect("read file");
    let dir = path.parent().expect("parent");
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    (bytes, names)
}

/// Opens `path`, expecting a refusal, and checks nothing was touched.
fn open_refused(path: &Path) -> StoreError {
    let before = fingerprint(path);
    let err = SqliteStore::open(path).expect_err("open must refuse");
    let after = fingerprint(path);
    assert!(after.0 == before.0, "refused file's bytes changed: {err}");
    assert_eq!(after.1, before.1, "directory changed: {err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "error names the file: {err}"
    );
    err
}

/// Deterministic bytes that look like nothing in particular (a multiplicative hash of the index).
fn noise(len: u32) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

#[test]
fn refuses_garbage_untouched() {
    let dir = temp_dir();
    let cases: [(&str, Vec<u8>); 3] = [
        ("noise.db", noise(4096)),
        (
            "notes.db",
            b"these are my notes, not a database\n".repeat(20),
        ),
        // A real header followed by noise: looks like SQLite until page one is read.
        ("mangled.db", {
            let mut b = b"SQLite format 3\0".to_vec();
            b.extend(noise(4080));
            b
        }),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        fs::write(&path, &bytes).expect("write");
        let err = open_refused(&path);
        assert!(
            matches!(err, StoreError::NotADatabase { .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains("not a zcoord database"), "{err}");
    }
}

#[test]
fn refuses_a_database_from_the_future_untouched() {
    let dir = temp_dir();
    let path = dir.path().join("zcoord.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("create");
        conn.execute_batch("CREATE TABLE sessions (id TEXT); PRAGMA user_version = 99;")
            .expect("future schema");
    }
    let err = open_refused(&path);
    match err {
        StoreError::TooNew {
            found, supported, ..
        } => assert_eq!((found, supported), (99, SCHEMA_VERSION)),
        other => panic!("expected TooNew, got {other:?}"),
    }
}

#[test]
fn refuses_someone_elses_database_untouched() {
    let dir = temp_dir();
    let cases = [
        (
            "other.db",
            "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');",
        ),
        // Claims our version 1 but lacks our tables.
        (
            "impostor.db",
            "CREATE TABLE sessions (id TEXT); PRAGMA user_version = 1;",
        ),
    ];
    for (name, sql) in cases {
        let path = dir.path().join(name);
        rusqlite::Connection::open(&path)
            .and_then(|c| c.execute_batch(sql))
            .expect("foreign database");
        let err = open_refused(&path);
        assert!(
            matches!(err, StoreError::NotADatabase { .. }),
            "{name}: {err:?}"
        );
    }
}

/// Opens `path` while another connection holds `BEGIN EXCLUSIVE`: refused as locked, quickly.
fn assert_locked_while_held(path: &Path) {
    let holder = rusqlite::Connection::open(path).expect("holder");
    holder.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let bytes = fs::read(path).expect("read");
    let started = Instant::now();
    let err = SqliteStore::open(path).expect_err("open must refuse a locked database");
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("locked"), "{err}");
    assert!(
        fs::read(path).expect("read") == bytes,
        "locked file changed"
    );
    holder.execute_batch("ROLLBACK").expect("unlock");
    drop(holder);
    SqliteStore::open(path).expect("opens once the lock is gone");
}

#[test]
fn refuses_a_locked_database_in_rollback_mode() {
    let dir = temp_dir();
    // The fixture is in rollback (DELETE) journal mode: an exclusive lock keeps out even readers.
    let path = copy_fixture(dir.path());
    assert_locked_while_held(&path);
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
}

#[test]
fn refuses_a_locked_database_in_wal_mode() {
    let dir = temp_dir();
    let path = dir.path().join("zcoord.db");
    drop(SqliteStore::open(&path).expect("create"));
    // In WAL mode readers still get in; the write lock is what is held.
    assert_locked_while_held(&path);
}

#[test]
fn a_missing_directory_is_a_clear_error() {
    let dir = temp_dir();
    let path = dir.path().join("no/such/dir/zcoord.db");
    let err = SqliteStore::open(&path).expect_err("must fail");
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("creating the database file"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(!dir.path().join("no").exists());
}

/// Makes a file or directory unwritable for as long as it lives: permission bits for an ordinary
/// user, `chattr +i` for root (who ignores permission bits). Undone on drop, even when a test
/// fails.
struct Unwritable {
    path: PathBuf,
    /// The mode to restore; `None` when `chattr +i` did the work.
    mode: Option<u32>,
}

impl Unwritable {
    /// `None` (having said why) when this system offers no way to do it.
    fn new(path: &Path) -> Option<Unwritable> {
        use std::os::unix::fs::PermissionsExt;
        let guard = if is_root() {
            let ok = Command::new("chattr")
                .arg("+i")
                .arg(path)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!(
                    "skipped: running as root and `chattr +i {}` failed",
                    path.display()
                );
                return None;
            }
            Unwritable {
                path: path.to_path_buf(),
                mode: None,
            }
        } else {
            let mode = fs::metadata(path).expect("metadata").permissions().mode();
            fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o555)).expect("chmod");
            Unwritable {
                path: path.to_path_buf(),
                mode: Some(mode),
            }
        };
        let writable = if path.is_dir() {
            let probe = path.join(".probe");
            let created = fs::write(&probe, b"x").is_ok();
            let _ = fs::remove_file(&probe);
            created
        } else {
            fs::OpenOptions::new().append(true).open(path).is_ok()
        };
        if writable {
            eprintln!("skipped: {} stays writable", path.display());
            return None;
        }
        Some(guard)
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        match self.mode {
            None => {
                let _ = Command::new("chattr").arg("-i").arg(&self.path).status();
            }
            Some(mode) => {
                let _ = fs::set_permissions(&self.path, fs::Permissions::from_mode(mode));
            }
        }
    }
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn refuses_read_only_places() {
    let dir = temp_dir();
    let empty = dir.path().join("empty");
    let existing = dir.path().join("existing");
    let file_only = dir.path().join("file-only");
    for d in [&empty, &existing, &file_only] {
        fs::create_dir(d).expect("mkdir");
    }
    let existing_db = existing.join("zcoord.db");
    let read_only_db = file_only.join("zcoord.db");
    drop(SqliteStore::open(&existing_db).expect("create"));
    drop(SqliteStore::open(&read_only_db).expect("create"));

    let Some(_empty_guard) = Unwritable::new(&empty) else {
        return;
    };
    let Some(_existing_guard) = Unwritable::new(&existing) else {
        return;
    };
    let Some(_file_guard) = Unwritable::new(&read_only_db) else {
        return;
    };

    // No file yet and a directory that cannot be written: nothing may be created.
    let path = empty.join("zcoord.db");
    let err = SqliteStore::open(&path).expect_err("must refuse");
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");
    assert!(err.to_string().contains("read-only"), "{err}");
    assert_eq!(fs::read_dir(&empty).expect("read dir").count(), 0);

    // A database already there still needs its -wal and -shm files beside it.
    let err = open_refused(&existing_db);
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");

    // A writable directory but a read-only file.
    let err = open_refused(&read_only_db);
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");
}

/// Start-up at the size the issue names. Run in release mode:
/// `cargo test --release --test store_sqlite -- --ignored --nocapture load_time`
#[test]
#[ignore = "slow in debug builds; a measurement, not a check"]
fn load_time_10k_sessions_x_50_messages() {
    let dir = temp_dir();
    let path = dir.path().join("zcoord.db");
    let mut store = SqliteStore::open(&path).expect("open");
    let content = "The quick brown fox jumps over the lazy dog. ".repeat(4);
    let started = Instant::now();
    for chunk in 0..100u128 {
        let mut batch = Vec::new();
        for s in chunk * 100..(chunk + 1) * 100 {
            batch.push(session(s, &format!("session {s}"), s as i64));
            for p in 0..50u64 {
                let n = s * 50 + u128::from(p);
                let role = if p % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                };
                batch.push(Change::MessageUpsert(MessageRecord {
                    id: MessageId(Uuid::from_u128(0x1000_0000 + n)),
                    session_id: sid(s),
                    position: p,
                    turn_id: None,
                    role,
                    content: content.clone(),
                    created_at: at(n as i64),
                    status: StoredStatus::Complete,
                    tool: None,
                    author: None,
                }));
            }
        }
        store.commit(&batch).expect("commit");
    }
    let writing = started.elapsed();
    drop(store);

    let started = Instant::now();
    let mut store = SqliteStore::open(&path).expect("reopen");
    let opened = started.elapsed();
    let snap = store.load(10_000).expect("load");
    let total = started.elapsed();
    assert_eq!(snap.sessions.len(), 10_000);
    assert!(snap.sessions.iter().all(|s| s.message_count == 50));
    let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "10,000 sessions x 50 messages ({} MB): written in {writing:?}; open {opened:?}, open + load {total:?}",
        size / 1_000_000
    );
}
