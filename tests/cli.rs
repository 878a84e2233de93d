//! The `zcoord` binary as users run it: `serve` with the discovery file, the client subcommands and
//! their exit codes, SIGTERM shutdown, refusing a second server, and bounded memory with a
//! subscriber that never reads.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{eventually, live_subscriber, recv_within, WAIT};
use serde_json::{json, Value};
use zcoord::client::RpcClient;

const BIN: &str = env!("CARGO_BIN_EXE_zcoord");

/// A `zcoord serve` process, killed if the test ends early.
struct Served {
    child: Option<Child>,
    data_dir: PathBuf,
    rpc: String,
    pub_: String,
    /// The PLAIN secret from the discovery file (tcp endpoints only).
    secret: Option<String>,
}

impl Served {
    fn start(data_dir: &Path, extra: &[&str]) -> Served {
        let child = Command::new(BIN)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("serve")
            .args(["--heartbeat-interval", "0.05"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn zcoord serve");
        let d = common::discovery_of(data_dir, &child);
        Served {
            child: Some(child),
            data_dir: data_dir.to_owned(),
            rpc: d["endpoints"]["rpc"].as_str().unwrap().to_owned(),
            pub_: d["endpoints"]["pub"].as_str().unwrap().to_owned(),
            secret: d["secret"].as_str().map(str::to_owned),
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Runs a client subcommand against this server's data directory.
    fn cli(&self, args: &[&str]) -> Output {
        zcoord(&self.data_dir, args)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Waits for the process to exit and returns its exit code.
    fn wait(mut self) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        eventually("server exit", || child.try_wait().unwrap()).code()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn zcoord(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("ZCOORD_RPC")
        .env_remove("ZCOORD_PUB")
        .output()
        .expect("run zcoord")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn serve_writes_a_private_discovery_file_and_the_client_commands_use_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    assert!(
        s.rpc.starts_with("ipc://") && s.pub_.starts_with("ipc://"),
        "ipc by default"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("instance.json")), 0o600);
        assert_eq!(mode(&dir.path().join("run")), 0o700);
    }

    let ping = s.cli(&["ping"]);
    assert_eq!(ping.status.code(), Some(0), "{}", stderr(&ping));
    assert!(stdout(&ping).starts_with("ok instance="));

    let sent = s.cli(&["send", "hello from the cli"]);
    assert_eq!(sent.status.code(), Some(0), "{}", stderr(&sent));
    assert_eq!(stdout(&sent).trim_end(), "echo: hello from the cli");

    let failed = s.cli(&["send", "x\n/fail boom"]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(stderr(&failed).contains("turn ended: error: boom"));

    let sessions = s.cli(&["sessions"]);
    assert_eq!(sessions.status.code(), Some(0));
    let out = stdout(&sessions);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("hello from the cli"));
    assert_eq!(out.lines().filter(|l| l.starts_with('*')).count(), 1);

    let nobody = s.cli(&["clients"]);
    assert_eq!(nobody.status.code(), Some(0));
    assert!(stdout(&nobody).starts_with("no clients"));
    let hello = r#"{"client_id":"tui-1","name":"TUI","protocol_versions":[2],
        "tools":[{"name":"pick_file","parameters":{"type":"object"}}]}"#;
    // A hello from `call` is a client until it times out (15 s): long enough to be listed.
    assert_eq!(
        s.cli(&["call", "client.hello", hello]).status.code(),
        Some(0)
    );
    let clients = s.cli(&["clients"]);
    assert_eq!(clients.status.code(), Some(0), "{}", stderr(&clients));
    let out = stdout(&clients);
    assert!(out.starts_with("tui-1  TUI -  connected "), "{out}");
    assert!(out.trim_end().ends_with("tools: pick_file"), "{out}");

    let list = s.cli(&["call", "session.list"]);
    assert_eq!(list.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v["sessions"].as_array().unwrap().len(), 2);

    let not_found = s.cli(&["call", "session.get", r#"{"session_id":"nope"}"#]);
    assert_eq!(not_found.status.code(), Some(1));
    assert!(stderr(&not_found).contains("session_not_found"));

    let bad_json = s.cli(&["call", "session.get", "{"]);
    assert_eq!(bad_json.status.code(), Some(2));
    let bad_usage = s.cli(&["frobnicate"]);
    assert_eq!(bad_usage.status.code(), Some(2));
}

#[test]
fn sub_prints_one_json_line_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let sub = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["sub", "instance.heartbeat", "--count", "3"])
        .output()
        .unwrap();
    assert_eq!(sub.status.code(), Some(0));
    let lines: Vec<Value> = stdout(&sub)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3);
    for l in &lines {
        assert_eq!(l["topic"], "instance.heartbeat");
        assert!(l["seq"].is_u64());
    }
    drop(s);
}

#[test]
fn unreachable_server_exits_3_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let no_file = zcoord(dir.path(), &["ping"]);
    assert_eq!(no_file.status.code(), Some(3));
    assert!(stderr(&no_file).contains("no discovery file"));
    // Nothing listens on this port: the call times out.
    let dead = zcoord(
        dir.path(),
        &[
            "ping",
            "--rpc",
            "tcp://127.0.0.1:9",
            "--pub",
            "tcp://127.0.0.1:9",
            "--timeout-ms",
            "300",
        ],
    );
    assert_eq!(dead.status.code(), Some(3));
}

#[test]
fn sigterm_ends_turns_announces_shutdown_exits_0_and_removes_the_discovery_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &["--token-delay-ms", "50"]);
    let ctx = zmq::Context::new();
    let events = live_subscriber(&ctx, &s.pub_, &["llm.end", "instance.shutdown"]);
    let mut rpc = RpcClient::connect(&ctx, &s.rpc, WAIT).unwrap();
    let r = rpc
        .call("message.send", json!({"content": "long ".repeat(100)}))
        .unwrap();
    s.signal("-TERM");
    let got = events.until(|e| e.envelope.topic == "instance.shutdown");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].envelope.payload["reason"], "shutdown");
    assert_eq!(got[0].envelope.payload["turn_id"], r["turn_id"]);
    assert_eq!(got[1].envelope.payload["reason"], "SIGTERM");
    let disc = s.data_dir.join("instance.json");
    assert_eq!(s.wait(), Some(0));
    assert!(!disc.exists(), "discovery file removed on clean exit");
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused_and_a_stale_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let first = Served::start(dir.path(), &[]);
    let info: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("instance.json")).unwrap()).unwrap();
    let second = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = stderr(&second);
    assert!(err.contains("already running"), "{err}");
    assert!(err.contains(info["instance_id"].as_str().unwrap()), "{err}");
    // The first one still serves.
    assert_eq!(first.cli(&["ping"]).status.code(), Some(0));

    // kill -9 leaves the file behind; the next server sees it is stale and starts.
    first.signal("-KILL");
    let _ = first.wait();
    assert!(dir.path().join("instance.json").exists());
    let third = Served::start(dir.path(), &[]);
    assert_eq!(third.cli(&["ping"]).status.code(), Some(0));
}

