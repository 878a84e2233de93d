//! The mirror client against a real server: it converges with the primary through sends,
//! creations, activations and deletions, and keeps up with a running stream.

mod common;

use std::time::Duration;

use common::{eventually, send, spawn_daemon, view_of_primary, view_of_replica};
use serde_json::json;
use zcoord::mirror::{Change, Mirror};

#[test]
fn the_mirror_converges_with_the_primary() {
    let d = spawn_daemon();
    // Activity before the mirror starts is in its snapshot; activity after, in its events.
    let first = send(&d, None, "before the mirror");
    let mirror = Mirror::start(&d.rpc, &d.pub_, Duration::from_secs(5));
    eventually("the first sync", || {
        mirror
            .changes()
            .try_iter()
            .any(|c| matches!(c, Change::Synced { .. }))
            .then_some(())
    });
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
