//! Which type is which method's params and result, which is each topic's payload, which errors a
//! method may answer with, and the name of every error code: the tables the three documents are
//! built from. The tests below hold them to `methods::ALL`, the topics and the error
//! constructors, so a method, topic or code added without a line here fails.

use crate::clients::{
    ClientJoinedPayload, ClientLeftPayload, ClientListResult, HelloResult, ToolClaimResult,
    ToolClaimedPayload,
};
use crate::errors::code;
use crate::events::{
    topic, HeartbeatPayload, LlmEndPayload, LlmStartPayload, LlmTokenPayload, MessageAppendPayload,
    MessageDequeuedPayload, MessageQueuedPayload, PromotedPayload, SessionListPayload,
    ShutdownPayload, StatusPayload, ToolArgsPayload, ToolEndPayload, ToolStartPayload,
};
use crate::hitl::{HitlListResult, HitlRequest, RespondResult};
use crate::methods::*;
use crate::models::ModelListResult;
use crate::types::{MessagePayload, SessionPayload};
use crate::welcome::WelcomePayload;

use schemars::{JsonSchema, Schema, SchemaGenerator};

use super::params::*;

/// Every error code and its name: `data.kind` for the application codes (-32001 and on), the
/// JSON-RPC name for the standard ones, which carry no `kind`.
pub const ERRORS: &[(i64, &str)] = &[
    (code::PARSE_ERROR, "parse_error"),
    (code::INVALID_REQUEST, "invalid_request"),
    (code::METHOD_NOT_FOUND, "method_not_found"),
    (code::INVALID_PARAMS, "invalid_params"),
    (code::INTERNAL_ERROR, "internal_error"),
    (code::SESSION_NOT_FOUND, "session_not_found"),
    (code::SESSION_BUSY, "session_busy"),
    (code::MESSAGE_TOO_LARGE, "message_too_large"),
    (code::SERVER_BUSY, "server_busy"),
    (code::SHUTTING_DOWN, "shutting_down"),
    (code::INVALID_FRAMES, "invalid_frames"),
    (code::MESSAGE_NOT_FOUND, "message_not_found"),
    (code::REPLAY_UNAVAILABLE, "replay_unavailable"),
    (code::TOO_MANY_PENDING, "too_many_pending"),
    (code::TOO_MANY_SESSIONS, "too_many_sessions"),
    (code::STORE_UNAVAILABLE, "store_unavailable"),
    (code::HITL_NOT_FOUND, "hitl_not_found"),
    (code::HITL_RESOLVED, "hitl_resolved"),
    (code::VERSION_MISMATCH, "version_mismatch"),
    (code::TOOL_CLAIMED, "tool_claimed"),
    (code::TOOL_CALL_NOT_FOUND, "tool_call_not_found"),
    (code::NOT_CLAIMANT, "not_claimant"),
    (code::MODEL_NOT_FOUND, "model_not_found"),
    (code::QUEUE_FULL, "queue_full"),
    (code::TOO_MANY_CLIENTS, "too_many_clients"),
];

/// The name of `code`, from [`ERRORS`].
pub fn error_name(code: i64) -> Option<&'static str> {
    ERRORS.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// Errors any call may be answered with, whatever its method: its params over the shape bounds
/// (-32602), the server's queues full, this client's requests in flight, a failure inside.
pub const ANY_CALL: &[i64] = &[
    code::INVALID_PARAMS,
    code::SERVER_BUSY,
    code::TOO_MANY_PENDING,
    code::INTERNAL_ERROR,
];

/// One method: its params' and result's schemas, and the errors it may answer with beyond
/// [`ANY_CALL`] (where PROTOCOL.md §5 names them).
pub struct MethodSpec {
    pub name: &'static str,
    pub summary: &'static str,
    pub params: fn(&mut SchemaGenerator) -> Schema,
    pub result: fn(&mut SchemaGenerator) -> Schema,
    pub errors: &'static [i64],
}

