"""The mirror: a Replica kept equal to the primary by the Clone pattern (PROTOCOL §8). The
algorithm is MirrorProgram (sans I/O, shared with the asyncio mirror); Mirror drives it with the
blocking client: subscribe to everything and wait for the welcome, `state.sync` and every
session's history, then apply events in order; gaps are repaired by the subscription
(`events.replay`), and a gap it cannot repair or an instance change means a new snapshot."""

import time
from typing import Any, Optional

from .client import Client
from .effects import Program, run
from .errors import ResyncNeeded, RpcError, SessionNotFound, Timeout, ZcoordError
from .paging import history_program
from .protocol import StateSyncResult
from .replica import Change, Listener, Replica
from .sequencer import Envelope, Sequencer
from .subscriber import Subscription

QUIET_TOPICS = ("instance.heartbeat", "instance.welcome")


class MirrorProgram:
    """What the mirror does, as programs of RPC calls (effects.py)."""

    def __init__(self, sequencer: Sequencer, listener: Optional[Listener] = None) -> None:
        self.replica = Replica(listener)
        self.sequencer = sequencer
        self._repairs = sequencer.repairs
        self._seq_before = sequencer.last_seq

    def _say(self, kind: str, subject: str = "", detail: str = "") -> None:
        self.replica.listener(Change(kind, subject, detail))

    def resync(self) -> "Program[tuple[str, int]]":
        """`state.sync`, then every session's history, into the replica. Returns the snapshot's
        `instance_id` and `seq`: reset the subscription there."""
        snap: StateSyncResult = yield ("state.sync", {})
        messages: dict[str, list[Any]] = {}
        for s in snap["sessions"]:
            try:
                messages[s["id"]] = yield from history_program(s["id"])
            except SessionNotFound:
                messages[s["id"]] = []  # deleted since the snapshot: its event follows
        self._say("snapshot", snap["instance_id"], f"seq={snap['seq']} sessions={len(snap['sessions'])}")
        self.replica.replace(snap, messages)
        self._repairs = self.sequencer.repairs
        return snap["instance_id"], snap["seq"]

    def note_repairs(self, reason: str, before: int) -> None:
        if self.sequencer.repairs != self._repairs:
            self._repairs = self.sequencer.repairs
            self._say("replay", f"({reason}):", f"seq {before} -> {self.sequencer.last_seq}")

    def apply(self, env: Envelope) -> "Program[None]":
        """Applies one event, already in order; raises ResyncNeeded on an inconsistency."""
        r, topic, p = self.replica, env["topic"], env["payload"]
        if topic in ("session.update", "session.activated"):
            r.upsert_session(p)  # type: ignore[arg-type]
            if topic == "session.activated":
                r.set_active(p["id"])
        elif topic == "session.list":
            listed = {s["id"] for s in p["sessions"]}
            if not p.get("truncated"):  # a truncated list holds only the newest sessions
                for sid in [sid for sid in r.sessions if sid not in listed]:
                    r.remove_session(sid)
            for s in reversed(p["sessions"]):
                r.upsert_session(s)
        elif topic == "session.deleted":
            r.remove_session(p["id"])
        elif topic == "message.append":
            if p["session_id"] not in r.sessions:
                raise ResyncNeeded(f"message.append for unknown session {p['session_id']}", env)
            if p.get("content_truncated"):  # events carry 8 KiB of a message: fetch the rest
                try:
                    whole = yield (
                        "message.get",
                        {"session_id": p["session_id"], "message_id": p["message_id"]},
                    )
                    p = dict(p, content=whole["content"])
                except (RpcError, Timeout):
                    pass  # keep the part we have
            r.append_message(p["session_id"], p)
        elif topic == "instance.heartbeat":
            r.set_active(p.get("active_session_id"))
            count = p.get("session_count")
            if count is not None and count != len(r.sessions):
                raise ResyncNeeded(
                    f"heartbeat counts {count} sessions, the replica {len(r.sessions)}", env
                )
        elif topic == "hitl.pending":
            r.request_pending(p)  # type: ignore[arg-type]
        elif topic == "hitl.resolved":
            r.request_resolved(p)  # type: ignore[arg-type]


class Mirror:
    """The blocking mirror. `start()` goes live and loads a snapshot; `poll()` applies what
    comes; `replica` is the copy. Changes go to `listener` as they happen."""

    def __init__(
        self,
        client: Client,
        listener: Optional[Listener] = None,
        *,
        live_timeout: Optional[float] = None,
        resync_timeout: Optional[float] = None,
    ) -> None:
        self.client = client
        self._listener = listener
        self._live_timeout = live_timeout
        self._resync_timeout = resync_timeout  # None: keep trying (a failover takes a while)
        self.sub: Optional[Subscription] = None
        self.program: Optional[MirrorProgram] = None

    @property
    def replica(self) -> Replica:
        assert self.program is not None, "Mirror.start() first"
        return self.program.replica

    def start(self) -> None:
        self.sub = self.client.subscribe([""], timeout=self._live_timeout)
        self.program = MirrorProgram(self.sub.sequencer, self._listener)
        self.resync(None)

    def resync(self, reason: Optional[str]) -> None:
        """A new snapshot; `shutting_down` or no answer (a failover) is retried with backoff."""
        assert self.program is not None and self.sub is not None
        if reason:
            self.program._say("resync", f"({reason})")
        delay, deadline = 0.1, None
        if self._resync_timeout is not None:
            deadline = time.monotonic() + self._resync_timeout
        while True:
            try:
                instance_id, seq = run(self.program.resync(), self.client.call)
                self.sub.reset(instance_id, seq)
                return
            except (Timeout, RpcError) as e:
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise Timeout(f"no snapshot within {self._resync_timeout:g} s: {e}") from e
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def poll(self, timeout: float) -> Optional[Envelope]:
        """Applies the next event (None when none came within `timeout` seconds)."""
        assert self.program is not None and self.sub is not None
        before = self.sub.last_seq
        try:
            env = self.sub.recv(timeout)
            if env is not None:
                self.program.note_repairs(f"seq gap after {before}", before)
                run(self.program.apply(dict(env)), self.client.call)
            return env  # type: ignore[return-value]
        except ResyncNeeded as e:
            self.resync(e.reason)
            return None

    def check_tail(self) -> int:
        """Asks `events.replay` for anything after the replica's seq (events lost at the end of
        a burst show no gap until a later event comes); applies it and returns how many."""
        assert self.program is not None and self.sub is not None
        seq = self.sub.sequencer
        before = seq.last_seq
        try:
            events = run(seq._replay("idle: checking for lost last events"), self.client.call)
            for env in events:
                run(self.program.apply(env), self.client.call)
        except ResyncNeeded as e:
            self.resync(e.reason)
            return 1
        self.program.note_repairs("idle: checking for lost last events", before)
        return len(events)

    def run_until_idle(self, idle: float, timeout: float) -> Replica:
        """Applies events until none but heartbeats came for `idle` seconds and the tail check
        finds nothing; Timeout after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while True:
            now = time.monotonic()
            if now > deadline:
                raise Timeout(f"the mirror did not go idle within {timeout:g} s")
            left = quiet_since + idle - now
            if left <= 0:
                if self.check_tail() == 0:
                    return self.replica
                quiet_since = time.monotonic()
                continue
            env = self.poll(left)
            if env is not None and env["topic"] not in QUIET_TOPICS:
                quiet_since = time.monotonic()

    def close(self) -> None:
        if self.sub is not None:
            self.sub.close()

    def __enter__(self) -> "Mirror":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Mirror", "MirrorProgram", "Change", "Replica", "ZcoordError"]
