//! Core unit tests: inputs in, expected effects out. No sockets, no clock, no runtime.

use uuid::Uuid;

use super::persist::{Change, StoredSession, StoredStatus, TurnStatus};
use super::testing::Stored;
use super::*;
use crate::protocol::events::{EndReason, Event};
use crate::protocol::ids::{InstanceId, SessionId, TurnId};
use crate::protocol::methods::{Call, MessageSend, Reply, SendResult};
use crate::protocol::types::{MessageStatus, Role, SessionStatus};
use crate::protocol::usage::{SessionUsage, TurnUsage};

/// A usage report of `input` and `output` tokens, the context holding both.
pub(super) fn usage(input: u64, output: u64) -> ModelEvent {
    ModelEvent::Usage(TurnUsage {
        input_tokens: input,
        output_tokens: output,
        context_tokens: input + output,
        ..TurnUsage::default()
    })
}

/// Totals a restored session had stored.
fn restored_usage() -> SessionUsage {
    SessionUsage {
        input_tokens: 40,
        output_tokens: 7,
        cached_input_tokens: 5,
        reasoning_tokens: 1,
        turns: 2,
    }
}
use crate::store::Rows;

pub(super) use super::testing::{at, core, ctx};

/// Topics of the published effects, and whether a start/cancel was asked for, as short strings.
pub(super) fn trace(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Publish(p) => Some(p.event.topic().to_owned()),
            Effect::Turn(TurnEffect::Start { .. }) => Some("START".into()),
            Effect::Turn(TurnEffect::Cancel(_)) => Some("CANCEL".into()),
            Effect::Turn(TurnEffect::Verdict { .. }) => Some("VERDICT".into()),
            Effect::Persist { .. } => None,
        })
        .collect()
}

/// The store changes among `effects`, with their gating flag.
pub(super) fn changes(effects: &[Effect]) -> Vec<(Change, bool)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Persist { change, gating } => Some((change.clone(), *gating)),
            _ => None,
        })
        .collect()
}

pub(super) fn events(effects: &[Effect]) -> Vec<&Event> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Publish(p) => Some(&p.event),
            _ => None,
        })
        .collect()
}

pub(super) fn send(
    c: &mut Core,
    session: Option<SessionId>,
    content: &str,
    secs: i64,
) -> SendResult {
    let call = Call::MessageSend(MessageSend {
        session_id: session.map(|s| s.to_string()),
        content: content.into(),
        request_id: None,
        model: None,
        when_busy: Default::default(),
    });
    match c.reply(call, &ctx(secs)).unwrap() {
        Reply::Send(r) => r,
        other => panic!("{other:?}"),
    }
}

pub(super) fn session_of(c: &mut Core, id: SessionId) -> crate::protocol::types::SessionPayload {
    match c
        .reply(
            Call::SessionGet {
                session_id: id.to_string(),
            },
            &ctx(0),
        )
        .unwrap()
    {
        Reply::Session(s) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn send_without_session_creates_activates_and_starts_a_turn() {
    let mut c = core();
    let r = send(&mut c, None, "hello there\nsecond line", 1);
    let fx = c.take_effects();
    assert_eq!(
        trace(&fx),
        [
            "session.update",
            "session.list",
            "session.activated",
            "message.append",
            "llm.start",
            "session.update",
            "START"
        ]
    );
    let Some(Effect::Turn(TurnEffect::Start {
        turn_id, context, ..
    })) = fx
        .iter()
        .find(|e| matches!(e, Effect::Turn(TurnEffect::Start { .. })))
    else {
        panic!()
    };
    assert_eq!(*turn_id, r.turn_id);
    let mut stored = Stored::default();
    stored.apply(&fx);
    let history = context.execute(&mut Rows(&mut stored.store)).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].role, Role::User);
    let s = session_of(&mut c, r.session_id);
    assert_eq!(s.title, "hello there");
    assert_eq!(s.status, SessionStatus::Running);
    assert_eq!(s.message_count, 1);
}

