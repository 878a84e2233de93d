//! Loss made visible and repairable, over real sockets: `instance.welcome` tells a late joiner
//! from which `seq` on it is covered, a subscriber that fell behind its high-water mark repairs its
//! token stream with `events.replay`, and a replay the ring cannot serve is refused with
//! `replay_unavailable`.

mod common;

use std::time::{Duration, Instant};

use common::{send, spawn_daemon, spawn_daemon_with, WAIT};
use serde_json::{json, Value};
use zcoord::client::{ClientError, Subscriber};
use zcoord::config::ModelConfig;

#[test]
fn a_welcome_says_from_which_seq_the_subscriptions_before_it_are_covered() {
    let d = spawn_daemon();
    let first = send(&d, None, "before anyone listens");
    let sid = first["session_id"].as_str().unwrap().to_owned();
    common::eventually("the turn to end", || {
        let s = d.call("session.get", json!({"session_id": sid}));
        (s["status"] == "idle").then_some(())
    });
    let prefix = format!("llm.token/{sid}");
    let seq_before = d.call("instance.info", json!({}))["seq"].as_u64().unwrap();
    let (sub, covered_from) =
        Subscriber::connect_live(&d.ctx, &d.pub_, &[&prefix], WAIT).expect("welcome");
    assert!(
        covered_from >= seq_before,
        "welcome seq {covered_from} is older than the state before subscribing ({seq_before})"
    );
    // Everything after the welcome reaches the subscriber: the next turn's tokens, from index 0.
    let r = send(&d, Some(&sid), "one two three");
    let mut text = String::new();
    let deadline = Instant::now() + WAIT;
    let mut next_index = 0;
    while text != "echo: one two three" {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = sub.recv(left).unwrap().expect("tokens after the welcome");
        assert!(ev.envelope.seq > covered_from);
        if ev.envelope.topic == "llm.token" && ev.envelope.payload["turn_id"] == r["turn_id"] {
            assert_eq!(ev.envelope.payload["index"], next_index);
            next_index += 1;
            text.push_str(ev.envelope.payload["token"].as_str().unwrap());
        }
    }
}

#[test]
fn a_subscriber_cut_off_for_not_reading_repairs_its_tokens_with_events_replay() {
    // The server queues at most 20 events per subscriber, and model output waits rather than
    // overflow a queue, so a subscriber that reads slowly loses nothing. This one does not read
    // at all during a turn of 20,000 tokens (about 7 MB of events, more than the loopback
    // buffers hold): the model waits for it, and after a second of that the server cuts it off
    // so the stream goes on. It reconnects having lost tokens, and repairs them.
    const WORDS: usize = 20_000;
    let d = spawn_daemon_with(|c| {
        c.transport.pub_sndhwm = 20;
        c.model = ModelConfig::Echo {
            token_delay: Duration::ZERO,
        };
    });
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.set_rcvhwm(20).unwrap();
    sub.set_rcvbuf(4096).unwrap();
    sub.set_subscribe(b"").unwrap();
    sub.set_subscribe(b"instance.welcome/replay").unwrap();
    sub.connect(&d.pub_).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frames = common::recv_within(&sub, left).expect("welcome");
        if frames[0] == b"instance.welcome/replay" {
            break;
        }
    }

    let words: Vec<String> = (0..WORDS).map(|i| format!("w{i} ")).collect();
    let content = words.concat();
    let r = send(&d, None, &content);
    let (sid, turn) = (
        r["session_id"].as_str().unwrap(),
        r["turn_id"].as_str().unwrap(),
    );
    common::eventually("the turn to end", || {
        let s = d.call("session.get", json!({"session_id": sid}));
        (s["status"] == "idle").then_some(())
    });

    // Now read what survived: the token indexes have gaps.
    // The echo model answers "echo: w0 w1 …" as "echo:", " w0", " w1", …: one token per word.
    let mut tokens: Vec<Option<String>> = vec![None; words.len() + 1];
    let mut last_seq = 0;
    let mut have = 0;
    // Read until an event numbered after the turn's end arrives (heartbeats keep coming).
    let end_seq = d.call("instance.info", json!({}))["seq"].as_u64().unwrap();
    let deadline = Instant::now() + WAIT;
    while last_seq < end_seq {
        let left = deadline.saturating_duration_since(Instant::now());
        let frames = common::recv_within(&sub, left).expect("events after the turn");
        if frames[0].starts_with(b"instance.welcome/") {
            continue; // a welcome is not numbered
        }
        let env: Value = serde_json::from_slice(&frames[1]).unwrap();
        last_seq = env["seq"].as_u64().unwrap();
        if env["topic"] == "llm.token" && env["payload"]["turn_id"] == turn {
            let i = env["payload"]["index"].as_u64().unwrap() as usize;
            tokens[i] = Some(env["payload"]["token"].as_str().unwrap().to_owned());
            have += 1;
        }
    }
    assert!(
        have < words.len(),
        "not reading cost this subscriber nothing; the test proves nothing"
    );
    let transport = d.call("instance.info", json!({}))["transport"].clone();
    assert!(
        transport["subscribers_evicted"].as_u64() >= Some(1),
        "lost without being cut off: {transport}"
    );
    eprintln!("received {have} of {} tokens live; repairing", words.len());

    // Repair: page through the session's token events from the start of the ring.
    let mut rpc = d.client();
    let mut after = 0;
    let mut pages = 0;
    loop {
        let page = rpc
            .call(
                "events.replay",
                json!({"after_seq": after, "prefixes": [format!("llm.token/{sid}")], "limit": 300,
                       "instance_id": d.instance_id}),
            )
            .unwrap();
        pages += 1;
        for env in page["events"].as_array().unwrap() {
            assert_eq!(env["topic"], "llm.token");
            let i = env["payload"]["index"].as_u64().unwrap() as usize;
            let token = env["payload"]["token"].as_str().unwrap().to_owned();
            // What did arrive live is byte-identical to the replay.
            if let Some(live) = &tokens[i] {
                assert_eq!(live, &token);
            }
            tokens[i] = Some(token);
        }
        after = page["next_after_seq"].as_u64().unwrap();
        if !page["has_more"].as_bool().unwrap() {
            assert!(page["latest_seq"].as_u64().unwrap() >= last_seq);
            break;
        }
    }
    assert!(pages > WORDS / 300, "{WORDS} tokens in pages of 300");
    let repaired: String = tokens
        .into_iter()
        .map(|t| t.expect("every token replayed"))
        .collect();
    assert_eq!(repaired, format!("echo: {}", content.trim_end()));
    let list = d.call("message.list", json!({"session_id": sid}));
    assert_eq!(list["messages"][1]["content"], json!(repaired));
}

