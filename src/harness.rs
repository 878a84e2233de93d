//! The request path without sockets, for the fuzzer (`fuzz/`) and the corpus replay test: frames
//! in, a reply or a drop out, through the very framing, size limit, decoder, method parser, core
//! and encoders the server runs, with model reports and ticks fed back so state grows. Also owns
//! the script format a fuzz input is read as and the invariants every reply and event must keep
//! (`expect`). Decides nothing itself and opens no socket; the server does not use it.

use time::macros::datetime;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::core::ids::Sequential;
use crate::core::models::ModelEntry;
use crate::core::policy::Policy;
use crate::core::replay::ReplayLimits;
use crate::core::{CallContext, Core, CoreConfig, Effect, InstanceMeta, ModelEvent, TurnEffect};
use crate::protocol::ids::{HitlId, InstanceId, TurnId};

use crate::protocol::methods::{DropCounters, Endpoints};
use crate::protocol::usage::TurnUsage;
use crate::protocol::welcome::{requested_token, Welcome, WELCOME_PREFIX};
use crate::store::memory::MemoryStore;
use crate::store::{Rows, Store};
use crate::transport::framing::Route;
use crate::transport::triage::{triage, Triage};

mod expect;
pub use expect::check_reply;
use expect::EventChecks;

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
/// The tool the corpus's clients declare in `client.hello`; `!S` starts a call of it.
pub const CLIENT_TOOL: &str = "fuzz_client";

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
    /// `!`, then one byte each of `op` and `selector`, then `text`; see [`Harness::control`].
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
    events: EventChecks,
    /// Set by `q`: the actor's loop has ended, so it ticks no more.
    shut_down: bool,
    /// The first invariant broken inside the path (an event, the pending count), for `run`.
    broken: Option<String>,
    /// Where the changes go and the reads come from, as the server's store.
    store: MemoryStore,
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
        let mut config = CoreConfig {
            idempotency_capacity: 2,
            replay: REPLAY_LIMITS,
            hitl_timeout: Some(time::Duration::seconds(2)),
            ..CoreConfig::default()
        };
        config.tool_policy.set("word_count", Policy::Ask);
        // A second model, so scripts can switch sessions and messages between two names.
        config.models.add(
            "fast",
            ModelEntry {
                provider: "fuzz".into(),
                context_bytes: 1 << 10,
            },
        );
        Harness {
            core: Core::new(meta, config, Box::new(Sequential::default())),
            now: T0,
            turns: Vec::new(),
            events: EventChecks::default(),
            shut_down: false,
            broken: None,
            store: MemoryStore::new(),
        }
    }

    /// One ROUTER message, as `transport::server::TransportThread::handle_message` and then
    /// `app::Actor::on_inbound` treat it. Left out, as nothing ever waits here: the queue between
    /// them (`server_busy`), the per-peer pending bound and the drain (`shutting_down`).
    pub fn handle(&mut self, frames: &[Vec<u8>]) -> Outcome {
        // The transport thread's own triage; what it lets through goes through `Core::answer`
        // as in the server (admission by pending counts and the queue is the transport's state,
        // not exercised here).
        let (route, calls) = match triage(frames, frames.len(), MAX_MESSAGE_BYTES) {
            Triage::Calls { route, calls } => (route, calls),
            Triage::Answer { route, body, .. } => return Outcome::Reply { route, body },
            Triage::Drop => return Outcome::Dropped,
        };
        // The transport counts a peer's pending requests by this; a wrong guess leaks the count.
        let promised = calls.expects_reply();
        let ctx = CallContext {
            now: self.now,
            peer: route.identity.clone(),
            drops: DropCounters::default(),
            transport: Default::default(),
        };
        let answer = self.core.answer(calls, &ctx);
        if promised != answer.is_some() {
            let sent = if answer.is_some() {
                "sent"
            } else {
                "did not send"
            };
            self.broken.get_or_insert_with(|| {
                format!("Calls::expects_reply() is {promised}, but the actor {sent} a reply")
            });
        }
        // The changes reach the store before the reads run, as on the store's thread.
        self.apply_effects();
        match answer {
            Some(answer) => Outcome::Reply {
                route,
                body: answer
                    .ready()
                    .unwrap_or_else(|a| a.finish(&mut Rows(&mut self.store))),
            },
            None => Outcome::Dropped,
        }
    }

    /// A control step. Model reports, for the turn `selector` picks among all started so far
    /// (with none started, an id no turn has): `t` token `text`, `s` tool start (of a tool
    /// `selector` picks: unknown, `ask_user` or one that asks), `a` a piece of the arguments of
    /// the call `s` starts, `e` tool end (an error when `text` is empty), `S` a start of
    /// [`CLIENT_TOOL`] (run by a client that declared it), `u` usage, `f` finished, `x` failed;
    /// `r` a `hitl.respond` (see
    /// `Harness::respond`). The actor's own inputs: `h` heartbeat, `c` checkpoint and
    /// expiry, `q` shutdown; and `w`, the welcome the transport
    /// publishes for a subscription to `instance.welcome/<text>` (not numbered: it must carry the
    /// last event's number),
    /// `k` the clock forward by `selector` × 100 ms. Any other op does nothing, and after `q` so do
    /// the actor's own inputs (its loop has ended).
    pub fn control(&mut self, op: u8, selector: u8, text: &[u8]) {
        let turn = match self.turns.len() {
            0 => TurnId(Uuid::from_u128(u128::from(selector))),
            n => self.turns[usize::from(selector) % n],
        };
        let text = String::from_utf8_lossy(text).into_owned();
        let event = match op {
            b't' => ModelEvent::Token(text),
            // A tool the server does not have (runs at once), a question, or one whose
            // policy here is `ask`.
            b's' => ModelEvent::ToolStart {
                call_id: format!("call-{selector}").into(),
                tool_name: ["fuzz", "ask_user", "word_count"][usize::from(selector % 3)].into(),
                params: text,
            },
            // A call of the tool the seeds' clients declare (`client.hello`): run by a client.
            b'S' => ModelEvent::ToolStart {
                call_id: format!("call-{selector}").into(),
                tool_name: CLIENT_TOOL.into(),
                params: text,
            },
            b'e' => ModelEvent::ToolEnd {
                call_id: format!("call-{selector}").into(),
                is_error: text.is_empty(),
                result: text,
            },
            b'u' => ModelEvent::Usage(TurnUsage {
                input_tokens: text.len() as u64,
                output_tokens: u64::from(selector),
                ..TurnUsage::default()
            }),
            // A piece of the arguments of the call `s` would start with this selector.
            b'a' => ModelEvent::ToolArgs {
                call_id: format!("call-{selector}").into(),
                tool_name: ["fuzz", "ask_user", "word_count"][usize::from(selector % 3)].into(),
                delta: text,
            },
            b'f' => ModelEvent::Finished,
            b'x' => ModelEvent::Failed(text),
            // After shutdown the actor's loop is over: no ticks, only queued requests answered.
            b'h' | b'c' | b'q' if self.shut_down => return,
            b'h' => {
                self.core.heartbeat(self.now);
                return self.apply_effects();
            }
            b'c' => {
                self.core.tick(self.now);
                return self.apply_effects();
            }
            b'r' => return self.respond(selector, text),
            b'w' => {
                // What the transport thread publishes on a subscription to
                // `instance.welcome/<text>`: no number of its own, the last event's in its payload.
                let subscription = format!("{WELCOME_PREFIX}{text}");
                if let Some(token) = requested_token(subscription.as_bytes()) {
                    let last = self.core.seq();
                    let w = Welcome::encode(token, last, self.now, self.core.instance_id());
                    let frames = [w.key.into_bytes(), w.body];
                    let answered = Welcome::parse(&frames, token).map(|e| e.payload.last_seq);
                    if answered != Some(last) {
                        self.broken
                            .get_or_insert(format!("welcome for {token:?}: {answered:?}"));
                    }
                }
                return;
            }
            b'q' => {
                self.shut_down = true;
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

    /// Human-in-the-loop requests resolved so far (each after its `hitl.pending`).
    pub fn hitl_resolved(&self) -> usize {
        self.events.resolved()
    }

    /// `hitl.respond` to a pending request (the one `selector` picks, oldest first), through
    /// the request path: an answer, or a decision (`selector` picks which), with `text`.
    fn respond(&mut self, selector: u8, text: String) {
        let mut pending: Vec<HitlId> = self.events.pending.keys().copied().collect();
        pending.sort();
        let id = match pending.len() {
            0 => "none".to_owned(),
            n => pending[usize::from(selector) % n].to_string(),
        };
        let params = match selector % 4 {
            0 => serde_json::json!({"id": id, "answer": text}),
            1 => serde_json::json!({"id": id, "decision": "approve"}),
            2 => serde_json::json!({"id": id, "decision": "approve_session", "client_id": text}),
            _ => serde_json::json!({"id": id, "decision": "reject", "reason": text}),
        };
        let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "hitl.respond",
                                      "params": params});
        let frames = vec![b"fuzz-peer".to_vec(), body.to_string().into_bytes()];
        let outcome = self.handle(&frames);
        if let Err(what) = check_reply(&frames, &outcome) {
            self.broken.get_or_insert(what);
        }
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
                .and_then(|()| self.broken.take().map_or(Ok(()), Err))
                .map_err(|what| Violation { step, what })?;
        }
        Ok(())
    }

    /// Drains the core's effects after each input, as the actor does, noting started turns and
    /// checking every event.
    fn apply_effects(&mut self) {
        if let Err(what) = self.check_effects() {
            self.broken.get_or_insert(what);
        }
    }

    fn check_effects(&mut self) -> Result<(), String> {
        for effect in self.core.take_effects() {
            match effect {
                Effect::Turn(TurnEffect::Start {
                    turn_id, context, ..
                }) => {
                    self.turns.push(turn_id);
                    let history = context
                        .execute(&mut Rows(&mut self.store))
                        .map_err(|e| format!("a turn's history could not be read: {e}"))?;
                    if history.is_empty() {
                        return Err("a turn started from no history".into());
                    }
                }
                Effect::Persist { change, .. } => self
                    .store
                    .commit(std::slice::from_ref(&change))
                    .map_err(|e| format!("the memory store refused a change: {e}"))?,
                Effect::Publish(p) => self.events.check(&p)?,
                Effect::Turn(TurnEffect::Cancel(_)) | Effect::Turn(TurnEffect::Verdict { .. }) => {}
            }
        }
        Ok(())
    }
}
