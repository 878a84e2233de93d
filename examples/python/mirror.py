#!/usr/bin/env python3
"""Keep a local replica of a zcoord primary: sessions, the active session, every session's messages.

    python3 mirror.py [--data-dir DIR | --rpc ENDPOINT --pub ENDPOINT] [--timeout-ms MS]
                      [--dump-after-idle SECONDS] [--live-timeout SECONDS]

The Clone pattern of proto-docs/PROTOCOL.md §8, as the `zcoord` package's Mirror does it:

  1. a SUB subscribed to "" (every topic: a gap in `seq` is only visible to a subscriber to
     everything), then to `instance.welcome/<token>`;
  2. wait for its own welcome (other clients' welcomes reach a "" subscriber too, and are
     ignored): every event numbered above its `last_seq` reaches the SUB from then on;
  3. `state.sync`: the sessions, the active session, and the `seq` S of the last event the
     snapshot reflects; then each session's whole history (`message.list`, page by page);
  4. apply the events in `seq` order, dropping those with seq <= S;
  5. repair a gap (seq > last + 1, or a welcome of ours above the replica's seq) with
     `events.replay {after_seq: last, instance_id}`; only if the server no longer holds those
     events (`replay_unavailable`) resynchronise (step 3 again, same SUB). An event of another
     instance (a restart or a failover: seq starts again at 1) always means a resync.

Prints one line per change on stdout (`session+ ID "title" n=COUNT STATUS`, `session~ …`,
`session- ID`, `message+ SESSION ROLE: TEXT`, `active ID`, `replay (reason): …`,
`resync (reason)`, `snapshot …`), and `live` on stderr once the replica is live. With
--dump-after-idle N it prints the replica as one JSON line `REPLICA {...}` after N seconds without
events (heartbeats and welcomes do not count) and exits 0. Exit codes: 0 replica dumped, 2 usage,
3 no server found (no discovery file, or no welcome within --live-timeout), 130 Ctrl-C. Without
--dump-after-idle it runs until Ctrl-C, across restarts.
Requires the package: pip install ./clients/python (see README.md).
"""

import argparse
import json
import sys
import time

import zcoord
from zcoord.mirror import QUIET_TOPICS


def say(change: zcoord.Change) -> None:
    """One change (or resync) per line on stdout, flushed so a pipe sees it at once."""
    print(change, flush=True)


def note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description="Mirror a zcoord primary's sessions and messages.")
    ap.add_argument("--workspace", help="workspace directory (default: found from the current one)")
    ap.add_argument("--data-dir", help="zcoord data directory (holds instance.json)")
    ap.add_argument("--rpc", help="ROUTER endpoint, e.g. tcp://127.0.0.1:5555 (skips discovery)")
    ap.add_argument("--pub", help="PUB endpoint, e.g. tcp://127.0.0.1:5556 (skips discovery)")
    ap.add_argument("--timeout-ms", type=int, default=3000, help="how long to wait for each reply")
    ap.add_argument("--dump-after-idle", type=float, metavar="SECONDS",
                    help="print the replica as a REPLICA JSON line after this long without events, and exit")
    ap.add_argument("--live-timeout", type=float, default=30.0, metavar="SECONDS",
                    help="exit 3 if the subscription is not welcomed within this time (default 30)")
    args = ap.parse_args()

    try:
        client = zcoord.Client.connect(rpc=args.rpc, pub=args.pub, data_dir=args.data_dir,
                                       workspace=args.workspace, timeout=args.timeout_ms / 1000)
    except zcoord.ConnectionFailed as e:
        note(f"error: {e} (is `zcoord serve` running?)")
        return 3
    mirror = zcoord.Mirror(client, say, live_timeout=args.live_timeout)
    try:
        mirror.start()
    except zcoord.NotLive as e:
        note(f"error: {e}")
        return 3
    note("live")

    last_activity = time.monotonic()
    while True:
        wait = 1.0
        if args.dump_after_idle is not None:
            idle_left = last_activity + args.dump_after_idle - time.monotonic()
            if idle_left <= 0:
                # Events lost at the very end of a burst show no gap until a later one comes:
                # ask events.replay before calling it done.
                if mirror.check_tail():
                    last_activity = time.monotonic()
                    continue
                print("REPLICA " + json.dumps(mirror.replica.dump(), sort_keys=True), flush=True)
                return 0
            wait = idle_left
        env = mirror.poll(wait)
        if env is not None and env["topic"] not in QUIET_TOPICS:
            last_activity = time.monotonic()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
