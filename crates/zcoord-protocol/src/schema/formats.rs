//! Schemas for what serde writes through custom code rather than a derive: RFC 3339 timestamps
//! (`time::serde::rfc3339`), Go-style durations (`duration::go_duration`), the literal
//! `"jsonrpc": "2.0"` and the request envelope the server decodes by hand (`jsonrpc::decode`).
//! Each is a stand-in type used with `#[schemars(with = ...)]` or a hand-written impl; the golden
//! tests hold them to what the code writes.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

use crate::jsonrpc::{Id, Request, Version};

/// An RFC 3339 time in UTC with `Z` and as many fractional digits as it has, as
/// `time::serde::rfc3339` writes it (`"2026-11-21T20:54:32.166228013Z"`). Stands in for
/// `OffsetDateTime` fields: `#[schemars(with = "crate::schema::Timestamp")]`.
pub struct Timestamp;

impl JsonSchema for Timestamp {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "format": "date-time"})
    }
}

/// Whole seconds as Go's `time.Duration.String` writes them: `0s`, `59s`, `1m0s`, `1h2m3s`
/// (`duration::go_duration`). Minutes and seconds stay below 60 once a larger unit is written.
pub struct GoDuration;

/// The pattern of [`GoDuration`]; `duration.rs`'s cases all match it (tested there).
pub const GO_DURATION_PATTERN: &str = "^(?:(?:[1-9][0-9]*h)?[1-5]?[0-9]m)?[1-5]?[0-9]s$";

impl JsonSchema for GoDuration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": GO_DURATION_PATTERN,
            "description": "Whole seconds, Go style: 0s, 59s, 1m0s, 1h2m3s."
        })
    }
}

impl JsonSchema for Version {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "JsonRpcVersion".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"const": "2.0"})
    }
}

/// One call as `jsonrpc::decode` accepts it. `Request` is decoded by hand (so that a bad member
/// gets the right error code), hence this schema is written by hand too: `params` is an object,
/// `null` or absent (every method takes named params: an array is refused with -32602), and a
/// call without `id` is a notification.
impl JsonSchema for Request {
    fn schema_name() -> Cow<'static, str> {
        "Request".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let id = generator.subschema_for::<Id>();
        json_schema!({
            "type": "object",
            "description": "A JSON-RPC 2.0 call. Without `id` it is a notification: run, never answered.",
            "required": ["jsonrpc", "method"],
            "properties": {
                "jsonrpc": {"const": "2.0"},
                "id": id,
                "method": {"type": "string"},
                "params": {
                    "type": ["object", "null"],
                    "description": "Named params; absent and null mean {}. Unknown members are ignored."
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::duration::go_duration;

    #[test]
    fn go_durations_match_the_pattern_and_others_do_not() {
        let validator = jsonschema::validator_for(&serde_json::json!({
            "type": "string", "pattern": GO_DURATION_PATTERN
        }))
        .unwrap();
        for secs in [0, 1, 59, 60, 61, 3599, 3600, 3723, 90061, 10_000_000] {
            let text = go_duration(Duration::from_secs(secs));
            assert!(validator.is_valid(&text.clone().into()), "{text}");
        }
        for bad in [
            "", "60s", "1m", "1h", "1h60m0s", "01s", "1.5s", "0h0m0s", "5 s",
        ] {
            assert!(!validator.is_valid(&bad.into()), "{bad}");
        }
    }
}
