#!/usr/bin/env python3
"""Keep a local replica of a zcoord primary: sessions, the active session, every session's messages.

    python3 mirror.py [--data-dir DIR | --rpc ENDPOINT --pub ENDPOINT] [--timeout-ms MS]
                      [--dump-after-idle SECONDS] [--live-timeout SECONDS]

This is the Clone pattern of proto-docs/PROTOCOL.md §8, step by step:

  1. connect a SUB subscribed to "" (every topic: a gap in `seq` is only visible to a subscriber
     to everything);
  2. wait for its welcome: the `instance.welcome` whose key frame and payload `subscription` are
     "" (other clients' welcomes reach a "" subscriber too, and are ignored). Every event
     published after it reaches the SUB unless its queue overflows; what came before would be
     lost (the "slow joiner");
  3. `state.sync` over a DEALER: the sessions, the active session, and the `seq` S of the last
     event the snapshot reflects; then `message.list` for each session;
  4. read the events that queued up meanwhile and everything after: drop each with seq <= S,
     apply the others in order, ignore `instance.welcome`s;
  5. repair a gap (an event whose seq is not exactly last + 1: events were lost, e.g. the SUB
     fell behind its queue) with `events.replay {after_seq: last, instance_id}`, applying what
     it returns page by page; only if the server no longer holds those events
     (`replay_unavailable`) resynchronise: step 3 again, keeping the SUB. A welcome is not
     numbered, its seq repeats the last event's: one above the replica's seq is a gap too.
     An event of another instance (the server restarted or a standby took over: a new instance
     numbers its events from 1 again) always means a resync.

Prints one line per change on stdout (`session+ ID "title" n=COUNT STATUS`, `session~ …`,
`session- ID`, `message+ SESSION ROLE: TEXT`, `active ID`, `replay (reason): …`,
`resync (reason)`, `snapshot …`), and `live` on stderr once the subscription is live. With
--dump-after-idle N it prints the replica as one JSON line `REPLICA {...}` after N seconds without
events (heartbeats and welcomes do not count) and exits 0. Exit codes: 0 replica dumped, 2 usage,
3 no server found (no discovery file, or no welcome within --live-timeout), 130 Ctrl-C. Without
--dump-after-idle it runs until Ctrl-C, across restarts.
Over tcp both sockets authenticate with ZeroMQ PLAIN (user "zcoord", the secret from
$ZCOORD_SECRET or the discovery file); see authenticate().
Requires pyzmq (pip install pyzmq). Never blocks without a timeout.
"""

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

import zmq


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


def say(line: str) -> None:
    """One change (or resync) per line on stdout, flushed so a pipe sees it at once."""
    print(line, flush=True)


def note(line: str) -> None:
    """Progress and diagnostics on stderr."""
    print(line, file=sys.stderr, flush=True)


def prefix(text: str, n: int = 60) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= n else text[: n - 1] + "…"


# --- RPC ------------------------------------------------------------------------------------


class RpcTimeout(Exception):
    pass


class RpcError(Exception):
    def __init__(self, error: dict):
        super().__init__(json.dumps(error))
        self.error = error
        self.code = error.get("code")
        self.data = error.get("data") or {}

    @property
    def kind(self) -> str | None:
        return self.data.get("kind")


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
            # The socket is reused, so a late reply to an earlier call that timed out may come
            # first: match replies by id and skip the others.
            if not isinstance(reply, dict) or reply.get("id") != req_id:
                continue
            if "error" in reply:
                raise RpcError(reply["error"])
            return reply["result"]


def fetch_messages(rpc: Rpc, session_id: str) -> list[dict]:
    """A session's whole history, oldest first. Pages are bounded (at most 1,000 messages and
    about 1 MiB): take the newest, then page backwards with `before` while `has_more`."""
    messages, params = [], {"session_id": session_id, "limit": 1000}
    while True:
        try:
            page = rpc.call("message.list", params)
        except RpcError as e:
            if e.kind == "session_not_found":  # deleted since the snapshot: its event follows
                return []
            raise
        messages[0:0] = page["messages"]
        if not page.get("has_more") or not page["messages"]:
            return messages
        params = {"session_id": session_id, "limit": 1000, "before": page["messages"][0]["id"]}


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
    ctx: zmq.Context, endpoint: str, prefix: str, timeout: float, secret: str | None
):
    """A SUB on `prefix` whose subscription is live: its welcome has arrived. Returns (sub,
    welcome envelope), or None if that does not happen within `timeout` seconds.

    What arrives before the welcome was published before it, so before any snapshot taken
    after it: it is dropped. A welcome that is late gets a fresh socket rather than a longer
    wait: a welcome can be lost like any event, and a new connection is welcomed anew.
    """
    deadline = time.monotonic() + timeout
    attempt = 1.0
    while True:
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        authenticate(sub, endpoint, secret)  # the PUB checks subscribers too
        # A big receive queue: events pile up here while we wait for the snapshot (or a
        # replay), and anything beyond it would be lost (and cost a repair).
        sub.setsockopt(zmq.RCVHWM, 100_000)
        sub.setsockopt_string(zmq.SUBSCRIBE, prefix)
        sub.connect(endpoint)
        until = min(deadline, time.monotonic() + attempt)
        while True:
            left_ms = int((until - time.monotonic()) * 1000)
            if left_ms <= 0 or not sub.poll(left_ms, zmq.POLLIN):
                break
            welcome = welcome_in(sub.recv_multipart())
            if welcome and welcome["payload"]["subscription"] == prefix:
                return sub, welcome
        sub.close()
        if time.monotonic() >= deadline:
            return None
        attempt = min(attempt * 2, 5.0)


