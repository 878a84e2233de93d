//! Replays the fuzzer's seed corpus (fuzz/corpus/request) and every input it ever crashed on
//! (fuzz/regressions) through the same harness and invariant checks as the fuzz target, so plain
//! `cargo test` on stable keeps what the fuzzer proved. Also shows the checks are not vacuous.

use std::path::{Path, PathBuf};

use serde_json::Value;
use zcoord::harness::{check_reply, Harness, Outcome, FRAME_SEPARATOR, STEP_SEPARATOR};

fn inputs(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file() && !is_hidden(p))
        .collect();
    files.sort();
    files
}

/// Dot files (`.gitkeep`) keep a directory in git; they are not inputs.
fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// Runs every file of `dir` through a fresh harness; returns how many ran.
fn replay(dir: &str) -> usize {
    let files = inputs(dir);
    let failures: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let input = std::fs::read(path).expect("read input");
            Harness::new()
                .run(&input)
                .err()
                .map(|v| format!("{}: {v}", path.display()))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    files.len()
}

#[test]
fn seed_corpus_keeps_every_invariant() {
    assert!(
        replay("fuzz/corpus/request") >= 45,
        "the seed corpus shrank"
    );
}

/// The inputs the fuzzer found, each a path into the code no seed took (the 49 of its first
/// run), and every input it ever crashed on once fixed. An empty folder would pass vacuously:
/// it must hold at least those 49.
#[test]
fn fuzzer_findings_stay_fixed() {
    let ran = replay("fuzz/regressions");
    assert!(
        ran >= 49,
        "fuzz/regressions holds {ran} inputs, not the fuzzer's 49 findings"
    );
}

fn message(frames: &[&[u8]]) -> Vec<Vec<u8>> {
    frames.iter().map(|f| f.to_vec()).collect()
}

fn reply_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Reply { body, .. } => serde_json::from_slice(body).expect("reply is JSON"),
        Outcome::Dropped => panic!("no reply"),
    }
}

