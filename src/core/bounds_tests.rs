//! Core unit tests for what bounds the server's memory and what a failing store changes: events
//! of bounded size (`session.list`, clipped texts, split tokens), `message.get`, and the degraded
//! mode (changes refused, reads and heartbeats going on, `instance.status` once per change).

use super::testing::Stored;
use super::tests::{at, core, ctx, send};
use super::*;
use crate::protocol::events::{Event, Health};
use crate::protocol::limits::{MAX_EVENT_TEXT_BYTES, MAX_TOKEN_BYTES, SESSION_LIST_EVENT_MAX};
use crate::protocol::methods::{Call, MessageSend, Reply};

fn published(c: &mut Core) -> Vec<Event> {
    events_of(c.take_effects())
}

fn events_of(effects: Vec<Effect>) -> Vec<Event> {
    effects
        .into_iter()
        .filter_map(|e| match e {
            Effect::Publish(p) => Some(p.event),
            _ => None,
        })
        .collect()
}

fn create(c: &mut Core) {
    c.reply(Call::SessionCreate { title: None }, &ctx(1))
        .expect("created");
}

#[test]
fn session_list_events_carry_the_newest_sessions_only() {
    let mut c = core();
    for _ in 0..SESSION_LIST_EVENT_MAX {
        create(&mut c);
    }
    let last_list = |events: Vec<Event>| {
        events
            .into_iter()
            .filter_map(|e| match e {
                Event::SessionList(l) => Some(l),
                _ => None,
            })
            .next_back()
            .expect("a session.list")
    };
    let list = last_list(published(&mut c));
    assert_eq!(list.sessions.len(), SESSION_LIST_EVENT_MAX);
    assert!(!list.truncated);
    create(&mut c);
    let list = last_list(published(&mut c));
    assert_eq!(list.sessions.len(), SESSION_LIST_EVENT_MAX);
    assert_eq!(list.session_count, SESSION_LIST_EVENT_MAX as u64 + 1);
    assert!(list.truncated);
    // The method still lists every session.
    let Ok(Reply::SessionList(all)) = c.reply(Call::SessionList, &ctx(2)) else {
        panic!("session.list failed")
    };
    assert_eq!(all.sessions.len(), SESSION_LIST_EVENT_MAX + 1);
}

#[test]
fn long_texts_are_clipped_in_events_and_whole_in_the_store() {
    let mut c = core();
    let mut stored = Stored::default();
    let content = format!("{}é", "a".repeat(MAX_EVENT_TEXT_BYTES - 1));
    let sent = send(&mut c, None, &content, 1);
    let append = events_of(stored.sync(&mut c))
        .into_iter()
        .find_map(|e| match e {
            Event::MessageAppend(m) => Some(m),
            _ => None,
        })
        .expect("message.append");
    // Cut on the character boundary before the two-byte é.
    assert_eq!(append.content.len(), MAX_EVENT_TEXT_BYTES - 1);
    assert!(append.content_truncated);
    assert_eq!(append.content_bytes, Some(content.len() as u64));
    let got = stored
        .call(
            &mut c,
            Call::MessageGet {
                session_id: sent.session_id.to_string(),
                message_id: sent.message_id.to_string(),
            },
            &ctx(2),
        )
        .expect("message.get");
    let Reply::Message(m) = got else {
        panic!("{got:?}")
    };
    assert_eq!(m.content, content, "the message itself is whole");
    let missing = stored.call(
        &mut c,
        Call::MessageGet {
            session_id: sent.session_id.to_string(),
            message_id: "nope".into(),
        },
        &ctx(2),
    );
    assert!(matches!(
        missing,
        Err(CoreError::MessageNotFound {
            field: "message_id",
            ..
        })
    ));
}

