//! Calls of client-run tools: once a call may run (the policy or a person allowed it) it waits to
//! be claimed; the first `tool.claim` from a client that declared the tool wins and is announced
//! (`tool.claimed`); the winner's `tool.result` ends it. Nobody claiming in time, the claimant
//! leaving, or the turn ending ends it as an error instead. Each call ends exactly once.

use std::collections::VecDeque;

use time::OffsetDateTime;

use super::effects::Verdict;
use super::error::CoreError;
use super::state::Core;
use crate::protocol::clients::{
    CallRef, Executor, LeaveReason, ToolClaimResult, ToolClaimedPayload, ToolResultParams,
};
use crate::protocol::events::Event;
use crate::protocol::ids::{CallId, SessionId, TurnId};
use crate::protocol::methods::OkResult;

/// Client calls that ended, remembered so a late `tool.claim`/`tool.result` hears "already
/// ended" rather than "unknown".
const ENDED_REMEMBERED: usize = 256;

/// A client-run call that may run, waiting for its claim or its result.
#[derive(Debug, Clone)]
pub struct ClientCall {
    pub session_id: SessionId,
    pub turn_id: TurnId,
    pub call_id: CallId,
    pub tool_name: String,
    /// Its arguments whole (`tool.start` may show them cut): the claim's reply carries them.
    pub params: String,
    /// When it became claimable: nobody claiming by then + the claim timeout ends it.
    pub opened_at: OffsetDateTime,
    pub claimant: Option<String>,
}

/// The client calls open now, and the last ones that ended.
#[derive(Debug, Default)]
pub struct Claims {
    pub(super) open: Vec<ClientCall>,
    ended: VecDeque<(TurnId, CallId)>,
}

impl Claims {
    fn matching<'a>(&'a self, r: &'a CallRef) -> impl Iterator<Item = usize> + 'a {
        self.open
            .iter()
            .enumerate()
            .filter(move |(_, c)| c.call_id == r.call_id && turn_matches(c.turn_id, r))
            .map(|(i, _)| i)
    }

    fn ended(&self, r: &CallRef) -> bool {
        self.ended
            .iter()
            .any(|(turn, call)| *call == r.call_id && turn_matches(*turn, r))
    }

    fn close(&mut self, i: usize) -> ClientCall {
        let call = self.open.remove(i);
        if self.ended.len() >= ENDED_REMEMBERED {
            self.ended.pop_front();
        }
        self.ended.push_back((call.turn_id, call.call_id.clone()));
        call
    }
}

fn turn_matches(turn: TurnId, r: &CallRef) -> bool {
    r.turn_id.as_deref().is_none_or(|t| t == turn.to_string())
}

impl Core {
    /// Whether `tool` in a turn is run by a client: a tool the turn was offered from clients.
    pub(super) fn executor_of(&self, turn_id: TurnId, tool: &str) -> Executor {
        let offered = self
            .turns
            .get(&turn_id)
            .is_some_and(|t| t.client_tools.iter().any(|c| c.name == tool));
        if offered {
            Executor::Client
        } else {
            Executor::Server
        }
    }

    /// A client call may run: it waits for a claim, unless no present client offers its tool.
    pub(super) fn open_client_call(
        &mut self,
        turn_id: TurnId,
        call_id: &CallId,
        now: OffsetDateTime,
    ) {
        let Some(turn) = self.turns.get(&turn_id) else {
            return;
        };
        let Some(call) = turn.open_tools.iter().rev().find(|c| c.call_id == *call_id) else {
            return;
        };
        if !self.peers.offers(&call.tool_name) {
            let why = format!(
                "no connected client offers {}: the clients that declared it have left",
                call.tool_name
            );
            return self.tell_model(turn_id, call_id, true, why);
        }
        self.claims.open.push(ClientCall {
            session_id: turn.session_id,
            turn_id,
            call_id: call_id.clone(),
            tool_name: call.tool_name.clone(),
            params: call.params.clone(),
            opened_at: now,
            claimant: None,
        });
    }

    /// `tool.claim` from the socket `route`.
    pub(super) fn claim(
        &mut self,
        r: CallRef,
        route: &[u8],
        now: OffsetDateTime,
    ) -> Result<ToolClaimResult, CoreError> {
        let i = self.find_call(&r)?;
        let call = &self.claims.open[i];
        let Some(client_id) = self.peers.by_route(route).map(|p| p.info.client_id.clone()) else {
            return Err(CoreError::NotClaimant {
                call_id: r.call_id,
                why: format!(
                    "say client.hello first, declaring the tool {}",
                    call.tool_name
                ),
                claimant: call.claimant.clone(),
            });
        };
        if !self.peers.declares(&client_id, &call.tool_name) {
            return Err(CoreError::NotClaimant {
                call_id: r.call_id,
                why: format!(
                    "client {client_id} did not declare the tool {}",
                    call.tool_name
                ),
                claimant: call.claimant.clone(),
            });
        }
        match &call.claimant {
            Some(winner) if *winner != client_id => {
                return Err(CoreError::ToolClaimed {
                    call_id: r.call_id,
                    client_id: winner.clone(),
                })
            }
            Some(_) => {}
            None => {
                let call = &mut self.claims.open[i];
                call.claimant = Some(client_id.clone());
                let payload = ToolClaimedPayload {
                    session_id: call.session_id,
                    turn_id: call.turn_id,
                    call_id: call.call_id.clone(),
                    tool_name: call.tool_name.clone(),
                    client_id,
                };
                self.publish(Event::ToolClaimed(payload), now);
            }
        }
        let call = &self.claims.open[i];
        Ok(ToolClaimResult {
            ok: true,
            session_id: call.session_id,
            turn_id: call.turn_id,
            call_id: call.call_id.clone(),
            tool_name: call.tool_name.clone(),
            params: call.params.clone(),
        })
    }