#[test]
fn a_replay_the_ring_cannot_serve_is_refused_with_the_oldest_seq() {
    let d = spawn_daemon_with(|c| {
        c.replay.max_events = 10;
        c.model = ModelConfig::Echo {
            token_delay: Duration::ZERO,
        };
    });
    let r = send(&d, None, &"word ".repeat(50));
    let sid = r["session_id"].as_str().unwrap().to_owned();
    common::eventually("the turn to end", || {
        let s = d.call("session.get", json!({"session_id": sid}));
        (s["status"] == "idle").then_some(())
    });
    let mut rpc = d.client();
    let err = match rpc.call("events.replay", json!({"after_seq": 0})) {
        Err(ClientError::Rpc(e)) => e,
        other => panic!("expected replay_unavailable, got {other:?}"),
    };
    assert_eq!(err.code, -32008);
    let data = err.data.unwrap();
    assert_eq!(data["kind"], "replay_unavailable");
    assert_eq!(data["reason"], "evicted");
    let oldest = data["oldest_seq"].as_u64().unwrap();
    let latest = data["latest_seq"].as_u64().unwrap();
    assert!(oldest > 1 && latest >= oldest + 9, "{data}");
    // From just before the oldest held event it works, and returns what the ring holds.
    let ok = rpc
        .call("events.replay", json!({"after_seq": oldest - 1}))
        .unwrap();
    let n = ok["events"].as_array().unwrap().len() as u64;
    assert!(n >= 10 && n <= latest - oldest + 1 + 5, "{n}"); // heartbeats may have followed
                                                             // Another instance's numbers, and numbers from the future, are refused too.
    for (params, reason) in [
        (
            json!({"after_seq": oldest, "instance_id": "00000000-0000-0000-0000-000000000000"}),
            "instance_changed",
        ),
        (json!({"after_seq": latest + 1_000_000}), "ahead"),
    ] {
        match rpc.call("events.replay", params) {
            Err(ClientError::Rpc(e)) => assert_eq!(e.data.unwrap()["reason"], reason),
            other => panic!("expected {reason}, got {other:?}"),
        }
    }
    let info = d.call("instance.info", json!({}));
    assert_eq!(info["replay"]["max_events"], 10);
    assert!(info["replay"]["events"].as_u64().unwrap() <= 10);
}

#[test]
fn a_subscriber_joining_a_running_stream_goes_live() {
    // Tokens of its own prefix arrive before its welcome: `connect_live` must keep them for
    // later and still find the welcome behind them.
    let d = spawn_daemon_with(|c| {
        c.model = ModelConfig::Echo {
            token_delay: Duration::from_millis(2),
        };
    });
    let r = send(&d, None, &"word ".repeat(2_000));
    let sid = r["session_id"].as_str().unwrap();
    let watcher = d.subscriber(&[&format!("llm.token/{sid}")]);
    watcher.next();
    for _ in 0..5 {
        let prefix = format!("llm.token/{sid}");
        let (sub, covered_from) =
            Subscriber::connect_live(&d.ctx, &d.pub_, &[prefix.as_str()], WAIT)
                .expect("live while its prefix streams");
        let ev = sub.recv(WAIT).unwrap().expect("the stream goes on");
        assert_eq!(ev.envelope.topic, "llm.token");
        assert!(ev.envelope.seq > 0 && covered_from > 0);
    }
}
