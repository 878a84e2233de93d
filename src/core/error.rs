//! The core's refusals, and the one place they become JSON-RPC errors.

use super::queue::QueueScope;
use crate::protocol::clients::SUPPORTED_VERSIONS;
use crate::protocol::errors::RpcError;
use crate::protocol::hitl::HitlRequest;
use crate::protocol::ids::{CallId, SessionId, TurnId};
use crate::protocol::tool_schema::bad_tool;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoreError {
    #[error("session not found: {0}")]
    SessionNotFound(String),
    #[error("session {session_id} is busy with turn {turn_id}")]
    SessionBusy { session_id: String, turn_id: TurnId },
    #[error("server is shutting down")]
    ShuttingDown,
    #[error("{field}: message {id} is not in this session")]
    MessageNotFound { field: &'static str, id: String },
    #[error("replay unavailable ({reason}): oldest held {oldest_seq}, latest {latest_seq}")]
    ReplayUnavailable {
        reason: &'static str,
        oldest_seq: u64,
        latest_seq: u64,
    },
    #[error("{count} sessions held, the limit is {limit}")]
    TooManySessions { count: usize, limit: usize },
    #[error("store unavailable: {0}")]
    StoreUnavailable(String),
    #[error("{field}: {message}")]
    InvalidParams {
        field: &'static str,
        message: String,
    },
    #[error("no such request: {0}")]
    HitlNotFound(String),
    #[error("request {} already resolved", .0.id)]
    HitlResolved(Box<HitlRequest>),
    #[error("no common protocol version in {offered:?}")]
    VersionMismatch { offered: Vec<u32> },
    #[error("tool {name}: {why}")]
    InvalidTool { name: String, why: String },
    #[error("{limit} clients present")]
    TooManyClients { limit: usize },
    #[error("tool call {call_id} is claimed by {client_id}")]
    ToolClaimed { call_id: CallId, client_id: String },
    #[error("tool call {call_id}: {why}")]
    ToolCallNotFound { call_id: CallId, why: String },
    #[error("tool call {call_id}: {why}")]
    NotClaimant {
        call_id: CallId,
        why: String,
        claimant: Option<String>,
    },
    #[error("no model named {model:?}")]
    ModelNotFound {
        model: String,
        available: Vec<String>,
    },
    #[error("the {} queue is full ({} messages, {} bytes queued)", .scope.as_str(), .queued.0, .queued.1)]
    QueueFull {
        session_id: SessionId,
        scope: QueueScope,
        /// Messages and bytes the full queue holds.
        queued: (u64, u64),
        limit: Option<u64>,
        limit_bytes: u64,
    },
}

impl From<CoreError> for RpcError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::SessionNotFound(id) => RpcError::session_not_found(&id),
            CoreError::SessionBusy {
                session_id,
                turn_id,
            } => RpcError::session_busy(&session_id, &turn_id.to_string()),
            CoreError::ShuttingDown => RpcError::shutting_down(),
            CoreError::MessageNotFound { field, id } => RpcError::message_not_found(field, &id),
            CoreError::ReplayUnavailable {
                reason,
                oldest_seq,
                latest_seq,
            } => RpcError::replay_unavailable(reason, oldest_seq, latest_seq),
            CoreError::TooManySessions { count, limit } => {
                RpcError::too_many_sessions(count, limit)
            }
            CoreError::StoreUnavailable(reason) => RpcError::store_unavailable(&reason, None),
            CoreError::InvalidParams { field, message } => {
                RpcError::invalid_params(field, &message)
            }
            CoreError::HitlNotFound(id) => RpcError::hitl_not_found(&id),
            CoreError::HitlResolved(request) => RpcError::hitl_resolved(&request),
            CoreError::VersionMismatch { offered } => {
                RpcError::version_mismatch(&offered, SUPPORTED_VERSIONS)
            }
            CoreError::InvalidTool { name, why } => bad_tool(&name, &why),
            CoreError::TooManyClients { limit } => RpcError::too_many_clients(limit),
            CoreError::ToolClaimed { call_id, client_id } => {
                RpcError::tool_claimed(call_id.as_str(), &client_id)
            }
            CoreError::ToolCallNotFound { call_id, why } => {
                RpcError::tool_call_not_found(call_id.as_str(), &why)
            }
            CoreError::NotClaimant {
                call_id,
                why,
                claimant,
            } => RpcError::not_claimant(call_id.as_str(), &why, claimant.as_deref()),
            CoreError::ModelNotFound { model, available } => {
                RpcError::model_not_found(&model, &available)
            }
            CoreError::QueueFull {
                session_id,
                scope,
                queued,
                limit,
                limit_bytes,
            } => RpcError::queue_full(
                &session_id.to_string(),
                scope.as_str(),
                queued,
                limit,
                limit_bytes,
            ),
        }
    }
}
