#!/usr/bin/env python3
"""Release-mode stress command: the memory and fault table of issue 12, one scenario per row.

    python3 examples/stress/stress.py --bin target/release/zcoord [--seconds 60] [--recover 30]
                                      [--only 1,5,9] [--json out.json] [--strict]

Each row runs against a fresh `zcoord serve` (own temporary --data-dir, ipc endpoints unless the
row needs tcp), applies its load for --seconds, stops the load and watches --recover seconds.
The server's RSS (/proc/PID/status VmRSS) and CPU (/proc/PID/stat) are sampled every 250 ms.

Aims (issue 12): RSS never above 512 MiB; back under 2x the starting RSS within the recovery
window; the server alive at the end; plus each row's own "what must hold". Row 10 of the issue
("memory never goes back") is the `back<2x` column of every other row.

Needs Python 3.11 and pyzmq only. Rows 2, 3 and 12 mount a small tmpfs (root only; skipped
otherwise). Exit code 0 always, unless --strict (then 1 if any row fails).
Every loop is bounded in count and time, every receive has a timeout, all traffic is local.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import zmq

MiB = 1024 * 1024
RSS_LIMIT_MIB = 512
CONTENT_MAX = 262144
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")

CTX = zmq.Context.instance()
CTX.set(zmq.MAX_SOCKETS, 8192)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mib(kib: float | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def own_rss_mib() -> float:
    return proc_rss_kib(os.getpid()) / 1024


def proc_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_cpu_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15 of stat)


# --------------------------------------------------------------------------------------------
# The server under test


class Server:
    """One `zcoord serve` child; stderr goes to a file per scenario."""

    def __init__(self, binary: str, data_dir: Path, log_path: Path, args=(), nofile=None,
                 env=None, tcp=False):
        self.binary, self.data_dir, self.log_path = binary, data_dir, log_path
        self.args, self.nofile, self.env, self.tcp = list(args), nofile, env, tcp
        self.proc: subprocess.Popen | None = None
        self.rpc = self.pub = self.secret = None
        self.instance_id = None

    def start(self, timeout=15.0) -> float:
        """Starts the server and waits for its discovery file; returns the seconds it took."""
        cmd = [self.binary, "serve", "--data-dir", str(self.data_dir)]
        if self.tcp:
            cmd += ["--rpc", "tcp://127.0.0.1:0", "--pub", "tcp://127.0.0.1:0"]
        cmd += self.args
        nofile = self.nofile

        def pre():
            os.setsid()
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        env = dict(os.environ)
        env.pop("ZCOORD_SECRET", None)
        env.update(self.env or {})
        t0 = time.monotonic()
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.logf,
                                     preexec_fn=pre, env=env)
        disc = self.data_dir / "instance.json"
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited at start-up: {self.proc.returncode}; "
                                   f"log: {self.log_tail(600)}")
            try:
                d = json.loads(disc.read_text())
                if d.get("pid") == self.proc.pid:
                    self.rpc, self.pub = d["endpoints"]["rpc"], d["endpoints"]["pub"]
                    self.secret, self.instance_id = d.get("secret"), d.get("instance_id")
                    return time.monotonic() - t0
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.02)
        raise RuntimeError("server wrote no discovery file in time")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_status(self):
        """None while running, else e.g. 'exit 0' or 'signal SIGABRT'."""
        if self.proc is None or self.proc.poll() is None:
            return None
        rc = self.proc.returncode
        return f"exit {rc}" if rc >= 0 else f"signal {signal.Signals(-rc).name}"

    def stop(self, grace=5.0) -> str | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.logf.close()
                return "killed (SIGKILL after SIGTERM timed out)"
        self.logf.close()
        return self.exit_status()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=400) -> str:
        return self.log_text()[-n:]

    def socket(self, kind, endpoint=None, **opts) -> zmq.Socket:
        s = CTX.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        ep = endpoint or (self.pub if kind in (zmq.SUB, zmq.XSUB) else self.rpc)
        if ep.startswith("tcp://") and self.secret:
            s.plain_username = b"zcoord"
            s.plain_password = self.secret.encode()
        for k, v in opts.items():
            s.setsockopt(getattr(zmq, k.upper()), v)
        s.connect(ep)
        return s


class Sampler(threading.Thread):
    """RSS (KiB) and CPU ticks of one pid every 250 ms, with phase marks."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.t0 = pid, time.monotonic()
        self.samples: list[tuple[float, int, int]] = []  # (t, rss KiB, cpu ticks)
        self.halt = threading.Event()
        self.start()

    def run(self):
        while not self.halt.is_set():
            rss, cpu = proc_rss_kib(self.pid), proc_cpu_ticks(self.pid)
            if rss is None or cpu is None:
                return
            self.samples.append((time.monotonic() - self.t0, rss, cpu))
            self.halt.wait(0.25)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def last_rss(self):
        return self.samples[-1][1] if self.samples else None

    def window(self, a: float, b: float):
        return [s for s in self.samples if a <= s[0] <= b]

    def peak(self, a=0.0, b=1e18):
        w = self.window(a, b)
        return max((s[1] for s in w), default=None)

    def cpu_percent(self, a: float, b: float):
        w = self.window(a, b)
        if len(w) < 2 or w[-1][0] - w[0][0] <= 0:
            return None
        return round(100.0 * (w[-1][2] - w[0][2]) / TICKS / (w[-1][0] - w[0][0]), 1)

    def stop(self):
        self.halt.set()
        self.join(2)


class Rpc:
    """A DEALER with id matching; call() never blocks longer than its timeout."""

    def __init__(self, server: Server, **opts):
        self.sock = server.socket(zmq.DEALER, **opts)
        self.next_id = 0
        self.early: dict = {}

    def send(self, method, params=None) -> int:
        self.next_id += 1
        req = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}}
        self.sock.send(json.dumps(req).encode(), zmq.NOBLOCK)
        return self.next_id

    def wait(self, rid: int, timeout: float):
        """The reply with this id (a dict), or None on timeout."""
        if rid in self.early:
            return self.early.pop(rid)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000) + 1, zmq.POLLIN):
                return None
            try:
                rep = json.loads(self.sock.recv_multipart(zmq.NOBLOCK)[-1])
            except zmq.Again:
                continue
            if isinstance(rep, dict) and rep.get("id") == rid:
                return rep
            if isinstance(rep, dict) and isinstance(rep.get("id"), int):
                if len(self.early) < 10000:
                    self.early[rep["id"]] = rep

    def call(self, method, params=None, timeout=5.0):
        try:
            rid = self.send(method, params)
        except zmq.Again:
            return None
        return self.wait(rid, timeout)

    def close(self):
        self.sock.close(0)


def result(rep):
    return rep.get("result") if isinstance(rep, dict) else None


def err_kind(rep):
    if not isinstance(rep, dict) or "error" not in rep:
        return None
    e = rep["error"]
    return (e.get("data") or {}).get("kind") or str(e.get("code"))


def ping_ms(server: Server, timeout=1.0):
    """Latency of instance.ping on a fresh DEALER, in ms; None when no reply in time."""
    r = Rpc(server)
    t0 = time.monotonic()
    rep = r.call("instance.ping", timeout=timeout)
    r.close()
    return round((time.monotonic() - t0) * 1000, 1) if result(rep) else None


def stalled_sub(server: Server, prefix=b"") -> zmq.Socket:
    """A SUB that subscribes and never reads (RCVHWM 100)."""
    s = server.socket(zmq.SUB, rcvhwm=100)
    s.setsockopt(zmq.SUBSCRIBE, prefix)
    return s


