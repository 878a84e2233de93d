//! Core unit tests for clients as peers: hello and versions, presence, authors, and the calls of
//! client-run tools (claim races, results, timeouts, leaving, approvals). No sockets, no clock.

use serde_json::json;

use super::effects::{Effect, ModelEvent, TurnEffect, Verdict};
use super::error::CoreError;
use super::policy::Policy;
use super::tests::{at, core, send};
use super::*;
use crate::protocol::clients::{
    CallRef, ClientToolSpec, Executor, Hello, LeaveReason, ToolResultParams,
};
use crate::protocol::events::Event;
use crate::protocol::hitl::{Decision, Respond};
use crate::protocol::ids::TurnId;
use crate::protocol::methods::{Call, DropCounters, MessageSend, Reply, WhenBusy};

fn on(peer: &[u8], secs: i64) -> CallContext {
    CallContext {
        peer: peer.to_vec(),
        now: at(secs),
        drops: DropCounters::default(),
        transport: Default::default(),
    }
}

fn tool(name: &str) -> ClientToolSpec {
    ClientToolSpec {
        name: name.into(),
        description: "what the editor has open".into(),
        parameters: json!({"type": "object", "properties": {"limit": {"type": "integer"}}}),
    }
}

fn hello(id: &str, versions: &[u32], tools: &[&str]) -> Call {
    Call::ClientHello(Box::new(Hello {
        client_id: id.into(),
        name: format!("{id} app"),
        version: Some("1.0".into()),
        protocol_versions: versions.to_vec(),
        capabilities: Default::default(),
        tools: tools.iter().map(|t| tool(t)).collect(),
    }))
}

fn events(c: &mut Core) -> Vec<Event> {
    c.take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Publish(p) => Some(p.event),
            _ => None,
        })
        .collect()
}

fn verdicts(effects: &[Effect]) -> Vec<(String, Verdict)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Turn(TurnEffect::Verdict {
                call_id, verdict, ..
            }) => Some((call_id.0.clone(), verdict.clone())),
            _ => None,
        })
        .collect()
}

fn claim(c: &mut Core, peer: &[u8], call_id: &str, secs: i64) -> Result<Reply, CoreError> {
    let r = CallRef {
        call_id: call_id.into(),
        turn_id: None,
    };
    c.reply(Call::ToolClaim(r), &on(peer, secs))
}

fn result(c: &mut Core, peer: &[u8], call_id: &str, text: &str) -> Result<Reply, CoreError> {
    let p = ToolResultParams {
        call: CallRef {
            call_id: call_id.into(),
            turn_id: None,
        },
        result: text.into(),
        is_error: false,
    };
    c.reply(Call::ToolResult(p), &on(peer, 5))
}

/// A turn whose model calls the client tool `open_editors` as `call_1`.
fn turn_calling(c: &mut Core, secs: i64) -> TurnId {
    let t = send(c, None, "what is open?", secs).turn_id;
    c.model_event(
        t,
        ModelEvent::ToolStart {
            call_id: "call_1".into(),
            tool_name: "open_editors".into(),
            params: "{\"limit\":5}".into(),
        },
        at(secs),
    );
    t
}

