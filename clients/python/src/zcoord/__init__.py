"""zcoord: the typed Python client of the zcoord daemon (proto-docs/PROTOCOL.md, version 2).

- client.Client: blocking JSON-RPC calls, one typed method per method (`zcoord.aio` for asyncio)
- subscriber.Subscription: events in `seq` order from the welcome on, gaps repaired by replay
- mirror.Mirror: a replica of sessions, messages, the active session and pending requests
- tools.ToolHost: offering the model tools this client runs
- discovery: finding the server (data directory, walk-up, instance.json, PLAIN/CURVE)
- errors: one exception per error code; protocol: the wire types (TypedDicts)
"""

from . import protocol
from .client import Client
from .discovery import Discovery, Target, data_dir_for, find_workspace, read_discovery, resolve
from .errors import *  # noqa: F401,F403
from .errors import RpcError, Timeout, ZcoordError
from .mirror import Mirror
from .replica import Change, Replica
from .security import Credentials, CurveKeys
from .subscriber import Subscription
from .tools import ToolCall, ToolHost, ToolOutcome

__version__ = "0.2.0"
PROTOCOL_VERSION = protocol.PROTOCOL_VERSION

__all__ = [
    "Change",
    "Client",
    "Credentials",
    "CurveKeys",
    "Discovery",
    "Mirror",
    "PROTOCOL_VERSION",
    "Replica",
    "RpcError",
    "Subscription",
    "Target",
    "Timeout",
    "ToolCall",
    "ToolHost",
    "ToolOutcome",
    "ZcoordError",
    "data_dir_for",
    "find_workspace",
    "protocol",
    "read_discovery",
    "resolve",
]
