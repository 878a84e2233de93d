//! Integration-test helpers: a real daemon on real tcp endpoints (`spawn_daemon`), clients
//! (`client`, `subscriber`) and waits that always end in a timeout, never a fixed sleep.
#![allow(dead_code)]

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::oneshot;

use zcoord::app;
use zcoord::client::{ReceivedEvent, RpcClient, Subscriber};
use zcoord::config::{Config, ModelConfig};

/// Upper bound for any single wait in a test.
pub const WAIT: Duration = Duration::from_secs(10);

/// A daemon running in this process on its own runtime and thread.
pub struct Daemon {
    pub rpc: String,
    pub pub_: String,
    pub instance_id: String,
    pub ctx: zmq::Context,
    shutdown: Option<oneshot::Sender<String>>,
    thread: Option<JoinHandle<()>>,
}

/// Test defaults: tcp on loopback with kernel-chosen ports, a 50 ms heartbeat, 1 ms per token.
pub fn test_config() -> Config {
    let mut c = Config::default();
    c.transport.rpc_endpoint = "tcp://127.0.0.1:0".into();
    c.transport.pub_endpoint = "tcp://127.0.0.1:0".into();
    c.heartbeat_interval = Duration::from_millis(50);
    c.model = ModelConfig::Echo {
        token_delay: Duration::from_millis(1),
    };
    c
}

pub fn spawn_daemon() -> Daemon {
    spawn_daemon_with(|_| {})
}

pub fn spawn_daemon_with(tweak: impl FnOnce(&mut Config)) -> Daemon {
    let mut config = test_config();
    tweak(&mut config);
    let server = app::start(config).expect("daemon binds");
    let ready = server.ready().clone();
    let (tx, rx) = oneshot::channel::<String>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(server.run(async move { rx.await.unwrap_or_else(|_| "test ended".into()) }));
    });
    Daemon {
        rpc: ready.rpc_endpoint,
        pub_: ready.pub_endpoint,
        instance_id: ready.instance_id.to_string(),
        ctx: zmq::Context::new(),
        shutdown: Some(tx),
        thread: Some(thread),
    }
}

impl Daemon {
    pub fn client(&self) -> RpcClient {
        RpcClient::connect(&self.ctx, &self.rpc, WAIT).expect("connect dealer")
    }

    /// A raw socket of any type connected to the ROUTER.
    pub fn raw(&self, kind: zmq::SocketType) -> zmq::Socket {
        let s = self.ctx.socket(kind).unwrap();
        s.set_linger(0).unwrap();
        s.set_rcvtimeo(WAIT.as_millis() as i32).unwrap();
        s.set_sndtimeo(WAIT.as_millis() as i32).unwrap();
        s.connect(&self.rpc).unwrap();
        s
    }

    /// A subscriber whose subscriptions are known to be live when this returns.
    pub fn subscriber(&self, prefixes: &[&str]) -> Events {
        live_subscriber(&self.ctx, &self.pub_, prefixes)
    }

    pub fn call(&self, method: &str, params: Value) -> Value {
        self.client()
            .call(method, params)
            .unwrap_or_else(|e| panic!("{method} failed: {e}"))
    }

    /// Asks the daemon to shut down and waits for it to finish.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send("test shutdown".into());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("daemon thread");
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Subscribes to `prefixes` and waits for the welcome it asks for after them: then every later
/// event matching them arrives (no sleeping on the slow joiner).
pub fn live_subscriber(ctx: &zmq::Context, endpoint: &str, prefixes: &[&str]) -> Events {
    let (sub, _) = Subscriber::connect_live(ctx, endpoint, prefixes, WAIT)
        .expect("subscription never went live (no instance.welcome)");
    let keep_heartbeats = prefixes.iter().any(|p| "instance.heartbeat".starts_with(p));
    Events {
        sub,
        skip_heartbeats: !keep_heartbeats,
    }
}

/// A live subscription with waiting helpers.
pub struct Events {
    pub sub: Subscriber,
    skip_heartbeats: bool,
}

impl Events {
    /// The next event (heartbeats skipped unless subscribed to; `recv` skips welcomes), or panic after
    /// `WAIT`.
    pub fn next(&self) -> ReceivedEvent {
        self.try_next(WAIT).expect("no event within the wait limit")
    }

