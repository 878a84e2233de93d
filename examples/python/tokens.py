#!/usr/bin/env python3
"""Print the tokens of zcoord turns as they stream (a SUB socket on zcoord's PUB).

    python3 tokens.py [--session ID] [--turns N] [--data-dir DIR | --pub ENDPOINT]

Without --session every session's tokens are printed; --turns N exits after N llm.end events.
Prints "subscribed" on stderr once the subscription is known to be live: its first event
arrives (at the latest the next instance.heartbeat).
Requires pyzmq (pip install pyzmq). See proto-docs/PROTOCOL.md for the wire format.
"""

import argparse
import json
import os
import sys
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


def main() -> int:
    ap = argparse.ArgumentParser(description="Print zcoord llm.token events as they stream.")
    ap.add_argument("--session", help="only this session (default: all sessions)")
    ap.add_argument("--turns", type=int, help="exit after this many llm.end events")
    ap.add_argument("--workspace", help="workspace directory (default: the current directory)")
    ap.add_argument("--data-dir", help="zcoord data directory (holds instance.json)")
    ap.add_argument("--pub", help="PUB endpoint, e.g. tcp://127.0.0.1:5556 (skips discovery)")
    args = ap.parse_args()

    endpoint = args.pub
    if not endpoint:
        path = data_dir(args.data_dir, args.workspace) / "instance.json"
        try:
            endpoint = json.loads(path.read_text())["endpoints"]["pub"]
        except (OSError, ValueError, KeyError) as e:
            print(f"error: cannot read {path}: {e} (is `zcoord serve` running?)", file=sys.stderr)
            return 3

    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    # Subscriptions are key prefixes. Session events have keys "<topic>/<session_id>", so
    # "llm.token/<id>" is one session's tokens and "llm.token/" is every session's.
    suffix = f"/{args.session}" if args.session else "/"
    for topic in ("llm.token", "llm.end"):
        sub.setsockopt_string(zmq.SUBSCRIBE, topic + suffix)
    # Heartbeats tell us when the subscription is live; instance.shutdown when to stop.
    sub.setsockopt_string(zmq.SUBSCRIBE, "instance.")
    sub.connect(endpoint)

    live = False
    turns_done = 0
    next_index = {}  # turn_id -> index of the next expected token, to notice missed tokens
    while True:
        # Frame 1 is the key, frame 2 the JSON envelope {seq, instance_id, topic, ..., payload}.
        _key, body = sub.recv_multipart()
        event = json.loads(body)
        topic, p = event["topic"], event["payload"]

        if not live:
            # PUB/SUB drops whatever is published before the subscription reaches the server
            # (the "slow joiner"); once any event arrives, the subscription is live.
            live = True
            print("subscribed", file=sys.stderr, flush=True)

        if topic == "llm.token":
            expected = next_index.get(p["turn_id"], 0)
            if p["index"] != expected:
                print(f"\n[missed tokens {expected}..{p['index'] - 1}]", file=sys.stderr)
            next_index[p["turn_id"]] = p["index"] + 1
            sys.stdout.write(p["token"])
            sys.stdout.flush()
        elif topic == "llm.end":
            streamed = next_index.pop(p["turn_id"], 0)  # tokens the turn streamed
            sys.stdout.write("\n")
            sys.stdout.flush()
            detail = f": {p['error']}" if p.get("error") else ""
            print(
                f"[turn {p['turn_id']} {p['reason']}{detail}, {streamed} tokens]",
                file=sys.stderr,
                flush=True,
            )
            turns_done += 1
            if args.turns is not None and turns_done >= args.turns:
                return 0
        elif topic == "instance.shutdown":
            print(f"[server shut down: {p['reason']}]", file=sys.stderr)
            return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
