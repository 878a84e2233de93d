//! The queued-messages table: pushes and removals as the next load sees them (in the order
//! queued, live sessions only, none whose message is already in the history), queued answers
//! of request keys, and a version-3 database migrating to an empty queue.

use rusqlite::Connection;
use uuid::Uuid;

use super::tests::{at, new_store, session, sid, tid};
use super::SqliteStore;
use crate::core::persist::{Change, MessageRecord, StoredStatus};
use crate::core::queue::QueuedMessage;
use crate::protocol::ids::MessageId;
use crate::protocol::methods::SendResult;
use crate::protocol::types::Role;
use crate::store::Store;

fn queued(n: u128, session: u128) -> QueuedMessage {
    QueuedMessage {
        session_id: sid(session),
        message_id: MessageId(Uuid::from_u128(0x500 + n)),
        turn_id: tid(0x50 + n),
        content: format!("queued {n}"),
        queued_at: at(n as i64),
        author: None,
        model: None,
    }
}

#[test]
fn queued_messages_load_in_the_order_queued_for_live_sessions_only() {
    let (_dir, mut store) = new_store();
    // Ids out of order on purpose: the order is the order queued, not the ids'.
    let (a, b, c, d) = (queued(9, 1), queued(2, 1), queued(5, 2), queued(7, 1));
    store
        .commit(&[
            session(1),
            session(2),
            Change::QueuePush(a.clone()),
            Change::QueuePush(b.clone()),
            Change::QueuePush(c.clone()),
            Change::QueuePush(d.clone()),
            // Pushed twice (a retried batch): kept once, in its first place.
            Change::QueuePush(a.clone()),
        ])
        .expect("commit");
    store
        .commit(&[Change::QueueRemove {
            message_id: b.message_id,
        }])
        .expect("remove");
    assert_eq!(
        store.load(10).expect("load").queued,
        [a.clone(), c, d.clone()]
    );

    // A deleted session's queue does not load; a row whose message is stored is a turn that
    // started just before a crash: not queued any more.
    store
        .commit(&[
            Change::SessionDelete {
                id: sid(2),
                deleted_at: at(20),
            },
            Change::MessageUpsert(MessageRecord {
                id: a.message_id,
                session_id: sid(1),
                position: 0,
                turn_id: Some(a.turn_id),
                role: Role::User,
                content: a.content.clone(),
                created_at: at(21),
                status: StoredStatus::Complete,
                tool: None,
                author: None,
            }),
        ])
        .expect("commit");
    assert_eq!(store.load(10).expect("load").queued, [d]);
}

#[test]
fn a_queued_send_keeps_its_place_in_its_request_key() {
    let (_dir, mut store) = new_store();
    let answer = |queued: bool, position: Option<u64>| SendResult {
        ok: true,
        session_id: sid(1),
        message_id: MessageId(Uuid::from_u128(0x100)),
        turn_id: tid(1),
        queued,
        position,
    };
    let key = |k: &str, result: SendResult| Change::RequestKey {
        request_id: k.into(),
        result,
        created_at: at(1),
    };
    store
        .commit(&[
            session(1),
            key("queued", answer(true, Some(3))),
            key("at-once", answer(false, None)),
        ])
        .expect("commit");
    let keys = store.load(10).expect("load").request_keys;
    assert_eq!(
        keys,
        [
            ("queued".to_string(), answer(true, Some(3))),
            ("at-once".to_string(), answer(false, None)),
        ]
    );
}

#[test]
fn a_version_3_database_migrates_to_an_empty_queue() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("zcoord.db");
    {
        let conn = Connection::open(&path).expect("create");
        for script in &super::schema::MIGRATIONS[..3] {
            conn.execute_batch(script).expect("older schema");
        }
        conn.execute_batch(
            "PRAGMA user_version = 3;
             INSERT INTO sessions (id, title, created_at, updated_at)
                 VALUES ('00000000-0000-0000-0000-000000000001', 'old', 0, 0);
             INSERT INTO request_keys (request_id, session_id, message_id, turn_id, created_at)
                 VALUES ('k', '00000000-0000-0000-0000-000000000001',
                         '00000000-0000-0000-0000-000000000100',
                         '00000000-0000-0000-0000-0000000000d1', 0);",
        )
        .expect("version 3 rows");
    }
    let mut store = SqliteStore::open(&path).expect("migrates");
    let version: i64 = store
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(version, 4);
    let snap = store.load(10).expect("load");
    assert!(snap.queued.is_empty());
    assert_eq!(snap.sessions.len(), 1);
    // An old key answers as it always did: not queued.
    assert_eq!(snap.request_keys.len(), 1);
    assert!(!snap.request_keys[0].1.queued);
    assert_eq!(snap.request_keys[0].1.position, None);
    // And the new table takes writes.
    store
        .commit(&[Change::QueuePush(queued(1, 1))])
        .expect("queue");
    assert_eq!(store.load(10).expect("load").queued, [queued(1, 1)]);
}
