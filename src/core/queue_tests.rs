//! Queued messages in the core: `when_busy: "queue"`, the order they run in, their bounds, the
//! events around them, `clear_queue`, deletion, shutdown and restore. No sockets, no clock.

use uuid::Uuid;

use super::persist::Change;
use super::queue::QueueLimits;
use super::testing::Stored;
use super::tests::{at, changes, core, ctx, send, trace};
use super::*;
use crate::protocol::events::{DequeueReason, Event};
use crate::protocol::ids::{MessageId, SessionId};
use crate::protocol::methods::{Call, InterruptResult, MessageSend, Reply, SendResult, WhenBusy};
use crate::protocol::types::{Role, SessionPayload, SessionStatus};
use crate::store::Store;

fn queue(
    c: &mut Core,
    session: SessionId,
    content: &str,
    secs: i64,
) -> Result<SendResult, CoreError> {
    queue_keyed(c, session, content, None, secs)
}

fn queue_keyed(
    c: &mut Core,
    session: SessionId,
    content: &str,
    request_id: Option<&str>,
    secs: i64,
) -> Result<SendResult, CoreError> {
    let call = Call::MessageSend(MessageSend {
        session_id: Some(session.to_string()),
        content: content.into(),
        request_id: request_id.map(str::to_owned),
        when_busy: WhenBusy::Queue,
        model: None,
    });
    c.reply(call, &ctx(secs)).map(|r| match r {
        Reply::Send(r) => r,
        other => panic!("{other:?}"),
    })
}

fn get(c: &mut Core, id: SessionId) -> SessionPayload {
    let call = Call::SessionGet {
        session_id: id.to_string(),
    };
    match c.reply(call, &ctx(0)).unwrap() {
        Reply::Session(s) => s,
        other => panic!("{other:?}"),
    }
}

fn interrupt(c: &mut Core, id: SessionId, clear_queue: bool, secs: i64) -> InterruptResult {
    let call = Call::SessionInterrupt {
        session_id: id.to_string(),
        clear_queue,
    };
    match c.reply(call, &ctx(secs)).unwrap() {
        Reply::Interrupt(r) => r,
        other => panic!("{other:?}"),
    }
}

