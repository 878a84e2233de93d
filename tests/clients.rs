//! Clients as peers through the real sockets: hello and versions, presence (a client killed with
//! `kill -9` leaves within the timeout), authors, and client-run tools: claim races, a claimant
//! that dies mid-call, an `ask` policy in front, and a call nobody claims.
//!
//! A client that must die without a word is this test binary run again as a child process
//! (`child_client`, ignored unless asked for), so that `kill -9` kills a real peer.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{refused, send, spawn_daemon_with, Daemon, WAIT};
use serde_json::{json, Value};
use zcoord::client::{ClientError, RpcClient};
use zcoord::core::policy::Policy;

const TOOL: &str = "open_editors";
const CALL: &str = "/tool open_editors {\"limit\":5}";

fn daemon(policy: Option<Policy>) -> Daemon {
    spawn_daemon_with(move |c| {
        c.client_timeout = Duration::from_secs(1);
        c.tool_claim_timeout = Duration::from_secs(1);
        if let Some(p) = policy {
            c.tool_policy.set(TOOL, p);
        }
    })
}

fn tool_spec() -> Value {
    json!({"name": TOOL, "description": "The files open in the editor",
           "parameters": {"type": "object", "properties": {"limit": {"type": "integer"}}}})
}

fn hello(client: &mut RpcClient, id: &str, tools: Value) -> Value {
    client
        .call(
            "client.hello",
            json!({"client_id": id, "name": format!("{id} app"), "version": "0.3",
               "protocol_versions": [2], "tools": tools}),
        )
        .unwrap_or_else(|e| panic!("hello {id}: {e}"))
}