def wait_welcome(sub: zmq.Socket, timeout: float):
    """Asks for a welcome after the subscriptions `sub` has made (PROTOCOL §8, protocol version
    2: a subscription to instance.welcome/<token>); seconds until it arrives, or None."""
    key = b"instance.welcome/" + os.urandom(16).hex().encode()
    sub.setsockopt(zmq.SUBSCRIBE, key)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not sub.poll(100, zmq.POLLIN):
            continue
        if sub.recv_multipart()[0] == key:
            return time.monotonic() - t0
    return None


def pipelined(rpc: Rpc, make_req, count: int, seconds: float, window=32, timeout=5.0):
    """Sends up to `count` requests (make_req(i) -> (method, params)) within `seconds`, at most
    `window` outstanding; returns the replies' results/errors in a summary dict."""
    t_end = time.monotonic() + seconds
    sent = ok = errors = 0
    kinds: dict[str, int] = {}
    outstanding: dict[int, float] = {}
    results = []
    while time.monotonic() < t_end and (sent < count or outstanding):
        while sent < count and len(outstanding) < window and time.monotonic() < t_end:
            m, p = make_req(sent)
            try:
                outstanding[rpc.send(m, p)] = time.monotonic()
            except zmq.Again:
                break
            sent += 1
        if rpc.sock.poll(100, zmq.POLLIN):
            rep = json.loads(rpc.sock.recv_multipart()[-1])
            outstanding.pop(rep.get("id"), None)
            if "error" in rep:
                errors += 1
                k = err_kind(rep)
                kinds[k] = kinds.get(k, 0) + 1
            else:
                ok += 1
                results.append(rep["result"])
        now = time.monotonic()
        for rid in [r for r, t in outstanding.items() if now - t > timeout]:
            del outstanding[rid]
    return {"sent": sent, "ok": ok, "errors": errors, "error_kinds": kinds,
            "unanswered": sent - ok - errors, "results": results}


def wait_idle(rpc: Rpc, sids, timeout: float) -> int:
    """Polls session.get until every session is idle or timeout; returns how many still run."""
    pending = set(sids)
    t_end = time.monotonic() + timeout
    while pending and time.monotonic() < t_end:
        for sid in list(pending):
            st = result(rpc.call("session.get", {"session_id": sid}, timeout=2))
            if st and st.get("status") == "idle":
                pending.discard(sid)
        if pending:
            time.sleep(0.05)
    return len(pending)


# --------------------------------------------------------------------------------------------
# Faults


class Tmpfs:
    """A small tmpfs at `path` (root only) and a filler file that takes its free space."""

    def __init__(self, path: Path, size_mib=32):
        self.path, self.size, self.mounted = path, size_mib, False
        self.filler = None

    def mount(self) -> str | None:
        self.path.mkdir(parents=True, exist_ok=True)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}m,mode=0700", "tmpfs",
                            str(self.path)], capture_output=True, text=True)
        if p.returncode != 0:
            return (p.stderr or p.stdout).strip() or f"mount exited {p.returncode}"
        self.mounted = True
        return None

    def fill(self) -> int:
        """Appends to the filler until the disk is full; returns the bytes added."""
        added = 0
        if self.filler is None:
            self.filler = open(self.path / "filler", "ab", buffering=0)
        chunk = b"\0" * (256 * 1024)
        for _ in range(100000):
            try:
                added += self.filler.write(chunk)
            except OSError:
                break
        small = b"\0" * 512
        for _ in range(10000):
            try:
                added += self.filler.write(small)
            except OSError:
                break
        return added

    def free(self):
        if self.filler is not None:
            self.filler.close()
            self.filler = None
        try:
            (self.path / "filler").unlink()
        except OSError:
            pass

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def umount(self):
        self.free()
        if self.mounted:
            for _ in range(10):
                if subprocess.run(["umount", str(self.path)], capture_output=True).returncode == 0:
                    self.mounted = False
                    return
                time.sleep(0.5)
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
            self.mounted = False


class HeartbeatCounter(threading.Thread):
    """Counts instance.heartbeat events (their arrival times) on a SUB of its own."""

    def __init__(self, server: Server):
        super().__init__(daemon=True)
        self.sock = server.socket(zmq.SUB, rcvhwm=100000)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"instance.heartbeat")
        self.times: list[float] = []
        self.halt = threading.Event()
        self.start()

    def run(self):
        while not self.halt.is_set():
            if self.sock.poll(200, zmq.POLLIN):
                frames = self.sock.recv_multipart()
                if frames[0] == b"instance.heartbeat":
                    self.times.append(time.monotonic())

    def count(self, a: float, b: float) -> int:
        return sum(1 for t in self.times if a <= t <= b)

    def stop(self):
        self.halt.set()
        self.join(2)
        self.sock.close(0)


# --------------------------------------------------------------------------------------------
# Scenarios. Each gets a Ctx and fills ctx.facts / ctx.checks. The runner does start/stop, RSS.


class Ctx:
    def __init__(self, args, row: int, workdir: Path):
        self.args, self.row, self.workdir = args, row, workdir
        self.facts: dict = {}
        self.checks: dict[str, bool] = {}
        self.server: Server | None = None
        self.sampler: Sampler | None = None
        self.extra_servers: list[Server] = []
        self.t_load = self.t_load_end = None
        self.skip: str | None = None
        self.tmpfs: Tmpfs | None = None
        self.start_rss = None
        self.recover_done = False  # a scenario that watches recovery itself sets this
        self.pre_restart: dict | None = None  # the first server's state, when a row restarts it

    def serve(self, args=(), nofile=None, env=None, tcp=False, data_dir=None) -> Server:
        d = data_dir or (self.workdir / "data")
        s = Server(self.args.bin, d, self.workdir / f"server{len(self.extra_servers)}.log",
                   args, nofile, env, tcp)
        s.start()
        self.extra_servers.append(s)
        if self.server is None:
            self.server = s
            self.sampler = Sampler(s.pid)
        return s

    def restart(self, args=(), **kw) -> tuple[Server, float]:
        """Stops the current server, starts another on the same data dir (its own sampler)."""
        self.pre_restart = {"alive": self.server.alive(),
                            "ping": ping_ms(self.server, 2.0) if self.server.alive() else None,
                            "status": self.server.exit_status()}
        self.facts["exit_before_restart"] = self.server.stop()
        self.sampler.stop()
        s = Server(self.args.bin, self.server.data_dir,
                   self.workdir / f"server{len(self.extra_servers)}.log", args, **kw)
        took = s.start()
        self.extra_servers.append(s)
        return s, took

    def begin_load(self):
        time.sleep(0.5)
        self.start_rss = self.sampler.last_rss()
        self.t_load = self.sampler.now()
        log(f"  row {self.row}: load starts, server RSS {mib(self.start_rss)} MiB")

    def end_load(self):
        self.t_load_end = self.sampler.now()
        log(f"  row {self.row}: load stops, server RSS {mib(self.sampler.last_rss())} MiB"
            f", peak {mib(self.sampler.peak())} MiB")

    def loading(self, t_end: float, server: Server) -> bool:
        """Whether the load goes on: time left, server alive, RSS under the safety cap."""
        if self.sampler is not None and (self.sampler.last_rss() or 0) > self.args.rss_cap * 1024:
            if "load_stopped_at_cap_mib" not in self.facts:
                self.facts["load_stopped_at_cap_mib"] = mib(self.sampler.last_rss())
                self.facts["load_stopped_at_cap_after_s"] = round(
                    self.sampler.now() - (self.t_load or 0), 1)
                log(f"  row {self.row}: RSS over the --rss-cap: load stopped early")
            return False
        return time.monotonic() < t_end and server.alive()

    def watch_recovery(self, seconds=None):
        """Watches the RSS for the recovery window; stops early once under 2x start."""
        seconds = self.args.recover if seconds is None else seconds
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end and self.server.alive():
            time.sleep(0.25)
        self.recover_done = True
        # What the server keeps by design once the load is gone: the replay ring (events kept
        # for events.replay, up to --replay-bytes), so an end above twice the start can be told
        # apart from memory not given back.
        if self.server.alive():
            try:
                rpc = Rpc(self.server)
                info = rpc.call("instance.info", {}, timeout=5.0).get("result") or {}
                rpc.close()
                self.facts["replay_ring_mib_at_end"] = round(
                    info.get("replay", {}).get("bytes", 0) / MiB, 1)
            except Exception:  # noqa: BLE001 - a fact, not a check
                pass


