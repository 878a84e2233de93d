#!/usr/bin/env python3
"""Call one zcoord JSON-RPC method and print the result, with the `zcoord` package.

    python3 call.py [--workspace W | --data-dir DIR | --rpc ENDPOINT] [--timeout-ms MS] METHOD [JSON_PARAMS]

The package finds the server as the zcoord CLI does (PROTOCOL §1): --data-dir, else
$ZCOORD_DATA_DIR, else the workspace's data directory (--workspace, else $ZCOORD_WORKSPACE, else
the nearest ancestor of the current directory with a running server). Over tcp it presents
ZeroMQ PLAIN with the secret from $ZCOORD_SECRET or the discovery file.

Exit codes (as the zcoord CLI): 0 result printed, 1 error reply (printed on stderr),
2 usage, 3 no reply within the timeout or no server found. Never hangs.
Requires the package: pip install ./clients/python (see README.md).
"""

import argparse
import json
import sys

import zcoord


def main() -> int:
    ap = argparse.ArgumentParser(description="Call one zcoord JSON-RPC method.")
    ap.add_argument("method", help="e.g. instance.ping, session.list, message.send")
    ap.add_argument("params", nargs="?", default="{}", help="params as a JSON object")
    ap.add_argument("--workspace", help="workspace directory (default: found from the current one)")
    ap.add_argument("--data-dir", help="zcoord data directory (holds instance.json)")
    ap.add_argument("--rpc", help="ROUTER endpoint, e.g. tcp://127.0.0.1:5555 (skips discovery)")
    ap.add_argument("--timeout-ms", type=int, default=3000, help="how long to wait for the reply")
    args = ap.parse_args()

    try:
        params = json.loads(args.params)
    except ValueError as e:
        print(f"error: params are not valid JSON: {e}", file=sys.stderr)
        return 2

    try:
        client = zcoord.Client.connect(
            rpc=args.rpc, data_dir=args.data_dir, workspace=args.workspace,
            timeout=args.timeout_ms / 1000,
        )
    except zcoord.ConnectionFailed as e:
        print(f"error: {e} (is `zcoord serve` running?)", file=sys.stderr)
        return 3
    with client:
        try:
            result = client.call(args.method, params)
        except zcoord.RpcError as e:
            error = {"code": e.code, "message": e.message, **({"data": e.data} if e.data else {})}
            print(f"error: {json.dumps(error)}", file=sys.stderr)
            return 1
        except zcoord.Timeout:
            print(f"error: no reply within {args.timeout_ms} ms (is the server running?)",
                  file=sys.stderr)
            return 3
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