# --- the replica ----------------------------------------------------------------------------


def session_row(s: dict) -> dict:
    return {"title": s["title"], "message_count": s["message_count"], "status": s["status"]}


def message_row(m: dict) -> dict:
    # message.list has `id`, the message.append payload `message_id`.
    return {"id": m.get("id") or m["message_id"], "role": m["role"], "content": m["content"]}


class Replica:
    """The local copy. Every mutation that changes something prints one line."""

    def __init__(self):
        self.instance_id: str | None = None
        self.active: str | None = None
        self.sessions: dict[str, dict] = {}  # id -> {title, message_count, status}
        self.messages: dict[str, list[dict]] = {}  # session id -> [{id, role, content}]
        self.hitl: dict[str, dict] = {}  # request id -> the pending request (PROTOCOL §6)

    def request_pending(self, r: dict) -> None:
        if r["id"] not in self.hitl:
            self.hitl[r["id"]] = r
            asked = r["payload"].get("question") or r["payload"].get("tool_name")
            say(f"hitl+ {r['id']} {r['type']} {prefix(str(asked))}")

    def request_resolved(self, r: dict) -> None:
        if self.hitl.pop(r["id"], None) is not None:
            say(f"hitl- {r['id']} {r['status']} by {r.get('resolved_by')}")

    def upsert_session(self, payload: dict) -> None:
        sid, row = payload["id"], session_row(payload)
        old = self.sessions.get(sid)
        self.messages.setdefault(sid, [])
        if old == row:
            return
        self.sessions[sid] = row
        mark = "+" if old is None else "~"
        title = json.dumps(row["title"], ensure_ascii=False)
        say(f"session{mark} {sid} {title} n={row['message_count']} {row['status']}")

    def remove_session(self, sid: str) -> None:
        self.messages.pop(sid, None)
        if self.sessions.pop(sid, None) is not None:
            say(f"session- {sid}")
        if self.active == sid:
            # "If it was the active session, there is no active session afterwards" (§5).
            self.set_active(None)

    def set_active(self, sid: str | None) -> None:
        if sid != self.active:
            self.active = sid
            say(f"active {sid or '-'}")

    def has_message(self, sid: str, mid: str) -> bool:
        return any(m["id"] == mid for m in self.messages.get(sid, ()))

    def append_message(self, sid: str, msg: dict) -> None:
        row = message_row(msg)
        if self.has_message(sid, row["id"]):
            return  # already in the message.list fetched after the snapshot
        self.messages[sid].append(row)
        say(f"message+ {sid} {row['role']}: {prefix(row['content'])}")

    def replace(self, snap: dict, messages: dict[str, list[dict]]) -> None:
        """Load a fresh snapshot, printing what differs from the current replica."""
        self.instance_id = snap["instance_id"]
        fresh = {s["id"]: s for s in snap["sessions"]}
        for sid in [sid for sid in self.sessions if sid not in fresh]:
            self.remove_session(sid)
        for s in reversed(snap["sessions"]):  # oldest update first reads better
            self.upsert_session(s)
            sid = s["id"]
            new_rows = [message_row(m) for m in messages.get(sid, [])]
            old_rows = self.messages.get(sid, [])
            if new_rows == old_rows:
                continue
            new_ids = {m["id"] for m in new_rows}
            old_by_id = {m["id"]: m for m in old_rows}
            for m in old_rows:
                if m["id"] not in new_ids:
                    say(f"message- {sid} {m['id']}")
            for m in new_rows:
                was = old_by_id.get(m["id"])
                if was is None:
                    say(f"message+ {sid} {m['role']}: {prefix(m['content'])}")
                elif was != m:
                    say(f"message~ {sid} {m['role']}: {prefix(m['content'])}")
            self.messages[sid] = new_rows
        self.set_active(snap.get("active_session_id"))
        fresh_hitl = {r["id"]: r for r in snap.get("hitl", [])}
        for rid in [rid for rid in self.hitl if rid not in fresh_hitl]:
            self.request_resolved(dict(self.hitl[rid], status="gone"))
        for r in fresh_hitl.values():
            self.request_pending(r)

    def dump(self) -> dict:
        return {
            "instance_id": self.instance_id,
            "active_session_id": self.active,
            "sessions": self.sessions,
            "messages": {sid: self.messages.get(sid, []) for sid in self.sessions},
            "hitl": sorted(self.hitl),
        }