#[test]
fn versions_are_negotiated_both_ways_and_an_anonymous_client_works_as_before() {
    let d = daemon(None);
    let mut a = d.client();
    let ok = a
        .call(
            "client.hello",
            json!({"client_id": "a", "name": "A", "protocol_versions": [3, 1, 2]}),
        )
        .unwrap();
    assert_eq!(ok["protocol_version"], 2);
    assert_eq!(ok["instance_id"], d.instance_id.as_str());
    assert_eq!(ok["capabilities"]["client_tools"], true);

    let mut b = d.client();
    let e = refused(
        &mut b,
        "client.hello",
        json!({"client_id": "b", "name": "B", "protocol_versions": [1, 3]}),
    );
    assert_eq!(e["code"], -32014);
    assert_eq!(e["data"]["kind"], "version_mismatch");
    assert_eq!(e["data"]["supported"], json!([2]));

    // Without hello everything works as it did, and nothing is attributed.
    let r = send(&d, None, "anonymous");
    let page = d.call("message.list", json!({"session_id": r["session_id"]}));
    assert!(page["messages"][0].get("author").is_none(), "{page}");
    let list = d.call("client.list", json!({}));
    assert_eq!(list["clients"].as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn bad_hellos_are_refused_naming_what_is_wrong() {
    let d = daemon(None);
    let mut c = d.client();
    let base = |tools: Value| json!({"client_id": "c", "name": "C", "protocol_versions": [2], "tools": tools});
    let cases = [
        (
            base(json!([{"name": "t", "parameters": {"type": "objekt"}}])),
            "invalid_tool",
        ),
        (
            base(json!([{"name": "read_file", "parameters": {"type": "object"}}])),
            "invalid_tool",
        ),
        (base(json!([{"name": "t"}])), "invalid_tool"),
        (
            base(json!((0..33)
                .map(|i| json!({"name": format!("t{i}"), "parameters": {"type": "object"}}))
                .collect::<Vec<_>>())),
            "too_many_tools",
        ),
        (
            json!({"client_id": "c", "name": "C", "protocol_versions": []}),
            "",
        ),
        (
            json!({"client_id": "x".repeat(300), "name": "C", "protocol_versions": [2]}),
            "client_id_too_long",
        ),
    ];
    for (params, kind) in cases {
        let e = refused(&mut c, "client.hello", params.clone());
        assert_eq!(e["code"], -32602, "{params}");
        if !kind.is_empty() {
            assert_eq!(e["data"]["kind"], kind, "{e}");
        }
    }
    let e = refused(
        &mut c,
        "client.hello",
        base(json!([{"name": "t", "parameters": {"type": "object", "required": "x"}}])),
    );
    assert_eq!(e["data"]["tool"], "t", "{e}");
    assert!(e["message"].as_str().unwrap().contains("#/required"), "{e}");
    // Nobody got in.
    let list = d.call("client.list", json!({}));
    assert_eq!(list["clients"], json!([]));
}

#[test]
fn a_reconnect_replaces_the_stale_entry_and_the_author_is_recorded() {
    let d = daemon(None);
    let events = d.subscriber(&["client.", "message.append"]);
    let mut first = d.client();
    hello(&mut first, "vscode-1", json!([]));
    assert_eq!(events.payload("client.joined")["rejoined"], false);
    // The same client on a new socket (it reconnected): one entry, never two.
    let mut second = d.client();
    hello(&mut second, "vscode-1", json!([tool_spec()]));
    let joined = events.payload("client.joined");
    assert_eq!(joined["rejoined"], true);
    assert_eq!(joined["tools"], json!([TOOL]));
    let list = d.call("client.list", json!({}));
    let clients = list["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{list}");
    assert_eq!(clients[0]["client_id"], "vscode-1");
    let sync = d.call("state.sync", json!({}));
    assert_eq!(sync["clients"], list["clients"]);

    // Its messages carry it as the author, in the event and in the history.
    let r = second
        .call("message.send", json!({"content": "from the editor"}))
        .unwrap();
    let append = events.payload("message.append");
    assert_eq!(
        append["author"],
        json!({"client_id": "vscode-1", "name": "vscode-1 app"})
    );
    let page = d.call("message.list", json!({"session_id": r["session_id"]}));
    assert_eq!(page["messages"][0]["author"]["client_id"], "vscode-1");

    // Goodbye: it leaves at once.
    second.call("client.goodbye", json!({})).unwrap();
    let left = events.payload("client.left");
    assert_eq!(left["reason"], "goodbye");
    assert_eq!(d.call("client.list", json!({}))["clients"], json!([]));
}

/// Runs this test binary again as `child_client`: a client in a process of its own.
fn child(d: &Daemon, role: &str, id: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_client", "--ignored", "--nocapture"])
        .env("ZCOORD_CHILD_RPC", &d.rpc)
        .env("ZCOORD_CHILD_ROLE", role)
        .env("ZCOORD_CHILD_ID", id)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child client");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_line(rx: &mpsc::Receiver<String>, want: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.trim() == want => return,
            Ok(_) => continue,
            Err(e) => panic!("the child never said {want}: {e}"),
        }
    }
}

fn kill_9(child: &mut Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    let _ = child.wait();
}

