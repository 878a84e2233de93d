"""Offering the model tools this client runs (PROTOCOL §5 *Clients as peers*, §7.7), blocking:
`client.hello` declaring them, staying present, claiming calls (after a person's approval when
the policy asks), running them and sending `tool.result`, `client.goodbye` at the end.
The decisions (which event is a call of ours, what it runs) live in ToolBook, shared with the
asyncio host."""

import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from .client import Client
from .errors import RpcError, ToolClaimed
from .protocol import ClientHelloResult, ClientTool, EventEnvelope, ToolClaimResult
from .subscriber import Subscription

TOOL_PREFIXES = ("tool.start/", "hitl.resolved/", "instance.")
PING_EVERY = 5.0  # seconds; the server drops a client silent for 15 s by default

# A handler gets the call's arguments (parsed JSON) and returns the result text, or
# (text, is_error). An exception it raises becomes an error result.
Handler = Callable[[dict[str, Any]], Union[str, tuple[str, bool]]]


@dataclass(frozen=True)
class ToolCall:
    """A claimable call of one of our tools."""

    call_id: str
    turn_id: str
    tool_name: str


@dataclass(frozen=True)
class ToolOutcome:
    """What became of a call we tried: run (`result`, `is_error`), or lost (`lost` says why)."""

    call: ToolCall
    result: Optional[str] = None
    is_error: bool = False
    lost: Optional[str] = None
    refused: Optional[str] = None  # tool.result's error, if it had one


class ToolBook:
    """Our tools, and the calls waiting for a person's approval before they may be claimed."""

    def __init__(self) -> None:
        self.specs: dict[str, ClientTool] = {}
        self.handlers: dict[str, Handler] = {}
        self.awaiting: dict[str, ToolCall] = {}  # call_id -> the call, until hitl.resolved

    def add(self, spec: ClientTool, handler: Handler) -> None:
        self.specs[spec["name"]] = spec
        self.handlers[spec["name"]] = handler

    def claimable(self, env: EventEnvelope) -> Optional[ToolCall]:
        """The call this event makes claimable, if any."""
        topic, p = env["topic"], env["payload"]
        if topic == "tool.start" and p.get("executor") == "client" and p["tool_name"] in self.specs:
            call = ToolCall(p["call_id"], p["turn_id"], p["tool_name"])
            if p.get("awaiting_approval"):
                self.awaiting[call.call_id] = call
                return None
            return call
        if topic == "hitl.resolved":
            call = self.awaiting.pop(p.get("payload", {}).get("call_id", ""), None)
            if call is not None and call.turn_id == p.get("turn_id") and p["status"] == "approved":
                return call
        return None

    def execute(self, call: ToolCall, claim: ToolClaimResult) -> tuple[str, bool]:
        try:
            args = json.loads(claim["params"] or "{}")
            out = self.handlers[call.tool_name](args if isinstance(args, dict) else {"value": args})
        except Exception as e:  # the model is told, the client goes on
            return f"{call.tool_name} failed: {e}", True
        return (out, False) if isinstance(out, str) else (str(out[0]), bool(out[1]))

    @staticmethod
    def lost(e: RpcError) -> str:
        if isinstance(e, ToolClaimed):
            return f"claimed by {e.data.get('client_id')}"
        return e.message


class ToolHost:
    """Runs our tools for the model while it is open (a context manager)."""

    def __init__(
        self,
        client: Client,
        *,
        client_id: Optional[str] = None,
        name: str = "zcoord python client",
        version: Optional[str] = None,
    ) -> None:
        self.client = client
        self.client_id = client_id or f"py-{os.getpid()}-{os.urandom(3).hex()}"
        self.name, self.version = name, version
        self.book = ToolBook()
        self.sub: Optional[Subscription] = None
        self.hello: Optional[ClientHelloResult] = None

    def tool(self, spec: ClientTool) -> Callable[[Handler], Handler]:
        """Decorator: `@host.tool({"name": ..., "parameters": {...}})`."""

        def register(handler: Handler) -> Handler:
            self.book.add(spec, handler)
            return handler

        return register

    def start(self, timeout: Optional[float] = None) -> ClientHelloResult:
        """Live on tool calls first (no call made after this is missed), then present."""
        self.sub = self.client.subscribe(list(TOOL_PREFIXES), timeout=timeout, repair=False)
        self.hello = self.client.client_hello(
            self.client_id, self.name, version=self.version, tools=list(self.book.specs.values())
        )
        return self.hello

    def serve(self, timeout: float) -> Optional[ToolOutcome]:
        """Waits at most `timeout` seconds for one call of ours and handles it, staying present
        meanwhile. None when no call came; the outcome otherwise (also when another client
        claimed it first)."""
        assert self.sub is not None, "ToolHost.start() first"
        import time

        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.client.keep_present(PING_EVERY)
            env = self.sub.recv(min(left, 0.5))
            if env is None:
                continue
            call = self.book.claimable(env)
            if call is not None:
                return self._run(call)
        return None

    def _run(self, call: ToolCall) -> ToolOutcome:
        try:
            claim = self.client.tool_claim(call.call_id, call.turn_id)
        except RpcError as e:
            return ToolOutcome(call, lost=self.book.lost(e))
        result, is_error = self.book.execute(call, claim)
        refused = None
        try:
            self.client.tool_result(call.call_id, result, turn_id=call.turn_id, is_error=is_error)
        except RpcError as e:
            refused = str(e)
        return ToolOutcome(call, result=result, is_error=is_error, refused=refused)

    def close(self) -> None:
        """`client.goodbye` (the model is no longer offered the tools), then the SUB."""
        try:
            if self.hello is not None:
                self.client.client_goodbye()
        except Exception:  # a gone server: nothing to say goodbye to
            pass
        if self.sub is not None:
            self.sub.close()

    def __enter__(self) -> "ToolHost":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