/// The `message.dequeued` payloads among `effects`: (message, reason, queue length after).
fn dequeued(effects: &[Effect]) -> Vec<(MessageId, DequeueReason, u64)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Publish(p) => match &p.event {
                Event::MessageDequeued(d) => Some((d.message_id, d.reason, d.queue_length)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn a_queued_message_runs_as_the_next_turn_with_the_ids_its_reply_named() {
    let mut c = core();
    let first = send(&mut c, None, "one", 1);
    let sid = first.session_id;
    c.take_effects();

    let second = queue(&mut c, sid, "two", 2).unwrap();
    assert!(second.queued);
    assert_eq!(second.position, Some(1));
    let fx = c.take_effects();
    assert_eq!(trace(&fx), ["message.queued", "session.update"]);
    // Stored before anything shows, and not yet in the history.
    let ch = changes(&fx);
    assert!(matches!(&ch[..], [(Change::QueuePush(q), true)] if q.message_id == second.message_id));
    let s = get(&mut c, sid);
    assert_eq!((s.message_count, s.queue_length), (1, 1));
    let third = queue(&mut c, sid, "three", 3).unwrap();
    assert_eq!(third.position, Some(2));
    c.take_effects();

    c.model_event(first.turn_id, ModelEvent::Finished, at(4));
    let fx = c.take_effects();
    assert_eq!(
        trace(&fx),
        [
            "llm.end",
            "session.update",
            "message.dequeued",
            "message.append",
            "llm.start",
            "session.update",
            "START"
        ]
    );
    assert_eq!(
        dequeued(&fx),
        [(second.message_id, DequeueReason::Started, 1)]
    );
    let started = fx.iter().find_map(|e| match e {
        Effect::Turn(TurnEffect::Start { turn_id, .. }) => Some(*turn_id),
        _ => None,
    });
    assert_eq!(started, Some(second.turn_id));
    let append = fx.iter().find_map(|e| match e {
        Effect::Publish(p) => match &p.event {
            Event::MessageAppend(m) => Some(m.clone()),
            _ => None,
        },
        _ => None,
    });
    let append = append.unwrap();
    assert_eq!(
        (append.message_id, append.role, append.content.as_str()),
        (second.message_id, Role::User, "two")
    );
    // The message is stored in the history before it leaves the queue's table.
    let ch: Vec<Change> = changes(&fx).into_iter().map(|(c, _)| c).collect();
    let upsert = ch
        .iter()
        .position(|c| matches!(c, Change::MessageUpsert(m) if m.id == second.message_id));
    let removed = ch.iter().position(
        |c| matches!(c, Change::QueueRemove { message_id } if *message_id == second.message_id),
    );
    assert!(upsert.unwrap() < removed.unwrap());
    let s = get(&mut c, sid);
    assert_eq!(
        (s.message_count, s.queue_length, s.status),
        (2, 1, SessionStatus::Running)
    );

    // However a turn ends, the next runs: here by a model error.
    c.model_event(second.turn_id, ModelEvent::Failed("boom".into()), at(5));
    let fx = c.take_effects();
    assert_eq!(
        dequeued(&fx),
        [(third.message_id, DequeueReason::Started, 0)]
    );
    c.model_event(third.turn_id, ModelEvent::Finished, at(6));
    let fx = c.take_effects();
    assert!(dequeued(&fx).is_empty());
    let s = get(&mut c, sid);
    assert_eq!(
        (s.message_count, s.queue_length, s.status),
        (3, 0, SessionStatus::Idle)
    );
}

#[test]
fn reject_stays_the_default_and_an_idle_session_runs_a_queued_send_at_once() {
    let mut c = core();
    let first = send(&mut c, None, "one", 1);
    let busy = send_default(&mut c, first.session_id);
    assert!(matches!(busy, Err(CoreError::SessionBusy { .. })));
    c.model_event(first.turn_id, ModelEvent::Finished, at(2));
    c.take_effects();
    let now = queue(&mut c, first.session_id, "two", 3).unwrap();
    assert!(!now.queued);
    assert_eq!(now.position, None);
    let fx = c.take_effects();
    assert_eq!(
        trace(&fx),
        ["message.append", "llm.start", "session.update", "START"]
    );
}

fn send_default(c: &mut Core, sid: SessionId) -> Result<Reply, CoreError> {
    c.reply(
        Call::MessageSend(MessageSend {
            session_id: Some(sid.to_string()),
            content: "x".into(),
            request_id: None,
            when_busy: WhenBusy::default(),
            model: None,
        }),
        &ctx(1),
    )
}

fn core_with(limits: QueueLimits) -> Core {
    let mut c = core();
    c.config.queue = limits;
    c
}

#[test]
fn queues_are_bounded_in_messages_and_bytes_per_session_and_in_bytes_overall() {
    let mut c = core_with(QueueLimits {
        max_messages: 2,
        max_bytes: 10,
        max_total_bytes: 14,
    });
    let a = send(&mut c, None, "a", 1).session_id;
    let b = send(&mut c, None, "b", 1).session_id;
    c.take_effects();
    queue(&mut c, a, "1234", 2).unwrap();
    queue(&mut c, a, "5678", 2).unwrap();
    c.take_effects();
    // Count: a third is one too many, however small.
    let full = queue(&mut c, a, "x", 3).unwrap_err();
    assert_eq!(
        full,
        CoreError::QueueFull {
            session_id: a,
            scope: super::queue::QueueScope::Session,
            queued: (2, 8),
            limit: Some(2),
            limit_bytes: 10,
        }
    );
    assert!(c.take_effects().is_empty(), "a refusal changes nothing");
    // Bytes in the session.
    queue(&mut c, b, "123456", 3).unwrap();
    c.take_effects();
    let full = queue(&mut c, b, "abcde", 3).unwrap_err();
    assert!(matches!(
        full,
        CoreError::QueueFull {
            scope: super::queue::QueueScope::Session,
            queued: (1, 6),
            ..
        }
    ));
    // Bytes over all sessions: 8 + 6 held, the bound is 14.
    let full = queue(&mut c, b, "z", 3).unwrap_err();
    assert_eq!(
        full,
        CoreError::QueueFull {
            session_id: b,
            scope: super::queue::QueueScope::Instance,
            queued: (3, 14),
            limit: None,
            limit_bytes: 14,
        }
    );
    let rpc = crate::protocol::errors::RpcError::from(full);
    assert_eq!(rpc.code, -32019);
    assert_eq!(rpc.data.unwrap()["kind"], "queue_full");
    assert!(c.take_effects().is_empty());
    // Room comes back as queued messages start.
    let running_a = c.sessions[&a].running.unwrap();
    c.model_event(running_a, ModelEvent::Finished, at(4));
    queue(&mut c, b, "z", 5).unwrap();
}

#[test]
fn clear_queue_discards_every_queued_message_before_the_interrupt() {
    let mut c = core();
    let first = send(&mut c, None, "one", 1);
    let sid = first.session_id;
    let queued: Vec<MessageId> = (0..5)
        .map(|i| queue(&mut c, sid, &format!("q{i}"), 2).unwrap().message_id)
        .collect();
    c.take_effects();
    let r = interrupt(&mut c, sid, true, 3);
    assert_eq!(
        r,
        InterruptResult {
            ok: true,
            interrupted: true,
            cleared: Some(5)
        }
    );
    let fx = c.take_effects();
    let want: Vec<(MessageId, DequeueReason, u64)> = queued
        .iter()
        .enumerate()
        .map(|(i, m)| (*m, DequeueReason::Cleared, 4 - i as u64))
        .collect();
    assert_eq!(dequeued(&fx), want);
    let t = trace(&fx);
    assert_eq!(&t[5..], ["CANCEL", "llm.end", "session.update"]);
    let removed = changes(&fx)
        .iter()
        .filter(|(c, _)| matches!(c, Change::QueueRemove { .. }))
        .count();
    assert_eq!(removed, 5);
    let s = get(&mut c, sid);
    assert_eq!(
        (s.queue_length, s.status, s.message_count),
        (0, SessionStatus::Idle, 1)
    );
    // Nothing left to clear: cleared 0, nothing published.
    let r = interrupt(&mut c, sid, true, 4);
    assert_eq!(r.cleared, Some(0));
    assert!(c.take_effects().is_empty());
}

#[test]
fn an_interrupt_without_clear_queue_starts_the_next_message() {
    let mut c = core();
    let first = send(&mut c, None, "one", 1);
    let next = queue(&mut c, first.session_id, "two", 2).unwrap();
    c.take_effects();
    let r = interrupt(&mut c, first.session_id, false, 3);
    assert_eq!(r.cleared, None);
    let fx = c.take_effects();
    assert_eq!(
        dequeued(&fx),
        [(next.message_id, DequeueReason::Started, 0)]
    );
    assert_eq!(c.sessions[&first.session_id].running, Some(next.turn_id));
}

#[test]
fn deleting_a_session_discards_its_queue_first() {
    let mut c = core();
    let first = send(&mut c, None, "one", 1);
    let sid = first.session_id;
    let q = queue(&mut c, sid, "two", 2).unwrap();
    c.take_effects();
    c.reply(
        Call::SessionDelete {
            session_id: sid.to_string(),
        },
        &ctx(3),
    )
    .unwrap();
    let fx = c.take_effects();
    assert_eq!(
        trace(&fx),
        [
            "message.dequeued",
            "CANCEL",
            "llm.end",
            "session.update",
            "session.deleted",
            "session.list"
        ]
    );
    assert_eq!(dequeued(&fx), [(q.message_id, DequeueReason::Deleted, 0)]);
    assert_eq!(c.queued_bytes, 0);
}

#[test]
fn shutdown_keeps_the_queue_and_a_restore_runs_it_with_the_same_answers() {
    let mut stored = Stored::default();
    let mut c = core();
    let first = send(&mut c, None, "one", 1);
    let sid = first.session_id;
    let q1 = queue_keyed(&mut c, sid, "two", Some("k2"), 2).unwrap();
    let q2 = queue(&mut c, sid, "three", 2).unwrap();
    stored.sync(&mut c);
    c.shutdown("SIGTERM", at(3));
    let fx = stored.sync(&mut c);
    assert!(dequeued(&fx).is_empty(), "shutdown starts nothing");
    assert!(!fx
        .iter()
        .any(|e| matches!(e, Effect::Turn(TurnEffect::Start { .. }))));
    assert_eq!(get(&mut c, sid).queue_length, 2);
    // Clearing is a change: refused once shutting down, the queue kept.
    let refused = c.reply(
        Call::SessionInterrupt {
            session_id: sid.to_string(),
            clear_queue: true,
        },
        &ctx(3),
    );
    assert_eq!(refused, Err(CoreError::ShuttingDown));

    let snapshot = stored.store.load(10).unwrap();
    assert_eq!(snapshot.queued.len(), 2);
    let mut c = core();
    c.ids = Box::new(Offset(1 << 64));
    c.restore(snapshot, at(10));
    let fx = stored.sync(&mut c);
    assert_eq!(dequeued(&fx), [(q1.message_id, DequeueReason::Started, 1)]);
    assert_eq!(c.sessions[&sid].running, Some(q1.turn_id));
    // The same answer again for the same key, queued and placed as it was.
    let again = queue_keyed(&mut c, sid, "two", Some("k2"), 11).unwrap();
    assert_eq!(again, q1);
    assert!(c.take_effects().is_empty());
    c.model_event(q1.turn_id, ModelEvent::Finished, at(12));
    let fx = stored.sync(&mut c);
    assert_eq!(dequeued(&fx), [(q2.message_id, DequeueReason::Started, 0)]);
    // The history holds each message once, in the order the turns ran.
    assert_eq!(
        stored.started.last().unwrap().last().unwrap().content,
        "three"
    );
    // one, two, three: the turn shutdown ended streamed no text.
    assert_eq!(c.sessions[&sid].message_count, 3);
}

#[test]
fn a_queued_row_whose_message_was_stored_is_not_run_twice() {
    let mut stored = Stored::default();
    let mut c = core();
    let first = send(&mut c, None, "one", 1);
    let q = queue(&mut c, first.session_id, "two", 2).unwrap();
    c.model_event(first.turn_id, ModelEvent::Finished, at(3));
    // A crash after the message was stored but before its queue row was removed.
    let fx = c.take_effects();
    let kept: Vec<Effect> = fx
        .into_iter()
        .filter(|e| {
            !matches!(
                e,
                Effect::Persist {
                    change: Change::QueueRemove { .. },
                    ..
                }
            )
        })
        .collect();
    stored.apply(&kept);
    let snapshot = stored.store.load(10).unwrap();
    assert!(
        !snapshot.queued.iter().any(|s| s.message_id == q.message_id),
        "{:?}",
        snapshot.queued
    );
}

#[test]
fn a_degraded_store_refuses_queueing() {
    let mut c = core();
    let first = send(&mut c, None, "one", 1);
    c.store_health(Some("disk full".into()), at(2));
    let refused = queue(&mut c, first.session_id, "two", 3);
    assert_eq!(
        refused,
        Err(CoreError::StoreUnavailable("disk full".into()))
    );
}

/// Ids past those an earlier core issued, as a restarted server's would be.
struct Offset(u128);

impl ids::IdGen for Offset {
    fn next_id(&mut self) -> Uuid {
        self.0 += 1;
        Uuid::from_u128(self.0)
    }
}
