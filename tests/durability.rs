//! Durable state through the real sockets: a restart keeps everything, replies never show what is
//! not yet committed, `message.list` pages, and (with the binary and SQLite) `kill -9` mid-stream
//! loses nothing but the last moments of the stream.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    crash_and_restart, eventually, live_subscriber, send, serve_sqlite, spawn_daemon_with, WAIT,
};
use serde_json::{json, Value};
use zcoord::client::RpcClient;
use zcoord::config::{ModelConfig, StoreConfig};
use zcoord::core::read::Direction;
use zcoord::store::memory::MemoryStore;
use zcoord::store::Store;

fn with_store(store: MemoryStore) -> impl FnOnce(&mut zcoord::config::Config) {
    move |c| c.store = StoreConfig::Memory(store)
}

fn sessions_by_id(sync: &Value) -> Vec<(String, String, u64)> {
    let mut v: Vec<_> = sync["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["title"].as_str().unwrap().to_owned(),
                s["message_count"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_restart_keeps_sessions_messages_the_active_session_and_request_keys() {
    let store = MemoryStore::new();
    let d = spawn_daemon_with(with_store(store.clone()));
    let events = d.subscriber(&["llm.end"]);
    let a = d.call(
        "message.send",
        json!({"content": "first conversation", "request_id": "r-1"}),
    );
    events.until_turn("llm.end", a["turn_id"].as_str().unwrap());
    let sid = a["session_id"].as_str().unwrap();
    let b = send(&d, Some(sid), "and a follow-up");
    events.until_turn("llm.end", b["turn_id"].as_str().unwrap());
    let other = d.call("session.create", json!({"title": "second"}));
    d.call("session.activate", json!({"session_id": other["id"]}));
    let before_sync = d.call("state.sync", json!({}));
    let before_msgs = d.call("message.list", json!({"session_id": sid}));
    let old_instance = d.instance_id.clone();
    d.stop();

    let d = spawn_daemon_with(with_store(store));
    assert_ne!(d.instance_id, old_instance);
    let after_sync = d.call("state.sync", json!({}));
    assert_eq!(sessions_by_id(&after_sync), sessions_by_id(&before_sync));
    assert_eq!(after_sync["active_session_id"], other["id"]);
    let after_msgs = d.call("message.list", json!({"session_id": sid}));
    assert_eq!(after_msgs, before_msgs);
    assert_eq!(after_msgs["messages"].as_array().unwrap().len(), 4);
    assert_eq!(d.call("instance.info", json!({}))["recovered_turns"], 0);
    // The idempotency key survived: the retry is answered from the store and starts nothing.
    let events = d.subscriber(&["llm.start"]);
    let retry = d.call(
        "message.send",
        json!({"content": "first conversation", "request_id": "r-1"}),
    );
    assert_eq!(retry, a);
    assert!(events.try_next(Duration::from_millis(300)).is_none());
}

#[test]
fn replies_wait_until_what_they_show_is_committed() {
    let store = MemoryStore::with_commit_delay(Duration::from_millis(150));
    let d = spawn_daemon_with(with_store(store.clone()));
    let mut probe = store.clone();
    let r = send(&d, None, "is this saved before the reply?");
    // The reply came back, so the user message must already be in the store.
    let snap = probe.load(10).unwrap();
    let session = snap
        .sessions
        .iter()
        .find(|s| s.record.id.to_string() == r["session_id"].as_str().unwrap())
        .expect("session committed before the reply");
    assert_eq!(session.message_count, 1);
    let mut first = None;
    probe
        .scan_messages(session.record.id, 0..1, Direction::Forward, &mut |m| {
            first = Some(m.id.to_string());
            false
        })
        .unwrap();
    assert_eq!(first.as_deref(), r["message_id"].as_str());
}

#[test]
fn message_list_pages_before_and_after() {
    let d = spawn_daemon_with(|c| {
        c.model = ModelConfig::Echo {
            token_delay: Duration::ZERO,
        }
    });
    let events = d.subscriber(&["llm.end"]);
    let first = send(&d, None, "m0");
    events.until_turn("llm.end", first["turn_id"].as_str().unwrap());
    let sid = first["session_id"].as_str().unwrap().to_owned();
    for i in 1..5 {
        let r = send(&d, Some(&sid), &format!("m{i}"));
        events.until_turn("llm.end", r["turn_id"].as_str().unwrap());
    }
    let all = d.call("message.list", json!({"session_id": sid}));
    let ids: Vec<String> = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!((ids.len(), all["has_more"].as_bool()), (10, Some(false)));
    let page = |params: Value| {
        let r = d.call("message.list", params);
        let got: Vec<String> = r["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        (got, r["has_more"].as_bool().unwrap())
    };
    assert_eq!(
        page(json!({"session_id": sid, "limit": 3})),
        (ids[7..].to_vec(), true)
    );
    assert_eq!(
        page(json!({"session_id": sid, "limit": 3, "before": ids[7]})),
        (ids[4..7].to_vec(), true)
    );
    assert_eq!(
        page(json!({"session_id": sid, "limit": 4, "after": ids[5]})),
        (ids[6..].to_vec(), false)
    );
    let e = d
        .client()
        .call("message.list", json!({"session_id": sid, "before": "nope"}))
        .unwrap_err();
    let zcoord::client::ClientError::Rpc(e) = e else {
        panic!("{e:?}")
    };
    assert_eq!(
        (e.code, e.data.unwrap()["kind"].clone()),
        (-32007, json!("message_not_found"))
    );
    let e = d
        .client()
        .call("message.list", json!({"session_id": sid, "limit": 0}))
        .unwrap_err();
    let zcoord::client::ClientError::Rpc(e) = e else {
        panic!("{e:?}")
    };
    assert_eq!(
        (e.code, e.data.unwrap()["field"].clone()),
        (-32602, json!("limit"))
    );
}

#[test]
fn kill_9_mid_stream_keeps_the_user_message_and_the_partial_reply() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = zmq::Context::new();
    let (child, rpc, pub_) = serve_sqlite(dir.path(), &["--token-delay-ms", "15"]);
    let events = live_subscriber(&ctx, &pub_, &["llm.token"]);
    let mut client = RpcClient::connect(&ctx, &rpc, WAIT).unwrap();
    let content = "word ".repeat(400);
    let r = client
        .call("message.send", json!({"content": content}))
        .unwrap();
    // Stream for well over a checkpoint interval (1 s) before the crash.
    events.until(|e| e.envelope.payload["index"].as_u64() >= Some(120));
    let (mut child, mut client) = crash_and_restart(child, dir.path(), &ctx);
    let info = client.call("instance.info", json!({})).unwrap();
    assert_eq!(info["recovered_turns"], 1);
    assert!(info["store"].as_str().unwrap().starts_with("sqlite:"));
    let sid = r["session_id"].as_str().unwrap();
    let list = client
        .call("message.list", json!({"session_id": sid}))
        .unwrap();
    let msgs = list["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{list}");
    assert_eq!(
        (msgs[0]["role"].as_str(), msgs[0]["content"].as_str()),
        (Some("user"), Some(content.as_str()))
    );
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[1]["status"], "interrupted");
    let partial = msgs[1]["content"].as_str().unwrap();
    let full = format!("echo: {}", content.trim_end());
    assert!(
        full.starts_with(partial),
        "the partial reply is a prefix of the reply"
    );
    assert!(
        partial.split_whitespace().count() >= 40,
        "at least a checkpoint's worth survived: {partial:?}"
    );
    let s = client
        .call("session.get", json!({"session_id": sid}))
        .unwrap();
    assert_eq!(s["status"], "idle");

    // A new message works and completes.
    let events = live_subscriber(&ctx, &pub_of(dir.path()), &["llm.end"]);
    let r2 = client
        .call(
            "message.send",
            json!({"session_id": sid, "content": "still here?"}),
        )
        .unwrap();
    let end = events.until_turn("llm.end", r2["turn_id"].as_str().unwrap());
    assert_eq!(end.last().unwrap().envelope.payload["reason"], "completed");
    let _ = child.kill();
    let _ = child.wait();
}

fn pub_of(dir: &Path) -> String {
    let d: Value =
        serde_json::from_slice(&std::fs::read(dir.join("instance.json")).unwrap()).unwrap();
    d["endpoints"]["pub"].as_str().unwrap().to_owned()
}

#[test]
fn a_graceful_restart_with_sqlite_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = zmq::Context::new();
    let (child, rpc, pub_) = serve_sqlite(dir.path(), &[]);
    let events = live_subscriber(&ctx, &pub_, &["llm.end"]);
    let mut client = RpcClient::connect(&ctx, &rpc, WAIT).unwrap();
    let r = client
        .call(
            "message.send",
            json!({"content": "remember me", "request_id": "rk"}),
        )
        .unwrap();
    events.until_turn("llm.end", r["turn_id"].as_str().unwrap());
    let before = client
        .call("message.list", json!({"session_id": r["session_id"]}))
        .unwrap();
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let mut child = child;
    let status = eventually("server exit", || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0));

    let (mut child, rpc, _) = serve_sqlite(dir.path(), &[]);
    let mut client = RpcClient::connect(&ctx, &rpc, WAIT).unwrap();
    let after = client
        .call("message.list", json!({"session_id": r["session_id"]}))
        .unwrap();
    assert_eq!(after, before);
    let sync = client.call("state.sync", json!({})).unwrap();
    assert_eq!(sync["active_session_id"], r["session_id"]);
    let retry = client
        .call(
            "message.send",
            json!({"content": "remember me", "request_id": "rk"}),
        )
        .unwrap();
    assert_eq!(retry, r);
    assert_eq!(
        client.call("instance.info", json!({})).unwrap()["recovered_turns"],
        0
    );
    let _ = child.kill();
    let _ = child.wait();
}
