//! Golden JSON for every wire shape, both ways: what we emit is exactly this JSON, and this JSON
//! decodes back to the same value. A change here is a protocol change.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;
use uuid::Uuid;

use super::clients::*;
use super::events::*;
use super::hitl::*;
use super::ids::*;
use super::methods::*;
use super::models::*;
use super::types::*;
use super::usage::*;

const T: OffsetDateTime = datetime!(2026-03-04 05:06:07.5 UTC);
const T_JSON: &str = "2026-03-04T05:06:07.5Z";

fn sid() -> SessionId {
    SessionId(Uuid::from_u128(1))
}
fn tid() -> TurnId {
    TurnId(Uuid::from_u128(2))
}
fn mid() -> MessageId {
    MessageId(Uuid::from_u128(3))
}
fn iid() -> InstanceId {
    InstanceId(Uuid::from_u128(4))
}
const S: &str = "00000000-0000-0000-0000-000000000001";
const TU: &str = "00000000-0000-0000-0000-000000000002";
const M: &str = "00000000-0000-0000-0000-000000000003";
const I: &str = "00000000-0000-0000-0000-000000000004";

/// The generated schema document, built once for all the checks of a test binary.
fn schema() -> &'static Value {
    static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOC.get_or_init(|| crate::schema::Bundle::protocol().json_schema())
}

/// `golden` is valid against `$defs/<def>`.
fn conforms(def: &str, golden: &Value) {
    if let Err(e) = crate::schema::check(schema(), def, golden) {
        panic!("{e}\n{golden:#}");
    }
}

/// Golden JSON both ways, and valid against the type's own schema.
fn both_ways<T>(v: &T, golden: Value)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + JsonSchema,
{
    conforms(&T::schema_name(), &golden);
    assert_eq!(serde_json::to_value(v).unwrap(), golden, "serialise");
    let back: T = serde_json::from_value(golden).unwrap();
    assert_eq!(&back, v, "deserialise");
}

fn session() -> SessionPayload {
    SessionPayload {
        id: sid(),
        title: "t".into(),
        created_at: T,
        updated_at: T,
        message_count: 2,
        status: SessionStatus::Running,
        grants: vec![],
        model: None,
        system_prompt: None,
        queue_length: 0,
        usage: SessionUsage {
            input_tokens: 120,
            output_tokens: 30,
            cached_input_tokens: 64,
            reasoning_tokens: 0,
            turns: 1,
        },
    }
}

fn session_json() -> Value {
    json!({"id": S, "title": "t", "created_at": T_JSON, "updated_at": T_JSON,
           "message_count": 2, "status": "running",
           "usage": {"input_tokens": 120, "output_tokens": 30, "cached_input_tokens": 64,
                     "reasoning_tokens": 0, "turns": 1}})
}

#[test]
fn shared_shapes() {
    both_ways(&session(), session_json());
    both_ways(
        &MessagePayload {
            id: mid(),
            session_id: sid(),
            turn_id: Some(tid()),
            role: Role::Assistant,
            content: "hi".into(),
            created_at: T,
            status: MessageStatus::Interrupted,
            tool: None,
            author: None,
        },
        json!({"id": M, "session_id": S, "turn_id": TU, "role": "assistant", "content": "hi",
               "created_at": T_JSON, "status": "interrupted"}),
    );
}

/// An event as `events.replay` returns it: the envelope exactly as it was published.
fn replayed_token() -> Value {
    json!({"seq": 5, "instance_id": I, "topic": "llm.token", "session_id": S,
           "timestamp": T_JSON,
           "payload": {"session_id": S, "turn_id": TU, "index": 0, "token": "echo:"}})
}

