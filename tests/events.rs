//! Every topic through the real PUB socket: keys, envelopes, the order guarantees within a turn,
//! interrupt mid-stream, model errors, heartbeats, shutdown and the Clone-pattern sync.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{send, spawn_daemon, spawn_daemon_with, topics};
use serde_json::{json, Value};
use zcoord::client::ReceivedEvent;
use zcoord::config::ModelConfig;
use zcoord::protocol::events::Event;

fn slow_tokens(ms: u64) -> impl FnOnce(&mut zcoord::config::Config) {
    move |c| {
        c.model = ModelConfig::Echo {
            token_delay: Duration::from_millis(ms),
        }
    }
}

/// Checks what every event must satisfy: the key, the envelope and a payload that decodes.
fn check_envelope(ev: &ReceivedEvent, instance_id: &str) {
    let env = &ev.envelope;
    assert_eq!(env.instance_id.to_string(), instance_id);
    let want_key = match env.session_id {
        Some(s) => format!("{}/{}", env.topic, s),
        None => env.topic.clone(),
    };
    assert_eq!(ev.key, want_key);
    Event::decode(&env.topic, env.payload.clone())
        .unwrap_or_else(|e| panic!("{} payload does not decode: {e}", env.topic));
}

fn assert_consecutive(events: &[ReceivedEvent]) {
    for w in events.windows(2) {
        assert_eq!(w[1].envelope.seq, w[0].envelope.seq + 1, "seq gap");
    }
}