def row1(c: Ctx):
    """1,100 DEALERs over ipc, server limited to 1,024 descriptors."""
    s = c.serve(nofile=1024)
    c.begin_load()
    n, socks, t_end = 1100, [], time.monotonic() + c.args.seconds
    connected = answered = 0
    for i in range(n):
        d = s.socket(zmq.DEALER)
        socks.append(d)
        d.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": "instance.ping"}).encode())
        if not s.alive():
            break
        if i % 100 == 99:
            time.sleep(0.05)
    connected = len(socks)
    # Collect the pings' replies (bounded).
    poller = zmq.Poller()
    for d in socks:
        poller.register(d, zmq.POLLIN)
    got = set()
    t_poll = time.monotonic() + min(10.0, c.args.seconds)
    while time.monotonic() < t_poll and len(got) < connected and s.alive():
        for d, _ in poller.poll(200):
            d.recv_multipart()
            got.add(id(d))
            poller.unregister(d)
    answered = len(got)
    pings, pings_ok = 0, 0
    while c.loading(t_end, s):
        pings += 1
        pings_ok += ping_ms(s) is not None
        time.sleep(0.5)
    c.end_load()
    for d in socks:
        d.close(0)
    c.facts.update(dealers_opened=connected, dealers_answered=answered,
                   fresh_pings=pings, fresh_pings_answered=pings_ok)
    c.watch_recovery()
    c.facts["fresh_ping_after_close_ms"] = ping_ms(s, 2.0) if s.alive() else None
    abort = [l for l in s.log_text().splitlines() if "Too many open files" in l or "Assertion" in l]
    c.facts["log_fd_lines"] = abort[-2:]
    # With a connection limit, the server is full while the 1,100 are connected: a client over
    # the limit waits (libzmq retries) until a place is free. The ones let in must be answered.
    c.checks["the clients let in are answered while 1,100 connect"] = answered > 0
    c.checks["fresh client answered after"] = c.facts["fresh_ping_after_close_ms"] is not None


def disk_full_setup(c: Ctx) -> bool:
    c.tmpfs = Tmpfs(c.workdir / "tmpfs")
    why = c.tmpfs.mount()
    if why:
        c.skip = f"skipped: needs root for tmpfs ({why})"
        return False
    return True


def row2(c: Ctx):
    """The data directory's disk fills while clients send."""
    if not disk_full_setup(c):
        return
    s = c.serve(data_dir=c.tmpfs.path / "data")
    rpc = Rpc(s)
    sids = [result(rpc.call("session.create", {"title": f"s{i}"}))["id"] for i in range(8)]
    acked: list[tuple[str, str]] = []
    for sid in sids:
        r = result(rpc.call("message.send", {"session_id": sid, "content": "before the fault"}))
        if r:
            acked.append((sid, r["message_id"]))
    wait_idle(rpc, sids, 10)
    hb = HeartbeatCounter(s)
    time.sleep(1.0)
    c.begin_load()
    filled = c.tmpfs.fill()
    c.facts["filler_bytes"] = filled
    t_fault = time.monotonic()
    t_end = t_fault + c.args.seconds
    # One writer: a fresh request every 250 ms, each waited for 1 s (error reply / no reply).
    # Each round sends a write, a read and a ping on three DEALERs and gives each 1 s.
    writer, reader, pinger = Rpc(s), Rpc(s), Rpc(s)
    w_err = w_ok = w_none = 0
    w_kinds: dict = {}
    pings = pings_ok = reads = reads_ok = 0
    i = 0
    while c.loading(t_end, s):
        sid = sids[i % len(sids)]
        i += 1
        t_round = time.monotonic()
        try:
            wid = writer.send("message.send", {"session_id": sid, "content": f"during {i}"})
            rid = reader.send("session.get", {"session_id": sid})
            pid_ = pinger.send("instance.ping")
        except zmq.Again:
            time.sleep(0.2)
            continue
        rep = writer.wait(wid, 1.0)
        reads += 1
        reads_ok += reader.wait(rid, max(0.0, t_round + 1.0 - time.monotonic())) is not None
        pings += 1
        pings_ok += result(pinger.wait(pid_, max(0.0, t_round + 1.0 - time.monotonic()))) \
            is not None
        if rep is None:
            w_none += 1
        elif "error" in rep:
            w_err += 1
            k = err_kind(rep)
            w_kinds[k] = w_kinds.get(k, 0) + 1
        else:
            w_ok += 1
            acked.append((sid, rep["result"]["message_id"]))
        time.sleep(max(0.0, t_round + 0.25 - time.monotonic()))
        if i % 8 == 0:
            c.tmpfs.fill()  # take back whatever space the server freed
    t_fault_end = time.monotonic()
    hb_fault = hb.count(t_fault + 1, t_fault_end)
    c.end_load()
    c.tmpfs.free()
    t_space = time.monotonic()
    # Recovery: time until a write is answered with success.
    recovered_after = None
    probe = Rpc(s)
    while time.monotonic() - t_space < c.args.recover and s.alive():
        rep = probe.call("session.create", {"title": "after"}, timeout=1.0)
        if result(rep):
            recovered_after = round(time.monotonic() - t_space, 2)
            break
        time.sleep(0.1)
    wait_idle(probe, sids, 10)
    missing = 0
    if s.alive():
        by_sid: dict[str, set] = {}
        for sid in sids:
            r = result(probe.call("message.list", {"session_id": sid}, timeout=10))
            by_sid[sid] = {m["id"] for m in (r or {}).get("messages", [])}
        missing = sum(1 for sid, mid in acked if mid not in by_sid.get(sid, set()))
    rest = c.args.recover - (time.monotonic() - t_space)
    c.watch_recovery(max(0.0, rest))
    hb.stop()
    dur = t_fault_end - t_fault
    log_text = s.log_text()
    c.facts.update(
        fault_seconds=round(dur, 1), writes=i, writes_error_reply=w_err, writes_no_reply_1s=w_none,
        writes_acked_during_fault=w_ok, write_error_kinds=w_kinds, reads=reads,
        reads_answered_1s=reads_ok, pings=pings,
        pings_answered=pings_ok, heartbeats_in_fault=hb_fault,
        heartbeats_per_s=round(hb_fault / max(dur - 1, 1), 3),
        recovered_s_after_space=recovered_after, acked_total=len(acked), acked_missing=missing,
        log_mentions_full="full" in log_text.lower(),
    )
    hb_interval = 5.0
    c.checks["pings answered during the fault"] = pings > 0 and pings_ok == pings
    c.checks["reads answered within 1 s"] = reads > 0 and reads_ok == reads
    c.checks["writes get an error reply within 1 s"] = w_none == 0
    c.checks["heartbeats keep flowing"] = hb_fault >= max(1, int((dur - 1) / hb_interval) - 1)
    c.checks["recovers after space returns"] = recovered_after is not None
    c.checks["no acknowledged send lost"] = missing == 0


