"""The blocking event subscription: a SUB made live by the protocol 2 welcome (PROTOCOL §8), and
events handed on in `seq` order with losses repaired by `events.replay` (sequencer.py)."""

import json
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence

import zmq

from .effects import run
from .errors import ConnectionFailed, NotLive, Timeout
from .protocol import EventEnvelope
from .sequencer import Envelope, Sequencer
from .welcome import RETRY_AFTER, Welcome, is_welcome, new_token, parse_welcome, welcome_key

if TYPE_CHECKING:
    from .client import Client

DEFAULT_LIVE_TIMEOUT = 10.0


class Subscription:
    """Subscribed to `prefixes` (`""`: everything), live when constructed.

    `recv` and `events` hand on numbered events above the welcome's `last_seq`, in order.
    Subscribed to everything, a lost event is fetched with `events.replay` before the events
    after it; subscribed to prefixes, lost `llm.token`s are (unless `repair=False`). They raise
    ResyncNeeded (InstanceChanged, GapUnrepairable) when the stream alone cannot be trusted:
    take a `state.sync` and call `reset` with its `instance_id` and `seq`.
    """

    def __init__(
        self,
        client: "Client",
        prefixes: Sequence[str] = ("",),
        *,
        timeout: Optional[float] = None,
        repair: bool = True,
        rcvhwm: int = 100_000,
    ) -> None:
        self.client = client
        self.prefixes = list(prefixes) or [""]
        self.token = new_token()
        self.sequencer = Sequencer(self.prefixes, repair_tokens=repair)
        self._rcvhwm = rcvhwm
        self._ready: deque[Envelope] = deque()
        wait = DEFAULT_LIVE_TIMEOUT if timeout is None else timeout
        self._sock, self.welcome = self._open_live(wait)
        run(self.sequencer.welcomed(self.welcome.instance_id, self.welcome.last_seq), client.call)

    def _open_live(self, timeout: float) -> "tuple[zmq.Socket[Any], Welcome]":
        deadline = time.monotonic() + timeout
        target = self.client.target
        if not target.pub:
            raise ConnectionFailed("no pub endpoint: give pub, or use the discovery file")
        while True:
            sock = self.client.context.socket(zmq.SUB)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVHWM, self._rcvhwm)
            target.credentials.apply(sock, target.pub)
            for prefix in self.prefixes:
                sock.setsockopt_string(zmq.SUBSCRIBE, prefix)
            sock.setsockopt_string(zmq.SUBSCRIBE, welcome_key(self.token))  # last: §8
            sock.connect(target.pub)
            until = min(deadline, time.monotonic() + RETRY_AFTER)
            while True:
                left = until - time.monotonic()
                if left <= 0 or not sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                    break
                welcome = parse_welcome(sock.recv_multipart(), self.token)
                if welcome is not None:
                    return sock, welcome
                # Anything before the welcome is at or below its last_seq: not handed on.
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
        """After a `state.sync` (its `instance_id`, `seq`): drop what it already reflects."""
        self.sequencer.reset(instance_id, seq)
        kept = [e for e in self._ready if e["instance_id"] == instance_id and e["seq"] > seq]
        self._ready = deque(kept)

    def recv(self, timeout: Optional[float] = None) -> Optional[EventEnvelope]:
        """The next event, or None when none came within `timeout` seconds (default: the
        client's)."""
        wait = self.client.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while not self._ready:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                return None
            self._take(self._sock.recv_multipart())
        return self._ready.popleft()  # type: ignore[return-value]

    def _take(self, frames: list[bytes]) -> None:
        welcome = parse_welcome(frames, self.token)
        if welcome is not None:  # ours again: libzmq reconnected the SUB
            program = self.sequencer.welcomed(welcome.instance_id, welcome.last_seq)
            self._ready.extend(run(program, self.client.call))
            return
        if len(frames) != 2:
            return
        try:
            env = json.loads(frames[1])
        except ValueError:
            return
        if not isinstance(env, dict) or is_welcome(env):
            return  # another client's welcome: never a numbered event
        self._ready.extend(run(self.sequencer.process(env), self.client.call))

    def feed(self, env: Envelope) -> None:
        """Hands an envelope in as if it came off the socket (tests, tools that relay)."""
        self._ready.extend(run(self.sequencer.process(env), self.client.call))

    def events(self, idle: Optional[float] = None) -> Iterator[EventEnvelope]:
        """Events as they come; ends after `idle` seconds without one (None: never)."""
        while True:
            env = self.recv(1.0 if idle is None else idle)
            if env is not None:
                yield env
            elif idle is not None:
                return

    def __iter__(self) -> Iterator[EventEnvelope]:
        return self.events()

    def wait_for(
        self, predicate: Callable[[EventEnvelope], bool], timeout: Optional[float] = None
    ) -> EventEnvelope:
        """The first event for which `predicate` is true; Timeout after `timeout` seconds."""
        wait = self.client.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            env = self.recv(left) if left > 0 else None
            if env is None:
                raise Timeout(f"no matching event within {wait:g} s")
            if predicate(env):
                return env

    def close(self) -> None:
        self._sock.close(0)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
