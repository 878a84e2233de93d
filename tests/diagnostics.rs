//! Failures `serve` makes diagnosable in its log, through the real binary: a model server that
//! does not answer at start-up (warned, without delaying start-up; one that answers, even 404,
//! is not), and request frames over `--max-message-bytes` (warned once a second at most).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{eventually, Spawned};

const BIN: &str = env!("CARGO_BIN_EXE_zcoord");

fn serve_openai(dir: &Path, base_url: &str) -> Spawned {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(dir)
        .args([
            "serve",
            "--store",
            "memory",
            "--model",
            "openai:m",
            "--base-url",
            base_url,
        ])
        .env("RUST_LOG", "info")
        .env_remove("OPENAI_API_KEY");
    Spawned::start(cmd, dir)
}

#[test]
fn a_model_server_that_does_not_answer_is_warned_about_without_delaying_start_up() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t0 = Instant::now();
    let server = serve_openai(dir.path(), &format!("http://127.0.0.1:{port}/v1"));
    let serving = t0.elapsed();
    let line = eventually("the warning", || {
        server
            .log()
            .lines()
            .find(|l| l.contains("the model server does not answer"))
            .map(str::to_owned)
    });
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains(&format!("GET http://127.0.0.1:{port}/v1/models")),
        "{line}"
    );
    assert!(line.contains("models=\"openai:m\""), "{line}");
    assert!(line.contains("Connection refused"), "{line}");
    eprintln!("serving after {serving:?}; {line}");
}

#[test]
fn a_model_server_that_answers_even_404_is_not_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            let mut conn = conn;
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let server = serve_openai(dir.path(), &format!("http://127.0.0.1:{port}/v1"));
    let line = eventually("the probe's answer", || {
        server
            .log()
            .lines()
            .find(|l| l.contains("the model server answers"))
            .map(str::to_owned)
    });
    assert!(line.contains("status=404"), "{line}");
    assert!(!server.log().contains("does not answer"));
}

#[test]
fn frames_over_the_size_limit_are_answered_and_warned_about_once_a_second_at_most() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir").arg(dir.path()).args([
        "serve",
        "--store",
        "memory",
        "--max-message-bytes",
        "1000",
    ]);
    let server = Spawned::start(cmd, dir.path());
    let ctx = zmq::Context::new();
    let mut c =
        zcoord::client::RpcClient::connect(&ctx, &server.endpoint("rpc"), common::WAIT).unwrap();
    let big = serde_json::to_vec(&serde_json::json!({"jsonrpc": "2.0", "id": 1,
        "method": "session.get", "params": {"session_id": "x".repeat(1500)}}))
    .unwrap();
    for _ in 0..3 {
        // Answered with `id: null` (the frame was not read), so not through `call`.
        c.send_frames(&[&big]).unwrap();
        let reply = c.recv_frames(common::WAIT).unwrap();
        let reply: serde_json::Value = serde_json::from_slice(reply.last().unwrap()).unwrap();
        assert_eq!(reply["error"]["code"], -32003, "{reply}");
    }
    // The connection survived (under the hard limit, 64 KiB here): a normal call still works.
    c.call("instance.ping", serde_json::json!({})).unwrap();
    let warned = |log: &str| {
        log.lines()
            .filter(|l| l.contains("over --max-message-bytes was answered with message_too_large"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let lines = eventually("the warning", || {
        Some(warned(&server.log())).filter(|l| !l.is_empty())
    });
    assert!(
        lines[0].contains("WARN") && lines[0].contains("limit=1000"),
        "{lines:?}"
    );
    assert_eq!(lines.len(), 1, "three within a second, one line: {lines:?}");
}
