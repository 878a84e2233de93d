"""The shapes methods and events share (PROTOCOL §4, §5, §6): sessions, messages, usage,
human-in-the-loop requests, clients and models. Wire types only: no sockets, no logic.

Optional fields (`?` in PROTOCOL.md) are the keys of the `total=False` class; the required ones
sit in its `_…Required` base. That split keeps `__required_keys__` right on Python 3.10 without
`typing_extensions`.
"""

from typing import Literal, TypedDict, Union

SessionStatus = Literal["idle", "running"]
Role = Literal["user", "assistant", "tool"]
MessageStatus = Literal["complete", "interrupted"]
HitlType = Literal["tool_approval", "question"]
HitlStatus = Literal["pending", "approved", "rejected", "answered", "expired", "cancelled"]
Decision = Literal["approve", "approve_session", "reject"]
Health = Literal["ok", "degraded"]
UsageFigure = Literal["input_tokens", "output_tokens", "context_tokens"]


class SessionUsage(TypedDict):
    """A session's running totals over its turns that ended with an `llm.end`."""

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    reasoning_tokens: int
    turns: int


class _TurnUsageRequired(TypedDict):
    input_tokens: int
    output_tokens: int
    context_tokens: int
    estimated: list[UsageFigure]


class TurnUsage(_TurnUsageRequired, total=False):
    """`llm.end` `usage` (PROTOCOL §6 *Usage*)."""

    cached_input_tokens: int
    reasoning_tokens: int
    context_window: int


class _SessionPayloadRequired(TypedDict):
    id: str
    title: str
    created_at: str
    updated_at: str
    message_count: int
    status: SessionStatus


class SessionPayload(_SessionPayloadRequired, total=False):
    grants: list[str]
    model: str
    system_prompt: str
    queue_length: int
    usage: SessionUsage


class ToolCallInfo(TypedDict):
    """On a `tool` message: which call it is the result of."""

    call_id: str
    tool_name: str
    params: str
    is_error: bool


class Author(TypedDict):
    client_id: str
    name: str


class _MessagePayloadRequired(TypedDict):
    id: str
    session_id: str
    role: Role
    content: str
    created_at: str
    status: MessageStatus


class MessagePayload(_MessagePayloadRequired, total=False):
    turn_id: str
    tool: ToolCallInfo
    author: Author


class _ToolApprovalRequestPayloadRequired(TypedDict):
    tool_name: str
    call_id: str
    params: str


class ToolApprovalRequestPayload(_ToolApprovalRequestPayloadRequired, total=False):
    """A `tool_approval` request's `payload`: the call as in `tool.start`."""

    params_truncated: bool


class _QuestionRequestPayloadRequired(TypedDict):
    call_id: str
    question: str


class QuestionRequestPayload(_QuestionRequestPayloadRequired, total=False):
    """A `question` request's `payload`, from the model's `ask_user` call."""

    options: list[str]
    question_truncated: bool


class _DecisionResponseRequired(TypedDict):
    decision: Decision


class DecisionResponse(_DecisionResponseRequired, total=False):
    reason: str


class _AnswerResponseRequired(TypedDict):
    answer: str


class AnswerResponse(_AnswerResponseRequired, total=False):
    answer_truncated: bool


class _HitlRequestRequired(TypedDict):
    id: str
    session_id: str
    turn_id: str
    type: HitlType
    status: HitlStatus
    payload: Union[ToolApprovalRequestPayload, QuestionRequestPayload]
    created_at: str


class HitlRequest(_HitlRequestRequired, total=False):
    """A human-in-the-loop request (`hitl.pending`, `hitl.resolved`, `hitl.list`)."""

    response: Union[DecisionResponse, AnswerResponse]
    resolved_by: str
    resolved_at: str
    expires_at: str


class _ClientInfoRequired(TypedDict):
    client_id: str
    name: str
    protocol_version: int
    connected_at: str
    last_seen_at: str
    tools: list[str]


class ClientInfo(_ClientInfoRequired, total=False):
    """A client present (`client.list`, `state.sync` `clients`)."""

    version: str


class _ClientToolRequired(TypedDict):
    name: str
    parameters: dict[str, object]


class ClientTool(_ClientToolRequired, total=False):
    """A tool a client declares in `client.hello` (OpenAI-style function)."""

    description: str


class ModelInfo(TypedDict):
    name: str
    provider: str
    default: bool
    context_bytes: int


class ServerCapabilities(TypedDict):
    client_tools: bool
    hitl: bool
    replay: bool
    client_timeout_secs: int
    tool_claim_timeout_secs: int


class Endpoints(TypedDict):
    rpc: str
    pub: str