def stall_commits(c: Ctx, s: Server, writer: Rpc, limit=15.0):
    """Writes until one is not answered within 1 s (its commit is stuck on the full disk);
    returns the seconds that took, or None. A database with history may still commit into its
    WAL's or free pages' space after the disk is full, so each answered write is followed by a
    256 KiB one (which needs new pages) and a refill."""
    t0 = time.monotonic()
    sid = None
    i = 0
    while time.monotonic() - t0 < limit and s.alive():
        i += 1
        rep = writer.call("session.create", {"title": f"probe {i}"}, timeout=1.0)
        if rep is None:
            return round(time.monotonic() - t0, 2)
        sid = sid or (result(rep) or {}).get("id")
        if sid:
            rep = writer.call("message.send", {"session_id": sid, "content": "p" * CONTENT_MAX},
                              timeout=1.0)
            if rep is None:
                return round(time.monotonic() - t0, 2)
        c.tmpfs.fill()
    return None


def row3(c: Ctx):
    """Disk full, one client pipelining session.list over 2,000 sessions."""
    if not disk_full_setup(c):
        return
    s = c.serve(data_dir=c.tmpfs.path / "data")
    rpc = Rpc(s)
    made = pipelined(rpc, lambda i: ("session.create", {"title": f"session {i:05d} " + "t" * 40}),
                     2000, 60)
    c.facts["sessions"] = made["ok"]
    c.begin_load()
    c.facts["filler_bytes"] = c.tmpfs.fill()
    writer = Rpc(s)
    c.facts["commit_stalled_after_s"] = stall_commits(c, s, writer)
    pipe = s.socket(zmq.DEALER, sndhwm=100000, rcvhwm=100000)
    t_end = time.monotonic() + c.args.seconds
    sent = replies = pending_refusals = other_errors = 0
    writes = 0
    next_write = 0.0
    req = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "session.list"}).encode()
    while c.loading(t_end, s):
        now = time.monotonic()
        if now >= next_write:  # a write that waits for its commit, twice a second
            try:
                writer.send("session.create", {"title": "during the fault"})
                writes += 1
            except zmq.Again:
                pass
            next_write = now + 0.5
            if writes % 10 == 0:
                c.tmpfs.fill()  # take back whatever space the server freed
            while writer.sock.poll(0, zmq.POLLIN):
                writer.sock.recv_multipart()
        for _ in range(50):  # at most ~5,000 requests a second
            try:
                pipe.send(req, zmq.NOBLOCK)
                sent += 1
            except zmq.Again:
                break
        n = 0
        while n < 200 and pipe.poll(0 if n else 10, zmq.POLLIN):
            body = pipe.recv_multipart()[-1]
            n += 1
            if b'"error"' in body[:200]:
                if b"too_many_pending" in body[:400]:
                    pending_refusals += 1
                else:
                    other_errors += 1
            else:
                replies += 1
    c.end_load()
    pipe.close(0)
    writer.close()
    c.tmpfs.free()
    c.facts.update(session_list_sent=sent, replies_received=replies,
                   too_many_pending=pending_refusals, other_errors=other_errors,
                   writes_during_fault=writes)
    c.watch_recovery()


def row4(c: Ctx):
    """256 KiB messages through the echo model (SQLite), then a restart."""
    s = c.serve(args=["--token-delay-ms", "0"])
    rpc = Rpc(s)
    nsess = 16
    sids = [result(rpc.call("session.create", {"title": f"big {i}"}))["id"] for i in range(nsess)]
    content = ("x" * (CONTENT_MAX - 8)) + " y"
    c.begin_load()
    load = send_load(c, s, sids, content, c.args.seconds)
    c.end_load()
    wait_idle(rpc, sids, 30)
    db = s.data_dir / "zcoord.db"
    db_bytes = sum((s.data_dir / f).stat().st_size for f in os.listdir(s.data_dir)
                   if f.startswith("zcoord.db"))
    c.facts.update(messages_sent=load["sends"], sends_acked=load["acked"],
                   sends_refused=load["refused"], refusal_kinds=load["refusal_kinds"],
                   content_bytes=len(content),
                   db_mib=round(db_bytes / MiB, 1), db_file=str(db))
    rpc.close()
    c.watch_recovery()
    c.facts["rss_before_restart_mib"] = mib(c.sampler.last_rss())
    # The restart: RSS of the new process before and after its first request.
    s2, took = c.restart()
    samp2 = Sampler(s2.pid)
    time.sleep(0.3)
    rss_before_req = proc_rss_kib(s2.pid)
    t0 = time.monotonic()
    first_ping = None
    while time.monotonic() - t0 < 60 and s2.alive():
        if ping_ms(s2, 1.0) is not None:
            first_ping = round(time.monotonic() - t0 + took, 2)
            break
    time.sleep(1.0)
    samp2.stop()
    c.facts.update(restart_discovery_s=round(took, 2), restart_ping_s=first_ping,
                   restart_rss_before_first_request_mib=mib(rss_before_req),
                   restart_rss_after_ping_mib=mib(proc_rss_kib(s2.pid)),
                   restart_peak_mib=mib(samp2.peak()))
    s2.stop()
    c.checks["restart RSS <= 512 MiB"] = (samp2.peak() or 0) <= RSS_LIMIT_MIB * 1024


def create_delete_load(c: Ctx, s: Server, seconds: float, max_sessions=10000, on_tick=None):
    """session.create until --max-sessions (or time is up), then create/delete cycles."""
    rpc = Rpc(s)
    t_end = time.monotonic() + seconds
    created, deleted, errors = [], 0, 0
    window: dict[int, str] = {}
    made = 0
    while c.loading(t_end, s):
        if on_tick:
            on_tick()
        while len(window) < 32:
            if made < max_sessions or not created:
                rid = rpc.send("session.create", {"title": "load"})
                window[rid] = "c"
                made += 1
            else:
                sid = created.pop(0)
                window[rpc.send("session.delete", {"session_id": sid})] = "d"
                made -= 1
        if rpc.sock.poll(100, zmq.POLLIN):
            rep = json.loads(rpc.sock.recv_multipart()[-1])
            kind = window.pop(rep.get("id"), None)
            if "error" in rep:
                errors += 1
            elif kind == "c":
                created.append(rep["result"]["id"])
            elif kind == "d":
                deleted += 1
    rpc.close()
    return {"creates_ok": len(created) + deleted, "deletes_ok": deleted, "errors": errors}


def row5(c: Ctx):
    """One SUB that never reads, session.create over and over."""
    s = c.serve()
    sub = stalled_sub(s)
    time.sleep(0.5)
    c.begin_load()
    c.facts.update(create_delete_load(c, s, c.args.seconds))
    c.end_load()
    sub.close(0)
    c.facts["stalled_sub"] = "closed at the load's end"
    c.watch_recovery()