#[test]
fn seq_starts_at_one_and_grows_by_one_in_decision_order() {
    let mut c = core();
    c.heartbeat(at(0));
    send(&mut c, None, "hi", 1);
    let seqs: Vec<u64> = c
        .take_effects()
        .iter()
        .filter_map(|e| match e {
            Effect::Publish(p) => Some(p.seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
    assert_eq!(c.seq(), 7);
}

#[test]
fn a_turn_streams_tools_and_ends_in_the_guaranteed_order() {
    let mut c = core();
    let r = send(&mut c, None, "hi", 1);
    c.take_effects();
    let t = r.turn_id;
    c.model_event(t, usage(1, 0), at(2));
    c.model_event(
        t,
        ModelEvent::ToolStart {
            call_id: "c1".into(),
            tool_name: "clock".into(),
            params: "{}".into(),
        },
        at(2),
    );
    c.model_event(
        t,
        ModelEvent::ToolEnd {
            call_id: "c1".into(),
            is_error: false,
            result: "noon".into(),
        },
        at(2),
    );
    c.model_event(t, ModelEvent::Token("Hel".into()), at(2));
    c.model_event(t, ModelEvent::Token("lo".into()), at(3));
    c.model_event(t, usage(1, 2), at(3));
    c.model_event(t, ModelEvent::Finished, at(4));
    let fx = c.take_effects();
    assert_eq!(
        trace(&fx),
        [
            "tool.args",
            "tool.start",
            "VERDICT",
            "tool.end",
            "message.append",
            "llm.token",
            "llm.token",
            "llm.end",
            "message.append",
            "session.update"
        ]
    );
    let mut ev = events(&fx);
    // The model streamed no arguments: they come whole, just before the call starts.
    let Event::ToolArgs(args) = ev.remove(0) else {
        panic!()
    };
    assert_eq!((args.index, args.delta.as_str()), (0, "{}"));
    // The tool result is a `tool` message of its own.
    let Event::MessageAppend(tool_msg) = ev.remove(2) else {
        panic!()
    };
    assert_eq!(tool_msg.role, Role::Tool);
    assert_eq!(tool_msg.content, "noon");
    let info = tool_msg.tool.as_ref().unwrap();
    assert_eq!(
        (
            info.call_id.as_str(),
            info.tool_name.as_str(),
            info.is_error
        ),
        ("c1", "clock", false)
    );
    let Event::LlmToken(tok) = ev[3] else {
        panic!()
    };
    assert_eq!((tok.index, tok.token.as_str()), (1, "lo"));
    let Event::LlmEnd(end) = ev[4] else { panic!() };
    assert_eq!(
        (end.tokens_in, end.tokens_out, end.reason),
        (1, 2, EndReason::Completed)
    );
    let want = TurnUsage {
        input_tokens: 1,
        output_tokens: 2,
        context_tokens: 3,
        ..TurnUsage::default()
    };
    assert_eq!(end.usage, want);
    let Event::MessageAppend(m) = ev[5] else {
        panic!()
    };
    assert_eq!((m.role, m.content.as_str()), (Role::Assistant, "Hello"));
    assert_eq!(m.status, MessageStatus::Complete);
    let s = session_of(&mut c, r.session_id);
    assert_eq!(
        (s.status, s.message_count),
        (SessionStatus::Idle, 3),
        "user, tool, assistant"
    );
}

#[test]
fn second_send_while_running_is_busy_and_changes_nothing() {
    let mut c = core();
    let r = send(&mut c, None, "one", 1);
    c.take_effects();
    let err = c
        .reply(
            Call::MessageSend(MessageSend {
                session_id: Some(r.session_id.to_string()),
                content: "two".into(),
                request_id: None,
                model: None,
                when_busy: Default::default(),
            }),
            &ctx(2),
        )
        .unwrap_err();
    assert_eq!(
        err,
        CoreError::SessionBusy {
            session_id: r.session_id.to_string(),
            turn_id: r.turn_id
        }
    );
    assert!(c.take_effects().is_empty());
}

#[test]
fn interrupt_ends_the_turn_once_keeps_partial_text_and_ignores_late_output() {
    let mut c = core();
    let r = send(&mut c, None, "hi", 1);
    // An early usage report must not make tokens_out lag behind what streamed.
    c.model_event(r.turn_id, usage(1, 0), at(2));
    c.model_event(r.turn_id, ModelEvent::Token("par".into()), at(2));
    c.model_event(
        r.turn_id,
        ModelEvent::ToolStart {
            call_id: "c".into(),
            tool_name: "clock".into(),
            params: "{}".into(),
        },
        at(2),
    );
    // The text before the tool call closed as a complete assistant message of its own.
    let fx = c.take_effects();
    let seg = events(&fx)
        .into_iter()
        .find_map(|e| match e {
            Event::MessageAppend(m) if m.role == Role::Assistant => Some(m.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (seg.role, seg.content.as_str(), seg.status),
        (Role::Assistant, "par", MessageStatus::Complete)
    );
    let interrupt = || Call::SessionInterrupt {
        session_id: r.session_id.to_string(),
        clear_queue: false,
    };
    let Reply::Interrupt(ir) = c.reply(interrupt(), &ctx(3)).unwrap() else {
        panic!()
    };
    assert!(ir.interrupted);
    let fx = c.take_effects();
    assert_eq!(
        trace(&fx),
        [
            "CANCEL",
            "tool.end",
            "message.append",
            "llm.end",
            "session.update"
        ]
    );
    let ev = events(&fx);
    let Event::ToolEnd(te) = ev[0] else { panic!() };
    assert!(te.is_error);
    let Event::MessageAppend(m) = ev[1] else {
        panic!()
    };
    assert_eq!(
        (m.role, m.tool.as_ref().unwrap().is_error),
        (Role::Tool, true)
    );
    let Event::LlmEnd(end) = ev[2] else { panic!() };
    assert_eq!((end.reason, end.tokens_out), (EndReason::Interrupted, 1));

    // Late output from the cancelled model and a second interrupt change nothing.
    c.model_event(r.turn_id, ModelEvent::Token("tial".into()), at(4));
    c.model_event(r.turn_id, ModelEvent::Finished, at(4));
    let Reply::Interrupt(ir) = c.reply(interrupt(), &ctx(5)).unwrap() else {
        panic!()
    };
    assert!(!ir.interrupted);
    assert!(c.take_effects().is_empty());
    // And the session takes a new message.
    send(&mut c, Some(r.session_id), "again", 6);
}

#[test]
fn model_failure_ends_with_error_and_no_message_when_nothing_streamed() {
    let mut c = core();
    let r = send(&mut c, None, "hi", 1);
    c.take_effects();
    c.model_event(r.turn_id, ModelEvent::Failed("boom".into()), at(2));
    let fx = c.take_effects();
    assert_eq!(trace(&fx), ["llm.end", "session.update"]);
    let Event::LlmEnd(end) = events(&fx)[0] else {
        panic!()
    };
    assert_eq!(end.reason, EndReason::Error);
    assert_eq!(end.error.as_deref(), Some("boom"));
}

#[test]
fn request_id_is_idempotent_and_bounded() {
    let mut c = core();
    let call = |rid: &str| {
        Call::MessageSend(MessageSend {
            session_id: None,
            content: "x".into(),
            request_id: Some(rid.into()),
            model: None,
            when_busy: Default::default(),
        })
    };
    let first = c.reply(call("a"), &ctx(1)).unwrap();
    c.take_effects();
    assert_eq!(c.reply(call("a"), &ctx(2)).unwrap(), first);
    assert!(c.take_effects().is_empty(), "a retry starts nothing");
    // Capacity is 2 in this core: "a" is forgotten after two newer keys.
    c.reply(call("b"), &ctx(3)).unwrap();
    c.reply(call("c"), &ctx(4)).unwrap();
    c.take_effects();
    assert_ne!(c.reply(call("a"), &ctx(5)).unwrap(), first);
}

#[test]
fn unknown_and_malformed_session_ids_are_not_found() {
    let mut c = core();
    for raw in ["nope", "00000000-0000-0000-0000-00000000beef", ""] {
        for call in [
            Call::SessionGet {
                session_id: raw.into(),
            },
            Call::SessionDelete {
                session_id: raw.into(),
            },
            Call::SessionActivate {
                session_id: raw.into(),
            },
            Call::SessionInterrupt {
                session_id: raw.into(),
                clear_queue: false,
            },
            Call::MessageList {
                session_id: raw.into(),
                page: Default::default(),
            },
        ] {
            assert_eq!(
                c.reply(call, &ctx(0)).unwrap_err(),
                CoreError::SessionNotFound(raw.into())
            );
        }
    }
    assert!(c.take_effects().is_empty());
}

#[test]
fn activation_publishes_only_on_change() {
    let mut c = core();
    let Reply::Session(a) = c
        .reply(Call::SessionCreate { title: None }, &ctx(1))
        .unwrap()
    else {
        panic!()
    };
    let Reply::Session(b) = c
        .reply(
            Call::SessionCreate {
                title: Some(" B ".into()),
            },
            &ctx(2),
        )
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(a.title, session::DEFAULT_TITLE);
    assert_eq!(b.title, "B");
    assert_eq!(
        trace(&c.take_effects()),
        [
            "session.update",
            "session.list",
            "session.activated",
            "session.update",
            "session.list"
        ]
    );
    let activate = |id: SessionId| Call::SessionActivate {
        session_id: id.to_string(),
    };
    c.reply(activate(a.id), &ctx(3)).unwrap();
    assert!(c.take_effects().is_empty());
    c.reply(activate(b.id), &ctx(3)).unwrap();
    assert_eq!(trace(&c.take_effects()), ["session.activated"]);
    let Reply::StateSync(sync) = c
        .reply(Call::StateSync { project_id: None }, &ctx(4))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(sync.active_session_id, Some(b.id));
    assert_eq!(sync.seq, c.seq());
    assert_eq!(sync.sessions.len(), 2);
}

#[test]
fn deleting_a_running_session_ends_its_turn_before_session_deleted() {
    let mut c = core();
    let r = send(&mut c, None, "hi", 1);
    c.take_effects();
    c.reply(
        Call::SessionDelete {
            session_id: r.session_id.to_string(),
        },
        &ctx(2),
    )
    .unwrap();
    let fx = c.take_effects();
    assert_eq!(
        trace(&fx),
        [
            "CANCEL",
            "llm.end",
            "session.update",
            "session.deleted",
            "session.list"
        ]
    );
    c.model_event(r.turn_id, ModelEvent::Token("late".into()), at(3));
    assert!(
        c.take_effects().is_empty(),
        "no event after session.deleted"
    );
    let Reply::StateSync(sync) = c
        .reply(Call::StateSync { project_id: None }, &ctx(4))
        .unwrap()
    else {
        panic!()
    };
    assert!(sync.sessions.is_empty());
    assert_eq!(sync.active_session_id, None);
}

#[test]
fn shutdown_ends_every_turn_then_announces_and_refuses_new_work() {
    let mut c = core();
    let a = send(&mut c, None, "a", 1);
    let b = send(&mut c, None, "b", 1);
    c.take_effects();
    c.shutdown("signal", at(9));
    let fx = c.take_effects();
    let ends: Vec<TurnId> = events(&fx)
        .iter()
        .filter_map(|e| match e {
            Event::LlmEnd(p) => {
                assert_eq!(p.reason, EndReason::Shutdown);
                Some(p.turn_id)
            }
            _ => None,
        })
        .collect();
    assert_eq!(ends, [a.turn_id, b.turn_id]);
    assert_eq!(trace(&fx).last().unwrap(), "instance.shutdown");
    let err = c
        .reply(
            Call::MessageSend(MessageSend {
                session_id: None,
                content: "late".into(),
                request_id: None,
                model: None,
                when_busy: Default::default(),
            }),
            &ctx(10),
        )
        .unwrap_err();
    assert_eq!(err, CoreError::ShuttingDown);
    let sid = a.session_id.to_string();
    for call in [
        Call::SessionCreate { title: None },
        Call::SessionDelete {
            session_id: sid.clone(),
        },
        Call::SessionActivate {
            session_id: sid.clone(),
        },
    ] {
        assert_eq!(
            c.reply(call, &ctx(10)).unwrap_err(),
            CoreError::ShuttingDown
        );
    }
    // Reads still answer, interrupt finds nothing running, and nothing is published.
    c.reply(Call::StateSync { project_id: None }, &ctx(10))
        .unwrap();
    let Reply::Interrupt(ir) = c
        .reply(
            Call::SessionInterrupt {
                session_id: sid,
                clear_queue: false,
            },
            &ctx(10),
        )
        .unwrap()
    else {
        panic!()
    };
    assert!(!ir.interrupted);
    assert!(
        c.take_effects().is_empty(),
        "instance.shutdown is the last event"
    );
}

#[test]
fn heartbeat_and_ping_report_uptime_go_style() {
    let mut c = core();
    c.heartbeat(at(3723));
    let fx = c.take_effects();
    let Event::InstanceHeartbeat(hb) = events(&fx)[0] else {
        panic!()
    };
    assert_eq!(hb.uptime, "1h2m3s");
    assert_eq!(hb.session_count, 0);
    let Reply::Ping(p) = c.reply(Call::InstancePing, &ctx(61)).unwrap() else {
        panic!()
    };
    assert_eq!((p.status.as_str(), p.uptime.as_str()), ("ok", "1m1s"));
}

#[test]
fn message_list_keeps_order_and_turn_links() {
    let mut c = core();
    let mut stored = Stored::default();
    let r = send(&mut c, None, "q1", 1);
    c.model_event(r.turn_id, ModelEvent::Token("a1".into()), at(2));
    c.model_event(r.turn_id, ModelEvent::Finished, at(2));
    let r2 = send(&mut c, Some(r.session_id), "q2", 3);
    stored.sync(&mut c);
    // The second turn's model is given the whole conversation, read back from the store.
    let history = stored.started.pop().unwrap();
    assert_eq!(
        history
            .iter()
            .map(|h| h.content.as_str())
            .collect::<Vec<_>>(),
        ["q1", "a1", "q2"]
    );
    let Reply::MessageList(list) = stored
        .call(
            &mut c,
            Call::MessageList {
                session_id: r.session_id.to_string(),
                page: Default::default(),
            },
            &ctx(4),
        )
        .unwrap()
    else {
        panic!()
    };
    let got: Vec<(&str, Role)> = list
        .messages
        .iter()
        .map(|m| (m.content.as_str(), m.role))
        .collect();
    assert_eq!(
        got,
        [
            ("q1", Role::User),
            ("a1", Role::Assistant),
            ("q2", Role::User)
        ]
    );
    assert_eq!(list.messages[2].turn_id, Some(r2.turn_id));
}

#[test]
fn unmatched_tool_end_is_dropped() {
    let mut c = core();
    let r = send(&mut c, None, "hi", 1);
    c.take_effects();
    c.model_event(
        r.turn_id,
        ModelEvent::ToolEnd {
            call_id: "never-started".into(),
            is_error: false,
            result: "x".into(),
        },
        at(2),
    );
    assert!(c.take_effects().is_empty());
}

#[test]
fn send_persists_the_user_message_turn_and_session_before_anything_shows() {
    let mut c = core();
    let call = Call::MessageSend(MessageSend {
        session_id: None,
        content: "hi".into(),
        request_id: Some("k1".into()),
        model: None,
        when_busy: Default::default(),
    });
    let Reply::Send(r) = c.reply(call, &ctx(1)).unwrap() else {
        panic!()
    };
    let ch = changes(&c.take_effects());
    assert!(
        ch.iter().all(|(_, gating)| *gating),
        "all of a send gates its reply"
    );
    let kinds: Vec<&str> = ch
        .iter()
        .map(|(c, _)| match c {
            Change::SessionUpsert(_) => "session",
            Change::ActiveSession(_) => "active",
            Change::MessageUpsert(_) => "message",
            Change::TurnStart { .. } => "turn",
            Change::RequestKey { .. } => "key",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        ["session", "active", "message", "turn", "session", "key"]
    );
    let Change::MessageUpsert(m) = &ch[2].0 else {
        panic!()
    };
    assert_eq!(
        (m.id, m.position, m.status),
        (r.message_id, 0, StoredStatus::Complete)
    );
}

#[test]
fn streaming_replies_are_checkpointed_quietly_and_committed_at_the_end() {
    let mut c = core();
    let r = send(&mut c, None, "hi", 0);
    c.take_effects();
    let t = r.turn_id;
    c.model_event(t, ModelEvent::Token("a".into()), at(0));
    assert!(
        changes(&c.take_effects()).is_empty(),
        "no checkpoint before the interval"
    );
    c.model_event(t, ModelEvent::Token("b".into()), at(1));
    let ch = changes(&c.take_effects());
    assert_eq!(ch.len(), 1);
    let (Change::MessageUpsert(cp), false) = &ch[0] else {
        panic!("{ch:?}")
    };
    assert_eq!(
        (cp.content.as_str(), cp.status, cp.position),
        ("ab", StoredStatus::Streaming, 1)
    );
    // The tick checkpoints text that arrived since, once the interval has passed again.
    c.model_event(t, ModelEvent::Token("c".into()), at(1));
    c.take_effects();
    c.checkpoint(at(1));
    assert!(changes(&c.take_effects()).is_empty());
    c.checkpoint(at(2));
    let ch = changes(&c.take_effects());
    let (Change::MessageUpsert(cp2), false) = &ch[0] else {
        panic!("{ch:?}")
    };
    assert_eq!((cp2.id, cp2.content.as_str()), (cp.id, "abc"));
    c.checkpoint(at(9));
    assert!(changes(&c.take_effects()).is_empty(), "nothing new to save");

    c.model_event(t, ModelEvent::Finished, at(3));
    let ch = changes(&c.take_effects());
    assert!(ch.iter().all(|(_, g)| *g));
    let Change::TurnEnd(end) = &ch[1].0 else {
        panic!("{ch:?}")
    };
    assert_eq!(
        (end.status, end.reason.as_str()),
        (TurnStatus::Completed, "completed")
    );
    let Change::MessageUpsert(last) = &ch[0].0 else {
        panic!("{ch:?}")
    };
    assert_eq!(
        (last.id, last.status, last.content.as_str()),
        (cp.id, StoredStatus::Complete, "abc")
    );
    assert!(matches!(ch[2].0, Change::SessionUpsert(_)));
}

#[test]
fn tool_calls_are_recorded_without_gating() {
    let mut c = core();
    let r = send(&mut c, None, "hi", 0);
    c.take_effects();
    c.model_event(
        r.turn_id,
        ModelEvent::ToolStart {
            call_id: "c".into(),
            tool_name: "clock".into(),
            params: "{}".into(),
        },
        at(0),
    );
    c.model_event(
        r.turn_id,
        ModelEvent::ToolEnd {
            call_id: "c".into(),
            is_error: false,
            result: "now".into(),
        },
        at(0),
    );
    let ch = changes(&c.take_effects());
    assert!(matches!(&ch[0], (Change::ToolCallStart { .. }, false)));
    assert!(matches!(
        &ch[1],
        (
            Change::ToolCallEnd {
                is_error: false,
                ..
            },
            false
        )
    ));
}

#[test]
fn restore_closes_crashed_turns_and_keeps_their_partial_replies() {
    use super::persist::{MessageRecord, OpenTurn, SessionRecord, Snapshot};
    use crate::protocol::ids::MessageId;
    let sid = SessionId(Uuid::from_u128(100));
    let tid = TurnId(Uuid::from_u128(101));
    let msg = |n: u128, pos, role, text: &str, status| MessageRecord {
        id: MessageId(Uuid::from_u128(n)),
        session_id: sid,
        position: pos,
        turn_id: Some(tid),
        role,
        content: text.into(),
        created_at: at(0),
        status,
        tool: None,
        author: None,
    };
    let kept = SendResult {
        ok: true,
        session_id: sid,
        message_id: MessageId(Uuid::from_u128(102)),
        turn_id: tid,
        queued: false,
        position: None,
    };
    // The store counts the user's question; the reply it checkpointed comes as streaming.
    let snapshot = Snapshot {
        sessions: vec![StoredSession {
            record: SessionRecord {
                id: sid,
                title: "t".into(),
                created_at: at(0),
                updated_at: at(1),
                model: None,
                system_prompt: None,
                usage: restored_usage(),
            },
            message_count: 1,
            grants: vec![],
        }],
        active_session: Some(sid),
        open_turns: vec![OpenTurn {
            id: tid,
            session_id: sid,
            started_at: at(0),
        }],
        streaming: vec![msg(
            103,
            1,
            Role::Assistant,
            "half an ans",
            StoredStatus::Streaming,
        )],
        request_keys: vec![("k".into(), kept.clone())],
        pending_hitl: vec![],
        queued: vec![],
    };
    let mut c = core();
    assert_eq!(c.restore(snapshot, at(50)), 1);
    let ch = changes(&c.take_effects());
    let (Change::MessageUpsert(m), true) = &ch[0] else {
        panic!("{ch:?}")
    };
    assert_eq!(
        (m.status, m.content.as_str()),
        (StoredStatus::Interrupted, "half an ans")
    );
    let (Change::TurnEnd(end), true) = &ch[1] else {
        panic!("{ch:?}")
    };
    assert_eq!(
        (end.id, end.status, end.reason.as_str()),
        (tid, TurnStatus::Aborted, "crashed")
    );

    let s = session_of(&mut c, sid);
    assert_eq!((s.status, s.message_count), (SessionStatus::Idle, 2));
    // The crashed turn's figures died with it: the totals are as stored.
    assert_eq!(s.usage, restored_usage());
    let Reply::StateSync(sync) = c
        .reply(Call::StateSync { project_id: None }, &ctx(51))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(sync.active_session_id, Some(sid));
    assert_eq!(
        sync.seq, 0,
        "a restored instance starts its event sequence afresh"
    );
    let Reply::Info(info) = c.reply(Call::InstanceInfo, &ctx(51)).unwrap() else {
        panic!()
    };
    assert_eq!(info.recovered_turns, 1);
    // The stored idempotency key answers a retry without running anything.
    let retry = Call::MessageSend(MessageSend {
        session_id: None,
        content: "question".into(),
        request_id: Some("k".into()),
        model: None,
        when_busy: Default::default(),
    });
    assert_eq!(c.reply(retry, &ctx(52)).unwrap(), Reply::Send(kept));
    assert!(c.take_effects().is_empty());
    // And the session takes a new message.
    send(&mut c, Some(sid), "again", 53);
}

#[test]
fn llm_end_is_published_after_the_complete_reply_is_queued_for_the_store() {
    let mut c = core();
    let r = send(&mut c, None, "hi", 0);
    c.take_effects();
    c.model_event(r.turn_id, ModelEvent::Token("done".into()), at(0));
    c.take_effects();
    c.model_event(r.turn_id, ModelEvent::Finished, at(0));
    let fx = c.take_effects();
    let end_at = fx
        .iter()
        .position(|e| matches!(e, Effect::Publish(p) if p.event.topic() == "llm.end"))
        .unwrap();
    let reply_saved_at = fx
        .iter()
        .position(|e| {
            matches!(e, Effect::Persist { change: Change::MessageUpsert(m), gating: true }
                if m.status == StoredStatus::Complete)
        })
        .unwrap();
    assert!(reply_saved_at < end_at, "{fx:?}");
    assert!(fx[end_at..]
        .iter()
        .all(|e| !matches!(e, Effect::Persist { .. })));
}

#[test]
fn interrupting_mid_text_keeps_the_segment_as_interrupted() {
    let mut c = core();
    let r = send(&mut c, None, "hi", 1);
    c.model_event(r.turn_id, ModelEvent::Token("par".into()), at(2));
    c.take_effects();
    c.reply(
        Call::SessionInterrupt {
            session_id: r.session_id.to_string(),
            clear_queue: false,
        },
        &ctx(3),
    )
    .unwrap();
    let fx = c.take_effects();
    assert_eq!(
        trace(&fx),
        ["CANCEL", "llm.end", "message.append", "session.update"]
    );
    let Event::MessageAppend(m) = events(&fx)[1] else {
        panic!()
    };
    assert_eq!(
        (m.role, m.content.as_str(), m.status),
        (Role::Assistant, "par", MessageStatus::Interrupted)
    );
}

#[test]
fn text_tool_text_becomes_three_messages_in_order() {
    let mut c = core();
    let r = send(&mut c, None, "q", 0);
    let t = r.turn_id;
    c.model_event(t, ModelEvent::Token("let me check".into()), at(0));
    c.model_event(
        t,
        ModelEvent::ToolStart {
            call_id: "a".into(),
            tool_name: "clock".into(),
            params: "{}".into(),
        },
        at(0),
    );
    c.model_event(
        t,
        ModelEvent::ToolEnd {
            call_id: "a".into(),
            is_error: false,
            result: "noon".into(),
        },
        at(0),
    );
    c.model_event(t, ModelEvent::Token("it is noon".into()), at(0));
    c.model_event(t, ModelEvent::Finished, at(0));
    let mut stored = Stored::default();
    let Reply::MessageList(list) = stored
        .call(
            &mut c,
            Call::MessageList {
                session_id: r.session_id.to_string(),
                page: Default::default(),
            },
            &ctx(1),
        )
        .unwrap()
    else {
        panic!()
    };
    let got: Vec<(Role, &str)> = list
        .messages
        .iter()
        .map(|m| (m.role, m.content.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (Role::User, "q"),
            (Role::Assistant, "let me check"),
            (Role::Tool, "noon"),
            (Role::Assistant, "it is noon")
        ]
    );
}

#[test]
fn a_promoted_instance_announces_itself_and_every_heartbeat_names_its_predecessor() {
    let mut c = core();
    let prev = InstanceId(Uuid::from_u128(0xdead));
    c.heartbeat(at(0));
    c.promoted(Some(prev), at(0));
    c.heartbeat(at(5));
    let fx = c.take_effects();
    assert_eq!(
        trace(&fx),
        [
            "instance.heartbeat",
            "instance.promoted",
            "instance.heartbeat"
        ]
    );
    let ev = events(&fx);
    let Event::InstancePromoted(p) = ev[1] else {
        panic!()
    };
    assert_eq!(p.previous_instance_id, Some(prev));
    let Event::InstanceHeartbeat(hb) = ev[2] else {
        panic!()
    };
    assert_eq!(hb.promoted_from, Some(prev));
    let Reply::Info(info) = c.reply(Call::InstanceInfo, &ctx(6)).unwrap() else {
        panic!()
    };
    assert_eq!(info.promoted_from, Some(prev));
}

/// Each call runs in a `request` span naming its method, and the session and turn it is about
/// (issue 16), so a log line says which request it belongs to.
#[test]
fn each_call_logs_in_a_span_with_its_method_session_and_turn() {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let mut c = core();
    tracing::subscriber::with_default(subscriber, || {
        let send = br#"{"jsonrpc":"2.0","id":1,"method":"message.send","params":{"content":"hi"}}"#;
        let unknown =
            br#"{"jsonrpc":"2.0","id":2,"method":"session.get","params":{"session_id":"nope"}}"#;
        for body in [&send[..], &unknown[..]] {
            let crate::protocol::jsonrpc::Incoming::Single(Ok(req)) =
                crate::protocol::jsonrpc::decode(body)
            else {
                panic!("a request");
            };
            c.answer(crate::protocol::jsonrpc::Calls::Single(req), &ctx(1));
        }
    });
    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].contains("request{method=\"message.send\""),
        "{log}"
    );
    assert!(lines[0].contains("turn_id="), "the turn it started: {log}");
    assert!(lines[0].contains("answered"), "{log}");
    assert!(
        lines[1].contains("request{method=\"session.get\" session_id=\"nope\"}"),
        "{log}"
    );
    assert!(lines[1].contains("refused code=-32001"), "{log}");
}
