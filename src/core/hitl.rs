//! Human in the loop: the gate every tool call passes (policy, session grants, `ask_user`), the
//! requests that wait for a person, and how each is resolved exactly once: by the first
//! `hitl.respond`, by expiry, or by the server when its turn ends early (cancelled, before the
//! turn's `llm.end`). A resolution tells the model what to do with the call ([`Verdict`]).

use std::collections::VecDeque;

use serde_json::Value;
use time::OffsetDateTime;

use super::effects::{Effect, TurnEffect, Verdict};
use super::error::CoreError;
use super::persist::Change;
use super::policy::{Policy, ASK_USER};
use super::state::Core;
use crate::protocol::events::Event;
use crate::protocol::hitl::{
    Decision, HitlPayload, HitlRequest, HitlResponse, HitlStatus, HitlType, Respond, RespondResult,
    RESOLVED_BY_ANONYMOUS, RESOLVED_BY_SERVER,
};
use crate::protocol::ids::{CallId, HitlId, SessionId, TurnId};
use crate::protocol::limits::{clip_field, clip_text};

/// Resolved requests remembered, so a late `hitl.respond` learns who won (`hitl_resolved`)
/// rather than `hitl_not_found`. Each is at most ~20 KiB (its texts are cut at 8 KiB).
pub const RESOLVED_REMEMBERED: usize = 256;
/// A question's options: at most this many, each cut at this many bytes.
const MAX_OPTIONS: usize = 32;
const MAX_OPTION_BYTES: usize = 1 << 10;

/// Requests waiting and recently resolved.
#[derive(Debug, Default)]
pub struct Requests {
    /// Pending, oldest first (ids are v7: creation order).
    pub(super) pending: std::collections::BTreeMap<HitlId, HitlRequest>,
    resolved: VecDeque<HitlRequest>,
}

impl Requests {
    /// The pending requests, of one session or all, oldest first.
    pub fn pending(&self, session: Option<SessionId>) -> Vec<HitlRequest> {
        self.pending
            .values()
            .filter(|r| session.is_none_or(|s| r.session_id == s))
            .cloned()
            .collect()
    }

    fn remember(&mut self, request: HitlRequest) {
        if self.resolved.len() >= RESOLVED_REMEMBERED {
            self.resolved.pop_front();
        }
        self.resolved.push_back(request);
    }

    fn resolved(&self, id: HitlId) -> Option<&HitlRequest> {
        self.resolved.iter().rev().find(|r| r.id == id)
    }
}

impl Core {
    /// A model started a tool call: decides whether it runs now, waits for a person, or is
    /// refused, and tells the model (`TurnEffect::Verdict`) unless a person must answer first.
    pub(super) fn gate_tool(
        &mut self,
        turn_id: TurnId,
        session_id: SessionId,
        call_id: &CallId,
        tool_name: &str,
        params: &str,
        now: OffsetDateTime,
    ) {
        if tool_name == ASK_USER {
            match question(params) {
                Ok((question, options)) => {
                    let mut question = question;
                    let question_truncated = clip_field(&mut question).is_some();
                    let payload = HitlPayload::Question {
                        call_id: call_id.clone(),
                        question,
                        options,
                        question_truncated,
                    };
                    self.open_request(turn_id, session_id, HitlType::Question, payload, now);
                }
                Err(why) => self.verdict(turn_id, call_id, Verdict::Refuse(why)),
            }
            return;
        }
        let client = !self.executor_of(turn_id, tool_name).is_server();
        if !client && !self.config.known_tools.contains(tool_name) {
            // Nothing to approve: the tool does not exist, and running it says so.
            return self.verdict(turn_id, call_id, Verdict::Run);
        }
        match self.policy_of(turn_id, session_id, tool_name) {
            Policy::Allow => self.run_call(turn_id, call_id, now),
            Policy::Deny => self.verdict(
                turn_id,
                call_id,
                Verdict::Refuse(format!(
                    "denied: the server's tool policy does not let {tool_name} run"
                )),
            ),
            Policy::Ask => {
                let mut params = params.to_owned();
                let params_truncated = clip_field(&mut params).is_some();
                let payload = HitlPayload::ToolApproval {
                    tool_name: tool_name.to_owned(),
                    call_id: call_id.clone(),
                    params,
                    params_truncated,
                };
                self.open_request(turn_id, session_id, HitlType::ToolApproval, payload, now);
            }
        }
    }

