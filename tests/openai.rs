//! The OpenAI-compatible provider driven directly through the `Model` trait against a fake
//! server (tests/fake_openai): streaming, usage, the tool loop, every error path, awkward byte
//! splits and interrupt.

mod fake_openai;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;
use uuid::Uuid;
use zcoord::core::{HistoryEntry, ModelEvent, TurnStart, Verdict};
use zcoord::model::openai::{OpenAi, OpenAiConfig};
use zcoord::model::queue as model_queue;
use zcoord::model::{Model, ModelError, TurnSink};
use zcoord::protocol::ids::{SessionId, TurnId};
use zcoord::protocol::types::Role;
use zcoord::protocol::usage::{TurnUsage, UsageFigure};
use zcoord::tools::{Tools, ToolsConfig};

use fake_openai::{
    chunked_sse_head, finish, http_chunk, sse_body, sse_head, text, tool_piece, usage,
    usage_details, FakeServer, Reply, Step,
};

/// Short timeouts and backoffs, so the error paths take milliseconds.
fn config(base_url: &str) -> OpenAiConfig {
    let mut c = OpenAiConfig::new("test-model", base_url);
    c.connect_timeout = Duration::from_secs(2);
    c.chunk_timeout = Duration::from_secs(2);
    c.max_retries = 2;
    c.retry_base_delay = Duration::from_millis(1);
    c
}

/// The default tools: the current directory as the workspace, no `run_command`.
fn tools() -> Arc<Tools> {
    Arc::new(Tools::new(&ToolsConfig::default()).expect("the current directory opens"))
}

fn turn(history: &[(Role, &str)]) -> TurnStart {
    TurnStart {
        turn_id: TurnId(Uuid::now_v7()),
        session_id: SessionId(Uuid::now_v7()),
        history: history
            .iter()
            .map(|(role, content)| HistoryEntry {
                role: *role,
                content: (*content).into(),
            })
            .collect(),
        client_tools: std::sync::Arc::from([]),
        system_prompt: None,
    }
}

fn hello() -> TurnStart {
    turn(&[(Role::User, "hello")])
}

/// Runs one turn to its end and returns what it returned and every event it emitted.
async fn run(config: OpenAiConfig, turn: TurnStart) -> (Result<(), ModelError>, Vec<ModelEvent>) {
    let model = OpenAi::new(config, tools()).expect("provider");
    let (tx, mut rx) = model_queue::channel(1 << 10);
    let (verdicts, verdicts_rx) = mpsc::unbounded_channel();
    let sink = TurnSink::new(turn.turn_id, tx, verdicts_rx);
    let task = tokio::spawn(model.run(turn.clone(), sink));
    let collect = async {
        let mut events = Vec::new();
        while let Some((turn_id, event)) = rx.recv().await {
            assert_eq!(turn_id, turn.turn_id);
            // As the core does for a tool whose policy is `allow`.
            if let ModelEvent::ToolStart { call_id, .. } = &event {
                let _ = verdicts.send((call_id.0.clone(), Verdict::Run));
            }
            events.push(event);
        }
        events
    };
    let events = tokio::time::timeout(Duration::from_secs(10), collect)
        .await
        .expect("the turn ended within 10 s");
    (task.await.expect("no panic"), events)
}

