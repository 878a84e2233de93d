//! The request path without sockets, for the fuzzer (`fuzz/`) and the corpus replay test: frames
//! in, a reply or a drop out, through the very framing, size limit, decoder, method parser, core
//! and encoders the server runs, with model reports and ticks fed back so state grows. Also owns
//! the script format a fuzz input is read as and the invariants every reply and event must keep.
//! Decides nothing itself and opens no socket; the server does not use it.

use serde_json::{Map, Value};
use time::macros::datetime;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::core::ids::Sequential;
use crate::core::replay::ReplayLimits;
use crate::core::{CallContext, Core, CoreConfig, Effect, InstanceMeta, ModelEvent};
use crate::protocol::errors::{code, RpcError};
use crate::protocol::events::Event;
use crate::protocol::ids::{InstanceId, TurnId};
use crate::protocol::jsonrpc::{
    decode, encode_batch, Id, Incoming, Request, Response, MAX_BATCH_LEN,
};
use crate::protocol::methods::{Call, DropCounters, Endpoints};
use crate::transport::framing::{classify, Framed, Route};

/// Frames the transport keeps of one message (`MAX_FRAMES_KEPT` in transport/server.rs, private
/// there); the rest are only counted.
pub const MAX_FRAMES_KEPT: usize = 4;
/// Small on purpose, so a fuzzer's short inputs reach the size refusal and the ring's eviction.
pub const MAX_MESSAGE_BYTES: usize = 2_048;
const REPLAY_LIMITS: ReplayLimits = ReplayLimits {
    max_events: 64,
    max_bytes: 16 << 10,
};
/// Separates the steps of a script, and the frames of one message (ASCII RS and US: bytes JSON
/// never contains unescaped, so any request body can be written between them).
pub const STEP_SEPARATOR: u8 = 0x1e;
pub const FRAME_SEPARATOR: u8 = 0x1f;
/// A step starting with this byte is a control step (model report or tick), not a message.
pub const CONTROL: u8 = b'!';

const T0: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

/// What the transport does with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Reply {
        route: Route,
        body: Vec<u8>,
    },
    /// Nothing goes back: no identity to route by, or the message held only notifications.
    Dropped,
}

/// An invariant broken at one step of a script.
#[derive(Debug, thiserror::Error)]
#[error("step {step}: {what}")]
pub struct Violation {
    pub step: usize,
    pub what: String,
}

/// One step of a script: a ROUTER message (routing id first), or a control step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<'a> {
    Message(Vec<&'a [u8]>),
    /// `!` op selector text: op picks what happens, selector picks a turn or an amount.
    Control {
        op: u8,
        selector: u8,
        text: &'a [u8],
    },
}

/// Reads a script: steps separated by [`STEP_SEPARATOR`]; a message's frames separated by
/// [`FRAME_SEPARATOR`]; an empty step is a message of no frames at all.
pub fn script(input: &[u8]) -> impl Iterator<Item = Step<'_>> {
    input
        .split(|b| *b == STEP_SEPARATOR)
        .map(|step| match step {
            [] => Step::Message(Vec::new()),
            [CONTROL, rest @ ..] => Step::Control {
                op: rest.first().copied().unwrap_or(0),
                selector: rest.get(1).copied().unwrap_or(0),
                text: rest.get(2..).unwrap_or(&[]),
            },
            _ => Step::Message(step.split(|b| *b == FRAME_SEPARATOR).collect()),
        })
}

