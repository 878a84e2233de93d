//! The OpenAI-compatible provider through the whole server: `message.send` over the ROUTER, a
//! fake model server answering with a tool round trip, tokens and tool events seen by a SUB, and
//! `message.list` afterwards; and `session.interrupt` dropping a slow stream at once.

mod common;
mod fake_openai;

use std::time::Duration;

use common::{spawn_daemon_with, topics};
use fake_openai::{finish, runtime, text, tool_piece, usage, FakeServer, Reply, Step};
use serde_json::json;
use zcoord::config::ModelConfig;
use zcoord::model::openai::OpenAiConfig;

fn model(base_url: &str) -> OpenAiConfig {
    let mut c = OpenAiConfig::new("fake-model", base_url);
    c.connect_timeout = Duration::from_secs(2);
    c.chunk_timeout = Duration::from_secs(5);
    c.max_retries = 0;
    c
}

#[test]
fn a_tool_round_trip_through_the_sockets() {
    let rt = runtime();
    let server = rt.block_on(FakeServer::start(vec![
        Reply::sse(&[
            text("Let me check. "),
            tool_piece(0, Some("call_wc"), Some("word_count"), r#"{"text":"#),
            tool_piece(0, None, None, r#" "one two three"}"#),
            finish("tool_calls"),
            usage(12, 4),
        ]),
        Reply::sse(&[text("Three "), text("words."), finish("stop"), usage(30, 2)]),
    ]));
    let d = spawn_daemon_with(|c| c.model = ModelConfig::OpenAi(model(&server.base_url)));
    assert_eq!(
        d.call("instance.info", json!({}))["model"],
        "openai:fake-model"
    );
    let events = d.subscriber(&["llm.", "tool.", "message.append"]);
    let r = d.call(
        "message.send",
        json!({"content": "how many words in 'one two three'?"}),
    );
    let got = events.until_turn("llm.end", r["turn_id"].as_str().unwrap());
    assert_eq!(
        topics(&got),
        [
            "message.append",
            "llm.start",
            "llm.token",
            "message.append",
            "tool.args",
            "tool.args",
            "tool.start",
            "tool.end",
            "message.append",
            "llm.token",
            "llm.token",
            "llm.end"
        ]
    );
    let p = |i: usize| &got[i].envelope.payload;
    assert_eq!(
        (p(3)["role"].as_str(), p(3)["content"].as_str()),
        (Some("assistant"), Some("Let me check. "))
    );
    // The arguments' pieces as the model streamed them, concatenated: the call's params.
    assert_eq!(
        (p(4)["delta"].as_str(), p(5)["delta"].as_str()),
        (Some(r#"{"text":"#), Some(r#" "one two three"}"#))
    );
    assert_eq!(p(6)["params"], r#"{"text": "one two three"}"#);
    assert_eq!(
        (p(7)["result"].as_str(), p(7)["is_error"].as_bool()),
        (Some("3"), Some(false))
    );
    assert_eq!(p(8)["role"], "tool");
    assert_eq!(p(8)["tool"]["call_id"], "call_wc");
    assert_eq!(
        (
            p(11)["reason"].as_str(),
            p(11)["tokens_in"].as_u64(),
            p(11)["tokens_out"].as_u64()
        ),
        (Some("completed"), Some(42), Some(6))
    );
    let indexes: Vec<u64> = got
        .iter()
        .filter(|e| e.envelope.topic == "llm.token")
        .map(|e| e.envelope.payload["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 1, 2]);
    let last = events.next();
    assert_eq!(
        (
            last.envelope.topic.as_str(),
            last.envelope.payload["content"].as_str()
        ),
        ("message.append", Some("Three words."))
    );

    let list = d.call("message.list", json!({"session_id": r["session_id"]}));
    let got: Vec<(&str, &str)> = list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("user", "how many words in 'one two three'?"),
            ("assistant", "Let me check. "),
            ("tool", "3"),
            ("assistant", "Three words.")
        ]
    );
    // The second request gave the model its tool call and the result.
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let second = &requests[1].body;
    let msgs = second["messages"].as_array().unwrap();
    let tool_result = msgs
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("a tool message");
    assert_eq!(
        (
            tool_result["tool_call_id"].as_str(),
            tool_result["content"].as_str()
        ),
        (Some("call_wc"), Some("3"))
    );
    drop(d);
    drop(server);
}

#[test]
fn interrupt_drops_a_slow_stream_at_once_and_keeps_the_partial_text() {
    let rt = runtime();
    let mut server = rt.block_on(FakeServer::start(vec![Reply::new(vec![
        Step::Write(fake_openai::sse_head()),
        Step::Write(fake_openai::sse_body(&[text("partial "), text("answer")])),
        Step::Silence,
    ])]));
    let d = spawn_daemon_with(|c| c.model = ModelConfig::OpenAi(model(&server.base_url)));
    let events = d.subscriber(&["llm.", "message.append"]);
    let r = d.call("message.send", json!({"content": "take your time"}));
    let sid = r["session_id"].clone();
    events.until(|e| e.envelope.topic == "llm.token" && e.envelope.payload["index"] == 1);
    let asked = std::time::Instant::now();
    assert_eq!(
        d.call("session.interrupt", json!({"session_id": sid}))["interrupted"],
        true
    );
    let got = events.until_turn("llm.end", r["turn_id"].as_str().unwrap());
    assert_eq!(
        got.last().unwrap().envelope.payload["reason"],
        "interrupted"
    );
    // The model server sees its connection dropped promptly.
    let closed = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), server.client_closed()).await
    });
    let closed = closed.expect("the HTTP stream was not dropped");
    assert!(closed.duration_since(asked) < Duration::from_secs(2));
    let list = d.call("message.list", json!({"session_id": sid}));
    let reply = &list["messages"][1];
    assert_eq!(
        (reply["content"].as_str(), reply["status"].as_str()),
        (Some("partial answer"), Some("interrupted"))
    );
}

#[test]
fn a_client_tool_is_offered_to_the_model_while_its_client_is_present() {
    let rt = runtime();
    let server = rt.block_on(FakeServer::start(vec![
        Reply::sse(&[
            tool_piece(0, Some("call_ed"), Some("open_editors"), r#"{"limit":"#),
            tool_piece(0, None, None, "2}"),
            finish("tool_calls"),
            usage(10, 3),
        ]),
        Reply::sse(&[text("Two files."), finish("stop"), usage(20, 2)]),
        Reply::sse(&[text("Alone now."), finish("stop"), usage(5, 2)]),
    ]));
    let d = spawn_daemon_with(|c| c.model = ModelConfig::OpenAi(model(&server.base_url)));
    let events = d.subscriber(&["llm.end", "tool."]);
    let mut editor = d.client();
    let schema = json!({"type": "object", "properties": {"limit": {"type": "integer"}}});
    editor
        .call(
            "client.hello",
            json!({"client_id": "ed", "name": "Editor", "protocol_versions": [2],
                   "tools": [{"name": "open_editors", "description": "Open files",
                              "parameters": schema}]}),
        )
        .unwrap();
    let r = d.call("message.send", json!({"content": "what is open?"}));
    let start = events.until(|e| e.envelope.topic == "tool.start");
    assert_eq!(start.last().unwrap().envelope.payload["executor"], "client");
    let claim = editor
        .call("tool.claim", json!({"call_id": "call_ed"}))
        .unwrap();
    assert_eq!(claim["params"], r#"{"limit":2}"#);
    editor
        .call(
            "tool.result",
            json!({"call_id": "call_ed", "result": "a.rs, b.rs"}),
        )
        .unwrap();
    events.until_turn("llm.end", r["turn_id"].as_str().unwrap());

    let requests = server.requests();
    let offered: Vec<&str> = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(offered.contains(&"open_editors"), "{offered:?}");
    assert!(
        offered.contains(&"read_file"),
        "the built-in tools stay: {offered:?}"
    );
    let ours = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == "open_editors")
        .unwrap();
    assert_eq!(ours["function"]["parameters"], schema);
    let result = requests[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("the client's result went back to the model");
    assert_eq!(result["content"], "a.rs, b.rs");

    // Once the client has left, the next turn is not offered its tool.
    editor.call("client.goodbye", json!({})).unwrap();
    let r2 = d.call(
        "message.send",
        json!({"content": "and now?", "session_id": r["session_id"]}),
    );
    events.until_turn("llm.end", r2["turn_id"].as_str().unwrap());
    let third = &server.requests()[2].body;
    assert!(
        !third["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["function"]["name"] == "open_editors"),
        "{third}"
    );
    drop(d);
    drop(server);
}
