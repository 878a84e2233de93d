//! Issue 7's input limits through the real ROUTER: params depth and size, title and content
//! length, and the number of sessions. Each is refused with its own code and `data.kind`, carrying
//! the limit and what came; what sits exactly at a limit is served; the daemon answers a ping after.

mod common;

use serde_json::{json, Value};

use common::{recv_within, spawn_daemon, spawn_daemon_with, Daemon, WAIT};
use zcoord::client::{ClientError, ReceivedEvent};
use zcoord::protocol::errors::RpcError;
use zcoord::protocol::limits::{
    MAX_CONTENT_BYTES, MAX_PARAMS_BYTES, MAX_PARAMS_DEPTH, MAX_TITLE_CHARS,
};

/// The error reply `call` got, or a panic naming what came instead.
#[track_caller]
fn refused(d: &Daemon, method: &str, params: Value) -> RpcError {
    match d.client().call(method, params) {
        Err(ClientError::Rpc(e)) => e,
        other => panic!("{method}: expected an error reply, got {other:?}"),
    }
}

/// `error` has this code and `data` has exactly `kind`, `limit` and `actual` (plus `field`, if
/// given), so a stray or missing member is caught.
#[track_caller]
fn assert_limit(
    e: &RpcError,
    code: i64,
    kind: &str,
    field: Option<&str>,
    limit: usize,
    actual: usize,
) {
    assert_eq!(e.code, code, "{e:?}");
    let mut want = json!({"kind": kind, "limit": limit, "actual": actual});
    if let Some(field) = field {
        want["field"] = json!(field);
    }
    assert_eq!(e.data.as_ref(), Some(&want), "{e:?}");
}

#[track_caller]
fn assert_alive(d: &Daemon) {
    let ping = d.call("instance.ping", json!({}));
    assert_eq!(ping["status"], "ok", "{ping}");
    assert_eq!(ping["instance_id"], d.instance_id.as_str());
}

fn session_count(d: &Daemon) -> u64 {
    d.call("instance.info", json!({}))["session_count"]
        .as_u64()
        .expect("session_count")
}

/// `depth` levels of arrays around a zero.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(0), |inner, _| json!([inner]))
}

#[test]
fn params_nested_too_deep_are_refused_for_any_method() {
    let d = spawn_daemon();
    // The params object is one level, so `extra` may nest one less than the limit.
    let at_limit = json!({"extra": nested(MAX_PARAMS_DEPTH - 1)});
    assert_eq!(
        d.call("instance.ping", at_limit)["status"],
        "ok",
        "params exactly at the depth limit are served"
    );
    for method in ["instance.ping", "session.list", "message.send"] {
        let over = json!({"content": "hi", "extra": nested(MAX_PARAMS_DEPTH)});
        let e = refused(&d, method, over);
        let (limit, actual) = (MAX_PARAMS_DEPTH, MAX_PARAMS_DEPTH + 1);
        assert_limit(&e, -32602, "params_too_deep", Some("params"), limit, actual);
    }
    assert_eq!(session_count(&d), 0, "the refused send made no session");
    assert_alive(&d);
}

#[test]
fn params_too_large_are_refused_before_the_frame_limit() {
    let d = spawn_daemon();
    // `{"pad":"…"}` is 10 bytes around the string; the whole request stays under the 1 MiB frame.
    let padded = |bytes: usize| json!({"pad": "p".repeat(bytes - 10)});
    assert_eq!(
        d.call("session.list", padded(MAX_PARAMS_BYTES))["sessions"],
        json!([])
    );
    let e = refused(&d, "session.list", padded(MAX_PARAMS_BYTES + 1));
    let (limit, actual) = (MAX_PARAMS_BYTES, MAX_PARAMS_BYTES + 1);
    assert_limit(
        &e,
        -32602,
        "params_too_large",
        Some("params"),
        limit,
        actual,
    );
    assert_alive(&d);
}

#[test]
fn a_title_too_long_is_refused_and_creates_nothing() {
    let d = spawn_daemon();
    // Characters, not bytes: 256 two-byte characters are fine.
    let at_limit = "é".repeat(MAX_TITLE_CHARS);
    let s = d.call("session.create", json!({"title": at_limit}));
    assert!(s["title"].as_str().unwrap().starts_with('é'), "{s}");

    let over = "é".repeat(MAX_TITLE_CHARS + 1);
    let e = refused(&d, "session.create", json!({"title": over}));
    let (limit, actual) = (MAX_TITLE_CHARS, MAX_TITLE_CHARS + 1);
    assert_limit(&e, -32602, "title_too_long", Some("title"), limit, actual);
    assert_eq!(session_count(&d), 1);
    assert_alive(&d);
}

