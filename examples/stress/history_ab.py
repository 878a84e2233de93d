#!/usr/bin/env python3
"""message.list and message.get latency, two builds side by side: the same history is put into
each server (SESSIONS sessions, TURNS echo turns each, so 2 x TURNS messages), then rounds of
sequential calls alternate between the two, so both see the same machine. Prints p50/p99 per
build and the ratio of medians, with instance.ping for scale.

    python3 examples/stress/history_ab.py --a OLD_BINARY --b NEW_BINARY [--rounds 6]
"""
import argparse, json, statistics, sys, tempfile, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import stress as S  # noqa: E402

SESSIONS, TURNS, CALLS = 40, 25, 300


def fill(s):
    rpc = S.Rpc(s)
    sids = [S.result(rpc.call("session.create", {"title": f"s{i}"}))["id"] for i in range(SESSIONS)]
    for t in range(TURNS):
        for sid in sids:
            S.result(rpc.call("message.send", {"session_id": sid, "content": f"turn {t} " + "w " * 60}))
        S.wait_idle(rpc, sids, 30)
    return rpc, sids


def timed(rpc, method, params):
    t = time.perf_counter()
    S.result(rpc.call(method, params))
    return (time.perf_counter() - t) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    servers, clients = {}, {}
    for name, binary in (("a", args.a), ("b", args.b)):
        d = Path(tempfile.mkdtemp(prefix=f"zcoord-ab-{name}-"))
        s = S.Server(binary, d / "data", d / "log", args=["--token-delay-ms", "0"])
        s.start()
        servers[name] = s
        clients[name] = fill(s)
    got = {n: {"list": [], "list20": [], "ping": []} for n in servers}
    for r in range(args.rounds):
        for name in (("a", "b") if r % 2 == 0 else ("b", "a")):
            rpc, sids = clients[name]
            for i in range(CALLS):
                sid = sids[(i * 7) % len(sids)]
                got[name]["list"].append(timed(rpc, "message.list", {"session_id": sid}))
                got[name]["list20"].append(timed(rpc, "message.list", {"session_id": sid, "limit": 20}))
                got[name]["ping"].append(timed(rpc, "instance.ping", {}))
    print(f"{SESSIONS} sessions x {2 * TURNS} messages; {args.rounds} rounds x {CALLS} calls each, alternating")
    print(f"{'call':<24}{'a p50':>9}{'a p99':>9}{'b p50':>9}{'b p99':>9}{'b/a p50':>9}")
    for k, label in (("list", "message.list (all 50)"), ("list20", "message.list limit 20"), ("ping", "instance.ping")):
        a, b = sorted(got["a"][k]), sorted(got["b"][k])
        p = lambda v, q: v[min(len(v) - 1, int(q * len(v)))]
        print(f"{label:<24}{p(a, .5):>9.3f}{p(a, .99):>9.3f}{p(b, .5):>9.3f}{p(b, .99):>9.3f}{p(b, .5) / p(a, .5):>9.2f}")
    for s in servers.values():
        s.stop()


if __name__ == "__main__":
    main()
