#!/usr/bin/env python3
"""Print the tokens of zcoord turns as they stream, repairing any that were lost on the way.

    python3 tokens.py [--session ID] [--turns N] [--data-dir DIR | --rpc ENDPOINT --pub ENDPOINT]
                      [--timeout-ms MS] [--live-timeout SECONDS]

Without --session every session's tokens are printed; --turns N exits after N turns ended
(llm.end). It follows the recommended start-up of proto-docs/PROTOCOL.md §8:

  1. with the `zcoord` package, a SUB subscribes to the llm.* and message.append events (of one
     session, or of all) and to instance.* (for instance.shutdown), then to its own
     `instance.welcome/<token>`, and waits for that welcome: every subscription made before it
     is live, so it prints "subscribed" on stderr and a `message.send` made after that is seen
     from its first token. A turn already running is printed from the token it had reached.
  2. tokens are printed in `index` order. An index jump means tokens were lost (a subscriber
     that fell behind its queue, §9): they are fetched over a DEALER with `events.replay
     {after_seq: <seq of the last token we have>, prefixes: ["llm.token/<sid>"], instance_id}`
     (page by page while has_more), printed, and the stream goes on. Should the server no longer
     hold them (`replay_unavailable`, -32008), the rest of the reply is taken from the turn's
     assistant `message.append` events, which together hold the complete text (§7).
  3. at llm.end, a turn whose `tokens_out` exceeds the tokens we have is checked the same way (a
     lost last token shows no jump); a turn silent for 2 s is checked for tokens and its llm.end
     (which may have been lost as well).

Exit codes: 0 after --turns N turns or instance.shutdown, 2 usage, 3 no server (no discovery file,
or no welcome within --live-timeout), 130 Ctrl-C.
Over tcp both sockets authenticate with ZeroMQ PLAIN (user "zcoord", the secret from
$ZCOORD_SECRET or the discovery file): the package does it.
Requires the package: pip install ./clients/python (see README.md).
"""

import argparse
import sys
import time

import zcoord

REPLAY_UNAVAILABLE = -32008
QUIET_CHECK = 2.0  # seconds a running turn may stay silent before we ask the server about it
END_WAIT = 1.0  # seconds to wait for the closing message.append of a turn that lost tokens
RpcError = zcoord.RpcError
RpcTimeout = zcoord.Timeout


def note(line: str) -> None:
    """Progress and diagnostics on stderr."""
    print(line, file=sys.stderr, flush=True)


def write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


# --- the token printer ----------------------------------------------------------------------


def usage_note(p: dict) -> str:
    """llm.end's `usage` (PROTOCOL §6) in a few words; the daemon's estimates are marked `~`."""
    u = p.get("usage")
    if not u:
        return ""  # a server older than `usage`
    estimated = set(u.get("estimated", ()))

    def fig(name: str) -> str:
        return ("~" if name in estimated else "") + str(u.get(name, 0))

    cached = f" ({u['cached_input_tokens']} cached)" if "cached_input_tokens" in u else ""
    window = f"/{u['context_window']}" if "context_window" in u else ""
    return f"; in {fig('input_tokens')}{cached}, out {fig('output_tokens')}, context {fig('context_tokens')}{window}"


class Turn:
    def __init__(self, turn_id: str, session_id: str, instance_id: str):
        self.id, self.sid, self.instance_id = turn_id, session_id, instance_id
        self.started = False  # its llm.start was seen: a token missing before index k is lost
        self.after: int | None = None  # seq of the last token we have (else of llm.start)
        self.next = 0  # index of the next token to print
        self.first: int | None = None  # index of the first token printed (> 0: joined mid-turn)
        self.printed: list[str] = []
        self.appends: dict[str, str] = {}  # message_id -> content of its assistant messages
        self.broken = ""  # why a hole could not be filled: the text then comes from appends
        self.end: dict | None = None  # its llm.end envelope
        self.ended_at = 0.0
        self.heard = time.monotonic()  # when we last heard of it, for the silence check


