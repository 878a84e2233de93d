"""Every method's params and result (PROTOCOL §5), named as the JSON Schema names them:
`<Method>Params` / `<Method>Result` (`session.create` -> `SessionCreateParams`). A method whose
result is a shared shape (a SessionPayload, `{ok: true}`) gets an alias, not a new class.
"""

from typing import Any, Literal, Optional, TypedDict

from .shapes import (
    ClientInfo,
    ClientTool,
    Decision,
    Endpoints,
    Health,
    HitlRequest,
    MessagePayload,
    ModelInfo,
    ServerCapabilities,
    SessionPayload,
)

WhenBusy = Literal["reject", "queue"]


class EmptyParams(TypedDict):
    """Methods that take no params."""


class OkResult(TypedDict):
    ok: bool


InstancePingParams = EmptyParams
InstanceInfoParams = EmptyParams
SessionListParams = EmptyParams
ModelListParams = EmptyParams
ClientListParams = EmptyParams
ClientGoodbyeParams = EmptyParams


class InstancePingResult(TypedDict):
    status: str
    instance_id: str
    uptime: str


class DropCounters(TypedDict):
    replies_dropped: int
    outbound_dropped: int
    requests_refused_busy: int
    requests_dropped: int


class ReplayInfo(TypedDict):
    events: int
    bytes: int
    oldest_seq: int
    max_events: int
    max_bytes: int


class TransportInfo(TypedDict):
    connections_rpc: int
    connections_pub: int
    connections_refused: int
    pub_bytes_held: int
    subscribers_evicted: int


class DegradedInfo(TypedDict):
    reason: str
    since: str


class _InstanceInfoResultRequired(TypedDict):
    instance_id: str
    version: str
    protocol_version: int
    pid: int
    started_at: str
    uptime: str
    endpoints: Endpoints
    session_count: int
    max_sessions: int
    model: str
    models: list[ModelInfo]
    seq: int
    running_turns: int
    drops: DropCounters
    store: str
    recovered_turns: int
    replay: ReplayInfo
    transport: TransportInfo
    status: Health
    heartbeat_interval_ms: int


class InstanceInfoResult(_InstanceInfoResultRequired, total=False):
    active_session_id: str
    promoted_from: str
    degraded: DegradedInfo


class StateSyncParams(TypedDict, total=False):
    project_id: str


class _StateSyncResultRequired(TypedDict):
    sessions: list[SessionPayload]
    instance_id: str
    seq: int
    hitl: list[HitlRequest]
    clients: list[ClientInfo]


class StateSyncResult(_StateSyncResultRequired, total=False):
    active_session_id: str


class SessionListResult(TypedDict):
    sessions: list[SessionPayload]


class SessionIdParams(TypedDict):
    session_id: str


SessionGetParams = SessionIdParams
SessionDeleteParams = SessionIdParams
SessionActivateParams = SessionIdParams
SessionGetResult = SessionPayload
SessionCreateResult = SessionPayload
SessionConfigureResult = SessionPayload
SessionDeleteResult = OkResult
SessionActivateResult = OkResult
ClientGoodbyeResult = OkResult
ToolResultResult = OkResult


class SessionCreateParams(TypedDict, total=False):
    title: str


class _SessionInterruptParamsRequired(TypedDict):
    session_id: str


class SessionInterruptParams(_SessionInterruptParamsRequired, total=False):
    clear_queue: bool


class _SessionInterruptResultRequired(TypedDict):
    ok: bool
    interrupted: bool


class SessionInterruptResult(_SessionInterruptResultRequired, total=False):
    cleared: int


class _SessionConfigureParamsRequired(TypedDict):
    session_id: str


class SessionConfigureParams(_SessionConfigureParamsRequired, total=False):
    """Absent: keep; `None`: back to the server's default; a string: set."""

    model: Optional[str]
    system_prompt: Optional[str]


class ModelListResult(TypedDict):
    default: str
    models: list[ModelInfo]


class _MessageSendParamsRequired(TypedDict):
    content: str


class MessageSendParams(_MessageSendParamsRequired, total=False):
    session_id: str
    request_id: str
    model: str
    when_busy: WhenBusy


class _MessageSendResultRequired(TypedDict):
    ok: bool
    session_id: str
    message_id: str
    turn_id: str


class MessageSendResult(_MessageSendResultRequired, total=False):
    queued: bool
    position: int


class _MessageListParamsRequired(TypedDict):
    session_id: str


class MessageListParams(_MessageListParamsRequired, total=False):
    limit: int
    before: str
    after: str


class MessageListResult(TypedDict):
    messages: list[MessagePayload]
    has_more: bool


class MessageGetParams(TypedDict):
    session_id: str
    message_id: str


MessageGetResult = MessagePayload


class _EventsReplayParamsRequired(TypedDict):
    after_seq: int


class EventsReplayParams(_EventsReplayParamsRequired, total=False):
    prefixes: list[str]
    limit: int
    instance_id: str


class EventsReplayResult(TypedDict):
    instance_id: str
    events: list[dict[str, Any]]  # EventEnvelopes, exactly as published
    next_after_seq: int
    has_more: bool
    oldest_seq: int
    latest_seq: int


class HitlListParams(TypedDict, total=False):
    session_id: str


class HitlListResult(TypedDict):
    requests: list[HitlRequest]


class _HitlRespondParamsRequired(TypedDict):
    id: str


class HitlRespondParams(_HitlRespondParamsRequired, total=False):
    decision: Decision
    answer: str
    reason: str
    client_id: str


class HitlRespondResult(TypedDict):
    ok: bool
    request: HitlRequest


class _ClientHelloParamsRequired(TypedDict):
    client_id: str
    name: str
    protocol_versions: list[int]


class ClientHelloParams(_ClientHelloParamsRequired, total=False):
    version: str
    capabilities: dict[str, Any]
    tools: list[ClientTool]


class ClientHelloResult(TypedDict):
    protocol_version: int
    server_version: str
    instance_id: str
    capabilities: ServerCapabilities


class ClientListResult(TypedDict):
    clients: list[ClientInfo]


class _ToolClaimParamsRequired(TypedDict):
    call_id: str


class ToolClaimParams(_ToolClaimParamsRequired, total=False):
    turn_id: str


class ToolClaimResult(TypedDict):
    ok: bool
    session_id: str
    turn_id: str
    call_id: str
    tool_name: str
    params: str


class _ToolResultParamsRequired(TypedDict):
    call_id: str
    result: Any  # text, or any JSON value (sent as its JSON text)


class ToolResultParams(_ToolResultParamsRequired, total=False):
    turn_id: str
    is_error: bool
