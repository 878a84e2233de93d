#!/usr/bin/env python3
"""Talk to a `zcoord serve --curve` (or `--allow-remote`) server: ZeroMQ CURVE, encrypted.

    python3 curve.py keygen KEYFILE
        Makes a client key pair in KEYFILE (mode 0600) and prints its public key: append that
        line to the server's authorized_keys (<data-dir>/authorized_keys by default).

    python3 curve.py --key KEYFILE [--data-dir DIR | --rpc EP --pub EP --server-key Z85]
                     [--timeout-ms MS]
        Calls instance.ping over a DEALER and waits for one event on a SUB, both over CURVE;
        prints "reply: <status>" and "event: <topic>".

The server's public key comes from the discovery file ("curve_public_key") unless --server-key
gives it. A client whose key is not authorised, or that has the wrong server key, gets no answer
and no event at all: exit 3 after the timeout. Exit codes: 0 reply and event, 1 only one of
them, 2 usage, 3 neither within the timeout. Requires pyzmq, whose wheels have CURVE (zmq.has("curve")).
"""

import argparse
import json
import os
import sys
from pathlib import Path

import zmq

from zcoord.discovery import data_dir_for as data_dir


def read_discovery(path: Path) -> dict:
    """The discovery file's JSON, or {} when there is none (endpoints given on the command line)."""
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def keygen(path: Path) -> int:
    public, secret = zmq.curve_keypair()  # Z85 bytes, 40 characters each
    # 0600 from the start: the secret key is this client's identity.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f'public-key = "{public.decode()}"\nsecret-key = "{secret.decode()}"\n')
    print(public.decode())
    return 0


def read_key_file(path: Path) -> tuple[bytes, bytes]:
    """(public, secret) from a file keygen wrote: `name = "Z85"` lines."""
    keys = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep:
            keys[name.strip()] = value.strip().strip('"').encode()
    return keys["public-key"], keys["secret-key"]


def curve_client(kind: int, server_key: bytes, public: bytes, secret: bytes) -> zmq.Socket:
    """The three CURVE options, set before connect(): the server's public key (whom we expect),
    and our own pair (who we are; the server checks the public half against its
    authorized_keys)."""
    sock = zmq.Context.instance().socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.curve_serverkey = server_key
    sock.curve_publickey = public
    sock.curve_secretkey = secret
    return sock


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "keygen":
        return keygen(Path(sys.argv[2]))
    ap = argparse.ArgumentParser(description="instance.ping and one event over CURVE.")
    ap.add_argument("--key", required=True, help="client key file (from `curve.py keygen`)")
    ap.add_argument("--data-dir", help="zcoord data directory (holds instance.json)")
    ap.add_argument("--rpc", help="ROUTER endpoint (default: the discovery file's)")
    ap.add_argument("--pub", help="PUB endpoint (default: the discovery file's)")
    ap.add_argument("--server-key", help="the server's public key, Z85 (default: discovery)")
    ap.add_argument("--timeout-ms", type=int, default=3000)
    args = ap.parse_args()

    discovery = read_discovery(data_dir(args.data_dir) / "instance.json")
    endpoints = discovery.get("endpoints") or {}
    rpc, pub = args.rpc or endpoints.get("rpc"), args.pub or endpoints.get("pub")
    server_key = args.server_key or discovery.get("curve_public_key")
    if not (rpc and pub and server_key):
        print("error: need the endpoints and the server's CURVE key", file=sys.stderr)
        return 2
    public, secret = read_key_file(Path(args.key))

    sub = curve_client(zmq.SUB, server_key.encode(), public, secret)
    sub.setsockopt(zmq.SUBSCRIBE, b"")  # everything: the welcome, then heartbeats
    sub.connect(pub)
    dealer = curve_client(zmq.DEALER, server_key.encode(), public, secret)
    dealer.connect(rpc)
    dealer.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "instance.ping"}).encode())

    # A refused CURVE handshake is silent on the client's side: the timeout is the answer.
    got = 0
    if dealer.poll(args.timeout_ms, zmq.POLLIN):
        reply = json.loads(dealer.recv_multipart()[-1])
        print(f"reply: {reply.get('result', {}).get('status')}")
        got += 1
    else:
        print(f"no reply within {args.timeout_ms} ms", file=sys.stderr)
    if sub.poll(args.timeout_ms, zmq.POLLIN):
        envelope = json.loads(sub.recv_multipart()[-1])  # frame 1 is the topic, 2 the JSON
        print(f"event: {envelope.get('topic')}")
        got += 1
    else:
        print(f"no event within {args.timeout_ms} ms", file=sys.stderr)
    # 1: a reply without events or the reverse, which a server never does on purpose.
    return {2: 0, 0: 3}.get(got, 1)

if __name__ == "__main__":
    sys.exit(main())
