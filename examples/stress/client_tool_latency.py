#!/usr/bin/env python3
"""What a client-run tool call costs beside a built-in one, measured side by side in one run.

    python3 examples/stress/client_tool_latency.py --bin target/release/zcoord [--rounds 300]

Starts `zcoord serve` (echo model, no token delay, memory store) on ipc in a temp dir, then
alternates two kinds of turn:

  server: the echo model calls the built-in `word_count`;
  client: the echo model calls `reverse_text`, a tool this script declared in `client.hello`.
          On its `tool.start` the script claims the call (`tool.claim`) and answers
          (`tool.result`) at once, as a fast editor plugin would.

For each call it takes the time from `tool.start` to `tool.end` as a subscriber sees them, and
`instance.ping` round trips for scale. Prints p50/p90 in microseconds and the client/server ratio.
Requires pyzmq.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import zmq

TOOL = {"name": "reverse_text", "description": "Reverses a text",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--rounds", type=int, default=300)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="zc-ctl.")
    server = subprocess.Popen(
        [args.bin, "--data-dir", tmp, "serve", "--store", "memory", "--token-delay-ms", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        disc = os.path.join(tmp, "instance.json")
        for _ in range(100):
            if os.path.exists(disc):
                break
            time.sleep(0.05)
        info = json.load(open(disc))
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.connect(info["endpoints"]["pub"])
        for p in ("tool.start/", "tool.end/", "llm.end/"):
            sub.setsockopt_string(zmq.SUBSCRIBE, p)
        # Asked last, the welcome says the three above are live (PROTOCOL §8).
        welcome = "instance.welcome/" + uuid.uuid4().hex
        sub.setsockopt_string(zmq.SUBSCRIBE, welcome)
        rpc = ctx.socket(zmq.DEALER)
        rpc.connect(info["endpoints"]["rpc"])

        def call(method, params):
            rid = str(uuid.uuid4())
            rpc.send(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method,
                                 "params": params}).encode())
            while True:
                if not rpc.poll(5000):
                    raise TimeoutError(method)
                reply = json.loads(rpc.recv())
                if reply.get("id") == rid:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]

        # The subscriptions are live once the welcome comes.
        deadline = time.monotonic() + 5
        live = False
        while not live and time.monotonic() < deadline:
            if sub.poll(200):
                live = sub.recv_multipart()[0] == welcome.encode()
        if not live:
            raise TimeoutError("no instance.welcome within 5 s")
        call("client.hello", {"client_id": "bench", "name": "bench", "protocol_versions": [2],
                              "tools": [TOOL]})
        session = call("session.create", {})["id"]
        times = {"server": [], "client": []}
        pings = []
        for i in range(args.rounds * 2):
            kind = "server" if i % 2 == 0 else "client"
            line = ('/tool word_count {"text": "a b c"}' if kind == "server"
                    else '/tool reverse_text {"text": "abc"}')
            t = time.perf_counter()
            call("instance.ping", {})
            pings.append(time.perf_counter() - t)
            call("message.send", {"session_id": session, "content": f"go\n{line}"})
            started = None
            while True:
                if not sub.poll(5000):
                    raise TimeoutError("no event")
                _k, body = sub.recv_multipart()
                now = time.perf_counter()
                env = json.loads(body)
                topic, p = env["topic"], env["payload"]
                if topic == "tool.start":
                    started = now
                    if p.get("executor") == "client":
                        claim = call("tool.claim", {"call_id": p["call_id"],
                                                    "turn_id": p["turn_id"]})
                        text = json.loads(claim["params"])["text"]
                        call("tool.result", {"call_id": p["call_id"], "turn_id": p["turn_id"],
                                             "result": text[::-1]})
                elif topic == "tool.end" and started is not None:
                    times[kind].append(now - started)
                elif topic == "llm.end":
                    break
        call("client.goodbye", {})
        us = lambda x: round(x * 1e6)
        out = {k: {"p50_us": us(statistics.median(v)), "p90_us": us(pct(v, 0.9)), "n": len(v)}
               for k, v in times.items()}
        out["ping"] = {"p50_us": us(statistics.median(pings)), "p90_us": us(pct(pings, 0.9)),
                       "n": len(pings)}
        out["client_over_server_p50"] = round(out["client"]["p50_us"] / out["server"]["p50_us"], 2)
        print(json.dumps(out, indent=1))
        return 0
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
