//! The oracle: what a message must get back, worked out from the JSON-RPC 2.0 spec and the
//! documented limits alone (never by calling the decoder), so the path is checked, not trusted;
//! and what the published events must keep, whatever the requests were.

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::Value;

use super::{Outcome, MAX_MESSAGE_BYTES};
use crate::protocol::errors::code;
use crate::protocol::events::{DequeueReason, Event, Published};
use crate::protocol::hitl::HitlStatus;
use crate::protocol::ids::{HitlId, MessageId, SessionId, TurnId};
use crate::protocol::jsonrpc::MAX_BATCH_LEN;
use crate::protocol::limits::{MAX_ARGS_DELTA_BYTES, MAX_EVENT_TEXT_BYTES};
use crate::protocol::methods::ALL;

/// What one message must get back.
enum Expected {
    One(Answer),
    /// A batch: one response per call that is not a valid notification, in order.
    Batch(Vec<Answer>),
    Nothing,
}

/// One response: its id, and its error code when the spec fixes it before the core is asked.
struct Answer {
    id: Value,
    code: Option<i64>,
}

impl Answer {
    fn refused(id: Value, code: i64) -> Self {
        Answer {
            id,
            code: Some(code),
        }
    }
}

fn expected(frames: &[Vec<u8>]) -> Expected {
    let refused = |code| Expected::One(Answer::refused(Value::Null, code));
    let body = match frames {
        [] => return Expected::Nothing,
        [_, body] => body,
        [_, delimiter, body] if delimiter.is_empty() => body,
        _ => return refused(code::INVALID_FRAMES),
    };
    if body.len() > MAX_MESSAGE_BYTES {
        return refused(code::MESSAGE_TOO_LARGE);
    }
    match serde_json::from_slice::<Value>(body) {
        Err(_) => refused(code::PARSE_ERROR),
        Ok(Value::Array(items)) if items.is_empty() || items.len() > MAX_BATCH_LEN => {
            refused(code::INVALID_REQUEST)
        }
        Ok(Value::Array(items)) => Expected::Batch(items.iter().filter_map(answer_to).collect()),
        Ok(call) => answer_to(&call).map_or(Expected::Nothing, Expected::One),
    }
}

/// The answer one call must get; `None` for a valid notification, which is never answered.
/// An invalid call is answered -32600 even without an id, with `null` when its id is unusable.
fn answer_to(call: &Value) -> Option<Answer> {
    let invalid = |id| Some(Answer::refused(id, code::INVALID_REQUEST));
    let Value::Object(obj) = call else {
        return invalid(Value::Null);
    };
    let id = match obj.get("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id.clone()),
        Some(_) => return invalid(Value::Null),
    };
    let params_ok = matches!(
        obj.get("params"),
        None | Some(Value::Null | Value::Object(_) | Value::Array(_))
    );
    let method = match obj.get("method") {
        Some(Value::String(m)) if obj.get("jsonrpc") == Some(&Value::from("2.0")) && params_ok => m,
        _ => return invalid(id.unwrap_or(Value::Null)),
    };
    let code = (!ALL.contains(&method.as_str())).then_some(code::METHOD_NOT_FOUND);
    id.map(|id| Answer { id, code })
}

