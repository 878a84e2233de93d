//! Core unit tests for `CoreConfig::max_sessions`: every way of making a session is bounded,
//! a refusal changes nothing, and only live sessions count.

use uuid::Uuid;

use super::persist::{SessionRecord, Snapshot};
use super::tests::{at, core, ctx, send};
use super::*;
use crate::protocol::errors::RpcError;
use crate::protocol::ids::SessionId;
use crate::protocol::methods::{Call, MessageSend, Reply};

/// A core that holds at most `limit` sessions.
fn core_with_limit(limit: usize) -> Core {
    let mut c = core();
    c.config.max_sessions = limit;
    c
}

fn create(c: &mut Core, title: &str) -> Result<SessionId, CoreError> {
    let call = Call::SessionCreate {
        title: Some(title.into()),
    };
    c.reply(call, &ctx(1)).map(|r| match r {
        Reply::Session(s) => s.id,
        other => panic!("{other:?}"),
    })
}

fn send_new(c: &mut Core, request_id: &str) -> Result<Reply, CoreError> {
    let call = Call::MessageSend(MessageSend {
        session_id: None,
        content: "hello".into(),
        request_id: Some(request_id.into()),
        model: None,
        when_busy: Default::default(),
    });
    c.reply(call, &ctx(2))
}

fn delete(c: &mut Core, id: SessionId) {
    let call = Call::SessionDelete {
        session_id: id.to_string(),
    };
    c.reply(call, &ctx(3)).unwrap();
}

fn max_sessions_in_info(c: &mut Core) -> (u64, u64) {
    match c.reply(Call::InstanceInfo, &ctx(4)).unwrap() {
        Reply::Info(info) => (info.session_count, info.max_sessions),
        other => panic!("{other:?}"),
    }
}

const FULL: CoreError = CoreError::TooManySessions { count: 3, limit: 3 };

#[test]
fn explicit_and_implicit_sessions_share_the_limit_and_a_refusal_changes_nothing() {
    let mut c = core_with_limit(3);
    let first = create(&mut c, "one").unwrap();
    create(&mut c, "two").unwrap();
    send_new(&mut c, "r1").unwrap();
    c.take_effects();
    let seq = c.seq();

    assert_eq!(create(&mut c, "four"), Err(FULL));
    assert_eq!(send_new(&mut c, "r2"), Err(FULL));
    assert!(
        c.take_effects().is_empty(),
        "a refusal publishes and stores nothing"
    );
    assert_eq!(c.seq(), seq);
    assert_eq!(c.running_turns(), 1, "only r1's turn runs");
    assert_eq!(max_sessions_in_info(&mut c), (3, 3));

    // What needs no new session still works: a send to a session that exists, and the retry of
    // a send that already made its session (answered from memory, not made again).
    send(&mut c, Some(first), "more", 5);
    assert!(send_new(&mut c, "r1").is_ok());

    let refused: RpcError = FULL.into();
    assert_eq!(refused, RpcError::too_many_sessions(3, 3));
    assert_eq!(refused.code, -32010);
}

#[test]
fn deleted_sessions_do_not_count() {
    let mut c = core_with_limit(2);
    let a = create(&mut c, "a").unwrap();
    let b = create(&mut c, "b").unwrap();
    assert!(create(&mut c, "c").is_err());

    delete(&mut c, a);
    let c_id = create(&mut c, "c").unwrap();
    assert!(send_new(&mut c, "r").is_err());

    delete(&mut c, b);
    delete(&mut c, c_id);
    assert_eq!(max_sessions_in_info(&mut c), (0, 2));
    assert!(send_new(&mut c, "r").is_ok());
    assert!(create(&mut c, "d").is_ok());
    assert!(create(&mut c, "e").is_err());
}

#[test]
fn sessions_restored_over_a_lowered_limit_are_kept_and_new_ones_refused() {
    let mut c = core_with_limit(1);
    let record = |n: u128| {
        let record = SessionRecord {
            id: SessionId(Uuid::from_u128(n)),
            title: format!("restored {n}"),
            created_at: at(0),
            updated_at: at(0),
            model: None,
            system_prompt: None,
            usage: Default::default(),
        };
        crate::core::persist::StoredSession {
            record,
            message_count: 0,
            grants: vec![],
        }
    };
    let snapshot = Snapshot {
        sessions: vec![record(1), record(2)],
        ..Snapshot::default()
    };
    c.restore(snapshot, at(1));
    assert_eq!(max_sessions_in_info(&mut c), (2, 1));
    assert_eq!(
        create(&mut c, "x"),
        Err(CoreError::TooManySessions { count: 2, limit: 1 })
    );
}
