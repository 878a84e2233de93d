//! Settings of the OpenAI-compatible provider, resolved (no clap or file types here).

use std::time::Duration;

#[derive(Clone, PartialEq, Eq)]
pub struct OpenAiConfig {
    /// Model name sent in each request, e.g. `llama3.1:8b`.
    pub model: String,
    /// Base URL ending before `/chat/completions`, e.g. `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Bearer token, read from an environment variable at start-up; never logged.
    pub api_key: Option<String>,
    /// Sent first in every request, if set.
    pub system_prompt: Option<String>,
    /// Conversation budget in estimated tokens (characters / 4): oldest messages are dropped
    /// until the request fits; the newest user message is always kept.
    pub context_budget_tokens: usize,
    /// Most model round trips in one turn (each tool-call round is one).
    pub max_tool_rounds: u32,
    pub connect_timeout: Duration,
    /// Longest silence allowed between two chunks of a stream (and before the first).
    pub chunk_timeout: Duration,
    /// Retries of a failed request (connection refused, 429, 5xx) before any token streamed.
    pub max_retries: u32,
    /// First retry delay; doubles each time.
    pub retry_base_delay: Duration,
}

impl OpenAiConfig {
    /// Defaults for everything but the model and the URL.
    pub fn new(model: impl Into<String>, base_url: impl Into<String>) -> Self {
        OpenAiConfig {
            model: model.into(),
            base_url: base_url.into(),
            api_key: None,
            system_prompt: None,
            context_budget_tokens: 8_192,
            max_tool_rounds: 8,
            connect_timeout: Duration::from_secs(10),
            chunk_timeout: Duration::from_secs(60),
            max_retries: 3,
            retry_base_delay: Duration::from_millis(500),
        }
    }
}

/// Never prints the key.
impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("system_prompt", &self.system_prompt)
            .field("context_budget_tokens", &self.context_budget_tokens)
            .field("max_tool_rounds", &self.max_tool_rounds)
            .field("connect_timeout", &self.connect_timeout)
            .field("chunk_timeout", &self.chunk_timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_base_delay", &self.retry_base_delay)
            .finish()
    }
}