#[test]
fn hello_agrees_on_the_highest_common_version_or_says_which_it_speaks() {
    let mut c = core();
    match c.reply(hello("a", &[1, 2, 9], &[]), &on(b"A", 0)).unwrap() {
        Reply::Hello(h) => {
            assert_eq!(h.protocol_version, 2);
            assert!(h.capabilities.client_tools);
            assert_eq!(h.capabilities.client_timeout_secs, 15);
        }
        other => panic!("{other:?}"),
    }
    let err = c.reply(hello("b", &[1, 3], &[]), &on(b"B", 0)).unwrap_err();
    let rpc = crate::protocol::errors::RpcError::from(err);
    assert_eq!(rpc.code, -32014);
    let data = rpc.data.unwrap();
    assert_eq!(data["kind"], "version_mismatch");
    assert_eq!(data["supported"], json!([2]));
    // The refused client is not present.
    match c.reply(Call::ClientList, &on(b"B", 0)).unwrap() {
        Reply::ClientList(l) => assert_eq!(l.clients.len(), 1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_second_hello_with_the_same_id_replaces_the_first_and_a_reused_socket_replaces_its_client() {
    let mut c = core();
    c.reply(hello("a", &[2], &[]), &on(b"A1", 0)).unwrap();
    c.reply(hello("a", &[2], &["open_editors"]), &on(b"A2", 3))
        .unwrap();
    let evs = events(&mut c);
    let joined: Vec<bool> = evs
        .iter()
        .filter_map(|e| match e {
            Event::ClientJoined(j) => Some(j.rejoined),
            _ => None,
        })
        .collect();
    assert_eq!(joined, [false, true]);
    let Reply::ClientList(l) = c.reply(Call::ClientList, &on(b"x", 3)).unwrap() else {
        panic!()
    };
    assert_eq!(l.clients.len(), 1, "one client, never two entries");
    assert_eq!(l.clients[0].connected_at, at(3));
    assert_eq!(l.clients[0].tools, ["open_editors"]);
    // The old socket no longer speaks for it.
    assert!(c.author(b"A1").is_none());
    assert_eq!(c.author(b"A2").unwrap().client_id, "a");

    // The same socket says hello as someone else: the first leaves, replaced.
    c.reply(hello("b", &[2], &[]), &on(b"A2", 4)).unwrap();
    let evs = events(&mut c);
    assert!(matches!(&evs[0], Event::ClientLeft(l) if l.client_id == "a"
        && l.reason == LeaveReason::Replaced));
    assert!(matches!(&evs[1], Event::ClientJoined(j) if j.client.client_id == "b"));
}

#[test]
fn silence_past_the_timeout_leaves_and_any_request_keeps_a_client_present() {
    let mut c = core();
    c.reply(hello("a", &[2], &[]), &on(b"A", 0)).unwrap();
    c.reply(hello("b", &[2], &[]), &on(b"B", 0)).unwrap();
    events(&mut c);
    // `a` pings at 10 s; at 16 s only `b` has been silent for 15 s.
    c.reply(Call::InstancePing, &on(b"A", 10)).unwrap();
    c.tick(at(16));
    let evs = events(&mut c);
    assert_eq!(evs.len(), 1);
    assert!(matches!(&evs[0], Event::ClientLeft(l) if l.client_id == "b"
        && l.reason == LeaveReason::Timeout));
    c.tick(at(25));
    assert!(matches!(&events(&mut c)[0], Event::ClientLeft(l) if l.client_id == "a"));
    // A goodbye from a socket that never said hello changes nothing.
    c.reply(Call::ClientGoodbye, &on(b"C", 26)).unwrap();
    assert!(events(&mut c).is_empty());
}

#[test]
fn a_message_from_a_client_that_said_hello_carries_its_author() {
    let mut c = core();
    c.reply(hello("vscode-1", &[2], &[]), &on(b"A", 0)).unwrap();
    let call = |content: &str| {
        Call::MessageSend(MessageSend {
            session_id: None,
            content: content.into(),
            request_id: None,
            model: None,
            when_busy: WhenBusy::Reject,
        })
    };
    c.reply(call("from the editor"), &on(b"A", 1)).unwrap();
    let effects = c.take_effects();
    let append = effects
        .iter()
        .find_map(|e| match e {
            Effect::Publish(p) => match &p.event {
                Event::MessageAppend(m) => Some(m.clone()),
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    let author = append.author.unwrap();
    assert_eq!(author.client_id, "vscode-1");
    assert_eq!(author.name, "vscode-1 app");
    let stored = effects.iter().find_map(|e| match e {
        Effect::Persist {
            change: persist::Change::MessageUpsert(m),
            ..
        } => Some(m.author.clone()),
        _ => None,
    });
    assert_eq!(stored.unwrap().unwrap().client_id, "vscode-1");

    // An anonymous client's message has no author.
    c.reply(call("from a script"), &on(b"Z", 2)).unwrap();
    let anonymous = c.take_effects().into_iter().any(|e| {
        matches!(e, Effect::Publish(p) if matches!(&p.event,
            Event::MessageAppend(m) if m.author.is_none()))
    });
    assert!(anonymous);
}

#[test]
fn a_client_tool_is_offered_claimed_once_and_ended_by_its_claimants_result() {
    let mut c = core();
    c.reply(hello("a", &[2], &["open_editors"]), &on(b"A", 0))
        .unwrap();
    c.reply(hello("b", &[2], &["open_editors"]), &on(b"B", 0))
        .unwrap();
    c.reply(hello("n", &[2], &[]), &on(b"N", 0)).unwrap();
    c.take_effects();
    let t = send(&mut c, None, "what is open?", 1).turn_id;
    let offered = c.take_effects().into_iter().find_map(|e| match e {
        Effect::Turn(TurnEffect::Start { client_tools, .. }) => Some(client_tools),
        _ => None,
    });
    let offered = offered.unwrap();
    assert_eq!(offered.len(), 1, "one offer per name: {offered:?}");
    assert_eq!(offered[0].name, "open_editors");

    c.model_event(
        t,
        ModelEvent::ToolStart {
            call_id: "call_1".into(),
            tool_name: "open_editors".into(),
            params: "{\"limit\":5}".into(),
        },
        at(2),
    );
    let effects = c.take_effects();
    assert!(
        verdicts(&effects).is_empty(),
        "the model waits for a client"
    );
    let start = effects.iter().find_map(|e| match e {
        Effect::Publish(p) => match &p.event {
            Event::ToolStart(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    });
    let start = start.unwrap();
    assert_eq!(start.executor, Executor::Client);
    assert!(!start.awaiting_approval);

    // Anonymous and not-declaring clients may not claim.
    let kind =
        |e: CoreError| crate::protocol::errors::RpcError::from(e).data.unwrap()["kind"].clone();
    assert_eq!(
        kind(claim(&mut c, b"Z", "call_1", 2).unwrap_err()),
        "not_claimant"
    );
    assert_eq!(
        kind(claim(&mut c, b"N", "call_1", 2).unwrap_err()),
        "not_claimant"
    );
    // The first claim wins; the second hears who won; the winner may ask again.
    match claim(&mut c, b"A", "call_1", 3).unwrap() {
        Reply::Claim(r) => {
            assert_eq!(r.params, "{\"limit\":5}");
            assert_eq!(r.turn_id, t);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&events(&mut c)[..], [Event::ToolClaimed(e)] if e.client_id == "a"));
    let lost =
        crate::protocol::errors::RpcError::from(claim(&mut c, b"B", "call_1", 3).unwrap_err());
    assert_eq!(lost.code, -32015);
    assert_eq!(lost.data.unwrap()["client_id"], "a");
    assert!(claim(&mut c, b"A", "call_1", 3).is_ok());
    assert!(events(&mut c).is_empty(), "tool.claimed once");

    // Only the claimant's result counts, once.
    assert_eq!(
        kind(result(&mut c, b"B", "call_1", "x").unwrap_err()),
        "not_claimant"
    );
    result(&mut c, b"A", "call_1", "main.rs, lib.rs").unwrap();
    let v = verdicts(&c.take_effects());
    assert_eq!(
        v,
        [(
            "call_1".to_owned(),
            Verdict::Result {
                is_error: false,
                result: "main.rs, lib.rs".into()
            }
        )]
    );
    let late = result(&mut c, b"A", "call_1", "again").unwrap_err();
    assert!(matches!(&late, CoreError::ToolCallNotFound { why, .. } if why == "already ended"));
}

fn error_verdict(effects: &[Effect]) -> String {
    match &verdicts(effects)[..] {
        [(
            _,
            Verdict::Result {
                is_error: true,
                result,
            },
        )] => result.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unclaimed_calls_time_out_and_a_claimant_that_leaves_ends_its_call() {
    let mut c = core();
    c.reply(hello("a", &[2], &["open_editors"]), &on(b"A", 0))
        .unwrap();
    turn_calling(&mut c, 1);
    c.take_effects();
    // The client stays present; nobody claims.
    c.reply(Call::InstancePing, &on(b"A", 14)).unwrap();
    c.reply(Call::InstancePing, &on(b"A", 28)).unwrap();
    c.tick(at(30));
    assert!(verdicts(&c.take_effects()).is_empty(), "29 s is not 30");
    c.reply(Call::InstancePing, &on(b"A", 30)).unwrap();
    c.tick(at(31));
    assert!(error_verdict(&c.take_effects()).contains("nobody claimed"));

    // A second turn: claimed, then the claimant says goodbye.
    let mut c = core();
    c.reply(hello("a", &[2], &["open_editors"]), &on(b"A", 0))
        .unwrap();
    turn_calling(&mut c, 1);
    claim(&mut c, b"A", "call_1", 2).unwrap();
    c.take_effects();
    c.reply(Call::ClientGoodbye, &on(b"A", 3)).unwrap();
    assert!(error_verdict(&c.take_effects()).contains("(a) left"));
}

#[test]
fn a_call_whose_clients_all_left_fails_at_once_and_a_turns_end_closes_its_claims() {
    let mut c = core();
    c.reply(hello("a", &[2], &["open_editors"]), &on(b"A", 0))
        .unwrap();
    turn_calling(&mut c, 1);
    c.take_effects();
    c.reply(Call::ClientGoodbye, &on(b"A", 2)).unwrap();
    assert!(error_verdict(&c.take_effects()).contains("no connected client offers"));

    let mut c = core();
    c.reply(hello("a", &[2], &["open_editors"]), &on(b"A", 0))
        .unwrap();
    turn_calling(&mut c, 1);
    claim(&mut c, b"A", "call_1", 2).unwrap();
    c.reply(
        Call::SessionInterrupt {
            session_id: c.sessions.keys().next().unwrap().to_string(),
            clear_queue: false,
        },
        &on(b"A", 3),
    )
    .unwrap();
    let evs = events(&mut c);
    assert!(evs
        .iter()
        .any(|e| matches!(e, Event::ToolEnd(t) if t.is_error && t.call_id == "call_1")));
    let late = result(&mut c, b"A", "call_1", "too late").unwrap_err();
    assert!(matches!(&late, CoreError::ToolCallNotFound { why, .. } if why == "already ended"));
}

#[test]
fn a_client_tool_behind_ask_is_claimable_only_once_approved_by_a_named_client() {
    let mut c = core();
    c.config.tool_policy.set("open_editors", Policy::Ask);
    c.reply(hello("a", &[2], &["open_editors"]), &on(b"A", 0))
        .unwrap();
    turn_calling(&mut c, 1);
    let evs = events(&mut c);
    let start = evs.iter().find_map(|e| match e {
        Event::ToolStart(s) => Some(s.clone()),
        _ => None,
    });
    assert!(start.unwrap().awaiting_approval);
    let pending = evs.iter().find_map(|e| match e {
        Event::HitlPending(r) => Some(r.clone()),
        _ => None,
    });
    let pending = pending.unwrap();
    let early = claim(&mut c, b"A", "call_1", 2).unwrap_err();
    assert!(matches!(&early, CoreError::ToolCallNotFound { why, .. } if why.contains("approval")));

    let respond = Respond {
        id: pending.id.to_string(),
        decision: Some(Decision::Approve),
        answer: None,
        reason: None,
        client_id: Some("spoofed".into()),
    };
    match c.reply(Call::HitlRespond(respond), &on(b"A", 3)).unwrap() {
        Reply::Respond(r) => assert_eq!(r.request.resolved_by.as_deref(), Some("a")),
        other => panic!("{other:?}"),
    }
    assert!(
        verdicts(&c.take_effects()).is_empty(),
        "approved: now it waits for a claim"
    );
    assert!(claim(&mut c, b"A", "call_1", 4).is_ok());
}

#[test]
fn tools_that_clash_with_built_ins_and_one_client_too_many_are_refused() {
    let mut c = core();
    for name in ["read_file", "ask_user"] {
        let err = c
            .reply(hello("a", &[2], &[name]), &on(b"A", 0))
            .unwrap_err();
        let rpc = crate::protocol::errors::RpcError::from(err);
        assert_eq!(rpc.code, -32602);
        assert_eq!(rpc.data.unwrap()["tool"], name);
    }
    for i in 0..crate::protocol::limits::MAX_CLIENTS {
        let peer = format!("P{i}");
        c.reply(hello(&format!("c{i}"), &[2], &[]), &on(peer.as_bytes(), 0))
            .unwrap();
    }
    let err = c.reply(hello("late", &[2], &[]), &on(b"L", 0)).unwrap_err();
    assert_eq!(crate::protocol::errors::RpcError::from(err).code, -32020);
    // A client already present may still say hello again.
    assert!(c.reply(hello("c0", &[2], &[]), &on(b"P0", 1)).is_ok());
}

#[test]
fn a_queued_message_keeps_its_author_and_model_until_its_turn_starts() {
    use super::models::ModelEntry;
    let mut c = core();
    c.config.models.add(
        "big",
        ModelEntry {
            provider: "openai:big".into(),
            context_bytes: 4 << 10,
        },
    );
    c.reply(hello("ed", &[2], &[]), &on(b"E", 0)).unwrap();
    let first = send(&mut c, None, "first", 1);
    let queued = Call::MessageSend(MessageSend {
        session_id: Some(first.session_id.to_string()),
        content: "second".into(),
        request_id: None,
        model: Some("big".into()),
        when_busy: WhenBusy::Queue,
    });
    let Reply::Send(q) = c.reply(queued, &on(b"E", 2)).unwrap() else {
        panic!()
    };
    assert!(q.queued);
    // An unknown model is refused when queued, not when its turn would start.
    let bad = Call::MessageSend(MessageSend {
        session_id: Some(first.session_id.to_string()),
        content: "third".into(),
        request_id: None,
        model: Some("nope".into()),
        when_busy: WhenBusy::Queue,
    });
    assert!(matches!(
        c.reply(bad, &on(b"E", 2)),
        Err(CoreError::ModelNotFound { .. })
    ));
    c.take_effects();
    c.model_event(first.turn_id, ModelEvent::Finished, at(3));
    let evs = events(&mut c);
    let append = evs.iter().find_map(|e| match e {
        Event::MessageAppend(m) if m.message_id == q.message_id => Some(m.clone()),
        _ => None,
    });
    assert_eq!(append.unwrap().author.unwrap().client_id, "ed");
    let start = evs.iter().find_map(|e| match e {
        Event::LlmStart(s) if s.turn_id == q.turn_id => Some(s.clone()),
        _ => None,
    });
    assert_eq!(start.unwrap().model, "big");
}
