//! Tests that hold the hand-described params (`schema::params`) to the decoder they describe
//! (`methods::Call::parse`): for each case, the schema accepts the params exactly when the
//! decoder does. Cases the schema cannot decide are left out on purpose: a blank `content`, a
//! bound in bytes met in characters but not in bytes, `before` with `after`, and a tool's
//! `parameters` beyond its top level.

use serde_json::{json, Value};

use super::catalog::pascal;
use super::{check, Bundle};
use crate::methods::{self as m, Call};

fn cases() -> Vec<(&'static str, Value)> {
    let long = |n: usize| "x".repeat(n);
    vec![
        (m::INSTANCE_PING, json!({})),
        (m::INSTANCE_PING, json!({"future": 1})),
        (m::STATE_SYNC, json!({"project_id": "p"})),
        (m::STATE_SYNC, json!({"project_id": 5})),
        (m::SESSION_GET, json!({"session_id": "not-a-uuid"})),
        (m::SESSION_GET, json!({})),
        (m::SESSION_GET, json!({"session_id": 5})),
        (m::SESSION_CREATE, json!({"title": long(256)})),
        (m::SESSION_CREATE, json!({"title": long(257)})),
        (m::SESSION_CREATE, json!({"title": null})),
        (m::SESSION_CREATE, json!({"title": true})),
        (
            m::SESSION_INTERRUPT,
            json!({"session_id": "s", "clear_queue": true}),
        ),
        (
            m::SESSION_INTERRUPT,
            json!({"session_id": "s", "clear_queue": "yes"}),
        ),
        (m::MESSAGE_SEND, json!({"content": "hi"})),
        (m::MESSAGE_SEND, json!({"content": ""})),
        (m::MESSAGE_SEND, json!({"content": ["a"]})),
        (
            m::MESSAGE_SEND,
            json!({"content": "hi", "when_busy": "queue"}),
        ),
        (
            m::MESSAGE_SEND,
            json!({"content": "hi", "when_busy": "later"}),
        ),
        (
            m::MESSAGE_SEND,
            json!({"content": "hi", "request_id": long(257)}),
        ),
        (
            m::MESSAGE_SEND,
            json!({"content": "hi", "model": long(129)}),
        ),
        (
            m::MESSAGE_SEND,
            json!({"content": "hi", "session_id": null}),
        ),
        (
            m::MESSAGE_LIST,
            json!({"session_id": "s", "limit": 5, "before": "m"}),
        ),
        (m::MESSAGE_LIST, json!({"session_id": "s", "limit": 0})),
        (m::MESSAGE_LIST, json!({"session_id": "s", "limit": "5"})),
        (m::MESSAGE_GET, json!({"session_id": "s"})),
        (
            m::EVENTS_REPLAY,
            json!({"after_seq": 0, "prefixes": ["llm."], "limit": 9}),
        ),
        (m::EVENTS_REPLAY, json!({"after_seq": -1})),
        (m::EVENTS_REPLAY, json!({"after_seq": 1, "prefixes": "x"})),
        (
            m::EVENTS_REPLAY,
            json!({"after_seq": 1, "prefixes": [long(257)]}),
        ),
        (
            m::EVENTS_REPLAY,
            json!({"after_seq": 1, "prefixes": vec!["a"; 33]}),
        ),
        (m::HITL_RESPOND, json!({"id": "h", "decision": "approve"})),
        (m::HITL_RESPOND, json!({"id": "h", "answer": "b"})),
        (m::HITL_RESPOND, json!({"id": "h"})),
        (
            m::HITL_RESPOND,
            json!({"id": "h", "decision": "approve", "answer": "b"}),
        ),
        (m::HITL_RESPOND, json!({"id": "h", "decision": "maybe"})),
        (
            m::HITL_RESPOND,
            json!({"id": "h", "answer": "b", "decision": null}),
        ),
        (
            m::CLIENT_HELLO,
            json!({"client_id": "c", "name": "n", "protocol_versions": [1],
                   "tools": [{"name": "t", "parameters": {"type": "object"}}]}),
        ),
        (
            m::CLIENT_HELLO,
            json!({"client_id": "c", "name": "n", "protocol_versions": []}),
        ),
        (
            m::CLIENT_HELLO,
            json!({"client_id": "c", "name": "n", "protocol_versions": [0]}),
        ),
        (m::CLIENT_HELLO, json!({"client_id": "c", "name": "n"})),
        (
            m::CLIENT_HELLO,
            json!({"client_id": "c", "name": "n", "protocol_versions": [1],
                   "tools": [{"name": "bad name", "parameters": {"type": "object"}}]}),
        ),
        (
            m::CLIENT_HELLO,
            json!({"client_id": "c", "name": "n", "protocol_versions": [1],
                   "tools": [{"name": "t", "parameters": {"type": "array"}}]}),
        ),
        (m::TOOL_CLAIM, json!({"call_id": "call_1"})),
        (m::TOOL_CLAIM, json!({"turn_id": "t"})),
        (
            m::TOOL_RESULT,
            json!({"call_id": "c", "result": {"files": []}}),
        ),
        (m::TOOL_RESULT, json!({"call_id": "c", "result": null})),
        (
            m::TOOL_RESULT,
            json!({"call_id": "c", "result": "r", "is_error": 1}),
        ),
        (
            m::SESSION_CONFIGURE,
            json!({"session_id": "s", "model": null, "system_prompt": ""}),
        ),
        (
            m::SESSION_CONFIGURE,
            json!({"session_id": "s", "system_prompt": long(8193)}),
        ),
        (m::SESSION_CONFIGURE, json!({"session_id": "s", "model": 5})),
    ]
}

#[test]
fn params_schemas_accept_what_the_decoder_accepts() {
    let document = Bundle::protocol().json_schema();
    let mut accepted = 0;
    for (method, params) in cases() {
        let decoded = Call::parse(method, Some(params.clone()));
        let def = format!("{}Params", pascal(method));
        let valid = check(&document, &def, &params);
        assert_eq!(
            valid.is_ok(),
            decoded.is_ok(),
            "{method} {params}: schema {valid:?}, decoder {decoded:?}"
        );
        accepted += usize::from(decoded.is_ok());
    }
    assert!(
        accepted > 10,
        "the table has accepted cases as well as refused ones"
    );
}

#[test]
fn a_check_fails_on_a_wrong_shape_and_on_a_missing_def() {
    let document = Bundle::protocol().json_schema();
    assert!(check(&document, "SessionPayload", &json!({"id": "x"})).is_err());
    assert!(check(&document, "NoSuchType", &json!({})).is_err());
    let unknown_member = json!({"instance_id": "01a1ffe3-5dab-703a-ad8c-ac293c02d83a",
                                 "reason": "SIGTERM", "extra": 1});
    assert!(check(&document, "InstanceShutdownPayload", &unknown_member).is_ok());
    let not_a_uuid = json!({"instance_id": "01a1ffe3-…", "reason": "SIGTERM"});
    assert!(check(&document, "InstanceShutdownPayload", &not_a_uuid).is_err());
}
