#!/usr/bin/env python3
"""A zcoord client that offers the model one tool it runs itself: `reverse_text`.

    python3 client_tool.py [--data-dir DIR | --rpc ENDPOINT --pub ENDPOINT] [--client-id ID]
                           [--calls N] [--timeout-ms MS]

What an editor plugin does to offer a tool only it can run (proto-docs/PROTOCOL.md §5 "Clients as
peers", §7.7):

  1. a SUB subscribes to `tool.start`, `hitl.resolved` and `instance.` and waits for the
     `instance.welcome` of each subscription, so no call made after start-up is missed;
  2. a DEALER says `client.hello` with its stable client_id and the tool (a JSON Schema for its
     arguments). From then on the model is offered the tool while this client is present; it
     stays present by sending any request at least every --client-timeout-secs (15 s by default):
     it pings every 5 s;
  3. on a `tool.start` with `executor: "client"` for its tool, it claims the call (`tool.claim`);
     when a person must approve first (`awaiting_approval: true`) it claims once the matching
     `hitl.resolved` says `approved`. The first claim wins: losing (`tool_claimed`, -32015) means
     another client runs it, and it moves on;
  4. the claim's answer carries the call's arguments whole; it runs the tool and sends
     `tool.result`, which ends the call (`tool.end`) and lets the model go on;
  5. with --calls N it exits after running N calls; it says `client.goodbye` before it exits.

Prints "ready" on stderr once it is welcomed and present, and one line per call it ran.
Exit codes: 0 done (or Ctrl-C), 2 usage, 3 no server. Over tcp both sockets authenticate with
ZeroMQ PLAIN (user "zcoord", the instance's secret from $ZCOORD_SECRET or the discovery file).
Requires pyzmq (pip install pyzmq).
"""

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

import zmq

TOOL = {
    "name": "reverse_text",
    "description": "Reverses a text, character by character. Runs in the user's editor.",
    "parameters": {
        "type": "object",
        "properties": {"text": {"type": "string", "description": "What to reverse"}},
        "required": ["text"],
    },
}
PING_EVERY = 5.0  # seconds; the server drops a client silent for 15 s (its default)
TOOL_CLAIMED = -32015


def data_home() -> Path:
    if os.environ.get("XDG_DATA_HOME"):
        return Path(os.environ["XDG_DATA_HOME"]) / "zcoord"
    return Path.home() / ".local/share/zcoord"


def data_dir(arg: str | None) -> Path:
    """Where `zcoord serve` writes instance.json: the same lookup order as the zcoord CLI."""
    if arg:
        return Path(arg)
    if os.environ.get("ZCOORD_DATA_DIR"):
        return Path(os.environ["ZCOORD_DATA_DIR"])
    ws = os.path.realpath(os.environ.get("ZCOORD_WORKSPACE") or os.getcwd())
    base = os.path.basename(ws) or "root"
    name = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in base)[:16]
    h = 0xCBF29CE484222325  # FNV-1a, 64 bits, over the absolute path's UTF-8 bytes
    for b in ws.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return data_home() / "workspaces" / f"{name}-{h:016x}"


def authenticate(sock: zmq.Socket, endpoint: str, secret: str | None) -> None:
    """Over tcp: ZeroMQ PLAIN, user "zcoord", the instance's secret; over ipc nothing."""
    if endpoint.startswith("tcp://") and secret:
        sock.plain_username = b"zcoord"
        sock.plain_password = secret.encode()


class Rpc:
    """JSON-RPC over a DEALER: one call at a time, each under a timeout."""

    def __init__(self, ctx: zmq.Context, endpoint: str, secret: str | None, timeout_ms: int):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        authenticate(self.sock, endpoint, secret)
        self.sock.connect(endpoint)
        self.timeout_ms = timeout_ms

    def call(self, method: str, params: dict) -> tuple[dict | None, dict | None]:
        """(result, None) or (None, error); raises TimeoutError when nothing answers."""
        rid = str(uuid.uuid4())
        self.sock.send(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method,
                                   "params": params}).encode())
        deadline = time.monotonic() + self.timeout_ms / 1000
        while (left := deadline - time.monotonic()) > 0:
            if not self.sock.poll(int(left * 1000) + 1):
                break
            reply = json.loads(self.sock.recv_multipart()[-1])
            if reply.get("id") == rid:
                return reply.get("result"), reply.get("error")
        raise TimeoutError(f"{method}: no reply within {self.timeout_ms} ms")


