//! Load over real sockets: many concurrent clients each get exactly their own replies, a client
//! that never reads its replies costs nobody else anything, and a subscriber that never reads
//! costs a live subscriber no event. Only what is deterministic is asserted: no timings.

mod common;

use std::collections::HashSet;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{recv_within, spawn_daemon, spawn_daemon_with, Daemon, WAIT};
use zcoord::client::ReceivedEvent;
use zcoord::config::ModelConfig;

fn request(id: u64, method: &str, params: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        .to_string()
        .into_bytes()
}

/// The reply's id and result; panics on an error reply or a reply that is not JSON-RPC.
#[track_caller]
fn result_of(frames: &[Vec<u8>]) -> (u64, Value) {
    let [body] = frames else {
        panic!("expected one frame, got {frames:?}")
    };
    let reply: Value = serde_json::from_slice(body).expect("reply is JSON");
    let id = reply["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("id is not a number: {reply}"));
    let result = reply
        .get("result")
        .unwrap_or_else(|| panic!("not a result: {reply}"))
        .clone();
    (id, result)
}

#[test]
fn concurrent_clients_pipelining_pings_each_get_exactly_their_replies() {
    const CLIENTS: u64 = 32;
    const PER_CLIENT: u64 = 200;
    // 32 x 20 calls in flight stay under the core's input queue (1,024), so none may be refused
    // with `server_busy`: every call must succeed.
    const WINDOW: usize = 20;
    let d = spawn_daemon();

    std::thread::scope(|s| {
        for client in 0..CLIENTS {
            let d = &d;
            s.spawn(move || {
                let sock = d.raw(zmq::DEALER);
                let mut outstanding = HashSet::new();
                let (mut sent, mut answered) = (0, 0);
                while answered < PER_CLIENT {
                    while outstanding.len() < WINDOW && sent < PER_CLIENT {
                        let id = client * 1_000_000 + sent;
                        sock.send(request(id, "instance.ping", json!({})), 0)
                            .expect("send");
                        outstanding.insert(id);
                        sent += 1;
                    }
                    let frames = recv_within(&sock, WAIT).unwrap_or_else(|| {
                        panic!("client {client}: no reply within {WAIT:?} ({answered} answered)")
                    });
                    let (id, result) = result_of(&frames);
                    assert!(
                        outstanding.remove(&id),
                        "client {client} got a reply to id {id}, which it had not outstanding"
                    );
                    assert_eq!(result["status"], "ok", "{result}");
                    assert_eq!(result["instance_id"], d.instance_id.as_str());
                    answered += 1;
                }
                assert!(outstanding.is_empty());
                assert!(
                    recv_within(&sock, Duration::ZERO).is_none(),
                    "client {client} got more replies than it asked for"
                );
            });
        }
    });
    assert_eq!(d.call("instance.ping", json!({}))["status"], "ok");
}

/// `instance.info`'s `drops`, read by a separate client.
fn drops(d: &Daemon) -> Value {
    let info = d.call("instance.info", json!({}));
    let drops = info["drops"].clone();
    for counter in [
        "replies_dropped",
        "outbound_dropped",
        "requests_refused_busy",
    ] {
        assert!(
            drops[counter].is_u64(),
            "drops.{counter} unreadable: {info}"
        );
    }
    drops
}

fn counter(drops: &Value, name: &str) -> u64 {
    drops[name].as_u64().expect("counter")
}

#[test]
fn a_dealer_that_never_reads_does_not_delay_other_clients() {
    const STUFFED: u64 = 5_000;
    const ROUTER_HWM: i32 = 64;
    // Room for every request in the core's input queue, so none is refused with `server_busy`
    // and the accounting below is exact.
    let d = spawn_daemon_with(|c| {
        c.transport.router_hwm = ROUTER_HWM;
        c.transport.inbound_queue = 16_384;
        c.transport.per_peer_pending = 16_384;
        c.model = ModelConfig::Echo {
            token_delay: Duration::ZERO,
        };
    });

    // Make each `message.list` answer about 8 KiB, so the 5,000 answers (~40 MiB) are far more than
    // the stuffed peer's path can hold: 64 + 1 queued messages plus the loopback socket buffers
    // (a few MiB). The server has to drop answers or wait, and must not wait.
    let content = "lorem ipsum ".repeat(340);
    let sent = common::send(&d, None, &content);
    let session_id = sent["session_id"].as_str().unwrap().to_owned();
    common::eventually("the assistant message", || {
        let list = d.call("message.list", json!({"session_id": session_id}));
        (list["messages"].as_array().map(Vec::len) == Some(2)).then_some(())
    });

    let before = drops(&d);
    let stuffed = d.ctx.socket(zmq::DEALER).unwrap();
    stuffed.set_linger(0).unwrap();
    stuffed.set_rcvhwm(1).unwrap();
    stuffed.set_rcvbuf(4096).unwrap();
    stuffed.set_sndtimeo(WAIT.as_millis() as i32).unwrap();
    stuffed.connect(&d.rpc).unwrap();

    let (started_tx, started_rx) = mpsc::channel();
    let stuffer = {
        let session_id = session_id.clone();
        std::thread::spawn(move || {
            for id in 0..STUFFED {
                let body = request(id, "message.list", json!({"session_id": session_id}));
                stuffed.send(body, 0).expect("send within the wait limit");
                if id == STUFFED / 5 {
                    started_tx.send(()).unwrap();
                }
            }
            stuffed
        })
    };
    started_rx.recv_timeout(WAIT).expect("stuffer started");
    // The server has started dropping answers to the stuffed peer: its queue is full.
    common::eventually("the stuffed peer's queue to fill", || {
        let now = drops(&d);
        (counter(&now, "replies_dropped") > counter(&before, "replies_dropped")).then_some(())
    });

    // Meanwhile another client is served as usual: each call gets its answer within the client's
    // normal timeout.
    let mut other = d.client();
    for i in 0..200 {
        let result = other
            .call("instance.ping", json!({}))
            .unwrap_or_else(|e| panic!("ping {i} while a peer is stuffed: {e}"));
        assert_eq!(result["status"], "ok");
    }
    let stuffed = stuffer.join().expect("stuffer thread");
    assert_eq!(
        other.call("instance.ping", json!({})).unwrap()["status"],
        "ok"
    );

    // Every request of the stuffed peer was answered or counted as dropped, never both, never
    // neither. It reads now; the server's counters are read by another client.
    let lost_since = |now: &Value| {
        ["replies_dropped", "outbound_dropped"]
            .iter()
            .map(|c| counter(now, c) - counter(&before, c))
            .sum::<u64>()
    };
    let mut received = HashSet::new();
    let deadline = Instant::now() + WAIT;
    let after = loop {
        while let Some(frames) = recv_within(&stuffed, Duration::from_millis(20)) {
            let (id, result) = result_of(&frames);
            assert!(id < STUFFED, "reply to id {id}, which was never sent");
            assert!(received.insert(id), "id {id} answered twice");
            assert_eq!(result["messages"].as_array().map(Vec::len), Some(2));
        }
        let now = drops(&d);
        let accounted = received.len() as u64 + lost_since(&now);
        assert!(
            accounted <= STUFFED,
            "{} answered + {} dropped > {STUFFED} sent: a reply counted as dropped arrived",
            received.len(),
            lost_since(&now)
        );
        if accounted == STUFFED {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "{} answered + {} dropped of {STUFFED}: some replies are unaccounted for",
            received.len(),
            lost_since(&now)
        );
    };
    assert_eq!(
        counter(&after, "requests_refused_busy"),
        counter(&before, "requests_refused_busy")
    );
    // The stuffed peer itself is served again now that it reads.
    stuffed
        .send(request(STUFFED, "instance.ping", json!({})), 0)
        .unwrap();
    let (id, result) = result_of(&recv_within(&stuffed, WAIT).expect("ping after draining"));
    assert_eq!((id, &result["status"]), (STUFFED, &json!("ok")));
}

#[test]
fn a_stalled_subscriber_does_not_cost_a_live_one_any_event() {
    const TURNS: usize = 12;
    const WORDS: usize = 250;
    // A turn publishes about WORDS + 7 events; a few hundred, under this queue, so the live
    // subscriber (which reads each turn before the next starts) can never be at its limit.
    const PUB_HWM: i32 = 1_000;
    let d = spawn_daemon_with(|c| {
        c.model = ModelConfig::Echo {
            token_delay: Duration::ZERO,
        };
        c.transport.pub_sndhwm = PUB_HWM;
    });

    // The stalled subscriber: tiny queues, live (it got one heartbeat), then never read again.
    let stalled = d.ctx.socket(zmq::SUB).unwrap();
    stalled.set_linger(0).unwrap();
    stalled.set_rcvhwm(1).unwrap();
    stalled.set_rcvbuf(4096).unwrap();
    stalled.set_subscribe(b"").unwrap();
    stalled.connect(&d.pub_).unwrap();
    recv_within(&stalled, WAIT).expect("the stalled subscriber never went live");

    let live = d.subscriber(&[""]);
    let mut rpc = d.client();
    let mut all = Vec::new();
    let mut session_id: Option<String> = None;
    let mut contents = Vec::new();
    let mut turn_ids = Vec::new();
    // ~12 turns x ~0.8 MB (two 250 KB message.append, 251 tokens of ~1.2 KB): about 10 MB and
    // 3,000 messages, well past what the stalled path can hold (1,000 queued + 1 received
    // messages, and a few MiB of socket buffers), so it must overflow.
    for turn in 0..TURNS {
        let word = format!("w{turn}-{}", "x".repeat(1_000));
        let content = vec![word; WORDS].join(" ");
        let mut params = json!({"content": content});
        if let Some(s) = &session_id {
            params["session_id"] = json!(s);
        }
        let sent = rpc
            .call("message.send", params)
            .unwrap_or_else(|e| panic!("turn {turn}: {e}"));
        session_id = sent["session_id"].as_str().map(str::to_owned);
        let turn_id = sent["turn_id"].as_str().unwrap().to_owned();
        all.extend(live.until(|e| {
            e.envelope.topic == "llm.end" && e.envelope.payload["turn_id"] == turn_id.as_str()
        }));
        assert_eq!(
            rpc.call("instance.ping", json!({})).unwrap()["status"],
            "ok"
        );
        contents.push(content);
        turn_ids.push(turn_id);
    }
    let last_seq = rpc.call("state.sync", json!({})).unwrap()["seq"]
        .as_u64()
        .expect("state.sync seq");
    all.extend(live.until(|e| e.envelope.seq >= last_seq));

    // The live subscriber saw every event, in order, with no gap.
    for pair in all.windows(2) {
        assert_eq!(
            pair[1].envelope.seq,
            pair[0].envelope.seq + 1,
            "gap or reordering after {} ({})",
            pair[0].envelope.seq,
            pair[0].envelope.topic
        );
    }
    // And every turn in full: all its tokens in order, its end, both messages.
    for (turn_id, content) in turn_ids.iter().zip(&contents) {
        let of_turn: Vec<&ReceivedEvent> = all
            .iter()
            .filter(|e| e.envelope.payload["turn_id"] == turn_id.as_str())
            .collect();
        let tokens: Vec<&Value> = of_turn
            .iter()
            .filter(|e| e.envelope.topic == "llm.token")
            .map(|e| &e.envelope.payload)
            .collect();
        for (i, t) in tokens.iter().enumerate() {
            assert_eq!(t["index"], i, "token order in turn {turn_id}");
        }
        let text: String = tokens
            .iter()
            .map(|t| t["token"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(text, format!("echo: {content}"), "turn {turn_id} text");
        let count = |topic: &str| of_turn.iter().filter(|e| e.envelope.topic == topic).count();
        assert_eq!(count("llm.start"), 1, "turn {turn_id}");
        assert_eq!(count("llm.end"), 1, "turn {turn_id}");
        assert_eq!(count("message.append"), 2, "turn {turn_id}");
    }

    // The stalled subscriber really did overflow: once it reads, its sequence has a gap. Reading
    // goes on until it sees an event at or past `last_seq` (heartbeats keep coming).
    let mut seqs = Vec::new();
    let deadline = Instant::now() + WAIT;
    while seqs.last().is_none_or(|&s| s < last_seq) {
        let left = deadline.saturating_duration_since(Instant::now());
        let frames =
            recv_within(&stalled, left).expect("the stalled subscriber got no more events");
        if frames[0].starts_with(b"instance.welcome/") {
            continue; // another subscriber's welcome: not numbered
        }
        let envelope: Value = serde_json::from_slice(&frames[1]).expect("envelope");
        seqs.push(envelope["seq"].as_u64().expect("seq"));
    }
    assert!(
        seqs.windows(2).any(|p| p[1] > p[0] + 1),
        "the stalled subscriber lost nothing: the test did not overflow it ({} events)",
        seqs.len()
    );

    assert_eq!(
        rpc.call("instance.ping", json!({})).unwrap()["status"],
        "ok"
    );
}

/// Sends `n` pings on `dealer` without waiting, then reads every answer: (ok, too_many_pending).
fn pipelined_pings(dealer: &zmq::Socket, n: u64) -> (u64, u64) {
    for id in 0..n {
        dealer
            .send(request(id, "instance.ping", json!({})), 0)
            .expect("send");
    }
    let (mut ok, mut refused) = (0, 0);
    let mut seen = HashSet::new();
    for _ in 0..n {
        let frames = recv_within(dealer, WAIT).expect("every pipelined ping is answered");
        let reply: Value = serde_json::from_slice(&frames[0]).expect("reply is JSON");
        assert!(seen.insert(reply["id"].as_u64().expect("id")), "{reply}");
        match reply["error"]["data"]["kind"].as_str() {
            None => ok += 1,
            Some("too_many_pending") => {
                assert_eq!(reply["error"]["code"], -32009, "{reply}");
                assert_eq!(reply["error"]["data"]["limit"], 1, "{reply}");
                refused += 1;
            }
            Some(other) => panic!("unexpected error {other}: {reply}"),
        }
    }
    (ok, refused)
}

#[test]
fn a_peer_over_its_pending_bound_is_refused_and_its_slots_come_back() {
    // One request in flight per peer: a pipelined burst must overrun it (the transport reads a
    // burst in microseconds; the core needs waking), and every answer still arrives.
    let d = spawn_daemon_with(|c| c.transport.per_peer_pending = 1);
    let dealer = d.raw(zmq::DEALER);
    let (ok, refused) = pipelined_pings(&dealer, 2_000);
    assert!(
        refused > 0,
        "2,000 pipelined pings never found one in flight"
    );
    assert!(ok > 0, "some pings reached the core");
    // Every slot was given back: the same peer's calls, one at a time, are all answered.
    for id in 0..50 {
        dealer
            .send(request(10_000 + id, "instance.ping", json!({})), 0)
            .unwrap();
        let frames = recv_within(&dealer, WAIT).expect("answer");
        let (got, result) = result_of(&frames);
        assert_eq!((got, result["status"].as_str()), (10_000 + id, Some("ok")));
    }
    // Another peer was never affected by the first one's count.
    assert_eq!(
        d.client().call("instance.ping", json!({})).unwrap()["status"],
        "ok"
    );
}

#[test]
fn a_pipelined_burst_gets_every_answer_exactly_once() {
    // 2,000 calls sent before any answer is read: replies leave from the core's thread while
    // the transport thread is still reading the burst, and every answer must arrive, once.
    const CALLS: u64 = 2_000;
    let d = spawn_daemon_with(|c| {
        // Every answer fits the peer's send queue, as with the defaults (64 requests in flight
        // against a queue of 1,000): past it a reply to a client that has not read yet is
        // dropped, and a server that answers 2,000 calls in a few milliseconds can outrun its
        // own I/O thread (this failed once in CI when the queue was the default 1,000).
        c.transport.router_hwm = CALLS as i32;
        c.transport.per_peer_pending = CALLS as usize;
        c.transport.inbound_queue = CALLS as usize;
    });
    let dealer = d.raw(zmq::DEALER);
    for id in 0..CALLS {
        dealer
            .send(request(id, "instance.ping", json!({})), 0)
            .unwrap();
    }
    let mut ids = HashSet::new();
    for _ in 0..CALLS {
        let frames = recv_within(&dealer, WAIT).expect("every answer arrives");
        let (id, result) = result_of(&frames);
        assert_eq!(result["status"], "ok");
        assert!(ids.insert(id), "answer {id} twice");
    }
    assert_eq!(counter(&drops(&d), "outbound_dropped"), 0);
}

#[test]
fn a_model_with_no_delay_loses_no_events_to_a_reading_subscriber() {
    // A model with no delay produces tokens faster than libzmq writes them: without the pace
    // (`pace.rs`) a subscriber's queue would overflow and it would miss events.
    let d = tokens_heard_whole(5_000, |_| {});
    assert_eq!(counter(&drops(&d), "outbound_dropped"), 0);
}

#[test]
fn a_model_with_no_delay_loses_no_events_at_a_low_pub_hwm() {
    // Model output waits at a quarter of `--pub-hwm` events held, and libzmq learns what a
    // subscriber took only every half queue: a burst of output taken past the mark at once
    // (up to 256 events) would overflow a queue of 400 and lose events without a word.
    tokens_heard_whole(20_000, |c| c.transport.pub_sndhwm = 400);
}

/// Streams an echo turn of `words` words with no delay between tokens on a server `tweak`ed,
/// and checks that a reading subscriber hears "echo:" and one token per word, every one of
/// them, in order. Returns the server.
fn tokens_heard_whole(words: usize, tweak: impl FnOnce(&mut zcoord::config::Config)) -> Daemon {
    let d = spawn_daemon_with(|c| {
        c.model = ModelConfig::Echo {
            token_delay: Duration::ZERO,
        };
        tweak(c);
    });
    let live = d.subscriber(&["llm."]);
    let content = (0..words).map(|i| format!("w{i}")).collect::<Vec<_>>();
    let sent = common::send(&d, None, &content.join(" "));
    let turn_id = sent["turn_id"].as_str().unwrap().to_owned();
    let events = live.until_turn("llm.end", &turn_id);
    let indexes: Vec<u64> = events
        .iter()
        .filter(|e| e.envelope.topic == "llm.token")
        .map(|e| e.envelope.payload["index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        indexes.len(),
        words + 1,
        "tokens heard of {}, the first gap after {:?}",
        words + 1,
        indexes.windows(2).find(|w| w[1] != w[0] + 1)
    );
    assert_eq!(indexes, (0..=words as u64).collect::<Vec<_>>());
    d
}

#[test]
fn a_peer_with_many_queued_requests_does_not_go_ahead_of_another_peer() {
    // The flooder queues 64 frames (its limit of requests in flight), each a batch of 20 `state.sync` over 50 sessions (each
    // answer about 10 KB). A ping sent right behind them is served in turn by peer: after the
    // few of the flooder's that the core took before the ping reached it, not after all.
    const FRAMES: u64 = 64;
    let d = spawn_daemon();
    let mut rpc = d.client();
    for i in 0..50 {
        rpc.call("session.create", json!({"title": format!("s{i}")}))
            .unwrap();
    }
    let batch: Vec<Value> = (0..20)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "state.sync"}))
        .collect();
    let body = serde_json::to_vec(&batch).unwrap();
    let flooder = d.raw(zmq::DEALER);
    let honest = d.raw(zmq::DEALER);
    // Both connected before the flood (a ping each way), so the honest ping below reaches the
    // server right behind the flooder's frames, not after a handshake: the state.sync answer
    // is encoded once per change, so the core gets through a frame in well under a millisecond
    // and would be done with all of them before a fresh connection's first request.
    for (i, sock) in [&flooder, &honest].into_iter().enumerate() {
        sock.send(request(100 + i as u64, "instance.ping", json!({})), 0)
            .unwrap();
        recv_within(sock, WAIT).expect("a ping answer");
    }
    for _ in 0..FRAMES {
        flooder.send(&body, 0).unwrap();
    }
    honest
        .send(request(1, "instance.ping", json!({})), 0)
        .unwrap();
    let mut flooder_answers = 0;
    let deadline = Instant::now() + WAIT;
    let ahead = loop {
        assert!(Instant::now() < deadline, "no answer to the ping");
        let mut items = [
            honest.as_poll_item(zmq::POLLIN),
            flooder.as_poll_item(zmq::POLLIN),
        ];
        zmq::poll(&mut items, 100).unwrap();
        // The flooder's answers that arrived first count as ahead of the ping.
        if items[1].is_readable() {
            recv_within(&flooder, WAIT).unwrap();
            flooder_answers += 1;
            continue;
        }
        if items[0].is_readable() {
            let (id, result) = result_of(&recv_within(&honest, WAIT).unwrap());
            assert_eq!((id, result["status"].as_str()), (1, Some("ok")));
            break flooder_answers;
        }
    };
    eprintln!("flooder answers before the ping's: {ahead} of {FRAMES}");
    assert!(
        ahead <= FRAMES / 2,
        "the ping waited behind {ahead} of the flooder's {FRAMES} frames"
    );
}