#[test]
fn a_turn_publishes_every_topic_in_the_guaranteed_order() {
    let d = spawn_daemon();
    let events = d.subscriber(&[""]);
    let r = send(
        &d,
        None,
        "hi there\n/tool word_count {\"text\": \"one two three\"}\n/tool no_such_tool {}",
    );
    let turn = r["turn_id"].as_str().unwrap();
    let got = events.until(|e| {
        e.envelope.topic == "session.update"
            && e.envelope.payload["status"] == "idle"
            && e.envelope.payload["message_count"] == 4
    });
    for ev in &got {
        check_envelope(ev, &d.instance_id);
    }
    assert_consecutive(&got);
    // Heartbeats (every 50 ms here) may fall anywhere; the order asserted is the turn's own.
    let t: Vec<String> = topics(&got)
        .into_iter()
        .filter(|t| t != "instance.heartbeat")
        .collect();
    let tokens: Vec<&ReceivedEvent> = got
        .iter()
        .filter(|e| e.envelope.topic == "llm.token")
        .collect();
    assert!(!tokens.is_empty());
    let mut expected = vec![
        "session.update",
        "session.list",
        "session.activated",
        "message.append",
        "llm.start",
        "session.update",
        // echo streams each call's arguments in up to three pieces first.
        "tool.args",
        "tool.args",
        "tool.args",
        "tool.start",
        "tool.end",
        "message.append",
        "tool.args",
        "tool.args",
        "tool.start",
        "tool.end",
        "message.append",
    ];
    expected.extend(std::iter::repeat_n("llm.token", tokens.len()));
    expected.extend(["llm.end", "message.append", "session.update"]);
    assert_eq!(t, expected);

    // Token indices run 0,1,2… and concatenate to the assistant message.
    let text: String = tokens
        .iter()
        .enumerate()
        .map(|(i, e)| {
            assert_eq!(e.envelope.payload["index"], i as u64);
            assert_eq!(e.envelope.payload["turn_id"], turn);
            e.envelope.payload["token"].as_str().unwrap().to_owned()
        })
        .collect();
    // Indexes below are into the turn's own events without the arguments' pieces (tests/streams.rs
    // has those): a heartbeat may fall anywhere among them.
    let got: Vec<&ReceivedEvent> = got
        .iter()
        .filter(|e| !["instance.heartbeat", "tool.args"].contains(&e.envelope.topic.as_str()))
        .collect();
    let n = got.len();
    let end = &got[n - 3].envelope.payload;
    assert_eq!(end["reason"], "completed");
    assert_eq!(end["tokens_out"], tokens.len() as u64);
    assert!(end["tokens_in"].as_u64().unwrap() > 0);
    assert!(end.get("error").is_none());
    // echo's usage: its words in (estimated), its tokens out, no window.
    let usage = &end["usage"];
    assert_eq!(usage["input_tokens"], end["tokens_in"]);
    assert_eq!(usage["output_tokens"], end["tokens_out"]);
    assert_eq!(
        usage["context_tokens"].as_u64(),
        Some(end["tokens_in"].as_u64().unwrap() + end["tokens_out"].as_u64().unwrap())
    );
    assert_eq!(
        usage["estimated"],
        json!(["input_tokens", "context_tokens"])
    );
    assert!(usage.get("context_window").is_none());
    let assistant = &got[n - 2].envelope.payload;
    assert_eq!(assistant["role"], "assistant");
    assert_eq!(assistant["content"], text.as_str());
    assert_eq!(
        text,
        "echo: hi there\n[word_count] 3\n[no_such_tool] unknown tool: no_such_tool"
    );

    let (ok_start, ok_end) = (&got[6].envelope.payload, &got[7].envelope.payload);
    assert_eq!(ok_start["tool_name"], "word_count");
    assert_eq!(ok_start["params"], "{\"text\": \"one two three\"}");
    assert_eq!(ok_end["call_id"], ok_start["call_id"]);
    assert_eq!(
        (ok_end["is_error"].as_bool(), ok_end["result"].as_str()),
        (Some(false), Some("3"))
    );
    assert_eq!(got[10].envelope.payload["is_error"], true);
    // Each tool result is a `tool` message.
    let tool_msg = &got[8].envelope.payload;
    assert_eq!(
        (tool_msg["role"].as_str(), tool_msg["content"].as_str()),
        (Some("tool"), Some("3"))
    );
    assert_eq!(tool_msg["tool"]["call_id"], ok_start["call_id"]);
    assert_eq!(tool_msg["tool"]["tool_name"], "word_count");
    let list = d.call("message.list", json!({"session_id": r["session_id"]}));
    let roles: Vec<&str> = list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "tool", "tool", "assistant"]);

    let user = &got[3].envelope.payload;
    assert_eq!(
        (user["role"].as_str(), user["message_id"].as_str()),
        (Some("user"), r["message_id"].as_str())
    );
    assert_eq!(
        got[1].envelope.payload["sessions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn session_scoped_keys_filter_by_session() {
    let d = spawn_daemon();
    let a = d.call("session.create", json!({"title": "a"}));
    let b = d.call("session.create", json!({"title": "b"}));
    let only_b = d.subscriber(&[
        &format!("llm.token/{}", b["id"].as_str().unwrap()),
        "llm.end",
    ]);
    let ra = send(&d, a["id"].as_str(), "to a");
    let rb = send(&d, b["id"].as_str(), "to b");
    let got = only_b.until_turn("llm.end", rb["turn_id"].as_str().unwrap());
    for ev in got.iter().filter(|e| e.envelope.topic == "llm.token") {
        assert_eq!(ev.envelope.payload["session_id"], b["id"]);
    }
    assert!(got.iter().any(|e| e.envelope.topic == "llm.token"));
    let _ = ra;
}

#[test]
fn interrupt_mid_stream_stops_the_stream_and_keeps_the_partial_message() {
    let d = spawn_daemon_with(slow_tokens(20));
    let events = d.subscriber(&["llm.", "message.append"]);
    let long = "word ".repeat(200);
    let r = send(&d, None, &long);
    let (sid, turn) = (
        r["session_id"].as_str().unwrap(),
        r["turn_id"].as_str().unwrap(),
    );
    events.until(|e| e.envelope.topic == "llm.token" && e.envelope.payload["index"] == 3);
    let reply = d.call("session.interrupt", json!({"session_id": sid}));
    assert_eq!(reply["interrupted"], true);

    let rest = events.until(|e| {
        e.envelope.topic == "message.append" && e.envelope.payload["role"] == "assistant"
    });
    let late_tokens = rest
        .iter()
        .filter(|e| e.envelope.topic == "llm.token")
        .count();
    assert!(
        late_tokens <= 3,
        "stream kept going for {late_tokens} tokens after the interrupt"
    );
    let end = rest.iter().find(|e| e.envelope.topic == "llm.end").unwrap();
    assert_eq!(end.envelope.payload["reason"], "interrupted");
    assert_eq!(end.envelope.payload["turn_id"], turn);
    let assistant = &rest.last().unwrap().envelope.payload;
    assert_eq!(assistant["status"], "interrupted");
    let partial = assistant["content"].as_str().unwrap();
    assert!(partial.starts_with("echo: word word word"));
    assert!(
        partial.len() < long.len() / 2,
        "only part of the reply was streamed"
    );
    assert_eq!(
        end.envelope.payload["tokens_out"].as_u64().unwrap(),
        partial.split_whitespace().count() as u64,
    );

    // Nothing more for that turn: the next event is for the next turn.
    let r2 = send(&d, Some(sid), "next");
    let next = events.next();
    assert_eq!(
        next.envelope.payload["turn_id"], r2["turn_id"],
        "late output from the interrupted turn"
    );
    let list = d.call("message.list", json!({"session_id": sid}));
    let msgs = list["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["content"], partial);
    assert_eq!(msgs[1]["status"], "interrupted");
}

#[test]
fn a_model_error_ends_the_turn_with_reason_error() {
    let d = spawn_daemon();
    let events = d.subscriber(&["llm.end", "session.update"]);
    let r = send(&d, None, "partly\n/fail simulated outage");
    let got = events.until_turn("llm.end", r["turn_id"].as_str().unwrap());
    let end = got.iter().find(|e| e.envelope.topic == "llm.end").unwrap();
    assert_eq!(end.envelope.payload["reason"], "error");
    assert_eq!(end.envelope.payload["error"], "simulated outage");
    assert_eq!(end.envelope.payload["turn_id"], r["turn_id"]);
    send(&d, r["session_id"].as_str(), "the session is usable again");
}

#[test]
fn deleting_a_session_publishes_deleted_and_the_new_list() {
    let d = spawn_daemon();
    let s = d.call("session.create", json!({"title": "doomed"}));
    let events = d.subscriber(&["session."]);
    d.call("session.delete", json!({"session_id": s["id"]}));
    let got = [events.next(), events.next()];
    assert_eq!(topics(&got), ["session.deleted", "session.list"]);
    assert_eq!(got[0].envelope.payload["id"], s["id"]);
    assert_eq!(got[1].envelope.payload["sessions"], json!([]));
    let e2 = d.call("session.create", json!({}));
    let got = [events.next(), events.next(), events.next()];
    assert_eq!(
        topics(&got),
        ["session.update", "session.list", "session.activated"]
    );
    assert_eq!(got[2].envelope.payload["id"], e2["id"]);
}

#[test]
fn heartbeats_arrive_on_the_interval_with_the_spec_payload() {
    let d = spawn_daemon();
    let s = d.call("session.create", json!({}));
    let events = d.subscriber(&["instance.heartbeat"]);
    let beats: Vec<ReceivedEvent> = (0..3).map(|_| events.next()).collect();
    for b in &beats {
        assert_eq!(b.key, "instance.heartbeat");
        assert!(b.envelope.session_id.is_none());
        let p = &b.envelope.payload;
        assert_eq!(p["instance_id"], d.instance_id.as_str());
        assert_eq!(p["session_count"], 1);
        assert_eq!(p["active_session_id"], s["id"]);
        assert!(p["uptime"].as_str().unwrap().ends_with('s'));
        assert!(p["started_at"].is_string());
    }
    assert!(
        beats[0].envelope.seq < beats[1].envelope.seq
            && beats[1].envelope.seq < beats[2].envelope.seq
    );
}

#[test]
fn shutdown_ends_running_turns_then_announces_itself() {
    let d = spawn_daemon_with(slow_tokens(20));
    let events = d.subscriber(&["llm.end", "instance.shutdown"]);
    let r = send(&d, None, &"long ".repeat(100));
    let instance = d.instance_id.clone();
    d.stop();
    let got = events.until(|e| e.envelope.topic == "instance.shutdown");
    assert_eq!(topics(&got), ["llm.end", "instance.shutdown"]);
    assert_eq!(got[0].envelope.payload["reason"], "shutdown");
    assert_eq!(got[0].envelope.payload["turn_id"], r["turn_id"]);
    assert_eq!(got[1].envelope.payload["instance_id"], instance.as_str());
    assert_eq!(got[1].envelope.payload["reason"], "test shutdown");
}

/// The ZeroMQ guide's Clone pattern: subscribe, snapshot, drop events at or below the snapshot's
/// seq, apply the rest. The replica must end equal to the primary, with no gap after the snapshot.
#[test]
fn clone_pattern_snapshot_plus_events_reproduces_the_state_exactly() {
    let d = spawn_daemon_with(slow_tokens(2));
    let events = d.subscriber(&[""]);
    // Activity before and during the snapshot.
    let first = send(&d, None, &"before snapshot ".repeat(20));
    let snapshot = d.call("state.sync", json!({}));
    let snap_seq = snapshot["seq"].as_u64().unwrap();
    let second = send(&d, None, "after snapshot");
    d.call(
        "session.activate",
        json!({"session_id": second["session_id"]}),
    );

    let mut replica: BTreeMap<String, Value> = snapshot["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_owned(), s.clone()))
        .collect();
    let mut active = snapshot.get("active_session_id").cloned();
    let mut expected_seq = snap_seq + 1;
    let mut ended = 0;
    while ended < 2 {
        let ev = events.next();
        if ev.envelope.seq <= snap_seq {
            continue;
        }
        assert_eq!(ev.envelope.seq, expected_seq, "gap after the snapshot");
        expected_seq += 1;
        let p = ev.envelope.payload.clone();
        match ev.envelope.topic.as_str() {
            "session.update" => {
                replica.insert(p["id"].as_str().unwrap().to_owned(), p.clone());
                if p["status"] == "idle"
                    && (p["id"] == first["session_id"] || p["id"] == second["session_id"])
                    && p["message_count"] == 2
                {
                    ended += 1;
                }
            }
            "session.deleted" => {
                replica.remove(p["id"].as_str().unwrap());
            }
            "session.activated" => active = Some(p["id"].clone()),
            _ => {}
        }
    }
    let now = d.call("state.sync", json!({}));
    let primary: BTreeMap<String, Value> = now["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_owned(), s.clone()))
        .collect();
    assert_eq!(replica, primary);
    assert_eq!(active, now.get("active_session_id").cloned());
    // Heartbeats may have been published since; never fewer events than the replica applied.
    assert!(now["seq"].as_u64().unwrap() >= expected_seq - 1);
}
