#!/usr/bin/env python3
"""Print the tokens of zcoord turns as they stream, repairing any that were lost on the way.

    python3 tokens.py [--session ID] [--turns N] [--data-dir DIR | --rpc ENDPOINT --pub ENDPOINT]
                      [--timeout-ms MS] [--live-timeout SECONDS]

Without --session every session's tokens are printed; --turns N exits after N turns ended
(llm.end). It follows the recommended start-up of proto-docs/PROTOCOL.md §8:

  1. a SUB subscribes to the llm.* and message.append events (of one session, or of all) and
     to instance.* (for instance.shutdown), and waits for the `instance.welcome` of each
     subscription: its key frame and its payload `subscription` are the subscription itself
     (welcomes for other clients' subscriptions may arrive too and are ignored). From then on
     every event published after the welcome reaches this SUB unless its queue overflows, so it
     prints "subscribed" on stderr: a `message.send` made after that is seen from its first
     token. Events published before are lost to the "slow joiner" race; a turn already running
     is printed from the token it had reached.
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
$ZCOORD_SECRET or the discovery file); see authenticate().
Requires pyzmq (pip install pyzmq). See proto-docs/PROTOCOL.md for the wire format.
"""

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

import zmq

REPLAY_UNAVAILABLE = -32008
QUIET_CHECK = 2.0  # seconds a running turn may stay silent before we ask the server about it
END_WAIT = 1.0  # seconds to wait for the closing message.append of a turn that lost tokens


def data_home() -> Path:
    if os.environ.get("XDG_DATA_HOME"):
        return Path(os.environ["XDG_DATA_HOME"]) / "zcoord"
    return Path.home() / ".local/share/zcoord"


def data_dir(arg: str | None, workspace: str | None = None) -> Path:
    """Where `zcoord serve` writes instance.json: the same lookup order as the zcoord CLI.

    --data-dir, else $ZCOORD_DATA_DIR, else the workspace's own directory under the data home:
    the workspace is --workspace, else $ZCOORD_WORKSPACE, else the current directory.
    """
    if arg:
        return Path(arg)
    if os.environ.get("ZCOORD_DATA_DIR"):
        return Path(os.environ["ZCOORD_DATA_DIR"])
    ws = os.path.realpath(workspace or os.environ.get("ZCOORD_WORKSPACE") or os.getcwd())
    base = os.path.basename(ws) or "root"
    name = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in base)[:16]
    h = 0xCBF29CE484222325  # FNV-1a, 64 bits, over the absolute path's UTF-8 bytes
    for b in ws.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return data_home() / "workspaces" / f"{name}-{h:016x}"


def authenticate(sock: zmq.Socket, endpoint: str, secret: str | None) -> None:
    """Over tcp the server lets in only peers presenting ZeroMQ PLAIN credentials: user name
    "zcoord", password the instance's secret. Two socket options, set before connect(); over ipc
    the directory's permissions do that job and nothing is set."""
    if endpoint.startswith("tcp://") and secret:
        sock.plain_username = b"zcoord"
        sock.plain_password = secret.encode()


def secret_for(discovery: dict, endpoints: list[str]) -> str | None:
    """$ZCOORD_SECRET, else the discovery file's "secret" (written only when an endpoint is tcp;
    the file is 0600). Warns when a tcp endpoint has none: the server would ignore us."""
    secret = os.environ.get("ZCOORD_SECRET") or discovery.get("secret")
    if not secret and any(e.startswith("tcp://") for e in endpoints):
        print(
            "warning: tcp endpoint but no secret ($ZCOORD_SECRET or the discovery file's): "
            "the server will not answer",
            file=sys.stderr,
        )
    return secret


def read_discovery(path: Path) -> dict:
    """The discovery file, or {} when there is none (endpoints given on the command line)."""
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def note(line: str) -> None:
    """Progress and diagnostics on stderr."""
    print(line, file=sys.stderr, flush=True)


def write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


# --- RPC ------------------------------------------------------------------------------------


class RpcTimeout(Exception):
    pass


class RpcError(Exception):
    def __init__(self, error: dict):
        super().__init__(json.dumps(error))
        self.error = error
        self.code = error.get("code")
        self.data = error.get("data") or {}