#[test]
fn method_results() {
    both_ways(
        &PingResult {
            status: "ok".into(),
            instance_id: iid(),
            uptime: "1m2s".into(),
        },
        json!({"status": "ok", "instance_id": I, "uptime": "1m2s"}),
    );
    both_ways(
        &InfoResult {
            instance_id: iid(),
            version: "0.1.0".into(),
            protocol_version: 1,
            pid: 9,
            started_at: T,
            uptime: "0s".into(),
            endpoints: Endpoints {
                rpc: "ipc:///r".into(),
                pub_: "ipc:///p".into(),
            },
            session_count: 1,
            max_sessions: 10_000,
            active_session_id: Some(sid()),
            model: "echo".into(),
            models: vec![ModelInfo {
                name: "echo".into(),
                provider: "echo".into(),
                default: true,
                context_bytes: 262_144,
            }],
            seq: 7,
            running_turns: 0,
            drops: DropCounters::default(),
            store: "memory".into(),
            recovered_turns: 1,
            promoted_from: None,
            replay: ReplayInfo {
                events: 7,
                bytes: 2048,
                oldest_seq: 1,
                max_events: 50_000,
                max_bytes: 1 << 25,
            },
            transport: TransportInfo {
                connections_rpc: 2,
                connections_pub: 3,
                connections_refused: 0,
                pub_bytes_held: 4096,
                subscribers_evicted: 1,
            },
            status: Health::Degraded,
            degraded: Some(DegradedInfo {
                reason: "database or disk is full (retrying)".into(),
                since: T,
            }),
            heartbeat_interval_ms: 50,
        },
        json!({"instance_id": I, "version": "0.1.0", "protocol_version": 1, "pid": 9,
               "started_at": T_JSON, "uptime": "0s",
               "endpoints": {"rpc": "ipc:///r", "pub": "ipc:///p"},
               "session_count": 1, "max_sessions": 10_000, "active_session_id": S,
               "model": "echo",
               "models": [{"name": "echo", "provider": "echo", "default": true,
                           "context_bytes": 262_144}],
               "seq": 7,
               "running_turns": 0,
               "drops": {"replies_dropped": 0, "outbound_dropped": 0,
                         "requests_refused_busy": 0, "requests_dropped": 0},
               "store": "memory", "recovered_turns": 1,
               "replay": {"events": 7, "bytes": 2048, "oldest_seq": 1,
                          "max_events": 50_000, "max_bytes": 33_554_432},
               "transport": {"connections_rpc": 2, "connections_pub": 3, "connections_refused": 0,
                             "pub_bytes_held": 4096, "subscribers_evicted": 1},
               "status": "degraded",
               "degraded": {"reason": "database or disk is full (retrying)", "since": T_JSON},
               "heartbeat_interval_ms": 50}),
    );
    both_ways(
        &ReplayResult {
            instance_id: iid(),
            events: vec![replayed_token()],
            next_after_seq: 9,
            has_more: false,
            oldest_seq: 3,
            latest_seq: 9,
        },
        json!({"instance_id": I, "events": [replayed_token()],
               "next_after_seq": 9, "has_more": false, "oldest_seq": 3, "latest_seq": 9}),
    );
    both_ways(
        &StateSyncResult {
            sessions: vec![session()],
            active_session_id: None,
            instance_id: iid(),
            seq: 42,
            hitl: vec![],
            clients: vec![client()],
        },
        json!({"sessions": [session_json()], "instance_id": I, "seq": 42, "hitl": [],
               "clients": [client_json()]}),
    );
    both_ways(
        &SessionListResult {
            sessions: vec![session()],
        },
        json!({"sessions": [session_json()]}),
    );
    both_ways(&OkResult { ok: true }, json!({"ok": true}));
    both_ways(
        &SendResult {
            ok: true,
            session_id: sid(),
            message_id: mid(),
            turn_id: tid(),
            queued: false,
            position: None,
        },
        json!({"ok": true, "session_id": S, "message_id": M, "turn_id": TU}),
    );
    both_ways(
        &MessageListResult {
            messages: vec![],
            has_more: true,
        },
        json!({"messages": [], "has_more": true}),
    );
    both_ways(
        &InterruptResult {
            ok: true,
            interrupted: false,
            cleared: None,
        },
        json!({"ok": true, "interrupted": false}),
    );
}

#[test]
fn queue_shapes() {
    both_ways(
        &SendResult {
            ok: true,
            session_id: sid(),
            message_id: mid(),
            turn_id: tid(),
            queued: true,
            position: Some(2),
        },
        json!({"ok": true, "session_id": S, "message_id": M, "turn_id": TU,
               "queued": true, "position": 2}),
    );
    both_ways(
        &InterruptResult {
            ok: true,
            interrupted: true,
            cleared: Some(5),
        },
        json!({"ok": true, "interrupted": true, "cleared": 5}),
    );
    both_ways(
        &SessionPayload {
            queue_length: 3,
            ..session()
        },
        {
            let mut j = session_json();
            j["queue_length"] = json!(3);
            j
        },
    );
}

