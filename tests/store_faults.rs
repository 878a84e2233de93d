//! A store that cannot commit, through the real binary and sockets: the server stays up, changes
//! are refused within a second with `store_unavailable`, reads, pings and heartbeats go on and say
//! `degraded`, it recovers by itself when the cause goes, and a shutdown that must give changes
//! up exits non-zero. The fault is real: the server's file-size limit (`RLIMIT_FSIZE`, set on the
//! running process with `prlimit`) makes every write to the database fail with `EFBIG`, as a full
//! disk makes them fail with `ENOSPC`; deleting the database file is the other fault.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, live_subscriber, Events, WAIT};
use rustix::process::{prlimit, Pid, Resource, Rlimit};
use serde_json::{json, Value};
use zcoord::client::{ClientError, RpcClient};

const BIN: &str = env!("CARGO_BIN_EXE_zcoord");

struct Server {
    child: Child,
    rpc: String,
    pub_: String,
    log: std::path::PathBuf,
}

/// `zcoord serve` with SQLite on ipc, ignoring `SIGXFSZ` (as a shell's `trap "" XFSZ` leaves it
/// across `exec`), so an exceeded file-size limit is an `EFBIG` write error, not a kill.
fn serve(dir: &Path) -> Server {
    serve_with(dir, &[])
}

/// As [`serve`], with more `serve` arguments.
fn serve_with(dir: &Path, extra: &[&str]) -> Server {
    let log = dir.join("server.log");
    let child = Command::new("sh")
        .arg("-c")
        .arg(r#"trap "" XFSZ; exec "$0" "$@""#)
        .arg(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(["serve", "--heartbeat-interval", "0.1"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let d = common::discovery_of(dir, &child);
    Server {
        rpc: d["endpoints"]["rpc"].as_str().unwrap().to_owned(),
        pub_: d["endpoints"]["pub"].as_str().unwrap().to_owned(),
        child,
        log,
    }
}

impl Server {
    /// Sets the server's file-size limit: `Some(0)` fails every write, `None` lifts it.
    fn limit_file_size(&self, bytes: Option<u64>) {
        let pid = Pid::from_raw(self.child.id() as i32).unwrap();
        let limit = Rlimit {
            current: bytes,
            maximum: None,
        };
        prlimit(Some(pid), Resource::Fsize, limit).expect("prlimit on our own child");
    }

    fn terminate(mut self) -> (Option<i32>, String) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let status = eventually("server exit", || self.child.try_wait().unwrap());
        (status.code(), std::fs::read_to_string(&self.log).unwrap())
    }
}

fn refused(client: &mut RpcClient, method: &str, params: Value) -> Value {
    match client.call(method, params) {
        Err(ClientError::Rpc(e)) => serde_json::to_value(e).unwrap(),
        other => panic!("{method}: expected an error reply, got {other:?}"),
    }
}

/// The next event of `topic` (others skipped), within `WAIT`.
/// The contents of the user messages of a `message.list` answer, in order.
fn user_messages(list: &Value) -> Vec<&str> {
    list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect()
}

fn next_of(events: &Events, topic: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(e) = events.try_next(Duration::from_millis(100)) {
            if e.envelope.topic == topic {
                return e.envelope.payload;
            }
        }
    }
    panic!("no {topic} within {WAIT:?}");
}

#[test]
fn a_store_that_cannot_write_refuses_changes_keeps_serving_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = zmq::Context::new();
    let server = serve(dir.path());
    let status = live_subscriber(&ctx, &server.pub_, &["instance.status"]);
    let beats = live_subscriber(&ctx, &server.pub_, &["instance.heartbeat"]);
    let ends = live_subscriber(&ctx, &server.pub_, &["llm.end"]);
    let mut client = RpcClient::connect(&ctx, &server.rpc, WAIT).unwrap();
    let before = client
        .call("message.send", json!({"content": "before"}))
        .unwrap();
    let sid = before["session_id"].as_str().unwrap().to_owned();
    ends.until_turn("llm.end", before["turn_id"].as_str().unwrap());

    server.limit_file_size(Some(0));
    let asked = Instant::now();
    // A send decided before the failure was known, and a ping right behind it: the send's
    // change is kept but not acknowledged; the ping, which changed nothing, is answered.
    let dealer = ctx.socket(zmq::DEALER).unwrap();
    dealer.set_linger(0).unwrap();
    dealer.connect(&server.rpc).unwrap();
    let during = json!({"jsonrpc": "2.0", "id": 1, "method": "message.send",
                        "params": {"session_id": sid, "content": "during"}});
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "instance.ping"});
    dealer.send(during.to_string().as_bytes(), 0).unwrap();
    dealer.send(ping.to_string().as_bytes(), 0).unwrap();
    let mut replies = std::collections::HashMap::new();
    while replies.len() < 2 {
        let frames = common::recv_within(&dealer, WAIT).expect("both answered");
        let v: Value = serde_json::from_slice(&frames[0]).unwrap();
        replies.insert(v["id"].as_u64().unwrap(), v);
    }
    let waited = asked.elapsed();
    let e = &replies[&1]["error"];
    assert_eq!(e["code"], -32011, "{e}");
    assert_eq!(e["data"]["kind"], "store_unavailable");
    assert_eq!(e["data"]["saved"], false);
    assert_eq!(replies[&2]["result"]["status"], "ok", "{}", replies[&2]);
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");
    let degraded = next_of(&status, "instance.status");
    assert_eq!(degraded["status"], "degraded", "{degraded}");
    // From now on changes are refused outright; reads, pings and heartbeats go on.
    let e = refused(&mut client, "session.create", json!({}));
    assert_eq!(e["data"]["kind"], "store_unavailable");
    assert!(e["data"].get("saved").is_none(), "{e}");
    client.call("instance.ping", json!({})).unwrap();
    // The history is read from the store while it fails: what is saved, and what waits to be
    // (the refused send's message, kept in memory), in order.
    let list = client
        .call("message.list", json!({"session_id": sid}))
        .unwrap();
    assert_eq!(user_messages(&list), ["before", "during"], "{list}");
    let info = client.call("instance.info", json!({})).unwrap();
    assert_eq!(info["status"], "degraded");
    assert!(info["degraded"]["reason"].as_str().is_some(), "{info}");
    // Heartbeats published before the failure may still be queued: the first degraded one
    // comes within a few, and the next ones stay degraded.
    let mut beat = next_of(&beats, "instance.heartbeat");
    for _ in 0..20 {
        if beat["status"] == "degraded" {
            break;
        }
        beat = next_of(&beats, "instance.heartbeat");
    }
    assert_eq!(beat["status"], "degraded", "{beat}");
    assert_eq!(next_of(&beats, "instance.heartbeat")["status"], "degraded");

    server.limit_file_size(None);
    let back = next_of(&status, "instance.status");
    assert_eq!(back["status"], "ok", "{back}");
    let after = client
        .call(
            "message.send",
            json!({"session_id": sid, "content": "after"}),
        )
        .unwrap();
    ends.until_turn("llm.end", after["turn_id"].as_str().unwrap());
    // The change kept during the outage was saved when the store came back.
    let list = client
        .call("message.list", json!({"session_id": sid}))
        .unwrap();
    assert_eq!(user_messages(&list), ["before", "during", "after"]);
    let (code, _) = server.terminate();
    assert_eq!(code, Some(0));
}

