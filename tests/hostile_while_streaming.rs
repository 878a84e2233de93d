//! The bad-input catalogue fired at a live daemon while a well-behaved client streams (issue 7).
//!
//! One daemon; a well-behaved client (a DEALER and a live SUB on its session) runs turns and pings,
//! first alone (the baseline), then while attacker threads loop over everything hostile we know:
//! the malformed requests of `bad_input.rs`, odd frame counts, oversized frames, deep nesting,
//! huge batches, a DEALER flooding requests and never reading, raw TCP garbage, truncated ZMTP
//! greetings and a 1 TiB frame header on both ports, wrong socket types on both ports, SUBs that
//! subscribe to hundreds of prefixes and vanish, and a SUB that never reads.
//!
//! Asserted: the well-behaved client gets no error reply, every turn completes with every token
//! exactly once, in order, and the reply matches the tokens; afterwards `instance.info` answers
//! and every request of the flooder was answered or counted as dropped. The timings are measured
//! and printed (`--nocapture`), never asserted: the machine is shared and noisy.

mod common;

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{
    garbage, live_subscriber, port_of, recv_within, spawn_daemon_with, zmtp3_greeting, zmtp3_ready,
    Daemon, Events, WAIT,
};
use zcoord::client::{ReceivedEvent, RpcClient, Subscriber};

/// The daemon's `max_message_bytes`: frames above it get `message_too_large`, frames above twice
/// it cost the sender its connection.
const LIMIT: usize = 64 * 1024;
/// Turns per phase (the attack phase runs more if an attacker has not finished a round yet).
const TURNS: usize = 20;
/// Words per user message; the echo model streams one token per word, plus `echo:`.
const WORDS: usize = 30;
/// How long the well-behaved client reads events between two pings.
const PING_EVERY: Duration = Duration::from_millis(3);
/// Bound on any one blocking step of an attacker, so that all of them stop soon after the
/// workload ends. What attackers get back is counted and printed, not asserted.
const STEP: Duration = Duration::from_millis(500);

