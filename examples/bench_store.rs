//! The durable-state benchmark, run in release mode: `cargo run --release --example bench_store`
//! (optionally `-- --sessions N --messages M --rounds R`, default 10,000 x 50 and 7 rounds).
//!
//! In one run, on 127.0.0.1, with the server started in-process:
//! 1. setup: fills a fresh SQLite database with N sessions x M messages (alternating user /
//!    assistant, 100-200 bytes each, one completed turn per pair) through `SqliteStore::commit`;
//! 2. start-up time of `app::start` on that database (open + load + restore + bind), 3 times;
//! 3. `state.sync`, `session.list` and `message.list` latency at that size, from one DEALER;
//! 4. token events per second, memory store beside SQLite store (fresh databases), sequential
//!    turns, 8 concurrent turns, and 8 concurrent turns long enough to be checkpointed while they
//!    stream; plus the same on the big database. The three servers run side by side and each
//!    phase runs on each in turn, so the pairs compared see the same machine load.
//!
//! Latencies are measured to the arrival of the whole reply at the client, which checks the
//! reply's head but does not parse it (the server's cost, not serde_json's on the client). The
//! token SUB likewise sorts events by their key frame and parses only `llm.end`, so it keeps up
//! and the rate is the server's.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use time::OffsetDateTime;
use zcoord::client::RpcClient;
use zcoord::config::{Config, ModelConfig, StoreConfig};
use zcoord::core::persist::{
    Change, MessageRecord, SessionRecord, StoredStatus, TurnEnd, TurnStatus,
};
use zcoord::protocol::ids::{MessageId, SessionId, TurnId};
use zcoord::protocol::types::Role;
use zcoord::store::memory::MemoryStore;
use zcoord::store::sqlite::SqliteStore;
use zcoord::store::Store;

/// Sessions per setup transaction.
const SETUP_SESSIONS_PER_COMMIT: usize = 50;
const START_RUNS: usize = 3;
const SYNC_CALLS: usize = 200;
const LIST_CALLS: usize = 1_000;
const TOKENS_PER_TURN: usize = 20_000;
const SEQ_TURNS: usize = 10;
const CONCURRENT: usize = 8;
/// Long enough that each of the concurrent long turns runs over a second: its reply is
/// checkpointed to the store while it streams.
const LONG_TOKENS_PER_TURN: usize = 100_000;
/// Token rounds by default (each: every phase on every server); the table shows medians.
const TOKEN_ROUNDS: usize = 7;
const TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    sessions: usize,
    messages: usize,
    rounds: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        sessions: 10_000,
        messages: 50,
        rounds: TOKEN_ROUNDS,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match a.as_str() {
            "--sessions" => args.sessions = value("--sessions").max(1),
            "--messages" => args.messages = value("--messages").max(1),
            "--rounds" => args.rounds = value("--rounds").max(1),
            "-h" | "--help" => {
                println!("bench_store [--sessions N] [--messages M] [--rounds R]");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other:?} (try --help)"),
        }
    }
    args
}

