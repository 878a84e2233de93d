//! Queued messages through the real sockets: `message.send` with `when_busy: "queue"` behind a
//! running turn, the order queued turns run in, `clear_queue`, the bounds, and (with the binary
//! and SQLite) a queued message that survives `kill -9` and runs after the restart.

mod common;

use std::time::Duration;

use common::{
    crash_and_restart, eventually, serve_sqlite, spawn_daemon_with, topics, Daemon, WAIT,
};
use serde_json::{json, Value};
use zcoord::client::{ClientError, RpcClient};
use zcoord::config::ModelConfig;

/// A daemon whose echo model takes `ms` per token, so a long message keeps its turn running.
fn slow_daemon(ms: u64) -> Daemon {
    spawn_daemon_with(|c| {
        c.model = ModelConfig::Echo {
            token_delay: Duration::from_millis(ms),
        }
    })
}

/// A message whose echo streams `words` tokens.
fn long(words: usize) -> String {
    "word ".repeat(words)
}

/// Starts a turn of `words` tokens in a new session: its session id and the send's answer.
fn busy_session(client: &mut RpcClient, words: usize) -> (String, Value) {
    let first = client
        .call("message.send", json!({"content": long(words)}))
        .unwrap();
    (first["session_id"].as_str().unwrap().to_owned(), first)
}

fn queue(client: &mut RpcClient, sid: &str, content: &str) -> Result<Value, Value> {
    let params = json!({"session_id": sid, "content": content, "when_busy": "queue"});
    match client.call("message.send", params) {
        Ok(v) => Ok(v),
        Err(ClientError::Rpc(e)) => Err(serde_json::to_value(e).unwrap()),
        Err(e) => panic!("message.send: {e}"),
    }
}

#[test]
fn queued_messages_run_in_order_each_as_the_next_turn() {
    let d = slow_daemon(10);
    let mut client = d.client();
    let (sid, first) = busy_session(&mut client, 100);
    let events = d.subscriber(&[&format!("message.dequeued/{sid}"), "llm.start", "llm.end"]);
    let mut turns = vec![first["turn_id"].clone()];
    for (i, content) in ["alpha", "beta", "gamma"].iter().enumerate() {
        let r = queue(&mut client, &sid, content).unwrap();
        assert_eq!(r["queued"], true, "{r}");
        assert_eq!(r["position"], i as u64 + 1, "{r}");
        turns.push(r["turn_id"].clone());
    }
    let s = client
        .call("session.get", json!({"session_id": sid}))
        .unwrap();
    assert_eq!(s["queue_length"], 3);
    assert_eq!(s["message_count"], 1, "queued messages are not history yet");

    let last = turns.last().unwrap().as_str().unwrap();
    let seen = events.until_turn("llm.end", last);
    let starts: Vec<&Value> = seen
        .iter()
        .filter(|e| e.envelope.topic == "llm.start")
        .map(|e| &e.envelope.payload["turn_id"])
        .collect();
    assert_eq!(starts, turns[1..].iter().collect::<Vec<_>>());
    // Each turn starts right after the turn before it ends, its dequeue first.
    assert_eq!(
        topics(&seen),
        [
            "llm.end",
            "message.dequeued",
            "llm.start",
            "llm.end",
            "message.dequeued",
            "llm.start",
            "llm.end",
            "message.dequeued",
            "llm.start",
            "llm.end"
        ]
    );
    for e in seen
        .iter()
        .filter(|e| e.envelope.topic == "message.dequeued")
    {
        assert_eq!(e.envelope.payload["reason"], "started");
    }

    let list = client
        .call("message.list", json!({"session_id": sid}))
        .unwrap();
    let users: Vec<&str> = list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(users, [long(100).as_str(), "alpha", "beta", "gamma"]);
    let s = client
        .call("session.get", json!({"session_id": sid}))
        .unwrap();
    assert_eq!(
        (&s["status"], s.get("queue_length")),
        (&json!("idle"), None)
    );
}

#[test]
fn five_queued_messages_then_clear_queue() {
    let d = slow_daemon(20);
    let mut client = d.client();
    let (sid, _) = busy_session(&mut client, 500);
    let events = d.subscriber(&["message."]);
    let queued: Vec<Value> = (1..=5)
        .map(|i| {
            let r = queue(&mut client, &sid, &format!("later {i}")).unwrap();
            assert_eq!(r["position"], i);
            r["message_id"].clone()
        })
        .collect();
    let announced = events
        .until(|e| e.envelope.topic == "message.queued" && e.envelope.payload["position"] == 5);
    let ids: Vec<&Value> = announced
        .iter()
        .filter(|e| e.envelope.topic == "message.queued")
        .map(|e| &e.envelope.payload["message_id"])
        .collect();
    assert_eq!(ids, queued.iter().collect::<Vec<_>>());

    let r = client
        .call(
            "session.interrupt",
            json!({"session_id": sid, "clear_queue": true}),
        )
        .unwrap();
    assert_eq!(r, json!({"ok": true, "interrupted": true, "cleared": 5}));
    let cleared = events.until(|e| {
        e.envelope.topic == "message.dequeued" && e.envelope.payload["queue_length"] == 0
    });
    let gone: Vec<(Value, Value)> = cleared
        .iter()
        .filter(|e| e.envelope.topic == "message.dequeued")
        .map(|e| {
            let p = &e.envelope.payload;
            (p["message_id"].clone(), p["reason"].clone())
        })
        .collect();
    let want: Vec<(Value, Value)> = queued
        .iter()
        .map(|m| (m.clone(), json!("cleared")))
        .collect();
    assert_eq!(gone, want);

    let s = client
        .call("session.get", json!({"session_id": sid}))
        .unwrap();
    assert_eq!(s["status"], "idle");
    assert_eq!(s.get("queue_length"), None);
    // Nothing queued ever ran: the history is the first message and its cut-short reply.
    let list = client
        .call("message.list", json!({"session_id": sid}))
        .unwrap();
    let contents: Vec<&str> = list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert!(
        contents.iter().all(|c| !c.starts_with("later")),
        "{contents:?}"
    );
    let info = client.call("instance.info", json!({})).unwrap();
    assert_eq!(info["running_turns"], 0);
}

