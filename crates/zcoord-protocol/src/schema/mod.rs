//! JSON Schema generated from the wire types: one 2020-12 document whose `$defs` name every type
//! (`zcoord.schema.json`), and the OpenRPC (methods) and AsyncAPI (events) documents built on the
//! same defs. The types are the source of truth; `proto-docs/schema/` holds what this writes
//! (`zcoord schema --out proto-docs/schema`). Schemas follow what serde *writes* (the serialize
//! contract): a member the server always writes is required, one it may omit is not.
//!
//! Naming: method `a.b_c` has `$defs/ABCParams` and `$defs/ABCResult`, topic `a.b_c` has
//! `$defs/ABCPayload` (see [`catalog::pascal`]); where that is a shared type the name is an alias,
//! `{"$ref": "#/$defs/<the type>"}`.

pub mod asyncapi;
pub mod catalog;
#[cfg(test)]
mod conformance;
pub mod envelopes;
pub mod formats;
pub mod openrpc;
pub mod params;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

pub use envelopes::EventEnvelope;
pub use formats::{GoDuration, Timestamp};

use crate::errors::RpcError;
use crate::jsonrpc::{Request, Response};
use crate::welcome::WelcomeEnvelope;
use catalog::{pascal, ERRORS, METHODS, TOPICS};

/// The file names the documents are written to, in `proto-docs/schema/`.
pub const SCHEMA_FILE: &str = "zcoord.schema.json";
pub const OPENRPC_FILE: &str = "openrpc.json";
pub const ASYNCAPI_FILE: &str = "asyncapi.json";

/// Every def, generated once: the protocol's types plus whatever a caller adds (the discovery
/// file lives in the client crate, which adds its own).
pub struct Bundle {
    generator: SchemaGenerator,
    /// Names that are not a type's own: `{"$ref"}` to it, or a schema that is not a def of its
    /// own (`Vec<..>`).
    aliases: Map<String, Value>,
}

impl Default for Bundle {
    fn default() -> Self {
        Bundle::protocol()
    }
}

impl Bundle {
    /// The protocol's defs: every method's params and result, every topic's payload, the
    /// envelopes of requests, responses and events.
    pub fn protocol() -> Bundle {
        let generator = SchemaSettings::draft2020_12()
            .for_serialize()
            .into_generator();
        let mut b = Bundle {
            generator,
            aliases: Map::new(),
        };
        for m in METHODS {
            let params = (m.params)(&mut b.generator);
            b.name(&format!("{}Params", pascal(m.name)), params);
            let result = (m.result)(&mut b.generator);
            b.name(&format!("{}Result", pascal(m.name)), result);
        }
        for t in TOPICS {
            let payload = (t.payload)(&mut b.generator);
            b.name(&format!("{}Payload", pascal(t.topic)), payload);
        }
        b.add::<Request>("Request");
        b.add::<Response>("Response");
        b.add::<RpcError>("RpcError");
        b.add::<EventEnvelope>("EventEnvelope");
        b.add::<WelcomeEnvelope>("WelcomeEnvelope");
        // The shapes of the untagged enums, named so that clients can name them too.
        b.name_variants(
            "HitlPayload",
            &["HitlToolApprovalPayload", "HitlQuestionPayload"],
        );
        b.name_variants("HitlResponse", &["DecisionResponse", "AnswerResponse"]);
        b
    }

    /// Gives the alternatives of an untagged enum's def (its `anyOf`, in variant order) names
    /// of their own, leaving `$ref`s to them in its place.
    fn name_variants(&mut self, def: &str, names: &[&str]) {
        let defs = self.generator.definitions_mut();
        let Some(Value::Array(variants)) = defs.get_mut(def).and_then(|d| d.get_mut("anyOf"))
        else {
            panic!("$defs/{def} is not an untagged enum");
        };
        assert_eq!(variants.len(), names.len(), "one name per variant of {def}");
        let mut named = Vec::new();
        for (variant, name) in variants.iter_mut().zip(names) {
            let schema = std::mem::replace(variant, json!({"$ref": reference(name)}));
            named.push((name.to_string(), schema));
        }
        defs.extend(named);
    }