#[test]
fn content_too_long_is_refused_and_the_longest_allowed_is_served() {
    let d = spawn_daemon();
    let over = "c".repeat(MAX_CONTENT_BYTES + 1);
    let e = refused(&d, "message.send", json!({"content": over}));
    let (limit, actual) = (MAX_CONTENT_BYTES, MAX_CONTENT_BYTES + 1);
    assert_limit(
        &e,
        -32602,
        "content_too_long",
        Some("content"),
        limit,
        actual,
    );
    assert_eq!(session_count(&d), 0, "the refused send made no session");

    // The longest content fits both the params bound and the default frame.
    let at_limit = "c".repeat(MAX_CONTENT_BYTES);
    let sent = d.call("message.send", json!({"content": at_limit}));
    assert_eq!(sent["ok"], true, "{sent}");
    assert_alive(&d);
}

#[test]
fn sessions_beyond_max_sessions_are_refused_until_one_is_deleted() {
    let d = spawn_daemon_with(|c| c.max_sessions = 2);
    let info = d.call("instance.info", json!({}));
    assert_eq!(info["max_sessions"], 2, "{info}");

    let first = d.call("session.create", json!({"title": "one"}))["id"].clone();
    // message.send without a session_id makes the second one.
    let sent = d.call("message.send", json!({"content": "two"}));
    assert_eq!(sent["ok"], true, "{sent}");

    let e = refused(&d, "session.create", json!({}));
    assert_limit(&e, -32010, "too_many_sessions", None, 2, 2);
    let e = refused(&d, "message.send", json!({"content": "three"}));
    assert_limit(&e, -32010, "too_many_sessions", None, 2, 2);
    assert_eq!(session_count(&d), 2);

    d.call("session.delete", json!({"session_id": first}));
    let again = d.call("session.create", json!({"title": "three"}));
    assert_eq!(again["title"], "three", "{again}");
    assert_alive(&d);
}

#[test]
fn in_a_batch_each_call_is_refused_on_its_own_with_its_id() {
    let d = spawn_daemon();
    let sock = d.raw(zmq::DEALER);
    let call = |id: i64, method: &str, params: Value| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let batch = json!([
        call(
            1,
            "session.create",
            json!({"title": "t".repeat(MAX_TITLE_CHARS + 1)})
        ),
        call(2, "instance.ping", json!({})),
        call(
            3,
            "instance.ping",
            json!({"extra": nested(MAX_PARAMS_DEPTH)})
        ),
    ]);
    sock.send(serde_json::to_vec(&batch).unwrap(), 0).unwrap();
    let reply = recv_within(&sock, WAIT).expect("the batch is answered");
    let answers: Value = serde_json::from_slice(reply.last().unwrap()).unwrap();
    assert_eq!(answers[0]["id"], 1, "{answers}");
    assert_eq!(answers[0]["error"]["data"]["kind"], "title_too_long");
    assert_eq!(answers[1]["result"]["status"], "ok", "{answers}");
    assert_eq!(answers[2]["id"], 3, "{answers}");
    assert_eq!(answers[2]["error"]["data"]["kind"], "params_too_deep");
    assert_alive(&d);
}