#[test]
fn bad_input_catalogue_does_not_disturb_a_streaming_client() {
    let d = spawn_daemon_with(|c| c.transport.max_message_bytes = LIMIT);
    let mut client = WellBehaved::new(&d);

    let baseline = client.run("baseline", TURNS, || true);
    println!("\nwell-behaved client, {WORDS} tokens a turn, a ping every ~{PING_EVERY:?}:");
    baseline.print("baseline");
    let before = drops(&d);

    let stop = AtomicBool::new(false);
    let attackers: [Attacker; 6] = [
        "catalogue",
        "raw tcp",
        "wrong types",
        "sub churn",
        "stalled sub",
        "flood",
    ]
    .map(Attacker::new);
    let (attack, joiner, reports, (flooder, flooded)) = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        // Each attacker has a context of its own, so that neither the well-behaved client nor
        // the other attackers share its I/O thread: only the server is shared.
        let a = || Attack {
            d: &d,
            ctx: zmq::Context::new(),
            stop: &stop,
        };
        let [catalogue, raw, types, churn, stalled, flood] = &attackers;
        let reports = [
            s.spawn(move || a().catalogue(catalogue)),
            s.spawn(move || a().raw_tcp(raw)),
            s.spawn(move || a().wrong_types(types)),
            s.spawn(move || a().sub_churn(churn)),
            s.spawn(move || a().stalled_sub(stalled)),
        ];
        let flooder = s.spawn(move || a().flood(flood));
        common::eventually("every attacker to start", || {
            attackers
                .iter()
                .all(|a| a.started.load(Ordering::SeqCst))
                .then_some(())
        });
        let every_round_done = || {
            stop.load(Ordering::SeqCst)
                || attackers
                    .iter()
                    .all(|a| a.rounds.load(Ordering::SeqCst) > 0)
        };
        let attack = client.run("under attack", TURNS, every_round_done);
        let joiner = late_joiner(&d, &client.session_id);
        stop.store(true, Ordering::SeqCst);
        let reports = reports.map(|r| r.join().expect("attacker"));
        let flooded = flooder.join().expect("flooder");
        (attack, joiner, reports, flooded)
    });

    attack.print("under attack");
    println!("  a subscriber joining under attack: {joiner}");
    println!("attackers:");
    for (a, report) in attackers.iter().zip(reports.iter().chain([&flooded.1])) {
        println!(
            "  {:<12} {:>4} rounds  {report}",
            a.name,
            a.rounds.load(Ordering::SeqCst)
        );
    }

    // Every request the flooder sent was answered (it reads them now) or counted as dropped.
    // Other attackers' drops count too, so this is a lower bound, not an equality.
    let sent = flooded.0;
    let lost_since = |now: &Value| -> u64 {
        ["replies_dropped", "outbound_dropped", "requests_dropped"]
            .iter()
            .map(|c| counter(now, c) - counter(&before, c))
            .sum()
    };
    let mut answered = HashSet::new();
    let deadline = Instant::now() + WAIT;
    let after = loop {
        while let Some(frames) = recv_within(&flooder, Duration::from_millis(20)) {
            let reply: Value = serde_json::from_slice(frames.last().expect("a frame"))
                .expect("the flooder's reply is JSON");
            let id = reply["id"].as_u64().expect("the flooder's ids are numbers");
            assert!(id < sent, "reply to id {id}, which was never sent: {reply}");
            assert!(answered.insert(id), "id {id} answered twice");
        }
        let now = drops(&d);
        if answered.len() as u64 + lost_since(&now) >= sent {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "flooder: {sent} sent, {} answered, {} dropped: some are unaccounted for",
            answered.len(),
            lost_since(&now)
        );
    };
    println!(
        "flooder: {sent} sent, {} answered, >= {} dropped\ndrops before the attack: {before}\n\
         drops after:            {after}",
        answered.len(),
        sent - answered.len() as u64,
    );
    for (name, was) in before.as_object().expect("drops").iter() {
        assert!(
            after[name].as_u64() >= was.as_u64(),
            "drops.{name} went down: {before} -> {after}"
        );
    }

    // The server is whole: the attackers created nothing, no turn is left running, and the
    // session holds exactly the conversation the well-behaved client streamed.
    let info = d.call("instance.info", json!({}));
    assert_eq!(info["session_count"], 1, "{info}");
    assert_eq!(info["running_turns"], 0, "{info}");
    let list = d.call("message.list", json!({"session_id": client.session_id}));
    let messages = list["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2 * client.completed, "{list}");
    assert!(messages.iter().all(|m| m["status"] == "complete"), "{list}");
    let pong = client.call("after", "instance.ping", json!({}));
    assert_eq!(pong.map(|p| p["status"].clone()), Some(json!("ok")));

    // Last, so that a failing run has printed all of the above first.
    let errors = &client.errors;
    assert!(
        errors.is_empty(),
        "the well-behaved client got {} error replies; the first: {:#?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
}

// ---------------------------------------------------------------------------------------------
// The well-behaved client
// ---------------------------------------------------------------------------------------------

struct WellBehaved {
    rpc: RpcClient,
    events: Events,
    session_id: String,
    /// Turns started so far, over all phases (they number the turns).
    started: usize,
    /// Turns that completed (every turn that started must).
    completed: usize,
    /// Every call that failed, in order: there must be none.
    errors: Vec<String>,
}

/// What one phase measured.
struct Timings {
    pings: Vec<Duration>,
    turns: Vec<Duration>,
    /// Calls that failed.
    errors: usize,
}

impl WellBehaved {
    fn new(d: &Daemon) -> WellBehaved {
        let mut rpc = d.client();
        let session = rpc
            .call("session.create", json!({"title": "well-behaved"}))
            .expect("session.create");
        let session_id = session["id"].as_str().expect("session id").to_owned();
        let prefixes: Vec<String> = ["message.append", "llm.start", "llm.token", "llm.end"]
            .iter()
            .map(|topic| format!("{topic}/{session_id}"))
            .collect();
        let prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
        WellBehaved {
            rpc,
            events: live_subscriber(&d.ctx, &d.pub_, &prefixes),
            session_id,
            started: 0,
            completed: 0,
            errors: Vec::new(),
        }
    }

    /// Runs at least `turns` turns, and more until `enough` says so.
    fn run(&mut self, phase: &str, turns: usize, enough: impl Fn() -> bool) -> Timings {
        let mut t = Timings {
            pings: Vec::new(),
            turns: Vec::new(),
            errors: 0,
        };
        let errors_before = self.errors.len();
        let deadline = Instant::now() + 3 * WAIT;
        for ran in 0.. {
            if ran >= turns && enough() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{phase}: the attackers never finished a round"
            );
            self.turn(phase, &mut t);
        }
        t.errors = self.errors.len() - errors_before;
        t
    }

    /// A call that must succeed (within the client's `WAIT`); a failure is recorded.
    fn call(&mut self, phase: &str, method: &str, params: Value) -> Option<Value> {
        let turn = self.started;
        self.rpc
            .call(method, params)
            .map_err(|e| {
                self.errors
                    .push(format!("{phase}, turn {turn}, {method}: {e}"))
            })
            .ok()
    }

    /// Sends a message, pings while its turn streams and checks the turn arrived whole.
    fn turn(&mut self, phase: &str, t: &mut Timings) {
        self.started += 1;
        let n = self.started;
        let content = (0..WORDS)
            .map(|w| format!("t{n}w{w}"))
            .collect::<Vec<_>>()
            .join(" ");
        let start = Instant::now();
        let params = json!({"session_id": self.session_id, "content": content});
        let Some(sent) = self.call(phase, "message.send", params) else {
            return;
        };
        assert_eq!(sent["ok"], true, "{sent}");
        let turn_id = sent["turn_id"].as_str().expect("turn_id").to_owned();
        let mut got = Vec::new();
        loop {
            let ping_start = Instant::now();
            if let Some(pong) = self.call(phase, "instance.ping", json!({})) {
                t.pings.push(ping_start.elapsed());
                assert_eq!(pong["status"], "ok", "{pong}");
            }
            if self.collect(&mut got, Instant::now() + PING_EVERY) {
                break;
            }
            assert!(
                start.elapsed() < WAIT,
                "{phase}: turn {n} still incomplete after {WAIT:?}; got {:?}",
                got.iter()
                    .map(|e| e.envelope.topic.as_str())
                    .collect::<Vec<_>>()
            );
        }
        t.turns.push(start.elapsed());
        check_turn(&format!("{phase}, turn {n}"), &got, &turn_id, &content);
        self.completed += 1;
    }

    /// Reads events until `until`, or until an assistant message (the turn's last event of the
    /// topics subscribed), which it reports with `true`.
    fn collect(&self, got: &mut Vec<ReceivedEvent>, until: Instant) -> bool {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let event = match self.events.sub.recv(left) {
                Ok(Some(event)) => event,
                Ok(None) => return false,
                Err(e) => panic!("the well-behaved subscriber got a bad event: {e}"),
            };
            let last = event.envelope.topic == "message.append"
                && event.envelope.payload["role"] == "assistant";
            got.push(event);
            if last {
                return true;
            }
        }
    }
}

