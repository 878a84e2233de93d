//! Human in the loop through the real sockets: every client sees a request, the first answer
//! wins and the others learn who won, the tool runs only when approved, and a request always
//! ends (answered, rejected, expired, or cancelled with its turn) before its turn's `llm.end`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{live_subscriber, refused, send, spawn_daemon_with, topics, Daemon, Events, WAIT};
use serde_json::json;
use zcoord::client::{ClientError, RpcClient};
use zcoord::core::policy::Policy;

fn daemon(policy: &[(&str, Policy)]) -> (Daemon, Events) {
    let policy: Vec<(String, Policy)> = policy.iter().map(|(t, p)| (t.to_string(), *p)).collect();
    let d = spawn_daemon_with(move |c| {
        for (tool, p) in &policy {
            c.tool_policy.set(tool, *p);
        }
    });
    let events = d.subscriber(&["hitl.", "tool.", "llm.end", "session.update"]);
    (d, events)
}

/// The first `tool.end` among `events`.
fn tool_end(events: &[zcoord::client::ReceivedEvent]) -> &zcoord::client::ReceivedEvent {
    events
        .iter()
        .find(|e| e.envelope.topic == "tool.end")
        .expect("a tool.end")
}

#[test]
fn a_question_is_shown_to_everyone_and_the_first_answer_wins() {
    let (d, events) = daemon(&[]);
    let ask = r#"/tool ask_user {"question": "Which colour?", "options": ["red", "blue"]}"#;
    let r = send(&d, None, &format!("pick one\n{ask}"));
    let turn = r["turn_id"].as_str().unwrap().to_owned();
    let pending = events.payload("hitl.pending");
    assert_eq!(pending["type"], "question");
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["payload"]["question"], "Which colour?");
    assert_eq!(pending["payload"]["options"], json!(["red", "blue"]));
    assert_eq!(pending["turn_id"], turn.as_str());
    let id = pending["id"].as_str().unwrap().to_owned();

    // A client that connects now sees it at once.
    let sync = d.call("state.sync", json!({}));
    assert_eq!(sync["hitl"][0]["id"], id.as_str(), "{sync}");
    let list = d.call("hitl.list", json!({"session_id": r["session_id"]}));
    assert_eq!(list["requests"].as_array().unwrap().len(), 1);

    // Two clients answer; exactly one wins, and the other learns who and how.
    let mut a = d.client();
    let mut b = d.client();
    let won = a
        .call(
            "hitl.respond",
            json!({"id": id, "answer": "blue", "client_id": "editor"}),
        )
        .unwrap();
    assert_eq!(won["ok"], true);
    assert_eq!(won["request"]["status"], "answered");
    assert_eq!(won["request"]["resolved_by"], "editor");
    let lost = refused(&mut b, "hitl.respond", json!({"id": id, "answer": "red"}));
    assert_eq!(lost["code"], -32013, "{lost}");
    assert_eq!(lost["data"]["kind"], "hitl_resolved");
    assert_eq!(lost["data"]["request"]["resolved_by"], "editor");
    assert_eq!(lost["data"]["request"]["response"]["answer"], "blue");

    let rest = events.until_turn("llm.end", &turn);
    let order = topics(&rest);
    let resolved = order.iter().position(|t| t == "hitl.resolved").unwrap();
    let end = order.iter().position(|t| t == "tool.end").unwrap();
    assert!(resolved < end, "{order:?}");
    let tool_end = &rest[end].envelope.payload;
    assert_eq!(tool_end["is_error"], false);
    assert_eq!(
        tool_end["result"], "blue",
        "the answer is the tool's result"
    );
    assert_eq!(rest.last().unwrap().envelope.payload["reason"], "completed");
    assert!(d.call("hitl.list", json!({}))["requests"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn an_approval_gates_the_tool_and_approve_session_grants_it() {
    let (d, events) = daemon(&[("word_count", Policy::Ask)]);
    let call = r#"/tool word_count {"text": "one two three"}"#;
    let r = send(&d, None, call);
    let sid = r["session_id"].as_str().unwrap().to_owned();
    let turn = r["turn_id"].as_str().unwrap().to_owned();
    let seen = events.until(|e| e.envelope.topic == "hitl.pending");
    assert_eq!(topics(&seen).last().unwrap(), "hitl.pending");
    assert!(
        topics(&seen).contains(&"tool.start".to_owned()),
        "tool.start comes first"
    );
    let pending = &seen.last().unwrap().envelope.payload;
    assert_eq!(pending["type"], "tool_approval");
    assert_eq!(pending["payload"]["tool_name"], "word_count");
    assert_eq!(pending["payload"]["params"], r#"{"text": "one two three"}"#);
    // Not run while it waits.
    assert!(events
        .try_next(Duration::from_millis(200))
        .is_none_or(|e| e.envelope.topic != "tool.end"));

    // Rejected: the tool does not run and the model is told why.
    let id = pending["id"].as_str().unwrap();
    let wrong = refused(
        &mut d.client(),
        "hitl.respond",
        json!({"id": id, "answer": "yes"}),
    );
    assert_eq!(wrong["code"], -32602);
    assert_eq!(wrong["data"]["field"], "decision", "{wrong}");
    d.call(
        "hitl.respond",
        json!({"id": id, "decision": "reject", "reason": "not now", "client_id": "tui"}),
    );
    let rest = events.until_turn("llm.end", &turn);
    let end = tool_end(&rest);
    assert_eq!(end.envelope.payload["is_error"], true);
    assert_eq!(end.envelope.payload["result"], "rejected by tui: not now");

    // approve_session: this call runs, and the next one is not asked about.
    let r = send(&d, Some(&sid), call);
    let pending = events.payload("hitl.pending");
    d.call(
        "hitl.respond",
        json!({"id": pending["id"], "decision": "approve_session"}),
    );
    let rest = events.until_turn("llm.end", r["turn_id"].as_str().unwrap());
    let end = tool_end(&rest);
    assert_eq!(end.envelope.payload["result"], "3");
    let session = d.call("session.get", json!({"session_id": sid}));
    assert_eq!(session["grants"], json!(["word_count"]), "{session}");
    let r = send(&d, Some(&sid), call);
    let rest = events.until_turn("llm.end", r["turn_id"].as_str().unwrap());
    assert!(
        !topics(&rest).contains(&"hitl.pending".to_owned()),
        "{:?}",
        topics(&rest)
    );
    // Another session has no grant.
    let r = send(&d, None, call);
    let pending = events.payload("hitl.pending");
    assert_eq!(pending["session_id"], r["session_id"]);
}

#[test]
fn a_denied_tool_never_runs_and_nobody_is_asked() {
    let (d, events) = daemon(&[("word_count", Policy::Deny)]);
    let r = send(&d, None, r#"/tool word_count {"text": "a"}"#);
    let rest = events.until_turn("llm.end", r["turn_id"].as_str().unwrap());
    let t = topics(&rest);
    assert!(!t.iter().any(|t| t.starts_with("hitl.")), "{t:?}");
    let end = tool_end(&rest);
    assert_eq!(end.envelope.payload["is_error"], true);
    assert!(end.envelope.payload["result"]
        .as_str()
        .unwrap()
        .starts_with("denied"));
}

#[test]
fn interrupt_and_delete_cancel_what_waits_before_llm_end() {
    let (d, events) = daemon(&[]);
    for how in ["session.interrupt", "session.delete"] {
        let r = send(&d, None, r#"/tool ask_user {"question": "still there?"}"#);
        let pending = events.payload("hitl.pending");
        d.call(how, json!({"session_id": r["session_id"]}));
        let rest = events.until_turn("llm.end", r["turn_id"].as_str().unwrap());
        let resolved = rest
            .iter()
            .find(|e| e.envelope.topic == "hitl.resolved")
            .unwrap_or_else(|| panic!("{how}: no hitl.resolved before llm.end"));
        assert_eq!(resolved.envelope.payload["id"], pending["id"]);
        assert_eq!(resolved.envelope.payload["status"], "cancelled");
        assert_eq!(resolved.envelope.payload["resolved_by"], "server");
        let late = refused(
            &mut d.client(),
            "hitl.respond",
            json!({"id": pending["id"], "answer": "yes"}),
        );
        assert_eq!(late["data"]["kind"], "hitl_resolved");
    }
}

#[test]
fn an_unanswered_request_expires_and_the_call_does_not_run() {
    let d = spawn_daemon_with(|c| {
        c.tool_policy.set("word_count", Policy::Ask);
        c.hitl_timeout = Some(Duration::from_millis(300));
    });
    let events = d.subscriber(&["hitl.", "tool.", "llm.end"]);
    let r = send(&d, None, r#"/tool word_count {"text": "a"}"#);
    let pending = events.payload("hitl.pending");
    assert!(pending["expires_at"].as_str().is_some(), "{pending}");
    let resolved = events.payload("hitl.resolved");
    assert_eq!(resolved["status"], "expired");
    assert_eq!(resolved["resolved_by"], "server");
    let rest = events.until_turn("llm.end", r["turn_id"].as_str().unwrap());
    let end = tool_end(&rest);
    assert_eq!(end.envelope.payload["is_error"], true);
    assert!(end.envelope.payload["result"]
        .as_str()
        .unwrap()
        .starts_with("expired"));
}

#[test]
fn bad_responses_get_clear_errors() {
    let (d, events) = daemon(&[]);
    let mut c = d.client();
    let unknown = refused(
        &mut c,
        "hitl.respond",
        json!({"id": "01a23dce-5c68-7620-9b6a-253509c51bb7", "answer": "x"}),
    );
    assert_eq!(unknown["code"], -32012);
    assert_eq!(unknown["data"]["kind"], "hitl_not_found");
    let neither = refused(&mut c, "hitl.respond", json!({"id": "x"}));
    assert_eq!(neither["data"]["field"], "decision");
    let both = refused(
        &mut c,
        "hitl.respond",
        json!({"id": "x", "decision": "approve", "answer": "y"}),
    );
    assert_eq!(both["code"], -32602);
    let odd = refused(
        &mut c,
        "hitl.respond",
        json!({"id": "x", "decision": "maybe"}),
    );
    assert_eq!(odd["data"]["field"], "decision");
    let long = refused(
        &mut c,
        "hitl.respond",
        json!({"id": "x", "decision": "reject", "reason": "r".repeat(10_000)}),
    );
    assert_eq!(long["data"]["kind"], "reason_too_long", "{long}");
    // 10 MiB never reaches the core: libzmq drops a frame over twice --max-message-bytes with
    // its connection (one up to twice gets `message_too_large`); the server goes on.
    let raw = d.raw(zmq::DEALER);
    let huge = json!({"jsonrpc": "2.0", "id": 1, "method": "hitl.respond",
                      "params": {"id": "x", "decision": "reject", "reason": "r".repeat(10 << 20)}});
    raw.send(huge.to_string().as_bytes(), 0).unwrap();
    assert!(common::recv_within(&raw, Duration::from_millis(500)).is_none());
    c.call("instance.ping", json!({})).unwrap();
    let nobody = refused(&mut c, "hitl.list", json!({"session_id": "nope"}));
    assert_eq!(nobody["data"]["kind"], "session_not_found");

    // A question takes an answer, not a decision; the request still waits after the mistake.
    let r = send(&d, None, r#"/tool ask_user {"question": "ok?"}"#);
    let pending = events.payload("hitl.pending");
    let wrong = refused(
        &mut c,
        "hitl.respond",
        json!({"id": pending["id"], "decision": "approve"}),
    );
    assert_eq!(wrong["data"]["field"], "answer", "{wrong}");
    let bad_args = send(&d, None, r#"/tool ask_user {"options": ["no question"]}"#);
    let rest = events.until_turn("llm.end", bad_args["turn_id"].as_str().unwrap());
    let end = tool_end(&rest);
    assert_eq!(
        end.envelope.payload["is_error"], true,
        "no question: no request"
    );
    c.call(
        "hitl.respond",
        json!({"id": pending["id"], "answer": "yes"}),
    )
    .unwrap();
    events.until_turn("llm.end", r["turn_id"].as_str().unwrap());
}

#[test]
fn many_requests_across_sessions_answered_in_any_order() {
    let (d, events) = daemon(&[("word_count", Policy::Ask)]);
    let mut turns = Vec::new();
    for i in 0..20 {
        let r = send(
            &d,
            None,
            &format!("s{i}\n/tool word_count {{\"text\": \"a\"}}\n/tool ask_user {{\"question\": \"q{i}\"}}"),
        );
        turns.push(r["turn_id"].as_str().unwrap().to_owned());
    }
    // Each turn asks twice in a row (an approval, then a question), one request at a time: 20
    // wait at once, then 20 more. Each wave is answered in a shuffled order once all of it is
    // pending; hitl.list shows the whole wave meanwhile.
    let mut c = d.client();
    let mut ended = 0;
    let mut seed = 0x9e37_79b9_u64;
    for wave in ["tool_approval", "question"] {
        let mut pending = Vec::new();
        while pending.len() < turns.len() {
            let e = events.next();
            if e.envelope.topic == "hitl.pending" {
                assert_eq!(e.envelope.payload["type"], wave);
                pending.push(e.envelope.payload);
            }
        }
        let listed = c.call("hitl.list", json!({})).unwrap();
        assert_eq!(listed["requests"].as_array().unwrap().len(), turns.len());
        for i in (1..pending.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            pending.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        for p in &pending {
            let response = if wave == "question" {
                json!({"id": p["id"], "answer": "fine"})
            } else {
                json!({"id": p["id"], "decision": "approve"})
            };
            c.call("hitl.respond", response).unwrap();
        }
    }
    while ended < turns.len() {
        let e = events.next();
        if e.envelope.topic == "llm.end" {
            assert_eq!(e.envelope.payload["reason"], "completed");
            ended += 1;
        }
    }
    assert!(d.call("hitl.list", json!({}))["requests"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn a_crash_while_a_request_waits_cancels_it_on_restart() {
    const BIN: &str = env!("CARGO_BIN_EXE_zcoord");
    let dir = tempfile::tempdir().unwrap();
    let serve = || {
        let child = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["serve", "--store", "sqlite", "--heartbeat-interval", "0.05"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let disc = common::discovery_of(dir.path(), &child);
        let rpc = disc["endpoints"]["rpc"].as_str().unwrap().to_owned();
        let pub_ = disc["endpoints"]["pub"].as_str().unwrap().to_owned();
        (child, rpc, pub_)
    };
    let ctx = zmq::Context::new();
    let (mut child, rpc, pub_) = serve();
    let events = live_subscriber(&ctx, &pub_, &["hitl."]);
    let mut c = RpcClient::connect(&ctx, &rpc, WAIT).unwrap();
    c.call(
        "message.send",
        json!({"content": "/tool ask_user {\"question\": \"before the crash?\"}"}),
    )
    .unwrap();
    let pending = events.payload("hitl.pending");
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, rpc, _) = serve();
    let mut c = RpcClient::connect(&ctx, &rpc, WAIT).unwrap();
    assert!(c.call("hitl.list", json!({})).unwrap()["requests"]
        .as_array()
        .unwrap()
        .is_empty());
    // The restart resolved it, and said so where a client catching up looks.
    let replay = c
        .call(
            "events.replay",
            json!({"after_seq": 0, "prefixes": ["hitl."]}),
        )
        .unwrap();
    let resolved = &replay["events"][0]["payload"];
    assert_eq!(resolved["id"], pending["id"], "{replay}");
    assert_eq!(resolved["status"], "cancelled");
    assert_eq!(resolved["resolved_by"], "server");
    let late = refused(
        &mut c,
        "hitl.respond",
        json!({"id": pending["id"], "answer": "yes"}),
    );
    assert_eq!(late["data"]["kind"], "hitl_resolved");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn shutdown_cancels_what_waits_before_instance_shutdown() {
    let (d, _) = daemon(&[]);
    let events = d.subscriber(&["hitl.", "llm.end", "instance.shutdown"]);
    send(&d, None, r#"/tool ask_user {"question": "leaving?"}"#);
    let pending = events.payload("hitl.pending");
    d.stop();
    let rest = events.until(|e| e.envelope.topic == "instance.shutdown");
    assert_eq!(
        topics(&rest),
        ["hitl.resolved", "llm.end", "instance.shutdown"]
    );
    assert_eq!(rest[0].envelope.payload["id"], pending["id"]);
    assert_eq!(rest[0].envelope.payload["status"], "cancelled");
    assert_eq!(rest[1].envelope.payload["reason"], "shutdown");
}

#[test]
fn over_tcp_a_peer_without_the_secret_neither_sees_nor_answers_a_request() {
    const BIN: &str = env!("CARGO_BIN_EXE_zcoord");
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--store", "memory", "--heartbeat-interval", "0.05"])
        .args(["--rpc", "tcp://127.0.0.1:0", "--pub", "tcp://127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let disc = common::discovery_of(dir.path(), &child);
    let rpc = disc["endpoints"]["rpc"].as_str().unwrap().to_owned();
    let pub_ = disc["endpoints"]["pub"].as_str().unwrap().to_owned();
    let secret = disc["secret"].as_str().unwrap().to_owned();
    let ctx = zmq::Context::new();

    // An outsider subscribes to everything and tries to answer.
    let outsider_sub = zcoord::client::Subscriber::connect(&ctx, &pub_, &[""]).unwrap();
    let (insider_sub, _) =
        zcoord::client::Subscriber::connect_live_with(&ctx, &pub_, &["hitl."], WAIT, Some(&secret))
            .unwrap();
    let mut insider = RpcClient::connect_with(&ctx, &rpc, WAIT, Some(&secret)).unwrap();
    insider
        .call(
            "message.send",
            json!({"content": "/tool ask_user {\"question\": \"private?\"}"}),
        )
        .unwrap();
    let pending = loop {
        let e = insider_sub
            .recv(WAIT)
            .unwrap()
            .expect("the insider sees it");
        if e.envelope.topic == "hitl.pending" {
            break e.envelope.payload;
        }
    };
    assert!(
        outsider_sub
            .recv(Duration::from_millis(500))
            .unwrap()
            .is_none(),
        "no event reaches a peer without the secret"
    );
    let mut outsider = RpcClient::connect(&ctx, &rpc, Duration::from_millis(500)).unwrap();
    let tried = outsider.call(
        "hitl.respond",
        json!({"id": pending["id"], "answer": "yes"}),
    );
    assert!(matches!(tried, Err(ClientError::Timeout(_))), "{tried:?}");
    let still = insider.call("hitl.list", json!({})).unwrap();
    assert_eq!(still["requests"][0]["id"], pending["id"], "still waiting");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn write_file_waits_for_approval_by_default_and_writes_only_when_approved() {
    let ws = tempfile::tempdir().unwrap();
    let root = ws.path().to_owned();
    let d = spawn_daemon_with(move |c| c.tools.workspace = root);
    let events = d.subscriber(&["hitl.", "tool.", "llm.end"]);
    for (decision, name) in [("reject", "no.txt"), ("approve", "yes.txt")] {
        let call = format!(r#"/tool write_file {{"path": "{name}", "content": "hi"}}"#);
        let r = send(&d, None, &call);
        let pending = events.payload("hitl.pending");
        assert_eq!(pending["payload"]["tool_name"], "write_file");
        assert!(
            !ws.path().join(name).exists(),
            "nothing written while it waits"
        );
        d.call(
            "hitl.respond",
            json!({"id": pending["id"], "decision": decision}),
        );
        events.until_turn("llm.end", r["turn_id"].as_str().unwrap());
        assert_eq!(
            ws.path().join(name).exists(),
            decision == "approve",
            "{name}"
        );
    }
    // A read-only tool is not asked about.
    let r = send(&d, None, r#"/tool read_file {"path": "yes.txt"}"#);
    let rest = events.until_turn("llm.end", r["turn_id"].as_str().unwrap());
    assert!(!topics(&rest).iter().any(|t| t.starts_with("hitl.")));
    let end = tool_end(&rest);
    assert_eq!(
        end.envelope.payload["is_error"], false,
        "{:?}",
        end.envelope.payload
    );
}