const H: &str = "00000000-0000-0000-0000-000000000005";

/// A tool approval waiting for a person.
fn approval() -> HitlRequest {
    HitlRequest {
        id: HitlId(Uuid::from_u128(5)),
        session_id: sid(),
        turn_id: tid(),
        kind: HitlType::ToolApproval,
        status: HitlStatus::Pending,
        payload: HitlPayload::ToolApproval {
            tool_name: "write_file".into(),
            call_id: "call_1".into(),
            params: "{\"path\":\"a.txt\"}".into(),
            params_truncated: false,
        },
        response: None,
        resolved_by: None,
        created_at: T,
        resolved_at: None,
        expires_at: Some(T),
    }
}

fn approval_json() -> Value {
    json!({"id": H, "session_id": S, "turn_id": TU, "type": "tool_approval", "status": "pending",
           "payload": {"tool_name": "write_file", "call_id": "call_1",
                       "params": "{\"path\":\"a.txt\"}"},
           "created_at": T_JSON, "expires_at": T_JSON})
}

/// A question, answered.
fn answered() -> HitlRequest {
    HitlRequest {
        kind: HitlType::Question,
        status: HitlStatus::Answered,
        payload: HitlPayload::Question {
            call_id: "call_2".into(),
            question: "Which?".into(),
            options: Some(vec!["a".into(), "b".into()]),
            question_truncated: false,
        },
        response: Some(HitlResponse::Answer {
            answer: "b".into(),
            answer_truncated: false,
        }),
        resolved_by: Some("editor".into()),
        resolved_at: Some(T),
        expires_at: None,
        ..approval()
    }
}

fn answered_json() -> Value {
    json!({"id": H, "session_id": S, "turn_id": TU, "type": "question", "status": "answered",
           "payload": {"call_id": "call_2", "question": "Which?", "options": ["a", "b"]},
           "response": {"answer": "b"}, "resolved_by": "editor",
           "created_at": T_JSON, "resolved_at": T_JSON})
}

#[test]
fn hitl_shapes() {
    both_ways(&approval(), approval_json());
    both_ways(&answered(), answered_json());
    let rejected = HitlRequest {
        status: HitlStatus::Rejected,
        response: Some(HitlResponse::Decision {
            decision: Decision::ApproveSession,
            reason: Some("ok for now".into()),
        }),
        resolved_by: Some("anonymous".into()),
        ..approval()
    };
    let mut golden = approval_json();
    golden["status"] = json!("rejected");
    golden["response"] = json!({"decision": "approve_session", "reason": "ok for now"});
    golden["resolved_by"] = json!("anonymous");
    both_ways(&rejected, golden);
    both_ways(
        &HitlListResult {
            requests: vec![approval()],
        },
        json!({"requests": [approval_json()]}),
    );
    both_ways(
        &RespondResult {
            ok: true,
            request: answered(),
        },
        json!({"ok": true, "request": answered_json()}),
    );
    // Cut texts say so.
    let cut = HitlPayload::Question {
        call_id: "c".into(),
        question: "q".into(),
        options: None,
        question_truncated: true,
    };
    both_ways(
        &cut,
        json!({"call_id": "c", "question": "q", "question_truncated": true}),
    );
}

#[test]
fn model_shapes() {
    both_ways(
        &ModelListResult {
            default: "fast".into(),
            models: vec![
                ModelInfo {
                    name: "fast".into(),
                    provider: "openai:small".into(),
                    default: true,
                    context_bytes: 131_072,
                },
                ModelInfo {
                    name: "offline".into(),
                    provider: "echo".into(),
                    default: false,
                    context_bytes: 262_144,
                },
            ],
        },
        json!({"default": "fast", "models": [
            {"name": "fast", "provider": "openai:small", "default": true, "context_bytes": 131_072},
            {"name": "offline", "provider": "echo", "default": false, "context_bytes": 262_144}]}),
    );
    // A configured session shows its settings; an unconfigured one has neither member.
    let configured = SessionPayload {
        model: Some("fast".into()),
        system_prompt: Some("Answer in French.".into()),
        ..session()
    };
    let mut golden = session_json();
    golden["model"] = json!("fast");
    golden["system_prompt"] = json!("Answer in French.");
    both_ways(&configured, golden);
    // session.configure: absent keeps, null resets, a string sets.
    let params = json!({"session_id": S, "model": null, "system_prompt": "Be brief."});
    assert_eq!(
        Call::parse(SESSION_CONFIGURE, Some(params)).unwrap(),
        Call::SessionConfigure(Configure {
            session_id: S.into(),
            model: Setting::Reset,
            system_prompt: Setting::Set("Be brief.".into()),
        })
    );
    let params = json!({"session_id": S, "model": "fast"});
    assert_eq!(
        Call::parse(SESSION_CONFIGURE, Some(params)).unwrap(),
        Call::SessionConfigure(Configure {
            session_id: S.into(),
            model: Setting::Set("fast".into()),
            system_prompt: Setting::Keep,
        })
    );
    let params = json!({"content": "hi", "model": "offline"});
    let Call::MessageSend(send) = Call::parse(MESSAGE_SEND, Some(params)).unwrap() else {
        panic!("message.send parses as a send");
    };
    assert_eq!(send.model.as_deref(), Some("offline"));
}

