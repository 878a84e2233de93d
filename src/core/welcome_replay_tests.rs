//! Core unit tests for `events.replay`: what the ring serves and what it refuses.

use super::tests::{at, core, ctx, send};
use super::*;
use crate::protocol::methods::{Call, ReplayRequest, ReplayResult, Reply};

fn replay(
    c: &mut Core,
    after_seq: u64,
    prefixes: &[&str],
    limit: usize,
) -> Result<ReplayResult, CoreError> {
    let call = Call::EventsReplay(ReplayRequest {
        after_seq,
        prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        limit,
        instance_id: None,
    });
    c.reply(call, &ctx(9)).map(|r| match r {
        Reply::Replay(r) => r,
        other => panic!("{other:?}"),
    })
}

fn published(c: &mut Core) -> Vec<(u64, String, serde_json::Value)> {
    c.take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Publish(p) => Some((
                p.seq,
                p.key.to_string(),
                serde_json::from_slice(&p.body).unwrap(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn replay_returns_exactly_the_published_envelopes_after_a_seq() {
    let mut c = core();
    let r = send(&mut c, None, "one two three", 1);
    for t in ["one", " two"] {
        c.model_event(r.turn_id, ModelEvent::Token(t.into()), at(2));
    }
    let out = published(&mut c);
    assert!(out.len() >= 5);
    let all = replay(&mut c, 0, &[], 1000).unwrap();
    let bodies: Vec<_> = out.iter().map(|(_, _, b)| b.clone()).collect();
    assert_eq!(all.events, bodies, "byte for byte what went out");
    assert_eq!((all.next_after_seq, all.has_more), (c.seq(), false));
    assert_eq!((all.oldest_seq, all.latest_seq), (1, c.seq()));

    let tokens = replay(&mut c, 0, &[&format!("llm.token/{}", r.session_id)], 1000).unwrap();
    let texts: Vec<_> = tokens
        .events
        .iter()
        .map(|e| e["payload"]["token"].clone())
        .collect();
    assert_eq!(texts, ["one", " two"]);

    let from = c.seq() - 2;
    let last_two = replay(&mut c, from, &[], 1000).unwrap();
    assert_eq!(last_two.events, bodies[bodies.len() - 2..]);
}

#[test]
fn replay_refuses_what_it_cannot_serve_with_the_oldest_seq() {
    let mut c = core();
    c.config.replay = replay::ReplayLimits {
        max_events: 3,
        max_bytes: 1 << 20,
    };
    c.ring = replay::EventRing::new(c.config.replay);
    for s in 0..3 {
        c.heartbeat(at(s));
    }
    c.heartbeat(at(4));
    c.heartbeat(at(5));
    let err = replay(&mut c, 1, &[], 10).unwrap_err();
    assert_eq!(
        err,
        CoreError::ReplayUnavailable {
            reason: "evicted",
            oldest_seq: 3,
            latest_seq: 5
        }
    );
    let rpc = crate::protocol::errors::RpcError::from(err);
    assert_eq!(rpc.code, -32008);
    assert_eq!(rpc.data.as_ref().unwrap()["kind"], "replay_unavailable");
    assert_eq!(rpc.data.as_ref().unwrap()["oldest_seq"], 3);
    assert_eq!(replay(&mut c, 2, &[], 10).unwrap().events.len(), 3);
    let ahead = replay(&mut c, 6, &[], 10).unwrap_err();
    assert!(matches!(
        ahead,
        CoreError::ReplayUnavailable {
            reason: "ahead",
            ..
        }
    ));
    let other = Call::EventsReplay(ReplayRequest {
        after_seq: 4,
        prefixes: vec![],
        limit: 10,
        instance_id: Some("00000000-0000-0000-0000-000000000001".into()),
    });
    assert!(matches!(
        c.reply(other, &ctx(9)),
        Err(CoreError::ReplayUnavailable {
            reason: "instance_changed",
            ..
        })
    ));
    let same = Call::EventsReplay(ReplayRequest {
        after_seq: 4,
        prefixes: vec![],
        limit: 10,
        instance_id: Some(c.instance_id().to_string()),
    });
    assert!(c.reply(same, &ctx(9)).is_ok());
}