/// One topic: its payload's schema, and whether its key is `topic/<session_id>` (the envelope
/// then has `session_id`).
pub struct TopicSpec {
    pub topic: &'static str,
    pub payload: fn(&mut SchemaGenerator) -> Schema,
    pub keyed: bool,
}

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// Every method, in the order PROTOCOL.md §5 gives them.
pub const METHODS: &[MethodSpec] = &[
    MethodSpec {
        name: INSTANCE_PING,
        summary: "Is the server there",
        params: schema_of::<NoParams>,
        result: schema_of::<PingResult>,
        errors: &[],
    },
    MethodSpec {
        name: INSTANCE_INFO,
        summary: "Instance details",
        params: schema_of::<NoParams>,
        result: schema_of::<InfoResult>,
        errors: &[],
    },
    MethodSpec {
        name: STATE_SYNC,
        summary: "The snapshot for the Clone pattern",
        params: schema_of::<StateSyncParams>,
        result: schema_of::<StateSyncResult>,
        errors: &[],
    },
    MethodSpec {
        name: SESSION_LIST,
        summary: "Every session",
        params: schema_of::<NoParams>,
        result: schema_of::<SessionListResult>,
        errors: &[],
    },
    MethodSpec {
        name: SESSION_GET,
        summary: "One session",
        params: schema_of::<SessionRefParams>,
        result: schema_of::<SessionPayload>,
        errors: &[code::SESSION_NOT_FOUND],
    },
    MethodSpec {
        name: SESSION_CREATE,
        summary: "Create a session",
        params: schema_of::<SessionCreateParams>,
        result: schema_of::<SessionPayload>,
        errors: &[
            code::TOO_MANY_SESSIONS,
            code::SHUTTING_DOWN,
            code::STORE_UNAVAILABLE,
        ],
    },
    MethodSpec {
        name: SESSION_DELETE,
        summary: "Delete a session, ending its turn and discarding its queue",
        params: schema_of::<SessionRefParams>,
        result: schema_of::<OkResult>,
        errors: &[
            code::SESSION_NOT_FOUND,
            code::SHUTTING_DOWN,
            code::STORE_UNAVAILABLE,
        ],
    },
    MethodSpec {
        name: SESSION_ACTIVATE,
        summary: "Make a session the active one",
        params: schema_of::<SessionRefParams>,
        result: schema_of::<OkResult>,
        errors: &[
            code::SESSION_NOT_FOUND,
            code::SHUTTING_DOWN,
            code::STORE_UNAVAILABLE,
        ],
    },
    MethodSpec {
        name: MODEL_LIST,
        summary: "The models this server runs",
        params: schema_of::<NoParams>,
        result: schema_of::<ModelListResult>,
        errors: &[],
    },
    MethodSpec {
        name: SESSION_CONFIGURE,
        summary: "Set a session's model and system prompt",
        params: schema_of::<SessionConfigureParams>,
        result: schema_of::<SessionPayload>,
        errors: &[
            code::SESSION_NOT_FOUND,
            code::MODEL_NOT_FOUND,
            code::SHUTTING_DOWN,
            code::STORE_UNAVAILABLE,
        ],
    },
    MethodSpec {
        name: MESSAGE_SEND,
        summary: "Append a user message and start (or queue) a turn",
        params: schema_of::<MessageSendParams>,
        result: schema_of::<SendResult>,
        errors: &[
            code::SESSION_NOT_FOUND,
            code::SESSION_BUSY,
            code::QUEUE_FULL,
            code::TOO_MANY_SESSIONS,
            code::MODEL_NOT_FOUND,
            code::SHUTTING_DOWN,
            code::STORE_UNAVAILABLE,
        ],
    },
    MethodSpec {
        name: MESSAGE_LIST,
        summary: "A page of a session's messages",
        params: schema_of::<MessageListParams>,
        result: schema_of::<MessageListResult>,
        errors: &[code::SESSION_NOT_FOUND, code::MESSAGE_NOT_FOUND],
    },
    MethodSpec {
        name: MESSAGE_GET,
        summary: "One message, whole",
        params: schema_of::<MessageGetParams>,
        result: schema_of::<MessagePayload>,
        errors: &[code::SESSION_NOT_FOUND, code::MESSAGE_NOT_FOUND],
    },
    MethodSpec {
        name: SESSION_INTERRUPT,
        summary: "End the running turn, optionally clearing the queue",
        params: schema_of::<SessionInterruptParams>,
        result: schema_of::<InterruptResult>,
        errors: &[code::SESSION_NOT_FOUND, code::SHUTTING_DOWN],
    },
    MethodSpec {
        name: HITL_LIST,
        summary: "The requests waiting for a person",
        params: schema_of::<HitlListParams>,
        result: schema_of::<HitlListResult>,
        errors: &[code::SESSION_NOT_FOUND],
    },
    MethodSpec {
        name: HITL_RESPOND,
        summary: "Answer a pending request; the first response wins",
        params: schema_of::<HitlRespondParams>,
        result: schema_of::<RespondResult>,
        errors: &[
            code::HITL_NOT_FOUND,
            code::HITL_RESOLVED,
            code::STORE_UNAVAILABLE,
        ],
    },
    MethodSpec {
        name: CLIENT_HELLO,
        summary: "Say who this client is, which versions it speaks and which tools it runs",
        params: schema_of::<ClientHelloParams>,
        result: schema_of::<HelloResult>,
        errors: &[
            code::VERSION_MISMATCH,
            code::TOO_MANY_CLIENTS,
            code::SHUTTING_DOWN,
        ],
    },
    MethodSpec {
        name: CLIENT_LIST,
        summary: "The clients present",
        params: schema_of::<NoParams>,
        result: schema_of::<ClientListResult>,
        errors: &[],
    },
    MethodSpec {
        name: CLIENT_GOODBYE,
        summary: "This client leaves now",
        params: schema_of::<NoParams>,
        result: schema_of::<OkResult>,
        errors: &[],
    },
    MethodSpec {
        name: TOOL_CLAIM,
        summary: "Claim a call of a client-run tool; the first claim wins",
        params: schema_of::<ToolClaimParams>,
        result: schema_of::<ToolClaimResult>,
        errors: &[
            code::TOOL_CLAIMED,
            code::TOOL_CALL_NOT_FOUND,
            code::NOT_CLAIMANT,
        ],
    },
    MethodSpec {
        name: TOOL_RESULT,
        summary: "The claimant's result of a client-run call",
        params: schema_of::<ToolResultParams>,
        result: schema_of::<OkResult>,
        errors: &[code::TOOL_CALL_NOT_FOUND, code::NOT_CLAIMANT],
    },
    MethodSpec {
        name: EVENTS_REPLAY,
        summary: "The events numbered above after_seq, from the replay ring",
        params: schema_of::<EventsReplayParams>,
        result: schema_of::<ReplayResult>,
        errors: &[code::REPLAY_UNAVAILABLE],
    },
];