    /// Adds `T` under `name` (an alias when its own name differs); returns the `$ref` to it.
    pub fn add<T: JsonSchema>(&mut self, name: &str) -> String {
        let schema = self.generator.subschema_for::<T>();
        self.name(name, schema);
        reference(name)
    }

    fn name(&mut self, name: &str, schema: Schema) {
        let value = schema.to_value();
        if value.get("$ref").and_then(Value::as_str) != Some(reference(name).as_str()) {
            self.aliases.insert(name.to_owned(), value);
        }
    }

    /// Every def by name, the types' own and the aliases. Panics if an alias would hide a type's
    /// own def of that name: the naming convention would then be ambiguous (tested).
    pub fn defs(&self) -> Map<String, Value> {
        let mut defs = self.generator.definitions().clone();
        for (name, schema) in &self.aliases {
            if let Some(own) = defs.get(name) {
                panic!("{name} is both a type ({own}) and an alias ({schema})");
            }
            defs.insert(name.clone(), schema.clone());
        }
        defs
    }

    /// `zcoord.schema.json`: the 2020-12 document, with the `x-zcoord` index of methods, events
    /// and errors.
    pub fn json_schema(&self) -> Value {
        let methods: Map<String, Value> = METHODS
            .iter()
            .map(|m| {
                let p = pascal(m.name);
                let entry = json!({
                    "params": reference(&format!("{p}Params")),
                    "result": reference(&format!("{p}Result")),
                });
                (m.name.to_owned(), entry)
            })
            .collect();
        let events: Map<String, Value> = TOPICS
            .iter()
            .map(|t| {
                let payload = reference(&format!("{}Payload", pascal(t.topic)));
                (t.topic.to_owned(), Value::from(payload))
            })
            .collect();
        let errors: Map<String, Value> = ERRORS
            .iter()
            .map(|(code, name)| (code.to_string(), Value::from(*name)))
            .collect();
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "zcoord wire protocol",
            "description": "Every type of the zcoord protocol (proto-docs/PROTOCOL.md), generated from the Rust types by `zcoord schema`. Method a.b_c: $defs/ABCParams and $defs/ABCResult; topic a.b_c: $defs/ABCPayload.",
            "x-zcoord": {
                "protocol_version": crate::PROTOCOL_VERSION,
                "methods": methods,
                "events": events,
                "errors": errors,
            },
            "$defs": self.defs(),
        })
    }

    /// `openrpc.json`.
    pub fn openrpc(&self) -> Value {
        openrpc::document(self)
    }

    /// `asyncapi.json`.
    pub fn asyncapi(&self) -> Value {
        asyncapi::document(self)
    }

    /// The three documents with the file names they are written to.
    pub fn files(&self) -> [(&'static str, Value); 3] {
        [
            (SCHEMA_FILE, self.json_schema()),
            (OPENRPC_FILE, self.openrpc()),
            (ASYNCAPI_FILE, self.asyncapi()),
        ]
    }
}

/// `#/$defs/<name>`.
pub fn reference(name: &str) -> String {
    format!("#/$defs/{name}")
}

/// The documents as they are written to disk: pretty JSON, keys in order, a final newline.
pub fn to_text(document: &Value) -> String {
    let mut text = serde_json::to_string_pretty(document).unwrap_or_default();
    text.push('\n');
    text
}

/// Checks `value` against `$defs/<def>` of `document` (a `zcoord.schema.json`), formats
/// (`date-time`, `uuid`) included. `Err` lists every failure, or says the def is missing.
#[cfg(test)]
pub(crate) fn check(document: &Value, def: &str, value: &Value) -> Result<(), String> {
    if document["$defs"].get(def).is_none() {
        return Err(format!("no $defs/{def}"));
    }
    let mut schema = document.clone();
    schema["$ref"] = Value::from(reference(def));
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| format!("$defs/{def} does not compile: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("not a valid {def}: {}", errors.join("; ")))
    }
}