#[test]
fn a_shutdown_that_gives_changes_up_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = zmq::Context::new();
    let server = serve(dir.path());
    let mut client = RpcClient::connect(&ctx, &server.rpc, WAIT).unwrap();
    server.limit_file_size(Some(0));
    let e = refused(&mut client, "session.create", json!({"title": "lost"}));
    assert_eq!(e["data"]["kind"], "store_unavailable", "{e}");
    // The log is on the same failing "disk": only the exit code can tell.
    let (code, log) = server.terminate();
    assert_eq!(code, Some(1), "{log}");
}

#[test]
fn a_deleted_database_refuses_changes_until_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = zmq::Context::new();
    let server = serve(dir.path());
    let mut client = RpcClient::connect(&ctx, &server.rpc, WAIT).unwrap();
    client
        .call("session.create", json!({"title": "kept"}))
        .unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("zcoord.db{suffix}")));
    }
    let e = refused(&mut client, "session.create", json!({"title": "lost"}));
    assert_eq!(e["data"]["kind"], "store_unavailable", "{e}");
    assert!(
        e["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("deleted or replaced"),
        "{e}"
    );
    let e = refused(&mut client, "session.create", json!({"title": "again"}));
    assert_eq!(e["data"]["kind"], "store_unavailable", "{e}");
    client.call("instance.ping", json!({})).unwrap();
    let (code, log) = server.terminate();
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("deleted or replaced"), "{log}");
}

/// Queueing is a change like any other: refused while the store cannot commit, taken again once
/// it recovers.
#[test]
fn a_failing_store_refuses_queueing_until_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = zmq::Context::new();
    let server = serve_with(dir.path(), &["--token-delay-ms", "50"]);
    let status = live_subscriber(&ctx, &server.pub_, &["instance.status"]);
    let mut client = RpcClient::connect(&ctx, &server.rpc, WAIT).unwrap();
    let running = client
        .call("message.send", json!({"content": "word ".repeat(400)}))
        .unwrap();
    let sid = running["session_id"].as_str().unwrap().to_owned();
    let queue = json!({"session_id": sid, "content": "next", "when_busy": "queue"});

    // The running turn's next checkpoint fails and the server says so.
    server.limit_file_size(Some(0));
    let degraded = next_of(&status, "instance.status");
    assert_eq!(degraded["status"], "degraded", "{degraded}");
    let e = refused(&mut client, "message.send", queue.clone());
    assert_eq!(e["code"], -32011, "{e}");
    assert_eq!(e["data"]["kind"], "store_unavailable");
    let s = client
        .call("session.get", json!({"session_id": sid}))
        .unwrap();
    assert_eq!(s.get("queue_length"), None, "nothing was queued: {s}");

    server.limit_file_size(None);
    let back = next_of(&status, "instance.status");
    assert_eq!(back["status"], "ok", "{back}");
    let queued = client.call("message.send", queue).unwrap();
    assert_eq!(
        (&queued["queued"], &queued["position"]),
        (&json!(true), &json!(1))
    );
    let cleared = client
        .call(
            "session.interrupt",
            json!({"session_id": sid, "clear_queue": true}),
        )
        .unwrap();
    assert_eq!(cleared["cleared"], 1);
    let (code, _) = server.terminate();
    assert_eq!(code, Some(0));
}