fn tokens(events: &[ModelEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            ModelEvent::Token(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

fn last_usage(events: &[ModelEvent]) -> Option<(u64, u64)> {
    last_report(events).map(|u| (u.input_tokens, u.output_tokens))
}

fn last_report(events: &[ModelEvent]) -> Option<&TurnUsage> {
    events.iter().rev().find_map(|e| match e {
        ModelEvent::Usage(u) => Some(u),
        _ => None,
    })
}

/// A usage report as the server gave it (no details), under the default context budget.
fn reported(input: u64, output: u64, context: u64) -> ModelEvent {
    ModelEvent::Usage(TurnUsage {
        input_tokens: input,
        output_tokens: output,
        context_tokens: context,
        context_window: Some(8_192),
        ..TurnUsage::default()
    })
}

fn args(call_id: &str, tool_name: &str, delta: &str) -> ModelEvent {
    ModelEvent::ToolArgs {
        call_id: call_id.into(),
        tool_name: tool_name.into(),
        delta: delta.into(),
    }
}

/// The turn's error text; fails the test if the turn succeeded.
fn failure(outcome: Result<(), ModelError>) -> String {
    match outcome {
        Err(ModelError::Failed(text)) => text,
        other => panic!("expected a failed turn, got {other:?}"),
    }
}

fn assert_contains(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{text:?} should contain {part:?}");
    }
}

#[tokio::test]
async fn plain_text_streams_tokens_in_order_with_reported_usage() {
    let server = FakeServer::start(vec![Reply::sse(&[
        text(""),
        text("Hel"),
        text("lo, "),
        text("wörld"),
        finish("stop"),
        usage(7, 3),
    ])])
    .await;
    let mut cfg = config(&server.base_url);
    cfg.api_key = Some("sk-test".into());
    cfg.system_prompt = Some("Be brief.".into());
    let history = turn(&[
        (Role::User, "first"),
        (Role::Assistant, "answer"),
        (Role::User, "hello"),
    ]);

    let (outcome, events) = run(cfg, history).await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(
        events,
        [
            ModelEvent::Token("Hel".into()),
            ModelEvent::Token("lo, ".into()),
            ModelEvent::Token("wörld".into()),
            reported(7, 3, 10),
        ]
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(r.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body["model"], "test-model");
    assert_eq!(r.body["stream"], true);
    assert_eq!(r.body["stream_options"], json!({"include_usage": true}));
    assert_eq!(r.body["tool_choice"], "auto");
    let tools: Vec<&Value> = r.body["tools"].as_array().unwrap().iter().collect();
    let names: Vec<&str> = tools
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "clock",
            "word_count",
            "sleep",
            "read_file",
            "list_dir",
            "write_file",
            "ask_user"
        ],
        "run_command only when enabled"
    );
    assert!(tools.iter().all(|t| t["type"] == "function"
        && t["function"]["parameters"]["type"] == "object"
        && t["function"]["description"].is_string()));
    assert_eq!(
        r.body["messages"],
        json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "answer"},
            {"role": "user", "content": "hello"},
        ])
    );
}

#[tokio::test]
async fn without_reported_usage_an_estimate_is_given_and_no_key_is_sent() {
    // "finish_reason: length" is a normal end.
    let server = FakeServer::start(vec![Reply::sse(&[text("abcdefgh"), finish("length")])]).await;
    let (outcome, events) = run(config(&server.base_url), turn(&[(Role::User, "12345678")])).await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(tokens(&events), ["abcdefgh"]);
    // Characters / 4: 8 in, 8 out.
    assert_eq!(last_usage(&events), Some((2, 2)));
    assert_eq!(server.requests()[0].header("authorization"), None);
}

#[tokio::test]
async fn history_is_trimmed_from_the_oldest_end() {
    let server = FakeServer::start(vec![Reply::sse(&[text("ok")])]).await;
    let mut cfg = config(&server.base_url);
    cfg.context_budget_tokens = 5;
    let (outcome, _) = run(
        cfg,
        turn(&[
            (Role::User, "old question"),
            (Role::Assistant, "old answer"),
            (Role::User, "new question"),
        ]),
    )
    .await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(
        server.requests()[0].body["messages"],
        json!([{"role": "user", "content": "new question"}])
    );
}

