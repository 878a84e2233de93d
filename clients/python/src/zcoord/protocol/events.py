"""Event topics, payloads and the two PUB envelopes (PROTOCOL §6; protocol version 2's welcome).

Every PUB message is two frames: the key (`topic` or `topic/<session_id>`) and an envelope. Events
are numbered (`EventEnvelope.seq`); the welcome is not (`WelcomeEnvelope` has no `seq`).
"""

from typing import Any, Literal, TypedDict

from .shapes import (
    Author,
    Health,
    HitlRequest,
    MessageStatus,
    Role,
    SessionPayload,
    ToolCallInfo,
    TurnUsage,
)

SESSION_LIST = "session.list"
SESSION_UPDATE = "session.update"
SESSION_ACTIVATED = "session.activated"
SESSION_DELETED = "session.deleted"
MESSAGE_APPEND = "message.append"
MESSAGE_QUEUED = "message.queued"
MESSAGE_DEQUEUED = "message.dequeued"
LLM_START = "llm.start"
LLM_TOKEN = "llm.token"
LLM_END = "llm.end"
TOOL_ARGS = "tool.args"
TOOL_START = "tool.start"
TOOL_CLAIMED = "tool.claimed"
TOOL_END = "tool.end"
CLIENT_JOINED = "client.joined"
CLIENT_LEFT = "client.left"
HITL_PENDING = "hitl.pending"
HITL_RESOLVED = "hitl.resolved"
INSTANCE_HEARTBEAT = "instance.heartbeat"
INSTANCE_STATUS = "instance.status"
INSTANCE_SHUTDOWN = "instance.shutdown"
INSTANCE_PROMOTED = "instance.promoted"
INSTANCE_WELCOME = "instance.welcome"

EndReason = Literal["completed", "interrupted", "error", "shutdown"]
DequeueReason = Literal["started", "cleared", "deleted"]
LeaveReason = Literal["goodbye", "timeout", "replaced"]
Executor = Literal["server", "client"]


class SessionListPayload(TypedDict):
    sessions: list[SessionPayload]
    session_count: int
    truncated: bool


class _MessageAppendPayloadRequired(TypedDict):
    session_id: str
    message_id: str
    role: Role
    content: str
    status: MessageStatus
    created_at: str


class MessageAppendPayload(_MessageAppendPayloadRequired, total=False):
    turn_id: str
    tool: ToolCallInfo
    content_truncated: bool
    content_bytes: int
    author: Author


class _MessageQueuedPayloadRequired(TypedDict):
    session_id: str
    message_id: str
    turn_id: str
    content: str
    position: int
    queued_at: str


class MessageQueuedPayload(_MessageQueuedPayloadRequired, total=False):
    content_truncated: bool
    content_bytes: int


class MessageDequeuedPayload(TypedDict):
    session_id: str
    message_id: str
    turn_id: str
    reason: DequeueReason
    queue_length: int


class LlmStartPayload(TypedDict):
    session_id: str
    turn_id: str
    model: str


class LlmTokenPayload(TypedDict):
    session_id: str
    turn_id: str
    index: int
    token: str


class _LlmEndPayloadRequired(TypedDict):
    session_id: str
    turn_id: str
    tokens_in: int
    tokens_out: int
    reason: EndReason
    usage: TurnUsage


class LlmEndPayload(_LlmEndPayloadRequired, total=False):
    error: str


class ToolArgsPayload(TypedDict):
    session_id: str
    turn_id: str
    call_id: str
    tool_name: str
    index: int
    delta: str


class _ToolStartPayloadRequired(TypedDict):
    session_id: str
    turn_id: str
    tool_name: str
    call_id: str
    params: str
    executor: Executor


class ToolStartPayload(_ToolStartPayloadRequired, total=False):
    params_truncated: bool
    awaiting_approval: bool


class ToolClaimedPayload(TypedDict):
    session_id: str
    turn_id: str
    call_id: str
    tool_name: str
    client_id: str


class _ToolEndPayloadRequired(TypedDict):
    session_id: str
    turn_id: str
    tool_name: str
    call_id: str
    is_error: bool
    result: str


class ToolEndPayload(_ToolEndPayloadRequired, total=False):
    result_truncated: bool


class _ClientJoinedPayloadRequired(TypedDict):
    client_id: str
    name: str
    protocol_version: int
    connected_at: str
    last_seen_at: str
    tools: list[str]
    rejoined: bool


class ClientJoinedPayload(_ClientJoinedPayloadRequired, total=False):
    version: str


class ClientLeftPayload(TypedDict):
    client_id: str
    name: str
    reason: LeaveReason


class _InstanceHeartbeatPayloadRequired(TypedDict):
    instance_id: str
    session_count: int
    uptime: str
    started_at: str
    status: Health
    heartbeat_interval_ms: int


class InstanceHeartbeatPayload(_InstanceHeartbeatPayloadRequired, total=False):
    active_session_id: str
    promoted_from: str
    reason: str


class _InstanceStatusPayloadRequired(TypedDict):
    instance_id: str
    status: Health


class InstanceStatusPayload(_InstanceStatusPayloadRequired, total=False):
    reason: str
    since: str


class InstanceShutdownPayload(TypedDict):
    instance_id: str
    reason: str


class _InstancePromotedPayloadRequired(TypedDict):
    instance_id: str


class InstancePromotedPayload(_InstancePromotedPayloadRequired, total=False):
    previous_instance_id: str


class InstanceWelcomePayload(TypedDict):
    """Protocol 2: your `token` and `last_seq`, the last event numbered before your
    subscriptions were all live."""

    token: str
    last_seq: int


class _EventEnvelopeRequired(TypedDict):
    seq: int
    instance_id: str
    topic: str
    timestamp: str
    payload: dict[str, Any]


class EventEnvelope(_EventEnvelopeRequired, total=False):
    """Frame 2 of every numbered event. Cast `payload` with `PAYLOAD_TYPES[topic]`."""

    session_id: str


class WelcomeEnvelope(TypedDict):
    """Frame 2 of an `instance.welcome/<token>` message: not numbered, never replayed."""

    instance_id: str
    topic: str
    timestamp: str
    payload: InstanceWelcomePayload


# The payload type of each topic, for `typing.cast` and for readers.
PAYLOAD_TYPES: dict[str, type] = {
    SESSION_LIST: SessionListPayload,
    SESSION_UPDATE: SessionPayload,
    SESSION_ACTIVATED: SessionPayload,
    SESSION_DELETED: SessionPayload,
    MESSAGE_APPEND: MessageAppendPayload,
    MESSAGE_QUEUED: MessageQueuedPayload,
    MESSAGE_DEQUEUED: MessageDequeuedPayload,
    LLM_START: LlmStartPayload,
    LLM_TOKEN: LlmTokenPayload,
    LLM_END: LlmEndPayload,
    TOOL_ARGS: ToolArgsPayload,
    TOOL_START: ToolStartPayload,
    TOOL_CLAIMED: ToolClaimedPayload,
    TOOL_END: ToolEndPayload,
    CLIENT_JOINED: ClientJoinedPayload,
    CLIENT_LEFT: ClientLeftPayload,
    HITL_PENDING: HitlRequest,
    HITL_RESOLVED: HitlRequest,
    INSTANCE_HEARTBEAT: InstanceHeartbeatPayload,
    INSTANCE_STATUS: InstanceStatusPayload,
    INSTANCE_SHUTDOWN: InstanceShutdownPayload,
    INSTANCE_PROMOTED: InstancePromotedPayload,
    INSTANCE_WELCOME: InstanceWelcomePayload,
}