    /// The policy a call of `tool` in the session meets: a session grant allows it; else the
    /// setting for the tool; else the default (`ask` for a built-in tool that is not harmless,
    /// `allow` for a client-run tool: the client that runs it answers for it).
    pub(super) fn policy_of(&self, turn_id: TurnId, session_id: SessionId, tool: &str) -> Policy {
        let granted = self
            .sessions
            .get(&session_id)
            .is_some_and(|s| s.grants.contains(tool));
        if granted {
            return Policy::Allow;
        }
        if self.executor_of(turn_id, tool).is_server() {
            self.config.tool_policy.policy(tool)
        } else {
            self.config
                .tool_policy
                .setting(tool)
                .unwrap_or(Policy::Allow)
        }
    }

    /// The call may run: a built-in tool runs now; a client-run one waits for its claim.
    fn run_call(&mut self, turn_id: TurnId, call_id: &CallId, now: OffsetDateTime) {
        let client = self
            .turns
            .get(&turn_id)
            // The newest: a model that reuses a call id means its latest call.
            .and_then(|t| t.open_tools.iter().rev().find(|c| c.call_id == *call_id))
            .is_some_and(|c| !c.executor.is_server());
        if client {
            self.open_client_call(turn_id, call_id, now);
        } else {
            self.verdict(turn_id, call_id, Verdict::Run);
        }
    }

    fn open_request(
        &mut self,
        turn_id: TurnId,
        session_id: SessionId,
        kind: HitlType,
        payload: HitlPayload,
        now: OffsetDateTime,
    ) {
        let request = HitlRequest {
            id: HitlId(self.ids.next_id()),
            session_id,
            turn_id,
            kind,
            status: HitlStatus::Pending,
            payload,
            response: None,
            resolved_by: None,
            created_at: now,
            resolved_at: None,
            expires_at: self.config.hitl_timeout.map(|t| now + t),
        };
        self.requests.pending.insert(request.id, request.clone());
        self.persist(Change::HitlUpsert(Box::new(request.clone())));
        self.publish(Event::HitlPending(request), now);
    }

    pub(super) fn verdict(&mut self, turn_id: TurnId, call_id: &CallId, verdict: Verdict) {
        self.effects.push(Effect::Turn(TurnEffect::Verdict {
            turn_id,
            call_id: call_id.clone(),
            verdict,
        }));
    }

    /// `hitl.respond`: the first answer wins; the request is resolved, saved and published,
    /// and the model told.
    pub(super) fn respond(
        &mut self,
        r: Respond,
        now: OffsetDateTime,
    ) -> Result<RespondResult, CoreError> {
        let not_found = || CoreError::HitlNotFound(r.id.clone());
        let id = HitlId::parse(&r.id).ok_or_else(not_found)?;
        let Some(pending) = self.requests.pending.get(&id) else {
            return Err(match self.requests.resolved(id) {
                Some(done) => CoreError::HitlResolved(Box::new(done.clone())),
                None => not_found(),
            });
        };
        let (status, response, verdict) = match (pending.kind, r.decision, r.answer) {
            (HitlType::ToolApproval, Some(decision), None) => {
                let who = r.client_id.as_deref().unwrap_or(RESOLVED_BY_ANONYMOUS);
                let (status, verdict) = match decision {
                    Decision::Approve | Decision::ApproveSession => {
                        (HitlStatus::Approved, Verdict::Run)
                    }
                    Decision::Reject => (
                        HitlStatus::Rejected,
                        Verdict::Refuse(match &r.reason {
                            Some(reason) => format!("rejected by {who}: {reason}"),
                            None => format!("rejected by {who}"),
                        }),
                    ),
                };
                let response = HitlResponse::Decision {
                    decision,
                    reason: r.reason.clone(),
                };
                (status, response, verdict)
            }
            (HitlType::Question, None, Some(answer)) => {
                let mut shown = answer.clone();
                let answer_truncated = clip_field(&mut shown).is_some();
                let response = HitlResponse::Answer {
                    answer: shown,
                    answer_truncated,
                };
                (HitlStatus::Answered, response, Verdict::Answer(answer))
            }
            (HitlType::ToolApproval, _, _) => {
                return Err(CoreError::InvalidParams {
                    field: "decision",
                    message: "this request is a tool approval: give a decision".into(),
                })
            }
            (HitlType::Question, _, _) => {
                return Err(CoreError::InvalidParams {
                    field: "answer",
                    message: "this request is a question: give an answer".into(),
                })
            }
        };
        // A response is a change: while the store cannot save it, it is refused like the rest.
        self.refuse_if_degraded()?;
        let Some(mut request) = self.requests.pending.remove(&id) else {
            return Err(not_found());
        };
        let grant = matches!(
            response,
            HitlResponse::Decision {
                decision: Decision::ApproveSession,
                ..
            }
        );
        request.status = status;
        request.response = Some(response);
        request.resolved_by = Some(
            r.client_id
                .unwrap_or_else(|| RESOLVED_BY_ANONYMOUS.to_owned()),
        );
        request.resolved_at = Some(now);
        let call_id = request.payload.call_id().to_owned();
        let (turn_id, session_id) = (request.turn_id, request.session_id);
        self.finish_request(request.clone(), now);
        if grant {
            if let HitlPayload::ToolApproval { tool_name, .. } = &request.payload {
                self.grant(session_id, tool_name, now);
            }
        }
        match verdict {
            Verdict::Run => self.run_call(turn_id, &call_id, now),
            other => self.verdict(turn_id, &call_id, other),
        }
        Ok(RespondResult { ok: true, request })
    }

