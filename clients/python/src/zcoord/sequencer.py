"""Event order and gap repair (PROTOCOL §8 with the protocol 2 welcome), without I/O.

A Sequencer sits between a SUB and its reader. It starts at the welcome's `last_seq`, drops what
is already reflected (`seq <= last`), and repairs losses with `events.replay`:
- subscribed to everything (`""`): any `seq > last + 1`, or our own welcome's `last_seq > last`;
- subscribed to prefixes: seq jumps are normal, so a token stream is checked by `llm.token`
  `index` instead (a jump, or a first token above 0 after the welcome), and the missing tokens
  are fetched with `events.replay {prefixes: ["llm.token/<sid>"]}`.
What replay cannot give back raises GapUnrepairable; an event of another instance raises
InstanceChanged. Both mean: resynchronise (`state.sync`, then `reset`).
"""

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from .effects import Program
from .errors import GapUnrepairable, InstanceChanged, RpcError, Timeout, is_replay_unavailable
from .protocol.events import LLM_END, LLM_START, LLM_TOKEN

Envelope = dict[str, Any]


@dataclass
class _Turn:
    next_index: int  # the index of the next token to yield
    last_token_seq: int  # replay tokens after this seq
    known: bool = True  # we saw its llm.start or a token: a hole in it is a loss


