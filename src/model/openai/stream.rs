//! One streamed answer of the model: server-sent events framed by `eventsource-stream`, each
//! `data:` payload parsed as a chunk, content pieces and tool-call argument pieces streamed to the
//! turn's sink as they come, tool calls assembled, usage kept. A silence longer than the chunk timeout, a malformed
//! payload or a stream that ends before `data: [DONE]` is an error. Does not retry: by the time a
//! stream is read, the request has succeeded.

use std::fmt;
use std::time::Duration;

use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::StreamExt;
use reqwest::header::CONTENT_TYPE;
use reqwest::Response;

use super::calls::{ArgsPiece, AssembledCall, CallAssembler, CallIds};
use super::client::read_excerpt;
use super::wire::{error_excerpt, truncate_chars, ChatChunk, Usage};
use crate::core::ModelEvent;
use crate::model::{ModelError, TurnSink};

/// Longest piece of a bad payload quoted in an error.
const EXCERPT_CHARS: usize = 300;

/// What one round trip to the model produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RoundOutput {
    /// All content pieces of the round, concatenated.
    pub text: String,
    pub calls: Vec<AssembledCall>,
    /// The last usage the server reported in this round, if any.
    pub usage: Option<Usage>,
    pub finish_reason: Option<String>,
}

/// What a chunk gives the turn's sink, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Args(ArgsPiece),
}

impl From<Piece> for ModelEvent {
    fn from(piece: Piece) -> ModelEvent {
        match piece {
            Piece::Text(text) => ModelEvent::Token(text),
            Piece::Args(a) => ModelEvent::ToolArgs {
                call_id: a.call_id.into(),
                tool_name: a.tool_name,
                delta: a.delta,
            },
        }
    }
}

/// The state of a round as its chunks arrive.
#[derive(Debug, Default)]
pub struct Round {
    text: String,
    calls: CallAssembler,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    done: bool,
}

impl Round {
    /// Applies one `data:` payload; returns the pieces to stream, in order. A call is given its
    /// turn's id (from `ids`) when its first piece arrives.
    pub fn apply(&mut self, data: &str, ids: &mut CallIds) -> Result<Vec<Piece>, String> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(Vec::new());
        }
        let chunk: ChatChunk = serde_json::from_str(data).map_err(|e| {
            format!(
                "malformed JSON in the stream ({e}): {}",
                truncate_chars(data, EXCERPT_CHARS)
            )
        })?;
        if let Some(error) = chunk.error {
            let body = serde_json::json!({ "error": error }).to_string();
            return Err(format!(
                "the server reported an error in the stream: {}",
                error_excerpt(&body, EXCERPT_CHARS)
            ));
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        let mut pieces = Vec::new();
        // We ask for one choice; a server that sends more gets the first one heard.
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                self.text.push_str(&text);
                pieces.push(Piece::Text(text));
            }
            for piece in choice.delta.tool_calls {
                pieces.extend(self.calls.add(piece, ids)?.map(Piece::Args));
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
        }
        Ok(pieces)
    }

    /// Whether `data: [DONE]` was seen: the only clean end of a stream.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The round's result. Calls are run whatever the finish reason ("tool_calls", or "stop"
    /// from servers that say so with calls); "length" is a normal end too.
    pub fn finish(self) -> RoundOutput {
        RoundOutput {
            text: self.text,
            calls: self.calls.finish(),
            usage: self.usage,
            finish_reason: self.finish_reason,
        }
    }
}

/// Why the body stopped: the transport failed, or the server said nothing for too long.
#[derive(Debug)]
enum BodyError {
    Http(reqwest::Error),
    Silent,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Http(e) => write!(f, "{}", super::client::root_cause(e)),
            BodyError::Silent => f.write_str("silence"),
        }
    }
}

/// Reads a successful response to its `[DONE]`, streaming content to `sink` as it comes.
/// Dropping the future drops the response, which closes the connection.
pub async fn read_round(
    response: Response,
    sink: &TurnSink,
    ids: &mut CallIds,
    chunk_timeout: Duration,
) -> Result<RoundOutput, ModelError> {
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        let excerpt = read_excerpt(response, chunk_timeout).await;
        return Err(ModelError::Failed(format!(
            "the server answered with JSON instead of an event stream: {excerpt}"
        )));
    }

    // The timeout sits under the SSE framing so that keep-alive comments count as signs of life.
    let body = futures_util::stream::unfold(response.bytes_stream(), move |mut body| async move {
        match tokio::time::timeout(chunk_timeout, body.next()).await {
            Ok(Some(item)) => Some((item.map_err(BodyError::Http), body)),
            Ok(None) => None,
            Err(_) => Some((Err(BodyError::Silent), body)),
        }
    });
    let mut events = Box::pin(body).eventsource();
    let mut round = Round::default();

    while let Some(event) = events.next().await {
        let event = event.map_err(|e| ModelError::Failed(stream_error(e, chunk_timeout)))?;
        if event.event == "error" {
            return Err(ModelError::Failed(format!(
                "the server sent an error event: {}",
                error_excerpt(&event.data, EXCERPT_CHARS)
            )));
        }
        for piece in round.apply(&event.data, ids).map_err(ModelError::Failed)? {
            tracing::trace!(piece = ?piece, "openai piece");
            sink.emit(piece.into()).await?;
        }
        if round.is_done() {
            return Ok(round.finish());
        }
    }
    Err(ModelError::Failed(
        "the stream ended without `data: [DONE]` (truncated)".into(),
    ))
}

