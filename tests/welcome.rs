//! Protocol version 2's welcome over real sockets: only a SUB that asks (`instance.welcome/<token>`)
//! is welcomed, every key on the PUB is `topic` or `topic/<session_id>` (welcomes included), and
//! `seq` stays gap-free and unrepeated however many clients are welcomed meanwhile.

mod common;

use std::time::{Duration, Instant};

use common::{recv_within, send, spawn_daemon, WAIT};
use serde_json::Value;
use zcoord::client::Subscriber;

/// A raw SUB with these subscriptions, in this order.
fn raw_sub(ctx: &zmq::Context, endpoint: &str, subscriptions: &[&[u8]]) -> zmq::Socket {
    let s = ctx.socket(zmq::SUB).unwrap();
    s.set_linger(0).unwrap();
    s.set_rcvhwm(0).unwrap();
    for p in subscriptions {
        s.set_subscribe(p).unwrap();
    }
    s.connect(endpoint).unwrap();
    s
}

/// Reads `sock` until `stop` holds for a message, returning all of them (key, envelope).
fn read_until(sock: &zmq::Socket, stop: impl Fn(&[u8], &Value) -> bool) -> Vec<(Vec<u8>, Value)> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frames = recv_within(sock, left).expect("the awaited message never came");
        assert_eq!(frames.len(), 2, "two frames: key and envelope");
        let env: Value = serde_json::from_slice(&frames[1]).expect("the envelope is JSON");
        let done = stop(&frames[0], &env);
        got.push((frames[0].clone(), env));
        if done {
            return got;
        }
    }
}

/// What frame 1 must be for this envelope: the topic, `/session_id` when it has one; for a
/// welcome, its token's key.
fn expected_key(env: &Value) -> String {
    let topic = env["topic"].as_str().expect("a topic");
    if topic == "instance.welcome" {
        return format!(
            "instance.welcome/{}",
            env["payload"]["token"].as_str().unwrap()
        );
    }
    match env["session_id"].as_str() {
        Some(sid) => format!("{topic}/{sid}"),
        None => topic.to_owned(),
    }
}

fn is_turn_end_of(turn: &Value) -> impl Fn(&[u8], &Value) -> bool + '_ {
    move |_, env| env["topic"] == "llm.end" && env["payload"]["turn_id"] == *turn
}

#[test]
fn only_a_subscriber_that_asks_is_welcomed_and_seq_never_repeats() {
    let d = spawn_daemon();
    // One that subscribes to a topic family and never asks for a welcome, the way most ZeroMQ
    // code subscribes; one that subscribes to everything and asks.
    let naive = raw_sub(&d.ctx, &d.pub_, &[b"llm."]);
    let everything = raw_sub(&d.ctx, &d.pub_, &[b"", b"instance.welcome/everything"]);
    let own = read_until(&everything, |key, _| key == b"instance.welcome/everything");
    let (_, welcome) = own.last().unwrap();
    assert!(
        welcome.get("seq").is_none(),
        "a welcome takes no number: {welcome}"
    );
    assert!(welcome["payload"]["last_seq"].is_u64(), "{welcome}");

    // The naive SUB is live once it hears a turn (it has nothing else to tell it): send turns
    // until it does.
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "the naive subscriber never heard a turn"
        );
        let r = send(&d, None, "are you there");
        if recv_within(&naive, Duration::from_millis(500)).is_some() {
            read_until(&naive, is_turn_end_of(&r["turn_id"]));
            break;
        }
    }
    let start = read_until(&everything, |_, _| true);

    // Three clients go live (each asks with its own token), then one more turn.
    for _ in 0..3 {
        Subscriber::connect_live(&d.ctx, &d.pub_, &["llm.token/"], WAIT).expect("welcomed");
    }
    let r = send(&d, None, "one two three");

    let heard = read_until(&naive, is_turn_end_of(&r["turn_id"]));
    for (key, env) in &heard {
        assert_eq!(String::from_utf8_lossy(key), expected_key(env), "{env}");
        assert_ne!(env["topic"], "instance.welcome", "asked for none: {env}");
        assert!(env["seq"].is_u64(), "{env}");
    }

    let mut seen = start;
    seen.extend(read_until(&everything, is_turn_end_of(&r["turn_id"])));
    let mut welcomes = 0;
    let mut last_seq: Option<u64> = None;
    for (key, env) in &seen {
        assert_eq!(String::from_utf8_lossy(key), expected_key(env), "{env}");
        if env["topic"] == "instance.welcome" {
            assert!(env.get("seq").is_none(), "{env}");
            welcomes += 1;
            continue;
        }
        let seq = env["seq"].as_u64().expect("every event is numbered");
        if let Some(last) = last_seq {
            assert_eq!(seq, last + 1, "seq is gap-free and never repeats: {env}");
        }
        last_seq = Some(seq);
    }
    assert_eq!(welcomes, 3, "the three other clients' welcomes, each once");
}