class Printer:
    def __init__(self, rpc: zcoord.Client, turns_wanted: int | None):
        self.rpc = rpc
        self.turns: dict[str, Turn] = {}  # running turns, by turn_id
        self.finished: set[str] = set()  # turns printed to the end: later events are old news
        self.turns_wanted = turns_wanted
        self.turns_done = 0
        self.covered: dict[str, int] = {}  # instance_id -> seq after which our events all come

    def welcomed(self, iid: str, seq: int) -> None:
        self.covered[iid] = min(self.covered.get(iid, seq), seq)

    def turn(self, event: dict, create: bool = True) -> Turn | None:
        """The turn an llm.*/message.append event is about; None once it is finished."""
        p = event["payload"]
        t = self.turns.get(p["turn_id"])
        if t is None:
            if not create or p["turn_id"] in self.finished:
                return None
            t = self.turns[p["turn_id"]] = Turn(p["turn_id"], p["session_id"], event["instance_id"])
        t.heard = time.monotonic()
        return t

    def done(self) -> bool:
        return self.turns_wanted is not None and self.turns_done >= self.turns_wanted

    # One event from the SUB (or from a replay). Returns False when it is time to exit.
    def on_event(self, event: dict) -> bool:
        topic, p, seq = event["topic"], event["payload"], event["seq"]
        if topic == "instance.welcome":
            # Ours again after a reconnect (e.g. the server restarted), or another client's.
            return True
        if topic == "instance.shutdown":
            note(f"[server shut down: {p['reason']}]")
            return False
        if topic == "llm.start":
            if t := self.turn(event):
                t.started = True
                t.after = seq if t.after is None else t.after
        elif topic == "llm.token":
            if t := self.turn(event):
                self.token(t, event)
        elif topic == "message.append" and p.get("role") == "assistant" and p.get("turn_id"):
            if t := self.turn(event, create=False):
                t.appends[p["message_id"]] = p["content"]
                if t.end and t.broken and seq == t.end["seq"] + 1:
                    self.finish(t)  # the closing message of the turn: the text is complete
        elif topic == "llm.end" and (t := self.turn(event)) and t.end is None:
            self.ended(t, event)
        # A turn that lost tokens waits for its closing message.append, which comes right
        # after its llm.end (seq + 1) if it streamed text since its last tool call: any later
        # event means it is not coming.
        for t in list(self.turns.values()):
            if t.end and t.instance_id == event["instance_id"] and seq > t.end["seq"] + 1:
                self.finish(t)
        return not self.done()

    def token(self, t: Turn, event: dict) -> None:
        index = event["payload"]["index"]
        if t.broken or index < t.next:
            return  # already printed (a replay overlaps the stream), or the hole is unfillable
        if index > t.next:
            self.fill(t, before_index=index)
            if t.broken:
                return
            joined_mid_turn = not t.started and t.first is None
            if index > t.next and not joined_mid_turn:
                self.give_up(t, f"tokens {t.next}..{index - 1} are not in the replay")
                return
        self.put(t, event)

    def put(self, t: Turn, event: dict) -> None:
        p = event["payload"]
        if t.first is None and not t.started and p["index"] > t.next:
            # The first token we have of a turn that started before we subscribed: the ones
            # before it were published before our welcome, they were never ours to lose.
            t.next = p["index"]
        if p["index"] != t.next:
            return
        if t.first is None:
            t.first = p["index"]
        write(p["token"])
        t.printed.append(p["token"])
        t.next += 1
        t.after = event["seq"]

    def replay(self, t: Turn, prefixes: list[str]):
        """The events of turn t after the last one we have, from the server's replay ring."""
        after = t.after if t.after is not None else self.covered.get(t.instance_id, 0)
        params = {"after_seq": after, "prefixes": prefixes, "instance_id": t.instance_id}
        while True:
            page = self.rpc.call("events.replay", params)
            for event in page["events"]:
                if event["payload"].get("turn_id") == t.id:
                    yield event
            if not page["has_more"]:
                return
            params["after_seq"] = page["next_after_seq"]

    def fill(self, t: Turn, before_index: float = float("inf")) -> None:
        """Print the tokens of t we are missing, up to before_index, with events.replay."""
        had = t.next
        try:
            for event in self.replay(t, [f"llm.token/{t.sid}"]):
                if event["payload"]["index"] >= before_index:
                    break
                self.put(t, event)
        except (RpcError, RpcTimeout) as e:
            why = e.data.get("reason") if isinstance(e, RpcError) else None
            if zcoord.errors.is_replay_unavailable(e):
                self.give_up(t, f"tokens from {t.next} are no longer replayable ({why})")
            else:
                self.give_up(t, f"events.replay failed: {e}")
            return
        if t.next > had:
            note(f"\n[replayed tokens {had}..{t.next - 1} of turn {t.id}]")

    def give_up(self, t: Turn, why: str) -> None:
        t.broken = why
        note(f"\n[turn {t.id}: {why}; the rest of the reply will come from message.append]")

    def ended(self, t: Turn, event: dict) -> None:
        t.end, t.ended_at = event, time.monotonic()
        # tokens_out is never less than the tokens the turn published: if we have fewer, the
        # last ones may have been lost (that shows no index jump).
        if not t.broken and event["payload"].get("tokens_out", 0) > t.next:
            self.fill(t)
        if not t.broken:
            self.finish(t)

    def finish(self, t: Turn) -> None:
        if self.turns.pop(t.id, None) is None:
            return
        self.finished.add(t.id)
        p = t.end["payload"]
        if t.broken:
            # The turn's assistant messages together hold every token, in order.
            full, shown = "".join(t.appends.values()), "".join(t.printed)
            if t.first in (None, 0) and full.startswith(shown) and full != shown:
                write(full[len(shown) :])
                note(f"\n[turn {t.id}: the rest of the reply came from message.append]")
            elif full != shown:
                note(f"\n[turn {t.id}: the reply is incomplete]")
        write("\n")
        detail = f": {p['error']}" if p.get("error") else ""
        count = p.get("tokens_out", t.next) if t.broken else t.next
        joined = f", joined at token {t.first}" if t.first else ""
        note(f"[turn {t.id} {p['reason']}{detail}, {count} tokens{joined}{usage_note(p)}]")
        self.turns_done += 1

    def tick(self) -> bool:
        """Time-driven checks; returns False when it is time to exit."""
        now = time.monotonic()
        for t in list(self.turns.values()):
            if t.end and t.broken and now - t.ended_at >= END_WAIT:
                self.finish(t)  # no closing message.append: none was due, or it was lost too
            elif t.end is None and not t.broken and now - t.heard >= QUIET_CHECK:
                t.heard = now
                self.check_silent(t)
        return not self.done()

    def check_silent(self, t: Turn) -> None:
        """A running turn we have not heard of for a while: did we miss its tokens or its end?"""
        try:
            events = list(self.replay(t, [f"llm.token/{t.sid}", f"llm.end/{t.sid}"]))
        except RpcTimeout:
            return  # try again at the next check
        except RpcError as e:
            if zcoord.errors.is_replay_unavailable(e) and e.data.get("reason") == "instance_changed":
                # A restarted server ends no turn of the old one (PROTOCOL.md §12).
                self.turns.pop(t.id, None)
                self.finished.add(t.id)
                note(f"\n[turn {t.id}: the server restarted; this turn will not end]")
            elif zcoord.errors.is_replay_unavailable(e):
                self.give_up(t, f"tokens from {t.next} are no longer replayable")
            return
        for event in events:
            self.on_event(event)