/// Checks what the path did with `frames` against what the spec says it must.
pub fn check_reply(frames: &[Vec<u8>], outcome: &Outcome) -> Result<(), String> {
    let (route, body) = match (outcome, expected(frames)) {
        (Outcome::Dropped, Expected::Nothing) => return Ok(()),
        (Outcome::Dropped, Expected::Batch(answers)) if answers.is_empty() => return Ok(()),
        (Outcome::Dropped, _) => return Err("dropped a message that needs an answer".into()),
        (Outcome::Reply { route, body }, want) => {
            let body: Value = serde_json::from_slice(body)
                .map_err(|e| format!("reply is not JSON: {e}: {}", lossy(body)))?;
            match (want, &body) {
                (Expected::Nothing, _) => return Err(format!("answered a notification: {body}")),
                (Expected::One(answer), _) => check_response(&body, &answer)?,
                (Expected::Batch(answers), Value::Array(items)) if items.len() == answers.len() => {
                    for (item, answer) in items.iter().zip(&answers) {
                        check_response(item, answer)?;
                    }
                }
                (Expected::Batch(answers), _) => {
                    return Err(format!(
                        "want a batch of {} responses: {body}",
                        answers.len()
                    ))
                }
            }
            (route, body)
        }
    };
    if frames.first() != Some(&route.identity) {
        return Err(format!("reply routed to the wrong peer: {body}"));
    }
    Ok(())
}

/// A JSON-RPC 2.0 response object with exactly `result` or `error`, echoing the id, with the
/// error code the spec fixes, or else a result or one of the codes a method call may end in.
fn check_response(resp: &Value, want: &Answer) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{why}: {resp}"));
    let Value::Object(obj) = resp else {
        return bad("response is not an object");
    };
    if obj.get("jsonrpc") != Some(&Value::from("2.0")) {
        return bad("jsonrpc is not \"2.0\"");
    }
    if obj.get("id") != Some(&want.id) {
        return Err(format!("id not echoed: want {}, got {resp}", want.id));
    }
    let code = match (obj.get("result"), obj.get("error")) {
        (Some(_), None) if obj.len() == 3 => None,
        (None, Some(Value::Object(e))) if obj.len() == 3 => {
            let (Some(code), Some(Value::String(_))) = (e.get("code"), e.get("message")) else {
                return bad("error without a code and a message");
            };
            let Some(code) = code.as_i64() else {
                return bad("error code is not an integer");
            };
            Some(code)
        }
        _ => return bad("want exactly one of result and error"),
    };
    let fine = match (want.code, code) {
        (Some(want), got) => got == Some(want),
        (None, None) => true,
        (None, Some(got)) => CALL_CODES.contains(&got),
    };
    if !fine {
        return Err(format!("want error code {:?}: {resp}", want.code));
    }
    Ok(())
}

/// What a known method with a usable envelope may fail with: never a framing, parse or internal
/// error, which would mean the path lost track of what it was answering.
const CALL_CODES: &[i64] = &[
    code::INVALID_PARAMS,
    code::SESSION_NOT_FOUND,
    code::SESSION_BUSY,
    code::SHUTTING_DOWN,
    code::MESSAGE_NOT_FOUND,
    code::REPLAY_UNAVAILABLE,
    code::TOO_MANY_SESSIONS,
    code::HITL_NOT_FOUND,
    code::HITL_RESOLVED,
    code::VERSION_MISMATCH,
    code::TOOL_CLAIMED,
    code::TOOL_CALL_NOT_FOUND,
    code::NOT_CLAIMANT,
    code::TOO_MANY_CLIENTS,
    code::MODEL_NOT_FOUND,
    code::QUEUE_FULL,
];

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The event stream's promises (proto-docs/PROTOCOL.md §4 and §7): `seq` counts up by one with
/// no gap; every `llm.start` gets exactly one `llm.end`, and its tokens and
/// tool events come between them; every `tool.start` gets exactly one `tool.end` before its
/// turn's `llm.end`; a call's `tool.args` are indexed 0, 1, 2…, none empty or over 4 KiB, at
/// most 8 KiB in all; `llm.end`'s usage agrees with its token counts; every `hitl.pending`
/// gets exactly one `hitl.resolved`, before its turn's `llm.end`; `tool.claimed` names an open
/// call, once; every `message.queued` gets one `message.dequeued`, oldest first, and one that
/// starts is followed at once by its `message.append` and `llm.start`; nothing names a session
/// after its `session.deleted`; nothing is numbered after `instance.shutdown`; each envelope is
/// the JSON it claims.
#[derive(Debug, Default)]
pub(super) struct EventChecks {
    seq: u64,
    running: HashSet<TurnId>,
    /// Tool calls started and not yet ended; a model may reuse a call id, hence the count.
    open_tools: HashMap<(TurnId, String), u32>,
    /// `tool.args` of calls not yet started: the next index and the bytes so far.
    args: HashMap<(TurnId, String), (u64, usize)>,
    deleted: HashSet<SessionId>,
    shut_down: bool,
    /// Requests pending, with their turn; and every request ever resolved.
    pub(super) pending: HashMap<HitlId, TurnId>,
    resolved: HashSet<HitlId>,
    /// Client-run calls claimed (`tool.claimed`): at most once each.
    claimed: HashSet<(TurnId, String)>,
    /// Messages queued per session (message, turn), oldest first.
    queued: HashMap<SessionId, VecDeque<(MessageId, TurnId)>>,
    /// A queued message that left to start: its `message.append`, then its `llm.start`, come
    /// next (the `bool`: its append came).
    starting: Option<(MessageId, TurnId, bool)>,
}

