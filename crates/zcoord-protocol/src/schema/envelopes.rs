//! Frame 2 of a PUB message, as schemas: the envelope of a numbered event, whose `payload` is
//! the schema of its `topic`'s payload (one `if`/`then` per topic, from `catalog::TOPICS`), and
//! the envelope of an `instance.welcome`. `events::Envelope` writes both; the golden tests
//! validate what it writes against these.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Value};

use super::catalog::TOPICS;
use super::formats::Timestamp;
use crate::events::{topic, WelcomePayload};
use crate::ids::{InstanceId, SessionId};

/// `{seq, instance_id, topic, session_id?, timestamp, payload}` of every numbered event.
pub struct EventEnvelope;

impl JsonSchema for EventEnvelope {
    fn schema_name() -> Cow<'static, str> {
        "EventEnvelope".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let numbered = TOPICS.iter().filter(|t| t.topic != topic::INSTANCE_WELCOME);
        let mut topics = Vec::new();
        let mut cases = Vec::new();
        for spec in numbered {
            topics.push(Value::from(spec.topic));
            let payload = (spec.payload)(generator);
            // The envelope has `session_id` exactly when the key carries one.
            let session = if spec.keyed {
                json!({"required": ["session_id"]})
            } else {
                json!({"not": {"required": ["session_id"]}})
            };
            cases.push(json!({
                "if": {"properties": {"topic": {"const": spec.topic}}},
                "then": {"properties": {"payload": payload}, "allOf": [session]}
            }));
        }
        json_schema!({
            "type": "object",
            "description": "Frame 2 of a numbered event. `seq` grows by one per event over all topics; `session_id` is present exactly when the key (frame 1) is `topic/<session_id>`.",
            "required": ["seq", "instance_id", "topic", "timestamp", "payload"],
            "properties": {
                "seq": generator.subschema_for::<u64>(),
                "instance_id": generator.subschema_for::<InstanceId>(),
                "topic": {"enum": topics},
                "session_id": generator.subschema_for::<SessionId>(),
                "timestamp": generator.subschema_for::<Timestamp>(),
                "payload": {"type": "object"}
            },
            "allOf": cases
        })
    }
}

/// The envelope of an `instance.welcome`: keyed by the subscription it answers, not numbered
/// (its `seq` repeats the last event's), never replayed.
pub struct WelcomeEnvelope;

impl JsonSchema for WelcomeEnvelope {
    fn schema_name() -> Cow<'static, str> {
        "WelcomeEnvelope".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "description": "Frame 2 of an instance.welcome, published with the subscription itself as frame 1.",
            "required": ["seq", "instance_id", "topic", "timestamp", "payload"],
            "properties": {
                "seq": generator.subschema_for::<u64>(),
                "instance_id": generator.subschema_for::<InstanceId>(),
                "topic": {"const": topic::INSTANCE_WELCOME},
                "timestamp": generator.subschema_for::<Timestamp>(),
                "payload": generator.subschema_for::<WelcomePayload>()
            },
            "not": {"required": ["session_id"]}
        })
    }
}