/// A core with deterministic ids and a clock that moves only when a script says so.
pub struct Harness {
    core: Core,
    now: OffsetDateTime,
    /// Every turn the core asked to start, ended or not: reports for ended ones must be ignored.
    turns: Vec<TurnId>,
    /// `seq` of the last numbered event seen.
    seq: u64,
    /// The first event that broke an invariant, for `run` to report.
    bad_event: Option<String>,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    pub fn new() -> Self {
        let meta = InstanceMeta {
            instance_id: InstanceId(Uuid::from_u128(0xf022)),
            started_at: T0,
            version: "fuzz".into(),
            pid: 1,
            endpoints: Endpoints {
                rpc: "ipc://fuzz-rpc".into(),
                pub_: "ipc://fuzz-pub".into(),
            },
            model: "fuzz".into(),
            store: "memory".into(),
        };
        let config = CoreConfig {
            idempotency_capacity: 2,
            replay: REPLAY_LIMITS,
            ..CoreConfig::default()
        };
        Harness {
            core: Core::new(meta, config, Box::new(Sequential::default())),
            now: T0,
            turns: Vec::new(),
            seq: 0,
            bad_event: None,
        }
    }

    /// One ROUTER message, as `transport::server::Server::handle_message` and then
    /// `app::Actor::on_inbound` treat it (minus the queue between them, which never fills here).
    pub fn handle(&mut self, frames: &[Vec<u8>]) -> Outcome {
        let total = frames.len();
        let kept = &frames[..total.min(MAX_FRAMES_KEPT)];
        let (route, body) = match classify(kept, total) {
            Framed::Request { route, body } => (route, body),
            Framed::BadShape { route, frames } => {
                return error_reply(route, RpcError::invalid_frames(frames))
            }
            Framed::Unroutable => return Outcome::Dropped,
        };
        if body.len() > MAX_MESSAGE_BYTES {
            return error_reply(
                route,
                RpcError::message_too_large(body.len(), MAX_MESSAGE_BYTES),
            );
        }
        // Glue repeated from `Server::handle_message` and `Actor::on_inbound` (both private):
        // which answer a decoded message gets, and that a batch of notifications gets none.
        let body = match decode(body) {
            Incoming::Invalid(resp) | Incoming::Single(Err(resp)) => Some(resp.to_bytes()),
            Incoming::Single(Ok(req)) => self.answer(req).map(|r| r.to_bytes()),
            Incoming::Batch(items) => {
                let responses: Vec<Response> = items
                    .into_iter()
                    .filter_map(|item| match item {
                        Ok(req) => self.answer(req),
                        Err(resp) => Some(resp),
                    })
                    .collect();
                encode_batch(&responses)
            }
        };
        self.apply_effects();
        match body {
            Some(body) => Outcome::Reply { route, body },
            None => Outcome::Dropped,
        }
    }

    /// One call through the core; `None` for a notification. Repeats `app::Actor::handle`
    /// (private there) line for line, with the harness clock and no transport counters.
    fn answer(&mut self, req: Request) -> Option<Response> {
        let Request { id, method, params } = req;
        let outcome = Call::parse(&method, params).and_then(|call| {
            let ctx = CallContext {
                now: self.now,
                drops: DropCounters::default(),
            };
            self.core
                .call(call, &ctx)
                .map_err(RpcError::from)
                .and_then(|reply| {
                    serde_json::to_value(reply).map_err(|e| RpcError::internal(&e.to_string()))
                })
        });
        let id = id?;
        Some(match outcome {
            Ok(result) => Response::ok(id, result),
            Err(e) => Response::err(id, e),
        })
    }