/// A subscription far longer than any key is refused by dropping its subscriber: no welcome, no
/// events; a long one under the limit is welcomed; everyone else is unaffected.
#[test]
fn subscriptions_longer_than_the_limit_are_refused() {
    let d = spawn_daemon();
    // The prefix, then a welcome asked for after it: the welcome says the prefix is live.
    let sub = |prefix: &[u8]| {
        let s = d.ctx.socket(zmq::SUB).unwrap();
        s.set_linger(0).unwrap();
        s.connect(&d.pub_).unwrap();
        s.set_subscribe(prefix).unwrap();
        s.set_subscribe(b"instance.welcome/limits").unwrap();
        s
    };
    let welcomed = |s: &zmq::Socket| {
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if let Some(frames) = recv_within(s, std::time::Duration::from_millis(200)) {
                if frames[0] == b"instance.welcome/limits" {
                    return true;
                }
            }
        }
        false
    };
    let long = vec![b'x'; 900];
    assert!(welcomed(&sub(&long)), "900 bytes are fine");

    // libzmq's SUB keeps its own subscriptions in a trie it walks recursively, a frame per
    // byte (to subscribe, to resend them after a reconnect, to free them): everything done
    // with a 60,000-byte prefix needs a deep stack on the client's side.
    let too_long = vec![b'y'; 60_000];
    let everyone = d.subscriber(&["instance.heartbeat"]);
    let heard = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(512 << 20)
            .spawn_scoped(scope, || {
                let hostile = sub(&too_long);
                recv_within(&hostile, std::time::Duration::from_millis(500))
            })
            .unwrap()
            .join()
            .unwrap()
    });
    assert!(
        heard.is_none(),
        "no welcome, nothing, for a 60,000-byte subscription"
    );
    everyone
        .try_next(WAIT)
        .expect("heartbeats still reach a normal subscriber");
    assert_alive(&d);
}

/// A client's requests in flight are bounded in bytes, counted decoded (a JSON array of zeros
/// takes some 40 times its size once parsed): with a reply of its still waiting for the store, a
/// big request is refused with `too_many_pending`; alone, the same request is served.
#[test]
fn a_clients_bytes_in_flight_are_bounded() {
    use zcoord::config::StoreConfig;
    use zcoord::store::memory::MemoryStore;
    let d = spawn_daemon_with(|c| {
        c.store = StoreConfig::Memory(MemoryStore::with_commit_delay(
            std::time::Duration::from_millis(400),
        ));
        c.transport.per_peer_bytes = 1 << 20;
    });
    let dealer = d.raw(zmq::DEALER);
    let zeros = vec![0u8; 100_000]; // 400 KB of JSON, about 8 MB decoded
    let big = |id: u64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "instance.ping", "params": {"pad": zeros}})
            .to_string()
    };
    let send = json!({"jsonrpc": "2.0", "id": 1, "method": "message.send",
                      "params": {"content": "held for the store"}});
    dealer.send(send.to_string().as_bytes(), 0).unwrap();
    dealer.send(big(2).as_bytes(), 0).unwrap();
    let mut replies = std::collections::HashMap::new();
    while replies.len() < 2 {
        let frames = recv_within(&dealer, WAIT).expect("every request is answered");
        let v: Value = serde_json::from_slice(&frames[0]).unwrap();
        replies.insert(v["id"].as_u64().unwrap(), v);
    }
    assert!(
        replies[&1]["result"]["ok"].as_bool().unwrap(),
        "{}",
        replies[&1]
    );
    let e = &replies[&2]["error"];
    assert_eq!(e["code"], -32009, "{e}");
    assert_eq!(e["data"]["kind"], "too_many_pending");
    assert_eq!(e["data"]["limit_bytes"], 1 << 20);
    // Alone, the same request is served: a client is always let in with one request.
    dealer.send(big(3).as_bytes(), 0).unwrap();
    let frames = recv_within(&dealer, WAIT).expect("answered");
    let v: Value = serde_json::from_slice(&frames[0]).unwrap();
    assert_eq!(v["result"]["status"], "ok", "{v}");
    assert_alive(&d);
}

/// A client that does not read its replies has them count against it until they leave for the
/// wire, wherever they wait (the server's queues or libzmq's): past 64 in flight its requests
/// are refused with `too_many_pending`, none silently dropped, and it holds at most that much.
#[test]
fn replies_a_client_does_not_read_count_against_it() {
    let d = spawn_daemon();
    let mut rpc = d.client();
    for i in 0..400 {
        rpc.call(
            "session.create",
            json!({"title": format!("session {i:04} {}", "t".repeat(200))}),
        )
        .unwrap();
    }
    let dealer = d.ctx.socket(zmq::DEALER).unwrap();
    dealer.set_linger(0).unwrap();
    dealer.set_rcvhwm(1).unwrap();
    dealer.set_rcvbuf(16 << 10).unwrap();
    dealer.connect(&d.rpc).unwrap();
    const ASKED: u64 = 400;
    for id in 0..ASKED {
        let req = json!({"jsonrpc": "2.0", "id": id, "method": "session.list"});
        dealer.send(req.to_string().as_bytes(), 0).unwrap();
    }
    // Every request is answered, once: with the list, or refused once 64 are in flight.
    let mut seen = std::collections::HashSet::new();
    let mut refused = 0;
    while seen.len() < ASKED as usize {
        let frames = recv_within(&dealer, WAIT).expect("every request is answered");
        let v: Value = serde_json::from_slice(&frames[0]).unwrap();
        assert!(
            seen.insert(v["id"].as_u64().unwrap()),
            "answered twice: {}",
            v["id"]
        );
        if v.get("error").is_some() {
            assert_eq!(v["error"]["data"]["kind"], "too_many_pending", "{v}");
            refused += 1;
        }
    }
    assert!(refused > 0, "a client that did not read was never refused");
    let info = d.call("instance.info", json!({}));
    assert_eq!(info["drops"]["replies_dropped"], 0, "{info}");
    assert_alive(&d);
}

