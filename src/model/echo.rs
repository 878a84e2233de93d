//! The embedded `echo` model: deterministic, offline, streams a reply built from the user's message
//! one token at a time with a fixed delay, and runs built-in tools on `/tool <name> <json-args>`
//! lines (see [`Tools`]), streaming each call's arguments in a few pieces first. A `/fail <text>`
//! line makes the turn fail after streaming, to exercise error paths. Its usage is counted in
//! words and its own tokens, and says which figures are estimates.

use std::sync::Arc;
use std::time::Duration;

use super::{BoxFuture, Model, ModelError, TurnSink};
use crate::core::{ModelEvent, TurnStart};
use crate::protocol::types::Role;
use crate::protocol::usage::{TurnUsage, UsageFigure};
use crate::tools::Tools;

#[derive(Debug, Clone)]
pub struct Echo {
    /// Pause before each token, so a stream looks like a model's and can be interrupted.
    pub token_delay: Duration,
    /// What `/tool` lines run.
    pub tools: Arc<Tools>,
}

/// What the echo model will do for one user message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `(tool name, JSON arguments)` in the order they appear.
    pub tool_calls: Vec<(String, String)>,
    /// The message text without the trigger lines.
    pub text: String,
    /// Set by a `/fail <text>` line.
    pub fail: Option<String>,
}

impl Plan {
    pub fn parse(content: &str) -> Plan {
        let mut tool_calls = Vec::new();
        let mut text = Vec::new();
        let mut fail = None;
        for line in content.lines() {
            let trimmed = line.trim_start();
            if let Some(rest) = trimmed.strip_prefix("/tool ") {
                let rest = rest.trim();
                let (name, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                tool_calls.push((name.to_owned(), args.trim().to_owned()));
            } else if trimmed.trim_end() == "/fail" || trimmed.starts_with("/fail ") {
                let reason = trimmed["/fail".len()..].trim();
                fail = Some(if reason.is_empty() {
                    "echo: failure requested".to_owned()
                } else {
                    reason.to_owned()
                });
            } else {
                text.push(line);
            }
        }
        Plan {
            tool_calls,
            text: text.join("\n").trim().to_owned(),
            fail,
        }
    }
}

/// Splits text into tokens: each token is a run of whitespace followed by a run of non-whitespace,
/// so concatenating the tokens gives the text back exactly.
pub fn tokenize(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start = 0;
    let mut prev_ws = true;
    for (i, ch) in text.char_indices() {
        let ws = ch.is_whitespace();
        if ws && !prev_ws && i > start {
            tokens.push(&text[start..i]);
            start = i;
        }
        prev_ws = ws;
    }
    if start < text.len() {
        tokens.push(&text[start..]);
    }
    tokens
}

/// Pieces the echo model streams a call's arguments in, at most.
pub const ARGS_PIECES: usize = 3;

/// Splits a call's arguments into at most [`ARGS_PIECES`] pieces of about as many characters
/// each (never an empty one), so concatenating them gives the arguments back exactly.
pub fn split_args(args: &str) -> Vec<&str> {
    let chars = args.chars().count();
    let per = chars.div_ceil(ARGS_PIECES).max(1);
    let mut pieces = Vec::new();
    let mut start = 0;
    for (n, (i, _)) in args.char_indices().enumerate() {
        if n > 0 && n % per == 0 {
            pieces.push(&args[start..i]);
            start = i;
        }
    }
    if start < args.len() {
        pieces.push(&args[start..]);
    }
    pieces
}

/// The usage echo reports: `input_tokens` are the conversation's words (an estimate), and
/// `output_tokens` its own tokens streamed so far (exact: they are what it counts as a token);
/// the context holds both (an estimate, as its input is). Echo has no token window.
fn echo_usage(tokens_in: u64, tokens_out: u64) -> TurnUsage {
    let mut usage = TurnUsage {
        input_tokens: tokens_in,
        output_tokens: tokens_out,
        context_tokens: tokens_in + tokens_out,
        ..TurnUsage::default()
    };
    usage.mark_estimated(UsageFigure::InputTokens);
    usage.mark_estimated(UsageFigure::ContextTokens);
    usage
}

/// `tokens_in` as the echo model counts it: whitespace-separated words of the whole conversation.
fn count_words(turn: &TurnStart) -> u64 {
    turn.history
        .iter()
        .map(|h| h.content.split_whitespace().count() as u64)
        .sum()
}

impl Model for Echo {
    fn name(&self) -> String {
        "echo".into()
    }