fn stream_error(e: EventStreamError<BodyError>, chunk_timeout: Duration) -> String {
    match e {
        EventStreamError::Transport(BodyError::Silent) => format!(
            "the server sent nothing for {chunk_timeout:?} (chunk timeout) before `data: [DONE]`"
        ),
        EventStreamError::Transport(e) => {
            format!("the stream was cut off before `data: [DONE]`: {e}")
        }
        EventStreamError::Utf8(e) => format!("the stream is not valid UTF-8: {e}"),
        EventStreamError::Parser(e) => format!("malformed event stream: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text pieces of `payloads`, in order.
    fn feed(round: &mut Round, payloads: &[&str]) -> Vec<String> {
        feed_all(round, payloads)
            .into_iter()
            .filter_map(|p| match p {
                Piece::Text(t) => Some(t),
                Piece::Args(_) => None,
            })
            .collect()
    }

    fn feed_all(round: &mut Round, payloads: &[&str]) -> Vec<Piece> {
        let mut ids = CallIds::default();
        payloads
            .iter()
            .flat_map(|p| round.apply(p, &mut ids).unwrap())
            .collect()
    }

    #[test]
    fn content_pieces_stream_in_order_and_empty_ones_are_skipped() {
        let mut round = Round::default();
        let pieces = feed(
            &mut round,
            &[
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
                r#"{"choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
                r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
                "[DONE]",
            ],
        );
        assert_eq!(pieces, ["Hel", "lo"]);
        assert!(round.is_done());
        let out = round.finish();
        assert_eq!(out.text, "Hello");
        assert_eq!(out.finish_reason.as_deref(), Some("length"));
        assert_eq!(out.usage, None);
        assert!(out.calls.is_empty());
    }

    #[test]
    fn usage_comes_from_the_last_chunk_that_has_it() {
        let mut round = Round::default();
        feed(
            &mut round,
            &[
                r#"{"choices":[{"delta":{"content":"a"}}],"usage":null}"#,
                r#"{"choices":[{"delta":{"content":"b"}}],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#,
                r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#,
                r#"{"choices":[],"usage":null}"#,
            ],
        );
        assert_eq!(
            round.finish().usage,
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 2,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn tool_calls_and_text_in_one_round() {
        let mut round = Round::default();
        let pieces = feed_all(
            &mut round,
            &[
                r#"{"choices":[{"delta":{"content":"Let me look."}}]}"#,
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c0","type":"function","function":{"name":"clock","arguments":""}}]}}]}"#,
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#,
                r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
            ],
        );
        assert_eq!(
            pieces,
            [
                Piece::Text("Let me look.".into()),
                Piece::Args(ArgsPiece {
                    call_id: "c0".into(),
                    tool_name: "clock".into(),
                    delta: "{}".into()
                })
            ]
        );
        let out = round.finish();
        assert_eq!(out.text, "Let me look.");
        assert_eq!(out.calls.len(), 1);
        assert_eq!(out.calls[0].name, "clock");
        assert_eq!(out.calls[0].arguments, "{}");
    }

    #[test]
    fn other_choices_are_ignored() {
        let mut round = Round::default();
        let pieces = feed(
            &mut round,
            &[
                r#"{"choices":[{"index":1,"delta":{"content":"no"}},{"index":0,"delta":{"content":"yes"}}]}"#,
            ],
        );
        assert_eq!(pieces, ["yes"]);
    }

    #[test]
    fn malformed_payloads_and_in_stream_errors_are_errors() {
        let err = Round::default()
            .apply(r#"{"choices":[{"delta":"#, &mut CallIds::default())
            .unwrap_err();
        assert!(err.starts_with("malformed JSON in the stream"), "{err}");
        assert!(err.contains(r#"{"choices":[{"delta":"#), "{err}");
        let err = Round::default()
            .apply(
                r#"{"error":{"message":"overloaded","code":503}}"#,
                &mut CallIds::default(),
            )
            .unwrap_err();
        assert_eq!(
            err,
            "the server reported an error in the stream: overloaded"
        );
    }
}
