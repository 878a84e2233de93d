"""The asyncio mirror: mirror.MirrorProgram driven with the asyncio client."""

import asyncio
import time
from typing import Optional

from ..effects import run_async
from ..errors import ResyncNeeded, RpcError, Timeout
from ..mirror import QUIET_TOPICS, MirrorProgram
from ..replica import Listener, Replica
from ..sequencer import Envelope
from .client import AsyncClient
from .subscriber import AsyncSubscription


class AsyncMirror:
    """As mirror.Mirror: `await start()`, then `await poll()` or `await run_until_idle()`."""

    def __init__(
        self,
        client: AsyncClient,
        listener: Optional[Listener] = None,
        *,
        live_timeout: Optional[float] = None,
        resync_timeout: Optional[float] = None,
    ) -> None:
        self.client = client
        self._listener = listener
        self._live_timeout = live_timeout
        self._resync_timeout = resync_timeout
        self.sub: Optional[AsyncSubscription] = None
        self.program: Optional[MirrorProgram] = None

    @property
    def replica(self) -> Replica:
        assert self.program is not None, "AsyncMirror.start() first"
        return self.program.replica

    async def start(self) -> None:
        self.sub = await self.client.subscribe([""], timeout=self._live_timeout)
        self.program = MirrorProgram(self.sub.sequencer, self._listener)
        await self.resync(None)

    async def resync(self, reason: Optional[str]) -> None:
        assert self.program is not None and self.sub is not None
        if reason:
            self.program._say("resync", f"({reason})")
        delay = 0.1
        deadline = None if self._resync_timeout is None else time.monotonic() + self._resync_timeout
        while True:
            try:
                instance_id, seq = await run_async(self.program.resync(), self.client.call)
                self.sub.reset(instance_id, seq)
                return
            except (Timeout, RpcError) as e:
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise Timeout(f"no snapshot within {self._resync_timeout:g} s: {e}") from e
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def poll(self, timeout: float) -> Optional[Envelope]:
        assert self.program is not None and self.sub is not None
        before = self.sub.last_seq
        try:
            env = await self.sub.recv(timeout)
            if env is not None:
                self.program.note_repairs(f"seq gap after {before}", before)
                await run_async(self.program.apply(dict(env)), self.client.call)
            return env  # type: ignore[return-value]
        except ResyncNeeded as e:
            await self.resync(e.reason)
            return None

    async def check_tail(self) -> int:
        assert self.program is not None and self.sub is not None
        seq = self.sub.sequencer
        before = seq.last_seq
        try:
            events = await run_async(seq._replay("idle: checking for lost last events"), self.client.call)
            for env in events:
                await run_async(self.program.apply(env), self.client.call)
        except ResyncNeeded as e:
            await self.resync(e.reason)
            return 1
        self.program.note_repairs("idle: checking for lost last events", before)
        return len(events)

    async def run_until_idle(self, idle: float, timeout: float) -> Replica:
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while True:
            now = time.monotonic()
            if now > deadline:
                raise Timeout(f"the mirror did not go idle within {timeout:g} s")
            left = quiet_since + idle - now
            if left <= 0:
                if await self.check_tail() == 0:
                    return self.replica
                quiet_since = time.monotonic()
                continue
            env = await self.poll(left)
            if env is not None and env["topic"] not in QUIET_TOPICS:
                quiet_since = time.monotonic()

    def close(self) -> None:
        if self.sub is not None:
            self.sub.close()

    async def __aenter__(self) -> "AsyncMirror":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
