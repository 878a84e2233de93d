"""Real servers for the tests: `zcoord serve` from $ZCOORD_BIN (default target/debug/zcoord at the
repository root), one per test module over ipc in a short temp dir, and one over tcp with PLAIN.
Every wait is bounded."""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

import zcoord

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT = 15.0


def zcoord_bin() -> Path:
    path = Path(os.environ.get("ZCOORD_BIN", "target/debug/zcoord"))
    path = path if path.is_absolute() else REPO / path
    if not path.exists():
        pytest.exit(f"no server binary at {path}: cargo build, or set ZCOORD_BIN", returncode=2)
    return path


class Server:
    """One `zcoord serve`, stopped with SIGTERM (then SIGKILL after 10 s)."""

    def __init__(
        self,
        data_dir: Optional[Path],
        *args: str,
        cwd: Optional[Path] = None,
        env: Optional[dict[str, str]] = None,
        discovery_dir: Optional[Path] = None,
    ) -> None:
        cmd = [str(zcoord_bin())]
        if data_dir is not None:
            cmd += ["--data-dir", str(data_dir)]
        cmd += ["serve", "--store", "memory", "--heartbeat-interval", "0.5", *args]
        self.data_dir = discovery_dir or data_dir
        assert self.data_dir is not None
        self.log = open(Path(tempfile.mkdtemp(prefix="zc-log-")) / "serve.log", "w+")
        full_env = {k: v for k, v in os.environ.items() if k != "ZCOORD_SECRET"}
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env=full_env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.discovery = self._wait_ready()

    def _wait_ready(self) -> zcoord.Discovery:
        deadline = time.monotonic() + START_TIMEOUT
        path = self.data_dir / "instance.json"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.output()}")
            try:
                d = zcoord.read_discovery(path)
                if d.pid == self.proc.pid:
                    return d
            except zcoord.DiscoveryError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server wrote no {path} within {START_TIMEOUT} s: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def short_tempdir(prefix: str) -> Path:
    # ipc paths are limited to 107 bytes: /tmp, not pytest's long tmp_path.
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """Over ipc; `clock` asks a person first (approvals), everything else as by default."""
    d = short_tempdir("zc-py-")
    s = Server(d, "--tool-policy", "clock=ask", "--token-delay-ms", "1")
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def tcp_server() -> Iterator[Server]:
    d = short_tempdir("zc-tcp-")
    s = Server(d, "--rpc", "tcp://127.0.0.1:0", "--pub", "tcp://127.0.0.1:0", "--token-delay-ms", "1")
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def client(server: Server) -> Iterator[zcoord.Client]:
    with zcoord.Client.connect(data_dir=server.data_dir, timeout=5.0) as c:
        yield c


@pytest.fixture
async def aclient(server: Server):  # type: ignore[no-untyped-def]
    from zcoord.aio import AsyncClient

    c = AsyncClient.connect(data_dir=server.data_dir, timeout=5.0)
    yield c
    await c.close()