/// Each event: its golden payload, its key, and decoding it back by topic.
#[test]
fn events_payloads_and_keys() {
    let cases: Vec<(Event, Value, String)> = vec![
        (
            Event::SessionList(SessionListPayload {
                sessions: vec![session()],
                session_count: 20,
                truncated: true,
            }),
            json!({"sessions": [session_json()], "session_count": 20, "truncated": true}),
            "session.list".into(),
        ),
        (
            Event::SessionUpdate(session()),
            session_json(),
            format!("session.update/{S}"),
        ),
        (
            Event::SessionActivated(session()),
            session_json(),
            format!("session.activated/{S}"),
        ),
        (
            Event::SessionDeleted(session()),
            session_json(),
            format!("session.deleted/{S}"),
        ),
        (
            Event::MessageAppend(MessageAppendPayload {
                session_id: sid(),
                message_id: mid(),
                role: Role::User,
                content: "q".into(),
                turn_id: Some(tid()),
                status: MessageStatus::Complete,
                created_at: T,
                tool: None,
                content_bytes: None,
                content_truncated: false,
                author: None,
            }),
            json!({"session_id": S, "message_id": M, "role": "user", "content": "q",
                   "turn_id": TU, "status": "complete", "created_at": T_JSON}),
            format!("message.append/{S}"),
        ),
        (
            Event::MessageAppend(MessageAppendPayload {
                session_id: sid(),
                message_id: mid(),
                role: Role::User,
                content: "q".into(),
                turn_id: Some(tid()),
                status: MessageStatus::Complete,
                created_at: T,
                tool: None,
                content_bytes: Some(9000),
                content_truncated: true,
                author: None,
            }),
            json!({"session_id": S, "message_id": M, "role": "user", "content": "q",
                   "turn_id": TU, "status": "complete", "created_at": T_JSON,
                   "content_bytes": 9000, "content_truncated": true}),
            format!("message.append/{S}"),
        ),
        (
            Event::LlmStart(LlmStartPayload {
                session_id: sid(),
                turn_id: tid(),
                model: "fast".into(),
            }),
            json!({"session_id": S, "turn_id": TU, "model": "fast"}),
            format!("llm.start/{S}"),
        ),
        (
            Event::LlmToken(LlmTokenPayload {
                session_id: sid(),
                turn_id: tid(),
                index: 3,
                token: " hi".into(),
            }),
            json!({"session_id": S, "turn_id": TU, "index": 3, "token": " hi"}),
            format!("llm.token/{S}"),
        ),
        (
            Event::LlmEnd(LlmEndPayload {
                session_id: sid(),
                turn_id: tid(),
                tokens_in: 5,
                tokens_out: 6,
                reason: EndReason::Error,
                error: Some("boom".into()),
                usage: TurnUsage {
                    input_tokens: 5,
                    output_tokens: 6,
                    cached_input_tokens: None,
                    reasoning_tokens: None,
                    context_tokens: 11,
                    context_window: None,
                    estimated: vec![UsageFigure::InputTokens, UsageFigure::ContextTokens],
                },
            }),
            json!({"session_id": S, "turn_id": TU, "tokens_in": 5, "tokens_out": 6,
                   "reason": "error", "error": "boom",
                   "usage": {"input_tokens": 5, "output_tokens": 6, "context_tokens": 11,
                             "estimated": ["input_tokens", "context_tokens"]}}),
            format!("llm.end/{S}"),
        ),
        (
            Event::LlmEnd(LlmEndPayload {
                session_id: sid(),
                turn_id: tid(),
                tokens_in: 1200,
                tokens_out: 80,
                reason: EndReason::Completed,
                error: None,
                usage: TurnUsage {
                    input_tokens: 1200,
                    output_tokens: 80,
                    cached_input_tokens: Some(1024),
                    reasoning_tokens: Some(32),
                    context_tokens: 700,
                    context_window: Some(8192),
                    estimated: vec![],
                },
            }),
            json!({"session_id": S, "turn_id": TU, "tokens_in": 1200, "tokens_out": 80,
                   "reason": "completed",
                   "usage": {"input_tokens": 1200, "output_tokens": 80,
                             "cached_input_tokens": 1024, "reasoning_tokens": 32,
                             "context_tokens": 700, "context_window": 8192,
                             "estimated": []}}),
            format!("llm.end/{S}"),
        ),
        (
            Event::ToolArgs(ToolArgsPayload {
                session_id: sid(),
                turn_id: tid(),
                call_id: "call_1".into(),
                tool_name: "word_count".into(),
                index: 0,
                delta: "{\"text\": ".into(),
            }),
            json!({"session_id": S, "turn_id": TU, "call_id": "call_1",
                   "tool_name": "word_count", "index": 0, "delta": "{\"text\": "}),
            format!("tool.args/{S}"),
        ),
        (
            Event::ToolStart(ToolStartPayload {
                session_id: sid(),
                turn_id: tid(),
                tool_name: "clock".into(),
                call_id: "call_1".into(),
                params: "{}".into(),
                params_truncated: false,
                executor: Executor::Server,
                awaiting_approval: false,
            }),
            json!({"session_id": S, "turn_id": TU, "tool_name": "clock", "call_id": "call_1",
                   "params": "{}", "executor": "server"}),
            format!("tool.start/{S}"),
        ),
        (
            Event::ToolEnd(ToolEndPayload {
                session_id: sid(),
                turn_id: tid(),
                tool_name: "clock".into(),
                call_id: "call_1".into(),
                is_error: false,
                result: "now".into(),
                result_truncated: false,
            }),
            json!({"session_id": S, "turn_id": TU, "tool_name": "clock", "call_id": "call_1",
                   "is_error": false, "result": "now"}),
            format!("tool.end/{S}"),
        ),
        (
            Event::ToolEnd(ToolEndPayload {
                session_id: sid(),
                turn_id: tid(),
                tool_name: "clock".into(),
                call_id: "call_1".into(),
                is_error: false,
                result: "n".into(),
                result_truncated: true,
            }),
            json!({"session_id": S, "turn_id": TU, "tool_name": "clock", "call_id": "call_1",
                   "is_error": false, "result": "n", "result_truncated": true}),
            format!("tool.end/{S}"),
        ),
        (
            Event::InstanceHeartbeat(HeartbeatPayload {
                instance_id: iid(),
                active_session_id: None,
                session_count: 0,
                uptime: "5s".into(),
                started_at: T,
                promoted_from: None,
                status: Health::Ok,
                reason: None,
                heartbeat_interval_ms: 5000,
            }),
            json!({"instance_id": I, "session_count": 0, "uptime": "5s", "started_at": T_JSON,
                   "status": "ok", "heartbeat_interval_ms": 5000}),
            "instance.heartbeat".into(),
        ),
        (
            Event::InstanceStatus(StatusPayload {
                instance_id: iid(),
                status: Health::Degraded,
                reason: Some("database or disk is full".into()),
                since: Some(T),
            }),
            json!({"instance_id": I, "status": "degraded", "reason": "database or disk is full",
                   "since": T_JSON}),
            "instance.status".into(),
        ),
        (
            Event::InstanceShutdown(ShutdownPayload {
                instance_id: iid(),
                reason: "SIGTERM".into(),
            }),
            json!({"instance_id": I, "reason": "SIGTERM"}),
            "instance.shutdown".into(),
        ),
        (
            Event::InstancePromoted(PromotedPayload {
                instance_id: iid(),
                previous_instance_id: Some(InstanceId(Uuid::from_u128(9))),
            }),
            json!({"instance_id": I, "previous_instance_id": "00000000-0000-0000-0000-000000000009"}),
            "instance.promoted".into(),
        ),
        (
            Event::HitlPending(approval()),
            approval_json(),
            format!("hitl.pending/{S}"),
        ),
        (
            Event::HitlResolved(answered()),
            answered_json(),
            format!("hitl.resolved/{S}"),
        ),
        (
            Event::ClientJoined(ClientJoinedPayload {
                client: client(),
                rejoined: false,
            }),
            {
                let mut j = client_json();
                j["rejoined"] = json!(false);
                j
            },
            "client.joined".into(),
        ),
        (
            Event::ClientLeft(ClientLeftPayload {
                client_id: "vscode-1".into(),
                name: "VS Code".into(),
                reason: LeaveReason::Timeout,
            }),
            json!({"client_id": "vscode-1", "name": "VS Code", "reason": "timeout"}),
            "client.left".into(),
        ),
        (
            Event::ToolClaimed(ToolClaimedPayload {
                session_id: sid(),
                turn_id: tid(),
                call_id: "call_1".into(),
                tool_name: "open_editors".into(),
                client_id: "vscode-1".into(),
            }),
            json!({"session_id": S, "turn_id": TU, "call_id": "call_1",
                   "tool_name": "open_editors", "client_id": "vscode-1"}),
            format!("tool.claimed/{S}"),
        ),
        (
            Event::MessageQueued(MessageQueuedPayload {
                session_id: sid(),
                message_id: mid(),
                turn_id: tid(),
                content: "and then this".into(),
                position: 1,
                queued_at: T,
                content_bytes: None,
                content_truncated: false,
            }),
            json!({"session_id": S, "message_id": M, "turn_id": TU, "content": "and then this",
                   "position": 1, "queued_at": T_JSON}),
            format!("message.queued/{S}"),
        ),
        (
            Event::MessageDequeued(MessageDequeuedPayload {
                session_id: sid(),
                message_id: mid(),
                turn_id: tid(),
                reason: DequeueReason::Started,
                queue_length: 0,
            }),
            json!({"session_id": S, "message_id": M, "turn_id": TU, "reason": "started",
                   "queue_length": 0}),
            format!("message.dequeued/{S}"),
        ),
        (
            Event::MessageDequeued(MessageDequeuedPayload {
                session_id: sid(),
                message_id: mid(),
                turn_id: tid(),
                reason: DequeueReason::Cleared,
                queue_length: 4,
            }),
            json!({"session_id": S, "message_id": M, "turn_id": TU, "reason": "cleared",
                   "queue_length": 4}),
            format!("message.dequeued/{S}"),
        ),
    ];
    let topics: std::collections::HashSet<&str> = cases.iter().map(|(e, ..)| e.topic()).collect();
    assert_eq!(
        topics.len(),
        22,
        "every topic (the welcome is not an event: welcome.rs)"
    );
    let catalogued: std::collections::HashSet<&str> = crate::schema::catalog::TOPICS
        .iter()
        .map(|t| t.topic)
        .filter(|t| *t != topic::INSTANCE_WELCOME)
        .collect();
    assert_eq!(topics, catalogued, "every topic is in the schema catalog");
    for (event, golden, key) in cases {
        let spec = crate::schema::catalog::TOPICS
            .iter()
            .find(|t| t.topic == event.topic())
            .unwrap();
        assert_eq!(spec.keyed, event.session_id().is_some(), "{}", spec.topic);
        let pascal = crate::schema::catalog::pascal(spec.topic);
        conforms(&format!("{pascal}Payload"), &golden);
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            golden,
            "{}",
            event.topic()
        );
        let mut written = String::new();
        event.write_key(&mut written);
        assert_eq!(written, key);
        assert_eq!(Event::decode(event.topic(), golden).unwrap(), event);
    }
    assert!(Event::decode("no.such", json!({})).is_err());
}

