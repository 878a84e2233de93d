//! The OpenAI chat-completions wire shapes we send and read, as our own serde types. Reading is
//! tolerant: every field may be missing or `null`, and unknown fields are ignored, because the
//! servers that speak this API (llama.cpp, vLLM, Ollama, LM Studio, OpenRouter, OpenAI) differ in
//! the details. No I/O here.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use std::borrow::Cow;

use crate::protocol::clients::ClientToolSpec;
use crate::tools::ToolDef;

/// The body of `POST {base_url}/chat/completions`.
#[derive(Debug, Serialize)]
pub struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: &'a [Message],
    pub stream: bool,
    pub stream_options: StreamOptions,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub tools: &'a [ToolSpec],
    /// Only with tools: some servers reject a `tool_choice` that has nothing to choose from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<&'static str>,
}

impl<'a> ChatRequest<'a> {
    /// A streamed request that asks for usage in the stream and offers `tools` (if any).
    pub fn streaming(model: &'a str, messages: &'a [Message], tools: &'a [ToolSpec]) -> Self {
        ChatRequest {
            model,
            messages,
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            tools,
            tool_choice: (!tools.is_empty()).then_some("auto"),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct StreamOptions {
    pub include_usage: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    System,
    User,
    Assistant,
    Tool,
}

/// One message of the conversation sent to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: MessageRole,
    /// Always present, `null` on an assistant message that only calls tools: llama.cpp's server
    /// refuses a message without a `content` key.
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn text(role: MessageRole, content: impl Into<String>) -> Self {
        Message {
            role,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// The assistant's turn in a tool round: its text (if any) and the calls it made.
    pub fn assistant_calls(text: &str, calls: Vec<ToolCall>) -> Self {
        Message {
            role: MessageRole::Assistant,
            content: (!text.is_empty()).then(|| text.to_owned()),
            tool_calls: calls,
            tool_call_id: None,
        }
    }

    /// The result of one tool call, given back to the model.
    pub fn tool_result(call_id: &str, content: impl Into<String>) -> Self {
        Message {
            role: MessageRole::Tool,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: Some(call_id.to_owned()),
        }
    }

    /// Characters the token estimate counts: the text and the calls' names and arguments.
    pub fn char_count(&self) -> usize {
        let text = self.content.as_deref().map_or(0, |c| c.chars().count());
        let calls: usize = self
            .tool_calls
            .iter()
            .map(|c| c.function.name.chars().count() + c.function.arguments.chars().count())
            .sum();
        text + calls
    }
}

/// A tool call as sent back to the model in the assistant message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text, exactly as the model wrote it.
    pub arguments: String,
}

/// A tool offered to the model: `{"type": "function", "function": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionSpec {
    pub name: Cow<'static, str>,
    pub description: Cow<'static, str>,
    pub parameters: Value,
}

impl From<ToolDef> for ToolSpec {
    fn from(def: ToolDef) -> Self {
        ToolSpec {
            kind: "function",
            function: FunctionSpec {
                name: Cow::Borrowed(def.name),
                description: Cow::Borrowed(def.description),
                parameters: def.parameters,
            },
        }
    }
}

impl From<&ClientToolSpec> for ToolSpec {
    fn from(tool: &ClientToolSpec) -> Self {
        ToolSpec {
            kind: "function",
            function: FunctionSpec {
                name: Cow::Owned(tool.name.clone()),
                description: Cow::Owned(tool.description.clone()),
                parameters: tool.parameters.clone(),
            },
        }
    }
}

/// One `data:` payload of the stream.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChatChunk {
    #[serde(deserialize_with = "null_as_default")]
    pub choices: Vec<ChunkChoice>,
    /// Usually in a last chunk with empty `choices`; some servers repeat it in every chunk.
    pub usage: Option<Usage>,
    /// Some servers (OpenRouter, vLLM) report a failure inside the stream this way.
    pub error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChunkChoice {
    pub index: u32,
    #[serde(deserialize_with = "null_as_default")]
    pub delta: Delta,
    pub finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Delta {
    pub content: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub tool_calls: Vec<ToolCallDelta>,
}

/// A piece of a streamed tool call: `id` and `name` usually come once, `arguments` in pieces.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ToolCallDelta {
    pub index: Option<u32>,
    pub id: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub function: FunctionDelta,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FunctionDelta {
    pub name: Option<String>,
    pub arguments: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Usage {
    #[serde(deserialize_with = "null_as_default")]
    pub prompt_tokens: u64,
    #[serde(deserialize_with = "null_as_default")]
    pub completion_tokens: u64,
    /// OpenAI's, and vLLM's with prefix caching; most local servers send none.
    #[serde(deserialize_with = "null_as_default")]
    pub prompt_tokens_details: PromptDetails,
    /// Reasoning models' (o-series, and servers that copy the field).
    #[serde(deserialize_with = "null_as_default")]
    pub completion_tokens_details: CompletionDetails,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PromptDetails {
    pub cached_tokens: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CompletionDetails {
    pub reasoning_tokens: Option<u64>,
}

/// `null` reads as the type's default, as a missing field does.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The most useful short text of an error body: `error.message`, `error` (a string),
/// `message` or `detail` of a JSON body, else the body itself; at most `max` characters.
pub fn error_excerpt(body: &str, max: usize) -> String {
    let from_json = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        [
            v.pointer("/error/message"),
            v.get("error"),
            v.get("message"),
            v.get("detail"),
        ]
        .into_iter()
        .flatten()
        .find_map(|m| m.as_str().map(str::to_owned))
    });
    let text = from_json.unwrap_or_else(|| body.to_owned());
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return "(empty body)".into();
    }
    truncate_chars(&text, max)
}

/// `text` cut to at most `max` characters (on a character boundary), marked when cut.
pub fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn request_has_the_documented_shape() {
        let messages = [
            Message::text(MessageRole::System, "be brief"),
            Message::text(MessageRole::User, "hi"),
            Message::assistant_calls(
                "",
                vec![ToolCall {
                    id: "call_1".into(),
                    kind: "function",
                    function: FunctionCall {
                        name: "clock".into(),
                        arguments: "{}".into(),
                    },
                }],
            ),
            Message::tool_result("call_1", "2024-01-01T00:00:00Z"),
        ];
        let workspace = crate::tools::Tools::new(&Default::default()).unwrap();
        let tools: Vec<ToolSpec> = workspace
            .definitions()
            .into_iter()
            .take(1)
            .map(ToolSpec::from)
            .collect();
        let got = serde_json::to_value(ChatRequest::streaming("m", &messages, &tools)).unwrap();
        assert_eq!(
            got,
            json!({
                "model": "m",
                "stream": true,
                "stream_options": {"include_usage": true},
                "tool_choice": "auto",
                "tools": [{"type": "function", "function": {
                    "name": "clock",
                    "description": "The current UTC date and time, RFC 3339.",
                    "parameters": {"type": "object", "properties": {}}
                }}],
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function",
                         "function": {"name": "clock", "arguments": "{}"}}
                    ]},
                    {"role": "tool", "content": "2024-01-01T00:00:00Z", "tool_call_id": "call_1"}
                ]
            })
        );
    }

    #[test]
    fn request_without_tools_omits_tools_and_choice() {
        let messages = [Message::text(MessageRole::User, "hi")];
        let got = serde_json::to_value(ChatRequest::streaming("m", &messages, &[])).unwrap();
        assert_eq!(got.get("tools"), None);
        assert_eq!(got.get("tool_choice"), None);
    }

    #[test]
    fn chunks_tolerate_nulls_missing_and_unknown_fields() {
        let c: ChatChunk = serde_json::from_str(
            r#"{"id":"x","object":"chat.completion.chunk","choices":null,"usage":null,"extra":1}"#,
        )
        .unwrap();
        assert!(c.choices.is_empty() && c.usage.is_none());
        let c: ChatChunk = serde_json::from_str(
            r#"{"choices":[{"delta":{"content":null,"tool_calls":null,"role":"assistant"}}]}"#,
        )
        .unwrap();
        assert_eq!(c.choices[0].delta.content, None);
        let c: ChatChunk = serde_json::from_str(
            r#"{"choices":[{"index":0,"delta":null,"finish_reason":"stop"}]}"#,
        )
        .unwrap();
        assert_eq!(c.choices[0].finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn usage_reads_counts_and_tolerates_gaps() {
        let c: ChatChunk = serde_json::from_str(
            r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#,
        )
        .unwrap();
        assert_eq!(
            c.usage,
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 7,
                ..Usage::default()
            })
        );
        let c: ChatChunk = serde_json::from_str(
            r#"{"usage":{"prompt_tokens":9,"completion_tokens":4,
                "prompt_tokens_details":{"cached_tokens":6,"audio_tokens":0},
                "completion_tokens_details":{"reasoning_tokens":3}}}"#,
        )
        .unwrap();
        let usage = c.usage.unwrap();
        assert_eq!(usage.prompt_tokens_details.cached_tokens, Some(6));
        assert_eq!(usage.completion_tokens_details.reasoning_tokens, Some(3));
        let c: ChatChunk = serde_json::from_str(
            r#"{"usage":{"prompt_tokens":9,"prompt_tokens_details":null,
                "completion_tokens_details":{"reasoning_tokens":null}}}"#,
        )
        .unwrap();
        let usage = c.usage.unwrap();
        assert_eq!(usage.prompt_tokens_details.cached_tokens, None);
        assert_eq!(usage.completion_tokens_details.reasoning_tokens, None);
        let c: ChatChunk =
            serde_json::from_str(r#"{"usage":{"prompt_tokens":3,"completion_tokens":null}}"#)
                .unwrap();
        assert_eq!(
            c.usage,
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 0,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn error_excerpts_prefer_the_servers_message() {
        assert_eq!(
            error_excerpt(r#"{"error":{"message":"bad key","type":"auth"}}"#, 300),
            "bad key"
        );
        assert_eq!(
            error_excerpt(r#"{"error":"model not loaded"}"#, 300),
            "model not loaded"
        );
        assert_eq!(error_excerpt(r#"{"detail":"Not Found"}"#, 300), "Not Found");
        assert_eq!(
            error_excerpt("<html>\n  oops  </html>", 300),
            "<html> oops </html>"
        );
        assert_eq!(error_excerpt("", 300), "(empty body)");
        assert_eq!(error_excerpt("ééééé", 3), "ééé…");
    }
}