/// Not a test on its own: the client `child` runs in another process. `hello` says hello and
/// pings until killed; `claim` says hello declaring the tool, claims the first call it can, and
/// then says nothing more.
#[test]
#[ignore]
fn child_client() {
    let Ok(rpc) = std::env::var("ZCOORD_CHILD_RPC") else {
        return;
    };
    let role = std::env::var("ZCOORD_CHILD_ROLE").unwrap();
    let id = std::env::var("ZCOORD_CHILD_ID").unwrap();
    let ctx = zmq::Context::new();
    let mut c = RpcClient::connect(&ctx, &rpc, WAIT).unwrap();
    hello(&mut c, &id, json!([tool_spec()]));
    println!("HELLO");
    if role == "claim" {
        loop {
            if c.call("tool.claim", json!({"call_id": "call_1"})).is_ok() {
                println!("CLAIMED");
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    loop {
        if role == "hello" {
            let _ = c.call("instance.ping", json!({}));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_client_killed_with_kill_9_leaves_within_the_timeout() {
    let d = daemon(None);
    let events = d.subscriber(&["client."]);
    let (mut c, lines) = child(&d, "hello", "doomed");
    wait_line(&lines, "HELLO");
    assert_eq!(events.payload("client.joined")["client_id"], "doomed");
    // It pings, so it stays while alive: two timeouts pass without a client.left.
    assert!(events.try_next(Duration::from_millis(2_200)).is_none());
    let killed = Instant::now();
    kill_9(&mut c);
    let left = events.payload("client.left");
    assert_eq!(left["client_id"], "doomed");
    assert_eq!(left["reason"], "timeout");
    // 1 s of silence, noticed on the next 0.5 s tick; generous for a loaded machine.
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(d.call("client.list", json!({}))["clients"], json!([]));
}

#[test]
fn two_clients_race_to_claim_and_exactly_one_runs_the_call() {
    let d = daemon(None);
    let events = d.subscriber(&["tool.", "llm.end", "message.append"]);
    let mut a = d.client();
    let mut b = d.client();
    hello(&mut a, "a", json!([tool_spec()]));
    hello(&mut b, "b", json!([tool_spec()]));
    let r = send(&d, None, &format!("what is open?\n{CALL}"));
    let turn = r["turn_id"].as_str().unwrap().to_owned();
    let start = events.payload("tool.start");
    assert_eq!(start["executor"], "client");
    assert_eq!(start["tool_name"], TOOL);
    assert!(start.get("awaiting_approval").is_none(), "{start}");

    // Both claim at once, from two threads.
    let race = |mut c: RpcClient| {
        std::thread::spawn(move || {
            let got = c.call("tool.claim", json!({"call_id": "call_1"}));
            (c, got)
        })
    };
    let (ta, tb) = (race(a), race(b));
    let (mut a, ra) = ta.join().unwrap();
    let (mut b, rb) = tb.join().unwrap();
    let (winner, loser, won, lost) = match (ra, rb) {
        (Ok(w), Err(ClientError::Rpc(l))) => ("a", &mut b, w, l),
        (Err(ClientError::Rpc(l)), Ok(w)) => ("b", &mut a, w, l),
        other => panic!("exactly one claim wins: {other:?}"),
    };
    assert_eq!(won["params"], "{\"limit\":5}");
    assert_eq!(won["turn_id"], turn.as_str());
    assert_eq!(lost.code, -32015);
    let data = lost.data.unwrap();
    assert_eq!(data["kind"], "tool_claimed");
    assert_eq!(data["client_id"], winner);
    let claimed = events.payload("tool.claimed");
    assert_eq!(claimed["client_id"], winner);

    // The loser's result is refused; the winner's ends the call; a second one is too late.
    let e = refused(
        loser,
        "tool.result",
        json!({"call_id": "call_1", "result": "x"}),
    );
    assert_eq!(e["data"]["kind"], "not_claimant");
    assert_eq!(e["data"]["claimant"], winner);
    let mut w = d.client();
    // A third socket is not the winner either, even with the right call id.
    let e = refused(
        &mut w,
        "tool.result",
        json!({"call_id": "call_1", "result": "x"}),
    );
    assert_eq!(e["code"], -32017);
    let mut winner_client = if winner == "a" { a } else { b };
    winner_client
        .call(
            "tool.result",
            json!({"call_id": "call_1", "result": {"files": ["main.rs"]}}),
        )
        .unwrap();
    let end = events.payload("tool.end");
    assert_eq!(end["is_error"], false);
    assert_eq!(end["result"], "{\"files\":[\"main.rs\"]}");
    let e = refused(
        &mut winner_client,
        "tool.result",
        json!({"call_id": "call_1", "result": "again"}),
    );
    assert_eq!(e["code"], -32016);
    assert_eq!(e["data"]["kind"], "tool_call_not_found");
    let done = events.until_turn("llm.end", &turn);
    let reply = done
        .iter()
        .rev()
        .find(|e| e.envelope.topic == "message.append")
        .map(|e| e.envelope.payload["content"].clone());
    // The model went on with the client's result.
    let page = d.call("message.list", json!({"session_id": r["session_id"]}));
    let last = page["messages"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last["content"].as_str().unwrap().contains("main.rs"),
        "{last} {reply:?}"
    );
}

#[test]
fn a_claimant_that_dies_mid_call_ends_it_as_an_error_and_the_turn_goes_on() {
    let d = daemon(None);
    let events = d.subscriber(&["tool.", "llm.end", "client."]);
    let (mut c, lines) = child(&d, "claim", "mortal");
    wait_line(&lines, "HELLO");
    let r = send(&d, None, &format!("go\n{CALL}"));
    let turn = r["turn_id"].as_str().unwrap().to_owned();
    wait_line(&lines, "CLAIMED");
    assert_eq!(events.payload("tool.claimed")["client_id"], "mortal");
    kill_9(&mut c);
    let end = events.payload("tool.end");
    assert_eq!(end["is_error"], true);
    let why = end["result"].as_str().unwrap();
    assert!(why.contains("mortal") && why.contains("left"), "{why}");
    let done = events.until_turn("llm.end", &turn);
    assert_eq!(done.last().unwrap().envelope.payload["reason"], "completed");
}

#[test]
fn a_client_tool_behind_ask_is_claimed_after_the_approval() {
    let d = daemon(Some(Policy::Ask));
    let events = d.subscriber(&["tool.", "hitl.", "llm.end"]);
    let mut editor = d.client();
    hello(&mut editor, "editor", json!([tool_spec()]));
    let r = send(&d, None, &format!("go\n{CALL}"));
    let turn = r["turn_id"].as_str().unwrap().to_owned();
    let start = events.payload("tool.start");
    assert_eq!(start["awaiting_approval"], true);
    let pending = events.payload("hitl.pending");
    assert_eq!(pending["payload"]["tool_name"], TOOL);
    let e = refused(&mut editor, "tool.claim", json!({"call_id": "call_1"}));
    assert_eq!(e["data"]["kind"], "tool_call_not_found");
    assert!(e["message"].as_str().unwrap().contains("approval"), "{e}");

    let mut person = d.client();
    hello(&mut person, "tui", json!([]));
    person
        .call(
            "hitl.respond",
            json!({"id": pending["id"], "decision": "approve"}),
        )
        .unwrap();
    let resolved = events.payload("hitl.resolved");
    assert_eq!(resolved["resolved_by"], "tui");
    editor
        .call("tool.claim", json!({"call_id": "call_1", "turn_id": turn}))
        .unwrap();
    editor
        .call(
            "tool.result",
            json!({"call_id": "call_1", "result": "nothing open", "is_error": true}),
        )
        .unwrap();
    let end = events.payload("tool.end");
    assert_eq!(end["is_error"], true);
    assert_eq!(end["result"], "nothing open");
    events.until_turn("llm.end", &turn);
}

#[test]
fn a_call_nobody_claims_ends_after_the_claim_timeout() {
    let d = daemon(None);
    let events = d.subscriber(&["tool.", "llm.end"]);
    let mut idle = d.client();
    hello(&mut idle, "idle", json!([tool_spec()]));
    // The declaring client stays present (it pings) but never claims.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let keep = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = idle.call("instance.ping", json!({}));
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let r = send(&d, None, &format!("go\n{CALL}"));
    let end = events.until_turn("tool.end", r["turn_id"].as_str().unwrap());
    let end = &end.last().unwrap().envelope.payload;
    assert_eq!(end["is_error"], true);
    assert!(
        end["result"].as_str().unwrap().contains("nobody claimed"),
        "{end}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    keep.join().unwrap();
}
