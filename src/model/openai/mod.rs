//! The OpenAI-compatible chat-completions provider (llama.cpp's server, vLLM, Ollama, LM Studio,
//! OpenRouter, OpenAI): one turn is a loop of streamed requests, running the built-in tools the
//! model calls between them.
//!
//! - **Request**: `POST {base_url}/chat/completions` with `stream: true` and
//!   `stream_options.include_usage`, the built-in tools as functions (`tool_choice: "auto"`), and
//!   the messages: system prompt, the session's history trimmed from the oldest end to
//!   `context_budget_tokens` (see `prompt.rs`; tool messages of earlier turns are left out),
//!   then this turn's tool rounds.
//! - **Output**: each content piece becomes a `Token`; each tool call a `ToolStart`, a run of
//!   [`Tools::run`] and a `ToolEnd` (through `call_tool`), its result going back to the model as a `tool`
//!   message (an error result prefixed `error: `). A call to an unknown tool or with invalid JSON
//!   arguments is such an error result, not a failed turn; invalid arguments are echoed back to
//!   the model as `{}` (servers that re-parse them would refuse the next request), the result
//!   saying what was wrong. At most `max_tool_rounds` requests per turn.
//! - **Output** also streams each tool call's argument pieces as they arrive (`ToolArgs`), the
//!   call given its id when its first piece comes (`calls.rs`).
//! - **Usage**: after each round, a `Usage` with the sums over the turn's rounds (`usage.rs`):
//!   input and output, cached input and reasoning tokens when the server reports them
//!   (`prompt_tokens_details.cached_tokens`, `completion_tokens_details.reasoning_tokens`), the
//!   context as the last round's input plus output, and `context_budget_tokens` as the window.
//!   A round whose server reported no usage counts an estimate instead, and says so: one token
//!   per four characters (rounded up, per message) of the request's messages in, and of the
//!   round's text and tool calls out.
//! - **Errors** end the turn with a clear text (`client.rs`, `stream.rs`): refused connection,
//!   timeouts, HTTP errors with an excerpt of the body, malformed or truncated streams. Refused
//!   connections, 429 and 5xx are retried up to `max_retries` times, waiting `Retry-After`
//!   seconds or `retry_base_delay` doubled per attempt (at most 30 s), but only while no text
//!   has been streamed in the turn, so a reply is never repeated.
//! - **Interrupt**: the turn's future owns the response; dropping it closes the connection.

mod calls;
mod client;
mod config;
mod prompt;
mod stream;
mod usage;
mod wire;

pub use config::OpenAiConfig;

use std::sync::Arc;

use tracing::Instrument;

use self::calls::CallIds;
use self::client::Client;
use self::stream::RoundOutput;
use self::usage::TurnTotals;
use self::wire::{ChatRequest, FunctionCall, Message, ToolCall, ToolSpec, Usage};
use super::{BoxFuture, Model, ModelError, TurnSink};
use crate::core::{ModelEvent, TurnStart};
use crate::tools::{ToolOutcome, Tools};

pub struct OpenAi {
    inner: Arc<Provider>,
}

/// What every turn shares: settings, the HTTP client and its pool, the tools and their offer.
struct Provider {
    config: OpenAiConfig,
    client: Client,
    tools: Arc<Tools>,
    /// `tools.definitions()`, as sent in every request.
    offered: Vec<ToolSpec>,
}

impl OpenAi {
    /// Checks the base URL and builds the HTTP client; connects to nothing yet.
    pub fn new(config: OpenAiConfig, tools: Arc<Tools>) -> Result<OpenAi, ModelError> {
        let client = Client::new(&config)?;
        let offered = tools
            .definitions()
            .into_iter()
            .map(ToolSpec::from)
            .collect();
        Ok(OpenAi {
            inner: Arc::new(Provider {
                config,
                client,
                tools,
                offered,
            }),
        })
    }
}

impl Model for OpenAi {
    fn name(&self) -> String {
        format!("openai:{}", self.inner.config.model)
    }

    /// The context budget in bytes: at most four bytes a character and (as the prompt
    /// estimates) four characters a token, so trimming to the budget never lacks a message.
    fn context_bytes(&self) -> usize {
        self.inner.config.context_budget_tokens.saturating_mul(16)
    }

    fn run(&self, turn: TurnStart, sink: TurnSink) -> BoxFuture<Result<(), ModelError>> {
        let inner = Arc::clone(&self.inner);
        let span = tracing::debug_span!("openai_turn", turn_id = %turn.turn_id);
        Box::pin(async move { inner.run_turn(turn, sink).await }.instrument(span))
    }
}