    pub fn try_next(&self, timeout: Duration) -> Option<ReceivedEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let ev = self.sub.recv(left).expect("recv")?;
            let topic = ev.envelope.topic.as_str();
            if self.skip_heartbeats && topic == "instance.heartbeat" {
                continue;
            }
            return Some(ev);
        }
    }

    /// Collects events up to and including the first one for which `stop` is true; panics if
    /// that takes longer than `WAIT` in all (a stream of other events must not keep it waiting).
    pub fn until(&self, stop: impl Fn(&ReceivedEvent) -> bool) -> Vec<ReceivedEvent> {
        let deadline = Instant::now() + WAIT;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self.try_next(left).unwrap_or_else(|| {
                let seen: Vec<&str> = out
                    .iter()
                    .map(|e: &ReceivedEvent| e.envelope.topic.as_str())
                    .collect();
                panic!("the awaited event never came; saw {seen:?}")
            });
            let done = stop(&ev);
            out.push(ev);
            if done {
                return out;
            }
        }
    }

    /// Waits for the next `topic` event and returns its payload.
    pub fn payload(&self, topic: &str) -> Value {
        self.until(|e| e.envelope.topic == topic)
            .pop()
            .expect("until returns the event it stopped at")
            .envelope
            .payload
    }

    /// Collects events up to and including `topic` for `turn_id`.
    pub fn until_turn(&self, topic: &str, turn_id: &str) -> Vec<ReceivedEvent> {
        self.until(|e| e.envelope.topic == topic && e.envelope.payload["turn_id"] == turn_id)
    }
}

/// The error reply `method` got, as JSON; panics when it was answered.
pub fn refused(client: &mut RpcClient, method: &str, params: Value) -> Value {
    match client.call(method, params) {
        Err(zcoord::client::ClientError::Rpc(e)) => serde_json::to_value(e).unwrap(),
        other => panic!("{method} should have been refused, got {other:?}"),
    }
}

/// `message.send` and its result.
pub fn send(d: &Daemon, session_id: Option<&str>, content: &str) -> Value {
    let mut params = json!({"content": content});
    if let Some(s) = session_id {
        params["session_id"] = json!(s);
    }
    d.call("message.send", params)
}

/// The topics of `events`, in order.
pub fn topics(events: &[ReceivedEvent]) -> Vec<String> {
    events.iter().map(|e| e.envelope.topic.clone()).collect()
}

/// The discovery file `child` (a `zcoord serve` of `data_dir`) wrote, once it has: a stale one
/// from a dead server may be there first, so the file must name this process.
pub fn discovery_of(data_dir: &std::path::Path, child: &std::process::Child) -> Value {
    let disc = data_dir.join("instance.json");
    eventually("discovery file", || {
        std::fs::read(&disc)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .filter(|d| d["pid"] == child.id())
    })
}

/// A SUB subscribed to everything that never reads, with the smallest queues it can have, so
/// the server's queue for it fills at once.
pub fn stalled_subscriber(ctx: &zmq::Context, endpoint: &str) -> zmq::Socket {
    let s = ctx.socket(zmq::SUB).unwrap();
    s.set_linger(0).unwrap();
    s.set_rcvhwm(1).unwrap();
    s.set_rcvbuf(4 << 10).unwrap();
    s.set_subscribe(b"").unwrap();
    s.connect(endpoint).unwrap();
    s
}

/// A `zcoord serve` started from `cmd` for `data_dir`, its stderr (its log) in a file beside the
/// data directory, its discovery file read; killed when dropped.
pub struct Spawned {
    pub child: std::process::Child,
    pub log: std::path::PathBuf,
    pub discovery: Value,
}

impl Spawned {
    pub fn start(mut cmd: std::process::Command, data_dir: &std::path::Path) -> Spawned {
        let log = data_dir.with_extension("log");
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let discovery = discovery_of(data_dir, &child);
        Spawned {
            child,
            log,
            discovery,
        }
    }