    /// Saves, publishes and remembers a request in its final state.
    fn finish_request(&mut self, request: HitlRequest, now: OffsetDateTime) {
        self.persist(Change::HitlUpsert(Box::new(request.clone())));
        self.requests.remember(request.clone());
        self.publish(Event::HitlResolved(request), now);
    }

    /// Every later call of `tool` in the session runs without asking.
    fn grant(&mut self, session_id: SessionId, tool: &str, now: OffsetDateTime) {
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return;
        };
        if !session.grants.insert(tool.to_owned()) {
            return;
        }
        let payload = session.payload();
        self.persist(Change::GrantAdd {
            session_id,
            tool_name: tool.to_owned(),
            granted_at: now,
        });
        self.publish(Event::SessionUpdate(payload), now);
    }

    /// The server resolves the turn's pending requests as `cancelled` (its turn is ending).
    pub(super) fn cancel_requests(&mut self, turn_id: TurnId, now: OffsetDateTime) {
        let ids: Vec<HitlId> = self
            .requests
            .pending
            .values()
            .filter(|r| r.turn_id == turn_id)
            .map(|r| r.id)
            .collect();
        for id in ids {
            if let Some(request) = self.requests.pending.remove(&id) {
                self.server_resolves(request, HitlStatus::Cancelled, now);
            }
        }
    }

    fn server_resolves(
        &mut self,
        mut request: HitlRequest,
        status: HitlStatus,
        now: OffsetDateTime,
    ) {
        request.status = status;
        request.resolved_by = Some(RESOLVED_BY_SERVER.to_owned());
        request.resolved_at = Some(now);
        self.finish_request(request, now);
    }

    /// Requests past their `expires_at` become `expired`; their calls do not run.
    pub fn expire_requests(&mut self, now: OffsetDateTime) {
        let due: Vec<HitlId> = self
            .requests
            .pending
            .values()
            .filter(|r| r.expires_at.is_some_and(|e| e <= now))
            .map(|r| r.id)
            .collect();
        for id in due {
            let Some(request) = self.requests.pending.remove(&id) else {
                continue;
            };
            let (turn_id, call_id) = (request.turn_id, request.payload.call_id().to_owned());
            let waited = self
                .config
                .hitl_timeout
                .map_or(0, |t| t.whole_seconds().max(0));
            self.server_resolves(request, HitlStatus::Expired, now);
            self.verdict(
                turn_id,
                &call_id,
                Verdict::Refuse(format!("expired: nobody answered within {waited} s")),
            );
        }
    }

    /// At start-up: requests a crash left pending are cancelled (their turns are gone).
    pub(super) fn cancel_restored(&mut self, pending: Vec<HitlRequest>, now: OffsetDateTime) {
        for request in pending {
            if request.status == HitlStatus::Pending {
                self.server_resolves(request, HitlStatus::Cancelled, now);
            }
        }
    }
}

/// `ask_user`'s arguments: `{question, options?: [string]}`.
fn question(params: &str) -> Result<(String, Option<Vec<String>>), String> {
    let bad = |why: &str| {
        format!("ask_user: {why}; it takes {{\"question\": string, \"options\"?: [string]}}")
    };
    let v: Value = serde_json::from_str(params).map_err(|_| bad("the arguments are not JSON"))?;
    let question = v
        .get("question")
        .and_then(Value::as_str)
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| bad("no question"))?
        .to_owned();
    let options = match v.get("options") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .take(MAX_OPTIONS)
                .map(|o| {
                    let o = o.as_str().ok_or_else(|| bad("an option is not a string"))?;
                    Ok(clip_text(o, MAX_OPTION_BYTES).unwrap_or(o).to_owned())
                })
                .collect::<Result<Vec<_>, String>>()?,
        ),
        Some(_) => return Err(bad("options is not a list")),
    };
    Ok((question, options))
}