/// VmRSS of a process in KiB (Linux).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn a_subscriber_that_never_reads_costs_bounded_memory_and_stalls_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(
        dir.path(),
        &[
            "--token-delay-ms",
            "0",
            "--pub-hwm",
            "10000",
            // The replay ring is a deliberate, separately bounded cost; keep it out of the figure.
            "--replay-bytes",
            "1048576",
            "--rpc",
            "tcp://127.0.0.1:0",
            "--pub",
            "tcp://127.0.0.1:0",
        ],
    );
    let ctx = zmq::Context::new();
    // The stalled subscriber: subscribes to everything, never reads, tiny queues.
    let secret = s
        .secret
        .as_deref()
        .expect("tcp endpoints come with a secret");
    let stalled = ctx.socket(zmq::SUB).unwrap();
    zcoord::transport::auth::present_plain(&stalled, secret).unwrap();
    stalled.set_rcvhwm(10).unwrap();
    stalled.set_rcvbuf(4096).unwrap();
    stalled.set_subscribe(b"").unwrap();
    stalled.connect(&s.pub_).unwrap();
    // The live reader's own queue is unbounded (RCVHWM 0): its libzmq I/O thread keeps draining
    // the TCP stream even when this debug-build test thread is starved of CPU by other tests, so
    // any loss it sees is the server's doing, not its own slowness.
    let live = ctx.socket(zmq::SUB).unwrap();
    zcoord::transport::auth::present_plain(&live, secret).unwrap();
    live.set_rcvhwm(0).unwrap();
    live.set_subscribe(b"").unwrap();
    live.set_subscribe(b"instance.welcome/live").unwrap();
    live.connect(&s.pub_).unwrap();
    // Live once the welcome it asked for after subscribing to everything arrives.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let frames = recv_within(&live, left).expect("no instance.welcome");
        if frames[0] == b"instance.welcome/live" {
            break;
        }
    }
    let mut rpc = RpcClient::connect_with(&ctx, &s.rpc, WAIT, Some(secret)).unwrap();

    let words = "word ".repeat(4000);
    // The live reader takes raw frames and reads only `seq` (the envelope's first member) and
    // the turn's end: a debug-build reader decoding every event would itself fall behind the
    // echo model at full speed and be dropped at its high-water mark, as it should be.
    let mut last_seq: Option<u64> = None;
    let mut run_turn = || {
        let r = rpc.call("message.send", json!({"content": words})).unwrap();
        let turn = r["turn_id"].as_str().unwrap().to_owned();
        let deadline = std::time::Instant::now() + WAIT;
        let mut bytes = 0u64;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let frames = recv_within(&live, left).expect("the turn never ended");
            let (key, body) = (&frames[0], &frames[1]);
            if key.starts_with(b"instance.welcome/") {
                continue; // not numbered
            }
            let seq: u64 = std::str::from_utf8(&body[7..body.len().min(27)])
                .unwrap()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap();
            if let Some(prev) = last_seq {
                assert_eq!(seq, prev + 1, "live subscriber lost an event");
            }
            last_seq = Some(seq);
            bytes += body.len() as u64;
            let text = String::from_utf8_lossy(body);
            if key.starts_with(b"message.append/")
                && text.contains("\"role\":\"assistant\"")
                && text.contains(&turn)
            {
                return bytes;
            }
        }
    };
    run_turn();
    let baseline = rss_kib(s.pid());
    let mut published = 0;
    let mut peak = baseline;
    for _ in 0..40 {
        published += run_turn();
        peak = peak.max(rss_kib(s.pid()));
    }
    let growth_mib = (peak.saturating_sub(baseline)) / 1024;
    let published_mib = published / (1024 * 1024);
    eprintln!("published {published_mib} MiB to a stalled subscriber; server RSS grew {growth_mib} MiB (baseline {} MiB)", baseline / 1024);
    assert!(
        published_mib >= 50,
        "the test must publish far more than the bound"
    );
    assert!(
        growth_mib < 40,
        "server memory grew {growth_mib} MiB for a stalled subscriber"
    );
    assert_eq!(
        rpc.call("instance.ping", json!({})).unwrap()["status"],
        "ok"
    );
    drop(stalled);
}