def row6(c: Ctx):
    """Four SUBs that stall one after another, 2,000 sessions, create/delete cycles."""
    s = c.serve()
    rpc = Rpc(s)
    made = pipelined(rpc, lambda i: ("session.create", {"title": f"base {i}"}), 2000, 60)
    rpc.close()
    c.facts["base_sessions"] = made["ok"]
    c.begin_load()
    subs: list = []
    rss_at_stall: list = []
    t0 = time.monotonic()
    step = c.args.seconds / 4

    def tick():
        if len(subs) < 4 and time.monotonic() - t0 >= step * len(subs):
            rss_at_stall.append(mib(c.sampler.last_rss()))
            subs.append(stalled_sub(s))

    r = create_delete_load(c, s, c.args.seconds, max_sessions=2200, on_tick=tick)
    rss_at_stall.append(mib(c.sampler.last_rss()))
    c.end_load()
    for x in subs:
        x.close(0)
    c.facts.update(r, rss_mib_at_each_stall_and_end=rss_at_stall, stalled_subs=len(subs))
    c.watch_recovery()


def send_load(c: Ctx, s: Server, sids, content: str, seconds: float):
    """message.send to each session again as soon as its reply is in and its turn has ended
    (llm.end, which may arrive before the reply: they travel on different sockets)."""
    rpc = Rpc(s)
    ends = s.socket(zmq.SUB, rcvhwm=100000)
    ends.setsockopt(zmq.SUBSCRIBE, b"llm.end")
    wait_welcome(ends, 5)
    t_end = time.monotonic() + seconds
    free, busy = list(sids), {}
    running: dict[str, str] = {}  # turn_id -> session, reply in, llm.end not yet
    ended: set[str] = set()  # turns whose llm.end came before their reply
    sent = acked = refused = 0
    kinds: dict = {}
    while c.loading(t_end, s):
        while free and len(busy) < 64:
            sid = free.pop(0)
            try:
                busy[rpc.send("message.send", {"session_id": sid, "content": content})] = sid
                sent += 1
            except zmq.Again:
                free.insert(0, sid)
                break
        if rpc.sock.poll(20, zmq.POLLIN):
            rep = json.loads(rpc.sock.recv_multipart()[-1])
            sid = busy.pop(rep.get("id"), None)
            if "error" in rep:
                refused += 1
                k = err_kind(rep)
                kinds[k] = kinds.get(k, 0) + 1
                if sid:
                    free.append(sid)
            elif sid:
                acked += 1
                tid = rep["result"]["turn_id"]
                if tid in ended:
                    ended.discard(tid)
                    free.append(sid)
                else:
                    running[tid] = sid
        n = 0
        while n < 1000 and ends.poll(0, zmq.POLLIN):
            n += 1
            body = ends.recv_multipart()[-1]
            try:
                tid = json.loads(body)["payload"]["turn_id"]
            except (ValueError, KeyError, TypeError):
                continue
            if tid in running:
                free.append(running.pop(tid))
            elif len(ended) < 100000:
                ended.add(tid)
    ends.close(0)
    rpc.close()
    return {"sends": sent, "acked": acked, "refused": refused, "refusal_kinds": kinds}


def row7(c: Ctx):
    """200 KiB sends over 200 sessions with one stalled SUB."""
    s = c.serve()
    rpc = Rpc(s)
    made = pipelined(rpc, lambda i: ("session.create", {"title": f"s{i}"}), 200, 30)
    sids = [r["id"] for r in made["results"]]
    rpc.close()
    sub = stalled_sub(s)
    time.sleep(0.5)
    c.begin_load()
    c.facts.update(send_load(c, s, sids, ("z" * (200 * 1024 - 2)) + " w", c.args.seconds))
    c.end_load()
    sub.close(0)
    c.facts["sessions"] = len(sids)
    c.watch_recovery()


def row8(c: Ctx):
    """Two DEALERs that never read, pipelining message.list without limit (~8 MiB) at 5/s."""
    s = c.serve(args=["--token-delay-ms", "0"])
    rpc = Rpc(s)
    sid = result(rpc.call("session.create", {"title": "history"}))["id"]
    content = ("h" * (CONTENT_MAX - 2)) + " h"
    for _ in range(16):  # 16 turns x (256 KiB user + 256 KiB echo) = 8 MiB of history
        rep = rpc.call("message.send", {"session_id": sid, "content": content}, timeout=10)
        if not result(rep):
            break
        wait_idle(rpc, [sid], 10)
    size = len(json.dumps(result(rpc.call("message.list", {"session_id": sid}, timeout=20))))
    c.facts["reply_mib"] = round(size / MiB, 2)
    rpc.close()
    c.begin_load()
    dealers = [s.socket(zmq.DEALER, rcvhwm=1, sndhwm=100000) for _ in range(2)]
    req = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "message.list",
                      "params": {"session_id": sid}}).encode()
    sent = 0
    t_end = time.monotonic() + c.args.seconds
    nxt = time.monotonic()
    while c.loading(t_end, s):
        for d in dealers:
            try:
                d.send(req, zmq.NOBLOCK)
                sent += 1
            except zmq.Again:
                pass
        nxt += 0.2
        time.sleep(max(0.0, nxt - time.monotonic()))
    c.end_load()
    for d in dealers:
        d.close(0)
    info = result(Rpc(s).call("instance.info", timeout=5)) if s.alive() else None
    c.facts.update(message_list_sent=sent, drops=(info or {}).get("drops"))
    c.watch_recovery()


class RawSub:
    """A SUB peer speaking ZMTP 3.0 (NULL mechanism) itself over an ipc socket.

    libzmq's own SUB keeps every subscription in a trie of its own (as the server's XPUB does),
    so a pyzmq SUB flooding 60,000-byte prefixes costs the client as much memory as the server.
    This one only writes the frames; it reads what the server sends and throws it away, and
    answers ZMTP PINGs so the server's heartbeat does not drop it between batches."""

    def __init__(self, endpoint: str):
        assert endpoint.startswith("ipc://"), "RawSub speaks ipc only (no PLAIN)"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(endpoint[len("ipc://"):])
        greeting = (b"\xff" + b"\0" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL" + b"\0" * 16
                    + b"\0" + b"\0" * 31)
        self.sock.sendall(greeting)
        body = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 3) + b"SUB"
        self.sock.sendall(bytes([0x04, len(body)]) + body)
        self.buf = b""
        self.greeted = False
        self.received = 0
        self.pings = 0
        self.dead = False

    def frame(self, body: bytes, command=False) -> bytes:
        flags = 0x04 if command else 0x00
        if len(body) > 255:
            return bytes([flags | 0x02]) + struct.pack(">Q", len(body)) + body
        return bytes([flags, len(body)]) + body

    def subscribe(self, prefix: bytes) -> bool:
        """Sends one subscription (a message frame: 0x01 + prefix); False if it could not."""
        if self.dead:
            return False
        self.pump()
        try:
            self.sock.sendall(self.frame(b"\x01" + prefix))
            return True
        except OSError:
            self.dead = True  # a partial frame breaks the stream: stop here
            return False

    def pump(self):
        """Reads whatever the server sent (bounded), answering PINGs."""
        for _ in range(64):
            if self.dead or not select.select([self.sock], [], [], 0)[0]:
                return
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                self.dead = True
                return
            if not data:
                self.dead = True
                return
            self.received += len(data)
            self.buf += data
            self.parse()

    def parse(self):
        if not self.greeted:
            if len(self.buf) < 64:
                return
            self.buf, self.greeted = self.buf[64:], True
        while len(self.buf) >= 2:
            flags = self.buf[0]
            if flags & 0x02:
                if len(self.buf) < 9:
                    return
                size, head = struct.unpack(">Q", self.buf[1:9])[0], 9
            else:
                size, head = self.buf[1], 2
            if len(self.buf) < head + size:
                return
            body = self.buf[head:head + size]
            self.buf = self.buf[head + size:]
            if flags & 0x04 and body[:5] == b"\x04PING":
                self.pings += 1
                context = body[7:]  # name, 2-byte TTL, context
                try:
                    self.sock.sendall(self.frame(b"\x04PONG" + context, command=True))
                except OSError:
                    self.dead = True

    def close(self):
        self.sock.close()