    /// A control step: a model report for one of the turns started so far (`selector` picks it;
    /// with none started, an id no turn has), or a tick of the actor's.
    pub fn control(&mut self, op: u8, selector: u8, text: &[u8]) {
        let turn = match self.turns.len() {
            0 => TurnId(Uuid::from_u128(u128::from(selector))),
            n => self.turns[usize::from(selector) % n],
        };
        let text = String::from_utf8_lossy(text).into_owned();
        let event = match op {
            b't' => ModelEvent::Token(text),
            b's' => ModelEvent::ToolStart {
                call_id: format!("call-{selector}"),
                tool_name: "fuzz".into(),
                params: text,
            },
            b'e' => ModelEvent::ToolEnd {
                call_id: format!("call-{selector}"),
                is_error: text.is_empty(),
                result: text,
            },
            b'u' => ModelEvent::Usage {
                tokens_in: text.len() as u64,
                tokens_out: u64::from(selector),
            },
            b'f' => ModelEvent::Finished,
            b'x' => ModelEvent::Failed(text),
            b'h' => {
                self.core.heartbeat(self.now);
                return self.apply_effects();
            }
            b'c' => {
                self.core.checkpoint(self.now);
                return self.apply_effects();
            }
            b'w' => {
                self.core.welcome(text, self.now);
                return self.apply_effects();
            }
            b'q' => {
                self.core.shutdown(&text, self.now);
                return self.apply_effects();
            }
            b'k' => {
                self.now += time::Duration::milliseconds(i64::from(selector) * 100);
                return;
            }
            _ => return,
        };
        self.core.model_event(turn, event, self.now);
        self.apply_effects();
    }

    /// Runs a script, checking every reply and every event. Never panics on any input; a
    /// `Violation` is a bug in zcoord (or in these checks).
    pub fn run(&mut self, input: &[u8]) -> Result<(), Violation> {
        for (step, s) in script(input).enumerate() {
            let checked = match s {
                Step::Message(frames) => {
                    let frames: Vec<Vec<u8>> = frames.iter().map(|f| f.to_vec()).collect();
                    let outcome = self.handle(&frames);
                    check_reply(&frames, &outcome)
                }
                Step::Control { op, selector, text } => {
                    self.control(op, selector, text);
                    Ok(())
                }
            };
            checked
                .and_then(|()| self.bad_event.take().map_or(Ok(()), Err))
                .map_err(|what| Violation { step, what })?;
        }
        Ok(())
    }

    /// Drains the core's effects after each input, as the actor does, noting started turns and
    /// checking that events are numbered without gaps and go out as valid envelopes.
    fn apply_effects(&mut self) {
        if let Err(what) = self.check_effects() {
            self.bad_event.get_or_insert(what);
        }
    }

    fn check_effects(&mut self) -> Result<(), String> {
        for effect in self.core.take_effects() {
            match effect {
                Effect::StartTurn(start) => self.turns.push(start.turn_id),
                Effect::Publish(p) => {
                    let numbered = !matches!(p.event, Event::InstanceWelcome(_));
                    let want = if numbered { self.seq + 1 } else { self.seq };
                    if p.seq != want {
                        return Err(format!("event {} has seq {}, want {want}", p.key, p.seq));
                    }
                    self.seq = want;
                    let envelope: Value = serde_json::from_slice(&p.body)
                        .map_err(|e| format!("event {} is not JSON: {e}", p.key))?;
                    if envelope["seq"] != p.seq {
                        return Err(format!("event {} envelope seq differs", p.key));
                    }
                }
                Effect::CancelTurn(_) | Effect::Persist { .. } => {}
            }
        }
        Ok(())
    }
}

fn error_reply(route: Route, error: RpcError) -> Outcome {
    Outcome::Reply {
        route,
        body: Response::err(Id::Null, error).to_bytes(),
    }
}

/// What one message must get back, worked out from the JSON-RPC 2.0 spec and the documented
/// limits alone (not by calling the decoder), so the decoder is checked rather than trusted.
enum Expected {
    /// One response object with this id, and this error code when the code is already known.
    One(Value, Option<i64>),
    /// A batch: one response per call that is not a valid notification, ids in order.
    Batch(Vec<Value>),
    Nothing,
}

fn expected(frames: &[Vec<u8>]) -> Expected {
    let refused = |code| Expected::One(Value::Null, Some(code));
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
        Ok(Value::Array(items)) => Expected::Batch(items.iter().filter_map(reply_id).collect()),
        Ok(call) => match reply_id(&call) {
            Some(id) => Expected::One(id, None),
            None => Expected::Nothing,
        },
    }
}