/// Cached and reasoning tokens are read from the details OpenAI sends; a round that reports no
/// usage is estimated, and the report says which figures are.
#[tokio::test]
async fn usage_details_sum_over_rounds_and_an_unreported_round_is_marked_estimated() {
    let server = FakeServer::start(vec![
        Reply::sse(&[
            tool_piece(0, Some("call_c"), Some("clock"), "{}"),
            finish("tool_calls"),
            usage_details(100, 12, 64, 8),
        ]),
        Reply::sse(&[text("Done."), finish("stop")]),
    ])
    .await;
    let (outcome, events) = run(config(&server.base_url), hello()).await;
    assert_eq!(outcome, Ok(()));
    let first = events.iter().find_map(|e| match e {
        ModelEvent::Usage(u) => Some(u.clone()),
        _ => None,
    });
    assert_eq!(
        first,
        Some(TurnUsage {
            input_tokens: 100,
            output_tokens: 12,
            cached_input_tokens: Some(64),
            reasoning_tokens: Some(8),
            context_tokens: 112,
            context_window: Some(8_192),
            estimated: vec![],
        })
    );
    let last = last_report(&events).expect("a usage report");
    assert!(
        last.input_tokens > 100 && last.output_tokens > 12,
        "{last:?}"
    );
    assert_eq!(
        last.context_tokens,
        (last.input_tokens - 100) + (last.output_tokens - 12),
        "the context is the last round's"
    );
    assert_eq!(
        (last.cached_input_tokens, last.reasoning_tokens),
        (Some(64), Some(8))
    );
    assert_eq!(
        last.estimated,
        [
            UsageFigure::InputTokens,
            UsageFigure::OutputTokens,
            UsageFigure::ContextTokens
        ]
    );
}

