"""The asyncio tool host: tools.ToolHost's loop with the asyncio client (decisions: ToolBook)."""

import os
import time
from typing import Callable, Optional

from ..errors import RpcError
from ..protocol import ClientHelloResult, ClientTool
from ..tools import PING_EVERY, TOOL_PREFIXES, Handler, ToolBook, ToolCall, ToolOutcome
from .client import AsyncClient
from .subscriber import AsyncSubscription


class AsyncToolHost:
    def __init__(
        self,
        client: AsyncClient,
        *,
        client_id: Optional[str] = None,
        name: str = "zcoord python client",
        version: Optional[str] = None,
    ) -> None:
        self.client = client
        self.client_id = client_id or f"py-{os.getpid()}-{os.urandom(3).hex()}"
        self.name, self.version = name, version
        self.book = ToolBook()
        self.sub: Optional[AsyncSubscription] = None
        self.hello: Optional[ClientHelloResult] = None

    def tool(self, spec: ClientTool) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.book.add(spec, handler)
            return handler

        return register

    async def start(self, timeout: Optional[float] = None) -> ClientHelloResult:
        self.sub = await self.client.subscribe(list(TOOL_PREFIXES), timeout=timeout, repair=False)
        self.hello = await self.client.client_hello(
            self.client_id, self.name, version=self.version, tools=list(self.book.specs.values())
        )
        return self.hello

    async def serve(self, timeout: float) -> Optional[ToolOutcome]:
        assert self.sub is not None, "AsyncToolHost.start() first"
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            await self.client.keep_present(PING_EVERY)
            env = await self.sub.recv(min(left, 0.5))
            if env is None:
                continue
            call = self.book.claimable(env)
            if call is not None:
                return await self._run(call)
        return None

    async def _run(self, call: ToolCall) -> ToolOutcome:
        try:
            claim = await self.client.tool_claim(call.call_id, call.turn_id)
        except RpcError as e:
            return ToolOutcome(call, lost=self.book.lost(e))
        result, is_error = self.book.execute(call, claim)
        refused = None
        try:
            await self.client.tool_result(
                call.call_id, result, turn_id=call.turn_id, is_error=is_error
            )
        except RpcError as e:
            refused = str(e)
        return ToolOutcome(call, result=result, is_error=is_error, refused=refused)

    async def close(self) -> None:
        try:
            if self.hello is not None:
                await self.client.client_goodbye()
        except Exception:
            pass
        if self.sub is not None:
            self.sub.close()

    async def __aenter__(self) -> "AsyncToolHost":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
