//! One decoded request frame through the core to the bytes of its answer: method parsing, the
//! call, and the JSON-RPC encoding. The server's actor and the fuzz harness both call this, so the
//! fuzzer covers exactly the code the server runs. Reads no clock: the caller passes the context.
//!
//! Calls the history answers (`message.list`, `message.get`) come out as [`Read`]s: the caller
//! runs them where the history is (the store's thread) and finishes the answer with
//! [`Answer::finish`].

use super::read::{MessageRows, Read, ReadError};
use super::state::{CallContext, Core};
use crate::protocol::errors::RpcError;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::protocol::clients::ClientInfo;
use crate::protocol::hitl::HitlRequest;
use crate::protocol::ids::{InstanceId, SessionId, TurnId};
use crate::protocol::jsonrpc::{encode_result, join_batch, Calls, Id, Request, Response};
use crate::protocol::methods::{Call, Reply};
#[cfg(test)]
use crate::protocol::methods::{SessionListResult, StateSyncResult};

/// What a call decided: its reply, the read that will make it, or an answer holding the session
/// list, which is encoded once per change rather than per call (`sessions.rs`).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Reply(Reply),
    Read(Read),
    Sessions(SessionsReply),
}

/// `state.sync` or `session.list`, but for the session list itself, which comes encoded.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionsReply {
    StateSync {
        active_session_id: Option<SessionId>,
        instance_id: InstanceId,
        seq: u64,
        hitl: Vec<HitlRequest>,
        clients: Vec<ClientInfo>,
    },
    SessionList,
}

/// [`StateSyncResult`] with its sessions already encoded: the same JSON, member for member.
#[derive(Serialize)]
struct EncodedStateSync<'a> {
    sessions: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    active_session_id: Option<SessionId>,
    instance_id: InstanceId,
    seq: u64,
    hitl: Vec<HitlRequest>,
    clients: Vec<ClientInfo>,
}

/// [`SessionListResult`] with its sessions already encoded.
#[derive(Serialize)]
struct EncodedSessionList<'a> {
    sessions: &'a RawValue,
}

/// One frame's answer, possibly waiting for reads.
#[derive(Debug)]
pub struct Answer {
    parts: Vec<Part>,
    batch: bool,
}

#[derive(Debug)]
enum Part {
    Done(Vec<u8>),
    Read { id: Id, read: Read },
}

impl Answer {
    /// The encoded answer, if it needs no read; else the answer back.
    pub fn ready(self) -> Result<Vec<u8>, Answer> {
        if self.parts.iter().any(|p| matches!(p, Part::Read { .. })) {
            return Err(self);
        }
        // No read is left, so the closure is never called.
        Ok(self.encode(|id, _| Response::err(id, RpcError::internal("unread")).to_bytes()))
    }

    /// Runs the reads over `rows` and encodes the whole answer.
    pub fn finish(self, rows: &mut dyn MessageRows) -> Vec<u8> {
        self.encode(|id, read| match read.execute(rows) {
            Ok(reply) => encode_result(&id, &reply),
            Err(e) => Response::err(id, read_error(e)).to_bytes(),
        })
    }

    /// The whole answer with every read refused with `error` (the reads could not run).
    pub fn fail(self, error: &RpcError) -> Vec<u8> {
        self.encode(|id, _| Response::err(id, error.clone()).to_bytes())
    }

    /// Encodes every part, each read by `read`, as one answer (a batch, or the single one).
    fn encode(self, mut read: impl FnMut(Id, Read) -> Vec<u8>) -> Vec<u8> {
        let mut parts: Vec<Vec<u8>> = self
            .parts
            .into_iter()
            .map(|p| match p {
                Part::Done(b) => b,
                Part::Read { id, read: r } => read(id, r),
            })
            .collect();
        if self.batch {
            join_batch(&parts).unwrap_or_default()
        } else {
            parts.pop().unwrap_or_default()
        }
    }
}

/// How a failed read is answered.
pub fn read_error(e: ReadError) -> RpcError {
    match e {
        ReadError::Core(e) => e.into(),
        ReadError::Rows(e) => RpcError::internal(&format!("reading the history failed: {e}")),
    }
}