/// The id a call's response must carry, or `None` for a valid notification (never answered).
fn reply_id(call: &Value) -> Option<Value> {
    let Value::Object(obj) = call else {
        return Some(Value::Null);
    };
    match obj.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id.clone()),
        Some(_) => Some(Value::Null),
        None if is_valid_call(obj) => None,
        None => Some(Value::Null),
    }
}

fn is_valid_call(obj: &Map<String, Value>) -> bool {
    obj.get("jsonrpc") == Some(&Value::from("2.0"))
        && matches!(obj.get("method"), Some(Value::String(_)))
        && matches!(
            obj.get("params"),
            None | Some(Value::Null | Value::Object(_) | Value::Array(_))
        )
}

/// Checks what the path did with `frames` against what the spec says it must.
pub fn check_reply(frames: &[Vec<u8>], outcome: &Outcome) -> Result<(), String> {
    let (route, body) = match (outcome, expected(frames)) {
        (Outcome::Dropped, Expected::Nothing) => return Ok(()),
        (Outcome::Dropped, Expected::Batch(ids)) if ids.is_empty() => return Ok(()),
        (Outcome::Dropped, _) => return Err("dropped a message that needs an answer".into()),
        (Outcome::Reply { route, body }, want) => {
            let body: Value = serde_json::from_slice(body)
                .map_err(|e| format!("reply is not JSON: {e}: {}", lossy(body)))?;
            match (want, &body) {
                (Expected::Nothing, _) => return Err(format!("answered a notification: {body}")),
                (Expected::One(id, code), _) => check_response(&body, &id, code)?,
                (Expected::Batch(ids), Value::Array(items)) if items.len() == ids.len() => {
                    for (item, id) in items.iter().zip(&ids) {
                        check_response(item, id, None)?;
                    }
                }
                (Expected::Batch(ids), _) => {
                    return Err(format!("want a batch of {} responses: {body}", ids.len()))
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

/// A JSON-RPC 2.0 response object with exactly `result` or `error`, echoing `id`.
fn check_response(resp: &Value, id: &Value, want_code: Option<i64>) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{why}: {resp}"));
    let Value::Object(obj) = resp else {
        return bad("response is not an object");
    };
    if obj.get("jsonrpc") != Some(&Value::from("2.0")) {
        return bad("jsonrpc is not \"2.0\"");
    }
    if obj.get("id") != Some(id) {
        return Err(format!("id not echoed: want {id}, got {resp}"));
    }
    let code = match (obj.get("result"), obj.get("error")) {
        (Some(_), None) if obj.len() == 3 => None,
        (None, Some(Value::Object(e))) if obj.len() == 3 => {
            let (Some(code), Some(Value::String(_))) = (e.get("code"), e.get("message")) else {
                return bad("error without an integer code and a message");
            };
            let Some(code) = code.as_i64() else {
                return bad("error code is not an integer");
            };
            if !EXPECTED_CODES.contains(&code) {
                return bad("unexpected error code");
            }
            Some(code)
        }
        _ => return bad("want exactly one of result and error"),
    };
    if want_code.is_some() && code != want_code {
        return Err(format!("want error code {want_code:?}: {resp}"));
    }
    Ok(())
}

/// Every code in `protocol::errors::code` but -32603: an internal error is always a bug.
const EXPECTED_CODES: &[i64] = &[
    code::PARSE_ERROR,
    code::INVALID_REQUEST,
    code::METHOD_NOT_FOUND,
    code::INVALID_PARAMS,
    code::SESSION_NOT_FOUND,
    code::SESSION_BUSY,
    code::MESSAGE_TOO_LARGE,
    code::SERVER_BUSY,
    code::SHUTTING_DOWN,
    code::INVALID_FRAMES,
    code::MESSAGE_NOT_FOUND,
    code::REPLAY_UNAVAILABLE,
];

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