def row9(c: Ctx):
    """One SUB with 500 (up to 2,000) subscriptions of 60,000 bytes each."""
    s = c.serve()
    flood = RawSub(s.pub)
    c.begin_load()
    t0 = time.monotonic()
    t_end = t0 + c.args.seconds
    pings: list = []
    welcomes: list = []
    stop = threading.Event()

    def pinger():  # instance.ping every 0.5 s on its own DEALER, 2 s timeout each
        rpc = Rpc(s)
        while not stop.is_set() and s.alive():
            t1 = time.monotonic()
            rep = rpc.call("instance.ping", timeout=2.0)
            pings.append(round((time.monotonic() - t1) * 1000, 1) if result(rep) else None)
            stop.wait(max(0.0, t1 + 0.5 - time.monotonic()))
        rpc.close()

    def newcomers():  # a fresh SUB every 3 s: how long until its welcome (at most 30 s)
        while not stop.is_set() and s.alive():
            sub = s.socket(zmq.SUB)
            key = b"instance.heartbeat"
            sub.setsockopt(zmq.SUBSCRIBE, key)
            w = wait_welcome(sub, min(30.0, max(1.0, t_end + 5 - time.monotonic())))
            sub.close(0)
            welcomes.append(None if w is None else round(w, 2))
            stop.wait(3.0)

    threads = [threading.Thread(target=f, daemon=True) for f in (pinger, newcomers)]
    for t in threads:
        t.start()
    subs_sent = sub_errors = 0
    rss_after_500 = None
    t_500 = None
    while c.loading(t_end, s):
        now = time.monotonic()
        # 500 subscriptions at the start and 500 more at each quarter, up to 2,000.
        target = min(2000, 500 * (1 + int((now - t0) / (c.args.seconds / 4))))
        n = 0
        while subs_sent < target and n < 50:
            prefix = (b"%06d" % subs_sent) + b"s" * (60000 - 6)
            if not flood.subscribe(prefix):
                sub_errors += 1
                break
            subs_sent += 1
            n += 1
        flood.pump()
        if subs_sent >= 500 and t_500 is None:
            t_500 = now
        if t_500 is not None and rss_after_500 is None and now - t_500 >= 2:
            rss_after_500 = mib(c.sampler.last_rss())
        time.sleep(0.02)
    c.end_load()
    flood_state = ("server closed it" if flood.dead else "open") + \
        f"; received {flood.received} bytes, {flood.pings} ZMTP pings"
    flood.close()
    stop.set()
    for t in threads:
        t.join(35)
    answered = [p for p in pings if p is not None]
    got = [w for w in welcomes if w is not None]
    c.facts.update(
        subscriptions_sent=subs_sent, subscription_bytes=60000, subscribe_errors=sub_errors,
        rss_mib_2s_after_first_500=rss_after_500, pings=len(pings),
        pings_timed_out_2s=len(pings) - len(answered),
        ping_ms_max=max(answered, default=None),
        ping_ms_median=sorted(answered)[len(answered) // 2] if answered else None,
        welcomes_tried=len(welcomes), welcomes_missed_30s=len(welcomes) - len(got),
        welcome_s_max=max(got, default=None),
        flood_peer=f"raw ZMTP SUB ({flood_state}), disconnected at the load's end")
    c.watch_recovery()
    c.checks["pings answered within 2 s"] = len(answered) == len(pings) and len(pings) > 0
    c.checks["ping latency < 500 ms"] = bool(answered) and max(answered) < 500
    c.checks["newcomer welcomed within 1 s"] = (bool(got) and len(got) == len(welcomes)
                                                and max(got) < 1.0)


def count_messages(server: Server, sids):
    rpc = Rpc(server)
    out = {}
    for sid in sids:
        rep = rpc.call("message.list", {"session_id": sid}, timeout=10)
        out[sid] = None if not result(rep) else {m["id"] for m in result(rep)["messages"]}
    rpc.close()
    return out


def row11(c: Ctx):
    """The database file deleted while the server runs."""
    s = c.serve(args=["--token-delay-ms", "0"])
    rpc = Rpc(s)
    a = result(rpc.call("session.create", {"title": "before"}))["id"]
    acked_a = []
    for i in range(5):
        r = result(rpc.call("message.send", {"session_id": a, "content": f"before {i}"}))
        if r:
            acked_a.append(r["message_id"])
        wait_idle(rpc, [a], 5)
    time.sleep(0.5)
    log_before = len(s.log_text())
    c.begin_load()
    removed = []
    for f in ("zcoord.db", "zcoord.db-wal", "zcoord.db-shm"):
        try:
            (s.data_dir / f).unlink()
            removed.append(f)
        except OSError:
            pass
    rb = rpc.call("session.create", {"title": "after delete"}, timeout=3)
    b = (result(rb) or {}).get("id")
    acked_b, errs = [], {}
    for i in range(20):
        rep = rpc.call("message.send", {"session_id": b or a, "content": f"after {i}"}, timeout=3)
        if result(rep):
            acked_b.append(rep["result"]["message_id"])
        else:
            k = err_kind(rep) or "no reply"
            errs[k] = errs.get(k, 0) + 1
        wait_idle(rpc, [b or a], 5)
    t_end = time.monotonic() + c.args.seconds
    while c.loading(t_end, s):  # keep the server under watch
        time.sleep(0.25)
    time.sleep(1.0)
    new_log = s.log_text()[log_before:]
    c.end_load()
    rpc.close()
    c.watch_recovery()
    # The restart.
    s2, _ = c.restart()
    counts = count_messages(s2, [a] + ([b] if b else []))
    s2.stop()
    present_b = counts.get(b or a) or set()
    lost = sum(1 for m in acked_b if m not in present_b)
    c.facts.update(
        files_removed=removed, session_created_after_delete=bool(b),
        sends_after_delete=20, sends_acked_after_delete=len(acked_b), send_errors=errs,
        log_lines_after_delete=[l for l in new_log.splitlines() if l.strip()][:10],
        after_restart_session_after_delete_present=(counts.get(b) is not None) if b else None,
        after_restart_acked_present=len(acked_b) - lost, after_restart_acked_lost=lost,
        after_restart_session_before_present=counts.get(a) is not None,
        exit_of_first_server=c.facts.get("exit_before_restart"))
    c.checks["no acknowledged send lost (or sends refused)"] = lost == 0
    c.checks["deletion noticed (logged or refused)"] = bool(new_log.strip()) or bool(errs)


def row12(c: Ctx):
    """SIGTERM while the disk is full."""
    if not disk_full_setup(c):
        return
    s = c.serve(data_dir=c.tmpfs.path / "data")
    rpc = Rpc(s)
    sids = [result(rpc.call("session.create", {"title": f"s{i}"}))["id"] for i in range(4)]
    c.begin_load()
    c.facts["filler_bytes"] = c.tmpfs.fill()
    t_end = time.monotonic() + c.args.seconds
    writes = acked = 0
    while c.loading(t_end, s):
        try:
            rpc.send("session.create", {"title": "during the fault"})
            writes += 1
        except zmq.Again:
            pass
        while rpc.sock.poll(0, zmq.POLLIN):
            acked += "result" in json.loads(rpc.sock.recv_multipart()[-1])
        time.sleep(0.1)
        if writes % 20 == 0:
            c.tmpfs.fill()
    c.end_load()
    c.facts.update(writes_during_fault=writes, writes_acked=acked)
    # SIGTERM during the fault, then wait (bounded) for the exit.
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    try:
        s.proc.wait(30)
        status = s.exit_status()
    except subprocess.TimeoutExpired:
        s.proc.kill()
        s.proc.wait(5)
        status = "killed (no exit 30 s after SIGTERM)"
    c.facts["exit_after_sigterm"] = status
    c.facts["exit_took_s"] = round(time.monotonic() - t0, 2)
    text = s.log_text()
    lines = [l for l in text.splitlines() if "unsaved" in l or "giving up" in l or "not saved" in l]
    c.facts["log_unsaved_lines"] = lines[-3:]
    rpc.close()
    c.tmpfs.free()
    c.recover_done = True
    unsaved = bool(lines)
    c.checks["non-zero exit when changes are not saved"] = (not unsaved) or status != "exit 0"


def row13(c: Ctx):
    """262 raw tcp connections that never authenticate, 200-descriptor limit.

    libzmq closes a connection whose handshake has not completed after 30 s (its default
    ZMQ_HANDSHAKE_IVL); a hostile peer just connects again, so this one keeps 262 open: each
    the server closes is replaced (counted)."""
    s = c.serve(nofile=200, tcp=True)
    host, port = s.rpc[len("tcp://"):].rsplit(":", 1)
    addr = (host, int(port))
    time.sleep(0.5)
    c.facts["cpu_percent_idle"] = c.sampler.cpu_percent(c.sampler.now() - 1.0, c.sampler.now())
    c.begin_load()
    t0 = time.monotonic()
    t_end = t0 + c.args.seconds

    def raw():
        r = socket.socket()
        r.settimeout(0.5)
        try:
            r.connect(addr)
        except OSError:
            r.close()
            return None
        r.setblocking(False)
        return r

    raws = [r for r in (raw() for _ in range(262)) if r is not None]
    closed = 0
    first_close = None
    timeline: list = []  # per window of 10 s: [t, cpu %, pings, answered, open raws]
    win = [0, 0]
    t_win = t0
    pings = ok = 0
    lat = []
    while c.loading(t_end, s):
        # Replace the connections the server closed (at most 32 a round).
        gone = [r for r in select.select(raws, [], [], 0)[0]]
        for r in gone:
            try:
                if r.recv(4096):
                    continue  # the server's greeting: the connection stays
            except BlockingIOError:
                continue
            except OSError:
                pass
            raws.remove(r)
            r.close()
            closed += 1
            first_close = first_close or round(time.monotonic() - t0, 1)
        for _ in range(min(32, 262 - len(raws))):
            r = raw()
            if r is None:
                break
            raws.append(r)
        pings += 1
        win[0] += 1
        p = ping_ms(s, 1.0)
        if p is not None:
            ok += 1
            win[1] += 1
            lat.append(p)
        now = time.monotonic()
        if now - t_win >= 10:
            a_, b_ = t_win - t0 + c.t_load, now - t0 + c.t_load
            timeline.append([round(now - t0), c.sampler.cpu_percent(a_, b_), win[0], win[1],
                             len(raws)])
            win, t_win = [0, 0], now
        time.sleep(max(0.0, 0.5 - (time.monotonic() - now)))
    t_cpu = c.sampler.now()
    cpu = c.sampler.cpu_percent(c.t_load + 1.0, t_cpu)
    c.end_load()
    for r in raws:
        r.close()
    t1 = time.monotonic()
    after = None
    while time.monotonic() - t1 < c.args.recover and s.alive():
        if ping_ms(s, 1.0) is not None:
            after = round(time.monotonic() - t1, 2)
            break
    c.watch_recovery(max(0.0, c.args.recover - (time.monotonic() - t1)))
    c.facts.update(raw_connections=262, raw_closed_by_server_and_replaced=closed,
                   first_close_after_s=first_close, cpu_percent_during=cpu,
                   cpu_percent_after=c.sampler.cpu_percent(c.sampler.now() - 3, c.sampler.now()),
                   auth_pings=pings, auth_pings_answered=ok,
                   auth_ping_ms_max=max(lat, default=None),
                   timeline_10s_t_cpu_pings_answered_open=timeline,
                   auth_ping_after_close_s=after)
    c.checks["CPU < 50% while they wait"] = cpu is not None and cpu < 50
    c.checks["authenticated client answered meanwhile"] = pings > 0 and ok == pings


def row14(c: Ctx):
    """ZCOORD_SECRET=a over tcp; --secret-file with the same secret for comparison."""
    d = c.workdir / "data"
    env = dict(os.environ, ZCOORD_SECRET="a")
    cmd = [c.args.bin, "serve", "--data-dir", str(d), "--rpc", "tcp://127.0.0.1:0",
           "--pub", "tcp://127.0.0.1:0"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                         preexec_fn=os.setsid)
    started = False
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5 and p.poll() is None:
        try:
            started = json.loads((d / "instance.json").read_text()).get("pid") == p.pid
        except (OSError, ValueError):
            pass
        if started:
            break
        time.sleep(0.05)
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    err = p.stderr.read().decode(errors="replace")
    c.facts.update(env_secret_started=started, env_secret_exit=p.returncode,
                   env_secret_stderr=err.strip().splitlines()[-3:])
    sf = c.workdir / "secret"
    sf.write_text("a")
    sf.chmod(0o600)
    env2 = dict(os.environ)
    env2.pop("ZCOORD_SECRET", None)
    try:
        q = subprocess.run(cmd[:3] + [str(c.workdir / "data2")] + cmd[4:] +
                           ["--secret-file", str(sf)], env=env2, capture_output=True, timeout=5,
                           text=True)
        c.facts.update(secret_file_exit=q.returncode,
                       secret_file_stderr=q.stderr.strip().splitlines()[-2:])
    except subprocess.TimeoutExpired:
        c.facts["secret_file_exit"] = "still running after 5 s (accepted)"
    c.checks["ZCOORD_SECRET=a refused"] = not started and p.returncode not in (0, None)
    c.recover_done = True


SCENARIOS = {
    1: ("1,100 DEALERs over ipc, 1,024-descriptor limit", row1),
    2: ("disk full while clients send", row2),
    3: ("disk full, pipelined session.list (2,000 sessions)", row3),
    4: ("256 KiB messages through echo (SQLite), restart", row4),
    5: ("one SUB never reads, session.create", row5),
    6: ("four SUBs stall one after another, create/delete", row6),
    7: ("200 KiB sends over 200 sessions, one stalled SUB", row7),
    8: ("two DEALERs never read, message.list without limit", row8),
    9: ("SUB with 60,000-byte subscriptions", row9),
    11: ("database file deleted while running", row11),
    12: ("SIGTERM while the disk is full", row12),
    13: ("262 raw tcp connections, 200-descriptor limit", row13),
    14: ("ZCOORD_SECRET=a", row14),
}
NO_RSS_AIM = {12, 14}  # rows whose server is meant to stop, or never serves a load


def run_row(args, row: int) -> dict:
    title, fn = SCENARIOS[row]
    log(f"row {row}: {title}")
    workdir = Path(tempfile.mkdtemp(prefix=f"zcoord-stress-{row}-"))
    c = Ctx(args, row, workdir)
    out: dict = {"row": row, "title": title}
    t0 = time.monotonic()
    error = None
    aborted = False
    try:
        fn(c)
    except Exception as e:  # noqa: BLE001 -- a broken scenario is a row result, not a crash
        error = f"{type(e).__name__}: {e}"
        log(f"  row {row}: error: {error}\n{traceback.format_exc()}")
    except BaseException:
        aborted = True  # interrupted: clean up at once, then stop
        raise
    finally:
        try:
            if c.server is not None:
                if (c.t_load is not None and not c.recover_done and c.server.alive()
                        and not aborted):
                    if c.t_load_end is None:
                        c.end_load()
                    c.watch_recovery()
                if c.pre_restart is not None:  # judged before the row's own restart
                    out["ping_at_end_ms"] = c.pre_restart["ping"]
                    out["alive_at_end"] = c.pre_restart["alive"]
                    out["exit_status"] = c.pre_restart["status"]
                else:
                    if c.server.alive():
                        out["ping_at_end_ms"] = ping_ms(c.server, 2.0)
                    out["alive_at_end"] = c.server.alive()
                    out["exit_status"] = c.server.exit_status()
                if c.sampler:
                    c.sampler.stop()
                for s in c.extra_servers:
                    st = s.stop()
                    if s is c.server and out["alive_at_end"]:
                        out["exit_after_sigterm"] = st
                out["log_tail"] = c.server.log_tail(500).splitlines()[-4:]
        finally:
            if c.tmpfs:
                c.tmpfs.umount()
            shutil.rmtree(workdir, ignore_errors=True)
    out["seconds"] = round(time.monotonic() - t0, 1)
    out["client_rss_mib"] = round(own_rss_mib(), 1)
    if c.skip:
        out["skipped"] = c.skip
        out["pass"] = None
        log(f"  row {row}: {c.skip}")
        return out
    if error:
        out["error"] = error
    checks = dict(c.checks)
    smp = c.sampler
    if smp is not None and smp.samples:
        start = c.start_rss or smp.samples[0][1]
        peak = smp.peak()
        end = smp.samples[-1][1]
        out.update(rss_ready_mib=mib(smp.samples[0][1]), rss_start_mib=mib(start),
                   rss_peak_mib=mib(peak), rss_end_mib=mib(end))
        if c.t_load is not None and c.t_load_end is not None:
            out["cpu_percent_load"] = smp.cpu_percent(c.t_load, c.t_load_end)
            out["load_s"] = round(c.t_load_end - c.t_load, 1)
            back = next((t for t, r, _ in smp.samples
                         if t >= c.t_load_end and r < 2 * start), None)
            # "back" means it stays back: the first sample after which every one is under 2x.
            for t, r, _ in smp.samples:
                if t >= c.t_load_end and r >= 2 * start:
                    back = None
                elif t >= c.t_load_end and back is None:
                    back = t
            if row not in NO_RSS_AIM:
                out["back_under_2x_s"] = None if back is None else round(back - c.t_load_end, 2)
                out["recover_window_s"] = args.recover
        if row not in NO_RSS_AIM:
            checks[f"RSS <= {RSS_LIMIT_MIB} MiB"] = peak <= RSS_LIMIT_MIB * 1024
            checks["back under 2x start"] = out.get("back_under_2x_s") is not None
            checks["alive"] = bool(out.get("alive_at_end"))
            checks["answers a ping at the end"] = out.get("ping_at_end_ms") is not None
    out["facts"] = c.facts
    out["checks"] = checks
    out["pass"] = (error is None) and all(checks.values())
    log(f"  row {row}: {'PASS' if out['pass'] else 'FAIL'} "
        f"peak {out.get('rss_peak_mib')} MiB; facts {json.dumps(c.facts)[:600]}")
    return out


def fmt(v):
    return "-" if v is None else str(v)


def table(results: list[dict]) -> str:
    head = ("| # | scenario | start MiB | peak MiB | end MiB | back<2x | alive | result | "
            "row facts | failed checks |")
    lines = [head, "|" + "---|" * 10]
    for r in results:
        if r.get("skipped"):
            lines.append(f"| {r['row']} | {r['title']} | | | | | | SKIP | {r['skipped']} | |")
            continue
        back = r.get("back_under_2x_s")
        back_s = "-" if "back_under_2x_s" not in r else ("no" if back is None else f"{back} s")
        alive = ("-" if "alive_at_end" not in r else "yes" if r["alive_at_end"]
                 else f"no ({fmt(r.get('exit_status'))})")
        failed = [k for k, ok in r.get("checks", {}).items() if not ok]
        if r.get("error"):
            failed.append("error: " + r["error"])
        facts = "; ".join(f"{k}={json.dumps(v, separators=(',', ':'))}"
                          for k, v in r.get("facts", {}).items()
                          if k not in ("db_file",) and not (isinstance(v, list) and
                                                             len(json.dumps(v)) > 160))
        lines.append(f"| {r['row']} | {r['title']} | {fmt(r.get('rss_start_mib'))} | "
                     f"{fmt(r.get('rss_peak_mib'))} | {fmt(r.get('rss_end_mib'))} | {back_s} | "
                     f"{alive} | {'PASS' if r.get('pass') else 'FAIL'} | {facts} | "
                     f"{', '.join(failed)} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description="Issue 12's memory and fault table, row by row.")
    ap.add_argument("--bin", required=True, help="the zcoord binary (a release build)")
    ap.add_argument("--seconds", type=float, default=60, help="load per scenario (default 60)")
    ap.add_argument("--recover", type=float, default=30, help="recovery watch (default 30)")
    ap.add_argument("--only", help="rows to run, e.g. 1,5,9 (default: all)")
    ap.add_argument("--json", help="write every figure to this file")
    ap.add_argument("--strict", action="store_true", help="exit 1 if any row fails")
    ap.add_argument("--rss-cap", type=float, default=6144, metavar="MIB",
                    help="stop a row's load early once the server's RSS passes this, to spare "
                         "the machine (default 6144; the row fails the 512 MiB aim anyway)")
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every row's clean-up

    # A background job of a non-interactive shell starts with SIGINT ignored: take it back.
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rows = sorted(SCENARIOS) if not args.only else [int(x) for x in args.only.split(",") if x]
    unknown = [r for r in rows if r not in SCENARIOS]
    if unknown:
        ap.error(f"no scenario for rows {unknown} (row 10 is every row's back<2x column)")
    version = subprocess.run([args.bin, "--version"], capture_output=True, text=True).stdout.strip()
    log(f"{version}; rows {rows}; --seconds {args.seconds:g} --recover {args.recover:g}; "
        f"fd limit {resource.getrlimit(resource.RLIMIT_NOFILE)}")
    results = []
    for row in rows:
        results.append(run_row(args, row))
        if args.json:  # written after every row, so an interrupted run keeps what it measured
            write_json(args, version, results)
    print(table(results))
    client = max((r.get("client_rss_mib") or 0 for r in results), default=0)
    print(f"\nthis client's own RSS: at most {client} MiB")
    failed = [r["row"] for r in results if r.get("pass") is False]
    print(f"\nrows failing: {failed or 'none'}; aims: RSS <= {RSS_LIMIT_MIB} MiB, back under 2x "
          f"start within {args.recover:g} s, alive, and each row's own checks")
    return 1 if (args.strict and failed) else 0


def write_json(args, version, results):
    with open(args.json, "w") as f:
        json.dump({"binary": args.bin, "version": version, "seconds": args.seconds,
                   "recover": args.recover, "rss_limit_mib": RSS_LIMIT_MIB,
                   "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "rows": results}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