#[test]
fn queue_bounds_are_refused_with_queue_full() {
    let d = slow_daemon(50);
    let mut client = d.client();
    let (a, _) = busy_session(&mut client, 200);
    for _ in 0..16 {
        queue(&mut client, &a, "small").unwrap();
    }
    let e = queue(&mut client, &a, "one too many").unwrap_err();
    assert_eq!(e["code"], -32019, "{e}");
    assert_eq!(e["data"]["kind"], "queue_full");
    assert_eq!(e["data"]["scope"], "session");
    assert_eq!(e["data"]["limit"], 16);
    assert_eq!(e["data"]["queued"], 16);
    let s = client
        .call("session.get", json!({"session_id": a}))
        .unwrap();
    assert_eq!(s["queue_length"], 16, "the refusal changed nothing");

    // Bytes: four maximal messages fill a session's megabyte.
    let (b, _) = busy_session(&mut client, 200);
    let big = "x".repeat(256 << 10);
    for _ in 0..4 {
        queue(&mut client, &b, &big).unwrap();
    }
    let e = queue(&mut client, &b, "y").unwrap_err();
    assert_eq!(e["data"]["kind"], "queue_full");
    assert_eq!(e["data"]["queued_bytes"], 1 << 20);
    assert_eq!(e["data"]["limit_bytes"], 1 << 20);

    // A bad when_busy is a params error naming the field.
    let bad = client.call(
        "message.send",
        json!({"session_id": a, "content": "x", "when_busy": "later"}),
    );
    let Err(ClientError::Rpc(bad)) = bad else {
        panic!("{bad:?}")
    };
    assert_eq!(bad.code, -32602);
    assert_eq!(bad.data.unwrap()["field"], "when_busy");
    // Without when_busy a busy session still refuses, as before.
    let busy = client.call("message.send", json!({"session_id": a, "content": "x"}));
    let Err(ClientError::Rpc(busy)) = busy else {
        panic!("{busy:?}")
    };
    assert_eq!(busy.code, -32002);
}

#[test]
fn a_queued_message_survives_kill_9_and_runs_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = zmq::Context::new();
    let (child, rpc, _) = serve_sqlite(dir.path(), &["--token-delay-ms", "50"]);
    let mut client = RpcClient::connect(&ctx, &rpc, WAIT).unwrap();
    let (sid, _) = busy_session(&mut client, 400);
    let params = json!({"session_id": sid, "content": "after the crash", "when_busy": "queue",
                        "request_id": "q-1"});
    let queued = client.call("message.send", params.clone()).unwrap();
    assert_eq!(queued["queued"], true);
    assert_eq!(queued["position"], 1);
    // The reply came after the queued message was committed: a crash now keeps it.
    let (mut child, mut client) = crash_and_restart(child, dir.path(), &ctx);
    let info = client.call("instance.info", json!({})).unwrap();
    assert_eq!(info["recovered_turns"], 1);
    // The same key gets the same answer, queued and placed as it was.
    assert_eq!(client.call("message.send", params).unwrap(), queued);
    // It ran as the session's next turn, with the ids its reply named.
    let list = eventually("the queued turn's reply", || {
        let list = client
            .call("message.list", json!({"session_id": sid}))
            .unwrap();
        let msgs = list["messages"].as_array().unwrap().clone();
        (msgs.last()?["content"] == "echo: after the crash").then_some(msgs)
    });
    let user = list
        .iter()
        .find(|m| m["content"] == "after the crash")
        .unwrap();
    assert_eq!(user["id"], queued["message_id"]);
    assert_eq!(user["turn_id"], queued["turn_id"]);
    assert_eq!(list.iter().filter(|m| m["role"] == "user").count(), 2);
    // The new instance said so: its events from the start show the dequeue and the start.
    let replay = client
        .call(
            "events.replay",
            json!({"after_seq": 0, "prefixes": ["message.dequeued", "llm.start"]}),
        )
        .unwrap();
    let seen: Vec<(&str, &Value)> = replay["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["topic"].as_str().unwrap(), &e["payload"]["turn_id"]))
        .collect();
    assert_eq!(
        seen,
        [
            ("message.dequeued", &queued["turn_id"]),
            ("llm.start", &queued["turn_id"])
        ]
    );
    let s = client
        .call("session.get", json!({"session_id": sid}))
        .unwrap();
    assert_eq!(s.get("queue_length"), None);
    let _ = child.kill();
    let _ = child.wait();
}