fn main() {
    let args = parse_args();
    let total = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("big.db");
    println!(
        "zcoord store benchmark: {} sessions x {} messages, release={}, {} cpus",
        args.sessions,
        args.messages,
        !cfg!(debug_assertions),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();

    // 1. Setup.
    let t = Instant::now();
    let ids = populate(&db, args.sessions, args.messages);
    let setup = t.elapsed();
    println!("== setup (not part of the measurements)");
    println!(
        "populate via SqliteStore::commit  {:>8.2} s   {} messages, {} changes in {} transactions",
        setup.as_secs_f64(),
        ids.messages,
        ids.changes,
        ids.commits
    );
    println!(
        "database file                     {:>8.1} MB  (+ wal {:.1} MB)",
        file_mb(&db),
        file_mb(&wal_path(&db))
    );
    let (c50, c99) = commit_latency(&dir.path().join("scratch.db"));
    println!(
        "one-change SQLite commit (what a gating change costs)  p50 {c50:.3} ms  p99 {c99:.3} ms"
    );
    println!();

    // 2. Start-up.
    println!("== start-up on that database (app::start = open + load + restore + bind)");
    let t = Instant::now();
    let mut store = SqliteStore::open(&db).expect("open");
    let opened = t.elapsed();
    let snapshot = store.load(10_000).expect("load");
    let loaded = t.elapsed();
    let counted: u64 = snapshot.sessions.iter().map(|s| s.message_count).sum();
    assert_eq!(snapshot.sessions.len(), args.sessions, "sessions loaded");
    assert_eq!(counted as usize, ids.messages, "messages counted");
    drop(snapshot);
    drop(store);
    println!(
        "store only: SqliteStore::open {:>7.1} ms, + Store::load {:>7.1} ms",
        ms(opened),
        ms(loaded)
    );
    let mut starts = Vec::new();
    let mut firsts = Vec::new();
    let mut server = None;
    for run in 0..START_RUNS {
        if let Some(s) = server.take() {
            stop(s);
        }
        let (s, start, first_ping) = start_server(StoreConfig::Sqlite(db.clone()));
        println!(
            "run {}: app::start {:>8.1} ms   start -> first ping answered {:>8.1} ms",
            run + 1,
            ms(start),
            ms(first_ping)
        );
        starts.push(ms(start));
        firsts.push(ms(first_ping));
        server = Some(s);
    }
    let (smin, smed) = min_median(&starts);
    let (fmin, fmed) = min_median(&firsts);
    println!(
        "app::start            min {smin:>8.1} ms  median {smed:>8.1} ms   (first ping: min {fmin:.1} ms  median {fmed:.1} ms)"
    );
    println!();

    // 3. Latency at that size.
    let big = server.expect("server");
    println!(
        "== call latency at {} sessions x {} messages (one DEALER, sequential)",
        args.sessions, args.messages
    );
    println!(
        "{:<34} {:>7} {:>10} {:>10} {:>10} {:>11}",
        "call", "calls", "calls/s", "p50 ms", "p99 ms", "reply bytes"
    );
    let ctx = zmq::Context::new();
    let mut raw = RawClient::connect(&ctx, &big.rpc);
    check_state_sync(&mut raw, args.sessions);
    let r = measure(&mut raw, SYNC_CALLS, |_| ("state.sync", json!({})));
    r.print("state.sync");
    let r = measure(&mut raw, SYNC_CALLS, |_| ("session.list", json!({})));
    r.print("session.list");
    let n = ids.sessions.len();
    let pick = |i: usize| ids.sessions[(i * 7_919 + 13) % n].to_string();
    let r = measure(&mut raw, LIST_CALLS, |i| {
        ("message.list", json!({"session_id": pick(i)}))
    });
    r.print(&format!("message.list (all {})", args.messages));
    let r = measure(&mut raw, LIST_CALLS, |i| {
        ("message.list", json!({"session_id": pick(i), "limit": 20}))
    });
    r.print("message.list limit 20");
    let r = measure(&mut raw, LIST_CALLS, |_| ("instance.ping", json!({})));
    r.print("instance.ping (for scale)");
    drop(raw);
    println!();

    // 4. Token throughput.
    println!(
        "== token events/s: echo model without delay, one SUB per server reading key frames; {} rounds",
        args.rounds
    );
    println!(
        "   seq: {SEQ_TURNS} turns x {TOKENS_PER_TURN} tokens one after another; x8: {CONCURRENT} turns at once x {TOKENS_PER_TURN} tokens;"
    );
    println!(
        "   long x8: {CONCURRENT} turns at once x {LONG_TOKENS_PER_TURN} tokens (each > 1 s: replies are checkpointed while streaming)."
    );
    println!(
        "   The servers run side by side; each phase runs on each in turn (order rotating), so a pair"
    );
    println!(
        "   sees the same machine. Values: medians over rounds; ratio: median of per-round ratios."
    );
    let mut targets = vec![
        Target::new(
            "memory",
            start_server(StoreConfig::Memory(MemoryStore::new())).0,
            None,
        ),
        Target::new(
            "sqlite",
            start_server(StoreConfig::Sqlite(dir.path().join("fresh.db"))).0,
            None,
        ),
        Target::new("sqlite big db*", big, Some(ids.sessions.clone())),
    ];
    let mut runs: Vec<Vec<TokenRun>> = vec![Vec::new(); targets.len()];
    for round in 0..args.rounds {
        let mut order: Vec<usize> = (0..targets.len()).collect();
        order.rotate_left(round % targets.len());
        let mut this: Vec<TokenRun> = targets.iter_mut().map(|t| t.begin_round()).collect();
        for phase in [Phase::Seq, Phase::X8, Phase::Long] {
            for &i in &order {
                targets[i].run(phase, &mut this[i]);
            }
        }
        for (i, mut r) in this.into_iter().enumerate() {
            targets[i].end_round(&mut r);
            runs[i].push(r);
        }
    }
    for t in targets {
        t.stop();
    }
    print_tokens(&runs, args.rounds);
    println!(
        "* the database of sections 1-3: each round's turns go to {} of its existing sessions",
        1 + 2 * CONCURRENT
    );
    println!();
    println!(
        "bench process peak RSS (VmHWM: server + client + setup, one process): {}",
        peak_rss()
    );
    println!("total bench time {:.1} s", total.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// Setup

struct Populated {
    sessions: Vec<SessionId>,
    messages: usize,
    changes: usize,
    commits: usize,
}

/// A small deterministic generator, so every run writes the same kind of text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "the", "session", "message", "could", "you", "please", "check", "why", "build", "fails",
    "after", "update", "config", "file", "error", "line", "function", "returns", "value", "test",
    "database", "query", "index", "slow", "when", "many", "rows", "sure", "here", "is", "a", "fix",
    "change", "this", "to", "that", "and", "run", "again", "should", "work", "now", "thanks",
    "also", "memory", "usage", "grows", "over", "time", "let", "me", "look", "into", "it", "cache",
    "timeout", "retry", "network", "client", "server", "zeromq", "socket",
];

fn sentence(rng: &mut Rng, prefix: &str) -> String {
    let target = 100 + rng.below(101);
    let mut s = String::from(prefix);
    while s.len() < target {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(WORDS[rng.below(WORDS.len())]);
    }
    s.truncate(200);
    s.push('.');
    s
}

fn populate(path: &Path, sessions: usize, messages: usize) -> Populated {
    let mut store = SqliteStore::open(path).expect("open a fresh database");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let now = OffsetDateTime::now_utc();
    // Sessions created a minute apart, ending now; messages 30 s apart within each.
    let base = now - time::Duration::minutes(sessions as i64 + 1);
    let mut ids = Vec::with_capacity(sessions);
    let mut batch: Vec<Change> = Vec::new();
    let (mut changes, mut commits, mut count) = (0, 0, 0);
    for i in 0..sessions {
        let id = SessionId(uuid::Uuid::now_v7());
        ids.push(id);
        let created = base + time::Duration::minutes(i as i64);
        let at = |k: usize| created + time::Duration::seconds(30 * k as i64);
        // The session row first, as the core writes it: a child row inserted before its parent
        // makes SQLite look for that parent's children when it arrives (deferred foreign keys),
        // and `turns` has no index on `session_id` to make that look-up cheap.
        batch.push(Change::SessionUpsert(SessionRecord {
            id,
            title: sentence(&mut rng, "").chars().take(40).collect(),
            created_at: created,
            updated_at: at(messages.saturating_sub(1)),
            model: None,
            system_prompt: None,
            usage: Default::default(),
        }));
        let mut turn: Option<TurnId> = None;
        for k in 0..messages {
            let role = if k % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            if role == Role::User {
                let t = TurnId(uuid::Uuid::now_v7());
                batch.push(Change::TurnStart {
                    id: t,
                    session_id: id,
                    started_at: at(k),
                });
                turn = Some(t);
            }
            let content = match role {
                Role::User => sentence(&mut rng, ""),
                Role::Assistant | Role::Tool => sentence(&mut rng, "echo:"),
            };
            batch.push(Change::MessageUpsert(MessageRecord {
                id: MessageId(uuid::Uuid::now_v7()),
                session_id: id,
                position: k as u64,
                turn_id: turn,
                role,
                content,
                created_at: at(k),
                status: StoredStatus::Complete,
                tool: None,
                author: None,
            }));
            count += 1;
            if role == Role::Assistant || k + 1 == messages {
                if let Some(t) = turn.take() {
                    batch.push(Change::TurnEnd(TurnEnd {
                        id: t,
                        status: TurnStatus::Completed,
                        reason: "completed".into(),
                        error: None,
                        ended_at: at(k),
                        tokens_in: 30,
                        tokens_out: 30,
                    }));
                }
            }
        }
        if i + 1 == sessions {
            batch.push(Change::ActiveSession(Some(id)));
        }
        if (i + 1) % SETUP_SESSIONS_PER_COMMIT == 0 || i + 1 == sessions {
            store.commit(&batch).expect("commit");
            changes += batch.len();
            commits += 1;
            batch.clear();
        }
    }
    Populated {
        sessions: ids,
        messages: count,
        changes,
        commits,
    }
}

/// Commits 200 single small changes one by one, as the writer does when nothing else is queued
/// (synchronous=FULL: each waits for the disk). Returns (p50, p99) in ms.
fn commit_latency(path: &Path) -> (f64, f64) {
    let mut store = SqliteStore::open(path).expect("open scratch database");
    let now = OffsetDateTime::now_utc();
    let mut lat = Vec::new();
    for i in 0..220 {
        let change = Change::SessionUpsert(SessionRecord {
            id: SessionId(uuid::Uuid::now_v7()),
            title: format!("scratch {i}"),
            created_at: now,
            updated_at: now,
            model: None,
            system_prompt: None,
            usage: Default::default(),
        });
        let t = Instant::now();
        store.commit(&[change]).expect("commit");
        if i >= 20 {
            lat.push(ms(t.elapsed()));
        }
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (pct(&lat, 0.5), pct(&lat, 0.99))
}

fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

fn file_mb(p: &Path) -> f64 {
    std::fs::metadata(p).map_or(0.0, |m| m.len() as f64 / 1e6)
}

// ---------------------------------------------------------------------------------------------
// Servers

struct Running {
    rpc: String,
    pub_: String,
    /// The store writer thread's id, to read its CPU time.
    writer_tid: Option<String>,
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

/// Starts a server; returns it, how long `app::start` took, and how long until the first
/// `instance.ping` was answered (start + runtime + first round trip).
fn start_server(store: StoreConfig) -> (Running, Duration, Duration) {
    let mut config = Config::default();
    config.transport.rpc_endpoint = "tcp://127.0.0.1:0".into();
    config.transport.pub_endpoint = "tcp://127.0.0.1:0".into();
    config.transport.pub_sndhwm = 1_000_000;
    config.model = ModelConfig::Echo {
        token_delay: Duration::ZERO,
    };
    // A SUB waits for a heartbeat to know its subscription is live.
    config.heartbeat_interval = Duration::from_millis(100);
    config.store = store;
    let writers = store_threads();
    let t = Instant::now();
    let server = zcoord::app::start(config).expect("start");
    let started = t.elapsed();

    let ready = server.ready().clone();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(server.run(async move {
            let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
            "bench done".to_owned()
        }));
    });
    let ctx = zmq::Context::new();
    let mut client = RpcClient::connect(&ctx, &ready.rpc_endpoint, TIMEOUT).unwrap();
    client.call("instance.ping", json!({})).expect("ping");
    let first_ping = t.elapsed();
    // The writer thread names itself once it runs: look for the new one a little while.
    let mut writer_tid = None;
    for _ in 0..100 {
        writer_tid = store_threads().into_iter().find(|t| !writers.contains(t));
        if writer_tid.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (
        Running {
            rpc: ready.rpc_endpoint,
            pub_: ready.pub_endpoint,
            writer_tid,
            stop: stop_tx,
            thread,
        },
        started,
        first_ping,
    )
}

/// Stops the server and waits until it has closed its store and sockets.
fn stop(s: Running) {
    let _ = s.stop.send(());
    s.thread.join().expect("server thread");
}

// ---------------------------------------------------------------------------------------------
// Call latency

/// A DEALER that sends JSON-RPC requests and takes replies as bytes, checking only their head.
struct RawClient {
    sock: zmq::Socket,
    next_id: u64,
}

impl RawClient {
    fn connect(ctx: &zmq::Context, endpoint: &str) -> Self {
        let sock = ctx.socket(zmq::DEALER).unwrap();
        sock.set_linger(0).unwrap();
        sock.set_rcvtimeo(TIMEOUT.as_millis() as i32).unwrap();
        sock.connect(endpoint).unwrap();
        RawClient { sock, next_id: 1 }
    }

    fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.sock
            .send(serde_json::to_vec(&req).unwrap(), 0)
            .expect("send");
        id
    }

    /// One reply body; panics on an error reply or a reply to another request.
    fn recv(&mut self, id: u64) -> Vec<u8> {
        let mut frames = self.sock.recv_multipart(0).expect("reply (timed out?)");
        let body = frames.pop().expect("a frame");
        let head = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        let want = format!("\"id\":{id},\"result\"");
        assert!(head.contains(&want), "unexpected reply to {id}: {head}");
        body
    }

    fn call(&mut self, method: &str, params: Value) -> Vec<u8> {
        let id = self.send(method, params);
        self.recv(id)
    }
}

struct Latency {
    calls: usize,
    rate: f64,
    p50: f64,
    p99: f64,
    bytes: usize,
}

impl Latency {
    fn print(&self, label: &str) {
        println!(
            "{:<34} {:>7} {:>10.0} {:>10.3} {:>10.3} {:>11}",
            label, self.calls, self.rate, self.p50, self.p99, self.bytes
        );
    }
}

fn measure(
    client: &mut RawClient,
    n: usize,
    req: impl Fn(usize) -> (&'static str, Value),
) -> Latency {
    // Warm-up, untimed.
    for i in 0..(n / 10).max(5) {
        let (m, p) = req(i + n);
        client.call(m, p);
    }
    let mut lat = Vec::with_capacity(n);
    let mut bytes = 0;
    let start = Instant::now();
    for i in 0..n {
        let (m, p) = req(i);
        let t = Instant::now();
        bytes = client.call(m, p).len();
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let total = start.elapsed();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Latency {
        calls: n,
        rate: n as f64 / total.as_secs_f64(),
        p50: pct(&lat, 0.50),
        p99: pct(&lat, 0.99),
        bytes,
    }
}

/// Parses one `state.sync` reply fully: every session is there.
fn check_state_sync(client: &mut RawClient, sessions: usize) {
    let body = client.call("state.sync", json!({}));
    let v: Value = serde_json::from_slice(&body).expect("json");
    let got = v["result"]["sessions"].as_array().map_or(0, |a| a.len());
    assert_eq!(got, sessions, "state.sync lists every session");
}

// ---------------------------------------------------------------------------------------------
// Token throughput

#[derive(Clone, Copy, Default)]
struct TokenRun {
    seq_rate: f64,
    x8_rate: f64,
    long_rate: f64,
    first_p50: f64,
    send_p50: f64,
    seq_turn_p50: f64,
    long_turn_p50: f64,
    /// CPU time of the store's writer thread during the round.
    writer_cpu: f64,
    tokens: u64,
    expected: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Seq,
    X8,
    Long,
}

#[derive(PartialEq)]
enum Topic {
    Token,
    End,
    Other,
}

/// A SUB that sorts events by their key frame and parses only `llm.end` bodies, so it keeps up
/// with the server and the rate measured is the server's.
struct EventSub {
    sock: zmq::Socket,
}

impl EventSub {
    fn connect(ctx: &zmq::Context, endpoint: &str) -> Self {
        let sock = ctx.socket(zmq::SUB).unwrap();
        sock.set_linger(0).unwrap();
        sock.set_rcvhwm(2_000_000).unwrap();
        sock.set_rcvtimeo(TIMEOUT.as_millis() as i32).unwrap();
        // The welcome asked for last (PROTOCOL §8) says the others are live.
        for t in [
            "llm.token/",
            "llm.end/",
            "instance.heartbeat",
            "instance.welcome/bench-store",
        ] {
            sock.set_subscribe(t.as_bytes()).unwrap();
        }
        sock.connect(endpoint).unwrap();
        let sub = EventSub { sock };
        // Live once the welcome (or a heartbeat, which proves it as well) arrives.
        while sub.next("a heartbeat").0 != Topic::Other {}
        sub
    }

    /// The next event (heartbeats only while waiting for one), and when it arrived.
    fn next(&self, what: &str) -> (Topic, Instant) {
        loop {
            let frames = self
                .sock
                .recv_multipart(0)
                .unwrap_or_else(|e| panic!("no event ({e}) waiting for {what}"));
            let at = Instant::now();
            let [key, body] = frames.as_slice() else {
                panic!("event with {} frames", frames.len());
            };
            if key.starts_with(b"llm.token/") {
                return (Topic::Token, at);
            }
            if key.starts_with(b"llm.end/") {
                let v: Value = serde_json::from_slice(body).expect("llm.end json");
                let reason = &v["payload"]["reason"];
                assert_eq!(reason, "completed", "turn did not complete: {v}");
                return (Topic::End, at);
            }
            if what == "a heartbeat" {
                return (Topic::Other, at);
            }
        }
    }

    /// Drops whatever is queued (heartbeats).
    fn drain(&self) {
        while self.sock.recv_multipart(zmq::DONTWAIT).is_ok() {}
    }
}

/// One server under test with its SUB and DEALER.
struct Target {
    name: &'static str,
    server: Running,
    sub: EventSub,
    client: RawClient,
    /// Existing sessions to stream into (the big database); else fresh ones are created.
    existing: Option<Vec<SessionId>>,
    next_existing: usize,
    seq_content: String,
    long_content: String,
    writer_cpu0: f64,
}

impl Target {
    fn new(name: &'static str, server: Running, existing: Option<Vec<SessionId>>) -> Target {
        let ctx = zmq::Context::new();
        let sub = EventSub::connect(&ctx, &server.pub_);
        let client = RawClient::connect(&ctx, &server.rpc);
        let mut t = Target {
            name,
            server,
            sub,
            client,
            existing,
            next_existing: 0,
            seq_content: "w ".repeat(TOKENS_PER_TURN - 1),
            long_content: "w ".repeat(LONG_TOKENS_PER_TURN - 1),
            writer_cpu0: 0.0,
        };
        // Warm-up: one short turn.
        let s = t.sessions(1);
        t.client.call(
            "message.send",
            json!({"session_id": s[0], "content": "w ".repeat(999)}),
        );
        while t.sub.next("warm-up llm.end").0 != Topic::End {}
        t
    }

    /// `n` sessions no turn of this benchmark has used yet.
    fn sessions(&mut self, n: usize) -> Vec<String> {
        match &self.existing {
            Some(all) => (0..n)
                .map(|_| {
                    self.next_existing += 1;
                    all[(self.next_existing * 7_919 + 1_000) % all.len()].to_string()
                })
                .collect(),
            None => (0..n)
                .map(|i| {
                    let body = self
                        .client
                        .call("session.create", json!({"title": format!("bench {i}")}));
                    let v: Value = serde_json::from_slice(&body).expect("json");
                    v["result"]["id"].as_str().expect("id").to_owned()
                })
                .collect(),
        }
    }

    fn begin_round(&mut self) -> TokenRun {
        self.writer_cpu0 = self.server.writer_tid.as_deref().map_or(0.0, thread_cpu_ms);
        TokenRun::default()
    }

    fn end_round(&mut self, r: &mut TokenRun) {
        r.writer_cpu =
            self.server.writer_tid.as_deref().map_or(0.0, thread_cpu_ms) - self.writer_cpu0;
    }

    fn run(&mut self, phase: Phase, r: &mut TokenRun) {
        self.sub.drain();
        match phase {
            Phase::Seq => {
                let session = self.sessions(1).remove(0);
                let mut tokens = 0u64;
                let (mut firsts, mut sends, mut turns) = (Vec::new(), Vec::new(), Vec::new());
                let start = Instant::now();
                for _ in 0..SEQ_TURNS {
                    let t0 = Instant::now();
                    self.client.call(
                        "message.send",
                        json!({"session_id": session, "content": self.seq_content}),
                    );
                    sends.push(ms(t0.elapsed()));
                    let mut first = None;
                    loop {
                        match self.sub.next("llm.token / llm.end") {
                            (Topic::Token, at) => {
                                tokens += 1;
                                first.get_or_insert(at);
                            }
                            (Topic::End, at) => {
                                firsts.push(ms(first.unwrap_or(at) - t0));
                                turns.push(ms(at - t0));
                                break;
                            }
                            (Topic::Other, _) => {}
                        }
                    }
                }
                r.seq_rate = tokens as f64 / start.elapsed().as_secs_f64();
                r.first_p50 = median(firsts);
                r.send_p50 = median(sends);
                r.seq_turn_p50 = median(turns);
                r.tokens += tokens;
                r.expected += (SEQ_TURNS * TOKENS_PER_TURN) as u64;
            }
            Phase::X8 | Phase::Long => {
                let (per_turn, content) = if phase == Phase::X8 {
                    (TOKENS_PER_TURN, std::mem::take(&mut self.seq_content))
                } else {
                    (LONG_TOKENS_PER_TURN, std::mem::take(&mut self.long_content))
                };
                let sessions = self.sessions(CONCURRENT);
                let (tokens, rate, walls) = self.concurrent(&sessions, &content);
                if phase == Phase::X8 {
                    r.x8_rate = rate;
                    self.seq_content = content;
                } else {
                    r.long_rate = rate;
                    r.long_turn_p50 = median(walls);
                    self.long_content = content;
                }
                r.tokens += tokens;
                r.expected += (CONCURRENT * per_turn) as u64;
            }
        }
    }

    /// Runs one turn in each of `sessions` at once: every send goes out before any reply is
    /// read. Returns the tokens received, the rate, and each turn's wall time (ms, to its end).
    fn concurrent(&mut self, sessions: &[String], content: &str) -> (u64, f64, Vec<f64>) {
        let mut tokens = 0u64;
        let mut walls = Vec::new();
        let start = Instant::now();
        let sent: Vec<u64> = sessions
            .iter()
            .map(|s| {
                self.client
                    .send("message.send", json!({"session_id": s, "content": content}))
            })
            .collect();
        while walls.len() < sessions.len() {
            match self.sub.next("concurrent llm.token / llm.end") {
                (Topic::Token, _) => tokens += 1,
                (Topic::End, at) => walls.push(ms(at - start)),
                (Topic::Other, _) => {}
            }
        }
        let rate = tokens as f64 / start.elapsed().as_secs_f64();
        for id in sent {
            self.client.recv(id);
        }
        (tokens, rate, walls)
    }

    /// The server's drop counters, summed.
    fn drops(&mut self) -> u64 {
        let info: Value =
            serde_json::from_slice(&self.client.call("instance.info", json!({}))).expect("json");
        info["result"]["drops"]
            .as_object()
            .map_or(0, |d| d.values().filter_map(|v| v.as_u64()).sum())
    }

    fn stop(mut self) {
        let drops = self.drops();
        if drops > 0 {
            println!("!! {}: server drop counters sum to {drops}", self.name);
        }
        let Target {
            server,
            sub,
            client,
            ..
        } = self;
        drop(sub);
        drop(client);
        stop(server);
    }
}

fn print_tokens(runs: &[Vec<TokenRun>], rounds: usize) {
    let names = ["memory", "sqlite", "sqlite big db*"];
    println!(
        "{:<34} {:>11} {:>11} {:>14} {:>15}",
        "", names[0], names[1], "sqlite/memory", names[2]
    );
    let col = |i: usize, f: fn(&TokenRun) -> f64| median(runs[i].iter().map(f).collect());
    let ratio = |f: fn(&TokenRun) -> f64| {
        let v: Vec<f64> = runs[0]
            .iter()
            .zip(&runs[1])
            .filter(|(m, _)| f(m) > 0.0)
            .map(|(m, s)| f(s) / f(m))
            .collect();
        if v.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.2}", median(v))
        }
    };
    let row = |label: &str, f: fn(&TokenRun) -> f64, digits: usize| {
        println!(
            "{:<34} {:>11.*} {:>11.*} {:>14} {:>15.*}",
            label,
            digits,
            col(0, f),
            digits,
            col(1, f),
            ratio(f),
            digits,
            col(2, f)
        );
    };
    row("seq tokens/s", |r| r.seq_rate, 0);
    row("x8 tokens/s", |r| r.x8_rate, 0);
    row("long x8 tokens/s", |r| r.long_rate, 0);
    row("seq: send -> first token p50 (ms)", |r| r.first_p50, 2);
    row("seq: message.send reply p50 (ms)", |r| r.send_p50, 2);
    row("seq: turn wall time p50 (ms)", |r| r.seq_turn_p50, 1);
    row("long: turn wall time p50 (ms)", |r| r.long_turn_p50, 0);
    let cpu = |i: usize| runs[i].iter().map(|r| r.writer_cpu).sum::<f64>();
    println!(
        "{:<34} {:>11.1} {:>11.1} {:>14} {:>15.1}",
        "store writer thread CPU, all (ms)",
        cpu(0),
        cpu(1),
        "-",
        cpu(2)
    );
    for (label, f) in [
        ("seq", (|r: &TokenRun| r.seq_rate) as fn(&TokenRun) -> f64),
        ("x8", |r| r.x8_rate),
        ("long", |r| r.long_rate),
    ] {
        let per: Vec<String> = (0..rounds)
            .map(|k| {
                let v: Vec<String> = (0..runs.len())
                    .map(|i| format!("{:.0}k", f(&runs[i][k]) / 1e3))
                    .collect();
                v.join("/")
            })
            .collect();
        println!(
            "rounds {label:<4} tokens/s (memory/sqlite/big): {}",
            per.join("  ")
        );
    }
    let (got, want): (u64, u64) = runs
        .iter()
        .flatten()
        .fold((0, 0), |(g, w), r| (g + r.tokens, w + r.expected));
    println!(
        "token events received {got} of {want} ({} lost)",
        want.saturating_sub(got)
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `sorted` must be sorted.
fn pct(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn min_median(v: &[f64]) -> (f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2])
}

/// Ids of this process's store writer threads.
fn store_threads() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end() == "zcoord-store")
        })
        .map(|t| t.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Time thread `tid` of this process has spent on a CPU, in ms (from schedstat, in ns).
fn thread_cpu_ms(tid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e6)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l["VmHWM:".len()..].trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}