def main() -> int:
    ap = argparse.ArgumentParser(description="Print zcoord llm.token events as they stream.")
    ap.add_argument("--session", help="only this session (default: all sessions)")
    ap.add_argument("--turns", type=int, help="exit after this many turns ended (llm.end)")
    ap.add_argument("--workspace", help="workspace directory (default: the current directory)")
    ap.add_argument("--data-dir", help="zcoord data directory (holds instance.json)")
    ap.add_argument("--rpc", help="ROUTER endpoint, e.g. tcp://127.0.0.1:5555 (skips discovery)")
    ap.add_argument("--pub", help="PUB endpoint, e.g. tcp://127.0.0.1:5556 (skips discovery)")
    ap.add_argument("--timeout-ms", type=int, default=3000, help="how long to wait for each reply")
    ap.add_argument(
        "--live-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="exit 3 if the subscription is not welcomed within this time (default 30)",
    )
    args = ap.parse_args()

    try:
        rpc = zcoord.Client.connect(rpc=args.rpc, pub=args.pub, data_dir=args.data_dir,
                                    workspace=args.workspace, timeout=args.timeout_ms / 1000)
    except zcoord.ConnectionFailed as e:
        note(f"error: {e} (is `zcoord serve` running?)")
        return 3

    # Subscriptions are key prefixes. Session events have keys "<topic>/<session_id>", so
    # "llm.token/<id>" is one session's tokens and "llm." every session's llm.* events.
    if args.session:
        topics = ("llm.start", "llm.token", "llm.end", "message.append")
        prefixes = [f"{topic}/{args.session}" for topic in topics]
    else:
        prefixes = ["llm.", "message.append/"]
    prefixes.append("instance.")  # instance.shutdown tells us when to stop

    # The Printer repairs token holes itself (and falls back to message.append), so the
    # subscription only orders events: repair=False.
    try:
        sub = rpc.subscribe(prefixes, timeout=args.live_timeout, repair=False)
    except zcoord.NotLive as e:
        note(f"error: {e}")
        return 3
    note("subscribed")

    printer = Printer(rpc, args.turns)
    printer.welcomed(sub.welcome.instance_id, sub.welcome.last_seq)
    while True:
        try:
            event = sub.recv(0.2)
        except zcoord.InstanceChanged as e:
            # A new instance (restart, failover): follow it; its tokens come from seq 1.
            assert e.event is not None
            sub.reset(e.event["instance_id"], 0)
            printer.welcomed(e.event["instance_id"], 0)
            event = e.event
        if event is not None and not printer.on_event(dict(event)):
            return 0
        if not printer.tick():
            return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