class Rpc:
    """JSON-RPC over one long-lived DEALER. libzmq reconnects it by itself after a restart."""

    def __init__(self, ctx: zmq.Context, endpoint: str, timeout_ms: int, secret: str | None):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        authenticate(self.sock, endpoint, secret)  # tcp only: PLAIN, before connect
        self.sock.connect(endpoint)
        self.timeout_ms = timeout_ms

    def call(self, method: str, params: dict) -> dict:
        req_id = str(uuid.uuid4())
        request = {"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}
        self.sock.send(json.dumps(request).encode())
        deadline = time.monotonic() + self.timeout_ms / 1000
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0 or not self.sock.poll(left_ms, zmq.POLLIN):
                raise RpcTimeout(f"{method}: no reply within {self.timeout_ms} ms")
            reply = json.loads(self.sock.recv_multipart()[-1])
            # The socket is reused: a late reply to a call that timed out may come first.
            if not isinstance(reply, dict) or reply.get("id") != req_id:
                continue
            if "error" in reply:
                raise RpcError(reply["error"])
            return reply["result"]


# --- a live subscription --------------------------------------------------------------------


def welcome_in(frames: list[bytes]) -> dict | None:
    """The envelope of an instance.welcome, or None. Its key frame is the subscription."""
    if len(frames) != 2:
        return None
    try:
        event = json.loads(frames[1])
        if event.get("topic") != "instance.welcome":
            return None
        if event["payload"]["subscription"].encode() != frames[0]:
            return None
        return event
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def subscribe_live(
    ctx: zmq.Context, endpoint: str, prefixes: list[str], timeout: float, secret: str | None
):
    """A SUB on `prefixes` whose subscriptions are all live: each one's welcome has arrived.

    Returns (sub, welcomes, early): `welcomes` maps each prefix to its welcome's envelope (`seq`:
    every matching event numbered above it reaches us), `early` the events that arrived before.
    None if that does not happen within `timeout` seconds. A welcome that is late gets a fresh
    socket rather than a longer wait: a welcome can be lost like any event, and a new
    connection is welcomed anew.
    """
    deadline = time.monotonic() + timeout
    attempt = 1.0
    while True:
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        authenticate(sub, endpoint, secret)  # the PUB checks subscribers too
        for p in prefixes:
            sub.setsockopt_string(zmq.SUBSCRIBE, p)
        sub.connect(endpoint)
        welcomes, early = {}, []
        until = min(deadline, time.monotonic() + attempt)
        while len(welcomes) < len(set(prefixes)):
            left_ms = int((until - time.monotonic()) * 1000)
            if left_ms <= 0 or not sub.poll(left_ms, zmq.POLLIN):
                break
            frames = sub.recv_multipart()
            welcome = welcome_in(frames)
            sub_of = welcome and welcome["payload"]["subscription"]
            if sub_of in prefixes and sub_of not in welcomes:
                welcomes[sub_of] = welcome
            elif welcome is None:
                early.append(frames)  # another client's welcome is just dropped
        else:
            return sub, welcomes, early
        sub.close()
        if time.monotonic() >= deadline:
            return None
        attempt = min(attempt * 2, 5.0)


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
    def __init__(self, rpc: Rpc, turns_wanted: int | None):
        self.rpc = rpc
        self.turns: dict[str, Turn] = {}  # running turns, by turn_id
        self.finished: set[str] = set()  # turns printed to the end: later events are old news
        self.turns_wanted = turns_wanted
        self.turns_done = 0
        self.covered: dict[str, int] = {}  # instance_id -> seq after which our events all come

    def welcomed(self, welcome: dict) -> None:
        iid, seq = welcome["instance_id"], welcome["payload"]["seq"]
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
            if isinstance(e, RpcError) and e.code == REPLAY_UNAVAILABLE:
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
            if e.code == REPLAY_UNAVAILABLE and e.data.get("reason") == "instance_changed":
                # A restarted server ends no turn of the old one (PROTOCOL.md §12).
                self.turns.pop(t.id, None)
                self.finished.add(t.id)
                note(f"\n[turn {t.id}: the server restarted; this turn will not end]")
            elif e.code == REPLAY_UNAVAILABLE:
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

    path = data_dir(args.data_dir, args.workspace) / "instance.json"
    discovery = read_discovery(path)
    rpc_ep, pub_ep = args.rpc, args.pub
    if not (rpc_ep and pub_ep):
        try:
            endpoints = discovery["endpoints"]
            rpc_ep, pub_ep = rpc_ep or endpoints["rpc"], pub_ep or endpoints["pub"]
        except (KeyError, TypeError):
            note(f"error: no endpoints in {path} (is `zcoord serve` running?)")
            return 3
    secret = secret_for(discovery, [rpc_ep, pub_ep])

    # Subscriptions are key prefixes. Session events have keys "<topic>/<session_id>", so
    # "llm.token/<id>" is one session's tokens and "llm." every session's llm.* events.
    if args.session:
        topics = ("llm.start", "llm.token", "llm.end", "message.append")
        prefixes = [f"{topic}/{args.session}" for topic in topics]
    else:
        prefixes = ["llm.", "message.append/"]
    prefixes.append("instance.")  # instance.shutdown tells us when to stop

    ctx = zmq.Context.instance()
    rpc = Rpc(ctx, rpc_ep, args.timeout_ms, secret)
    live = subscribe_live(ctx, pub_ep, prefixes, args.live_timeout, secret)
    if live is None:
        note(
            f"error: no welcome within {args.live_timeout:g} s on {pub_ep} (is the server running?)"
        )
        return 3
    sub, welcomes, early = live
    note("subscribed")

    printer = Printer(rpc, args.turns)
    for welcome in welcomes.values():
        printer.welcomed(welcome)
    for frames in early:
        if not printer.on_event(json.loads(frames[-1])):
            return 0
    while True:
        if sub.poll(200, zmq.POLLIN):
            # Frame 1 is the key, frame 2 the JSON envelope {seq, instance_id, topic, ..., payload}.
            frames = sub.recv_multipart()
            welcome = welcome_in(frames)
            if welcome and welcome["payload"]["subscription"] in prefixes:
                printer.welcomed(welcome)  # ours again: a reconnect, perhaps to a new instance
            if not printer.on_event(json.loads(frames[-1])):
                return 0
        if not printer.tick():
            return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