impl Core {
    /// Answers every call of one frame; `None` when nothing goes back (notifications only).
    /// The events and changes the calls decide are queued as effects, before the answer is
    /// returned, so the caller can send the answer after them.
    pub fn answer(&mut self, calls: Calls, ctx: &CallContext) -> Option<Answer> {
        let (parts, batch) = match calls {
            Calls::Single(req) => (self.answer_one(req, ctx).into_iter().collect(), false),
            Calls::Batch(items) => {
                let parts: Vec<Part> = items
                    .into_iter()
                    .filter_map(|item| match item {
                        Ok(req) => self.answer_one(req, ctx),
                        Err(resp) => Some(Part::Done(resp.to_bytes())),
                    })
                    .collect();
                (parts, true)
            }
        };
        (!parts.is_empty()).then_some(Answer { parts, batch })
    }

    /// One call; `None` for a notification (which still runs; a read it would make is not).
    fn answer_one(&mut self, req: Request, ctx: &CallContext) -> Option<Part> {
        let Request { id, method, params } = req;
        // One span per call, for logs: its method (as parsed: a name a client made up is not
        // a field) and the session and turn it is about, when it names or starts one.
        let span = tracing::debug_span!(
            "request",
            method = tracing::field::Empty,
            session_id = tracing::field::Empty,
            turn_id = tracing::field::Empty,
        );
        let _entered = span.enter();
        let outcome = Call::parse(&method, params).and_then(|call| {
            span.record("method", call.method());
            if let Some(session_id) = session_of(&call) {
                span.record("session_id", session_id);
            }
            self.call(call, ctx).map_err(RpcError::from)
        });
        if let Ok(Outcome::Reply(reply)) = &outcome {
            if let Some((session_id, turn_id)) = turn_of(reply) {
                span.record("session_id", tracing::field::display(session_id));
                span.record("turn_id", tracing::field::display(turn_id));
            }
        }
        match &outcome {
            Ok(_) => tracing::trace!("answered"),
            Err(e) => tracing::debug!(code = e.code, "refused"),
        }
        let id = id?;
        Some(match outcome {
            Ok(Outcome::Reply(reply)) => Part::Done(encode_result(&id, &reply)),
            Ok(Outcome::Read(read)) => Part::Read { id, read },
            Ok(Outcome::Sessions(reply)) => Part::Done(self.encode_sessions(&id, reply)),
            Err(e) => Part::Done(Response::err(id, e).to_bytes()),
        })
    }
}

/// The session a call names, for its span.
fn session_of(call: &Call) -> Option<&str> {
    match call {
        Call::SessionGet { session_id }
        | Call::SessionDelete { session_id }
        | Call::SessionActivate { session_id }
        | Call::SessionInterrupt { session_id, .. }
        | Call::MessageList { session_id, .. }
        | Call::MessageGet { session_id, .. } => Some(session_id),
        Call::MessageSend(send) => send.session_id.as_deref(),
        Call::HitlList { session_id } => session_id.as_deref(),
        Call::SessionConfigure(c) => Some(&c.session_id),
        _ => None,
    }
}

/// The session and turn a reply is about, for its call's span: the turn a send started or
/// queued, the call a client claimed.
fn turn_of(reply: &Reply) -> Option<(SessionId, TurnId)> {
    match reply {
        Reply::Send(r) => Some((r.session_id, r.turn_id)),
        Reply::Claim(r) => Some((r.session_id, r.turn_id)),
        _ => None,
    }
}

impl Core {
    /// Encodes a [`SessionsReply`] with the session list as `sessions.rs` keeps it encoded.
    pub(super) fn encode_sessions(&mut self, id: &Id, reply: SessionsReply) -> Vec<u8> {
        let sessions = self.sessions.encoded();
        match reply {
            SessionsReply::StateSync {
                active_session_id,
                instance_id,
                seq,
                hitl,
                clients,
            } => encode_result(
                id,
                &EncodedStateSync {
                    sessions,
                    active_session_id,
                    instance_id,
                    seq,
                    hitl,
                    clients,
                },
            ),
            SessionsReply::SessionList => encode_result(id, &EncodedSessionList { sessions }),
        }
    }

    /// The same answer as a typed [`Reply`], the session list built afresh: for tests, which
    /// compare the two.
    #[cfg(test)]
    pub(super) fn typed_sessions(&self, reply: SessionsReply) -> Reply {
        match reply {
            SessionsReply::StateSync {
                active_session_id,
                instance_id,
                seq,
                hitl,
                clients,
            } => Reply::StateSync(StateSyncResult {
                sessions: self.session_list(),
                active_session_id,
                instance_id,
                seq,
                hitl,
                clients,
            }),
            SessionsReply::SessionList => Reply::SessionList(SessionListResult {
                sessions: self.session_list(),
            }),
        }
    }
}