    pub fn endpoint(&self, which: &str) -> String {
        self.discovery["endpoints"][which]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `mirror` has announced its first sync.
pub fn synced(mirror: &zcoord::mirror::Mirror) {
    eventually("the first sync", || {
        mirror
            .changes()
            .try_iter()
            .any(|c| matches!(c, zcoord::mirror::Change::Synced { .. }))
            .then_some(())
    });
}

/// Starts `zcoord serve` with the SQLite store in `dir` on its default ipc endpoints (no secret
/// needed: the 0700 socket directory is the access control); returns the child and its rpc and
/// pub endpoints once it is serving.
pub fn serve_sqlite(
    dir: &std::path::Path,
    extra: &[&str],
) -> (std::process::Child, String, String) {
    use std::process::{Command, Stdio};
    let child = Command::new(env!("CARGO_BIN_EXE_zcoord"))
        .arg("--data-dir")
        .arg(dir)
        .args(["serve", "--store", "sqlite", "--heartbeat-interval", "0.05"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let d = discovery_of(dir, &child);
    let rpc = d["endpoints"]["rpc"].as_str().unwrap().to_owned();
    let pub_ = d["endpoints"]["pub"].as_str().unwrap().to_owned();
    (child, rpc, pub_)
}

/// `kill -9`s a server started by [`serve_sqlite`], starts another on the same data directory,
/// and connects a client to it.
pub fn crash_and_restart(
    mut child: std::process::Child,
    dir: &std::path::Path,
    ctx: &zmq::Context,
) -> (std::process::Child, RpcClient) {
    child.kill().unwrap();
    child.wait().unwrap();
    let (child, rpc, _) = serve_sqlite(dir, &[]);
    let client = RpcClient::connect(ctx, &rpc, WAIT).unwrap();
    (child, client)
}

/// Polls `check` until it returns `Some`, or panics after `WAIT`.
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The next message on a raw socket, or `None` if nothing arrives within `timeout`.
pub fn recv_within(sock: &zmq::Socket, timeout: Duration) -> Option<Vec<Vec<u8>>> {
    let mut items = [sock.as_poll_item(zmq::POLLIN)];
    let ready = zmq::poll(&mut items, timeout.as_millis() as i64).expect("poll");
    (ready > 0).then(|| sock.recv_multipart(0).expect("recv"))
}

/// What a replica and the primary must agree on: sessions (title, count, status), the active
/// session, and every session's messages (id, role, content, status).
pub type View = (
    std::collections::BTreeMap<String, (String, u64, String)>,
    Option<String>,
    std::collections::BTreeMap<String, Vec<(String, String, String, String)>>,
);

pub fn view_of_replica(r: &zcoord::mirror::Replica) -> View {
    let sessions = r
        .sessions
        .values()
        .map(|s| {
            let v = serde_json::to_value(s).unwrap();
            (
                s.id.to_string(),
                (
                    s.title.clone(),
                    s.message_count,
                    v["status"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    let none = Vec::new();
    let messages = r
        .sessions
        .keys()
        .map(|id| (id, r.messages.get(id).unwrap_or(&none)))
        .map(|(id, msgs)| {
            let list = msgs
                .iter()
                .map(|m| {
                    let v = serde_json::to_value(m).unwrap();
                    (
                        m.id.to_string(),
                        v["role"].as_str().unwrap().to_owned(),
                        m.content.clone(),
                        v["status"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            (id.to_string(), list)
        })
        .collect();
    (sessions, r.active.map(|a| a.to_string()), messages)
}

pub fn view_of_primary(rpc: &mut RpcClient) -> View {
    let sync = rpc.call("state.sync", json!({})).unwrap();
    let mut sessions = std::collections::BTreeMap::new();
    let mut messages = std::collections::BTreeMap::new();
    for s in sync["sessions"].as_array().unwrap() {
        let id = s["id"].as_str().unwrap().to_owned();
        sessions.insert(
            id.clone(),
            (
                s["title"].as_str().unwrap().to_owned(),
                s["message_count"].as_u64().unwrap(),
                s["status"].as_str().unwrap().to_owned(),
            ),
        );
        let list = rpc
            .call("message.list", json!({"session_id": id, "limit": 1000}))
            .unwrap();
        let msgs = list["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap().to_owned(),
                    m["role"].as_str().unwrap().to_owned(),
                    m["content"].as_str().unwrap().to_owned(),
                    m["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        messages.insert(id, msgs);
    }
    let active = sync["active_session_id"].as_str().map(str::to_owned);
    (sessions, active, messages)
}

// ---------------------------------------------------------------------------------------------
// Raw ZMTP, for peers that break the protocol on purpose
// ---------------------------------------------------------------------------------------------

/// The port of a `tcp://host:port` endpoint.
pub fn port_of(endpoint: &str) -> u16 {
    let port = endpoint.rsplit(':').next().expect("a tcp endpoint");
    port.parse()
        .unwrap_or_else(|e| panic!("port of {endpoint}: {e}"))
}

/// Deterministic pseudo-random bytes (xorshift), so a failure can be replayed.
pub fn garbage(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A ZMTP 3.0 greeting offering the NULL mechanism as a client.
pub fn zmtp3_greeting() -> Vec<u8> {
    let mut g = vec![0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0];
    let mut mechanism = b"NULL".to_vec();
    mechanism.resize(20, 0);
    g.extend(mechanism);
    g.push(0); // as-server
    g.resize(64, 0); // filler
    g
}

/// The NULL mechanism's READY command announcing `socket_type`.
pub fn zmtp3_ready(socket_type: &str) -> Vec<u8> {
    let mut body = b"\x05READY".to_vec();
    body.push(11);
    body.extend(b"Socket-Type");
    body.extend((socket_type.len() as u32).to_be_bytes());
    body.extend(socket_type.as_bytes());
    let mut frame = vec![0x04, body.len() as u8];
    frame.extend(body);
    frame
}