class Sequencer:
    def __init__(self, prefixes: Sequence[str], repair_tokens: bool = True) -> None:
        self.prefixes = list(prefixes)
        self.full = "" in self.prefixes
        self.repair_tokens = repair_tokens and not self.full  # a full stream sees seq gaps
        self.instance_id: Optional[str] = None
        self.last_seq = 0
        self.live_from = 0  # the welcome's last_seq: every matching event above it is ours
        self.retired: set[str] = set()
        self.repairs = 0  # replays that gave back lost events
        self._turns: dict[str, _Turn] = {}

    def reset(self, instance_id: str, seq: int) -> None:
        """After a snapshot (`state.sync` answered `instance_id`, `seq`): drop events up to seq,
        and every event of the instances followed before."""
        if self.instance_id and self.instance_id != instance_id:
            self.retired.add(self.instance_id)
        self.instance_id, self.last_seq = instance_id, seq
        self.live_from = seq
        self._turns.clear()

    def welcomed(self, instance_id: str, last_seq: int) -> "Program[list[Envelope]]":
        """Our own welcome (the first, or again after libzmq reconnected the SUB)."""
        if self.instance_id is None:
            self.instance_id, self.last_seq, self.live_from = instance_id, last_seq, last_seq
            return []
        if instance_id in self.retired:
            return []
        if instance_id != self.instance_id:
            raise InstanceChanged(f"welcome from instance {instance_id}, following {self.instance_id}")
        if self.full and last_seq > self.last_seq:
            return (yield from self._replay(f"welcome at seq {last_seq}, stream at {self.last_seq}"))
        return []

    def process(self, env: Envelope) -> "Program[list[Envelope]]":
        """The events to hand on, in order, for one event off the SUB (none, it, or the lost
        ones before it)."""
        iid, seq = env.get("instance_id"), env.get("seq")
        if not isinstance(seq, int) or not isinstance(iid, str):
            return []  # a welcome (not numbered) or something malformed
        if iid in self.retired:
            return []  # queued before we resynchronised away from that instance
        if iid != self.instance_id:
            raise InstanceChanged(f"instance {self.instance_id} -> {iid}", env)
        if seq <= self.last_seq:
            return []  # the snapshot, or a replay, already holds it
        out: list[Envelope] = []
        if self.full and seq != self.last_seq + 1:
            out += yield from self._replay(f"seq gap: expected {self.last_seq + 1}, got {seq}", env)
            if seq <= self.last_seq:
                return out
            if seq != self.last_seq + 1:
                raise GapUnrepairable(f"the replay stopped at {self.last_seq}, before {seq}", env)
        if self.repair_tokens:
            out += yield from self._check_tokens(env)
        self.last_seq = max(self.last_seq, seq)
        self._track(env)
        out.append(env)
        return out

    def _replay(self, reason: str, env: Optional[Envelope] = None) -> "Program[list[Envelope]]":
        params: dict[str, Any] = {"after_seq": self.last_seq, "instance_id": self.instance_id}
        if not self.full:
            params["prefixes"] = self.prefixes
        out: list[Envelope] = []
        while True:
            page = yield from self._ask_replay(params, reason, env)
            for event in page["events"]:
                seq = event.get("seq")
                if not isinstance(seq, int) or seq <= self.last_seq:
                    continue
                if self.full and seq != self.last_seq + 1:
                    raise GapUnrepairable(f"{reason}; the replay has a gap at {seq}", env)
                self.last_seq = seq
                self._track(event)
                out.append(event)
            if not page.get("has_more"):
                break
            params["after_seq"] = page["next_after_seq"]
        if out:
            self.repairs += 1
        return out

    def _ask_replay(
        self, params: dict[str, Any], reason: str, env: Optional[Envelope]
    ) -> "Program[dict[str, Any]]":
        try:
            page = yield ("events.replay", dict(params))
        except RpcError as e:
            why = e.data.get("reason") if is_replay_unavailable(e) else str(e)
            raise GapUnrepairable(f"{reason}; replay unavailable: {why}", env) from e
        except Timeout as e:
            raise GapUnrepairable(f"{reason}; {e}", env) from e
        return page  # type: ignore[no-any-return]

    def _check_tokens(self, env: Envelope) -> "Program[list[Envelope]]":
        if env.get("topic") != LLM_TOKEN:
            return []
        p = env["payload"]
        turn = self._turns.get(p["turn_id"])
        if turn is None:
            # The first token we see of this turn. Above index 0 it may have started before
            # we were live (nothing lost), or its first tokens may have been lost: ask.
            if p["index"] == 0:
                return []
            turn = self._turns[p["turn_id"]] = _Turn(0, self.live_from, known=False)
        if p["index"] <= turn.next_index:
            return []
        return (yield from self._fill(turn, env))

    def _fill(self, turn: _Turn, env: Envelope) -> "Program[list[Envelope]]":
        p = env["payload"]
        sid, turn_id, upto = p["session_id"], p["turn_id"], p["index"]
        params: dict[str, Any] = {
            "after_seq": turn.last_token_seq,
            "prefixes": [f"{LLM_TOKEN}/{sid}"],
            "instance_id": self.instance_id,
        }
        reason = f"tokens {turn.next_index}..{upto - 1} of turn {turn_id} lost"
        found: dict[int, Envelope] = {}
        while True:
            page = yield from self._ask_replay(params, reason, env)
            for event in page["events"]:
                q = event.get("payload") or {}
                index = q.get("index")
                if q.get("turn_id") == turn_id and isinstance(index, int):
                    if turn.next_index <= index < upto:
                        found[index] = event
            if not page.get("has_more") or not page["events"]:
                break
            params["after_seq"] = page["next_after_seq"]
        indices = sorted(found)
        # A turn we knew must come back whole; one first seen mid-way may have started before
        # we were live: what the replay holds after the welcome is what we lost, if anything.
        whole = indices == list(range(turn.next_index, upto))
        tail = not indices or indices == list(range(indices[0], upto))
        if not whole and (turn.known or not tail):
            turn.next_index = upto + 1
            raise GapUnrepairable(f"{reason}; not in the replay", env)
        out = [found[i] for i in indices]
        if out:
            self.repairs += 1
            self.last_seq = max([self.last_seq] + [e["seq"] for e in out])
        return out

    def _track(self, env: Envelope) -> None:
        topic, p = env.get("topic"), env.get("payload") or {}
        if not self.repair_tokens:
            return
        if topic == LLM_START:
            self._turns[p["turn_id"]] = _Turn(0, env["seq"])
        elif topic == LLM_TOKEN:
            turn = self._turns.setdefault(p["turn_id"], _Turn(0, env["seq"]))
            turn.next_index = max(turn.next_index, p["index"] + 1)
            turn.last_token_seq = max(turn.last_token_seq, env["seq"])
        elif topic == LLM_END:
            self._turns.pop(p["turn_id"], None)
