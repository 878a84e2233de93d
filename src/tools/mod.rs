//! The built-in tools a model may call: small, harmless, and bounded in time. A call to an
//! unknown tool, or with arguments that are not the JSON the tool wants, is an error result,
//! never a panic.

use std::time::Duration;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Longest `sleep` a caller may ask for.
pub const MAX_SLEEP_MS: u64 = 10_000;

/// What one tool call produced: its text, and whether that text is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutcome {
    pub is_error: bool,
    pub result: String,
}

impl ToolOutcome {
    fn ok(result: impl Into<String>) -> Self {
        ToolOutcome {
            is_error: false,
            result: result.into(),
        }
    }

    fn err(result: impl Into<String>) -> Self {
        ToolOutcome {
            is_error: true,
            result: result.into(),
        }
    }
}

/// A tool as offered to a model: its name, what it does, and a JSON Schema of its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: &'static str,
    pub description: &'static str,
    pub parameters: Value,
}

/// The built-in tools, for docs and for offering them to a model as functions.
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

/// Runs the named tool with `args` (the call's JSON arguments, as text).
pub async fn run(name: &str, args: &str) -> ToolOutcome {
    let args: Value = if args.trim().is_empty() {
        Value::Object(Default::default())
    } else {
        match serde_json::from_str(args) {
            Ok(v) => v,
            Err(e) => return ToolOutcome::err(format!("invalid JSON arguments: {e}")),
        }
    };
    match name {
        "clock" => match OffsetDateTime::now_utc().format(&Rfc3339) {
            Ok(t) => ToolOutcome::ok(t),
            Err(e) => ToolOutcome::err(format!("clock: {e}")),
        },
        "word_count" => match args.get("text").and_then(Value::as_str) {
            Some(text) => ToolOutcome::ok(text.split_whitespace().count().to_string()),
            None => ToolOutcome::err("word_count wants {\"text\": string}"),
        },
        "sleep" => match args.get("ms").and_then(Value::as_u64) {
            Some(ms) if ms <= MAX_SLEEP_MS => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                ToolOutcome::ok(format!("slept {ms} ms"))
            }
            _ => ToolOutcome::err(format!(
                "sleep wants {{\"ms\": integer}} with ms at most {MAX_SLEEP_MS}"
            )),
        },
        other => ToolOutcome::err(format!("unknown tool: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_defined_tool_runs() {
        for def in definitions() {
            let outcome = run(def.name, r#"{"text": "a", "ms": 0}"#).await;
            assert!(!outcome.is_error, "{}: {}", def.name, outcome.result);
        }
    }

    #[tokio::test]
    async fn tools_answer_and_refuse_cleanly() {
        assert_eq!(
            run("word_count", r#"{"text":"a b  c"}"#).await,
            ToolOutcome::ok("3")
        );
        assert!(!run("clock", "").await.is_error);
        assert!(run("word_count", "{}").await.is_error);
        assert!(run("word_count", "{not json").await.is_error);
        assert!(run("nope", "{}").await.is_error);
        assert!(run("sleep", r#"{"ms": 999999}"#).await.is_error);
        assert_eq!(
            run("sleep", r#"{"ms": 1}"#).await,
            ToolOutcome::ok("slept 1 ms")
        );
    }
}