#[tokio::test]
async fn two_parallel_tool_calls_round_trip_to_the_model() {
    let server = FakeServer::start(vec![
        Reply::sse(&[
            tool_piece(0, Some("call_a"), Some("word_count"), ""),
            tool_piece(1, Some("call_b"), Some("clock"), ""),
            tool_piece(0, None, None, r#"{"te"#),
            tool_piece(1, None, None, "{}"),
            tool_piece(0, None, None, r#"xt": "one two three"}"#),
            finish("tool_calls"),
            usage(10, 5),
        ]),
        Reply::sse(&[text("Three "), text("words."), finish("stop"), usage(20, 3)]),
    ])
    .await;
    let (outcome, events) = run(config(&server.base_url), hello()).await;
    assert_eq!(outcome, Ok(()));

    let clock = match &events[7] {
        ModelEvent::ToolEnd { result, .. } => result.clone(),
        other => panic!("expected the clock's end, got {other:?}"),
    };
    assert!(clock.ends_with('Z') && clock.contains('T'), "{clock}");
    assert_eq!(
        events,
        [
            // Each call's arguments as they streamed, before any call starts.
            args("call_a", "word_count", r#"{"te"#),
            args("call_b", "clock", "{}"),
            args("call_a", "word_count", r#"xt": "one two three"}"#),
            reported(10, 5, 15),
            ModelEvent::ToolStart {
                call_id: "call_a".into(),
                tool_name: "word_count".into(),
                params: r#"{"text": "one two three"}"#.into()
            },
            ModelEvent::ToolEnd {
                call_id: "call_a".into(),
                is_error: false,
                result: "3".into()
            },
            ModelEvent::ToolStart {
                call_id: "call_b".into(),
                tool_name: "clock".into(),
                params: "{}".into()
            },
            ModelEvent::ToolEnd {
                call_id: "call_b".into(),
                is_error: false,
                result: clock.clone()
            },
            ModelEvent::Token("Three ".into()),
            ModelEvent::Token("words.".into()),
            // Input and output over both rounds; the context as the last round left it.
            reported(30, 8, 23),
        ]
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].body["messages"],
        json!([
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function",
                 "function": {"name": "word_count", "arguments": r#"{"text": "one two three"}"#}},
                {"id": "call_b", "type": "function",
                 "function": {"name": "clock", "arguments": "{}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "3"},
            {"role": "tool", "tool_call_id": "call_b", "content": clock},
        ])
    );
}

#[tokio::test]
async fn unknown_tools_and_invalid_arguments_are_error_results_for_the_model() {
    let server = FakeServer::start(vec![
        Reply::sse(&[
            text("Trying."),
            tool_piece(0, Some("c1"), Some("teleport"), "{}"),
            // No id: one is made up.
            tool_piece(1, None, Some("word_count"), "{not json"),
            finish("tool_calls"),
        ]),
        Reply::sse(&[text("Sorry."), finish("stop")]),
    ])
    .await;
    let (outcome, events) = run(config(&server.base_url), hello()).await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(tokens(&events), ["Trying.", "Sorry."]);
    let ends: Vec<(&str, bool)> = events
        .iter()
        .filter_map(|e| match e {
            ModelEvent::ToolEnd {
                call_id, is_error, ..
            } => Some((call_id.as_str(), *is_error)),
            _ => None,
        })
        .collect();
    assert_eq!(ends, [("c1", true), ("call_1", true)]);
    assert!(events.contains(&ModelEvent::ToolStart {
        call_id: "call_1".into(),
        tool_name: "word_count".into(),
        params: "{not json".into()
    }));

    let messages = server.requests()[1].body["messages"].clone();
    let calls = &messages[1]["tool_calls"];
    assert_eq!(messages[1]["content"], "Trying.");
    assert_eq!(calls[0]["function"]["name"], "teleport");
    assert_eq!(calls[1]["id"], "call_1");
    // Invalid arguments go back as `{}`; the result says what was wrong.
    assert_eq!(calls[1]["function"]["arguments"], "{}");
    assert_eq!(messages[2]["tool_call_id"], "c1");
    assert_eq!(messages[2]["content"], "error: unknown tool: teleport");
    assert_eq!(messages[3]["tool_call_id"], "call_1");
    let result = messages[3]["content"].as_str().unwrap();
    assert!(
        result.starts_with("error: invalid JSON arguments"),
        "{result}"
    );
}

#[tokio::test]
async fn too_many_tool_rounds_end_the_turn_with_an_error() {
    let round = Reply::sse(&[tool_piece(0, None, Some("clock"), ""), finish("tool_calls")]);
    let server = FakeServer::start(vec![round.clone(), round]).await;
    let mut cfg = config(&server.base_url);
    cfg.max_tool_rounds = 2;
    let (outcome, events) = run(cfg, hello()).await;
    assert_contains(&failure(outcome), &["max_tool_rounds", "clock", "2 round"]);
    let starts = events
        .iter()
        .filter(|e| matches!(e, ModelEvent::ToolStart { .. }))
        .count();
    assert_eq!(starts, 1, "the last round's calls are not run");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_refused_connection_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}/v1");
    let (outcome, events) = run(config(&url), hello()).await;
    let error = failure(outcome).to_lowercase();
    assert_contains(
        &error,
        &[
            "could not connect",
            "refused",
            &port.to_string(),
            "3 attempt",
        ],
    );
    assert!(events.is_empty());
}

/// A connect timeout is hard to fake with plain TCP, but reqwest counts the TLS handshake as
/// part of connecting: an `https` URL on a server that never answers the handshake times out.
#[tokio::test]
async fn a_handshake_that_never_completes_hits_the_connect_timeout() {
    // A TLS ClientHello never ends an HTTP head, so the server just keeps listening.
    let server = FakeServer::start(vec![]).await;
    let url = server.base_url.replace("http://", "https://");
    let mut cfg = config(&url);
    cfg.connect_timeout = Duration::from_millis(200);
    let (outcome, _) = run(cfg, hello()).await;
    assert_contains(
        &failure(outcome),
        &["could not connect", "within 200ms", "connect timeout"],
    );
    assert_eq!(server.connections(), 1, "a timeout is not retried");
}

#[tokio::test]
async fn silence_between_chunks_hits_the_chunk_timeout() {
    let server = FakeServer::start(vec![Reply::new(vec![
        Step::Write(sse_head()),
        Step::Write(sse_body(&[text("partial")])),
        Step::Silence,
    ])])
    .await;
    let mut cfg = config(&server.base_url);
    cfg.chunk_timeout = Duration::from_millis(200);
    let started = Instant::now();
    let (outcome, events) = run(cfg, hello()).await;
    assert_contains(&failure(outcome), &["chunk timeout", "200ms"]);
    assert_eq!(tokens(&events), ["partial"]);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn silence_before_the_response_head_times_out() {
    let server = FakeServer::start(vec![Reply::new(vec![Step::Silence])]).await;
    let mut cfg = config(&server.base_url);
    cfg.connect_timeout = Duration::from_millis(100);
    cfg.chunk_timeout = Duration::from_millis(200);
    let (outcome, _) = run(cfg, hello()).await;
    assert_contains(&failure(outcome), &["no response", "300ms"]);
    assert_eq!(server.requests().len(), 1, "a timeout is not retried");
}

/// One way a turn fails: what the server does, what the error must say, what was streamed
/// first, and how many requests the provider made (more than one only where it retries).
struct ErrorCase {
    name: &'static str,
    replies: Vec<Reply>,
    says: Vec<String>,
    tokens: Vec<&'static str>,
    requests: usize,
}

fn error_cases() -> Vec<ErrorCase> {
    let done_less = sse_body(&[text("cut"), finish("stop")]);
    let case = |name, replies, says: &[&str], tokens: &[&'static str], requests| ErrorCase {
        name,
        replies,
        says: says.iter().map(|s| s.to_string()).collect(),
        tokens: tokens.to_vec(),
        requests,
    };
    vec![
        case(
            "401",
            vec![Reply::error(401, "Incorrect API key provided")],
            &[
                "refused the API key",
                "HTTP 401",
                "Incorrect API key provided",
            ],
            &[],
            1,
        ),
        case(
            "403",
            vec![Reply::error(403, "key disabled")],
            &["refused the API key", "HTTP 403", "key disabled"],
            &[],
            1,
        ),
        case(
            "404",
            vec![Reply::error(404, "model 'test-model' not found")],
            &[
                "model `test-model`",
                "/v1/chat/completions not found",
                "HTTP 404",
                "model 'test-model' not found",
            ],
            &[],
            1,
        ),
        case(
            "400 quotes the server's error.message",
            vec![Reply::error(400, "messages: too long")],
            &["rejected the request", "HTTP 400", "messages: too long"],
            &[],
            1,
        ),
        case(
            "422 quotes at most 300 characters of a plain body",
            vec![Reply::status(422, &[], &"x".repeat(2000))],
            &["HTTP 422", &"x".repeat(300), "x…"],
            &[],
            1,
        ),
        case(
            "5xx is retried max_retries times, then given up",
            vec![
                Reply::error(500, "boom"),
                Reply::error(502, "boom"),
                Reply::error(503, "still boom"),
                Reply::sse(&[text("never asked")]),
            ],
            &[
                "server error",
                "HTTP 503",
                "still boom",
                "gave up after 3 attempt",
            ],
            &[],
            3,
        ),
        case(
            "malformed JSON in a data line",
            vec![Reply::sse(&[text("ok"), "{\"choices\": [".into()])],
            &["malformed JSON", "{\"choices\": ["],
            &["ok"],
            1,
        ),
        case(
            "an error reported inside the stream",
            vec![Reply::sse(&[
                text("ok"),
                json!({"error": {"message": "upstream overloaded"}}).to_string(),
            ])],
            &["error in the stream", "upstream overloaded"],
            &["ok"],
            1,
        ),
        case(
            "a JSON answer instead of an event stream",
            vec![Reply::status(
                200,
                &[("content-type", "application/json")],
                r#"{"choices": [{"message": {"content": "hi"}}]}"#,
            )],
            &["instead of an event stream", "\"content\": \"hi\""],
            &[],
            1,
        ),
        case(
            "the connection closes without [DONE]",
            vec![Reply::sse_without_done(&[text("cut"), finish("stop")])],
            &["ended without `data: [DONE]`"],
            &["cut"],
            1,
        ),
        case(
            "a chunked body ends cleanly without [DONE]",
            vec![Reply::new(vec![
                Step::Write(chunked_sse_head()),
                Step::Write(http_chunk(&done_less)),
                Step::Write(http_chunk(b"")),
            ])],
            &["ended without `data: [DONE]`"],
            &["cut"],
            1,
        ),
        case(
            "a chunked body is cut inside a chunk",
            vec![Reply::new(vec![
                Step::Write(chunked_sse_head()),
                Step::Write(format!("{:x}\r\n", done_less.len() + 10).into_bytes()),
                Step::Write(done_less.clone()),
            ])],
            &["cut off before `data: [DONE]`"],
            &["cut"],
            1,
        ),
    ]
}

#[tokio::test]
async fn each_failure_ends_the_turn_with_a_clear_error() {
    for case in error_cases() {
        let server = FakeServer::start(case.replies).await;
        let (outcome, events) = run(config(&server.base_url), hello()).await;
        let error = match outcome {
            Err(ModelError::Failed(text)) => text,
            other => panic!("{}: expected a failed turn, got {other:?}", case.name),
        };
        for part in &case.says {
            assert!(
                error.contains(part),
                "{}: {error:?} lacks {part:?}",
                case.name
            );
        }
        assert!(error.chars().count() < 500, "{}: {error:?}", case.name);
        assert_eq!(tokens(&events), case.tokens, "{}", case.name);
        assert_eq!(server.requests().len(), case.requests, "{}", case.name);
    }
}

#[tokio::test]
async fn rate_limited_requests_are_retried_after_retry_after() {
    let server = FakeServer::start(vec![
        Reply::status(429, &[("retry-after", "1")], "slow down"),
        Reply::sse(&[text("finally"), finish("stop")]),
    ])
    .await;
    let started = Instant::now();
    let (outcome, events) = run(config(&server.base_url), hello()).await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(tokens(&events), ["finally"]);
    assert_eq!(server.requests().len(), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After honoured, not the 1 ms backoff"
    );
}

#[tokio::test]
async fn nothing_is_retried_once_text_has_been_streamed() {
    let server = FakeServer::start(vec![
        Reply::sse(&[
            text("Let me check."),
            tool_piece(0, Some("c"), Some("clock"), "{}"),
            finish("tool_calls"),
        ]),
        Reply::error(500, "crashed"),
        Reply::sse(&[text("a retry would have got this")]),
    ])
    .await;
    let (outcome, events) = run(config(&server.base_url), hello()).await;
    assert_contains(&failure(outcome), &["500", "crashed", "not retried"]);
    assert_eq!(tokens(&events), ["Let me check."]);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn chunks_split_at_awkward_byte_boundaries_reassemble() {
    let pieces = ["héllo ", "wörld ", "😀", " \u{2028}end"];
    let mut payloads: Vec<String> = pieces.iter().map(|p| text(p)).collect();
    payloads.push(tool_piece(
        0,
        Some("c"),
        Some("word_count"),
        r#"{"text": "é è"}"#,
    ));
    payloads.push(finish("tool_calls"));
    for (line_end, split_every) in [("\n", 1), ("\n", 3), ("\r\n", 2), ("\r\n", 7)] {
        let mut body: Vec<u8> = payloads
            .iter()
            .flat_map(|p| format!("data: {p}{line_end}{line_end}").into_bytes())
            .collect();
        body.extend_from_slice(format!("data: [DONE]{line_end}{line_end}").as_bytes());
        let mut steps = vec![Step::Write(sse_head())];
        for piece in body.chunks(split_every) {
            steps.push(Step::Write(piece.to_vec()));
            steps.push(Step::Pause(Duration::from_micros(200)));
        }
        let server =
            FakeServer::start(vec![Reply::new(steps), Reply::sse(&[finish("stop")])]).await;
        let (outcome, events) = run(config(&server.base_url), hello()).await;
        assert_eq!(outcome, Ok(()), "{line_end:?} every {split_every}");
        assert_eq!(tokens(&events), pieces, "{line_end:?} every {split_every}");
        assert!(events.contains(&ModelEvent::ToolEnd {
            call_id: "c".into(),
            is_error: false,
            result: "2".into()
        }));
    }
}

#[tokio::test]
async fn dropping_the_turn_closes_the_connection_at_once() {
    let mut steps = vec![Step::Write(sse_head())];
    for i in 0..500 {
        steps.push(Step::Write(sse_body(&[text(&format!("t{i} "))])));
        steps.push(Step::Pause(Duration::from_millis(20)));
    }
    let mut server = FakeServer::start(vec![Reply::new(steps)]).await;
    let model = OpenAi::new(config(&server.base_url), tools()).unwrap();
    let start = hello();
    let (tx, mut rx) = model_queue::channel(1 << 10);
    let (_verdicts, verdicts_rx) = mpsc::unbounded_channel();
    let sink = TurnSink::new(start.turn_id, tx, verdicts_rx);
    let task = tokio::spawn(model.run(start.clone(), sink));
    for _ in 0..3 {
        let (_, event) = rx.recv().await.expect("a token");
        assert!(matches!(event, ModelEvent::Token(_)), "{event:?}");
    }

    task.abort();
    let interrupted = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(1), server.client_closed())
        .await
        .expect("the server saw the connection close within 1 s");
    assert!(closed.duration_since(interrupted) < Duration::from_secs(1));
    assert!(task.await.unwrap_err().is_cancelled());
}

#[test]
fn the_provider_is_named_after_its_model() {
    let model = OpenAi::new(
        OpenAiConfig::new("llama3.1:8b", "http://127.0.0.1:1/v1"),
        tools(),
    )
    .unwrap();
    assert_eq!(model.name(), "openai:llama3.1:8b");
}

/// A call that waits for a person: the round's response has been read to its end (no HTTP
/// stream is being read, so no chunk timeout fires however long the person takes), and a
/// rejection goes back to the model as that call's result.
#[tokio::test]
async fn a_call_waiting_for_approval_holds_no_stream_and_a_rejection_reaches_the_model() {
    let server = FakeServer::start(vec![
        Reply::sse(&[
            tool_piece(0, Some("call_w"), Some("word_count"), r#"{"text": "a"}"#),
            finish("tool_calls"),
        ]),
        Reply::sse(&[text("Understood."), finish("stop")]),
    ])
    .await;
    let mut cfg = config(&server.base_url);
    cfg.chunk_timeout = Duration::from_millis(200);
    let model = OpenAi::new(cfg, tools()).expect("provider");
    let start = hello();
    let (tx, mut rx) = model_queue::channel(1 << 10);
    let (verdicts, verdicts_rx) = mpsc::unbounded_channel();
    let task =
        tokio::spawn(model.run(start.clone(), TurnSink::new(start.turn_id, tx, verdicts_rx)));
    let mut first = rx.recv().await.expect("an event").1;
    while matches!(first, ModelEvent::Usage(_) | ModelEvent::ToolArgs { .. }) {
        first = rx.recv().await.expect("an event").1;
    }
    assert!(
        matches!(&first, ModelEvent::ToolStart { call_id, .. } if call_id == "call_w"),
        "{first:?}"
    );
    // The round's response was read to its end before the call started; a person then takes
    // three chunk timeouts, which must not fail the turn.
    tokio::time::sleep(Duration::from_millis(600)).await;
    verdicts
        .send((
            "call_w".into(),
            Verdict::Refuse("rejected by tui: not now".into()),
        ))
        .unwrap();
    let mut events = Vec::new();
    while let Ok(Some((_, e))) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        events.push(e);
    }
    assert_eq!(task.await.unwrap(), Ok(()));
    assert!(
        events.contains(&ModelEvent::ToolEnd {
            call_id: "call_w".into(),
            is_error: true,
            result: "rejected by tui: not now".into()
        }),
        "{events:?}"
    );
    assert_eq!(tokens(&events), ["Understood."]);
    let messages = server.requests()[1].body["messages"].clone();
    assert_eq!(messages[2]["tool_call_id"], "call_w");
    assert_eq!(messages[2]["content"], "error: rejected by tui: not now");
}