/// `instance.info` says what libzmq holds for subscribers that fall behind: it grows while a
/// subscriber does not read, and goes back to nothing once it leaves. Connections are counted.
#[test]
fn info_shows_the_bytes_a_stalled_subscriber_pins() {
    let d = spawn_daemon();
    let held = |d: &Daemon| d.call("instance.info", json!({}))["transport"].clone();
    let stalled = common::stalled_subscriber(&d.ctx, &d.pub_);
    let mut rpc = d.client();
    // Enough events that kernel buffers cannot take them all: libzmq must hold some.
    let title = "t".repeat(200);
    let pinned = common::eventually("events pinned by the stalled subscriber", || {
        for _ in 0..50 {
            rpc.call("session.create", json!({"title": title})).unwrap();
        }
        let t = held(&d);
        (t["pub_bytes_held"].as_u64().unwrap() > 100_000).then_some(t)
    });
    assert!(pinned["connections_pub"].as_u64().unwrap() >= 1, "{pinned}");
    assert!(pinned["connections_rpc"].as_u64().unwrap() >= 1, "{pinned}");
    drop(stalled);
    common::eventually("the stalled subscriber's events freed", || {
        (held(&d)["pub_bytes_held"].as_u64() < Some(10_000)).then_some(())
    });
}

/// What libzmq holds for subscribers that fall behind is bounded in bytes: past the bound, the
/// subscriber furthest behind is disconnected, and one that keeps reading is not.
#[test]
fn a_subscriber_far_behind_is_disconnected_past_the_bound() {
    let d = spawn_daemon_with(|c| c.transport.pub_held_bytes = 256 << 10);
    let _stalled = common::stalled_subscriber(&d.ctx, &d.pub_);
    let reading = d.subscriber(&["session.update"]);
    let mut rpc = d.client();
    let title = "t".repeat(200);
    let mut heard = 0;
    let info = common::eventually("the stalled subscriber disconnected", || {
        for _ in 0..50 {
            rpc.call("session.create", json!({"title": title})).unwrap();
        }
        while reading
            .try_next(std::time::Duration::from_millis(5))
            .is_some()
        {
            heard += 1;
        }
        let t = d.call("instance.info", json!({}))["transport"].clone();
        (t["subscribers_evicted"].as_u64() >= Some(1)).then_some(t)
    });
    assert!(heard > 0, "the reading subscriber heard nothing: {info}");
    // It keeps hearing: it was not the one disconnected.
    rpc.call("session.create", json!({"title": "after"}))
        .unwrap();
    reading
        .try_next(WAIT)
        .expect("the reading subscriber still hears events");
}

/// The tokens of one turn a subscriber heard, checked whole: indexes 0, 1, 2… with none missing,
/// as many as `llm.end` says the model streamed.
#[track_caller]
fn assert_every_token_heard(events: &[zcoord::client::ReceivedEvent]) {
    let indexes: Vec<u64> = events
        .iter()
        .filter(|e| e.envelope.topic == "llm.token")
        .map(|e| e.envelope.payload["index"].as_u64().unwrap())
        .collect();
    let end = events.last().expect("llm.end");
    assert_eq!(end.envelope.topic, "llm.end");
    assert_eq!(
        end.envelope.payload["reason"], "completed",
        "{:?}",
        end.envelope.payload
    );
    let streamed = end.envelope.payload["tokens_out"].as_u64().unwrap();
    assert!(streamed >= 20_000, "a long turn: {streamed} tokens");
    let expected: Vec<u64> = (0..streamed).collect();
    assert!(
        indexes == expected,
        "heard {} of {streamed} tokens; first missing: {:?}",
        indexes.len(),
        expected.iter().zip(&indexes).find(|(a, b)| a != b)
    );
}