    fn run(&self, turn: TurnStart, sink: TurnSink) -> BoxFuture<Result<(), ModelError>> {
        let delay = self.token_delay;
        let tools = Arc::clone(&self.tools);
        Box::pin(async move {
            let prompt = turn
                .history
                .iter()
                .rev()
                .find(|h| h.role == Role::User)
                .map(|h| h.content.clone())
                .unwrap_or_default();
            let plan = Plan::parse(&prompt);
            let tokens_in = count_words(&turn);
            sink.emit(ModelEvent::Usage(echo_usage(tokens_in, 0)))
                .await?;

            let mut reply = format!("echo: {}", plan.text).trim_end().to_owned();
            for (i, (name, args)) in plan.tool_calls.iter().enumerate() {
                let call_id = format!("call_{}", i + 1);
                for piece in split_args(args) {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    sink.emit(ModelEvent::ToolArgs {
                        call_id: call_id.clone().into(),
                        tool_name: name.clone(),
                        delta: piece.to_owned(),
                    })
                    .await?;
                }
                let outcome = sink
                    .call_tool(&call_id, name, args, || tools.run(name, args))
                    .await?;
                reply.push_str(&format!("\n[{name}] {}", outcome.result));
            }

            let mut tokens_out = 0;
            for token in tokenize(&reply) {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                sink.emit(ModelEvent::Token(token.to_owned())).await?;
                tokens_out += 1;
            }
            sink.emit(ModelEvent::Usage(echo_usage(tokens_in, tokens_out)))
                .await?;
            match plan.fail {
                Some(reason) => Err(ModelError::Failed(reason)),
                None => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_concatenate_back_to_the_text() {
        for text in [
            "",
            "a",
            "echo: hello  world\nnext é line ",
            "  lead",
            "x\n\ny",
        ] {
            assert_eq!(tokenize(text).concat(), text);
        }
        assert_eq!(tokenize("echo: hi there"), ["echo:", " hi", " there"]);
    }

    #[test]
    fn arguments_split_into_a_few_pieces_that_concatenate_back() {
        for args in [
            "",
            "{",
            "{}",
            r#"{"text": "a b"}"#,
            "ééééé",
            &"x".repeat(10_000),
        ] {
            let pieces = split_args(args);
            assert_eq!(pieces.concat(), args);
            assert!(pieces.len() <= ARGS_PIECES, "{args}: {pieces:?}");
            assert!(pieces.iter().all(|p| !p.is_empty()));
        }
        assert_eq!(split_args(r#"{"a": 1}"#), [r#"{"a"#, r#"": "#, "1}"]);
        assert_eq!(split_args("{}"), ["{", "}"]);
    }

    #[test]
    fn plan_reads_triggers() {
        let p =
            Plan::parse("hello\n/tool word_count {\"text\": \"a b\"}\n/tool clock\nbye\n/fail x");
        assert_eq!(
            p.tool_calls,
            [
                ("word_count".to_owned(), "{\"text\": \"a b\"}".to_owned()),
                ("clock".to_owned(), String::new())
            ]
        );
        assert_eq!(p.text, "hello\nbye");
        assert_eq!(p.fail.as_deref(), Some("x"));
        assert_eq!(
            Plan::parse("/fail").fail.as_deref(),
            Some("echo: failure requested")
        );
        let not_a_trigger = Plan::parse("/failover plan");
        assert_eq!(not_a_trigger.fail, None);
        assert_eq!(not_a_trigger.text, "/failover plan");
    }
}