impl EventChecks {
    /// Requests resolved so far.
    pub(super) fn resolved(&self) -> usize {
        self.resolved.len()
    }

    pub(super) fn check(&mut self, p: &Published) -> Result<(), String> {
        let want = self.seq + 1;
        self.seq = want;
        let broken = if p.seq != want {
            Some(format!("want seq {want}"))
        } else if self.shut_down {
            Some("published after instance.shutdown".into())
        } else if p
            .event
            .session_id()
            .is_some_and(|s| self.deleted.contains(&s))
        {
            Some("names a deleted session".into())
        } else {
            self.follow(&p.event).err()
        };
        if let Some(why) = broken {
            return Err(format!("event {} (seq {}): {why}", p.key, p.seq));
        }
        match serde_json::from_slice::<Value>(&p.body) {
            Ok(envelope) if envelope["seq"] == p.seq => Ok(()),
            _ => Err(format!(
                "event {}: envelope is not JSON carrying its seq",
                p.key
            )),
        }
    }

    /// Tracks turns, tool calls, deletions and shutdown.
    fn follow(&mut self, event: &Event) -> Result<(), String> {
        let inside_turn = match event {
            Event::LlmToken(t) => Some(t.turn_id),
            Event::ToolArgs(t) => Some(t.turn_id),
            Event::ToolStart(t) => Some(t.turn_id),
            Event::ToolEnd(t) => Some(t.turn_id),
            Event::HitlPending(r) => Some(r.turn_id),
            Event::ToolClaimed(c) => Some(c.turn_id),
            _ => None,
        };
        if let Some(turn) = inside_turn.filter(|t| !self.running.contains(t)) {
            return Err(format!("turn {turn} is not running"));
        }
        if let Some((message, turn, appended)) = self.starting {
            match event {
                Event::MessageAppend(m) if !appended && m.message_id == message => {
                    self.starting = Some((message, turn, true));
                }
                Event::LlmStart(s) if appended && s.turn_id == turn => self.starting = None,
                _ => {
                    return Err(
                        "a started queued message's append and llm.start must come next".into(),
                    )
                }
            }
        }
        match event {
            Event::LlmStart(s) if !self.running.insert(s.turn_id) => {
                return Err("a second llm.start".into())
            }
            Event::ToolArgs(a) => {
                let (next, bytes) = self.args.entry((a.turn_id, a.call_id.clone())).or_default();
                *bytes += a.delta.len();
                if a.index != *next
                    || a.delta.is_empty()
                    || a.delta.len() > MAX_ARGS_DELTA_BYTES
                    || *bytes > MAX_EVENT_TEXT_BYTES
                {
                    return Err("tool.args out of order, empty or over its bounds".into());
                }
                *next += 1;
            }
            Event::ToolStart(t) => {
                self.claimed.remove(&(t.turn_id, t.call_id.clone()));
                // What the deltas carried cannot be checked against `params` here: a fuzzed
                // model streams text its start then contradicts (the proptests check it).
                self.args.remove(&(t.turn_id, t.call_id.clone()));
                *self
                    .open_tools
                    .entry((t.turn_id, t.call_id.clone()))
                    .or_default() += 1;
            }
            Event::ToolEnd(t) => match self.open_tools.get_mut(&(t.turn_id, t.call_id.clone())) {
                Some(n) if *n > 0 => *n -= 1,
                _ => return Err("tool.end without its tool.start".into()),
            },
            Event::LlmEnd(e) => {
                if !self.running.remove(&e.turn_id) {
                    return Err("llm.end for a turn not running".into());
                }
                let open = |((turn, _), n): (&(TurnId, String), &u32)| *turn == e.turn_id && *n > 0;
                if self.open_tools.iter().any(open) {
                    return Err("llm.end with a tool call still open".into());
                }
                if self.pending.values().any(|t| *t == e.turn_id) {
                    return Err("llm.end with a request still pending".into());
                }
                self.open_tools.retain(|(turn, _), _| *turn != e.turn_id);
                self.args.retain(|(turn, _), _| *turn != e.turn_id);
                if (e.usage.input_tokens, e.usage.output_tokens) != (e.tokens_in, e.tokens_out) {
                    return Err("llm.end usage disagrees with tokens_in/tokens_out".into());
                }
            }
            Event::ToolClaimed(c) => {
                let open = self.open_tools.get(&(c.turn_id, c.call_id.clone()));
                if open.is_none_or(|n| *n == 0) {
                    return Err("tool.claimed for a call not open".into());
                }
                if !self.claimed.insert((c.turn_id, c.call_id.clone())) {
                    return Err("a second tool.claimed for one call".into());
                }
            }
            Event::SessionDeleted(s) => {
                self.deleted.insert(s.id);
                if self.queued.get(&s.id).is_some_and(|q| !q.is_empty()) {
                    return Err("a deleted session's queue was not discarded".into());
                }
            }
            Event::MessageQueued(q) => {
                let queue = self.queued.entry(q.session_id).or_default();
                queue.push_back((q.message_id, q.turn_id));
                if q.position != queue.len() as u64 {
                    return Err("message.queued at the wrong position".into());
                }
            }
            Event::MessageDequeued(d) => {
                let queue = self.queued.entry(d.session_id).or_default();
                if queue.pop_front() != Some((d.message_id, d.turn_id)) {
                    return Err("message.dequeued is not the oldest queued message".into());
                }
                if d.queue_length != queue.len() as u64 {
                    return Err("message.dequeued with the wrong queue_length".into());
                }
                if d.reason == DequeueReason::Started {
                    self.starting = Some((d.message_id, d.turn_id, false));
                }
            }
            Event::InstanceShutdown(_) => self.shut_down = true,
            Event::HitlPending(r) => {
                if r.status != HitlStatus::Pending || self.resolved.contains(&r.id) {
                    return Err("hitl.pending not pending, or for a resolved request".into());
                }
                if self.pending.insert(r.id, r.turn_id).is_some() {
                    return Err("a second hitl.pending".into());
                }
            }
            Event::HitlResolved(r) => {
                if r.status == HitlStatus::Pending || r.resolved_by.is_none() {
                    return Err("hitl.resolved still pending, or resolved by nobody".into());
                }
                if !self.resolved.insert(r.id) {
                    return Err("a second hitl.resolved".into());
                }
                // A request a crash left pending is resolved by a restart that never
                // published its hitl.pending: not here, where nothing restarts.
                if self.pending.remove(&r.id).is_none() {
                    return Err("hitl.resolved without its hitl.pending".into());
                }
            }
            _ => {}
        }
        Ok(())
    }
}