#[test]
fn serve_refuses_a_corrupt_or_newer_database_and_leaves_it_untouched() {
    let newer = {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("zcoord.db");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;")
            .unwrap();
        drop(conn);
        (dir, "newer than this zcoord understands")
    };
    let corrupt = {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("zcoord.db"), vec![0x5a; 8192]).unwrap();
        (dir, "not a zcoord database")
    };
    for (dir, expected) in [newer, corrupt] {
        let db = dir.path().join("zcoord.db");
        let before = std::fs::read(&db).unwrap();
        let out = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir.path())
            .arg("serve")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains(expected), "{err}");
        assert_eq!(
            std::fs::read(&db).unwrap(),
            before,
            "the database was modified"
        );
        assert!(
            !dir.path().join("instance.json").exists(),
            "nothing was served"
        );
    }
}

#[test]
fn over_tcp_only_peers_with_the_secret_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(
        dir.path(),
        &["--rpc", "tcp://127.0.0.1:0", "--pub", "tcp://127.0.0.1:0"],
    );
    let secret = s
        .secret
        .clone()
        .expect("the discovery file holds the secret");
    assert!(secret.len() >= 32);
    // The CLI reads it from the discovery file.
    let ping = s.cli(&["ping"]);
    assert_eq!(ping.status.code(), Some(0), "{}", stderr(&ping));
    let ctx = zmq::Context::new();
    let short = std::time::Duration::from_millis(700);
    // Without credentials, or with the wrong ones: no answer, and not a single event.
    for given in [None, Some("not-the-secret")] {
        let mut rpc = RpcClient::connect_with(&ctx, &s.rpc, short, given).unwrap();
        assert!(
            rpc.call("instance.ping", json!({})).is_err(),
            "{given:?} got an answer"
        );
        let sub = zcoord::client::Subscriber::connect_with(&ctx, &s.pub_, &[""], given).unwrap();
        assert!(sub.recv(short).unwrap().is_none(), "{given:?} got an event");
    }
    let wrong = Command::new(BIN)
        .env("ZCOORD_SECRET", "not-the-secret")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["ping", "--timeout-ms", "700"])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(3));
    // With it: calls and events.
    let mut rpc = RpcClient::connect_with(&ctx, &s.rpc, WAIT, Some(&secret)).unwrap();
    assert_eq!(
        rpc.call("instance.ping", json!({})).unwrap()["status"],
        "ok"
    );
    let live =
        zcoord::client::Subscriber::connect_live_with(&ctx, &s.pub_, &[""], WAIT, Some(&secret));
    assert!(live.is_ok());
}