/// A model that outruns a subscriber waits for it rather than libzmq's queue growing past its
/// high-water mark and dropping: the subscriber, whose server-side queue holds 2,000 events of a
/// turn of 100,000, reads nothing until the stream has stopped for it, and then hears every token.
/// (The pause comes at about 115 events held, or at the event mark, a quarter of the high-water
/// mark: libzmq's count of what a subscriber has read lags by up to half of it.)
#[test]
fn model_output_waits_for_a_subscriber_that_falls_behind() {
    // The subscriber below reads nothing for a while on purpose: not a stall.
    let d = paced_daemon(std::time::Duration::from_secs(600), |c| {
        c.transport.pub_sndhwm = 2_000;
    });
    let behind = behind_subscriber(&d);
    // 100,000 tokens, about 45 MB of events: more than the loopback buffers and this
    // subscriber's own queue hold.
    common::send(&d, None, &"w ".repeat(100_000));
    // Not reading: the turn's tokens fill the loopback buffers, then libzmq's queue for this
    // subscriber, until model output waits: the gauge stops moving, above the pause's mark.
    let mut last = 0;
    common::eventually("model output waiting for the subscriber", || {
        let t = d.call("instance.info", json!({}))["transport"].clone();
        let held = t["pub_bytes_held"].as_u64().unwrap();
        let still = held == last && held > 64 << 10;
        last = held;
        still.then_some(())
    });
    let events = read_until_end(&behind, |_| {});
    assert_every_token_heard(&events);
    let t = d.call("instance.info", json!({}))["transport"].clone();
    assert_eq!(t["subscribers_evicted"], 0, "{t}");
}

/// Output waits in order behind the change decided before it: a change made while a turn streams
/// (here a client creating a session) holds the turn's later tokens until the store has
/// committed it. With a slow store a fast model would fill that wait with the rest of its turn,
/// which the commit then hands libzmq at once, past a subscriber's high-water mark, and libzmq
/// drops what does not fit without a word. Model output waits instead once a quarter of
/// `--pub-hwm` events are held, for the store and by libzmq together: a reading subscriber
/// misses nothing.
#[test]
fn model_output_waits_while_its_events_wait_for_a_slow_store() {
    use zcoord::config::StoreConfig;
    use zcoord::store::memory::MemoryStore;
    const WORDS: usize = 20_000;
    let d = spawn_daemon_with(|c| {
        c.store = StoreConfig::Memory(MemoryStore::with_commit_delay(
            std::time::Duration::from_millis(300),
        ));
        // libzmq learns what a subscriber took only every half queue; the mark (a quarter) and
        // bursts of model output that stop at it keep a queue of 1,000 from filling.
        c.transport.pub_sndhwm = 1_000;
        c.model = zcoord::config::ModelConfig::Echo {
            token_delay: std::time::Duration::ZERO,
        };
    });
    let live = d.subscriber(&["llm."]);
    let content = (0..WORDS).map(|i| format!("w{i}")).collect::<Vec<_>>();
    let sent = common::send(&d, None, &content.join(" "));
    let turn_id = sent["turn_id"].as_str().unwrap().to_owned();
    let mut indexes = Vec::new();
    let mut other = d.client();
    loop {
        let env = live.next().envelope;
        if env.payload["turn_id"] != turn_id.as_str() {
            continue;
        }
        match env.topic.as_str() {
            "llm.token" => {
                indexes.push(env.payload["index"].as_u64().unwrap());
                if indexes.len() == 100 {
                    // Mid-turn, a change that takes the slow store 300 ms to commit.
                    other.call("session.create", json!({})).unwrap();
                }
            }
            "llm.end" => break,
            _ => {}
        }
    }
    // "echo:" and one token per word, every one of them, in order.
    assert_eq!(indexes.len(), WORDS + 1, "tokens missing");
    assert_eq!(indexes, (0..=WORDS as u64).collect::<Vec<_>>());
}

