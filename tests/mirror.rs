//! The mirror client against a real server: it converges with the primary through sends,
//! creations, activations and deletions, and keeps up with a running stream.

mod common;

use std::time::Duration;

use common::{eventually, send, spawn_daemon, view_of_primary, view_of_replica};
use serde_json::json;
use zcoord::mirror::Mirror;

#[test]
fn the_mirror_converges_with_the_primary() {
    let d = spawn_daemon();
    // Activity before the mirror starts is in its snapshot; activity after, in its events.
    let first = send(&d, None, "before the mirror");
    let mirror = Mirror::start(&d.rpc, &d.pub_, Duration::from_secs(5));
    common::synced(&mirror);
    let sid = first["session_id"].as_str().unwrap();
    // The first turn must be over before the session takes another message.
    eventually("the first turn to end", || {
        let s = d.call("session.get", json!({"session_id": sid}));
        (s["status"] == "idle").then_some(())
    });
    send(
        &d,
        Some(sid),
        "after the mirror\n/tool word_count {\"text\": \"a b\"}",
    );
    let other = d.call("session.create", json!({"title": "second"}));
    d.call("session.activate", json!({"session_id": other["id"]}));
    let doomed = d.call("session.create", json!({"title": "doomed"}));
    d.call("session.delete", json!({"session_id": doomed["id"]}));
    let mut rpc = d.client();
    let matched = (0..300).any(|_| {
        let want = view_of_primary(&mut rpc);
        let ok = view_of_replica(&mirror.replica()) == want && want.2[sid].len() == 5;
        if !ok {
            std::thread::sleep(Duration::from_millis(20));
        }
        ok
    });
    assert!(
        matched,
        "replica {:#?}\nprimary {:#?}",
        view_of_replica(&mirror.replica()),
        view_of_primary(&mut rpc)
    );
    let r = mirror.replica();
    assert_eq!(
        r.active.map(|a| a.to_string()).as_deref(),
        other["id"].as_str()
    );
    assert!(!r
        .sessions
        .keys()
        .any(|k| Some(k.to_string().as_str()) == doomed["id"].as_str()));
}

/// Events carry at most 8 KiB of a message and `message.list` pages are bounded: the mirror
/// still holds every message of a long history, and long messages whole.
#[test]
fn the_mirror_holds_long_histories_and_long_messages_whole() {
    let d = common::spawn_daemon_with(|c| {
        c.model = zcoord::config::ModelConfig::Echo {
            token_delay: Duration::ZERO,
        }
    });
    // 10,800 bytes in 400 words: over the 8 KiB an event carries, and a short stream.
    let long = "abcdefghijklmnopqrstuvwxyz ".repeat(400);
    let first = send(&d, None, &long);
    let sid = first["session_id"].as_str().unwrap().to_owned();
    let idle = || {
        eventually("the turn to end", || {
            let s = d.call("session.get", json!({"session_id": sid}));
            (s["status"] == "idle").then_some(())
        })
    };
    idle();
    // 50 more turns: 102 messages, past the default page of 100.
    for i in 0..50 {
        send(&d, Some(&sid), &format!("m{i}"));
        idle();
    }
    let mirror = Mirror::start(&d.rpc, &d.pub_, Duration::from_secs(5));
    common::synced(&mirror);
    // One more long message after the sync: the mirror learns it from a clipped event.
    send(&d, Some(&sid), &long);
    idle();
    let mut rpc = d.client();
    let want = view_of_primary(&mut rpc);
    assert_eq!(want.2[&sid].len(), 104);
    eventually("the replica to match the primary", || {
        (view_of_replica(&mirror.replica()) == want).then_some(())
    });
    let r = mirror.replica();
    let held = &r.messages[&r.sessions.keys().next().copied().unwrap()];
    let longest = held.iter().map(|m| m.content.len()).max().unwrap();
    assert!(longest >= long.trim_end().len(), "longest held: {longest}");
}

/// `Synced` announces a replica that is already there: a reader of `replica()` on it sees the
/// snapshot, never the empty replica from before (issue 15 saw `sessions=0` in 3 of 8 starts).
#[test]
fn on_synced_the_replica_already_holds_the_snapshot() {
    let d = spawn_daemon();
    for title in ["a", "b", "c"] {
        d.call("session.create", json!({"title": title}));
    }
    for _ in 0..8 {
        let mirror = Mirror::start(&d.rpc, &d.pub_, Duration::from_secs(5));
        let seq = loop {
            match mirror.changes().recv_timeout(common::WAIT) {
                Ok(zcoord::mirror::Change::Synced { seq, .. }) => break seq,
                Ok(_) => continue,
                Err(e) => panic!("no Synced: {e}"),
            }
        };
        let replica = mirror.replica();
        assert_eq!(replica.sessions.len(), 3, "the announced snapshot");
        assert!(replica.seq >= seq);
    }
}