#[test]
fn a_non_loopback_tcp_bind_needs_allow_remote() {
    // Refused before anything is bound. What --allow-remote then does (CURVE) is tested on
    // loopback in tests/access.rs: tests bind nothing else.
    let dir = tempfile::tempdir().unwrap();
    let refused = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "serve",
            "--store",
            "memory",
            "--rpc",
            "tcp://0.0.0.0:0",
            "--pub",
            "tcp://127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("--allow-remote"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn serve_max_sessions_bounds_the_sessions_and_must_be_positive() {
    let dir = tempfile::tempdir().unwrap();
    // An unusable endpoint too, so a regression that accepted 0 would fail to bind, not hang.
    let zero = zcoord(
        dir.path(),
        &["serve", "--max-sessions", "0", "--rpc", "bogus://x"],
    );
    assert_eq!(zero.status.code(), Some(2), "{}", stderr(&zero));
    assert!(
        stderr(&zero).contains("--max-sessions"),
        "{}",
        stderr(&zero)
    );

    let s = Served::start(dir.path(), &["--max-sessions", "1", "--store", "memory"]);
    let info = s.cli(&["call", "instance.info"]);
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["max_sessions"], 1, "{info}");
    let first = s.cli(&["call", "session.create"]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let second = s.cli(&["call", "session.create"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        stderr(&second).contains("too_many_sessions"),
        "{}",
        stderr(&second)
    );
}

#[test]
fn send_shows_its_turns_questions_and_the_hitl_commands_answer_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &["--store", "memory", "--token-delay-ms", "0"]);
    // stdin is not a terminal here: `send` shows the request and how to answer it, and waits.
    let send = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "send",
            r#"/tool ask_user {"question": "Which file?", "options": ["a", "b"]}"#,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = eventually("the question listed", || {
        let out = stdout(&s.cli(&["hitl"]));
        out.contains("question: Which file? [a / b]").then_some(out)
    });
    let id = line.split_whitespace().next().unwrap().to_owned();
    assert_eq!(
        stdout(&s.cli(&["approve", &id])),
        "",
        "a question takes an answer"
    );
    let answered = s.cli(&["answer", &id, "b", "--client-id", "test"]);
    assert_eq!(answered.status.code(), Some(0), "{}", stderr(&answered));
    assert!(
        stdout(&answered).contains("answered"),
        "{}",
        stdout(&answered)
    );
    assert!(stdout(&answered).contains("(by test)"));
    let again = s.cli(&["answer", &id, "a"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already resolved"),
        "{}",
        stderr(&again)
    );

    let out = send.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("[waiting for a person]"), "{err}");
    assert!(err.contains(&format!("zcoord answer {id} TEXT")), "{err}");
    assert!(stdout(&out).contains("[ask_user] b"), "{}", stdout(&out));
    assert_eq!(stdout(&s.cli(&["hitl"])).trim(), "no pending requests");
}

/// `send --queue` to a busy session waits its turn and prints its reply; without `--queue` the
/// same send is refused as busy.
#[test]
fn send_with_queue_waits_for_the_running_turn() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &["--store", "memory", "--token-delay-ms", "20"]);
    let long = "word ".repeat(150);
    let first = s.cli(&[
        "call",
        "message.send",
        &json!({ "content": long }).to_string(),
    ]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let first: Value = serde_json::from_slice(&first.stdout).unwrap();
    let sid = first["session_id"].as_str().unwrap();

    let busy = s.cli(&["send", "--session", sid, "refused"]);
    assert_eq!(busy.status.code(), Some(1));
    assert!(stderr(&busy).contains("session_busy"), "{}", stderr(&busy));

    let queued = s.cli(&["send", "--session", sid, "--queue", "after you"]);
    assert_eq!(queued.status.code(), Some(0), "{}", stderr(&queued));
    assert!(
        stderr(&queued).contains("queued at position 1"),
        "{}",
        stderr(&queued)
    );
    assert_eq!(stdout(&queued).trim(), "echo: after you");
}
