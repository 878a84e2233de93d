//! The harmless built-in tools: `clock`, `word_count` and `sleep`. They touch no file and are
//! bounded in time; handy to try tool calls and to test interrupts mid-tool.

use std::time::Duration;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::error::ToolError;
use super::ToolDef;

/// Longest `sleep` a caller may ask for.
pub const MAX_SLEEP_MS: u64 = 10_000;

pub const NAMES: &[&str] = &["clock", "word_count", "sleep"];

pub fn definitions() -> Vec<ToolDef> {
    vec![
        ToolDef {
            name: "clock",
            description: "The current UTC date and time, RFC 3339.",
            parameters: json!({"type": "object", "properties": {}}),
        },
        ToolDef {
            name: "word_count",
            description: "Counts the words in a text.",
            parameters: json!({
                "type": "object",
                "properties": {"text": {"type": "string", "description": "the text to count"}},
                "required": ["text"]
            }),
        },
        ToolDef {
            name: "sleep",
            description: "Waits the given number of milliseconds (at most 10000), then says so.",
            parameters: json!({
                "type": "object",
                "properties": {"ms": {"type": "integer", "minimum": 0, "maximum": MAX_SLEEP_MS}},
                "required": ["ms"]
            }),
        },
    ]
}

/// Runs the harmless tool `name`; `None` when there is no such tool here.
pub async fn run(name: &str, args: &Value) -> Option<Result<String, ToolError>> {
    let wants = |text: String| Err(ToolError::Wants(text));
    Some(match name {
        "clock" => OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .map_err(|e| ToolError::Wants(format!("clock: {e}"))),
        "word_count" => match args.get("text").and_then(Value::as_str) {
            Some(text) => Ok(text.split_whitespace().count().to_string()),
            None => wants("word_count wants {\"text\": string}".into()),
        },
        "sleep" => match args.get("ms").and_then(Value::as_u64) {
            Some(ms) if ms <= MAX_SLEEP_MS => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(format!("slept {ms} ms"))
            }
            _ => wants(format!(
                "sleep wants {{\"ms\": integer}} with ms at most {MAX_SLEEP_MS}"
            )),
        },
        _ => return None,
    })
}