#[test]
fn a_huge_model_token_is_published_in_pieces_that_add_up() {
    let mut c = core();
    let sent = send(&mut c, None, "hi", 1);
    c.take_effects();
    let token = "é".repeat(MAX_TOKEN_BYTES); // twice the bound in bytes
    c.model_event(sent.turn_id, ModelEvent::Token(token.clone()), at(2));
    let pieces: Vec<_> = published(&mut c)
        .into_iter()
        .filter_map(|e| match e {
            Event::LlmToken(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(pieces.len(), 2);
    assert!(pieces.iter().all(|t| t.token.len() <= MAX_TOKEN_BYTES));
    assert_eq!(
        pieces.iter().map(|t| t.index).collect::<Vec<_>>(),
        [0, 1],
        "indexes stay consecutive"
    );
    let joined: String = pieces.iter().map(|t| t.token.as_str()).collect();
    assert_eq!(joined, token);
}

#[test]
fn a_failing_store_refuses_changes_but_reads_and_heartbeats_go_on() {
    let mut c = core();
    let mut stored = Stored::default();
    let sent = send(&mut c, None, "hello", 1);
    c.model_event(sent.turn_id, ModelEvent::Finished, at(1));
    stored.sync(&mut c);

    c.store_health(Some("database or disk is full".into()), at(2));
    let status = published(&mut c);
    assert!(
        matches!(&status[..], [Event::InstanceStatus(s)] if s.status == Health::Degraded
            && s.reason.as_deref() == Some("database or disk is full") && s.since == Some(at(2))),
        "{status:?}"
    );
    // A new reason is not a new status: no second event, but `since` stays.
    c.store_health(Some("disk I/O error".into()), at(3));
    assert!(published(&mut c).is_empty());

    let session = sent.session_id.to_string();
    let writes = [
        Call::SessionCreate { title: None },
        Call::SessionDelete {
            session_id: session.clone(),
        },
        Call::SessionActivate {
            session_id: session.clone(),
        },
        Call::MessageSend(MessageSend {
            session_id: Some(session.clone()),
            content: "more".into(),
            request_id: None,
            model: None,
            when_busy: Default::default(),
        }),
    ];
    for call in writes {
        let e = c.reply(call.clone(), &ctx(4)).expect_err("refused");
        assert_eq!(
            e,
            CoreError::StoreUnavailable("disk I/O error".into()),
            "{call:?}"
        );
    }
    assert!(c.take_effects().is_empty(), "a refusal changes nothing");

    for call in [
        Call::InstancePing,
        Call::SessionList,
        Call::SessionGet {
            session_id: session.clone(),
        },
        Call::MessageList {
            session_id: session.clone(),
            page: Default::default(),
        },
    ] {
        stored
            .call(&mut c, call.clone(), &ctx(4))
            .expect("reads answer");
    }
    let Ok(Reply::Info(info)) = c.reply(Call::InstanceInfo, &ctx(4)) else {
        panic!("info")
    };
    assert_eq!(info.status, Health::Degraded);
    let degraded = info.degraded.expect("degraded info");
    assert_eq!(degraded.since, at(2));
    c.heartbeat(at(5));
    let beat = published(&mut c);
    assert!(
        matches!(&beat[..], [Event::InstanceHeartbeat(h)] if h.status == Health::Degraded
            && h.reason.as_deref() == Some("disk I/O error")),
        "{beat:?}"
    );

    c.store_health(None, at(6));
    let status = published(&mut c);
    assert!(
        matches!(&status[..], [Event::InstanceStatus(s)] if s.status == Health::Ok
            && s.reason.is_none()),
        "{status:?}"
    );
    c.reply(Call::SessionCreate { title: None }, &ctx(7))
        .expect("changes accepted again");
}

#[test]
fn a_model_that_will_not_stop_is_cut_short_at_the_turn_bound() {
    use crate::protocol::events::EndReason;
    use crate::protocol::limits::MAX_TURN_TEXT_BYTES;
    let mut c = core();
    let sent = send(&mut c, None, "go on forever", 1);
    c.take_effects();
    let piece = "x".repeat(MAX_TOKEN_BYTES);
    for _ in 0..MAX_TURN_TEXT_BYTES / MAX_TOKEN_BYTES {
        c.model_event(sent.turn_id, ModelEvent::Token(piece.clone()), at(2));
    }
    c.take_effects();
    // Exactly at the bound; one more byte ends the turn.
    c.model_event(sent.turn_id, ModelEvent::Token("y".into()), at(3));
    let effects = c.take_effects();
    assert!(effects
        .iter()
        .any(|e| matches!(e, Effect::Turn(TurnEffect::Cancel(t)) if *t == sent.turn_id)));
    let events: Vec<&Event> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Publish(p) => Some(&p.event),
            _ => None,
        })
        .collect();
    let end = events
        .iter()
        .find_map(|e| match e {
            Event::LlmEnd(end) => Some(end),
            _ => None,
        })
        .expect("llm.end");
    assert_eq!(end.reason, EndReason::Error);
    assert!(
        end.error.as_deref().unwrap().contains("cut short"),
        "{end:?}"
    );
    let append = events
        .iter()
        .find_map(|e| match e {
            Event::MessageAppend(m) => Some(m),
            _ => None,
        })
        .expect("the reply so far");
    assert_eq!(append.content_bytes, Some(MAX_TURN_TEXT_BYTES as u64));
    // Later output of that turn is ignored.
    c.model_event(sent.turn_id, ModelEvent::Token("z".into()), at(4));
    assert!(c.take_effects().is_empty());
}
