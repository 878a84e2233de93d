//! A tool call's arguments as the model writes them: `tool.args` deltas before the call's
//! `tool.start`, numbered per call, cut into pieces of at most `MAX_ARGS_DELTA_BYTES` and stopped
//! where `tool.start` cuts `params` (`MAX_EVENT_TEXT_BYTES`), so a call's deltas concatenated
//! always equal its `tool.start` `params`. What a model did not stream is published when the call
//! starts. Holds counts per call, never the text, and at most `MAX_ARGS_STREAMS` calls a turn.

use time::OffsetDateTime;

use super::state::Core;
use super::turn::ArgsStream;
use crate::protocol::events::{Event, ToolArgsPayload};
use crate::protocol::ids::{CallId, SessionId, TurnId};
use crate::protocol::limits::{
    clip_text, MAX_ARGS_DELTA_BYTES, MAX_ARGS_NAME_BYTES, MAX_ARGS_STREAMS, MAX_EVENT_TEXT_BYTES,
};
use crate::protocol::types::MessageStatus;

/// One call's deltas to publish: its ids, the index of the first, and the text they carry.
struct Pieces<'a> {
    call_id: &'a CallId,
    tool_name: &'a str,
    first_index: u64,
    text: &'a str,
}

impl Core {
    /// Applies a `ToolArgs` report of the model running `turn_id`. A delta for a call already
    /// started is dropped (`tool.args` never follow `tool.start`); a call past the bounds streams
    /// nothing now and has its arguments published at its start.
    pub(super) fn tool_args(
        &mut self,
        turn_id: TurnId,
        session_id: SessionId,
        call_id: CallId,
        tool_name: String,
        delta: String,
        now: OffsetDateTime,
    ) {
        let Some(turn) = self.turns.get_mut(&turn_id) else {
            return;
        };
        if delta.is_empty() || turn.open_tools.iter().any(|c| c.call_id == call_id) {
            return;
        }
        let pos = match turn.args.iter().position(|s| s.call_id == call_id) {
            Some(pos) => pos,
            None => {
                let fits = turn.args.len() < MAX_ARGS_STREAMS
                    && call_id.len() <= MAX_ARGS_NAME_BYTES
                    && tool_name.len() <= MAX_ARGS_NAME_BYTES;
                if !fits {
                    return;
                }
                turn.args.push(ArgsStream {
                    call_id,
                    tool_name,
                    next_index: 0,
                    bytes: 0,
                    cut: false,
                });
                turn.args.len() - 1
            }
        };
        let stream = &mut turn.args[pos];
        if stream.cut {
            return;
        }
        let room = MAX_EVENT_TEXT_BYTES - stream.bytes;
        let text = match clip_text(&delta, room) {
            // Past the bound, as `tool.start` cuts `params`: nothing of this call streams again,
            // or a later small character could follow one that did not fit.
            Some(head) => {
                stream.cut = true;
                head
            }
            None => delta.as_str(),
        };
        if text.is_empty() {
            return;
        }
        let first_index = stream.next_index;
        stream.next_index += deltas(text).count() as u64;
        stream.bytes += text.len();
        let stream = stream.clone();
        // The model now writes a call: the text before it is a message of its own.
        self.close_segment(turn_id, MessageStatus::Complete, now);
        self.publish_args(
            turn_id,
            session_id,
            Pieces {
                call_id: &stream.call_id,
                tool_name: &stream.tool_name,
                first_index,
                text,
            },
            now,
        );
    }

    /// Just before the `tool.start` of `call_id`: publishes what of its (cut) `params` its
    /// `tool.args` have not carried yet, and forgets the call's stream.
    pub(super) fn finish_args(
        &mut self,
        turn_id: TurnId,
        session_id: SessionId,
        call_id: &CallId,
        tool_name: &str,
        params: &str,
        now: OffsetDateTime,
    ) {
        let Some(turn) = self.turns.get_mut(&turn_id) else {
            return;
        };
        let stream = turn
            .args
            .iter()
            .position(|s| s.call_id == *call_id)
            .map(|pos| turn.args.swap_remove(pos));
        let (published, first_index) = match &stream {
            Some(s) if s.cut => return,
            Some(s) => (s.bytes, s.next_index),
            None => (0, 0),
        };
        let params = clip_text(params, MAX_EVENT_TEXT_BYTES).unwrap_or(params);
        // A provider whose deltas were not the start of `params` cannot be mended here.
        let Some(rest) = params.get(published..).filter(|r| !r.is_empty()) else {
            return;
        };
        self.publish_args(
            turn_id,
            session_id,
            Pieces {
                call_id,
                tool_name,
                first_index,
                text: rest,
            },
            now,
        );
    }

    fn publish_args(
        &mut self,
        turn_id: TurnId,
        session_id: SessionId,
        pieces: Pieces<'_>,
        now: OffsetDateTime,
    ) {
        for (index, delta) in (pieces.first_index..).zip(deltas(pieces.text)) {
            self.publish(
                Event::ToolArgs(ToolArgsPayload {
                    session_id,
                    turn_id,
                    call_id: pieces.call_id.clone(),
                    tool_name: pieces.tool_name.to_owned(),
                    index,
                    delta: delta.to_owned(),
                }),
                now,
            );
        }
    }
}

/// `text` in deltas of at most `MAX_ARGS_DELTA_BYTES`, cut on character boundaries.
fn deltas(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let head = clip_text(rest, MAX_ARGS_DELTA_BYTES).unwrap_or(rest);
        rest = &rest[head.len()..];
        Some(head)
    })
}
