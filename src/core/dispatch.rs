//! The core's dispatch: one call in, its answer (or the read that answers it) out; each method
//! is handed to the file that owns its concept. Also `events.replay`, answered from the ring.

use super::answer::{Outcome, SessionsReply};
use super::effects::{Effect, TurnEffect};
use super::error::CoreError;
use super::read::Read;
use super::session::clip_title;
use super::state::{CallContext, Core};
use crate::protocol::events::{DequeueReason, EndReason};
use crate::protocol::hitl::HitlListResult;
use crate::protocol::methods::{
    Call, InterruptResult, OkResult, PingResult, ReplayRequest, ReplayResult, Reply,
};

impl Core {
    /// Answers one call, or says what to read from the store to answer it (the history lives
    /// there). Events it causes are queued as effects before this returns, so a reply sent after
    /// them never overtakes them.
    pub fn call(&mut self, call: Call, ctx: &CallContext) -> Result<Outcome, CoreError> {
        let now = ctx.now;
        self.touch(&ctx.peer, now);
        let reply = match call {
            // The history lives in the store: these are answered by reading it.
            Call::MessageList { session_id, page } => {
                let s = self.session(&session_id)?;
                return Ok(Outcome::Read(Read::Page {
                    session_id: s.id,
                    count: s.message_count,
                    page,
                }));
            }
            Call::MessageGet {
                session_id,
                message_id,
            } => {
                let s = self.session(&session_id)?;
                return Ok(Outcome::Read(Read::Message {
                    session_id: s.id,
                    count: s.message_count,
                    message_id,
                }));
            }
            Call::InstancePing => Ok(Reply::Ping(PingResult {
                status: "ok".into(),
                instance_id: self.meta.instance_id,
                uptime: self.uptime(now),
            })),
            Call::InstanceInfo => Ok(Reply::Info(Box::new(self.info(ctx)))),
            Call::StateSync { project_id: _ } => {
                return Ok(Outcome::Sessions(SessionsReply::StateSync {
                    active_session_id: self.active,
                    instance_id: self.meta.instance_id,
                    seq: self.seq,
                    hitl: self.requests.pending(None),
                    clients: self.peers.list(),
                }))
            }
            Call::SessionList => return Ok(Outcome::Sessions(SessionsReply::SessionList)),
            Call::SessionGet { session_id } => {
                Ok(Reply::Session(self.session(&session_id)?.payload()))
            }
            Call::SessionCreate { title } => {
                self.refuse_if_shutting_down()?;
                self.refuse_if_degraded()?;
                let title = clip_title(title.as_deref().unwrap_or(""));
                let id = self.create_session(title, now)?;
                Ok(Reply::Session(self.sessions[&id].payload()))
            }
            Call::SessionDelete { session_id } => {
                self.refuse_if_shutting_down()?;
                self.refuse_if_degraded()?;
                let id = self.session(&session_id)?.id;
                self.delete_session(id, now);
                Ok(Reply::Ok(OkResult { ok: true }))
            }
            Call::SessionActivate { session_id } => {
                self.refuse_if_shutting_down()?;
                self.refuse_if_degraded()?;
                let id = self.session(&session_id)?.id;
                self.activate(id, now);
                Ok(Reply::Ok(OkResult { ok: true }))
            }
            Call::SessionInterrupt {
                session_id,
                clear_queue,
            } => {
                let s = self.session(&session_id)?;
                let (id, running) = (s.id, s.running);
                // Clearing is a change the events must show, and nothing follows
                // `instance.shutdown`: the queue is kept for the restart.
                if clear_queue {
                    self.refuse_if_shutting_down()?;
                }
                // Cleared first, so the end of the turn starts nothing.
                let cleared =
                    clear_queue.then(|| self.discard_queue(id, DequeueReason::Cleared, now));
                if let Some(turn_id) = running {
                    self.effects.push(Effect::Turn(TurnEffect::Cancel(turn_id)));
                    self.end_turn(turn_id, EndReason::Interrupted, None, now);
                }
                Ok(Reply::Interrupt(InterruptResult {
                    ok: true,
                    interrupted: running.is_some(),
                    cleared,
                }))
            }
            Call::MessageSend(send) => {
                let author = self.author(&ctx.peer);
                self.send(send, author, now).map(Reply::Send)
            }
            Call::EventsReplay(req) => self.replay(&req).map(Reply::Replay),
            Call::HitlList { session_id } => {
                let session = match session_id {
                    Some(raw) => Some(self.session(&raw)?.id),
                    None => None,
                };
                Ok(Reply::HitlList(HitlListResult {
                    requests: self.requests.pending(session),
                }))
            }
            Call::HitlRespond(mut r) => {
                // A client that said hello is who resolved it, whatever the params claim.
                if let Some(a) = self.author(&ctx.peer) {
                    r.client_id = Some(a.client_id);
                }
                self.respond(r, now).map(Reply::Respond)
            }
            Call::ClientHello(hello) => self.hello(*hello, &ctx.peer, now).map(Reply::Hello),
            Call::ClientList => Ok(Reply::ClientList(self.client_list())),
            Call::ClientGoodbye => {
                self.goodbye(&ctx.peer, now);
                Ok(Reply::Ok(OkResult { ok: true }))
            }
            Call::ToolClaim(r) => self.claim(r, &ctx.peer, now).map(Reply::Claim),
            Call::ToolResult(r) => self.tool_result(r, &ctx.peer).map(Reply::Ok),
            Call::SessionConfigure(c) => self.configure(c, now).map(Reply::Session),
            Call::ModelList => Ok(Reply::ModelList(self.config.models.list())),
        };
        reply.map(Outcome::Reply)
    }

    pub(super) fn replay(&self, req: &ReplayRequest) -> Result<ReplayResult, CoreError> {
        let unavailable = |reason: &'static str| CoreError::ReplayUnavailable {
            reason,
            oldest_seq: self.ring.oldest(),
            latest_seq: self.seq,
        };
        if let Some(id) = &req.instance_id {
            if *id != self.meta.instance_id.to_string() {
                return Err(unavailable("instance_changed"));
            }
        }
        let page = self
            .ring
            .replay(req.after_seq, &req.prefixes, req.limit)
            .map_err(|why| unavailable(why.as_str()))?;
        Ok(ReplayResult {
            instance_id: self.meta.instance_id,
            // The ring holds only envelopes this core encoded, so they parse.
            events: page
                .bodies
                .iter()
                .filter_map(|b| serde_json::from_slice(b).ok())
                .collect(),
            next_after_seq: page.next_after_seq,
            has_more: page.has_more,
            oldest_seq: self.ring.oldest(),
            latest_seq: self.seq,
        })
    }
}