/// Every topic; `instance.welcome` last: it is not an event (no `seq`, keyed by the token a
/// client asked it for, `instance.welcome/<token>`), its envelope is `WelcomeEnvelope`.
pub const TOPICS: &[TopicSpec] = &[
    TopicSpec {
        topic: topic::SESSION_LIST,
        payload: schema_of::<SessionListPayload>,
        keyed: false,
    },
    TopicSpec {
        topic: topic::SESSION_UPDATE,
        payload: schema_of::<SessionPayload>,
        keyed: true,
    },
    TopicSpec {
        topic: topic::SESSION_ACTIVATED,
        payload: schema_of::<SessionPayload>,
        keyed: true,
    },
    TopicSpec {
        topic: topic::SESSION_DELETED,
        payload: schema_of::<SessionPayload>,
        keyed: true,
    },
    TopicSpec {
        topic: topic::MESSAGE_APPEND,
        payload: schema_of::<MessageAppendPayload>,
        keyed: true,
    },
    TopicSpec {
        topic: topic::MESSAGE_QUEUED,
        payload: schema_of::<MessageQueuedPayload>,
        keyed: true,
    },
    TopicSpec {
        topic: topic::MESSAGE_DEQUEUED,
        payload: schema_of::<MessageDequeuedPayload>,
        keyed: true,
    },
    TopicSpec {
        topic: topic::LLM_START,
        payload: schema_of::<LlmStartPayload>,
        keyed: true,
    },
    TopicSpec {
        topic: topic::LLM_TOKEN,
        payload: schema_of::<LlmTokenPayload>,
        keyed: true,
    },
    TopicSpec {
        topic: topic::LLM_END,
        payload: schema_of::<LlmEndPayload>,
        keyed: true,
    },
    TopicSpec {
        topic: topic::TOOL_ARGS,
        payload: schema_of::<ToolArgsPayload>,
        keyed: true,
    },
    TopicSpec {
        topic: topic::TOOL_START,
        payload: schema_of::<ToolStartPayload>,
        keyed: true,
    },
    TopicSpec {
        topic: topic::TOOL_CLAIMED,
        payload: schema_of::<ToolClaimedPayload>,
        keyed: true,
    },
    TopicSpec {
        topic: topic::TOOL_END,
        payload: schema_of::<ToolEndPayload>,
        keyed: true,
    },
    TopicSpec {
        topic: topic::CLIENT_JOINED,
        payload: schema_of::<ClientJoinedPayload>,
        keyed: false,
    },
    TopicSpec {
        topic: topic::CLIENT_LEFT,
        payload: schema_of::<ClientLeftPayload>,
        keyed: false,
    },
    TopicSpec {
        topic: topic::HITL_PENDING,
        payload: schema_of::<HitlRequest>,
        keyed: true,
    },
    TopicSpec {
        topic: topic::HITL_RESOLVED,
        payload: schema_of::<HitlRequest>,
        keyed: true,
    },
    TopicSpec {
        topic: topic::INSTANCE_HEARTBEAT,
        payload: schema_of::<HeartbeatPayload>,
        keyed: false,
    },
    TopicSpec {
        topic: topic::INSTANCE_STATUS,
        payload: schema_of::<StatusPayload>,
        keyed: false,
    },
    TopicSpec {
        topic: topic::INSTANCE_SHUTDOWN,
        payload: schema_of::<ShutdownPayload>,
        keyed: false,
    },
    TopicSpec {
        topic: topic::INSTANCE_PROMOTED,
        payload: schema_of::<PromotedPayload>,
        keyed: false,
    },
    TopicSpec {
        topic: topic::INSTANCE_WELCOME,
        payload: schema_of::<WelcomePayload>,
        keyed: false,
    },
];

