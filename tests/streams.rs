//! Richer streams through the real sockets: `tool.args` pieces before each `tool.start` that
//! concatenate to its `params` (echo, and the OpenAI provider against a fake server), `llm.end`
//! usage as each provider reports it, and session totals after two turns and after a restart.

mod common;
mod fake_openai;

use std::time::Duration;

use common::{send, spawn_daemon_with};
use fake_openai::{finish, text, tool_piece, usage_details, FakeServer, Reply};
use serde_json::{json, Value};
use zcoord::client::ReceivedEvent;
use zcoord::config::{ModelConfig, StoreConfig};
use zcoord::model::openai::OpenAiConfig;

/// Checks every call of a turn's events: its `tool.args` come before its `tool.start`, indexed
/// 0, 1, 2…, each at most 4 KiB, and concatenated equal the start's `params`. Returns the
/// `tool.start` payloads with how many pieces each had.
fn check_args(events: &[ReceivedEvent]) -> Vec<(Value, usize)> {
    let mut pending: Vec<(String, Vec<String>)> = Vec::new();
    let mut started = Vec::new();
    for e in events {
        let p = &e.envelope.payload;
        let call = p["call_id"].as_str().unwrap_or_default().to_owned();
        match e.envelope.topic.as_str() {
            "tool.args" => {
                assert!(
                    !started
                        .iter()
                        .any(|(s, _): &(Value, usize)| s["call_id"] == call),
                    "tool.args after its tool.start: {p}"
                );
                let delta = p["delta"].as_str().unwrap();
                assert!(!delta.is_empty() && delta.len() <= 4096, "{p}");
                let at = match pending.iter().position(|(c, _)| *c == call) {
                    Some(at) => at,
                    None => {
                        pending.push((call.clone(), Vec::new()));
                        pending.len() - 1
                    }
                };
                assert_eq!(p["index"], pending[at].1.len() as u64, "{p}");
                pending[at].1.push(delta.to_owned());
            }
            "tool.start" => {
                let pieces = pending
                    .iter()
                    .position(|(c, _)| *c == call)
                    .map(|at| pending.remove(at).1)
                    .unwrap_or_default();
                assert_eq!(pieces.concat(), p["params"].as_str().unwrap(), "{p}");
                started.push((p.clone(), pieces.len()));
            }
            _ => {}
        }
    }
    assert!(
        pending.is_empty(),
        "tool.args for a call that never started"
    );
    started
}

fn llm_end(events: &[ReceivedEvent]) -> Value {
    events.last().unwrap().envelope.payload.clone()
}

#[test]
fn echo_streams_each_calls_arguments_before_its_start() {
    let d = spawn_daemon_with(|_| {});
    let events = d.subscriber(&["tool.", "llm.end"]);
    let long = "é".repeat(5000);
    let r = send(
        &d,
        None,
        &format!(
            "count\n/tool word_count {{\"text\": \"one two three\"}}\n/tool clock\n\
             /tool word_count {{\"text\": \"{long}\"}}"
        ),
    );
    let got = events.until_turn("llm.end", r["turn_id"].as_str().unwrap());
    let started = check_args(&got);
    let shape: Vec<(&str, usize, bool)> = started
        .iter()
        .map(|(s, n)| {
            let cut = s["params_truncated"].as_bool().unwrap_or(false);
            (s["tool_name"].as_str().unwrap(), *n, cut)
        })
        .collect();
    // Three pieces for a call with arguments, none without; the long call's pieces stop where
    // its params are cut.
    assert_eq!(
        shape,
        [
            ("word_count", 3, false),
            ("clock", 0, false),
            ("word_count", 3, true)
        ]
    );
    assert_eq!(started[0].0["params"], r#"{"text": "one two three"}"#);
    assert_eq!(llm_end(&got)["reason"], "completed");
}

#[test]
fn usage_totals_add_up_over_two_turns_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("zcoord.db");
    let sqlite = |db: &std::path::Path| {
        let db = db.to_path_buf();
        move |c: &mut zcoord::config::Config| c.store = StoreConfig::Sqlite(db)
    };
    let d = spawn_daemon_with(sqlite(&db));
    let events = d.subscriber(&["llm.end", "session.update"]);
    let first = send(&d, None, "one two three");
    let sid = first["session_id"].as_str().unwrap().to_owned();
    let mut ends = vec![llm_end(
        &events.until_turn("llm.end", first["turn_id"].as_str().unwrap()),
    )];
    let second = send(&d, Some(&sid), "four five");
    let turn = second["turn_id"].as_str().unwrap();
    ends.push(llm_end(&events.until_turn("llm.end", turn)));
    // echo's figures: words in and its own tokens out, with the estimates named.
    for end in &ends {
        let u = &end["usage"];
        assert_eq!(u["input_tokens"], end["tokens_in"]);
        assert_eq!(u["output_tokens"], end["tokens_out"]);
        assert_eq!(u["estimated"], json!(["input_tokens", "context_tokens"]));
    }
    let sum = |field: &str| -> u64 {
        ends.iter()
            .map(|e| e["usage"][field].as_u64().unwrap())
            .sum()
    };
    let want = json!({"input_tokens": sum("input_tokens"),
                      "output_tokens": sum("output_tokens"),
                      "cached_input_tokens": 0, "reasoning_tokens": 0, "turns": 2});
    // The history's words: the first message, echo's reply to it, the second message.
    assert_eq!(ends[1]["usage"]["input_tokens"], 3 + 4 + 2);
    // The turn's session.update carries the totals, as session.get does.
    let update = events
        .until(|e| e.envelope.topic == "session.update" && e.envelope.payload["status"] == "idle");
    assert_eq!(update.last().unwrap().envelope.payload["usage"], want);
    let get =
        |d: &common::Daemon| d.call("session.get", json!({"session_id": sid}))["usage"].clone();
    assert_eq!(get(&d), want);

    d.stop();
    let d = spawn_daemon_with(sqlite(&db));
    assert_eq!(get(&d), want, "the totals are stored");
}

