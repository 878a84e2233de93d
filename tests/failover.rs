//! One primary per data directory, standbys that take over: three `serve --standby` started at
//! once, a graceful handover and a `kill -9` handover mid-stream, through the real binary and the
//! stable ipc endpoints. Prints the measured takeover times.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::{eventually, live_subscriber, view_of_primary, view_of_replica, WAIT};
use serde_json::{json, Value};
use zcoord::client::RpcClient;
use zcoord::mirror::Mirror;

const BIN: &str = env!("CARGO_BIN_EXE_zcoord");

/// A `serve --standby` process whose stdout lines are collected.
struct Node {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn start(dir: &Path) -> Node {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .args([
                "serve",
                "--standby",
                "--heartbeat-interval",
                "0.05",
                "--token-delay-ms",
                "20",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Node { child, lines }
    }

    fn said(&self, what: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(what))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn discovery(dir: &Path) -> Option<Value> {
    std::fs::read(dir.join("instance.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Waits until the discovery file names a live primary other than `old` and it answers a ping.
fn new_primary(dir: &Path, ctx: &zmq::Context, old: Option<&str>) -> (Value, RpcClient) {
    let d = eventually("a new primary", || {
        discovery(dir).filter(|d| Some(d["instance_id"].as_str().unwrap()) != old)
    });
    let mut c = RpcClient::connect(ctx, d["endpoints"]["rpc"].as_str().unwrap(), WAIT).unwrap();
    let ping = c.call("instance.ping", json!({})).unwrap();
    assert_eq!(
        ping["instance_id"], d["instance_id"],
        "reached the instance the file names"
    );
    (d, c)
}

#[test]
fn standbys_take_over_after_a_graceful_exit_and_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = zmq::Context::new();
    let mut nodes: Vec<Node> = (0..3).map(|_| Node::start(dir.path())).collect();

    // Exactly one primary, two standbys.
    let (first, mut rpc) = new_primary(dir.path(), &ctx, None);
    eventually("two standbys", || {
        (nodes.iter().filter(|n| n.said("standby:")).count() == 2).then_some(())
    });
    assert_eq!(nodes.iter().filter(|n| n.said("serving")).count(), 1);
    let first_id = first["instance_id"].as_str().unwrap().to_owned();
    let primary_at = nodes.iter().position(|n| n.pid() == first["pid"]).unwrap();

    // Some committed state, and a subscriber that stays connected across the switches.
    let pub_ep = first["endpoints"]["pub"].as_str().unwrap().to_owned();
    let events = live_subscriber(&ctx, &pub_ep, &["instance.", "llm.end"]);
    let rpc_ep = first["endpoints"]["rpc"].as_str().unwrap().to_owned();
    let mirror = Mirror::start(&rpc_ep, &pub_ep, WAIT);
    let sent = rpc
        .call("message.send", json!({"content": "before the switch"}))
        .unwrap();
    let sid = sent["session_id"].as_str().unwrap().to_owned();
    events.until_turn("llm.end", sent["turn_id"].as_str().unwrap());

    // Graceful: SIGTERM the primary; a standby takes over.
    let t0 = Instant::now();
    let ok = Command::new("kill")
        .args(["-TERM", &first["pid"].to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let (second, mut rpc) = new_primary(dir.path(), &ctx, Some(&first_id));
    let graceful = t0.elapsed();
    let second_id = second["instance_id"].as_str().unwrap().to_owned();
    assert_eq!(
        second["endpoints"]["pub"],
        pub_ep.as_str(),
        "same endpoints after failover"
    );
    // The subscriber reconnects by itself; the new primary's heartbeats say whom it replaced
    // (the one-time instance.promoted went out before the subscriber was back).
    let seen = events.until(|e| {
        e.envelope.topic == "instance.heartbeat" && e.envelope.instance_id.to_string() == second_id
    });
    assert_eq!(
        seen.last().unwrap().envelope.payload["promoted_from"],
        first_id.as_str()
    );
    assert!(
        seen.iter().any(|e| e.envelope.topic == "instance.shutdown"),
        "the subscriber saw the old primary leave"
    );
    assert_eq!(
        rpc.call("instance.info", json!({})).unwrap()["promoted_from"],
        first_id.as_str()
    );
    let list = rpc
        .call("message.list", json!({"session_id": sid}))
        .unwrap();
    assert_eq!(
        list["messages"].as_array().unwrap().len(),
        2,
        "committed state carried over"
    );
    converges(&mirror, &mut rpc, &second_id);
    nodes.remove(primary_at);

    // kill -9 in the middle of a streaming turn; the last standby takes over.
    let long = rpc
        .call(
            "message.send",
            json!({"session_id": sid, "content": "word ".repeat(300)}),
        )
        .unwrap();
    events.until(|e| {
        e.envelope.topic == "instance.heartbeat" && e.envelope.instance_id.to_string() == second_id
    });
    let second_at = nodes.iter().position(|n| n.pid() == second["pid"]).unwrap();
    let t1 = Instant::now();
    nodes[second_at].child.kill().unwrap();
    let (third, mut rpc) = new_primary(dir.path(), &ctx, Some(&second_id));
    let killed = t1.elapsed();
    let third_id = third["instance_id"].as_str().unwrap().to_owned();
    let seen = events.until(|e| {
        e.envelope.topic == "instance.heartbeat" && e.envelope.instance_id.to_string() == third_id
    });
    assert_eq!(
        seen.last().unwrap().envelope.payload["promoted_from"],
        second_id.as_str()
    );
    let info = rpc.call("instance.info", json!({})).unwrap();
    assert_eq!(
        info["recovered_turns"], 1,
        "the interrupted turn was closed"
    );
    let list = rpc
        .call("message.list", json!({"session_id": sid}))
        .unwrap();
    let msgs = list["messages"].as_array().unwrap();
    assert_eq!(
        msgs[2]["content"],
        "word ".repeat(300),
        "the committed user message survived"
    );
    assert_eq!(msgs[2]["turn_id"], long["turn_id"]);
    let s = rpc.call("session.get", json!({"session_id": sid})).unwrap();
    assert_eq!(s["status"], "idle");
    converges(&mirror, &mut rpc, &third_id);
    eprintln!("takeover: graceful {graceful:?}, kill -9 {killed:?}");
}

/// The mirror, which was never restarted, ends with the same state as the current primary.
fn converges(mirror: &Mirror, rpc: &mut RpcClient, instance: &str) {
    let ok = (0..500).any(|_| {
        let r = mirror.replica();
        let same = r.instance_id.map(|i| i.to_string()).as_deref() == Some(instance)
            && view_of_replica(&r) == view_of_primary(rpc);
        if !same {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        same
    });
    assert!(
        ok,
        "mirror did not converge:\nreplica {:#?}\nprimary {:#?}",
        view_of_replica(&mirror.replica()),
        view_of_primary(rpc)
    );
}

/// No split brain: a frozen primary keeps its lock, so the standby does not take over, and the
/// primary carries on when resumed.
#[test]
fn a_sigstopped_primary_is_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = zmq::Context::new();
    let first = Node::start(dir.path());
    let (primary, _) = new_primary(dir.path(), &ctx, None);
    let standby = Node::start(dir.path());
    eventually("the standby", || standby.said("standby:").then_some(()));
    let pid = primary["pid"].to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    // Ten times the standby's polling interval and far over the heartbeat interval: a
    // heartbeat-based election would have promoted it by now.
    let deadline = Instant::now() + zcoord::election::POLL * 10;
    while Instant::now() < deadline {
        assert!(
            !standby.said("serving"),
            "the standby took over from a frozen primary"
        );
        std::thread::sleep(zcoord::election::POLL);
    }
    assert_eq!(discovery(dir.path()).unwrap()["pid"], primary["pid"]);
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    let (again, _) = new_primary(dir.path(), &ctx, None);
    assert_eq!(
        again["instance_id"], primary["instance_id"],
        "the same primary carries on"
    );
    assert!(!standby.said("serving"));
    drop(first);
}

/// `zcoord watch` across a `kill -9` failover: it says the old primary is gone as soon as its
/// process has ended (not after an idle timeout), then resyncs from the standby that took over.
#[test]
fn watch_says_a_killed_primary_is_gone_and_resyncs_from_the_standby() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = zmq::Context::new();
    let mut first = Node::start(dir.path());
    let (primary, _) = new_primary(dir.path(), &ctx, None);
    let _standby = Node::start(dir.path());
    let old = primary["instance_id"].as_str().unwrap().to_owned();

    let mut watch = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("watch")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let out = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let said = |what: &str| lines.lock().unwrap().iter().any(|l| l.contains(what));
    eventually("watch's first sync", || {
        said(&format!("synced instance={old}")).then_some(())
    });

    let t0 = Instant::now();
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    eventually("watch to say the primary is gone", || {
        said(&format!("primary-gone instance={old}")).then_some(())
    });
    let noticed = t0.elapsed();
    let (second, _) = new_primary(dir.path(), &ctx, Some(&old));
    let new = second["instance_id"].as_str().unwrap().to_owned();
    eventually("watch to resync from the new primary", || {
        said(&format!("synced instance={new}")).then_some(())
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let gone: Vec<String> = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("primary-gone"))
        .cloned()
        .collect();
    assert_eq!(gone.len(), 1, "said once: {gone:?}");
    eprintln!("watch noticed the kill -9 after {noticed:?}: {}", gone[0]);
}
