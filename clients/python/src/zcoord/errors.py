"""Every error this package raises: one class per JSON-RPC error code the server documents
(PROTOCOL §3), a timeout, connection/discovery failures, and the resync signals of §8.

Match on the class (or `code`/`kind`), never on `message`.
"""

from typing import Any, Optional


class ZcoordError(Exception):
    """The base of every error raised by this package."""


class Timeout(ZcoordError, TimeoutError):
    """No reply (or no welcome) within the caller's timeout."""


class ConnectionFailed(ZcoordError):
    """The server could not be reached or found."""


class DiscoveryError(ConnectionFailed):
    """No usable discovery file: none, unreadable, stale (its pid is gone), or no secret for tcp."""


class NotLive(ConnectionFailed, Timeout):
    """A subscription was not welcomed within the timeout (PROTOCOL §8)."""


class ProtocolError(ZcoordError):
    """The server sent something this client cannot read."""


class ResyncNeeded(ZcoordError):
    """The event stream can no longer be trusted on its own: take a new `state.sync` (§8)."""

    def __init__(self, reason: str, event: Optional[dict[str, Any]] = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event = event  # the event that showed it, when one did


class InstanceChanged(ResyncNeeded):
    """An event of another instance arrived: the server restarted or a standby took over."""


class GapUnrepairable(ResyncNeeded):
    """Events were lost and `events.replay` could not give them back."""


class RpcError(ZcoordError):
    """An error reply. `code`, `message` and `data` are the reply's; `kind` is `data.kind`."""

    code: int = 0

    def __init__(self, code: int, message: str, data: Optional[dict[str, Any]] = None) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.data: dict[str, Any] = data or {}

    @property
    def kind(self) -> Optional[str]:
        kind = self.data.get("kind")
        return kind if isinstance(kind, str) else None

    @staticmethod
    def from_wire(error: Any) -> "RpcError":
        """The exception for a reply's `error` member: the class of its code, else RpcError."""
        if not isinstance(error, dict):
            return RpcError(-32603, f"malformed error member: {error!r}")
        code = error.get("code")
        message = str(error.get("message", ""))
        data = error.get("data")
        data = data if isinstance(data, dict) else {}
        cls = _BY_CODE.get(code) if isinstance(code, int) else None
        if cls is None and isinstance(data.get("kind"), str):
            cls = _BY_KIND.get(data["kind"])
        return (cls or RpcError)(code if isinstance(code, int) else 0, message, data)


def _code(code: int, kind: Optional[str] = None) -> Any:
    def register(cls: type[RpcError]) -> type[RpcError]:
        cls.code = code
        _BY_CODE[code] = cls
        if kind:
            _BY_KIND[kind] = cls
        return cls

    return register


_BY_CODE: dict[int, type[RpcError]] = {}
_BY_KIND: dict[str, type[RpcError]] = {}


@_code(-32700)
class ParseError(RpcError):
    """The frame was not JSON."""


@_code(-32600)
class InvalidRequest(RpcError):
    """Not a valid JSON-RPC request (also a batch over 256 calls)."""


@_code(-32601)
class MethodNotFound(RpcError):
    pass


@_code(-32602)
class InvalidParams(RpcError):
    """`data.field` names the param; a bound's refusal also has `kind`, `limit`, `actual`."""

    @property
    def field(self) -> Optional[str]:
        field = self.data.get("field")
        return field if isinstance(field, str) else None


@_code(-32603)
class InternalError(RpcError):
    pass


@_code(-32001, "session_not_found")
class SessionNotFound(RpcError):
    pass


@_code(-32002, "session_busy")
class SessionBusy(RpcError):
    pass


@_code(-32003, "message_too_large")
class MessageTooLarge(RpcError):
    pass


@_code(-32004, "server_busy")
class ServerBusy(RpcError):
    """Retry shortly."""


@_code(-32005, "shutting_down")
class ShuttingDown(RpcError):
    pass


@_code(-32006, "invalid_frames")
class InvalidFrames(RpcError):
    pass


@_code(-32007, "message_not_found")
class MessageNotFound(RpcError):
    pass


@_code(-32008, "replay_unavailable")
class ReplayUnavailable(RpcError):
    """`events.replay` cannot serve every event asked for: resync with `state.sync`."""


@_code(-32009, "too_many_pending")
class TooManyPending(RpcError):
    pass


@_code(-32010, "too_many_sessions")
class TooManySessions(RpcError):
    pass


@_code(-32011, "store_unavailable")
class StoreUnavailable(RpcError):
    pass


@_code(-32012, "hitl_not_found")
class HitlNotFound(RpcError):
    pass


@_code(-32013, "hitl_resolved")
class HitlResolved(RpcError):
    """Someone answered first; `data.request` is the request as resolved."""


@_code(-32014, "version_mismatch")
class VersionMismatch(RpcError):
    pass


@_code(-32015, "tool_claimed")
class ToolClaimed(RpcError):
    """Another client claimed the call first (`data.client_id`)."""


@_code(-32016, "tool_call_not_found")
class ToolCallNotFound(RpcError):
    pass


@_code(-32017, "not_claimant")
class NotClaimant(RpcError):
    pass


@_code(-32018, "model_not_found")
class ModelNotFound(RpcError):
    pass


@_code(-32019, "queue_full")
class QueueFull(RpcError):
    pass


@_code(-32020, "too_many_clients")
class TooManyClients(RpcError):
    pass


def is_replay_unavailable(e: BaseException) -> bool:
    """By kind as well as by code: the kind is the stable name (PROTOCOL §3)."""
    return isinstance(e, ReplayUnavailable) or (
        isinstance(e, RpcError) and e.kind == "replay_unavailable"
    )