/// `a.b_c` -> `ABC`: the method's or topic's parts, split at `.` and `_`, capitalised, joined.
pub fn pascal(name: &str) -> String {
    name.split(['.', '_'])
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::errors::RpcError;
    use crate::methods as m;

    #[test]
    fn names_are_pascal_cased_parts() {
        assert_eq!(pascal("session.create"), "SessionCreate");
        assert_eq!(pascal("events.replay"), "EventsReplay");
        assert_eq!(pascal("instance.heartbeat"), "InstanceHeartbeat");
        assert_eq!(pascal("hitl.respond"), "HitlRespond");
        assert_eq!(pascal("a.b_c"), "ABC");
    }

    #[test]
    fn every_method_is_catalogued_once() {
        let listed: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
        let unique: BTreeSet<&str> = listed.iter().copied().collect();
        assert_eq!(unique.len(), listed.len(), "a method twice");
        let all: BTreeSet<&str> = m::ALL.iter().copied().collect();
        assert_eq!(unique, all);
    }

    #[test]
    fn error_names_are_the_kinds_the_constructors_write() {
        let h = crate::hitl::HitlRequest {
            id: crate::ids::HitlId(uuid::Uuid::nil()),
            session_id: crate::ids::SessionId(uuid::Uuid::nil()),
            turn_id: crate::ids::TurnId(uuid::Uuid::nil()),
            kind: crate::hitl::HitlType::Question,
            status: crate::hitl::HitlStatus::Answered,
            payload: crate::hitl::HitlPayload::Question {
                call_id: "c".into(),
                question: "q".into(),
                options: None,
                question_truncated: false,
            },
            response: None,
            resolved_by: None,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            resolved_at: None,
            expires_at: None,
        };
        let app = [
            RpcError::session_not_found("s"),
            RpcError::session_busy("s", "t"),
            RpcError::message_too_large(2, 1),
            RpcError::server_busy(),
            RpcError::shutting_down(),
            RpcError::invalid_frames(3),
            RpcError::message_not_found("before", "m"),
            RpcError::replay_unavailable("evicted", 1, 2),
            RpcError::too_many_pending(64, 1 << 25),
            RpcError::too_many_sessions(1, 1),
            RpcError::store_unavailable("disk full", None),
            RpcError::hitl_not_found("h"),
            RpcError::hitl_resolved(&h),
            RpcError::version_mismatch(&[7], &[1]),
            RpcError::tool_claimed("c", "x"),
            RpcError::tool_call_not_found("c", "unknown"),
            RpcError::not_claimant("c", "no hello", None),
            RpcError::model_not_found("m", &[]),
            RpcError::queue_full("s", "session", (1, 1), Some(1), 1),
            RpcError::too_many_clients(64),
        ];
        let mut named = BTreeSet::new();
        for e in app {
            let kind = e
                .data
                .as_ref()
                .and_then(|d| d.get("kind"))
                .and_then(Value::as_str);
            assert_eq!(kind, error_name(e.code), "code {}", e.code);
            named.insert(e.code);
        }
        for e in [
            RpcError::parse_error("x"),
            RpcError::invalid_request("x"),
            RpcError::method_not_found("x"),
            RpcError::invalid_params("f", "x"),
            RpcError::internal("x"),
        ] {
            assert!(error_name(e.code).is_some(), "code {}", e.code);
            named.insert(e.code);
        }
        let table: BTreeSet<i64> = ERRORS.iter().map(|(c, _)| *c).collect();
        assert_eq!(table.len(), ERRORS.len(), "a code twice");
        assert_eq!(
            named, table,
            "every code in the table has a constructor tested here"
        );
    }
}