fn openai(base_url: &str) -> OpenAiConfig {
    let mut c = OpenAiConfig::new("fake-model", base_url);
    c.connect_timeout = Duration::from_secs(2);
    c.chunk_timeout = Duration::from_secs(5);
    c.max_retries = 0;
    c
}

#[test]
fn openai_arguments_stream_as_they_come_and_usage_has_the_servers_details() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(FakeServer::start(vec![
        Reply::sse(&[
            text("Counting. "),
            tool_piece(0, Some("call_a"), Some("word_count"), ""),
            tool_piece(1, Some("call_b"), Some("clock"), ""),
            tool_piece(0, None, None, r#"{"te"#),
            tool_piece(1, None, None, "{}"),
            tool_piece(0, None, None, r#"xt": "a b"#),
            tool_piece(0, None, None, r#" c"}"#),
            finish("tool_calls"),
            usage_details(100, 12, 64, 8),
        ]),
        Reply::sse(&[text("Three."), finish("stop"), usage_details(130, 5, 96, 0)]),
    ]));
    let d = spawn_daemon_with(|c| c.model = ModelConfig::OpenAi(openai(&server.base_url)));
    let events = d.subscriber(&["tool.", "llm.end"]);
    let r = send(&d, None, "how many words in 'a b c'?");
    let got = events.until_turn("llm.end", r["turn_id"].as_str().unwrap());
    // Both calls' pieces streamed while the round was read, before either started.
    let topics: Vec<&str> = got.iter().map(|e| e.envelope.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "tool.args",
            "tool.args",
            "tool.args",
            "tool.args",
            "tool.start",
            "tool.end",
            "tool.start",
            "tool.end",
            "llm.end"
        ]
    );
    let started = check_args(&got);
    assert_eq!(started[0].0["params"], r#"{"text": "a b c"}"#);
    assert_eq!((started[0].1, started[1].1), (3, 1));

    let end = llm_end(&got);
    assert_eq!(
        (end["tokens_in"].as_u64(), end["tokens_out"].as_u64()),
        (Some(230), Some(17))
    );
    assert_eq!(
        end["usage"],
        json!({"input_tokens": 230, "output_tokens": 17, "cached_input_tokens": 160,
               "reasoning_tokens": 8, "context_tokens": 135, "context_window": 8192,
               "estimated": []})
    );
    let s = d.call("session.get", json!({"session_id": r["session_id"]}));
    assert_eq!(
        s["usage"],
        json!({"input_tokens": 230, "output_tokens": 17, "cached_input_tokens": 160,
               "reasoning_tokens": 8, "turns": 1})
    );
    drop(d);
    drop(server);
}