# --- the Clone pattern ----------------------------------------------------------------------


class Resync(Exception):
    """The replica can no longer be kept by events alone: a new snapshot is needed."""


class Gap(Exception):
    """Events were lost; events.replay may still have them."""


class Mirror:
    def __init__(self, rpc: Rpc):
        self.rpc = rpc
        self.replica = Replica()
        self.last_seq = 0
        self.retired: set[str] = set()  # instances we resynced away from; their events are stale

    def sync(self) -> None:
        """state.sync, then every session's messages; retries with backoff until it works."""
        delay = 0.1
        while True:
            try:
                snap = self.rpc.call("state.sync", {})
                messages = {s["id"]: fetch_messages(self.rpc, s["id"]) for s in snap["sessions"]}
                break
            except (RpcTimeout, RpcError) as e:
                note(f"sync failed: {e}; retrying in {delay:.1f} s")
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        old = self.replica.instance_id
        if old and old != snap["instance_id"]:
            self.retired.add(old)
        say(f"snapshot {snap['instance_id']} seq={snap['seq']} sessions={len(snap['sessions'])}")
        self.replica.replace(snap, messages)
        self.last_seq = snap["seq"]

    def on_event(self, event: dict) -> bool:
        """Handles one event; returns whether it was applied (False: dropped as already seen)."""
        iid, seq = event["instance_id"], event["seq"]
        if iid in self.retired:
            return False  # queued before the switch to the instance we now follow
        if iid != self.replica.instance_id:
            why = f"instance {self.replica.instance_id} -> {iid}"
            # A standby that took over says so in every heartbeat (PROTOCOL.md §12).
            promoted = event["payload"].get("promoted_from")
            raise Resync(why + (f", promoted from {promoted}" if promoted else ""))
        if event["topic"] == "instance.welcome":
            # Not numbered: its seq is the last event's, published before it, which should have
            # reached us first. Another client's welcome, or ours after a reconnect.
            if seq > self.last_seq:
                raise Gap(f"seq gap: welcome at seq {seq}, replica at {self.last_seq}")
            return False
        if seq <= self.last_seq:
            return False  # the snapshot (or a replay) already reflects it
        if seq != self.last_seq + 1:
            raise Gap(f"seq gap: expected {self.last_seq + 1}, got {seq}")
        self.last_seq = seq
        self.apply(event["topic"], event["payload"])
        return True

    def repair(self, reason: str) -> int:
        """Fetches the events after the replica's seq with events.replay and applies them;
        returns how many were applied.

        Raises Resync when the server no longer has them all (replay_unavailable), or the
        replay cannot be used (no reply, or not the gap-free run it should be).
        """
        params = {"after_seq": self.last_seq, "instance_id": self.replica.instance_id}
        start, applied = self.last_seq, 0
        while True:
            try:
                page = self.rpc.call("events.replay", params)
            except RpcError as e:
                if e.kind == "replay_unavailable":
                    raise Resync(f"{reason}; replay unavailable: {e.data.get('reason')}") from e
                raise Resync(f"{reason}; events.replay failed: {e}") from e
            except RpcTimeout as e:
                raise Resync(f"{reason}; {e}") from e
            for event in page["events"]:
                try:
                    applied += self.on_event(event)
                except Gap as e:
                    raise Resync(f"{reason}; the replay has a gap too ({e})") from e
            if not page["has_more"]:
                break
            params["after_seq"] = page["next_after_seq"]
        if applied:
            say(f"replay ({reason}): {applied} events, seq {start} -> {self.last_seq}")
        return applied

    def apply(self, topic: str, p: dict) -> None:
        r = self.replica
        if topic in ("session.update", "session.activated"):
            r.upsert_session(p)
            if topic == "session.activated":
                r.set_active(p["id"])
        elif topic == "session.list":
            # A truncated list holds only the newest sessions: the others are not gone.
            listed = {s["id"] for s in p["sessions"]}
            if not p.get("truncated"):
                for sid in [sid for sid in r.sessions if sid not in listed]:
                    r.remove_session(sid)
            for s in reversed(p["sessions"]):
                r.upsert_session(s)
        elif topic == "session.deleted":
            r.remove_session(p["id"])
        elif topic == "message.append":
            if p["session_id"] not in r.sessions:
                raise Resync(f"message.append for unknown session {p['session_id']}")
            if p.get("content_truncated"):
                # Events carry at most 8 KiB of a message: fetch the whole of a longer one.
                try:
                    whole = self.rpc.call(
                        "message.get", {"session_id": p["session_id"], "message_id": p["message_id"]}
                    )
                    p = dict(p, content=whole["content"])
                except (RpcError, RpcTimeout):
                    pass  # keep the part we have
            r.append_message(p["session_id"], p)
        elif topic == "instance.heartbeat":
            r.set_active(p.get("active_session_id"))
            # A cheap consistency check: the heartbeat is in seq order like everything else.
            count = p.get("session_count")
            if count is not None and count != len(r.sessions):
                raise Resync(f"heartbeat counts {count} sessions, the replica {len(r.sessions)}")
        elif topic == "hitl.pending":
            r.request_pending(p)
        elif topic == "hitl.resolved":
            r.request_resolved(p)
        elif topic == "instance.shutdown":
            note(f"server shutting down ({p.get('reason')}); waiting for the next instance")
        # llm.*, tool.* (tool.args pieces included), instance.promoted: nothing to keep (a
        # takeover shows as a new instance_id). A session's `usage` totals come with its row.


