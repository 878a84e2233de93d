"""Wire types of the zcoord protocol, version 2: shapes, method params/results, event payloads
and envelopes. `SCHEMA_NAMES` ties each TypedDict to the `$defs` entry of
`proto-docs/schema/zcoord.schema.json` it must match (checked by tests/test_schema.py).
"""

from typing import Any, TypedDict

from . import events, methods, shapes
from .events import *  # noqa: F401,F403
from .methods import *  # noqa: F401,F403
from .shapes import *  # noqa: F401,F403

PROTOCOL_VERSION = 2


class _RpcErrorObjectRequired(TypedDict):
    code: int
    message: str


class RpcErrorObject(_RpcErrorObjectRequired, total=False):
    """A JSON-RPC error reply's `error` member: `code`, `message`, `data?`."""

    data: dict[str, Any]


# TypedDict -> the `$defs` names it may have in the JSON Schema, first found wins. A name the
# schema gives that differs from ours (e.g. a heartbeat's payload) is listed after ours.
SCHEMA_NAMES: dict[str, tuple[str, ...]] = {}


def _register() -> None:
    aliases = {
        "RpcErrorObject": ("RpcError",),
        "InstanceHeartbeatPayload": ("InstanceHeartbeatPayload", "HeartbeatPayload"),
        "InstanceShutdownPayload": ("InstanceShutdownPayload", "ShutdownPayload"),
        "InstancePromotedPayload": ("InstancePromotedPayload", "PromotedPayload"),
        "InstanceStatusPayload": ("InstanceStatusPayload", "StatusPayload"),
        "ToolApprovalRequestPayload": ("ToolApprovalRequestPayload", "HitlToolApprovalPayload"),
        "QuestionRequestPayload": ("QuestionRequestPayload", "HitlQuestionPayload"),
        "ClientTool": ("ClientTool", "ClientToolSpec"),
        "EmptyParams": ("InstancePingParams", "EmptyParams"),
        "SessionIdParams": ("SessionGetParams", "SessionIdParams"),
    }
    for module in (shapes, methods, events):
        for name, value in vars(module).items():
            if name.startswith("_") or not _is_typeddict(value) or value.__module__ != module.__name__:
                continue
            SCHEMA_NAMES[name] = aliases.get(name, (name,))
    SCHEMA_NAMES["RpcErrorObject"] = aliases["RpcErrorObject"]


def _is_typeddict(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, dict) and hasattr(value, "__required_keys__")


def typeddict(name: str) -> type:
    """The TypedDict class called `name` in this package."""
    if name == "RpcErrorObject":
        return RpcErrorObject
    for module in (shapes, methods, events):
        value = vars(module).get(name)
        if value is not None and _is_typeddict(value):
            return value  # type: ignore[no-any-return]
    raise KeyError(name)


_register()
