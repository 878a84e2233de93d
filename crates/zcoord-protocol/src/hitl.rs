//! Human-in-the-loop requests on the wire: a tool call waiting for a person's approval, or a
//! question the model put to a person (seed 003's HITLView), the responses a client gives, and
//! the `hitl.*` methods' params and results.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::ids::{HitlId, SessionId, TurnId};

/// The `resolved_by` of a request the server resolved itself (expiry, interrupt, deletion,
/// shutdown, crash recovery).
pub const RESOLVED_BY_SERVER: &str = "server";
/// The `resolved_by` of a response that named no `client_id`.
pub const RESOLVED_BY_ANONYMOUS: &str = "anonymous";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HitlType {
    ToolApproval,
    Question,
}

/// `pending`, then exactly one of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HitlStatus {
    Pending,
    Approved,
    Rejected,
    Answered,
    Expired,
    Cancelled,
}

impl HitlStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HitlStatus::Pending => "pending",
            HitlStatus::Approved => "approved",
            HitlStatus::Rejected => "rejected",
            HitlStatus::Answered => "answered",
            HitlStatus::Expired => "expired",
            HitlStatus::Cancelled => "cancelled",
        }
    }
}

/// What is asked: `{tool_name, call_id, params}` for an approval, `{call_id, question, options?}`
/// for a question. `params` is the call's arguments as JSON text; it and `question` are cut at
/// 8 KiB like every text an event carries (`*_truncated` then says so; the whole call is in the
/// tool message). At most 32 options of 1 KiB each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum HitlPayload {
    ToolApproval {
        tool_name: String,
        call_id: String,
        params: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        params_truncated: bool,
    },
    Question {
        call_id: String,
        question: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        options: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        question_truncated: bool,
    },
}

impl HitlPayload {
    pub fn call_id(&self) -> &str {
        match self {
            HitlPayload::ToolApproval { call_id, .. } | HitlPayload::Question { call_id, .. } => {
                call_id
            }
        }
    }
}

/// A decision on a tool approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    /// This call and every later call of the same tool in the session, without asking again.
    ApproveSession,
    Reject,
}

impl Decision {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "approve" => Decision::Approve,
            "approve_session" => Decision::ApproveSession,
            "reject" => Decision::Reject,
            _ => return None,
        })
    }
}

/// How a request was answered: `{decision, reason?}` or `{answer}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum HitlResponse {
    Decision {
        decision: Decision,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The answer, cut at 8 KiB here (`answer_truncated`); the tool result has it whole.
    Answer {
        answer: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        answer_truncated: bool,
    },
}

/// One request, as `hitl.pending`, `hitl.resolved`, `hitl.list` and `state.sync` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HitlRequest {
    pub id: HitlId,
    pub session_id: SessionId,
    pub turn_id: TurnId,
    #[serde(rename = "type")]
    pub kind: HitlType,
    pub status: HitlStatus,
    pub payload: HitlPayload,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HitlResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    #[schemars(with = "crate::schema::Timestamp")]
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[schemars(with = "Option<crate::schema::Timestamp>")]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub resolved_at: Option<OffsetDateTime>,
    #[schemars(with = "Option<crate::schema::Timestamp>")]
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub expires_at: Option<OffsetDateTime>,
}

impl HitlRequest {
    /// Bytes of the texts it carries (payload, response, who resolved it): what it costs beyond
    /// its fixed fields, counted without encoding it.
    pub fn text_bytes(&self) -> usize {
        let payload = match &self.payload {
            HitlPayload::ToolApproval {
                tool_name,
                call_id,
                params,
                ..
            } => tool_name.len() + call_id.len() + params.len(),
            HitlPayload::Question {
                call_id,
                question,
                options,
                ..
            } => {
                call_id.len()
                    + question.len()
                    + options.iter().flatten().map(String::len).sum::<usize>()
            }
        };
        let response = match &self.response {
            Some(HitlResponse::Decision { reason, .. }) => reason.as_ref().map_or(0, String::len),
            Some(HitlResponse::Answer { answer, .. }) => answer.len(),
            None => 0,
        };
        payload + response + self.resolved_by.as_ref().map_or(0, String::len)
    }
}

/// `hitl.respond`'s params, checked: exactly the response the request's type takes is decided
/// by the core (it knows the type); here only their shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Respond {
    pub id: String,
    pub decision: Option<Decision>,
    pub answer: Option<String>,
    pub reason: Option<String>,
    pub client_id: Option<String>,
}

/// `hitl.list`'s answer: the pending requests, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HitlListResult {
    pub requests: Vec<HitlRequest>,
}

/// `hitl.respond`'s answer: the request as resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RespondResult {
    pub ok: bool,
    pub request: HitlRequest,
}