/// A turn's events, as the subscriber got them: the user message, `llm.start`, tokens 0, 1, 2… with
/// neither gap nor duplicate, `llm.end` completed, and the assistant message holding the tokens.
#[track_caller]
fn check_turn(what: &str, got: &[ReceivedEvent], turn_id: &str, content: &str) {
    let topics: Vec<&str> = got.iter().map(|e| e.envelope.topic.as_str()).collect();
    for e in got {
        assert_eq!(
            e.envelope.payload["turn_id"],
            turn_id,
            "{what}: event of another turn: {}",
            String::from_utf8_lossy(&e.raw)
        );
    }
    for pair in got.windows(2) {
        assert!(
            pair[1].envelope.seq > pair[0].envelope.seq,
            "{what}: seq went from {} to {}: {topics:?}",
            pair[0].envelope.seq,
            pair[1].envelope.seq
        );
    }
    let [user, start, tokens @ .., end, reply] = got else {
        panic!("{what}: too few events: {topics:?}")
    };
    assert_eq!(user.envelope.topic, "message.append", "{what}: {topics:?}");
    assert_eq!(user.envelope.payload["role"], "user", "{what}: {topics:?}");
    assert_eq!(user.envelope.payload["content"], content, "{what}");
    assert_eq!(start.envelope.topic, "llm.start", "{what}: {topics:?}");
    for (i, token) in tokens.iter().enumerate() {
        assert_eq!(token.envelope.topic, "llm.token", "{what}: {topics:?}");
        assert_eq!(
            token.envelope.payload["index"], i,
            "{what}: token {i} missing or repeated: {topics:?}"
        );
    }
    assert_eq!(end.envelope.topic, "llm.end", "{what}: {topics:?}");
    let end = &end.envelope.payload;
    assert_eq!(end["reason"], "completed", "{what}: {end}");
    assert_eq!(end["tokens_out"], tokens.len(), "{what}: {end}");
    let text: String = tokens
        .iter()
        .map(|t| t.envelope.payload["token"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(text, format!("echo: {content}"), "{what}: the tokens");
    let reply = &reply.envelope.payload;
    assert_eq!(reply["content"], text, "{what}: the assistant message");
    assert_eq!(reply["status"], "complete", "{what}: {reply}");
}

impl Timings {
    fn print(&self, phase: &str) {
        println!(
            "  {phase:<13} {:>3} turns: p50 {:>7.1?} p99 {:>7.1?} | {:>5} pings: p50 {:>7.1?} \
             p99 {:>7.1?} max {:>7.1?} | {} errors",
            self.turns.len(),
            percentile(&self.turns, 0.50),
            percentile(&self.turns, 0.99),
            self.pings.len(),
            percentile(&self.pings, 0.50),
            percentile(&self.pings, 0.99),
            percentile(&self.pings, 1.0),
            self.errors,
        );
    }
}

fn percentile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let at = ((sorted.len().saturating_sub(1)) as f64 * q).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

/// How long a new subscriber takes to go live under attack. Measured, not asserted: the churning
/// SUBs' subscriptions queue up inside libzmq's XPUB (unbounded, first come first served) faster
/// than a debug build welcomes them, so a newcomer's welcome waits behind them. Its events do
/// not: the XPUB matches a subscription as soon as it arrives.
fn late_joiner(d: &Daemon, session_id: &str) -> String {
    // Events first: a heartbeat subscriber's first heartbeat shows the subscription applied
    // (it asks for no welcome).
    let events = d.ctx.socket(zmq::SUB).unwrap();
    events.set_linger(0).unwrap();
    events.set_subscribe(b"instance.heartbeat").unwrap();
    events.connect(&d.pub_).unwrap();
    let started = Instant::now();
    let mut first_event = None;
    while first_event.is_none() && started.elapsed() < WAIT {
        if recv_within(&events, Duration::from_millis(100)).is_some() {
            first_event = Some(started.elapsed());
        }
    }
    let first_event = match first_event {
        Some(t) => format!("first heartbeat after {t:.1?}"),
        None => format!("no heartbeat within {WAIT:?}"),
    };
    let started = Instant::now();
    let prefix = format!("llm.token/{session_id}");
    let bound = 2 * WELCOME_RETRY;
    match Subscriber::connect_live(&d.ctx, &d.pub_, &[&prefix], bound) {
        Ok(_) => format!(
            "{first_event}; live (welcomed) after {:.1?}",
            started.elapsed()
        ),
        Err(e) => format!("{first_event}; not welcomed within {bound:?}: {e}"),
    }
}

/// How long `Subscriber::connect_live` waits for a welcome before it tries a fresh socket.
const WELCOME_RETRY: Duration = Duration::from_secs(1);

/// `instance.info`'s `drops`, each counter a number.
fn drops(d: &Daemon) -> Value {
    let info = d.call("instance.info", json!({}));
    let drops = info["drops"].clone();
    let counters = drops.as_object().expect("drops is an object");
    assert!(
        counters.len() >= 4 && counters.values().all(Value::is_u64),
        "{info}"
    );
    drops
}

fn counter(drops: &Value, name: &str) -> u64 {
    drops[name].as_u64().expect("counter")
}

// ---------------------------------------------------------------------------------------------
// Attackers
// ---------------------------------------------------------------------------------------------

/// One attacker's progress, watched by the workload.
struct Attacker {
    name: &'static str,
    started: AtomicBool,
    rounds: AtomicU64,
}

impl Attacker {
    fn new(name: &'static str) -> Attacker {
        Attacker {
            name,
            started: AtomicBool::new(false),
            rounds: AtomicU64::new(0),
        }
    }
}

/// Sets the flag when dropped, so a panic anywhere stops every attacker (and the scope can end).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct Attack<'a> {
    d: &'a Daemon,
    ctx: zmq::Context,
    stop: &'a AtomicBool,
}

impl Attack<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Runs `round` until the workload ends; returns `round`'s last summary.
    fn rounds(&self, who: &Attacker, mut round: impl FnMut(u64) -> String) -> String {
        let _stop = StopOnDrop(self.stop);
        who.started.store(true, Ordering::SeqCst);
        let mut summary = String::new();
        for n in 0.. {
            if self.stopped() {
                break;
            }
            summary = round(n);
            who.rounds.fetch_add(1, Ordering::SeqCst);
        }
        summary
    }

    fn socket(&self, kind: zmq::SocketType, endpoint: &str) -> zmq::Socket {
        let s = self.ctx.socket(kind).unwrap();
        s.set_linger(0).unwrap();
        s.set_sndtimeo(STEP.as_millis() as i32).unwrap();
        s.connect(endpoint).unwrap();
        s
    }

    /// Every malformed request, odd frame shape and oversized frame, on a DEALER that reads its
    /// answers; a REQ's odd requests; frames big enough to be disconnected for.
    fn catalogue(self, who: &Attacker) -> String {
        let rows = catalogue();
        let (mut expected, mut answered, mut cut_off) = (0, 0, 0);
        let mut dealer = self.socket(zmq::DEALER, &self.d.rpc);
        let mut req = self.socket(zmq::REQ, &self.d.rpc);
        self.rounds(who, |_| {
            for row in &rows {
                if self.stopped() {
                    break;
                }
                if dealer.send_multipart(row.frames.iter(), 0).is_err() {
                    continue;
                }
                if row.answered {
                    expected += 1;
                    answered += usize::from(recv_within(&dealer, STEP).is_some());
                }
            }
            // A REQ's lone garbage and two-part request; a REQ that got no answer is stuck.
            let odd: [&[&[u8]]; 2] = [&[b"nope"], &[b"a", b"b"]];
            for frames in odd {
                expected += 1;
                let ok = req.send_multipart(frames.iter().copied(), 0).is_ok()
                    && recv_within(&req, STEP).is_some();
                answered += usize::from(ok);
                if !ok {
                    req = self.socket(zmq::REQ, &self.d.rpc);
                }
            }
            // Frames past twice the limit: the server drops the connection.
            for len in [2 * LIMIT + 1, 4 * LIMIT] {
                let (big, monitor) = monitored(&self.ctx, zmq::DEALER, &self.d.rpc, DISCONNECTED);
                let _ = big.send(padded_ping(len), 0);
                cut_off += usize::from(next_event(&monitor, STEP).is_some());
            }
            // Replies still in flight after a timeout would be miscounted next round.
            if answered < expected {
                dealer = self.socket(zmq::DEALER, &self.d.rpc);
            }
            format!(
                "{} rows a round; {answered}/{expected} answered; {cut_off} oversized peers cut off",
                rows.len() + 4
            )
        })
    }

    /// One DEALER sending requests as fast as it can and never reading: half pings, half
    /// `session.get`s of an unknown 4 KiB session id, whose answers echo it back (so the answers
    /// overflow its queue soon). Returns the socket and how many requests it sent (ids 0..sent).
    fn flood(self, who: &Attacker) -> (zmq::Socket, (u64, String)) {
        let sock = self.ctx.socket(zmq::DEALER).unwrap();
        sock.set_linger(0).unwrap();
        sock.set_rcvhwm(1).unwrap();
        sock.set_rcvbuf(4096).unwrap();
        sock.set_sndtimeo(STEP.as_millis() as i32).unwrap();
        sock.connect(&self.d.rpc).unwrap();
        let session_get = format!(
            r#""method":"session.get","params":{{"session_id":"{}"}}}}"#,
            "s".repeat(4096)
        );
        let mut sent = 0u64;
        let summary = self.rounds(who, |_| {
            for _ in 0..200 {
                let tail = if sent.is_multiple_of(2) {
                    r#""method":"instance.ping"}"#
                } else {
                    &session_get
                };
                let body = format!(r#"{{"jsonrpc":"2.0","id":{sent},{tail}"#);
                if sock.send(body.as_bytes(), 0).is_ok() {
                    sent += 1;
                } else if self.stopped() {
                    break;
                }
            }
            format!("{sent} requests sent, none read")
        });
        (sock, (sent, summary))
    }

    /// Raw TCP on both ports: random bytes, a ZMTP signature with an unknown version, greetings
    /// cut short and held open, and a correct handshake followed by a frame header of 1 TiB.
    fn raw_tcp(self, who: &Attacker) -> String {
        let ports = [
            (port_of(&self.d.rpc), "DEALER"),
            (port_of(&self.d.pub_), "SUB"),
        ];
        let (mut closed, mut tried) = (0, 0);
        self.rounds(who, |n| {
            let mut held = Vec::new();
            for (port, socket_type) in ports {
                if let Some(mut s) = tcp(port) {
                    let _ = s.write_all(&garbage(64 * 1024, 0x9e37_79b9_7f4a_7c15 ^ n));
                }
                if let Some(mut s) = tcp(port) {
                    let mut bytes = vec![0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 9, 9];
                    bytes.extend(garbage(4 * 1024, n + 1));
                    let _ = s.write_all(&bytes);
                }
                for cut in [1, 2, 5, 10, 11, 12, 33, 63] {
                    if let Some(mut s) = tcp(port) {
                        let _ = s.write_all(&zmtp3_greeting()[..cut]);
                        held.push(s);
                    }
                }
                tried += 1;
                closed += usize::from(huge_frame(port, socket_type));
            }
            format!("{closed}/{tried} 1 TiB headers cut off")
        })
    }

    /// Socket types that cannot talk to the ROUTER or to the PUB connect (and send, where they
    /// can); each is watched until its handshake ends one way or the other.
    fn wrong_types(self, who: &Attacker) -> String {
        use zmq::SocketType::*;
        let (rpc, pub_) = (self.d.rpc.as_str(), self.d.pub_.as_str());
        let mut cases: Vec<(zmq::SocketType, &str)> = [PUB, SUB, PULL, PUSH, REQ, REP, PAIR, XPUB]
            .into_iter()
            .map(|t| (t, rpc))
            .collect();
        cases.extend([PUB, REQ, ROUTER, DEALER, PUSH].map(|t| (t, pub_)));
        let (mut refused, mut accepted, mut silent) = (0, 0, 0);
        self.rounds(who, |_| {
            with_context(|ctx| {
                let socks: Vec<_> = cases
                    .iter()
                    .map(|&(kind, endpoint)| {
                        let (sock, monitor) = monitored(ctx, kind, endpoint, HANDSHAKE_ENDED);
                        match kind {
                            SUB => sock.set_subscribe(b"").unwrap(),
                            PULL | REP => {}
                            _ => {
                                let _ = sock.send(&b"{\"jsonrpc\":\"2.0\"}"[..], zmq::DONTWAIT);
                            }
                        }
                        (kind, sock, monitor)
                    })
                    .collect();
                for (kind, sock, monitor) in &socks {
                    match next_event(monitor, STEP) {
                        Some(zmq::SocketEvent::HANDSHAKE_SUCCEEDED) => {
                            accepted += 1;
                            // Only a REQ on the ROUTER gets this far: a client, whose request
                            // (sent above) was not JSON-RPC. It reads its answer.
                            if matches!(kind, REQ) {
                                let _ = recv_within(sock, STEP);
                            }
                        }
                        Some(_) => refused += 1,
                        None => silent += 1,
                    }
                }
                let n = cases.len();
                format!(
                    "{n} sockets a round; {refused} refused, {accepted} accepted, {silent} silent"
                )
            })
        })
    }

    /// SUBs subscribing to hundreds of prefixes each (a few that match real traffic, the rest
    /// asking for a welcome each: the most work a subscription can cost the server) and
    /// vanishing without unsubscribing, once the server has seen their subscriptions.
    fn sub_churn(self, who: &Attacker) -> String {
        let mut welcomed = 0;
        self.rounds(who, |n| {
            with_context(|ctx| {
                let subs: Vec<zmq::Socket> = (0..3)
                    .map(|k| {
                        let sub = ctx.socket(zmq::SUB).unwrap();
                        sub.set_linger(0).unwrap();
                        for j in 0..300 {
                            let prefix = match j {
                                0 => String::new(),
                                1 => "llm.token".into(),
                                2 => "session.".into(),
                                _ => format!("instance.welcome/churn-{n}-{k}-{j}"),
                            };
                            sub.set_subscribe(prefix.as_bytes()).unwrap();
                        }
                        sub.connect(&self.d.pub_).unwrap();
                        sub
                    })
                    .collect();
                for sub in &subs {
                    welcomed += usize::from(recv_within(sub, STEP).is_some());
                }
                format!("3 SUBs x 300 prefixes a round; {welcomed} heard back before vanishing")
            })
        })
    }

    /// A SUB to everything that never reads, with the smallest queues, connected throughout.
    fn stalled_sub(self, who: &Attacker) -> String {
        let sub = self.ctx.socket(zmq::SUB).unwrap();
        sub.set_linger(0).unwrap();
        sub.set_rcvhwm(1).unwrap();
        sub.set_rcvbuf(4096).unwrap();
        sub.set_subscribe(b"").unwrap();
        sub.connect(&self.d.pub_).unwrap();
        let heard = recv_within(&sub, WAIT).is_some();
        // Its rounds only wait for the workload to end.
        self.rounds(who, |_| {
            let deadline = Instant::now() + STEP;
            while !self.stopped() && Instant::now() < deadline {
                std::thread::park_timeout(Duration::from_millis(10));
            }
            format!("subscribed to everything, heard once ({heard}), never read again")
        })
    }
}

/// A socket of `kind` with a monitor reporting the `events` (a mask), connected to `endpoint`.
fn monitored(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    endpoint: &str,
    events: i32,
) -> (zmq::Socket, zmq::Socket) {
    let sock = ctx.socket(kind).unwrap();
    sock.set_linger(0).unwrap();
    sock.set_sndtimeo(STEP.as_millis() as i32).unwrap();
    let addr = format!("inproc://hostile-monitor-{}", uuid::Uuid::now_v7());
    sock.monitor(&addr, events).unwrap();
    let monitor = ctx.socket(zmq::PAIR).unwrap();
    monitor.set_linger(0).unwrap();
    monitor.connect(&addr).unwrap();
    sock.connect(endpoint).unwrap();
    (sock, monitor)
}

/// Runs `round` with a context of its own, and closes that context before returning: closing
/// waits until libzmq has reaped every socket of the round, so a fast loop cannot pile up closed
/// sockets past the 1,023 a context may hold.
fn with_context<T>(round: impl FnOnce(&zmq::Context) -> T) -> T {
    let ctx = zmq::Context::new();
    let out = round(&ctx);
    drop(ctx);
    out
}

const DISCONNECTED: i32 = zmq::SocketEvent::DISCONNECTED as i32;
const HANDSHAKE_ENDED: i32 = DISCONNECTED
    | zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32
    | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32
    | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as i32;

/// The first event a monitor reports within `timeout`.
fn next_event(monitor: &zmq::Socket, timeout: Duration) -> Option<zmq::SocketEvent> {
    let frames = recv_within(monitor, timeout)?;
    let raw = u16::from_le_bytes([frames[0][0], frames[0][1]]);
    Some(zmq::SocketEvent::from_raw(raw))
}

// ---------------------------------------------------------------------------------------------
// The catalogue (the requests of `bad_input.rs`, without their expected answers)
// ---------------------------------------------------------------------------------------------

struct Row {
    frames: Vec<Vec<u8>>,
    /// Whether the server answers it (notifications are never answered).
    answered: bool,
}

fn catalogue() -> Vec<Row> {
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"instance.ping"}"#;
    let p = r#""method":"instance.ping""#;
    let batch = |call: &str, n: usize| format!("[{}]", vec![call; n].join(","));
    let unknown_get =
        r#"{"jsonrpc":"2.0","id":2,"method":"session.get","params":{"session_id":"x"}}"#;
    let mut bodies: Vec<Vec<u8>> = [
        "",
        "not json",
        r#"{"jsonrpc":"2.0","id":1,"#,
        &format!("{ping} x"),
        &("[".repeat(5_000) + &"]".repeat(5_000)),
        "42",
        r#""x""#,
        "null",
        "[]",
        &batch(ping, 257),
        &batch(ping, 256),
        &batch(unknown_get, 256),
        &format!(r#"{{"id":1,{p}}}"#),
        &format!(r#"{{"jsonrpc":"1.0","id":"a",{p}}}"#),
        &format!(r#"{{"jsonrpc":2.0,"id":2,{p}}}"#),
        r#"{"jsonrpc":"2.0","id":3}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":5}"#,
        r#"{"jsonrpc":"2.0","id":"m","method":null}"#,
        &format!(r#"{{"jsonrpc":"2.0","id":{{}},{p}}}"#),
        &format!(r#"{{"jsonrpc":"2.0","id":[1],{p}}}"#),
        &format!(r#"{{"jsonrpc":"2.0","id":true,{p}}}"#),
        r#"{"jsonrpc":"2.0","method":7}"#,
        &format!(r#"{{"jsonrpc":"2.0","id":5,{p},"params":"x"}}"#),
        &format!(r#"{{"jsonrpc":"2.0","id":6,{p},"params":6}}"#),
    ]
    .iter()
    .map(|b| b.as_bytes().to_vec())
    .collect();
    bodies.push(b"\xff\xfe{}".to_vec());
    let calls = [
        ("no.such", json!({})),
        ("INSTANCE.PING", json!({})),
        ("no.such", json!([1])),
        ("instance.ping", json!([1, 2])),
        ("session.list", json!([])),
        ("session.get", json!({"session_id": 5})),
        ("session.get", json!({})),
        ("message.list", Value::Null),
        ("message.send", json!({"content": " "})),
        ("message.send", json!({"content": ["a"]})),
        ("session.create", json!({"title": true})),
    ];
    let unknown = uuid::Uuid::now_v7().to_string();
    let methods = [
        "session.get",
        "session.delete",
        "session.activate",
        "session.interrupt",
        "message.list",
        "message.send",
    ];
    let unknown_sessions = methods.iter().flat_map(|method| {
        [unknown.as_str(), "not-a-session", ""]
            .map(|sid| (*method, json!({"session_id": sid, "content": "hi"})))
    });
    for (method, params) in calls.into_iter().chain(unknown_sessions) {
        let body = json!({"jsonrpc": "2.0", "id": method, "method": method, "params": params});
        bodies.push(body.to_string().into_bytes());
    }
    bodies.push(
        json!([
            {"jsonrpc": "2.0", "id": 1, "method": "instance.ping"},
            42,
            {"jsonrpc": "2.0", "method": "instance.ping"},
            {"jsonrpc": "2.0", "id": "x", "method": "no.such"},
            {"jsonrpc": "1.0", "id": 3, "method": "instance.ping"},
            {"jsonrpc": "2.0", "id": 4, "method": "session.get", "params": {"session_id": 5}},
        ])
        .to_string()
        .into_bytes(),
    );
    bodies.extend([LIMIT + 1, 2 * LIMIT].map(padded_ping));
    let mut rows: Vec<Row> = bodies
        .into_iter()
        .map(|body| Row {
            frames: vec![body],
            answered: true,
        })
        .collect();

    let notifications = [
        json!({"jsonrpc": "2.0", "method": "no.such"}),
        json!({"jsonrpc": "2.0", "method": "session.get", "params": {"session_id": 5}}),
        json!({"jsonrpc": "2.0", "method": "session.get", "params": {"session_id": unknown}}),
        json!({"jsonrpc": "2.0", "method": "instance.ping"}),
        json!([
            {"jsonrpc": "2.0", "method": "instance.ping"},
            {"jsonrpc": "2.0", "method": "session.list", "params": [1]}
        ]),
    ];
    rows.extend(notifications.iter().map(|n| Row {
        frames: vec![n.to_string().into_bytes()],
        answered: false,
    }));

    let ping = ping.as_bytes();
    let shapes: [&[&[u8]]; 7] = [
        &[b"a", b"b"],
        &[b"a", b"b", b"c"],
        &[b"", ping, b"extra"],
        &[b"", b"", b""],
        &[b"x", b"", ping],
        &[&b"f"[..]; 10],
        &[b"", b""],
    ];
    rows.extend(shapes.iter().map(|frames| Row {
        frames: frames.iter().map(|f| f.to_vec()).collect(),
        answered: true,
    }));
    rows
}

/// A valid ping padded with trailing whitespace to `len` bytes.
fn padded_ping(len: usize) -> Vec<u8> {
    let mut body = br#"{"jsonrpc":"2.0","id":9,"method":"instance.ping"}"#.to_vec();
    body.resize(len, b' ');
    body
}

// ---------------------------------------------------------------------------------------------
// Raw TCP
// ---------------------------------------------------------------------------------------------

fn tcp(port: u16) -> Option<TcpStream> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let s = TcpStream::connect_timeout(&addr, STEP).ok()?;
    s.set_read_timeout(Some(STEP)).ok()?;
    s.set_write_timeout(Some(STEP)).ok()?;
    Some(s)
}

/// A correct handshake as `socket_type`, then a frame header claiming 1 TiB (long-frame flag,
/// 8-byte length). True when the server then closed the connection within `STEP`.
fn huge_frame(port: u16, socket_type: &str) -> bool {
    let Some(mut s) = tcp(port) else {
        return false;
    };
    let mut server_greeting = [0u8; 64];
    let handshake = s
        .write_all(&zmtp3_greeting())
        .and_then(|_| s.write_all(&zmtp3_ready(socket_type)))
        .and_then(|_| s.read_exact(&mut server_greeting));
    let mut header = vec![0x02];
    header.extend((1u64 << 40).to_be_bytes());
    if handshake.and_then(|_| s.write_all(&header)).is_err() {
        return false;
    }
    let deadline = Instant::now() + STEP;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return false,
        }
    }
    false
}
