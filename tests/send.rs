//! `zcoord send` as a person at a terminal uses it, through the real binary and sockets: Ctrl-C
//! interrupts the turn it started (exit 130), long text comes from stdin or a file within the
//! server's content limit.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::{eventually, live_subscriber, Spawned, WAIT};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_zcoord");

/// `zcoord serve` on `dir` with a slow echo model (`delay_ms` per token).
fn serve(dir: &Path, delay_ms: &str) -> Spawned {
    serve_beating(dir, delay_ms, "0.05")
}

/// As [`serve`], with a heartbeat every `interval` seconds.
fn serve_beating(dir: &Path, delay_ms: &str, interval: &str) -> Spawned {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir").arg(dir).args([
        "serve",
        "--store",
        "memory",
        "--heartbeat-interval",
        interval,
        "--token-delay-ms",
        delay_ms,
    ]);
    Spawned::start(cmd, dir)
}

/// A `zcoord send` child for `dir` with piped stdio, its environment cleared of endpoints.
fn send(dir: &Path, args: &[&str]) -> Child {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .arg("send")
        .args(args)
        .env_remove("ZCOORD_RPC")
        .env_remove("ZCOORD_PUB")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Each chunk of `child`'s stdout as it is written, on a channel.
fn stdout_chunks(child: &mut Child) -> mpsc::Receiver<Vec<u8>> {
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

/// `child`'s stderr as it is written.
fn stderr_lines(child: &mut Child) -> std::sync::Arc<std::sync::Mutex<String>> {
    let mut err = child.stderr.take().unwrap();
    let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

fn exit_code(child: &mut Child) -> Option<i32> {
    eventually("send to exit", || child.try_wait().unwrap()).code()
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
    s
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig} {pid}");
}

#[test]
fn ctrl_c_interrupts_the_turn_send_started_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "20");
    let ctx = zmq::Context::new();
    let events = live_subscriber(&ctx, &server.endpoint("pub"), &["llm.end"]);

    // 400 words at 20 ms a token: 8 s of streaming, far longer than the test needs.
    let long = "word ".repeat(400);
    let mut child = send(dir.path(), &[&long]);
    let chunks = stdout_chunks(&mut child);
    let first = chunks
        .recv_timeout(WAIT)
        .expect("tokens before the interrupt");
    assert!(String::from_utf8_lossy(&first).starts_with("echo:"));
    signal(child.id(), "-INT");

    let end = events.payload("llm.end");
    assert_eq!(end["reason"], "interrupted", "{end}");
    assert_eq!(exit_code(&mut child), Some(130));
    let err = stderr_of(&mut child);
    assert!(
        err.contains("interrupted: the turn was stopped (Ctrl-C)"),
        "{err}"
    );
    let tokens_out = end["tokens_out"].as_u64().unwrap();
    assert!(tokens_out < 400, "stopped early: {tokens_out} tokens");
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Heartbeats far apart: the freeze below must not be taken for a dead primary first.
    let server = serve_beating(dir.path(), "20", "10");
    let ctx = zmq::Context::new();
    let events = live_subscriber(&ctx, &server.endpoint("pub"), &["llm.token"]);
    let mut child = send(dir.path(), &["--timeout-ms", "20000", &"word ".repeat(400)]);
    let err = stderr_lines(&mut child);
    events.payload("llm.token");
    // A frozen server: the first Ctrl-C's session.interrupt waits for a reply that cannot come,
    // so only the second Ctrl-C can end the command now.
    signal(server.child.id(), "-STOP");
    signal(child.id(), "-INT");
    eventually("the first Ctrl-C to be taken", || {
        err.lock()
            .unwrap()
            .contains("Ctrl-C again to exit at once")
            .then_some(())
    });
    signal(child.id(), "-INT");
    assert_eq!(exit_code(&mut child), Some(130));
    signal(server.child.id(), "-CONT");
    let err = err.lock().unwrap().clone();
    assert!(err.contains("interrupted again: exiting now"), "{err}");
}

