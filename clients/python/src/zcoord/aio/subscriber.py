"""The asyncio event subscription: as subscriber.Subscription (welcome, order, repair), awaited."""

import json
import time
from collections import deque
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Optional, Sequence

import zmq
import zmq.asyncio

from ..effects import run_async
from ..errors import NotLive, Timeout
from ..protocol import EventEnvelope
from ..sequencer import Envelope, Sequencer
from ..subscriber import DEFAULT_LIVE_TIMEOUT
from ..welcome import RETRY_AFTER, Welcome, is_welcome, new_token, parse_welcome, welcome_key

if TYPE_CHECKING:
    from .client import AsyncClient


class AsyncSubscription:
    """Made with `await client.subscribe(prefixes)`; see subscriber.Subscription."""

    def __init__(self, client: "AsyncClient", prefixes: Sequence[str], repair: bool) -> None:
        self.client = client
        self.prefixes = list(prefixes) or [""]
        self.token = new_token()
        self.sequencer = Sequencer(self.prefixes, repair_tokens=repair)
        self._ready: deque[Envelope] = deque()
        self._sock: Optional[zmq.asyncio.Socket] = None
        self.welcome: Optional[Welcome] = None

    @classmethod
    async def open(
        cls,
        client: "AsyncClient",
        prefixes: Sequence[str],
        *,
        timeout: Optional[float],
        repair: bool,
        rcvhwm: int,
    ) -> "AsyncSubscription":
        sub = cls(client, prefixes, repair)
        wait = DEFAULT_LIVE_TIMEOUT if timeout is None else timeout
        await sub._open_live(wait, rcvhwm)
        assert sub.welcome is not None
        await run_async(
            sub.sequencer.welcomed(sub.welcome.instance_id, sub.welcome.last_seq), client.call
        )
        return sub

    async def _open_live(self, timeout: float, rcvhwm: int) -> None:
        deadline = time.monotonic() + timeout
        target = self.client.target
        while True:
            sock = self.client.context.socket(zmq.SUB)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVHWM, rcvhwm)
            target.credentials.apply(sock, target.pub)
            for prefix in self.prefixes:
                sock.setsockopt_string(zmq.SUBSCRIBE, prefix)
            sock.setsockopt_string(zmq.SUBSCRIBE, welcome_key(self.token))
            sock.connect(target.pub)
            until = min(deadline, time.monotonic() + RETRY_AFTER)
            while (left := until - time.monotonic()) > 0:
                if not await sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                    break
                frames = await sock.recv_multipart()
                welcome = parse_welcome(frames, self.token)
                if welcome is not None:
                    self._sock, self.welcome = sock, welcome
                    return
            sock.close(0)
            if time.monotonic() >= deadline:
                raise NotLive(
                    f"no instance.welcome within {timeout:g} s on {target.pub} "
                    "(is the server running?)"
                )

    @property
    def instance_id(self) -> Optional[str]:
        return self.sequencer.instance_id

    @property
    def last_seq(self) -> int:
        return self.sequencer.last_seq

    def reset(self, instance_id: str, seq: int) -> None:
        self.sequencer.reset(instance_id, seq)
        kept = [e for e in self._ready if e["instance_id"] == instance_id and e["seq"] > seq]
        self._ready = deque(kept)

    async def recv(self, timeout: Optional[float] = None) -> Optional[EventEnvelope]:
        """The next event, or None when none came within `timeout` seconds."""
        assert self._sock is not None
        wait = self.client.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while not self._ready:
            left = deadline - time.monotonic()
            if left <= 0 or not await self._sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                return None
            await self._take(await self._sock.recv_multipart())
        return self._ready.popleft()  # type: ignore[return-value]

    async def _take(self, frames: list[bytes]) -> None:
        welcome = parse_welcome(frames, self.token)
        if welcome is not None:
            program = self.sequencer.welcomed(welcome.instance_id, welcome.last_seq)
            self._ready.extend(await run_async(program, self.client.call))
            return
        if len(frames) != 2:
            return
        try:
            env = json.loads(frames[1])
        except ValueError:
            return
        if isinstance(env, dict) and not is_welcome(env):
            await self.feed(env)

    async def feed(self, env: Envelope) -> None:
        """Hands an envelope in as if it came off the socket."""
        self._ready.extend(await run_async(self.sequencer.process(env), self.client.call))

    async def events(self, idle: Optional[float] = None) -> AsyncIterator[EventEnvelope]:
        while True:
            env = await self.recv(1.0 if idle is None else idle)
            if env is not None:
                yield env
            elif idle is not None:
                return

    def __aiter__(self) -> AsyncIterator[EventEnvelope]:
        return self.events()

    async def wait_for(
        self, predicate: Callable[[EventEnvelope], bool], timeout: Optional[float] = None
    ) -> EventEnvelope:
        wait = self.client.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            env = await self.recv(left) if left > 0 else None
            if env is None:
                raise Timeout(f"no matching event within {wait:g} s")
            if predicate(env):
                return env

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)

    async def __aenter__(self) -> "AsyncSubscription":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()