/// A daemon whose model streams as fast as it may and whose model output pauses above 64 KiB
/// held for subscribers (about 100 token events), taking a pause of `stalled_after` for a
/// stalled subscriber; `more` changes the rest.
fn paced_daemon(
    stalled_after: std::time::Duration,
    more: impl FnOnce(&mut zcoord::config::Config),
) -> Daemon {
    spawn_daemon_with(move |c| {
        c.transport.pub_held_bytes = 256 << 10;
        c.transport.pub_stalled_after = stalled_after;
        c.model = zcoord::config::ModelConfig::Echo {
            token_delay: std::time::Duration::ZERO,
        };
        more(c);
    })
}

/// The events `sub` receives up to the first `llm.end`, calling `pace` with the count so far
/// after each.
fn read_until_end(sub: &zmq::Socket, pace: impl Fn(usize)) -> Vec<ReceivedEvent> {
    let mut events = Vec::new();
    while events
        .last()
        .is_none_or(|e: &ReceivedEvent| e.envelope.topic != "llm.end")
    {
        let frames = recv_within(sub, WAIT).expect("the stream goes on once read");
        let [key, body] = frames.as_slice() else {
            panic!("{} frames", frames.len())
        };
        events.push(ReceivedEvent {
            key: String::from_utf8_lossy(key).into_owned(),
            envelope: serde_json::from_slice(body).unwrap(),
            raw: body.clone(),
        });
        pace(events.len());
    }
    events
}

/// A live subscriber of `llm.` that holds little on its side (1,000 messages, a 64 KiB socket
/// buffer), so that when it does not read, what it has not read waits in the server. The client
/// library's subscriber queues up to 100,000 events itself: a whole turn of the test above.
fn behind_subscriber(d: &Daemon) -> zmq::Socket {
    // A fresh socket per try, as `Subscriber::connect_live` does: libzmq 4.3.4 now and then
    // leaves a new SUB without its stream.
    for _ in 0..10 {
        let s = d.ctx.socket(zmq::SUB).unwrap();
        s.set_linger(0).unwrap();
        s.set_rcvhwm(1_000).unwrap();
        s.set_rcvbuf(64 << 10).unwrap();
        s.set_subscribe(b"llm.").unwrap();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let welcome = format!("instance.welcome/{token}");
        s.set_subscribe(welcome.as_bytes()).unwrap();
        s.connect(&d.pub_).unwrap();
        let frames = recv_within(&s, std::time::Duration::from_secs(1));
        if frames.and_then(|f| f.into_iter().next()).as_deref() == Some(welcome.as_bytes()) {
            s.set_unsubscribe(welcome.as_bytes()).unwrap();
            return s;
        }
    }
    panic!("no welcome in 10 tries");
}

/// Many short pauses are not one long one: a subscriber that keeps reading, if more slowly than
/// the model writes, holds model output up again and again, for far longer than
/// `pub_stalled_after` in all, and is never taken for stalled.
#[test]
fn a_subscriber_that_keeps_reading_is_not_evicted_however_often_output_waits_for_it() {
    // Short beside the whole turn (over a second), long beside any one wait for this reader,
    // even on a loaded machine.
    let d = paced_daemon(std::time::Duration::from_millis(400), |_| {});
    // Holds little on its side, and reads about 20,000 events a second: slower than the model.
    let reading = behind_subscriber(&d);
    let started = std::time::Instant::now();
    common::send(&d, None, &"w ".repeat(20_000));
    let events = read_until_end(&reading, |n| {
        if n % 20 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    });
    let took = started.elapsed();
    assert!(took > std::time::Duration::from_secs(1), "{took:?}");
    assert_every_token_heard(&events);
    let t = d.call("instance.info", json!({}))["transport"].clone();
    assert_eq!(t["subscribers_evicted"], 0, "{t} after {took:?}");
}

/// A subscriber that never reads cannot hold the stream up for long: once model output has
/// waited `pub_stalled_after` for it, it is disconnected, and one that reads hears the whole turn.
#[test]
fn a_stalled_subscriber_is_disconnected_after_a_pause_and_the_stream_goes_on() {
    let d = paced_daemon(std::time::Duration::from_millis(200), |_| {});
    let _stalled = common::stalled_subscriber(&d.ctx, &d.pub_);
    let reading = d.subscriber(&["llm."]);
    common::send(&d, None, &"w ".repeat(20_000));
    let events = reading.until(|e| e.envelope.topic == "llm.end");
    assert_every_token_heard(&events);
    let t = d.call("instance.info", json!({}))["transport"].clone();
    assert!(t["subscribers_evicted"].as_u64() >= Some(1), "{t}");
}