#[test]
fn text_comes_from_stdin_or_a_file_and_more_than_the_limit_is_refused_locally() {
    let dir = tempfile::tempdir().unwrap();
    let _server = serve(dir.path(), "0");

    // Longer than Linux's limit for one argument (128 KiB), within the server's 256 KiB.
    let long = "w ".repeat(100_000);
    let mut child = send(dir.path(), &["-"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(long.as_bytes()).unwrap();
    drop(stdin);
    let chunks = stdout_chunks(&mut child);
    assert_eq!(exit_code(&mut child), Some(0), "{}", stderr_of(&mut child));
    let out: Vec<u8> = chunks.iter().flatten().collect();
    let words = String::from_utf8(out).unwrap();
    assert_eq!(
        words.split_whitespace().count(),
        100_001,
        "echo: and each word"
    );

    let file = dir.path().join("prompt.txt");
    std::fs::write(&file, "from a file").unwrap();
    let mut child = send(dir.path(), &["--file", file.to_str().unwrap()]);
    let chunks = stdout_chunks(&mut child);
    assert_eq!(exit_code(&mut child), Some(0), "{}", stderr_of(&mut child));
    let out: Vec<u8> = chunks.iter().flatten().collect();
    assert_eq!(
        String::from_utf8(out).unwrap().trim_end(),
        "echo: from a file"
    );

    // One byte over 256 KiB: refused before anything is sent, exit 2.
    std::fs::write(&file, vec![b'a'; (256 << 10) + 1]).unwrap();
    let mut child = send(dir.path(), &["--file", file.to_str().unwrap()]);
    assert_eq!(exit_code(&mut child), Some(2));
    let err = stderr_of(&mut child);
    assert!(
        err.contains(
            "is more than 262144 bytes (256 KiB), the most a message may hold; nothing was sent"
        ),
        "{err}"
    );
    let list: Value = {
        let out = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["call", "session.list"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(
        list["sessions"].as_array().unwrap().len(),
        2,
        "the refused text started no session"
    );
}

/// `zcoord serve --standby` on `dir`: primary if first, else it waits to take over.
fn standby(dir: &Path) -> Child {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args([
            "serve",
            "--standby",
            "--store",
            "sqlite",
            "--heartbeat-interval",
            "0.05",
            "--token-delay-ms",
            "20",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_primary_killed_mid_turn_is_noticed_at_once_and_the_standby_says_what_it_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut primary = Killed(standby(dir.path()));
    let d = common::discovery_of(dir.path(), &primary.0);
    let _standby = Killed(standby(dir.path()));

    let mut child = send(dir.path(), &[&"word ".repeat(400)]);
    let err = stderr_lines(&mut child);
    let chunks = stdout_chunks(&mut child);
    chunks.recv_timeout(WAIT).expect("tokens before the kill");
    let t0 = std::time::Instant::now();
    primary.0.kill().unwrap();
    primary.0.wait().unwrap();
    assert_eq!(exit_code(&mut child), Some(1));
    let took = t0.elapsed();
    let err = err.lock().unwrap().clone();
    let old = d["instance_id"].as_str().unwrap();
    assert!(
        err.contains(&format!("the primary (instance {old}) is gone: ")),
        "{err}"
    );
    assert!(
        err.contains("has taken over; it cannot say how the old primary ended turn"),
        "{err}"
    );
    assert!(
        err.contains("but no reply: the turn was cut off") || err.contains("has the reply cut off"),
        "{err}"
    );
    eprintln!("kill -9 to send's verdict: {took:?}");
}

#[test]
fn a_frozen_primary_is_noticed_by_its_missing_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "20");
    let mut child = send(dir.path(), &[&"word ".repeat(400)]);
    let err = stderr_lines(&mut child);
    let chunks = stdout_chunks(&mut child);
    chunks.recv_timeout(WAIT).expect("tokens before the freeze");
    let pid = server.child.id();
    signal(pid, "-STOP");
    let t0 = std::time::Instant::now();
    let code = exit_code(&mut child);
    signal(pid, "-CONT");
    assert_eq!(code, Some(3));
    let err = err.lock().unwrap().clone();
    // Three 50 ms intervals, then the wait for a standby that never comes.
    assert!(err.contains("is gone: no heartbeat for"), "{err}");
    assert!(
        err.contains("no other primary took over within 5s"),
        "{err}"
    );
    eprintln!(
        "freeze to send's verdict (with the 5 s takeover wait): {:?}",
        t0.elapsed()
    );
}