fn client() -> ClientInfo {
    ClientInfo {
        client_id: "vscode-1".into(),
        name: "VS Code".into(),
        version: Some("1.2.0".into()),
        protocol_version: 1,
        connected_at: T,
        last_seen_at: T,
        tools: vec!["open_editors".into()],
    }
}

fn client_json() -> Value {
    json!({"client_id": "vscode-1", "name": "VS Code", "version": "1.2.0",
           "protocol_version": 1, "connected_at": T_JSON, "last_seen_at": T_JSON,
           "tools": ["open_editors"]})
}

#[test]
fn client_shapes() {
    both_ways(
        &HelloResult {
            protocol_version: 1,
            server_version: "0.1.0".into(),
            instance_id: iid(),
            capabilities: ServerCapabilities {
                client_tools: true,
                hitl: true,
                replay: true,
                client_timeout_secs: 15,
                tool_claim_timeout_secs: 30,
            },
        },
        json!({"protocol_version": 1, "server_version": "0.1.0", "instance_id": I,
               "capabilities": {"client_tools": true, "hitl": true, "replay": true,
                                "client_timeout_secs": 15, "tool_claim_timeout_secs": 30}}),
    );
    both_ways(
        &ClientListResult {
            clients: vec![client()],
        },
        json!({"clients": [client_json()]}),
    );
    both_ways(
        &ToolClaimResult {
            ok: true,
            session_id: sid(),
            turn_id: tid(),
            call_id: "call_1".into(),
            tool_name: "open_editors".into(),
            params: "{\"limit\":5}".into(),
        },
        json!({"ok": true, "session_id": S, "turn_id": TU, "call_id": "call_1",
               "tool_name": "open_editors", "params": "{\"limit\":5}"}),
    );
    both_ways(
        &ToolStartPayload {
            session_id: sid(),
            turn_id: tid(),
            tool_name: "open_editors".into(),
            call_id: "call_1".into(),
            params: "{}".into(),
            params_truncated: false,
            executor: Executor::Client,
            awaiting_approval: true,
        },
        json!({"session_id": S, "turn_id": TU, "tool_name": "open_editors",
               "call_id": "call_1", "params": "{}", "executor": "client",
               "awaiting_approval": true}),
    );
    both_ways(
        &MessageAppendPayload {
            session_id: sid(),
            message_id: mid(),
            role: Role::User,
            content: "hi".into(),
            turn_id: Some(tid()),
            status: MessageStatus::Complete,
            created_at: T,
            tool: None,
            content_bytes: None,
            content_truncated: false,
            author: Some(Author {
                client_id: "vscode-1".into(),
                name: "VS Code".into(),
            }),
        },
        json!({"session_id": S, "message_id": M, "role": "user", "content": "hi",
               "turn_id": TU, "status": "complete", "created_at": T_JSON,
               "author": {"client_id": "vscode-1", "name": "VS Code"}}),
    );
    // A tool.start from before executors existed reads as the server's.
    let old: ToolStartPayload = serde_json::from_value(json!({"session_id": S, "turn_id": TU,
        "tool_name": "clock", "call_id": "c", "params": "{}"}))
    .unwrap();
    assert_eq!(old.executor, Executor::Server);
}