    /// `tool.result` from the socket `route`: only the claimant's counts.
    pub(super) fn tool_result(
        &mut self,
        p: ToolResultParams,
        route: &[u8],
    ) -> Result<OkResult, CoreError> {
        let i = self.find_call(&p.call)?;
        let call = &self.claims.open[i];
        let caller = self
            .peers
            .by_route(route)
            .map(|p| p.info.client_id.as_str());
        if call.claimant.is_none() || call.claimant.as_deref() != caller {
            let why = match &call.claimant {
                Some(c) => format!("claimed by {c}; only the claimant's result counts"),
                None => "not claimed: call tool.claim first".to_owned(),
            };
            return Err(CoreError::NotClaimant {
                call_id: p.call.call_id,
                why,
                claimant: call.claimant.clone(),
            });
        }
        let call = self.claims.close(i);
        self.tell_model(call.turn_id, &call.call_id, p.is_error, p.result);
        Ok(OkResult { ok: true })
    }

    /// The one open call `r` names: unknown, ended, waiting for approval and ambiguous are
    /// each their own refusal.
    fn find_call(&self, r: &CallRef) -> Result<usize, CoreError> {
        let mut found = self.claims.matching(r);
        let (Some(i), None) = (found.next(), found.next()) else {
            if self.claims.matching(r).count() > 1 {
                return Err(CoreError::InvalidParams {
                    field: "turn_id",
                    message: format!(
                        "several running turns have a call {}: give its turn_id",
                        r.call_id
                    ),
                });
            }
            let waiting = self.turns.values().any(|t| {
                turn_matches(t.id, r) && t.open_tools.iter().any(|c| c.call_id == r.call_id)
            });
            let why = if self.claims.ended(r) {
                "already ended"
            } else if waiting {
                "not claimable yet: it waits for a person's approval (claim it after its \
                 hitl.resolved approves it)"
            } else {
                "no such client-run call is open"
            };
            return Err(CoreError::ToolCallNotFound {
                call_id: r.call_id.clone(),
                why: why.into(),
            });
        };
        Ok(i)
    }

    /// Calls nobody claimed within the claim timeout end as errors.
    pub fn expire_claims(&mut self, now: OffsetDateTime) {
        let timeout = self.config.claim_timeout;
        while let Some(i) = self
            .claims
            .open
            .iter()
            .position(|c| c.claimant.is_none() && now - c.opened_at >= timeout)
        {
            let call = self.claims.close(i);
            let why = format!(
                "nobody claimed the call within {} s: no client ran {}",
                timeout.whole_seconds(),
                call.tool_name
            );
            self.tell_model(call.turn_id, &call.call_id, true, why);
        }
    }

    /// A client left: the calls it claimed end as errors, and so do unclaimed calls of tools
    /// that no present client offers any more.
    pub(super) fn client_left(
        &mut self,
        client_id: &str,
        reason: LeaveReason,
        _now: OffsetDateTime,
    ) {
        let how = match reason {
            LeaveReason::Goodbye => "said goodbye",
            LeaveReason::Timeout => "timed out",
            LeaveReason::Replaced => "was replaced on its socket",
        };
        while let Some(i) = self.claims.open.iter().position(|c| {
            c.claimant.as_deref() == Some(client_id)
                || (c.claimant.is_none() && !self.peers.offers(&c.tool_name))
        }) {
            let call = self.claims.close(i);
            let why = match &call.claimant {
                Some(c) => format!("the client that claimed the call ({c}) left: it {how}"),
                None => format!("no connected client offers {} any more", call.tool_name),
            };
            self.tell_model(call.turn_id, &call.call_id, true, why);
        }
    }

    /// The model ended the call itself: nothing is left to claim.
    pub(super) fn close_claim(&mut self, turn_id: TurnId, call_id: &CallId) {
        if let Some(i) = self
            .claims
            .open
            .iter()
            .position(|c| c.turn_id == turn_id && c.call_id == *call_id)
        {
            self.claims.close(i);
        }
    }

    /// The turn is ending: its client calls are over (the turn's end closes them).
    pub(super) fn drop_claims(&mut self, turn_id: TurnId) {
        while let Some(i) = self.claims.open.iter().position(|c| c.turn_id == turn_id) {
            self.claims.close(i);
        }
    }

    fn tell_model(&mut self, turn_id: TurnId, call_id: &CallId, is_error: bool, result: String) {
        self.verdict(turn_id, call_id, Verdict::Result { is_error, result });
    }
}