#[test]
fn the_harness_answers_through_the_core() {
    let mut h = Harness::new();
    let ping = message(&[
        b"peer",
        br#"{"jsonrpc":"2.0","id":7,"method":"instance.ping"}"#,
    ]);
    let reply = reply_json(&h.handle(&ping));
    assert_eq!(reply["id"], 7);
    assert_eq!(reply["result"]["status"], "ok");

    let create = message(&[
        b"peer",
        br#"{"jsonrpc":"2.0","id":1,"method":"session.create"}"#,
    ]);
    let get = br#"{"jsonrpc":"2.0","id":2,"method":"session.get","params":{"session_id":"00000000-0000-0000-0000-000000000001"}}"#;
    h.handle(&create);
    let reply = reply_json(&h.handle(&message(&[b"peer", get])));
    assert_eq!(
        reply["result"]["id"],
        "00000000-0000-0000-0000-000000000001"
    );

    let notification = message(&[b"peer", br#"{"jsonrpc":"2.0","method":"instance.ping"}"#]);
    assert_eq!(h.handle(&notification), Outcome::Dropped);
    assert_eq!(h.handle(&[]), Outcome::Dropped);
}

/// The harness has two models, so the `models-*` seeds reach both answers of a name.
#[test]
fn the_harness_configures_sessions_between_two_models() {
    let mut h = Harness::new();
    let call =
        |h: &mut Harness, body: &str| reply_json(&h.handle(&message(&[b"peer", body.as_bytes()])));
    let list = call(&mut h, r#"{"jsonrpc":"2.0","id":1,"method":"model.list"}"#);
    assert_eq!(list["result"]["default"], "echo");
    assert_eq!(list["result"]["models"][1]["name"], "fast");
    call(
        &mut h,
        r#"{"jsonrpc":"2.0","id":2,"method":"session.create"}"#,
    );
    let set = r#"{"jsonrpc":"2.0","id":3,"method":"session.configure","params":{"session_id":"00000000-0000-0000-0000-000000000001","model":"fast"}}"#;
    assert_eq!(call(&mut h, set)["result"]["model"], "fast");
    let unknown = set.replace("\"fast\"", "\"slow\"");
    assert_eq!(call(&mut h, &unknown)["error"]["code"], -32018);
}

#[test]
fn the_checks_catch_wrong_answers() {
    let frames = message(&[
        b"peer",
        br#"{"jsonrpc":"2.0","id":1,"method":"instance.ping"}"#,
    ]);
    let reply = |body: &[u8], identity: &[u8]| Outcome::Reply {
        route: zcoord::transport::Route {
            identity: identity.to_vec(),
            delimiter: false,
        },
        body: body.to_vec(),
    };
    let good = br#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
    assert!(check_reply(&frames, &reply(good, b"peer")).is_ok());
    for (bad, identity) in [
        (
            &br#"{"jsonrpc":"2.0","id":2,"result":{}}"#[..],
            &b"peer"[..],
        ),
        (
            br#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
            b"peer",
        ),
        (
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"x"}}"#,
            b"peer",
        ),
        (br#"[{"jsonrpc":"2.0","id":1,"result":{}}]"#, b"peer"),
        (b"not json", b"peer"),
        (good, b"someone else"),
    ] {
        assert!(
            check_reply(&frames, &reply(bad, identity)).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(check_reply(&frames, &Outcome::Dropped).is_err());
    let notification = message(&[b"peer", br#"{"jsonrpc":"2.0","method":"instance.ping"}"#]);
    assert!(check_reply(&notification, &reply(good, b"peer")).is_err());
}

#[test]
fn a_script_is_steps_of_frames_and_controls() {
    let input = [
        &b"peer"[..],
        &[FRAME_SEPARATOR],
        br#"{"jsonrpc":"2.0","id":1,"method":"message.send","params":{"content":"hi"}}"#,
        &[STEP_SEPARATOR],
        b"!t0hello",
        &[STEP_SEPARATOR],
        b"!f0",
    ]
    .concat();
    let steps: Vec<_> = zcoord::harness::script(&input).collect();
    assert_eq!(steps.len(), 3);
    assert!(matches!(&steps[0], zcoord::harness::Step::Message(f) if f.len() == 2));
    assert!(matches!(
        steps[1],
        zcoord::harness::Step::Control {
            op: b't',
            selector: b'0',
            text: b"hello"
        }
    ));
    assert!(Harness::new().run(&input).is_ok());
}

/// Builds a script: `Msg` steps are one-frame requests from peer `p`, `Ctl` steps control ops.
enum S<'a> {
    Msg(&'a str),
    Ctl(u8, u8, &'a str),
}

fn build(steps: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        if i > 0 {
            out.push(zcoord::harness::STEP_SEPARATOR);
        }
        match s {
            S::Msg(body) => {
                out.extend_from_slice(b"p");
                out.push(zcoord::harness::FRAME_SEPARATOR);
                out.extend_from_slice(body.as_bytes());
            }
            S::Ctl(op, selector, text) => {
                out.extend_from_slice(&[zcoord::harness::CONTROL, *op, *selector]);
                out.extend_from_slice(text.as_bytes());
            }
        }
    }
    out
}

/// Human-in-the-loop paths through the harness (answered, approved for the session, expired,
/// cancelled by interrupt and by shutdown, a late answer): every `hitl.pending` gets exactly one
/// `hitl.resolved`, before its turn's `llm.end`. Also written to the seed corpus, so the fuzzer
/// starts from them.
#[test]
fn hitl_scripts_keep_every_invariant() {
    let send = r#"{"jsonrpc":"2.0","id":1,"method":"message.send","params":{"content":"go"}}"#;
    let question = r#"{"question":"which?","options":["a"]}"#;
    let scripts: Vec<(&str, Vec<S>)> = vec![
        (
            "hitl-answered",
            vec![
                S::Msg(send),
                S::Ctl(b's', 1, question),
                S::Ctl(b'r', 0, "a"),
                S::Ctl(b'r', 0, "late"),
                S::Ctl(b'e', 1, "a"),
                S::Ctl(b'f', 0, ""),
            ],
        ),
        (
            "hitl-granted",
            vec![
                S::Msg(send),
                S::Ctl(b's', 2, "{}"),
                S::Ctl(b'r', 2, "editor"),
                S::Ctl(b'e', 2, "1"),
                S::Ctl(b's', 5, "{}"),
                S::Ctl(b'e', 5, "1"),
                S::Ctl(b'f', 0, ""),
            ],
        ),
        (
            "hitl-expired",
            vec![
                S::Msg(send),
                S::Ctl(b's', 2, "{}"),
                S::Ctl(b'k', 30, ""),
                S::Ctl(b'c', 0, ""),
                S::Ctl(b'r', 1, ""),
                S::Ctl(b'f', 0, ""),
            ],
        ),
        (
            "hitl-interrupted",
            vec![
                S::Msg(send),
                S::Ctl(b's', 1, question),
                S::Msg(
                    r#"{"jsonrpc":"2.0","id":2,"method":"session.interrupt","params":{"session_id":"00000000-0000-0000-0000-000000000001"}}"#,
                ),
                S::Ctl(b'r', 0, "too late"),
            ],
        ),
        (
            "hitl-shutdown",
            vec![
                S::Msg(send),
                S::Ctl(b's', 2, "{}"),
                S::Ctl(b'q', 0, "bye"),
                S::Ctl(b'r', 3, "no"),
            ],
        ),
    ];
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/request");
    for (name, steps) in scripts {
        let input = build(&steps);
        let mut h = Harness::new();
        h.run(&input).unwrap_or_else(|v| panic!("{name}: {v}"));
        assert!(h.hitl_resolved() >= 1, "{name}: no request was resolved");
        let file = corpus.join(format!("{name}.bin"));
        if std::fs::read(&file).ok().as_deref() != Some(&input[..]) {
            std::fs::write(&file, &input).expect("write seed");
        }
    }
}

/// The queue seeds reach what they are for: the replies of `queue-cleared.bin` include queued
/// sends at positions 1 to 5 and a `clear_queue` that discarded all five.
#[test]
fn the_queue_seeds_queue_and_clear() {
    let input = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/request/queue-cleared.bin"),
    )
    .expect("read seed");
    let mut h = Harness::new();
    let mut replies = Vec::new();
    for step in zcoord::harness::script(&input) {
        match step {
            zcoord::harness::Step::Message(frames) => {
                let frames: Vec<Vec<u8>> = frames.iter().map(|f| f.to_vec()).collect();
                replies.push(reply_json(&h.handle(&frames)));
            }
            zcoord::harness::Step::Control { op, selector, text } => h.control(op, selector, text),
        }
    }
    let positions: Vec<&Value> = replies
        .iter()
        .filter(|r| r["result"]["queued"] == true)
        .map(|r| &r["result"]["position"])
        .collect();
    assert_eq!(positions, [1, 2, 3, 4, 5]);
    assert!(replies.iter().any(|r| r["result"]["queue_length"] == 5));
    assert!(replies.iter().any(|r| r["result"]["cleared"] == 5));
}
