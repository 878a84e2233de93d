//! Fixtures shared by the SQLite store's unit tests, and the tests of a commit as the next load
//! sees it: all-or-nothing batches, foreign keys checked at the end, request-key bookkeeping.

use time::OffsetDateTime;
use uuid::Uuid;

use super::SqliteStore;
use crate::core::persist::{Change, MessageRecord, SessionRecord, Snapshot, StoredStatus};
use crate::protocol::ids::{MessageId, SessionId, TurnId};
use crate::protocol::methods::SendResult;
use crate::protocol::types::Role;
use crate::store::Store;

pub(super) fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_000_000_000 + i128::from(secs))
        .expect("test time")
}

pub(super) fn sid(n: u128) -> SessionId {
    SessionId(Uuid::from_u128(n))
}

pub(super) fn tid(n: u128) -> TurnId {
    TurnId(Uuid::from_u128(0xd0 + n))
}

pub(super) fn new_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("zcoord.db")).expect("open");
    (dir, store)
}

pub(super) fn session(n: u128) -> Change {
    Change::SessionUpsert(SessionRecord {
        id: sid(n),
        title: format!("s{n}"),
        created_at: at(0),
        updated_at: at(1),
        model: None,
        system_prompt: None,
        usage: Default::default(),
    })
}

pub(super) fn key(n: u64, session: u128) -> Change {
    Change::RequestKey {
        request_id: format!("k{n}"),
        result: SendResult {
            ok: true,
            session_id: sid(session),
            message_id: MessageId(Uuid::from_u128(0x100)),
            turn_id: tid(1),
            queued: false,
            position: None,
        },
        created_at: at(n as i64),
    }
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
        tool: None,
        author: None,
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
        tool: None,
        author: None,
    });
    store.commit(&[message, session(1)]).expect("commit");
    assert_eq!(store.load(10).expect("load").sessions[0].message_count, 1);
}

#[test]
fn a_deleted_or_replaced_database_file_refuses_every_commit() {
    for replace in [false, true] {
        let (dir, mut store) = new_store();
        store.commit(&[session(1)]).expect("first commit");
        let path = dir.path().join("zcoord.db");
        std::fs::remove_file(&path).expect("delete");
        if replace {
            std::fs::write(&path, b"").expect("a new file at the same path");
        }
        let e = store.commit(&[session(2)]).expect_err("refused");
        assert!(e.is_permanent(), "{e}");
        assert!(e.to_string().contains("deleted or replaced"), "{e}");
    }
}