#[test]
fn envelope_golden() {
    let p = EventEncoder::default().encode(
        9,
        T,
        Event::LlmStart(LlmStartPayload {
            session_id: sid(),
            turn_id: tid(),
            model: "echo".into(),
        }),
        iid(),
    );
    assert_eq!(&*p.key, format!("llm.start/{S}"));
    let v: Value = serde_json::from_slice(&p.body).unwrap();
    conforms("EventEnvelope", &v);
    assert_eq!(
        v,
        json!({"seq": 9, "instance_id": I, "topic": "llm.start", "session_id": S,
               "timestamp": T_JSON, "payload": {"session_id": S, "turn_id": TU, "model": "echo"}})
    );
    let hb = EventEncoder::default().encode(
        1,
        T,
        Event::InstanceShutdown(ShutdownPayload {
            instance_id: iid(),
            reason: "x".into(),
        }),
        iid(),
    );
    let v: Value = serde_json::from_slice(&hb.body).unwrap();
    conforms("EventEnvelope", &v);
    assert!(
        v.get("session_id").is_none(),
        "no session_id member for instance events"
    );
}

#[test]
fn encoder_reuse() {
    let mut enc = EventEncoder::default();
    // The encoder's scratch buffers carry nothing from one event into the next, and a repeated
    // key is shared rather than rebuilt.
    let start = || {
        Event::LlmStart(LlmStartPayload {
            session_id: sid(),
            turn_id: tid(),
            model: "echo".into(),
        })
    };
    let a = enc.encode(1, T, start(), iid());
    let b = enc.encode(2, T, start(), iid());
    assert!(std::sync::Arc::ptr_eq(&a.key, &b.key));
    assert_eq!(a.body.len(), b.body.len());
    // A fresh encoder writes the same: nothing carries over from the events before.
    assert_eq!(EventEncoder::default().encode(2, T, start(), iid()), b);
}