def run_tool(params: str) -> tuple[str, bool]:
    """The tool itself: (result, is_error)."""
    try:
        args = json.loads(params or "{}")
        return args["text"][::-1], False
    except (ValueError, KeyError, TypeError) as e:
        return f"reverse_text: bad arguments ({e}); it takes {{\"text\": string}}", True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--rpc")
    ap.add_argument("--pub")
    ap.add_argument("--client-id", default=f"client-tool-{os.getpid()}")
    ap.add_argument("--calls", type=int, default=0, help="exit after running this many calls")
    ap.add_argument("--timeout-ms", type=int, default=3000)
    args = ap.parse_args()

    rpc_ep, pub_ep, secret = args.rpc, args.pub, os.environ.get("ZCOORD_SECRET")
    if not (rpc_ep and pub_ep):
        try:
            info = json.loads((data_dir(args.data_dir) / "instance.json").read_text())
        except OSError as e:
            print(f"no running server: {e}", file=sys.stderr)
            return 3
        rpc_ep, pub_ep = info["endpoints"]["rpc"], info["endpoints"]["pub"]
        secret = secret or info.get("secret")

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    authenticate(sub, pub_ep, secret)
    sub.connect(pub_ep)
    prefixes = ["tool.start/", "hitl.resolved/", "instance."]
    for p in prefixes:
        sub.setsockopt_string(zmq.SUBSCRIBE, p)
    waiting = set(prefixes)
    deadline = time.monotonic() + args.timeout_ms / 1000
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0 or not sub.poll(int(left * 1000) + 1):
            print("no instance.welcome: is the server running?", file=sys.stderr)
            return 3
        key, body = sub.recv_multipart()
        env = json.loads(body)
        if env["topic"] == "instance.welcome":
            waiting.discard(env["payload"]["subscription"])

    rpc = Rpc(ctx, rpc_ep, secret, args.timeout_ms)
    try:
        hello, err = rpc.call("client.hello", {
            "client_id": args.client_id, "name": "reverse_text example", "version": "1.0",
            "protocol_versions": [2], "tools": [TOOL]})
    except TimeoutError as e:
        print(e, file=sys.stderr)
        return 3
    if err:
        print(f"client.hello refused: {err}", file=sys.stderr)
        return 1
    print("ready", file=sys.stderr, flush=True)

    ran = 0
    last_sent = time.monotonic()
    # Calls that wait for a person's approval before they may be claimed: call_id -> turn_id.
    awaiting: dict[str, str] = {}
    try:
        while not args.calls or ran < args.calls:
            if time.monotonic() - last_sent >= PING_EVERY:
                rpc.call("instance.ping", {})
                last_sent = time.monotonic()
            if not sub.poll(500):
                continue
            _key, body = sub.recv_multipart()
            env = json.loads(body)
            topic, p = env["topic"], env["payload"]
            call = None
            if topic == "tool.start" and p.get("executor") == "client" \
                    and p["tool_name"] == TOOL["name"]:
                if p.get("awaiting_approval"):
                    awaiting[p["call_id"]] = p["turn_id"]
                else:
                    call = (p["call_id"], p["turn_id"])
            elif topic == "hitl.resolved" and p["payload"].get("call_id") in awaiting:
                turn = awaiting.pop(p["payload"]["call_id"])
                if p["status"] == "approved":
                    call = (p["payload"]["call_id"], turn)
            elif topic == "instance.shutdown":
                return 0
            if call is None:
                continue
            call_id, turn_id = call
            claim, err = rpc.call("tool.claim", {"call_id": call_id, "turn_id": turn_id})
            last_sent = time.monotonic()
            if err:
                # tool_claimed: another client runs it. Anything else: it ended meanwhile.
                why = "claimed by " + err["data"]["client_id"] if err["code"] == TOOL_CLAIMED \
                    else err["message"]
                print(f"{call_id}: not ours ({why})", file=sys.stderr)
                continue
            result, is_error = run_tool(claim["params"])
            _, err = rpc.call("tool.result", {"call_id": call_id, "turn_id": turn_id,
                                              "result": result, "is_error": is_error})
            ran += 1
            print(f"ran {TOOL['name']} {call_id}: {result!r}" + (f" (refused: {err})" if err else ""),
                  flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        try:
            rpc.call("client.goodbye", {})
        except TimeoutError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
