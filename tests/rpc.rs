//! Every RPC method through the real ROUTER: results, application errors, busy and idempotency.

mod common;

use common::{send, spawn_daemon, spawn_daemon_with};
use serde_json::{json, Value};
use zcoord::client::ClientError;

fn rpc_error(r: Result<Value, ClientError>) -> zcoord::protocol::errors::RpcError {
    match r {
        Err(ClientError::Rpc(e)) => e,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[test]
fn ping_and_info_describe_this_instance() {
    let d = spawn_daemon();
    let ping = d.call("instance.ping", json!({}));
    assert_eq!(ping["status"], "ok");
    assert_eq!(ping["instance_id"], d.instance_id.as_str());
    assert!(ping["uptime"].as_str().unwrap().ends_with('s'));

    let info = d.call("instance.info", json!({}));
    assert_eq!(info["instance_id"], d.instance_id.as_str());
    assert_eq!(info["protocol_version"], 2);
    assert_eq!(info["pid"], std::process::id());
    assert_eq!(info["endpoints"]["rpc"], d.rpc.as_str());
    assert_eq!(info["endpoints"]["pub"], d.pub_.as_str());
    assert_eq!(info["model"], "echo");
    assert_eq!(info["session_count"], 0);
    assert!(info.get("active_session_id").is_none());
    for counter in [
        "replies_dropped",
        "outbound_dropped",
        "requests_refused_busy",
        "requests_dropped",
    ] {
        assert!(info["drops"][counter].is_u64(), "{counter}");
    }
    time::OffsetDateTime::parse(
        info["started_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("started_at is RFC 3339");
}

/// Without the core's spin every request takes the wake-up path: requests in a row, and a
/// streamed turn's events, still arrive.
#[test]
fn answers_come_without_the_spin_too() {
    let d = spawn_daemon_with(|c| {
        c.core_spin = std::time::Duration::ZERO;
    });
    let mut rpc = d.client();
    for _ in 0..200 {
        let ping = rpc.call("instance.ping", json!({})).expect("ping");
        assert_eq!(ping["status"], "ok");
    }
    let events = d.subscriber(&["llm.end"]);
    send(&d, None, "two words");
    let end = events.next();
    assert_eq!(end.envelope.payload["reason"], "completed");
}

#[test]
fn session_lifecycle_create_get_list_activate_delete() {
    let d = spawn_daemon();
    let a = d.call("session.create", json!({"title": "first"}));
    assert_eq!(a["title"], "first");
    assert_eq!(a["message_count"], 0);
    assert_eq!(a["status"], "idle");
    let b = d.call("session.create", json!({}));
    assert_eq!(b["title"], "New session");

    let got = d.call("session.get", json!({"session_id": a["id"]}));
    assert_eq!(got, a);
    let list = d.call("session.list", json!({}));
    assert_eq!(list["sessions"].as_array().unwrap().len(), 2);

    // The first session became active on creation; activation moves it.
    let sync = d.call("state.sync", json!({}));
    assert_eq!(sync["active_session_id"], a["id"]);
    assert_eq!(
        d.call("session.activate", json!({"session_id": b["id"]})),
        json!({"ok": true})
    );
    let sync = d.call("state.sync", json!({"project_id": "ignored"}));
    assert_eq!(sync["active_session_id"], b["id"]);
    assert_eq!(sync["instance_id"], d.instance_id.as_str());
    assert!(sync["seq"].as_u64().unwrap() >= 5);

    assert_eq!(
        d.call("session.delete", json!({"session_id": b["id"]})),
        json!({"ok": true})
    );
    let sync = d.call("state.sync", json!({}));
    assert_eq!(sync["sessions"].as_array().unwrap().len(), 1);
    assert!(
        sync.get("active_session_id").is_none(),
        "deleting the active session clears it"
    );
    let e = rpc_error(
        d.client()
            .call("session.get", json!({"session_id": b["id"]})),
    );
    assert_eq!(e.code, -32001);
}

#[test]
fn message_send_runs_a_turn_and_message_list_shows_both_sides() {
    let d = spawn_daemon();
    let events = d.subscriber(&["llm.end"]);
    let r = send(&d, None, "hello world");
    assert_eq!(r["ok"], true);
    for field in ["session_id", "message_id", "turn_id"] {
        assert!(r[field].is_string(), "{field}");
    }
    events.until_turn("llm.end", r["turn_id"].as_str().unwrap());

    let list = d.call("message.list", json!({"session_id": r["session_id"]}));
    let msgs = list["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["id"], r["message_id"]);
    assert_eq!(
        (msgs[0]["role"].as_str(), msgs[0]["content"].as_str()),
        (Some("user"), Some("hello world"))
    );
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[1]["content"], "echo: hello world");
    assert_eq!(msgs[1]["status"], "complete");
    assert_eq!(msgs[1]["turn_id"], r["turn_id"]);
    let s = d.call("session.get", json!({"session_id": r["session_id"]}));
    assert_eq!(
        (s["title"].as_str(), s["message_count"].as_u64()),
        (Some("hello world"), Some(2))
    );
    assert_eq!(s["status"], "idle");
}

#[test]
fn second_send_while_a_turn_runs_is_session_busy() {
    let d = spawn_daemon_with(|c| {
        c.model = zcoord::config::ModelConfig::Echo {
            token_delay: std::time::Duration::from_millis(50),
        }
    });
    let r = send(
        &d,
        None,
        "a fairly long message so the turn keeps running for a while",
    );
    let e = rpc_error(d.client().call(
        "message.send",
        json!({"session_id": r["session_id"], "content": "again"}),
    ));
    assert_eq!(e.code, -32002);
    let data = e.data.unwrap();
    assert_eq!(data["kind"], "session_busy");
    assert_eq!(data["turn_id"], r["turn_id"]);
    let i = d.call("session.interrupt", json!({"session_id": r["session_id"]}));
    assert_eq!(i, json!({"ok": true, "interrupted": true}));
    let i = d.call("session.interrupt", json!({"session_id": r["session_id"]}));
    assert_eq!(i, json!({"ok": true, "interrupted": false}));
    // Idle again: a new message is accepted.
    send(
        &d,
        Some(r["session_id"].as_str().unwrap()),
        "after interrupt",
    );
}

#[test]
fn request_id_makes_message_send_idempotent() {
    let d = spawn_daemon();
    let events = d.subscriber(&["llm.start"]);
    let params = json!({"content": "once", "request_id": "req-1"});
    let first = d.call("message.send", params.clone());
    // A retry from another connection (a client that reconnected) gets the same answer.
    let again = d.call("message.send", params);
    assert_eq!(first, again);
    let starts = events.until_turn("llm.start", first["turn_id"].as_str().unwrap());
    assert_eq!(starts.len(), 1);
    assert!(
        events
            .try_next(std::time::Duration::from_millis(300))
            .is_none(),
        "the retry started no second turn"
    );
    assert_eq!(
        d.call("session.list", json!({}))["sessions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn unknown_sessions_are_reported_for_every_method_that_takes_one() {
    let d = spawn_daemon();
    let mut c = d.client();
    for method in [
        "session.get",
        "session.activate",
        "session.delete",
        "session.interrupt",
        "message.list",
    ] {
        for id in ["01900000-0000-7000-8000-000000000000", "not-a-uuid"] {
            let e = rpc_error(c.call(method, json!({"session_id": id})));
            assert_eq!(e.code, -32001, "{method}");
            let data = e.data.unwrap();
            assert_eq!(data["kind"], "session_not_found");
            assert_eq!(data["session_id"], id);
        }
    }
    let e = rpc_error(c.call(
        "message.send",
        json!({"session_id": "nope", "content": "x"}),
    ));
    assert_eq!(e.code, -32001);
}

#[test]
fn a_transport_dropped_without_close_frees_its_endpoints() {
    use zcoord::protocol::ids::InstanceId;
    use zcoord::transport::{Transport, TransportConfig};
    let (transport, _inputs) = Transport::start(
        &TransportConfig::default(),
        InstanceId(uuid::Uuid::now_v7()),
    )
    .expect("start");
    let (rpc, pub_) = (
        transport.rpc_endpoint.clone(),
        transport.pub_endpoint.clone(),
    );
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(transport);
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(common::WAIT)
        .expect("dropping a transport does not hang");
    // Its thread closed both sockets: the ports can be bound again.
    let ctx = zmq::Context::new();
    for endpoint in [rpc, pub_] {
        let s = ctx.socket(zmq::ROUTER).unwrap();
        s.set_linger(0).unwrap();
        s.bind(&endpoint)
            .unwrap_or_else(|e| panic!("{endpoint} still bound: {e}"));
    }
}

#[test]
fn an_unknown_method_suggests_the_nearest_one_when_it_is_close() {
    let d = common::spawn_daemon();
    let mut c = d.client();
    let e = common::refused(&mut c, "sesion.list", json!({}));
    assert_eq!(e["code"], -32601);
    assert_eq!(e["data"]["suggestion"], "session.list");
    let e = common::refused(&mut c, "frobnicate", json!({}));
    assert_eq!(e["code"], -32601);
    assert!(e.get("data").is_none(), "nothing close: no suggestion: {e}");
}
