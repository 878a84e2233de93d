#!/usr/bin/env python3
"""A zcoord client that offers the model one tool it runs itself: `reverse_text`.

    python3 client_tool.py [--data-dir DIR | --rpc ENDPOINT --pub ENDPOINT] [--client-id ID]
                           [--calls N] [--timeout-ms MS]

What an editor plugin does to offer a tool only it can run (proto-docs/PROTOCOL.md §5 "Clients as
peers", §7.7), with the `zcoord` package's ToolHost:

  1. it subscribes to `tool.start`, `hitl.resolved` and `instance.` and waits for its welcome,
     so no call made after start-up is missed;
  2. `client.hello` with its stable client_id and the tool (a JSON Schema for its arguments);
     it stays present by pinging when it has sent nothing for 5 s;
  3. on a `tool.start` with `executor: "client"` for its tool it claims the call (`tool.claim`),
     after a person's approval when `awaiting_approval` (the matching `hitl.resolved` says
     `approved`); losing the claim (`tool_claimed`) means another client runs it;
  4. it runs the tool on the claim's arguments and sends `tool.result`;
  5. with --calls N it exits after running N calls; it says `client.goodbye` before it exits.

Prints "ready" on stderr once it is welcomed and present, and one line per call it ran.
Exit codes: 0 done (or Ctrl-C), 1 hello refused, 2 usage, 3 no server.
Requires the package: pip install ./clients/python (see README.md).
"""

import argparse
import os
import sys

import zcoord

TOOL: zcoord.protocol.ClientTool = {
    "name": "reverse_text",
    "description": "Reverses a text, character by character. Runs in the user's editor.",
    "parameters": {
        "type": "object",
        "properties": {"text": {"type": "string", "description": "What to reverse"}},
        "required": ["text"],
    },
}


def reverse_text(args: dict) -> "str | tuple[str, bool]":
    text = args.get("text")
    if not isinstance(text, str):
        return 'reverse_text: bad arguments; it takes {"text": string}', True
    return text[::-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--rpc")
    ap.add_argument("--pub")
    ap.add_argument("--client-id", default=f"client-tool-{os.getpid()}")
    ap.add_argument("--calls", type=int, default=0, help="exit after running this many calls")
    ap.add_argument("--timeout-ms", type=int, default=3000)
    args = ap.parse_args()

    try:
        client = zcoord.Client.connect(
            rpc=args.rpc, pub=args.pub, data_dir=args.data_dir, timeout=args.timeout_ms / 1000
        )
    except zcoord.ConnectionFailed as e:
        print(f"no running server: {e}", file=sys.stderr)
        return 3
    host = zcoord.ToolHost(client, client_id=args.client_id, name="reverse_text example",
                           version="1.0")
    host.tool(TOOL)(reverse_text)
    try:
        host.start(timeout=args.timeout_ms / 1000)
    except (zcoord.NotLive, zcoord.Timeout) as e:
        print(f"{e}", file=sys.stderr)
        return 3
    except zcoord.RpcError as e:
        print(f"client.hello refused: {e}", file=sys.stderr)
        return 1
    print("ready", file=sys.stderr, flush=True)

    ran = 0
    try:
        while not args.calls or ran < args.calls:
            outcome = host.serve(timeout=1.0)
            if outcome is None:
                continue
            call = outcome.call
            if outcome.lost:
                print(f"{call.call_id}: not ours ({outcome.lost})", file=sys.stderr)
                continue
            ran += 1
            refused = f" (refused: {outcome.refused})" if outcome.refused else ""
            print(f"ran {call.tool_name} {call.call_id}: {outcome.result!r}{refused}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        host.close()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