def main() -> int:
    ap = argparse.ArgumentParser(description="Mirror a zcoord primary's sessions and messages.")
    ap.add_argument("--workspace", help="workspace directory (default: the current directory)")
    ap.add_argument("--data-dir", help="zcoord data directory (holds instance.json)")
    ap.add_argument("--rpc", help="ROUTER endpoint, e.g. tcp://127.0.0.1:5555 (skips discovery)")
    ap.add_argument("--pub", help="PUB endpoint, e.g. tcp://127.0.0.1:5556 (skips discovery)")
    ap.add_argument("--timeout-ms", type=int, default=3000, help="how long to wait for each reply")
    ap.add_argument(
        "--dump-after-idle",
        type=float,
        metavar="SECONDS",
        help="print the replica as a REPLICA JSON line after this long without events, and exit",
    )
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

    ctx = zmq.Context.instance()
    rpc = Rpc(ctx, rpc_ep, args.timeout_ms, secret)
    # 1. Subscribe to everything, first. 2. Wait until the subscription is live: its welcome.
    live = subscribe_live(ctx, pub_ep, "", args.live_timeout, secret)
    if live is None:
        note(
            f"error: no welcome within {args.live_timeout:g} s on {pub_ep} (is the server running?)"
        )
        return 3
    sub, _welcome = live
    note("live")

    # 3. Snapshot. 4. Events, in order. 5. Repair a gap, or resync.
    mirror = Mirror(rpc)
    mirror.sync()
    last_activity = time.monotonic()
    while True:
        wait_ms = 1000
        if args.dump_after_idle is not None:
            idle_left = last_activity + args.dump_after_idle - time.monotonic()
            if idle_left <= 0:
                # Lost events show as a gap only when a later one arrives: the last events of a
                # burst may be gone with nothing after them yet. Ask before calling it done.
                try:
                    if mirror.repair("idle: checking for lost last events"):
                        last_activity = time.monotonic()
                        continue
                except Resync as e:
                    say(f"resync ({e})")
                    mirror.sync()
                    last_activity = time.monotonic()
                    continue
                say("REPLICA " + json.dumps(mirror.replica.dump(), sort_keys=True))
                return 0
            wait_ms = max(1, int(idle_left * 1000))
        if not sub.poll(wait_ms, zmq.POLLIN):
            continue
        body = sub.recv_multipart()[-1]  # frame 1 is the key, frame 2 the JSON envelope
        try:
            event = json.loads(body)
            if event.get("topic") not in ("instance.heartbeat", "instance.welcome"):
                last_activity = time.monotonic()
            try:
                mirror.on_event(event)
            except Gap as e:
                mirror.repair(str(e))
                last_activity = time.monotonic()
            continue
        except Resync as e:
            reason = str(e)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            # A server bug; the event may have been half applied, so start over from a snapshot.
            note(f"malformed event ({e!r}): {body[:200]!r}")
            reason = "malformed event"
        say(f"resync ({reason})")
        mirror.sync()
        last_activity = time.monotonic()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
