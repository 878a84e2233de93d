#!/usr/bin/env python3
"""Call one zcoord JSON-RPC method over a DEALER socket and print the result.

    python3 call.py [--data-dir DIR | --rpc ENDPOINT] [--timeout-ms MS] METHOD [JSON_PARAMS]

Over tcp it authenticates with ZeroMQ PLAIN (user "zcoord", the secret from $ZCOORD_SECRET or
the discovery file); see authenticate().

Exit codes (as the zcoord CLI): 0 result printed, 1 error reply (printed on stderr),
2 usage, 3 no reply within the timeout or no server found. Never hangs.
Requires pyzmq (pip install pyzmq). See proto-docs/PROTOCOL.md for the wire format.
"""

import argparse
import json
import os
import sys
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


def main() -> int:
    ap = argparse.ArgumentParser(description="Call one zcoord JSON-RPC method.")
    ap.add_argument("method", help="e.g. instance.ping, session.list, message.send")
    ap.add_argument("params", nargs="?", default="{}", help="params as a JSON object")
    ap.add_argument("--workspace", help="workspace directory (default: the current directory)")
    ap.add_argument("--data-dir", help="zcoord data directory (holds instance.json)")
    ap.add_argument("--rpc", help="ROUTER endpoint, e.g. tcp://127.0.0.1:5555 (skips discovery)")
    ap.add_argument("--timeout-ms", type=int, default=3000, help="how long to wait for the reply")
    args = ap.parse_args()

    try:
        params = json.loads(args.params)
    except ValueError as e:
        print(f"error: params are not valid JSON: {e}", file=sys.stderr)
        return 2

    path = data_dir(args.data_dir, args.workspace) / "instance.json"
    discovery = read_discovery(path)
    endpoint = args.rpc
    if not endpoint:
        try:
            endpoint = discovery["endpoints"]["rpc"]
        except (KeyError, TypeError):
            print(
                f"error: no endpoints in {path} (is `zcoord serve` running?)",
                file=sys.stderr,
            )
            return 3
    secret = secret_for(discovery, [endpoint])

    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)  # never block on exit with an unsent request
    authenticate(sock, endpoint, secret)  # tcp only: PLAIN, before connect
    sock.connect(endpoint)

    # One JSON frame, no empty delimiter: a DEALER may send either, the reply mirrors it.
    # The id is echoed back unchanged; a fresh socket per call means the reply is ours.
    request = {"jsonrpc": "2.0", "id": str(uuid.uuid4()), "method": args.method, "params": params}
    sock.send(json.dumps(request).encode())

    # connect() succeeds even with no server listening, so a timeout is how "unreachable"
    # shows up. Poll instead of a blocking recv so this never hangs.
    if not sock.poll(args.timeout_ms, zmq.POLLIN):
        print(
            f"error: no reply within {args.timeout_ms} ms (is the server running?)", file=sys.stderr
        )
        return 3
    reply = json.loads(sock.recv_multipart()[-1])  # the last (only) frame is the JSON body

    if "error" in reply:
        print(f"error: {json.dumps(reply['error'])}", file=sys.stderr)
        return 1
    print(json.dumps(reply["result"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