impl Provider {
    async fn run_turn(&self, turn: TurnStart, sink: TurnSink) -> Result<(), ModelError> {
        let config = &self.config;
        // The built-in tools, and those present clients run (a client's call ends through the
        // core, like an approval: the model never runs it here).
        let mut offered = self.offered.clone();
        offered.extend(turn.client_tools.iter().map(ToolSpec::from));
        // The session's prompt replaces the configured one; `""` means none at all.
        let system_prompt = turn
            .system_prompt
            .as_deref()
            .or(config.system_prompt.as_deref());
        let mut messages =
            prompt::conversation(system_prompt, &turn.history, config.context_budget_tokens);
        let max_rounds = config.max_tool_rounds.max(1);
        let window = u64::try_from(config.context_budget_tokens).unwrap_or(u64::MAX);
        let mut totals = TurnTotals::new(window);
        let mut ids = CallIds::default();
        let mut streamed_text = false;
        let mut round = 0;
        loop {
            round += 1;
            tracing::debug!(round, messages = messages.len(), "openai round");
            let request = ChatRequest::streaming(&config.model, &messages, &offered);
            let response = self.client.open_stream(&request, !streamed_text).await?;
            let output =
                stream::read_round(response, &sink, &mut ids, config.chunk_timeout).await?;
            streamed_text |= !output.text.is_empty();
            tracing::debug!(
                finish_reason = output.finish_reason.as_deref().unwrap_or("none"),
                calls = output.calls.len(),
                usage_reported = output.usage.is_some(),
                "openai round done"
            );

            totals.add_round(output.usage, || estimate_usage(&messages, &output));
            sink.emit(ModelEvent::Usage(totals.report())).await?;

            if output.calls.is_empty() {
                return Ok(());
            }
            if round >= max_rounds {
                let names: Vec<&str> = output.calls.iter().map(|c| c.name.as_str()).collect();
                return Err(ModelError::Failed(format!(
                    "the model asked for more tool calls ({}) after {max_rounds} round(s), \
                     the most allowed (max_tool_rounds); stopped",
                    names.join(", ")
                )));
            }
            run_calls(&self.tools, output, &mut messages, &sink).await?;
        }
    }
}

/// Runs a round's tool calls in order, reporting each, and appends the assistant's calls and
/// their results to `messages` for the next round.
async fn run_calls(
    tools: &Tools,
    output: RoundOutput,
    messages: &mut Vec<Message>,
    sink: &TurnSink,
) -> Result<(), ModelError> {
    let calls = output.calls;
    let echoed = calls
        .iter()
        .map(|call| ToolCall {
            id: call.call_id.clone(),
            kind: "function",
            function: FunctionCall {
                name: call.name.clone(),
                arguments: echoed_arguments(&call.arguments),
            },
        })
        .collect();
    messages.push(Message::assistant_calls(&output.text, echoed));

    for call in calls {
        let call_id = call.call_id.as_str();
        // Between rounds: no HTTP stream is being read while a person decides.
        let outcome = sink
            .call_tool(call_id, &call.name, &call.arguments, || async {
                if call.name.is_empty() {
                    ToolOutcome {
                        is_error: true,
                        result: "the tool call named no function".into(),
                    }
                } else {
                    tools.run(&call.name, &call.arguments).await
                }
            })
            .await?;
        let for_model = if outcome.is_error {
            format!("error: {}", outcome.result)
        } else {
            outcome.result
        };
        messages.push(Message::tool_result(call_id, for_model));
    }
    Ok(())
}

/// The arguments as given back to the model: as written when they are JSON, else `{}`.
fn echoed_arguments(arguments: &str) -> String {
    if serde_json::from_str::<serde::de::IgnoredAny>(arguments).is_ok() {
        arguments.to_owned()
    } else {
        "{}".to_owned()
    }
}

/// Usage of a round whose server reported none (see the module doc).
fn estimate_usage(request: &[Message], output: &RoundOutput) -> Usage {
    let out_chars = output.text.chars().count()
        + output
            .calls
            .iter()
            .map(|c| c.name.chars().count() + c.arguments.chars().count())
            .sum::<usize>();
    Usage {
        prompt_tokens: prompt::estimate_messages(request),
        completion_tokens: prompt::estimate_tokens(out_chars),
        ..Usage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_echo_back_only_when_they_are_json() {
        assert_eq!(echoed_arguments(r#"{"a": 1}"#), r#"{"a": 1}"#);
        assert_eq!(echoed_arguments(""), "{}");
        assert_eq!(echoed_arguments("{not json"), "{}");
    }

    #[test]
    fn estimated_usage_counts_request_and_output() {
        let request = [
            Message::text(wire::MessageRole::System, "abcd"),
            Message::text(wire::MessageRole::User, "abcdefgh"),
        ];
        let output = RoundOutput {
            text: "abcde".into(),
            calls: vec![calls::AssembledCall {
                id: String::new(),
                call_id: "call_1".into(),
                name: "clock".into(),
                arguments: "{}".into(),
            }],
            ..Default::default()
        };
        assert_eq!(
            estimate_usage(&request, &output),
            Usage {
                prompt_tokens: 3,
                completion_tokens: 3,
                ..Usage::default()
            }
        );
    }
}
