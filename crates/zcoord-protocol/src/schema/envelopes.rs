//! Frame 2 of an event, as a schema: the envelope whose `payload` is the schema of its `topic`'s
//! payload (one `if`/`then` per topic, from `catalog::TOPICS`). `events::Envelope` writes it; the
//! golden tests validate what it writes against this. (A welcome's envelope is a type of its own,
//! `welcome::WelcomeEnvelope`, derived.)

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Value};

use super::catalog::TOPICS;
use super::formats::Timestamp;
use crate::events::topic;
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
